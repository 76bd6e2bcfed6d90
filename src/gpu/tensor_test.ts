import assert from "node:assert/strict";
import { sharedGpu } from "./device.ts";
import { readBytes } from "./buffers.ts";
import { InvalidInputError } from "../errors.ts";
import { randn, seeded } from "../ref/_random.ts";
import {
  createWeight,
  destroyWeight,
  f16BitsToF32,
  f32ToF16Bits,
  quantLayout,
  type Weight,
  weightBytes,
  writeWeightRows,
} from "./tensor.ts";
import type { Gpu } from "./device.ts";

/** Reads every chunk back and concatenates the rows, as f32 values. */
async function readWeight(gpu: Gpu, w: Weight): Promise<Float32Array> {
  const out = new Float32Array(w.rows * w.cols);
  for (const c of w.chunks) {
    const n = c.rows * w.cols;
    const bytes = await readBytes(gpu, c.buffer, n * (w.dtype === "f16" ? 2 : 4));
    out.set(
      w.dtype === "f16" ? f16BitsToF32(new Uint16Array(bytes)) : new Float32Array(bytes),
      c.rowStart * w.cols,
    );
  }
  return out;
}

Deno.test("f32ToF16Bits() rounds like Math.f16round and f16BitsToF32() inverts it", () => {
  const x = new Float32Array([0, -0, 1, 1 / 3, 65504, 70000, 1e-8, -2.5e-5, 0.1]);
  const back = f16BitsToF32(f32ToF16Bits(x));
  assert.deepEqual([...back], [...x].map(Math.f16round));
  assert.deepEqual([...f32ToF16Bits(new Float32Array([1, -2]))], [0x3c00, 0xc000]);
});

Deno.test("createWeight() splits rows into chunks under maxChunkBytes", async () => {
  const gpu = await sharedGpu();
  const w = createWeight(gpu, 10, 6, "f32", "w", 3 * 6 * 4 + 5);
  assert.deepEqual(w.chunks.map((c) => [c.rowStart, c.rows]), [[0, 3], [3, 3], [6, 3], [9, 1]]);
  assert.equal(weightBytes(w), 240);
  destroyWeight(w);
  // f16 with odd cols: an even row count per chunk keeps every chunk start 4-byte aligned.
  const h = createWeight(gpu, 7, 3, "f16", "h", 3 * 3 * 2);
  assert.deepEqual(h.chunks.map((c) => [c.rowStart, c.rows]), [[0, 2], [2, 2], [4, 2], [6, 1]]);
  destroyWeight(h);
  const one = createWeight(gpu, 7, 3, "f16", "one");
  assert.equal(one.chunks.length, 1);
  destroyWeight(one);
});

Deno.test("quantLayout() sizes are whole vec4s holding codes and scales, within createWeight()'s chunk limit", async () => {
  const gpu = await sharedGpu();
  // Rows × groups with scales ending mid-vec4 (14 × 7, 3 × 7, 67 × 3) and one ending on a vec4.
  for (const [rows, cols] of [[14, 224], [3, 224], [67, 96], [8, 256]]) {
    for (const dtype of ["q8", "q4"] as const) {
      const l = quantLayout(rows, cols, dtype);
      assert.equal(l.size % 16, 0, `${dtype} ${rows}×${cols}: size ${l.size}`);
      assert.equal(l.scalesOffset % 256, 0);
      assert.ok(
        l.size >= l.scalesOffset + rows * cols / 32 * 2 &&
          l.size - l.scalesOffset < rows * cols / 16 + 16,
      );
      // Chunks under a limit of 2 to 4 rows (odd group counts keep even rows) stay within it.
      for (const limit of [2 * l.size / rows + 272, l.size + 16, 4 * l.size / rows + 300]) {
        const w = createWeight(gpu, rows, cols, dtype, "w", Math.ceil(limit));
        for (const c of w.chunks) {
          assert.ok(c.buffer.size <= limit && c.buffer.size % 16 === 0, `${dtype} ${rows}×${cols}`);
        }
        destroyWeight(w);
      }
    }
  }
});

Deno.test("createWeight() rejects rows wider than a binding and bad shapes", async () => {
  const gpu = await sharedGpu();
  assert.throws(() => createWeight(gpu, 2, 100, "f32", "wide", 256), /exceeds/);
  assert.throws(() => createWeight(gpu, 0, 4, "f32", "empty"), InvalidInputError);
  assert.throws(() => createWeight(gpu, 2, 4, "bf16" as "f16", "bf"), /dtype "bf16"/);
});

Deno.test("writeWeightRows() writes f32 and f16 data across chunk borders", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(21);
  for (const dtype of ["f32", "f16"] as const) {
    const rows = 11, cols = 5;
    const data = randn(rng, rows * cols);
    const want = dtype === "f16" ? data.map(Math.f16round) : data;
    const w = createWeight(gpu, rows, cols, dtype, "w", 4 * cols * (dtype === "f16" ? 2 : 4));
    assert.equal(w.chunks.length, 3); // rows 0-3, 4-7, 8-10
    // Three writes: f32 values, then f16 bits, in pieces that straddle chunk borders.
    writeWeightRows(gpu, w, 0, data.subarray(0, 2 * cols));
    writeWeightRows(gpu, w, 2, f32ToF16Bits(data.subarray(2 * cols, 8 * cols)));
    writeWeightRows(gpu, w, 8, data.subarray(8 * cols));
    const got = await readWeight(gpu, w);
    // The f16-bits piece is exact in f16 weights and in f32 weights (f16 ⊂ f32); the rest is f32.
    const exp = want.slice();
    for (let i = 2 * cols; i < 8 * cols; i++) exp[i] = Math.f16round(data[i]);
    assert.deepEqual(got, exp, dtype);
    destroyWeight(w);
  }
});

Deno.test("writeWeightRows() rejects partial rows, out-of-range rows and unaligned f16 writes", async () => {
  const gpu = await sharedGpu();
  const w = createWeight(gpu, 4, 3, "f16", "w");
  assert.throws(() => writeWeightRows(gpu, w, 0, new Float32Array(4)), /whole rows/);
  assert.throws(() => writeWeightRows(gpu, w, 3, new Float32Array(6)), /whole rows/);
  assert.throws(() => writeWeightRows(gpu, w, 1, new Float32Array(3)), /even number of rows/);
  assert.throws(() => writeWeightRows(gpu, w, 0, new Float32Array(3)), /even number of rows/);
  writeWeightRows(gpu, w, 2, new Float32Array(6)); // rows 2..3 run to the chunk's end: fine
  destroyWeight(w);
});
