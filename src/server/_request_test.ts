import assert from "node:assert/strict";
import { HttpError } from "./_errors.ts";
import { loadMessages, parseChatRequest, parseCompletionRequest } from "./_request.ts";
import { encodePng } from "../_png.ts";

const LIMITS = { stopOnLoop: true, maxImages: 2 };
const PNG = await Deno.readFile(
  new URL("../../tests/fixtures/tiny-qwen2vl/reference/case0_0.png", import.meta.url),
);
const PNG_URL = `data:image/png;base64,${PNG.toBase64()}`;
const base = { model: "m", messages: [{ role: "user", content: "hi" }] };

function refusal(body: unknown): HttpError {
  try {
    parseChatRequest(body, LIMITS);
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw error;
  }
  assert.fail(`accepted ${JSON.stringify(body)}`);
}

Deno.test("parseChatRequest() maps OpenAI fields to GenerateOptions, preferring max_completion_tokens", () => {
  const request = parseChatRequest({
    ...base,
    max_tokens: 10,
    max_completion_tokens: 20,
    stop_on_loop: false,
    stream: true,
    stream_options: { include_usage: true },
  }, LIMITS);
  assert.deepEqual(request, {
    model: "m",
    messages: [{ role: "user", content: "hi" }],
    options: { maxNewTokens: 20, stopOnLoop: false },
    stream: true,
    includeUsage: true,
    n: 1,
  });
});

Deno.test("parseChatRequest() treats null as unset, as OpenAI does", () => {
  const nulls = Object.fromEntries(
    [
      "max_tokens",
      "temperature",
      "top_p",
      "top_k",
      "seed",
      "stop",
      "n",
      "stream",
      "stream_options",
      "frequency_penalty",
      "presence_penalty",
      "repetition_penalty",
      "logprobs",
      "tools",
      "response_format",
    ]
      .map((k) => [k, null]),
  );
  const request = parseChatRequest({ ...base, ...nulls }, LIMITS);
  // No length: as many tokens as the context holds (Infinity), as vLLM's chat answers.
  assert.deepEqual(request.options, { maxNewTokens: Infinity, stopOnLoop: true });
  assert.equal(request.stream, false);
});

Deno.test("parseChatRequest() keeps parts in order and records each image's field path", () => {
  const { messages } = parseChatRequest({
    model: "m",
    messages: [
      { role: "developer", content: "be brief" },
      {
        role: "user",
        content: [{ type: "text", text: "a" }, { type: "image_url", image_url: { url: "data:x" } }],
      },
    ],
  }, LIMITS);
  assert.deepEqual(messages, [
    { role: "system", content: "be brief" },
    {
      role: "user",
      content: [
        { type: "text", text: "a" },
        { type: "image_url", url: "data:x", param: "messages[1].content[1].image_url.url" },
      ],
    },
  ]);
});

Deno.test("parseChatRequest() takes an image as image_url's URL string and as Qwen's {type: image}", () => {
  const { messages } = parseChatRequest({
    model: "m",
    messages: [{
      role: "user",
      content: [{ type: "image_url", image_url: "data:a" }, { type: "image", image: "data:b" }],
    }],
  }, LIMITS);
  assert.deepEqual(messages[0].content, [
    { type: "image_url", url: "data:a", param: "messages[0].content[0].image_url" },
    { type: "image_url", url: "data:b", param: "messages[0].content[1].image" },
  ]);
  const bad = refusal({ model: "m", messages: [{ role: "user", content: [{ type: "image" }] }] });
  assert.equal(bad.param, "messages[0].content[0].image");
  assert.match(bad.message, /must be an image URL string/);
  const three = [{ type: "image", image: PNG_URL }, { type: "image_url", image_url: PNG_URL }];
  const tooMany = refusal({
    model: "m",
    messages: [{ role: "user", content: [...three, { type: "image", image: PNG_URL }] }],
  });
  assert.equal(tooMany.param, "messages[0].content[2]");
});

Deno.test("parseChatRequest() names the bad field and the bad value in its 400s", () => {
  const e = refusal({ ...base, temperature: "hot" });
  assert.equal(e.status, 400);
  assert.equal(e.param, "temperature");
  assert.match(e.message, /"hot"/);
  assert.match(refusal({ ...base, top_p: 1.5 }).message, /top_p must be > 0 and <= 1; got 1.5/);
  assert.match(
    refusal({ ...base, presence_penalty: 2.5 }).message,
    /presence_penalty must be >= -2 and <= 2; got 2.5/,
  );
  // JSON's 1e400 arrives as Infinity: named as such, not as null.
  const huge = refusal({ ...base, ...JSON.parse('{"frequency_penalty":1e400}') });
  assert.equal(huge.param, "frequency_penalty");
  assert.match(huge.message, /frequency_penalty must be a finite number; got Infinity/);
  const images = Array(3).fill({ type: "image_url", image_url: { url: PNG_URL } });
  const tooMany = refusal({ model: "m", messages: [{ role: "user", content: images }] });
  assert.equal(tooMany.param, "messages[0].content[2]");
  assert.match(tooMany.message, /at most 2 images; this one has 3/);
});

