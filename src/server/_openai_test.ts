import assert from "node:assert/strict";
import type { GenerationEvent, GenerationResult } from "../generate/types.ts";
import {
  chunkObject,
  combinedResult,
  completionHeader,
  completionObject,
  logprobsObject,
  openAIFinishReason,
  RunningUsage,
  textLogprobsObject,
  TextOffsets,
  usageOf,
} from "./_openai.ts";

const RESULT: GenerationResult = {
  finishReason: "loop",
  text: "ok",
  usage: { promptTokens: 30, completionTokens: 2, imageTokens: 16, cachedTokens: 12 },
  timings: { visionMs: 1.234, prefillMs: 20.06, decodeMs: 33.333, tokensPerSecond: 60.0061 },
};

Deno.test("openAIFinishReason() keeps stop and length and reports loop and abort as stop", () => {
  assert.deepEqual(
    (["stop", "length", "loop", "abort"] as const).map(openAIFinishReason),
    ["stop", "length", "stop", "stop"],
  );
});

Deno.test("completionObject() has OpenAI's fields plus native_finish_reason, image tokens and timings", () => {
  const header = completionHeader("org/model");
  assert.match(header.id, /^chatcmpl-[0-9a-f]{32}$/);
  assert.ok(Math.abs(header.created - Date.now() / 1000) < 5);
  const body = completionObject(header, RESULT) as Record<string, any>;
  assert.equal(body.object, "chat.completion");
  assert.equal(body.choices[0].finish_reason, "stop");
  assert.equal(body.choices[0].native_finish_reason, "loop");
  assert.deepEqual(body.usage, {
    prompt_tokens: 30,
    completion_tokens: 2,
    total_tokens: 32,
    prompt_tokens_details: { cached_tokens: 12, image_tokens: 16 },
  });
  assert.deepEqual(body.timings, {
    vision_ms: 1.2,
    prefill_ms: 20.1,
    decode_ms: 33.3,
    tokens_per_second: 60.01,
  });
});

Deno.test("chunkObject() builds delta, finish and usage-only chunks", () => {
  const header = completionHeader("m");
  const delta = chunkObject(header, { delta: { content: "x" } }, { include: true }) as Record<
    string,
    any
  >;
  assert.deepEqual(delta.choices, [{
    index: 0,
    delta: { content: "x" },
    logprobs: null,
    finish_reason: null,
  }]);
  assert.equal(delta.usage, null);
  const finish = chunkObject(header, { delta: {}, result: RESULT }) as Record<string, any>;
  assert.equal(finish.choices[0].finish_reason, "stop");
  assert.equal(finish.choices[0].native_finish_reason, "loop");
  assert.ok(!("usage" in finish));
  const usage = chunkObject(header, null, { include: true, result: RESULT }) as Record<string, any>;
  assert.deepEqual(usage.choices, []);
  assert.equal(usage.usage.total_tokens, 32);
});

Deno.test("logprobsObject() is OpenAI's logprobs of a choice; −∞ is sent as −9999, as vLLM does", () => {
  assert.equal(logprobsObject(undefined), null);
  const t = (token: string, logprob: number) => ({ token, id: 1, logprob, bytes: [token.length] });
  assert.deepEqual(
    logprobsObject([{ ...t("a", -0.5), topLogprobs: [t("a", -0.5), t("b", -Infinity)] }]),
    {
      content: [{
        token: "a",
        logprob: -0.5,
        bytes: [1],
        top_logprobs: [
          { token: "a", logprob: -0.5, bytes: [1] },
          { token: "b", logprob: -9999, bytes: [1] },
        ],
      }],
      refusal: null,
    },
  );
  // JSON keeps the number (−∞ would be null).
  assert.match(
    JSON.stringify(logprobsObject([{ ...t("b", -Infinity), topLogprobs: [] }])),
    /-9999/,
  );
});

