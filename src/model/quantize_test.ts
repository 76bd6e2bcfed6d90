import assert from "node:assert/strict";
import { sharedGpu } from "../gpu/device.ts";
import { InvalidInputError } from "../errors.ts";
import { Qwen2VLModel } from "./qwen2vl.ts";
import { readReferenceCase, TINY_DIR } from "./_fixture.ts";
import { checkQuant, checkWeightDType, logitError, parseQuant } from "./quantize.ts";
import { planModel } from "./qwen2vl.ts";

Deno.test("parseQuant() accepts q8/q4 and float names, refuses others", () => {
  assert.equal(parseQuant("q4"), "q4");
  assert.equal(parseQuant("q8"), "q8");
  assert.equal(parseQuant("f16"), undefined);
  assert.equal(parseQuant(undefined), undefined);
  assert.throws(() => parseQuant("q3"), InvalidInputError);
});

Deno.test("load options: dtype f32 / f16 and quant q8 / q4 checked by name, before any weight is read", async () => {
  assert.equal(checkWeightDType("f16"), "f16");
  assert.equal(checkQuant(undefined), undefined);
  assert.equal(checkQuant("q4"), "q4");
  assert.throws(
    () => checkWeightDType("q8"),
    /dtype must be "f32" or "f16", got "q8"; for q8 weights pass quant: "q8"/,
  );
  assert.throws(() => checkQuant("Q8"), /quant must be "q8", "q4" or unset .*got "Q8"/);
  for (const opts of [{ dtype: "bf16" }, { dtype: "f16", quant: "Q8" }]) {
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      () => planModel(TINY_DIR, { maxBinding: 1 << 27, ...opts } as any),
      InvalidInputError,
    );
  }
});

Deno.test("logitError() measures max/rms error and argmax agreement", () => {
  const ref = new Float32Array([1, 3, 2, 0, 5, 1]), got = new Float32Array([1, 2.5, 2.75, 0, 5, 1]);
  const e = logitError(ref, got, 3);
  assert.deepEqual([e.maxAbs, e.refMax, e.argmaxAgree, e.positions], [0.75, 5, 1, 2]);
  assert.ok(Math.abs(e.rms - Math.sqrt((0.25 + 0.5625) / 6)) < 1e-12);
});

// Measured on the tiny fixture (hidden 32: each row is ONE group of 32, so nothing averages out —
// a worst case next to real models), reference cases 0, 1, 3 (98 prompt positions), quantized decoder
// + lm_head against the f32 path, logits of every position (max |logit| ≈ 35):
//   q8: max |Δ| 0.485, every argmax agrees (98/98)
//   q4: max |Δ| 8.12, argmax agrees at 58/98 positions — with int8 activations (q4's decode GEMV
//       and its m > 1 products, kernels/linear_q.ts GEMV_XQ / PREFILL_INT8); with f32 activations
//       it was 8.08 and 59/98 (2026-11-28): int8 x costs one position here, noise beside q4's own
//       error, for 1.1–2.6× faster prefill products. q8 keeps f32 activations (int8 doubled its error).
// The bounds below are those measurements rounded up a little: quantization error dominates
// (f32 summation-order changes move logits by ~1e-6), so a looser result means a broken kernel.
const BOUNDS = { q8: { maxAbs: 0.5, agree: 98 }, q4: { maxAbs: 8.5, agree: 58 } };

Deno.test("q8/q4 on the tiny model: logit error and greedy agreement vs the f32 path, as measured", async () => {
  const gpu = await sharedGpu();
  const load = (quant?: "q8" | "q4") =>
    Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", quant, maxContext: 64 });
  const f32 = await load();
  const V = f32.config.text.vocabSize;
  for (const quant of ["q8", "q4"] as const) {
    const q = await load(quant);
    let maxAbs = 0, agree = 0, positions = 0;
    for (const c of [0, 1, 3]) {
      const r = await readReferenceCase(c);
      const logits = [];
      for (const m of [f32, q]) {
        const img = r.gridThw.length ? m.encodeImages(r.pixelValues, r.gridThw) : undefined;
        const s = m.createSession(r.inputIds.length + 1);
        logits.push((await m.prefill(s, r.inputIds, img, { allLogits: true })).logits!);
        s.dispose();
        img?.destroy();
      }
      const e = logitError(logits[0], logits[1], V);
      maxAbs = Math.max(maxAbs, e.maxAbs);
      agree += e.argmaxAgree;
      positions += e.positions;
    }
    assert.equal(positions, 98);
    assert.ok(maxAbs <= BOUNDS[quant].maxAbs, `${quant}: max |Δ logit| ${maxAbs}`);
    assert.ok(agree >= BOUNDS[quant].agree, `${quant}: argmax agrees at ${agree}/${positions}`);
    // Quantization must cost something: a q path that silently ran the float weights would not.
    assert.ok(maxAbs > 1e-3, `${quant}: max |Δ logit| ${maxAbs} — are the weights quantized?`);
    q.dispose();
  }
  f32.dispose();
});
