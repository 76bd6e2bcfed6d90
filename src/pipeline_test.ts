import assert from "node:assert/strict";
import {
  ContextLengthError,
  DeviceLostError,
  InvalidInputError,
  ModelFileError,
  NoChatTemplateError,
} from "./errors.ts";
import { requestGpu, sharedGpu } from "./gpu/device.ts";
import { MemoryModelSource, openModelSource } from "./model_files.ts";
import { readReferenceCase, TINY_DIR, tinyWithoutTemplate } from "./model/_fixture.ts";
import { maxAbsDiff } from "./ref/_random.ts";
import { assertLogprobsClose, logprobsRef } from "./ref/logprobs.ts";
import { BITS_PER_WEIGHT, logitError } from "./model/quantize.ts";
import { Pipeline, type PipelineOptions } from "./pipeline.ts";
import { encodePng } from "./_png.ts";
import type {
  ChatMessage,
  GenerateOptions,
  GenerationEvent,
  GenerationResult,
} from "./generate/types.ts";
import { stateAfter } from "./generate/json_grammar.ts";

const pipeline = sharedGpu().then((gpu) =>
  Pipeline.load(TINY_DIR, { gpu, dtype: "f32", maxContext: 64 })
);
const TEXT: ChatMessage[] = [{ role: "user", content: "Write one sentence about the sea." }];

/** Reference case 0: its PNG, then its question, in one user turn. */
async function case0(): Promise<ChatMessage[]> {
  const image = await Deno.readFile(`${TINY_DIR}reference/case0_0.png`);
  return [{
    role: "user",
    content: [{ type: "image", image }, {
      type: "text",
      text: "What value should be filled in the blank space?",
    }],
  }];
}

Deno.test("Pipeline.load() reads the model's id, generation config and chat template", async () => {
  const p = await pipeline;
  assert.equal(p.modelId, "tiny-qwen2vl");
  assert.equal(p.defaultSystemPrompt, "You are a helpful assistant.");
  assert.deepEqual(p.generationConfig.eosTokenIds, [151645, 151643]);
  // case 3 is this text-only prompt
  assert.deepEqual(
    Array.from((await p.prepare(TEXT)).inputIds),
    Array.from((await readReferenceCase(3)).inputIds),
  );
});

Deno.test("Pipeline.chat() collects the answer into the final record", async () => {
  const r = await (await pipeline).chat(TEXT, { maxNewTokens: 3 });
  assert.equal(r.text, " retired retired retired");
  assert.equal(r.finishReason, "length");
  assert.deepEqual(r.usage, {
    promptTokens: 26,
    completionTokens: 3,
    imageTokens: 0,
    cachedTokens: 0,
  });
});

Deno.test("Pipeline.complete() continues a raw prompt, text or ids, as generate() answers its chat", async () => {
  const p = await pipeline;
  const ref = await readReferenceCase(3);
  const ids = Array.from(ref.inputIds);
  // The chat template's text, given raw: the same ids (special tokens recognised), the same tokens.
  const text = p.tokenizer.decode(ids);
  assert.deepEqual(Array.from(p.prepareText(text).inputIds), ids);
  const run = async (events: AsyncIterable<GenerationEvent>) => {
    for await (const ev of events) if (ev.type === "done") return ev.result;
    throw new Error("no result");
  };
  const want = await run(p.generate(TEXT, { maxNewTokens: 4, temperature: 0 }));
  for (const prompt of [text, ids, Int32Array.from(ids)]) {
    const got = await run(p.complete(prompt, { maxNewTokens: 4, temperature: 0 }));
    assert.equal(got.text, want.text);
    assert.equal(
      got.text,
      p.tokenizer.decode(ref.generatedIds.slice(0, 4), { skipSpecialTokens: true }),
    );
    assert.deepEqual(got.usage, { ...want.usage, cachedTokens: got.usage.cachedTokens });
  }
  // A plain text prompt (no template) continues too; the prompt cache serves a repeat of it.
  const plain = await run(p.complete("The sea is", { maxNewTokens: 2, temperature: 0 }));
  assert.equal(plain.usage.promptTokens, p.tokenizer.encode("The sea is").length);
  assert.equal(plain.usage.completionTokens, 2);
  // A temperature too small for the sampler's f32 division is greedy (it drew a wrong token).
  // (A failed draw had left the last answer's token in place: a sampled one comes first here.)
  const france = "The capital of France is";
  const greedy = await run(p.complete(france, { maxNewTokens: 3, temperature: 0 }));
  const hot = await run(
    p.complete(france, { maxNewTokens: 3, temperature: 1, topP: 0.9, seed: 1 }),
  );
  assert.notEqual(hot.text, greedy.text);
  const cold = await run(p.complete(france, { maxNewTokens: 3, temperature: 1e-38, seed: 1 }));
  assert.equal(cold.text, greedy.text);
  // Refused before the GPU, by name.
  const refused: [string | number[], RegExp][] = [
    ["", /the prompt is empty/],
    [[], /the prompt is empty/],
    [
      [1, 2.5],
      new RegExp(`prompt\\[1\\] must be a token id in \\[0, ${p.tokenizer.vocabSize}\\), got 2.5`),
    ],
    // An lm_head padding row past the tokenizer's ids is no token.
    [[p.tokenizer.vocabSize], /prompt\[0\] must be a token id/],
    [
      "<|vision_start|><|image_pad|><|vision_end|>What is it?",
      /token 1 is an image or video placeholder/,
    ],
  ];
  for (const [prompt, msg] of refused) {
    const named = (e: Error) => e instanceof InvalidInputError && msg.test(e.message);
    await assert.rejects(run(p.complete(prompt)), named, JSON.stringify(prompt));
    await assert.rejects(p.checkPrompt(prompt), named, `checkPrompt ${JSON.stringify(prompt)}`);
  }
  // checkPrompt() also weighs the options and the context (64 tokens here), waiting for nothing.
  await p.checkPrompt(ids, { maxNewTokens: 64 - ids.length });
  await assert.rejects(p.checkPrompt(ids, { maxNewTokens: 65 - ids.length }), ContextLengthError);
  await assert.rejects(p.checkPrompt(ids, { topK: -1 }), /topK/);
  // And what the model refuses at its turn: a bias of a token it lacks.
  await assert.rejects(
    p.checkPrompt(ids, { logitBias: { 200000: 1 } }),
    /logitBias names token 200000/,
  );
  await assert.rejects(
    p.checkPrompt(ids, { stopTokenIds: [13, 200000] }),
    /stopTokenIds names token 200000, but the model's ids end at 151935/,
  );
});

