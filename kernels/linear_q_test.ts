import assert from "node:assert/strict";
import { Gpu, sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readBytes, readF32, uploadArray, writeArray } from "../src/gpu/buffers.ts";
import {
  createWeight,
  destroyWeight,
  f16BitsToF32,
  f32ToF16Bits,
  type QuantDType,
  type Weight,
  writeWeightRows,
} from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  linear as linearRef,
  normLinear as normLinearRef,
  siluMulLinear as siluMulLinearRef,
} from "../src/ref/linear.ts";
import { dequantize as dequantRef, quantize, quantizeActivations } from "../src/ref/linear_q.ts";
import { siluMul } from "../src/ref/elementwise.ts";
import { quantizeX } from "../src/ref/gemm_q.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { fill } from "./fill.ts";
import {
  balancedSlices,
  dequantize,
  emitKeepsTuning,
  fillQuantRows,
  GEMV_WIDE,
  GEMV_XROWS,
  GEMV_XROWS_F32,
  gemvQTuning,
  gemvQXRowsTuning,
  linearQ,
  linearQFewRows,
  type LinearQTuning,
  PREFILL_INT8,
  preparedXBytes,
  readQuantWeight,
  writeQuantRows,
  XROWS_NORM_LANES,
} from "./linear_q.ts";
import {
  fusesXTransform,
  GEMV_XROWS_MAX,
  linear,
  LINEAR_CHOICE,
  type LinearShape,
  normLinear,
  siluMulLinear,
  xrowsBucket,
} from "./linear.ts";
import { run } from "./_kernel.ts";
import { ropeKvCase, withSettings } from "./_test_utils.ts";
import { gemmQ } from "./gemm.ts";
import { mropeTable } from "../src/ref/rope.ts";
import type { KvDType } from "./kv_cache.ts";
import { uploadRopeTable } from "./rope.ts";
import { rmsNorm as rmsNormPass } from "./norm.ts";
import { siluMul as siluMulPass } from "./elementwise.ts";

// Same bound as kernels/linear_test.ts: f32 sums in another order than the f64 reference.
const TOL = 1e-5;
const DTYPES: QuantDType[] = ["q8", "q4"];

/**
 * Asserts the GPU's codes equal the reference's but where v / d sits on a rounding tie (within
 * 1e-4: the values are f16, so exact ties c + ½ are common, and the GPU's 1 / d may be 2.5 ulps
 * off — an H200 took the other side at 9 of 1184 q8 codes, lavapipe at none): there either
 * neighbour is as close, and the code may differ by one. Returns how many did.
 */
function assertCodes(
  got: { codes: Int8Array; scales: Float32Array },
  want: { codes: Int8Array },
  values: Float32Array,
  what: string,
): number {
  let ties = 0;
  for (let i = 0; i < got.codes.length; i++) {
    if (got.codes[i] === want.codes[i]) continue;
    const r = values[i] / got.scales[Math.floor(i / 32)];
    const tie = Math.abs(Math.abs(r - Math.trunc(r)) - 0.5) <= 1e-4;
    assert.ok(
      tie && Math.abs(got.codes[i] - want.codes[i]) === 1,
      `${what} code ${i}: ${got.codes[i]} vs ${want.codes[i]} (v / d = ${r})`,
    );
    ties++;
  }
  return ties;
}

/** A quantized weight from random f16-rounded values, written through writeQuantRows. */
function makeQuant(
  gpu: Gpu,
  rows: number,
  cols: number,
  dtype: QuantDType,
  seed: number,
  maxChunk?: number,
  std = 0.05,
) {
  const data = randn(seeded(seed), rows * cols, std).map(Math.f16round);
  const w = createWeight(gpu, rows, cols, dtype, "wq", maxChunk);
  writeQuantRows(gpu, w, 0, f32ToF16Bits(data));
  return { w, data };
}

Deno.test("writeQuantRows() gives src/ref/linear_q.ts's codes and scales, across chunks", async () => {
  const gpu = await sharedGpu();
  // (rows, cols, chunk bytes, std): one group per row (odd groups: chunks keep even rows), several
  // groups, 7B-like k; values of 1e-4 give f16-subnormal scales (below 2^-14).
  const cases: [number, number, number | undefined, number][] = [
    [37, 32, 500, 0.05],
    [19, 96, undefined, 0.05],
    [8, 3584, undefined, 0.05],
    [6, 96, undefined, 1e-4],
  ];
  for (const [rows, cols, maxChunk, std] of cases) {
    for (const dtype of DTYPES) {
      const { w, data } = makeQuant(gpu, rows, cols, dtype, rows + cols, maxChunk, std);
      if (maxChunk) assert.ok(w.chunks.length > 2, "several chunks");
      const got = await readQuantWeight(gpu, w), want = quantize(data, cols, dtype);
      assert.deepEqual([...got.scales], [...want.scales], `${dtype} ${rows}x${cols} scales`);
      assertCodes(got, want, data, `${dtype} ${rows}x${cols}`);
      // Quantization error within half a step of each group (plus the f16 scale's rounding), or
      // what the clamp leaves where a subnormal f16 scale rounded down: qmax · d < max|v|.
      const deq = dequantRef(got), qmax = dtype === "q8" ? 127 : 7;
      for (let i = 0; i < data.length; i++) {
        const d = got.scales[Math.floor(i / 32)];
        const clamped = Math.max(0, Math.abs(data[i]) - qmax * d);
        assert.ok(
          Math.abs(deq[i] - data[i]) <= Math.max(0.5 * d * (1 + 1e-3), clamped) + 1e-12,
          `${dtype} err at ${i}`,
        );
      }
      destroyWeight(w);
    }
  }
});

Deno.test("writeQuantRows() from bf16 bits quantizes the bf16 values themselves", async () => {
  const gpu = await sharedGpu();
  const [rows, cols] = [22, 96];
  // bf16 bits: the upper halves of f32 values (truncated), values as the f32 they stand for.
  const f = new Float32Array(randn(seeded(21), rows * cols, 0.05));
  const bits = new Uint16Array(new Uint32Array(f.buffer).map((u) => u >>> 16));
  const vals = new Float32Array(new Uint32Array(bits).map((b) => b << 16).buffer);
  for (const dtype of DTYPES) {
    const w = createWeight(gpu, rows, cols, dtype, "bf16");
    writeQuantRows(gpu, w, 0, bits, "bf16");
    const got = await readQuantWeight(gpu, w), want = quantize(vals, cols, dtype);
    assert.deepEqual([...got.scales], [...want.scales], dtype);
    assertCodes(got, want, vals, `bf16 ${dtype}`);
    destroyWeight(w);
  }
});

Deno.test("dequantize() gives d · code rounded to f16 for any row slice", async () => {
  const gpu = await sharedGpu();
  for (const dtype of DTYPES) {
    const rows = 24, cols = 160;
    const { w } = makeQuant(gpu, rows, cols, dtype, 5);
    const q = await readQuantWeight(gpu, w);
    const out = createStorage(gpu, rows * cols * 2);
    run(gpu, [dequantize(gpu, out, w, w.chunks[0], 6, 11)]);
    const got = f16BitsToF32(new Uint16Array(await readBytes(gpu, out, 11 * cols * 2)));
    assert.deepEqual([...got], [...dequantRef(q, true).subarray(6 * cols, 17 * cols)], dtype);
    out.destroy();
    destroyWeight(w);
  }
});

// m × n × k: decode GEMV (m = 1) at tiny, odd-n and 7B widths; prefill/vision (m > 1) through the
// int8 GEMM (q4) or the dequantized f16 scratch (q8), with and without bias / accumulate.
const SHAPES: [number, number, number][] = [[1, 3, 32], [1, 67, 96], [1, 130, 3584], [5, 67, 96], [
  33,
  40,
  1280,
]];

Deno.test("linearQ() matches the reference product with the dequantized weight", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(11);
  for (const dtype of DTYPES) {
    for (const [m, n, k] of SHAPES) {
      const { w } = makeQuant(gpu, n, k, dtype, m * n + k);
      // 1 < m ≤ GEMV_XROWS_MAX: the few-row GEMV (q4: int8 x per row, as m = 1's int8-x GEMV;
      // q8: f32 x).
      const xrows = m > 1 && m <= GEMV_XROWS_MAX && GEMV_XROWS[dtype];
      const int8Gemm = m > 1 && !xrows && PREFILL_INT8[dtype];
      // The dequantizing m > 1 path multiplies by d · code rounded to f16 (its scratch is f16).
      const held = dequantRef(await readQuantWeight(gpu, w), m > 1 && !xrows && !int8Gemm);
      const x0 = randn(rng, m * k), bias = randn(rng, n), y0 = randn(rng, m * n);
      // m = 1 multiplies by d · code exactly, with x as int8 where the default GEMV holds it so
      // (gemvQTuning), and so does the few-row GEMV at 2–16 rows (k % 32 == 0: quantizing all of
      // x at once quantizes each row's blocks): exact against the reference. Past 16 rows it
      // runs, for q4, kernels/gemm.ts's int8 GEMM (x per row and group of 32 to int8 with step
      // max|x| / 127, tested against its own reference in kernels/gemm_test.ts): here within
      // that rounding's bound, Σ |w| · step / 2 per output (a code may round the other way where
      // x / step sits within an ulp of a half); q8 dequantizes and runs the f32 GEMM: within TOL.
      const xq = xrows ? !GEMV_XROWS_F32[dtype] : m === 1 && gemvQTuning(dtype, n, k).xq;
      const x = xq ? quantizeActivations(x0).values : x0;
      const bound = new Float32Array(m * n);
      if (int8Gemm) {
        const steps = quantizeX(x0).scales;
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            for (let t = 0; t < k; t++) {
              bound[i * n + j] += Math.abs(held[j * k + t]) * steps[(i * k + t) / 32 | 0] / 2 *
                (1 + 1e-5);
            }
          }
        }
      }
      for (const [useBias, acc] of [[false, false], [true, true]]) {
        const bx = uploadArray(gpu, x0), bb = useBias ? uploadArray(gpu, bias) : null;
        const by = acc ? uploadArray(gpu, y0) : createStorage(gpu, m * n * 4);
        // Through linear(), which forwards quantized weights here.
        const ds = linear(gpu, by, bx, w, bb, { m, accumulate: acc });
        run(gpu, ds);
        const want = linearRef(x, held, useBias ? bias : null, m, n, k, acc ? y0 : undefined);
        const got = await readF32(gpu, by, m * n), what = `${dtype} ${m}x${n}x${k} bias=${useBias}`;
        if (int8Gemm) assertWithin(got, want, bound, what);
        else assertClose(got, want, TOL, what);
        [bx, bb, by].forEach((b) => b?.destroy());
        ds.forEach((d) => d.destroy());
      }
      destroyWeight(w);
    }
  }
});

