import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { assertCache, cacheArray, cacheValues } from "../src/ref/kv_cache.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  applyRope,
  mropeTable,
  mropeTransformers,
  ropeKvWrite,
  visionRopeTable,
  visionRopeTransformers,
} from "../src/ref/rope.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { rope, ropeAt, ropeKvWriteAt, uploadRopeTable } from "./rope.ts";
import { createDecodeState, writeDecodeState } from "./state.ts";
import { type KvDType, readKvCache } from "./kv_cache.ts";
import { run } from "./_kernel.ts";

// The GPU may fuse a·c − b·s into one FMA where the reference rounds each product: a few ulps of
// |x| (≈ 4 for these N(0,1) inputs), far below any indexing mistake (which is O(1)).
const TOL = 1e-6;

function randomPositions(rng: () => number, n: number, max: number): Uint32Array {
  return Uint32Array.from({ length: n }, () => Math.floor(rng() * max));
}

Deno.test("mropeTable() + applyRope() equal transformers' apply_multimodal_rotary_pos_emb exactly", () => {
  const rng = seeded(10);
  for (const [headDim, section] of [[16, [2, 3, 3]], [128, [16, 24, 24]]] as const) {
    const seq = 7, heads = 3;
    const posTS = randomPositions(rng, 3 * seq, 5000); // (3, seq) transformers layout
    const pos = new Uint32Array(seq * 3); // (seq, 3) kernel layout
    for (let t = 0; t < seq; t++) for (let a = 0; a < 3; a++) pos[t * 3 + a] = posTS[a * seq + t];
    const x = randn(rng, seq * heads * headDim);
    const table = mropeTable(headDim, 1e6, section, 5000);
    const got = applyRope(x, pos, table, { seq, heads, stride: heads * headDim, offset: 0 });
    const want = mropeTransformers(x, posTS, {
      seq,
      heads,
      headDim,
      theta: 1e6,
      mropeSection: section,
    });
    assert.deepEqual(got, want, `head_dim ${headDim}`);
  }
});

Deno.test("visionRopeTable() + applyRope() equal transformers' apply_rotary_pos_emb_vision exactly", () => {
  const rng = seeded(11);
  for (const headDim of [16, 80]) {
    const seq = 9, heads = 2;
    const pos = randomPositions(rng, seq * 2, 40); // (seq, 2) (h, w)
    const x = randn(rng, seq * heads * headDim);
    const got = applyRope(x, pos, visionRopeTable(headDim, 40), {
      seq,
      heads,
      stride: heads * headDim,
      offset: 0,
    });
    assert.deepEqual(
      got,
      visionRopeTransformers(x, pos, { seq, heads, headDim }),
      `head_dim ${headDim}`,
    );
  }
});

Deno.test("mropeTable() rejects an mrope_section that does not cover head_dim/2", () => {
  assert.throws(() => mropeTable(128, 1e6, [16, 24, 16], 10), /mrope_section \[16,24,16\]/);
});

Deno.test("rope() matches the CPU reference for M-RoPE and vision tables over random shapes", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(12);
  // [table, seq, heads, stride, offset]: plain (seq, heads, head_dim) and q+k rotated inside a
  // fused qkv row (7B: 28 q + 4 k heads of 128 in a 4608-wide row; tiny: 2 + 1 heads of 16).
  const cases = [
    { t: mropeTable(16, 1e6, [2, 3, 3], 700), seq: 5, heads: 3, stride: 64, offset: 0 },
    { t: mropeTable(128, 1e6, [16, 24, 24], 33000), seq: 37, heads: 32, stride: 4608, offset: 0 },
    { t: visionRopeTable(80, 64), seq: 600, heads: 16, stride: 3 * 1280, offset: 1280 },
    { t: visionRopeTable(16, 8), seq: 1, heads: 2, stride: 32, offset: 0 },
  ];
  for (const c of cases) {
    const x = randn(rng, c.seq * c.stride);
    const pos = randomPositions(rng, c.seq * c.t.naxes, c.t.npos);
    const gt = uploadRopeTable(gpu, c.t);
    const [bx, bp] = [uploadArray(gpu, x), uploadArray(gpu, pos)];
    const d = rope(gpu, bx, bp, gt, c);
    run(gpu, [d]);
    const want = applyRope(x, pos, c.t, c);
    assertClose(await readF32(gpu, bx), want, TOL, `rope hd=${2 * c.t.half} seq=${c.seq}`);
    [bx, bp].forEach((b) => b.destroy());
    gt.destroy();
    d.destroy();
  }
});