Deno.test("Pipeline.complete() echo and promptLogprobs: the prompt's text, and each token scored as log_softmax of its logits", async () => {
  const p = await pipeline;
  const ref = await readReferenceCase(3);
  const ids = Array.from(ref.inputIds);
  const S = ids.length, V = p.model.config.text.vocabSize;
  // The model's logits at every prompt position, read back whole (the CPU reference's input).
  const s = p.model.createSession(S + 1);
  const all = (await p.model.prefill(s, ids, undefined, { allLogits: true })).logits!;
  s.dispose();
  const options = { maxNewTokens: 2, temperature: 0, echo: true, promptLogprobs: 3 };
  // Twice: the second time the prompt cache holds the prompt, but scoring runs all of it.
  for (const round of [0, 1]) {
    const events: GenerationEvent[] = [];
    for await (const ev of p.complete(ids, options)) events.push(ev);
    const [first, ...rest] = events;
    assert.ok(
      first.type === "delta" && first.text === "" && first.prompt,
      "the prompt comes first",
    );
    const done = rest.at(-1)!;
    assert.ok(done.type === "done");
    const echo = first.prompt;
    assert.deepEqual(done.result.prompt, echo);
    assert.ok(rest.every((e) => e.type === "done" || !e.prompt), "once");
    assert.equal(done.result.usage.cachedTokens, 0, `round ${round}`);
    assert.equal(done.result.usage.completionTokens, 2);
    // Token ids given: their text decoded with the special tokens.
    assert.equal(echo.text, p.tokenizer.decode(ids));
    assert.ok(echo.text!.startsWith("<|im_start|>system"), echo.text);
    const lps = echo.logprobs!;
    assert.equal(lps.length, S);
    assert.deepEqual(lps.map((t) => t.id), ids);
    assert.deepEqual([lps[0].token, lps[0].logprob, lps[0].topLogprobs], [
      "<|im_start|>",
      null,
      [],
    ]);
    // The tokens' bytes, in order, are the prompt's text.
    assert.equal(new TextDecoder().decode(Uint8Array.from(lps.flatMap((t) => t.bytes))), echo.text);
    for (let i = 1; i < S; i++) {
      const got = lps[i];
      assertLogprobsClose(
        got,
        logprobsRef(all.subarray((i - 1) * V, i * V), ids[i], 3),
        `token ${i}`,
      );
      // And the most likely is transformers' argmax at that position.
      assert.equal(
        got.topLogprobs[0].id,
        ref.logitsArgmax[i - 1],
        `token ${i}: transformers' argmax`,
      );
    }
  }
  // The cache did hold the prompt: the same prompt unscored is served from it.
  for await (const ev of p.complete(ids, { maxNewTokens: 1, temperature: 0 })) {
    if (ev.type === "done") assert.ok(ev.result.usage.cachedTokens > 0, "the prompt cache held it");
  }
  // A text prompt is echoed exactly as given (the tokenizer's NFC normalisation aside).
  const text = "Cafe\u0301 <|im_start|> au lait";
  for await (const ev of p.complete(text, { maxNewTokens: 1, echo: true })) {
    if (ev.type === "done") {
      assert.deepEqual(ev.result.prompt, { text });
      assert.equal(ev.result.logprobs, undefined);
    }
  }
  // Scored, its tokens' text (NFC: "é" one character), so that they spell it.
  for await (const ev of p.complete(text, { maxNewTokens: 1, echo: true, promptLogprobs: 0 })) {
    if (ev.type !== "done") continue;
    const { text: shown, logprobs } = ev.result.prompt!;
    assert.equal(shown, text.normalize("NFC"));
    assert.equal(logprobs!.map((t) => t.token).join(""), shown);
  }
  // Neither asked: no prompt record; the counts refused by name.
  for await (const ev of p.complete(text, { maxNewTokens: 1 })) {
    assert.ok(ev.type === "done" ? ev.result.prompt === undefined : ev.prompt === undefined);
  }
  await assert.rejects(
    p.checkPrompt(ids, { promptLogprobs: 21 }),
    /promptLogprobs must be an integer in \[0, 20\], got 21/,
  );
  await assert.rejects(
    p.checkPrompt(ids, { echo: 1 as unknown as boolean }),
    /echo must be true or false, got 1/,
  );
});

Deno.test("Pipeline.generate() continueFinalMessage continues an assistant's answer begun, as its raw prompt would", async () => {
  const p = await pipeline;
  const run = async (events: AsyncIterable<GenerationEvent>) => {
    for await (const ev of events) if (ev.type === "done") return ev.result;
    throw new Error("no result");
  };
  const begun = "The sea is";
  const options = { maxNewTokens: 3, temperature: 0 };
  const got = await run(p.generate([...TEXT, { role: "assistant", content: begun }], {
    ...options,
    continueFinalMessage: true,
  }));
  // The same prompt by hand: the template's text with its generation prompt, then the answer begun.
  const raw = p.tokenizer.decode((await p.prepare(TEXT)).inputIds) + begun;
  const want = await run(p.complete(raw, options));
  assert.equal(got.text, want.text);
  assert.equal(got.usage.promptTokens, p.tokenizer.encode(raw).length);
  // A raw prompt has no final message to continue; a chat's last message needs text.
  await assert.rejects(
    run(p.complete(raw, { continueFinalMessage: true })),
    /continueFinalMessage continues a chat's last message/,
  );
  await assert.rejects(p.checkPrompt(raw, { continueFinalMessage: true }), InvalidInputError);
});

Deno.test("Pipeline.generate() refuses images past the adapter's bindings before the GPU, saying how much it takes", async () => {
  // A context that holds the image's 7597 tokens: only the adapter can refuse it.
  using p = await Pipeline.load(TINY_DIR, {
    gpu: await sharedGpu(),
    dtype: "f32",
    maxContext: 8192,
    promptCache: false,
  });
  const [w, h] = [3000, 2000]; // 30388 patches after resizing
  const image = await encodePng(w, h, new Uint8Array(w * h * 3).fill(128));
  const messages: ChatMessage[] = [{ role: "user", content: [{ type: "image", image }] }];
  const v = p.model.config.vision;
  const perPatch = 4 * Math.max(v.patchDim, v.mlpHidden, 3 * v.embedDim);
  if (30388 * perPatch > p.model.gpu.maxBinding) {
    // A software adapter's 128 MiB (CI): refused by name, the stream never reaching the GPU.
    await assert.rejects(
      p.chat(messages, { maxNewTokens: 1 }),
      (e: Error) =>
        e instanceof InvalidInputError &&
        /the images to encode make 30388 patches .* send smaller or fewer images/.test(
          e.message,
        ),
    );
  } else {
    // A GPU's 2 GiB bindings hold them.
    assert.equal((await p.chat(messages, { maxNewTokens: 1 })).usage.imageTokens, 7597);
  }
});

Deno.test("Pipeline.forward() gives transformers' image embeddings and last logits for case 0", async () => {
  const p = await pipeline;
  const ref = await readReferenceCase(0);
  const r = await p.forward(await case0());
  assert.deepEqual(Array.from(r.prompt.inputIds), Array.from(ref.inputIds));
  const scale = ref.logitsLast.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assert.equal(r.imageEmbeds.length, ref.imageEmbeds.length);
  assert.equal(r.logitsLast.length, ref.logitsLast.length);
  // f32 weights: the model's parity tolerance (tests/parity_test.ts), 1e-4 of the largest value.
  assert.ok(
    maxAbsDiff(r.imageEmbeds, ref.imageEmbeds) <=
      1e-5 * Math.max(1, ...ref.imageEmbeds.map(Math.abs)),
  );
  assert.ok(maxAbsDiff(r.logitsLast, ref.logitsLast) <= 1e-4 * scale);
});

