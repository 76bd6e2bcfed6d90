/**
 * The official `ollama` npm client (ollama-js), unmodified, against a real listening server
 * (Deno.serve on 127.0.0.1, port 0): Ollama's API beside OpenAI's, first with the scripted fake
 * engine, then with the bundled tiny model (transformers' greedy answer).
 */
import assert from "node:assert/strict";
import { Ollama } from "ollama";
import type { ChatEngine } from "../src/generate/types.ts";
import { createApp, type ServerOptions } from "../src/server/app.ts";
import { FakeEngine, waitFor } from "../src/server/_fake_engine.ts";
import { ContextLengthError } from "../src/errors.ts";
import { loadEngine } from "../src/server/_engine.ts";
import { decodeImage } from "../src/image.ts";

const PNG = await Deno.readFile(
  new URL("./fixtures/tiny-qwen2vl/reference/case1_0.png", import.meta.url),
);
const KEY = "sk-qvq-test";
const TINY = new URL("./fixtures/tiny-qwen2vl", import.meta.url).pathname;

/** A listening server for `engine` and an Ollama client pointed at it (sending the API key). */
function serve(engine: ChatEngine, options: ServerOptions = {}) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createApp(engine, { apiKey: KEY, ...options }).fetch,
  );
  const host = `http://127.0.0.1:${server.addr.port}`;
  const client = new Ollama({ host, headers: { Authorization: `Bearer ${KEY}` } });
  return { server, host, client, [Symbol.asyncDispose]: () => server.shutdown() };
}

Deno.test("ollama-js chats with an image, whole and streamed, with Ollama's counts", async () => {
  const engine = new FakeEngine({ tokenDelayMs: 1 });
  await using s = serve(engine);
  const messages = [
    { role: "system", content: "Be careful." },
    { role: "user", content: "What is in the picture?", images: [PNG] },
  ];
  const whole = await s.client.chat({
    model: `${engine.modelId}:latest`,
    messages,
    options: { temperature: 0, seed: 3, num_predict: 64, num_ctx: 8192 },
  });
  assert.equal(whole.model, `${engine.modelId}:latest`);
  assert.deepEqual(whole.message, {
    role: "assistant",
    content: "I see 1 image. You said: What is in the picture?",
  });
  assert.equal(whole.done, true);
  assert.equal(whole.done_reason, "stop");
  assert.equal(whole.prompt_eval_count, 14);
  assert.equal(whole.eval_count, 11);
  assert.equal(whole.prompt_eval_duration, 3_000_000); // the fake's vision 1 ms + prefill 2 ms
  assert.equal(whole.eval_duration, 3_000_000);
  assert.ok(whole.total_duration >= whole.eval_duration);
  // The image (sent base64 by the client) decoded once by the server, before the text.
  const sent = engine.calls[0];
  const content = sent.messages[1].content;
  assert.ok(Array.isArray(content) && content[0].type === "image" && content[1].type === "text");
  assert.deepEqual(content[0].type === "image" && content[0].image, await decodeImage(PNG));
  assert.equal(sent.options.temperature, 0);
  assert.equal(sent.options.seed, 3);
  assert.equal(sent.options.maxNewTokens, 64);

  const stream = await s.client.chat({ model: engine.modelId, messages, stream: true });
  const parts = [];
  for await (const part of stream) parts.push(part);
  assert.equal(parts.map((p) => p.message.content).join(""), whole.message.content);
  assert.ok(parts.length > 5);
  assert.ok(parts.slice(0, -1).every((p) => !p.done));
  const last = parts.at(-1)!;
  assert.equal(last.done, true);
  assert.equal(last.done_reason, "stop");
  assert.equal(last.eval_count, 11);
});