Deno.test("textLogprobsObject(): offsets in code points from the bytes; a token's own logprob under its text", () => {
  const utf8 = (s: string) => [...new TextEncoder().encode(s)];
  const cat = utf8("🐱"); // four bytes, two UTF-16 units, one character
  const t = (token: string, bytes: number[], logprob: number) => ({ token, id: 0, logprob, bytes });
  const entries = [
    { ...t("\ufffd", cat.slice(0, 2), -0.5), topLogprobs: [t("\ufffd", [0xe4], -0.1)] },
    { ...t("\ufffd", cat.slice(2), -0.25), topLogprobs: [] },
    { ...t(" x", utf8(" x"), -1), topLogprobs: [t(" y", utf8(" y"), -0.5), t(" x", [], -1)] },
    { ...t("é", utf8("é"), -2), topLogprobs: [] },
  ];
  const lp = textLogprobsObject(entries)!;
  // "🐱 xé": the cat at 0 (its second half too: the character starts there), " x" at 1, "é" at 3.
  assert.deepEqual(lp.text_offset, [0, 0, 1, 3]);
  assert.deepEqual(lp.top_logprobs[0], { "\ufffd": -0.5 }, "its own, not the alternative's");
  assert.deepEqual(lp.top_logprobs[2], { " x": -1, " y": -0.5 });
  // Streamed: one TextOffsets carries on across chunks.
  const offsets = new TextOffsets();
  const parts = [entries.slice(0, 1), entries.slice(1, 3), entries.slice(3)];
  assert.deepEqual(parts.flatMap((p) => textLogprobsObject(p, offsets)!.text_offset), [0, 0, 1, 3]);
});

Deno.test("RunningUsage: the usage so far of n choices, as combinedResult counts the finished request", () => {
  const counts = (promptTokens: number, completionTokens: number, cachedTokens = 0) => ({
    promptTokens,
    completionTokens,
    imageTokens: 4,
    cachedTokens,
  });
  // An engine's running counts on its deltas (decodeStream's), or none (an engine that keeps none).
  const delta = (text: string, usage?: GenerationResult["usage"]): GenerationEvent => ({
    type: "delta",
    text,
    ...(usage ? { usage } : {}),
  });
  const done = (usage: GenerationResult["usage"]) =>
    ({ type: "done", result: { ...RESULT, usage } }) as GenerationEvent;
  const running = new RunningUsage();
  assert.equal(running.current, undefined); // nothing known yet
  running.push(0, delta("", counts(30, 0))); // the prompt run (an echo's delta)
  assert.deepEqual(usageOf(running.current!), {
    prompt_tokens: 30,
    completion_tokens: 0,
    total_tokens: 30,
    prompt_tokens_details: { cached_tokens: 0, image_tokens: 4 },
  });
  running.push(0, delta("a", counts(30, 1)));
  running.push(0, delta(" b", counts(30, 3))); // two tokens, one held for a stop string before
  assert.equal(usageOf(running.current!).completion_tokens, 3);
  // Choice 1 begun: its tokens added, the prompt still choice 0's (counted once).
  running.push(1, delta("x", counts(30, 1, 29)));
  assert.deepEqual(usageOf(running.current!), {
    prompt_tokens: 30,
    completion_tokens: 4,
    total_tokens: 34,
    prompt_tokens_details: { cached_tokens: 0, image_tokens: 4 },
  });
  // Finished: the results' counts (a stop id counted there, on no delta).
  const results = [{ ...RESULT, usage: counts(30, 4) }, { ...RESULT, usage: counts(30, 2, 29) }];
  running.push(0, done(results[0].usage));
  running.push(1, done(results[1].usage));
  assert.deepEqual(running.current!.usage, combinedResult(results).usage);
  assert.deepEqual(usageOf(running.current!), usageOf(combinedResult(results)));
  // Tokens written without counts (an engine that keeps none) leave the usage unknown until that
  // choice's result; a delta of no tokens (an echoed prompt's, without counts) does not.
  const uncounted = new RunningUsage();
  uncounted.push(0, delta("a", counts(30, 1)));
  uncounted.push(1, delta(""));
  assert.equal(usageOf(uncounted.current!).completion_tokens, 1);
  uncounted.push(1, delta("b"));
  assert.equal(uncounted.current, undefined);
  uncounted.push(1, done(counts(30, 5)));
  assert.equal(usageOf(uncounted.current!).completion_tokens, 6);
});
