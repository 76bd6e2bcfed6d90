/**
 * A FIFO queue in front of the engine: as many generations run at once as the engine runs
 * (ChatEngine.parallel; one by default: the GPU is saturated by one decode loop), the others wait
 * their turn in arrival order, and once `maxWaiting` requests wait, new ones are turned away
 * instead of piling up.
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

/** Lets generations run, `places()` at once, in arrival order. */
export class GenerationQueue {
  #waiters: Waiter[] = [];
  #running = 0;

  /**
   * @param maxWaiting requests allowed to wait while the places are taken; more are refused.
   * @param places generations that run at once (read at each turn: the engine says once loaded;
   *   call {@link admit} when it grows)
   */
  constructor(readonly maxWaiting: number, readonly places: () => number = () => 1) {}

  /** Requests waiting (not counting those running). */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** True when {@link enter} would turn a request away now. */
  get full(): boolean {
    return !this.#room() && this.#waiters.length >= this.maxWaiting;
  }

  /** Generations holding the engine. */
  get running(): number {
    return this.#running;
  }

  /** True when a request entering now would run at once. */
  get free(): boolean {
    return this.#room() && this.#waiters.length === 0;
  }

  /** Grants the turns that {@link places} has room for now (after it grew). */
  admit(): void {
    while (this.#waiters.length && this.#room()) this.#waiters.shift()!.grant();
  }

  #room(): boolean {
    return this.#running < Math.max(1, this.places());
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
        this.#running++;
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
        this.#running--;
        this.admit();
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
    } else if (this.free) {
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
