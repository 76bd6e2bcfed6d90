import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { sharedGpu } from "../gpu/device.ts";
import { Qwen2VLModel, type Session } from "../model/qwen2vl.ts";
import { readReferenceCase, TINY_DIR } from "../model/_fixture.ts";
import { Tokenizer } from "../tokenizer.ts";
import { runGeneration } from "./generate.ts";
import { PromptCache } from "./prompt_cache.ts";
import { parseGenerationConfig, resolveOptions } from "./options.ts";
import type { PreparedPrompt } from "./prompt.ts";
import type { GenerateOptions, GenerationEvent, GenerationResult } from "./types.ts";

const CONFIG = parseGenerationConfig(
  JSON.parse(await Deno.readTextFile(`${TINY_DIR}generation_config.json`)),
);
// The full path (PNG → pipeline → 12 greedy ids) is tests/generate_test.ts; these check what
// runGeneration adds around the decode loop. A 30-token context leaves case 3's 26-token prompt
// room for 4 new tokens, which keeps the test fast on the software adapter.
const CONTEXT = 30;
const model = sharedGpu().then((gpu) =>
  Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", maxContext: CONTEXT })
);
const tokenizer = Tokenizer.load(TINY_DIR);

async function promptOf(c: number): Promise<PreparedPrompt> {
  const ref = await readReferenceCase(c);
  return {
    inputIds: ref.inputIds,
    pixelValues: ref.pixelValues,
    gridThw: ref.gridThw,
    imageTokens: ref.gridThw.reduce((a, [t, h, w]) => a + t * h * w / 4, 0),
  };
}

async function generate(
  c: number,
  opts: GenerateOptions,
  onSession?: (s: Session) => void,
  onEvent?: (e: GenerationEvent) => void,
): Promise<GenerationResult> {
  let result: GenerationResult | undefined;
  const events = runGeneration(
    await model,
    await tokenizer,
    await promptOf(c),
    resolveOptions(opts, CONFIG),
    {
      onSession,
    },
  );
  for await (const e of events) {
    onEvent?.(e);
    if (e.type === "done") result = e.result;
  }
  assert.ok(result);
  return result;
}

Deno.test("runGeneration() lowers the default budget to the context left after the prompt", async () => {
  const ref = await readReferenceCase(3);
  let session: Session | undefined;
  // No maxNewTokens: generation_config's (or the 2048 default) is a cap, not a request.
  const r = await generate(3, {}, (s) => (session = s));
  assert.equal(r.finishReason, "length");
  assert.equal(r.usage.completionTokens, CONTEXT - ref.inputIds.length);
  assert.equal(r.text, " retired".repeat(CONTEXT - ref.inputIds.length));
  assert.equal(session?.maxTokens, CONTEXT);
  assert.ok(session?.disposed, "the KV cache is freed at the end");
});

Deno.test("runGeneration() refuses an explicit maxNewTokens over the context left, naming what fits", async () => {
  // Case 3's 26-token prompt leaves 4 of the 30; asking for 5 is the caller's error (OpenAI: 400).
  let session: Session | undefined;
  await assert.rejects(
    () => generate(3, { maxNewTokens: 5 }, (s) => (session = s)),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /maxNewTokens 5.*26 tokens.*holds 30.*at most 4/.test(e.message),
  );
  assert.equal(session, undefined, "no session is created");
  const r = await generate(3, { maxNewTokens: 4 });
  assert.equal(r.usage.completionTokens, 4);
});

Deno.test("runGeneration() refuses a prompt that fills the whole context", async () => {
  await assert.rejects(
    () => generate(0, {}),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /35 tokens \(4 of them image tokens\).*holds 30/.test(e.message),
  );
});

Deno.test("runGeneration() frees the session when the consumer walks away mid-stream", async () => {
  let session: Session | undefined;
  const events = runGeneration(
    await model,
    await tokenizer,
    await promptOf(3),
    resolveOptions({ maxNewTokens: 4 }, CONFIG),
    { onSession: (s) => (session = s) },
  );
  for await (const e of events) if (e.type === "delta") break;
  assert.ok(session?.disposed);
});

