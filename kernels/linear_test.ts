import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { createWeight, destroyWeight } from "../src/gpu/tensor.ts";
import { Gpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  linear as linearRef,
  normLinear as normLinearRef,
  siluMulLinear as siluMulLinearRef,
} from "../src/ref/linear.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { quickGelu as quickGeluRef } from "../src/ref/elementwise.ts";
import {
  fusesXTransform,
  GEMM_SPLIT_MAX_BYTES,
  GEMM_SPLITS,
  gemmKernel,
  gemmTime,
  GEMV_XROWS_MAX,
  gemvThreadsPerRow,
  gemvXRowsTuning,
  linear,
  LINEAR_CHOICE,
  type LinearTuning,
  normLinear,
  siluMulLinear,
  xrowsBucket,
} from "./linear.ts";
import { type Dispatch, run } from "./_kernel.ts";
import { productRunner, ropeKvCase, uploadWeight } from "./_test_utils.ts";
import { mropeTable } from "../src/ref/rope.ts";
import type { KvDType } from "./kv_cache.ts";
import { uploadRopeTable } from "./rope.ts";
import { createDecodeState } from "./state.ts";

// The GPU sums k f32 products sequentially per thread (in another order than the f64
// reference): the rounding error grows like √k · 2⁻²⁴ · |partial sums| — measured up to 1.1e-6 of
// max|y| at k = 1280. 1e-5 of max|y| leaves room for other orders and k = 3584, while one dropped
// or doubled term (|x·w| ≈ 1/√k ≥ 1.7e-2 here) fails by three orders of magnitude.
const TOL = 1e-5;

/** Runs linear() on fresh buffers and returns y. */
const runLinear = productRunner<Partial<LinearTuning>>(linear);

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
      const { w, held } = uploadWeight(gpu, wData, n, k, dtype, "w");
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
    const { w, held } = uploadWeight(gpu, randn(rng, n * k), n, k, "f16", "w");
    const got = await runLinear(gpu, x, w, bias, m, y0);
    assertClose(got, linearRef(x, held, bias, m, n, k, y0), TOL, `acc ${m}x${n}x${k}`);
    destroyWeight(w);
  }
});

// The vision MLP's fc1 with quick_gelu fused into the epilogue, on every path that stores
// through it: the row GEMV (m = 1), the 64-tile kernel, PIPE's 64 × 128 tile (m ≤ 64), PIPE, and
// PIPE split in three (the sum pass applies it, after the bias, to the summed partials only).
Deno.test("linear() with activation quick_gelu equals quickGelu(x · wᵀ + bias) on every kernel path", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(29);
  const cases: [number, number, number, Partial<LinearTuning>][] = [
    [1, 70, 64, {}],
    [37, 90, 80, {}],
    [70, 90, 80, {}],
    [130, 70, 200, { pipe: true, splitK: 1 }],
    [130, 70, 1176, { pipe: true, splitK: 3 }],
  ];
  for (const [m, n, k, tuning] of cases) {
    const x = randn(rng, m * k), bias = randn(rng, n);
    const { w, held } = uploadWeight(gpu, randn(rng, n * k, 2 / Math.sqrt(k)), n, k, "f16", "w");
    const [bx, bb] = [x, bias].map((a) => uploadArray(gpu, a));
    const by = createStorage(gpu, m * n * 4);
    const ds = linear(gpu, by, bx, w, bb, { m, activation: "quick_gelu" }, tuning);
    run(gpu, ds);
    assertClose(
      await readF32(gpu, by),
      quickGeluRef(linearRef(x, held, bias, m, n, k)),
      TOL,
      `quick_gelu ${m}x${n}x${k} ${JSON.stringify(tuning)}`,
    );
    [bx, bb, by].forEach((b) => b.destroy());
    ds.forEach((d) => d.destroy());
    destroyWeight(w);
  }
  const { w } = uploadWeight(gpu, randn(rng, 8 * 8), 8, 8, "f16", "w");
  const buf = createStorage(gpu, 256);
  assert.throws(
    () => linear(gpu, buf, buf, w, null, { m: 2, activation: "quick_gelu", accumulate: true }),
    (e: Error) =>
      e instanceof InvalidInputError && /activation "quick_gelu".*accumulate/.test(e.message),
  );
  buf.destroy();
  destroyWeight(w);
});

// The pipelined tiled GEMM (tuning.pipe), 128 × 128 tiles and 64 × 128 (HALF), alone and with
// split-k (several splits, the last one short; a sum pass adds bias and the old y); k = 200 and
// 1176 take an odd number of k steps (13 and 74; the loop runs two per iteration). Odd m, n and k
// (scalar loads), k % 4 == 0 but not a whole k step, k = 1176; m = 130 and 600 over several row
// tiles of either; f32 and f16 weights; bias and accumulate; weights in chunks of 7 (or 6) rows, so
// chunk borders fall inside output tiles and every chunk's split-k dispatches reuse one partials
// scratch. TOL as above. Each shape runs two of the four split tunings (in turn), one of each tile.
Deno.test("linear()'s pipelined tiled GEMM matches the reference for every option, with bias, accumulate and chunks", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(19);
  const tunings: Partial<LinearTuning>[] = [
    { pipe: true },
    { pipe: true, splitK: 3 },
    { pipe: true, splitK: 2 },
    { pipe: true, splitK: 4 },
  ];
  const shapes: [number, number, number][] = [[2, 47, 33], [3, 130, 200], [37, 67, 1176], [
    130,
    45,
    100,
  ], [600, 19, 81]];
  for (const dtype of ["f32", "f16"] as const) {
    for (const [i, [m, n, k]] of shapes.entries()) {
      for (const half of [false, true]) {
        const turn = half ? 1 : 0;
        const tuning = {
          ...tunings[(i + turn + (dtype === "f16" ? 2 : 0)) % tunings.length],
          half,
        };
        const x = randn(rng, m * k), bias = i % 2 ? null : randn(rng, n);
        const y0 = i % 3 ? randn(rng, m * n, 5) : undefined;
        const chunk = 7 * k * (dtype === "f16" ? 2 : 4); // 6 rows for f16 at odd k (alignment)
        const { w, held } = uploadWeight(
          gpu,
          randn(rng, n * k, 1 / Math.sqrt(k)),
          n,
          k,
          dtype,
          "w",
          chunk,
        );
        const got = await runLinear(gpu, x, w, bias, m, y0, tuning);
        assertClose(
          got,
          linearRef(x, held, bias, m, n, k, y0),
          TOL,
          `${dtype} ${m}x${n}x${k} ${JSON.stringify(tuning)} bias=${!!bias} acc=${!!y0}`,
        );
        destroyWeight(w);
      }
    }
  }
});

