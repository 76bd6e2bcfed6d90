/**
 * The server's engine in a worker of its own: the model loads and generates on a second thread
 * (src/server/_engine_worker.ts), and this ChatEngine relays messages and events.
 *
 * Why: Deno's WebGPU holds the calling thread for every wait on the GPU — a vision tower, a prefill
 * chunk (≈ 1.5 s for QVQ-72B), each decode batch. On the server's thread nothing else would run
 * meanwhile: no `/health`, no new connection, no other stream's keep-alive. With the GPU work on
 * the worker's thread the server answers at once throughout, as llama.cpp's server (an HTTP thread
 * beside its inference thread) does.
 * @module
 */
import type {
  ChatEngine,
  ChatMessage,
  GenerateOptions,
  GenerationEvent,
  TokenizeInput,
  WeightTypes,
} from "../generate/types.ts";
import { EngineClosedError, ERROR_CLASSES, GpuError, InvalidInputError } from "../errors.ts";
import type { PipelineOptions } from "../pipeline.ts";
import type { DownloadOptions } from "../hub/download.ts";
import { type ImageSize, isVideo } from "../image.ts";
import { collectImages } from "../generate/chat_template.ts";
import { threadExited } from "./_thread.ts";

/** An error as it crosses between the threads: its class name and message. */
export interface ErrorDescription {
  name: string;
  message: string;
}

/** What of `error` crosses between the threads ({@link revive} rebuilds it). */
export function describeError(error: unknown): ErrorDescription {
  return error instanceof Error
    ? { name: error.name, message: error.message }
    : { name: "Error", message: String(error) };
}

/** Messages to the worker. */
export type ToWorker =
  | { type: "load"; model: string; options: WorkerLoadOptions }
  | {
    type: "generate";
    id: number;
    /** Chat messages (Pipeline.generate) or a raw prompt (Pipeline.complete). */
    input: { messages: ChatMessage[] } | { prompt: string | number[] };
    options: Omit<GenerateOptions, "signal">;
    /**
     * The signal was aborted before the call: the generation starts aborted (an "abort" message
     * after it could come once its first token was out).
     */
    aborted?: boolean;
  }
  | ({
    // One of the Pipeline's quick methods there: answered with "value" or "error" under its id.
    type: "call";
    id: number;
  } & WorkerCall)
  | { type: "abort"; id: number }
  | { type: "dispose" };

/** The Pipeline methods the worker answers at once (no GPU work, no queue), and their arguments. */
export type WorkerCall =
  | { method: "checkPrompt"; args: [string | number[], Omit<GenerateOptions, "signal">] }
  | {
    method: "checkChat";
    args: [ChatMessage[], Omit<GenerateOptions, "signal">, readonly ImageSize[] | undefined];
  }
  | { method: "tokenize"; args: [TokenizeInput] }
  | { method: "detokenize"; args: [number[]] };

/** Messages from the worker. */
export type FromWorker =
  | { type: "thread"; entry: string | null } // first: its thread's /proc entry (src/server/_thread.ts)
  | { type: "loaded"; modelId: string; about: WorkerEngineAbout }
  | { type: "load-error"; error: ErrorDescription }
  | { type: "event"; id: number; event: GenerationEvent }
  | { type: "end"; id: number }
  | { type: "value"; id: number; value: unknown }
  | { type: "error"; id: number; error: ErrorDescription }
  // The pipeline can run nothing more (its GPU device was lost).
  | { type: "failed"; error: ErrorDescription }
  | { type: "closed" };

/**
 * How the worker loads the model: the Pipeline's weight options, and data-only hub and progress
 * settings (no sinks or signals cross threads).
 */
export interface WorkerLoadOptions extends
  Pick<
    PipelineOptions,
    "dtype" | "quant" | "visionQuant" | "kvCacheDtype" | "promptCache" | "parallel"
  > {
  /**
   * Progress of the download and weight upload on stderr: a bar on a terminal, a line every 10 %
   * in a log (default true).
   */
  progress?: boolean;
  /** Hub download settings (default: from HF_* environment variables). */
  download?: Omit<DownloadOptions, "progress" | "signal">;
  /** Run the warm-up generations after loading (src/server/_warmup.ts): the first request finds its GPU pipelines compiled. */
  warmUp?: boolean;
}

