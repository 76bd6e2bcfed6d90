import assert from "node:assert/strict";
import { InvalidInputError, ModelFileError, NoChatTemplateError } from "../errors.ts";
import { ChatTemplate, collectImages } from "./chat_template.ts";
import type { ChatMessage } from "./types.ts";
import { QVQ_SYSTEM } from "../model/_fixture.ts";

const DIR = new URL("../../tests/fixtures/tiny-qwen2vl/", import.meta.url);
const readJson = async (f: string) => JSON.parse(await Deno.readTextFile(new URL(f, DIR)));
const fixtureTemplate = async () =>
  ChatTemplate.fromConfigs(
    await readJson("chat_template.json"),
    await readJson("tokenizer_config.json"),
  );
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47]);
const SYS = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";

Deno.test("ChatTemplate.render() gives Qwen2-VL's prompt with the default system prompt and images first", async () => {
  const t = await fixtureTemplate();
  const text = t.render([{
    role: "user",
    content: [{ type: "image", image: PNG }, { type: "image", image: PNG }, {
      type: "text",
      text: "Compare.",
    }],
  }]);
  assert.equal(
    text,
    SYS + "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" +
      "<|vision_start|><|image_pad|><|vision_end|>Compare.<|im_end|>\n<|im_start|>assistant\n",
  );
});

Deno.test("ChatTemplate.defaultSystemPrompt is the system message the template writes where a conversation has none", async () => {
  const t = await fixtureTemplate();
  assert.equal(t.defaultSystemPrompt, "You are a helpful assistant.");
  // QVQ-72B-Preview's template: Qwen2-VL's with its own default.
  const qvq = new ChatTemplate(t.source.replace("You are a helpful assistant.", QVQ_SYSTEM));
  assert.equal(qvq.defaultSystemPrompt, QVQ_SYSTEM);
  // Writing none where the conversation has none; an empty one; a template that refuses a
  // conversation without a system message.
  const plain = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}";
  assert.equal(new ChatTemplate(plain).defaultSystemPrompt, undefined);
  const empty = "{% if messages[0].role != 'system' %}<|system|>\n{% endif %}" + plain;
  assert.equal(new ChatTemplate(empty).defaultSystemPrompt, "");
  const strict =
    "{% if messages[0].role != 'system' %}{{ raise_exception('no system') }}{% endif %}" +
    plain;
  assert.equal(new ChatTemplate(strict).defaultSystemPrompt, undefined);
});

Deno.test("ChatTemplate.render() handles string content, a system message, history and no generation prompt", async () => {
  const t = await fixtureTemplate();
  const msgs: ChatMessage[] = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello." },
    { role: "user", content: [{ type: "text", text: "Again" }] },
  ];
  assert.equal(
    t.render(msgs, { addGenerationPrompt: false }),
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" +
      "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n",
  );
});

Deno.test("ChatTemplate.render() numbers pictures with addVisionId", async () => {
  const t = await fixtureTemplate();
  const text = t.render([{
    role: "user",
    content: [{ type: "image", image: PNG }, { type: "image", image: PNG }],
  }], {
    addVisionId: true,
  });
  assert.match(text, /Picture 1: <\|vision_start\|>.*Picture 2: <\|vision_start\|>/);
  // The same from chat_template_kwargs (vLLM passes them to the template), which set it before
  // as well but were overwritten.
  const images: ChatMessage[] = [{
    role: "user",
    content: [{ type: "image", image: PNG }, { type: "image", image: PNG }],
  }];
  assert.equal(t.render(images, { templateKwargs: { add_vision_id: true } }), text);
  assert.doesNotMatch(t.render(images), /Picture/);
});