Deno.test("ollama-js generates, raw or through the chat template, to num_predict", async () => {
  const engine = new FakeEngine();
  await using s = serve(engine);
  const r = await s.client.generate({
    model: engine.modelId,
    prompt: "Why is the sky blue?",
    system: "Answer in one word.",
    options: { num_predict: 3 },
  });
  assert.equal(r.response, "I see 0");
  assert.equal(r.done_reason, "length");
  assert.deepEqual(engine.calls[0].messages.map((m) => [m.role, m.content]), [
    ["system", "Answer in one word."],
    ["user", "Why is the sky blue?"],
  ]);

  const raw = await s.client.generate({
    model: engine.modelId,
    prompt: "1, 2, 3,",
    raw: true,
    logprobs: true,
  });
  assert.deepEqual(engine.prompts, ["1, 2, 3,"]); // the completion route: no template
  assert.equal(raw.response, "I see 0 images. You said: 1, 2, 3,");
  // Ollama's default num_predict (-1): as many as the context holds (not /v1/completions' 16).
  assert.equal(engine.calls[1].options.maxNewTokens, Infinity);
  assert.equal(raw.logprobs?.length, 9); // one a token (a word, for the fake engine)
  assert.deepEqual(raw.logprobs?.[0], { token: "I", logprob: -0.1, bytes: [73], top_logprobs: [] });

  const streamed = await s.client.generate({ model: engine.modelId, prompt: "Hi", stream: true });
  let text = "";
  for await (const part of streamed) text += part.response;
  assert.equal(text, "I see 0 images. You said: Hi");
});

Deno.test("ollama-js sees Ollama's errors: the field renamed, the unknown model, the key", async () => {
  const engine = new FakeEngine();
  await using s = serve(engine);
  const status = (e: unknown) => (e as { status_code: number }).status_code;
  const hot = await s.client.chat({
    model: engine.modelId,
    messages: [{ role: "user", content: "x" }],
    options: { temperature: 5 },
  }).catch((e) => e);
  assert.equal(hot.name, "ResponseError");
  assert.equal(status(hot), 400);
  assert.match(hot.message, /^options\.temperature must be .*; got 5\.$/);
  // Past the ceiling: as many as the context holds, up to it (Ollama's "at most").
  await s.client.chat({
    model: engine.modelId,
    messages: [{ role: "user", content: "x" }],
    options: { num_predict: 99999 },
  });
  assert.equal(engine.calls.at(-1)?.options.maxNewTokens, Infinity);

  const notImage = await s.client.chat({
    model: engine.modelId,
    messages: [{ role: "user", content: "x", images: [new TextEncoder().encode("hello")] }],
  }).catch((e) => e);
  assert.equal(status(notImage), 400);
  assert.match(notImage.message, /^messages\[0\]\.images\[0\] is not a PNG, JPEG or WebP image/);

  const other = await s.client.chat({ model: "llama3.2", messages: [] }).catch((e) => e);
  assert.equal(status(other), 404);
  assert.match(
    other.message,
    /model "llama3\.2" not found: this server serves "fake\/qvq-test:latest"/,
  );

  const keyless = new Ollama({ host: s.host });
  const refused = await keyless.list().catch((e) => e);
  assert.equal(status(refused), 401);
  assert.match(refused.message, /Missing API key/);

  // A format beside tools must be a schema (the answer: its instance, or calls).
  const tool = { type: "function", function: { name: "f", parameters: { type: "object" } } };
  const json = await s.client.chat({
    model: engine.modelId,
    messages: [{ role: "user", content: "x" }],
    tools: [tool],
    format: "json",
  }).catch((e) => e);
  assert.equal(status(json), 400);
  assert.match(json.message, /^format beside tools .* must be a JSON schema/);

  const embed = await s.client.embed({ model: engine.modelId, input: "x" }).catch((e) => e);
  assert.equal(status(embed), 501);
  assert.match(embed.message, /does not embed/);
  assert.equal(engine.calls.length, 1); // the num_predict 99999 one
});