Deno.test("Pipeline.load() with quant q8 quantizes the decoder and still gives transformers' 12 greedy ids for case 0", async () => {
  const f32 = await pipeline;
  const q8 = await Pipeline.load(TINY_DIR, {
    gpu: f32.model.gpu,
    dtype: "f32",
    quant: "q8",
    maxContext: 64,
  });
  try {
    const plan = q8.model.plan;
    const decoder = [...plan.tensors.values()].filter((t) =>
      t.kind === "matrix" && t.key.startsWith("text.layers.")
    );
    assert.ok(decoder.length > 0);
    for (const t of decoder) {
      assert.equal(t.dtype, "q8", t.key);
      assert.equal(t.bytes, (t.rows * t.cols * BITS_PER_WEIGHT.q8) / 8, t.key);
    }
    assert.equal(plan.tensors.get("text.embed")!.dtype, "f32", "the embedding stays float");
    // The tiny model ties lm_head to the embedding: quantized, it becomes its own q8 copy.
    assert.equal(plan.tensors.get("text.lm_head")!.dtype, "q8");

    // The logits move (the weights really are quantized) but stay within quantize_test's
    // measured q8 bound (max |Δ| ≤ 0.5 of ≈ 35), with the same argmax.
    const messages = await case0();
    const [a, b] = [await f32.forward(messages), await q8.forward(messages)];
    const e = logitError(a.logitsLast, b.logitsLast, a.logitsLast.length);
    assert.ok(e.maxAbs > 1e-3 && e.maxAbs <= 0.5, `max |Δ logit| ${e.maxAbs}`);
    assert.equal(e.argmaxAgree, 1);

    // Measured on lavapipe: all 12 greedy steps agree with transformers' fp32 ids (q4: none do).
    const ref = await readReferenceCase(0);
    const r = await q8.chat(messages, { maxNewTokens: ref.generatedIds.length, temperature: 0 });
    assert.equal(r.text, q8.tokenizer.decode(ref.generatedIds, { skipSpecialTokens: true }));
    assert.equal(r.finishReason, "length");
    // forward() above left the prompt cache empty: the whole prompt ran.
    assert.deepEqual(r.usage, {
      promptTokens: 35,
      completionTokens: 12,
      imageTokens: 4,
      cachedTokens: 0,
    });
  } finally {
    q8.dispose();
  }
});

Deno.test("Pipeline.generate() serves a chat's next turn from the prompt cache: the same answer, its image not encoded again", async () => {
  const gpu = (await pipeline).model.gpu;
  const opts = { gpu, dtype: "f32", maxContext: 192 } as const;
  const [cached, plain] = [
    await Pipeline.load(TINY_DIR, opts),
    await Pipeline.load(TINY_DIR, { ...opts, promptCache: false }),
  ];
  try {
    const image1 = await Deno.readFile(`${TINY_DIR}reference/case1_0.png`);
    const o = { maxNewTokens: 6, temperature: 0 };
    const both = async (messages: ChatMessage[]) => {
      const [a, b] = [await cached.chat(messages, o), await plain.chat(messages, o)];
      // Greedy ids from the rows the cache kept are those of a whole prefill.
      assert.equal(a.text, b.text);
      assert.equal(a.usage.promptTokens, b.usage.promptTokens);
      assert.equal(b.usage.cachedTokens, 0);
      return a;
    };
    // A chat as OpenAI clients send it: each turn repeats the conversation so far.
    let chat = await case0();
    const r0 = await both(chat);
    assert.equal(r0.usage.cachedTokens, 0);
    assert.ok(r0.timings.visionMs > 0);
    chat = [...chat, { role: "assistant", content: r0.text }, { role: "user", content: "Why?" }];
    const r1 = await both(chat);
    // Turn 0's prompt and its answer but the last token (no decode step has read it), re-tokenized
    // from the text to the same ids; the image is not encoded again.
    assert.equal(r1.usage.cachedTokens, r0.usage.promptTokens + r0.usage.completionTokens - 1);
    assert.equal(r1.timings.visionMs, 0);
    chat = [...chat, { role: "assistant", content: r1.text }, {
      role: "user",
      content: [{ type: "image", image: image1 }, { type: "text", text: "And this one?" }],
    }];
    const r2 = await both(chat);
    assert.equal(r2.usage.cachedTokens, r1.usage.promptTokens + r1.usage.completionTokens - 1);
    assert.ok(r2.timings.visionMs > 0, "the new image is encoded");
    // The same prompt again: all but its last two tokens (they run through prefill's GEMMs).
    const r3 = await both(chat);
    assert.equal(r3.usage.cachedTokens, r3.usage.promptTokens - 2);
    assert.equal(r3.timings.visionMs, 0);
    // A reader that stops at the first token (the first batch is one token: its K/V was never
    // written) leaves the prompt's rows; a request aborted before it starts leaves them too.
    for await (const ev of cached.generate(chat, o)) if (ev.type === "delta") break;
    const longer: ChatMessage[] = [...chat, { role: "assistant", content: r3.text }, {
      role: "user",
      content: "Again.",
    }];
    const ac = new AbortController();
    queueMicrotask(() => ac.abort());
    assert.equal((await cached.chat(longer, { ...o, signal: ac.signal })).finishReason, "abort");
    const r4 = await both(longer);
    assert.equal(r4.usage.cachedTokens, r3.usage.promptTokens);
    // Another image first: only the tokens before it (system prompt, "<|im_start|>user\n",
    // "<|vision_start|>").
    const alone: ChatMessage[] = [
      { role: "user", content: [{ type: "image", image: image1 }, { type: "text", text: "?" }] },
    ];
    const other = await both(alone);
    const ids = Array.from((await cached.prepare(alone)).inputIds);
    assert.equal(other.usage.cachedTokens, ids.indexOf(cached.model.config.imageTokenId));
    assert.ok(other.timings.visionMs > 0);
  } finally {
    cached.dispose();
    plain.dispose();
  }
});

// Two clients taking turns: with promptCache 2 each conversation's next turn continues its own
// session (all of its turn-0 prompt and answer but the last token cached); with one slot the
// other client's turn in between leaves only the shared system prompt.
Deno.test("Pipeline with promptCache 2 serves two interleaved conversations each from its own session", async () => {
  const gpu = (await pipeline).model.gpu;
  const opts = { gpu, dtype: "f32", maxContext: 128 } as const;
  const [two, one] = [
    await Pipeline.load(TINY_DIR, { ...opts, promptCache: 2 }),
    await Pipeline.load(TINY_DIR, opts),
  ];
  try {
    const o = { maxNewTokens: 4, temperature: 0 };
    const chats: ChatMessage[][] = [
      [{ role: "user", content: "Write one sentence about the sea." }],
      [{ role: "user", content: "Name three colours." }],
    ];
    for (const p of [two, one]) {
      const first = [];
      for (const chat of chats) first.push(await p.chat(chat, o));
      const next = [];
      for (const [i, chat] of chats.entries()) {
        const turn: ChatMessage[] = [...chat, { role: "assistant", content: first[i].text }, {
          role: "user",
          content: "Go on.",
        }];
        next.push(await p.chat(turn, o));
      }
      const whole = first.map((r) => r.usage.promptTokens + r.usage.completionTokens - 1);
      if (p === two) {
        assert.deepEqual(next.map((r) => r.usage.cachedTokens), whole);
      } else {
        // The shared start of the two prompts (system prompt and "<|im_start|>user\n") only.
        const shared = commonPrefix(
          Array.from((await p.prepare(chats[0])).inputIds),
          Array.from((await p.prepare(chats[1])).inputIds),
        );
        assert.ok(shared > 5 && shared < whole[0]);
        assert.deepEqual(next.map((r) => r.usage.cachedTokens), [shared, shared]);
      }
    }
  } finally {
    two.dispose();
    one.dispose();
  }
});