/** Messages whose decoded pixels the caller hands over: see {@link handOverImages}. */
const HANDED_OVER = new WeakSet<readonly ChatMessage[]>();

/**
 * Marks `messages` as used once, for one generation: a WorkerEngine then moves their decoded
 * pixels to its worker (transfers their buffers) instead of copying them — a 12-megapixel photo's
 * 36 MB took ≈ 41 ms to copy on a 2-core machine, in the time to its first token. The pixels are
 * gone from `messages` afterwards (their buffers detached): the server marks a request's messages
 * where it asks for one answer (`n` 1). Other engines ignore the mark.
 */
export function handOverImages(messages: ChatMessage[]): ChatMessage[] {
  HANDED_OVER.add(messages);
  return messages;
}

/** Whether {@link handOverImages} marked `messages`. */
export function handedOver(messages: readonly ChatMessage[]): boolean {
  return HANDED_OVER.has(messages);
}

/**
 * The buffers of `messages`' decoded pixels that can move to another thread: each one a
 * DecodedImage's data spans whole (not a view into a larger buffer, nor shared memory), once.
 */
function pixelBuffers(messages: readonly ChatMessage[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const image of collectImages(messages).flatMap((x) => isVideo(x) ? x.frames : [x])) {
    if (image instanceof Uint8Array) continue;
    const { buffer, byteOffset, byteLength } = image.data;
    if (buffer instanceof ArrayBuffer && byteOffset === 0 && byteLength === buffer.byteLength) {
      buffers.add(buffer);
    }
  }
  return [...buffers];
}

/** One byte that stands for an image whose size is sent instead ({@link withoutImages}). */
const STAND_IN = new Uint8Array(1);

/**
 * `messages` with every image (every frame) a one-byte stand-in: where their sizes go with them,
 * the worker reads nothing else of them, and a photo's decoded pixels (tens of MB) are not
 * copied to it for a check.
 */
function withoutImages(messages: ChatMessage[]): ChatMessage[] {
  return messages.map((m) =>
    typeof m.content === "string" ? m : {
      ...m,
      content: m.content.map((p) =>
        p.type === "image"
          ? { ...p, image: STAND_IN }
          : p.type === "video"
          ? { ...p, video: p.video.map(() => STAND_IN) }
          : p
      ),
    }
  );
}

/** The error `d` describes, as its own class where it is one of qvq's (the server maps those). */
function revive(d: ErrorDescription): Error {
  const Class = ERROR_CLASSES[d.name];
  if (Class) return new Class(d.message);
  const error = new Error(d.message);
  error.name = d.name;
  return error;
}

/** The messages of one generation (or prompt check), in order, for whoever relays them. */
class Mailbox {
  readonly #items: FromWorker[] = [];
  #wake: (() => void) | undefined;

  put(m: FromWorker): void {
    this.#items.push(m);
    this.#wake?.();
  }

  async take(): Promise<FromWorker> {
    while (!this.#items.length) await new Promise<void>((resolve) => this.#wake = resolve);
    this.#wake = undefined;
    return this.#items.shift()!;
  }
}

/** What a worker's pipeline tells of itself once loaded, for its {@link WorkerEngine}. */
export type WorkerEngineAbout = Pick<
  ChatEngine,
  "maxContext" | "defaultSystemPrompt" | "weightTypes" | "parallel"
>;

/**
 * How an engine's weights are held, in words for a log line (the server's "serving" line):
 * "f16 weights", or the decoder's and the vision tower's types where either is quantized
 * ("decoder q4, vision tower f16").
 */
export function describeWeights(w: WeightTypes | undefined): string {
  if (!w) return "weights as the engine holds them";
  if (!w.quant && !w.visionQuant) return `${w.dtype} weights`;
  return `decoder ${w.quant ?? w.dtype}, vision tower ${w.visionQuant ?? w.dtype}`;
}

/** A ChatEngine whose pipeline runs in a worker; make one with {@link loadWorkerEngine}. */
export class WorkerEngine implements ChatEngine {
  readonly modelId: string;
  readonly maxContext: number | undefined;
  readonly parallel: number | undefined;
  readonly defaultSystemPrompt: string | undefined;
  readonly weightTypes: WeightTypes | undefined;
  readonly #worker: Worker;
  readonly #boxes = new Map<number, Mailbox>();
  #next = 0;
  #failure: Error | undefined;
  /** Settled by a failure other than dispose(). */
  readonly #failed = Promise.withResolvers<Error>();
  readonly #closed = Promise.withResolvers<void>();
  #ending = false;
  #fallback: ReturnType<typeof setTimeout> | undefined;
  /** The worker's thread (its /proc entry, or null where unseen): {@link closed} waits for it. */
  readonly #thread: string | null;

