/**
 * The worker side of src/server/worker_engine.ts: loads the model with loadEngine() and runs the
 * generations asked for, posting each event back. Its thread is the one that waits for the GPU
 * (Deno's WebGPU holds the calling thread through every readback), so the server's thread never
 * does. Messages: see the `ToWorker` and `FromWorker` types there.
 * @module
 */
/// <reference lib="deno.worker" />
import { loadEngine } from "./_engine.ts";
import type { Pipeline } from "../pipeline.ts";
import { describeError, type FromWorker, type ToWorker, type WorkerCall } from "./worker_engine.ts";
import { currentThread } from "./_thread.ts";
import { precompileFormat } from "../generate/options.ts";
import { FormatCompiler } from "./_format_compiler.ts";
import { EngineClosedError } from "../errors.ts";

let pipeline: Pipeline | undefined;
/** The generations running or queued here, by id: aborted on the main thread's word. */
const running = new Map<number, AbortController>();
/** Their promises, settled when each has ended (dispose waits for them). */
const settled = new Set<Promise<void>>();

const post = (message: FromWorker) => self.postMessage(message);
/** responseFormat automata, compiled off this thread (the decode loops run on it). */
const formats = new FormatCompiler();
/** Set by {@link close}: nothing more starts here. */
let closing = false;

/**
 * Compiles the responseFormat of `options` on the compiling thread, first. Closed meanwhile (its
 * compile then failed): the EngineClosedError the host has already given, not the compile on this
 * thread that resolving the options would run — seconds each before the GPU is freed, for answers
 * no one reads.
 */
async function precompile(options: unknown): Promise<void> {
  await precompileFormat(options, formats.compile);
  if (closing) throw new EngineClosedError("the engine was disposed");
}

// First, so the host can wait for this thread to end before it lets the process exit.
post({ type: "thread", entry: currentThread() });

async function generate(id: number, message: Extract<ToWorker, { type: "generate" }>) {
  const abort = new AbortController();
  if (message.aborted) abort.abort();
  running.set(id, abort);
  try {
    await precompile(message.options);
    const options = { ...message.options, signal: abort.signal };
    const input = message.input;
    const events = "messages" in input
      ? pipeline!.generate(input.messages, options)
      : pipeline!.complete(input.prompt, options);
    for await (const event of events) {
      post({ type: "event", id, event });
    }
    post({ type: "end", id });
  } catch (error) {
    post({ type: "error", id, error: describeError(error) });
  } finally {
    running.delete(id);
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "load") {
    loadEngine(m.model, m.options).then(
      (p) => {
        pipeline = p;
        post({
          type: "loaded",
          modelId: p.modelId,
          about: {
            maxContext: p.maxContext,
            parallel: p.parallel,
            defaultSystemPrompt: p.defaultSystemPrompt,
            weightTypes: p.weightTypes,
          },
        });
        // Its thread ready for the first request with a format (not on a load that failed: no
        // request comes, and the host terminates this worker).
        formats.start();
        // The generations running fail with it on their own; the host learns it here, at once.
        p.model.gpu.whenLost.then((error) => post({ type: "failed", error: describeError(error) }));
      },
      (error) => post({ type: "load-error", error: describeError(error) }),
    );
  } else if (m.type === "generate") {
    const done = generate(m.id, m);
    settled.add(done);
    done.finally(() => settled.delete(done));
  } else if (m.type === "call") {
    // In a then(): anything it throws is this call's answer, never the worker's own failure.
    Promise.resolve().then(() => call(m)).then(
      (value) => post({ type: "value", id: m.id, value }),
      (error) => post({ type: "error", id: m.id, error: describeError(error) }),
    );
  } else if (m.type === "abort") {
    running.get(m.id)?.abort();
  } else if (m.type === "dispose") {
    close();
  }
};

/** The pipeline's answer to a quick call. */
async function call(c: WorkerCall): Promise<unknown> {
  const p = pipeline!;
  if (c.method === "checkPrompt" || c.method === "checkChat") {
    await precompile(c.args[1]);
  }
  if (c.method === "checkPrompt") return p.checkPrompt(...c.args);
  if (c.method === "checkChat") return p.checkChat(...c.args);
  if (c.method === "tokenize") return p.tokenize(...c.args);
  return p.detokenize(...c.args);
}

/** Ends every generation, frees the GPU, tells the main thread and exits. */
async function close() {
  closing = true;
  for (const abort of running.values()) abort.abort();
  formats.close();
  await Promise.allSettled(settled);
  pipeline?.dispose();
  post({ type: "closed" });
  self.close();
}
