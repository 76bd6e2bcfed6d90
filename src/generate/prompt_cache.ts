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

/** What {@link PromptCache.claim} chose for a prompt. */
interface Choice {
  /** The kept session taken (its index in the slots); none: a new one. */
  index?: number;
  /** What that kept session's rows hold. */
  held?: TokenHistory;
  /** Prompt tokens (and images) the claim will hold once opened. */
  cached: { tokens: number; images: number };
  /**
   * Where rows [0, cached.tokens) are copied from on open: a session out with a generation that
   * holds its prompt (see {@link PromptCache.share}), or a claim's prompt on its way into one, whose
   * prefill open waits for — and what the taken kept session held of the prompt without them.
   */
  donor?: {
    session?: Session;
    prefill?: Prefill;
    own: { tokens: number; images: number };
  };
}

/**
 * A claim's prompt on its way into its session's rows: claimed, opened, then prefilled
 * ({@link PromptCache.share}).
 */
interface Prefill {
  readonly held: TokenHistory;
  /** Its session, once the claim is opened. */
  session?: Session;
  /** Resolves with the session once it holds `held` (shared), or undefined once it never will. */
  readonly ready: Promise<Session | undefined>;
  /** Settles `ready` (the first call counts) and forgets the prefill. */
  settle(session: Session | undefined): void;
}

/**
 * A prompt's hold on the cache, taken before its images are encoded ({@link PromptCache.claim}):
 * the kept session it continues (taken out of the cache, so a generation running beside it cannot
 * take it meanwhile) or room for a new one. End it with {@link open} or {@link cancel}.
 */
export interface CacheClaim {
  /** Prompt tokens (and images among them) the claimed session holds; none for a new one. */
  readonly cached: { tokens: number; images: number };
  /**
   * The claimed session, or a new one (see {@link PromptCache.take}): the caller's until it gives
   * it back with {@link PromptCache.keep} or disposes it. Where its rows come from a prompt still
   * prefilling beside it, it waits for that prefill (with `signal` aborted: no longer, and holds
   * what it holds without them).
   */
  open(signal?: AbortSignal): Promise<CacheHit>;
  /**
   * Gives the claim up unopened: a claimed kept session goes back to the cache, holding what it
   * held. Idempotent; does nothing after open().
   */
  cancel(): void;
}

/**
 * Sessions — one by default, `slots` at most, counting those out with generations — and the
 * history each kept one's KV rows hold. Generations running at once (PipelineOptions.parallel)
 * each take a session of their own: a claim takes the kept session out of the cache until it is
 * kept again.
 */
export class PromptCache {
  readonly #model: Qwen2VLModel;
  /** Least recently kept first. */
  #slots: Slot[] = [];
  /** Sessions handed out (opened claims) and not yet kept: disposed ones no longer count. */
  readonly #out = new Set<Session>();
  /** Sessions out whose rows hold a prefilled prompt, which they keep while out ({@link share}). */
  readonly #shared = new Map<Session, TokenHistory>();
  /** Claims' prompts not yet prefilled (nor given up). */
  readonly #prefills = new Set<Prefill>();
  /** Claims whose session is not yet out (opening ones too) nor cancelled: each holds room. */
  #claims = 0;
  /** Sessions at most, kept and out: the option, lowered when the device refused one more. */
  #capacity: number;
  #closed = false;
  /** A whole-context session failed to allocate once: sessions take each request's size. */
  #fullFailed = false;