Deno.test("ropeAt() rotates by state.position on every axis, like rope() with that position", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(13);
  const t = mropeTable(128, 1e6, [16, 24, 24], 4096);
  const gt = uploadRopeTable(gpu, t);
  const heads = 8, stride = 1280, offset = 128;
  const x = randn(rng, stride);
  const state = createDecodeState(gpu);
  writeDecodeState(gpu, state, { cacheLen: 3000, position: 2345, step: 7 });
  const bx = uploadArray(gpu, x);
  run(gpu, [ropeAt(gpu, bx, state, gt, { heads, stride, offset })]);
  const want = applyRope(x, [2345, 2345, 2345], t, { seq: 1, heads, stride, offset });
  assertClose(await readF32(gpu, bx), want, TOL, "ropeAt");
  [bx, state].forEach((b) => b.destroy());
  gt.destroy();
});

Deno.test("rope() rejects heads that overrun the row stride", async () => {
  const gpu = await sharedGpu();
  const gt = uploadRopeTable(gpu, visionRopeTable(16, 4));
  const b = createStorage(gpu, 64 * 4);
  assert.throws(
    () => rope(gpu, b, b, gt, { seq: 1, heads: 3, stride: 40, offset: 0 }),
    InvalidInputError,
  );
  b.destroy();
  gt.destroy();
});

// Head dims 128 (7B: 28 q + 4 kv heads, M-RoPE [16, 24, 24]), 80 (vision-sized, 2 axes) and 16
// (the tiny model), with the heads from column 0 (the decoder's qkv row) or offset; the cache
// rows around state.cache_len must stay as they were, and a write at row maxTokens is dropped.
Deno.test("ropeKvWriteAt() rotates q and k like ropeAt() and writes rotated K and V at state.cache_len of an f32 or f16 cache", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(14);
  const cases = [
    { t: mropeTable(128, 1e6, [16, 24, 24], 4096), q: 28, kv: 4, offset: 0, pos: 2345, row: 7 },
    { t: visionRopeTable(80, 64), q: 2, kv: 2, offset: 40, pos: 50, row: 0 },
    { t: mropeTable(16, 1e6, [2, 3, 3], 64), q: 4, kv: 2, offset: 0, pos: 33, row: 9 },
    { t: mropeTable(16, 1e6, [2, 3, 3], 64), q: 4, kv: 2, offset: 0, pos: 33, row: 10 },
    {
      t: mropeTable(128, 1e6, [16, 24, 24], 4096),
      q: 28,
      kv: 4,
      offset: 0,
      pos: 99,
      row: 3,
      dtype: "f16",
    },
    {
      t: mropeTable(16, 1e6, [2, 3, 3], 64),
      q: 4,
      kv: 2,
      offset: 0,
      pos: 33,
      row: 9,
      dtype: "f16",
    },
  ] as const;
  const maxTokens = 10;
  for (const c of cases) {
    const { t, q, kv, offset, pos, row } = c;
    const dtype: KvDType = "dtype" in c ? c.dtype : "f32";
    const gt = uploadRopeTable(gpu, t);
    const headDim = 2 * t.half, heads = q + kv, width = kv * headDim;
    const stride = offset + (heads + kv) * headDim + 8;
    const x = randn(rng, stride);
    const k0 = cacheValues(randn(rng, maxTokens * width), dtype),
      v0 = cacheValues(randn(rng, maxTokens * width), dtype);
    const state = createDecodeState(gpu);
    writeDecodeState(gpu, state, { cacheLen: row, position: pos, step: 3 });
    const bx = uploadArray(gpu, x),
      bk = uploadArray(gpu, cacheArray(k0, dtype)),
      bv = uploadArray(gpu, cacheArray(v0, dtype));
    const s = { heads, kvHeads: kv, stride, offset, dtype };
    run(gpu, [ropeKvWriteAt(gpu, bx, bk, bv, state, gt, { ...s, maxTokens })]);
    const kWant = k0.slice(), vWant = v0.slice();
    const xWant = ropeKvWrite(x, pos, t, s, kWant, vWant, row);
    const what = `head_dim ${headDim}, ${q}+${kv} heads, row ${row}, ${dtype} cache`;
    assertClose(await readF32(gpu, bx), xWant, TOL, `${what}: x`);
    assertCache(await readKvCache(gpu, bk, dtype), kWant, dtype, TOL, `${what}: k cache`);
    assert.deepEqual(
      await readKvCache(gpu, bv, dtype),
      cacheValues(vWant, dtype),
      `${what}: v cache`,
    );
    if (row < maxTokens) assert.notDeepEqual(kWant, k0, `${what}: the reference wrote K`);
    [bx, bk, bv, state].forEach((b) => b.destroy());
    gt.destroy();
  }
  const gt = uploadRopeTable(gpu, mropeTable(16, 1e6, [2, 3, 3], 64));
  const b = createStorage(gpu, 4096);
  assert.throws(
    () => ropeKvWriteAt(gpu, b, b, b, b, gt, { heads: 3, kvHeads: 1, stride: 60, maxTokens: 1 }),
    /overrun the row stride/,
  );
  assert.throws(
    () => ropeKvWriteAt(gpu, b, b, b, b, gt, { heads: 3, kvHeads: 1, stride: 64, maxTokens: 300 }),
    /k cache buffer/,
  );
  b.destroy();
  gt.destroy();
});

