/**
 * The Qwen2 tokenizer (byte-level BPE), run in WebAssembly (`wasm/crates/tokenizer`): ids
 * identical to Hugging Face tokenizers 0.23 for a Qwen2-family `tokenizer.json`, special tokens
 * such as `<|im_start|>` and `<|image_pad|>` recognised inside text, and a streaming decoder that
 * never splits a UTF-8 character.
 *
 * @example
 * ```ts
 * import { Tokenizer } from "./tokenizer.ts";
 * const tok = await Tokenizer.load(new URL("../tests/fixtures/tiny-qwen2vl", import.meta.url));
 * const ids = tok.encode("<|im_start|>user\nHello world");
 * console.assert(ids.join() === "151644,872,198,9707,1879");
 * console.assert(tok.decode(ids, { skipSpecialTokens: true }) === "user\nHello world");
 * const stream = tok.createStreamDecoder();
 * const text = Array.from(ids, (id) => stream.push(id)).join("") + stream.flush();
 * console.assert(text === "<|im_start|>user\nHello world");
 * tok.dispose();
 * ```
 * @module
 */
import { loadWasm, wasm } from "./_wasm.ts";
import { InvalidInputError, ModelFileError, preview, type QvqError } from "./errors.ts";
import { type ModelSource, openModelSource } from "./model_files.ts";

/** One entry of tokenizer_config.json's `added_tokens_decoder` (Hugging Face's field names). */
export interface AddedTokenConfig {
  /** The token's text. */
  content: string;
  /** Whether the token absorbs whitespace to its left. */
  lstrip?: boolean;
  /** Whether the token absorbs whitespace to its right. */
  rstrip?: boolean;
  /**
   * Match in the NFC-normalized text instead of the raw text (default: true unless `special`, as
   * transformers' `AddedToken`).
   */
  normalized?: boolean;
  /** Whether the token matches only as a whole word. */
  single_word?: boolean;
  /** Dropped by `skipSpecialTokens` when decoding. */
  special?: boolean;
}

/** Extra configuration on top of tokenizer.json (from tokenizer_config.json). */
export interface TokenizerConfig {
  /**
   * tokenizer_config.json's `added_tokens_decoder` (id → token). As in transformers, tokens not in
   * tokenizer.json are added and known ones take the flags given here.
   */
  addedTokensDecoder?: Record<string, AddedTokenConfig>;
}

/**
 * Refuses what wasm-bindgen would coerce into ids by `Number()` (null → 0, "" → 0, true → 1,
 * [5] → 5): `ids` must be an array, a typed array of numbers or another array-like of numbers;
 * the wasm checks their range.
 */
function checkIds(ids: ArrayLike<number>): void {
  if (ArrayBuffer.isView(ids)) {
    if (ids instanceof DataView || ids instanceof BigInt64Array || ids instanceof BigUint64Array) {
      throw new InvalidInputError(
        `Tokenizer.decode() takes token ids as numbers, got a ${ids.constructor.name}.`,
      );
    }
    return;
  }
  if (
    typeof ids !== "object" || ids === null || typeof ids.length !== "number" ||
    !Number.isSafeInteger(ids.length) || ids.length < 0
  ) {
    throw new InvalidInputError(
      `Tokenizer.decode() takes an array of token ids, got ${preview(ids)}.`,
    );
  }
  for (let i = 0; i < ids.length; i++) {
    if (typeof ids[i] !== "number") {
      throw new InvalidInputError(
        `Tokenizer.decode(): ids[${i}] is ${preview(ids[i])}, not a token id.`,
      );
    }
  }
}

/** Options of {@link Tokenizer.decode} and {@link Tokenizer.createStreamDecoder}. */
export interface DecodeOptions {
  /** Leave out special tokens (`<|im_start|>`, `<|image_pad|>`, …). Default false. */
  skipSpecialTokens?: boolean;
}

const ERRORS: Record<string, new (message: string) => QvqError> = {
  ModelFileError,
  InvalidInputError,
};

/** Runs a wasm call, turning its named JS errors into qvq's error classes. */
function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    const cls = e instanceof Error ? ERRORS[e.name] : undefined;
    if (cls) throw new cls(e instanceof Error ? e.message : String(e));
    throw e;
  }
}

function disposedError(what: string): InvalidInputError {
  return new InvalidInputError(`This ${what} was disposed: create a new one to keep using it.`);
}

/** Turns ids into text one id at a time (see {@link Tokenizer.createStreamDecoder}). */
export class StreamDecoder {
  #inner: wasm.TokStreamDecoder | undefined;

  /** @internal Use {@link Tokenizer.createStreamDecoder}. */
  constructor(inner: wasm.TokStreamDecoder) {
    this.#inner = inner;
  }

  #get(): wasm.TokStreamDecoder {
    if (!this.#inner) throw disposedError("StreamDecoder");
    return this.#inner;
  }

  /**
   * Adds one id and returns the text it completes: often the token's text, "" while a character's
   * bytes are incomplete, and then the whole character. Throws InvalidInputError for an unknown id.
   */
  push(id: number): string {
    const inner = this.#get();
    if (typeof id !== "number") {
      throw new InvalidInputError(`StreamDecoder.push() takes a token id, got ${preview(id)}.`);
    }
    return call(() => inner.push(id));
  }