// parallel 2: a short answer asked after a long one ends first, with the same tokens as one
// at a time; each conversation's next turn, both again at once, continues its own session.
Deno.test("Pipeline with parallel 2 runs two generations at once, each answer what it is alone", async () => {
  const gpu = (await pipeline).model.gpu;
  const opts = { gpu, dtype: "f32", maxContext: 128 } as const;
  const [one, two] = [
    await Pipeline.load(TINY_DIR, opts),
    await Pipeline.load(TINY_DIR, { ...opts, parallel: 2 }),
  ];
  try {
    assert.equal(one.parallel, 1);
    assert.equal(two.parallel, 2);
    // Float weights: the two decode in one loop, as one batch (src/generate/decode_batcher.ts).
    assert.equal(one.batchDecode, false);
    assert.equal(two.batchDecode, true);
    const long = { maxNewTokens: 40, temperature: 0, ignoreEos: true, stopOnLoop: false };
    const short = { maxNewTokens: 2, temperature: 0 };
    const run = async (p: Pipeline, chats: ChatMessage[][]) => {
      const ended: string[] = [];
      const results = await Promise.all(chats.map(async (chat, i) => {
        const r = await p.chat(chat, i === 0 ? long : short);
        ended.push(i === 0 ? "long" : "short");
        return r;
      }));
      return { ended, results };
    };
    const chats = [await case0(), TEXT];
    const alone = await run(one, chats);
    assert.deepEqual(alone.ended, ["long", "short"], "one at a time: the short one waits");
    const both = await run(two, chats);
    assert.deepEqual(both.ended, ["short", "long"], "at once: the short one is not kept waiting");
    assert.deepEqual(
      both.results.map((r) => [r.text, r.finishReason, r.usage.completionTokens]),
      alone.results.map((r) => [r.text, r.finishReason, r.usage.completionTokens]),
    );
    const next = (i: number) => [...chats[i], {
      role: "assistant" as const,
      content: both.results[i].text,
    }, { role: "user" as const, content: "Go on." }];
    const again = await run(two, [next(0), next(1)]);
    assert.deepEqual(
      again.results.map((r) => r.usage.cachedTokens),
      both.results.map((r) => r.usage.promptTokens + r.usage.completionTokens - 1),
    );
  } finally {
    one.dispose();
    two.dispose();
  }
});

// The same image prompt asked again while its first answer runs (the server's `n` choices): the
// second copies the running session's prompt rows (PromptCache.share) — no vision tower, a prefill
// of its last two tokens — and, greedy, answers the same.
Deno.test("Pipeline with parallel 2: a prompt asked while the same one runs copies its prefilled rows", async () => {
  const gpu = (await pipeline).model.gpu;
  const p = await Pipeline.load(TINY_DIR, { gpu, dtype: "f32", maxContext: 128, parallel: 2 });
  try {
    const chat = await case0();
    const o = { maxNewTokens: 12, temperature: 0, ignoreEos: true, stopOnLoop: false };
    const first = p.generate(chat, o);
    const ev = await first.next(); // its first text: prefilled
    assert.equal(ev.done, false);
    const second = await p.chat(chat, o);
    let done: GenerationResult | undefined;
    for await (const e of first) if (e.type === "done") done = e.result;
    assert.ok(done);
    assert.equal(done.usage.cachedTokens, 0);
    assert.ok(done.timings.visionMs > 0);
    assert.equal(second.usage.cachedTokens, second.usage.promptTokens - 2);
    assert.equal(second.timings.visionMs, 0, "no vision tower: the image's rows were copied");
    assert.equal(second.text, done.text);
    assert.equal(second.usage.completionTokens, 12);
  } finally {
    p.dispose();
  }
});

// The same image prompt three times at once: the first encodes the image and prefills, the others
// wait for its prefill and copy its rows — and answer as it does.
Deno.test("Pipeline with parallel 3: the same prompt asked three times at once is prefilled once", async () => {
  const gpu = (await pipeline).model.gpu;
  const p = await Pipeline.load(TINY_DIR, { gpu, dtype: "f32", maxContext: 128, parallel: 3 });
  try {
    const chat = await case0();
    const o = { maxNewTokens: 6, temperature: 0, ignoreEos: true, stopOnLoop: false };
    const results = await Promise.all([0, 1, 2].map(() => p.chat(chat, o)));
    const [S] = results.map((r) => r.usage.promptTokens);
    assert.deepEqual(
      results.map((r) => r.usage.cachedTokens).sort((a, b) => a - b),
      [0, S - 2, S - 2],
    );
    assert.equal(results.filter((r) => r.timings.visionMs > 0).length, 1, "one vision tower");
    assert.deepEqual(results.map((r) => r.text), results.map(() => results[0].text));
  } finally {
    p.dispose();
  }
});

