import assert from "node:assert/strict";
import { Hono } from "hono";
import {
  ContextLengthError,
  DeviceLostError,
  EngineClosedError,
  GpuError,
  InvalidInputError,
} from "../errors.ts";
import { ChatTemplate } from "../generate/chat_template.ts";
import type { ChatMessage, GenerateOptions, GenerationEvent } from "../generate/types.ts";
import { decodeImage } from "../image.ts";
import { createApp, type ServerOptions } from "./app.ts";
import {
  DisposableFake,
  FakeEngine,
  type FakeEngineOptions,
  gate,
  waitFor,
} from "./_fake_engine.ts";
import { handedOver } from "./worker_engine.ts";

const PNG = await Deno.readFile(
  new URL("../../tests/fixtures/tiny-qwen2vl/reference/case0_0.png", import.meta.url),
);
const PNG_URL = `data:image/png;base64,${PNG.toBase64()}`;
const PIXELS = await decodeImage(PNG);
const MODEL = "fake/qvq-test";

function setup(engine: FakeEngineOptions = {}, options: ServerOptions = {}) {
  const fake = new FakeEngine(engine);
  return { fake, app: createApp(fake, options) };
}

function post(
  app: ReturnType<typeof createApp>,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return Promise.resolve(app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  }));
}

const hello = { model: MODEL, messages: [{ role: "user", content: "Hello there" }] };

/** The `data:` payloads of an SSE body, in order (comments dropped). */
async function sseData(response: Response): Promise<string[]> {
  const text = await response.text();
  return text.split("\n\n").filter((b) => b.startsWith("data: ")).map((b) => b.slice(6));
}

Deno.test("POST /v1/chat/completions answers in OpenAI's chat.completion format", async () => {
  const { app } = setup();
  const response = await post(app, hello);
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.match(body.id, /^chatcmpl-[0-9a-f]{32}$/);
  assert.equal(body.object, "chat.completion");
  assert.equal(body.model, MODEL);
  assert.equal(typeof body.created, "number");
  assert.deepEqual(body.choices, [{
    index: 0,
    message: { role: "assistant", content: "I see 0 images. You said: Hello there", refusal: null },
    logprobs: null,
    finish_reason: "stop",
    native_finish_reason: "stop",
    stop_reason: null,
  }]);
  assert.deepEqual(body.usage, {
    prompt_tokens: 10,
    completion_tokens: 8,
    total_tokens: 18,
    prompt_tokens_details: { cached_tokens: 0, image_tokens: 0 },
  });
  assert.deepEqual(body.timings, {
    vision_ms: 1,
    prefill_ms: 2,
    decode_ms: 3,
    tokens_per_second: 42,
  });
});

Deno.test("POST /v1/chat/completions passes text and image parts and every option to the engine", async () => {
  const { app, fake } = setup();
  const response = await post(app, {
    model: MODEL,
    messages: [
      { role: "developer", content: "Think step by step." },
      {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: PNG_URL, detail: "high" } },
          { type: "text", text: "What is this?" },
        ],
      },
      { role: "assistant", content: [{ type: "text", text: "A square." }] },
      { role: "user", content: "Sure?" },
    ],
    max_completion_tokens: 100,
    temperature: 0.7,
    top_p: 0.9,
    top_k: 20,
    min_p: 0.05,
    min_tokens: 2,
    seed: 7,
    stop: "END",
    stop_token_ids: [151643, 13],
    ignore_eos: false,
    repetition_penalty: 1.05,
    frequency_penalty: 0.25,
    presence_penalty: -0.5,
    logit_bias: { "9707": -100, "11": 2 },
    response_format: { type: "json_object" },
    n: 1,
    user: "ignored",
  });
  assert.equal(response.status, 200);
  const [call] = fake.calls;
  assert.deepEqual(call.messages, [
    { role: "system", content: "Think step by step." },
    {
      role: "user",
      // Decoded once, by the server: the engine takes the pixels of a request that runs at once.
      content: [{ type: "image", image: PIXELS }, { type: "text", text: "What is this?" }],
    },
    { role: "assistant", content: [{ type: "text", text: "A square." }] },
    { role: "user", content: "Sure?" },
  ]);
  const { signal, ...options } = call.options;
  assert.ok(signal instanceof AbortSignal);
  assert.deepEqual(options, {
    maxNewTokens: 100,
    temperature: 0.7,
    topP: 0.9,
    topK: 20,
    minP: 0.05,
    minTokens: 2,
    seed: 7,
    stop: ["END"],
    stopTokenIds: [151643, 13],
    ignoreEos: false,
    repetitionPenalty: 1.05,
    frequencyPenalty: 0.25,
    presencePenalty: -0.5,
    logitBias: { 9707: -100, 11: 2 },
    // An answer held to a format: no loop stop unless asked for (it would end it unfinished).
    stopOnLoop: false,
    responseFormat: "json_object",
  });
});

Deno.test("POST /v1/chat/completions leaves unset options to the engine's defaults", async () => {
  const { app, fake } = setup({}, { stopOnLoop: false });
  await (await post(app, { ...hello, max_tokens: 5, temperature: null, stop: ["a", "b"] })).json();
  const { signal: _, ...options } = fake.calls[0].options;
  assert.deepEqual(options, { maxNewTokens: 5, stop: ["a", "b"], stopOnLoop: false });
});

Deno.test("POST /v1/chat/completions and /v1/responses without a length let the answer run as long as the context holds", async () => {
  const { app, fake } = setup();
  await (await post(app, hello)).json();
  await (await post(app, { ...hello, max_tokens: null, max_completion_tokens: null })).json();
  const responses = await app.request("/v1/responses", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, input: "Hi" }),
  });
  assert.equal(responses.status, 200);
  await responses.json();
  // Infinity: the engine's "as many as the context holds" (the module's default is 2048).
  assert.deepEqual(fake.calls.map((c) => c.options.maxNewTokens), [Infinity, Infinity, Infinity]);
});

Deno.test("POST /v1/chat/completions maps finish reasons: length, and loop as stop with the native reason", async () => {
  const long = await (await post(setup().app, { ...hello, max_tokens: 3 })).json();
  assert.equal(long.choices[0].finish_reason, "length");
  assert.equal(long.choices[0].message.content, "I see 0");
  const loop = await (await post(setup({ finishReason: "loop" }).app, hello)).json();
  assert.equal(loop.choices[0].finish_reason, "stop");
  assert.equal(loop.choices[0].native_finish_reason, "loop");
});

Deno.test("stream: true sends role, content deltas, finish and usage chunks, then [DONE]", async () => {
  const { app } = setup();
  const response = await post(app, {
    ...hello,
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const data = await sseData(response);
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const ids = new Set(chunks.map((c) => c.id));
  assert.equal(ids.size, 1);
  for (const c of chunks) {
    assert.equal(c.object, "chat.completion.chunk");
    assert.equal(c.model, MODEL);
  }
  assert.deepEqual(chunks[0].choices, [{
    index: 0,
    delta: { role: "assistant", content: "" },
    logprobs: null,
    finish_reason: null,
  }]);
  assert.equal(chunks[0].usage, null);
  const deltas = chunks.slice(1, -2).map((c) => c.choices[0].delta.content);
  assert.deepEqual(deltas, ["I", " see", " 0", " images.", " You", " said:", " Hello", " there"]);
  const finish = chunks.at(-2);
  assert.deepEqual(finish.choices[0].delta, {});
  assert.equal(finish.choices[0].finish_reason, "stop");
  assert.equal(finish.choices[0].native_finish_reason, "stop");
  assert.equal(finish.usage, null);
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.equal(usage.usage.completion_tokens, 8);
  assert.equal(usage.usage.total_tokens, 18);
});

Deno.test("logprobs: each token's logprob and top_logprobs, in the response and in the stream", async () => {
  const { app, fake } = setup();
  const body = { ...hello, max_tokens: 3, logprobs: true, top_logprobs: 2 };
  const json = await (await post(app, body)).json();
  const { signal: _, ...options } = fake.calls[0].options;
  assert.deepEqual(options, { maxNewTokens: 3, logprobs: true, topLogprobs: 2, stopOnLoop: true });
  const tok = (token: string, logprob: number) => ({
    token,
    logprob,
    bytes: [...new TextEncoder().encode(token)],
  });
  const want = ["I", " see", " 0"].map((t, k) => ({
    ...tok(t, -(k + 1) / 10),
    top_logprobs: [tok(t, -(k + 1) / 10), tok("alt1", -(k + 1) / 10 - 1)],
  }));
  assert.deepEqual(json.choices[0].logprobs, { content: want, refusal: null });
  // Streamed: each content chunk carries its own tokens' entries; the others none.
  const data = await sseData(await post(app, { ...body, stream: true }));
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  assert.deepEqual(
    chunks.map((c) => c.choices[0].logprobs?.content ?? null),
    [null, [want[0]], [want[1]], [want[2]], null],
  );
  // logprobs without top_logprobs: empty alternatives, as OpenAI sends them.
  const bare = await (await post(app, { ...hello, max_tokens: 1, logprobs: true })).json();
  assert.deepEqual(bare.choices[0].logprobs.content, [{ ...tok("I", -0.1), top_logprobs: [] }]);
  // logprobs false (top_logprobs 0 beside it, as clients sending defaults do): null, and the
  // engine is not asked.
  const off = await (await post(app, { ...hello, max_tokens: 1, logprobs: false, top_logprobs: 0 }))
    .json();
  assert.equal(off.choices[0].logprobs, null);
  assert.equal(fake.calls.at(-1)!.options.logprobs, undefined);
});

Deno.test("POST /v1/completions continues a raw prompt: text_completion, legacy logprobs, usage", async () => {
  const { app, fake } = setup();
  const post = (body: object) =>
    app.request("/v1/completions", { method: "POST", body: JSON.stringify(body) });
  const body = { model: MODEL, prompt: "Once upon", max_tokens: 3, logprobs: 2, seed: 1 };
  const json = await (await post(body)).json();
  assert.equal(json.object, "text_completion");
  assert.match(json.id, /^cmpl-[0-9a-f]{32}$/);
  assert.equal(json.choices[0].text, "I see 0");
  assert.equal(json.choices[0].finish_reason, "length");
  assert.equal(json.usage.completion_tokens, 3);
  assert.deepEqual(fake.prompts, ["Once upon"]);
  const { signal: _, ...options } = fake.calls[0].options;
  assert.deepEqual(options, {
    maxNewTokens: 3,
    seed: 1,
    logprobs: true,
    topLogprobs: 2,
    stopOnLoop: true,
  });
  // OpenAI's legacy shape: tokens, their logprobs, the alternatives (and the token) by text, and
  // where each token starts in the text.
  assert.deepEqual(json.choices[0].logprobs, {
    tokens: ["I", " see", " 0"],
    token_logprobs: [-0.1, -0.2, -0.3],
    top_logprobs: [
      { I: -0.1, alt1: -1.1 },
      { " see": -0.2, alt1: -1.2 },
      { " 0": -0.3, alt1: -1.3 },
    ],
    text_offset: [0, 1, 5],
  });
  // Streamed: text chunks (no role chunk), offsets running on, an empty finish chunk, usage.
  const data = await sseData(
    await post({ ...body, stream: true, stream_options: { include_usage: true } }),
  );
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  assert.ok(chunks.every((c) => c.object === "text_completion" && c.id === chunks[0].id));
  assert.deepEqual(chunks.slice(0, 3).map((c) => c.choices[0].text), ["I", " see", " 0"]);
  assert.deepEqual(chunks.slice(0, 3).map((c) => c.choices[0].logprobs.text_offset), [
    [0],
    [1],
    [5],
  ]);
  assert.deepEqual(chunks[3].choices[0], {
    index: 0,
    text: "",
    logprobs: null,
    finish_reason: "length",
    native_finish_reason: "length",
    stop_reason: null,
  });
  assert.deepEqual(chunks[4].choices, []);
  assert.equal(chunks[4].usage.total_tokens, 13);
  // max_tokens defaults to 16 there, as OpenAI's and vLLM's; token ids (alone or in a list of
  // one) are a prompt too.
  await (await post({ model: MODEL, prompt: [[9707, 11]] })).json();
  assert.equal(fake.calls.at(-1)!.options.maxNewTokens, 16);
  assert.deepEqual(fake.prompts.at(-1), [9707, 11]);
});

Deno.test("POST /v1/completions echo: the prompt first, its tokens scored (null first), alone with max_tokens 0", async () => {
  const { app, fake } = setup();
  const post = (body: object) =>
    app.request("/v1/completions", { method: "POST", body: JSON.stringify(body) });
  const body = { model: MODEL, prompt: "Once upon", max_tokens: 2, logprobs: 1, echo: true };
  const json = await (await post(body)).json();
  assert.equal(json.choices[0].text, "Once uponI see");
  const { signal: _, ...options } = fake.calls[0].options;
  assert.deepEqual(options, {
    maxNewTokens: 2,
    logprobs: true,
    topLogprobs: 1,
    echo: true,
    promptLogprobs: 1,
    stopOnLoop: true,
  });
  // The prompt's tokens, then the completion's; text offsets run on through both.
  assert.deepEqual(json.choices[0].logprobs, {
    tokens: ["Once", " upon", "I", " see"],
    token_logprobs: [null, -0.01, -0.1, -0.2],
    top_logprobs: [null, { " upon": -0.01, palt0: -1.01 }, { I: -0.1 }, { " see": -0.2 }],
    text_offset: [0, 4, 9, 10],
  });
  assert.equal(json.usage.completion_tokens, 2);
  // Streamed: the prompt in a chunk of its own, first.
  const data = await sseData(await post({ ...body, stream: true }));
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d).choices[0]);
  assert.deepEqual(chunks.map((c) => c.text), ["Once upon", "I", " see", ""]);
  assert.deepEqual(chunks[0].logprobs.token_logprobs, [null, -0.01]);
  assert.deepEqual(chunks.slice(0, 3).map((c) => c.logprobs.text_offset), [[0, 4], [9], [10]]);
  // max_tokens 0 (lm-evaluation-harness's loglikelihood): one token runs, the prompt alone shows.
  const zero = { ...body, max_tokens: 0 };
  const only = await (await post(zero)).json();
  assert.equal(fake.calls.at(-1)!.options.maxNewTokens, 1);
  assert.equal(only.choices[0].text, "Once upon");
  assert.deepEqual(only.choices[0].logprobs.tokens, ["Once", " upon"]);
  assert.equal(only.choices[0].finish_reason, "length");
  assert.equal(only.usage.completion_tokens, 0);
  assert.equal(only.usage.total_tokens, only.usage.prompt_tokens);
  const streamed = await sseData(
    await post({ ...zero, stream: true, stream_options: { include_usage: true } }),
  );
  const parts = streamed.slice(0, -1).map((d) => JSON.parse(d));
  assert.deepEqual(parts.map((c) => c.choices[0]?.text), ["Once upon", "", undefined]);
  assert.equal(parts[1].choices[0].finish_reason, "length");
  assert.equal(parts[2].usage.completion_tokens, 0);
  // Echo without logprobs: the text alone, nothing scored.
  const plain = await (await post({ model: MODEL, prompt: "Hi", max_tokens: 1, echo: true }))
    .json();
  assert.equal(plain.choices[0].text, "HiI");
  assert.equal(plain.choices[0].logprobs, null);
  assert.equal(fake.calls.at(-1)!.options.promptLogprobs, undefined);
  // max_tokens 0 needs echo.
  const refused = await post({ model: MODEL, prompt: "Hi", max_tokens: 0 });
  assert.equal(refused.status, 400);
  const error = (await refused.json()).error;
  assert.equal(error.param, "max_tokens");
  assert.match(error.message, /0 \(the prompt alone\) needs echo: true/);
});