  /**
   * Relays to `worker`, which has loaded `modelId` (make one with {@link loadWorkerEngine});
   * `thread` is the entry of its thread that the worker reported; `about`, what its pipeline
   * said of itself (its context, generations at once, default system message and weight types).
   */
  constructor(
    worker: Worker,
    modelId: string,
    thread: string | null = null,
    about: WorkerEngineAbout = {},
  ) {
    this.#worker = worker;
    this.modelId = modelId;
    this.maxContext = about.maxContext;
    this.parallel = about.parallel;
    this.defaultSystemPrompt = about.defaultSystemPrompt;
    this.weightTypes = about.weightTypes;
    this.#thread = thread;
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "closed") this.#ended(false);
      else if (m.type === "failed") {
        if (this.#failure) return; // disposed already: the worker is on its way out
        this.#fail(revive(m.error), true);
        this.#close(); // it frees what it can and exits: nothing it holds can run again
      } else if ("id" in m) this.#boxes.get(m.id)?.put(m);
    };
    worker.onerror = (e) => {
      e.preventDefault(); // reported here, once, not as an uncaught error that ends the process
      const error = new GpuError(`the engine's worker failed: ${e.message}; restart the server`);
      console.error(`qvq: ${error.message}`);
      this.#fail(error, true);
      this.#ended(true);
    };
  }

  /**
   * Why the engine answers nothing more: the worker's GPU device was lost (DeviceLostError) or the
   * worker failed (GpuError), or {@link dispose} was called (EngineClosedError); undefined while it
   * works. Every call then throws it.
   */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /**
   * Settles with {@link failure} when the engine fails — its device lost, its worker gone — and
   * never for {@link dispose}: what `deno task serve` waits on to exit (1) rather than serve errors.
   */
  get failed(): Promise<Error> {
    return this.#failed.promise;
  }

  /**
   * Settles once the worker's thread has ended (after {@link dispose}, or when it failed). Let the
   * process exit only then: one that exits while the thread still tears down its GPU device can
   * crash in the driver (NVIDIA's, on the H200).
   */
  get closed(): Promise<void> {
    return this.#closed.promise;
  }

  /** Streams the answer to `messages` from the worker; `options.signal` aborts it there. */
  generate(
    messages: ChatMessage[],
    options: GenerateOptions = {},
  ): AsyncGenerator<GenerationEvent> {
    return this.#stream({ messages }, options);
  }

  /** Streams the continuation of a raw prompt from the worker (Pipeline.complete there). */
  complete(
    prompt: string | number[],
    options: GenerateOptions = {},
  ): AsyncGenerator<GenerationEvent> {
    return this.#stream({ prompt }, options);
  }

  /**
   * Pipeline.checkChat in the worker: what generate() would refuse, without queueing. With
   * `sizes`, the images do not cross to the worker (their sizes stand for them).
   */
  async checkChat(
    messages: ChatMessage[],
    options: GenerateOptions = {},
    sizes?: readonly ImageSize[],
  ): Promise<void> {
    const { signal: _, ...rest } = options;
    const sent = sizes ? withoutImages(messages) : messages;
    await this.#call({ method: "checkChat", args: [sent, rest, sizes] });
  }

  /** Pipeline.checkPrompt in the worker: what complete() would refuse, without queueing. */
  async checkPrompt(prompt: string | number[], options: GenerateOptions = {}): Promise<void> {
    const { signal: _, ...rest } = options;
    await this.#call({ method: "checkPrompt", args: [prompt, rest] });
  }

  /** Pipeline.tokenize in the worker (with `imageSizes`, the images do not cross to it). */
  async tokenize(input: TokenizeInput): Promise<number[]> {
    const sent = "messages" in input && input.imageSizes
      ? { ...input, messages: withoutImages(input.messages) }
      : input;
    return await this.#call({ method: "tokenize", args: [sent] }) as number[];
  }

  /** Pipeline.detokenize in the worker. */
  async detokenize(ids: number[]): Promise<string> {
    return await this.#call({ method: "detokenize", args: [ids] }) as string;
  }