// Tunings that reach every GEMV reduction (lavapipe's subgroups are 8 lanes: tpr 4 shuffles, tpr
// 32 / 64 add whole subgroups, tpr 1 and 16 with its 8..8 size range the tree; on a 32-lane
// adapter tpr 8 and 32 shuffle), rows per group that do not divide the chunk, x tiles of 1 to
// 64 units (several tiles per row, the last one shorter), int8 and f32 x.
const GEMV_TUNINGS: Partial<LinearQTuning>[] = [
  { wg: 64, tpr: 1, rows: 1, unroll: false, tile: 3, xq: false },
  { wg: 64, tpr: 4, rows: 3, unroll: true, tile: 2, xq: false },
  { wg: 128, tpr: 8, rows: 2, unroll: true, xq: false },
  { wg: 64, tpr: 32, rows: 2, unroll: false, tile: 5, xq: false },
  { wg: 64, tpr: 64, rows: 5, unroll: true, tile: 64, xq: false },
  { wg: 64, tpr: 1, rows: 2, tile: 3, xq: true },
  { wg: 64, tpr: 4, rows: 3, tile: 2, xq: true },
  { wg: 64, tpr: 16, rows: 1, tile: 1, xq: true },
  { wg: 64, tpr: 64, rows: 5, tile: 64, xq: true },
  // ... its loop over a tile written out 2 or 4 units at a time (tiles of 7 and 5 units: tails).
  { wg: 64, tpr: 2, rows: 3, tile: 7, xq: true, xpUnroll: 2 },
  { wg: 64, tpr: 1, rows: 2, tile: 5, xq: true, xpUnroll: 4 },
  // Prepared x (one PREPX pass, then the GEMV reads its blocks): every reduction.
  { wg: 64, tpr: 1, rows: 2, xq: true, prep: true },
  { wg: 64, tpr: 4, rows: 3, xq: true, prep: true },
  { wg: 128, tpr: 32, rows: 1, xq: true, prep: true },
  { wg: 64, tpr: 64, rows: 5, xq: true, prep: true },
  // ... its loop written out 2, 3 or 8 units at a time (a tail of plain steps, or none entered).
  { wg: 64, tpr: 4, rows: 3, xq: true, prep: true, xpUnroll: 3 },
  { wg: 128, tpr: 32, rows: 1, xq: true, prep: true, xpUnroll: 2 },
  { wg: 64, tpr: 1, rows: 2, xq: true, prep: true, xpUnroll: 8 },
  {},
];

/** Σ_i |w_ji| · step_i per row j: how far int8 x (steps from quantizeActivations) may move y. */
function xqBound(held: Float32Array, steps: Float32Array, n: number, k: number): Float32Array {
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < k; i++) out[j] += Math.abs(held[j * k + i]) * steps[Math.floor(i / 32)];
  }
  return out;
}

/** |got − want| ≤ bound (per element) + TOL · max(1, max|want|). */
function assertWithin(got: Float32Array, want: Float32Array, bound: Float32Array, what: string) {
  const scale = Math.max(1, ...want.map(Math.abs));
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    assert.ok(e <= bound[i] + TOL * scale, `${what}: |err| ${e} at [${i}] > ${bound[i]}`);
  }
}

/** 1 / rms of x as Qwen2RMSNorm takes it (f64). */
function invRms(x: Float32Array, eps: number): number {
  return 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + eps);
}

Deno.test("linearQ() GEMV: every tuning, int8 / f32 x, fused norm / siluMul, chunks and k % 64 != 0 match the reference", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(12);
  // (n, k, maxChunk bytes): chunked with 4+ chunks, k = 3 and 5 groups (not a multiple of 64),
  // 7B width (3584 = 112 q4 units: units not a multiple of tpr · 2).
  const shapes: [number, number, number | undefined][] = [
    [77, 256, 12 * 256],
    [45, 96, undefined],
    [19, 160, 6 * 160],
    [9, 3584, undefined],
  ];
  for (const dtype of DTYPES) {
    for (const [n, k, maxChunk] of shapes) {
      const { w } = makeQuant(gpu, n, k, dtype, n + k, maxChunk);
      if (maxChunk) assert.ok(w.chunks.length >= 4, "several chunks");
      const held = dequantRef(await readQuantWeight(gpu, w));
      const x = randn(rng, 2 * k), nw = randn(rng, k, 1), bias = randn(rng, n), y0 = randn(rng, n);
      const x0 = x.subarray(0, k), eps = 1e-6;
      const lin = (v: Float32Array, b: Float32Array | null, acc?: Float32Array) =>
        linearRef(v, held, b, 1, n, k, acc);
      // int8 x: x as the kernel holds it; with the norm, x ∘ nw (f32) is quantized and 1 / rms
      // scales the product.
      const qx = quantizeActivations(x0).values;
      const xnw = new Float32Array(x0.map((v, i) => v * nw[i]));
      const qnorm = lin(quantizeActivations(xnw).values, null).map((v, j) =>
        v * invRms(x0, eps) + bias[j]
      );
      // silu(gate) · up is computed by the GPU's exp / division: its int8 codes may differ by one
      // from the reference's, so the check is the int8 error bound around the f32-x product.
      const act = siluMul(x, 1, k);
      const siluSteps = quantizeActivations(act).steps;
      // [name, shape, bias, expected (f32 x), expected (int8 x), bound (int8 x) or null: exact]
      const cases: [
        string,
        LinearShape,
        boolean,
        Float32Array,
        Float32Array,
        Float32Array | null,
      ][] = [
        ["plain", { m: 1 }, false, lin(x0, null), lin(qx, null), null],
        ["bias+acc", { m: 1, accumulate: true }, true, lin(x0, bias, y0), lin(qx, bias, y0), null],
        [
          "norm+bias",
          { m: 1, norm: { weight: null!, eps } },
          true,
          normLinearRef(x0, nw, eps, held, bias, 1, n, k),
          qnorm,
          null,
        ],
        [
          "silu+acc",
          { m: 1, accumulate: true, siluMul: true },
          false,
          siluMulLinearRef(x, held, null, 1, n, k, y0),
          siluMulLinearRef(x, held, null, 1, n, k, y0),
          xqBound(held, siluSteps, n, k),
        ],
      ];
      for (const tuning of GEMV_TUNINGS) {
        for (const [name, shape, useBias, wantF32, wantXq, bound] of cases) {
          const silu = shape.siluMul === true;
          const bx = uploadArray(gpu, silu ? x : x0), bnw = uploadArray(gpu, nw);
          const bb = useBias ? uploadArray(gpu, bias) : null;
          const by = shape.accumulate ? uploadArray(gpu, y0) : createStorage(gpu, n * 4);
          const s = shape.norm ? { ...shape, norm: { weight: bnw, eps } } : shape;
          const ds = linearQ(gpu, by, bx, w, bb, s, tuning);
          run(gpu, ds);
          const got = await readF32(gpu, by, n);
          const what = `${dtype} ${n}x${k} ${name} ${JSON.stringify(tuning)}`;
          if (!(tuning.xq ?? gemvQTuning(dtype, n, k).xq)) assertClose(got, wantF32, TOL, what);
          else if (bound) assertWithin(got, wantXq, bound, what);
          else assertClose(got, wantXq, TOL, what);
          [bx, bnw, bb, by].forEach((b) => b?.destroy());
          ds.forEach((d) => d.destroy());
        }
      }
      destroyWeight(w);
    }
  }
});

Deno.test("linearQ() with prepared x or xpUnroll gives the staged int8-x GEMV's bits (norm: its 1 / rms to f32 order)", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(31);
  for (const dtype of DTYPES) {
    for (const [n, k, maxChunk] of [[40, 3584, 8 * 3584], [13, 160, undefined]] as const) {
      const { w } = makeQuant(gpu, n, k, dtype, n * k, maxChunk);
      const x = randn(rng, 2 * k), nw = randn(rng, k, 1), y0 = randn(rng, n), bias = randn(rng, n);
      const bnw = uploadArray(gpu, nw);
      const shapes: [string, LinearShape, boolean][] = [
        ["plain", { m: 1 }, false],
        ["norm+bias", { m: 1, norm: { weight: bnw, eps: 1e-6 } }, true],
        ["silu+acc", { m: 1, siluMul: true, accumulate: true }, false],
      ];
      for (const [name, s, useBias] of shapes) {
        const out: Float32Array[] = [];
        for (
          const [prep, prepThreads, xpUnroll] of [
            [false, 8, 1],
            [true, 8, 1],
            [true, 1, 1],
            [true, 8, 4],
            [true, 8, 3],
            [false, 8, 4],
          ] as const
        ) {
          const bx = uploadArray(gpu, s.siluMul ? x : x.subarray(0, k));
          const bb = useBias ? uploadArray(gpu, bias) : null;
          const by = s.accumulate ? uploadArray(gpu, y0) : createStorage(gpu, n * 4);
          const t = { wg: 64, tpr: 8, rows: 2, xq: true, prep, prepThreads, xpUnroll };
          const ds = linearQ(gpu, by, bx, w, bb, s, t);
          assert.equal(ds.length, w.chunks.length + (prep ? 1 : 0), "one PREPX pass per call");
          run(gpu, ds);
          out.push(await readF32(gpu, by, n));
          [bx, bb, by].forEach((b) => b?.destroy());
          ds.forEach((d) => d.destroy());
        }
        const hows = [
          [1, "8 threads a block"],
          [2, "1 thread a block"],
          [3, "8 threads a block, 4 units a step"],
          [4, "8 threads a block, 3 units a step"],
          [5, "staged, 4 units a step"],
        ] as const;
        for (const [i, how] of hows) {
          const what = `${dtype} ${n}x${k} ${name}, prep with ${how}`;
          if (s.norm) assertClose(out[i], out[0], TOL, what);
          else assert.deepEqual(out[i], out[0], what);
        }
      }
      bnw.destroy();
      destroyWeight(w);
    }
  }
});

