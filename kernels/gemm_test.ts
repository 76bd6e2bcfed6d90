import assert from "node:assert/strict";
import { type Gpu, sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readBytes, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { createWeight, destroyWeight, quantLayout } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { dequantize, type Quantized } from "../src/ref/linear_q.ts";
import { gemmQ as gemmQRef, quantizeX as quantizeXRef } from "../src/ref/gemm_q.ts";
import { linear as linearRef } from "../src/ref/linear.ts";
import { quickGelu as quickGeluRef } from "../src/ref/elementwise.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { gemmQ, gemmQChoice, gemmQFits, type GemmQTuning, quantizeX } from "./gemm.ts";
import { GEMM_SPLIT_MAX_BYTES } from "./linear.ts";
import { readQuantWeight, writeQuantRows } from "./linear_q.ts";
import { run } from "./_kernel.ts";
import { productRunner } from "./_test_utils.ts";

// Against the f64 reference fed the same integer codes and scales, the GPU differs only by its f32
// accumulation over k / 32 scaled group sums: far below 1e-5 of max|y| (as kernels/linear_test.ts),
// while one wrong code (|Δy| ≈ xs · ws ≈ max|y| / 100 here) or group fails by orders of magnitude.
const TOL = 1e-5;

/** x quantized on the GPU by quantizeX(), read back. */
async function gpuQuantizeX(gpu: Gpu, x: Float32Array, m: number, k: number): Promise<Quantized> {
  const bx = uploadArray(gpu, x, "x");
  const xq = createStorage(gpu, m * k, "xq"), xs = createStorage(gpu, m * k / 32 * 4, "xs");
  const d = quantizeX(gpu, xq, xs, bx, { m, k });
  run(gpu, [d]);
  const codes = new Int8Array(await readBytes(gpu, xq, m * k));
  const scales = await readF32(gpu, xs, m * k / 32);
  [bx, xq, xs].forEach((b) => b.destroy());
  d.destroy();
  return { codes, scales };
}

/** Runs gemmQ() on fresh buffers and returns y. */
const runGemmQ = productRunner<Partial<GemmQTuning>>(gemmQ);

Deno.test("quantizeX() gives the reference's scales and codes (±1 where x / d is a rounding tie)", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(31);
  const m = 37, k = 160;
  const x = randn(rng, m * k, 3);
  x.fill(0, 64, 96); // an all-zero group: scale 0, codes 0
  x[5] = 1e-30; // a tiny value beside large ones
  const got = await gpuQuantizeX(gpu, x, m, k), want = quantizeXRef(x);
  assertClose(got.scales, want.scales, 1e-7, "scales");
  assert.equal(got.scales[2], 0);
  let differ = 0;
  for (let i = 0; i < x.length; i++) {
    assert.ok(
      Math.abs(got.codes[i] - want.codes[i]) <= 1,
      `code ${i}: ${got.codes[i]} vs ${want.codes[i]}`,
    );
    if (got.codes[i] !== want.codes[i]) differ++;
  }
  assert.ok(differ <= x.length / 1000, `${differ} codes differ`);
});

// m × n × k × tuning: m from 2 to 600 (tiles partly past m), n not a multiple of the tile or of 4,
// k = 32 · odd groups (a last step of 2 groups half past k) and even, over every tiling (16² or 8²
// threads, 4 × 4 to 8 × 8 outputs each, 1, 2 or 4 groups per step; k = 160 with 4: a last step
// 3 groups past k); the default tiling pipelined (k = 160: three k steps, the last half past k;
// 224: four; 96: two, the last half past k) and not (k = 1280); the wide pipelined tiling (64 ×
// 128) at 40 and 64 rows; split k on both pipelined tilings (k = 288 in two: groups 0–5 and 6–8,
// the second split's last step half past its range; 1280 in three) and as gemmQChoice() picks it
// (37 × 200 × 1280: wide, 7 splits); q4's narrow tiling (32 × 256) at 16 and 32 rows, n past a
// tile, odd k groups, split, and as gemmQChoice() picks it at 20 rows (q8 there: wide).
// One tuning per case: each variant takes seconds to compile on lavapipe.
const CASES: [number, number, number, Partial<GemmQTuning>][] = [
  [2, 47, 96, { td: 16, rm: 1, rn: 1, g: 2 }],
  [130, 67, 64, { td: 16, rm: 2, rn: 2, g: 2 }],
  [600, 130, 160, { td: 16, rm: 2, rn: 1, g: 1 }],
  [3, 5, 32, { td: 16, rm: 1, rn: 2, g: 2, pipe: false }],
  [37, 200, 1280, { td: 8, rm: 2, rn: 2, g: 1 }],
  [70, 45, 96, { td: 8, rm: 1, rn: 1, g: 2 }],
  [200, 70, 160, { td: 16, rm: 2, rn: 1, g: 4 }],
  [130, 67, 160, { td: 16, rm: 2, rn: 1, g: 2 }],
  [70, 45, 224, { td: 16, rm: 2, rn: 1, g: 2 }],
  [3, 70, 96, { td: 16, rm: 2, rn: 1, g: 2 }],
  [37, 200, 1280, { td: 16, rm: 2, rn: 1, g: 2, pipe: false }],
  [40, 200, 224, { td: 16, rm: 1, rn: 2, g: 2 }],
  [64, 130, 160, { td: 16, rm: 1, rn: 2, g: 2 }],
  [40, 130, 288, { td: 16, rm: 1, rn: 2, g: 2, splitK: 2 }],
  [130, 67, 1280, { td: 16, rm: 2, rn: 1, g: 2, splitK: 3 }],
  [37, 200, 1280, {}],
  [16, 300, 288, { td: 16, rm: 1, rn: 2, g: 2, narrow: true }],
  [32, 260, 1280, { td: 16, rm: 1, rn: 2, g: 2, narrow: true, splitK: 3 }],
  [20, 200, 1280, {}],
];