// What gemmKernel() encodes: PIPE at m ≥ 128, its k split where gemmTime() (one workgroup an SM,
// a fixed cost a workgroup, the sum pass) is least within GEMM_SPLIT_MAX_BYTES of partials — the
// split counts measured best on the H200 (2026-11-28 12:21): 7B at 478 rows qkv in 4–5 (0.56
// against 0.63 ms in 2), o and gate_up unsplit; down in 7 and vision fc2 at 5120 patches in 3
// were faster too, but over the partials budget; the rest of vision at 1564 / 5120 unsplit; tile 4
// below 128 rows where PIPE would not split; at m ≤ 64 PIPE's 64 × 128 tile (HALF), split by the
// same model over its tiles. linear()'s default runs the choice: the reference comparisons above
// go through PIPE (m = 130 / 600; m = 37 on HALF, at k = 1280 split), the tile-8 override below.
Deno.test("gemmKernel() picks the pipelined kernel, split where the modelled time is least (64-row tiles at m ≤ 64, tile 4 below 128 rows unsplit)", () => {
  const pick = (m: number, n: number, k: number) => {
    const c = gemmKernel(m, n, k);
    return c.splitK > 1 ? `${c.kernel}-s${c.splitK}` : c.kernel;
  };
  // The prefill / vision shapes of a 7B TTFT and a 1280-token image.
  assert.equal(pick(478, 4608, 3584), "pipe-s4"); // qkv: 144 tiles → 576 in 5 waves
  // Where the partials fit GEMM_SPLIT_MAX_BYTES: down in 7 (112 tiles → 784 in 6 waves, 48 MB),
  // vision fc2 at 5120 in 3 (400 tiles → 1200 in 10 waves, 79 MB).
  const fits = (s: number, m: number, n: number) => s * m * n * 4 <= GEMM_SPLIT_MAX_BYTES;
  assert.equal(pick(478, 3584, 18944), fits(7, 478, 3584) ? "pipe-s7" : "pipe");
  assert.equal(pick(5120, 1280, 5120), fits(3, 5120, 1280) ? "pipe-s3" : "pipe");
  assert.equal(pick(256, 3584, 18944), "pipe-s7"); // 26 MB: 56 tiles → 392 in 3 waves
  assert.equal(pick(478, 3584, 3584), "pipe"); // o: short k, no wave gain
  assert.equal(pick(478, 37888, 3584), "pipe"); // gate_up: 1184 tiles, 9 full waves
  // 296 tiles → 592 in five waves, or in three splits 888 in seven.
  assert.equal(pick(128, 37888, 3584), fits(3, 128, 37888) ? "pipe-s3" : "pipe-s2");
  for (const [n, k] of [[1280, 1280], [3840, 1280], [5120, 1280], [1280, 5120]]) {
    assert.equal(pick(1564, n, k), "pipe");
    if (k === 1280) assert.equal(pick(5120, n, k), "pipe");
  }
  // Few rows: split (below 128 rows PIPE only split), at most GEMM_SPLITS' largest, within the
  // partials budget; tile 4 at short k.
  for (const m of [2, 37, 64, 100, 127, 200, 256]) {
    for (const [n, k] of [[3584, 3584], [3584, 18944], [1280, 5120], [3840, 1280], [4608, 3584]]) {
      const c = gemmKernel(m, n, k);
      assert.equal(c.kernel, "pipe");
      assert.equal(c.half === true, m <= 64);
      assert.ok(c.splitK > 1 && c.splitK <= Math.max(...GEMM_SPLITS), `${m}x${n}x${k}`);
      assert.ok(c.splitK * m * n * 4 <= GEMM_SPLIT_MAX_BYTES);
    }
  }
  assert.equal(pick(100, 3584, 512), "tile4");
  assert.deepEqual(gemmKernel(64, 3584, 512), { kernel: "pipe", splitK: 1, half: true });
  assert.deepEqual(gemmKernel(3, 47, 33), { kernel: "pipe", splitK: 1, half: true });
  assert.equal(pick(478, 4608, 512), "pipe"); // too short a k to split
  // A split is never modelled slower than what it replaced.
  for (const [m, n, k] of [[478, 4608, 3584], [64, 37888, 3584], [256, 3584, 18944]]) {
    const c = gemmKernel(m, n, k);
    assert.ok(gemmTime(m, n, k, c.splitK) <= gemmTime(m, n, k, 1));
  }
});

