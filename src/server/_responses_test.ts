import assert from "node:assert/strict";
import { decodeImage } from "../image.ts";
import { createApp } from "./app.ts";
import { FakeEngine, type FakeEngineOptions } from "./_fake_engine.ts";
import { chatBodyOfResponses, responsesError } from "./_responses.ts";
import { badRequest, type HttpError } from "./_errors.ts";
import { ContextLengthError } from "../errors.ts";

const PNG = await Deno.readFile(
  new URL("../../tests/fixtures/tiny-qwen2vl/reference/case0_0.png", import.meta.url),
);
const PNG_URL = `data:image/png;base64,${PNG.toBase64()}`;
const MODEL = "fake/qvq-test";

function setup(engine: FakeEngineOptions = {}) {
  const fake = new FakeEngine(engine);
  return { fake, app: createApp(fake) };
}

async function respond(app: ReturnType<typeof createApp>, body: unknown): Promise<Response> {
  return await app.request("/v1/responses", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** A stream's events: each SSE event's name and its JSON data. */
async function events(response: Response): Promise<{ name: string; data: Record<string, any> }[]> {
  const text = await response.text();
  return text.split("\n\n").filter((b) => b.startsWith("event: ")).map((b) => {
    const [head, data] = b.split("\n");
    return { name: head.slice("event: ".length), data: JSON.parse(data.slice("data: ".length)) };
  });
}

const WEATHER = {
  type: "function",
  name: "get_weather",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

Deno.test("POST /v1/responses answers a string input as a response object", async () => {
  const { app, fake } = setup();
  const r = await respond(app, {
    model: MODEL,
    input: "Hello there",
    instructions: "Be brief.",
    max_output_tokens: 50,
    temperature: 0.5,
    metadata: { run: "7" },
  });
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.match(body.id, /^resp_[0-9a-f]{32}$/);
  assert.equal(body.object, "response");
  assert.equal(body.status, "completed");
  assert.equal(body.model, MODEL);
  assert.deepEqual(body.output, [{
    type: "message",
    id: `msg_${body.id.slice(5)}`,
    status: "completed",
    role: "assistant",
    content: [{
      type: "output_text",
      text: "I see 0 images. You said: Hello there",
      annotations: [],
      logprobs: [],
    }],
  }]);
  assert.deepEqual(
    [body.instructions, body.max_output_tokens, body.temperature, body.metadata, body.store],
    ["Be brief.", 50, 0.5, { run: "7" }, true], // kept: store defaults to true
  );
  assert.deepEqual(body.usage, {
    input_tokens: 10,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 8,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: 18,
  });
  // What reached the engine: the instructions as the system message, the options mapped.
  const { messages, options } = fake.calls[0];
  assert.deepEqual(messages, [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hello there" },
  ]);
  assert.equal(options.maxNewTokens, 50);
  assert.equal(options.temperature, 0.5);
});

Deno.test("POST /v1/responses takes message items with text and image parts, developer as system", async () => {
  const { app, fake } = setup();
  const r = await respond(app, {
    input: [
      { role: "developer", content: "Look closely." },
      {
        type: "message",
        role: "user",
        content: [
          { type: "input_image", image_url: PNG_URL, detail: "auto" },
          { type: "input_text", text: "What is it?" },
        ],
      },
      { role: "assistant", content: [{ type: "output_text", text: "A square." }] },
      { role: "user", content: "Sure?" },
    ],
  });
  assert.equal(r.status, 200);
  const { messages } = fake.calls[0];
  assert.deepEqual(messages.map((m) => m.role), ["system", "user", "assistant", "user"]);
  assert.equal(messages[0].content, "Look closely.");
  const parts = messages[1].content as { type: string; image?: unknown }[];
  assert.deepEqual(parts.map((p) => p.type), ["image", "text"]);
  assert.deepEqual(parts[0].image, await decodeImage(PNG));
  assert.equal(messages[2].content, "A square.");
  assert.equal((await r.json()).output[0].content[0].text, "I see 1 image. You said: Sure?");
});

Deno.test("POST /v1/responses stream: typed events in order, the text deltas adding up, then response.completed", async () => {
  const { app } = setup({ tokenDelayMs: 1 });
  const r = await respond(app, { input: "Hi", stream: true });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type")!, /^text\/event-stream/);
  const evs = await events(r);
  // Each event is named by its type, numbered in order.
  evs.forEach((e, i) => {
    assert.equal(e.name, e.data.type);
    assert.equal(e.data.sequence_number, i);
  });
  const names = evs.map((e) => e.name);
  assert.deepEqual(names.slice(0, 4), [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
  ]);
  assert.deepEqual(names.slice(-4), [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
  ]);
  assert.equal(evs[0].data.response.status, "in_progress");
  const deltas = evs.filter((e) => e.name === "response.output_text.delta");
  assert.ok(deltas.length > 1);
  const text = deltas.map((e) => e.data.delta).join("");
  assert.equal(text, "I see 0 images. You said: Hi");
  const done = evs.at(-1)!.data.response;
  assert.equal(done.status, "completed");
  assert.equal(done.output[0].content[0].text, text);
  assert.equal(evs.at(-4)!.data.text, text);
  assert.equal(done.usage.output_tokens, 7);
});

Deno.test("POST /v1/responses at max_output_tokens is incomplete, streamed or not", async () => {
  const { app } = setup();
  const body = await (await respond(app, { input: "Hello there", max_output_tokens: 3 })).json();
  assert.equal(body.status, "incomplete");
  assert.deepEqual(body.incomplete_details, { reason: "max_output_tokens" });
  assert.equal(body.output[0].status, "incomplete");
  assert.equal(body.output[0].content[0].text, "I see 0");
  const evs = await events(await respond(app, { input: "Hi", max_output_tokens: 3, stream: true }));
  assert.equal(evs.at(-1)!.name, "response.incomplete");
  assert.equal(evs.at(-1)!.data.response.status, "incomplete");
});

Deno.test("POST /v1/responses tools: calls come back as function_call items; their outputs continue the turn", async () => {
  const answer =
    'Let me check.\n✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}\n✿RESULT✿: made up';
  const { app } = setup({ answer: () => answer });
  const body = await (await respond(app, { input: "Weather in Paris?", tools: [WEATHER] })).json();
  assert.equal(body.status, "completed");
  assert.deepEqual(body.output.map((o: { type: string }) => o.type), ["message", "function_call"]);
  assert.equal(body.output[0].content[0].text, "Let me check.");
  const call = body.output[1];
  assert.deepEqual(
    [call.name, call.arguments, call.status],
    ["get_weather", '{"city": "Paris"}', "completed"],
  );
  assert.match(call.call_id, /^call_\w{24}$/);
  assert.match(call.id, /^fc_/);
  assert.deepEqual(body.tools, [WEATHER]);
  // Streamed: the text as deltas, the call as an item with its arguments.
  const evs = await events(
    await respond(setup({ answer: () => answer }).app, {
      input: "Weather in Paris?",
      tools: [WEATHER],
      stream: true,
    }),
  );
  const text = evs.filter((e) => e.name === "response.output_text.delta").map((e) => e.data.delta);
  assert.equal(text.join(""), "Let me check.");
  const args = evs.find((e) => e.name === "response.function_call_arguments.done")!.data;
  assert.deepEqual([args.name, args.arguments, args.output_index], [
    "get_weather",
    '{"city": "Paris"}',
    1,
  ]);
  assert.equal(evs.at(-1)!.data.response.output[1].type, "function_call");
  // The client sends the call and its output back: the turn goes on after ✿RETURN✿.
  const next = setup({ answer: () => ": It is 12 C." });
  const follow = await (await respond(next.app, {
    tools: [WEATHER],
    input: [
      { role: "user", content: "Weather in Paris?" },
      ...body.output,
      { type: "function_call_output", call_id: call.call_id, output: "12 C" },
    ],
  })).json();
  assert.equal(follow.output[0].content[0].text, "It is 12 C.");
  assert.equal(
    next.fake.calls[0].messages.at(-1)!.content,
    'Let me check.\n✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}\n✿RESULT✿: 12 C\n✿RETURN✿',
  );
});

Deno.test("POST /v1/responses: a named function's call as its only output, text.format and logprobs mapped", async () => {
  const { app, fake } = setup({ answer: () => '{"city": "Oslo"}' });
  const body = await (await respond(app, {
    input: "Weather in Oslo?",
    tools: [WEATHER],
    tool_choice: { type: "function", name: "get_weather" },
  })).json();
  assert.deepEqual(body.output.map((o: { type: string }) => o.type), ["function_call"]);
  assert.equal(body.output[0].arguments, '{"city": "Oslo"}');
  assert.deepEqual(body.tool_choice, { type: "function", name: "get_weather" });
  const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };
  await respond(app, {
    input: "x",
    text: { format: { type: "json_schema", name: "thing", schema, strict: true } },
    include: ["message.output_text.logprobs"],
    top_logprobs: 2,
  });
  const o = fake.calls[1].options;
  assert.deepEqual(o.responseFormat, { jsonSchema: schema });
  assert.deepEqual([o.logprobs, o.topLogprobs], [true, 2]);
});

Deno.test("POST /v1/responses refuses what it cannot serve, naming the field", async () => {
  const { app, fake } = setup();
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{}, "input", /input is required/],
    [{ input: 5 }, "input", /must be a string, or an array/],
    [
      { input: "x", previous_response_id: "resp_1" },
      "previous_response_id",
      /^Previous response with id 'resp_1' not found: .*send the whole conversation as `input`/,
    ],
    [{ input: "x", previous_response_id: 7 }, "previous_response_id", /must be a string/],
    [{ input: "x", store: "yes" }, "store", /^store must be true or false; got "yes"\.$/],
    [{ input: "x", conversation: "conv_1" }, "conversation", /keeps no conversations/],
    [{ input: "x", background: true }, "background", /not supported/],
    [{ input: "x", messages: [] }, "messages", /takes input/],
    [{ input: "x", max_tokens: 5 }, "max_tokens", /takes max_output_tokens/],
    [{ input: "x", n: 2 }, "n", /chat completions field/],
    [{ input: "x", max_output_tokens: 0 }, "max_output_tokens", /^max_output_tokens must be/],
    [{ input: "x", tools: [{ type: "web_search" }] }, "tools[0].type", /hosted tools/],
    [{ input: [{ type: "reasoning", summary: [] }] }, "input[0].type", /"reasoning" is not/],
    [
      { input: [{ type: "item_reference", id: "x" }] },
      "input[0].id",
      /^input\[0\]: item with id 'x' not found: .*send the whole conversation/,
    ],
    [
      { input: [{ role: "user", content: [{ type: "input_image", file_id: "f" }] }] },
      "input[0].content[0].image_url",
      /no files API/,
    ],
    [
      { input: [{ role: "user", content: [{ type: "input_file", file_data: "x" }] }] },
      "input[0].content[0].type",
      /"input_file" is not supported/,
    ],
    [{ input: "x", text: { format: { type: "yaml" } } }, "text.format.type", /json_schema/],
    [
      { input: "x", text: { format: { type: "json_schema", name: "a" } } },
      "text.format.schema",
      /needs "schema"/,
    ],
    [
      { input: "x", tools: [WEATHER], tool_choice: { type: "file_search" } },
      "tool_choice",
      /tool_choice must be/,
    ],
    [
      { input: "x", tool_choice: { type: "function", name: "f" } },
      "tool_choice",
      /^tool_choice \{"type":"function","name":"f"\} needs tools/,
    ],
    // Fields inside input items are named as the items are, by their index.
    [
      {
        instructions: "Be brief.",
        input: [
          { role: "user", content: "a" },
          { type: "function_call", call_id: "c1", name: "f", arguments: "{}" },
          { type: "function_call", call_id: "c2", name: "f", arguments: "{}" },
          {
            role: "user",
            content: [{ type: "input_image", image_url: "data:image/png;base64,AAAA" }],
          },
        ],
      },
      "input[3].content[0].image_url",
      /^input\[3\]\.content\[0\]\.image_url/,
    ],
  ];
  for (const [body, param, message] of cases) {
    const r = await respond(app, body);
    assert.equal(r.status, 400, JSON.stringify(body));
    const { error } = await r.json();
    assert.equal(error.param, param, JSON.stringify(body));
    assert.match(error.message, message, JSON.stringify(body));
  }
  assert.equal(fake.calls.length, 0);
});

