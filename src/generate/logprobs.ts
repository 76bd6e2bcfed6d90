/**
 * From the GPU's logprob records (kernels/logprobs.ts) to what callers see: each token's text and
 * bytes beside its log probability, as OpenAI's `logprobs.content` entries carry them.
 * @module
 */
import type { TokenLogprobRecord } from "../../kernels/logprobs.ts";
import type { Tokenizer } from "../tokenizer.ts";
import type { ResolvedOptions } from "./options.ts";
import type { PreparedPrompt } from "./prompt.ts";
import type { PromptEcho, TokenLogprob, TopLogprob } from "./types.ts";

/** A token's text (Hugging Face's decode of it alone) and its exact bytes. */
export interface TokenText {
  token: string;
  bytes: number[];
}

/**
 * GPT-2's byte-level alphabet backwards: the character a byte-level vocabulary writes for each
 * byte (printable Latin-1 as itself, the other bytes as U+0100 on) → the byte.
 */
const BYTE_OF: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    m.set(String.fromCodePoint(printable ? b : 256 + extra++), b);
  }
  return m;
})();

/**
 * The text and bytes of an id. A token that decodes to whole characters has the UTF-8 of its text
 * as bytes; one that holds part of a character (the text shows U+FFFD) has its byte-level
 * vocabulary entry read back to bytes. Special tokens (`<|im_end|>`) and ids past the tokenizer's
 * vocabulary (padding rows of the lm_head) are "" with no bytes, as they add no text to the
 * answer: its bytes are its tokens' bytes, in order. With `special`, special tokens are their
 * text, as in a prompt's text.
 */
export function tokenText(tokenizer: Tokenizer, id: number, special = false): TokenText {
  if (id >= tokenizer.vocabSize) return { token: "", bytes: [] };
  // As the answer's text: a special token adds none (its id still names it).
  const token = tokenizer.decode([id], { skipSpecialTokens: !special });
  let bytes = [...UTF8.encode(token)];
  const entry = tokenizer.idToToken(id);
  if (token.includes("\ufffd") && entry && [...entry].every((c) => BYTE_OF.has(c))) {
    bytes = [...entry].map((c) => BYTE_OF.get(c)!);
  }
  return { token, bytes };
}

const UTF8 = new TextEncoder();

/** {@link tokenText}, cached. */
export function tokenTexts(
  tokenizer: Tokenizer,
  { special = false } = {},
): (id: number) => TokenText {
  const cache = new Map<number, TokenText>();
  return (id) => {
    let t = cache.get(id);
    if (!t) {
      t = tokenText(tokenizer, id, special);
      cache.set(id, t);
    }
    return t;
  };
}

/** A GPU record as the caller's entry, with each token's text and bytes. */
export function tokenLogprob(r: TokenLogprobRecord, text: (id: number) => TokenText): TokenLogprob {
  const one = (id: number, logprob: number): TopLogprob => ({ ...text(id), id, logprob });
  return { ...one(r.id, r.logprob), topLogprobs: r.top.map((t) => one(t.id, t.logprob)) };
}

/**
 * The prompt's record of a generation (undefined when neither `echo` nor
 * `promptLogprobs` asks for one): the prompt's text, and its tokens beside `records`, the
 * prefill's scores of every token after the first (kernels/logprobs.ts PromptLogprobs).
 */
export function promptEcho(
  tokenizer: Tokenizer,
  prompt: PreparedPrompt,
  o: Pick<ResolvedOptions, "echo" | "promptLogprobs">,
  records: readonly TokenLogprobRecord[] | undefined,
): PromptEcho | undefined {
  if (!o.echo && o.promptLogprobs === undefined) return undefined;
  const ids = prompt.inputIds;
  const echo: PromptEcho = {};
  // A raw prompt's text as given, but where its tokens are listed beside it, theirs: the
  // tokenizer's NFC normalisation may have changed it, and their offsets must fall in the text.
  if (o.echo) {
    echo.text = records || prompt.text === undefined
      ? tokenizer.decode(ids, { skipSpecialTokens: false })
      : prompt.text;
  }
  if (records) {
    const text = tokenTexts(tokenizer, { special: true });
    echo.logprobs = [
      { ...text(ids[0]), id: ids[0], logprob: null, topLogprobs: [] },
      ...records.map((r) => tokenLogprob(r, text)),
    ];
  }
  return echo;
}
