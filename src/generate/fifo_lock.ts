/**
 * A first-come first-served lock with a number of places: the generations a pipeline runs at once
 * (PipelineOptions.parallel; one by default — the GPU runs one decode loop well, and two
 * interleaved each run at about half speed, each with a KV cache of its own).
 * @module
 */

/** A caller in line: the places it needs, and how it is let in. */
interface Waiter {
  need: number;
  grant(): void;
}

/**
 * Hands out `places` places in the order `acquire()` was called: a caller waits while those ahead
 * of it do (one that needs every place, {@link FifoLock.acquire}'s `all`, waits for the places
 * to empty, and those behind it wait for it).
 *
 * @example
 * ```ts
 * import { FifoLock } from "./fifo_lock.ts";
 * const lock = new FifoLock();
 * const release = await lock.acquire();
 * try {
 *   // … use the GPU …
 * } finally {
 *   release();
 * }
 * ```
 */
export class FifoLock {
  /** Callers let in at once. */
  readonly places: number;
  /** Places held now. */
  #taken = 0;
  /** Callers holding places. */
  #holders = 0;
  /** Callers waiting, in call order. */
  #line: Waiter[] = [];

  /** @param places callers let in at once (a whole number ≥ 1; default 1) */
  constructor(places = 1) {
    if (!Number.isInteger(places) || places < 1) {
      throw new RangeError(`FifoLock: places must be a whole number ≥ 1, got ${places}`);
    }
    this.places = places;
  }

  /** Callers queued or holding a place. */
  get pending(): number {
    return this.#holders + this.#line.length;
  }

  /** Callers holding a place. */
  get holders(): number {
    return this.#holders;
  }

  /**
   * Waits for a place (with `all`: for every place, the others empty); resolves to the function
   * that gives it back (call it once; later calls do nothing). Rejects with the signal's reason
   * if `signal` aborts while waiting (the line moves on).
   */
  acquire(signal?: AbortSignal, options: { all?: boolean } = {}): Promise<() => void> {
    const need = options.all ? this.places : 1;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      let given = false;
      const release = () => {
        if (given) return;
        given = true;
        this.#taken -= need;
        this.#holders--;
        this.#admit();
      };
      const waiter: Waiter = {
        need,
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          this.#taken += need;
          this.#holders++;
          resolve(release);
        },
      };
      const onAbort = () => {
        const i = this.#line.indexOf(waiter);
        if (i < 0) return;
        this.#line.splice(i, 1);
        reject(signal!.reason);
        this.#admit(); // a caller behind it may fit now
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#line.push(waiter);
      this.#admit();
    });
  }

  /** Lets in the callers at the head of the line, in order, while their places are free. */
  #admit(): void {
    while (this.#line.length && this.#line[0].need <= this.places - this.#taken) {
      this.#line.shift()!.grant();
    }
  }
}
