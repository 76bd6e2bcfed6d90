/**
 * The official `openai` npm client, unmodified, against a real listening server (Deno.serve on
 * 127.0.0.1, port 0): first with the scripted fake engine, then with the bundled tiny model.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { ChatEngine } from "../src/generate/types.ts";
import { createApp, type ServerOptions } from "../src/server/app.ts";
import { FakeEngine, gate, waitFor } from "../src/server/_fake_engine.ts";
import { loadEngine } from "../src/server/_engine.ts";
import {
  QVQ_SYSTEM,
  qvqTemplate,
  readReferenceCase,
  tinyWithoutTemplate,
  tinyWithTemplate,
} from "../src/model/_fixture.ts";
import { Pipeline } from "../src/pipeline.ts";
import { warmUp } from "../src/server/_warmup.ts";
import { stateAfter } from "../src/generate/json_grammar.ts";
import { decodeImage } from "../src/image.ts";

const PNG = await Deno.readFile(
  new URL("./fixtures/tiny-qwen2vl/reference/case1_0.png", import.meta.url),
);
const IMAGE_URL = `data:image/png;base64,${PNG.toBase64()}`;
const KEY = "sk-qvq-test";
const TINY = new URL("./fixtures/tiny-qwen2vl", import.meta.url).pathname;

/** A listening server for `engine` and an OpenAI client pointed at it. */
function serve(engine: ChatEngine, options: ServerOptions = {}) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createApp(engine, { apiKey: KEY, ...options }).fetch,
  );
  const baseURL = `http://127.0.0.1:${server.addr.port}/v1`;
  const client = new OpenAI({ apiKey: KEY, baseURL, maxRetries: 0 });
  return { server, baseURL, client, [Symbol.asyncDispose]: () => server.shutdown() };
}

const question: OpenAI.Chat.ChatCompletionMessageParam[] = [
  { role: "system", content: "You are a careful visual reasoner." },
  {
    role: "user",
    content: [
      { type: "image_url", image_url: { url: IMAGE_URL } },
      { type: "text", text: "What is in the picture?" },
    ],
  },
];

Deno.test("the openai client gets a non-streaming answer to a question with an image", async () => {
  const engine = new FakeEngine();
  await using s = serve(engine);
  const completion = await s.client.chat.completions.create({
    model: engine.modelId,
    messages: question,
    max_completion_tokens: 64,
    temperature: 0,
    seed: 1,
  });
  assert.equal(completion.object, "chat.completion");
  assert.equal(completion.model, engine.modelId);
  assert.equal(completion.choices[0].message.role, "assistant");
  assert.equal(
    completion.choices[0].message.content,
    "I see 1 image. You said: What is in the picture?",
  );
  assert.equal(completion.choices[0].finish_reason, "stop");
  assert.deepEqual(completion.usage, {
    prompt_tokens: 14,
    completion_tokens: 11,
    total_tokens: 25,
    prompt_tokens_details: { cached_tokens: 0, image_tokens: 4 },
  });
  const received = engine.calls[0].messages[1].content;
  assert.ok(Array.isArray(received) && received[0].type === "image");
  // Decoded once, by the server, for a request that runs at once.
  assert.deepEqual(received[0].type === "image" && received[0].image, await decodeImage(PNG));
});

Deno.test("the openai client streams an answer with an image, then usage", async () => {
  const engine = new FakeEngine({ tokenDelayMs: 2 });
  await using s = serve(engine);
  const stream = await s.client.chat.completions.create({
    model: engine.modelId,
    messages: question,
    stream: true,
    stream_options: { include_usage: true },
  });
  const deltas: string[] = [];
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta.content) deltas.push(chunk.choices[0].delta.content);
    finish = chunk.choices[0]?.finish_reason ?? finish;
    usage = chunk.usage ?? usage;
  }
  assert.equal(deltas.length, 11);
  assert.equal(deltas.join(""), "I see 1 image. You said: What is in the picture?");
  assert.equal(finish, "stop");
  assert.equal(usage?.completion_tokens, 11);
});

