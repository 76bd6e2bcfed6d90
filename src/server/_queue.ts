/**
 * A FIFO queue in front of the engine: one generation runs at a time (the GPU holds one KV cache
 * and is saturated by one decode loop), the others wait their turn in arrival order, and once
 * `maxWaiting` requests wait, new ones are turned away instead of piling up.
 * @module
 */

/** A place in the queue. */
export interface Ticket {
  /** Resolves when it is this request's turn; rejects with the signal's reason if it aborts first. */
  readonly ready: Promise<void>;
  /** Requests ahead of this one (0 once it runs). */
  position(): number;
  /** Gives the turn to the next request (or leaves the queue if still waiting). Idempotent. */
  release(): void;
}

interface Waiter {
  grant(): void;
}

/** Serialises generations in arrival order. */
export class GenerationQueue {
  #waiters: Waiter[] = [];
  #running = false;

  /** @param maxWaiting requests allowed to wait while one runs; more are refused. */
  constructor(readonly maxWaiting: number) {}

  /** Requests waiting (not counting the running one). */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** True when {@link enter} would turn a request away now. */
  get full(): boolean {
    return this.#running && this.#waiters.length >= this.maxWaiting;
  }

  /** True while a generation holds the engine. */
  get running(): boolean {
    return this.#running;
  }

  /**
   * Takes a place synchronously, so a full queue is known before a response starts; undefined when
   * the queue is full. The caller must `release()` the ticket when done, whatever happens.
   */
  enter(signal?: AbortSignal): Ticket | undefined {
    if (this.full) return undefined;
    let state: "waiting" | "running" | "done" = "waiting";
    let resolve!: () => void, reject!: (reason: unknown) => void;
    const ready = new Promise<void>((res, rej) => (resolve = res, reject = rej));
    const waiter: Waiter = {
      grant: () => {
        state = "running";
        this.#running = true;
        signal?.removeEventListener("abort", onAbort);
        resolve();
      },
    };
    const leave = () => {
      const i = this.#waiters.indexOf(waiter);
      if (i >= 0) this.#waiters.splice(i, 1);
    };
    const onAbort = () => {
      if (state !== "waiting") return;
      state = "done";
      leave();
      reject(signal!.reason);
    };
    const release = () => {
      if (state === "running") {
        state = "done";
        this.#running = false;
        this.#waiters.shift()?.grant();
      } else if (state === "waiting") {
        state = "done";
        leave();
        signal?.removeEventListener("abort", onAbort);
        reject(new Error("left the queue"));
      }
    };
    // A rejection nobody awaits (released while waiting) must not crash the process.
    ready.catch(() => {});
    if (signal?.aborted) {
      state = "done";
      reject(signal.reason);
    } else if (!this.#running) {
      waiter.grant();
    } else {
      this.#waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    }
    return {
      ready,
      position: () => (state === "waiting" ? this.#waiters.indexOf(waiter) + 1 : 0),
      release,
    };
  }
}
