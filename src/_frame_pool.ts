/**
 * Worker threads that resize images and a video's frames (src/image.ts's patchImage, an image a
 * job; patchFrames, a temporal patch a job). On the thread that prepared the prompt — a server's
 * engine thread, whose decode loop and every call it answers waited meanwhile — 8 decoded
 * 1280 × 720 frames took 0.29–0.58 s to resize one after another on the 2-core development VM
 * (35–75 ms a frame, 2026-11-30), a 4032 × 3024 photo ≈ 0.5 s; here they are resized several at
 * once, and that thread only waits. Images, frames and answers cross threads as
 * src/_worker_pool.ts says.
 * @module
 */
import type {
  DecodedImage,
  FrameAnswer,
  FrameJob,
  FramePool,
  FrameRun,
  GridThw,
  ImageJob,
  ImageProcessorConfig,
} from "./image.ts";
import {
  canStartWorker,
  copySliced,
  receivedError,
  type SentError,
  type WorkerAnswer,
  WorkerPool,
  workerThreads,
} from "./_worker_pool.ts";

/** A frame as it crosses to a worker: a file's bytes, or decoded pixels, in shared memory. */
export type SentFrame =
  | { bytes: SharedArrayBuffer }
  | { rgb: SharedArrayBuffer; width: number; height: number };

/** A {@link FrameJob} as it crosses to a worker, answered under `id`. */
export interface FrameRequest {
  id: number;
  frames: SentFrame[];
  run: FrameRun;
  config: ImageProcessorConfig;
  what: string;
}

/** An {@link ImageJob} as it crosses to a worker, answered under `id`. */
export interface ImageRequest {
  id: number;
  image: SentFrame;
  config: ImageProcessorConfig;
  what: string;
}

/** A warm-up: the worker loads its wasm and answers with no rows. */
export interface WarmRequest {
  id: number;
  warm: true;
}

/**
 * A worker's answer to a {@link FrameRequest} or an {@link ImageRequest} (the rows' buffers
 * transferred).
 */
export type FrameReply = WorkerAnswer & {
  grid?: GridThw;
  values: Float32Array[];
  error?: SentError;
};

/**
 * Longest a job (a temporal patch: two frames; an image) may take: two 8192 × 8192 frames, the
 * largest decoded, resize in seconds; a worker that has not answered in a minute is stuck.
 */
export const FRAME_TIMEOUT_MS = 60_000;

/**
 * A worker whose wasm memory has grown past this is ended once idle (wasm memory never shrinks;
 * the next job starts another): two 1280 × 720 frames, kept at their size, grew a worker to 36 MiB,
 * two 3840 × 2160 ones to 310 MiB (2026-11-30) — a worker is kept through those, not restarted.
 */
export const FRAME_RETIRE_BYTES = 512 * 2 ** 20;

/**
 * Workers by default: one a core, 1 to 4 — the thread that waits for them is idle meanwhile
 * (each holds a wasm memory as large as the largest temporal patch it made).
 */
export function defaultFrameWorkers(): number {
  return Math.max(1, Math.min(4, navigator.hardwareConcurrency ?? 2));
}

/** The workers' module. */
const FRAME_WORKER = new URL("./_frame_worker.ts", import.meta.url);

/** `bytes` copied into shared memory (see WorkerPool.run), a slice a turn of the event loop. */
async function shared(bytes: Uint8Array): Promise<SharedArrayBuffer> {
  const buffer = new SharedArrayBuffer(bytes.length);
  await copySliced(new Uint8Array(buffer), bytes);
  return buffer;
}

/**
 * The settings the processor reads, alone: a caller's object may hold more — a function, which
 * the structured clone refuses — and the serial path reads only these.
 */
function sentConfig(c: ImageProcessorConfig): ImageProcessorConfig {
  const { patchSize, temporalPatchSize, mergeSize, minPixels, maxPixels, rescaleFactor } = c;
  const [imageMean, imageStd] = [c.imageMean, c.imageStd].map((x) => Array.from(x)) as [
    ImageProcessorConfig["imageMean"],
    ImageProcessorConfig["imageStd"],
  ];
  return {
    patchSize,
    temporalPatchSize,
    mergeSize,
    minPixels,
    maxPixels,
    imageMean,
    imageStd,
    ...(rescaleFactor === undefined ? {} : { rescaleFactor }),
  };
}

async function sent(frame: Uint8Array | DecodedImage): Promise<SentFrame> {
  if (frame instanceof Uint8Array) return { bytes: await shared(frame) };
  return { rgb: await shared(frame.data), width: frame.width, height: frame.height };
}

/** A worker's reply as the caller takes it: its error as qvq's class (see receivedError). */
function answer({ grid, values, error }: FrameReply): FrameAnswer {
  return { grid, values, ...(error ? { error: receivedError(error) } : {}) };
}

/** A {@link FramePool} of worker threads, each started when it is first needed. */
export class FrameWorkers implements FramePool {
  readonly #pool: WorkerPool;

  /** See {@link defaultFrameWorkers}, {@link FRAME_TIMEOUT_MS}, {@link FRAME_RETIRE_BYTES}. */
  constructor({
    workers = defaultFrameWorkers(),
    timeoutMs = FRAME_TIMEOUT_MS,
    retireBytes = FRAME_RETIRE_BYTES,
  } = {}) {
    this.#pool = new WorkerPool({
      module: FRAME_WORKER,
      name: "the frame pool",
      workers,
      timeoutMs,
      retireBytes,
    });
  }

  /** How many jobs run at once. */
  get size(): number {
    return this.#pool.size;
  }

  /** How many workers were started so far. */
  get started(): number {
    return this.#pool.started;
  }

  /**
   * Starts every worker and loads its wasm, so that a first video does not wait for them: a
   * worker started from a Web Worker's thread — a server's engine thread — took ≈ 1 s to start
   * in Deno 2.9.6 (one from the main thread ≈ 40 ms, 2026-11-30).
   */
  async warm(): Promise<void> {
    const warm: Omit<WarmRequest, "id"> = { warm: true };
    await Promise.all(
      Array.from({ length: this.size }, () => this.#pool.run(warm, "starting a frame worker")),
    );
  }

  /** patchFrames() of the job's frames, on a worker. */
  async patch({ frames, run, config, what }: FrameJob): Promise<FrameAnswer> {
    const request: Omit<FrameRequest, "id"> = {
      frames: await Promise.all(frames.map(sent)),
      run,
      config: sentConfig(config),
      what,
    };
    return answer(await this.#pool.run<FrameReply>(request, `resizing ${what}'s frames`));
  }

  /** patchImage() of the job's image, on a worker. */
  async image({ image, config, what }: ImageJob): Promise<FrameAnswer> {
    const request: Omit<ImageRequest, "id"> = {
      image: await sent(image),
      config: sentConfig(config),
      what,
    };
    return answer(await this.#pool.run<FrameReply>(request, `resizing ${what}`));
  }

  /** Ends the workers; jobs in flight fail. */
  close(): void {
    this.#pool.close();
  }
}

let pool: FrameWorkers | undefined;

/**
 * The thread's frame pool, made on first use; undefined where the runtime has no worker threads
 * (a browser) or may not start one from its module (Deno without the read permission for it):
 * there images and a video's frames are resized on the calling thread. Its idle workers do not
 * keep the process alive.
 */
export function sharedFramePool(): FrameWorkers | undefined {
  if (!pool && workerThreads() && canStartWorker(FRAME_WORKER)) pool = new FrameWorkers();
  return pool;
}