for (const dtype of ["q8", "q4"] as const) {
  Deno.test(`gemmQ() matches the reference on the GPU's int8 x, ${dtype} weights, with bias, accumulate and chunks`, async () => {
    const gpu = await sharedGpu();
    const rng = seeded(dtype === "q8" ? 32 : 33);
    for (const [idx, [m, n, k, t]] of CASES.entries()) {
      if (t.narrow && dtype !== "q4") continue; // q4 only
      const x = randn(rng, m * k), wData = randn(rng, n * k, 1 / Math.sqrt(k));
      const bias = idx % 2 ? randn(rng, n) : null;
      const y0 = idx % 3 === 1 ? randn(rng, m * n) : undefined;
      // Every other case over chunks of 16 rows: chunk borders inside output tiles.
      const maxChunk = idx % 2 ? undefined : quantLayout(16, k, dtype).size;
      const w = createWeight(gpu, n, k, dtype, "w", maxChunk);
      writeQuantRows(gpu, w, 0, wData);
      const wq = await readQuantWeight(gpu, w);
      const xq = await gpuQuantizeX(gpu, x, m, k);
      const got = await runGemmQ(gpu, x, w, bias, m, y0, t);
      const what = `${dtype} ${m}x${n}x${k} bias=${!!bias} acc=${!!y0} chunks=${w.chunks.length} ${
        JSON.stringify(t)
      }`;
      assertClose(got, gemmQRef(xq, wq, bias, m, n, k, y0), TOL, what);
      // Against the f32 product with the dequantized weight: the x rounding alone (≤ max|x| / 254
      // per element, random in sign) stays within 1e-2 of max|y| at these sizes.
      const exact = linearRef(x, dequantize(wq), bias, m, n, k, y0);
      assertClose(got, exact, 1e-2, `${what} vs f32`);
      destroyWeight(w);
    }
  });
}

// The vision MLP's fc1 of a q8 tower (LoadOptions.visionQuant): quick_gelu after the bias in the
// store (QGELU), on the default pipelined tiling (q8, weight in chunks), a single-buffered one
// (q4) and split k (q4, 40 rows: in the sum pass): the reference's product through
// src/ref/elementwise.ts quickGelu, same tolerance.
Deno.test("gemmQ() with activation quick_gelu equals quickGelu(reference + bias) on both kernels", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(34);
  const cases = [
    ["q8", 70, 45, 96, {}],
    ["q4", 37, 67, 160, { td: 8, rm: 1, rn: 1, g: 2 }],
    ["q4", 40, 67, 1280, {}], // wide, k split 7 ways: bias and quick_gelu in the sum pass
    ["q4", 20, 67, 160, {}], // narrow, unsplit: bias and quick_gelu in its own store
  ] as const;
  for (const [dtype, m, n, k, t] of cases) {
    const x = randn(rng, m * k), wData = randn(rng, n * k, 1 / Math.sqrt(k)), bias = randn(rng, n);
    const w = createWeight(gpu, n, k, dtype, "w", quantLayout(16, k, dtype).size);
    writeQuantRows(gpu, w, 0, wData);
    const wq = await readQuantWeight(gpu, w), xq = await gpuQuantizeX(gpu, x, m, k);
    const bx = uploadArray(gpu, x, "x"), bb = uploadArray(gpu, bias, "bias");
    const by = createStorage(gpu, m * n * 4, "y");
    const ds = gemmQ(gpu, by, bx, w, bb, { m, activation: "quick_gelu" }, t);
    run(gpu, ds);
    const got = await readF32(gpu, by, m * n);
    const want = quickGeluRef(gemmQRef(xq, wq, bias, m, n, k));
    assertClose(got, want, TOL, `quick_gelu ${dtype} ${m}x${n}x${k} ${JSON.stringify(t)}`);
    // Negative pre-activations really went through it (quick_gelu(v) > v for v < 0).
    assert.ok(want.some((v) => v < 0) && got.every((v) => v > -0.3));
    [bx, bb, by].forEach((b) => b.destroy());
    ds.forEach((d) => d.destroy());
    destroyWeight(w);
  }
  const x = createStorage(gpu, 4 * 64 * 4, "x"), y = createStorage(gpu, 4 * 64 * 4, "y");
  const w = createWeight(gpu, 64, 64, "q8", "w");
  assert.throws(
    () => gemmQ(gpu, y, x, w, null, { m: 4, activation: "quick_gelu", accumulate: true }),
    /without accumulate/,
  );
  [x, y].forEach((b) => b.destroy());
  destroyWeight(w);
});

