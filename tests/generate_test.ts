/**
 * Generation end to end on the tiny model, through the public Pipeline from prompt text and PNG
 * bytes: greedy parity with transformers, seeded sampling, stop strings, the token budget,
 * cancellation and loop detection. (The tiny random model answers " retired" forever — a perfect
 * loop, and an easy text to cut with stop strings.)
 */
import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { Pipeline } from "../src/pipeline.ts";
import type { Session } from "../src/model/qwen2vl.ts";
import { readReferenceCase, TINY_DIR } from "../src/model/_fixture.ts";
import { logprobsRef } from "../src/ref/logprobs.ts";
import type {
  ChatMessage,
  GenerateOptions,
  GenerationEvent,
  GenerationResult,
} from "../src/generate/types.ts";

const cases = JSON.parse(await Deno.readTextFile(`${TINY_DIR}reference/cases.json`)).cases;
const pipeline = sharedGpu().then((gpu) =>
  Pipeline.load(TINY_DIR, { gpu, dtype: "f32", maxContext: 64, loopDetection: { minTokens: 6 } })
);

/** Case 0's prompt: its PNG, then its text, in one user turn. */
async function case0(): Promise<ChatMessage[]> {
  const image = await Deno.readFile(`${TINY_DIR}reference/${cases[0].images[0]}`);
  return [{
    role: "user",
    content: [{ type: "image", image }, { type: "text", text: cases[0].prompt }],
  }];
}

/** The delta events of a generation, its texts and its final record. */
async function runEvents(opts: GenerateOptions) {
  const events: Extract<GenerationEvent, { type: "delta" }>[] = [];
  let result: GenerationResult | undefined;
  for await (const ev of (await pipeline).generate(await case0(), opts)) {
    if (ev.type === "delta") events.push(ev);
    else result = ev.result;
  }
  assert.ok(result);
  return { events, deltas: events.map((e) => e.text), result };
}

/** Runs a generation, returning the deltas and the final record; `onDelta` may act mid-stream. */
async function run(
  opts: GenerateOptions,
  onDelta?: (text: string) => void,
): Promise<{ deltas: string[]; result: GenerationResult }> {
  const deltas: string[] = [];
  let result: GenerationResult | undefined;
  for await (
    const ev of (await pipeline).generate(await case0(), opts) as AsyncIterable<GenerationEvent>
  ) {
    if (ev.type === "delta") {
      deltas.push(ev.text);
      onDelta?.(ev.text);
    } else {
      assert.equal(result, undefined, "one done record");
      result = ev.result;
    }
  }
  assert.ok(result, "the stream ends with a done record");
  assert.equal(result.text, deltas.join(""));
  return { deltas, result };
}

Deno.test("Pipeline.generate() greedy from prompt text + PNG reproduces transformers' 12 generated ids", async () => {
  const ref = await readReferenceCase(0);
  const p = await pipeline;
  const { result } = await run({ maxNewTokens: 12, temperature: 0 });
  assert.equal(result.text, p.tokenizer.decode(ref.generatedIds, { skipSpecialTokens: true }));
  assert.equal(result.text, cases[0].generated_text);
  assert.equal(result.finishReason, "length", "the 12-token budget ends it");
  assert.deepEqual(result.usage, {
    promptTokens: 35,
    completionTokens: 12,
    imageTokens: 4,
    cachedTokens: 0,
  });
  const t = result.timings;
  assert.ok(
    t.visionMs > 0 && t.prefillMs > 0 && t.decodeMs > 0 && t.tokensPerSecond > 0,
    JSON.stringify(t),
  );
});

