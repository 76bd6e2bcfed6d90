/**
 * Model-level parity with transformers 5 (fp32 compute on the bf16 weights) on the tiny fixture
 * model, for every reference case: rope positions, image embeddings, logits at every prompt
 * position, and 12 greedy steps through the real decode path (GPU state buffer, token ring, GPU
 * sampler; one readback at the end).
 */
import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { readF32, readU32 } from "../src/gpu/buffers.ts";
import type { WeightDType } from "../src/gpu/tensor.ts";
import type { KvDType } from "../kernels/kv_cache.ts";
import { Qwen2VLModel, type Session } from "../src/model/qwen2vl.ts";
import { getRopeIndex, type GridThw } from "../src/model/rope_index.ts";
import {
  CASES,
  readReference,
  readReferenceCase,
  readVideoCases,
  type ReferenceCase,
  SYNTHETIC_DIR,
  TINY_DIR,
} from "../src/model/_fixture.ts";
import { GREEDY } from "../kernels/sample.ts";
import { SessionRun } from "../src/generate/session_run.ts";
import { ChatProcessor } from "../src/generate/processor.ts";
import { openModelSource } from "../src/model_files.ts";

const STEPS = 12;

const models = new Map<string, Promise<Qwen2VLModel>>();
/** The tiny model with `dtype` weights and a KV cache of `kv` (default: the loader's). */
function tiny(dtype: WeightDType, kv?: KvDType): Promise<Qwen2VLModel> {
  const key = `${dtype}/${kv}`;
  let m = models.get(key);
  if (!m) {
    m = sharedGpu().then((gpu) =>
      Qwen2VLModel.load(TINY_DIR, { gpu, dtype, maxContext: 512, kvCacheDtype: kv })
    );
    models.set(key, m);
  }
  return m;
}

/**
 * Greedy generation of `steps` tokens the way the decode loop runs it: the sampler after prefill,
 * then (decode step, sampler, advance) × (steps − 1), all in one command buffer; one readback.
 * @returns the ring's tokens and the max processed score of each step
 */
async function greedy(
  model: Qwen2VLModel,
  s: Session,
  steps: number,
): Promise<{ ids: Uint32Array; scores: Float32Array }> {
  const gpu = model.gpu;
  const run = new SessionRun(model, s, GREEDY);
  const enc = gpu.device.createCommandEncoder();
  run.record(enc, 0, steps);
  gpu.device.queue.submit([enc.finish()]);
  const ids = await readU32(gpu, s.tokens, steps);
  const scores = await readF32(gpu, s.scores, steps);
  run.dispose();
  return { ids, scores };
}

/** Row-wise argmax (lowest index wins ties, like torch.argmax) and max of (rows, cols). */
function rowArgMax(
  x: Float32Array,
  rows: number,
  cols: number,
): { arg: Int32Array; max: Float32Array } {
  const arg = new Int32Array(rows), max = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let a = 0, m = -Infinity;
    for (let c = 0; c < cols; c++) {
      if (x[r * cols + c] > m) {
        m = x[r * cols + c];
        a = c;
      }
    }
    arg[r] = a;
    max[r] = m;
  }
  return { arg, max };
}

function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

/**
 * Checks a prompt's logits against the reference: the max at every position within `tol` of
 * max |logit_last|, the argmax at every position exactly (lowest index on ties, as torch), and
 * the whole last row.
 */
function checkLogits(all: Float32Array, ref: ReferenceCase, V: number, tol: number, what: string) {
  const S = ref.inputIds.length;
  const scale = maxAbs(ref.logitsLast);
  const { arg, max } = rowArgMax(all, S, V);
  for (let i = 0; i < S; i++) {
    const err = Math.abs(max[i] - ref.logitsMax[i]);
    assert.ok(
      err <= tol * scale,
      `${what}: logits_max[${i}] ${max[i]} vs ${ref.logitsMax[i]} (err ${err} > ${tol} × ${scale})`,
    );
  }
  assert.deepEqual(
    Array.from(arg),
    Array.from(ref.logitsArgmax),
    `${what}: argmax at every position`,
  );
  assertRelClose(all.subarray((S - 1) * V, S * V), ref.logitsLast, tol, `${what}: logits_last`);
}

