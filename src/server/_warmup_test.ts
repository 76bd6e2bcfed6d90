import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadEngine } from "./_engine.ts";
import { grayPng, warmUp, WARMUP_SIZES } from "./_warmup.ts";
import { Pipeline } from "../pipeline.ts";
import { decodeImage } from "../image.ts";
import type { GenerateOptions, GenerationResult } from "../generate/types.ts";
import { tinyWithoutTemplate } from "../model/_fixture.ts";

const TINY = fileURLToPath(new URL("../../tests/fixtures/tiny-qwen2vl", import.meta.url));

Deno.test("grayPng() encodes a PNG that decodes to its size, every pixel 128", async () => {
  for (const [w, h] of [[1, 1], [3, 2], [644, 476]]) {
    const png = await grayPng(w, h);
    const image = await decodeImage(png);
    assert.equal(image.width, w);
    assert.equal(image.height, h);
    assert.equal(image.data.length, w * h * 3);
    assert.ok(image.data.every((v) => v === 128));
  }
});

Deno.test("loadEngine({ warmUp }) compiles what a first image request needs and leaves no prompt cache behind", async () => {
  const engine = await loadEngine(TINY, { progress: false, warmUp: true });
  const compiled = engine.model.gpu.pipelineCount;
  try {
    assert.ok(compiled > 0, "the warm-up compiled pipelines");
    // A photo of each warm-up size with another question, and logprobs with a count of
    // alternatives the warm-up did not ask for: nothing left to compile, nothing cached.
    for (const [w, h] of WARMUP_SIZES) {
      let result: GenerationResult | undefined;
      for await (
        const ev of engine.generate([{
          role: "user",
          content: [{ type: "image", image: await grayPng(w, h) }, {
            type: "text",
            text: `What is this ${w} × ${h} picture?`,
          }],
        }], { maxNewTokens: 4, temperature: 0, logprobs: true, topLogprobs: 5 + w % 7 })
      ) if (ev.type === "done") result = ev.result;
      assert.equal(engine.model.gpu.pipelineCount, compiled, `no pipeline compiled at ${w} × ${h}`);
      // Held to a format too (JSON mode, a schema): nothing left to compile.
      for (const responseFormat of ["json_object", { jsonSchema: { enum: [1, 2] } }] as const) {
        for await (
          const _ of engine.generate([{ role: "user", content: `${w}?` }], {
            maxNewTokens: 3,
            responseFormat,
          })
        );
        assert.equal(engine.model.gpu.pipelineCount, compiled, JSON.stringify(responseFormat));
      }
      assert.ok(result!.usage.imageTokens > 0);
      assert.equal(result!.usage.cachedTokens, 0, "the warm-up's prompts were not cached");
      await engine.clearPromptCache();
    }
    // Short raw prompts, 2 to 16 tokens (a prefill of that many rows: the few-row GEMV's
    // buckets): nothing left to compile either.
    for (const n of [2, 3, 5, 9, 16]) {
      for await (const _ of engine.complete(Array(n).fill(9707), { maxNewTokens: 2 }));
      assert.equal(engine.model.gpu.pipelineCount, compiled, `a ${n}-token prompt`);
    }
  } finally {
    engine.dispose();
  }
  const cold = await loadEngine(TINY, { progress: false });
  try {
    const atLoad = cold.model.gpu.pipelineCount; // the weight upload's own kernels
    assert.ok(atLoad < compiled, `without the warm-up ${atLoad} at load, with it ${compiled}`);
  } finally {
    cold.dispose();
  }
});

Deno.test("loadEngine({ warmUp, parallel: 2 }) also compiles what generations decoding as one batch take", async () => {
  const engine = await loadEngine(TINY, { progress: false, warmUp: true, parallel: 2 });
  try {
    assert.equal(engine.batchDecode, true);
    const compiled = engine.model.gpu.pipelineCount;
    const ends = await Promise.all([0, 1].map(async (i) => {
      let r: GenerationResult | undefined;
      const chat = [{ role: "user" as const, content: `Question ${i}?` }];
      for await (const ev of engine.generate(chat, { maxNewTokens: 6, temperature: 0 })) {
        if (ev.type === "done") r = ev.result;
      }
      return r!.usage.completionTokens;
    }));
    assert.deepEqual(ends, [6, 6]);
    assert.equal(engine.model.gpu.pipelineCount, compiled, "nothing compiled for the batch");
  } finally {
    engine.dispose();
  }
});

Deno.test("warmUp() stops where the model's context cannot hold its prompt, and still leaves no cache", async () => {
  // 600 tokens hold the first warm-up prompt (one 644 × 476 image), not the second (two images).
  const pipeline = await Pipeline.load(TINY, { maxContext: 600 });
  try {
    const before = pipeline.model.gpu.pipelineCount;
    await warmUp(pipeline);
    assert.ok(pipeline.model.gpu.pipelineCount > before, "the first prompt ran");
    let result: GenerationResult | undefined;
    for await (
      const ev of pipeline.generate([{ role: "user", content: "Describe the image." }], {
        maxNewTokens: 1,
      })
    ) if (ev.type === "done") result = ev.result;
    assert.equal(result!.usage.cachedTokens, 0);
  } finally {
    pipeline.dispose();
  }
});

Deno.test("warmUp() of a model without a chat template warms what raw prompts take, and leaves no cache", async () => {
  const pipeline = await Pipeline.load(await tinyWithoutTemplate());
  try {
    const before = pipeline.model.gpu.pipelineCount;
    await warmUp(pipeline); // chat messages would throw NoChatTemplateError: it sends none
    const compiled = pipeline.model.gpu.pipelineCount;
    assert.ok(compiled > before, `${before} pipelines at load, ${compiled} after the warm-up`);
    // A raw prompt with other logprobs, and one held to a format: nothing left to compile.
    const raw = async (prompt: string, options: GenerateOptions) => {
      let result: GenerationResult | undefined;
      for await (const ev of pipeline.complete(prompt, { maxNewTokens: 3, ...options })) {
        if (ev.type === "done") result = ev.result;
      }
      return result!;
    };
    const first = await raw("Describe the sea.", { logprobs: true, topLogprobs: 5 });
    assert.equal(first.usage.cachedTokens, 0, "the warm-up's prompts were not cached");
    await raw("A JSON object:", { responseFormat: "json_object" });
    assert.equal(pipeline.model.gpu.pipelineCount, compiled);
  } finally {
    pipeline.dispose();
  }
});