Deno.test("POST /v1/completions refuses what it cannot serve, naming the field", async () => {
  const { app } = setup();
  const cases: [object, number, string | null][] = [
    [{ prompt: ["a", "b"] }, 400, "prompt"],
    [{ prompt: 5 }, 400, "prompt"],
    [{ prompt: [] }, 400, "prompt"],
    [{ prompt: [[]] }, 400, "prompt"],
    [{ prompt: [5, -1] }, 400, "prompt"],
    [{ prompt: "a", echo: "yes" }, 400, "echo"],
    [{ prompt: "a", echo: true, max_tokens: -1 }, 400, "max_tokens"],
    [{ prompt: "a", suffix: "z" }, 400, "suffix"],
    [{ prompt: "a", best_of: 2 }, 400, "best_of"],
    [{ prompt: "a", logprobs: 21 }, 400, "logprobs"],
    [{ prompt: "a", logprobs: true }, 400, "logprobs"],
    [{ prompt: "a", n: 9 }, 400, "n"],
    [{ prompt: "a", top_logprobs: 3 }, 400, "top_logprobs"],
    [{ prompt: "a", tools: [{ type: "function", function: { name: "f" } }] }, 400, "tools"],
    [{ prompt: "a", tool_choice: "none" }, 400, "tool_choice"],
    // What the engine refuses of the prompt, before queueing, named as the prompt's fault.
    [{ prompt: "" }, 400, "prompt"],
    [{ prompt: "too long", max_tokens: 8000 }, 400, "prompt"],
    [{ prompt: "a", model: "other" }, 404, "model"],
  ];
  for (const [body, status, param] of cases) {
    const response = await app.request("/v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: MODEL, ...body }),
    });
    assert.equal(response.status, status, JSON.stringify(body));
    assert.equal((await response.json()).error.param, param, JSON.stringify(body));
  }
  // An engine without complete(): the route says so (and where to go).
  const bare = createApp({ modelId: MODEL, generate: new FakeEngine().generate });
  const r = await bare.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({ model: MODEL, prompt: "a" }),
  });
  assert.equal(r.status, 404);
  assert.match((await r.json()).error.message, /does not serve \/v1\/completions/);
  const get = await setup().app.request("/v1/completions");
  assert.equal(get.status, 405);
  // A bad prompt does not wait for the generation running (held until its 400 came): its 400
  // comes at once.
  const go = gate();
  const slow = setup({ hold: () => go.promise });
  const running = slow.app.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({ model: MODEL, prompt: "a b c d e f" }),
  });
  await waitFor(() => slow.fake.calls.length === 1, "the first prompt to be generating");
  let finished = false;
  const done = Promise.resolve(running).then((r: Response) => (finished = true, r));
  const early = await slow.app.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({ model: MODEL, prompt: "", stream: true }),
  });
  assert.equal(early.status, 400);
  assert.equal(finished, false, "answered while the running one still runs");
  await early.body?.cancel();
  go.open();
  assert.equal((await done).status, 200);
  // Clients' defaults for the refused fields are accepted.
  const defaults = await app.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({ model: MODEL, prompt: "a", echo: false, suffix: "", best_of: 1, n: 1 }),
  });
  assert.equal(defaults.status, 200);
  // A full queue is a 503 before the prompt is even checked.
  const free = gate();
  const full = setup({ hold: () => free.promise }, { maxQueue: 0 });
  const first = full.app.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({ model: MODEL, prompt: "a b c" }),
  });
  await waitFor(() => full.fake.calls.length === 1, "the first prompt to be generating");
  const refused = await full.app.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({ model: MODEL, prompt: "" }),
  });
  assert.equal(refused.status, 503);
  free.open();
  assert.equal((await first).status, 200);
});

Deno.test("an engine that runs 2 generations at once gets 2 requests at once, the third queued", async () => {
  const go = gate();
  const { app, fake } = setup({ parallel: 2, hold: (k) => (k === 0 ? go.promise : undefined) });
  const asks = ["one", "two", "three"].map((text) =>
    post(app, { ...hello, messages: [{ role: "user", content: text }] })
  );
  await waitFor(() => fake.calls.length === 2, "two requests generating");
  const health = await (await app.request("/health")).json();
  assert.deepEqual(health.queue, { running: 2, parallel: 2, waiting: 1, max: 16 });
  const metrics = await (await app.request("/metrics")).text();
  assert.match(metrics, /\nqvq:num_requests_running\{[^}]*\} 2\n/);
  assert.match(metrics, /\nqvq:num_requests_waiting\{[^}]*\} 1\n/);
  assert.equal(fake.calls.length, 2, "the third waits for a place");
  go.open();
  const answers = await Promise.all(asks.map(async (r) => (await (await r).json())));
  assert.deepEqual(
    answers.map((a) => a.choices[0].message.content),
    ["one", "two", "three"].map((t) => `I see 0 images. You said: ${t}`),
  );
  assert.equal(fake.maxActive, 2);
});

Deno.test("stream: true without include_usage sends no usage field and no usage chunk", async () => {
  const data = await sseData(await post(setup().app, { ...hello, stream: true }));
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  assert.ok(chunks.every((c) => !("usage" in c) && c.choices.length === 1));
  assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
});

Deno.test("an engine error at the start is a 400 even when streaming; a later one is an error event", async () => {
  const engine = { error: new InvalidInputError('image 0: cannot decode "PNG" (bad CRC)') };
  for (const stream of [false, true]) {
    const response = await post(setup(engine).app, { ...hello, stream });
    assert.equal(response.status, 400);
    assert.match(response.headers.get("content-type")!, /application\/json/);
    assert.match((await response.json()).error.message, /bad CRC/);
  }
  const late = {
    failAfterTokens: 2,
    error: new InvalidInputError("context of 32768 tokens is full"),
  };
  const data = await sseData(await post(setup(late).app, { ...hello, stream: true }));
  assert.deepEqual(data.slice(1, 3).map((d) => JSON.parse(d).choices[0].delta.content), [
    "I",
    " see",
  ]);
  const last = JSON.parse(data.at(-1)!);
  assert.match(last.error.message, /context of 32768 tokens is full/);
  assert.equal(last.error.type, "invalid_request_error");
  assert.ok(!data.includes("[DONE]"));
});

Deno.test("an unexpected engine failure is a 500 that does not leak internals", async () => {
  const original = console.error;
  console.error = () => {};
  try {
    const response = await post(
      setup({ error: new TypeError("x is undefined at secret.ts:12") }).app,
      hello,
    );
    assert.equal(response.status, 500);
    const { error } = await response.json();
    assert.equal(error.type, "server_error");
    assert.doesNotMatch(error.message, /secret/);
  } finally {
    console.error = original;
  }
});

/** Bodies that must be refused with a 4xx naming the field, never a 500. */
const MALFORMED: [string, unknown, number, string | null][] = [
  ["invalid JSON", "{model:", 400, null],
  ["a JSON array", "[]", 400, null],
  ["a JSON string", '"hi"', 400, null],
  ["null", "null", 400, null],
  ["model of wrong type", { ...hello, model: 3 }, 400, "model"],
  ["unknown model", { ...hello, model: "gpt-4o" }, 404, "model"],
  ["no messages", { model: MODEL }, 400, "messages"],
  ["empty messages", { model: MODEL, messages: [] }, 400, "messages"],
  ["messages not an array", { model: MODEL, messages: "hi" }, 400, "messages"],
  ["a message that is a string", { model: MODEL, messages: ["hi"] }, 400, "messages[0]"],
  [
    "unknown role",
    { model: MODEL, messages: [{ role: "wizard", content: "hi" }] },
    400,
    "messages[0].role",
  ],
  [
    "function role (OpenAI's deprecated one)",
    { model: MODEL, messages: [{ role: "function", content: "hi" }] },
    400,
    "messages[0].role",
  ],
  [
    "tool_calls on a user message",
    {
      model: MODEL,
      messages: [{
        role: "user",
        content: "hi",
        tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }],
      }],
    },
    400,
    "messages[0].tool_calls",
  ],
  [
    "tool_calls arguments not a string",
    {
      model: MODEL,
      messages: [{ role: "assistant", tool_calls: [{ function: { name: "f", arguments: {} } }] }],
    },
    400,
    "messages[0].tool_calls[0]",
  ],
  ["no role", { model: MODEL, messages: [{ content: "hi" }] }, 400, "messages[0].role"],
  [
    "content a number",
    { model: MODEL, messages: [{ role: "user", content: 5 }] },
    400,
    "messages[0].content",
  ],
  [
    "content null",
    { model: MODEL, messages: [{ role: "user", content: null }] },
    400,
    "messages[0].content",
  ],
  [
    "part not an object",
    { model: MODEL, messages: [{ role: "user", content: ["hi"] }] },
    400,
    "messages[0].content[0]",
  ],
  [
    "unknown part type",
    { model: MODEL, messages: [{ role: "user", content: [{ type: "audio" }] }] },
    400,
    "messages[0].content[0].type",
  ],
  [
    "text part without text",
    { model: MODEL, messages: [{ role: "user", content: [{ type: "text" }] }] },
    400,
    "messages[0].content[0].text",
  ],
  [
    "image_url a number (a URL string or {url} is one)",
    {
      model: MODEL,
      messages: [{ role: "user", content: [{ type: "image_url", image_url: 7 }] }],
    },
    400,
    "messages[0].content[0].image_url",
  ],
  [
    "image in a system message",
    {
      model: MODEL,
      messages: [{ role: "system", content: [{ type: "image_url", image_url: { url: PNG_URL } }] }],
    },
    400,
    "messages[0].content[0]",
  ],
  [
    "bad base64",
    imageBody("data:image/png;base64,!!!!"),
    400,
    "messages[0].content[0].image_url.url",
  ],
  [
    "data URL without base64",
    imageBody("data:image/png,abc"),
    400,
    "messages[0].content[0].image_url.url",
  ],
  [
    "a text data URL",
    imageBody(`data:text/plain;base64,${btoa("hello world")}`),
    400,
    "messages[0].content[0].image_url.url",
  ],
  [
    "an image data URL of text bytes",
    imageBody(`data:image/png;base64,${btoa("hello world")}`),
    400,
    "messages[0].content[0].image_url.url",
  ],
  ["a file: URL", imageBody("file:///etc/passwd"), 400, "messages[0].content[0].image_url.url"],
  ["a local path", imageBody("/etc/passwd"), 400, "messages[0].content[0].image_url.url"],
  [
    "an http URL while remote images are off",
    imageBody("https://example.com/cat.png"),
    400,
    "messages[0].content[0].image_url.url",
  ],
  [
    "too many images",
    {
      model: MODEL,
      messages: [{
        role: "user",
        content: Array(33).fill({ type: "image_url", image_url: { url: PNG_URL } }),
      }],
    },
    400,
    "messages[0].content[32]",
  ],
  ["max_tokens 0", { ...hello, max_tokens: 0 }, 400, "max_tokens"],
  [
    "seed past 2^53",
    `{"model":"${MODEL}","messages":[{"role":"user","content":"Hi"}],"seed":18446744073709551615}`,
    400,
    "seed",
  ],
  ["max_tokens fractional", { ...hello, max_tokens: 1.5 }, 400, "max_tokens"],
  ["max_tokens a string", { ...hello, max_tokens: "10" }, 400, "max_tokens"],
  [
    "max_completion_tokens too large",
    { ...hello, max_completion_tokens: 100000 },
    400,
    "max_completion_tokens",
  ],
  ["temperature negative", { ...hello, temperature: -1 }, 400, "temperature"],
  ["temperature too high", { ...hello, temperature: 3 }, 400, "temperature"],
  ["top_p 0", { ...hello, top_p: 0 }, 400, "top_p"],
  ["top_k -2", { ...hello, top_k: -2 }, 400, "top_k"],
  ["seed -2", { ...hello, seed: -2 }, 400, "seed"],
  ["seed fractional", { ...hello, seed: 0.5 }, 400, "seed"],
  ["stop a number", { ...hello, stop: 5 }, 400, "stop"],
  ["stop with an empty string", { ...hello, stop: [""] }, 400, "stop"],
  ["five stop strings", { ...hello, stop: ["a", "b", "c", "d", "e"] }, 400, "stop"],
  ["n 9", { ...hello, n: 9 }, 400, "n"],
  ["n 0", { ...hello, n: 0 }, 400, "n"],
  ["frequency_penalty 3", { ...hello, frequency_penalty: 3 }, 400, "frequency_penalty"],
  ["presence_penalty -2.5", { ...hello, presence_penalty: -2.5 }, 400, "presence_penalty"],
  ["logit_bias a list", { ...hello, logit_bias: [1] }, 400, "logit_bias"],
  ["logit_bias of a word", { ...hello, logit_bias: { hello: 1 } }, 400, "logit_bias"],
  ["logit_bias 200", { ...hello, logit_bias: { "5": 200 } }, 400, "logit_bias"],
  ["repetition_penalty 0", { ...hello, repetition_penalty: 0 }, 400, "repetition_penalty"],
  ["repetition_penalty 1e-40", { ...hello, repetition_penalty: 1e-40 }, 400, "repetition_penalty"],
  ["stream a string", { ...hello, stream: "yes" }, 400, "stream"],
  [
    "stream_options without stream",
    { ...hello, stream_options: { include_usage: true } },
    400,
    "stream_options",
  ],
  [
    "include_usage a string",
    { ...hello, stream: true, stream_options: { include_usage: "y" } },
    400,
    "stream_options.include_usage",
  ],
  ["logprobs a string", { ...hello, logprobs: "yes" }, 400, "logprobs"],
  ["top_logprobs 21", { ...hello, logprobs: true, top_logprobs: 21 }, 400, "top_logprobs"],
  ["top_logprobs without logprobs", { ...hello, top_logprobs: 2 }, 400, "top_logprobs"],
  [
    "tools with auto and a response format",
    {
      ...hello,
      tools: [{ type: "function", function: { name: "f" } }],
      response_format: { type: "json_object" },
    },
    400,
    "response_format",
  ],
  [
    "a tool message without the call it answers (auto)",
    {
      model: MODEL,
      tools: [{ type: "function", function: { name: "f" } }],
      messages: [{ role: "user", content: "hi" }, { role: "tool", content: "r" }],
    },
    400,
    "messages[1]",
  ],
  [
    "json_schema response_format without a schema",
    { ...hello, response_format: { type: "json_schema", json_schema: { name: "x" } } },
    400,
    "response_format",
  ],
  [
    "response_format and guided_json both",
    { ...hello, response_format: { type: "json_object" }, guided_json: { type: "object" } },
    400,
    "guided_json",
  ],
  ["guided_choice of numbers", { ...hello, guided_choice: [1, 2] }, 400, "guided_choice"],
  ["guided_choice empty", { ...hello, guided_choice: [] }, 400, "guided_choice"],
  ["guided_json a number", { ...hello, guided_json: 5 }, 400, "guided_json"],
  ["guided_json of bad JSON text", { ...hello, guided_json: "{type" }, 400, "guided_json"],
  ["response_format a string", { ...hello, response_format: "json" }, 400, "response_format"],
  [
    "response_format of no type",
    { ...hello, response_format: { type: "xml" } },
    400,
    "response_format",
  ],
  // vLLM's extensions this server lacks, at a value that would change the answer.
  ["min_tokens -1", { ...hello, min_tokens: -1 }, 400, "min_tokens"],
  ["guided_regex a number", { ...hello, guided_regex: 5 }, 400, "guided_regex"],
  [
    "skip_special_tokens false",
    { ...hello, skip_special_tokens: false },
    400,
    "skip_special_tokens",
  ],
  ["bad_words", { ...hello, bad_words: ["x"] }, 400, "bad_words"],
  [
    "mm_processor_kwargs",
    { ...hello, mm_processor_kwargs: { max_pixels: 4096 } },
    400,
    "mm_processor_kwargs",
  ],
  ["chat_template", { ...hello, chat_template: "{{ messages }}" }, 400, "chat_template"],
  ["n_predict (llama.cpp's)", { ...hello, n_predict: 3 }, 400, "n_predict"],
  ["mirostat (llama.cpp's)", { ...hello, mirostat: 2 }, 400, "mirostat"],
];

function imageBody(url: string) {
  return {
    model: MODEL,
    messages: [{ role: "user", content: [{ type: "image_url", image_url: { url } }] }],
  };
}

Deno.test("malformed requests get OpenAI error JSON with the right status and field, never a 500", async () => {
  const { app, fake } = setup();
  for (const [name, body, status, param] of MALFORMED) {
    const response = await post(app, body);
    assert.equal(response.status, status, name);
    const json = await response.json();
    assert.deepEqual(Object.keys(json.error).sort(), ["code", "message", "param", "type"], name);
    assert.equal(json.error.type, "invalid_request_error", name);
    assert.equal(json.error.param, param, name);
    assert.ok(json.error.message.length > 10, name);
  }
  assert.equal(fake.calls.length, 0);
});

Deno.test("a body over maxBodyBytes is a 413, with or without Content-Length", async () => {
  const { app } = setup({}, { maxBodyBytes: 1000 });
  const big = JSON.stringify({ ...hello, messages: [{ role: "user", content: "x".repeat(2000) }] });
  const sized = await post(app, big);
  assert.equal(sized.status, 413);
  assert.equal((await sized.json()).error.code, "request_too_large");
  const chunked = await app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "transfer-encoding": "chunked" },
    body: ReadableStream.from([new TextEncoder().encode(big)]),
  });
  assert.equal(chunked.status, 413);
});

Deno.test("an image over maxImageBytes is a 413 naming the image", async () => {
  const { app } = setup({}, { maxImageBytes: 500 });
  const response = await post(app, imageBody(PNG_URL));
  assert.equal(response.status, 413);
  const { error } = await response.json();
  assert.equal(error.param, "messages[0].content[0].image_url.url");
  assert.match(error.message, /720 bytes.*500 bytes/);
});

