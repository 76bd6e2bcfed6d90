/**
 * Image decoding off the server's thread. The server decodes each image of a request before
 * queueing it (a bad image is a 400 before a stream starts); done on its own thread, a
 * 12-megapixel JPEG held that thread for ≈ 0.28 s (H200 machine's CPU, 2026-11-29), during which
 * `/health` and every open stream — the running answer's too — waited. Here the workers of a
 * {@link WorkerPool} (src/_worker_pool.ts) decode them (a request's several images, or several
 * requests', at once up to the number of workers); a worker does not keep the process alive while
 * it has nothing to do, and {@link ImageDecoder.close} ends them.
 * @module
 */
import type { DecodedImage } from "../image.ts";
import { receivedError, WorkerPool } from "../_worker_pool.ts";
import type { DecodeAnswer, DecodeRequest } from "./_decode_worker.ts";

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

/**
 * Workers by default: half the cores, 1 to 4 (each holds a wasm memory as large as the largest
 * image it decoded).
 */
export function defaultDecodeWorkers(): number {
  return Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency ?? 2) / 2)));
}

/** Decodes images on worker threads, each started when it is first needed. */
export class ImageDecoder {
  readonly #pool: WorkerPool;

  /**
   * `workers`: how many decode at once ({@link defaultDecodeWorkers}); `timeoutMs`: see
   * {@link DECODE_TIMEOUT_MS} (tests pass less); `retireBytes`: see {@link RETIRE_MEMORY_BYTES}.
   */
  constructor({
    workers = defaultDecodeWorkers(),
    timeoutMs = DECODE_TIMEOUT_MS,
    retireBytes = RETIRE_MEMORY_BYTES,
  } = {}) {
    this.#pool = new WorkerPool({
      module: new URL("./_decode_worker.ts", import.meta.url),
      name: "the image decoder",
      workers,
      timeoutMs,
      retireBytes,
    });
  }

  /** How many workers were started so far (a retired or replaced one's slot starts another). */
  get started(): number {
    return this.#pool.started;
  }

  /**
   * decodeImage(bytes), on a worker: the pixels, or InvalidInputError for an image that does not
   * decode (other failures — a worker lost, a decode past its time — as Error).
   */
  async decode(bytes: Uint8Array): Promise<DecodedImage> {
    const shared = new SharedArrayBuffer(bytes.length);
    new Uint8Array(shared).set(bytes);
    const answer = await this.#pool.run<DecodeAnswer>(
      { bytes: shared } satisfies Omit<DecodeRequest, "id">,
      "decoding an image",
    );
    if ("error" in answer) throw receivedError(answer.error);
    const { width, height, data } = answer;
    return { width, height, data };
  }

  /** Ends the workers; decodes in flight fail. */
  close(): void {
    this.#pool.close();
  }
}