function commonPrefix(a: number[], b: number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

Deno.test("Pipeline.generate() aborted while waiting on a batch leaves no GPU work behind for the next one", async () => {
  const p = await pipeline;
  const ac = new AbortController();
  // Aborted on the first text, while the pump waits on the batch after it (a timer raced the whole
  // answer on a fast GPU: an H200 wrote all of a 30 ms timer's 37 tokens before it fired).
  let r: GenerationResult | undefined;
  for await (
    const ev of p.generate(TEXT, { maxNewTokens: 37, signal: ac.signal }) as AsyncIterable<
      GenerationEvent
    >
  ) {
    if (ev.type === "delta") ac.abort();
    if (ev.type === "done") r = ev.result;
  }
  assert.equal(r?.finishReason, "abort");
  assert.ok(r.usage.completionTokens < 37, `${r.usage.completionTokens} tokens`);
  // The shared test GPU turns any validation error (a batch recorded with the freed sampler) into
  // a failure; the next generation reuses the session and answers in full.
  const next = await p.chat(TEXT, { maxNewTokens: 3 });
  assert.equal(next.text, " retired retired retired");
  await new Promise((resolve) => setTimeout(resolve, 100));
});

Deno.test("Pipeline on a lost device: the answer running, the next ones and forward() fail with DeviceLostError", async () => {
  // A device of its own (the shared one serves the other tests), lost as a driver reset would
  // lose it: destroyed by no code of qvq's.
  const gpu = await requestGpu();
  const p = await Pipeline.load(TINY_DIR, { gpu, dtype: "f32", maxContext: 64 });
  // Lost just before a readback, whose error then comes before the device's lost event: the
  // pipeline waits for that event to say what happened.
  const mapAsync = GPUBuffer.prototype.mapAsync;
  let loseAtNextReadback = false;
  GPUBuffer.prototype.mapAsync = function (...args) {
    if (loseAtNextReadback) {
      loseAtNextReadback = false;
      gpu.device.destroy();
    }
    return mapAsync.apply(this, args);
  };
  try {
    // (Not assert.equal(p.failure, undefined): it would narrow p.failure's type for good.)
    assert.equal(p.failure === undefined, true);
    let deltas = 0;
    await assert.rejects(
      async () => {
        for await (const ev of p.generate(TEXT, { maxNewTokens: 37 })) {
          if (ev.type === "delta" && ++deltas === 1) loseAtNextReadback = true;
        }
      },
      // The readback's own error kept as the cause.
      (e) =>
        e instanceof DeviceLostError && e.cause instanceof Error &&
        e.message === p.failure?.message,
    );
    assert.equal(deltas, 1);
    assert.ok(p.failure instanceof DeviceLostError);
    await assert.rejects(p.chat(TEXT, { maxNewTokens: 2 }), (e) => e === p.failure);
    await assert.rejects(p.forward(TEXT), (e) => e === p.failure);
    // What needs no GPU still works.
    assert.ok((await p.tokenize({ prompt: "the sea" })).length > 0);
  } finally {
    GPUBuffer.prototype.mapAsync = mapAsync;
    p.dispose();
  }
});

Deno.test("Pipeline.generate() runs concurrent requests one after the other, each complete", async () => {
  const p = await pipeline;
  const order: string[] = [];
  const consume = async (name: string) => {
    for await (
      const ev of p.generate(TEXT, { maxNewTokens: 2 }) as AsyncIterable<GenerationEvent>
    ) {
      order.push(`${name}:${ev.type}`);
    }
  };
  await Promise.all([consume("a"), consume("b")]);
  const firstDone = order.indexOf("a:done");
  assert.ok(
    firstDone >= 0 && order.slice(0, firstDone + 1).every((e) => e.startsWith("a:")),
    order.join(" "),
  );
  assert.equal(order.filter((e) => e === "b:done").length, 1);
});

Deno.test("Pipeline.generate() runs generations in call order, an image's decoding and resizing included", async () => {
  const p = await pipeline;
  // Two 2400 × 1800 frames take far longer to decode and resize than a text prompt to prepare.
  const frame = await encodePng(2400, 1800, new Uint8Array(2400 * 1800 * 3).map((_, i) => i * 7));
  const video: ChatMessage[] = [{
    role: "user",
    content: [{ type: "video", video: [frame, frame], maxPixels: 56 * 56 }, {
      type: "text",
      text: "hi",
    }],
  }];
  const done: string[] = [];
  const consume = async (name: string, messages: ChatMessage[]) => {
    for await (const ev of p.generate(messages, { maxNewTokens: 1 })) {
      if (ev.type === "done") done.push(`${name}:${ev.result.finishReason}`);
    }
  };
  await Promise.all([consume("video", video), consume("text", TEXT)]);
  assert.deepEqual(done, ["video:length", "text:length"]); // the text one overtook it before
  // A prompt refused after its place was taken gives the place up: the next one runs.
  await assert.rejects(
    p.chat([{ role: "user", content: [{ type: "image", image: new Uint8Array([1, 2]) }] }]),
    InvalidInputError,
  );
  assert.equal((await p.chat(TEXT, { maxNewTokens: 1 })).finishReason, "length");
});

Deno.test("Pipeline.chat() maxNewTokens Infinity runs to the context's end; a number past it is refused", async () => {
  const p = await pipeline; // maxContext 64
  const r = await p.chat(TEXT, { maxNewTokens: Infinity, ignoreEos: true, stopOnLoop: false });
  assert.equal(r.finishReason, "length");
  assert.equal(r.usage.promptTokens + r.usage.completionTokens, 64);
  await assert.rejects(p.chat(TEXT, { maxNewTokens: 60 }), ContextLengthError);
});

Deno.test('Pipeline.generate() aborted while queued ends with "abort" without touching the GPU', async () => {
  const p = await pipeline;
  const ac = new AbortController();
  const first = p.chat(TEXT, { maxNewTokens: 2 });
  const queued = p.chat(TEXT, { maxNewTokens: 2, signal: ac.signal });
  ac.abort();
  const r = await queued;
  assert.equal(r.finishReason, "abort");
  assert.deepEqual(r.usage, {
    promptTokens: 26,
    completionTokens: 0,
    imageTokens: 0,
    cachedTokens: 0,
  });
  assert.equal((await first).finishReason, "length");
});

Deno.test("Pipeline.generate() rejects bad options and messages before using the GPU", async () => {
  const p = await pipeline;
  await assert.rejects(
    () => p.chat(TEXT, { topP: 2 }),
    (e: Error) => e instanceof InvalidInputError && /topP.*2/.test(e.message),
  );
  await assert.rejects(() => p.chat([], {}), InvalidInputError);
});

Deno.test("Pipeline.forward() refuses a prompt over the context with InvalidInputError and frees the lock", async () => {
  const p = await pipeline;
  const long: ChatMessage[] = [{ role: "user", content: "the sea ".repeat(60) }];
  await assert.rejects(
    () => p.forward(long),
    (e: Error) => e instanceof InvalidInputError && /context holds 64/.test(e.message),
  );
  // The next caller must get the lock: a leaked lock would hang here forever.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<"hung">((r) => (timer = setTimeout(() => r("hung"), 10_000)));
  const r = await Promise.race([p.chat(TEXT, { maxNewTokens: 1 }), hung]);
  clearTimeout(timer);
  assert.notEqual(r, "hung", "the pipeline's lock was never released");
  assert.equal((r as { finishReason: string }).finishReason, "length");
});

Deno.test('Pipeline.dispose() ends the generation in progress and the queued one with "abort", frees after them, and refuses later calls', async () => {
  const gpu = await sharedGpu();
  const p = await Pipeline.load(TINY_DIR, { gpu, dtype: "f32", maxContext: 64 });
  const it = p.generate(TEXT, { maxNewTokens: 37 });
  const first = it.next(); // starts it: it queues for the GPU before the chat below
  const queued = p.chat(TEXT, { maxNewTokens: 2 });
  const events = [(await first).value as GenerationEvent];
  p.dispose();
  // The tokenizer is freed with the model, after the generation has stopped: not yet.
  assert.equal(p.tokenizer.encode("sea").length > 0, true);
  for await (const ev of it) events.push(ev);
  const done = events.at(-1)!;
  assert.ok(done.type === "done" && done.result.finishReason === "abort", JSON.stringify(done));
  assert.ok(done.result.usage.completionTokens < 37);
  assert.equal((await queued).finishReason, "abort");
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.throws(() => p.tokenizer.encode("sea"), /disposed/);
  await assert.rejects(
    () => p.chat(TEXT, { maxNewTokens: 2 }),
    (e: Error) => e instanceof InvalidInputError && /was disposed: load a new one/.test(e.message),
  );
  p.dispose(); // twice: nothing more
});

Deno.test("Pipeline.load() refuses bad loopDetection thresholds, a misspelt one, and a bad modelId before loading", async () => {
  const cases: [unknown, RegExp][] = [
    [{ loopDetection: { minTokens: -1 } }, /loopDetection.*minTokens/],
    [{ loopDetection: { minRepeat: 2 } }, /unknown loopDetection option minRepeat; .*minRepeats/],
    [{ loopDetection: "on" }, /loopDetection must be an object/],
    [{ modelId: 5 }, /modelId must be a non-empty string/],
    [{ modelId: "" }, /modelId must be a non-empty string/],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(
      () => Pipeline.load(TINY_DIR, options as PipelineOptions),
      (e: Error) => e instanceof InvalidInputError && message.test(e.message),
      JSON.stringify(options),
    );
  }
});

Deno.test("Pipeline.load() and detokenize() name a bad argument (no TypeError from inside)", async () => {
  for (const location of [undefined, null, 123, {}]) {
    await assert.rejects(
      () => Pipeline.load(location as never),
      (e: Error) =>
        e instanceof InvalidInputError &&
        /^Pipeline.load takes a model directory, a file: or http\(s\): URL, or a ModelSource, got /
          .test(e.message),
      String(location),
    );
  }
  await assert.rejects(
    () => Pipeline.load(TINY_DIR, 5 as never),
    (e: Error) =>
      e instanceof InvalidInputError && /options must be an object, got 5/.test(e.message),
  );
  // null options are none: the load goes on (to the missing config here).
  await assert.rejects(() => Pipeline.load(`${TINY_DIR}nope/`, null), ModelFileError);
  const p = await pipeline;
  // A typed array is ids too (a prompt's inputIds).
  assert.equal(await p.detokenize(Int32Array.from([9707, 1879]) as never), "Hello world");
  for (const ids of ["x", null]) {
    await assert.rejects(
      p.detokenize(ids as never),
      (e: Error) =>
        e instanceof InvalidInputError &&
        /^tokens must be an array of token ids, got /.test(e.message),
    );
  }
});

Deno.test("Pipeline.load() refuses a bad promptCache, parallel, onProgress or an unknown option before any weight is uploaded", async () => {
  for (const promptCache of [-1, 1.5, "yes"]) {
    let uploaded = 0;
    await assert.rejects(
      () =>
        Pipeline.load(TINY_DIR, {
          promptCache: promptCache as number,
          onProgress: (done) => uploaded = done,
        }),
      (e: Error) => e instanceof InvalidInputError && /promptCache must be/.test(e.message),
      `promptCache ${promptCache}`,
    );
    assert.equal(uploaded, 0, `promptCache ${promptCache}: nothing uploaded`);
  }
  await assert.rejects(
    () => Pipeline.load(TINY_DIR, { quantization: "q8" } as PipelineOptions),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /unknown load option quantization; .*quant,/.test(e.message),
  );
  for (const parallel of [0, 1.5, 65, "2"]) {
    await assert.rejects(
      () => Pipeline.load(TINY_DIR, { parallel: parallel as number }),
      (e: Error) =>
        e instanceof InvalidInputError &&
        /parallel must be a whole number of generations to run at once, 1 to 64/.test(e.message),
      `parallel ${parallel}`,
    );
  }
  await assert.rejects(
    () => Pipeline.load(TINY_DIR, { parallel: 2, batchDecode: "yes" as unknown as boolean }),
    (e: Error) =>
      e instanceof InvalidInputError && /batchDecode must be true or false/.test(e.message),
  );
  await assert.rejects(
    () => Pipeline.load(TINY_DIR, { onProgress: "x" as unknown as () => void }),
    (e: Error) => e instanceof InvalidInputError && /onProgress must be a function/.test(e.message),
  );
});

Deno.test("Pipeline.load() names the missing file before loading weights", async () => {
  const src = openModelSource(TINY_DIR);
  const files: Record<string, Uint8Array> = {};
  for (const f of ["config.json", "tokenizer.json", "generation_config.json"]) {
    files[f] = await src.readBytes(f);
  }
  // (No chat template is no error: a model without one serves raw prompts.)
  await assert.rejects(
    () => Pipeline.load(new MemoryModelSource(files, "mem")),
    (e: Error) => e instanceof ModelFileError && /preprocessor_config\.json/.test(e.message),
  );
});

Deno.test("Pipeline.load() of a model without a chat template: raw prompts run as with one, chat messages are refused with NoChatTemplateError", async () => {
  const gpu = await sharedGpu();
  const bare = await Pipeline.load(await tinyWithoutTemplate(), {
    gpu,
    dtype: "f32",
    maxContext: 64,
  });
  try {
    const run = async (events: AsyncIterable<GenerationEvent>) => {
      for await (const ev of events) if (ev.type === "done") return ev.result;
      throw new Error("no result");
    };
    // The same model: a raw prompt continues as it does with the template there.
    const prompt = "The capital of France is";
    const want = await run((await pipeline).complete(prompt, { maxNewTokens: 4, temperature: 0 }));
    const got = await run(bare.complete(prompt, { maxNewTokens: 4, temperature: 0 }));
    assert.equal(got.text, want.text);
    assert.deepEqual(await bare.tokenize({ prompt }), await (await pipeline).tokenize({ prompt }));
    await bare.checkPrompt(prompt);
    // Every path that renders chat messages says what is missing, and what to do.
    const refused = (e: Error) =>
      e instanceof NoChatTemplateError && /no chat template.*send a raw prompt/.test(e.message);
    await assert.rejects(run(bare.generate(TEXT)), refused, "generate");
    await assert.rejects(bare.chat(TEXT), refused, "chat");
    await assert.rejects(bare.checkChat(TEXT), refused, "checkChat");
    await assert.rejects(bare.tokenize({ messages: TEXT }), refused, "tokenize");
    await assert.rejects(bare.forward(TEXT), refused, "forward");
    assert.equal(bare.defaultSystemPrompt, undefined);
    // A refused chat held no place in line: the next raw prompt runs.
    assert.equal(
      (await run(bare.complete(prompt, { maxNewTokens: 4, temperature: 0 }))).text,
      want.text,
    );
  } finally {
    bare.dispose();
  }
});

addEventListener("unload", () => pipeline.then((p) => p.dispose()));

Deno.test("Pipeline.chat() responseFormat json_object keeps the answer the start of a JSON object", async () => {
  const p = await pipeline;
  // Unconstrained, the tiny random model's answer is no JSON at all.
  const free = await p.chat(TEXT, { maxNewTokens: 30 });
  assert.equal(stateAfter(free.text), undefined);
  // Constrained: every prefix parses on, greedy and sampled alike.
  for (const options of [{}, { temperature: 1, seed: 7 }, { temperature: 1.5, seed: 8, topK: 0 }]) {
    let streamed = "";
    let result;
    for await (
      const ev of p.generate(TEXT, { ...options, maxNewTokens: 38, responseFormat: "json_object" })
    ) {
      if (ev.type === "delta") streamed += ev.text;
      else result = ev.result;
    }
    assert.ok(result);
    assert.equal(streamed, result.text);
    assert.ok(
      stateAfter(result.text),
      `not the start of an object: ${JSON.stringify(result.text)}`,
    );
    assert.ok(result.text.trimStart().startsWith("{"));
    if (result.finishReason === "stop") JSON.parse(result.text);
    else assert.equal(result.finishReason, "length");
  }
});

Deno.test("Pipeline.chat() responseFormat json_object ends only once the object is closed", async () => {
  const p = await pipeline;
  const id = (text: string) => p.tokenizer.encode(text)[0];
  const [eos] = p.generationConfig.eosTokenIds;
  // "}" and the end id favoured over everything: the answer closes its object at once, then ends
  // (the end id held back until then: favoured from the start, it would end an empty answer).
  const r = await p.chat(TEXT, {
    maxNewTokens: 30,
    responseFormat: "json_object",
    logitBias: { [id("}")]: 100, [eos]: 100 },
  });
  assert.equal(r.finishReason, "stop");
  assert.equal(r.text, "{}");
  // "{}" is one token of this vocabulary; the end id counts too.
  assert.equal(r.usage.completionTokens, p.tokenizer.encode("{}").length + 1);
  // Without JSON mode the same bias ends at once, with no text.
  const free = await p.chat(TEXT, { maxNewTokens: 30, logitBias: { [eos]: 100 } });
  assert.equal(free.text, "");
});

Deno.test("Pipeline.generate() responseFormat json_object continues a final message's object, or refuses", async () => {
  const p = await pipeline;
  const begun: ChatMessage[] = [...TEXT, { role: "assistant", content: '{"sea": ' }];
  const r = await p.chat(begun, {
    maxNewTokens: 20,
    responseFormat: "json_object",
    continueFinalMessage: true,
  });
  assert.ok(stateAfter('{"sea": ' + r.text), JSON.stringify(r.text));
  await assert.rejects(
    p.chat([...TEXT, { role: "assistant", content: "Sure: {" }], {
      responseFormat: "json_object",
      continueFinalMessage: true,
    }),
    /"Sure: \{" does not begin a JSON object/,
  );
  await assert.rejects(
    p.chat(TEXT, { responseFormat: "json_schema" as "json_object" }),
    /responseFormat must be "text", "json_object", .* got "json_schema"/,
  );
  await assert.rejects(
    p.chat(TEXT, { responseFormat: "json_object", ignoreEos: true }),
    /ignoreEos leaves none/,
  );
});

Deno.test("Pipeline.chat() responseFormat jsonSchema with freeAfter: an instance, or text from the prefix on", async () => {
  const p = await pipeline;
  const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    // The prefix as one word the model may pick: "Write" begins the prompt's own text.
    const r = await p.chat(TEXT, {
      temperature: 1.5,
      seed,
      maxNewTokens: 12,
      responseFormat: { jsonSchema: schema, freeAfter: "Write" },
    });
    if (!r.text.startsWith("Write")) {
      assert.equal(r.finishReason, "stop", r.text);
      assert.equal(typeof JSON.parse(r.text).ok, "boolean", r.text);
    }
  }
  // Continued from the prefix, the answer is free: the tiny model's own words, to the limit.
  const begun: ChatMessage[] = [...TEXT, { role: "assistant", content: "Write" }];
  const free = await p.chat(begun, {
    maxNewTokens: 6,
    responseFormat: { jsonSchema: schema, freeAfter: "Write" },
    continueFinalMessage: true,
  });
  const plain = await p.chat(begun, { maxNewTokens: 6, continueFinalMessage: true });
  assert.equal(free.text, plain.text);
  assert.equal(free.finishReason, "length");
  // A turn whose words, call and result went before (the server's tool turn continued): held
  // from the call on — after its result the answer is the schema's again.
  const turn: ChatMessage[] = [...TEXT, {
    role: "assistant",
    content: "Let me check.\nWrite: f\nArgs: {}\nResult: sunny\nDone",
  }];
  const again = await p.chat(turn, {
    maxNewTokens: 12,
    responseFormat: { jsonSchema: schema, freeAfter: "Write", freeUntil: "Done" },
    continueFinalMessage: true,
  });
  const rest = again.text.replace(/^: ?/, "");
  if (!rest.startsWith("Write")) {
    assert.equal(again.finishReason, "stop", again.text);
    assert.equal(typeof JSON.parse(rest).ok, "boolean", again.text);
  }
});

