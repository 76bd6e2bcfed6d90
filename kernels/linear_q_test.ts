import assert from "node:assert/strict";
import { type Gpu, sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readBytes, readF32, uploadArray } from "../src/gpu/buffers.ts";
import {
  createWeight,
  destroyWeight,
  f16BitsToF32,
  f32ToF16Bits,
  type QuantDType,
  quantLayout,
  type Weight,
  writeWeightRows,
} from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { linear as linearRef } from "../src/ref/linear.ts";
import { dequantize as dequantRef, quantize, type Quantized, unpack } from "../src/ref/linear_q.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { fill } from "./fill.ts";
import { dequantize, fillQuantRows, linearQ, writeQuantRows } from "./linear_q.ts";
import { linear } from "./linear.ts";
import { run } from "./_kernel.ts";

// Same bound as kernels/linear_test.ts: f32 sums in another order than the f64 reference.
const TOL = 1e-5;
const DTYPES: QuantDType[] = ["q8", "q4"];

/** Reads every chunk of a quantized weight back as codes + scales (rows in order). */
async function readQuant(gpu: Gpu, w: Weight): Promise<Quantized> {
  const codes = new Int8Array(w.rows * w.cols), scales = new Float32Array(w.rows * w.cols / 32);
  for (const c of w.chunks) {
    const l = quantLayout(c.rows, w.cols, w.dtype as QuantDType);
    const q = unpack(
      await readBytes(gpu, c.buffer, l.size),
      c.rows,
      w.cols,
      w.dtype as QuantDType,
      l.scalesOffset,
    );
    codes.set(q.codes, c.rowStart * w.cols);
    scales.set(q.scales, (c.rowStart * w.cols) / 32);
  }
  return { codes, scales };
}

/** A quantized weight from random f16-rounded values, written through writeQuantRows. */
function makeQuant(
  gpu: Gpu,
  rows: number,
  cols: number,
  dtype: QuantDType,
  seed: number,
  maxChunk?: number,
) {
  const data = randn(seeded(seed), rows * cols, 0.05).map(Math.f16round);
  const w = createWeight(gpu, rows, cols, dtype, "wq", maxChunk);
  writeQuantRows(gpu, w, 0, f32ToF16Bits(data));
  return { w, data };
}