Deno.test("chatBodyOfResponses() puts consecutive function calls in one assistant turn", () => {
  const { chat } = chatBodyOfResponses({
    input: [
      { role: "user", content: "Paris and Rome?" },
      { type: "function_call", call_id: "a", name: "f", arguments: "{}" },
      { type: "function_call", call_id: "b", name: "f", arguments: "{}" },
      { type: "function_call_output", call_id: "a", output: "1" },
      { type: "function_call_output", call_id: "b", output: [{ type: "input_text", text: "2" }] },
    ],
  });
  assert.deepEqual(chat.messages, [
    { role: "user", content: "Paris and Rome?" },
    {
      role: "assistant",
      content: null,
      tool_calls: [
        { id: "a", type: "function", function: { name: "f", arguments: "{}" } },
        { id: "b", type: "function", function: { name: "f", arguments: "{}" } },
      ],
    },
    { role: "tool", tool_call_id: "a", content: "1" },
    { role: "tool", tool_call_id: "b", content: "2" },
  ]);
});

Deno.test("POST /v1/responses stream: a call with logprobs opens no message item; its tokens' logprobs go with the text", async () => {
  const { app } = setup({ answer: () => '{"city": "Oslo"}' });
  const evs = await events(
    await respond(app, {
      input: "Weather in Oslo?",
      tools: [WEATHER],
      tool_choice: { type: "function", name: "get_weather" },
      include: ["message.output_text.logprobs"],
      stream: true,
    }),
  );
  const added = evs.filter((e) => e.name === "response.output_item.added");
  assert.deepEqual(added.map((e) => [e.data.output_index, e.data.item.type]), [[
    0,
    "function_call",
  ]]);
  assert.equal(evs.filter((e) => e.name === "response.output_text.delta").length, 0);
  assert.deepEqual(evs.at(-1)!.data.response.output.map((o: { type: string }) => o.type), [
    "function_call",
  ]);
  // Text with logprobs: each token's entry, once, on the deltas and the done event.
  const plain = await events(
    await respond(setup().app, {
      input: "Hi",
      include: ["message.output_text.logprobs"],
      stream: true,
    }),
  );
  const deltas = plain.filter((e) => e.name === "response.output_text.delta");
  const tokens = deltas.flatMap((e) => e.data.logprobs.map((l: { token: string }) => l.token));
  assert.equal(tokens.join(""), "I see 0 images. You said: Hi");
  const done = plain.find((e) => e.name === "response.output_text.done")!.data;
  assert.deepEqual(done.logprobs.map((l: { token: string }) => l.token), tokens);
});