Deno.test("Pipeline.chat() responseFormat jsonSchema and choice: the answer is an instance, whole", async () => {
  const p = await pipeline;
  const schema = {
    type: "object",
    properties: { answer: { enum: ["yes", "no"] }, sure: { type: "boolean" }, n: { type: "null" } },
    required: ["answer", "sure"],
  };
  for (const options of [{}, { temperature: 1, seed: 3 }, { temperature: 1.5, seed: 4, topK: 0 }]) {
    const r = await p.chat(TEXT, {
      ...options,
      maxNewTokens: 38,
      responseFormat: { jsonSchema: schema },
    });
    assert.equal(r.finishReason, "stop", r.text);
    const v = JSON.parse(r.text);
    assert.deepEqual(Object.keys(v).slice(0, 2), ["answer", "sure"]);
    assert.ok(["yes", "no"].includes(v.answer) && typeof v.sure === "boolean", r.text);
    const choice = await p.chat(TEXT, {
      ...options,
      maxNewTokens: 38,
      responseFormat: { choice: ["sunny", "rainy", "no idea"] },
    });
    assert.equal(choice.finishReason, "stop");
    assert.ok(["sunny", "rainy", "no idea"].includes(choice.text), choice.text);
  }
  // A continued answer goes on from its start; one the schema cannot continue is refused.
  const begun: ChatMessage[] = [...TEXT, { role: "assistant", content: '{"answer": "n' }];
  const r = await p.chat(begun, {
    maxNewTokens: 30,
    responseFormat: { jsonSchema: schema },
    continueFinalMessage: true,
  });
  assert.equal(JSON.parse('{"answer": "n' + r.text).answer, "no");
  await assert.rejects(
    p.chat([...TEXT, { role: "assistant", content: '{"sure": ' }], {
      responseFormat: { jsonSchema: schema },
      continueFinalMessage: true,
    }),
    /the final message "\{\\"sure\\": " does not begin an answer it allows/,
  );
});