Deno.test("parseChatRequest() refuses values the engine would refuse, naming the field, before queueing", () => {
  // Otherwise they fail only once the request's turn comes: a streamed request that waited in
  // the queue would get a 200 and an error event instead of a 400 with its param.
  for (
    const [field, value] of [
      ["seed", -2],
      ["top_k", 2 ** 31],
      ["repetition_penalty", 101],
      ["stop", ["x".repeat(257)]],
    ] as const
  ) {
    const e = refusal({ ...base, [field]: value });
    assert.equal(e.status, 400, field);
    assert.equal(e.param, field);
  }
  assert.equal(parseChatRequest({ ...base, seed: 0 }, LIMITS).options.seed, 0);
  assert.deepEqual(parseChatRequest({ ...base, stop: ["x".repeat(256)] }, LIMITS).options.stop, [
    "x".repeat(256),
  ]);
});

Deno.test("loadMessages() decodes images into ContentPart bytes and leaves text alone", async () => {
  const { messages } = parseChatRequest({
    model: "m",
    messages: [
      { role: "system", content: "s" },
      {
        role: "user",
        content: [{ type: "image_url", image_url: { url: PNG_URL } }, { type: "text", text: "t" }],
      },
    ],
  }, LIMITS);
  const policy = { allowRemote: false, allowPrivate: false, maxBytes: 1 << 20, timeoutMs: 1000 };
  assert.deepEqual(await loadMessages(messages, policy), [
    { role: "system", content: "s" },
    { role: "user", content: [{ type: "image", image: PNG }, { type: "text", text: "t" }] },
  ]);
});

Deno.test("loadMessages() refuses an image that does not decode, or is too elongated, as a 400 naming its field", async () => {
  const policy = { allowRemote: false, allowPrivate: false, maxBytes: 1 << 20, timeoutMs: 1000 };
  const thin = await encodePng(201, 1, new Uint8Array(201 * 3).fill(128)); // 201:1: over 200:1
  const cases: [Uint8Array, RegExp][] = [
    [PNG.subarray(0, PNG.length >> 1), /cannot decode PNG/], // the magic bytes are right
    [thin, /aspect ratio is too extreme/],
  ];
  for (const [bytes, why] of cases) {
    const { messages } = parseChatRequest({
      model: "m",
      messages: [{
        role: "user",
        content: [{ type: "text", text: "t" }, {
          type: "image_url",
          image_url: { url: `data:image/png;base64,${bytes.toBase64()}` },
        }],
      }],
    }, LIMITS);
    await assert.rejects(() => loadMessages(messages, policy), (e: Error) => {
      assert.ok(e instanceof HttpError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.param, "messages[0].content[1].image_url.url");
      assert.equal(e.code, "invalid_image");
      assert.match(e.message, why);
      return true;
    });
  }
});

Deno.test("parseChatRequest(): an integer past a field's range says the range, however large", () => {
  const e = refusal({ ...base, max_tokens: 1e30 });
  assert.equal(e.param, "max_tokens");
  assert.match(e.message, /^max_tokens must be >= 1 and <= \d+; got 1e\+30\.$/);
  // A seed has no upper bound but JSON's exact integers.
  assert.match(refusal({ ...base, seed: 1e20 }).message, /at most 9007199254740991/);
});