Deno.test("the openai client raises its typed errors: 400 with the field, 401, 404, 503", async () => {
  const go = gate(); // the busy request below is held generating until the next is refused
  const engine = new FakeEngine({ hold: () => go.promise });
  await using s = serve(engine, { maxQueue: 0 });
  const bad = await s.client.chat.completions.create({
    model: engine.modelId,
    messages: question,
    n: 9,
  }).catch((e) => e);
  assert.ok(bad instanceof OpenAI.BadRequestError);
  assert.equal(bad.param, "n");
  assert.match(bad.message, /n must be >= 1 and <= 8; got 9/);

  const wrongKey = new OpenAI({ apiKey: "sk-wrong", baseURL: s.baseURL, maxRetries: 0 });
  assert.ok((await wrongKey.models.list().catch((e) => e)) instanceof OpenAI.AuthenticationError);
  const missing = await s.client.chat.completions.create({ model: "gpt-4o", messages: question })
    .catch((e) => e);
  assert.ok(missing instanceof OpenAI.NotFoundError);
  assert.equal(missing.code, "model_not_found");

  const busy = s.client.chat.completions.create({ model: engine.modelId, messages: question });
  await waitFor(() => engine.calls.length === 1, "the busy request to be generating");
  const refused = await s.client.chat.completions.create({
    model: engine.modelId,
    messages: question,
  })
    .catch((e) => e);
  assert.ok(refused instanceof OpenAI.InternalServerError);
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get("retry-after"), "10");
  go.open();
  await busy;
});

Deno.test("the openai client lists the served model", async () => {
  const engine = new FakeEngine();
  await using s = serve(engine);
  const models = [];
  for await (const m of s.client.models.list()) models.push(m.id);
  assert.deepEqual(models, [engine.modelId]);
});

Deno.test("a client that stops reading a stream aborts the generation on the server", async () => {
  const engine = new FakeEngine({ tokenDelayMs: 10, answer: () => "step ".repeat(2000) });
  await using s = serve(engine);
  const stream = await s.client.chat.completions.create({
    model: engine.modelId,
    messages: question,
    stream: true,
  });
  let seen = 0;
  for await (const _ of stream) if (++seen === 5) break;
  await waitFor(() => engine.calls[0].closed, "the generation to close");
  assert.equal(engine.calls[0].finishReason, "abort");
});

Deno.test("a long answer streams steadily, one chunk per token as it is written", async () => {
  // The engine writes its second token only once the client has the first (were the server to
  // buffer, once gate()'s 30 s are up): nothing is buffered until the end.
  const firstSeen = gate();
  let writing = 0; // the token the engine is at
  const engine = new FakeEngine({
    answer: () => "reason ".repeat(3000),
    hold: (k) => {
      writing = k;
      return k === 1 ? firstSeen.promise : undefined;
    },
  });
  await using s = serve(engine);
  const stream = await s.client.chat.completions.create({
    model: engine.modelId,
    messages: question,
    stream: true,
    max_tokens: 3000,
  });
  let tokens = 0;
  let writingAtFirst = Infinity;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta.content && tokens++ === 0) {
      writingAtFirst = writing;
      firstSeen.open();
    }
  }
  assert.equal(tokens, 3000);
  assert.ok(
    writingAtFirst <= 1,
    `the first token came as the engine wrote token ${writingAtFirst}`,
  );
});

/**
 * transformers' reference case 0 of the tiny model (one image and one question, the template's
 * default system prompt) and its image's bytes.
 */
async function referenceCase0() {
  const cases = JSON.parse(
    await Deno.readTextFile(
      new URL("./fixtures/tiny-qwen2vl/reference/cases.json", import.meta.url),
    ),
  );
  const ref = cases.cases[0];
  const image = await Deno.readFile(
    new URL(`./fixtures/tiny-qwen2vl/reference/${ref.images[0]}`, import.meta.url),
  );
  // The reference's question, greedy, as many tokens as it ran (all 12 steps: its text does
  // repeat itself, so no loop stop).
  const request = {
    model: "tiny-qwen2vl",
    messages: [{
      role: "user",
      content: [
        { type: "image_url", image_url: { url: `data:image/png;base64,${image.toBase64()}` } },
        { type: "text", text: ref.prompt },
      ],
    }],
    max_tokens: ref.generated_ids.length,
    temperature: 0,
    stop_on_loop: false,
  } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming;
  return { cases, ref, image, request };
}