Deno.test("Pipeline.chat() responseFormat: a stop id that is text ends the answer only once it is whole; a final message's text parts continue together", async () => {
  const p = await pipeline;
  const quote = p.tokenizer.encode('"')[0];
  for (const seed of [3, 4, 5]) {
    const r = await p.chat(TEXT, {
      responseFormat: "json_object",
      stopTokenIds: [quote],
      logitBias: { [quote]: 100 },
      temperature: 1.5,
      seed,
      maxNewTokens: 30,
    });
    // `"` may be drawn inside the object (as text), never as the end of an unclosed one.
    if (r.finishReason === "stop") JSON.parse(r.text);
    else assert.equal(r.finishReason, "length");
    assert.ok(stateAfter(r.text), r.text);
  }
  const parts: ChatMessage[] = [...TEXT, {
    role: "assistant",
    content: [{ type: "text", text: "{" }, { type: "text", text: '"sea": ' }],
  }];
  const r = await p.chat(parts, {
    responseFormat: "json_object",
    continueFinalMessage: true,
    maxNewTokens: 20,
  });
  assert.ok(stateAfter('{"sea": ' + r.text), r.text);
});

Deno.test("Pipeline.generate(): a stop id is text where a format needs it, and ends the answer once whole", async () => {
  const p = await pipeline;
  const [b] = p.tokenizer.encode("b");
  // After "a" only "b" continues: held back as a stop id it left no token, and a random draw
  // ended an answer that did not match ("a_Port", finish "stop"). Now "b" is the answer's text,
  // and where the answer is whole a stop id (or the eos) ends it.
  const ab = await p.chat(TEXT, {
    maxNewTokens: 4,
    responseFormat: { regex: "ab" },
    stopTokenIds: [b],
  });
  assert.deepEqual([ab.text, ab.finishReason], ["ab", "stop"]);
  for (const regex of ["a[bc]", "abc"]) {
    const r = await p.chat(TEXT, { maxNewTokens: 4, responseFormat: { regex }, stopTokenIds: [b] });
    assert.ok(new RegExp(`^${regex}$`).test(r.text) && r.finishReason === "stop", r.text);
  }
  // JSON mode: {"a":tru goes on only with "e" (this vocabulary has no "e," nor "e}"); as a stop
  // id it was held back, and greedy answered "!" (id 0) as "stop", a draw a padding id.
  const [e] = p.tokenizer.encode("e");
  const tru: ChatMessage[] = [...TEXT, { role: "assistant", content: '{"a":tru' }];
  for (const temperature of [0, 1]) {
    const r = await p.chat(tru, {
      responseFormat: "json_object",
      continueFinalMessage: true,
      stopTokenIds: [e],
      maxNewTokens: 8,
      temperature,
      seed: 1,
    });
    assert.ok(r.text.startsWith("e") && stateAfter('{"a":tru' + r.text), r.text);
    if (r.finishReason === "stop") assert.deepEqual(JSON.parse('{"a":tru' + r.text), { a: true });
    else assert.equal(r.finishReason, "length");
  }
  // A stop id that only closes: "]" beside an array ran the answer to maxNewTokens, never
  // allowed as the array's end. Now it closes the array, then ends the answer.
  const [close] = p.tokenizer.encode("]");
  const arr = await p.chat(TEXT, {
    responseFormat: { jsonSchema: { type: "array", items: { type: "integer" } } },
    stopTokenIds: [close],
    logitBias: { [close]: 100 },
    maxNewTokens: 10,
  });
  assert.ok(Array.isArray(JSON.parse(arr.text)), arr.text);
  assert.deepEqual([arr.finishReason, arr.stopReason], ["stop", close]);
});

