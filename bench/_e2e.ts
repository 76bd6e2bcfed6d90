/**
 * The product end to end: `Pipeline.load` of a model directory, then `generate()` of one user
 * message (an image, then a question), timed from the call — JPEG/PNG decoding, preprocessing,
 * the chat template and tokens, vision tower, prefill and the streamed answer — as a user of the
 * module, the CLI or the server meets it. Prints one JSON line a run: the first text's arrival
 * (`first_text_ms`), the whole call, and the generation's own usage and timings. The first run
 * compiles shaders. The prompt cache is off, so every run encodes the image and prefills.
 *
 *   deno run -A bench/_e2e.ts --model DIR --image FILE [--copies N] [--quant q4|q8] [--max-tokens 256]
 *     [--runs 3] [--prompt TEXT] [--http [--worker]] [--gap-ms 0]
 *
 * `--gap-ms N`: idle N ms before each run, so the GPU has finished what the last answer left
 * running (the batch submitted after the one holding its end) and the run is timed alone.
 *
 * `--http`: the same request through the server instead (createApp on Deno.serve, a streamed
 * /v1/chat/completions with the image as a data URL), timed by a client in its own process (this
 * file with `--client PORT`; in the server's process its reads would wait out the server's GPU
 * waits): `first_text_ms` is the first content delta's arrival, `lag_ms` the median and largest
 * time from the engine yielding a delta to its arrival at the client (one clock: the machine's),
 * `health_ms` the median and largest time a `GET /health` took, polled every 20 ms meanwhile.
 * `--worker`: the server's engine is loadWorkerEngine()'s (the model on a worker thread, as
 * src/server/serve.ts runs it) instead of a Pipeline on the server's thread.
 *
 * Random-weight checkpoints (bench/main.ts --checkpoint DIR --write-checkpoint) have no tokenizer:
 * copy tests/fixtures/tiny-qwen2vl's tokenizer.json, tokenizer_config.json,
 * preprocessor_config.json, chat_template.json and generation_config.json into DIR.
 * @module
 */
import type {
  ChatEngine,
  ChatMessage,
  GenerateOptions,
  GenerationResult,
} from "../src/generate/types.ts";
import { optionReader } from "./_args.ts";

const args = Deno.args;
const opt = optionReader("bench/_e2e.ts", args);
const image = await Deno.readFile(opt("--image"));
const quant = opt("--quant", "f16") as "f16" | "q8" | "q4";
const maxNewTokens = Number(opt("--max-tokens", "256"));
const runs = Number(opt("--runs", "3"));
const text = opt("--prompt", "Describe the image.");
/** `--copies N`: the message carries the image N times (a request of several images). */
const copies = Number(opt("--copies", "1"));
const mime = image[0] === 0x89 ? "image/png" : "image/jpeg"; // PNG's signature starts 0x89
const http = args.includes("--http");
const gapMs = Number(opt("--gap-ms", "0"));
const inWorker = args.includes("--worker");
const round = (x: number) => Math.round(x * 10) / 10;
/** Milliseconds on a clock that two processes of this machine share. */
const clock = () => performance.timeOrigin + performance.now();
if (args.includes("--client")) {
  console.log(JSON.stringify(await viaHttp(Number(opt("--client")), opt("--model-id"))));
  Deno.exit(0);
}
const model = opt("--model");
// Imported here, not statically: the client process needs none of it (nor the import map).
const { Pipeline } = await import("../src/pipeline.ts");
const { createApp } = await import("../src/server/app.ts");

const t = performance.now();
const loadOptions = { promptCache: false, ...(quant === "f16" ? {} : { quant }) };
// The model once: in the worker (--http --worker) or on this thread.
const { loadWorkerEngine } = await import("../src/server/worker_engine.ts");
const worker = http && inWorker ? await loadWorkerEngine(model, loadOptions) : undefined;
const p = worker ? undefined : await Pipeline.load(model, loadOptions);
const loadS = (performance.now() - t) / 1000;
// The server's engine (the pipeline here, or the worker's), noting when it yields each delta and
// its final record.
const base: ChatEngine = worker ?? p!;
let sent: number[] = [];
let served: GenerationResult | undefined;
const engine: ChatEngine = {
  modelId: base.modelId,
  async *generate(messages: ChatMessage[], options?: GenerateOptions) {
    for await (const ev of base.generate(messages, options)) {
      if (ev.type === "delta" && ev.text) sent.push(clock());
      if (ev.type === "done") served = ev.result;
      yield ev;
    }
  },
};
const server = http ? Deno.serve({ port: 0, onListen() {} }, createApp(engine).fetch) : undefined;
try {
  for (let r = 0; r < runs; r++) {
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    const t0 = performance.now();
    const timed = server ? await viaServer(server.addr.port) : await viaModule(t0);
    console.log(JSON.stringify({
      model,
      quant,
      run: r,
      http,
      worker: !!worker,
      load_s: Math.round(loadS * 100) / 100,
      ...timed,
      total_ms: round(performance.now() - t0),
    }));
  }
} finally {
  await server?.shutdown();
  worker?.dispose();
  await worker?.closed;
  p?.dispose();
}