Deno.test("a model without a chat template: /v1/completions answers, a chat is a 400 no_chat_template saying to send a raw prompt", async () => {
  const engine = await Pipeline.load(await tinyWithoutTemplate(), { modelId: "bare" });
  try {
    await warmUp(engine); // the server's warm-up runs raw prompts for it
    await using s = serve(engine);
    const completion = await s.client.completions.create({
      model: "bare",
      prompt: "The capital of France is",
      max_tokens: 3,
      temperature: 0,
    });
    assert.equal(completion.choices[0].finish_reason, "length");
    assert.equal(completion.usage?.completion_tokens, 3);
    const messages = [{ role: "user" as const, content: "Hi" }];
    // The field named as each API names it: /v1/responses' conversation is its `input`.
    const refused: [unknown, string][] = [
      [
        await s.client.chat.completions.create({ model: "bare", messages }).catch((e) => e),
        "messages",
      ],
      [
        await s.client.chat.completions.create({ model: "bare", messages, stream: true })
          .catch((e) => e),
        "messages",
      ],
      [await s.client.responses.create({ model: "bare", input: "Hi" }).catch((e) => e), "input"],
    ];
    for (const [e, param] of refused) {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.code, "no_chat_template");
      assert.equal(e.param, param);
      assert.match(e.message, /the model has no chat template .* send a raw prompt/);
    }
  } finally {
    engine.dispose();
  }
});

