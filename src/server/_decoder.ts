/**
 * Image decoding off the server's thread. The server decodes each image of a request before
 * queueing it (a bad image is a 400 before a stream starts); done on its own thread, a
 * 12-megapixel JPEG held that thread for ≈ 0.28 s (H200 machine's CPU, 2026-11-29), during which
 * `/health` and every open stream — the running answer's too — waited. Here a worker decodes
 * them, one after another; the worker does not keep the process alive while it has nothing to do
 * (it is unref'd when idle), and {@link ImageDecoder.close} ends it.
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
 * largest decoded, takes ≈ 1.5 s on the H200 machine's CPU; a worker that has not answered in a
 * minute is stuck, and every image after it would wait behind it.
 */
export const DECODE_TIMEOUT_MS = 60_000;

/** A decode in flight: its caller's promise, the worker it went to, its time limit. */
interface Pending {
  resolve: (image: DecodedImage) => void;
  reject: (error: Error) => void;
  worker: Worker;
  timer: ReturnType<typeof setTimeout>;
}

/** Decodes images on a worker thread, started at the first image. */
export class ImageDecoder {
  #worker: Worker | undefined;
  #next = 0;
  readonly #pending = new Map<number, Pending>();
  readonly #timeoutMs: number;

  /** `timeoutMs`: see {@link DECODE_TIMEOUT_MS} (tests pass less). */
  constructor({ timeoutMs = DECODE_TIMEOUT_MS } = {}) {
    this.#timeoutMs = timeoutMs;
  }

  /**
   * decodeImage(bytes), on the worker: the pixels, or InvalidInputError for an image that does
   * not decode (other failures — a worker lost, a decode past its time — as Error).
   */
  decode(bytes: Uint8Array): Promise<DecodedImage> {
    const worker = this.#start();
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

  /** Ends the worker; decodes in flight fail. */
  close(): void {
    const worker = this.#worker;
    if (!worker) return;
    this.#fail(new Error("the image decoder was closed"), worker);
    this.#retire(worker);
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(workerUrl());
    worker.on("message", (answer: DecodeAnswer) => {
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
      if (this.#worker === worker) this.#worker = undefined;
      this.#fail(new Error(`the image decoder's worker ended: ${why}`), worker);
    };
    worker.on("error", lost);
    worker.on("exit", (code) => lost(`exit code ${code}`));
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  /** Decode `id`'s entry, removed (its timer stopped, its worker unref'd once it has no more). */
  #take(id: number): Pending | undefined {
    const entry = this.#pending.get(id);
    if (!entry) return undefined;
    this.#pending.delete(id);
    clearTimeout(entry.timer);
    if (![...this.#pending.values()].some((p) => p.worker === entry.worker)) entry.worker.unref();
    return entry;
  }

  /** Fails the decodes in flight on `worker` (only those: a later worker's are not its). */
  #fail(error: Error, worker: Worker): void {
    for (const [id, p] of [...this.#pending]) {
      if (p.worker === worker) this.#take(id)!.reject(error);
    }
  }

  /** Ends `worker`; the next decode starts another. */
  #retire(worker: Worker): void {
    if (this.#worker === worker) this.#worker = undefined;
    worker.terminate();
  }
}