// Small k at m = 1 takes the small-k GEMV (1–8 threads per row here, see gemvThreadsPerRow):
// every k the vector widths split differently (16-byte f16 loads at k % 8 == 0, vec4 at k % 4 == 0,
// scalar at 33 and 47), with and without bias and accumulate, over a weight in 3 chunks of 300 rows
// so chunk borders fall inside workgroups (256 rows per workgroup at 1 thread per row). TOL as
// above: at k ≤ 80 the f32 summation error is far below it (≤ 80 · 2⁻²⁴ of the partial sums).
Deno.test("linear() at small k (m = 1) matches the CPU reference with bias, accumulate and chunks", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(17);
  const n = 700;
  for (const dtype of ["f32", "f16"] as const) {
    for (const k of [8, 16, 32, 33, 47, 64, 80]) {
      const wData = randn(rng, n * k, 1 / Math.sqrt(k));
      const { w, held } = uploadWeight(
        gpu,
        wData,
        n,
        k,
        dtype,
        "w",
        300 * k * (dtype === "f16" ? 2 : 4),
      );
      assert.equal(w.chunks.length, 3);
      for (const withBias of [false, true]) {
        for (const acc of [false, true]) {
          const x = randn(rng, k), bias = withBias ? randn(rng, n) : null;
          const y0 = acc ? randn(rng, n, 2) : undefined;
          const got = await runLinear(gpu, x, w, bias, 1, y0);
          const what = `${dtype} k=${k} bias=${withBias} acc=${acc}`;
          assertClose(got, linearRef(x, held, bias, 1, n, k, y0), TOL, what);
        }
      }
      destroyWeight(w);
    }
  }
});

Deno.test("gemvThreadsPerRow() gives about 4 loads per thread below 128 loads, the whole workgroup above", () => {
  // loads per row → threads per row (workgroup 256; subgroup minimum 8 caps it on lavapipe)
  assert.equal(gemvThreadsPerRow(1, 256), 1);
  assert.equal(gemvThreadsPerRow(4, 256), 1); // the tiny lm_head in f16: k = 32 = 4 × 8 halves
  assert.equal(gemvThreadsPerRow(8, 256), 2);
  assert.equal(gemvThreadsPerRow(47, 256), 8); // ⌈47 / 4⌉ = 12 → 8
  assert.equal(gemvThreadsPerRow(127, 256), 32);
  assert.equal(gemvThreadsPerRow(127, 256, 8), 8);
  assert.equal(gemvThreadsPerRow(127, 16), 16);
  assert.equal(gemvThreadsPerRow(128, 256), 256);
  assert.equal(gemvThreadsPerRow(192, 256, 8), 256); // 1536 in f16
});

Deno.test("linear() takes the small-k GEMV below 128 loads per row and the row GEMV at model widths", async () => {
  const gpu = await sharedGpu();
  const sg = gpu.features.subgroups ? gpu.adapterInfo.subgroupMinSize : undefined;
  const cases: [number, "f32" | "f16", string][] = [
    [32, "f16", "TPR=1"], // tiny lm_head
    [32, "f32", "TPR=2"],
    [64, "f16", "TPR=2"],
    [33, "f16", `TPR=${Math.min(8, sg ?? 8)}`],
    [1016, "f16", `TPR=${Math.min(32, sg ?? 32)}`], // 127 16-byte loads
    [1024, "f16", "ROWS=2"],
    [1536, "f16", "ROWS=2"],
    [1536, "f32", "ROWS=2"],
    [3584, "f16", "ROWS=2"],
    [8192, "f16", "ROWS=2"],
  ];
  for (const [k, dtype, want] of cases) {
    const w = createWeight(gpu, 3, k, dtype, "w");
    const x = createStorage(gpu, k * 4), y = createStorage(gpu, 3 * 4);
    const ds = linear(gpu, y, x, w, null, { m: 1 });
    const key = ds[0].variant.key;
    assert.ok(key.split(/[[,\]]/).includes(want), `${dtype} k=${k}: ${key}, want ${want}`);
    assert.equal(key.includes("TPR=") && key.includes("ROWS="), false, key);
    ds.forEach((d) => d.destroy());
    [x, y].forEach((b) => b.destroy());
    destroyWeight(w);
  }
});