Deno.test("QVQ-72B-Preview's template: tools (auto) are described after its own default system message, not Qwen-Agent's", async () => {
  const engine = await Pipeline.load(await tinyWithTemplate(await qvqTemplate()), {
    modelId: "qvq",
  });
  try {
    assert.equal(engine.defaultSystemPrompt, QVQ_SYSTEM);
    await using s = serve(engine);
    const root = s.baseURL.replace(/\/v1$/, "");
    const call = async (path: string, body: unknown) =>
      await (await fetch(`${root}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      })).json();
    const tools = [{ type: "function", function: { name: "f", description: "Does f." } }];
    const messages = [{ role: "user", content: "Call f." }];
    const { tokens } = await call("/tokenize", { messages, tools });
    assert.match(
      (await call("/detokenize", { tokens })).prompt,
      /^<\|im_start\|>system\nYou are a helpful and harmless assistant\. You are Qwen developed by Alibaba\. You should think step-by-step\.\n\n# Tools\n\n## You have access to the following tools:\n\n### f\n\nf: Does f\./,
    );
    // The chat endpoint reads that prompt.
    const completion = await s.client.chat.completions.create({
      model: "qvq",
      messages: [{ role: "user", content: "Call f." }],
      tools: [{ type: "function", function: { name: "f", description: "Does f." } }],
      max_tokens: 1,
    });
    assert.equal(completion.usage?.prompt_tokens, tokens.length);
  } finally {
    engine.dispose();
  }
});

Deno.test("the openai client gets transformers' greedy answer from the tiny model, streamed or not", async () => {
  const { cases, ref, image, request: params } = await referenceCase0();
  const engine = await loadEngine(TINY, { progress: false });
  try {
    await using s = serve(engine);
    const completion = await s.client.chat.completions.create(params);
    assert.equal(completion.choices[0].message.content, ref.generated_text);
    assert.equal(completion.choices[0].finish_reason, "length");
    assert.equal(completion.usage?.prompt_tokens, ref.seq_len);
    assert.equal(completion.usage?.completion_tokens, ref.generated_ids.length);

    const stream = await s.client.chat.completions.create({ ...params, stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    assert.equal(text, ref.generated_text);

    // vLLM's continuous_usage_stats: the engine's counts on every chunk with text, growing a
    // token a chunk here (one token a chunk), the last the final usage chunk's.
    const counted = await s.client.chat.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: true } as {
        include_usage: boolean;
      },
    });
    const seen: number[] = [];
    let last: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of counted) {
      if (chunk.choices[0]?.delta.content) {
        assert.equal(chunk.usage?.prompt_tokens, ref.seq_len);
        seen.push(chunk.usage!.completion_tokens);
      }
      if (!chunk.choices.length) last = chunk.usage;
      else if (chunk.usage) assert.ok(chunk.usage.completion_tokens >= (seen.at(-1) ?? 0));
    }
    assert.ok(seen.length > 1 && seen.every((n, i) => i === 0 || n > seen[i - 1]), `${seen}`);
    assert.ok(seen.at(-1)! <= ref.generated_ids.length);
    assert.equal(last?.completion_tokens, ref.generated_ids.length);

    // With logprobs, streamed: one entry a token, greedy's choice the most likely of its three.
    const lp = await s.client.chat.completions.create({
      ...params,
      stream: true,
      logprobs: true,
      top_logprobs: 3,
    });
    const entries: OpenAI.Chat.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of lp) entries.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    assert.equal(entries.length, ref.generated_ids.length);
    assert.equal(entries.map((e) => e.token).join(""), ref.generated_text);
    for (const e of entries) {
      assert.equal(e.top_logprobs.length, 3);
      assert.deepEqual([e.top_logprobs[0].token, e.top_logprobs[0].logprob], [e.token, e.logprob]);
      assert.ok(e.logprob < 0 && e.top_logprobs[1].logprob <= e.logprob);
    }

    // vLLM's /tokenize and /detokenize (beside /v1, behind its key) and max_model_len.
    const root = s.baseURL.replace(/\/v1$/, "");
    const call = async (path: string, body: unknown) => {
      const r = await fetch(root + path, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}` },
        body: JSON.stringify(body),
      });
      return { status: r.status, json: await r.json() };
    };
    const models = await s.client.models.list();
    const context = (models.data[0] as unknown as { max_model_len: number }).max_model_len;
    assert.equal(context, engine.maxContext);
    assert.deepEqual(
      (await call("/tokenize", { model: "tiny-qwen2vl", prompt: "Hello world" })).json,
      {
        count: 2,
        max_model_len: context,
        tokens: [9707, 1879],
      },
    );
    // Messages as the chat endpoint renders them: case 0's image and question are its 35 ids.
    const chat = await call("/tokenize", { messages: params.messages });
    assert.deepEqual(
      chat.json.tokens,
      Array.from((await readReferenceCase(0)).inputIds),
    );
    // Counted from the image's headers alone: its signature and IHDR give the same ids.
    const headerOnly = `data:image/png;base64,${image.subarray(0, 33).toBase64()}`;
    const sized = await call("/tokenize", {
      messages: [{
        role: "user",
        content: [
          { type: "image_url", image_url: { url: headerOnly } },
          { type: "text", text: ref.prompt },
        ],
      }],
    });
    assert.deepEqual(sized.json.tokens, chat.json.tokens);
    // A finished conversation: no assistant header ("<|im_start|>assistant\n", three tokens).
    const finished = await call("/tokenize", {
      messages: params.messages,
      add_generation_prompt: false,
    });
    assert.deepEqual(finished.json.tokens, chat.json.tokens.slice(0, -3));
    // Tools reach the template, which (Qwen2-VL's) does not write them: the same ids.
    const withTools = await call("/tokenize", {
      messages: params.messages,
      tools: [{ type: "function", function: { name: "f" } }],
      tool_choice: "required", // ignored, as vLLM's /tokenize does
    });
    assert.deepEqual(withTools.json.tokens, chat.json.tokens);
    // With "auto" (their default) the system message describes them, in Qwen-Agent's words.
    const described = await call("/tokenize", {
      messages: params.messages,
      tools: [{ type: "function", function: { name: "f", description: "Does f." } }],
    });
    const prompt = (await call("/detokenize", { tokens: described.json.tokens })).json.prompt;
    assert.match(
      prompt,
      /^<\|im_start\|>system\nYou are a helpful assistant\.\n\n# Tools\n\n## You have access to the following tools:\n\n### f\n\nf: Does f\. Parameters: \{"type": "object", "properties": \{\}\} Format the arguments as a JSON object\./,
    );
    assert.deepEqual((await call("/detokenize", { tokens: [9707, 1879] })).json, {
      prompt: "Hello world",
    });
    const refused: [string, unknown, number, string | null][] = [
      ["/detokenize", { tokens: [1e9] }, 400, "tokens"],
      ["/detokenize", { tokens: "x" }, 400, "tokens"],
      ["/tokenize", { model: "tiny-qwen2vl" }, 400, "prompt"],
      ["/tokenize", { prompt: "a", model: "gpt-4o" }, 404, "model"],
      ["/tokenize", { messages: params.messages, tools: [{ type: "function" }] }, 400, "tools[0]"],
      ["/tokenize", { messages: params.messages, chat_template: "x" }, 400, "chat_template"],
    ];
    for (const [path, body, status, param] of refused) {
      const r = await call(path, body);
      assert.deepEqual([r.status, r.json.error.param], [status, param], JSON.stringify(body));
    }
    const keyless = await fetch(`${root}/tokenize`, { method: "POST", body: '{"prompt":"a"}' });
    assert.equal(keyless.status, 401);
    await keyless.body?.cancel();

    // /v1/completions: case 3's templated prompt given raw continues as its chat answers.
    const text3 = cases.cases[3];
    const ids3 = (await engine.prepare([{ role: "user", content: text3.prompt }])).inputIds;
    const rawPrompt = engine.tokenizer.decode(Array.from(ids3));
    const raw = {
      model: "tiny-qwen2vl",
      prompt: rawPrompt,
      max_tokens: 6,
      temperature: 0,
      stop_on_loop: false,
    } as OpenAI.CompletionCreateParamsNonStreaming;
    const done = await s.client.completions.create({ ...raw, logprobs: 2 });
    const six = engine.tokenizer.decode(text3.generated_ids.slice(0, 6), {
      skipSpecialTokens: true,
    });
    assert.equal(done.choices[0].text, six);
    assert.equal(done.usage?.prompt_tokens, text3.seq_len);
    assert.equal(done.choices[0].logprobs?.tokens?.length, 6);
    let streamed = "";
    for await (const c of await s.client.completions.create({ ...raw, stream: true })) {
      streamed += c.choices[0]?.text ?? "";
    }
    assert.equal(streamed, done.choices[0].text);

    // n: 2 choices, choice i as a request of its own with seed + i answers.
    // (A plain prompt: after the template " retired" leads by too much for draws to differ.)
    const sampled = { ...raw, prompt: "The sea is", temperature: 1, max_tokens: 3 };
    const two = await s.client.completions.create({ ...sampled, n: 2, seed: 3 });
    const alone = await s.client.completions.create({ ...sampled, seed: 4 });
    assert.equal(two.choices.length, 2);
    assert.equal(two.choices[1].text, alone.choices[0].text);
    assert.notEqual(two.choices[0].text, two.choices[1].text);
    assert.equal(two.usage?.completion_tokens, 6);

    // lm-evaluation-harness's loglikelihood request — token ids, echo, max_tokens 1, logprobs 1 —
    // reads token_logprobs[ctxlen:-1]: the prompt's, then the one generated token's.
    const ids = Array.from(ids3);
    const lm = await s.client.completions.create({
      model: "tiny-qwen2vl",
      prompt: [ids],
      echo: true,
      max_tokens: 1,
      logprobs: 1,
      temperature: 0,
    });
    const lmLps = lm.choices[0].logprobs!;
    assert.equal(lmLps.tokens!.length, ids.length + 1);
    assert.equal(lm.choices[0].text, rawPrompt + six.slice(0, lmLps.tokens!.at(-1)!.length));
    assert.equal(lm.usage?.completion_tokens, 1);
    // With max_tokens 0 the prompt alone: the prompt's tokens scored, the first null, each
    // position's most likely transformers' argmax.
    const scored = await s.client.completions.create({
      model: "tiny-qwen2vl",
      prompt: [ids],
      echo: true,
      max_tokens: 0,
      logprobs: 1,
      temperature: 0,
    });
    const c = scored.choices[0];
    assert.equal(c.text, rawPrompt);
    assert.equal(scored.usage?.completion_tokens, 0);
    const lps = c.logprobs!;
    assert.equal(lps.tokens!.length, ids.length);
    assert.equal(lps.tokens!.join(""), rawPrompt);
    assert.equal(lps.token_logprobs![0], null);
    assert.deepEqual(lmLps.token_logprobs!.slice(0, -1), lps.token_logprobs, "the same scores");
    assert.equal(lps.top_logprobs![0], null);
    const argmax = (await readReferenceCase(3)).logitsArgmax;
    for (let i = 1; i < ids.length; i++) {
      const top = lps.top_logprobs![i]!;
      const own = lps.token_logprobs![i]!;
      assert.ok(own < 0 && top[lps.tokens![i]] === own, `token ${i}`);
      // The most likely's text is transformers' argmax's (greedy exactly where the token is it).
      const best = Object.entries(top).sort((a, b) => b[1] - a[1])[0];
      const want = engine.tokenizer.decode([argmax[i - 1]]);
      assert.equal(best[0], want, `position ${i}`);
      assert.equal(best[1] === own, ids[i] === argmax[i - 1], `position ${i} greedy`);
    }

    // JSON mode: sampled and streamed, the answer stays the start of a JSON object; with "}" and
    // the end id favoured it is the empty object (the end id held back until it closes).
    const json = await s.client.chat.completions.create({
      ...params,
      messages: [{ role: "user", content: "Describe the sea as JSON." }],
      response_format: { type: "json_object" },
      temperature: 1,
      seed: 5,
      max_tokens: 20,
      stream: true,
    });
    let object = "";
    for await (const chunk of json) object += chunk.choices[0]?.delta.content ?? "";
    assert.ok(stateAfter(object) && object.startsWith("{"), JSON.stringify(object));
    const closed = await s.client.chat.completions.create({
      ...params,
      response_format: { type: "json_object" },
      logit_bias: { [engine.tokenizer.encode("}")[0]]: 100, "151645": 100 },
    });
    assert.equal(closed.choices[0].message.content, "{}");
    assert.equal(closed.choices[0].finish_reason, "stop");
    // Structured outputs: OpenAI's json_schema; a schema it cannot hold an answer to is a 400.
    const sea = {
      type: "object",
      properties: { calm: { type: "boolean" }, colour: { enum: ["blue", "grey", "green"] } },
      required: ["calm", "colour"],
      additionalProperties: false,
    };
    const structured = await s.client.chat.completions.create({
      ...params,
      messages: [{ role: "user", content: "Describe the sea." }],
      response_format: {
        type: "json_schema",
        json_schema: { name: "sea", schema: sea, strict: true },
      },
      temperature: 1,
      seed: 9,
      max_tokens: 40,
    });
    assert.equal(structured.choices[0].finish_reason, "stop");
    const parsed = JSON.parse(structured.choices[0].message.content!);
    assert.deepEqual(Object.keys(parsed), ["calm", "colour"]);
    assert.ok(
      typeof parsed.calm === "boolean" && sea.properties.colour.enum.includes(parsed.colour),
    );
    const anything = s.client.chat.completions.create({
      ...params,
      response_format: {
        type: "json_schema",
        json_schema: { name: "x", schema: { type: "object", properties: { a: {} } } },
      },
    });
    await assert.rejects(
      anything,
      (e) =>
        e instanceof OpenAI.BadRequestError && e.param === "response_format" &&
        /response_format: schema\.properties\.a allows any value/.test(e.message),
    );

    // Tools: "required" (one call, parallel_tool_calls false) and a named function, held to the
    // tools' schemas — every call parses and fits its tool; the named one streamed.
    const tools: OpenAI.Chat.ChatCompletionTool[] = [
      {
        type: "function",
        function: { name: "wave", parameters: { type: "object", properties: {} } },
      },
      {
        type: "function",
        function: {
          name: "forecast",
          description: "The sea's state",
          parameters: {
            type: "object",
            properties: { calm: { type: "boolean" }, colour: { enum: ["blue", "grey"] } },
            required: ["calm", "colour"],
          },
        },
      },
    ];
    const fits = (name: string, args: string) => {
      const a = JSON.parse(args);
      if (name === "wave") return Object.keys(a).length === 0;
      return typeof a.calm === "boolean" && ["blue", "grey"].includes(a.colour);
    };
    const required = await s.client.chat.completions.create({
      ...params,
      tools,
      tool_choice: "required",
      parallel_tool_calls: false,
      temperature: 1,
      seed: 3,
      max_tokens: 60,
    });
    const called = required.choices[0].message;
    assert.equal(required.choices[0].finish_reason, "tool_calls");
    assert.equal(called.content, null);
    assert.equal(called.tool_calls?.length, 1);
    const toolCall = called.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    assert.ok(fits(toolCall.function.name, toolCall.function.arguments), JSON.stringify(toolCall));
    const namedStream = await s.client.chat.completions.create({
      ...params,
      tools,
      tool_choice: { type: "function", function: { name: "forecast" } },
      temperature: 1,
      seed: 4,
      max_tokens: 60,
      stream: true,
    });
    let args = "";
    let name = "";
    for await (const chunk of namedStream) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
        name += d.function?.name ?? "";
        args += d.function?.arguments ?? "";
      }
    }
    assert.equal(name, "forecast");
    assert.ok(fits(name, args), args);
    // The call and its result go back into the conversation; a parameters schema the answer
    // cannot be held to is a 400 naming that tool.
    const followUp = await s.client.chat.completions.create({
      ...params,
      messages: [
        ...params.messages,
        { role: "assistant", content: null, tool_calls: called.tool_calls },
        { role: "tool", tool_call_id: toolCall.id, content: "done" },
      ],
      tools,
      tool_choice: "none",
      max_tokens: 3,
    });
    assert.equal(typeof followUp.choices[0].message.content, "string");
    // "auto": the model answers freely (the tiny model's random words), stopped before a
    // ✿RESULT✿ it might write; a call would come back as tool_calls.
    const free = await s.client.chat.completions.create({
      ...params,
      tools,
      max_tokens: 8,
      temperature: 0,
    });
    assert.equal(free.choices[0].finish_reason, "length");
    assert.equal(typeof free.choices[0].message.content, "string");
    const unheld = s.client.chat.completions.create({
      ...params,
      tools: [tools[0], {
        type: "function",
        function: { name: "f", parameters: { type: "object", properties: { a: {} } } },
      }],
      tool_choice: "required",
    });
    await assert.rejects(
      unheld,
      (e) =>
        e instanceof OpenAI.BadRequestError && e.param === "tools[1].function.parameters" &&
        /^400 tools\[1\]\.function\.parameters\.properties\.a allows any value/.test(e.message),
    );
  } finally {
    engine.dispose();
  }
});

