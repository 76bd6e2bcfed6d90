/**
 * Image decoding off the server's thread. The server decodes each image of a request before
 * queueing it (a bad image is a 400 before a stream starts); done on its own thread, a
 * 12-megapixel JPEG held that thread for ≈ 0.28 s (H200 machine's CPU, 2026-11-29), during which
 * `/health` and every open stream — the running answer's too — waited. Here workers decode them
 * (a request's several images, or several requests', at once up to the number of workers); a
 * worker does not keep the process alive while it has nothing to do (it is unref'd when idle), and
 * {@link ImageDecoder.close} ends them.
 * @module
 */
import { Worker } from "node:worker_threads";
import { InvalidInputError } from "../errors.ts";
import type { DecodedImage } from "../image.ts";
import type { DecodeAnswer, DecodeRequest } from "./_decode_worker.ts";

/**
 * The worker's module. node:worker_threads starts file: and data: URLs only: from a package
 * served over http(s) (JSR), a data: module that imports it.
 */
function workerUrl(): URL {
  const url = new URL("./_decode_worker.ts", import.meta.url);
  if (url.protocol === "file:") return url;
  return new URL(`data:text/javascript,import ${encodeURIComponent(JSON.stringify(url.href))};`);
}

/**
 * Longest a decode may take before it fails and its worker is replaced: a 64-megapixel JPEG, the
 * largest decoded, would take ≈ 1.5 s on the H200 machine's CPU by the 0.28 s its 12-megapixel
 * photo took; a worker that has not answered in a minute is stuck, and the images after it would
 * wait behind it.
 */
export const DECODE_TIMEOUT_MS = 60_000;

/**
 * A worker whose wasm memory has grown past this is ended once idle (the next image starts
 * another): wasm memory never shrinks, and one 8000 × 8000 image left a worker holding ≈ 0.5 GB
 * for as long as the server ran; images of a few megapixels stay well under it.
 */
export const RETIRE_MEMORY_BYTES = 256 * 2 ** 20;

/** A decode in flight: its caller's promise, the worker it went to, its time limit. */
interface Pending {
  resolve: (image: DecodedImage) => void;
  reject: (error: Error) => void;
  worker: Worker;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Workers by default: half the cores, 1 to 4 (each holds a wasm memory as large as the largest
 * image it decoded).
 */
export function defaultDecodeWorkers(): number {
  return Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency ?? 2) / 2)));
}

/** Decodes images on worker threads, each started when it is first needed. */
export class ImageDecoder {
  readonly #workers: (Worker | undefined)[];
  #next = 0;
  readonly #pending = new Map<number, Pending>();
  readonly #timeoutMs: number;
  readonly #retireBytes: number;
  /** Workers to end once idle: their memory grew past #retireBytes. */
  readonly #bloated = new WeakSet<Worker>();
  #started = 0;

  /**
   * `workers`: how many decode at once ({@link defaultDecodeWorkers}); `timeoutMs`: see
   * {@link DECODE_TIMEOUT_MS} (tests pass less).
   */
  constructor({
    workers = defaultDecodeWorkers(),
    timeoutMs = DECODE_TIMEOUT_MS,
    retireBytes = RETIRE_MEMORY_BYTES,
  } = {}) {
    this.#workers = new Array(Math.max(1, workers)).fill(undefined);
    this.#timeoutMs = timeoutMs;
    this.#retireBytes = retireBytes;
  }

  /** How many workers were started so far (a retired or replaced one's slot starts another). */
  get started(): number {
    return this.#started;
  }

  /**
   * decodeImage(bytes), on the worker: the pixels, or InvalidInputError for an image that does
   * not decode (other failures — a worker lost, a decode past its time — as Error).
   */
  decode(bytes: Uint8Array): Promise<DecodedImage> {
    const worker = this.#least();
    const id = this.#next++;
    return new Promise<DecodedImage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(new Error(`decoding an image took more than ${this.#timeoutMs} ms`), worker);
        this.#retire(worker); // stuck: the next image gets a new worker
      }, this.#timeoutMs);
      this.#pending.set(id, { resolve, reject, worker, timer });
      worker.ref(); // a decode in flight keeps the process
      const shared = new SharedArrayBuffer(bytes.length);
      new Uint8Array(shared).set(bytes);
      worker.postMessage({ id, bytes: shared } satisfies DecodeRequest);
    });
  }

  /** Ends the workers; decodes in flight fail. */
  close(): void {
    for (const worker of this.#workers) {
      if (!worker) continue;
      this.#fail(new Error("the image decoder was closed"), worker);
      this.#retire(worker);
    }
  }

  /** The worker with the fewest decodes in flight (an idle slot's new worker first). */
  #least(): Worker {
    const load = (w: Worker) => [...this.#pending.values()].filter((p) => p.worker === w).length;
    const free = this.#workers.indexOf(undefined);
    const busy = this.#workers.filter((w): w is Worker => w !== undefined);
    const idle = busy.find((w) => load(w) === 0);
    if (idle) return idle;
    if (free >= 0) return this.#start(free);
    return busy.reduce((a, b) => (load(b) < load(a) ? b : a));
  }

  #start(slot: number): Worker {
    const worker = new Worker(workerUrl());
    this.#started++;
    worker.on("message", (answer: DecodeAnswer) => {
      if (answer.memoryBytes > this.#retireBytes) this.#bloated.add(worker);
      const waiting = this.#take(answer.id);
      if (!waiting) return;
      if ("error" in answer) {
        const { name, message } = answer.error;
        const error = name === "InvalidInputError"
          ? new InvalidInputError(message)
          : Object.assign(new Error(message), { name });
        waiting.reject(error);
      } else {
        const { width, height, data } = answer;
        waiting.resolve({ width, height, data });
      }
    });
    // A worker that dies (it should not) fails what it held; the next image starts another.
    const lost = (why: unknown) => {
      this.#retire(worker, false);
      this.#fail(new Error(`the image decoder's worker ended: ${why}`), worker);
    };
    worker.on("error", lost);
    worker.on("exit", (code) => lost(`exit code ${code}`));
    worker.unref();
    this.#workers[slot] = worker;
    return worker;
  }

  /** Decode `id`'s entry, removed (its timer stopped, its worker unref'd once it has no more). */
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

  /** Fails the decodes in flight on `worker` (only those: a later worker's are not its). */
  #fail(error: Error, worker: Worker): void {
    for (const [id, p] of [...this.#pending]) {
      if (p.worker === worker) this.#take(id)!.reject(error);
    }
  }

  /** Frees `worker`'s slot (the next decode there starts another) and ends it. */
  #retire(worker: Worker, terminate = true): void {
    const slot = this.#workers.indexOf(worker);
    if (slot >= 0) this.#workers[slot] = undefined;
    if (terminate) worker.terminate();
  }
}