// The few-row GEMV (1 < m ≤ GEMV_XROWS_MAX): all m rows of x in one product, each row as the m =
// 1 int8-x GEMV computes it. Shapes: n not a multiple of any tuning's rows a workgroup, k of 3 and
// 5 groups and 7B's 3584 (112 units: not a multiple of tpr · 2), several chunks; every bucket (2 to
// 16; rows past m in the bucket masked).
const XROWS_MS = [2, 3, 5, 8, 13, 16];
const XROWS_SHAPES: [number, number, number | undefined][] = [
  [37, 96, undefined],
  [45, 160, 12 * 160],
  [9, 3584, undefined],
];

/**
 * Runs `body` with the few-row int8-x GEMV on for every dtype (GEMV_XROWS, GEMV_XROWS_F32: q8's
 * few-row GEMV keeps x in f32 in the product — its int8-x kernel is tested all the same), then
 * restores the switches.
 */
const withXRowsOn = (body: () => Promise<void>) =>
  withSettings(
    GEMV_XROWS,
    { q4: true, q8: true },
    () => withSettings(GEMV_XROWS_F32, { q4: false, q8: false }, body),
  );

/** Runs linear() (or linearQ() with `tuning`) at m rows; returns y and the dispatches' keys. */
async function runXRows(
  gpu: Gpu,
  w: Weight,
  x: Float32Array,
  m: number,
  bias: Float32Array | null,
  y0: Float32Array | null,
  tuning?: Partial<LinearQTuning>,
): Promise<{ y: Float32Array; keys: string[] }> {
  const n = w.rows;
  const bx = uploadArray(gpu, x), bb = bias ? uploadArray(gpu, bias) : null;
  const by = y0 ? uploadArray(gpu, y0) : createStorage(gpu, m * n * 4);
  const s = { m, accumulate: y0 !== null };
  const ds = tuning ? linearQ(gpu, by, bx, w, bb, s, tuning) : linear(gpu, by, bx, w, bb, s);
  run(gpu, ds);
  const y = await readF32(gpu, by, m * n);
  const keys = ds.map((d) => d.variant.key);
  [bx, bb, by].forEach((b) => b?.destroy());
  ds.forEach((d) => d.destroy());
  return { y, keys };
}

Deno.test("linear() at 1 < m ≤ GEMV_XROWS_MAX runs the few-row GEMV: each row the int8-x GEMV's reference product, bias and accumulate", () =>
  withXRowsOn(async () => {
    const gpu = await sharedGpu();
    const rng = seeded(41);
    for (const dtype of DTYPES) {
      for (const [n, k, maxChunk] of XROWS_SHAPES) {
        const { w } = makeQuant(gpu, n, k, dtype, n * k + 1, maxChunk);
        if (maxChunk) assert.ok(w.chunks.length >= 3, "several chunks");
        const held = dequantRef(await readQuantWeight(gpu, w));
        for (const m of XROWS_MS) {
          const x = randn(rng, m * k), bias = randn(rng, n), y0 = randn(rng, m * n);
          // Each row's blocks to int8 as the m = 1 GEMV's PREPX does (blocks never cross rows).
          const qx = quantizeActivations(x).values;
          // Bias / accumulate: two of the four combinations a row count, all four over two counts.
          const opts = [[null, null], [bias, y0], [bias, null], [null, y0]] as const;
          for (const [b, acc] of XROWS_MS.indexOf(m) % 2 ? opts.slice(2) : opts.slice(0, 2)) {
            const { y, keys } = await runXRows(gpu, w, x, m, b, acc);
            const what = `${dtype} m=${m} ${n}x${k} bias=${b !== null} acc=${acc !== null}`;
            // One PREPX pass over the m rows, then one few-row GEMV of m's bucket per chunk.
            assert.equal(keys.length, 1 + w.chunks.length, what);
            assert.match(keys[0], /^linear_q\.prep\[.*XROWS/, what);
            for (const key of keys.slice(1)) {
              assert.match(
                key,
                new RegExp(`^linear_q\\.main\\[.*XR=${xrowsBucket(m)},.*XROWS`),
                what,
              );
            }
            assertClose(y, linearRef(qx, held, b, m, n, k, acc ?? undefined), TOL, what);
          }
        }
        destroyWeight(w);
      }
    }
  }));

Deno.test("linearQ() few-row GEMV gives each row the bits of the m = 1 int8-x GEMV at its threads per row", () =>
  withXRowsOn(async () => {
    const gpu = await sharedGpu();
    const rng = seeded(43);
    // Every reduction on lavapipe (8-lane subgroups): tpr 1 and 8..8-sized 16 the tree or subgroup
    // adds, tpr 4 shuffles, 32 adds whole subgroups; rows per group 1 to 3, 1 to 3 units a step;
    // {} the default.
    const tunings: Partial<LinearQTuning>[] = [
      {},
      { wg: 64, tpr: 1, rows: 3, xpUnroll: 1 },
      { wg: 64, tpr: 4, rows: 3, xpUnroll: 3 },
      { wg: 64, tpr: 16, rows: 1, xpUnroll: 2 },
      { wg: 128, tpr: 32, rows: 2, xpUnroll: 1 },
      // QVQ-72B's defaults (gemvQXRowsTuning at n and k ≥ 8192).
      { wg: 128, tpr: 16, rows: 4, xpUnroll: 2 },
      { wg: 256, tpr: 32, rows: 4, xpUnroll: 2 },
    ];
    for (const dtype of DTYPES) {
      for (const [n, k, maxChunk] of [[37, 160, undefined], [19, 3584, 8 * 3584]] as const) {
        const { w } = makeQuant(gpu, n, k, dtype, n + k, maxChunk);
        for (const m of [2, 5, 16]) {
          const x = randn(rng, m * k), bias = randn(rng, n), y0 = randn(rng, m * n);
          for (const over of tunings) {
            const t = { ...gemvQXRowsTuning(dtype, n, k, m), ...over };
            const what = `${dtype} m=${m} ${n}x${k} ${JSON.stringify(over)}`;
            const { y, keys } = await runXRows(gpu, w, x, m, bias, y0, over);
            assert.match(keys[1], /XROWS/, what);
            // Row i alone through the m = 1 prepared-x GEMV with the same threads per row (its
            // rows, unroll and workgroup size do not change a row's sums).
            const one = { wg: t.wg, tpr: t.tpr, rows: t.rows, xq: true, prep: true, xpUnroll: 2 };
            for (let i = 0; i < m; i++) {
              const row = (v: Float32Array, len: number) => v.slice(i * len, (i + 1) * len);
              const alone = await runXRows(gpu, w, row(x, k), 1, bias, row(y0, n), one);
              assert.doesNotMatch(alone.keys[1], /XROWS/);
              assert.deepEqual(row(y, n), alone.y, `${what} row ${i}`);
            }
          }
        }
        destroyWeight(w);
      }
    }
  }));

// q8's few-row GEMV keeps x in f32 (GEMV_XROWS_F32): x staged in workgroup memory a round of SUB
// units of every row, each row's terms as the m = 1 f32-x GEMV adds them. Against the plain-loop
// reference (exact dequantized weight, f32 x; TOL as the m = 1 GEMV's), and row by row against that
// GEMV at the same workgroup, threads per row and x tile: the same bits — with bias and
// accumulate, a fused norm (x rms ≈ 3: a missing 1 / rms fails by far) or silu · mul, weights in
// chunks, every bucket, and tunings reaching each reduction (lavapipe's 8-lane subgroups: tpr 1
// and, without subgroups, the tree; 4 shuffles; 16 / 32 subgroup adds), tiles not a multiple of
// tpr, rows per group not dividing n, rounds shorter than a tile (SUB < the tile at 16 rows).
Deno.test("linearQ() q8 few-row f32-x GEMV: each row the m = 1 f32-x GEMV's bits at its tuning, and the reference, with bias, accumulate, a fused norm or silu · mul", async () => {
  const gpu = await sharedGpu();
  const noSub = new Gpu(gpu.device, gpu.adapterInfo, { ...gpu.features, subgroups: false });
  assert.equal(GEMV_XROWS_F32.q8, true);
  const rng = seeded(47);
  const eps = 1e-6;
  const tunings: [Gpu, Partial<LinearQTuning>][] = [
    [gpu, {}],
    [gpu, { wg: 64, tpr: 4, rows: 3, tile: 5 }],
    [gpu, { wg: 64, tpr: 16, rows: 1, tile: 40 }],
    [gpu, { wg: 128, tpr: 32, rows: 2 }],
    [noSub, { wg: 64, tpr: 8, rows: 2, tile: 7 }],
    [gpu, { wg: 64, tpr: 1, rows: 3, tile: 3 }],
  ];
  let rounds = 0, skipped = 0;
  for (const [n, k, maxChunk] of XROWS_SHAPES) {
    const { w } = makeQuant(gpu, n, k, "q8", 3 * n + k, maxChunk);
    const held = dequantRef(await readQuantWeight(gpu, w));
    const nw = randn(rng, k, 0.5).map((v) => v + 1), bnw = uploadArray(gpu, nw);
    for (const [mi, m] of XROWS_MS.entries()) {
      for (const [ti, [g, over]] of tunings.entries()) {
        // Fusions and bias / accumulate by turns over row counts and tunings.
        const kind = (["plain", "norm", "silu"] as const)[(mi + ti) % 3];
        const withBias = (mi + ti) % 2 === 0, acc = (mi + ti) % 4 < 2;
        const xw = kind === "silu" ? 2 * k : k;
        const x = randn(rng, m * xw, kind === "norm" ? 3 : 1);
        const bias = withBias ? randn(rng, n) : null, y0 = acc ? randn(rng, m * n) : null;
        const s: LinearShape = {
          m,
          accumulate: acc,
          ...(kind === "norm" ? { norm: { weight: bnw, eps } } : {}),
          ...(kind === "silu" ? { siluMul: true } : {}),
        };
        const t = { ...gemvQXRowsTuning("q8", n, k, m), ...over };
        if (linearQFewRows(g, w, m, kind === "norm", over) !== "xrows") {
          // 16 rows' x units and partial sums past lavapipe's 32 KiB of workgroup memory (tpr 32:
          // 40 KiB of x; 7B-width short rows' tpr 16 × 2 weight rows: the reduction's partials).
          assert.ok(
            m > 8 && g.limits.maxComputeWorkgroupStorageSize < 48 << 10,
            `${m} ${JSON.stringify(t)}`,
          );
          skipped++;
          continue;
        }
        const what = `q8 m=${m} ${n}x${k} ${kind} ${JSON.stringify(over)}${
          g === noSub ? " no subgroups" : ""
        } bias=${withBias} acc=${acc}`;
        const run1 = async (xs: Float32Array, rows: number, y: Float32Array | null, tu: object) => {
          const bx = uploadArray(gpu, xs), bb = bias ? uploadArray(gpu, bias) : null;
          const by = y ? uploadArray(gpu, y) : createStorage(gpu, rows * n * 4);
          const ds = linearQ(g, by, bx, w, bb, { ...s, m: rows }, tu);
          run(gpu, ds);
          const out = { y: await readF32(gpu, by, rows * n), keys: ds.map((d) => d.variant.key) };
          [bx, bb, by].forEach((b) => b?.destroy());
          ds.forEach((d) => d.destroy());
          return out;
        };
        const got = await run1(x, m, y0, over);
        // One few-row f32-x GEMV per chunk: no PREPX, no dequantize, no norm / silu pass.
        assert.equal(got.keys.length, w.chunks.length, `${what}: ${got.keys}`);
        for (const key of got.keys) {
          assert.match(key, new RegExp(`^linear_q\\.main\\[.*XR=${xrowsBucket(m)},XROWS`), what);
          assert.doesNotMatch(key, /XP|XQ/, what);
        }
        const sub = Number(/SUB=(\d+)/.exec(got.keys[0])![1]);
        if (sub < Math.ceil(k / 16 / Math.ceil(k / 16 / t.tile))) rounds++;
        const xRef = kind === "silu" ? siluMul(x, m, k) : x;
        const want = kind === "norm"
          ? normLinearRef(x, nw, eps, held, bias, m, n, k, y0 ?? undefined)
          : linearRef(xRef, held, bias, m, n, k, y0 ?? undefined);
        assertClose(got.y, want, TOL, `${what} vs ref`);
        // Each row alone through the m = 1 f32-x GEMV at the same workgroup, tpr and tile.
        const one = { wg: t.wg, tpr: t.tpr, rows: 1, tile: t.tile, xq: false, unroll: false };
        for (const i of new Set([0, Math.floor(m / 2), m - 1])) {
          const row = (v: Float32Array, len: number) => v.slice(i * len, (i + 1) * len);
          const alone = await run1(row(x, xw), 1, y0 ? row(y0, n) : null, one);
          assert.doesNotMatch(alone.keys[0], /XROWS|XQ/);
          assert.deepEqual(row(got.y, n), alone.y, `${what} row ${i} vs m = 1`);
        }
      }
    }
    bnw.destroy();
    destroyWeight(w);
  }
  // Some products staged their rows in rounds shorter than a tile.
  assert.ok(rounds > 0, "no product took rounds shorter than its tile");
  console.log(`q8 few-row f32-x: ${skipped} products past the workgroup memory (the default path)`);
});

Deno.test("by default q4's products of 2–16 rows take the few-row int8-x GEMV, q8's the few-row f32-x GEMV", async () => {
  const gpu = await sharedGpu();
  assert.deepEqual(GEMV_XROWS, { q4: true, q8: true });
  assert.deepEqual(GEMV_XROWS_F32, { q4: false, q8: true });
  // One group a row (the tiny model's k = 32: one thread a row group) at every bucket: the f32-x
  // GEMV needs no reduction there, so its partials do not crowd its x out of workgroup memory.
  if (gpu.features.subgroups) {
    const { w } = makeQuant(gpu, 64, 32, "q8", 9);
    for (const m of [2, 4, 8, 16]) assert.equal(linearQFewRows(gpu, w, m, true), "xrows", `m=${m}`);
    destroyWeight(w);
  }
  for (const dtype of DTYPES) {
    const { w } = makeQuant(gpu, 24, 64, dtype, 7);
    for (const norm of [false, true]) {
      assert.equal(linearQFewRows(gpu, w, 5, norm), "xrows", `${dtype} norm=${norm}`);
      assert.equal(fusesXTransform(gpu, w, 5, norm), true, `${dtype} norm=${norm}`);
    }
    const x = createStorage(gpu, 5 * 64 * 4), y = createStorage(gpu, 5 * 24 * 4);
    const ds = linear(gpu, y, x, w, null, { m: 5 });
    const keys = ds.map((d) => d.variant.key).join(" ");
    if (dtype === "q4") {
      assert.match(keys, /^linear_q\.prep\[.*XROWS.* linear_q\.main\[[^\]]*XP.*XR=8,XROWS/);
    } else {
      // q8: one product over f32 x, no prepared rows or dequantized scratch.
      assert.match(keys, /^linear_q\.main\[[^\]]*XR=8,XROWS[^\]]*\]$/);
      assert.doesNotMatch(keys, /XP|XQ|DEQUANT|prep/);
    }
    ds.forEach((d) => d.destroy());
    [x, y].forEach((b) => b.destroy());
    destroyWeight(w);
  }
});