Deno.test("parseChatRequest() takes a video as its frames' URLs, counts each frame as an image, and refuses video files", () => {
  const video = (frames: unknown) => ({
    model: "m",
    messages: [{
      role: "user",
      content: [{ type: "text", text: "t" }, { type: "video", video: frames }],
    }],
  });
  const { messages } = parseChatRequest(video(["data:a", "data:b"]), LIMITS);
  assert.deepEqual(messages[0].content, [
    { type: "text", text: "t" },
    {
      type: "video",
      param: "messages[0].content[1]",
      frames: [
        { url: "data:a", param: "messages[0].content[1].video[0]" },
        { url: "data:b", param: "messages[0].content[1].video[1]" },
      ],
    },
  ]);
  const tooMany = refusal(video(["data:a", "data:b", "data:c"]));
  assert.equal(tooMany.param, "messages[0].content[1].video[2]");
  assert.match(
    tooMany.message,
    /at most 2 images \(a video's frames count one each\); this one has 3/,
  );
  const file = refusal(video("data:video/mp4;base64,AAAA"));
  assert.equal(file.code, "unsupported_video");
  assert.match(file.message, /send the video as its frames, .*qvq decodes no video files/);
  const vllm = refusal({
    model: "m",
    messages: [{ role: "user", content: [{ type: "video_url", video_url: { url: "x.mp4" } }] }],
  });
  assert.equal(vllm.param, "messages[0].content[0].video_url");
  assert.equal(vllm.code, "unsupported_video");
  assert.match(refusal(video([])).message, /video must hold 1 to 768 frames \(image URLs\); got 0/);
  // qwen-vl-utils' per-video pixel bounds.
  const bounded = parseChatRequest({
    model: "m",
    messages: [{
      role: "user",
      content: [{ type: "video", video: ["data:a"], min_pixels: 3136, max_pixels: 200704 }],
    }],
  }, LIMITS).messages[0].content[0];
  assert.deepEqual(bounded, {
    type: "video",
    param: "messages[0].content[0]",
    minPixels: 3136,
    maxPixels: 200704,
    frames: [{ url: "data:a", param: "messages[0].content[0].video[0]" }],
  });
  for (
    const [bounds, param, why] of [
      [{ max_pixels: 0 }, "max_pixels", /max_pixels must be >= 1 and <= 67108864; got 0/],
      [{ min_pixels: 2.5 }, "min_pixels", /min_pixels must be an integer; got 2.5/],
      [
        { min_pixels: 9, max_pixels: 8 },
        "min_pixels",
        /min_pixels \(9\) must not exceed max_pixels \(8\)/,
      ],
    ] as const
  ) {
    const e = refusal({
      model: "m",
      messages: [{ role: "user", content: [{ type: "video", video: ["data:a"], ...bounds }] }],
    });
    assert.equal(e.param, `messages[0].content[0].${param}`);
    assert.match(e.message, why);
  }
  const notUrl = refusal(video(["data:a", 7]));
  assert.equal(notUrl.param, "messages[0].content[1].video[1]");
  const assistant = refusal({
    model: "m",
    messages: [{ role: "assistant", content: [{ type: "video", video: ["data:a"] }] }],
  });
  assert.match(assistant.message, /videos are only allowed in user messages, not "assistant"/);
});

Deno.test("loadMessages() decodes a video's frames, and refuses frames of another size or that do not decode, naming the frame", async () => {
  const policy = { allowRemote: false, allowPrivate: false, maxBytes: 1 << 20, timeoutMs: 1000 };
  const limits = { stopOnLoop: true, maxImages: 8 };
  const load = (frames: string[]) =>
    loadMessages(
      parseChatRequest({
        model: "m",
        messages: [{ role: "user", content: [{ type: "video", video: frames }] }],
      }, limits).messages,
      policy,
    );
  assert.deepEqual(await load([PNG_URL, PNG_URL]), [
    { role: "user", content: [{ type: "video", video: [PNG, PNG] }] },
  ]);
  const bounded = parseChatRequest({
    model: "m",
    messages: [{ role: "user", content: [{ type: "video", video: [PNG_URL], max_pixels: 3136 }] }],
  }, limits).messages;
  assert.deepEqual(await loadMessages(bounded, policy), [
    { role: "user", content: [{ type: "video", video: [PNG], maxPixels: 3136 }] },
  ]);
  const other = await encodePng(57, 56, new Uint8Array(57 * 56 * 3).fill(9));
  const cases: [string, string, RegExp][] = [
    [
      `data:image/png;base64,${other.toBase64()}`,
      "invalid_value",
      /video\[1\]: the frame is 57x56 pixels but frame 0 is 56x56; every frame of a video must have the same size/,
    ],
    [
      `data:image/png;base64,${PNG.subarray(0, 60).toBase64()}`,
      "invalid_image",
      /cannot decode PNG/,
    ],
  ];
  for (const [second, code, why] of cases) {
    await assert.rejects(() => load([PNG_URL, second, PNG_URL]), (e: Error) => {
      assert.ok(e instanceof HttpError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.param, "messages[0].content[0].video[1]");
      assert.equal(e.code, code);
      assert.match(e.message, why);
      return true;
    });
  }
});

Deno.test("parseChatRequest() takes images in any message with imagesInAnyRole (Ollama's API); with tools, not in an assistant's or a tool's turn, which are written as text", () => {
  const image = { type: "image_url", image_url: { url: PNG_URL } };
  const messages = [
    { role: "system", content: [image, { type: "text", text: "Like this." }] },
    { role: "user", content: "Hi" },
    { role: "assistant", content: [image] },
    { role: "tool", content: [image, { type: "text", text: "done" }] },
  ];
  const any = { ...LIMITS, maxImages: 8, imagesInAnyRole: true };
  const request = parseChatRequest({ model: "m", messages }, any);
  assert.deepEqual(
    request.messages.map((m) => typeof m.content === "string" ? m.content : m.content[0].type),
    ["image_url", "Hi", "image_url", "image_url"],
  );
  // OpenAI's rule otherwise.
  assert.throws(
    () => parseChatRequest({ model: "m", messages }, { ...LIMITS, maxImages: 8 }),
    (e) => e instanceof HttpError && e.param === "messages[0].content[0]",
  );
  const tools = [{ type: "function", function: { name: "f", parameters: { type: "object" } } }];
  for (const [at, whose] of [[2, "an assistant message's"], [3, "a tool result's"]] as const) {
    const turns = [messages[1], { role: "assistant", content: "", tool_calls: [] }, messages[at]];
    if (at === 3) {
      turns[1] = {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }],
      } as (typeof turns)[1];
    }
    assert.throws(
      () => parseChatRequest({ model: "m", messages: turns, tools }, any),
      (e) =>
        e instanceof HttpError && e.status === 400 && e.param === "messages[2].content[0]" &&
        e.message.startsWith(
          `messages[2].content[0]: with tools, ${whose} images cannot be placed`,
        ),
      whose,
    );
  }
  // A system message's images stay, the tools described after its text.
  const system = parseChatRequest({ model: "m", messages: messages.slice(0, 2), tools }, any);
  const first = system.messages[0].content as { type: string }[];
  assert.deepEqual(first.map((p) => p.type), ["image_url", "text", "text"]);
});