Deno.test("Pipeline.generate() logprobs: the first token's match log_softmax of transformers' logits", async () => {
  const ref = await readReferenceCase(0);
  const { deltas, result, events } = await runEvents({
    maxNewTokens: 12,
    temperature: 0,
    logprobs: true,
    topLogprobs: 20,
  });
  const lps = result.logprobs!;
  assert.deepEqual(lps.map((t) => t.id), [...ref.generatedIds]);
  assert.deepEqual(events.flatMap((e) => e.logprobs ?? []), lps, "the deltas carry them all, once");
  // Each token's text and bytes; together the bytes are the answer's UTF-8.
  const bytes = lps.flatMap((t) => t.bytes);
  assert.equal(new TextDecoder().decode(Uint8Array.from(bytes)), result.text);
  assert.equal(lps.map((t) => t.token).join(""), deltas.join(""));
  // Greedy: the chosen token is the most likely, with the same logprob.
  for (const t of lps) {
    assert.deepEqual([t.topLogprobs[0].id, t.topLogprobs[0].logprob], [t.id, t.logprob]);
  }
  // Against transformers' logits at the last prompt position (f32 both; the parity tests' error).
  const want = logprobsRef(ref.logitsLast, ref.generatedIds[0], 20);
  const got = lps[0];
  assert.ok(Math.abs(got.logprob - want.logprob) < 1e-4, `${got.logprob} vs ${want.logprob}`);
  assert.deepEqual(got.topLogprobs.map((t) => t.id), want.top.map((t) => t.id));
  got.topLogprobs.forEach((t, j) =>
    assert.ok(Math.abs(t.logprob - want.top[j].logprob) < 1e-4, `top ${j}: ${t.logprob}`)
  );
  // Without the option there are none.
  const plain = await runEvents({ maxNewTokens: 2, temperature: 0 });
  assert.equal(plain.result.logprobs, undefined);
  assert.ok(plain.events.every((e) => e.logprobs === undefined));
});

Deno.test("Pipeline.generate() with the same seed gives the same text, another seed another", async () => {
  const sampled = { maxNewTokens: 4, temperature: 1, topK: 0, topP: 1 };
  const a = await run({ ...sampled, seed: 1234 });
  const b = await run({ ...sampled, seed: 1234 });
  const c = await run({ ...sampled, seed: 99 });
  assert.equal(a.result.text, b.result.text);
  // The tiny model's logits are nearly flat over 151936 ids: two seeds agreeing on 4 draws is
  // practically impossible, and this also shows sampling is not greedy.
  assert.notEqual(a.result.text, c.result.text);
  assert.notEqual(a.result.text, " retired".repeat(4));
});

Deno.test("Pipeline.generate() min-p 1 keeps the most likely token alone: greedy's answer, sampled", async () => {
  const greedy = (await run({ maxNewTokens: 4, temperature: 0 })).result.text;
  const sampled = { maxNewTokens: 4, temperature: 1, topK: 0, topP: 1, seed: 5 };
  assert.equal((await run({ ...sampled, minP: 1 })).result.text, greedy);
  // Without it the same seed draws from the nearly flat distribution.
  assert.notEqual((await run(sampled)).result.text, greedy);
});

Deno.test("Pipeline.generate() stopTokenIds end the answer; ignoreEos runs past the eos ids", async () => {
  const p = await pipeline;
  const retired = p.tokenizer.encode(" retired")[0];
  const stopped = await run({ maxNewTokens: 4, temperature: 0, stopTokenIds: [retired] });
  assert.deepEqual([stopped.result.text, stopped.result.finishReason], ["", "stop"]);
  assert.equal(stopped.result.usage.completionTokens, 1);
  // <|im_end|> forced by a bias: the answer ends at once, unless the eos ids are ignored.
  const eos = { maxNewTokens: 3, temperature: 0, logitBias: { 151645: 100 } };
  const ended = await run(eos);
  assert.deepEqual([ended.result.finishReason, ended.result.usage.completionTokens], ["stop", 1]);
  const ignored = await run({ ...eos, ignoreEos: true });
  assert.deepEqual([ignored.result.text, ignored.result.finishReason], ["", "length"]);
  assert.equal(ignored.result.usage.completionTokens, 3);
});

Deno.test("Pipeline.generate() minTokens: no stop id, stop string or loop stop before that many tokens", async () => {
  // <|im_end|> forced by a bias: held back for the first three tokens, then it ends the answer.
  const eos = { maxNewTokens: 6, temperature: 0, logitBias: { 151645: 100 } };
  const held = await run({ ...eos, minTokens: 3 });
  assert.deepEqual([held.result.finishReason, held.result.usage.completionTokens], ["stop", 4]);
  assert.equal(held.result.text, " retired".repeat(3)); // greedy's answer without the eos
  // The eos ids are held back with ignoreEos too (as vLLM): then ignored, they end nothing.
  const ignored = await run({ ...eos, minTokens: 3, ignoreEos: true });
  assert.deepEqual([ignored.result.finishReason, ignored.result.usage.completionTokens], [
    "length",
    6,
  ]);
  assert.equal(ignored.result.text, " retired".repeat(3));
  // A stop string ends the answer from the token after the minTokens-th on (vLLM v1).
  const stop = { maxNewTokens: 6, temperature: 0, stop: [" retired"] };
  assert.deepEqual([(await run(stop)).result.text, (await run(stop)).result.finishReason], [
    "",
    "stop",
  ]);
  const late = await run({ ...stop, minTokens: 2 });
  assert.deepEqual([late.result.text, late.result.finishReason], [" retired retired", "stop"]);
  assert.equal(late.result.usage.completionTokens, 3);
  // More than the context leaves after the prompt: refused before the GPU.
  const p = await pipeline;
  await assert.rejects(
    p.chat(await case0(), { minTokens: 60 }),
    /minTokens 60 is more than the 29 tokens the context leaves after this prompt/,
  );
});