/** generate() of the message: the first delta's arrival, the usage and the timings. */
async function viaModule(t0: number) {
  let first = NaN;
  let result: GenerationResult | undefined;
  const messages = [{
    role: "user" as const,
    content: [
      ...Array.from({ length: copies }, () => ({ type: "image" as const, image })),
      { type: "text" as const, text },
    ],
  }];
  for await (const ev of p!.generate(messages, { maxNewTokens, temperature: 0 })) {
    if (ev.type === "delta") {
      if (Number.isNaN(first)) first = performance.now() - t0;
    } else result = ev.result;
  }
  return {
    first_text_ms: round(first),
    ...result!.usage,
    ...Object.fromEntries(Object.entries(result!.timings).map(([k, v]) => [k, round(v)])),
  };
}

/** The message through the server: client-side arrivals against the engine's deltas. */
async function viaServer(port: number) {
  sent = [];
  const c: { t0: number; arrivals: number[]; health: number[] } = await client(port);
  const lags = c.arrivals.map((t, i) => t - sent[i]).sort((a, b) => a - b);
  const health = c.health.sort((a, b) => a - b);
  return {
    first_text_ms: round(c.arrivals[0] - c.t0),
    deltas: c.arrivals.length,
    engine_deltas: sent.length,
    lag_ms: { median: round(lags[lags.length >> 1]), max: round(lags.at(-1)!) },
    health_ms: {
      polls: health.length,
      median: round(health[health.length >> 1]),
      max: round(health.at(-1)!),
    },
    ...served!.usage,
    ...Object.fromEntries(Object.entries(served!.timings).map(([k, v]) => [k, round(v)])),
  };
}

/** Runs this file as the client of the server at `port`, in a process of its own. */
async function client(port: number) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-config",
      "--no-check",
      new URL(import.meta.url).pathname,
      "--client",
      String(port),
      "--model-id",
      base.modelId,
      "--image",
      opt("--image"),
      "--copies",
      String(copies),
      "--max-tokens",
      String(maxNewTokens),
      "--prompt",
      text,
    ],
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("bench/_e2e.ts: the client failed");
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** The message streamed from the server: when its content deltas arrive (this process). */
async function viaHttp(port: number, modelId: string) {
  const t0 = clock();
  // GET /health every 20 ms from the request to the answer's end: how long the server keeps a
  // client waiting.
  let streaming = true;
  const health: number[] = [];
  const polling = (async () => {
    while (streaming) {
      const h0 = clock();
      await (await fetch(`http://127.0.0.1:${port}/health`)).body?.cancel();
      health.push(clock() - h0);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: modelId,
      stream: true,
      max_tokens: maxNewTokens,
      temperature: 0,
      messages: [{
        role: "user",
        content: [
          ...Array.from({ length: copies }, () => ({
            type: "image_url",
            image_url: { url: `data:${mime};base64,${image.toBase64()}` },
          })),
          { type: "text", text },
        ],
      }],
    }),
  });
  if (!res.ok) throw new Error(`bench/_e2e.ts: HTTP ${res.status}: ${await res.text()}`);
  const arrivals: number[] = [];
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const bytes of res.body!) {
    const now = clock();
    buffered += decoder.decode(bytes, { stream: true });
    const events = buffered.split("\n\n");
    buffered = events.pop()!;
    for (const e of events) {
      const data = e.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      if (JSON.parse(data).choices?.[0]?.delta?.content) arrivals.push(now);
    }
  }
  streaming = false;
  await polling;
  return { t0, arrivals, health };
}