Deno.test("responsesError: the context's refusal names max_output_tokens, not the chat fields", () => {
  const error = badRequest(
    "messages",
    "max_tokens 8192 does not fit: the prompt has 30002 tokens and the model's context holds " +
      "32768; ask for at most 2766 new tokens (max_tokens), or shorten the prompt",
    "context_length_exceeded",
  );
  const renamed = responsesError(error, [[0]]) as HttpError;
  assert.equal(renamed.param, "input");
  assert.equal(renamed.code, "context_length_exceeded");
  assert.equal(
    renamed.message,
    "max_output_tokens 8192 does not fit: the prompt has 30002 tokens and the model's context " +
      "holds 32768; ask for at most 2766 new tokens (max_output_tokens), or shorten the prompt",
  );
});

Deno.test("POST /v1/responses: a function_call_output answering no call is a 400 naming its call_id", async () => {
  const app = createApp(new FakeEngine());
  const response = await respond(app, {
    tools: [WEATHER],
    input: [
      { role: "user", content: "Weather in Paris?" },
      { type: "function_call", call_id: "c1", name: "get_weather", arguments: "{}" },
      { type: "function_call_output", call_id: "zz", output: "sunny" },
    ],
  });
  assert.equal(response.status, 400);
  const { error } = await response.json();
  assert.equal(error.param, "input[2].call_id");
  assert.match(error.message, /^input\[2\]\.call_id "zz" answers none of the calls/);
});