// Batched decode: x holds one token a row (3 rows here, each with its own random values); the
// call for row r must rotate that row alone, read its K and V from it, and leave the other rows
// bit for bit as they were. The cache side is as for row 0: K/V at row state.cache_len.
Deno.test("ropeKvWriteAt() with row rotates and caches that row of x and leaves the other rows as they were", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(15);
  const t = mropeTable(16, 1e6, [2, 3, 3], 64), gt = uploadRopeTable(gpu, t);
  const q = 4, kv = 2, headDim = 16, heads = q + kv, width = kv * headDim, maxTokens = 10;
  const rows = 3, offset = 8, stride = offset + (heads + kv) * headDim + 8;
  for (const dtype of ["f32", "f16"] as const) {
    for (const [row, cacheLen, pos] of [[2, 5, 33], [1, 0, 7], [0, 9, 60]]) {
      const x = randn(rng, rows * stride);
      const k0 = cacheValues(randn(rng, maxTokens * width), dtype),
        v0 = cacheValues(randn(rng, maxTokens * width), dtype);
      const state = createDecodeState(gpu);
      writeDecodeState(gpu, state, { cacheLen, position: pos, step: 3 });
      const bx = uploadArray(gpu, x),
        bk = uploadArray(gpu, cacheArray(k0, dtype)),
        bv = uploadArray(gpu, cacheArray(v0, dtype));
      const s = { heads, kvHeads: kv, stride, offset, dtype };
      const d = ropeKvWriteAt(gpu, bx, bk, bv, state, gt, { ...s, maxTokens, row });
      run(gpu, [d]);
      const kWant = k0.slice(), vWant = v0.slice();
      const rowWant = ropeKvWrite(
        x.slice(row * stride, (row + 1) * stride),
        pos,
        t,
        s,
        kWant,
        vWant,
        cacheLen,
      );
      const what = `row ${row} of ${rows}, cache_len ${cacheLen}, ${dtype} cache`;
      const got = await readF32(gpu, bx);
      assertClose(got.subarray(row * stride, (row + 1) * stride), rowWant, TOL, `${what}: x row`);
      for (let r = 0; r < rows; r++) {
        if (r === row) continue;
        const span = [r * stride, (r + 1) * stride] as const;
        assert.deepEqual(got.subarray(...span), x.subarray(...span), `${what}: x row ${r} kept`);
      }
      assertCache(await readKvCache(gpu, bk, dtype), kWant, dtype, TOL, `${what}: k cache`);
      assert.deepEqual(
        await readKvCache(gpu, bv, dtype),
        cacheValues(vWant, dtype),
        `${what}: v cache`,
      );
      assert.notDeepEqual(kWant, k0, `${what}: the reference wrote K`);
      [bx, bk, bv, state].forEach((b) => b.destroy());
      d.destroy();
    }
  }
  gt.destroy();
});

Deno.test("ropeKvWriteAt() rejects an x too small for the row and a row that is no index", async () => {
  const gpu = await sharedGpu();
  const gt = uploadRopeTable(gpu, mropeTable(16, 1e6, [2, 3, 3], 64));
  const stride = 64, s = { heads: 3, kvHeads: 1, stride, maxTokens: 4 };
  // x holds 2 rows: rows 0 and 1 fit, row 2 does not.
  const x = createStorage(gpu, 2 * stride * 4), kv = createStorage(gpu, 4 * 16 * 4);
  const state = createDecodeState(gpu);
  ropeKvWriteAt(gpu, x, kv, kv, state, gt, { ...s, row: 1 }).destroy();
  assert.throws(
    () => ropeKvWriteAt(gpu, x, kv, kv, state, gt, { ...s, row: 2 }),
    (e) =>
      e instanceof InvalidInputError &&
      /x buffer .* holds 512 bytes but the shape needs 768/.test(e.message),
  );
  for (const row of [-1, 1.5]) {
    assert.throws(
      () => ropeKvWriteAt(gpu, x, kv, kv, state, gt, { ...s, row }),
      InvalidInputError,
      `row ${row}`,
    );
  }
  [x, kv, state].forEach((b) => b.destroy());
  gt.destroy();
});