  /** One of the pipeline's quick methods in the worker: its value, or its error (its class kept). */
  async #call(call: WorkerCall): Promise<unknown> {
    if (this.#failure) throw this.#failure;
    const id = ++this.#next;
    const box = new Mailbox();
    this.#boxes.set(id, box);
    try {
      this.#post({ type: "call", id, ...call }, call.args[1]);
      const m = await box.take();
      if (m.type === "error") throw revive(m.error);
      return m.type === "value" ? m.value : undefined;
    } finally {
      this.#boxes.delete(id);
    }
  }

  async *#stream(
    input: Extract<ToWorker, { type: "generate" }>["input"],
    options: GenerateOptions,
  ): AsyncGenerator<GenerationEvent> {
    if (this.#failure) throw this.#failure;
    const id = ++this.#next;
    const box = new Mailbox();
    this.#boxes.set(id, box);
    const { signal, ...rest } = options;
    const abort = () => this.#worker.postMessage({ type: "abort", id } satisfies ToWorker);
    let ended = false;
    try {
      const transfer = "messages" in input && handedOver(input.messages)
        ? pixelBuffers(input.messages)
        : [];
      const aborted = signal?.aborted;
      this.#post({ type: "generate", id, input, options: rest, aborted }, rest, transfer);
    } catch (e) {
      this.#boxes.delete(id);
      throw e;
    }
    signal?.addEventListener("abort", abort, { once: true });
    try {
      for (;;) {
        const m = await box.take();
        if (m.type === "event") yield m.event;
        else if (m.type === "error") {
          ended = true;
          throw revive(m.error);
        } else {
          ended = true;
          return;
        }
      }
    } finally {
      signal?.removeEventListener("abort", abort);
      this.#boxes.delete(id);
      // A consumer that left early: the worker stops that generation (its queue slot frees).
      if (!ended && !this.#failure) abort();
    }
  }

  /**
   * Posts `message` to the worker; where it cannot be copied there (a function among `options`: a
   * callback), an InvalidInputError saying which, rather than the DataCloneError.
   */
  #post(message: ToWorker, options: unknown, transfer: ArrayBuffer[] = []): void {
    try {
      this.#worker.postMessage(message, { transfer });
    } catch (e) {
      if (!(e instanceof DOMException && e.name === "DataCloneError")) throw e;
      const fn = typeof options === "object" && options !== null
        ? Object.entries(options).find(([, v]) => typeof v === "function")?.[0]
        : undefined;
      throw new InvalidInputError(
        `the request cannot cross to the engine's worker${
          fn ? `: option ${fn} is a function` : ""
        }` +
          ` (${e.message}); pass plain data (numbers, strings, arrays, objects, images)`,
      );
    }
  }

  /**
   * Stops the worker: generations in progress end (their streams throw), the worker frees the GPU
   * and exits, and {@link closed} settles once its thread is gone; later calls throw. The worker is
   * asked, so its generations end cleanly; if it has not exited after {@link DISPOSE_TIMEOUT_MS},
   * it is terminated.
   */
  dispose(): void {
    if (this.#failure) return;
    this.#fail(new EngineClosedError("the engine was disposed; load it again"));
    this.#close();
  }

  /** {@link dispose}: `using engine = await loadWorkerEngine(…)`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** {@link dispose}, then {@link closed}: `await using engine = await loadWorkerEngine(…)`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
    await this.closed;
  }

  /** Asks the worker to end its generations, free the GPU and exit; terminates it if overdue. */
  #close(): void {
    this.#worker.postMessage({ type: "dispose" } satisfies ToWorker);
    const fallback = setTimeout(() => this.#ended(true), DISPOSE_TIMEOUT_MS);
    Deno.unrefTimer(fallback);
    this.#fallback = fallback;
  }

  /**
   * Later generate() calls throw `error`; the open streams end with it. `broken`: a failure, not a
   * dispose ({@link failed} settles).
   */
  #fail(error: Error, broken = false): void {
    if (this.#failure) return;
    this.#failure = error;
    if (broken) this.#failed.resolve(error);
    for (const box of this.#boxes.values()) {
      box.put({ type: "error", id: 0, error: describeError(error) });
    }
  }

  /**
   * The worker is done (or failed, or is overdue: `kill`), so {@link closed} settles once its
   * thread has ended.
   */
  #ended(kill: boolean): void {
    if (this.#ending) return;
    this.#ending = true;
    clearTimeout(this.#fallback);
    workerGone(this.#worker, this.#thread, kill).then(() => this.#closed.resolve());
  }
}

/**
 * Resolves once `worker`'s thread (its reported /proc entry) has ended, terminating the worker
 * first where `kill`: the one way qvq lets a worker go before the process may exit (see
 * WorkerEngine.closed).
 */
function workerGone(worker: Worker, thread: string | null, kill: boolean): Promise<void> {
  if (kill) worker.terminate();
  return threadExited(thread).then(() => {});
}

/** How long a stop during loading leaves the requests waiting for the model to be answered. */
const ANSWER_GRACE_MS = 100;

/** How long {@link WorkerEngine.dispose} waits for the worker to free the GPU and exit. */
export const DISPOSE_TIMEOUT_MS = 10_000;

/**
 * loadEngine() (src/server/_engine.ts) in a worker: resolves with the engine once the model is
 * loaded there, or rejects with the load's error (its class kept).
 *
 * SIGINT and SIGTERM end the process, as they do by default, but only once the worker has freed
 * the GPU (the engine disposed; exit codes 130 / 143). Without this a live worker kept the process
 * alive: `deno serve`'s graceful shutdown waited for it forever. Once the engine is closed (its
 * dispose() done, or its load failed) the signals are the program's again.
 */
export function loadWorkerEngine(
  model: string,
  options: WorkerLoadOptions = {},
): Promise<WorkerEngine> {
  const worker = new Worker(new URL("./_engine_worker.ts", import.meta.url).href, {
    type: "module",
  });
  let engine: WorkerEngine | undefined;
  let thread: string | null = null;
  let refuse: ((error: Error) => void) | undefined;
  const unlisten = stopOnSignals(async () => {
    if (engine) {
      engine.dispose();
      return await engine.closed;
    }
    // Still loading: requests waiting for the model are answered (503 server_shutting_down, their
    // clients told to retry) before the worker goes and the process exits; they had been cut
    // with no answer at all.
    refuse?.(new EngineClosedError("The server is shutting down before its model loaded; retry."));
    await workerGone(worker, thread, true);
    await new Promise((r) => setTimeout(r, ANSWER_GRACE_MS));
  });
  return new Promise((resolve, reject) => {
    refuse = reject;
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "thread") thread = m.entry;
      else if (m.type === "loaded") {
        engine = new WorkerEngine(worker, m.modelId, thread, m.about);
        resolve(engine);
        engine.closed.then(unlisten);
      } else if (m.type === "load-error") failed(revive(m.error));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      failed(new GpuError(`the engine's worker failed while loading: ${e.message}`));
    };
    // Rejects once the worker's thread has ended: a caller that exits on the error must not catch
    // it tearing down a device (see WorkerEngine.closed).
    const failed = (error: Error) =>
      workerGone(worker, thread, true).then(() => {
        unlisten();
        reject(error);
      });
    worker.postMessage({ type: "load", model, options } satisfies ToWorker);
  });
}

/** The signals {@link loadWorkerEngine} ends the process on, and their exit codes (128 + number). */
const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * On the first of {@link STOP_SIGNALS}: `stop()`, then exit with the signal's code. Later signals
 * are ignored while it stops: Ctrl+C on `deno task serve` reaches the server twice (the terminal
 * signals the process group, and `deno task` passes its own on), and a second signal with no
 * listener killed the process at once — streams cut without their last event, and the worker's
 * GPU teardown interrupted. The stop itself ends within the dispose fallback's timeout. Returns
 * the function that stops listening.
 */
function stopOnSignals(stop: () => Promise<void>): () => void {
  let stopping = false;
  const added: [Deno.Signal, () => void][] = [];
  for (const [signal, code] of Object.entries(STOP_SIGNALS) as [Deno.Signal, number][]) {
    const listener = () => {
      if (stopping) return;
      stopping = true;
      stop().finally(() => Deno.exit(code));
    };
    try {
      Deno.addSignalListener(signal, listener);
      added.push([signal, listener]);
    } catch {
      // Not a signal this platform has (SIGTERM on Windows).
    }
  }
  // Stops listening (not while a stop is under way: it exits).
  return () => {
    if (stopping) return;
    for (const [signal, listener] of added.splice(0)) Deno.removeSignalListener(signal, listener);
  };
}
