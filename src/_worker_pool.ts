/**
 * A pool of node:worker_threads workers that run wasm image work off the calling thread: the
 * server's image decoder (src/server/_decoder.ts) and the frame pool that resizes a video's frames
 * (src/_frame_pool.ts). Each worker starts when it is first needed, does not keep the process alive
 * while it has nothing to do (it is unref'd when idle), is replaced when it fails, takes too long
 * or its wasm memory — which never shrinks — grew past a bound, and {@link WorkerPool.close} ends
 * them. node:worker_threads rather than Web Workers for `unref()`: an idle Web Worker keeps a Deno
 * process alive (Deno 2.9.6). It is looked up at run time (`process.getBuiltinModule`), not
 * imported, so that a browser bundle of the modules that use a pool still builds; where there is
 * none {@link workerThreads} says so and they run on their own thread.
 * @module
 */
import type * as threads from "node:worker_threads";
import { ContextLengthError, InvalidInputError, ModelFileError } from "./errors.ts";
import { wasm } from "./_wasm.ts";

/** node:worker_threads where the runtime has it (Deno, Node), else undefined (a browser). */
export function workerThreads(): typeof threads | undefined {
  const process = (globalThis as { process?: { getBuiltinModule?(id: string): unknown } }).process;
  return process?.getBuiltinModule?.("node:worker_threads") as typeof threads | undefined;
}

/**
 * Whether this process may start a worker from `module`: Deno reads a file: module with the
 * program's read permission, and imports an http(s) one with its import permission (checked
 * where Deno can tell; elsewhere assumed). A pool that could not would fail every job.
 */
export function canStartWorker(module: URL): boolean {
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (!deno) return true;
  try {
    const state = module.protocol === "file:"
      ? deno.permissions.querySync({ name: "read", path: module }).state
      : deno.permissions.querySync({ name: "import", host: module.host }).state;
    return state === "granted";
  } catch {
    return true; // a descriptor this Deno does not know
  }
}

/**
 * What a worker answers: under the request's `id`, with its wasm memory in bytes (the pool
 * retires a worker that a large image grew).
 */
export interface WorkerAnswer {
  id: number;
  memoryBytes: number;
}

/** An error sent across threads: its class name and message. */
export interface SentError {
  name: string;
  message: string;
}

const ERRORS: Record<string, new (message: string) => Error> = {
  InvalidInputError,
  ModelFileError,
  ContextLengthError,
};

/** `e` as a worker sends it. */
export function sendError(e: unknown): SentError {
  const error = e instanceof Error ? e : new Error(String(e));
  return { name: error.name, message: error.message };
}

/** The error a worker sent, as qvq's class of its name (InvalidInputError, …), else an Error. */
export function receivedError({ name, message }: SentError): Error {
  const cls = ERRORS[name];
  return cls ? new cls(message) : Object.assign(new Error(message), { name });
}

/** The wasm instance's memory in a worker now (0 before a first call loaded it). */
export function wasmMemoryBytes(): number {
  try {
    return (wasm.stMemory() as WebAssembly.Memory).buffer.byteLength;
  } catch {
    return 0;
  }
}

/**
 * Bytes copied in one turn of the event loop by {@link copySliced}: a 4032 × 3024 photo's 36 MB
 * of pixels held the thread 25–30 ms copied in one piece on the 2-core VM (the new memory's first
 * touch, mostly), 4 MiB ≈ 3 ms (2026-11-30).
 */
export const COPY_SLICE_BYTES = 4 * 2 ** 20;

/**
 * `from` copied into `to` at `at`, a {@link COPY_SLICE_BYTES} slice a turn of the event loop: the
 * thread that hands a pool its work and takes the answers — an engine's, whose decode loops run on
 * it — is not held for the whole copy of a large image's pixels or rows.
 */
export async function copySliced<T extends Uint8Array | Float32Array>(
  to: T,
  from: T,
  at = 0,
): Promise<void> {
  const step = COPY_SLICE_BYTES / from.BYTES_PER_ELEMENT;
  for (let i = 0; i < from.length; i += step) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 0));
    to.set(from.subarray(i, i + step), at + i);
  }
}

/**
 * The URL a worker module is started from. node:worker_threads starts file: and data: URLs only:
 * from a package served over http(s) (JSR), a data: module that imports it.
 */
function startUrl(module: URL): URL {
  if (module.protocol === "file:") return module;
  return new URL(`data:text/javascript,import ${encodeURIComponent(JSON.stringify(module.href))};`);
}

/** A job in flight: its caller's promise, the worker it went to, its time limit. */
interface Pending {
  resolve: (answer: WorkerAnswer) => void;
  reject: (error: Error) => void;
  worker: threads.Worker;
  timer: ReturnType<typeof setTimeout>;
}

/** How a pool is made. */
export interface WorkerPoolOptions {
  /** The worker module: it answers each message `{ id, … }` with a {@link WorkerAnswer}. */
  module: URL;
  /** What the pool is, for its errors: "the image decoder". */
  name: string;
  /** How many workers run at once (at least 1). */
  workers: number;
  /** Longest a job may take before it fails and its worker is replaced. */
  timeoutMs: number;
  /** A worker whose wasm memory has grown past this is ended once idle. */
  retireBytes: number;
}

