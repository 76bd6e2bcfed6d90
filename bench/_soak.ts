/**
 * A soak of the server as its users meet it at once: K clients for D seconds against createApp on
 * Deno.serve (the model in this process, `parallel` generations at once, batched), each sending a
 * seeded random mix — streamed and whole chats with one of two images or none, `n` up to 3,
 * sampled or greedy, JSON mode, logprobs, legacy completions scoring their prompt (echo), bursts
 * of the same image prompt at once (one prefill shared), Ollama's /api/chat (NDJSON or whole),
 * stored Responses read back by id, malformed requests, and clients that leave mid-answer. Every answer is checked (status, choices and indices, finish reasons, usage
 * within max_tokens, JSON mode's JSON, a stream's [DONE]) and the server must log no error
 * (`server_errors`); afterwards it must go idle, the GPU buffers not destroyed must come back to
 * what they were after the warm-up (the prompt cache cleared both times), and a greedy request
 * must give the tokens it gave before the soak. Prints one JSON line: requests by kind and
 * outcome, failures, the server's errors, tokens, live GPU bytes.
 *
 *   deno run -A --v8-flags=--expose-gc bench/_soak.ts --model DIR --image FILE [--image2 FILE]
 *     [--clients 8] [--seconds 60 | --requests N] [--rounds 2] [--parallel 4] [--quant q4|q8]
 *     [--max-tokens 160] [--seed 1] [--no-batch] [--worker] [--max-queue 64]
 *
 * `live_gpu_bytes`: after the warm-up, then after each round of `--seconds` (scratch buffers grown
 * for shapes first met in a round stay: a leak keeps growing round after round).
 *
 * Random-weight checkpoints need the tiny model's tokenizer files beside them (bench/_e2e.ts).
 * @module
 */
import { Pipeline } from "../src/pipeline.ts";
import { createApp } from "../src/server/app.ts";
import { loadWorkerEngine } from "../src/server/worker_engine.ts";
import { seeded } from "../src/ref/_random.ts";
import { optionReader } from "./_args.ts";

const args = Deno.args;
const opt = optionReader("bench/_soak.ts", args);
const dataUrl = (bytes: Uint8Array) =>
  `data:${bytes[0] === 0x89 ? "image/png" : "image/jpeg"};base64,${bytes.toBase64()}`;
const images = [opt("--image"), opt("--image2", opt("--image"))].map((f) =>
  dataUrl(Deno.readFileSync(f))
);
const clients = Number(opt("--clients", "8"));
const seconds = Number(opt("--seconds", "60"));
// --requests N: each client sends N requests a round (a burst counts once), whatever they take.
const requests = Number(opt("--requests", "0"));
const parallel = Number(opt("--parallel", "4"));
const maxTokens = Number(opt("--max-tokens", "160"));
const quant = opt("--quant", "f16");

// Every GPU buffer created and not yet destroyed (weakly held: one dropped without destroy() and
// collected leaves the count), by size.
const live = new Map<number, { ref: WeakRef<GPUBuffer>; size: number }>();
let bufferIds = 0;
const gone = new FinalizationRegistry<number>((id) => live.delete(id));
const create = GPUDevice.prototype.createBuffer;
GPUDevice.prototype.createBuffer = function (this: GPUDevice, d: GPUBufferDescriptor) {
  const b = create.call(this, d);
  const id = bufferIds++;
  live.set(id, { ref: new WeakRef(b), size: d.size });
  gone.register(b, id);
  const destroy = b.destroy.bind(b);
  b.destroy = () => {
    live.delete(id);
    destroy();
  };
  return b;
};
const liveBytes = () => {
  let n = 0;
  for (const { ref, size } of live.values()) if (ref.deref()) n += size;
  return n;
};

// What the server logs as errors (an internal error's stack, a stream's failure line): none is
// expected — a client leaving is not an error of the server's.
const logged: string[] = [];
const consoleError = console.error;
console.error = (...data: unknown[]) => {
  const text = data.map((d) => d instanceof Error ? d.stack ?? String(d) : String(d)).join(" ");
  if (logged.length < 10) logged.push(text.slice(0, 2000));
  consoleError(...data);
};

// --worker: the model on a worker thread, as `deno serve` runs it (src/server/serve.ts): its GPU
// buffers and prompt cache are the worker's, so live_gpu_bytes and the greedy check are null, and
// what the worker logs goes to stderr, not into server_errors.
const inWorker = args.includes("--worker");
const loadOptions = {
  parallel,
  batchDecode: !args.includes("--no-batch"),
  ...(quant === "f16" ? {} : { quant: quant as "q4" | "q8" }),
};
const t0 = performance.now();
const p = inWorker ? undefined : await Pipeline.load(opt("--model"), loadOptions);
const worker = inWorker ? await loadWorkerEngine(opt("--model"), loadOptions) : undefined;
const engine = p ?? worker!;
const loadS = (performance.now() - t0) / 1000;
// --max-queue N: requests that may wait (past it a 503, counted as refused).
const app = createApp(engine, { maxQueue: Number(opt("--max-queue", "64")) });
const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.fetch);
const base = `http://127.0.0.1:${server.addr.port}`;

