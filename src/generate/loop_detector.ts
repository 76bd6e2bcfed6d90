/**
 * Detects a generation stuck in a loop: the newest tokens repeat one block of tokens over and
 * over. QVQ's model card warns that its long reasoning can fall into such endless loops.
 *
 * The rule. Let the tail of period p be the longest suffix of the generated ids in which every
 * token equals the token p positions before it (so it is `block block block …` with |block| = p,
 * the last copy possibly cut short). A loop is reported when, for some p in [1, maxPeriod], that
 * tail spans at least `minRepeats` full blocks AND at least `minTokens` tokens. The second
 * condition keeps legitimate short repetitions alive: "!!!", "...", a markdown rule `-----`,
 * `0, 0, 0, 0` in a small matrix all fall below 64 tokens; a 40-token sentence must come back
 * three times in a row (120 tokens) before it counts. With the defaults a single repeated token
 * needs 64 copies, a 10-token phrase 64 tokens of itself (6.4 copies), a 200-token paragraph
 * 3 copies.
 *
 * Cost: O(maxPeriod) per token — for each p we keep the length of the current run of positions
 * i with ids[i] == ids[i - p]; the tail of period p is that run plus p.
 * @module
 */

/** Tuning of {@link LoopDetector}. */
export interface LoopDetectorOptions {
  /** Longest repeated block looked for, in tokens. Default 256. */
  maxPeriod?: number;
  /** Full copies of the block required. Default 3. */
  minRepeats?: number;
  /** Tokens the repetitive tail must span. Default 64. */
  minTokens?: number;
}

/** A loop found by {@link LoopDetector.push}. */
export interface LoopFound {
  /** Length of the repeated block in tokens (the smallest period that qualifies). */
  period: number;
  /** Tokens in the repetitive tail. */
  span: number;
}

/**
 * Feed it every generated id in order; it says when the tail is a loop.
 *
 * @example
 * ```ts
 * import { LoopDetector } from "./loop_detector.ts";
 * const d = new LoopDetector({ minTokens: 6 });
 * const hits = [1, 2, 1, 2, 1, 2].map((id) => d.push(id));
 * console.assert(hits[5]?.period === 2);
 * ```
 */
export class LoopDetector {
  readonly maxPeriod: number;
  readonly minRepeats: number;
  readonly minTokens: number;
  /** Ring of the last maxPeriod ids. */
  readonly #ring: Int32Array;
  /** runs[p] = current run of positions whose id equals the id p positions earlier. */
  readonly #runs: Int32Array;
  #count = 0;

  constructor(options: LoopDetectorOptions = {}) {
    this.maxPeriod = options.maxPeriod ?? 256;
    this.minRepeats = options.minRepeats ?? 3;
    this.minTokens = options.minTokens ?? 64;
    if (!(this.maxPeriod >= 1 && this.minRepeats >= 2 && this.minTokens >= 2)) {
      throw new RangeError(`LoopDetector: bad options ${JSON.stringify(options)}`);
    }
    this.#ring = new Int32Array(this.maxPeriod);
    this.#runs = new Int32Array(this.maxPeriod + 1);
  }

  /** Adds the next id; returns the loop if the tail now is one, else null. */
  push(id: number): LoopFound | null {
    const n = this.#count;
    const P = this.maxPeriod;
    let found: LoopFound | null = null;
    for (let p = 1; p <= P; p++) {
      if (p > n) {
        this.#runs[p] = 0;
        continue;
      }
      const prev = this.#ring[(n - p) % P];
      this.#runs[p] = prev === id ? this.#runs[p] + 1 : 0;
      if (found === null) {
        const span = this.#runs[p] + p;
        if (this.#runs[p] > 0 && span >= this.minRepeats * p && span >= this.minTokens) {
          found = { period: p, span };
        }
      }
    }
    this.#ring[n % P] = id;
    this.#count = n + 1;
    return found;
  }

  /** Ids pushed so far. */
  get length(): number {
    return this.#count;
  }
}