Deno.test("gemmQ() refuses f16 weights, a bad tuning (pipe off the pipelined tilings, split k unpipelined), y aliasing x, k not a multiple of 32 and an x over a binding", async () => {
  const gpu = await sharedGpu();
  const x = createStorage(gpu, 4 * 64 * 4, "x"), y = createStorage(gpu, 4 * 64 * 4, "y");
  const f = createWeight(gpu, 64, 64, "f16", "f");
  assert.throws(() => gemmQ(gpu, y, x, f, null, { m: 4 }), InvalidInputError);
  const w = createWeight(gpu, 64, 64, "q8", "w");
  assert.throws(() => gemmQ(gpu, y, x, w, null, { m: 4 }, { rm: 4 as 2 }), /bad tuning/);
  assert.throws(() => gemmQ(gpu, y, x, w, null, { m: 4 }, { td: 8, pipe: true }), /bad tuning/);
  assert.throws(
    () => gemmQ(gpu, y, x, w, null, { m: 4 }, { pipe: false, splitK: 2 }),
    /bad tuning/,
  );
  assert.throws(() => gemmQ(gpu, y, x, w, null, { m: 4 }, { splitK: 0 }), /bad tuning/);
  // narrow: q4 only (w is q8), and only on the pipelined rm 1, rn 2 tiling.
  assert.throws(
    () => gemmQ(gpu, y, x, w, null, { m: 4 }, { rm: 1, rn: 2, narrow: true }),
    /bad tuning/,
  );
  assert.throws(() => gemmQ(gpu, x, x, w, null, { m: 4 }), /alias/);
  assert.throws(() => gemmQ(gpu, y, x, w, null, { m: 0 }), /positive integer/);
  assert.throws(() => quantizeX(gpu, y, y, x, { m: 4, k: 48 }), /multiple of 32/);
  // An x whose int8 form exceeds one binding (8 GiB here) is refused; gemmQFits() says so first.
  assert.equal(gemmQFits(gpu, 4, 64), true);
  assert.equal(gemmQFits(gpu, 1 << 20, 8192), false);
  [x, y].forEach((b) => b.destroy());
  destroyWeight(f);
  destroyWeight(w);
});

Deno.test("gemmQChoice(): wide tiles at m ≤ 64 (narrow at m ≤ 32 for q4), k split where few tiles would leave SMs idle, tall tiles above", () => {
  // QVQ-72B at a 40-token prompt: down (8192 × 29568) has 64 wide tiles, qkv 80: split; gate_up
  // (59136 rows: 462 tiles, 3.5 waves) at most in two.
  assert.deepEqual(gemmQChoice(40, 8192, 29568, "q4").rm, 1);
  assert.ok(gemmQChoice(40, 8192, 29568, "q4").splitK! >= 2);
  assert.ok(gemmQChoice(40, 10240, 8192, "q4").splitK! >= 2);
  assert.ok(gemmQChoice(40, 59136, 8192, "q4").splitK! <= 2);
  assert.deepEqual(gemmQChoice(64, 3584, 3584, "q4").rn, 2);
  assert.equal(gemmQChoice(40, 3584, 3584, "q4").narrow, undefined);
  // At m ≤ 32 q4 takes the 32 × 256 tiles (32 rows of the 64-row tile were padding); q8 not.
  assert.equal(gemmQChoice(32, 8192, 29568, "q4").narrow, true);
  assert.equal(gemmQChoice(16, 3584, 3584, "q4").narrow, true);
  assert.equal(gemmQChoice(16, 3584, 3584, "q8").narrow, undefined);
  assert.deepEqual(gemmQChoice(65, 8192, 29568, "q4"), { rm: 2, rn: 1, splitK: 1 });
  assert.deepEqual(gemmQChoice(478, 3584, 18944, "q8"), { rm: 2, rn: 1, splitK: 1 });
  // Partials stay within the budgeted scratch (8 splits × 64 rows × 59136 f32 would not).
  const c = gemmQChoice(64, 59136, 29568, "q4");
  assert.ok(c.splitK! * 64 * 59136 * 4 <= GEMM_SPLIT_MAX_BYTES);
});