type Outcome = "ok" | "left" | "refused" | "fail";
const tally: Record<string, Record<Outcome, number>> = {};
const failures: string[] = [];
let completionTokens = 0;
const note = (kind: string, outcome: Outcome, why?: string) => {
  (tally[kind] ??= { ok: 0, left: 0, refused: 0, fail: 0 })[outcome]++;
  if (why && failures.length < 20) failures.push(`${kind}: ${why}`);
};

// A 503 (the queue full): counted, its body dropped, and a pause before the client's next
// request (a client hammering at once would make the soak a test of refusals alone).
const refused = async (kind: string, res: Response) => {
  await res.body?.cancel();
  note(kind, "refused");
  await new Promise((r) => setTimeout(r, 250));
};

const post = (path: string, body: unknown, signal?: AbortSignal) =>
  fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });

const userMessage = (r: () => number, text: string) => {
  const i = Math.floor(r() * 3); // no image, image 1, image 2
  return {
    role: "user",
    content: i === 0 ? text : [
      { type: "image_url", image_url: { url: images[i - 1] } },
      { type: "text", text },
    ],
  };
};

/** What is wrong with a whole chat answer of n choices at most `max` tokens each, or "". */
function checkWhole(j: Record<string, unknown>, n: number, max: number, json: boolean): string {
  const choices = j.choices as {
    index: number;
    finish_reason: string;
    message: { content: string };
  }[];
  if (choices?.length !== n) return `${choices?.length} choices for n ${n}`;
  const seen = new Set(choices.map((c) => c.index));
  if (seen.size !== n || [...seen].some((i) => i < 0 || i >= n)) return "choice indices";
  for (const c of choices) {
    if (c.finish_reason !== "stop" && c.finish_reason !== "length") {
      return `finish_reason ${c.finish_reason}`;
    }
    if (json && c.finish_reason === "stop") {
      try {
        JSON.parse(c.message.content);
      } catch {
        return `JSON mode answer not JSON: ${c.message.content.slice(0, 80)}`;
      }
    }
  }
  const u = j.usage as { completion_tokens: number };
  if (!(u.completion_tokens <= n * max)) return `${u.completion_tokens} tokens over ${n}·${max}`;
  completionTokens += u.completion_tokens;
  return "";
}

/** Reads a chat stream; what is wrong with it, or "". */
async function checkStream(res: Response, n: number, max: number): Promise<string> {
  const text = await res.text();
  const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
  if (events.at(-1) !== "data: [DONE]") return `stream ends ${JSON.stringify(events.at(-1))}`;
  const finished = new Map<number, string>();
  let usage: { completion_tokens: number } | undefined;
  for (const e of events.slice(0, -1)) {
    const j = JSON.parse(e.slice(6));
    if (j.error) return `error event ${JSON.stringify(j.error).slice(0, 120)}`;
    for (const c of j.choices ?? []) if (c.finish_reason) finished.set(c.index, c.finish_reason);
    usage = j.usage ?? usage;
  }
  if (finished.size !== n) return `${finished.size} choices finished for n ${n}`;
  if (!usage) return "no usage chunk";
  if (!(usage.completion_tokens <= n * max)) {
    return `${usage.completion_tokens} tokens over ${n}·${max}`;
  }
  completionTokens += usage.completion_tokens;
  return "";
}

