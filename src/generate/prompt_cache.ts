/**
 * The prompt cache: the KV cache of the last generation, kept so that the next prompt that starts
 * the same way — the next turn of a chat, which repeats the conversation so far, or the same
 * question asked again — runs only its new tokens through prefill, and skips the vision tower for
 * the images already in the cache. What llama.cpp's server (`cache_prompt`), Ollama and vLLM's
 * prefix caching do; one slot, like llama.cpp's default.
 *
 * Reuse is sound: a row's K and V depend only on the tokens (and images) up to it, and M-RoPE gives
 * a token the same position whatever follows it, so the prompt's reused rows are the ones a full
 * prefill would write. The generated tokens' rows come from decode steps (GEMVs) rather than
 * prefill GEMMs: the same values up to rounding (f16: 7e-6 of the largest logit on an H200; q4,
 * whose two paths quantize activations differently, more: BENCHMARKS.md), as within one
 * generate() call. Images are matched by their pixels (a hash of each image's patches and grid), since
 * every image is the same run of `<|image_pad|>` ids.
 * @module
 */
import { GpuError } from "../errors.ts";
import { imageTokenCount, patchCount } from "../image.ts";
import type { Qwen2VLModel, Session } from "../model/qwen2vl.ts";
import type { GridThw, PreparedPrompt } from "./prompt.ts";

/** An image of a prompt as the cache tells images apart. */
export interface ImageKey {
  /** Pixels and grid (see {@link imageKeys}). */
  key: string;
  grid: GridThw;
  /** Its `<|image_pad|>` tokens. */
  tokens: number;
}

/**
 * One key per image: its grid and a 64-bit hash (two 32-bit FNV-style lanes) of its rows of
 * pixel values, the processor's output — the same image bytes at the same size give the same key.
 * @param mergeSize spatial_merge_size: tokens = t·h·w / merge²
 */
export function imageKeys(prompt: PreparedPrompt, mergeSize: number): ImageKey[] {
  const { pixelValues, gridThw } = prompt;
  const patches = patchCount(gridThw);
  const cols = patches > 0 ? pixelValues.length / patches : 0;
  const words = new Uint32Array(pixelValues.buffer, pixelValues.byteOffset, pixelValues.length);
  let row = 0;
  return gridThw.map((grid) => {
    const n = grid[0] * grid[1] * grid[2];
    const key = `${grid.join("x")}:${hashWords(words.subarray(row * cols, (row + n) * cols))}`;
    row += n;
    return { key, grid, tokens: imageTokenCount(grid, mergeSize) };
  });
}

function hashWords(u: Uint32Array): string {
  let a = 0x811c9dc5 ^ u.length, b = 0x9e3779b9;
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    a = Math.imul(a ^ x, 0x01000193);
    b = Math.imul(((b << 5) | (b >>> 27)) ^ x, 0x85ebca6b);
  }
  return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0");
}

/** What a cache holds or a prompt asks for: token ids row by row, and its images in order. */
export interface TokenHistory {
  ids: ArrayLike<number>;
  images: readonly ImageKey[];
}

/**
 * How much of `next` the KV rows of `held` serve: the longest common prefix of the ids, cut back to
 * the start of the first image whose pixels differ (or that the prefix would split), and to
 * `next.ids.length − 1`, since prefill must run one token at least to give the next logits.
 * @returns the reusable tokens and the images among them
 */
export function reusablePrefix(
  held: TokenHistory,
  next: TokenHistory,
  imageTokenId: number,
): { tokens: number; images: number } {
  const limit = Math.min(held.ids.length, next.ids.length - 1);
  let n = 0;
  while (n < limit && held.ids[n] === next.ids[n]) n++;
  // Walk next's images in order (image k is the k-th run of counts[k] pads; two images may touch).
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (next.ids[i] !== imageTokenId) continue;
    const img = next.images[k], same = held.images[k]?.key === img?.key;
    if (!img || !same || i + img.tokens > n) return { tokens: i, images: k };
    i += img.tokens - 1;
    k++;
  }
  return { tokens: n, images: k };
}