Deno.test("linear() keeps m > 1 off the few-row GEMV past GEMV_XROWS_MAX, with int8x, gemvXRows false, LINEAR_CHOICE.xrows or GEMV_XROWS[dtype] off", () =>
  withXRowsOn(async () => {
    const gpu = await sharedGpu();
    const n = 24, k = 64;
    for (const dtype of DTYPES) {
      const { w } = makeQuant(gpu, n, k, dtype, 5);
      // The few-row GEMV's passes (q8's old path at m ≤ 16 runs kernels/linear.wgsl's XROWS on the
      // dequantized rows: not these).
      const few = /linear_q\.(main|prep)\[[^\]]*XROWS/;
      const keys = (m: number, s: Partial<LinearShape> = {}, t?: { gemvXRows: false }) => {
        const x = createStorage(gpu, m * k * 4), y = createStorage(gpu, m * n * 4);
        const ds = linear(gpu, y, x, w, null, { m, ...s }, t);
        const out = ds.map((d) => d.variant.key).join(" ");
        ds.forEach((d) => d.destroy());
        [x, y].forEach((b) => b.destroy());
        return out;
      };
      assert.match(keys(2), /^linear_q\.prep\[.*XROWS.* linear_q\.main\[.*XR=2,XROWS/);
      assert.match(keys(3), /linear_q\.main\[[^\]]*XR=4,XROWS/);
      assert.match(
        keys(GEMV_XROWS_MAX),
        new RegExp(`linear_q\\.main\\[[^\\]]*XR=${xrowsBucket(GEMV_XROWS_MAX)},XROWS`),
      );
      assert.doesNotMatch(keys(1), few);
      assert.doesNotMatch(keys(GEMV_XROWS_MAX + 1), few);
      // The vision tower's int8 GEMM, and its {gemvXRows: false}.
      assert.match(keys(5, { int8x: true }), /^gemm/);
      assert.doesNotMatch(keys(5, { int8x: true }), /XROWS/);
      assert.doesNotMatch(keys(5, {}, { gemvXRows: false }), /XROWS/);
      LINEAR_CHOICE.xrows = false; // bench --no-xrows
      try {
        assert.doesNotMatch(keys(5), few);
      } finally {
        LINEAR_CHOICE.xrows = true;
      }
      GEMV_XROWS[dtype] = false; // the dtype's switch
      try {
        assert.doesNotMatch(keys(5), few);
      } finally {
        GEMV_XROWS[dtype] = true;
      }
      destroyWeight(w);
    }
  }));

Deno.test("int8 x moves a 7B-width q4 / q8 GEMV as much as its rounding noise predicts", async () => {
  const gpu = await sharedGpu();
  const [n, k] = [64, 3584];
  const x = randn(seeded(31), k);
  // Rounding to a step s adds noise of rms s / √12 per element; relative to x's rms that is the
  // relative rms change of a product with unrelated weights.
  const steps = quantizeActivations(x).steps;
  const rms = (v: ArrayLike<number>) =>
    Math.sqrt(Array.from(v).reduce((a, e) => a + e * e, 0) / v.length);
  const predicted = rms(steps) / Math.sqrt(12) / rms(x);
  for (const dtype of DTYPES) {
    const { w } = makeQuant(gpu, n, k, dtype, 32);
    const bx = uploadArray(gpu, x), by = createStorage(gpu, n * 4);
    const out: Float32Array[] = [];
    for (const xq of [false, true]) {
      const ds = linearQ(gpu, by, bx, w, null, { m: 1 }, { xq });
      run(gpu, ds);
      out.push(await readF32(gpu, by));
      ds.forEach((d) => d.destroy());
    }
    const rel = rms(out[0].map((v, i) => v - out[1][i])) / rms(out[0]);
    console.log(
      `${dtype}: int8 x vs f32 x, rms relative difference ${rel.toExponential(2)} ` +
        `(predicted ${predicted.toExponential(2)})`,
    );
    assert.ok(rel > 0.5 * predicted && rel < 1.5 * predicted, `${dtype}: ${rel} vs ${predicted}`);
    [bx, by].forEach((b) => b.destroy());
    destroyWeight(w);
  }
});

Deno.test("normLinear() / siluMulLinear() fuse into one quantized GEMV per chunk at m = 1", async () => {
  const gpu = await sharedGpu();
  const [n, k] = [40, 96];
  const { w } = makeQuant(gpu, n, k, "q4", 6, 16 * k);
  const held = dequantRef(await readQuantWeight(gpu, w));
  const rng = seeded(13);
  const x = randn(rng, 2 * k), nw = randn(rng, k, 1);
  const bx = uploadArray(gpu, x), bnw = uploadArray(gpu, nw), by = createStorage(gpu, n * 4);
  const h = createStorage(gpu, 2 * k * 4);
  const dn = normLinear(gpu, by, bx, h, bnw, w, null, { m: 1, eps: 1e-6 });
  assert.equal(dn.length, w.chunks.length, "one dispatch per chunk, no separate rmsNorm");
  run(gpu, dn);
  // The default GEMV holds x as int8: the product with x ∘ nw as it holds it, times 1 / rms.
  const x0 = x.subarray(0, k);
  const xnw = quantizeActivations(new Float32Array(x0.map((v, i) => v * nw[i]))).values;
  const wantNorm = linearRef(xnw, held, null, 1, n, k).map((v) => v * invRms(x0, 1e-6));
  assertClose(await readF32(gpu, by), wantNorm, TOL, "norm");
  const ds = siluMulLinear(gpu, by, bx, h, w, null, { m: 1 });
  assert.equal(ds.length, w.chunks.length, "one dispatch per chunk, no separate siluMul");
  run(gpu, ds);
  const act = siluMul(x, 1, k);
  assertWithin(
    await readF32(gpu, by),
    siluMulLinearRef(x, held, null, 1, n, k),
    xqBound(held, quantizeActivations(act).steps, n, k),
    "silu",
  );
  [...dn, ...ds].forEach((d) => d.destroy());
  [bx, bnw, by, h].forEach((b) => b.destroy());
  destroyWeight(w);
});

// The decoder's products at 2–16 rows (batched decode, short prompts) as it calls them: qkv
// (normLinear with bias), gate_up (normLinear), down (siluMulLinear accumulating into the residual).
// q4: ONE PREPX pass over the m rows prepares x ∘ nw with its blocks' Σx² (down: silu(gate) · up
// of the rows [gate | up]), then ONE few-row GEMV per weight chunk scales each x row's outputs by
// its 1 / rms — no rmsNorm / silu_mul pass (the dispatch list is checked: it cannot fall back
// unseen). Shapes: k of 3 and 5 groups, 7B's 3584 (112 units: not a multiple of tpr · 2), weights
// in chunks; every bucket. Per row: the norm against the reference of the int8 x it holds
// (quantizeActivations(x ∘ nw) · wᵀ · 1 / rms + bias; TOL), silu · mul within the int8 bound around
// the f32-x product (the GPU's exp may move a code by one), and both with the bits of m = 1's fused
// product over that row alone at the few-row GEMV's workgroup and threads a row (its prepared x
// and its sums are the same). The unfused path (rmsNorm, then the GEMV) quantizes rmsNorm(x) ∘ nw
// instead of x ∘ nw, so it differs by int8 rounding, not f32 rounding: logged, and within the same
// int8 bound.
Deno.test("normLinear() / siluMulLinear() at 1 < m ≤ 16 fuse into the q4 few-row GEMV: one PREPX pass, one GEMV per chunk, m = 1's bits", async () => {
  const gpu = await sharedGpu();
  const eps = 1e-6;
  const rng = seeded(17);
  const worstUnfused = { norm: 0, silu: 0 };
  for (
    const [n, k, maxChunk] of [[40, 96, 16 * 96], [24, 3584, 8 * 3584], [
      37,
      160,
      undefined,
    ]] as const
  ) {
    const { w } = makeQuant(gpu, n, k, "q4", n + k, maxChunk);
    const held = dequantRef(await readQuantWeight(gpu, w));
    const nw = randn(rng, k, 1), bias = randn(rng, n);
    const bnw = uploadArray(gpu, nw), bb = uploadArray(gpu, bias);
    for (const m of [2, 3, 5, 8, 16]) {
      const t = gemvQXRowsTuning("q4", n, k, m);
      for (const kind of ["qkv", "gate_up", "down"] as const) {
        const silu = kind === "down", b = kind === "qkv" ? bias : null;
        const xw = silu ? 2 * k : k;
        const x = randn(rng, m * xw, 2), y0 = silu ? randn(rng, m * n) : null;
        const bx = uploadArray(gpu, x), h = createStorage(gpu, m * k * 4);
        const by = y0 ? uploadArray(gpu, y0) : createStorage(gpu, m * n * 4);
        const ds = silu
          ? siluMulLinear(gpu, by, bx, h, w, null, { m, accumulate: true })
          : normLinear(gpu, by, bx, h, bnw, w, b ? bb : null, { m, eps });
        const what = `q4 ${kind} m=${m} ${n}x${k}`;
        const keys = ds.map((d) => d.variant.key);
        assert.equal(keys.length, 1 + w.chunks.length, `${what}: ${keys}`);
        assert.match(
          keys[0],
          new RegExp(`^linear_q\\.prep\\[.*${silu ? "SILU" : "NORM"}.*XROWS`),
          what,
        );
        for (const key of keys.slice(1)) {
          assert.match(key, new RegExp(`^linear_q\\.main\\[.*XR=${xrowsBucket(m)},XROWS`), what);
          assert.equal(/NORM/.test(key), !silu, `${what}: ${key}`);
        }
        run(gpu, ds);
        const got = await readF32(gpu, by, m * n);
        ds.forEach((d) => d.destroy());
        for (let i = 0; i < m; i++) {
          const xi = x.slice(i * xw, (i + 1) * xw), gi = got.slice(i * n, (i + 1) * n);
          const yi = y0 ? y0.slice(i * n, (i + 1) * n) : undefined;
          const how = `${what} row ${i}`;
          if (silu) {
            const steps = quantizeActivations(siluMul(xi, 1, k)).steps;
            const want = siluMulLinearRef(xi, held, null, 1, n, k, yi);
            assertWithin(gi, want, xqBound(held, steps, n, k), how);
          } else {
            const xnw = quantizeActivations(xi.map((v, j) => v * nw[j])).values;
            const want = linearRef(xnw, held, null, 1, n, k).map((v, j) =>
              v * invRms(xi, eps) + (b ? b[j] : 0)
            );
            assertClose(gi, want, TOL, how);
          }
          if (i !== 0 && i !== m - 1) continue;
          // m = 1's fused product over row i alone, at these threads a row (and the workgroup
          // over whose threads the few-row GEMV sums Σx²).
          const bxi = uploadArray(gpu, xi);
          const byi = yi ? uploadArray(gpu, yi) : createStorage(gpu, n * 4);
          const one = linearQ(gpu, byi, bxi, w, b ? bb : null, {
            m: 1,
            accumulate: silu,
            ...(silu ? { siluMul: true } : { norm: { weight: bnw, eps } }),
          }, {
            wg: XROWS_NORM_LANES,
            tpr: t.tpr,
            rows: t.rows,
            xq: true,
            prep: true,
            xpUnroll: 2,
          });
          run(gpu, one);
          assert.deepEqual(gi, await readF32(gpu, byi, n), `${how} vs m = 1`);
          one.forEach((d) => d.destroy());
          [bxi, byi].forEach((v) => v.destroy());
        }
        // The unfused path: the pass into h, then the few-row GEMV from h.
        if (y0) writeArray(gpu, by, y0);
        const un = [
          silu
            ? siluMulPass(gpu, h, bx, { rows: m, cols: k })
            : rmsNormPass(gpu, h, bx, bnw, { rows: m, cols: k, eps }),
          ...linear(gpu, by, h, w, b ? bb : null, { m, accumulate: silu }),
        ];
        run(gpu, un);
        const unfused = await readF32(gpu, by, m * n);
        un.forEach((d) => d.destroy());
        let e = 0, sc = 1;
        for (let j = 0; j < got.length; j++) {
          e = Math.max(e, Math.abs(got[j] - unfused[j]));
          sc = Math.max(sc, Math.abs(unfused[j]));
        }
        const f = silu ? "silu" : "norm";
        worstUnfused[f] = Math.max(worstUnfused[f], e / sc);
        [bx, h, by].forEach((v) => v.destroy());
      }
    }
    [bnw, bb].forEach((v) => v.destroy());
    destroyWeight(w);
  }
  console.log(
    `q4 fused few-row products vs the unfused passes, max |Δ| / max|y|: norm ` +
      `${worstUnfused.norm.toExponential(2)} (int8 x rounding: x ∘ nw against rmsNorm(x) ∘ nw), ` +
      `silu · mul ${worstUnfused.silu.toExponential(2)}`,
  );
});

Deno.test("the q4 few-row GEMV with a fused norm at QVQ-72B's tunings gives each row m = 1's fused bits", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(19), eps = 1e-6, n = 24, k = 3584, m = 3;
  const { w } = makeQuant(gpu, n, k, "q4", 77);
  const nw = uploadArray(gpu, randn(rng, k, 1)), bias = uploadArray(gpu, randn(rng, n));
  const x = randn(rng, m * k, 2);
  for (const t of [{ wg: 128, tpr: 16, rows: 4 }, { wg: 256, tpr: 32, rows: 4 }]) {
    const bx = uploadArray(gpu, x), by = createStorage(gpu, m * n * 4);
    const ds = linearQ(gpu, by, bx, w, bias, { m, norm: { weight: nw, eps } }, {
      ...t,
      xpUnroll: 2,
    });
    assert.match(ds.at(-1)!.variant.key, new RegExp(`NORM.*TPR=${t.tpr},WG=${t.wg}.*XROWS`));
    run(gpu, ds);
    const got = await readF32(gpu, by, m * n);
    for (let i = 0; i < m; i++) {
      const bxi = uploadArray(gpu, x.slice(i * k, (i + 1) * k)), byi = createStorage(gpu, n * 4);
      const one = linearQ(gpu, byi, bxi, w, bias, { m: 1, norm: { weight: nw, eps } }, {
        ...t,
        xq: true,
        prep: true,
        xpUnroll: 2,
      });
      run(gpu, one);
      assert.deepEqual(got.slice(i * n, (i + 1) * n), await readF32(gpu, byi, n), `row ${i}`);
      one.forEach((d) => d.destroy());
      [bxi, byi].forEach((b) => b.destroy());
    }
    ds.forEach((d) => d.destroy());
    [bx, by].forEach((b) => b.destroy());
  }
  [nw, bias].forEach((b) => b.destroy());
  destroyWeight(w);
});

// The batch's rows must not change with the rows beside them (src/model/decode_batch.ts): the
// few-row GEMV's workgroup size follows m's bucket, so each x row's Σx² may not be summed over
// the workgroup's threads. k = 8192 (256 blocks: more than the smallest bucket's 64 threads).
Deno.test("normLinear() over q4 gives a row the same bits at every row count (and m = 1's default)", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(23), eps = 1e-6, n = 24, k = 8192;
  const { w } = makeQuant(gpu, n, k, "q4", 91);
  const nw = uploadArray(gpu, randn(rng, k, 1)), bias = uploadArray(gpu, randn(rng, n));
  // Row 0's values over a wide range of magnitudes, so Σx² in another order rounds otherwise.
  const x0 = randn(rng, k, 1).map((v, i) => v * 2 ** ((i * 7) % 13 - 6));
  let first: Float32Array | undefined;
  for (const m of [1, 2, 3, 5, 9, 16]) {
    const x = new Float32Array(m * k);
    x.set(x0);
    x.set(randn(rng, (m - 1) * k, 3), k);
    const bx = uploadArray(gpu, x), h = createStorage(gpu, m * k * 4);
    const by = createStorage(gpu, m * n * 4);
    const ds = normLinear(gpu, by, bx, h, nw, w, bias, { m, eps });
    if (m > 1) assert.match(ds.at(-1)!.variant.key, /NORM.*XROWS/);
    run(gpu, ds);
    const row0 = await readF32(gpu, by, n);
    ds.forEach((d) => d.destroy());
    [bx, h, by].forEach((b) => b.destroy());
    if (first) assert.deepEqual(row0, first, `m = ${m} (bucket ${xrowsBucket(m)}) vs m = 1`);
    else first = row0;
  }
  // A workgroup wider than the lanes (its threads past them add 0s).
  const m = 3, x = new Float32Array(m * k);
  x.set(x0);
  x.set(randn(rng, (m - 1) * k, 3), k);
  const bx = uploadArray(gpu, x), by = createStorage(gpu, m * n * 4);
  const ds = linearQ(gpu, by, bx, w, bias, { m, norm: { weight: nw, eps } }, { wg: 512 });
  assert.match(ds.at(-1)!.variant.key, /NORM.*WG=512.*XROWS/);
  run(gpu, ds);
  assert.deepEqual(await readF32(gpu, by, n), first, "512 threads vs m = 1");
  ds.forEach((d) => d.destroy());
  [bx, by].forEach((b) => b.destroy());
  [nw, bias].forEach((b) => b.destroy());
  destroyWeight(w);
});

