import assert from "node:assert/strict";
import type { GenerationResult, TokenLogprob } from "../generate/types.ts";
import { badRequest, HttpError } from "./_errors.ts";
import {
  keepAliveSeconds,
  namedModel,
  ollamaChat,
  ollamaChatFormat,
  ollamaError,
  ollamaGenerate,
  ollamaGenerateFormat,
  ollamaName,
  ollamaTemplate,
  showObject,
  type Source,
  withoutOldest,
} from "./_ollama.ts";
import { completionHeader } from "./_openai.ts";
import { QWEN_FUNCTION_MARK } from "./_qwen_tools.ts";

const ID = "Qwen/Qwen2-VL-2B-Instruct";
const PNG64 = "iVBORw0KGgo=";

function result(text: string, over: Partial<GenerationResult> = {}): GenerationResult {
  return {
    finishReason: "stop",
    text,
    usage: { promptTokens: 20, completionTokens: 5, imageTokens: 4, cachedTokens: 3 },
    timings: { visionMs: 1.5, prefillMs: 2, decodeMs: 10, tokensPerSecond: 400 },
    ...over,
  };
}

function lp(token: string, logprob: number): TokenLogprob {
  return { token, id: 1, logprob, bytes: [...new TextEncoder().encode(token)], topLogprobs: [] };
}

Deno.test("ollamaName tags an untagged id :latest; namedModel takes either and refuses others with a 404", () => {
  assert.equal(ollamaName(ID), `${ID}:latest`);
  assert.equal(ollamaName("qvq:72b"), "qvq:72b");
  assert.equal(namedModel({ model: ID }, ID), ID);
  assert.equal(namedModel({ model: `${ID}:latest` }, ID), `${ID}:latest`);
  assert.equal(namedModel({ name: ID }, ID), ID); // the older field
  assert.equal(namedModel({}, ID), undefined);
  assert.throws(() => namedModel({}, ID, true), /model is required/);
  assert.throws(
    () => namedModel({ model: "llama3" }, ID),
    (e) => e instanceof HttpError && e.status === 404 && /"llama3" not found/.test(e.message),
  );
  assert.throws(() => namedModel({ model: 3 }, ID), /model must be a string/);
  assert.throws(() => namedModel([], ID), /JSON object/);
});

Deno.test("ollamaChat translates messages, images, tool calls and options into a chat request", () => {
  const o = ollamaChat({
    model: `${ID}:latest`,
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "What is this?", images: [PNG64, `data:image/png;base64,${PNG64}`] },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ function: { name: "look", arguments: { zoom: 2 } } }],
      },
      { role: "tool", content: "a cat", tool_name: "look" },
    ],
    tools: [{ type: "function", function: { name: "look", parameters: { type: "object" } } }],
    options: {
      temperature: 0.2,
      top_k: 5,
      num_predict: 64,
      stop: ["\n\n"],
      repeat_penalty: 1.1,
      num_ctx: 4096, // llama.cpp's settings: ignored
      num_gpu: 99,
      mirostat: 0,
      typical_p: 1,
    },
    format: "json",
    keep_alive: "5m",
    logprobs: true,
    top_logprobs: 2,
  }, ID);
  assert.equal(o.model, `${ID}:latest`);
  assert.equal(o.stream, true); // Ollama's default
  assert.equal(o.load, false);
  assert.equal(o.raw, false);
  assert.equal(o.toContext, false);
  assert.deepEqual(o.stop, ["\n\n"]); // set on the parsed options: any number of them
  assert.deepEqual(o.sources.map((x) => [x.at, x.text, x.images, x.count]), [
    ["messages[0]", "messages[0].content", "messages[0].images", 0],
    ["messages[1]", "messages[1].content", "messages[1].images", 2],
    ["messages[2]", "messages[2].content", "messages[2].images", 0],
    ["messages[3]", "messages[3].content", "messages[3].images", 0],
  ]);
  assert.deepEqual(o.body, {
    messages: [
      { role: "system", content: "Be brief." },
      {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: `data:;base64,${PNG64}` } },
          { type: "image_url", image_url: { url: `data:image/png;base64,${PNG64}` } },
          { type: "text", text: "What is this?" },
        ],
      },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ type: "function", function: { name: "look", arguments: '{"zoom":2}' } }],
      },
      { role: "tool", content: "a cat" },
    ],
    tools: [{ type: "function", function: { name: "look", parameters: { type: "object" } } }],
    temperature: 0.2,
    top_k: 5,
    max_tokens: 64,
    repetition_penalty: 1.1,
    response_format: { type: "json_object" },
    logprobs: true,
    top_logprobs: 2,
    stream: true,
  });
});