Deno.test("POST /v1/responses cut short in its second call: only that call is incomplete", async () => {
  const call = (city: string) => `✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "${city}"}`;
  const app = createApp(
    new FakeEngine({
      answer: () => `Checking.\n${call("Paris")}\n${call("Ro")}`,
      finishReason: "length",
    }),
  );
  const body = await (await respond(app, { input: "Weather?", tools: [WEATHER] })).json();
  assert.equal(body.status, "incomplete");
  assert.deepEqual(
    body.output.map((o: { type: string; status: string }) => [o.type, o.status]),
    [["message", "completed"], ["function_call", "completed"], ["function_call", "incomplete"]],
  );
});

Deno.test("POST /v1/responses: the Vercel AI SDK's second turn (its earlier answer as an item_reference) reaches the engine as the whole conversation", async () => {
  // The bodies @ai-sdk/openai 2.0.131 sent (ai 5.0.277, openai("fake/qvq-test"), two-turn
  // generateText): its store option defaults to true, so the answer it got goes back by id.
  const { app, fake } = setup();
  const first = await respond(app, {
    model: MODEL,
    input: [{ role: "user", content: [{ type: "input_text", text: "Hello there" }] }],
  });
  assert.equal(first.status, 200);
  const answer = await first.json();
  assert.equal(answer.store, true);
  const second = await respond(app, {
    model: MODEL,
    input: [
      { role: "user", content: [{ type: "input_text", text: "Hello there" }] },
      { type: "item_reference", id: answer.output[0].id },
      { role: "user", content: [{ type: "input_text", text: "And again" }] },
    ],
  });
  assert.equal(second.status, 200);
  assert.equal(
    (await second.json()).output[0].content[0].text,
    "I see 0 images. You said: And again",
  );
  assert.deepEqual(fake.calls[1].messages, [
    { role: "user", content: [{ type: "text", text: "Hello there" }] },
    { role: "assistant", content: "I see 0 images. You said: Hello there" },
    { role: "user", content: [{ type: "text", text: "And again" }] },
  ]);
  // Its tool loop: the call goes back by id, its output after it.
  const tools = setup({
    answer: (messages) =>
      JSON.stringify(messages.at(-1)).includes("✿RESULT✿")
        ? "It is sunny."
        : '✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}',
  });
  const call = await (await respond(tools.app, {
    model: MODEL,
    input: [{ role: "user", content: [{ type: "input_text", text: "Weather in Paris?" }] }],
    tools: [WEATHER],
  })).json();
  assert.equal(call.output[0].type, "function_call");
  const result = await respond(tools.app, {
    model: MODEL,
    input: [
      { role: "user", content: [{ type: "input_text", text: "Weather in Paris?" }] },
      { type: "item_reference", id: call.output[0].id },
      { type: "function_call_output", call_id: call.output[0].call_id, output: "sunny" },
    ],
    tools: [WEATHER],
  });
  assert.equal(result.status, 200);
  assert.equal((await result.json()).output[0].content[0].text, "It is sunny.");
});