Deno.test("linearQ() refuses a fused norm or siluMul at m > 1 where the few-row GEMV does not run", async () => {
  const gpu = await sharedGpu();
  const w = createWeight(gpu, 4, 64, "q4", "w");
  const b = createStorage(gpu, 17 * 2 * 64 * 4), y = createStorage(gpu, 17 * 4 * 4);
  const norm = { weight: createStorage(gpu, 64 * 4), eps: 1e-6 };
  assert.throws(
    () => linearQ(gpu, y, b, w, null, { m: 17, siluMul: true }),
    /m = 1 or the few-row GEMV/,
  );
  assert.throws(() => linearQ(gpu, y, b, w, null, { m: 17, norm }), /m = 1 or the few-row GEMV/);
  // The int8 GEMM (int8x, the dtype's few-row GEMV off) takes no fused norm.
  assert.throws(
    () => linearQ(gpu, y, b, w, null, { m: 2, norm, int8x: true }),
    /needs the few-row GEMV/,
  );
  GEMV_XROWS.q4 = false;
  try {
    assert.throws(
      () => linearQ(gpu, y, b, w, null, { m: 2, siluMul: true }),
      /needs the few-row GEMV/,
    );
  } finally {
    GEMV_XROWS.q4 = true;
  }
  [b, y, norm.weight].forEach((v) => v.destroy());
  destroyWeight(w);
});