Deno.test("ollamaChat: no messages is a load; an assistant's last message is continued; a schema format; stream false", () => {
  const load = ollamaChat({}, ID);
  assert.equal(load.load, true);
  assert.equal(load.model, `${ID}:latest`); // named as /api/tags lists it
  assert.equal(ollamaChat({ model: ID }, ID).model, ID); // as the request named it

  const o = ollamaChat({
    messages: [{ role: "user", content: "Count" }, { role: "assistant", content: "1, 2," }],
    format: { type: "object", properties: { n: { type: "integer" } } },
    options: { num_predict: -1 },
    stream: false,
  }, ID);
  assert.equal(o.stream, false);
  assert.equal(o.toContext, true);
  assert.equal(o.body.max_tokens, undefined);
  assert.equal(o.body.continue_final_message, true);
  assert.equal(o.body.add_generation_prompt, false);
  assert.deepEqual(o.body.response_format, {
    type: "json_schema",
    json_schema: {
      name: "format",
      schema: { type: "object", properties: { n: { type: "integer" } } },
    },
  }); // An answer begun with images alone goes on after them: its text, empty, is what continues.
  const drawn = ollamaChat({
    messages: [{ role: "user", content: "Draw" }, { role: "assistant", images: ["AAAA"] }],
  }, ID);
  assert.deepEqual((drawn.body.messages as { content: unknown }[])[1].content, [
    { type: "image_url", image_url: { url: "data:;base64,AAAA" } },
    { type: "text", text: "" },
  ]);
});

Deno.test("ollamaChat refuses what it cannot translate, naming the Ollama field", () => {
  const bad: [unknown, RegExp][] = [
    [{ messages: {} }, /^messages must be an array/],
    [{ messages: [{ role: "user", content: 3 }] }, /^messages\[0\]\.content must be a string/],
    [
      { messages: [{ role: "user", content: "x", images: "abc" }] },
      /^messages\[0\]\.images must be/,
    ],
    [
      { messages: [{ role: "assistant", content: "", tool_calls: [{ name: "f" }] }] },
      /tool_calls\[0\] must be/,
    ],
    [{ messages: [], options: [] }, /^options must be an object/],
    [{ messages: [], options: { num_predict: -3 } }, /^options\.num_predict must be a positive/],
    [{ messages: [], format: "xml" }, /^format must be "json" or a JSON schema/],
    [{ messages: [], think: true }, /^think: this model writes its reasoning in the answer/],
    [{ messages: [], stream: "yes" }, /^stream must be true or false/],
  ];
  for (const [json, message] of bad) {
    assert.throws(
      () => ollamaChat(json, ID),
      (e) => e instanceof HttpError && e.status === 400 && message.test(e.message),
      JSON.stringify(json),
    );
  }
  // think: false is no request for thinking.
  assert.equal(ollamaChat({ messages: [], think: false }, ID).load, true);
});

Deno.test("ollamaGenerate: system and prompt as a chat, raw as a completion, the rest refused", () => {
  const o = ollamaGenerate({
    model: ID,
    prompt: "Describe",
    system: "Be brief.",
    images: [PNG64],
    options: { seed: 7 },
    stream: false,
  }, ID);
  assert.deepEqual(o.body, {
    messages: [
      { role: "system", content: "Be brief." },
      {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: `data:;base64,${PNG64}` } },
          { type: "text", text: "Describe" },
        ],
      },
    ],
    seed: 7,
    stream: false,
  });
  assert.deepEqual(o.sources, [
    { at: "system", text: "system", images: "images", count: 0 },
    { at: "prompt", text: "prompt", images: "images", count: 1 },
  ]);
  assert.equal(o.raw, false);

  const raw = ollamaGenerate({ prompt: "<|im_start|>user\nHi", raw: true }, ID);
  assert.deepEqual(raw.body, { prompt: "<|im_start|>user\nHi", stream: true });
  assert.equal(raw.raw, true);
  assert.equal(raw.toContext, true);

  assert.equal(ollamaGenerate({ model: ID }, ID).load, true);
  assert.equal(ollamaGenerate({ prompt: "", context: [] }, ID).load, true); // an empty context is none
  for (
    const [json, message] of [
      [{ prompt: "x", suffix: "y" }, /suffix is not supported/],
      [{ prompt: "x", template: "{{ .Prompt }}" }, /template is not supported/],
      [{ prompt: "x", context: [1, 2] }, /context is not supported: send the conversation/],
      [{ prompt: "x", raw: true, images: [PNG64] }, /images need the chat template/],
      [{ prompt: 5 }, /prompt must be a string/],
    ] as [unknown, RegExp][]
  ) {
    assert.throws(() => ollamaGenerate(json, ID), message, JSON.stringify(json));
  }
});

