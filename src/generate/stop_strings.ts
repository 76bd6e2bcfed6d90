/**
 * Stop strings over streamed text: emits text as soon as it cannot be the beginning of a stop
 * string, holds back the longest tail that still could be, and cuts at the first stop string.
 * @module
 */

/** What one {@link StopStringFilter.push} releases. */
export interface StopPush {
  /** Text safe to show now (never part of a stop string). */
  text: string;
  /** A stop string was completed: `text` ends right before it; nothing more will be emitted. */
  stopped: boolean;
}

/**
 * Cuts a text stream at the earliest occurrence of any stop string.
 *
 * @example
 * ```ts
 * import { StopStringFilter } from "./stop_strings.ts";
 * const f = new StopStringFilter(["</answer>"]);
 * console.assert(f.push("42 </ans").text === "42 ");
 * console.assert(f.push("wer> more").stopped);
 * ```
 */
export class StopStringFilter {
  readonly #stops: string[];
  /** Text received but not yet emitted: a suffix that is a proper prefix of some stop string. */
  #held = "";
  #stopped = false;
  #matched: string | undefined;

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
  }

  /** Whether a stop string was seen. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** The stop string that stopped the stream (the earliest; of two there, the first listed). */
  get matched(): string | undefined {
    return this.#matched;
  }

  /**
   * Adds text; returns what can be shown now. After a stop, returns "" forever. Not `armed`
   * (vLLM's min_tokens), a stop string completed in it does not stop, but the tail that could
   * begin one is still held: a stop string that ends in a later, armed piece is found.
   */
  push(piece: string, armed = true): StopPush {
    if (this.#stopped) return { text: "", stopped: true };
    const buf = this.#held + piece;
    if (!armed) {
      const keep = this.#partialTail(buf);
      this.#held = buf.slice(buf.length - keep);
      return { text: buf.slice(0, buf.length - keep), stopped: false };
    }
    // The earliest complete stop string that ends in this piece wins: one ending in the held
    // text was found before (or, held unarmed, must not count now).
    let cut = -1;
    for (const s of this.#stops) {
      const i = buf.indexOf(s, Math.max(0, this.#held.length - s.length + 1));
      if (i >= 0 && (cut < 0 || i < cut)) [cut, this.#matched] = [i, s];
    }
    if (cut >= 0) {
      this.#held = "";
      this.#stopped = true;
      return { text: buf.slice(0, cut), stopped: true };
    }
    const keep = this.#partialTail(buf);
    this.#held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** Releases the held-back tail at the end of generation (it never became a stop string). */
  flush(): string {
    const t = this.#stopped ? "" : this.#held;
    this.#held = "";
    return t;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of a stop string. */
  #partialTail(buf: string): number {
    let best = 0;
    for (const s of this.#stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
