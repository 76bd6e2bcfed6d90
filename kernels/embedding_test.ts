import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { createWeight, destroyWeight, type Weight } from "../src/gpu/tensor.ts";
import { embedding as embeddingRef } from "../src/ref/embedding.ts";
import { randn, seeded } from "../src/ref/_random.ts";
import { embedding, embeddingAt } from "./embedding.ts";
import { run } from "./_kernel.ts";
import { createDecodeState } from "./state.ts";
import { InvalidInputError } from "../src/errors.ts";
import { uploadWeight } from "./_test_utils.ts";

// A gather copies values: results must equal the (f16-rounded) table rows exactly.

async function gather(gpu: Gpu, table: Weight, ids: Uint32Array): Promise<Float32Array> {
  // y starts as 7s so a row the kernel forgets to write (the zero row too) shows.
  const bi = uploadArray(gpu, ids),
    by = uploadArray(gpu, new Float32Array(ids.length * table.cols).fill(7));
  const ds = embedding(gpu, by, bi, table, { n: ids.length });
  run(gpu, ds);
  const y = await readF32(gpu, by);
  [bi, by].forEach((b) => b.destroy());
  ds.forEach((d) => d.destroy());
  return y;
}

Deno.test("embedding() gathers table rows across chunk borders, f32 and f16", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(31);
  const rows = 50, cols = 37;
  for (const dtype of ["f32", "f16"] as const) {
    const data = randn(rng, rows * cols);
    // 6 rows per chunk: ids on both sides of every border, repeats, the first and last rows, and
    // an id past the table (zero row).
    const { w, held } = uploadWeight(
      gpu,
      data,
      rows,
      cols,
      dtype,
      "table",
      6 * cols * (dtype === "f16" ? 2 : 4),
    );
    assert.equal(w.chunks.length, 9);
    const ids = new Uint32Array([5, 6, 11, 12, 0, 49, 48, 6, 17, 18, 30, 50, 1000]);
    assert.deepEqual(await gather(gpu, w, ids), embeddingRef(held, ids, cols), dtype);
    destroyWeight(w);
  }
});

Deno.test("embedding() handles more than 65535 ids through the 2D grid", async () => {
  const gpu = await sharedGpu();
  const rows = 300, cols = 3, n = 70_000;
  const { w, held } = uploadWeight(gpu, randn(seeded(32), rows * cols), rows, cols, "f16", "table");
  const ids = Uint32Array.from({ length: n }, (_, i) => (i * 7919) % rows);
  assert.deepEqual(await gather(gpu, w, ids), embeddingRef(held, ids, cols));
  destroyWeight(w);
});

Deno.test("embeddingAt() gathers tokens[state.step] and follows state changes", async () => {
  const gpu = await sharedGpu();
  const rows = 40, cols = 20;
  const { w, held } = uploadWeight(
    gpu,
    randn(seeded(33), rows * cols),
    rows,
    cols,
    "f16",
    "table",
    7 * cols * 2,
  );
  const tokens = uploadArray(gpu, new Uint32Array([3, 39, 7, 21]));
  const state = uploadArray(gpu, new Uint32Array([10, 10, 1, 0]));
  const y = createStorage(gpu, cols * 4);
  const ds = embeddingAt(gpu, y, tokens, state, w);
  for (const step of [1, 3, 0]) {
    gpu.device.queue.writeBuffer(state, 8, new Uint32Array([step]));
    run(gpu, ds);
    const id = [3, 39, 7, 21][step];
    assert.deepEqual(
      await readF32(gpu, y),
      held.subarray(id * cols, (id + 1) * cols),
      `step ${step}`,
    );
  }
  [tokens, state, y].forEach((b) => b.destroy());
  ds.forEach((d) => d.destroy());
  destroyWeight(w);
});

Deno.test("embeddingAt() with row writes that row of y and leaves the others as they were", async () => {
  const gpu = await sharedGpu();
  const vocab = 40, cols = 20, rows = 3, sentinel = 7;
  // 7 rows per chunk: the ids fall in different chunks, so every chunk's dispatch must keep to
  // the row (a chunk that does not hold the id writes nothing).
  const { w, held } = uploadWeight(
    gpu,
    randn(seeded(34), vocab * cols),
    vocab,
    cols,
    "f16",
    "table",
    7 * cols * 2,
  );
  const ids = [3, 39, 7, 21];
  const tokens = uploadArray(gpu, new Uint32Array(ids));
  const state = uploadArray(gpu, new Uint32Array([10, 10, 1, 0]));
  for (const [row, step] of [[2, 1], [1, 3], [0, 2]]) {
    const y = uploadArray(gpu, new Float32Array(rows * cols).fill(sentinel));
    gpu.device.queue.writeBuffer(state, 8, new Uint32Array([step]));
    const ds = embeddingAt(gpu, y, tokens, state, w, { row });
    run(gpu, ds);
    const got = await readF32(gpu, y);
    const want = new Float32Array(rows * cols).fill(sentinel);
    want.set(embeddingRef(held, new Uint32Array([ids[step]]), cols), row * cols);
    assert.deepEqual(got, want, `row ${row}, step ${step}`);
    y.destroy();
    ds.forEach((d) => d.destroy());
  }
  [tokens, state].forEach((b) => b.destroy());
  destroyWeight(w);
});

Deno.test("embedding() rejects buffers too small for the shape", async () => {
  const gpu = await sharedGpu();
  const w = createWeight(gpu, 8, 4, "f32", "t");
  const ids = createStorage(gpu, 8), y = createStorage(gpu, 2 * 4 * 4);
  assert.throws(() => embedding(gpu, y, ids, w, { n: 3 }), /ids buffer/);
  const state = createStorage(gpu, 8);
  assert.throws(() => embeddingAt(gpu, y, ids, state, w), /state buffer/);
  [ids, y, state].forEach((b) => b.destroy());
  destroyWeight(w);
});

Deno.test("embeddingAt() rejects a y too small for the row and a row that is no index", async () => {
  const gpu = await sharedGpu();
  const w = createWeight(gpu, 8, 4, "f32", "t");
  // y holds 2 rows of 4: rows 0 and 1 fit, row 2 does not.
  const tokens = createStorage(gpu, 8),
    state = createDecodeState(gpu),
    y = createStorage(gpu, 2 * 4 * 4);
  embeddingAt(gpu, y, tokens, state, w, { row: 1 }).forEach((d) => d.destroy());
  assert.throws(
    () => embeddingAt(gpu, y, tokens, state, w, { row: 2 }),
    (e) =>
      e instanceof InvalidInputError &&
      /y buffer .* holds 32 bytes but the shape needs 48/.test(e.message),
  );
  for (const row of [-1, 0.5]) {
    assert.throws(
      () => embeddingAt(gpu, y, tokens, state, w, { row }),
      InvalidInputError,
      `row ${row}`,
    );
  }
  [tokens, state, y].forEach((b) => b.destroy());
  destroyWeight(w);
});