// LinearShape.int8x (the q8 vision tower of visionQuant): a q8 weight at m > 1 runs gemmQ (its
// bits, quick_gelu too) instead of q8's dequantize + f32 GEMM (whose result differs); at m = 1 the
// GEMV runs as without it; float weights and a quantized activation without it are refused.
Deno.test("linear() with int8x runs a q8 weight at m > 1 through gemmQ, at m = 1 the GEMV", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(71);
  const n = 40, k = 96;
  const w = createWeight(gpu, n, k, "q8", "w");
  writeQuantRows(gpu, w, 0, randn(rng, n * k, 1 / Math.sqrt(k)));
  const bias = uploadArray(gpu, randn(rng, n), "bias");
  const go = async (m: number, s: Partial<LinearShape>, viaGemmQ = false) => {
    const x = uploadArray(gpu, randn(seeded(m), m * k), "x");
    const y = createStorage(gpu, m * n * 4, "y");
    const ds = viaGemmQ
      ? gemmQ(gpu, y, x, w, bias, { m, ...s })
      : linear(gpu, y, x, w, bias, { m, ...s });
    run(gpu, ds);
    const out = await readF32(gpu, y, m * n);
    [x, y].forEach((b) => b.destroy());
    ds.forEach((d) => d.destroy());
    return out;
  };
  assert.equal(PREFILL_INT8.q8, false);
  const int8 = await go(37, { int8x: true });
  assert.deepEqual(int8, await go(37, {}, true));
  assert.notDeepEqual(int8, await go(37, {}));
  const gelu = await go(37, { int8x: true, activation: "quick_gelu" });
  assert.deepEqual(gelu, await go(37, { activation: "quick_gelu" }, true));
  assert.deepEqual(await go(1, { int8x: true }), await go(1, {}));
  const b = createStorage(gpu, 37 * k * 4), f = createWeight(gpu, n, k, "f16", "f");
  assert.throws(
    () => linear(gpu, createStorage(gpu, 37 * n * 4), b, f, null, { m: 37, int8x: true }),
    /int8x needs a q8 \/ q4 weight/,
  );
  for (const s of [{ m: 37 }, { m: 1, int8x: true }]) {
    assert.throws(
      () =>
        linear(gpu, createStorage(gpu, 37 * n * 4), b, w, null, { ...s, activation: "quick_gelu" }),
      /activation "quick_gelu" needs/,
    );
  }
  [b, bias].forEach((x) => x.destroy());
  destroyWeight(w);
  destroyWeight(f);
});

Deno.test("gemvQTuning() picks the swept best per 7B kind and never more threads than groups", () => {
  const t = (dtype: "q4" | "q8", n: number, k: number) => {
    const { tpr, rows, xq } = gemvQTuning(dtype, n, k);
    return [tpr, rows, xq];
  };
  assert.deepEqual(t("q4", 4608, 3584), [16, 1, true]); // qkv
  assert.deepEqual(t("q4", 37888, 3584), [8, 2, true]); // gate_up (prepared x)
  assert.deepEqual(t("q4", 3584, 18944), [32, 1, true]); // down: long rows, prepared int8 x
  assert.deepEqual(t("q4", 152064, 3584), [8, 1, true]); // lm_head (prepared x)
  assert.equal(gemvQTuning("q4", 4608, 3584).prep, undefined); // 7B qkv stays staged
  assert.equal(gemvQTuning("q4", 8192, 8192).prep, undefined); // 72B o stages x (GEMV_WIDE)
  assert.equal(gemvQTuning("q4", 8192, 8192).xpUnroll, 4);
  assert.equal(gemvQTuning("q4", 8192, 8192, undefined, true).prep, true); // x given prepared
  assert.equal(gemvQTuning("q4", 59136, 8192, undefined, true).xpUnroll, 2);
  assert.equal(gemvQTuning("q4", 37888, 3584, undefined, true).xpUnroll, 1); // 7B gate_up
  assert.equal(gemvQTuning("q4", 8192, 29568).prep, true); // 72B down (silu x): long, PREPX pass
  assert.deepEqual(t("q8", 3584, 3584), [32, 1, false]); // q8 keeps f32 x
  assert.deepEqual(t("q8", 37888, 3584), [8, 1, false]);
  assert.deepEqual(t("q4", 151936, 32), [1, 1, true]); // the tiny model: one group per row (prepared x)
  assert.deepEqual(gemvQTuning("q8", 37888, 3584, true).tpr, 8);
});

Deno.test("gemvQXRowsTuning(): threads per row by shape alone (a row's bits whatever the batch), QVQ-72B's as swept", () => {
  const shapes: [number, number][] = [
    [10240, 8192],
    [8192, 8192],
    [59136, 8192],
    [8192, 29568],
    [
      152064,
      8192,
    ],
    [4608, 3584],
    [3584, 18944],
    [37888, 3584],
    [96, 64],
  ];
  for (const [n, k] of shapes) {
    const tprs = new Set(
      Array.from({ length: 15 }, (_, i) => gemvQXRowsTuning("q4", n, k, i + 2).tpr),
    );
    assert.equal(tprs.size, 1, `${n}×${k}`);
  }
  // QVQ-72B's widths (H200 sweep): 16 threads a row, 32 for down_proj's long rows; 4 weight rows.
  const pick = (n: number, k: number, m: number) => {
    const t = gemvQXRowsTuning("q4", n, k, m);
    return [t.wg, t.tpr, t.rows, t.xpUnroll];
  };
  assert.deepEqual(pick(10240, 8192, 2), [128, 16, 4, 2]);
  assert.deepEqual(pick(8192, 29568, 3), [256, 32, 4, 2]);
  assert.deepEqual(pick(10240, 8192, 8), [64, 16, 4, 2]);
  assert.deepEqual(pick(8192, 29568, 16), [128, 32, 4, 1]);
  // Elsewhere m = 1's threads per row.
  assert.equal(gemvQXRowsTuning("q4", 4608, 3584, 2).tpr, gemvQTuning("q4", 4608, 3584, true).tpr);
  // q8 (f32 x): m = 1's f32-x threads per row in every bucket; 4 weight rows, 2 at 16 rows of x
  // with 8 threads a row (7B gate_up; the H200 sweep: down_proj's 16 rows 12.7 → 8.6 ms).
  for (const [n, k] of shapes) {
    const tprs = new Set(
      Array.from({ length: 15 }, (_, i) => gemvQXRowsTuning("q8", n, k, i + 2).tpr),
    );
    assert.equal(tprs.size, 1, `q8 ${n}×${k}`);
  }
  // 7B's qkv and o: 16 threads a row; elsewhere m = 1's.
  assert.equal(gemvQXRowsTuning("q8", 4608, 3584, 2).tpr, 16);
  assert.deepEqual([2, 8, 16].map((m) => gemvQXRowsTuning("q8", 3584, 3584, m).rows), [1, 1, 2]);
  for (const [n, k] of [[37888, 3584], [3584, 18944], [152064, 3584], [96, 64]]) {
    assert.equal(gemvQXRowsTuning("q8", n, k, 4).tpr, gemvQTuning("q8", n, k, false).tpr);
  }
  assert.deepEqual([2, 8, 16].map((m) => gemvQXRowsTuning("q8", 37888, 3584, m).rows), [4, 4, 2]);
  assert.deepEqual([2, 8, 16].map((m) => gemvQXRowsTuning("q8", 3584, 18944, m).rows), [4, 4, 4]);
});