for (let c = 0; c < CASES; c++) {
  Deno.test(`tiny model f32 matches transformers on case ${c}: positions, image embeds, logits, 12 greedy steps`, async () => {
    const model = await tiny("f32");
    const ref = await readReferenceCase(c);
    const cfg = model.config, V = cfg.text.vocabSize;

    const rope = getRopeIndex(
      ref.inputIds,
      ref.gridThw,
      cfg.imageTokenId,
      cfg.vision.spatialMergeSize,
    );
    assert.deepEqual(Array.from(rope.positions), Array.from(ref.positionIds), "position_ids");
    assert.equal(rope.ropeDelta, ref.ropeDelta, "rope_deltas");

    const images = ref.gridThw.length
      ? model.encodeImages(ref.pixelValues, ref.gridThw)
      : undefined;
    if (images) {
      const got = await readF32(model.gpu, images.buffer, images.tokens * images.hidden);
      // Same f32 math as transformers in another summation order: a few ulps of the largest value.
      const scale = Math.max(1, maxAbs(ref.imageEmbeds));
      let err = 0;
      for (let i = 0; i < got.length; i++) {
        err = Math.max(err, Math.abs(got[i] - ref.imageEmbeds[i]));
      }
      assert.equal(got.length, ref.imageEmbeds.length);
      assert.ok(err <= 1e-5 * scale, `image_embeds max err ${err}`);
    }
    const s = model.createSession(ref.inputIds.length + STEPS + 4);
    try {
      const all = (await model.prefill(s, ref.inputIds, images, { allLogits: true })).logits;
      // f32 on the same bf16-valued weights: errors are summation-order ulps (measured ≈ 4e-7 of
      // max |logit|); 1e-4 leaves room for other GPUs' FMA/reduction orders, far below the 1e-3 goal.
      checkLogits(all!, ref, V, 1e-4, `case ${c}`);
      const { ids, scores } = await greedy(model, s, STEPS);
      assert.deepEqual(Array.from(ids), Array.from(ref.generatedIds), "generated_ids");
      const scale = maxAbs(ref.logitsLast);
      for (let i = 0; i < STEPS; i++) {
        assert.ok(
          Math.abs(scores[i] - ref.generatedScoresMax[i]) <= 1e-4 * scale,
          `generated_scores_max[${i}] ${scores[i]} vs ${ref.generatedScoresMax[i]}`,
        );
      }
    } finally {
      s.dispose();
      images?.destroy();
    }
  });
}