Deno.test("parseChatRequest() takes an assistant's refusal replayed from OpenAI — a refusal part, or refusal without content — as its text", () => {
  const request = parseChatRequest({
    model: "m",
    messages: [
      { role: "user", content: "a" },
      { role: "assistant", content: [{ type: "refusal", refusal: "I can't help with that." }] },
      { role: "user", content: "b" },
      { role: "assistant", content: null, refusal: "No." },
      { role: "user", content: "c" },
      { role: "assistant", refusal: "Still no." },
      { role: "user", content: "d" },
      // Content given, it is the text; refusal beside it changes nothing.
      { role: "assistant", content: "Yes.", refusal: null },
      { role: "user", content: "e" },
    ],
  }, LIMITS);
  assert.deepEqual(request.messages.filter((m) => m.role === "assistant"), [
    { role: "assistant", content: [{ type: "text", text: "I can't help with that." }] },
    { role: "assistant", content: "No." },
    { role: "assistant", content: "Still no." },
    { role: "assistant", content: "Yes." },
  ]);
  for (
    const [message, param] of [
      [
        { role: "user", content: [{ type: "refusal", refusal: "x" }] },
        "messages[0].content[0].type",
      ],
      [
        { role: "assistant", content: [{ type: "refusal", refusal: 5 }] },
        "messages[0].content[0].refusal",
      ],
      [{ role: "assistant", refusal: 5 }, "messages[0].refusal"],
      [{ role: "user", content: null, refusal: "x" }, "messages[0].refusal"],
    ] as const
  ) {
    const e = refusal({ model: "m", messages: [message, { role: "user", content: "q" }] });
    assert.equal(e.status, 400, JSON.stringify(message));
    assert.equal(e.param, param, JSON.stringify(message));
  }
});

Deno.test("parseChatRequest() and parseCompletionRequest() take vLLM's stream_options.continuous_usage_stats: a boolean, acted on only with include_usage", () => {
  const stream = (options: unknown) => ({ ...base, stream: true, stream_options: options });
  const both = { include_usage: true, continuous_usage_stats: true };
  assert.equal(parseChatRequest(stream(both), LIMITS).continuousUsage, true);
  const prompt = { model: "m", prompt: "hi", stream: true, stream_options: both };
  assert.equal(parseCompletionRequest(prompt, LIMITS).continuousUsage, true);
  // Without include_usage (or with it false, or continuous false): nothing, as vLLM.
  for (
    const options of [
      { continuous_usage_stats: true },
      { include_usage: false, continuous_usage_stats: true },
      { include_usage: true, continuous_usage_stats: false },
      { include_usage: true, continuous_usage_stats: null },
    ]
  ) {
    const request = parseChatRequest(stream(options), LIMITS);
    assert.ok(!("continuousUsage" in request), JSON.stringify(options));
  }
  for (const bad of ["yes", 1, {}]) {
    const error = refusal(stream({ include_usage: true, continuous_usage_stats: bad }));
    assert.equal(error.status, 400);
    assert.equal(error.param, "stream_options.continuous_usage_stats");
    assert.match(error.message, /must be true or false/);
  }
  // Checked without include_usage too.
  assert.equal(
    refusal(stream({ continuous_usage_stats: "y" })).param,
    "stream_options.continuous_usage_stats",
  );
  // Not streaming: stream_options refused, as with include_usage.
  assert.equal(
    refusal({ ...base, stream_options: both }).param,
    "stream_options",
  );
});