Deno.test("POST /v1/responses previous_response_id: the stored conversation, then the new input; instructions not carried over", async () => {
  const { app, fake } = setup();
  const one = await (await respond(app, { model: MODEL, input: "One", instructions: "Be brief." }))
    .json();
  const two = await (await respond(app, {
    model: MODEL,
    input: [{ role: "user", content: [{ type: "input_text", text: "Two" }] }],
    previous_response_id: one.id,
  })).json();
  assert.equal(two.status, "completed");
  assert.equal(two.instructions, null);
  // Streamed, with instructions of its own: they come first, the conversation after.
  const streamed = await respond(app, {
    model: MODEL,
    input: "Three",
    previous_response_id: two.id,
    instructions: "Be kind.",
    stream: true,
  });
  const got = await events(streamed);
  assert.equal(got[0].data.response.store, true);
  const three = got.at(-1)!.data.response;
  assert.equal(three.output[0].content[0].text, "I see 0 images. You said: Three");
  const said = (text: string) => `I see 0 images. You said: ${text}`;
  assert.deepEqual(fake.calls.map((c) => c.messages), [
    [{ role: "system", content: "Be brief." }, { role: "user", content: "One" }],
    [
      { role: "user", content: "One" },
      { role: "assistant", content: said("One") },
      { role: "user", content: [{ type: "text", text: "Two" }] },
    ],
    [
      { role: "system", content: "Be kind." },
      { role: "user", content: "One" },
      { role: "assistant", content: said("One") },
      { role: "user", content: [{ type: "text", text: "Two" }] },
      { role: "assistant", content: said("Two") },
      { role: "user", content: "Three" },
    ],
  ]);
  // A streamed response is kept as it was answered: GET gives it back; DELETE forgets it.
  const read = await app.request(`/v1/responses/${three.id}`);
  assert.equal(read.status, 200);
  assert.deepEqual(await read.json(), three);
  const deleted = await app.request(`/v1/responses/${three.id}`, { method: "DELETE" });
  assert.deepEqual(await deleted.json(), { id: three.id, object: "response", deleted: true });
  const gone = await app.request(`/v1/responses/${three.id}`);
  assert.equal(gone.status, 404);
  assert.equal((await gone.json()).error.code, "not_found");
  const again = await app.request(`/v1/responses/${three.id}`, { method: "DELETE" });
  assert.equal(again.status, 404);
  assert.equal((await again.json()).error.code, "not_found");
  const after = await respond(app, { model: MODEL, input: "Four", previous_response_id: three.id });
  assert.equal(after.status, 400);
  assert.equal((await after.json()).error.code, "previous_response_not_found");
  // The responses it followed are still kept.
  assert.equal((await app.request(`/v1/responses/${two.id}`)).status, 200);
});