Deno.test("balancedSlices() cuts rows into the fewest near-equal slices within the scratch", () => {
  // 7B down_proj fits: one slice; gate_up in a smaller scratch: three near-equal slices, no tail.
  assert.deepEqual(balancedSlices(3584, 7084), [3584]);
  assert.deepEqual(balancedSlices(37888, 18724), [12672, 12672, 12544]);
  assert.deepEqual(balancedSlices(300, 200), [150, 150]);
  for (const [rows, max] of [[77, 12], [5, 2], [1000, 998], [37888, 3542]]) {
    const s = balancedSlices(rows, max);
    assert.equal(s.reduce((a, b) => a + b, 0), rows, `${rows}/${max}: covers the rows`);
    assert.equal(s.length, Math.ceil(rows / max), `${rows}/${max}: fewest slices`);
    assert.ok(s.every((n) => n <= max) && s.slice(0, -1).every((n) => n % 2 === 0), `${s}`);
  }
});

Deno.test("fillQuantRows() quantizes what the producer writes into staging", async () => {
  const gpu = await sharedGpu();
  const [rows, cols] = [50, 64];
  const w = createWeight(gpu, rows, cols, "q4", "filled", 10 * cols);
  fillQuantRows(
    gpu,
    w,
    (buf, row, len) =>
      fill(gpu, buf, { count: len * cols, dtype: "f16", seed: 8, scale: 0.1, base: row * cols }),
  );
  const ref = createWeight(gpu, rows, cols, "f16", "ref");
  run(gpu, [
    fill(gpu, ref.chunks[0].buffer, { count: rows * cols, dtype: "f16", seed: 8, scale: 0.1 }),
  ]);
  const data = f16BitsToF32(
    new Uint16Array(await readBytes(gpu, ref.chunks[0].buffer, rows * cols * 2)),
  );
  const got = await readQuantWeight(gpu, w), want = quantize(data, cols, "q4");
  assert.deepEqual([...got.scales], [...want.scales]);
  destroyWeight(w);
  destroyWeight(ref);
});

Deno.test("quantized weights refuse cols not divisible by 32 and float writes", async () => {
  const gpu = await sharedGpu();
  assert.throws(() => createWeight(gpu, 4, 48, "q4", "bad"), InvalidInputError);
  const w = createWeight(gpu, 4, 64, "q8", "w");
  assert.throws(() => writeWeightRows(gpu, w, 0, new Float32Array(64)), /writeQuantRows/);
  assert.throws(() => writeQuantRows(gpu, w, 3, new Float32Array(128)), InvalidInputError);
  destroyWeight(w);
});

// The decode q/k/v projection with rope + KV write as its epilogue (kernels/linear_q.wgsl ROPE)
// against the CPU composition (the GEMV as the kernel computes it — int8 x where the tuning holds
// x so —, then ropeKvWrite): 7B's head layout (28 q + 4 kv heads of 128, M-RoPE) at k = 3584 with
// the default tuning, and a small one (4 + 2 heads of 16, k = 64) with tunings that reach every
// reduction (odd rows per group become even), staged and prepared x; with and without norm and
// bias, into an f16 cache (with norm) and an f32 one. TOL as above (the rotation adds one FMA to
// the GEMV's rounding; f16 caches: see assertCache).
Deno.test("linearQ() with ropeKv rotates q and k at state.position and writes K, V at state.cache_len like the GEMV + ropeKvWrite", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(41);
  const maxTokens = 6, eps = 1e-6;
  const cases = [
    {
      t: mropeTable(128, 1e6, [16, 24, 24], 4096),
      q: 28,
      kv: 4,
      k: 3584,
      tunings: [{}, { wg: 64, tpr: 4, rows: 2, xq: true, prep: true, xpUnroll: 4 }],
    },
    {
      t: mropeTable(16, 1e6, [2, 3, 3], 64),
      q: 4,
      kv: 2,
      k: 64,
      tunings: [
        { wg: 64, tpr: 1, rows: 1, tile: 1, xq: true },
        { wg: 64, tpr: 2, rows: 3, tile: 2, xq: false },
        { wg: 64, tpr: 16, rows: 2, xq: true, prep: true },
        { wg: 64, tpr: 64, rows: 4, xq: true },
        { wg: 128, tpr: 4, rows: 2, xq: true, prep: true },
      ] as Partial<LinearQTuning>[],
    },
  ];
  for (const dtype of DTYPES) {
    for (const { t, q, kv, k, tunings } of cases) {
      const hd = 2 * t.half, n = (q + 2 * kv) * hd;
      const gt = uploadRopeTable(gpu, t);
      const { w } = makeQuant(gpu, n, k, dtype, n + k);
      const held = dequantRef(await readQuantWeight(gpu, w));
      for (const tuning of tunings) {
        for (const norm of [false, true]) {
          const row = norm ? 2 : maxTokens - 1;
          const cache: KvDType = norm ? "f16" : "f32";
          const c = ropeKvCase(gpu, rng, {
            table: t,
            gpuTable: gt,
            q,
            kv,
            k,
            row,
            maxTokens,
            cache,
          });
          const { x, nw, bias } = c;
          const s: LinearShape = {
            m: 1,
            ...(norm ? { norm: { weight: c.bnw, eps } } : {}),
            ropeKv: c.ropeKv,
          };
          const ds = Object.keys(tuning).length
            ? linearQ(gpu, c.by, c.bx, w, c.bb, s, tuning)
            : linear(gpu, c.by, c.bx, w, c.bb, s);
          const prep = Object.keys(tuning).length
            ? tuning.prep === true
            : gemvQTuning(dtype, n, k).prep === true;
          assert.equal(ds.length, 1 + (prep ? 1 : 0), "the rope needs no dispatch of its own");
          run(gpu, ds);
          const xq = tuning.xq ?? gemvQTuning(dtype, n, k).xq;
          const lin = (v: Float32Array, b: Float32Array | null) => linearRef(v, held, b, 1, n, k);
          const xn = norm ? new Float32Array(x.map((v, i) => v * nw[i])) : x;
          const want = !xq
            ? (norm ? normLinearRef(x, nw, eps, held, bias, 1, n, k) : lin(x, bias))
            : lin(quantizeActivations(xn).values, null).map((v, j) =>
              v * (norm ? invRms(x, eps) : 1) + bias[j]
            );
          await c.check(
            want,
            TOL,
            `${dtype} ${q}+${kv} heads of ${hd}, k=${k}, ${JSON.stringify(tuning)}, norm=${norm}`,
          );
          c.destroy();
          ds.forEach((d) => d.destroy());
        }
      }
      destroyWeight(w);
      gt.destroy();
    }
  }
});

/**
 * x prepared as kernels/linear_q.wgsl PREPX writes it with a norm (the reference): per 32-block,
 * int8 codes of x ∘ nw (quantizeActivations), then (2^e, Σ codes) f32 pairs, then Σ x² f32.
 */
function preparedRef(x: Float32Array, nw: Float32Array): { words: Uint32Array; ss: Float32Array } {
  const nb = x.length / 32;
  const xn = new Float32Array(x.map((v, i) => v * nw[i]));
  const { values, steps } = quantizeActivations(xn);
  const words = new Uint32Array(10 * nb), f = new Float32Array(words.buffer);
  const ss = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    let sum = 0;
    for (let i = 0; i < 32; i++) {
      const c = Math.round(values[32 * b + i] / steps[b]);
      sum += c;
      words[8 * b + (i >> 2)] |= (c & 255) << (8 * (i & 3));
      ss[b] += x[32 * b + i] ** 2;
    }
    f[8 * nb + 2 * b] = steps[b];
    f[8 * nb + 2 * b + 1] = sum;
  }
  return { words, ss };
}

// Producer tunings of the emit tests: every reduction path, staged int8 / f32 and prepared x,
// rows per workgroup that the emitting GEMV grows to whole blocks.
const EMIT_TUNINGS: Partial<LinearQTuning>[] = [
  {},
  { wg: 64, tpr: 2, rows: 1, tile: 8, xq: true, xpUnroll: 2 },
  { wg: 64, tpr: 4, rows: 2, xq: true, prep: true, xpUnroll: 3 },
  { wg: 64, tpr: 1, rows: 1, tile: 3, xq: true },
  { wg: 64, tpr: 4, rows: 3, tile: 2, xq: true },
  { wg: 64, tpr: 16, rows: 1, xq: false },
  { wg: 128, tpr: 32, rows: 1, xq: true, prep: true },
  { wg: 64, tpr: 64, rows: 5, xq: true },
];