  /**
   * @param options.slots sessions at most (default 1), each a KV cache for the model's whole
   *   context: a prompt continues the kept session it extends (see {@link peek}), and one that
   *   extends none takes a new session while there is room, else the least recently used one
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

  /** Sessions out with generations (opened, not yet kept or freed). */
  get sessionsOut(): number {
    for (const s of this.#out) if (s.disposed) this.#out.delete(s);
    return this.#out.size;
  }

  /**
   * A session of at least `maxTokens` for `prompt`, and how much of the prompt its rows already
   * hold: {@link claim} and {@link CacheClaim.open} at once.
   */
  take(prompt: TokenHistory, maxTokens: number): Promise<CacheHit> {
    return this.claim(prompt, maxTokens).open();
  }

  /**
   * Claims for `prompt` the kept session of at least `maxTokens` it continues (see {@link peek}),
   * taking it out of the cache; else room for a new one, for the model's whole context
   * (maxContext), while fewer than `slots` sessions are kept or out — the memory load() planned
   * for the first (estimateMemory at maxContext), and a conversation never outgrows it — or the
   * least recently kept session, reusing what its rows share with the prompt (with none large
   * enough, the least recent one's memory is freed for the new one). The session itself is made
   * by {@link CacheClaim.open}, after the caller has encoded the images the cache does not hold:
   * the vision tower never runs beside a newly allocated whole-context cache. Where the device
   * cannot hold a whole-context session: no more sessions (a kept one serves, from row 0), or,
   * with none kept, a session of `maxTokens` (its allocation error, if that fails too, surfaces
   * in prefill). Rows of another generation's prompt are copied in where they serve more (see
   * {@link share}), unless `options.copy` is false (a prompt to be scored, which runs whole).
   */
  claim(
    prompt: TokenHistory,
    maxTokens: number,
    options: { copy?: boolean } = {},
  ): CacheClaim {
    const none = { tokens: 0, images: 0 };
    const chosen = this.#choose(prompt, maxTokens, options.copy ?? true);
    let session = chosen?.index !== undefined
      ? this.#slots.splice(chosen.index, 1)[0].session
      : undefined;
    // At capacity with no kept session large enough: the least recent one's memory is freed.
    if (!session && this.#total() >= this.#capacity) this.#slots.shift()?.session.dispose();
    // Still none: every session is out with a generation (slots lowered below `parallel` by a
    // device that refused one more) — one of this request's size, not kept beyond the slots.
    const whole = this.#total() < this.#capacity;
    this.#claims++;
    const mine = this.#prefill(prompt);
    let state: "claimed" | "opening" | "opened" | "cancelled" = "claimed";
    const hand = (s: Session, cached: { tokens: number; images: number }) => {
      mine.session = s;
      s.whenDisposed.then(() => mine.settle(undefined));
      return this.#handOut(s, cached);
    };
    return {
      cached: chosen?.cached ?? none,
      open: async (signal?: AbortSignal) => {
        if (state !== "claimed") {
          throw new InvalidInputError("PromptCache: this claim was already opened or cancelled");
        }
        state = "opening";
        // The claim holds its room until the session is out (counted there): a new session's
        // allocation is awaited, and a claim or keep() beside it meanwhile must see the room taken.
        try {
          const donor = chosen?.donor;
          if (!donor) {
            if (session) return hand(session, chosen!.cached);
            session = await this.#create(maxTokens, whole);
            return hand(session, none);
          }
          const from = donor.session ?? await settled(donor.prefill!.ready, signal);
          // The donor's rows, copied at once (synchronously: it cannot be kept and its rows
          // rewritten by another claim meanwhile) — where it still holds them.
          const copy = (s: Session) => {
            const held = from && !from.disposed ? this.#shared.get(from) : undefined;
            const ok = held !== undefined &&
              reusablePrefix(held, prompt, this.#pads()).tokens >= chosen!.cached.tokens;
            if (ok) s.copyRows(from!, chosen!.cached.tokens);
            return ok;
          };
          if (session) return hand(session, copy(session) ? chosen!.cached : donor.own);
          let copied = false;
          session = await this.#create(maxTokens, whole, (s) => copied = copy(s));
          return hand(session, copied ? chosen!.cached : none);
        } catch (e) {
          mine.settle(undefined);
          throw e;
        } finally {
          state = "opened";
          this.#claims--;
        }
      },
      cancel: () => {
        if (state !== "claimed") return;
        state = "cancelled";
        this.#claims--;
        mine.settle(undefined);
        if (session) this.#return(session, chosen!.held!);
      },
    };
  }

  /** A claim's prompt, registered until it is prefilled or given up ({@link Prefill}). */
  #prefill(prompt: TokenHistory): Prefill {
    const { promise, resolve } = Promise.withResolvers<Session | undefined>();
    const p: Prefill = {
      held: prompt,
      ready: promise,
      settle: (session) => {
        this.#prefills.delete(p);
        resolve(session);
      },
    };
    this.#prefills.add(p);
    return p;
  }

  /** The model's image and video pad ids. */
  #pads(): number[] {
    const c = this.#model.config;
    return [c.imageTokenId, c.videoTokenId];
  }

  /**
   * A new session for `maxTokens`: `whole`, the whole context where it fits (see {@link claim}).
   * `made` is called with each new session as soon as it is made (before its allocation is known
   * to have worked); a kept session taken instead is not passed to it.
   */
  async #create(
    maxTokens: number,
    whole: boolean,
    made: (s: Session) => void = () => {},
  ): Promise<Session> {
    const full = Math.max(maxTokens, this.#model.maxContext);
    if (whole && full > maxTokens && !this.#fullFailed) {
      let session: Session | undefined;
      try {
        session = this.#model.createSession(full);
        made(session);
        await session.ready();
        return session;
      } catch (e) {
        session?.dispose();
        if (!(e instanceof GpuError)) throw e;
        // Do not try (and fail) again every turn: with sessions kept or out, keep no more than
        // these; with none, sessions take each request's size.
        const others = this.#slots.length + this.sessionsOut;
        if (others === 0) {
          this.#fullFailed = true;
        } else {
          this.#capacity = Math.max(1, others);
          const i = this.#leastRecent(maxTokens);
          if (i >= 0) return this.#slots.splice(i, 1)[0].session;
        }
      }
    }
    const session = this.#model.createSession(maxTokens);
    made(session);
    return session;
  }

  #handOut(session: Session, cached: { tokens: number; images: number }): CacheHit {
    this.#out.add(session);
    return { session, cached };
  }

