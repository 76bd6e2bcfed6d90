import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import {
  createWeight,
  destroyWeight,
  type Weight,
  type WeightDType,
  writeWeightRows,
} from "../src/gpu/tensor.ts";
import { Gpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import { linear as linearRef } from "../src/ref/linear.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { linear, type LinearTuning } from "./linear.ts";
import { run } from "./_kernel.ts";

// The GPU sums k f32 products sequentially per thread (in another order than the f64
// reference): the rounding error grows like √k · 2⁻²⁴ · |partial sums| — measured up to 1.1e-6 of
// max|y| at k = 1280. 1e-5 of max|y| leaves room for other orders and k = 3584, while one dropped
// or doubled term (|x·w| ≈ 1/√k ≥ 1.7e-2 here) fails by three orders of magnitude.
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

/** Runs linear() on fresh buffers and returns y. */
async function runLinear(
  gpu: Gpu,
  x: Float32Array,
  w: Weight,
  bias: Float32Array | null,
  m: number,
  y0?: Float32Array,
  tuning?: Partial<LinearTuning>,
): Promise<Float32Array> {
  const bx = uploadArray(gpu, x, "x");
  const bb = bias ? uploadArray(gpu, bias, "bias") : null;
  const by = y0 ? uploadArray(gpu, y0, "y") : createStorage(gpu, m * w.rows * 4, "y");
  const ds = linear(gpu, by, bx, w, bb, { m, accumulate: y0 !== undefined }, tuning);
  run(gpu, ds);
  const y = await readF32(gpu, by, m * w.rows);
  [bx, bb, by].forEach((b) => b?.destroy());
  ds.forEach((d) => d.destroy());
  return y;
}

// m × n × k: decode (m = 1), small and long prompts, odd k and n (not divisible by 4), the vision
// patch embedding (k = 1176) and 7B hidden size (k = 3584).
const SHAPES: [number, number, number][] = [
  [1, 47, 33],
  [3, 47, 33],
  [37, 80, 80],
  [1, 130, 1176],
  [600, 67, 80],
  [1, 77, 3584],
  [37, 45, 1280],
  [3, 5, 3],
];

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`linear() matches the CPU reference over random shapes, ${dtype} weights`, async () => {
    const gpu = await sharedGpu();
    const rng = seeded(dtype === "f32" ? 11 : 12);
    for (const [idx, [m, n, k]] of SHAPES.entries()) {
      const x = randn(rng, m * k), wData = randn(rng, n * k, 1 / Math.sqrt(k));
      const bias = idx % 2 ? randn(rng, n) : null;
      const { w, held } = makeWeight(gpu, wData, n, k, dtype);
      const got = await runLinear(gpu, x, w, bias, m);
      assertClose(
        got,
        linearRef(x, held, bias, m, n, k),
        TOL,
        `${dtype} ${m}x${n}x${k} bias=${!!bias}`,
      );
      destroyWeight(w);
    }
  });
}

Deno.test("linear() with accumulate adds x · wᵀ + bias to y", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(13);
  for (const [m, n, k] of [[1, 37, 64], [37, 37, 21]]) {
    const x = randn(rng, m * k), bias = randn(rng, n), y0 = randn(rng, m * n, 5);
    const { w, held } = makeWeight(gpu, randn(rng, n * k), n, k, "f16");
    const got = await runLinear(gpu, x, w, bias, m, y0);
    assertClose(got, linearRef(x, held, bias, m, n, k, y0), TOL, `acc ${m}x${n}x${k}`);
    destroyWeight(w);
  }
});