Deno.test("ChatTemplate.render() continueFinalMessage ends the prompt inside the final message, as transformers", async () => {
  const t = await fixtureTemplate();
  const asked: ChatMessage = { role: "user", content: "Is 9.9 larger than 9.11?" };
  const cont = { continueFinalMessage: true };
  const head = SYS +
    "<|im_start|>user\nIs 9.9 larger than 9.11?<|im_end|>\n<|im_start|>assistant\n";
  const parts: ChatMessage = {
    role: "assistant",
    content: [{ type: "text", text: "First, " }, { type: "text", text: "then" }],
  };
  // transformers 5.24's apply_chat_template(continue_final_message=True) on these (tokenizer
  // only, 2026-11-29): the text up to the final message's end — its spaces kept, no <|im_end|>,
  // no new header; the last text part; a user's message too.
  const cases: [ChatMessage[], string][] = [
    [[asked, { role: "assistant", content: "Yes, because" }], head + "Yes, because"],
    [[asked, { role: "assistant", content: "Yes, " }], head + "Yes, "],
    [[asked, { role: "assistant", content: "  padded  " }], head + "  padded  "],
    [[asked, { role: "assistant", content: "" }], head],
    [[asked, parts], head + "First, then"],
    [
      [{ role: "user", content: "Complete this: the sea" }],
      SYS + "<|im_start|>user\nComplete this: the sea",
    ],
  ];
  for (const [messages, want] of cases) assert.equal(t.render(messages, cont), want);
  const image: ChatMessage = { role: "assistant", content: [{ type: "image", image: PNG }] };
  const refused: [ChatMessage[], object, RegExp][] = [
    [[asked, image], cont, /the final message has no text to continue/],
    [[asked, parts], { ...cont, addGenerationPrompt: true }, /cannot also add a generation prompt/],
    [
      [asked, {
        role: "assistant",
        content: [{ type: "text", text: "See" }, { type: "image", image: PNG }],
      }],
      cont,
      /messages\[1\]\.content\[1\] \(an image\) comes after it: put its images before the text/,
    ],
  ];
  for (const [messages, options, msg] of refused) {
    assert.throws(
      () => t.render(messages, options),
      (e: Error) => e instanceof InvalidInputError && msg.test(e.message),
    );
  }
});

Deno.test("ChatTemplate.render() passes templateKwargs to the template; its own variables win", () => {
  const t = new ChatTemplate(
    "{% if enable_thinking %}<think>{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}",
  );
  const hi: ChatMessage[] = [{ role: "user", content: "Hi" }];
  assert.equal(t.render(hi, { templateKwargs: { enable_thinking: true } }), "<think>Hi");
  assert.equal(t.render(hi, { templateKwargs: { enable_thinking: false } }), "Hi");
  assert.equal(t.render(hi, { templateKwargs: { messages: [{ content: "X" }] } }), "Hi");
});

Deno.test("ChatTemplate.fromConfigs() falls back to tokenizer_config.json, also its named-template list", () => {
  const t1 = ChatTemplate.fromConfigs(undefined, {
    chat_template: "A{{ eos_token }}",
    eos_token: "<|e|>",
  });
  assert.equal(t1.render([{ role: "user", content: "x" }]), "A<|e|>");
  const t2 = ChatTemplate.fromConfigs(undefined, {
    chat_template: [{ name: "tool_use", template: "T" }, { name: "default", template: "D" }],
  });
  assert.equal(t2.render([{ role: "user", content: "x" }]), "D");
});

Deno.test("ChatTemplate.fromConfigs() takes chat_template.jinja after chat_template.json, before tokenizer_config.json", () => {
  const tc = { chat_template: "T" };
  assert.equal(ChatTemplate.fromConfigs({ chat_template: "C" }, tc, "J").source, "C");
  assert.equal(ChatTemplate.fromConfigs(undefined, tc, "J").source, "J");
  assert.equal(ChatTemplate.fromConfigs(undefined, tc).source, "T");
  // processor_config.json's own chat_template first (transformers 5.24 warns, and uses it).
  const pc = { chat_template: "P", image_processor: {} };
  assert.equal(ChatTemplate.fromConfigs({ chat_template: "C" }, tc, "J", pc).source, "P");
  assert.equal(ChatTemplate.fromConfigs({ chat_template: "C" }, tc, "J", { a: 1 }).source, "C");
  assert.throws(
    () => ChatTemplate.fromConfigs(undefined, {}, "{% if %}"),
    /chat_template\.jinja: the chat template does not parse/,
  );
});