/** Counts queue submits from now on, calling `onSubmit` after each; dispose to stop. */
async function watchSubmits(onSubmit: (count: number) => void = () => {}) {
  const queue = (await model).gpu.device.queue;
  const submit = queue.submit;
  const watch = { count: 0, [Symbol.dispose]: () => void (queue.submit = submit) };
  queue.submit = (buffers) => {
    submit.call(queue, buffers);
    onSubmit(++watch.count);
  };
  return watch;
}

// Case 0 (35 tokens, one image) in 4-token prefill chunks: a prefill of 9 passes.
const chunked = model.then((m) =>
  Qwen2VLModel.load(TINY_DIR, { gpu: m.gpu, dtype: "f32", maxContext: 64, prefillChunk: 4 })
);

/** Runs case 0 (or `prompt`) on the chunked model, collecting its events. */
async function generateChunked(
  signal: AbortSignal,
  onSession: (s: Session) => void,
  hooks: { promptCache?: PromptCache; prompt?: PreparedPrompt; maxNewTokens?: number } = {},
) {
  const events: GenerationEvent[] = [];
  const { maxNewTokens } = hooks;
  const stream = runGeneration(
    await chunked,
    await tokenizer,
    hooks.prompt ?? await promptOf(0),
    resolveOptions({ signal, ...(maxNewTokens ? { maxNewTokens } : {}) }, CONFIG),
    { onSession, promptCache: hooks.promptCache },
  );
  for await (const e of stream) events.push(e);
  return events;
}

Deno.test("runGeneration() with an already aborted signal ends with abort before the vision tower", async () => {
  let session: Session | undefined;
  await chunked;
  using submits = await watchSubmits();
  const events = await generateChunked(AbortSignal.abort(), (s) => (session = s));
  assert.deepEqual(events.map((e) => e.type === "done" && e.result.finishReason), ["abort"]);
  assert.equal(submits.count, 0, "no GPU work at all");
  assert.equal(session, undefined);
});

Deno.test("runGeneration() ends with abort mid-prefill: the rest of the prompt never reaches the GPU", async () => {
  const controller = new AbortController();
  let session: Session | undefined;
  let prefillSubmits = 0;
  await chunked;
  using _ = await watchSubmits(() => {
    if (session && ++prefillSubmits === 2) controller.abort();
  });
  const events = await generateChunked(controller.signal, (s) => (session = s));
  assert.deepEqual(events.map((e) => e.type === "done" && e.result.finishReason), ["abort"]);
  assert.ok(events[0].type === "done");
  assert.equal(events[0].result.usage.completionTokens, 0);
  assert.equal(events[0].result.usage.imageTokens, 4);
  assert.equal(prefillSubmits, 2, "no chunk after the abort, no decode batch");
  assert.ok(session?.disposed, "the KV cache is freed");
});

// The prompt cache holds case 0's first 12 tokens (the text before its image) from a 12-token
// generation of one new token; case 0 then prefills from row 12 in 4-token chunks and is aborted
// at its second: the result says the cache served 12 prompt tokens.
Deno.test("runGeneration() aborted mid-prefill reports the prompt tokens the cache served", async () => {
  const model = await chunked;
  const cache = new PromptCache(model);
  try {
    const full = await promptOf(0);
    const head: PreparedPrompt = {
      inputIds: full.inputIds.slice(0, 12),
      pixelValues: new Float32Array(0),
      gridThw: [],
      imageTokens: 0,
    };
    const first = await generateChunked(new AbortController().signal, () => {}, {
      promptCache: cache,
      prompt: head,
      maxNewTokens: 1,
    });
    const done = first.at(-1);
    assert.ok(done?.type === "done" && done.result.usage.cachedTokens === 0);
    assert.equal(cache.heldTokens, 12);
    const controller = new AbortController();
    let session: Session | undefined;
    let prefillSubmits = 0;
    using _ = await watchSubmits(() => {
      if (session && ++prefillSubmits === 2) controller.abort();
    });
    const events = await generateChunked(controller.signal, (s) => (session = s), {
      promptCache: cache,
    });
    assert.equal(events.length, 1);
    assert.ok(events[0].type === "done");
    assert.equal(events[0].result.finishReason, "abort");
    assert.equal(events[0].result.usage.cachedTokens, 12);
    assert.equal(prefillSubmits, 2);
  } finally {
    cache.close();
  }
});

