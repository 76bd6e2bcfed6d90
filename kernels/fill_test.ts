import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readBytes, readF32 } from "../src/gpu/buffers.ts";
import { createWeight, destroyWeight, f16BitsToF32 } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { fillValues } from "../src/ref/fill.ts";
import { assertClose } from "../src/ref/_random.ts";
import { fill, fillWeight } from "./fill.ts";
import { run } from "./_kernel.ts";

// The GPU may fuse offset + scale·(2u − 1) into one FMA (one rounding fewer than the reference):
// at most 1 ulp of |offset| + scale, i.e. 2.4e-7 relative; a wrong hash or index is off by O(scale).
const TOL = 3e-7;

Deno.test("fill() gives src/ref/fill.ts's values in f32, from any base element", async () => {
  const gpu = await sharedGpu();
  for (const [count, base, seed] of [[1, 0, 1], [1000, 0, 7], [70001, 12345, 0xdeadbeef]]) {
    const y = createStorage(gpu, count * 4);
    const d = fill(gpu, y, { count, dtype: "f32", seed, scale: 0.02, offset: 1, base });
    run(gpu, [d]);
    const want = fillValues(count, seed, 0.02, 1, base);
    assertClose(await readF32(gpu, y), want, TOL, `f32 ${count}@${base}`);
    // Really random-looking: mean near offset, spread near the uniform's scale / √3.
    if (count > 1000) {
      const got = await readF32(gpu, y);
      const mean = got.reduce((a, b) => a + b, 0) / count;
      const sd = Math.sqrt(got.reduce((a, b) => a + (b - mean) ** 2, 0) / count);
      assert.ok(Math.abs(mean - 1) < 5e-4, `mean ${mean}`);
      assert.ok(Math.abs(sd - 0.02 / Math.sqrt(3)) < 5e-4, `sd ${sd}`);
    }
    y.destroy();
    d.destroy();
  }
});

Deno.test("fill() packs f16 pairs, low half first, rounding like Math.f16round", async () => {
  const gpu = await sharedGpu();
  const count = 4097, seed = 3;
  const y = createStorage(gpu, Math.ceil(count / 2) * 4);
  run(gpu, [fill(gpu, y, { count, dtype: "f16", seed, scale: 2, base: 10 })]);
  const got = f16BitsToF32(new Uint16Array(await readBytes(gpu, y, count * 2)));
  const want = fillValues(count, seed, 2, 0, 10).map(Math.f16round);
  // pack2x16float rounds to nearest; ties or a fused FMA may move one f16 ulp (2^-10 · 2).
  assertClose(got, want, 2 ** -10, "f16");
  y.destroy();
});

Deno.test("fillWeight() gives the same values whatever the chunking", async () => {
  const gpu = await sharedGpu();
  const rows = 37, cols = 6;
  const one = createWeight(gpu, rows, cols, "f16", "one");
  const split = createWeight(gpu, rows, cols, "f16", "split", 10 * cols * 2);
  assert.ok(split.chunks.length > 3);
  run(gpu, [one, split].flatMap((w) => fillWeight(gpu, w, { seed: 9, scale: 0.5 })));
  const a = new Uint16Array(await readBytes(gpu, one.chunks[0].buffer, rows * cols * 2));
  const parts: number[] = [];
  for (const c of split.chunks) {
    parts.push(...new Uint16Array(await readBytes(gpu, c.buffer, c.rows * cols * 2)));
  }
  assert.deepEqual([...a], parts);
  destroyWeight(one);
  destroyWeight(split);
});

Deno.test("fill() refuses an odd f16 base and a buffer too small", async () => {
  const gpu = await sharedGpu();
  const y = createStorage(gpu, 16);
  assert.throws(
    () => fill(gpu, y, { count: 4, dtype: "f16", seed: 1, scale: 1, base: 3 }),
    InvalidInputError,
  );
  assert.throws(
    () => fill(gpu, y, { count: 5, dtype: "f32", seed: 1, scale: 1 }),
    InvalidInputError,
  );
  y.destroy();
});