Deno.test("ChatTemplate.fromConfigs() says which file lacks or breaks the template", () => {
  assert.throws(
    () => ChatTemplate.fromConfigs(undefined, {}),
    (e: Error) =>
      e instanceof NoChatTemplateError && e instanceof ModelFileError &&
      /chat_template\.json.*or send a raw prompt/.test(e.message),
  );
  // findInConfigs(): none is no error there (a model for raw prompts), a broken one still is.
  assert.equal(ChatTemplate.findInConfigs(undefined, {}, undefined, {}), undefined);
  assert.equal(ChatTemplate.findInConfigs(undefined, { chat_template: "T" })?.source, "T");
  assert.throws(
    () => ChatTemplate.findInConfigs(undefined, {}, "{% if %}"),
    /chat_template\.jinja: the chat template does not parse/,
  );
  assert.throws(
    () => ChatTemplate.fromConfigs({ chat_template: "{% if %}" }, {}),
    (e: Error) =>
      e instanceof ModelFileError && /chat_template\.json.*does not parse/.test(e.message),
  );
  assert.throws(
    () => ChatTemplate.fromConfigs({ chat_template: 5 }, {}),
    /"chat_template" must be a string, got 5/,
  );
});

Deno.test("ChatTemplate.render() rejects malformed messages naming the bad field", async () => {
  const t = await fixtureTemplate();
  const bad: [unknown, RegExp][] = [
    [[], /non-empty array/],
    [[{ role: "function", content: "x" }], /messages\[0\]\.role.*"function"/],
    [[{ role: "user", content: 5 }], /messages\[0\]\.content.*5/],
    [
      [{ role: "user", content: [{ type: "audio" }] }],
      /messages\[0\]\.content\[0\]\.type.*"audio"/,
    ],
    [
      [{ role: "user", content: [{ type: "image", image: "x.png" }] }],
      /content\[0\]\.image must be/,
    ],
    [
      [{ role: "user", content: [{ type: "text", text: 3 }] }],
      /content\[0\]\.text must be a string, got 3/,
    ],
  ];
  for (const [msgs, re] of bad) {
    assert.throws(
      () => t.render(msgs as ChatMessage[]),
      (e: Error) => e instanceof InvalidInputError && re.test(e.message),
    );
  }
});

Deno.test("ChatTemplate.render() turns the template's raise_exception into InvalidInputError", () => {
  const t = new ChatTemplate("{{ raise_exception('only user turns') }}");
  assert.throws(
    () => t.render([{ role: "user", content: "x" }]),
    (e: Error) => e instanceof InvalidInputError && /only user turns/.test(e.message),
  );
});

Deno.test("collectImages() returns images in placeholder order across messages", () => {
  const a = new Uint8Array([1]), b = new Uint8Array([2]), c = new Uint8Array([3]);
  assert.deepEqual(
    collectImages([
      {
        role: "user",
        content: [{ type: "image", image: a }, { type: "text", text: "t" }, {
          type: "image",
          image: b,
        }],
      },
      { role: "assistant", content: "ok" },
      { role: "user", content: [{ type: "image", image: c }] },
    ]),
    [a, b, c],
  );
});

Deno.test("ChatTemplate.render() writes an assistant's tool calls as JSON where the template has no tool format, and tool results as their role", async () => {
  const t = await fixtureTemplate(); // Qwen2-VL's: no tool_calls in it
  const text = t.render([
    { role: "user", content: "Weather in Paris?" },
    {
      role: "assistant",
      content: "",
      toolCalls: [
        { id: "call_1", name: "get_weather", arguments: '{"city": "Paris"}' },
        { name: "note", arguments: "not json" },
      ],
    },
    { role: "tool", content: '{"celsius": 12}', toolCallId: "call_1" },
  ]);
  assert.equal(
    text,
    SYS + "<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
      '<|im_start|>assistant\n[{"name": "get_weather", "parameters": {"city": "Paris"}}, ' +
      '{"name": "note", "parameters": "not json"}]<|im_end|>\n' +
      '<|im_start|>tool\n{"celsius": 12}<|im_end|>\n<|im_start|>assistant\n',
  );
  // After the assistant's text, on a line of its own.
  const withText = t.render([
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Looking.", toolCalls: [{ name: "f", arguments: "{}" }] },
  ], { addGenerationPrompt: false });
  assert.ok(withText.endsWith('Looking.\n[{"name": "f", "parameters": {}}]<|im_end|>\n'));
  const withParts = t.render([
    { role: "user", content: "Hi" },
    {
      role: "assistant",
      content: [{ type: "text", text: "Looking." }],
      toolCalls: [{ name: "f", arguments: "{}" }],
    },
  ], { addGenerationPrompt: false });
  assert.equal(withParts, withText);
});