Deno.test("tiny model f32 matches transformers on videos (alone, and after an image): positions, logits, 12 greedy steps", async () => {
  const model = await tiny("f32");
  const proc = await ChatProcessor.load(openModelSource(TINY_DIR));
  const cfg = model.config, V = cfg.text.vocabSize;
  for (const c of await readVideoCases()) {
    const prompt = await proc.prepare([{
      role: "user",
      content: [
        ...(c.image ? [{ type: "image" as const, image: c.image }] : []),
        { type: "video", video: c.frames },
        { type: "text", text: c.prompt },
      ],
    }]);
    assert.deepEqual(Array.from(prompt.inputIds), Array.from(c.inputIds), `${c.name} input_ids`);
    const rope = getRopeIndex(
      prompt.inputIds,
      prompt.gridThw,
      [cfg.imageTokenId, cfg.videoTokenId],
      cfg.vision.spatialMergeSize,
    );
    assert.deepEqual(Array.from(rope.positions), Array.from(c.positionIds), `${c.name} positions`);
    assert.equal(rope.ropeDelta, c.ropeDelta, `${c.name} rope_deltas`);
    const images = model.encodeImages(prompt.pixelValues, prompt.gridThw);
    const s = model.createSession(prompt.inputIds.length + STEPS + 4);
    try {
      const all = (await model.prefill(s, prompt.inputIds, images, { allLogits: true })).logits!;
      const S = prompt.inputIds.length, scale = c.logitsLastAbsMax, tol = 1e-4;
      const { arg, max } = rowArgMax(all, S, V);
      assert.deepEqual(Array.from(arg), Array.from(c.logitsArgmax), `${c.name} argmax`);
      for (let i = 0; i < S; i++) {
        const err = Math.abs(max[i] - c.logitsMax[i]);
        assert.ok(err <= tol * scale, `${c.name} logits_max[${i}]: err ${err}`);
      }
      // The last row's 256 largest logits, by id.
      const last = all.subarray((S - 1) * V);
      c.logitsLastTopIds.forEach((id, k) => {
        const err = Math.abs(last[id] - c.logitsLastTopValues[k]);
        assert.ok(err <= tol * scale, `${c.name} logits_last[${id}]: err ${err}`);
      });
      const { ids } = await greedy(model, s, STEPS);
      assert.deepEqual(Array.from(ids), Array.from(c.generatedIds), `${c.name} generated_ids`);
    } finally {
      s.dispose();
      images.destroy();
    }
  }
});

Deno.test("tiny model with f16 weights: last logits close to transformers and the same 12 greedy ids", async () => {
  // bf16 weights are exact in f16 unless below f16's normal range (|w| < 6.1e-5, where low bits
  // are lost); here that changes nothing measurable (4e-7 of max |logit|, as f32), so the f32
  // tolerance holds. Every prompt position is checked by the f32 tests.
  await f16Parity(undefined, 1e-4);
});

// The cache rounds every K and V to f16 (2⁻¹¹ relative; transformers' own bf16 cache rounds to
// 2⁻⁸): measured 3.5e-5 … 1.28e-4 of max |logit| at the last prompt position over the four cases,
// ≤ 2.1e-5 on the greedy steps' scores (the f32 cache: ≤ 4.5e-7), every greedy id the same.
Deno.test("tiny model with f16 weights and an f16 KV cache: last logits near transformers, the same 12 greedy ids", async () => {
  await f16Parity("f16", 3e-4);
});

/** The tiny model with f16 weights and a `kv` KV cache against transformers' fp32 run. */
async function f16Parity(kv: KvDType | undefined, tol: number): Promise<void> {
  const gpu = await sharedGpu();
  if (!gpu.features.f16) return; // the f32 tests above cover adapters without shader-f16
  const model = await tiny("f16", kv);
  assert.equal(model.kvCacheDtype, kv ?? "f32");
  for (let c = 0; c < CASES; c++) {
    const ref = await readReferenceCase(c);
    const images = ref.gridThw.length
      ? model.encodeImages(ref.pixelValues, ref.gridThw)
      : undefined;
    const s = model.createSession(ref.inputIds.length + STEPS + 4);
    try {
      await model.prefill(s, ref.inputIds, images);
      assertRelClose(
        await readF32(gpu, s.logits),
        ref.logitsLast,
        tol,
        `f16 case ${c} logits_last`,
      );
      const { ids, scores } = await greedy(model, s, STEPS);
      assert.deepEqual(
        Array.from(ids),
        Array.from(ref.generatedIds),
        `f16 case ${c} generated_ids`,
      );
      assertRelClose(scores, ref.generatedScoresMax, tol, `f16 case ${c} generated_scores_max`);
    } finally {
      s.dispose();
      images?.destroy();
    }
  }
}

/**
 * Greedy decoding one command buffer per token, reading the logits each step (the synthetic
 * reference has every step's full logits).
 * @returns the ring's tokens and each step's (vocab) logits, concatenated
 */