Deno.test("Pipeline.generate() applies the frequency penalty to what it generated", async () => {
  const greedy = { maxNewTokens: 10, temperature: 0 };
  const plain = (await run(greedy)).result.text;
  assert.equal(plain, " retired".repeat(10));
  // " retired" leads the tiny model by several logits: 2 a repetition pushes it out after a few,
  // but the first token, with nothing generated yet, is greedy's.
  const freq = (await run({ ...greedy, frequencyPenalty: 2 })).result.text;
  const repeats = freq.split(" retired").length - 1;
  assert.ok(freq.startsWith(" retired retired"), freq);
  assert.ok(repeats >= 2 && repeats < 10, `${repeats} repeats: ${JSON.stringify(freq)}`);
  // A logit bias of −100 bans " retired"; with +100 on another token, that one comes every time.
  const retired = (await pipeline).tokenizer.tokenToId("Ġretired")!;
  const banned = (await run({ ...greedy, maxNewTokens: 3, logitBias: { [retired]: -100 } })).result;
  assert.ok(!banned.text.includes(" retired"), banned.text);
  const sea = (await pipeline).tokenizer.tokenToId("Ġsea")!;
  const forced = (await run({ ...greedy, maxNewTokens: 3, logitBias: { [sea]: 100 } })).result;
  assert.equal(forced.text, " sea sea sea");
  await assert.rejects(
    run({ ...greedy, logitBias: { 200000: 1 } }),
    /logitBias names token 200000, but the model's ids end at 151935/,
  );
  // Rewarding repetition keeps greedy's answer.
  assert.equal(
    (await run({ ...greedy, presencePenalty: -2, frequencyPenalty: -1 })).result.text,
    plain,
  );
});

Deno.test("Pipeline.generate() stops at a stop string split across two tokens and never shows it", async () => {
  // " retired" is one token: "ed ret" spans the first two.
  const { deltas, result } = await run({ maxNewTokens: 6, stop: ["ed ret"] });
  assert.equal(result.finishReason, "stop");
  assert.equal(result.text, " retir");
  assert.ok(deltas.every((d) => !d.includes("ed")), JSON.stringify(deltas));
  assert.equal(result.usage.completionTokens, 2, "tokens after the stop are discarded");
});

Deno.test('Pipeline.generate() aborted mid-stream ends with "abort" and leaves its session to the prompt cache', async () => {
  const p = await pipeline;
  await p.clearPromptCache(); // so this generation makes its session
  const sessions: Session[] = [];
  const create = p.model.createSession;
  p.model.createSession = (n) => {
    const s = create.call(p.model, n);
    sessions.push(s);
    return s;
  };
  try {
    const ac = new AbortController();
    const { result } = await run({ maxNewTokens: 20, signal: ac.signal }, () => ac.abort());
    assert.equal(result.finishReason, "abort");
    assert.ok(result.usage.completionTokens >= 1 && result.usage.completionTokens < 20);
    assert.equal(sessions.length, 1);
    assert.ok(!sessions[0].disposed, "the prompt cache keeps the session for the next prompt");
    await p.clearPromptCache();
    assert.ok(sessions[0].disposed, "clearPromptCache() frees it");
  } finally {
    p.model.createSession = create;
  }
});

Deno.test('Pipeline.generate() stops a repeating answer with "loop" when stopOnLoop is set', async () => {
  const { result } = await run({ maxNewTokens: 20, stopOnLoop: true });
  assert.equal(result.finishReason, "loop");
  assert.equal(result.text, " retired".repeat(6), "loopDetection.minTokens 6: the 6th copy");
});

addEventListener("unload", () => pipeline.then((p) => p.dispose()));