Deno.test("linear() over a weight split into several chunks gives the same bits as one chunk", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(14);
  for (const dtype of ["f32", "f16"] as const) {
    for (const [m, n, k] of [[1, 203, 44], [37, 203, 44], [1, 101, 33], [5, 101, 33]]) {
      const x = randn(rng, m * k), wData = randn(rng, n * k), bias = randn(rng, n);
      const one = uploadWeight(gpu, wData, n, k, dtype, "w");
      // 7 rows per chunk (6 for f16 with odd k, to keep chunks 4-byte aligned): chunk borders fall
      // inside GEMV row groups and output tiles.
      const split = uploadWeight(gpu, wData, n, k, dtype, "w", 7 * k * (dtype === "f16" ? 2 : 4));
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

// A few rows of x (1 < m ≤ GEMV_XROWS_MAX) take the row GEMV over all of them at once: each
// output adds its products in the order the m = 1 GEMV of the same tuning adds them, so every row
// is bit-equal to that row alone — with bias, accumulate, a weight in chunks, past the subgroup
// reduction or not.
Deno.test("linear() at 1 < m ≤ GEMV_XROWS_MAX gives each row the bits of m = 1 at its tuning", async () => {
  const gpu = await sharedGpu();
  const noSub = new Gpu(gpu.device, gpu.adapterInfo, { ...gpu.features, subgroups: false });
  const rng = seeded(27);
  // k: 128 loads a row or more (the row GEMV at m = 1, not the small-k one): f16 16-byte loads
  // (k = 1048: 131 units, a masked tail step) and f32 vec4 loads (k = 520).
  for (
    const [dtype, k, m, g] of [
      ["f16", 1048, 2, gpu],
      ["f16", 1048, GEMV_XROWS_MAX, gpu],
      ["f32", 520, 5, gpu],
      ["f16", 1048, 3, noSub],
    ] as const
  ) {
    const n = 45;
    const x = randn(rng, m * k), wData = randn(rng, n * k, 1 / Math.sqrt(k));
    const bias = randn(rng, n), y0 = randn(rng, m * n);
    const one = uploadWeight(gpu, wData, n, k, dtype, "w");
    const split = uploadWeight(gpu, wData, n, k, dtype, "w", 7 * k * (dtype === "f16" ? 2 : 4));
    const byRow = [];
    for (let i = 0; i < m; i++) {
      const row = (a: Float32Array, w: number) => a.slice(i * w, (i + 1) * w);
      byRow.push(...await runLinear(g, row(x, k), one.w, bias, 1, row(y0, n), gemvXRowsTuning(m)));
    }
    const want = Float32Array.from(byRow);
    const what = `${dtype} ${m}x${n}x${k}${g === noSub ? " no subgroups" : ""}`;
    assert.deepEqual(await runLinear(g, x, one.w, bias, m, y0), want, what);
    assert.deepEqual(await runLinear(g, x, split.w, bias, m, y0), want, `${what}, in chunks`);
    const ref = linearRef(x, one.held, bias, m, n, k).map((v, i) => v + y0[i]);
    assertClose(want, ref, TOL, `${what} vs ref`);
    // The tiled kernel it replaces agrees to rounding.
    assertClose(await runLinear(g, x, one.w, bias, m, y0, { gemvXRows: false }), ref, TOL, what);
    destroyWeight(one.w);
    destroyWeight(split.w);
  }
});

// Where the adapter's subgroups may be wider than the workgroup, the row GEMV sums through
// workgroup memory a partial per thread, not per subgroup: a tuning whose partials do not fit
// there takes the tiled kernel (it asked 64 KiB of workgroup memory, past the limit; lavapipe
// runs it all the same, a GPU's driver need not).
Deno.test("linear() at a few rows of x sizes the row GEMV's partials as the kernel it builds sums them", async () => {
  const gpu = await sharedGpu();
  const info = gpu.adapterInfo;
  const wide = new Gpu(gpu.device, {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    subgroupMinSize: info.subgroupMinSize,
    subgroupMaxSize: 1024, // wider than any workgroup below: no subgroup reduction
  } as GPUAdapterInfo, gpu.features);
  const m = GEMV_XROWS_MAX, k = 256, n = 8;
  const tuning = { gemvWg: 256, gemvRows: 4 };
  const limit = gpu.limits.maxComputeWorkgroupStorageSize;
  // Per thread the partials overflow the workgroup memory; per subgroup of 4 they would fit.
  assert.ok(m * 4 * 256 * 4 > limit && m * 4 * 64 * 4 <= limit, `limit ${limit}`);
  const rng = seeded(31);
  const x = randn(rng, m * k), wData = randn(rng, n * k, 1 / Math.sqrt(k));
  const { w, held } = uploadWeight(gpu, wData, n, k, "f16", "w");
  try {
    const ds = linear(wide, createStorage(gpu, m * n * 4), createStorage(gpu, m * k * 4), w, null, {
      m,
    }, tuning);
    const key = ds[0].variant.key;
    ds.forEach((d) => d.destroy());
    assert.doesNotMatch(key, /XROWS/, key);
    const got = await runLinear(wide, x, w, null, m, undefined, tuning);
    assertClose(got, linearRef(x, held, null, m, n, k), TOL, "f16 16 rows, wide subgroups");
  } finally {
    destroyWeight(w);
  }
});

Deno.test("linear() picks the row GEMV over all rows from m = 2 to GEMV_XROWS_MAX, the tiled kernels past it or when switched off", async () => {
  const gpu = await sharedGpu();
  const { w } = uploadWeight(gpu, new Float32Array(64 * 256), 64, 256, "f16", "w");
  const keyAt = (m: number) => {
    const ds = linear(
      gpu,
      createStorage(gpu, m * 64 * 4),
      createStorage(gpu, m * 256 * 4),
      w,
      null,
      {
        m,
      },
    );
    const key = ds[0].variant.key;
    ds.forEach((d) => d.destroy());
    return key;
  };
  assert.match(keyAt(2), /XR=2,XROWS/);
  // A bucket a power of two (pipelines compiled per bucket, not per row count).
  assert.match(keyAt(3), /XR=4,XROWS/);
  assert.match(keyAt(5), /XR=8,XROWS/);
  assert.match(keyAt(9), /XR=16,XROWS/);
  assert.deepEqual([2, 3, 4, 5, 8, 9, 16].map(xrowsBucket), [2, 4, 4, 8, 8, 16, 16]);
  assert.match(keyAt(GEMV_XROWS_MAX), new RegExp(`XR=${GEMV_XROWS_MAX},XROWS`));
  assert.doesNotMatch(keyAt(1), /XROWS/);
  assert.doesNotMatch(keyAt(GEMV_XROWS_MAX + 1), /XROWS|GEMV/);
  LINEAR_CHOICE.xrows = false;
  try {
    assert.doesNotMatch(keyAt(2), /XROWS|GEMV/);
  } finally {
    LINEAR_CHOICE.xrows = true;
  }
  destroyWeight(w);
});

Deno.test("linear() handles more rows than one grid dimension holds (lm_head-sized n)", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(15);
  // 270000 rows (in 3 chunks): 2 rows per workgroup (the row GEMV's default, or the small-k GEMV
  // at 128 threads per row) overflow 65535 workgroups and use the 2D grid; the default small-k
  // GEMV (1 thread per row, 256 rows per workgroup) and the tiled path (m = 3) need no 2D grid.
  const n = 270_000, k = 4;
  const wData = randn(rng, n * k);
  const { w, held } = uploadWeight(gpu, wData, n, k, "f16", "w", 2 ** 20);
  const runs: [number, Partial<LinearTuning>][] = [[1, {}], [1, { gemvTpr: 128 }], [
    1,
    { gemvTpr: 256 },
  ], [3, {}]];
  for (const [m, tuning] of runs) {
    const x = randn(rng, m * k);
    const got = await runLinear(gpu, x, w, null, m, undefined, tuning);
    assertClose(got, linearRef(x, held, null, m, n, k), TOL, `m=${m} ${JSON.stringify(tuning)}`);
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
  // The row GEMV (gemvTpr = gemvWg) at every k, the small-k GEMV at every k too (up to 256 threads
  // per row, and over workgroup memory with or without subgroups).
  const variants: [string, Gpu, Partial<LinearTuning>, number][] = [
    ["default", gpu, {}, 1],
    ["no subgroups", noSub, {}, 1],
    ["vec4<f16> loads", gpu, { gemvPack8: false }, 1],
    ["rows", gpu, { gemvTpr: 256 }, 1],
    ["rows, no subgroups", noSub, { gemvTpr: 256 }, 1],
    ["rows, 64 threads, 3 rows", gpu, { gemvWg: 64, gemvRows: 3, gemvTpr: 64 }, 1],
    ["rows, tree, 1 row", noSub, { gemvWg: 128, gemvRows: 1, gemvPack8: false, gemvTpr: 128 }, 1],
    ["rows, written out 2 units a step", gpu, { gemvTpr: 256, gemvUnroll: 2 }, 1],
    ["rows, 64 threads, 3 rows, 4 units", gpu, {
      gemvWg: 64,
      gemvRows: 3,
      gemvTpr: 64,
      gemvUnroll: 4,
    }, 1],
    ["rows, tree, 3 units", noSub, { gemvTpr: 256, gemvUnroll: 3 }, 1],
    ["1 thread per row", gpu, { gemvTpr: 1 }, 1],
    ["4 threads per row", gpu, { gemvTpr: 4, gemvPack8: false }, 1],
    ["32 threads per row", gpu, { gemvTpr: 32 }, 1],
    ["128 threads per row, no subgroups", noSub, { gemvTpr: 128 }, 1],
    ["16 threads per row of 64", gpu, { gemvWg: 64, gemvTpr: 16 }, 1],
    ["tile 64 × 64", gpu, { tile: 4 }, 150],
    ["tile 128 × 128", gpu, { tile: 8 }, 37],
    ["pipelined", gpu, { pipe: true }, 37],
    ["pipelined, 130 rows", gpu, { pipe: true }, 130],
    ["pipelined, 3 rows", gpu, { pipe: true }, 3],
    ["pipelined, split k 2", gpu, { pipe: true, splitK: 2 }, 130],
    ["pipelined, 64-row tiles", gpu, { pipe: true, half: true }, 37],
    // The row GEMV over a few rows of x at once (XROWS), and the tiled kernel it replaces there.
    ["3 rows of x at once", gpu, {}, 3],
    ["16 rows of x, 4 weight rows a group", gpu, { gemvRows: 4 }, 16],
    ["5 rows of x, no subgroups, 1 weight row", noSub, { gemvRows: 1 }, 5],
    ["7 rows of x, vec4<f16> loads", gpu, { gemvPack8: false }, 7],
    ["4 rows of x, written out 3 units a step", gpu, { gemvUnroll: 3 }, 4],
    ["2 rows of x, the plain loop", gpu, { gemvUnroll: 1 }, 2],
    ["5 rows, tiled (gemvXRows false)", gpu, { gemvXRows: false }, 5],
  ];
  for (const [n, k] of [[47, 40], [130, 1176], [133, 37]]) {
    for (const [name, g, tuning, m] of variants) {
      const x = randn(rng, m * k), bias = randn(rng, n);
      const { w, held } = uploadWeight(gpu, randn(rng, n * k), n, k, "f16", "w");
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
  for (const gemvTpr of [0, 3, 512]) {
    assert.throws(
      () =>
        linear(
          gpu,
          createStorage(gpu, 4),
          createStorage(gpu, 4),
          createWeight(gpu, 1, 1, "f32", "w"),
          null,
          {
            m: 1,
          },
          { gemvTpr },
        ),
      /bad tuning/,
    );
  }
});

Deno.test("linear()'s row GEMV written out (gemvUnroll) gives the plain loop's bits, fused norm and rows past k included", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(24);
  // k = 3584: 448 units, not a multiple of 3 · 256 or 4 · 64 (a masked tail step).
  const n = 40, k = 3584;
  const x = randn(rng, k, 3), nw = randn(rng, k, 0.5).map((v) => v + 1), bias = randn(rng, n);
  const { w } = uploadWeight(gpu, randn(rng, n * k, 1 / Math.sqrt(k)), n, k, "f16", "w");
  const bx = uploadArray(gpu, x), bnw = uploadArray(gpu, nw), bb = uploadArray(gpu, bias);
  const results = [];
  for (
    const t of [
      { gemvWg: 256, gemvRows: 2, gemvUnroll: 1 },
      { gemvWg: 256, gemvRows: 2, gemvUnroll: 3 },
      { gemvWg: 64, gemvRows: 4, gemvUnroll: 1 },
      { gemvWg: 64, gemvRows: 4, gemvUnroll: 4 },
    ]
  ) {
    const by = createStorage(gpu, n * 4);
    const ds = linear(gpu, by, bx, w, bb, { m: 1, norm: { weight: bnw, eps: 1e-6 } }, t);
    run(gpu, ds);
    results.push(await readF32(gpu, by));
    ds.forEach((d) => d.destroy());
    by.destroy();
  }
  assert.deepEqual(results[1], results[0], "256 threads, 3 units a step");
  assert.deepEqual(results[3], results[2], "64 threads × 4 rows, 4 units a step");
  [bx, bnw, bb].forEach((b) => b.destroy());
  destroyWeight(w);
});

Deno.test("linear()'s small-k GEMV gives the same bits reduced by subgroup shuffles or in workgroup memory", async () => {
  const gpu = await sharedGpu();
  const noSub = new Gpu(gpu.device, gpu.adapterInfo, { ...gpu.features, subgroups: false });
  const sgMin = gpu.features.subgroups ? gpu.adapterInfo.subgroupMinSize ?? 0 : 0;
  const rng = seeded(18);
  const n = 300, k = 80;
  const x = randn(rng, k), bias = randn(rng, n);
  const { w } = uploadWeight(gpu, randn(rng, n * k), n, k, "f32", "w");
  for (let tpr = 2; tpr <= sgMin; tpr *= 2) {
    const sub = await runLinear(gpu, x, w, bias, 1, undefined, { gemvTpr: tpr });
    const shared = await runLinear(noSub, x, w, bias, 1, undefined, { gemvTpr: tpr });
    assert.deepEqual(sub, shared, `${tpr} threads per row`);
  }
  destroyWeight(w);
});

// The fused x transforms (m = 1) against the CPU composition: RMSNorm (rmsNorm then linear) and
// siluMul (x = [gate | up] of 2k, silu(gate) · up then linear). The small-k GEMV (k = 32, 33, 80)
// and the row GEMV (1536, 3584, and 80 forced onto it), f32 and f16 weights (16-byte, vec4 and
// scalar loads), with and without subgroups, bias and accumulate, over weights in 3 chunks. For the
// norm x has rms ≈ 3, so a missing or doubled 1 / rms fails by far; TOL as above (the fused norm
// scales the dot product by 1 / rms instead of each x element: one more f32 rounding).
for (const fuse of ["norm", "siluMul"] as const) {
  Deno.test(`linear() with a fused ${fuse} (m = 1) matches the reference with bias, accumulate and chunks`, async () => {
    const gpu = await sharedGpu();
    const noSub = new Gpu(gpu.device, gpu.adapterInfo, { ...gpu.features, subgroups: false });
    const rng = seeded(fuse === "norm" ? 19 : 21);
    const eps = 1e-6;
    const cases: [number, number, Partial<LinearTuning>][] = [
      [32, 300, {}],
      [33, 300, {}],
      [80, 300, {}],
      [80, 30, { gemvWg: 256, gemvTpr: 256 }],
      [1536, 30, {}],
      [3584, 12, {}],
      [1536, 30, { gemvUnroll: 2 }],
      [3584, 12, { gemvWg: 64, gemvRows: 4, gemvUnroll: 4 }],
    ];
    for (const [k, n, tuning] of cases) {
      for (const dtype of ["f32", "f16"] as const) {
        const chunkBytes = (n / 3) * k * (dtype === "f16" ? 2 : 4);
        const { w, held } = uploadWeight(
          gpu,
          randn(rng, n * k, 1 / Math.sqrt(k)),
          n,
          k,
          dtype,
          "w",
          chunkBytes,
        );
        assert.equal(w.chunks.length, 3);
        for (const [g, withBias, acc] of [[gpu, true, false], [noSub, false, true]] as const) {
          const x = fuse === "norm" ? randn(rng, k, 3) : randn(rng, 2 * k, 2);
          const nw = randn(rng, k, 0.5).map((v) => v + 1);
          const bias = withBias ? randn(rng, n) : null, y0 = acc ? randn(rng, n, 2) : undefined;
          const bx = uploadArray(gpu, x, "x"), bnw = uploadArray(gpu, nw, "nw");
          const bb = bias ? uploadArray(gpu, bias, "bias") : null;
          const by = y0 ? uploadArray(gpu, y0, "y") : createStorage(gpu, n * 4, "y");
          const ds = linear(g, by, bx, w, bb, {
            m: 1,
            accumulate: acc,
            ...(fuse === "norm" ? { norm: { weight: bnw, eps } } : { siluMul: true }),
          }, tuning);
          assert.equal(ds.length, 3);
          run(gpu, ds);
          const got = await readF32(gpu, by, n);
          const want = fuse === "norm"
            ? normLinearRef(x, nw, eps, held, bias, 1, n, k, y0)
            : siluMulLinearRef(x, held, bias, 1, n, k, y0);
          const what = `${dtype} k=${k} n=${n} ${
            JSON.stringify(tuning)
          } bias=${withBias} acc=${acc}`;
          assertClose(got, want, TOL, what);
          [bx, bnw, bb, by].forEach((b) => b?.destroy());
          ds.forEach((d) => d.destroy());
        }
        destroyWeight(w);
      }
    }
  });
}

Deno.test("the float row GEMV over a few rows fuses no norm or silu · mul: normLinear() / siluMulLinear() run their pass before it, linear() refuses them", async () => {
  const gpu = await sharedGpu();
  const n = 24, k = 64, m = 5;
  const { w } = uploadWeight(gpu, randn(seeded(3), n * k), n, k, "f16", "w");
  const x = createStorage(gpu, m * 2 * k * 4), y = createStorage(gpu, m * n * 4);
  const h = createStorage(gpu, m * k * 4), nw = createStorage(gpu, k * 4);
  const keys = (ds: Dispatch[]) => {
    const out = ds.map((d) => d.variant.key).join(" ");
    ds.forEach((d) => d.destroy());
    return out;
  };
  assert.match(
    keys(normLinear(gpu, y, x, h, nw, w, null, { m, eps: 1e-6 })),
    /^norm\.main\[\S*\] linear\.main\[[^\]]*XROWS/,
  );
  assert.match(
    keys(siluMulLinear(gpu, y, x, h, w, null, { m })),
    /^elementwise\.silu_mul\S* linear\.main\[[^\]]*XROWS/,
  );
  assert.equal(fusesXTransform(gpu, w, m, true), false);
  assert.equal(fusesXTransform(gpu, w, m, false), false);
  assert.throws(
    () => linear(gpu, y, x, w, null, { m, norm: { weight: nw, eps: 1e-6 } }),
    /fused norm at m = 5 over f16 weights is not run/,
  );
  assert.throws(
    () => linear(gpu, y, x, w, null, { m, siluMul: true }),
    /fused siluMul at m = 5 over f16 weights is not run/,
  );
  [x, y, h, nw].forEach((b) => b.destroy());
  destroyWeight(w);
});

Deno.test("normLinear() over f16 fuses at m = 1, runs rmsNorm then linear at a few rows and past GEMV_XROWS_MAX, all as the reference", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(20);
  const n = 45, k = 64, eps = 1e-5;
  const { w, held } = uploadWeight(gpu, randn(rng, n * k, 1 / Math.sqrt(k)), n, k, "f16", "w");
  for (const m of [1, 5, GEMV_XROWS_MAX + 1]) {
    const x = randn(rng, m * k, 2), nw = randn(rng, k).map((v) => v + 1), bias = randn(rng, n);
    const bx = uploadArray(gpu, x, "x"), bnw = uploadArray(gpu, nw, "nw");
    const bb = uploadArray(gpu, bias, "bias");
    const h = createStorage(gpu, m * k * 4, "h"), by = createStorage(gpu, m * n * 4, "y");
    const ds = normLinear(gpu, by, bx, h, bnw, w, bb, { m, eps });
    const fused = m === 1;
    assert.equal(ds.length, fused ? 1 : 2, `m=${m}: ${ds.map((d) => d.variant.key)}`);
    if (!fused) assert.match(ds[0].variant.key, /^norm\./);
    run(gpu, ds);
    const got = await readF32(gpu, by, m * n);
    assertClose(got, normLinearRef(x, nw, eps, held, bias, m, n, k), TOL, `m=${m}`);
    [bx, bnw, bb, h, by].forEach((b) => b.destroy());
    ds.forEach((d) => d.destroy());
  }
  const y = createStorage(gpu, 17 * n * 4), x = createStorage(gpu, 17 * k * 4);
  const nw = createStorage(gpu, k * 4);
  assert.throws(
    () => linear(gpu, y, x, w, null, { m: 17, norm: { weight: nw, eps } }),
    /fused norm needs m = 1 or the few-row GEMV/,
  );
  // A few rows, on the row GEMV or off it (tiled kernels): no fused norm over f16.
  assert.throws(
    () => linear(gpu, y, x, w, null, { m: 2, norm: { weight: nw, eps } }),
    /fused norm at m = 2 over f16 weights is not run/,
  );
  assert.throws(
    () => linear(gpu, y, x, w, null, { m: 2, norm: { weight: nw, eps } }, { gemvXRows: false }),
    /fused norm at m = 2 over f16 weights is not run/,
  );
  assert.throws(
    () => linear(gpu, y, x, w, null, { m: 1, norm: { weight: createStorage(gpu, 4), eps } }),
    /norm weight buffer/,
  );
  [y, x, nw].forEach((b) => b.destroy());
  destroyWeight(w);
});

Deno.test("siluMulLinear() over f16 fuses at m = 1, runs siluMul then linear at a few rows and past GEMV_XROWS_MAX, all as the reference", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(22);
  const n = 45, k = 64;
  const { w, held } = uploadWeight(gpu, randn(rng, n * k, 1 / Math.sqrt(k)), n, k, "f16", "w");
  for (const m of [1, 5, GEMV_XROWS_MAX + 1]) {
    const gu = randn(rng, m * 2 * k, 2), y0 = randn(rng, m * n);
    const bgu = uploadArray(gpu, gu, "gate_up"), by = uploadArray(gpu, y0, "y");
    const act = createStorage(gpu, m * k * 4, "act");
    const ds = siluMulLinear(gpu, by, bgu, act, w, null, { m, accumulate: true });
    const fused = m === 1;
    assert.equal(ds.length, fused ? 1 : 2, `m=${m}: ${ds.map((d) => d.variant.key)}`);
    if (!fused) assert.match(ds[0].variant.key, /^elementwise\.silu_mul\[/);
    run(gpu, ds);
    const got = await readF32(gpu, by, m * n);
    assertClose(got, siluMulLinearRef(gu, held, null, m, n, k, y0), TOL, `m=${m}`);
    [bgu, by, act].forEach((b) => b.destroy());
    ds.forEach((d) => d.destroy());
  }
  const y = createStorage(gpu, 17 * n * 4), x = createStorage(gpu, 17 * 2 * k * 4);
  assert.throws(
    () => linear(gpu, y, x, w, null, { m: 17, siluMul: true }),
    /fused siluMul needs m = 1 or the few-row GEMV/,
  );
  assert.throws(
    () => linear(gpu, y, x, w, null, { m: 2, siluMul: true }),
    /fused siluMul at m = 2 over f16 weights is not run/,
  );
  assert.throws(
    () => linear(gpu, y, x, w, null, { m: 2, siluMul: true }, { gemvXRows: false }),
    /fused siluMul at m = 2 over f16 weights is not run/,
  );
  const nw = createStorage(gpu, k * 4);
  assert.throws(
    () => linear(gpu, y, x, w, null, { m: 1, siluMul: true, norm: { weight: nw, eps: 1e-6 } }),
    /no norm/,
  );
  // x must hold [gate | up]: 2k floats.
  assert.throws(() => linear(gpu, y, nw, w, null, { m: 1, siluMul: true }), /x buffer/);
  [y, x, nw].forEach((b) => b.destroy());
  destroyWeight(w);
});

// The written-out loop over several rows of x gives the plain loop's bits (XROWS STEPS against its
// loop): units of a row a step 1 (the loop) and 2, 3, with bias and accumulate.
Deno.test("linear()'s row GEMV over a few rows written out gives the plain loop's bits", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(30);
  const n = 20, k = 3584;
  const { w } = uploadWeight(gpu, randn(rng, n * k, 1 / Math.sqrt(k)), n, k, "f16", "w");
  const bb = uploadArray(gpu, randn(rng, n));
  for (const m of [3, 16]) {
    const bx = uploadArray(gpu, randn(rng, m * k, 2)), y0 = randn(rng, m * n);
    const out: Float32Array[] = [];
    for (const gemvUnroll of [1, 2, 3]) {
      const by = uploadArray(gpu, y0);
      const ds = linear(gpu, by, bx, w, bb, { m, accumulate: true }, {
        ...gemvXRowsTuning(m),
        gemvUnroll,
      });
      assert.equal(/STEPS/.test(ds[0].variant.key), gemvUnroll > 1, ds[0].variant.key);
      assert.match(ds[0].variant.key, /XROWS/);
      run(gpu, ds);
      out.push(await readF32(gpu, by));
      ds.forEach((d) => d.destroy());
      by.destroy();
    }
    assert.deepEqual(out[1], out[0], `m=${m}, 2 units a step`);
    assert.deepEqual(out[2], out[0], `m=${m}, 3 units a step`);
    bx.destroy();
  }
  bb.destroy();
  destroyWeight(w);
});

// The decode q/k/v projection with rope + KV write as its epilogue against the CPU composition
// (normLinear, then ropeKvWrite): 7B's head layout (28 q + 4 kv heads of 128, M-RoPE) at k = 3584
// f16 with 16-byte loads, and the tiny model's (4 + 2 heads of 16) at k = 32 (the row GEMV with
// idle threads) and 40 (scalar loads) in f32, with and without subgroups, bias, norm, into an f16
// cache (with norm) and an f32 one. The cache row state.cache_len gets K and V, the rows around it
// stay; a cache_len of maxTokens writes nothing. TOL as above for y and the f32 caches (the
// rotation adds one FMA over the linear's rounding; f16: see assertCache).
Deno.test("linear() with ropeKv rotates q and k at state.position and writes K, V at state.cache_len like normLinear + ropeKvWrite", async () => {
  const gpu = await sharedGpu();
  const noSub = new Gpu(gpu.device, gpu.adapterInfo, { ...gpu.features, subgroups: false });
  const rng = seeded(23);
  const maxTokens = 6, eps = 1e-6;
  const cases = [
    { t: mropeTable(128, 1e6, [16, 24, 24], 4096), q: 28, kv: 4, k: 3584, dtype: "f16", row: 3 },
    { t: mropeTable(16, 1e6, [2, 3, 3], 64), q: 4, kv: 2, k: 32, dtype: "f32", row: 5 },
    { t: mropeTable(16, 1e6, [2, 3, 3], 64), q: 4, kv: 2, k: 40, dtype: "f32", row: 6 },
  ] as const;
  for (const { t, q, kv, k, dtype, row } of cases) {
    const hd = 2 * t.half, n = (q + 2 * kv) * hd;
    const gt = uploadRopeTable(gpu, t);
    const { w, held } = uploadWeight(gpu, randn(rng, n * k, 1 / Math.sqrt(k)), n, k, dtype, "w");
    for (const [g, norm] of [[gpu, true], [noSub, false]] as const) {
      const cache: KvDType = norm ? "f16" : "f32";
      const c = ropeKvCase(gpu, rng, { table: t, gpuTable: gt, q, kv, k, row, maxTokens, cache });
      const ds = linear(g, c.by, c.bx, w, c.bb, {
        m: 1,
        ...(norm ? { norm: { weight: c.bnw, eps } } : {}),
        ropeKv: c.ropeKv,
      });
      assert.equal(ds.length, 1);
      run(gpu, ds);
      const lin = norm
        ? normLinearRef(c.x, c.nw, eps, held, c.bias, 1, n, k)
        : linearRef(c.x, held, c.bias, 1, n, k);
      await c.check(lin, TOL, `${dtype} ${q}+${kv} heads of ${hd}, k=${k}, norm=${norm}`);
      c.destroy();
      ds.forEach((d) => d.destroy());
    }
    destroyWeight(w);
    gt.destroy();
  }
});

Deno.test("linear() refuses ropeKv where it cannot fuse: m > 1, accumulate, chunked weights, a row count that is not the heads", async () => {
  const gpu = await sharedGpu();
  const t = mropeTable(16, 1e6, [2, 3, 3], 64), gt = uploadRopeTable(gpu, t);
  const state = createDecodeState(gpu), c = createStorage(gpu, 4 * 2 * 16 * 4);
  const ropeKv = { table: gt, state, k: c, v: c, heads: 3, kvHeads: 1, maxTokens: 4 };
  const n = 4 * 16, k = 32;
  const one = createWeight(gpu, n, k, "f32", "w");
  const three = createWeight(gpu, n, k, "f32", "w3", (n / 2) * k * 4);
  const odd = createWeight(gpu, n + 16, k, "f32", "w4");
  const x = createStorage(gpu, 2 * k * 4), y = createStorage(gpu, 2 * (n + 16) * 4);
  assert.throws(
    () => linear(gpu, y, x, one, null, { m: 2, ropeKv }),
    /rope \+ KV write needs m = 1/,
  );
  assert.throws(
    () => linear(gpu, y, x, one, null, { m: 1, accumulate: true, ropeKv }),
    /rope \+ KV write needs/,
  );
  assert.throws(() => linear(gpu, y, x, three, null, { m: 1, ropeKv }), /in 2 chunks/);
  assert.throws(
    () => linear(gpu, y, x, odd, null, { m: 1, ropeKv }),
    /80 weight rows are not 3 rotated \+ 1 v heads/,
  );
  [one, three, odd].forEach(destroyWeight);
  [state, c, x, y].forEach((b) => b.destroy());
  gt.destroy();
});