  /** Ends the stream: returns the bytes held back, an incomplete character as U+FFFD. */
  flush(): string {
    return this.#get().flush();
  }

  /** Frees the wasm object. */
  dispose(): void {
    this.#inner?.free();
    this.#inner = undefined;
  }

  /** Frees the WASM decoder (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A Hugging Face byte-level BPE tokenizer of the Qwen2 family. */
export class Tokenizer {
  #inner: wasm.TokTokenizer | undefined;

  private constructor(inner: wasm.TokTokenizer) {
    this.#inner = inner;
  }

  /**
   * A tokenizer from tokenizer.json's text or bytes. Throws ModelFileError when the JSON is
   * malformed or describes something other than a Qwen2-style byte-level BPE tokenizer.
   */
  static async fromJson(
    json: string | Uint8Array,
    config: TokenizerConfig = {},
  ): Promise<Tokenizer> {
    await loadWasm();
    const bytes = typeof json === "string" ? new TextEncoder().encode(json) : json;
    if (!(bytes instanceof Uint8Array)) {
      throw new InvalidInputError(
        `Tokenizer.fromJson() takes tokenizer.json as a string or Uint8Array, got ${typeof json}.`,
      );
    }
    const added = config.addedTokensDecoder === undefined
      ? undefined
      : new TextEncoder().encode(JSON.stringify(config.addedTokensDecoder));
    return new Tokenizer(call(() => wasm.TokTokenizer.fromJson(bytes, added)));
  }

  /**
   * Loads `tokenizer.json` (and `added_tokens_decoder` from `tokenizer_config.json` when present)
   * from a model directory, a `file:` or `http(s):` URL, or a {@link ModelSource}.
   */
  static async load(location: string | URL | ModelSource): Promise<Tokenizer> {
    const src = typeof location === "string" || location instanceof URL
      ? openModelSource(location)
      : location;
    try {
      const json = await src.readBytes("tokenizer.json");
      const config: TokenizerConfig = {};
      if (await src.exists("tokenizer_config.json")) {
        const c = await src.readJson<{ added_tokens_decoder?: unknown }>("tokenizer_config.json");
        const added = c?.added_tokens_decoder;
        if (
          added !== undefined &&
          (typeof added !== "object" || added === null || Array.isArray(added))
        ) {
          throw new ModelFileError(
            `${src.pathOf("tokenizer_config.json")}: "added_tokens_decoder" must be an object ` +
              `mapping ids to tokens; fix or remove it.`,
          );
        }
        config.addedTokensDecoder = added as TokenizerConfig["addedTokensDecoder"];
      }
      try {
        return await Tokenizer.fromJson(json, config);
      } catch (e) {
        if (e instanceof ModelFileError) {
          // (The wasm begins the errors of tokenizer_config.json's added tokens with the field.)
          const file = /^added_tokens_decoder\b/.test(e.message)
            ? "tokenizer_config.json"
            : "tokenizer.json";
          throw new ModelFileError(`${src.pathOf(file)}: ${e.message}`, { cause: e });
        }
        throw e;
      }
    } finally {
      if (src !== location) src.close();
    }
  }

  #get(): wasm.TokTokenizer {
    if (!this.#inner) throw disposedError("Tokenizer");
    return this.#inner;
  }

  /** Number of ids: one more than the largest id of the vocabulary and the added tokens. */
  get vocabSize(): number {
    return this.#get().vocabSize;
  }

  /** The ids of `text`, with special and added tokens recognised inside it. */
  encode(text: string): Int32Array {
    if (typeof text !== "string") {
      throw new InvalidInputError(`Tokenizer.encode() takes a string, got ${typeof text}.`);
    }
    const ids = this.#get().encode(text); // (tokens) u32, all below 2^31
    return new Int32Array(ids.buffer, ids.byteOffset, ids.length);
  }

  /** {@link encode} of each text. */
  encodeBatch(texts: string[]): Int32Array[] {
    if (!Array.isArray(texts)) {
      throw new InvalidInputError(
        `Tokenizer.encodeBatch() takes an array of strings, got ${typeof texts}.`,
      );
    }
    return texts.map((t) => this.encode(t));
  }

  /**
   * The text of `ids`. Bytes that do not form UTF-8 become U+FFFD, exactly where Hugging Face
   * puts them. Throws InvalidInputError for an id that is not an integer in [0, vocabSize).
   */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const inner = this.#get();
    checkIds(ids);
    return call(() =>
      inner.decode(ids as unknown as Float64Array, opts.skipSpecialTokens ?? false)
    );
  }

  /** The id of a token string: an added token's content or a vocab entry such as `"Ġworld"`. */
  tokenToId(token: string): number | undefined {
    return this.#get().tokenToId(token);
  }

  /** The token string of an id (vocab entries are in byte-level characters: `"Ġworld"`). */
  idToToken(id: number): string | undefined {
    return this.#get().idToToken(id);
  }

  /**
   * A decoder that takes ids one at a time and returns text deltas; the deltas concatenate to
   * {@link decode} of all the ids. It stays usable after this tokenizer is disposed.
   */
  createStreamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this.#get().streamDecoder(opts.skipSpecialTokens ?? false));
  }

  /** Frees the wasm object (about 18 MB of wasm memory for Qwen2's 151k-token vocabulary). */
  dispose(): void {
    this.#inner?.free();
    this.#inner = undefined;
  }

  /** Frees the WASM tokenizer (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