Deno.test("Pipeline.complete() holds a raw prompt's continuation to a format too", async () => {
  const p = await pipeline;
  const r = await p.chat(TEXT, { maxNewTokens: 10, responseFormat: { choice: ["calm", "rough"] } });
  let text = "";
  for await (
    const ev of p.complete("The sea today is", {
      maxNewTokens: 10,
      responseFormat: { choice: ["calm", "rough"] },
    })
  ) if (ev.type === "done") text = ev.result.text;
  assert.ok(["calm", "rough"].includes(text) && ["calm", "rough"].includes(r.text), text);
  await assert.rejects(
    p.checkPrompt("x", {
      responseFormat: { jsonSchema: { type: "string", pattern: "(a)\\1" } },
    }),
    /responseFormat: schema\.pattern "\(a\)\\\\1" at 5: backreferences are not supported/,
  );
});

Deno.test("Pipeline.chat() responseFormat regex: the answer matches the pattern whole", async () => {
  const p = await pipeline;
  for (const seed of [1, 2, 3]) {
    const r = await p.chat(TEXT, {
      temperature: 1,
      seed,
      maxNewTokens: 30,
      responseFormat: { regex: "(calm|rough), \\d{1,2} knots" },
    });
    assert.equal(r.finishReason, "stop", r.text);
    assert.match(r.text, /^(calm|rough), \d{1,2} knots$/);
  }
});

Deno.test("Pipeline.tokenize() takes { prompt } or { messages }, and says so for anything else", async () => {
  const p = await pipeline;
  assert.deepEqual(await p.tokenize({ prompt: "Hello world" }), [9707, 1879]);
  for (const input of ["Hello world", null, 3]) {
    await assert.rejects(
      p.tokenize(input as never),
      (e) =>
        e instanceof InvalidInputError &&
        /input must be \{ prompt: <text> \} or \{ messages/.test(e.message),
    );
  }
});

Deno.test("Pipeline.checkChat() refuses what generate() would, before its turn, counting images from their sizes", async () => {
  const p = await pipeline; // a 64-token context
  const png = await Deno.readFile(`${TINY_DIR}reference/case0_0.png`); // 56 × 56: 4 image tokens
  const ask = (image: Uint8Array): ChatMessage[] => [{
    role: "user",
    content: [{ type: "image", image }, { type: "text", text: "What is it?" }],
  }];
  await p.checkChat(TEXT);
  await p.checkChat(ask(png)); // decoded for its size
  // Sizes in place of the images: one stand-in byte is never read.
  const standIn = new Uint8Array(1);
  await p.checkChat(ask(standIn), {}, [{ width: 56, height: 56 }]);
  await assert.rejects(
    p.checkChat(ask(standIn), {}, [{ width: 2000, height: 1500 }]),
    (e) => e instanceof ContextLengthError && /^Image 0: /.test(e.message),
  );
  // The same refusals, in the same words, as generate() at its start.
  const refusals: [ChatMessage[], GenerateOptions][] = [
    [TEXT, { maxNewTokens: 60 }],
    [TEXT, { responseFormat: { regex: "(a" } }],
    [TEXT, { logitBias: { 999999: 1 } }],
    [[{ role: "user", content: [{ type: "text" } as never] }], {}],
  ];
  for (const [messages, options] of refusals) {
    const said = await p.chat(messages, options).then(() => "nothing", (e: Error) => e.message);
    await assert.rejects(
      p.checkChat(messages, options),
      (e) => e instanceof InvalidInputError && e.message === said,
      said,
    );
  }
  // Videos generate() refuses, checkChat() and tokenize() refuse too (they read only sizes).
  const frame = (w: number, h: number) => ({
    width: w,
    height: h,
    data: new Uint8Array(w * h * 3),
  });
  const video = (v: Record<string, unknown>): ChatMessage[] => [{
    role: "user",
    content: [{ type: "video", video: [frame(56, 56), frame(56, 56)], ...v } as never],
  }];
  for (
    const bad of [
      video({ minPixels: 1.5 }),
      video({ maxPixels: 0 }),
      video({ video: [frame(56, 56), frame(84, 56)] }),
      video({ video: [frame(56, 56), frame(56, 56), new Uint8Array([1, 2, 3])] }),
    ]
  ) {
    await assert.rejects(p.chat(bad, { maxNewTokens: 1 }), InvalidInputError);
    await assert.rejects(p.checkChat(bad), InvalidInputError);
    await assert.rejects(p.tokenize({ messages: bad }), InvalidInputError);
  }
  // tokenize() counts from sizes too: the same ids as from the decoded image.
  assert.deepEqual(
    await p.tokenize({ messages: ask(standIn), imageSizes: [{ width: 56, height: 56 }] }),
    await p.tokenize({ messages: ask(png) }),
  );
});

Deno.test("Pipeline.dispose() while calls prepare their prompt: a generation ends with abort, tokenize answers, forward says the pipeline was disposed", async () => {
  const p = await Pipeline.load(TINY_DIR, { gpu: await sharedGpu(), dtype: "f32", maxContext: 64 });
  const png = await Deno.readFile(`${TINY_DIR}reference/case0_0.png`);
  const ask: ChatMessage[] = [{
    role: "user",
    content: [{ type: "image", image: png }, { type: "text", text: "What is it?" }],
  }];
  const chat = p.chat(ask, { maxNewTokens: 2 });
  const ids = p.tokenize({ messages: ask });
  const forward = p.forward(ask);
  p.dispose(); // all three are decoding the image
  assert.equal((await chat).finishReason, "abort");
  assert.ok((await ids).length > 0);
  await assert.rejects(
    forward,
    (e) => e instanceof InvalidInputError && /pipeline .* was disposed/.test(e.message),
  );
  await assert.rejects(
    p.chat(TEXT),
    (e) => e instanceof InvalidInputError && /disposed/.test(e.message),
  );
  // Alone (so the memory is freed the moment its prompt is prepared): a format that continues
  // the final message reads the tokenizer after that.
  const q = await Pipeline.load(TINY_DIR, { gpu: await sharedGpu(), dtype: "f32", maxContext: 64 });
  const continued = q.chat([...ask, { role: "assistant", content: "{" }], {
    maxNewTokens: 2,
    continueFinalMessage: true,
    responseFormat: "json_object",
  });
  q.dispose();
  assert.equal((await continued).finishReason, "abort");
});