Deno.test("ollamaError renames the chat request's fields as the Ollama request's", () => {
  const renamed = (e: HttpError, sources: Source[] = []) => {
    const r = ollamaError(e, sources) as HttpError;
    return [r.param, r.message];
  };
  assert.deepEqual(
    renamed(badRequest("max_tokens", "max_tokens must be >= 1 and <= 8192; got 0.")),
    ["options.num_predict", "options.num_predict must be >= 1 and <= 8192; got 0."],
  );
  assert.deepEqual(
    renamed(badRequest("repetition_penalty", "repetition_penalty must be > 0.")),
    ["options.repeat_penalty", "options.repeat_penalty must be > 0."],
  );
  assert.deepEqual(
    renamed(badRequest("response_format.json_schema.schema", "response_format: bad.")),
    ["format", "format: bad."],
  );
  // A message's image part is its images[j]; its text part is its content.
  // As the request sent them: after a truncation, message 1 is the request's messages[4].
  const message = (i: number, count: number): Source => ({
    at: `messages[${i}]`,
    text: `messages[${i}].content`,
    images: `messages[${i}].images`,
    count,
  });
  const sources = [message(0, 0), message(4, 2)];
  assert.deepEqual(
    renamed(
      badRequest("messages[1].content[1].image_url.url", "messages[1].content[1]: bad."),
      sources,
    ),
    ["messages[4].images[1]", "messages[4].images[1]: bad."],
  );
  assert.deepEqual(
    renamed(badRequest("messages[1].content[2]", "messages[1].content[2]: no."), sources),
    ["messages[4].content", "messages[4].content: no."],
  );
  // /api/generate's messages are its system, prompt and images.
  const generate: Source[] = [
    { at: "system", text: "system", images: "images", count: 0 },
    { at: "prompt", text: "prompt", images: "images", count: 1 },
  ];
  assert.deepEqual(
    renamed(
      badRequest("messages[1].content[0].image_url.url", "messages[1].content[0]: bad."),
      generate,
    ),
    ["images[0]", "images[0]: bad."],
  );
  assert.deepEqual(renamed(badRequest("messages[0].content", "x"), generate), ["system", "x"]);
  // Only a leading field is renamed: a schema's own property names further on stay.
  assert.deepEqual(
    renamed(
      badRequest(
        "response_format",
        'response_format: schema.properties.temperature: "multipleOf" is not supported',
      ),
    ),
    ["format", 'format: schema.properties.temperature: "multipleOf" is not supported'],
  );
  assert.deepEqual(
    renamed(badRequest("stop", "stop takes at most 4 strings; each stop string is matched")),
    ["options.stop", "options.stop takes at most 4 strings; each stop string is matched"],
  );
  // The context's refusal: its length field, leading and in its advice.
  assert.deepEqual(
    renamed(
      badRequest(
        "messages",
        "max_tokens 8192 does not fit: ask for at most 2 new tokens (max_tokens), or shorten it",
      ),
    ),
    [
      "messages",
      "options.num_predict 8192 does not fit: ask for at most 2 new tokens (options.num_predict), " +
      "or shorten it",
    ],
  );
  // Not a 400: as it is.
  const e = new HttpError(503, "busy");
  assert.equal(ollamaError(e), e);
});