async function one(r: () => number): Promise<void> {
  const x = r();
  const max = 1 + Math.floor(r() * maxTokens);
  const sample = r() < 0.5 ? { temperature: 0.8, seed: Math.floor(r() * 1e6) } : { temperature: 0 };
  if (x < 0.3) {
    // Streamed chat, maybe several choices, maybe left mid-answer.
    const n = 1 + Math.floor(r() * 3);
    const leave = r() < 0.3 ? 50 + r() * 1500 : 0;
    const ac = new AbortController();
    const timer = leave ? setTimeout(() => ac.abort(), leave) : undefined;
    try {
      const res = await post("/v1/chat/completions", {
        model: engine.modelId,
        messages: [userMessage(r, "Describe it.")],
        stream: true,
        stream_options: { include_usage: true },
        n,
        max_tokens: max,
        ...sample,
      }, ac.signal);
      if (res.status === 503) return await refused("stream", res);
      if (res.status !== 200) return note("stream", "fail", `${res.status} ${await res.text()}`);
      const why = await checkStream(res, n, max);
      note("stream", why ? "fail" : "ok", why || undefined);
    } catch (e) {
      if (ac.signal.aborted) return note("stream", "left");
      note("stream", "fail", String(e));
    } finally {
      clearTimeout(timer);
    }
  } else if (x < 0.52) {
    // Whole chat: JSON mode or logprobs sometimes.
    const n = 1 + Math.floor(r() * 2);
    const json = r() < 0.3;
    const res = await post("/v1/chat/completions", {
      model: engine.modelId,
      messages: [userMessage(r, json ? "Answer in JSON." : "What is it?")],
      n,
      max_tokens: max,
      ...(json ? { response_format: { type: "json_object" } } : {}),
      ...(r() < 0.3 ? { logprobs: true, top_logprobs: 3 } : {}),
      ...sample,
    });
    if (res.status === 503) return await refused("whole", res);
    if (res.status !== 200) return note("whole", "fail", `${res.status} ${await res.text()}`);
    const why = checkWhole(await res.json(), n, max, json);
    note("whole", why ? "fail" : "ok", why || undefined);
  } else if (x < 0.6) {
    // Legacy completion scoring its prompt.
    const res = await post("/v1/completions", {
      model: engine.modelId,
      prompt: "The quick brown fox jumps over the lazy dog",
      echo: true,
      logprobs: 2,
      max_tokens: Math.floor(r() * 4),
      temperature: 0,
    });
    if (res.status === 503) return await refused("score", res);
    const j = await res.json();
    const lp = j.choices?.[0]?.logprobs;
    const ok = res.status === 200 && lp?.tokens?.length > 0 && lp.token_logprobs[0] === null;
    note(
      "score",
      ok ? "ok" : "fail",
      ok ? undefined : `${res.status} ${JSON.stringify(j).slice(0, 160)}`,
    );
    if (ok) completionTokens += j.usage.completion_tokens;
  } else if (x < 0.72) {
    // A burst of one image prompt at once: one prefill shared.
    const msg = {
      role: "user",
      content: [{ type: "image_url", image_url: { url: images[0] } }, {
        type: "text",
        text: "Burst.",
      }],
    };
    const all = await Promise.all([0, 1, 2].map(async () => {
      const res = await post("/v1/chat/completions", {
        model: engine.modelId,
        messages: [msg],
        max_tokens: max,
        ...sample,
      });
      if (res.status === 503) return await refused("burst", res);
      return res.status === 200
        ? checkWhole(await res.json(), 1, max, false)
        : `${res.status} ${await res.text()}`;
    }));
    // (undefined: refused, noted already)
    for (const why of all) {
      if (why !== undefined) note("burst", why ? "fail" : "ok", why || undefined);
    }
  } else if (x < 0.8) {
    // Ollama's /api/chat, its image as base64, streamed as NDJSON or whole.
    const stream = r() < 0.5;
    const withImage = r() < 0.5;
    const res = await post("/api/chat", {
      model: engine.modelId,
      messages: [{
        role: "user",
        content: "What is shown?",
        ...(withImage ? { images: [images[0].slice(images[0].indexOf(",") + 1)] } : {}),
      }],
      stream,
      options: { num_predict: max, ...sample },
    });
    if (res.status === 503) return await refused("ollama", res);
    if (res.status !== 200) return note("ollama", "fail", `${res.status} ${await res.text()}`);
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
    const last = lines.at(-1);
    const why = lines.some((l) => l.error)
      ? `error line ${JSON.stringify(lines.find((l) => l.error))}`
      : !stream && lines.length !== 1
      ? `${lines.length} lines, not streamed`
      : last?.done !== true || !["stop", "length"].includes(last.done_reason)
      ? `last line ${JSON.stringify(last).slice(0, 160)}`
      : !(last.eval_count <= max)
      ? `eval_count ${last.eval_count} over ${max}`
      : "";
    if (!why) completionTokens += last.eval_count;
    note("ollama", why ? "fail" : "ok", why || undefined);
  } else if (x < 0.9) {
    // The Responses API, stored, then read back by id.
    const stream = r() < 0.5;
    const budget = Math.max(16, max);
    const res = await post("/v1/responses", {
      model: engine.modelId,
      input: [{
        role: "user",
        content: [{ type: "input_text", text: "Describe it." }, {
          type: "input_image",
          image_url: images[1],
        }],
      }],
      max_output_tokens: budget,
      stream,
      ...sample,
    });
    if (res.status === 503) return await refused("responses", res);
    if (res.status !== 200) return note("responses", "fail", `${res.status} ${await res.text()}`);
    let response: { id: string; status: string; usage: { output_tokens: number } } | undefined;
    if (stream) {
      const events = (await res.text()).split("\n\n").filter((e) => e.includes("data: "));
      const last = events.at(-1) ?? "";
      response = JSON.parse(last.slice(last.indexOf("data: ") + 6)).response;
    } else response = await res.json();
    const got = response && await fetch(`${base}/v1/responses/${response.id}`);
    const stored = got?.status === 200 ? await got.json() : undefined;
    const why = !response || !["completed", "incomplete"].includes(response.status)
      ? `status ${response?.status}`
      : !(response.usage.output_tokens <= budget)
      ? `${response.usage.output_tokens} tokens over ${budget}`
      : stored?.id !== response.id
      ? `GET /v1/responses/${response.id}: ${got?.status}`
      : "";
    if (!why) completionTokens += response!.usage.output_tokens;
    note("responses", why ? "fail" : "ok", why || undefined);
  } else {
    // Malformed: no messages, a broken image, an unknown role: a 400 each.
    const bodies = [
      { model: engine.modelId },
      {
        model: engine.modelId,
        messages: [{
          role: "user",
          content: [{
            type: "image_url",
            image_url: { url: "data:image/png;base64,iVBORw0KGgoAAAANSU" },
          }],
        }],
      },
      { model: engine.modelId, messages: [{ role: "wizard", content: "hi" }] },
    ];
    const res = await post("/v1/chat/completions", bodies[Math.floor(r() * bodies.length)]);
    // A full queue turns a request away before its images are decoded: the broken image's 400
    // comes once there is room.
    if (res.status === 503) return await refused("bad", res);
    const j = await res.json();
    const ok = res.status === 400 && typeof j.error?.message === "string";
    note(
      "bad",
      ok ? "ok" : "fail",
      ok ? undefined : `${res.status} ${JSON.stringify(j).slice(0, 160)}`,
    );
  }
}