// A claim on rows a running generation holds (PromptCache.share) skips the tower for the images
// among them; where that generation ended before the claim opened, the claim holds less, and the
// images it no longer holds are encoded then.
Deno.test("runGeneration() encodes the images a claim holds fewer of once opened than it claimed", async () => {
  const m = await chunked; // case 0 (an image, 20 tokens) fits its 64-token context
  const prompt = await promptOf(0);
  const options = { maxNewTokens: 3, temperature: 0 };
  const run = async (promptCache?: PromptCache) => {
    let result: GenerationResult | undefined;
    for await (
      const e of runGeneration(m, await tokenizer, prompt, resolveOptions(options, CONFIG), {
        ...(promptCache ? { promptCache } : {}),
      })
    ) {
      if (e.type === "done") result = e.result;
    }
    assert.ok(result);
    return result;
  };
  const alone = await run();
  const kept: Session[] = [];
  const shared: number[] = [];
  const none = { tokens: 0, images: 0 };
  const cache = {
    claim: () => ({
      cached: { tokens: prompt.inputIds.length - 2, images: 1 }, // what the vanished donor held
      open: () => Promise.resolve({ session: m.createSession(64), cached: none }),
      cancel: () => {},
    }),
    share: (_: Session, held: { ids: ArrayLike<number> }) => shared.push(held.ids.length),
    keep: (s: Session) => kept.push(s),
  } as unknown as PromptCache;
  const result = await run(cache);
  assert.equal(result.usage.cachedTokens, 0);
  assert.ok(result.timings.visionMs > 0, "the image encoded after all");
  assert.equal(result.text, alone.text);
  assert.deepEqual(shared, [prompt.inputIds.length], "shared once prefilled");
  assert.equal(kept.length, 1);
  kept[0].dispose();
});

Deno.test("runGeneration(): a q4 prompt one token past a prefill chunk answers the same again from the prompt cache", async () => {
  // 9 tokens in 8-token chunks: 7 + 2 (a one-token last chunk would run the decode's GEMV, whose
  // int8 activations round otherwise than the 2-row rerun of the cache's — a helper found a
  // 513-token q4 prompt answered differently its second time: 512 + 1 against 2).
  const gpu = await sharedGpu();
  const q4 = await Qwen2VLModel.load(TINY_DIR, {
    gpu,
    dtype: "f32",
    quant: "q4",
    maxContext: CONTEXT,
    prefillChunk: 8,
  });
  const cache = new PromptCache(q4);
  try {
    const prompt: PreparedPrompt = {
      inputIds: Int32Array.from({ length: 9 }, (_, i) => 1000 + 7919 * i % 50000),
      pixelValues: new Float32Array(0),
      gridThw: [],
      imageTokens: 0,
    };
    const options = resolveOptions({ maxNewTokens: 4, logprobs: true, topLogprobs: 5 }, CONFIG);
    const run = async () => {
      let result: GenerationResult | undefined;
      for await (
        const e of runGeneration(q4, await tokenizer, prompt, options, { promptCache: cache })
      ) {
        if (e.type === "done") result = e.result;
      }
      return result!;
    };
    const [first, again] = [await run(), await run()];
    assert.equal(first.usage.cachedTokens, 0);
    assert.equal(again.usage.cachedTokens, 7);
    assert.equal(again.text, first.text);
    assert.deepEqual(again.logprobs, first.logprobs);
  } finally {
    cache.close();
    q4.dispose();
  }
});

addEventListener("unload", () => {
  chunked.then((m) => m.dispose());
  model.then((m) => m.dispose());
});