Deno.test("ollamaChatFormat answers as Ollama: text chunks, then done with the counts in nanoseconds", () => {
  const format = ollamaChatFormat("m:latest", undefined, []);
  assert.equal(format.ndjson, true);
  const header = completionHeader("m");
  const chunks = format.chunks(header, { include: false }, 0);
  assert.equal(chunks.open(), undefined);
  const one = chunks.delta({ type: "delta", text: "Hi" }) as Record<string, unknown>;
  assert.match(String(one.created_at), /^\d{4}-\d\d-\d\dT/);
  assert.deepEqual(
    { ...one, created_at: 0 },
    {
      model: "m:latest",
      created_at: 0,
      message: { role: "assistant", content: "Hi" },
      done: false,
    },
  );
  assert.equal(chunks.delta({ type: "delta", text: "" }), undefined);
  const last = chunks.finish(result("Hi", { finishReason: "length" })) as Record<string, unknown>;
  assert.ok(typeof last.total_duration === "number" && last.total_duration >= 0);
  assert.deepEqual({ ...last, created_at: 0, total_duration: 0 }, {
    model: "m:latest",
    created_at: 0,
    message: { role: "assistant", content: "" },
    done: true,
    done_reason: "length",
    total_duration: 0,
    load_duration: 0,
    prompt_eval_count: 20,
    prompt_eval_duration: 3_500_000,
    eval_count: 5,
    eval_duration: 10_000_000,
  });
  const whole = format.whole(header, [result("Hello")]) as Record<string, unknown>;
  assert.deepEqual(whole.message, { role: "assistant", content: "Hello" });
  assert.equal(whole.done_reason, "stop");
  assert.deepEqual(format.streamError?.(badRequest(null, "no")), { error: "no" });
});

Deno.test("ollamaChatFormat: tool calls with object arguments at the end; unparseable ones stay text", () => {
  const mode = { kind: "auto" as const, parallel: true, continued: false };
  const format = ollamaChatFormat("m", mode, []);
  const text = `Let me look.\n${QWEN_FUNCTION_MARK}: look\n✿ARGS✿: {"zoom": 2}`;
  const whole = format.whole(completionHeader("m"), [result(text)]) as Record<string, unknown>;
  const message = whole.message as { tool_calls: { id: string }[] };
  assert.match(message.tool_calls[0].id, /^call_[0-9a-f]{24}$/);
  assert.deepEqual(message, {
    role: "assistant",
    content: "Let me look.",
    tool_calls: [{
      id: message.tool_calls[0].id,
      function: { index: 0, name: "look", arguments: { zoom: 2 } },
    }],
  });
  // Two calls: each its own index (Open WebUI merges calls that share one).
  const two = format.whole(completionHeader("m"), [result(`${text}\n${text.slice(13)}`)]) as {
    message: { tool_calls: { function: { index: number } }[] };
  };
  assert.deepEqual(two.message.tool_calls.map((c) => c.function.index), [0, 1]);
  const chunks = format.chunks(completionHeader("m"), { include: false }, 0);
  const shown = (chunks.delta({ type: "delta", text }) as { message: { content: string } })
    .message.content;
  const last = chunks.finish(result(text)) as { message: Record<string, unknown> };
  assert.equal(shown + last.message.content, "Let me look.");
  const calls = last.message.tool_calls as { id: string; function: unknown }[];
  assert.deepEqual(calls.map((c) => c.function), [{
    index: 0,
    name: "look",
    arguments: { zoom: 2 },
  }]);

  // The answer's own words, the newline before the call kept; streamed, the same text in all.
  const broken = `Hm.\n${QWEN_FUNCTION_MARK}: look\n✿ARGS✿: zoom twice`;
  const b = format.whole(completionHeader("m"), [result(broken)]) as Record<string, unknown>;
  assert.deepEqual(b.message, { role: "assistant", content: broken });
  const s = format.chunks(completionHeader("m"), { include: false }, 0);
  const sent = (s.delta({ type: "delta", text: broken }) as { message: { content: string } })
    .message.content;
  const end = s.finish(result(broken)) as { message: Record<string, unknown> };
  assert.equal(sent + end.message.content, broken);
  assert.equal(end.message.tool_calls, undefined);

  // Cut at num_predict after a call's name, before its arguments: text, not a call of {}; a call
  // with no arguments that ended (its ✿RESULT✿) is one.
  const named = `Hm.\n${QWEN_FUNCTION_MARK}: look`;
  const cut = format.whole(completionHeader("m"), [result(named, { finishReason: "length" })]);
  assert.deepEqual((cut as Record<string, unknown>).message, { role: "assistant", content: named });
  const ended = format.whole(completionHeader("m"), [result(named)]) as {
    message: { tool_calls: { function: unknown }[] };
  };
  assert.deepEqual(ended.message.tool_calls.map((c) => c.function), [{
    index: 0,
    name: "look",
    arguments: {},
  }]);
});