Deno.test("the openai client: a json_schema beside tools holds the tiny model's answer after a tool's result (an agent's final turn)", async () => {
  const engine = await loadEngine(TINY, { progress: false });
  try {
    await using s = serve(engine);
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
    const round = (id: string, before: string | null) => [{
      role: "assistant" as const,
      content: before,
      tool_calls: [{
        id,
        type: "function" as const,
        function: { name: "get_weather", arguments: "{}" },
      }],
    }, { role: "tool" as const, tool_call_id: id, content: "sunny" }];
    // One round with or without words before its call; two rounds, words between them.
    for (
      const rounds of [
        round("c1", null),
        round("c1", "Let me check."),
        [...round("c1", null), ...round("c2", "Now the time.")],
      ]
    ) {
      const completion = await s.client.chat.completions.create({
        model: "tiny-qwen2vl",
        max_tokens: 30,
        temperature: 0,
        messages: [{ role: "user", content: "weather?" }, ...rounds],
        tools: [{
          type: "function",
          function: { name: "get_weather", parameters: { type: "object", properties: {} } },
        }],
        response_format: { type: "json_schema", json_schema: { name: "a", schema } },
      });
      const [choice] = completion.choices;
      // Another call (cut short here: the random model's call is all one token), or the
      // schema's instance, whole (it had run unconstrained, or been a 400).
      const text = choice.message.content ?? "";
      if (!choice.message.tool_calls?.length && !text.startsWith("✿FUNCTION✿:")) {
        assert.equal(choice.finish_reason, "stop", text);
        assert.equal(typeof JSON.parse(text).ok, "boolean");
      }
    }
  } finally {
    engine.dispose();
  }
});