Deno.test("with an API key, /v1 needs 'Authorization: Bearer <key>' (401 otherwise); /health does not", async () => {
  const { app } = setup({}, { apiKey: "sk-test" });
  const attempts: Record<string, string>[] = [{}, { authorization: "Bearer nope" }, {
    authorization: "sk-test",
  }];
  for (const headers of attempts) {
    const response = await post(app, hello, headers);
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="qvq"');
    assert.equal((await response.json()).error.code, "invalid_api_key");
  }
  assert.equal((await app.request("/v1/models")).status, 401);
  assert.equal((await post(app, hello, { authorization: "Bearer sk-test" })).status, 200);
  assert.equal((await app.request("/health")).status, 200);
});

Deno.test("other methods on /v1/chat/completions are 405 with Allow: POST", async () => {
  const { app } = setup();
  const response = await app.request("/v1/chat/completions");
  assert.equal(response.status, 405);
  assert.equal(response.headers.get("allow"), "POST");
  assert.equal((await response.json()).error.code, "method_not_allowed");
});

Deno.test("GET /v1/models lists the engine's model; /v1/models/<id> finds it or 404s", async () => {
  const started = Math.floor(Date.now() / 1000);
  const { app } = setup();
  const list = await (await app.request("/v1/models")).json();
  // created: when the server started serving it (was 0, which clients show as 1970).
  assert.ok(list.data[0].created >= started && list.data[0].created <= started + 5);
  assert.deepEqual(list, {
    object: "list",
    data: [{ id: MODEL, object: "model", created: list.data[0].created, owned_by: "qvq" }],
  });
  assert.equal((await (await app.request(`/v1/models/${MODEL}`)).json()).id, MODEL);
  // With a trailing slash too, also where a strict parent mounts the app (the slash then reaches
  // the id).
  const parent = new Hono();
  parent.route("/qvq", app);
  for (const served of [app, parent]) {
    const prefix = served === app ? "" : "/qvq";
    const slashed = await served.request(`${prefix}/v1/models/${MODEL}/`);
    assert.equal((await slashed.json()).id, MODEL, prefix);
  }
  const missing = await app.request("/v1/models/other");
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "model_not_found");
});

Deno.test("servedModelName: the model is served as that name, listed and answered so; requests may name it or the model's id", async () => {
  const { app, fake } = setup({}, { servedModelName: "qvq" });
  const list = await (await app.request("/v1/models")).json();
  assert.deepEqual(list.data.map((m: { id: string }) => m.id), ["qvq"]);
  for (const id of ["qvq", MODEL]) {
    assert.equal((await (await app.request(`/v1/models/${id}`)).json()).id, "qvq", id);
  }
  for (const model of ["qvq", MODEL, undefined]) {
    const response = await post(app, { ...hello, model });
    assert.equal(response.status, 200, model);
    assert.equal((await response.json()).model, "qvq", model);
  }
  const other = await post(app, { ...hello, model: "gpt-4o" });
  assert.equal(other.status, 404);
  assert.match((await other.json()).error.message, /"gpt-4o" does not exist .*; it serves "qvq"\./);
  const completion = await app.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({ model: "qvq", prompt: "Hi", max_tokens: 2 }),
  });
  assert.equal((await completion.json()).model, "qvq");
  assert.equal((await (await app.request("/health")).json()).model, "qvq");
  // Ollama's names: either, with or without its tag; listed as the served name.
  const tags = await (await app.request("/api/tags")).json();
  assert.deepEqual(tags.models.map((m: { name: string }) => m.name), ["qvq:latest"]);
  for (const model of ["qvq", "qvq:latest", MODEL, `${MODEL}:latest`]) {
    const chat = await app.request("/api/chat", {
      method: "POST",
      body: JSON.stringify({ model, messages: hello.messages, stream: false }),
    });
    assert.equal(chat.status, 200, model);
    assert.equal((await chat.json()).model, model);
    const show = await app.request("/api/show", {
      method: "POST",
      body: JSON.stringify({ model }),
    });
    assert.equal(show.status, 200, model);
    await show.json();
  }
  const unnamed = await app.request("/api/generate", {
    method: "POST",
    body: JSON.stringify({ prompt: "Hi", stream: false }),
  });
  assert.equal((await unnamed.json()).model, "qvq:latest");
  const missing = await app.request("/api/chat", {
    method: "POST",
    body: JSON.stringify({ model: "llama3", messages: hello.messages }),
  });
  assert.equal(missing.status, 404);
  assert.match((await missing.json()).error, /this server serves "qvq:latest"/);
  assert.equal(fake.calls.length, 9);
  assert.match(await (await app.request("/metrics")).text(), /model_name="qvq"/);
  assert.throws(() => createApp(fake, { servedModelName: " " }), /servedModelName must be a/);
});

Deno.test("/v1 answers browsers from other origins (CORS), before the API key; cors: false or a list restricts it", async () => {
  const preflight = (app: ReturnType<typeof setup>["app"], origin: string) =>
    app.request("/v1/chat/completions", {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        // What the openai npm client sends from a browser.
        "access-control-request-headers":
          "authorization, content-type, x-stainless-os, x-stainless-retry-count",
      },
    });
  const { app } = setup({}, { apiKey: "sk-test" });
  const pre = await preflight(app, "http://elsewhere.test");
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  const allowed = (pre.headers.get("access-control-allow-headers") ?? "").toLowerCase();
  for (const h of ["authorization", "content-type", "x-stainless-os", "x-stainless-retry-count"]) {
    assert.ok(allowed.includes(h), `${h} allowed: ${allowed}`);
  }
  // DELETE /v1/responses/{id} is served: its preflight must allow the method.
  const del = await app.request("/v1/responses/resp_x", {
    method: "OPTIONS",
    headers: { origin: "http://elsewhere.test", "access-control-request-method": "DELETE" },
  });
  assert.equal(del.status, 204);
  assert.ok(
    (del.headers.get("access-control-allow-methods") ?? "").split(",").includes("DELETE"),
    del.headers.get("access-control-allow-methods") ?? "none",
  );
  const ok = await post(app, hello, { authorization: "Bearer sk-test", origin: "http://x.test" });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("access-control-allow-origin"), "*");
  const listed = setup({}, { cors: ["http://a.test"] }).app;
  assert.equal(
    (await preflight(listed, "http://a.test")).headers.get("access-control-allow-origin"),
    "http://a.test",
  );
  assert.equal(
    (await preflight(listed, "http://b.test")).headers.get("access-control-allow-origin"),
    null,
  );
  const off = setup({}, { cors: false }).app;
  assert.equal(
    (await post(off, hello, { origin: "http://x.test" })).headers.get(
      "access-control-allow-origin",
    ),
    null,
  );
  // Every route, /health and /metrics too (vLLM's and llama.cpp's are), and the 404s; as the
  // option says: a listed origin, none for cors: false.
  for (const path of ["/health", "/metrics", "/nope"]) {
    const origin = { origin: "http://a.test" };
    const any = await app.request(path, { headers: origin });
    assert.equal(any.headers.get("access-control-allow-origin"), "*", path);
    const pre = await app.request(path, {
      method: "OPTIONS",
      headers: { ...origin, "access-control-request-method": "GET" },
    });
    assert.equal(pre.status, 204, path);
    assert.equal(pre.headers.get("access-control-allow-origin"), "*", path);
    const only = await listed.request(path, { headers: origin });
    assert.equal(only.headers.get("access-control-allow-origin"), "http://a.test", path);
    const other = await listed.request(path, { headers: { origin: "http://b.test" } });
    assert.equal(other.headers.get("access-control-allow-origin"), null, path);
    const none = await off.request(path, { headers: origin });
    assert.equal(none.headers.get("access-control-allow-origin"), null, path);
  }
});

Deno.test("CORS exposes Retry-After, so a browser's client reads it on a 503 (queue full) or 429", async () => {
  const go = gate();
  const { app } = setup({ hold: () => go.promise }, { maxQueue: 0, retryAfterSeconds: 3 });
  const origin = { origin: "http://elsewhere.test" };
  const running = post(app, hello, origin);
  await waitFor(
    async () => (await (await app.request("/health")).json()).queue.running === 1,
    "the first request running",
  );
  const refused = await post(app, hello, origin);
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get("retry-after"), "3");
  assert.equal(refused.headers.get("access-control-allow-origin"), "*");
  const exposed = (refused.headers.get("access-control-expose-headers") ?? "").toLowerCase();
  assert.ok(exposed.split(/,\s*/).includes("retry-after"), exposed);
  await refused.body?.cancel();
  go.open();
  assert.equal((await running).status, 200);
});

Deno.test("GET /health says loading until the engine promise resolves, then ok with the queue", async () => {
  let resolve!: (e: FakeEngine) => void;
  const app = createApp(new Promise<FakeEngine>((r) => (resolve = r)));
  const loading = await app.request("/health");
  assert.equal(loading.status, 503);
  assert.deepEqual(await loading.json(), { status: "loading", waiting: 0 });
  const pending = post(app, hello); // waits for the engine
  // It is counted as waiting, by /health and by /metrics (a supervisor sees requests pile up).
  for (let i = 0; i < 10 && !(await (await app.request("/health")).json()).waiting; i++) {
    await new Promise((r) => setTimeout(r, 0));
  }
  assert.deepEqual(await (await app.request("/health")).json(), { status: "loading", waiting: 1 });
  assert.match(
    await (await app.request("/metrics")).text(),
    /\nqvq:num_requests_waiting\{[^}]*\} 1\n/,
  );
  // One whose client leaves is no longer counted.
  const leaving = new AbortController();
  const left = app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(hello),
    signal: leaving.signal,
  });
  const waiting = async () => (await (await app.request("/health")).json()).waiting;
  await waitFor(async () => await waiting() === 2, "two requests waiting");
  leaving.abort();
  await waitFor(async () => await waiting() === 1, "the one left waiting");
  resolve(new FakeEngine());
  await Promise.resolve(left).catch(() => {});
  assert.equal((await pending).status, 200);
  assert.deepEqual(await (await app.request("/health")).json(), {
    status: "ok",
    model: MODEL,
    queue: { running: 0, parallel: 1, waiting: 0, max: 16 },
  });
});

Deno.test("an engine that can answer no more: /health says why (500; 503 shutting down), requests fail at once", async () => {
  const { fake, app } = setup();
  assert.equal((await app.request("/health")).status, 200);
  fake.failure = new DeviceLostError("the WebGPU device was lost (unknown: a test)");
  const health = await app.request("/health");
  assert.equal(health.status, 500);
  assert.deepEqual(await health.json(), { status: "error", error: fake.failure.message });
  for (
    const [path, body] of [
      ["/v1/chat/completions", { ...hello, stream: true }],
      ["/v1/completions", { model: MODEL, prompt: "The sea" }],
      ["/tokenize", { prompt: "The sea" }],
    ] as const
  ) {
    const r = await app.request(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    assert.equal(r.status, 500, path);
    const { error } = await r.json();
    assert.equal(error.message, fake.failure.message, path);
    assert.equal(error.code, "DeviceLostError", path);
  }
  assert.equal(fake.calls.length, 0); // refused before its turn, not after it waited
  fake.failure = new EngineClosedError("the engine was disposed");
  const closing = await app.request("/health");
  assert.equal(closing.status, 503);
  assert.deepEqual(await closing.json(), { status: "shutting_down" });
});

Deno.test("a chat request that will wait is checked first: refused with a 400 at once, not a stream that fails at its turn", async () => {
  const over = "Tell me everything";
  const { fake, app } = setup({
    tokenDelayMs: 25,
    refuse: (m) =>
      JSON.stringify(m).includes(over)
        ? new ContextLengthError("the prompt and its answer exceed the context")
        : undefined,
  });
  const request = (text: string) => ({
    model: MODEL,
    stream: true,
    messages: [{
      role: "user",
      content: [{ type: "image_url", image_url: { url: PNG_URL } }, { type: "text", text }],
    }],
  });
  // Idle and text only: runs at once, unchecked (its refusal would come before its stream).
  const text = await post(app, { ...hello, stream: true });
  assert.equal(text.status, 200);
  await text.text();
  assert.equal(fake.checks.length, 0);
  // With an image, or waiting: checked.
  const first = await post(app, request("Hello"));
  assert.equal(first.status, 200);
  assert.equal(fake.checks.length, 1);
  const rest = first.text(); // still streaming, a token every 25 ms
  const refused = await post(app, request(over));
  assert.equal(refused.status, 400);
  const { error } = await refused.json();
  assert.equal(error.code, "context_length_exceeded");
  assert.equal(fake.checks.length, 2);
  assert.deepEqual(fake.checks[1].sizes, [{ width: PIXELS.width, height: PIXELS.height }]);
  await rest;
  assert.equal(fake.calls.length, 2, "the refused request never reached generate");
  // Waiting, text only: checked too.
  const busy = (await post(app, { ...hello, stream: true })).text(); // its stream has begun
  const refusedText = await post(app, {
    model: MODEL,
    messages: [{ role: "user", content: over }],
  });
  assert.equal(refusedText.status, 400);
  assert.equal(fake.checks.length, 3);
  await busy;
});

Deno.test("unknown routes are JSON 404s naming the method and path and listing what is served: OpenAI's shape, Ollama's under /api/", async () => {
  const { app } = setup();
  for (const [method, path] of [["POST", "/v1/embeddings"], ["GET", "/nope"], ["GET", "/v1"]]) {
    const response = await app.request(path, { method });
    assert.equal(response.status, 404, path);
    assert.match(response.headers.get("content-type")!, /^application\/json/);
    const { error } = await response.json();
    assert.deepEqual([error.type, error.param, error.code], [
      "invalid_request_error",
      null,
      "not_found",
    ]);
    assert.match(
      error.message,
      new RegExp(`^No route for ${method} ${path}\\. This server serves `),
    );
    for (
      const served of [
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/responses",
        "GET/DELETE /v1/responses/{id}",
        "GET /v1/responses/{id}/input_items",
        "GET /v1/models",
        "POST /tokenize",
        "POST /detokenize",
        "GET /health",
        "GET /metrics",
        "GET / (the chat page)",
        "Ollama's API at /api/*",
      ]
    ) assert.ok(error.message.includes(served), `${served} in ${error.message}`);
  }
  // What is not served is not listed.
  const bare = setup({}, { webPage: false, metrics: false }).app;
  const { error } = await (await bare.request("/nope")).json();
  assert.doesNotMatch(error.message, /\/metrics|chat page/);
  // Ollama's shape under /api/, listing Ollama's routes.
  const ollama = await app.request("/api/embedding", { method: "POST" });
  assert.equal(ollama.status, 404);
  const body = await ollama.json();
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.match(
    body.error,
    /^No route for POST \/api\/embedding\. This server serves POST \/api\/chat, /,
  );
  assert.match(body.error, /GET \/api\/tags/);
});

Deno.test("a served path's other methods are 405s with Allow, in the API's shape", async () => {
  const { app } = setup();
  for (
    const [method, path, allow] of [
      ["POST", "/v1/models", "GET, HEAD"],
      ["DELETE", "/v1/models/" + MODEL, "GET, HEAD"],
      ["POST", "/health", "GET, HEAD"],
      ["PUT", "/metrics", "GET, HEAD"],
      ["POST", "/", "GET, HEAD"],
      ["GET", "/v1/responses", "POST"],
      ["GET", "/detokenize", "POST"],
    ]
  ) {
    const response = await app.request(path, { method });
    assert.deepEqual([response.status, response.headers.get("allow")], [405, allow], path);
    const { error } = await response.json();
    assert.equal(error.code, "method_not_allowed", path);
    assert.match(error.message, new RegExp(`^${method} is not allowed on `), path);
  }
  const tags = await app.request("/api/tags", { method: "POST", body: "{}" });
  assert.deepEqual([tags.status, tags.headers.get("allow")], [405, "GET, HEAD"]);
  assert.deepEqual(await tags.json(), { error: "POST is not allowed on /api/tags; send a GET." });
  // HEAD is GET without its body.
  const head = await app.request("/health", { method: "HEAD" });
  assert.equal(head.status, 200);
});

Deno.test("a trailing slash is the route without it, the API key's check included", async () => {
  const { app } = setup({}, { apiKey: "sk-test" });
  const slashed = (path: string, init: RequestInit = {}) =>
    app.request(path, { ...init, headers: { authorization: "Bearer sk-test" } });
  const chat = await slashed("/v1/chat/completions/", {
    method: "POST",
    body: JSON.stringify(hello),
  });
  assert.equal(chat.status, 200);
  assert.equal((await chat.json()).object, "chat.completion");
  assert.equal((await (await slashed("/v1/models/")).json()).object, "list");
  assert.equal((await slashed("/api/tags/")).status, 200);
  assert.equal((await slashed("/health/")).status, 200);
  assert.equal((await app.request("/v1/models/")).status, 401); // no key: no way round it
  assert.equal((await app.request("/tokenize/", { method: "POST", body: "{}" })).status, 401);
});

Deno.test("mounted under a prefix: its routes, 405s and JSON 404s under /v1 and /api there; a trailing slash as the parent's strict decides", async () => {
  const app = setup().app;
  const strict = new Hono();
  strict.route("/qvq", app);
  strict.get("/mine", (c) => c.text("the parent's"));
  assert.equal((await strict.request("/qvq/v1/models")).status, 200);
  assert.equal(await (await strict.request("/mine")).text(), "the parent's");
  const get = await strict.request("/qvq/v1/chat/completions");
  assert.deepEqual([get.status, get.headers.get("allow")], [405, "POST"]);
  assert.match(
    (await get.json()).error.message,
    /^GET is not allowed on \/qvq\/v1\/chat\/completions;/,
  );
  const missing = await strict.request("/qvq/v1/embeddings", { method: "POST" });
  assert.equal(missing.status, 404);
  const { error } = await missing.json();
  assert.match(error.message, /^No route for POST \/qvq\/v1\/embeddings\. /);
  assert.match(error.message, /POST \/qvq\/v1\/chat\/completions, /);
  assert.deepEqual(await (await strict.request("/qvq/api/embedding")).json(), {
    error: "No route for GET /qvq/api/embedding. This server serves POST /qvq/api/chat, " +
      "POST /qvq/api/generate, GET /qvq/api/tags, GET /qvq/api/ps, POST /qvq/api/show, " +
      "GET /qvq/api/version and POST /qvq/api/pull.",
  });
  // A strict parent does not serve the trailing slash: the 404 says what is.
  const slashed = await strict.request("/qvq/v1/chat/completions/", {
    method: "POST",
    body: JSON.stringify(hello),
  });
  assert.equal(slashed.status, 404);
  assert.match(
    (await slashed.json()).error.message,
    /^No route for POST \/qvq\/v1\/chat\/completions\/\. \/qvq\/v1\/chat\/completions \(without the trailing slash\) is served\./,
  );
  // One that is not strict does.
  const loose = new Hono({ strict: false });
  loose.route("/qvq", app);
  const served = await loose.request("/qvq/v1/chat/completions/", {
    method: "POST",
    body: JSON.stringify(hello),
  });
  assert.equal(served.status, 200);
  await served.json();
});

Deno.test("GET / serves the chat page unless webPage is false", async () => {
  const page = await setup().app.request("/");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type")!, /text\/html/);
  assert.match(await page.text(), /v1\/chat\/completions/);
  assert.equal((await setup({}, { webPage: false }).app.request("/")).status, 404);
});

Deno.test("options given as undefined keep their defaults", async () => {
  const { app } = setup({}, { maxQueue: undefined, apiKey: undefined, webPage: undefined });
  assert.equal((await (await app.request("/health")).json()).queue.max, 16);
  assert.equal((await app.request("/")).status, 200);
  assert.equal((await post(app, hello)).status, 200);
});

Deno.test("concurrent requests run one at a time in arrival order; a full queue is a 503 with Retry-After", async () => {
  // The first is held generating until the fourth has been refused.
  const go = gate();
  const { app, fake } = setup({ tokenDelayMs: 5, hold: () => go.promise }, {
    maxQueue: 2,
    retryAfterSeconds: 3,
  });
  const say = (text: string) =>
    post(app, { model: MODEL, messages: [{ role: "user", content: text }] });
  const running = [say("one"), say("two"), say("three")];
  await waitFor(
    async () => (await (await app.request("/health")).json()).queue.waiting === 2,
    "two requests waiting behind the first",
  );
  const refused = await say("four");
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get("retry-after"), "3");
  assert.equal((await refused.json()).error.code, "queue_full");
  go.open();
  const answers = await Promise.all(
    running.map(async (r) => (await (await r).json()).choices[0].message.content as string),
  );
  assert.deepEqual(answers.map((a) => a.split(": ")[1]), ["one", "two", "three"]);
  assert.deepEqual(fake.calls.map((c) => c.messages[0].content), ["one", "two", "three"]);
  assert.equal(fake.maxActive, 1);
});