Deno.test("ollama formats carry logprobs with the text they belong to", () => {
  const format = ollamaGenerateFormat("m", []);
  const chunks = format.chunks(completionHeader("m"), { include: false }, 0);
  // A token held back (no text yet) gives its logprobs to the next text.
  assert.equal(chunks.delta({ type: "delta", text: "", logprobs: [lp("a", -0.5)] }), undefined);
  const next = chunks.delta({ type: "delta", text: "ab", logprobs: [lp("b", -0.25)] }) as Record<
    string,
    unknown
  >;
  assert.equal(next.response, "ab");
  assert.deepEqual(next.logprobs, [
    { token: "a", logprob: -0.5, bytes: [97], top_logprobs: [] },
    { token: "b", logprob: -0.25, bytes: [98], top_logprobs: [] },
  ]);
  const whole = format.whole(completionHeader("m"), [result("ab", { logprobs: [lp("a", -1)] })]);
  assert.deepEqual((whole as { logprobs: unknown }).logprobs, [
    { token: "a", logprob: -1, bytes: [97], top_logprobs: [] },
  ]);
  // Without logprobs asked: no field.
  const plain = ollamaGenerateFormat("m", []).whole(completionHeader("m"), [result("x")]);
  assert.equal("logprobs" in plain, false);
});

Deno.test("ollama requests: roles in any case, logprobs as the route takes them, raw without a system prompt", () => {
  const o = ollamaChat({
    messages: [{ role: "User", content: "Hi" }, { role: "ASSISTANT", content: "Hel" }],
    top_logprobs: 3, // without logprobs: ignored, as Ollama ignores it
  }, ID);
  assert.deepEqual(o.body.messages, [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hel" },
  ]);
  assert.equal(o.body.continue_final_message, true);
  assert.equal("top_logprobs" in o.body || "logprobs" in o.body, false);
  const chat = ollamaChat({ messages: [], logprobs: true, top_logprobs: 2 }, ID);
  assert.deepEqual([chat.body.logprobs, chat.body.top_logprobs], [true, 2]);
  // /v1/completions (raw) takes the count of alternatives as its logprobs; false sends none.
  assert.equal(ollamaGenerate({ prompt: "a", raw: true, logprobs: true }, ID).body.logprobs, 0);
  assert.equal(
    ollamaGenerate({ prompt: "a", raw: true, logprobs: true, top_logprobs: 4 }, ID).body.logprobs,
    4,
  );
  assert.equal(
    "logprobs" in ollamaGenerate({ prompt: "a", raw: true, logprobs: false }, ID).body,
    false,
  );
  assert.throws(
    () => ollamaChat({ messages: [], logprobs: "yes" }, ID),
    /logprobs must be true or false/,
  );
  assert.throws(
    () => ollamaGenerate({ prompt: "a", raw: true, system: "Be brief." }, ID),
    /raw mode takes no system prompt/,
  );
});

Deno.test("withoutOldest() drops the oldest turns, never a system message or the last one, nor leaves a result without its call", () => {
  const m = (role: string, content: string) => ({ role, content });
  const body = {
    messages: [
      m("system", "S"),
      m("user", "u1"),
      m("assistant", "a1"),
      m("tool", "t1"),
      m("user", "u2"),
      m("assistant", "a2"),
      m("user", "u3"),
    ],
    stream: true,
  };
  const texts = (drop: number) =>
    (withoutOldest(body, drop)?.body.messages as { content: string }[] | undefined)?.map((x) =>
      x.content
    );
  assert.deepEqual(texts(0), ["S", "u1", "a1", "t1", "u2", "a2", "u3"]);
  assert.deepEqual(texts(1), ["S", "a1", "t1", "u2", "a2", "u3"]);
  assert.deepEqual(texts(2), ["S", "u2", "a2", "u3"]); // t1's call went with a1
  assert.deepEqual(texts(5), ["S", "u3"]);
  assert.equal(texts(6), undefined); // five to drop at most
  assert.equal(withoutOldest(body, 1)?.body.stream, true);
  assert.deepEqual(withoutOldest(body, 2)?.kept, [0, 4, 5, 6]); // the messages kept, by index
});