Deno.test("ollama-js: a conversation over the context loses its oldest turns, as Ollama truncates it; truncate false refuses", async () => {
  // The fake's context: a system message and two more.
  const full = new ContextLengthError("the prompt has 90 tokens but the model's context holds 80");
  const engine = new FakeEngine({ refuse: (m) => (m.length > 3 ? full : undefined) });
  await using s = serve(engine);
  const messages = [
    { role: "system", content: "Be brief." },
    ...["one", "two", "three"].flatMap((t) => [
      { role: "user", content: `Say ${t}` },
      { role: "assistant", content: t },
    ]),
    { role: "user", content: "And four?" },
  ];
  const r = await s.client.chat({ model: engine.modelId, messages });
  assert.equal(r.message.content, "I see 0 images. You said: And four?");
  const kept = engine.calls.at(-1)!.messages.map((m) => m.content);
  assert.deepEqual(kept, ["Be brief.", "three", "And four?"]);
  const refused = await fetch(`${s.host}/api/chat`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ messages, truncate: false, stream: false }),
  });
  assert.equal(refused.status, 400);
  assert.match((await refused.json()).error, /context holds 80/);
});

Deno.test("Ollama's stop strings: any number (not the /v1 endpoints' 4); num_predict 0 limits nothing; a line separator in the answer stays one NDJSON line", async () => {
  const engine = new FakeEngine({ answer: () => "Line one\u2028line two" });
  await using s = serve(engine);
  const stop = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "a", "b", "c"];
  await s.client.generate({
    model: engine.modelId,
    prompt: "def f(",
    raw: true,
    options: { stop, num_predict: 0 },
  });
  assert.deepEqual(engine.calls[0].options.stop, stop);
  assert.equal(engine.calls[0].options.maxNewTokens, Infinity);
  // Beside tools, two of the engine's 16 end a call: the request's count says so.
  const tool = { type: "function", function: { name: "f", parameters: { type: "object" } } };
  const many = await s.client.chat({
    model: engine.modelId,
    messages: [{ role: "user", content: "x" }],
    tools: [tool],
    options: { stop: Array.from({ length: 15 }, (_, i) => `s${i}`) },
  }).catch((e) => e);
  assert.equal(
    many.message,
    "options.stop takes at most 14 strings beside tools (2 of the 16 end a call); got 15.",
  );
  const response = await fetch(`${s.host}/api/chat`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
  });
  const body = await response.text();
  assert.equal(/[\u2028\u2029]/.test(body), false);
  const lines = body.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.map((l) => l.message.content).join(""), "Line one\u2028line two");
});

Deno.test("Ollama's errors name the request's own fields: after truncation, for a 413, for raw top_logprobs", async () => {
  const full = new ContextLengthError("the prompt has 90 tokens but the model's context holds 80");
  const engine = new FakeEngine({ refuse: (m) => (m.length > 1 ? full : undefined) });
  await using s = serve(engine, { maxImageBytes: 2000 });
  const post = async (path: string, body: unknown) => {
    const r = await fetch(`${s.host}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ stream: false, ...body as object }),
    });
    return { status: r.status, error: (await r.json()).error as string };
  };
  // Its header whole, its data cut: found when decoded, after the first two messages were dropped.
  const cut = PNG.subarray(0, PNG.length - 40).toBase64();
  const truncated = await post("/api/chat", {
    messages: [
      { role: "user", content: "old" },
      { role: "assistant", content: "older" },
      { role: "user", content: "look", images: [PNG.toBase64(), cut] },
    ],
  });
  assert.equal(truncated.status, 400);
  assert.match(truncated.error, /^messages\[2\]\.images\[1\]: /);
  const big = new Uint8Array(3000);
  big.set(PNG.subarray(0, 33)); // a PNG's signature and header, 3000 bytes
  const tooLarge = await post("/api/generate", { prompt: "hi", images: [big.toBase64()] });
  assert.equal(tooLarge.status, 413);
  assert.match(tooLarge.error, /^images\[0\]: /);
  const raw = await post("/api/generate", {
    prompt: "hi",
    raw: true,
    logprobs: true,
    top_logprobs: 30,
  });
  assert.equal(raw.status, 400);
  assert.match(raw.error, /^top_logprobs must be /);
});

Deno.test("Ollama's errors keep their shape for a chunked body (no content-length)", async () => {
  const engine = new FakeEngine();
  await using s = serve(engine);
  const body = JSON.stringify({
    messages: [{ role: "user", content: "x" }],
    options: { top_k: -5 },
  });
  const response = await fetch(`${s.host}/api/chat`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}` },
    body: ReadableStream.from([new TextEncoder().encode(body)]),
  });
  assert.equal(response.status, 400);
  const error = await response.json();
  assert.equal(typeof error.error, "string", JSON.stringify(error));
  assert.match(error.error, /^options\.top_k /);
});