Deno.test("a streaming client that disconnects aborts its generation and frees the queue", async () => {
  const { app, fake } = setup({ tokenDelayMs: 20, answer: () => "word ".repeat(1000) });
  const response = await post(app, { ...hello, stream: true });
  const reader = response.body!.getReader();
  await reader.read(); // the role chunk
  await reader.read(); // a first word
  await reader.cancel();
  await waitFor(() => fake.calls[0].closed, "the generation to close");
  assert.equal(fake.calls[0].options.signal?.aborted, true);
  assert.equal(fake.calls[0].finishReason, "abort");
  // The next request gets the engine at once.
  const next = await post(app, { ...hello, max_tokens: 2 });
  assert.equal((await next.json()).choices[0].message.content, "word word");
  // The metrics count the first as aborted, the second as cut at its length.
  const metrics = await (await app.request("/metrics")).text();
  assert.match(
    metrics,
    /qvq:request_success_total\{model_name="[^"]+",finished_reason="abort"\} 1\n/,
  );
  assert.match(
    metrics,
    /qvq:request_success_total\{model_name="[^"]+",finished_reason="length"\} 1\n/,
  );
});

Deno.test("a non-streamed answer past the grace is a 200 held open with spaces, then its JSON (or a cut connection)", async () => {
  // keepAliveMs 50: the grace and the heartbeat shrink to 50 ms.
  const { app } = setup({ tokenDelayMs: 20 }, { keepAliveMs: 50 });
  const response = await post(app, hello); // 8 words: ≈ 160 ms
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/json");
  const text = await response.text();
  assert.match(text, /^ +\{/);
  const body = JSON.parse(text);
  assert.equal(body.choices[0].message.content, "I see 0 images. You said: Hello there");
  // An answer within the grace is sent whole, as before (the default grace — 10 s, and a second
  // after the first token — not 50 ms, which a loaded machine can take over even this answer).
  const quick = await post(setup().app, hello);
  assert.match(await quick.text(), /^\{"id":"chatcmpl-/);
  // A failure after the 200 cuts the body short: an error the client sees (and the openai clients
  // retry), not an error object that would read as a successful answer.
  const failing = setup(
    { tokenDelayMs: 20, failAfterTokens: 5, error: new Error("GPU fell over") },
    { keepAliveMs: 50 },
  );
  const failed = await post(failing.app, hello);
  assert.equal(failed.status, 200);
  await assert.rejects(failed.text());
});

Deno.test("a non-streamed answer still generating a second after its first token is held then, not at the 10 s grace", async () => {
  // Default settings: 100 words 20 ms apart take ≥ 2 s, within the 10 s grace but past a second
  // after the first token — a client gone by then (httpx on its timeout) is found by the spaces.
  const { app } = setup({ tokenDelayMs: 20, answer: () => "word ".repeat(100) });
  const text = await (await post(app, hello)).text();
  assert.match(text, /^ +\{"id":"chatcmpl-/);
  assert.equal(JSON.parse(text).choices[0].message.content, "word ".repeat(100).trimEnd());
});

Deno.test("a non-streamed request whose client goes away after sending its body apart is aborted (Deno's request.signal misses it)", async () => {
  const { app, fake } = setup({ tokenDelayMs: 20, answer: () => "word ".repeat(2000) }, {
    keepAliveMs: 50,
  });
  const handling = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    handling.resolve();
    return app.fetch(request);
  });
  try {
    const body = new TextEncoder().encode(JSON.stringify(hello));
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    // The headers, then (once the server handles them) the body in a TCP segment of its own (what
    // curl does with a few KB).
    await conn.write(new TextEncoder().encode(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${body.length}\r\n\r\n`,
    ));
    await handling.promise;
    await conn.write(body);
    // Generating, past the grace: the 200's head has come.
    let head = "";
    const chunk = new Uint8Array(4096);
    while (!head.includes("\r\n\r\n")) {
      const n = await conn.read(chunk);
      if (n === null) throw new Error(`the server closed the connection: ${head}`);
      head += new TextDecoder().decode(chunk.subarray(0, n));
    }
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.equal(fake.calls.length, 1);
    conn.close();
    await waitFor(() => fake.calls[0].closed, "the generation to close");
    assert.equal(fake.calls[0].finishReason, "abort");
  } finally {
    await server.shutdown();
  }
});

Deno.test("images are counted from their headers and refused over the context before any is decoded", async () => {
  // The PNG's signature and IHDR, its pixels cut off: the size reads, the decode would fail.
  const headerOnly = PNG.subarray(0, 33);
  const url = `data:image/png;base64,${headerOnly.toBase64()}`;
  const request = {
    ...hello,
    messages: [{ role: "user", content: [{ type: "image_url", image_url: { url } }] }],
  };
  const { app, fake } = setup({
    refuse: () => new ContextLengthError("the images need more tokens than the context"),
  });
  const refused = await post(app, request);
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error.code, "context_length_exceeded");
  assert.equal(fake.calls.length, 0);
  // Let through, the image is decoded, and found broken.
  const broken = await post(setup().app, request);
  assert.equal(broken.status, 400);
  assert.equal((await broken.json()).error.code, "invalid_image");
});

Deno.test("a queued request whose client disconnects leaves the queue without generating", async () => {
  // The first is held generating until the queued one has gone.
  const go = gate();
  const { app, fake } = setup({ tokenDelayMs: 20, hold: () => go.promise });
  const first = post(app, hello);
  const gone = new AbortController();
  const queued = Promise.resolve(app.request("/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify({ ...hello, stream: true }),
    signal: gone.signal,
  }));
  const waiting = async () => (await (await app.request("/health")).json()).queue.waiting;
  await waitFor(async () => await waiting() === 1, "the second request to queue");
  gone.abort();
  assert.equal((await queued).status, 499); // nobody reads it
  assert.equal(await waiting(), 0);
  go.open();
  await first;
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(fake.calls.length, 1);
  assert.equal((await post(app, hello)).status, 200);
  assert.equal(fake.calls.length, 2);
});

Deno.test("a streamed answer waiting in the queue gets its role chunk, then SSE keep-alive comments", async () => {
  // The first is held generating until the second's stream has had two keep-alives.
  const go = gate();
  const { app } = setup({ hold: () => go.promise }, { keepAliveMs: 20 });
  const first = post(app, hello);
  const reader = (await post(app, { ...hello, stream: true })).body!
    .pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    text += r.value;
    if (text.split(": keep-alive\n\n").length > 2) go.open();
  }
  await first;
  const [role, ...rest] = text.split(/(?<=\n\n)/);
  assert.match(role, /^data: .*"role":"assistant"/);
  const waiting = rest.slice(0, rest.findIndex((b) => b.startsWith("data: ")));
  assert.ok(waiting.length >= 2, text);
  assert.ok(waiting.every((b) => b === ": keep-alive\n\n"));
  assert.match(text, /data: \[DONE\]\n\n$/);
});

Deno.test("image URLs are fetched only when the server allows it", async () => {
  const images = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(PNG),
  );
  try {
    const url = `http://127.0.0.1:${images.addr.port}/cat.png`;
    const body = imageBody(url);
    const off = await post(setup().app, body);
    assert.equal(off.status, 400);
    assert.equal((await off.json()).error.code, "image_url_forbidden");
    const publicOnly = await post(setup({}, { allowRemoteImages: true }).app, body);
    assert.equal(publicOnly.status, 400);
    assert.match(
      (await publicOnly.json()).error.message,
      /private or local address \(127\.0\.0\.1\)/,
    );
    const { app, fake } = setup({}, { allowRemoteImages: true, allowPrivateImageHosts: true });
    assert.equal((await post(app, body)).status, 200);
    assert.deepEqual(fake.calls[0].messages[0].content, [{ type: "image", image: PIXELS }]);
  } finally {
    await images.shutdown();
  }
});

Deno.test("a request for one answer hands its messages' decoded pixels over to the engine; one for several does not", async () => {
  const { app, fake } = setup();
  const body = {
    model: MODEL,
    messages: [{
      role: "user",
      content: [{ type: "image_url", image_url: { url: PNG_URL } }, { type: "text", text: "Hi" }],
    }],
  };
  assert.equal((await post(app, body)).status, 200);
  assert.equal((await post(app, { ...body, n: 2 })).status, 200);
  assert.deepEqual(fake.calls.map((c) => handedOver(c.messages)), [true, false, false]);
});

Deno.test("n choices: generated one after the other, seed + i each, usage summed, streamed by index", async () => {
  const { app, fake } = setup();
  const json = await (await post(app, { ...hello, n: 3, seed: 7, max_tokens: 2 })).json();
  assert.deepEqual(json.choices.map((c: { index: number }) => c.index), [0, 1, 2]);
  assert.ok(
    json.choices.every((c: { message: { content: string } }) => c.message.content === "I see"),
  );
  assert.deepEqual(fake.calls.map((c) => c.options.seed), [7, 8, 9]);
  assert.equal(fake.maxActive, 1, "one generation at a time");
  // The prompt once (the fake's 10 tokens), the completions summed.
  assert.deepEqual(
    [json.usage.prompt_tokens, json.usage.completion_tokens, json.usage.total_tokens],
    [10, 6, 16],
  );
  // Without a seed each draws its own (none is passed on).
  await (await post(app, { ...hello, n: 2, max_tokens: 1 })).json();
  assert.deepEqual(fake.calls.slice(3).map((c) => c.options.seed), [undefined, undefined]);
  // Streamed: each choice's role chunk, text and finish, in turn; the usage of all at the end.
  const data = await sseData(
    await post(app, {
      ...hello,
      n: 2,
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const seen = chunks.filter((c) => c.choices.length).map((c) => {
    const ch = c.choices[0];
    return [ch.index, ch.delta.role ?? ch.delta.content ?? ch.finish_reason];
  });
  assert.deepEqual(seen, [
    [0, "assistant"],
    [0, "I"],
    [0, " see"],
    [0, "length"],
    [1, "assistant"],
    [1, "I"],
    [1, " see"],
    [1, "length"],
  ]);
  assert.equal(chunks.at(-1).usage.completion_tokens, 4);
  // /v1/completions too, each choice with its own echo and text offsets.
  const text = await (await app.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({
      model: MODEL,
      prompt: "Hi",
      n: 2,
      max_tokens: 1,
      echo: true,
      logprobs: 0,
    }),
  })).json();
  assert.deepEqual(text.choices.map((c: { text: string }) => c.text), ["HiI", "HiI"]);
  // The prompt is scored once: the second choice reuses the first's record.
  const [scored, reused] = fake.calls.slice(-2).map((c) => c.options);
  assert.deepEqual([scored.echo, scored.promptLogprobs], [true, 0]);
  assert.deepEqual([reused.echo, reused.promptLogprobs], [undefined, undefined]);
  assert.deepEqual(
    text.choices.map((c: { logprobs: { token_logprobs: unknown[] } }) => c.logprobs.token_logprobs),
    [[null, -0.1], [null, -0.1]],
  );
  assert.deepEqual(
    text.choices.map((c: { logprobs: { text_offset: number[] } }) => c.logprobs.text_offset),
    [[0, 2], [0, 2]],
  );
});

// An engine that runs several generations at once runs a request's choices beside each other:
// choice 0 first, the others once its first token has come (its prompt prefilled: a pipeline's
// prompt cache copies its rows to them), on places no waiting request wants.
Deno.test("n choices on an engine that runs 3 at once: the others start after choice 0's first token, answered by index", async () => {
  const zero = gate(), rest = gate();
  const { app, fake } = setup({
    parallel: 3,
    // Choice 0 (call 0) waits after its first token until the others have ended; they wait at
    // their first until the test has looked.
    hold: (
      k,
      call,
    ) => (k === 1 && call === 0 ? zero.promise : k === 0 && call > 0 ? rest.promise : undefined),
  });
  const asked = post(app, { ...hello, n: 3, seed: 7, max_tokens: 2 });
  await waitFor(() => fake.calls.length === 3, "the three choices running");
  assert.equal(fake.active, 3);
  assert.deepEqual(fake.calls.map((c) => c.options.seed), [7, 8, 9]);
  const health = await (await app.request("/health")).json();
  assert.deepEqual(health.queue, { running: 3, parallel: 3, waiting: 0, max: 16 });
  rest.open();
  await waitFor(() => fake.calls[1].closed && fake.calls[2].closed, "choices 1 and 2 ended");
  // Their places are given back as they end, not with the request.
  assert.equal((await (await app.request("/health")).json()).queue.running, 1);
  zero.open();
  const json = await (await asked).json();
  assert.deepEqual(json.choices.map((c: { index: number }) => c.index), [0, 1, 2]);
  assert.equal(json.usage.completion_tokens, 6);
  assert.equal(fake.maxActive, 3);
  assert.equal((await (await app.request("/health")).json()).queue.running, 0);
});

Deno.test("n choices take only the places no waiting request wants, and stream interleaved by index", async () => {
  const go = gate();
  const { app, fake } = setup({
    parallel: 3,
    hold: (k, call) => (call === 0 && k === 0 ? go.promise : undefined),
  });
  // One request holds a place; a request for 3 choices gets the other two: two lanes.
  const holding = post(app, { ...hello, messages: [{ role: "user", content: "first" }] });
  await waitFor(() => fake.calls.length === 1, "the first request running");
  const data = await sseData(
    await post(app, {
      ...hello,
      n: 3,
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  assert.equal(fake.maxActive, 3, "the holding request and two choices");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const byChoice = [0, 1, 2].map((i) =>
    chunks.filter((c) => c.choices[0]?.index === i).map((c) => {
      const ch = c.choices[0];
      return ch.delta.role ?? ch.delta.content ?? ch.finish_reason;
    })
  );
  assert.deepEqual(byChoice, [0, 1, 2].map(() => ["assistant", "I", " see", "length"]));
  assert.equal(chunks.at(-1).usage.completion_tokens, 6);
  go.open();
  assert.equal((await holding).status, 200);
  // With every place taken, a request's choices run one after another on its own.
  const hold2 = gate();
  const busy = setup({
    parallel: 2,
    hold: (k, call) => (call <= 1 && k === 0 ? hold2.promise : undefined),
  });
  const a = post(busy.app, { ...hello, messages: [{ role: "user", content: "a" }] });
  await waitFor(() => busy.fake.calls.length === 1, "a running");
  const b = post(busy.app, { ...hello, n: 2, max_tokens: 1 });
  await waitFor(() => busy.fake.calls.length === 2, "b's first choice running");
  const c = post(busy.app, { ...hello, messages: [{ role: "user", content: "c" }] });
  await waitFor(
    async () => (await (await busy.app.request("/health")).json()).queue.waiting === 1,
    "c waiting",
  );
  hold2.open();
  const answers = await Promise.all([a, b, c].map(async (r) => await (await r).json()));
  assert.equal(answers[1].choices.length, 2);
  assert.equal(busy.fake.maxActive, 2);
});

Deno.test("n choices take a place another request gives back while they run", async () => {
  const [other, zero, one] = [gate(), gate(), gate()];
  const { app, fake } = setup({
    parallel: 3,
    // call 0: another request; 1, 2, 3: choices 0, 1, 2.
    hold: (k, call) =>
      call === 0 && k === 0
        ? other.promise
        : (call === 1 || call === 2) && k === 1
        ? zero.promise
        : call === 2 && k === 0
        ? one.promise
        : undefined,
  });
  const x = post(app, { ...hello, messages: [{ role: "user", content: "x" }] });
  await waitFor(() => fake.calls.length === 1, "the other request running");
  const asked = post(app, { ...hello, n: 3, max_tokens: 2 });
  await waitFor(() => fake.calls.length === 3, "choices 0 and 1 running");
  assert.equal(fake.active, 3, "every place taken: choice 2 waits for one of the two");
  other.open();
  assert.equal((await x).status, 200);
  one.open(); // choice 1's first token: the place the other request gave back is free
  await waitFor(() => fake.calls.length === 4, "choice 2 running");
  assert.deepEqual(fake.calls.slice(1, 3).map((c) => c.closed), [false, false], "beside 0, 1");
  zero.open();
  const json = await (await asked).json();
  assert.deepEqual(json.choices.map((c: { index: number }) => c.index), [0, 1, 2]);
});

Deno.test("n choices at once: a client gone or a failing choice ends them all and gives every place back", async () => {
  // Gone: the three held mid-answer, the client leaves.
  const never = gate();
  const { app, fake } = setup({ parallel: 3, hold: (k) => (k === 1 ? never.promise : undefined) });
  const gone = new AbortController();
  const asked = Promise.resolve(app.request("/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify({ ...hello, n: 3, stream: true }),
    signal: gone.signal,
  }));
  await waitFor(() => fake.calls.length === 3, "the three choices running");
  gone.abort();
  await asked.then((r) => r.body?.cancel()).catch(() => {});
  await waitFor(() => fake.calls.every((c) => c.closed), "every choice closed");
  await waitFor(
    async () => (await (await app.request("/health")).json()).queue.running === 0,
    "every place given back",
  );
  never.open();
  // Failing: every choice throws after its first token; the request fails once, all closed.
  const failing = setup({
    parallel: 3,
    error: new Error("the GPU fell over"),
    failAfterTokens: 1,
  });
  const r = await post(failing.app, { ...hello, n: 3, max_tokens: 4 });
  assert.equal(r.status, 500);
  assert.match((await r.json()).error.message, /server had an error/);
  assert.equal(failing.fake.calls.length, 3, "the others had begun");
  await waitFor(() => failing.fake.calls.every((c) => c.closed), "every choice closed");
  const health = await (await failing.app.request("/health")).json();
  assert.equal(health.queue.running, 0);
});

Deno.test("echo's edges: max_tokens 0 against max_completion_tokens, prompt_logprobs and chat echo refused, an engine that ignores echo", async () => {
  const { app, fake } = setup();
  const completions = (a: typeof app, body: object) =>
    a.request("/v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: MODEL, ...body }),
    });
  const refused: [Response, string][] = [
    [
      await completions(app, { prompt: "a", echo: true, max_tokens: 0, max_completion_tokens: 5 }),
      "max_completion_tokens",
    ],
    [await completions(app, { prompt: "a", prompt_logprobs: 1 }), "prompt_logprobs"],
    [await post(app, { ...hello, prompt_logprobs: 1 }), "prompt_logprobs"],
    [await post(app, { ...hello, echo: true }), "echo"],
  ];
  for (const [r, param] of refused) {
    assert.equal(r.status, 400, param);
    assert.equal((await r.json()).error.param, param);
  }
  assert.equal((await post(app, { ...hello, echo: false })).status, 200);
  // vLLM's extensions this server lacks are accepted at their defaults.
  // chat_template_kwargs goes to the template (Qwen2-VL's reads none of these).
  assert.equal(
    (await post(app, { ...hello, chat_template_kwargs: { enable_thinking: false } })).status,
    200,
  );
  assert.deepEqual(fake.calls.at(-1)!.options.chatTemplateKwargs, { enable_thinking: false });
  const kw = await post(app, { ...hello, chat_template_kwargs: "x" });
  assert.deepEqual([kw.status, (await kw.json()).error.param], [400, "chat_template_kwargs"]);
  const defaults = {
    ...hello,
    min_tokens: 0,
    skip_special_tokens: true,
    bad_words: [],
    mm_processor_kwargs: {},
    typical_p: 1,
  };
  assert.equal((await post(app, defaults)).status, 200);
  // An engine that drops echo: an error, not a completion missing its prompt.
  const old = setup({ noEcho: true });
  const silent = console.error;
  const logged: string[] = [];
  console.error = (...args: unknown[]) => void logged.push(args.map(String).join(" "));
  try {
    const whole = await completions(old.app, {
      prompt: "a",
      echo: true,
      max_tokens: 0,
      logprobs: 1,
    });
    assert.equal(whole.status, 500);
    const data = await sseData(
      await completions(old.app, { prompt: "a", echo: true, max_tokens: 1, stream: true }),
    );
    assert.ok(data.some((d) => d.includes('"error"')), data.join("\n"));
    assert.equal(logged.length, 2);
    assert.ok(logged.every((l) => /did not echo the prompt/.test(l)), logged.join("\n"));
  } finally {
    console.error = silent;
  }
});

Deno.test("ignore_eos turns the loop stop off unless stop_on_loop says otherwise", async () => {
  const { app, fake } = setup({}, { stopOnLoop: true });
  for (const extra of [{}, { ignore_eos: true }, { ignore_eos: true, stop_on_loop: true }]) {
    await (await post(app, { ...hello, ...extra })).json();
  }
  assert.deepEqual(fake.calls.map((c) => [c.options.ignoreEos, c.options.stopOnLoop]), [
    [undefined, true],
    [true, false],
    [true, true],
  ]);
});

Deno.test("Ollama's options.stop_on_loop turns the loop stop on or off, as /v1's stop_on_loop; a non-boolean is a 400 naming it", async () => {
  const ollama = (app: ReturnType<typeof createApp>, path: string, options: unknown) =>
    app.request(path.replace("?raw", ""), {
      method: "POST",
      body: JSON.stringify({
        model: MODEL,
        ...(path === "/api/chat" ? { messages: hello.messages } : { prompt: "Hi" }),
        ...(path.endsWith("?raw") ? { raw: true } : {}),
        stream: false,
        options,
      }),
    });
  const { app, fake } = setup({}, { stopOnLoop: true });
  for (const path of ["/api/chat", "/api/generate", "/api/generate?raw"]) {
    for (const options of [{}, { stop_on_loop: false }, { stop_on_loop: true }]) {
      const response = await ollama(app, path, options);
      assert.equal(response.status, 200, `${path} ${JSON.stringify(options)}`);
      await response.json();
    }
  }
  assert.deepEqual(fake.calls.map((c) => c.options.stopOnLoop), [
    ...[true, false, true], // /api/chat: the server's default, then as asked
    ...[true, false, true], // /api/generate
    ...[true, false, true], // /api/generate with raw
  ]);
  // The server's default off stays off unless a request asks.
  const off = setup({}, { stopOnLoop: false });
  for (const options of [{}, { stop_on_loop: true }]) {
    await (await ollama(off.app, "/api/chat", options)).json();
  }
  assert.deepEqual(off.fake.calls.map((c) => c.options.stopOnLoop), [false, true]);
  for (const path of ["/api/chat", "/api/generate"]) {
    const bad = await ollama(app, path, { stop_on_loop: "no" });
    assert.equal(bad.status, 400, path);
    assert.deepEqual(await bad.json(), {
      error: 'options.stop_on_loop must be true or false; got "no".',
    });
  }
});

Deno.test("Ollama's images are base64, not data URLs: a refusal names the images[j] entry and what it is", async () => {
  const { app, fake } = setup();
  const gif = await Deno.readFile(
    new URL("../../tests/fixtures/images/bad/gif_1x1.gif", import.meta.url),
  );
  const refused = async (path: string, image: string) => {
    const response = await app.request(path, {
      method: "POST",
      body: JSON.stringify({
        model: MODEL,
        stream: false,
        ...(path === "/api/chat"
          ? {
            messages: [{ role: "user", content: "What is it?", images: [PNG.toBase64(), image] }],
          }
          : { prompt: "What is it?", images: [PNG.toBase64(), image] }),
      }),
    });
    assert.equal(response.status, 400, path);
    return (await response.json()).error;
  };
  const notBase64 = "is not valid base64: send the image file's bytes base64-encoded.";
  const isGif = "is a GIF image: qvq reads PNG, JPEG and WebP; convert it first.";
  assert.equal(await refused("/api/chat", "notbase64!!"), `messages[0].images[1] ${notBase64}`);
  assert.equal(await refused("/api/generate", "notbase64!!"), `images[1] ${notBase64}`);
  assert.equal(await refused("/api/chat", gif.toBase64()), `messages[0].images[1] ${isGif}`);
  assert.equal(await refused("/api/generate", gif.toBase64()), `images[1] ${isGif}`);
  // A data URL sent as an image (which Ollama's API takes too) says what it is.
  assert.equal(
    await refused("/api/chat", `data:image/gif;base64,${gif.toBase64()}`),
    `messages[0].images[1] ${isGif}`,
  );
  // /v1 speaks of its data URLs.
  const v1 = await post(app, {
    model: MODEL,
    messages: [{
      role: "user",
      content: [{ type: "image_url", image_url: { url: "data:image/png;base64,notbase64!!" } }],
    }],
  });
  assert.equal(
    (await v1.json()).error.message,
    "messages[0].content[0].image_url.url: the data URL's payload is not valid base64.",
  );
  assert.equal(fake.calls.length, 0);
});

Deno.test("Ollama's /api/tags, /api/ps and /api/show give the served weights' quantization_level", async () => {
  const levels = async (weightTypes?: FakeEngineOptions["weightTypes"]) => {
    const { app } = setup({ weightTypes });
    const tags = await (await app.request("/api/tags")).json();
    const ps = await (await app.request("/api/ps")).json();
    const show = await (await app.request("/api/show", {
      method: "POST",
      body: JSON.stringify({ model: MODEL }),
    })).json();
    return [tags.models[0], ps.models[0], show].map((m) => m.details.quantization_level);
  };
  assert.deepEqual(await levels({ dtype: "f16", quant: "q4" }), ["Q4", "Q4", "Q4"]);
  assert.deepEqual(await levels({ dtype: "f32", quant: "q8", visionQuant: "q8" }), [
    "Q8",
    "Q8",
    "Q8",
  ]);
  // Float weights: the type they are held in.
  assert.deepEqual(await levels({ dtype: "f16" }), ["F16", "F16", "F16"]);
  assert.deepEqual(await levels({ dtype: "f32", visionQuant: "q8" }), ["F32", "F32", "F32"]);
  assert.deepEqual(await levels(), ["", "", ""]); // an engine that does not say
});

Deno.test("Ollama's /api/show gives the prompt template, with the engine's default system message and the tools' section (litellm looks for 'tools' in it)", async () => {
  const { app } = setup({ defaultSystemPrompt: "Be kind." });
  const show = await (await app.request("/api/show", {
    method: "POST",
    body: JSON.stringify({ model: MODEL }),
  })).json();
  assert.match(
    show.template,
    /\{\{ else \}\}Be kind\.\{\{ end \}\}\{\{ if \.Tools \}\}\n\n# Tools\n/,
  );
  assert.ok(show.template.includes("tools"));
  assert.deepEqual(show.capabilities, ["completion", "vision", "tools"]);
});

Deno.test("continue_final_message: an assistant's answer begun, continued; add_generation_prompt beside it", async () => {
  const { app, fake } = setup();
  const begun = {
    ...hello,
    messages: [...hello.messages, { role: "assistant", content: "Well," }],
  };
  for (
    const extra of [{ continue_final_message: true }, {
      continue_final_message: true,
      add_generation_prompt: false,
    }]
  ) {
    assert.equal((await post(app, { ...begun, ...extra })).status, 200);
    assert.equal(fake.calls.at(-1)!.options.continueFinalMessage, true);
  }
  await (await post(app, hello)).json();
  assert.equal(fake.calls.at(-1)!.options.continueFinalMessage, undefined);
  for (
    const extra of [{ continue_final_message: true, add_generation_prompt: true }, {
      add_generation_prompt: false,
    }]
  ) {
    const r = await post(app, { ...begun, ...extra });
    assert.equal(r.status, 400, JSON.stringify(extra));
    assert.equal((await r.json()).error.param, "add_generation_prompt");
  }
});

Deno.test("top_k -1 or 0 is no top-k (vLLM's off), seed -1 a random seed (llama.cpp's)", async () => {
  const { app, fake } = setup();
  for (const extra of [{ top_k: -1, seed: -1 }, { top_k: 0 }, { top_k: 5, seed: 0 }]) {
    assert.equal((await post(app, { ...hello, ...extra })).status, 200);
  }
  assert.deepEqual(fake.calls.map((c) => [c.options.topK, c.options.seed]), [
    [0, undefined],
    [0, undefined],
    [5, 0],
  ]);
});

Deno.test("/tokenize and /detokenize: a 404 from an engine without them", async () => {
  const { app } = setup();
  for (const [path, body] of [["/tokenize", { prompt: "a" }], ["/detokenize", { tokens: [1] }]]) {
    const r = await app.request(path as string, { method: "POST", body: JSON.stringify(body) });
    assert.equal(r.status, 404);
    assert.match((await r.json()).error.message, /does not serve \/(de)?tokenize/);
  }
  const get = await app.request("/tokenize");
  assert.deepEqual([get.status, get.headers.get("allow")], [405, "POST"]);
  await get.body?.cancel();
});

Deno.test("structured outputs: json_schema, guided_json (object or text) and guided_choice reach the engine", async () => {
  const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"] };
  const cases: [Record<string, unknown>, unknown][] = [
    [
      {
        response_format: { type: "json_schema", json_schema: { name: "n", schema, strict: true } },
      },
      { jsonSchema: schema },
    ],
    [{ guided_json: schema }, { jsonSchema: schema }],
    [{ guided_json: JSON.stringify(schema) }, { jsonSchema: schema }],
    [{ guided_choice: ["a", "b"] }, { choice: ["a", "b"] }],
    [{ guided_regex: "\\d+" }, { regex: "\\d+" }],
    [{ response_format: { type: "text" }, guided_choice: ["a"] }, { choice: ["a"] }],
  ];
  for (const [fields, want] of cases) {
    const { app, fake } = setup();
    const response = await post(app, { ...hello, ...fields });
    assert.equal(response.status, 200, JSON.stringify(fields));
    await response.body?.cancel();
    assert.deepEqual(fake.calls[0].options.responseFormat, want);
  }
});

Deno.test("an answer held to a format has no loop stop by default; stop_on_loop still turns it on", async () => {
  for (
    const [fields, want] of [
      [{ response_format: { type: "json_object" } }, false],
      [{ guided_choice: ["a"] }, false],
      [{ response_format: { type: "json_object" }, stop_on_loop: true }, true],
      [{ response_format: { type: "text" } }, true],
    ] as const
  ) {
    const { app, fake } = setup();
    const response = await post(app, { ...hello, ...fields });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(fake.calls[0].options.stopOnLoop, want, JSON.stringify(fields));
  }
});

Deno.test("structured outputs: vLLM's structured_outputs maps as guided_*; errors name the field the client sent", async () => {
  const { app, fake } = setup();
  const ok = await post(app, { ...hello, structured_outputs: { regex: "\\d+" } });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.deepEqual(fake.calls[0].options.responseFormat, { regex: "\\d+" });
  for (
    const [fields, param] of [
      [{ structured_outputs: { grammar: "root ::= x" } }, "structured_outputs"],
      [{ structured_outputs: { json: {}, regex: "a" } }, "structured_outputs"],
      [{ structured_outputs: { regex: "a" }, guided_regex: "a" }, "structured_outputs"],
      [{ structured_outputs: { regex: "" } }, "structured_outputs.regex"],
      [{ structured_outputs: { choice: [] } }, "structured_outputs.choice"],
      [{ structured_outputs: { json: 5 } }, "structured_outputs.json"],
      [
        { guided_json: { type: "object" }, guided_whitespace_pattern: " " },
        "guided_whitespace_pattern",
      ],
    ] as const
  ) {
    const r = await post(app, { ...hello, ...fields });
    assert.equal(r.status, 400, JSON.stringify(fields));
    assert.equal((await r.json()).error.param, param, JSON.stringify(fields));
  }
  // An engine's refusal of the format names the client's field (the fake refuses like the engine).
  const refusing = setup({
    error: new InvalidInputError('responseFormat: regex "(a" at 2: a "(" without its ")"'),
  });
  const r = await post(refusing.app, { ...hello, guided_regex: "(a" });
  const body = await r.json();
  assert.equal(r.status, 400);
  assert.equal(body.error.param, "guided_regex");
  assert.match(body.error.message, /^guided_regex: regex "\(a"/);
});

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

Deno.test("tools: tool_choice required holds the answer to the calls' schema and reports tool_calls", async () => {
  const text = '[{"name": "get_weather", "parameters": {"city": "Paris"}}, ' +
    '{"name": "get_weather", "parameters": {"city": "Oslo"}}]';
  const { app, fake } = setup({ answer: () => text });
  const response = await post(app, { ...hello, tools: [WEATHER_TOOL], tool_choice: "required" });
  assert.equal(response.status, 200);
  const body = await response.json();
  const [choice] = body.choices;
  assert.equal(choice.message.content, null);
  assert.equal(choice.finish_reason, "tool_calls"); // as vLLM and OpenAI report "required"
  assert.equal(choice.native_finish_reason, "stop");
  assert.deepEqual(
    choice.message.tool_calls.map((c: { type: string; function: unknown }) => [c.type, c.function]),
    [
      ["function", { name: "get_weather", arguments: '{"city": "Paris"}' }],
      ["function", { name: "get_weather", arguments: '{"city": "Oslo"}' }],
    ],
  );
  assert.match(choice.message.tool_calls[0].id, /^call_\w{24}$/);
  assert.notEqual(choice.message.tool_calls[0].id, choice.message.tool_calls[1].id);
  const o = fake.calls[0].options;
  const format = o.responseFormat as { jsonSchema: Record<string, unknown> };
  assert.equal(format.jsonSchema.type, "array");
  assert.equal(format.jsonSchema.minItems, 1);
  assert.deepEqual(o.chatTemplateKwargs, { tools: [WEATHER_TOOL] });
  assert.equal(o.stopOnLoop, false);
});

Deno.test("tools: a named function streams its call, id and name first, then its arguments", async () => {
  const { app, fake } = setup({ answer: () => '{"city": "Rio de Janeiro"}' });
  const response = await post(app, {
    ...hello,
    stream: true,
    tools: [WEATHER_TOOL],
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  assert.equal(response.status, 200);
  assert.deepEqual(fake.calls[0].options.responseFormat, {
    jsonSchema: WEATHER_TOOL.function.parameters,
  });
  const chunks = (await sseData(response)).filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  const deltas = chunks.slice(1, -1).map((c) => c.choices[0].delta.tool_calls);
  assert.ok(deltas.length > 1); // the fake's words: one delta each
  const [first, ...rest] = deltas.map((d) => d[0]);
  assert.equal(first.index, 0);
  assert.match(first.id, /^call_/);
  assert.equal(first.type, "function");
  assert.equal(first.function.name, "get_weather");
  for (const d of rest) assert.deepEqual(Object.keys(d).sort(), ["function", "index"]);
  assert.equal(
    deltas.map((d) => d[0].function.arguments).join(""),
    '{"city": "Rio de Janeiro"}',
  );
  assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
});

Deno.test("tools: none answers in text; a conversation's tool calls and results reach the engine", async () => {
  const { app, fake } = setup();
  const response = await post(app, {
    model: MODEL,
    tools: [WEATHER_TOOL],
    tool_choice: "none",
    messages: [
      { role: "user", content: "Weather in Paris?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{
          id: "call_1",
          type: "function",
          function: { name: "get_weather", arguments: '{"city": "Paris"}' },
        }],
      },
      { role: "tool", tool_call_id: "call_1", content: "12 C" },
    ],
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(typeof body.choices[0].message.content, "string");
  assert.equal(body.choices[0].message.tool_calls, undefined);
  const { messages, options } = fake.calls[0];
  assert.deepEqual(messages.slice(1), [
    {
      role: "assistant",
      content: "",
      toolCalls: [{ id: "call_1", name: "get_weather", arguments: '{"city": "Paris"}' }],
    },
    { role: "tool", content: "12 C", toolCallId: "call_1" },
  ]);
  assert.equal(options.responseFormat, undefined);
  assert.deepEqual(options.chatTemplateKwargs, { tools: [WEATHER_TOOL] });
});

Deno.test("tools: an answer cut off before a call's name comes back as text, streamed or not", async () => {
  const opts = { answer: () => '[{"name": "get', finishReason: "length" as const };
  const request = { ...hello, tools: [WEATHER_TOOL], tool_choice: "required" };
  const whole = await (await post(setup(opts).app, request)).json();
  assert.deepEqual(whole.choices[0].message, {
    role: "assistant",
    content: '[{"name": "get',
    refusal: null,
  });
  assert.equal(whole.choices[0].finish_reason, "length");
  const chunks = (await sseData(await post(setup(opts).app, { ...request, stream: true })))
    .filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
  assert.equal(chunks.length, 2); // the role, then the finish carrying the text
  assert.deepEqual(chunks[1].choices[0].delta, { content: '[{"name": "get' });
  assert.equal(chunks[1].choices[0].finish_reason, "length");
});

Deno.test("GET /metrics counts requests, tokens and responses (no API key needed); metrics: false turns it off", async () => {
  const { app } = setup({}, { apiKey: "k" });
  const auth = { authorization: "Bearer k" };
  const ok = await post(app, { ...hello, max_tokens: 3 }, auth);
  await ok.json();
  const bad = await post(app, { ...hello, temperature: 9 }, auth);
  assert.equal(bad.status, 400);
  await bad.body?.cancel();
  const streamed = await post(app, { ...hello, stream: true }, auth);
  await streamed.text();
  const r = await app.request("/metrics");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  const series = (key: string) =>
    Number(text.split("\n").find((l) => l.startsWith(`${key} `))?.split(" ")[1]);
  const l = `model_name="${MODEL}"`;
  assert.equal(series(`qvq:request_success_total{${l},finished_reason="length"}`), 1);
  assert.equal(series(`qvq:request_success_total{${l},finished_reason="stop"}`), 1);
  // The fake's answer: 3 tokens (max_tokens), then its whole default answer.
  assert.equal(
    series(`qvq:generation_tokens_total{${l}}`),
    3 + "I see 0 images. You said: Hello there".split(" ").length,
  );
  assert.equal(series(`qvq:time_to_first_token_seconds_count{${l}}`), 2);
  assert.equal(series(`qvq:e2e_request_latency_seconds_count{${l}}`), 2);
  assert.equal(series(`qvq:num_requests_waiting{${l}}`), 0);
  const route = (status: number) =>
    series(`qvq:http_responses_total{${l},route="/v1/chat/completions",status="${status}"}`);
  assert.equal(route(200), 2);
  assert.equal(route(400), 1);
  const off = setup({}, { metrics: false }).app;
  assert.equal((await off.request("/metrics")).status, 404);
});

Deno.test("an image reaches the engine decoded when its request runs at once, as bytes when it waits", async () => {
  const go = gate();
  const { app, fake } = setup({ tokenDelayMs: 5, hold: () => go.promise });
  const ask = () =>
    post(app, {
      model: MODEL,
      messages: [{
        role: "user",
        content: [{ type: "image_url", image_url: { url: PNG_URL } }, { type: "text", text: "?" }],
      }],
    });
  const first = ask();
  // The first is generating (held) when the second comes: the second waits.
  await waitFor(() => fake.calls.length === 1, "the first request to be generating");
  const second = ask();
  await waitFor(
    async () => (await (await app.request("/health")).json()).queue.waiting === 1,
    "the second request to queue",
  );
  go.open();
  for (const r of [await first, await second]) {
    assert.equal(r.status, 200);
    await r.body?.cancel();
  }
  const image = (i: number) => (fake.calls[i].messages[0].content as { image: unknown }[])[0].image;
  assert.deepEqual(image(0), PIXELS);
  assert.deepEqual(image(1), PNG);
});

Deno.test("tools: none leaves a format's errors to its field; continue_final_message with a forced call, a client's template tools and null call types", async () => {
  const refusing = setup({
    error: new InvalidInputError('responseFormat: regex "(a" at 2: a "(" without its ")"'),
  });
  const r = await post(refusing.app, {
    ...hello,
    tools: [WEATHER_TOOL],
    tool_choice: "none",
    guided_regex: "(a",
  });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.param, "guided_regex");
  const { app, fake } = setup();
  const cont = await post(app, {
    model: MODEL,
    messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "[" }],
    continue_final_message: true,
    add_generation_prompt: false,
    tools: [WEATHER_TOOL],
    tool_choice: "required",
  });
  assert.equal(cont.status, 400);
  assert.equal((await cont.json()).error.param, "continue_final_message");
  const ok = await post(app, {
    model: MODEL,
    tools: [WEATHER_TOOL],
    tool_choice: "none",
    chat_template_kwargs: { tools: ["mine"] },
    messages: [
      { role: "user", content: "Hi" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ type: null, function: { name: "f", arguments: "{}" } }],
      },
    ],
  });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.deepEqual(fake.calls[0].options.chatTemplateKwargs, { tools: ["mine"] });
  assert.deepEqual(fake.calls[0].messages[1].toolCalls, [{ name: "f", arguments: "{}" }]);
});

Deno.test("tools: auto beside a json_schema holds the answer to the schema's instance, or to calls (an agent's final answer); JSON mode is refused there", async () => {
  const answer = '✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}\n✿RESULT✿: made up';
  const { app, fake } = setup({ answer: () => answer });
  const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
  const response = await post(app, {
    ...hello,
    tools: [WEATHER_TOOL],
    response_format: { type: "json_schema", json_schema: { name: "final", schema } },
  });
  assert.equal(response.status, 200);
  const [choice] = (await response.json()).choices;
  assert.equal(choice.finish_reason, "tool_calls");
  assert.equal(choice.message.tool_calls[0].function.name, "get_weather");
  assert.deepEqual(fake.calls[0].options.responseFormat, {
    jsonSchema: schema,
    freeAfter: "✿FUNCTION✿:",
    freeUntil: "✿RETURN✿",
  });
  // A forced call beside it: the call holds this turn (the format is for the one after it).
  const forced = await post(app, {
    ...hello,
    tools: [WEATHER_TOOL],
    tool_choice: "required",
    response_format: { type: "json_schema", json_schema: { name: "final", schema } },
  });
  assert.equal(forced.status, 200);
  await forced.body?.cancel();
  const held = fake.calls[1].options.responseFormat as { jsonSchema: { type: string } };
  assert.equal(held.jsonSchema.type, "array"); // the list of calls, not the format's object
  const refused = await post(app, {
    ...hello,
    tools: [WEATHER_TOOL],
    response_format: { type: "json_object" },
  });
  assert.equal(refused.status, 400);
  assert.match(
    (await refused.json()).error.message,
    /^response_format beside tools \(tool_choice "auto"\) must be a JSON schema/,
  );
});

Deno.test("tools: auto has the model call tools in Qwen's format, read out as tool_calls; results continue the turn", async () => {
  const answer =
    'Let me check.\n✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}\n✿RESULT✿: made up';
  const { app, fake } = setup({ answer: () => answer });
  const body = await (await post(app, { ...hello, tools: [WEATHER_TOOL] })).json();
  const [choice] = body.choices;
  assert.equal(choice.message.content, "Let me check.");
  assert.deepEqual(choice.message.tool_calls.map((c: { function: unknown }) => c.function), [
    { name: "get_weather", arguments: '{"city": "Paris"}' },
  ]);
  assert.equal(choice.finish_reason, "tool_calls");
  const { messages, options } = fake.calls[0];
  assert.equal(messages[0].role, "system");
  assert.match(
    messages[0].content as string,
    /^You are a helpful assistant\.\n\n# Tools\n\n.*get_weather/s,
  );
  assert.deepEqual(options.stop, ["✿RESULT✿", "✿RETURN✿"]);
  assert.equal(options.continueFinalMessage, undefined);
  // Streamed: the content as it is written, the calls with the finish.
  const streamed = setup({ answer: () => answer });
  const chunks = (await sseData(
    await post(streamed.app, { ...hello, tools: [WEATHER_TOOL], stream: true, stop: "END" }),
  ))
    .filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
  assert.deepEqual(streamed.fake.calls[0].options.stop, ["END", "✿RESULT✿", "✿RETURN✿"]);
  const content = chunks.map((c) => c.choices[0].delta.content ?? "").join("");
  assert.equal(content, "Let me check.");
  const last = chunks.at(-1).choices[0];
  assert.equal(last.finish_reason, "tool_calls");
  assert.deepEqual(last.delta, {});
  // Each call in a chunk of its own before the finish, as OpenAI streams them.
  const calls = chunks.flatMap((c) =>
    c.choices[0].delta.tool_calls ? [c.choices[0].delta.tool_calls] : []
  );
  assert.deepEqual(
    calls.map((cs: { index: number; function: unknown }[]) => cs.map((c) => [c.index, c.function])),
    [[[0, { name: "get_weather", arguments: '{"city": "Paris"}' }]]],
  );
  // The client sends the call and its result back: the engine continues the turn after ✿RETURN✿.
  const next = setup({ answer: () => ": It is 12 C." });
  const followUp = await (await post(next.app, {
    model: MODEL,
    tools: [WEATHER_TOOL],
    messages: [
      { role: "user", content: "Weather in Paris?" },
      choice.message,
      { role: "tool", tool_call_id: choice.message.tool_calls[0].id, content: "12 C" },
    ],
  })).json();
  assert.deepEqual(followUp.choices[0].message, {
    role: "assistant",
    content: "It is 12 C.",
    refusal: null,
  });
  assert.equal(followUp.choices[0].finish_reason, "stop");
  const sent = next.fake.calls[0];
  assert.equal(sent.options.continueFinalMessage, true);
  assert.equal(
    sent.messages.at(-1)!.content,
    'Let me check.\n✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}\n✿RESULT✿: 12 C\n✿RETURN✿',
  );
});

Deno.test("tools: a client's stop string that cuts a call ends with stop (its stop_reason), the format's own with tool_calls", async () => {
  const answer = '✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Rome"}\n✿RESULT✿: sunny';
  const cut = await (await post(setup({ answer: () => answer }).app, {
    ...hello,
    tools: [WEATHER_TOOL],
    stop: ["Rome"],
  })).json();
  assert.equal(cut.choices[0].finish_reason, "stop");
  assert.equal(cut.choices[0].stop_reason, "Rome");
  assert.deepEqual(cut.choices[0].message.tool_calls[0].function, {
    name: "get_weather",
    arguments: '{"city": "',
  });
  const whole = await (await post(setup({ answer: () => answer }).app, {
    ...hello,
    tools: [WEATHER_TOOL],
  })).json();
  assert.equal(whole.choices[0].finish_reason, "tool_calls");
  assert.equal(whole.choices[0].stop_reason, null); // ✿RESULT✿ is the server's, not the client's
  // Without tools, stop_reason is the client's stop string (vLLM's field).
  const plain = await (await post(setup().app, { ...hello, stop: ["there"] })).json();
  assert.equal(plain.choices[0].stop_reason, "there");
});

Deno.test("a body nested past 256 levels is a 400 at once (deeper ones once hung the engine's worker)", async () => {
  const { app, fake } = setup();
  for (const depth of [257, 3000, 10_000]) {
    const schema = '{"type":"array","items":'.repeat(depth) + "{}" + "}".repeat(depth);
    const body =
      `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"guided_json":${schema}}`;
    const r = await post(app, body);
    assert.equal(r.status, 400, `depth ${depth}`);
    const { error } = await r.json();
    assert.equal(error.code, "invalid_json");
    assert.match(error.message, /nests objects and arrays deeper than 256 levels/);
  }
  assert.equal(fake.calls.length, 0);
  // The server goes on answering; a schema as deep as the compiler takes (64 objects) gets through.
  let deep: Record<string, unknown> = { type: "integer" };
  for (let i = 0; i < 63; i++) deep = { type: "object", properties: { a: deep }, required: ["a"] };
  const ok = await post(app, { ...hello, guided_json: deep });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.deepEqual(fake.calls[0].options.responseFormat, { jsonSchema: deep });
});

Deno.test('a request without model (or with null or "") is for the served model, as vLLM and llama.cpp\'s server take it', async () => {
  const { app, fake } = setup();
  for (
    const body of [
      { messages: hello.messages },
      { model: null, messages: hello.messages },
      { model: "", messages: hello.messages }, // a client left without a name: vLLM serves it
    ]
  ) {
    const r = await post(app, body);
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.equal((await r.json()).model, MODEL);
  }
  const text = await app.request("/v1/completions", {
    method: "POST",
    body: JSON.stringify({ prompt: "a", max_tokens: 2 }),
  });
  assert.equal(text.status, 200);
  assert.equal((await text.json()).model, MODEL);
  const empty = await app.request("/v1/responses", {
    method: "POST",
    body: JSON.stringify({ model: "", input: "a", max_output_tokens: 2 }),
  });
  assert.equal(empty.status, 200);
  assert.equal((await empty.json()).model, MODEL);
  assert.equal(fake.calls.length, 5);
});

Deno.test("POST /v1/completions says what is wrong with a prompt of ids: empty, or which id", async () => {
  const { app } = setup();
  const message = async (prompt: unknown) => {
    const r = await app.request("/v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: MODEL, prompt }),
    });
    assert.equal(r.status, 400);
    return (await r.json()).error.message as string;
  };
  assert.match(await message([]), /^prompt is empty/);
  assert.match(await message([[]]), /^prompt is empty/);
  assert.match(
    await message([5, -1]),
    /^prompt\[1\] must be a token id \(an integer >= 0\); got -1\.$/,
  );
  assert.match(await message([[5, 2.5]]), /^prompt\[1\] must be a token id/);
  assert.match(await message({}), /must be a string or an array of token ids; got object/);
});

/**
 * An engine as the worker engine is when a client leaves: two tokens, then it waits (generating)
 * until the abort; a delta it had already sent arrives after the abort, then its record — three
 * tokens generated, ended by the abort.
 */
class InFlightEngine extends FakeEngine {
  sent = 0;
  closed = 0;
  override async *generate(
    _messages: ChatMessage[],
    options: GenerateOptions = {},
  ): AsyncGenerator<GenerationEvent> {
    try {
      yield { type: "delta", text: "one" };
      yield { type: "delta", text: " two" };
      this.sent = 2;
      const signal = options.signal!;
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      yield { type: "delta", text: " three" }; // sent before the worker saw the abort
      yield {
        type: "done",
        result: {
          finishReason: "abort",
          text: "one two three",
          usage: { promptTokens: 10, completionTokens: 3, imageTokens: 0, cachedTokens: 0 },
          timings: { visionMs: 1, prefillMs: 2, decodeMs: 3, tokensPerSecond: 42 },
        },
      };
    } finally {
      this.closed++;
    }
  }
}

Deno.test("metrics: a client that leaves counts as an abort with the tokens generated until the engine stopped, streamed or not", async () => {
  for (const stream of [true, false]) {
    const engine = new InFlightEngine();
    const app = createApp(engine);
    const gone = new AbortController();
    const response = Promise.resolve(app.request("/v1/chat/completions", {
      method: "POST",
      body: JSON.stringify({ ...hello, stream }),
      signal: gone.signal,
    }));
    if (stream) {
      // The role chunk and the first tokens have come: the client leaves mid-answer.
      const reader = (await response).body!.getReader();
      let seen = "";
      while (!seen.includes("two")) seen += new TextDecoder().decode((await reader.read()).value);
      await reader.cancel();
    } else {
      // Two tokens generated, the answer unfinished (it waits for the abort): the client leaves.
      await waitFor(() => engine.sent === 2, "two tokens");
      gone.abort();
      await (await response).body?.cancel();
    }
    await waitFor(() => engine.closed === 1, "the generation to close");
    const text = await (await app.request("/metrics")).text();
    const series = (key: string) =>
      Number(text.split("\n").find((l) => l.startsWith(`${key} `))?.split(" ")[1]);
    const l = `model_name="${MODEL}"`;
    const what = stream ? "streamed" : "not streamed";
    assert.equal(series(`qvq:request_success_total{${l},finished_reason="abort"}`), 1, what);
    assert.equal(series(`qvq:generation_tokens_total{${l}}`), 3, what);
    assert.equal(series(`qvq:prompt_tokens_total{${l}}`), 10, what);
  }
});

/** An engine that ignores the abort (a module user's): a token every 10 ms, for good. */
class DeafEngine extends FakeEngine {
  sent = 0;
  closed = 0;
  override async *generate(): AsyncGenerator<GenerationEvent> {
    try {
      for (;;) {
        this.sent++;
        yield { type: "delta", text: " word" };
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } finally {
      this.closed++;
    }
  }
}

/** Starts a streamed chat request and reads it until its first " word"; `leave()` is its client going. */
async function streamedUntilWord(app: ReturnType<typeof createApp>) {
  const gone = new AbortController();
  const response = await app.request("/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify({ ...hello, stream: true }),
    signal: gone.signal,
  });
  const reader = response.body!.getReader();
  let seen = "";
  while (!seen.includes("word")) seen += new TextDecoder().decode((await reader.read()).value);
  return {
    leave: async () => {
      await reader.cancel();
      gone.abort();
    },
  };
}

Deno.test("a client that leaves an engine that ignores the abort: its generation is closed soon after (not run for good, holding the queue), and the next request is answered", async () => {
  const engine = new DeafEngine();
  const app = createApp(engine);
  await (await streamedUntilWord(app)).leave();
  await waitFor(() => engine.closed === 1, "the deaf engine's generation to be closed");
  const sent = engine.sent;
  assert.ok(sent < 2000, `${sent} tokens`); // closed within the drain, not run on
  // The queue is free: the next request generates (its own tokens, then its client leaves too).
  const again = await streamedUntilWord(app);
  assert.ok(engine.sent > sent);
  await again.leave();
  await waitFor(() => engine.closed === 2, "the second generation to be closed");
});

Deno.test("metrics: a request the engine refuses is no finished generation (not an abort)", async () => {
  const { app } = setup({ error: new InvalidInputError("the prompt is too long") });
  const r = await post(app, hello);
  assert.equal(r.status, 400);
  await r.body?.cancel();
  const text = await (await app.request("/metrics")).text();
  assert.doesNotMatch(text, /qvq:request_success_total\{/);
});

Deno.test("tools: auto describes the tools after the engine's default system message (QVQ's), also for a request that came while it loaded", async () => {
  const qvq = "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You " +
    "should think step-by-step.";
  const { app, fake } = setup({ defaultSystemPrompt: qvq });
  assert.equal((await post(app, { ...hello, tools: [WEATHER_TOOL] })).status, 200);
  assert.match(
    fake.calls[0].messages[0].content as string,
    /^You are a helpful and harmless assistant\. You are Qwen developed by Alibaba\. You should think step-by-step\.\n\n# Tools\n\n.*get_weather/s,
  );
  // Ollama's chat too.
  const ollama = await app.request("/api/chat", {
    method: "POST",
    body: JSON.stringify({
      model: MODEL,
      messages: hello.messages,
      tools: [WEATHER_TOOL],
      stream: false,
    }),
  });
  assert.equal(ollama.status, 200);
  assert.equal(fake.calls[1].messages[0].content, fake.calls[0].messages[0].content);
  // An engine still loading: the request waits for it, and gets its default too.
  let resolve!: (e: FakeEngine) => void;
  const loading = createApp(new Promise<FakeEngine>((r) => (resolve = r)));
  const pending = post(loading, { ...hello, tools: [WEATHER_TOOL] });
  const late = new FakeEngine({ defaultSystemPrompt: qvq });
  resolve(late);
  assert.equal((await pending).status, 200);
  assert.equal(late.calls[0].messages[0].content, fake.calls[0].messages[0].content);
});

Deno.test("a malformed chat, responses or tokenize request while the model loads is a 400 at once, not after the load", async () => {
  const app = createApp(new Promise<FakeEngine>(() => {})); // loads for ever
  const bad = (path: string, body: unknown) =>
    app.request(path, { method: "POST", body: JSON.stringify(body) });
  for (
    const [path, body, field] of [
      ["/v1/chat/completions", { ...hello, temperature: "hot" }, "temperature"],
      ["/v1/responses", { model: MODEL, input: "Hi", temperature: "hot" }, "temperature"],
      ["/tokenize", { model: MODEL, messages: "Hi" }, "messages"],
    ] as const
  ) {
    // Answered, or counted by /health among the requests waiting for the model: never the second.
    let answered = false;
    const pending = Promise.resolve(bad(path, body)).then((r) => (answered = true, r));
    await waitFor(
      async () => answered || (await (await app.request("/health")).json()).waiting > 0,
      `${path} to be answered`,
    );
    assert.ok(answered, `${path} waited for the load`);
    const response = await pending;
    assert.equal(response.status, 400, path);
    assert.equal((await response.json()).error.param, field, path);
  }
});

Deno.test("tools: auto streams each call in a chunk of its own, then the finish (LlamaIndex reads one call a chunk)", async () => {
  const call = (city: string) => `✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "${city}"}`;
  const { app } = setup({ answer: () => `On it.\n${call("Paris")}\n${call("Rome")}\n✿RESULT✿` });
  const chunks = (await sseData(await post(app, { ...hello, tools: [WEATHER_TOOL], stream: true })))
    .filter((d) => d !== "[DONE]").map((d) => JSON.parse(d).choices[0]);
  const withCalls = chunks.filter((c) => c.delta.tool_calls);
  assert.deepEqual(
    withCalls.map((c) => c.delta.tool_calls.map((t: { index: number }) => t.index)),
    [[0], [1]],
  );
  assert.ok(withCalls.every((c) => c.finish_reason === null));
  assert.deepEqual([chunks.at(-1).finish_reason, chunks.at(-1).delta], ["tool_calls", {}]);
  assert.equal(chunks.map((c) => c.delta.content ?? "").join(""), "On it.");
});

Deno.test("a 503 server_shutting_down carries Retry-After (retryAfterSeconds), as the queue-full 503 does: the openai clients wait that long before their retry", async () => {
  const closed = new EngineClosedError("the engine was disposed; load it again");
  const options = { retryAfterSeconds: 4 };
  // Stopped while generating, before the answer's 200 (OpenAI's and Ollama's shapes), and stopped
  // while the model loaded (the requests waiting for it).
  const stopped = setup({ error: closed }, options).app;
  const loading = createApp(Promise.reject(closed), options);
  for (const app of [stopped, loading]) {
    for (const stream of [false, true]) {
      for (const path of ["/v1/chat/completions", "/api/chat"]) {
        const r = await app.request(path, {
          method: "POST",
          body: JSON.stringify({ ...hello, stream }),
        });
        assert.equal(r.status, 503, path);
        assert.equal(r.headers.get("retry-after"), "4", path);
        const body = await r.json();
        assert.match(body.error?.message ?? body.error, /shutting down/, path);
      }
    }
  }
});

/** The value of the series `key` (its name and labels as written) in a /metrics text. */
function seriesOf(text: string, key: string): number {
  return Number(text.split("\n").find((l) => l.startsWith(`${key} `))?.split(" ")[1] ?? 0);
}

Deno.test("metrics: an answer that fails after its 200 (a held answer cut off, a stream's error event) is counted as failed, by its error's status; a client leaving is not", async () => {
  const quiet = console.error;
  console.error = () => {};
  try {
    // keepAliveMs 50: the answer is held (200, spaces) before it fails at its 5th token.
    const { app } = setup(
      { tokenDelayMs: 20, failAfterTokens: 5, error: new GpuError("the GPU fell over") },
      { keepAliveMs: 50 },
    );
    const held = await post(app, hello);
    assert.equal(held.status, 200);
    await assert.rejects(held.text());
    // A stream that fails mid-way: its error event, under the 200 sent.
    const streamed = setup({
      failAfterTokens: 2,
      error: new EngineClosedError("the engine was disposed"),
    });
    const data = await sseData(await post(streamed.app, { ...hello, stream: true }));
    assert.match(JSON.parse(data.at(-1)!).error.code, /server_shutting_down/);
    // A client that leaves mid-stream is an abort, not a failure.
    const gone = await post(streamed.app, { ...hello, stream: true });
    await gone.body!.cancel();
    const l = `model_name="${MODEL}",route="/v1/chat/completions"`;
    for (const [a, status] of [[app, 500], [streamed.app, 503]] as const) {
      const text = await (await a.request("/metrics")).text();
      assert.match(text, /# TYPE qvq:http_responses_failed_total counter/);
      // Its 200 was sent: counted there too, as the status line a proxy's log shows.
      assert.equal(
        seriesOf(text, `qvq:http_responses_total{${l},status="200"}`),
        a === app ? 1 : 2,
      );
      assert.equal(seriesOf(text, `qvq:http_responses_failed_total{${l},status="${status}"}`), 1);
      assert.equal(text.match(/^qvq:http_responses_failed_total\{/gm)?.length, 1, text);
    }
  } finally {
    console.error = quiet;
  }
});

Deno.test("an answer that fails after its 200 is logged in one line naming the request and the failure; an unexpected error keeps its stack", async () => {
  // A held answer's body ends with an error Deno.serve logs (its default onError): as one line.
  const cut = async (error: Error) => {
    const { app } = setup({ tokenDelayMs: 20, failAfterTokens: 5, error }, { keepAliveMs: 50 });
    const held = await post(app, hello);
    assert.equal(held.status, 200);
    let thrown: unknown;
    await held.text().catch((e) => (thrown = e));
    return Deno.inspect(thrown);
  };
  const line = await cut(new EngineClosedError("the engine was disposed"));
  assert.doesNotMatch(line, /\n/);
  assert.match(
    line,
    /^qvq server: POST \/v1\/chat\/completions failed after its 200 was sent \(the held answer was cut off\): 503 server_shutting_down: The server is shutting down/,
  );
  const gpu = await cut(new GpuError("the GPU fell over"));
  assert.match(
    gpu,
    /^qvq server: POST \/v1\/chat\/completions .*: 500 GpuError: the GPU fell over$/,
  );
  const unexpected = await cut(new TypeError("x is undefined"));
  assert.match(
    unexpected,
    /^qvq server: POST \/v1\/chat\/completions .*: 500 server_error: .*\nTypeError: x is undefined\n\s+at /,
  );
  // A stream's failure is logged by the server, in one line likewise.
  const logged: string[] = [];
  const quiet = console.error;
  console.error = (...args: unknown[]) =>
    void logged.push(args.map((a) => typeof a === "string" ? a : Deno.inspect(a)).join(" "));
  try {
    for (
      const error of [
        new EngineClosedError("the engine was disposed"),
        new TypeError("x is undefined"),
      ]
    ) {
      const { app } = setup({ failAfterTokens: 2, error });
      await (await post(app, { ...hello, stream: true })).text();
    }
  } finally {
    console.error = quiet;
  }
  assert.equal(logged.length, 2, logged.join("\n"));
  assert.match(
    logged[0],
    /^qvq server: POST \/v1\/chat\/completions failed after its 200 was sent \(the stream ended on an error event\): 503 server_shutting_down: The server is shutting down[^\n]*$/,
  );
  assert.match(logged[1], /500 server_error: [^\n]*\n?.*TypeError: x is undefined\n\s+at /s);
});

Deno.test("a held answer's failure reaches a real server's log as one line (Deno.serve's default onError)", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  const map = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(
      script,
      `import { createApp } from ${JSON.stringify(new URL("./app.ts", import.meta.url).href)};
import { FakeEngine } from ${JSON.stringify(new URL("./_fake_engine.ts", import.meta.url).href)};
import { EngineClosedError } from ${JSON.stringify(new URL("../errors.ts", import.meta.url).href)};
const engine = new FakeEngine({ tokenDelayMs: 20, failAfterTokens: 5, error: new EngineClosedError("stopped") });
const app = createApp(engine, { keepAliveMs: 50 });
const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
const r = await fetch(\`http://127.0.0.1:\${server.addr.port}/v1/chat/completions\`, {
  method: "POST",
  body: JSON.stringify({ messages: [{ role: "user", content: "Hello there" }] }),
});
await r.text().catch(() => {});
await server.shutdown();
`,
    );
    // deno.json's imports and unstable flag alone (no lockfile to install from): it runs offline
    // where this test's own packages are cached, as on the GPU machine (bench/device_tests.sh) —
    // with the whole configuration deno would fetch every package it names first.
    const { imports } = JSON.parse(
      await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
    );
    await Deno.writeTextFile(map, JSON.stringify({ imports }));
    const { stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        "--no-config",
        "--no-lock",
        "--unstable-no-legacy-abort",
        "--import-map",
        map,
        script,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(stderr).trim();
    assert.match(
      log,
      /^qvq server: POST \/v1\/chat\/completions failed after its 200 was sent \(the held answer was cut off\): 503 server_shutting_down: [^\n]+$/,
    );
  } finally {
    await Deno.remove(script);
    await Deno.remove(map);
  }
});

Deno.test("Ollama's images in system, assistant and tool messages reach the engine in place, where Qwen2-VL's chat template puts them; /v1 keeps OpenAI's user-only rule", async () => {
  const template = new ChatTemplate(
    JSON.parse(
      await Deno.readTextFile(
        new URL("../../tests/fixtures/tiny-qwen2vl/chat_template.json", import.meta.url),
      ),
    ).chat_template,
  );
  const { app, fake } = setup();
  const chat = (messages: unknown[], extra: Record<string, unknown> = {}) =>
    app.request("/api/chat", {
      method: "POST",
      body: JSON.stringify({ model: MODEL, stream: false, messages, ...extra }),
    });
  const image = PNG.toBase64();
  const conversation = [
    { role: "system", content: "Compare with this.", images: [image] },
    { role: "user", content: "What is it?", images: [image] },
    { role: "assistant", content: "This one.", images: [image] },
    { role: "tool", content: "A picture.", images: [image] },
    { role: "user", content: "And now?" },
  ];
  const r = await chat(conversation);
  assert.equal(r.status, 200, await r.clone().text());
  const sent = fake.calls[0].messages;
  assert.deepEqual(
    sent.map((m) => typeof m.content === "string" ? m.content : m.content.map((p) => p.type)),
    [["image", "text"], ["image", "text"], ["image", "text"], ["image", "text"], "And now?"],
  );
  // The template places each where it came: a vision block in every turn that had one.
  const turns = template.render(sent.map((m) => ({
    ...m,
    content: typeof m.content === "string"
      ? m.content
      : m.content.map((p) => p.type === "image" ? { ...p, image: PNG } : p),
  }))).split("<|im_start|>").slice(1);
  assert.deepEqual(
    turns.map((t) => [t.split("\n")[0], t.includes("<|vision_start|><|image_pad|><|vision_end|>")]),
    [["system", true], ["user", true], ["assistant", true], ["tool", true], ["user", false], [
      "assistant",
      false,
    ]],
  );
  // An assistant's answer begun with images alone is continued after them.
  const prefill = await chat([
    { role: "user", content: "Draw it." },
    { role: "assistant", content: "", images: [image] },
  ]);
  assert.equal(prefill.status, 200, await prefill.clone().text());
  const last = fake.calls[1];
  assert.equal(last.options.continueFinalMessage, true);
  const prompt = template.render(
    last.messages.map((m) => ({
      ...m,
      content: typeof m.content === "string"
        ? m.content
        : m.content.map((p) => p.type === "image" ? { ...p, image: PNG } : p),
    })),
    { continueFinalMessage: true },
  );
  assert.match(
    prompt,
    /<\|im_start\|>assistant\n<\|vision_start\|><\|image_pad\|><\|vision_end\|>$/,
  );
  // With tools an assistant's turn and a tool's result are written as Qwen's call format, in
  // text: their images have no place there, and the refusal says so (a system's still do).
  const tools = [WEATHER_TOOL];
  const withTools = await chat(conversation, { tools });
  assert.equal(withTools.status, 400);
  assert.match(
    (await withTools.json()).error,
    /^messages\[2\]\.images\[0\]: with tools, an assistant message's images cannot be placed/,
  );
  const systemOnly = await chat([conversation[0], conversation[1]], { tools });
  assert.equal(systemOnly.status, 200, await systemOnly.clone().text());
  // OpenAI's API takes images in user messages only, as OpenAI does.
  const v1 = await post(app, {
    model: MODEL,
    messages: [{ role: "system", content: [{ type: "image_url", image_url: PNG_URL }] }, {
      role: "user",
      content: "Hi",
    }],
  });
  assert.equal(v1.status, 400);
  assert.match((await v1.json()).error.message, /images are only allowed in user messages/);
});

/** A fake that can be disposed, as a WorkerEngine: `closed` settles once `free()` is called. */
/** An app given a function that loads a DisposableFake (`engines`: each one it loaded). */
function reloadable(
  engine: FakeEngineOptions = {},
  options: ServerOptions & { free?: boolean; load?: () => Promise<void> } = {},
) {
  const engines: DisposableFake[] = [];
  const { free, load, ...server } = options;
  const app = createApp(async () => {
    await load?.();
    const e = new DisposableFake(engine, free ?? true);
    engines.push(e);
    return e;
  }, server);
  return { app, engines };
}

const ollama = (app: ReturnType<typeof createApp>, path: string, body: Record<string, unknown>) =>
  Promise.resolve(
    app.request(path, { method: "POST", body: JSON.stringify({ model: MODEL, ...body }) }),
  );

Deno.test("Ollama's keep_alive 0 without messages unloads the model (disposed: the GPU freed): /api/ps lists nothing, /health says so; the next request loads it again", async () => {
  const { app, engines } = reloadable();
  const unload = await ollama(app, "/api/chat", { messages: [], keep_alive: 0 });
  assert.equal(unload.status, 200);
  const said = JSON.parse(await unload.text());
  assert.equal(said.done_reason, "unload");
  assert.deepEqual(said.message, { role: "assistant", content: "" });
  assert.equal(engines[0].disposed, true);
  assert.deepEqual(await (await app.request("/api/ps")).json(), { models: [] });
  const health = await app.request("/health");
  assert.equal(health.status, 200); // serving: a request loads it again
  assert.deepEqual(await health.json(), { status: "unloaded", model: MODEL, waiting: 0 });
  // What it is stays known, without loading it again.
  assert.equal((await (await app.request("/api/tags")).json()).models.length, 1);
  assert.equal((await (await app.request("/v1/models")).json()).data[0].id, MODEL);
  assert.equal(engines.length, 1);
  // Any request that needs the model loads it again.
  const answered = await post(app, hello);
  assert.equal(answered.status, 200);
  assert.equal(
    (await answered.json()).choices[0].message.content,
    "I see 0 images. You said: Hello there",
  );
  assert.equal(engines.length, 2);
  assert.equal(engines[1].calls.length, 1);
  assert.equal((await (await app.request("/api/ps")).json()).models.length, 1);
  assert.equal((await (await app.request("/health")).json()).status, "ok");
  // /api/generate's unload; then a load (no prompt, no keep_alive 0) loads it again.
  const generate = await ollama(app, "/api/generate", { keep_alive: "0s", stream: false });
  assert.deepEqual(
    (({ model, response, done, done_reason }) => ({ model, response, done, done_reason }))(
      await generate.json(),
    ),
    { model: MODEL, response: "", done: true, done_reason: "unload" },
  );
  assert.equal(engines[1].disposed, true);
  const load = await ollama(app, "/api/generate", { stream: false });
  assert.equal((await load.json()).done_reason, "load");
  assert.equal(engines.length, 3);
  assert.equal((await (await app.request("/api/ps")).json()).models.length, 1);
  // Unloaded, a tokenize loads it too — and leaves it unloaded, as it found it.
  await ollama(app, "/api/chat", { messages: [], keep_alive: 0 });
  const tokenized = await app.request("/tokenize", {
    method: "POST",
    body: JSON.stringify({ prompt: "The sea" }),
  });
  assert.equal(tokenized.status, 404); // the fake has no tokenizer: but it was loaded to say so
  assert.equal(engines.length, 4);
  await waitFor(() => engines[3].disposed, "the model to unload again after the tokenize");
  assert.deepEqual(await (await app.request("/api/ps")).json(), { models: [] });
  // Loaded, a tokenize leaves it loaded.
  await ollama(app, "/api/generate", { stream: false });
  await app.request("/detokenize", { method: "POST", body: JSON.stringify({ tokens: [1] }) });
  assert.equal(engines.length, 5);
  assert.equal(engines[4].disposed, false);
  assert.equal((await (await app.request("/api/ps")).json()).models.length, 1);
});

Deno.test("an unload while a request generates waits for it (answered at once); requests that come while it unloads or loads again wait, counted, and are answered", async () => {
  const go = gate();
  const loading = gate();
  let loads = 0;
  const { app, engines } = reloadable({ hold: (k) => k === 1 ? go.promise : undefined }, {
    free: false,
    // The first load at once; the next one held until the test lets it.
    load: () => loads++ ? loading.promise : Promise.resolve(),
  });
  const first = post(app, hello);
  await waitFor(() => engines[0]?.calls.length === 1, "the first request to generate");
  const unload = await ollama(app, "/api/chat", { messages: [], keep_alive: 0, stream: false });
  assert.equal((await unload.json()).done_reason, "unload");
  // Still generating: loaded, going once done.
  assert.equal(engines[0].disposed, false);
  const ps = (await (await app.request("/api/ps")).json()).models;
  assert.equal(ps.length, 1);
  assert.ok(Date.parse(ps[0].expires_at) <= Date.now(), ps[0].expires_at);
  go.open();
  assert.equal((await first).status, 200);
  await waitFor(() => engines[0].disposed, "the unload");
  // Unloading (its worker still freeing the GPU): a request waits.
  assert.equal((await (await app.request("/health")).json()).status, "unloading");
  const second = post(app, hello);
  const status = async () => await (await app.request("/health")).json();
  await waitFor(async () => (await status()).waiting === 1, "the request to wait");
  assert.match(
    await (await app.request("/metrics")).text(),
    /\nqvq:num_requests_waiting\{[^}]*\} 1\n/,
  );
  engines[0].free();
  await waitFor(async () => (await status()).status === "reloading", "the load again");
  assert.equal((await status()).waiting, 1);
  assert.equal((await app.request("/health")).status, 200);
  loading.open();
  const answer = await second;
  assert.equal(answer.status, 200);
  assert.equal(
    (await answer.json()).choices[0].message.content,
    "I see 0 images. You said: Hello there",
  );
  assert.equal(engines.length, 2);
  assert.equal(engines[1].calls.length, 1);
  assert.deepEqual((await status()).status, "ok");
});

Deno.test("Ollama's keep_alive on a request: 0 unloads the model after it, a duration or -1 keeps it (no timer unloads it), a malformed one is a 400 naming it", async () => {
  const { app, engines } = reloadable();
  const chat = (keep_alive: unknown) =>
    ollama(app, "/api/chat", { messages: hello.messages, stream: false, keep_alive });
  const once = await chat(0);
  assert.equal(once.status, 200);
  assert.equal((await once.json()).done_reason, "stop");
  assert.equal(engines[0].disposed, true);
  assert.deepEqual(await (await app.request("/api/ps")).json(), { models: [] });
  for (const keep of ["5m", "1h30m", -1, "-1m", 300, "300", null]) {
    const r = await chat(keep);
    assert.equal(r.status, 200, String(keep));
    await r.body?.cancel();
  }
  assert.equal(engines.length, 2); // loaded again once, and kept
  assert.equal(engines[1].disposed, false);
  const ps = (await (await app.request("/api/ps")).json()).models;
  assert.equal(ps[0].expires_at, "2318-01-01T00:00:00Z");
  for (const bad of ["5 minutes", "", true, {}]) {
    const r = await chat(bad);
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.match((await r.json()).error, /^keep_alive must be a duration/);
  }
  // /api/generate's too.
  const generated = await ollama(app, "/api/generate", {
    prompt: "Hi",
    stream: false,
    keep_alive: "0",
  });
  assert.equal(generated.status, 200);
  await generated.body?.cancel();
  assert.equal(engines[1].disposed, true);
});

Deno.test("a server given its engine (not a way to load it) says it keeps its model loaded when asked to unload it; keep_alive 0 on a request leaves it loaded", async () => {
  const { app } = setup();
  const unload = await ollama(app, "/api/chat", { messages: [], keep_alive: 0 });
  assert.equal(unload.status, 501);
  assert.match((await unload.json()).error, /keeps its model loaded/);
  const r = await ollama(app, "/api/chat", {
    messages: hello.messages,
    keep_alive: 0,
    stream: false,
  });
  assert.equal(r.status, 200);
  await r.body?.cancel();
  const ps = (await (await app.request("/api/ps")).json()).models;
  assert.equal(ps[0].expires_at, "2318-01-01T00:00:00Z");
  assert.equal((await (await app.request("/health")).json()).status, "ok");
});

Deno.test("a client gone while its request body was read is no error of the server's: nothing logged", async () => {
  const { app } = setup();
  const logged: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void logged.push(args.map(String).join(" "));
  try {
    for (const path of ["/v1/chat/completions", "/v1/completions", "/api/chat"]) {
      const res = await app.request(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('{"model":'));
            c.error(
              new Deno.errors.BadResource("Cannot read body as underlying resource unavailable"),
            );
          },
        }),
      });
      assert.equal(res.status, 499, path);
      await res.body?.cancel();
    }
    assert.deepEqual(logged, []);
  } finally {
    console.error = original;
  }
});