Deno.test("linear() over a weight split into several chunks gives the same bits as one chunk", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(14);
  for (const dtype of ["f32", "f16"] as const) {
    for (const [m, n, k] of [[1, 203, 44], [37, 203, 44], [1, 101, 33], [5, 101, 33]]) {
      const x = randn(rng, m * k), wData = randn(rng, n * k), bias = randn(rng, n);
      const one = makeWeight(gpu, wData, n, k, dtype);
      // 7 rows per chunk (6 for f16 with odd k, to keep chunks 4-byte aligned): chunk borders fall
      // inside GEMV row groups and output tiles.
      const split = makeWeight(gpu, wData, n, k, dtype, 7 * k * (dtype === "f16" ? 2 : 4));
      assert.ok(split.w.chunks.length >= 15, `expected many chunks, got ${split.w.chunks.length}`);
      const want = await runLinear(gpu, x, one.w, bias, m);
      const got = await runLinear(gpu, x, split.w, bias, m);
      assert.deepEqual(got, want, `${dtype} ${m}x${n}x${k}`);
      assertClose(
        got,
        linearRef(x, one.held, bias, m, n, k),
        TOL,
        `${dtype} ${m}x${n}x${k} vs ref`,
      );
      destroyWeight(one.w);
      destroyWeight(split.w);
    }
  }
});

Deno.test("linear() handles more rows than one grid dimension holds (lm_head-sized n)", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(15);
  // 270000 rows: the GEMV's row groups (4 rows each) overflow 65535 workgroups and use the 2D grid.
  const n = 270_000, k = 4;
  const wData = randn(rng, n * k);
  const { w, held } = makeWeight(gpu, wData, n, k, "f16", 2 ** 20);
  for (const m of [1, 3]) {
    const x = randn(rng, m * k);
    const got = await runLinear(gpu, x, w, null, m);
    assertClose(got, linearRef(x, held, null, m, n, k), TOL, `m=${m}`);
  }
  destroyWeight(w);
});

Deno.test("linear() rejects buffers too small for the shape", async () => {
  const gpu = await sharedGpu();
  const w = createWeight(gpu, 8, 16, "f32", "w");
  const x = createStorage(gpu, 2 * 16 * 4), y = createStorage(gpu, 2 * 8 * 4);
  assert.throws(() => linear(gpu, y, x, w, null, { m: 3 }), InvalidInputError);
  assert.throws(() => linear(gpu, y, x, w, createStorage(gpu, 4), { m: 2 }), /bias buffer/);
  assert.throws(() => linear(gpu, x, x, w, null, { m: 1 }), /alias/);
  assert.throws(() => linear(gpu, y, x, w, null, { m: 0 }), InvalidInputError);
  [x, y].forEach((b) => b.destroy());
  destroyWeight(w);
});

Deno.test("linear() gives the same results for every kernel variant and tuning", async () => {
  const gpu = await sharedGpu();
  // The same device, told it has no subgroups: the GEMV's shared-memory tree reduction.
  const noSub = new Gpu(gpu.device, gpu.adapterInfo, { ...gpu.features, subgroups: false });
  const rng = seeded(16);
  const variants: [string, Gpu, Partial<LinearTuning>, number][] = [
    ["default", gpu, {}, 1],
    ["no subgroups", noSub, {}, 1],
    ["vec4<f16> loads", gpu, { gemvPack8: false }, 1],
    ["64 threads, 3 rows", gpu, { gemvWg: 64, gemvRows: 3 }, 1],
    ["tree, 1 row", noSub, { gemvWg: 128, gemvRows: 1, gemvPack8: false }, 1],
    ["tile 64 × 64", gpu, { tile: 4 }, 150],
    ["tile 128 × 128", gpu, { tile: 8 }, 37],
  ];
  for (const [n, k] of [[47, 40], [130, 1176], [133, 37]]) {
    for (const [name, g, tuning, m] of variants) {
      const x = randn(rng, m * k), bias = randn(rng, n);
      const { w, held } = makeWeight(gpu, randn(rng, n * k), n, k, "f16");
      const got = await runLinear(g, x, w, bias, m, undefined, tuning);
      assertClose(got, linearRef(x, held, bias, m, n, k), TOL, `${name} ${m}x${n}x${k}`);
      destroyWeight(w);
    }
  }
  assert.throws(
    () =>
      linear(
        gpu,
        createStorage(gpu, 4),
        createStorage(gpu, 4),
        createWeight(gpu, 1, 1, "f32", "w"),
        null,
        { m: 1 },
        { gemvWg: 100 },
      ),
    /bad tuning/,
  );
});