Deno.test("the openai client's responses.create gets transformers' greedy answer from the tiny model, streamed or not", async () => {
  const { ref, image } = await referenceCase0();
  const engine = await loadEngine(TINY, { progress: false });
  try {
    await using s = serve(engine);
    const params = {
      model: "tiny-qwen2vl",
      input: [{
        role: "user" as const,
        content: [
          {
            type: "input_image" as const,
            image_url: `data:image/png;base64,${image.toBase64()}`,
            detail: "auto" as const,
          },
          { type: "input_text" as const, text: ref.prompt },
        ],
      }],
      max_output_tokens: ref.generated_ids.length,
      temperature: 0,
      stop_on_loop: false, // the reference runs all 12 steps; its text does repeat itself
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming;
    const response = await s.client.responses.create(params);
    assert.equal(response.output_text, ref.generated_text);
    assert.equal(response.status, "incomplete");
    assert.equal(response.usage?.input_tokens, ref.seq_len);
    assert.equal(response.usage?.output_tokens, ref.generated_ids.length);

    const stream = await s.client.responses.create({ ...params, stream: true });
    let text = "";
    let last: OpenAI.Responses.ResponseStreamEvent | undefined;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") text += event.delta;
      last = event;
    }
    assert.equal(text, ref.generated_text);
    assert.equal(last?.type, "response.incomplete");

    // The engine's refusal of a schema names the Responses field.
    await assert.rejects(
      s.client.responses.create({
        model: "tiny-qwen2vl",
        input: "hi",
        max_output_tokens: 2,
        text: {
          format: {
            type: "json_schema",
            name: "x",
            schema: { type: "object", patternProperties: { "^a": { type: "string" } } },
          },
        },
      }),
      (e) => e instanceof OpenAI.BadRequestError && /^text\.format/.test(String(e.param)),
    );
  } finally {
    engine.dispose();
  }
});