  /** Sessions kept, out, and claimed. */
  #total(): number {
    return this.#slots.length + this.sessionsOut + this.#claims;
  }

  /**
   * What {@link take} would find for `prompt`, without taking anything: the prompt tokens (and
   * images among them) of the kept session it would take. That is the one of at least `maxTokens`
   * whose rows the prompt continues — sharing at least half of what they hold, or holding all of
   * the prompt (the same question again, after a long answer), the most such (a
   * later turn of its conversation, not another that shares only a system prompt, which would
   * overwrite it: llama.cpp's server likewise reuses a slot only for a prompt similar enough) —
   * or, with `slots` sessions kept or out and none continued, the least recently kept one,
   * whatever it shares.
   */
  peek(prompt: TokenHistory, maxTokens: number): { tokens: number; images: number } {
    return this.#choose(prompt, maxTokens, true)?.cached ?? { tokens: 0, images: 0 };
  }

  /**
   * The kept session {@link claim} takes for `prompt` (undefined: a new one), and a session out
   * with a generation whose prefilled prompt shares more of this one than it (see {@link share}),
   * to copy from.
   */
  #choose(prompt: TokenHistory, maxTokens: number, copy: boolean): Choice | undefined {
    this.#slots = this.#slots.filter((s) => !s.session.disposed);
    const pads = this.#pads();
    const prefix = (s: Slot) => reusablePrefix(s.held, prompt, pads);
    let best: Choice | undefined;
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
      if (!best || cached.tokens >= best.cached.tokens) best = { index, held: slot.held, cached };
    });
    let taken = best;
    if (!taken && this.#total() >= this.#capacity) {
      const index = this.#leastRecent(maxTokens);
      const slot = this.#slots[index];
      if (slot) taken = { index, held: slot.held, cached: prefix(slot) };
    }
    // Whatever it takes, a running generation's rows may serve more of the prompt, or those of a
    // prompt prefilling now where this one shares at least half of it (it waits for that prefill,
    // which runs on the GPU before its own would anyway). Only where they hold all of its images:
    // the vision tower then does not run beside a new session (claim()'s memory plan), and the
    // copy never waits for it.
    const own = taken?.cached ?? { tokens: 0, images: 0 };
    if (!copy) return taken;
    let donor: Choice["donor"], cached = own;
    for (const [session, held] of this.#shared) {
      if (session.disposed) {
        this.#shared.delete(session);
        continue;
      }
      const p = reusablePrefix(held, prompt, pads);
      if (p.tokens > cached.tokens && p.images === prompt.images.length) {
        donor = { session, own };
        cached = p;
      }
    }
    for (const prefill of this.#prefills) {
      if (prefill.session?.disposed) continue;
      const p = reusablePrefix(prefill.held, prompt, pads);
      if (
        p.tokens > cached.tokens && p.images === prompt.images.length &&
        2 * p.tokens >= prefill.held.ids.length
      ) {
        donor = { prefill, own };
        cached = p;
      }
    }
    return donor ? { ...taken, cached, donor } : taken;
  }

  /** The least recently kept session of at least `maxTokens` (its index; −1 when none is). */
  #leastRecent(maxTokens: number): number {
    return this.#slots.findIndex((s) => s.session.maxTokens >= maxTokens);
  }

  /** A claimed kept session back as the most recent, holding what it held. */
  #return(session: Session, held: TokenHistory): void {
    if (this.#closed || session.disposed) return session.dispose();
    this.#slots.push({ session, held });
  }

  /**
   * Keeps `session` for later prompts as the most recent; `held` is what its rows
   * [0, held.ids.length) hold (ids past what was written must not be listed). Frees the least
   * recently kept sessions beyond `slots`.
   */
  keep(session: Session, held: TokenHistory): void {
    this.#out.delete(session);
    this.#shared.delete(session);
    for (const p of this.#prefills) if (p.session === session) p.settle(undefined);
    this.#slots = this.#slots.filter((s) => s.session !== session);
    if (this.#closed || session.disposed || held.ids.length === 0) {
      session.dispose();
      return;
    }
    this.#slots.push({ session, held: { ids: Array.from(held.ids), images: [...held.images] } });
    // Sessions out with generations running beside this one count too.
    while (this.#slots.length && this.#total() > this.#capacity) {
      this.#slots.shift()!.session.dispose();
    }
  }

  /**
   * Says that `session`, out with a generation ({@link CacheClaim.open}), has prefilled the prompt
   * `held` — rows [0, held.ids.length) of its KV cache, which it does not rewrite while out (its
   * decode steps write the rows after them). Until it is kept, a prompt that shares more of it
   * (all of its images among it) than the session its claim takes holds gets those rows copied in
   * ({@link Session.copyRows}); a claim made while the prompt is still on its way (claimed, its
   * images encoding, prefilling) and sharing at least half of it waits for this call — or for the
   * generation's end without it (kept, disposed, its claim cancelled). So the prompt of `n`
   * choices, or the same question asked several times at once, is encoded and prefilled once:
   * vLLM's prefix sharing between running requests.
   */
  share(session: Session, held: TokenHistory): void {
    if (!this.#out.has(session) || session.disposed || this.#closed) return;
    this.#shared.set(session, { ids: Array.from(held.ids), images: [...held.images] });
    for (const p of this.#prefills) if (p.session === session) p.settle(session);
  }

  /**
   * Frees the kept sessions and keeps none from now on (a generation still running when its
   * pipeline is disposed then frees its own).
   */
  close(): void {
    this.#closed = true;
    this.#shared.clear();
    for (const p of this.#prefills) p.settle(undefined);
    this.clear();
  }

  /** Frees the kept sessions. */
  clear(): void {
    for (const s of this.#slots) s.session.dispose();
    this.#slots = [];
  }
}

/** `ready`'s value, or undefined as soon as `signal` aborts. */
function settled<T>(ready: Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
  if (!signal) return ready;
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const gone = () => resolve(undefined);
    signal.addEventListener("abort", gone, { once: true });
    ready.then((v) => {
      signal.removeEventListener("abort", gone);
      resolve(v);
    });
  });
}