const greedy = async () => {
  const res = await post("/v1/chat/completions", {
    model: engine.modelId,
    messages: [userMessage(() => 0.5, "Describe the picture in detail.")],
    max_tokens: 48,
    temperature: 0,
    logprobs: true,
  });
  const j = await res.json();
  return JSON.stringify(j.choices[0].logprobs.content.map((t: { token: string }) => t.token));
};
// Warm-up: shaders of one and of several at once.
const before = await greedy();
await Promise.all([0, 1, 2, 3].map((i) => one(seeded(1000 + i))));

const seed = Number(opt("--seed", "1"));
const rounds = Number(opt("--rounds", "2"));
// The server idle (nothing running or waiting, by its own metrics), the prompt cache cleared and,
// with --v8-flags=--expose-gc, garbage collected: the GPU bytes still held.
const settle = async () => {
  const by = performance.now() + 30_000;
  let idle = false;
  while (!idle && performance.now() < by) {
    const m = await (await fetch(base + "/metrics")).text();
    idle = /qvq:num_requests_running\{[^}]*\} 0\b/.test(m) &&
      /qvq:num_requests_waiting\{[^}]*\} 0\b/.test(m);
    if (!idle) await new Promise((r) => setTimeout(r, 200));
  }
  await p?.clearPromptCache();
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 100)); // finalizers run
  return { idle, bytes: liveBytes() };
};
const baseline = (await settle()).bytes;
const perRound: { idle: boolean; bytes: number }[] = [];
const t1 = performance.now();
for (let round = 0; round < rounds; round++) {
  const until = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    const r = seeded(seed * 7919 + round * 104729 + c);
    for (let i = 0; requests ? i < requests : performance.now() < until; i++) {
      try {
        await one(r);
      } catch (e) {
        note("client", "fail", String(e));
      }
    }
  }));
  perRound.push(await settle());
}
const soakS = (performance.now() - t1) / 1000;
const after = await greedy();
console.log(JSON.stringify({
  clients,
  requests,
  seconds: Math.round(soakS),
  parallel,
  batch: loadOptions.batchDecode,
  worker: inWorker,
  quant,
  load_s: Math.round(loadS * 100) / 100,
  tally,
  failures,
  server_errors: logged,
  completion_tokens: completionTokens,
  tok_s: Math.round(completionTokens / soakS * 10) / 10,
  idle: perRound.every((r) => r.idle),
  same_greedy_answer: p ? before === after : null,
  live_gpu_bytes: p ? { baseline, rounds: perRound.map((r) => r.bytes) } : null,
}));
await server.shutdown();
p?.dispose();
worker?.dispose();
await worker?.closed;