Deno.test("stream_options.continuous_usage_stats (vLLM's): every chunk carries the usage so far, the last one the final usage chunk's; counted by n's choices together", async () => {
  // An engine that counts its tokens as it writes them, on its deltas (`usage`, as a result's):
  // the fake writes a token a delta.
  class Counting extends FakeEngine {
    override async *generate(
      messages: ChatMessage[],
      options: GenerateOptions = {},
    ): AsyncGenerator<GenerationEvent> {
      let completionTokens = 0;
      for await (const event of super.generate(messages, options)) {
        if (event.type === "done") {
          yield event;
          continue;
        }
        if (!event.prompt) completionTokens++;
        const usage = { promptTokens: 10, completionTokens, imageTokens: 0, cachedTokens: 0 };
        yield { ...event, usage } as GenerationEvent;
      }
    }
  }
  const app = createApp(new Counting());
  const stream_options = { include_usage: true, continuous_usage_stats: true };
  const chat = await sseData(await post(app, { ...hello, n: 2, stream: true, stream_options }));
  const completion = await sseData(
    await app.request("/v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: MODEL, prompt: "Hi you", n: 2, stream: true, stream_options }),
    }),
  );
  for (
    const [data, shown] of [[chat, (c: any) => c.delta.content], [
      completion,
      (c: any) => c.text,
    ]] as const
  ) {
    assert.equal(data.at(-1), "[DONE]");
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    const final = chunks.at(-1);
    assert.deepEqual(final.choices, []);
    assert.deepEqual(final.usage, {
      prompt_tokens: 10,
      completion_tokens: 16,
      total_tokens: 26,
      prompt_tokens_details: { cached_tokens: 0, image_tokens: 0 },
    });
    const running = chunks.slice(0, -1);
    // Chat's first chunk (the role) goes out before the engine has run the prompt: not known.
    if (data === chat) assert.equal(running.shift().usage, null);
    assert.ok(running.length >= 18); // 16 tokens' chunks, 2 finishes
    let completionTokens = 0;
    for (const c of running) {
      assert.equal(c.choices.length, 1);
      // Each chunk's count goes up by the tokens it carries (a token a non-empty text here).
      if (shown(c.choices[0])) completionTokens++;
      assert.deepEqual(c.usage, {
        prompt_tokens: 10,
        completion_tokens: completionTokens,
        total_tokens: 10 + completionTokens,
        prompt_tokens_details: { cached_tokens: 0, image_tokens: 0 },
      });
    }
    assert.equal(completionTokens, 16);
    assert.deepEqual(running.at(-1).usage, final.usage);
  }
});