// n choices on an engine that runs 3 generations at once: they run together (the others copying
// choice 0's prompt rows, decoding with it as one batch), and each answers what it would alone.
Deno.test("the openai client's n choices on the tiny model running 3 at once: each transformers' answer, or seed + i's alone", async () => {
  const { ref, request } = await referenceCase0();
  const engine = await loadEngine(TINY, { progress: false, parallel: 3 });
  try {
    assert.equal(engine.batchDecode, true);
    await using s = serve(engine);
    const greedy = await s.client.chat.completions.create({ ...request, n: 3 });
    assert.deepEqual(
      greedy.choices.map((c) => [c.index, c.message.content]),
      [0, 1, 2].map((i) => [i, ref.generated_text]),
    );
    assert.equal(greedy.usage?.completion_tokens, 3 * ref.generated_ids.length);
    const sampled = {
      model: "tiny-qwen2vl",
      prompt: "The sea is",
      temperature: 1,
      max_tokens: 4,
      stop_on_loop: false,
    } as OpenAI.CompletionCreateParamsNonStreaming;
    const three = await s.client.completions.create({ ...sampled, n: 3, seed: 3 });
    const alone = [];
    for (const seed of [3, 4, 5]) {
      alone.push((await s.client.completions.create({ ...sampled, seed })).choices[0].text);
    }
    assert.deepEqual(three.choices.map((c) => c.text), alone);
    assert.ok(new Set(alone).size > 1, `the draws differ: ${JSON.stringify(alone)}`);
  } finally {
    engine.dispose();
  }
});