Deno.test("POST /v1/responses continues a call from previous_response_id with only its output", async () => {
  const { app, fake } = setup({
    answer: (messages) =>
      JSON.stringify(messages.at(-1)).includes("✿RESULT✿")
        ? "It is sunny."
        : '✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}',
  });
  const call = await (await respond(app, { model: MODEL, input: "Weather?", tools: [WEATHER] }))
    .json();
  const r = await respond(app, {
    model: MODEL,
    previous_response_id: call.id,
    input: [{ type: "function_call_output", call_id: call.output[0].call_id, output: "sunny" }],
    tools: [WEATHER],
  });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).output[0].content[0].text, "It is sunny.");
  assert.match(
    fake.calls[1].messages.at(-1)!.content as string,
    /^✿FUNCTION✿: get_weather\n✿ARGS✿: \{"city": "Paris"\}\n✿RESULT✿: sunny\n✿RETURN✿$/,
  );
});

Deno.test("POST /v1/responses store: false keeps nothing; past the store's bounds the oldest is gone, a 400 saying to send the whole conversation", async () => {
  const fake = new FakeEngine();
  const app = createApp(fake, { responseStore: { maxResponses: 2 } });
  const unkept = await (await respond(app, { model: MODEL, input: "x", store: false })).json();
  assert.equal(unkept.store, false);
  assert.equal((await app.request(`/v1/responses/${unkept.id}`)).status, 404);
  const ids: string[] = [];
  for (const input of ["a", "b", "c"]) {
    ids.push((await (await respond(app, { model: MODEL, input })).json()).id);
  }
  for (const [id, status] of [[unkept.id, 400], [ids[0], 400], [ids[1], 200], [ids[2], 200]]) {
    // store: false: a follow-up kept would push the oldest out.
    const r = await respond(app, {
      model: MODEL,
      input: "y",
      previous_response_id: id,
      store: false,
    });
    assert.equal(r.status, status, `${id}`);
    const body = await r.json();
    if (status !== 400) continue;
    assert.deepEqual(
      [body.error.type, body.error.param, body.error.code],
      ["invalid_request_error", "previous_response_id", "previous_response_not_found"],
    );
    assert.match(
      body.error.message,
      /^Previous response with id 'resp_[0-9a-f]+' not found: this server keeps the last 2 responses in memory .*; send the whole conversation as `input` \(and `store: false` where it keeps its own\)\.$/,
    );
  }
  // The evicted answer's item is gone with it.
  const item = `msg_${ids[0].slice(5)}`;
  const r = await respond(app, { model: MODEL, input: [{ type: "item_reference", id: item }] });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.code, "item_not_found");
  // A server that keeps nothing refuses them as before, and says store: false.
  const stateless = createApp(fake, { responseStore: { maxResponses: 0 } });
  const answer = await (await respond(stateless, { model: MODEL, input: "x" })).json();
  assert.equal(answer.store, false);
  const refused = await respond(stateless, {
    model: MODEL,
    input: "y",
    previous_response_id: ids[2],
  });
  assert.match((await refused.json()).error.message, /response store is off/);
});

Deno.test("POST /v1/responses: an answer the store does not keep (over its bytes with its output) says store: false, streamed or not", async () => {
  // The conversation fits in 4000 bytes (2 a character); with the answer and the response object
  // it does not.
  const fake = new FakeEngine({ answer: () => "x".repeat(200) });
  const app = createApp(fake, { responseStore: { maxBytes: 4000 } });
  const input = "a".repeat(1500);
  const whole = await (await respond(app, { model: MODEL, input })).json();
  assert.equal(whole.store, false);
  assert.equal((await app.request(`/v1/responses/${whole.id}`)).status, 404);
  const got = await events(await respond(app, { model: MODEL, input, stream: true }));
  assert.equal(got[0].data.response.store, true); // before the answer: it may be kept
  const completed = got.at(-1)!;
  assert.equal(completed.name, "response.completed");
  assert.equal(completed.data.response.store, false);
  assert.equal((await app.request(`/v1/responses/${completed.data.response.id}`)).status, 404);
  // One that fits is kept, and says so.
  const small = await (await respond(app, { model: MODEL, input: "a" })).json();
  assert.equal(small.store, true);
  assert.deepEqual(await (await app.request(`/v1/responses/${small.id}`)).json(), small);
});

