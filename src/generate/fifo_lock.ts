/**
 * A first-come first-served lock: one generation at a time per pipeline (the GPU runs one decode
 * loop well; two interleaved would each run at half speed and hold two KV caches).
 * @module
 */

/**
 * Hands the lock out in the order `acquire()` was called.
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
  #tail: Promise<void> = Promise.resolve();
  #waiting = 0;

  /** Callers queued or holding the lock. */
  get pending(): number {
    return this.#waiting;
  }

  /**
   * Waits for the lock; resolves to the function that releases it (call it exactly once).
   * Rejects with the signal's reason if `signal` aborts while waiting (the queue moves on).
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const prev = this.#tail;
    this.#tail = prev.then(() => mine);
    this.#waiting++;
    let released = false;
    const done = () => {
      if (released) return;
      released = true;
      this.#waiting--;
      release();
    };
    if (!signal) return prev.then(() => done);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        // Give our turn away as soon as it comes; the caller never holds the lock.
        prev.then(done);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      prev.then(() => {
        if (signal.aborted) return;
        signal.removeEventListener("abort", onAbort);
        resolve(done);
      });
    });
  }
}