Deno.test("the openai client gets transformers' greedy answer to an image and a video (its frames as data URLs)", async () => {
  const dir = new URL("./fixtures/video/", import.meta.url);
  const cases = JSON.parse(await Deno.readTextFile(new URL("cases.json", dir))).cases;
  const ref = cases.find((c: { image: string | null }) => c.image); // an image, then a video
  const url = async (file: string) =>
    `data:image/png;base64,${(await Deno.readFile(new URL(file, dir))).toBase64()}`;
  const engine = await loadEngine(TINY, { progress: false });
  try {
    await using s = serve(engine);
    const messages = [{
      role: "user",
      content: [
        { type: "image_url", image_url: { url: await url(ref.image) } },
        // Qwen2-VL's video part (not in OpenAI's types): the frames, in order.
        { type: "video", video: await Promise.all(ref.frames.map(url)) },
        { type: "text", text: ref.prompt },
      ],
    }] as unknown as OpenAI.Chat.ChatCompletionMessageParam[];
    const completion = await s.client.chat.completions.create({
      model: "tiny-qwen2vl",
      messages,
      max_tokens: ref.generated_ids.length,
      temperature: 0,
      stop_on_loop: false,
    } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    assert.equal(completion.choices[0].message.content, ref.generated_text);
    assert.equal(completion.usage?.prompt_tokens, ref.seq_len);
    // /tokenize counts the same prompt.
    const r = await fetch(s.baseURL.replace(/\/v1$/, "/tokenize"), {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: "tiny-qwen2vl", messages }),
    });
    assert.equal((await r.json()).count, ref.seq_len);
    // A video file is a 400 that says what to send.
    await assert.rejects(
      s.client.chat.completions.create({
        model: "tiny-qwen2vl",
        messages: [{
          role: "user",
          content: [{ type: "video_url", video_url: { url: "https://example.com/a.mp4" } }],
        }] as unknown as OpenAI.Chat.ChatCompletionMessageParam[],
      }),
      (e) =>
        e instanceof OpenAI.BadRequestError && e.code === "unsupported_video" &&
        /send the video as its frames/.test(e.message),
    );
  } finally {
    engine.dispose();
  }
});