Deno.test("writeQuantRows() gives src/ref/linear_q.ts's codes and scales, across chunks", async () => {
  const gpu = await sharedGpu();
  // (rows, cols): one group per row (odd groups: chunks keep even rows), several groups, 7B-like k.
  const cases: [number, number, number | undefined][] = [[37, 32, 500], [19, 96, undefined], [
    8,
    3584,
    undefined,
  ]];
  for (const [rows, cols, maxChunk] of cases) {
    for (const dtype of DTYPES) {
      const { w, data } = makeQuant(gpu, rows, cols, dtype, rows + cols, maxChunk);
      if (maxChunk) assert.ok(w.chunks.length > 2, "several chunks");
      const got = await readQuant(gpu, w), want = quantize(data, cols, dtype);
      assert.deepEqual([...got.scales], [...want.scales], `${dtype} ${rows}x${cols} scales`);
      // The GPU's 1/d may differ from the f32-rounded one by an ulp: a code may differ by one where
      // v/d sits within rounding of a .5 — never more, and rarely.
      let diff = 0;
      for (let i = 0; i < got.codes.length; i++) {
        const e = Math.abs(got.codes[i] - want.codes[i]);
        assert.ok(e <= 1, `${dtype} code ${i}: ${got.codes[i]} vs ${want.codes[i]}`);
        diff += e;
      }
      assert.ok(diff <= got.codes.length * 1e-3, `${dtype}: ${diff} codes off by one`);
      // Quantization error within half a step of each group (plus the f16 scale's rounding).
      const deq = dequantRef(got);
      for (let i = 0; i < data.length; i++) {
        const d = got.scales[Math.floor(i / 32)];
        assert.ok(
          Math.abs(deq[i] - data[i]) <= 0.5 * d * (1 + 1e-3) + 1e-12,
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
    const got = await readQuant(gpu, w), want = quantize(vals, cols, dtype);
    assert.deepEqual([...got.scales], [...want.scales], dtype);
    let off = 0;
    for (let i = 0; i < got.codes.length; i++) off += Math.abs(got.codes[i] - want.codes[i]);
    assert.ok(off <= 2, `${dtype}: ${off} codes off by one`);
    destroyWeight(w);
  }
});

Deno.test("dequantize() gives d · code rounded to f16 for any row slice", async () => {
  const gpu = await sharedGpu();
  for (const dtype of DTYPES) {
    const rows = 24, cols = 160;
    const { w } = makeQuant(gpu, rows, cols, dtype, 5);
    const q = await readQuant(gpu, w);
    const out = createStorage(gpu, rows * cols * 2);
    run(gpu, [dequantize(gpu, out, w, w.chunks[0], 6, 11)]);
    const got = f16BitsToF32(new Uint16Array(await readBytes(gpu, out, 11 * cols * 2)));
    assert.deepEqual([...got], [...dequantRef(q, true).subarray(6 * cols, 17 * cols)], dtype);
    out.destroy();
    destroyWeight(w);
  }
});

// m × n × k: decode GEMV (m = 1) at tiny, odd-n and 7B widths; prefill/vision (m > 1) through the
// dequantized f16 scratch, with and without bias / accumulate.
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
      // m = 1 multiplies by d · code exactly; m > 1 by its f16 rounding (the scratch is f16).
      const held = dequantRef(await readQuant(gpu, w), m > 1);
      const x = randn(rng, m * k), bias = randn(rng, n), y0 = randn(rng, m * n);
      for (const [useBias, acc] of [[false, false], [true, true]]) {
        const bx = uploadArray(gpu, x), bb = useBias ? uploadArray(gpu, bias) : null;
        const by = acc ? uploadArray(gpu, y0) : createStorage(gpu, m * n * 4);
        // Through linear(), which forwards quantized weights here.
        const ds = linear(gpu, by, bx, w, bb, { m, accumulate: acc });
        run(gpu, ds);
        const want = linearRef(x, held, useBias ? bias : null, m, n, k, acc ? y0 : undefined);
        assertClose(
          await readF32(gpu, by, m * n),
          want,
          TOL,
          `${dtype} ${m}x${n}x${k} bias=${useBias}`,
        );
        [bx, bb, by].forEach((b) => b?.destroy());
        ds.forEach((d) => d.destroy());
      }
      destroyWeight(w);
    }
  }
});

Deno.test("linearQ() GEMV tunings and chunked weights agree with the reference", async () => {
  const gpu = await sharedGpu();
  const [n, k] = [77, 256];
  for (const dtype of DTYPES) {
    const { w } = makeQuant(gpu, n, k, dtype, 3, 12 * k);
    assert.ok(w.chunks.length >= 4);
    const held = dequantRef(await readQuant(gpu, w));
    const x = randn(seeded(4), k);
    const want = linearRef(x, held, null, 1, n, k);
    for (
      const tuning of [{ wg: 32, rows: 1 }, { wg: 64, rows: 4 }, { wg: 256, rows: 3 }, {
        wg: 128,
        rows: 8,
      }]
    ) {
      const bx = uploadArray(gpu, x), by = createStorage(gpu, n * 4);
      const ds = linearQ(gpu, by, bx, w, null, { m: 1 }, tuning);
      run(gpu, ds);
      assertClose(await readF32(gpu, by), want, TOL, `${dtype} ${JSON.stringify(tuning)}`);
      [bx, by].forEach((b) => b.destroy());
    }
    destroyWeight(w);
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
  const got = await readQuant(gpu, w), want = quantize(data, cols, "q4");
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