Deno.test("ollama-js lists, shows and pulls the served model; a chat without messages loads it", async () => {
  const engine = new FakeEngine();
  await using s = serve(engine);
  const name = `${engine.modelId}:latest`;
  const { models } = await s.client.list();
  assert.deepEqual(models.map((m) => [m.name, m.model, m.details.family]), [
    [name, name, "qwen2vl"],
  ]);
  assert.match(models[0].digest, /^[0-9a-f]{64}$/);
  const show = await s.client.show({ model: name });
  assert.deepEqual(show.capabilities, ["completion", "vision", "tools"]);
  const ps = await s.client.ps();
  assert.equal(ps.models[0].name, name);
  assert.match((await s.client.version()).version, /^\d+\.\d+\.\d+$/);
  assert.deepEqual(await s.client.pull({ model: name }), { status: "success" });
  const loaded = await s.client.chat({ model: name, messages: [] });
  assert.equal(loaded.done_reason, "load");
  assert.equal(engine.calls.length, 0);
});

Deno.test("ollama-js: abort() on a stream stops the generation on the server", async () => {
  const engine = new FakeEngine({ tokenDelayMs: 10, answer: () => "step ".repeat(2000) });
  await using s = serve(engine);
  const stream = await s.client.chat({
    model: engine.modelId,
    messages: [{ role: "user", content: "Go" }],
    stream: true,
  });
  let seen = 0;
  await assert.rejects(async () => {
    for await (const _ of stream) if (++seen === 5) stream.abort();
  }, /abort/i);
  await waitFor(() => engine.calls[0].closed, "the generation to close");
  assert.equal(engine.calls[0].finishReason, "abort");
});

Deno.test("ollama-js gets transformers' greedy answer from the tiny model through /api/chat and /api/generate", async () => {
  const cases = JSON.parse(
    await Deno.readTextFile(
      new URL("./fixtures/tiny-qwen2vl/reference/cases.json", import.meta.url),
    ),
  );
  const ref = cases.cases[0];
  const image = await Deno.readFile(
    new URL(`./fixtures/tiny-qwen2vl/reference/${ref.images[0]}`, import.meta.url),
  );
  const engine = await loadEngine(TINY, { progress: false });
  try {
    await using s = serve(engine);
    const options = { num_predict: ref.generated_ids.length, temperature: 0 };
    const chat = await s.client.chat({
      model: "tiny-qwen2vl",
      messages: [{ role: "user", content: ref.prompt, images: [image] }],
      options,
    });
    assert.equal(chat.message.content, ref.generated_text);
    assert.equal(chat.done_reason, "length");
    assert.equal(chat.prompt_eval_count, ref.seq_len);
    assert.equal(chat.eval_count, ref.generated_ids.length);

    const stream = await s.client.generate({
      model: "tiny-qwen2vl:latest",
      prompt: ref.prompt,
      images: [image],
      options,
      stream: true,
      logprobs: true,
    });
    let text = "";
    let tokens = 0;
    for await (const part of stream) {
      text += part.response;
      tokens += part.logprobs?.length ?? 0;
    }
    assert.equal(text, ref.generated_text);
    assert.equal(tokens, ref.generated_ids.length);
  } finally {
    engine.dispose();
  }
});