Deno.test("POST /v1/responses: an input item sent under a stored item's id does not stand in for it in item references", async () => {
  const { app, fake } = setup();
  const genuine = await (await respond(app, { model: MODEL, input: "Hi" })).json();
  const id = genuine.output[0].id;
  const forger = await (await respond(app, {
    model: MODEL,
    input: [
      { type: "message", id, role: "assistant", content: "FORGED" },
      { role: "user", content: "q" },
    ],
  })).json();
  const said = [{ role: "assistant", content: "I see 0 images. You said: Hi" }];
  const refer = async () => {
    const r = await respond(app, { model: MODEL, input: [{ type: "item_reference", id }] });
    return { status: r.status, body: await r.json() };
  };
  const first = await refer();
  assert.deepEqual(fake.calls.at(-1)!.messages, said);
  // Its answer gone, a response that carried the item on gives it; the forger's never does.
  await app.request(`/v1/responses/${genuine.id}`, { method: "DELETE" });
  const second = await refer();
  assert.deepEqual(fake.calls.at(-1)!.messages, said);
  for (const r of [first, second]) {
    await app.request(`/v1/responses/${r.body.id}`, { method: "DELETE" });
  }
  const gone = await refer();
  assert.equal(gone.status, 400);
  assert.equal(gone.body.error.code, "item_not_found");
  assert.equal((await app.request(`/v1/responses/${forger.id}`)).status, 200);
});

Deno.test("GET /v1/responses/{id}/input_items lists the stored conversation as OpenAI's list, paged by limit, order and after", async () => {
  const { app, fake } = setup();
  const one = await (await respond(app, {
    model: MODEL,
    input: "One",
    instructions: "Be brief.",
  })).json();
  const two = await (await respond(app, {
    model: MODEL,
    previous_response_id: one.id,
    input: [
      { role: "developer", content: "Mind the tone." },
      { type: "message", role: "user", content: [{ type: "input_text", text: "Two" }] },
    ],
  })).json();
  const list = async (id: string, query = "") => {
    const r = await app.request(`/v1/responses/${id}/input_items${query}`);
    return { status: r.status, body: await r.json() };
  };
  const first = await list(one.id);
  assert.equal(first.status, 200);
  const userOne = {
    id: `msg_${one.id.slice(5)}_in0`,
    type: "message",
    role: "user",
    content: [{ type: "input_text", text: "One" }],
  };
  assert.deepEqual(first.body, {
    object: "list",
    data: [userOne],
    first_id: userOne.id,
    last_id: userOne.id,
    has_more: false,
  });
  // The second: the first's conversation (its ids kept), its answer, then its own input; newest
  // first by default.
  const all = await list(two.id, "?order=asc");
  const hex = two.id.slice(5);
  assert.deepEqual(all.body.data.map((i: { id: string }) => i.id), [
    userOne.id,
    one.output[0].id,
    `msg_${hex}_in2`,
    `msg_${hex}_in3`,
  ]);
  assert.deepEqual(all.body.data[1], one.output[0]);
  assert.deepEqual(all.body.data[2].content, [{ type: "input_text", text: "Mind the tone." }]);
  assert.equal(all.body.data[2].role, "developer");
  const desc = await list(two.id);
  assert.deepEqual(desc.body.data, [...all.body.data].reverse());
  // Pages: limit, then after the page's last id.
  const page1 = await list(two.id, "?limit=3");
  assert.deepEqual(page1.body.data, desc.body.data.slice(0, 3));
  assert.equal(page1.body.has_more, true);
  assert.equal(page1.body.first_id, desc.body.data[0].id);
  const page2 = await list(two.id, `?limit=3&after=${page1.body.last_id}`);
  assert.deepEqual(page2.body.data, desc.body.data.slice(3));
  assert.equal(page2.body.has_more, false);
  const asc2 = await list(two.id, `?order=asc&limit=2&after=${userOne.id}`);
  assert.deepEqual(asc2.body.data, all.body.data.slice(1, 3));
  assert.equal(asc2.body.has_more, true);
  // The stored ids are no prompt text: the conversation reaches the engine as before.
  assert.deepEqual(fake.calls[1].messages, [
    { role: "user", content: "One" },
    { role: "assistant", content: "I see 0 images. You said: One" },
    { role: "system", content: "Mind the tone." },
    { role: "user", content: [{ type: "text", text: "Two" }] },
  ]);
  // An input item may be named by an item reference, as an output item may.
  const ref = await respond(app, {
    model: MODEL,
    input: [{ type: "item_reference", id: userOne.id }],
  });
  assert.equal(ref.status, 200);
  assert.deepEqual(fake.calls.at(-1)!.messages, [{ role: "user", content: "One" }]);
  // Malformed queries are 400s naming the parameter; an unknown response a 404 as GET's.
  for (
    const [query, param] of [
      ["?limit=0", "limit"],
      ["?limit=101", "limit"],
      ["?limit=x", "limit"],
      ["?order=up", "order"],
      ["?after=msg_nope", "after"],
    ]
  ) {
    const r = await list(two.id, query);
    assert.equal(r.status, 400, query);
    assert.equal(r.body.error.param, param, query);
  }
  const missing = await list("resp_nope");
  const got = await app.request("/v1/responses/resp_nope");
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.body, await got.json());
  // A response not stored has none to list.
  const unkept = await (await respond(app, { model: MODEL, input: "x", store: false })).json();
  assert.equal((await list(unkept.id)).status, 404);
});

