/**
 * Compiles responseFormat automata on a thread of their own (src/server/_format_worker.ts), for
 * the engine's worker: there a long compile (a pattern-heavy schema: seconds) would hold the decode
 * loops of the generations running — and with `parallel`, several run. The compiled DFA (or the
 * refusal) lands in the cache the options read (src/generate/options.ts precompileFormat), so the
 * engine resolves the request's options at once.
 * @module
 */
import type { CompiledFormat, FormatJob } from "../generate/options.ts";

/**
 * One compiling thread, started by {@link FormatCompiler.start} or on first use; compiles queue on
 * it in order.
 */
export class FormatCompiler {
  #worker: Worker | undefined;
  #next = 0;
  readonly #waiting = new Map<number, (done: CompiledFormat) => void>();
  #closed = false;

  /** Compiles `job` on the thread; rejects once closed, or if the thread fails. */
  compile = (job: FormatJob): Promise<CompiledFormat> => {
    if (this.#closed) return Promise.reject(new Error("the format compiler was closed"));
    const worker = this.#worker ??= this.#start();
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      worker.postMessage({ id, job });
    });
  };

  /**
   * Starts the thread now, so the first compile does not wait for it: one started from a worker's
   * thread (the engine's) takes ~1 s to run its first job in Deno 2.9.6, where a small schema
   * compiles in a millisecond. Nothing once closed, or where it runs already.
   */
  start(): void {
    if (!this.#closed) this.#worker ??= this.#start();
  }

  /** Compiles waiting. */
  get pending(): number {
    return this.#waiting.size;
  }

  /** Ends the thread; compiles waiting end as failed (their formats compile where resolved). */
  close(): void {
    this.#closed = true;
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#failAll("the format compiler was closed");
  }

  #start(): Worker {
    const worker = new Worker(new URL("./_format_worker.ts", import.meta.url).href, {
      type: "module",
    });
    worker.onmessage = (e: MessageEvent<{ id: number } & CompiledFormat>) => {
      const { id, ...done } = e.data;
      const resolve = this.#waiting.get(id);
      this.#waiting.delete(id);
      resolve?.(done as CompiledFormat);
    };
    // A thread that failed (a bug, out of memory): what waited compiles where it is resolved; the
    // next compile starts a new thread.
    worker.onerror = (e) => {
      e.preventDefault();
      worker.terminate();
      if (this.#worker === worker) this.#worker = undefined;
      this.#failAll(`the format compiler failed: ${e.message}`);
    };
    return worker;
  }

  #failAll(message: string): void {
    for (const resolve of this.#waiting.values()) {
      resolve({ error: { name: "Error", message } });
    }
    this.#waiting.clear();
  }
}