/**
 * Jobs on worker threads: each goes to the worker with the fewest in flight (an idle one, else a
 * new one while there is room, else the least busy), which answers them in turn.
 */
export class WorkerPool {
  readonly #threads: typeof threads;
  readonly #options: WorkerPoolOptions;
  readonly #workers: (threads.Worker | undefined)[];
  #next = 0;
  readonly #pending = new Map<number, Pending>();
  /** Workers to end once idle: their memory grew past retireBytes. */
  readonly #bloated = new WeakSet<threads.Worker>();
  #started = 0;

  /** Throws where the runtime has no node:worker_threads ({@link workerThreads}). */
  constructor(options: WorkerPoolOptions) {
    const t = workerThreads();
    if (!t) throw new Error("this runtime has no node:worker_threads for a worker pool");
    this.#threads = t;
    this.#options = options;
    this.#workers = new Array(Math.max(1, options.workers)).fill(undefined);
  }

  /** How many jobs run at once: the number of workers. */
  get size(): number {
    return this.#workers.length;
  }

  /** How many workers were started so far (a retired or replaced one's slot starts another). */
  get started(): number {
    return this.#started;
  }

  /**
   * Sends `message` (given an id) to a worker, `transfer`'s buffers moved there; resolves with its
   * answer, or rejects with an Error where the job took more than the time limit (`task` names
   * it: "decoding an image took more than … ms"), the worker ended or the pool was closed, or
   * with what postMessage threw where the message cannot cross (a DataCloneError). Bytes
   * for the worker are best in a SharedArrayBuffer: node:worker_threads took 0.6–0.9 s to deliver
   * a 2.6 MB Uint8Array to a worker in Deno 2.9.6 (copied or transferred), a SharedArrayBuffer
   * 5–7 ms; the answers' transferred buffers come back at once (2026-11-29).
   */
  run<A extends WorkerAnswer>(
    message: Record<string, unknown>,
    task: string,
    transfer: ArrayBuffer[] = [],
  ): Promise<A> {
    const worker = this.#least();
    const id = this.#next++;
    return new Promise<A>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(new Error(`${task} took more than ${this.#options.timeoutMs} ms`), worker);
        this.#retire(worker); // stuck: the next job gets a new worker
      }, this.#options.timeoutMs);
      this.#pending.set(id, {
        resolve: resolve as (answer: WorkerAnswer) => void,
        reject,
        worker,
        timer,
      });
      worker.ref(); // a job in flight keeps the process
      try {
        worker.postMessage({ ...message, id }, transfer);
      } catch (e) {
        // Not sent (a DataCloneError): no entry left to hold the process, then time out.
        this.#take(id);
        reject(e);
      }
    });
  }

  /** Ends the workers; jobs in flight fail. */
  close(): void {
    for (const worker of this.#workers) {
      if (!worker) continue;
      this.#fail(new Error(`${this.#options.name} was closed`), worker);
      this.#retire(worker);
    }
  }

  /** The worker with the fewest jobs in flight (an idle slot's new worker first). */
  #least(): threads.Worker {
    const load = (w: threads.Worker) =>
      [...this.#pending.values()].filter((p) => p.worker === w).length;
    const free = this.#workers.indexOf(undefined);
    const busy = this.#workers.filter((w): w is threads.Worker => w !== undefined);
    const idle = busy.find((w) => load(w) === 0);
    if (idle) return idle;
    if (free >= 0) return this.#start(free);
    return busy.reduce((a, b) => (load(b) < load(a) ? b : a));
  }

  #start(slot: number): threads.Worker {
    const worker = new this.#threads.Worker(startUrl(this.#options.module));
    this.#started++;
    worker.on("message", (answer: WorkerAnswer) => {
      if (answer.memoryBytes > this.#options.retireBytes) this.#bloated.add(worker);
      this.#take(answer.id)?.resolve(answer);
    });
    // A worker that dies (it should not) fails what it held; the next job starts another.
    const lost = (why: unknown) => {
      this.#retire(worker, false);
      this.#fail(new Error(`${this.#options.name}'s worker ended: ${why}`), worker);
    };
    worker.on("error", lost);
    worker.on("exit", (code) => lost(`exit code ${code}`));
    worker.unref();
    this.#workers[slot] = worker;
    return worker;
  }

  /** Job `id`'s entry, removed (its timer stopped, its worker unref'd once it has no more). */
  #take(id: number): Pending | undefined {
    const entry = this.#pending.get(id);
    if (!entry) return undefined;
    this.#pending.delete(id);
    clearTimeout(entry.timer);
    if (![...this.#pending.values()].some((p) => p.worker === entry.worker)) {
      entry.worker.unref();
      if (this.#bloated.has(entry.worker)) this.#retire(entry.worker);
    }
    return entry;
  }

  /** Fails the jobs in flight on `worker` (only those: a later worker's are not its). */
  #fail(error: Error, worker: threads.Worker): void {
    for (const [id, p] of [...this.#pending]) {
      if (p.worker === worker) this.#take(id)!.reject(error);
    }
  }

  /** Frees `worker`'s slot (the next job there starts another) and ends it. */
  #retire(worker: threads.Worker, terminate = true): void {
    const slot = this.#workers.indexOf(worker);
    if (slot >= 0) this.#workers[slot] = undefined;
    if (terminate) worker.terminate();
  }
}