Deno.test("stream_options.continuous_usage_stats: without include_usage nothing; with an engine that counts no tokens as it writes them, null until each choice's finish, which has its exact counts", async () => {
  const { app } = setup();
  const only = await sseData(
    await post(app, { ...hello, stream: true, stream_options: { continuous_usage_stats: true } }),
  );
  const plain = only.slice(0, -1).map((d) => JSON.parse(d));
  assert.ok(plain.every((c) => !("usage" in c) && c.choices.length === 1));
  const stream_options = { include_usage: true, continuous_usage_stats: true };
  const data = await sseData(await post(app, { ...hello, n: 2, stream: true, stream_options }));
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const final = chunks.at(-1);
  assert.equal(final.usage.completion_tokens, 16);
  const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(finishes.length, 2);
  // The first choice to finish (one after the other: the fake runs one at a time) has its 8
  // tokens, the other none yet.
  const [first, last] = finishes;
  assert.deepEqual(first.usage, { ...final.usage, completion_tokens: 8, total_tokens: 18 });
  assert.deepEqual(last.usage, final.usage);
  assert.ok(chunks.slice(0, -1).every((c) => "usage" in c));
  const deltas = chunks.filter((c) => c.choices[0]?.delta?.content);
  assert.ok(deltas.length >= 16);
  // A token written by a choice whose finish has not come is not counted: its usage not known.
  assert.ok(deltas.some((c) => c.usage === null));
});