async function greedyStepwise(
  model: Qwen2VLModel,
  s: Session,
  steps: number,
): Promise<{ ids: Uint32Array; logits: Float32Array }> {
  const gpu = model.gpu, V = model.config.text.vocabSize;
  const run = new SessionRun(model, s, GREEDY);
  const logits = new Float32Array(steps * V);
  for (let i = 0; i < steps; i++) {
    const enc = gpu.device.createCommandEncoder();
    run.record(enc, i, 1);
    gpu.device.queue.submit([enc.finish()]);
    logits.set(await readF32(gpu, s.logits, V), i * V);
  }
  const ids = await readU32(gpu, s.tokens, steps);
  run.dispose();
  return { ids, logits };
}

/** max |got − want| ≤ tol · max |want|, naming the worst index. */
function assertRelClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  what: string,
) {
  assert.equal(got.length, want.length, `${what}: length`);
  const scale = maxAbs(want);
  let err = 0, at = -1;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (e > err) [err, at] = [e, i];
  }
  assert.ok(
    err <= tol * scale,
    `${what}: max err ${err} at [${at}] (got ${got[at]}, want ${want[at]}) > ${tol} × ${scale}`,
  );
}

Deno.test("synthetic model (transformers-5 names, nested config, untied lm_head, head_dim 32, two images, chunked prefill) matches transformers", async () => {
  const gpu = await sharedGpu();
  // Chunks of 16 tokens: the first image's run (tokens 11..16) straddles a chunk border.
  const model = await Qwen2VLModel.load(SYNTHETIC_DIR, {
    gpu,
    dtype: "f32",
    maxContext: 128,
    prefillChunk: 16,
  });
  const r = await readReference(`${SYNTHETIC_DIR}reference.safetensors`);
  assert.equal(model.config.tieWordEmbeddings, false);
  assert.equal(model.plan.naming, "transformers5");
  try {
    const g = r.i32("image_grid_thw");
    const grids: GridThw[] = [[g[0], g[1], g[2]], [g[3], g[4], g[5]]];
    const ids = r.i32("input_ids");
    const rope = getRopeIndex(ids, grids, model.config.imageTokenId, 2);
    assert.deepEqual(Array.from(rope.positions), Array.from(r.i32("position_ids")));
    assert.equal(rope.ropeDelta, r.i32("rope_deltas")[0]);
    const images = model.encodeImages(r.f32("pixel_values"), grids);
    // f32 vs f32 on identical weights (F16-stored vision weights are exact): summation order only.
    assertRelClose(
      await readF32(gpu, images.buffer, images.tokens * images.hidden),
      r.f32("image_embeds"),
      1e-5,
      "image_embeds",
    );
    const s = model.createSession(64);
    const all = (await model.prefill(s, ids, images, { allLogits: true })).logits;
    images.destroy();
    // Same reasoning as the tiny model's 1e-4: measured errors are ~1e-6 of max |logit|.
    assertRelClose(all!, r.f32("logits"), 1e-4, "prompt logits");
    const gen = await greedyStepwise(model, s, 10);
    assert.deepEqual(Array.from(gen.ids), Array.from(r.i32("generated_ids")), "generated_ids");
    assertRelClose(gen.logits, r.f32("generated_logits"), 1e-4, "decode logits");
    s.dispose();

    // Text only, 21 tokens in chunks of 16 and 5.
    const t = (await model.prefill(model.createSession(32), r.i32("text_input_ids"), undefined, {
      allLogits: true,
    })).logits;
    assertRelClose(t!, r.f32("text_logits"), 1e-4, "text prompt logits");
    const s2 = model.createSession(32);
    await model.prefill(s2, r.i32("text_input_ids"));
    const gen2 = await greedyStepwise(model, s2, 6);
    assert.deepEqual(
      Array.from(gen2.ids),
      Array.from(r.i32("text_generated_ids")),
      "text generated_ids",
    );
    assertRelClose(gen2.logits, r.f32("text_generated_logits"), 1e-4, "text decode logits");
    s2.dispose();
  } finally {
    model.dispose();
  }
});

addEventListener("unload", () => {
  for (const m of models.values()) m.then((x) => x.dispose());
});