Deno.test("ChatTemplate.render() hands tool calls to a template that reads tool_calls, arguments parsed", () => {
  const t = new ChatTemplate(
    "{% for m in messages %}{{ m.role }}:{{ m.content }}" +
      "{% if m.tool_calls %}{% for c in m.tool_calls %}[{{ c.id }} {{ c.type }} " +
      "{{ c.function.name }} {{ c.function.arguments.city }}]{% endfor %}{% endif %}" +
      "{% if m.tool_call_id %}<{{ m.tool_call_id }}>{% endif %};{% endfor %}",
  );
  const text = t.render([
    { role: "user", content: "Q" },
    {
      role: "assistant",
      content: "",
      toolCalls: [{ id: "c1", name: "get_weather", arguments: '{"city":"Oslo"}' }],
    },
    { role: "tool", content: "R", toolCallId: "c1" },
  ]);
  assert.equal(text, "user:Q;assistant:[c1 function get_weather Oslo];tool:R<c1>;");
});

Deno.test("ChatTemplate.render() refuses tool fields on the wrong role or malformed", async () => {
  const t = await fixtureTemplate();
  const bad = (m: unknown, re: RegExp) =>
    assert.throws(
      () => t.render([m as ChatMessage]),
      (e) => e instanceof InvalidInputError && re.test(e.message),
    );
  bad(
    { role: "user", content: "x", toolCalls: [] },
    /messages\[0\]\.toolCalls must be an array on an "assistant" message.*"user"/,
  );
  bad(
    { role: "assistant", content: "x", toolCalls: [{ name: "", arguments: "{}" }] },
    /messages\[0\]\.toolCalls\[0\] must be \{ name: <non-empty string>/,
  );
  bad(
    { role: "assistant", content: "x", toolCalls: [{ name: "f", arguments: {} }] },
    /toolCalls\[0\]/,
  );
  bad({ role: "user", content: "x", toolCallId: "c" }, /toolCallId must be a string on a "tool"/);
  bad({ role: "tool", content: "x", toolCallId: 3 }, /toolCallId must be a string/);
});

Deno.test("ChatTemplate.render() takes decoded pixels as an image; collectImages() keeps them", async () => {
  const t = await fixtureTemplate();
  const pixels = { width: 1, height: 2, data: new Uint8Array(6) };
  const msgs: ChatMessage[] = [{
    role: "user",
    content: [{ type: "image", image: pixels }, { type: "text", text: "Hm?" }],
  }];
  assert.ok(t.render(msgs).includes("<|vision_start|><|image_pad|><|vision_end|>Hm?"));
  assert.deepEqual(collectImages(msgs), [pixels]);
  const short = { width: 2, height: 2, data: new Uint8Array(6) };
  assert.throws(
    () => t.render([{ role: "user", content: [{ type: "image", image: short }] }]),
    (e) =>
      e instanceof InvalidInputError &&
      /content\[0\]\.image must be .* decoded pixels/.test(e.message),
  );
});

Deno.test("ChatTemplate.render() says what is wrong with decoded pixels: RGBA, a clamped array, a length", async () => {
  const t = await fixtureTemplate();
  const bad = (image: unknown, re: RegExp) =>
    assert.throws(
      () => t.render([{ role: "user", content: [{ type: "image", image } as never] }]),
      (e) => e instanceof InvalidInputError && re.test(e.message),
    );
  bad(
    { width: 2, height: 1, data: new Uint8ClampedArray(8) },
    /Uint8ClampedArray \(a canvas's ImageData is RGBA/,
  );
  bad(
    { width: 2, height: 1, data: new Uint8Array(8) },
    /has 8 bytes, not width × height × 3 = 6 \(4 bytes a pixel: RGBA\? drop the A\)/,
  );
  bad({ width: 2, height: 1, data: new Uint8Array(5) }, /has 5 bytes, not width × height × 3 = 6$/);
  bad(new Uint8Array(0), /must be the image file's bytes/);
});