/** A session ready for a prompt: rows [0, cached.tokens) of its KV cache already hold it. */
export interface CacheHit {
  session: Session;
  /** Prompt tokens whose K/V the session holds, and the images among them. */
  cached: { tokens: number; images: number };
}

/**
 * One kept session and the history its KV rows hold. Not thread-safe on its own: the pipeline
 * calls it under its one-generation-at-a-time lock.
 */
export class PromptCache {
  readonly #model: Qwen2VLModel;
  #session: Session | undefined;
  #held: TokenHistory = { ids: [], images: [] };
  #closed = false;
  /** A whole-context session failed to allocate once: sessions take each request's size. */
  #fullFailed = false;

  constructor(model: Qwen2VLModel) {
    this.#model = model;
  }

  /** Tokens the kept session holds (0 when none is kept). */
  get heldTokens(): number {
    return this.#session ? this.#held.ids.length : 0;
  }

  /**
   * A session of at least `maxTokens` for `prompt`, and how much of the prompt its rows already
   * hold: the kept session, or else a new one for the model's whole context (maxContext), made
   * once — the memory load() planned for (estimateMemory at maxContext), and a conversation never
   * outgrows it. Where the device cannot hold that, a session of `maxTokens` (its allocation error,
   * if that fails too, surfaces in prefill). The session is the caller's until it gives it back
   * with {@link keep} or disposes it.
   */
  async take(prompt: TokenHistory, maxTokens: number): Promise<CacheHit> {
    const cached = this.peek(prompt, maxTokens);
    const old = this.#session;
    this.#session = undefined;
    if (old && !old.disposed && old.maxTokens >= maxTokens) return { session: old, cached };
    old?.dispose();
    const none = { tokens: 0, images: 0 };
    const full = Math.max(maxTokens, this.#model.maxContext);
    if (full > maxTokens && !this.#fullFailed) {
      let session: Session | undefined;
      try {
        session = this.#model.createSession(full);
        await session.ready();
        return { session, cached: none };
      } catch (e) {
        session?.dispose();
        if (!(e instanceof GpuError)) throw e;
        this.#fullFailed = true; // do not try (and fail) again every turn
      }
    }
    return { session: this.#model.createSession(maxTokens), cached: none };
  }

  /**
   * What {@link take} would find for `prompt`, without taking anything: the prompt tokens (and
   * images among them) the kept session holds, if it can serve a request of `maxTokens`. The
   * caller encodes only the images after them before it takes the session, so the vision tower
   * never runs beside a newly allocated whole-context cache.
   */
  peek(prompt: TokenHistory, maxTokens: number): { tokens: number; images: number } {
    const old = this.#session;
    if (!old || old.disposed || old.maxTokens < maxTokens) return { tokens: 0, images: 0 };
    return reusablePrefix(this.#held, prompt, this.#model.config.imageTokenId);
  }

  /**
   * Keeps `session` for the next prompt; `held` is what its rows [0, held.ids.length) hold (ids
   * past what was written must not be listed). Frees the session kept before, if another.
   */
  keep(session: Session, held: TokenHistory): void {
    if (this.#session !== session) this.#session?.dispose();
    if (this.#closed || session.disposed || held.ids.length === 0) {
      session.dispose();
      this.#session = undefined;
      return;
    }
    this.#session = session;
    this.#held = { ids: Array.from(held.ids), images: [...held.images] };
  }

  /**
   * Frees the kept session and keeps none from now on (a generation still running when its
   * pipeline is disposed then frees its own).
   */
  close(): void {
    this.#closed = true;
    this.clear();
  }

  /** Frees the kept session. */
  clear(): void {
    this.#session?.dispose();
    this.#session = undefined;
    this.#held = { ids: [], images: [] };
  }
}
