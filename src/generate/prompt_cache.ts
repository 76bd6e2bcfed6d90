/**
 * The prompt cache: the KV cache of the last generation, kept so that the next prompt that starts
 * the same way — the next turn of a chat, which repeats the conversation so far, or the same
 * question asked again — runs only its new tokens through prefill, and skips the vision tower for
 * the images already in the cache. What llama.cpp's server (`cache_prompt`), Ollama and vLLM's
 * prefix caching do; one slot by default, like llama.cpp's, or several conversations (its
 * `--parallel` slots) each continued from its own session.
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
import { GpuError, InvalidInputError } from "../errors.ts";
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
 * `next.ids.length − 2`: prefill runs two tokens at least, one to give the next logits and one more
 * so that they come from the prefill's GEMMs as an uncached prompt's do — a one-token chunk takes
 * the decode GEMV, whose q4 int8 activations are rounded differently (a q4 prompt asked again
 * answered differently with the cache than without).
 * @returns the reusable tokens and the images among them
 */
export function reusablePrefix(
  held: TokenHistory,
  next: TokenHistory,
  padIds: number | readonly number[],
): { tokens: number; images: number } {
  const pads = new Set(typeof padIds === "number" ? [padIds] : padIds);
  const limit = Math.min(held.ids.length, next.ids.length - 2);
  let n = 0;
  while (n < limit && held.ids[n] === next.ids[n]) n++;
  // Walk next's images in order (image k is the k-th run of counts[k] pads; two images may touch).
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (!pads.has(next.ids[i])) continue;
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

/** A kept session and the history its KV rows hold. */
interface Slot {
  session: Session;
  held: TokenHistory;
}

/**
 * Kept sessions — one by default, `slots` conversations at most — and the history each one's KV
 * rows hold. Not thread-safe on its own: the pipeline calls it under its one-generation-at-a-time
 * lock.
 */
export class PromptCache {
  readonly #model: Qwen2VLModel;
  /** Least recently kept first. */
  #slots: Slot[] = [];
  /** Sessions kept at most: the option, lowered when the device refused one more. */
  #capacity: number;
  #closed = false;
  /** A whole-context session failed to allocate once: sessions take each request's size. */
  #fullFailed = false;

  /**
   * @param options.slots conversations kept at most (default 1), each a KV cache for the model's
   *   whole context: a prompt continues the kept session it extends (see {@link peek}), and one
   *   that extends none takes a new session while there is room, else the least recently used one
   * @throws InvalidInputError for slots not a positive integer
   */
  constructor(model: Qwen2VLModel, options: { slots?: number } = {}) {
    const slots = options.slots ?? 1;
    if (!Number.isInteger(slots) || slots < 1) {
      throw new InvalidInputError(
        `prompt cache slots must be a positive integer (conversations kept), got ${slots}`,
      );
    }
    this.#model = model;
    this.#capacity = slots;
  }

  /** Tokens the most recently kept session holds (0 when none is kept). */
  get heldTokens(): number {
    return this.#slots.at(-1)?.held.ids.length ?? 0;
  }

  /** Sessions kept now. */
  get heldSessions(): number {
    return this.#slots.length;
  }

  /**
   * A session of at least `maxTokens` for `prompt`, and how much of the prompt its rows already
   * hold: the kept session the prompt continues (see {@link peek}); else a new one for the model's
   * whole context (maxContext) while fewer than `slots` are kept — the memory load() planned for
   * the first (estimateMemory at maxContext), and a conversation never outgrows it — or the least
   * recently kept session, reusing what its rows share with the prompt. Where the device cannot
   * hold a whole-context session: no more sessions (the least recently kept one serves, from row
   * 0), or, with none kept, a session of `maxTokens` (its allocation error, if that fails too,
   * surfaces in prefill). The session is the caller's until it gives it back with {@link keep} or
   * disposes it.
   */
  async take(prompt: TokenHistory, maxTokens: number): Promise<CacheHit> {
    const chosen = this.#choose(prompt, maxTokens);
    if (chosen) {
      return { session: this.#slots.splice(chosen.index, 1)[0].session, cached: chosen.cached };
    }
    const none = { tokens: 0, images: 0 };
    // At capacity with no kept session large enough: the least recent one's memory is freed.
    if (this.#slots.length >= this.#capacity) this.#slots.shift()?.session.dispose();
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
        // Do not try (and fail) again every turn: with sessions kept, keep no more than these;
        // with none, sessions take each request's size.
        if (this.#slots.length === 0) {
          this.#fullFailed = true;
        } else {
          this.#capacity = this.#slots.length;
          const i = this.#leastRecent(maxTokens);
          if (i >= 0) return { session: this.#slots.splice(i, 1)[0].session, cached: none };
        }
      }
    }
    return { session: this.#model.createSession(maxTokens), cached: none };
  }

  /**
   * What {@link take} would find for `prompt`, without taking anything: the prompt tokens (and
   * images among them) of the kept session it would take. That is the one of at least `maxTokens`
   * whose rows the prompt continues — sharing at least half of what they hold, or holding all of
   * the prompt (the same question again, after a long answer), the most such (a
   * later turn of its conversation, not another that shares only a system prompt, which would
   * overwrite it: llama.cpp's server likewise reuses a slot only for a prompt similar enough) —
   * or, with `slots` sessions kept and none continued, the least recently kept one, whatever it
   * shares. The caller encodes only the images after them before it takes the session, so the
   * vision tower never runs beside a newly allocated whole-context cache.
   */
  peek(prompt: TokenHistory, maxTokens: number): { tokens: number; images: number } {
    return this.#choose(prompt, maxTokens)?.cached ?? { tokens: 0, images: 0 };
  }

  /** The kept session {@link take} takes for `prompt` (undefined: a new one). */
  #choose(prompt: TokenHistory, maxTokens: number) {
    this.#slots = this.#slots.filter((s) => !s.session.disposed);
    const c = this.#model.config;
    const prefix = (s: Slot) => reusablePrefix(s.held, prompt, [c.imageTokenId, c.videoTokenId]);
    let best: { index: number; cached: { tokens: number; images: number } } | undefined;
    this.#slots.forEach((slot, index) => {
      if (slot.session.maxTokens < maxTokens) return;
      const cached = prefix(slot);
      // Half of what it holds, or all of the prompt (the same question again, whose earlier answer
      // may be longer than the question: rows the conversation would recompute otherwise).
      const contained = prompt.ids.length <= slot.held.ids.length &&
        Array.prototype.every.call(
          prompt.ids,
          (id: number, i: number) => slot.held.ids[i] === id,
        ) &&
        cached.tokens >= prompt.ids.length - 2;
      if (cached.tokens === 0 || (2 * cached.tokens < slot.held.ids.length && !contained)) return;
      if (!best || cached.tokens >= best.cached.tokens) best = { index, cached };
    });
    if (best || this.#slots.length < this.#capacity) return best;
    const index = this.#leastRecent(maxTokens);
    return index >= 0 ? { index, cached: prefix(this.#slots[index]) } : undefined;
  }

  /** The least recently kept session of at least `maxTokens` (its index; −1 when none is). */
  #leastRecent(maxTokens: number): number {
    return this.#slots.findIndex((s) => s.session.maxTokens >= maxTokens);
  }

  /**
   * Keeps `session` for later prompts as the most recent; `held` is what its rows
   * [0, held.ids.length) hold (ids past what was written must not be listed). Frees the least
   * recently kept sessions beyond `slots`.
   */
  keep(session: Session, held: TokenHistory): void {
    this.#slots = this.#slots.filter((s) => s.session !== session);
    if (this.#closed || session.disposed || held.ids.length === 0) {
      session.dispose();
      return;
    }
    this.#slots.push({ session, held: { ids: Array.from(held.ids), images: [...held.images] } });
    while (this.#slots.length > this.#capacity) this.#slots.shift()!.session.dispose();
  }

  /**
   * Frees the kept sessions and keeps none from now on (a generation still running when its
   * pipeline is disposed then frees its own).
   */
  close(): void {
    this.#closed = true;
    this.clear();
  }

  /** Frees the kept sessions. */
  clear(): void {
    for (const s of this.#slots) s.session.dispose();
    this.#slots = [];
  }
}