// An ACC GEMV that emits its output as the next norm-GEMV's prepared x (kernels/linear_q.wgsl
// EMIT): y keeps its bits, the emitted blocks are the reference's (codes and scales exact, Σ y² to
// f32 order), and the next GEMV given them (`prepared`) gives what it gives running its own PREPX
// pass from y (TOL: its 1 / rms from Σ y² summed in another order). Producer tunings reach every
// reduction, staged int8 / f32 and prepared x, rows per workgroup grown to whole 32-row blocks.
Deno.test("linearQ() with emit writes y as the next GEMV's prepared x, which it takes with prepared", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(43);
  const tunings = EMIT_TUNINGS;
  for (const dtype of DTYPES) {
    for (const [n, k, n2] of [[96, 160, 40], [64, 3584, 72], [32, 64, 64]] as const) {
      const { w } = makeQuant(gpu, n, k, dtype, n * k + 1);
      const { w: w2 } = makeQuant(gpu, n2, n, "q4", n2 * n + 2);
      const nb = n / 32, eps = 1e-6;
      for (const [tuning, silu] of tunings.flatMap((t) => [[t, false], [t, true]] as const)) {
        const x = randn(rng, 2 * k), y0 = randn(rng, n), nw = randn(rng, n, 0.5).map((v) => v + 1);
        const bias2 = randn(rng, n2);
        const bx = uploadArray(gpu, x), bnw = uploadArray(gpu, nw), bb2 = uploadArray(gpu, bias2);
        const bys = [uploadArray(gpu, y0), uploadArray(gpu, y0)];
        const eo = createStorage(gpu, preparedXBytes(n), "emitted");
        const emit = { weight: bnw, out: eo };
        const what = `${dtype} ${n}x${k} ${JSON.stringify(tuning)} silu=${silu}`;
        const s1: LinearShape = { m: 1, accumulate: true, siluMul: silu };
        const ds = [
          ...linearQ(gpu, bys[0], bx, w, null, s1, tuning),
          ...linearQ(gpu, bys[1], bx, w, null, { ...s1, emit }, tuning),
        ];
        run(gpu, ds);
        const y = await readF32(gpu, bys[0], n);
        assert.deepEqual(await readF32(gpu, bys[1], n), y, `${what}: y`);
        const got = new Uint32Array(await readBytes(gpu, eo, 44 * nb));
        const want = preparedRef(y, nw);
        assert.deepEqual(got.subarray(0, 10 * nb), want.words, `${what}: codes and scales`);
        assertClose(new Float32Array(got.buffer, 40 * nb, nb), want.ss, TOL, `${what}: Σ y²`);
        // The next GEMV (norm + bias) from y with its own prep pass, and from the emitted blocks.
        const zs = [0, 1, 2].map(() => createStorage(gpu, n2 * 4));
        const norm = { weight: bnw, eps };
        const t2 = { wg: 64, tpr: 4, rows: 2, xq: true, prep: true };
        const ds2 = [
          ...linearQ(gpu, zs[0], bys[0], w2, bb2, { m: 1, norm }, t2),
          ...linearQ(gpu, zs[1], bys[0], w2, bb2, { m: 1, norm, prepared: eo }, t2),
          ...linear(gpu, zs[2], bys[0], w2, bb2, { m: 1, norm, prepared: eo }),
        ];
        assert.equal(ds2.length, 4, "a prep pass for the first call only");
        run(gpu, ds2);
        const z = await readF32(gpu, zs[0], n2);
        assertClose(await readF32(gpu, zs[1], n2), z, TOL, `${what}: next GEMV`);
        assertClose(await readF32(gpu, zs[2], n2), z, TOL, `${what}: next GEMV, default tuning`);
        [bx, bnw, bb2, eo, ...bys, ...zs].forEach((b) => b.destroy());
        [...ds, ...ds2].forEach((d) => d.destroy());
      }
      destroyWeight(w);
      destroyWeight(w2);
    }
  }
});

Deno.test("linear() refuses emit / prepared where they cannot run: float weights, m > 1, chunks, rows % 32, f32 x", async () => {
  const gpu = await sharedGpu();
  const x = createStorage(gpu, 4096), y = createStorage(gpu, 4096), o = createStorage(gpu, 4096);
  const f = createWeight(gpu, 64, 32, "f16", "f");
  const chunked = makeQuant(gpu, 64, 32, "q4", 1, 32 * 32).w;
  const odd = makeQuant(gpu, 48, 32, "q4", 2).w;
  const emit = { weight: x, out: o };
  assert.throws(() => linear(gpu, y, x, f, null, { m: 1, emit }), /need a q8 \/ q4 weight/);
  assert.throws(() => linear(gpu, y, x, f, null, { m: 1, prepared: o }), /need a q8 \/ q4/);
  assert.throws(() => linear(gpu, y, x, odd, null, { m: 2, emit }), /need m = 1, got m = 2/);
  assert.throws(() => linear(gpu, y, x, chunked, null, { m: 1, emit }), /one chunk \(got 2\)/);
  assert.throws(() => linear(gpu, y, x, odd, null, { m: 1, emit }), /rows % 32 == 0 \(got 48\)/);
  assert.throws(
    () => linearQ(gpu, y, x, odd, null, { m: 1, prepared: o }, { xq: false }),
    /prepared x needs int8 x/,
  );
  [x, y, o].forEach((b) => b.destroy());
  [f, chunked, odd].forEach(destroyWeight);
});

// gate_up emitting silu(gate) · up as down_proj's prepared x (EMIT_SILU): y keeps its bits, and
// down_proj given the blocks gives the bits it gives running its own PREPX (SILU) pass from y
// (the same expression on the same GPU). I = 96 with large workgroups leaves gate rows of a
// workgroup's half unused (they must not be stored over the up rows).
Deno.test("linearQ() with emit.siluMul writes silu(gate) · up of y as down's prepared x", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(47);
  const tunings = EMIT_TUNINGS;
  for (const dtype of DTYPES) {
    for (const [I, k, n3] of [[96, 160, 40], [64, 3584, 64]] as const) {
      const n = 2 * I;
      const { w } = makeQuant(gpu, n, k, dtype, n * k + 3);
      const { w: down } = makeQuant(gpu, n3, I, "q4", n3 * I + 4);
      for (const tuning of tunings) {
        const x = randn(rng, k), nw = randn(rng, k, 0.5).map((v) => v + 1), y0 = randn(rng, n3);
        const bx = uploadArray(gpu, x), bnw = uploadArray(gpu, nw);
        const bys = [0, 1].map(() => createStorage(gpu, n * 4));
        const eo = createStorage(gpu, preparedXBytes(I), "emitted");
        const norm = { weight: bnw, eps: 1e-6 };
        const what = `${dtype} I=${I} k=${k} ${JSON.stringify(tuning)}`;
        const ds = [
          ...linearQ(gpu, bys[0], bx, w, null, { m: 1, norm }, tuning),
          ...linearQ(
            gpu,
            bys[1],
            bx,
            w,
            null,
            { m: 1, norm, emit: { out: eo, siluMul: true } },
            tuning,
          ),
        ];
        run(gpu, ds);
        const y = await readF32(gpu, bys[0], n);
        assert.deepEqual(await readF32(gpu, bys[1], n), y, `${what}: y`);
        const zs = [0, 1].map(() => uploadArray(gpu, y0));
        const s2: LinearShape = { m: 1, siluMul: true, accumulate: true };
        const ds2 = [
          ...linearQ(gpu, zs[0], bys[0], down, null, s2, { xq: true, prep: true }),
          ...linear(gpu, zs[1], bys[0], down, null, { ...s2, prepared: eo }),
        ];
        assert.equal(ds2.length, 3, "a prep pass for the first call only");
        run(gpu, ds2);
        const z = await readF32(gpu, zs[0], n3);
        assert.deepEqual(await readF32(gpu, zs[1], n3), z, `${what}: down_proj`);
        [bx, bnw, eo, ...bys, ...zs].forEach((b) => b.destroy());
        [...ds, ...ds2].forEach((d) => d.destroy());
      }
      destroyWeight(w);
      destroyWeight(down);
    }
  }
});

Deno.test("emitKeepsTuning(): 7B gate_up already runs 64-row blocks with prepared x, 72B gate_up does not", () => {
  const w = (rows: number, cols: number): Weight => ({ dtype: "q4", rows, cols, chunks: [] });
  assert.equal(emitKeepsTuning(w(2 * 18944, 3584), true, true), true); // tpr 8 × 2 rows
  assert.equal(emitKeepsTuning(w(2 * 29568, 8192), true, true), false); // tpr 16 × 1 row
  assert.equal(emitKeepsTuning(w(8192, 8192), false, true), false); // 72B o: tpr 32 (grown)
});

// QVQ-72B's o_proj shape (8192 × 8192, accumulating, emitting x prepared for gate_up): its default
// (GEMV_WIDE: x staged by the GEMV, 4 units an iteration) gives the bits of the prepared-x GEMV of
// the same shape behind a PREPX pass (1 or 4 units an iteration), y and the emitted blocks; with
// GEMV_WIDE off (a PREPX pass, 256 threads × 32 a row: another summation order) y within TOL.
Deno.test("linearQ() GEMV_WIDE defaults at 72B o_proj give the prepared-x GEMV's bits", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(53);
  const n = 8192, k = 8192;
  const { w } = makeQuant(gpu, n, k, "q4", 7);
  const x = uploadArray(gpu, randn(rng, k)), y0 = randn(rng, n);
  const nw = uploadArray(gpu, randn(rng, n, 0.5).map((v) => v + 1));
  const saved = { ...GEMV_WIDE };
  const shape = { wg: 512, tpr: 16, rows: 1, xq: true, prep: true };
  const settings: [Partial<LinearQTuning>, typeof saved][] = [
    [{}, saved],
    [shape, saved],
    [{ ...shape, xpUnroll: 4 }, saved],
    [{}, { xpUnroll: 1, stagedSquare: false }],
  ];
  const out: [Float32Array, Uint8Array][] = [];
  try {
    for (const [tuning, wide] of settings) {
      Object.assign(GEMV_WIDE, wide);
      const y = uploadArray(gpu, y0), eo = createStorage(gpu, preparedXBytes(n), "emitted");
      const s = { m: 1, accumulate: true, emit: { weight: nw, out: eo } };
      const ds = linearQ(gpu, y, x, w, null, s, tuning);
      const staged = !Object.keys(tuning).length && wide.stagedSquare;
      assert.equal(ds.length, staged ? 1 : 2, "a PREPX pass unless staged");
      run(gpu, ds);
      const bytes = new Uint8Array(await readBytes(gpu, eo, preparedXBytes(n)));
      out.push([await readF32(gpu, y, n), bytes]);
      ds.forEach((d) => d.destroy());
      [y, eo].forEach((b) => b.destroy());
    }
  } finally {
    Object.assign(GEMV_WIDE, saved);
  }
  for (const i of [1, 2]) {
    assert.deepEqual(out[0][0], out[i][0], `y, default vs ${JSON.stringify(settings[i][0])}`);
    assert.deepEqual(
      out[0][1],
      out[i][1],
      `emitted x, default vs ${JSON.stringify(settings[i][0])}`,
    );
  }
  assertClose(out[0][0], out[3][0], TOL, "y, default vs GEMV_WIDE off");
  [x, nw].forEach((b) => b.destroy());
  destroyWeight(w);
});
