import assert from "node:assert/strict";
import { Gpu, sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import {
  createWeight,
  destroyWeight,
  type Weight,
  type WeightDType,
  writeWeightRows,
} from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { linear as linearRef } from "../src/ref/linear.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { gemm, type GemmTuning, gemmTuning } from "./gemm.ts";
import { run } from "./_kernel.ts";

// Each output sums k f32 products in another order than the f64 reference: the rounding error
// grows like √k · 2⁻²⁴ · |partial sums|, far below 1e-5 of max|y| at these k, while one dropped or
// doubled term (|x·w| ≈ 1/√k ≥ 1.6e-2) fails by three orders of magnitude (as kernels/linear_test.ts).
const TOL = 1e-5;

/** Uploads `data` (rows, cols) as a Weight; returns it and the values the GPU holds (f16-rounded). */
function makeWeight(
  gpu: Gpu,
  data: Float32Array,
  rows: number,
  cols: number,
  dtype: WeightDType,
  maxChunkBytes?: number,
): { w: Weight; held: Float32Array } {
  const w = createWeight(gpu, rows, cols, dtype, "w", maxChunkBytes);
  writeWeightRows(gpu, w, 0, data);
  return { w, held: dtype === "f16" ? data.map(Math.f16round) : data };
}

/** Runs gemm() on fresh buffers and returns y. */
async function runGemm(
  gpu: Gpu,
  x: Float32Array,
  w: Weight,
  bias: Float32Array | null,
  m: number,
  y0?: Float32Array,
  tuning?: Partial<GemmTuning>,
): Promise<Float32Array> {
  const bx = uploadArray(gpu, x, "x");
  const bb = bias ? uploadArray(gpu, bias, "bias") : null;
  const by = y0 ? uploadArray(gpu, y0, "y") : createStorage(gpu, m * w.rows * 4, "y");
  const ds = gemm(gpu, by, bx, w, bb, { m, accumulate: y0 !== undefined }, tuning);
  run(gpu, ds);
  const y = await readF32(gpu, by, m * w.rows);
  [bx, bb, by].forEach((b) => b?.destroy());
  ds.forEach((d) => d.destroy());
  return y;
}

// m × n × k × tuning: m from 2 to 600 (tiles partly past m), n not a multiple of the tile or of 4,
// k at every load width (k % 8 == 0: 16-byte f16 loads; % 4: 8-byte; odd: scalars) and with a
// last k step only partly inside k (20, 44, 1176), over every tiling a caller or a benchmark may
// pick: 128² and 64² tiles, 128 × 64 and 64 × 128, k steps of 8, 16 and 32 (1, 2 and 4 staging
// segments per thread). One tuning per shape: each variant costs seconds to compile on lavapipe.
const CASES: [number, number, number, GemmTuning][] = [
  [2, 47, 33, { wm: 8, wn: 8, bk: 16 }],
  [130, 67, 20, { wm: 16, wn: 16, bk: 16 }],
  [600, 135, 64, { wm: 16, wn: 8, bk: 16 }],
  [37, 80, 1176, { wm: 8, wn: 16, bk: 16 }],
  [5, 77, 44, { wm: 8, wn: 8, bk: 32 }],
  [3, 5, 3, { wm: 8, wn: 8, bk: 8 }],
];

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`gemm() matches the CPU reference over random shapes and tunings, ${dtype} weights`, async () => {
    const gpu = await sharedGpu();
    const rng = seeded(dtype === "f32" ? 21 : 22);
    for (const [idx, [m, n, k, t]] of CASES.entries()) {
      const x = randn(rng, m * k), wData = randn(rng, n * k, 1 / Math.sqrt(k));
      const bias = idx % 2 ? randn(rng, n) : null;
      const { w, held } = makeWeight(gpu, wData, n, k, dtype);
      const got = await runGemm(gpu, x, w, bias, m, undefined, t);
      const what = `${dtype} ${m}x${n}x${k} bias=${!!bias} ${JSON.stringify(t)}`;
      assertClose(got, linearRef(x, held, bias, m, n, k), TOL, what);
      destroyWeight(w);
    }
  });
}

Deno.test("gemm() with accumulate adds x · wᵀ + bias to y, over a weight in many chunks", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(23);
  for (const dtype of ["f32", "f16"] as const) {
    const cases: [number, number, number, GemmTuning][] = [
      [37, 203, 44, { wm: 16, wn: 16, bk: 16 }],
      [130, 150, 64, { wm: 8, wn: 8, bk: 16 }],
    ];
    for (const [m, n, k, t] of cases) {
      const x = randn(rng, m * k), bias = randn(rng, n), y0 = randn(rng, m * n, 5);
      const wData = randn(rng, n * k, 1 / Math.sqrt(k));
      const one = makeWeight(gpu, wData, n, k, dtype);
      // 7 rows per chunk (6 for f16 with odd k, to keep chunks 4-byte aligned): chunk borders fall
      // inside output tiles.
      const split = makeWeight(gpu, wData, n, k, dtype, 7 * k * (dtype === "f16" ? 2 : 4));
      assert.ok(split.w.chunks.length >= 15, `expected many chunks, got ${split.w.chunks.length}`);
      const what = `${dtype} ${m}x${n}x${k} ${JSON.stringify(t)}`;
      const want = await runGemm(gpu, x, one.w, bias, m, y0, t);
      assertClose(want, linearRef(x, one.held, bias, m, n, k, y0), TOL, what);
      // Chunking changes which dispatch computes a column, not its sum: the same bits.
      assert.deepEqual(await runGemm(gpu, x, split.w, bias, m, y0, t), want, `${what} chunked`);
      destroyWeight(one.w);
      destroyWeight(split.w);
    }
  }
});

Deno.test("gemmTuning() takes 128² tiles from two waves of an H100 up, 64² below", () => {
  assert.deepEqual(gemmTuning(5120, 1280), { wm: 16, wn: 16, bk: 16 }); // 400 tiles
  assert.deepEqual(gemmTuning(1024, 37888), { wm: 16, wn: 16, bk: 16 });
  assert.deepEqual(gemmTuning(478, 3584), { wm: 8, wn: 8, bk: 16 }); // 112 tiles
  assert.deepEqual(gemmTuning(2, 64), { wm: 8, wn: 8, bk: 16 });
});

Deno.test("gemm() refuses quantized weights, a bad tuning and y aliasing x", async () => {
  const gpu = await sharedGpu();
  const x = createStorage(gpu, 4 * 64 * 4, "x"), y = createStorage(gpu, 4 * 64 * 4, "y");
  const q = createWeight(gpu, 64, 64, "q8", "q");
  assert.throws(() => gemm(gpu, y, x, q, null, { m: 4 }), InvalidInputError);
  const w = createWeight(gpu, 64, 64, "f16", "w");
  assert.throws(() => gemm(gpu, y, x, w, null, { m: 4 }, { bk: 8, wn: 16 }), /bad tuning/);
  assert.throws(() => gemm(gpu, y, x, w, null, { m: 4 }, { wm: 16, wn: 16, bk: 32 }), /bad tuning/);
  assert.throws(() => gemm(gpu, x, x, w, null, { m: 4 }), /alias/);
  assert.throws(() => gemm(gpu, y, x, w, null, { m: 0 }), /positive integer/);
  [x, y].forEach((b) => b.destroy());
  destroyWeight(q);
  destroyWeight(w);
});