Deno.test("GET /v1/responses/{id}/input_items needs the API key, as GET /v1/responses/{id} does", async () => {
  const app = createApp(new FakeEngine(), { apiKey: "sk-test" });
  const auth = { authorization: "Bearer sk-test", "content-type": "application/json" };
  const r = await app.request("/v1/responses", {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ model: MODEL, input: "Hi" }),
  });
  const { id } = await r.json();
  const without = await app.request(`/v1/responses/${id}/input_items`);
  assert.equal(without.status, 401);
  const withKey = await app.request(`/v1/responses/${id}/input_items`, { headers: auth });
  assert.equal(withKey.status, 200);
  assert.equal((await withKey.json()).data.length, 1);
});

Deno.test('POST /v1/responses truncation "auto": the oldest items go until the conversation fits, instructions and the last turn kept; "disabled" refuses it', async () => {
  // A context that holds 3 messages besides the system ones.
  const refuse = (messages: { role: string }[]) =>
    messages.filter((m) => m.role !== "system").length > 3
      ? new ContextLengthError("the prompt and its answer exceed the context")
      : undefined;
  const { app, fake } = setup({ refuse });
  const input = [
    { role: "user", content: "u1" },
    { role: "assistant", content: "a1" },
    { role: "developer", content: "Mind the tone." },
    { role: "user", content: "u2" },
    { role: "assistant", content: "a2" },
    { role: "user", content: "u3" },
  ];
  const disabled = await respond(app, { model: MODEL, input, instructions: "Be brief." });
  assert.equal(disabled.status, 400);
  assert.equal((await disabled.json()).error.code, "context_length_exceeded");
  const refused = await respond(app, { model: MODEL, input, truncation: "off" });
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error.param, "truncation");
  for (const stream of [false, true]) {
    const r = await respond(app, {
      model: MODEL,
      input,
      instructions: "Be brief.",
      truncation: "auto",
      stream,
    });
    assert.equal(r.status, 200);
    const body = stream ? (await events(r)).at(-1)!.data.response : await r.json();
    assert.equal(body.status, "completed");
    assert.equal(body.truncation, "auto");
    assert.deepEqual(fake.calls.at(-1)!.messages, [
      { role: "system", content: "Be brief." },
      { role: "system", content: "Mind the tone." },
      { role: "user", content: "u2" },
      { role: "assistant", content: "a2" },
      { role: "user", content: "u3" },
    ]);
    // The response keeps the whole conversation: a later one truncates it again.
    const items = await (await app.request(`/v1/responses/${body.id}/input_items`)).json();
    assert.equal(items.data.length, input.length);
  }
  // One that fits is not cut; the default echoes "disabled".
  const short = await (await respond(app, { model: MODEL, input: "Hi", truncation: "auto" }))
    .json();
  assert.equal(short.truncation, "auto");
  assert.deepEqual(fake.calls.at(-1)!.messages, [{ role: "user", content: "Hi" }]);
  const plain = await (await respond(app, { model: MODEL, input: "Hi" })).json();
  assert.equal(plain.truncation, "disabled");
});

Deno.test("POST /v1/responses takes an assistant's refusal part (an OpenAI answer replayed) as its text", async () => {
  const { app, fake } = setup();
  const r = await respond(app, {
    model: MODEL,
    input: [
      { role: "user", content: "a" },
      {
        type: "message",
        role: "assistant",
        content: [{ type: "refusal", refusal: "I can't help with that." }],
      },
      { role: "user", content: "b" },
    ],
  });
  assert.equal(r.status, 200);
  assert.deepEqual(fake.calls[0].messages[1], {
    role: "assistant",
    content: "I can't help with that.",
  });
  const bad = await respond(app, {
    model: MODEL,
    input: [{ role: "assistant", content: [{ type: "refusal", refusal: 5 }] }],
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.param, "input[0].content[0].refusal");
});