Deno.test("keepAliveSeconds() reads keep_alive as Ollama does: seconds, a Go duration, negative for ever; a malformed one is a 400", () => {
  const read = (keep_alive: unknown) => keepAliveSeconds({ keep_alive });
  assert.equal(read(undefined), undefined);
  assert.equal(read(null), undefined);
  for (
    const [given, seconds] of [
      [0, 0],
      ["0", 0],
      ["0s", 0],
      [300, 300],
      ["300", 300],
      ["5m", 300],
      ["1h30m", 5400],
      ["1.5h", 5400],
      [".5s", 0.5],
      ["250ms", 0.25],
      ["+2s", 2],
      [-1, Infinity],
      ["-1m", Infinity],
    ] as const
  ) {
    assert.equal(read(given), seconds, JSON.stringify(given));
  }
  for (const bad of ["", "5 minutes", "5d", "m", "1h-2m", true, {}, [], Infinity]) {
    assert.throws(
      () => read(bad),
      (e) => e instanceof HttpError && e.status === 400 && e.param === "keep_alive",
      String(bad),
    );
  }
});

Deno.test("showObject() gives a Go template of the server's prompt: ChatML, the engine's default system message, and the tools' section over .Tools (litellm reads 'tools' in it for tool support)", () => {
  const qvq = "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You " +
    "should think step-by-step.";
  const template = showObject(32768, "2026-01-01T00:00:00Z", undefined, qvq).template as string;
  assert.equal(template, ollamaTemplate(qvq));
  // litellm's _supports_function_calling: "tools" in the template.
  assert.ok(template.includes("tools"));
  assert.ok(template.includes(
    `<|im_start|>system\n{{ if .System }}{{ .System }}{{ else }}${qvq}{{ end }}{{ if .Tools }}` +
      "\n\n# Tools\n\n## You have access to the following tools:\n\n" +
      "{{ range $i, $_ := .Tools }}{{ if $i }}\n\n{{ end }}### {{ .Function.Name }}\n\n" +
      "{{ .Function.Name }}: {{ .Function.Description }} Parameters: " +
      '{{ json .Function.Parameters }} {{ if eq .Function.Name "code_interpreter" }}Enclose the ' +
      "code within triple backticks (`) at the beginning and end of the code.{{ else }}Format " +
      "the arguments as a JSON object.{{ end }}{{ end }}\n\n## Insert the following command in " +
      "your reply when you need to call N tools in parallel:\n\n✿FUNCTION✿: The name of tool " +
      "1, should be one of [{{ range $i, $_ := .Tools }}{{ if $i }},{{ end }}" +
      "{{ .Function.Name }}{{ end }}]\n",
  ));
  // A turn's calls as Qwen's lines, the results after them in the turn.
  assert.ok(template.includes(
    "{{ end }}✿FUNCTION✿: {{ .Function.Name }}\n✿ARGS✿: {{ json .Function.Arguments }}",
  ));
  assert.ok(template.includes("\n✿RESULT✿: {{ .Content }}"));
  // An engine whose template writes no default: a system turn only with a system message or
  // tools, Qwen-Agent's default before the tools.
  assert.match(
    ollamaTemplate(),
    /^\{\{- if \.Messages \}\}\n\{\{- if or \.System \.Tools \}\}<\|im_start\|>system\n\{\{ if \.System \}\}\{\{ \.System \}\}\{\{ else \}\}You are a helpful assistant\.\{\{ end \}\}/,
  );
  // Balanced actions: every if / range / else-less block closed (Go's parser refuses others).
  for (const t of [template, ollamaTemplate()]) {
    const opened = t.match(/\{\{-? (if|range) /g)!.length;
    const closed = t.match(/\{\{-? end \}\}/g)!.length;
    assert.equal(opened, closed);
  }
});
