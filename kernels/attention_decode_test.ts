import { type Gpu, sharedGpu } from "../src/gpu/device.ts";
import { assertCache, cacheArray, cacheValues } from "../src/ref/kv_cache.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { attention as attentionRef } from "../src/ref/attention.ts";
import { assertClose, assertSameBits, randn, seeded } from "../src/ref/_random.ts";
import { causalAttention } from "./attention.ts";
import {
  decodeAttention,
  decodeAttentionRopeKv,
  decodeAttentionScratchBytes,
  type DecodeAttentionShape,
} from "./attention_decode.ts";
import { type KvDType, readKvCache } from "./kv_cache.ts";
import { mropeTable, ropeKvWrite } from "../src/ref/rope.ts";
import { ropeKvWriteAt, uploadRopeTable } from "./rope.ts";
import { createDecodeState, writeDecodeState } from "./state.ts";
import { run } from "./_kernel.ts";
import assert from "node:assert/strict";
import { InvalidInputError } from "../src/errors.ts";

const maxWorkgroupBytes = (gpu: Gpu) => gpu.limits.maxComputeWorkgroupStorageSize;

// f32 dot products and exp against an f64 reference: scores of N(0,1) inputs are O(1) and the
// output a convex mix of v, so errors stay at a few f32 ulps of |v| (≈ 4); an off-by-one key or
// a wrong head is O(0.1) or more.
const TOL = 2e-6;

Deno.test("decodeAttention() at cache_len n-1 equals the prefill result of query n-1, f32 and f16 caches", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(22);
  const maxTokens = 700;
  const state = createDecodeState(gpu);
  // [headDim, heads, kvHeads, n, options]: splits 1 and 2 make one workgroup walk many key
  // steps (online softmax); the others spread the keys over up to 22 splits (merged, eight per
  // batch, so a partial last batch too), in head blocks of 1 to 8 query heads. n and n + 130 land mid-step and mid-split. Every other
  // case reads an f16 cache, the reference the f16-rounded K and V. The lanes kernel (the default
  // with subgroups: lavapipe's are 8 lanes, so 8 lanes a row at head_dim 128, 4 at 80 and 16) at
  // several lanes per row and keys per step (few enough slots for lavapipe's 32 KiB), then the
  // tiled one.
  const tiled = { kernel: "tiled" } as const;
  const cases: [number, number, number, number, Partial<DecodeAttentionShape>][] = [
    [16, 2, 1, 1, {}],
    [80, 4, 2, 37, {}],
    [128, 7, 1, 300, {}],
    [128, 8, 1, 600, {}],
    [128, 4, 4, 129, {}],
    [128, 7, 1, 300, { splits: 1 }],
    [80, 2, 1, 600, { splits: 2 }],
    [128, 4, 4, 129, { splits: 64 }],
    [128, 8, 1, 600, { splits: 37, mergeBatch: 16 }],
    [80, 4, 2, 37, { splits: 5, mergeBatch: 4 }],
    [128, 8, 1, 600, { keysPerStep: 1 }],
    [64, 2, 1, 600, { lanes: 4, keysPerStep: 2 }],
    [32, 7, 1, 300, { lanes: 4, keysPerStep: 4, splits: 3 }],
    [80, 4, 2, 37, { keysPerStep: 4, splits: 1 }],
    [16, 6, 2, 5, { keysPerStep: 2 }],
    [256, 2, 1, 200, {}],
    [128, 8, 1, 600, { headBlock: 8, splits: 16 }],
    [128, 7, 1, 300, { headBlock: 7, splits: 4 }],
    [128, 8, 1, 600, { headBlock: 4, splits: 8 }],
    [64, 8, 2, 300, { headBlock: 2 }],
    [32, 6, 2, 129, { headBlock: 1, splits: 3 }],
    [16, 2, 1, 1, tiled],
    [128, 8, 1, 600, tiled],
    [128, 7, 1, 300, { ...tiled, chunk: 8 }],
    [80, 4, 2, 37, { ...tiled, chunk: 16 }],
    [128, 8, 1, 600, { ...tiled, splits: 64 }],
    [128, 7, 1, 300, { ...tiled, prefetch: false, chunk: 8 }],
    [80, 2, 1, 600, { ...tiled, prefetch: false, splits: 2 }],
    [128, 8, 1, 600, { ...tiled, unroll: false, splits: 64 }],
    [128, 7, 1, 300, { ...tiled, unroll: false, prefetch: false }],
    [80, 4, 2, 37, { ...tiled, splits: 5, mergeBatch: 4 }],
    [128, 8, 1, 600, { ...tiled, headBlock: 2 }],
  ];
  for (const [i, [headDim, heads, kvHeads, n, opts]] of cases.entries()) {
    const s: DecodeAttentionShape = { headDim, heads, kvHeads, maxTokens, ...opts };
    const kvWidth = kvHeads * headDim, width = heads * headDim;
    const cache: KvDType = i % 2 ? "f16" : "f32";
    const kc = cacheValues(randn(rng, maxTokens * kvWidth), cache),
      vc = cacheValues(randn(rng, maxTokens * kvWidth), cache);
    const q = randn(rng, width);
    const [bq, bk, bv] = [q, cacheArray(kc, cache), cacheArray(vc, cache)].map((a) =>
      uploadArray(gpu, a)
    );
    const out = createStorage(gpu, width * 4);
    const scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
    const ds = decodeAttention(
      gpu,
      out,
      { buffer: bq },
      { buffer: bk, dtype: cache },
      { buffer: bv, dtype: cache },
      state,
      scratch,
      s,
    );
    // The kernel asked for, or by default the lanes one wherever it fits (lavapipe's 32 KiB of
    // workgroup memory cannot hold its slot merge at head_dim 256).
    const lanes = opts.kernel !== "tiled" &&
      !(headDim === 256 && maxWorkgroupBytes(gpu) < 32768 + 8192);
    assert.equal(
      ds[0].variant.key.split("[")[0],
      `attention_decode.decode${lanes ? "_lanes" : ""}`,
      `kernel for case ${i}`,
    );
    // The same Dispatches at two context lengths, as successive decode steps use them.
    for (const len of [n, Math.min(n + 130, maxTokens)]) {
      writeDecodeState(gpu, state, { cacheLen: len - 1, position: len - 1, step: 0 });
      run(gpu, ds);
      // Query len-1 of a causal prefill over keys 0..len-1: its row is the decode result.
      const want = attentionRef(q, kc.subarray(0, len * kvWidth), vc.subarray(0, len * kvWidth), {
        seq: 1,
        heads,
        kvHeads,
        headDim,
        offset: len - 1,
      });
      assertClose(
        await readF32(gpu, out),
        want,
        TOL,
        `decode hd=${headDim} ${heads}/${kvHeads} len=${len} ${cache} ${JSON.stringify(opts)}`,
      );
    }
    [bq, bk, bv, out, scratch].forEach((b) => b.destroy());
    ds.forEach((d) => d.destroy());
  }
  state.destroy();
});

// Batched decode: q holds one token a row (3 rows of a fused qkv-like row, each its own random
// values) and out one result a row. The call for row r must read row r's query and write row r
// of out alone, the other rows keeping their sentinel bit for bit — in both kernels, through the
// one-split write and the merge's, with the query at column 0 or further along the row.
Deno.test("decodeAttention() with row reads that row of q, writes that row of out and leaves the others as they were", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(24);
  const maxTokens = 400, rows = 3, sentinel = 7;
  const state = createDecodeState(gpu);
  const tiled = { kernel: "tiled" } as const;
  // [headDim, heads, kvHeads, n, q column offset, options]: the tiny model's 2 / 1 heads of 16
  // (a 128-byte output row) first.
  const cases: [number, number, number, number, number, Partial<DecodeAttentionShape>][] = [
    [16, 2, 1, 37, 0, {}],
    [16, 2, 1, 37, 0, { splits: 1 }],
    [16, 2, 1, 37, 16, { ...tiled, splits: 3 }],
    [16, 2, 1, 37, 0, { ...tiled, splits: 1 }],
    [128, 7, 1, 300, 128, {}],
    [80, 4, 2, 37, 0, { ...tiled, splits: 5, mergeBatch: 4 }],
  ];
  for (const [i, [headDim, heads, kvHeads, n, qOff, opts]] of cases.entries()) {
    const kvWidth = kvHeads * headDim, width = heads * headDim;
    const stride = qOff + (heads + 2 * kvHeads) * headDim;
    const cache: KvDType = i % 2 ? "f16" : "f32";
    const kc = cacheValues(randn(rng, maxTokens * kvWidth), cache),
      vc = cacheValues(randn(rng, maxTokens * kvWidth), cache);
    const q = randn(rng, rows * stride);
    const [bq, bk, bv] = [q, cacheArray(kc, cache), cacheArray(vc, cache)].map((a) =>
      uploadArray(gpu, a)
    );
    for (const row of [2, 1, 0]) {
      const s: DecodeAttentionShape = { headDim, heads, kvHeads, maxTokens, ...opts, row };
      const out = uploadArray(gpu, new Float32Array(rows * width).fill(sentinel));
      const scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
      const ds = decodeAttention(
        gpu,
        out,
        { buffer: bq, stride, offset: qOff },
        { buffer: bk, dtype: cache },
        { buffer: bv, dtype: cache },
        state,
        scratch,
        s,
      );
      const lanes = opts.kernel !== "tiled";
      assert.equal(
        ds[0].variant.key.split("[")[0],
        `attention_decode.decode${lanes ? "_lanes" : ""}`,
        `kernel for case ${i}`,
      );
      const qRow = q.subarray(row * stride + qOff, row * stride + qOff + width);
      for (const len of [n, Math.min(n + 130, maxTokens)]) {
        writeDecodeState(gpu, state, { cacheLen: len - 1, position: len - 1, step: 0 });
        run(gpu, ds);
        const want = attentionRef(
          qRow,
          kc.subarray(0, len * kvWidth),
          vc.subarray(0, len * kvWidth),
          { seq: 1, heads, kvHeads, headDim, offset: len - 1 },
        );
        const what = `case ${i} hd=${headDim} ${heads}/${kvHeads} row ${row} len=${len} ${cache} ` +
          JSON.stringify(opts);
        const got = await readF32(gpu, out);
        assertClose(got.subarray(row * width, (row + 1) * width), want, TOL, what);
        for (let r = 0; r < rows; r++) {
          if (r === row) continue;
          assert.deepEqual(
            got.subarray(r * width, (r + 1) * width),
            new Float32Array(width).fill(sentinel),
            `${what}: out row ${r} kept`,
          );
        }
      }
      [out, scratch].forEach((b) => b.destroy());
      ds.forEach((d) => d.destroy());
    }
    [bq, bk, bv].forEach((b) => b.destroy());
  }
  state.destroy();
});

Deno.test("decodeAttention() rejects an out or q too small for the row and a row that is no index", async () => {
  const gpu = await sharedGpu();
  const s = { headDim: 16, heads: 2, kvHeads: 1, maxTokens: 16 };
  const width = 32, stride = 64; // q: fused rows of 2 + 2 · 1 heads of 16
  // out and q hold 2 rows: rows 0 and 1 fit, row 2 does not.
  const out = createStorage(gpu, 2 * width * 4), q = createStorage(gpu, 2 * stride * 4);
  const [k, v] = [0, 1].map(() => createStorage(gpu, s.maxTokens * 16 * 4));
  const bigOut = createStorage(gpu, 3 * width * 4), state = createDecodeState(gpu);
  const scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
  const call = (o: GPUBuffer, row: number) =>
    decodeAttention(
      gpu,
      o,
      { buffer: q, stride },
      { buffer: k },
      { buffer: v },
      state,
      scratch,
      { ...s, row },
    );
  call(out, 1).forEach((d) => d.destroy());
  assert.throws(
    () => call(out, 2),
    (e) =>
      e instanceof InvalidInputError &&
      /out buffer .* holds 256 bytes but the shape needs 384/.test(e.message),
  );
  // Row 2 of q starts at element 128: q needs 128 + 32 elements, it holds 128.
  assert.throws(
    () => call(bigOut, 2),
    (e) =>
      e instanceof InvalidInputError &&
      /q buffer .* holds 512 bytes but the shape needs 640/.test(e.message),
  );
  for (const row of [-1, 0.5]) {
    assert.throws(() => call(bigOut, row), InvalidInputError, `row ${row}`);
  }
  [out, q, k, v, bigOut, state, scratch].forEach((b) => b.destroy());
});

Deno.test("decodeAttention() refuses a lanes tiling the head does not divide into", async () => {
  const gpu = await sharedGpu();
  const s = {
    headDim: 80,
    heads: 2,
    kvHeads: 1,
    maxTokens: 16,
    kernel: "lanes",
    lanes: 8,
  } as const;
  const [q, k, v, state, out] = [64, 64, 64, 16, 64].map((n) => createStorage(gpu, n * 4));
  const scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
  assert.throws(
    () => decodeAttention(gpu, out, { buffer: q }, { buffer: k }, { buffer: v }, state, scratch, s),
    (e) => e instanceof InvalidInputError && /must divide head_dim \/ 4 = 20/.test(e.message),
  );
  [q, k, v, state, out, scratch].forEach((b) => b.destroy());
});

Deno.test("decodeAttention()'s default tiling: about 128 workgroups, at most 32 splits", async () => {
  const gpu = await sharedGpu();
  const maxTokens = 4096;
  // [heads, kvHeads, splits, head blocks]: Qwen2-VL-2B 3 heads a block (not its GQA group of 6,
  // which would take 64 splits), 7B 7, QVQ-72B 8.
  for (const [heads, kvHeads, splits, blocks] of [[12, 2, 32, 4], [28, 4, 32, 4], [64, 8, 16, 8]]) {
    const s = { headDim: 128, heads, kvHeads, maxTokens };
    const [q, k, v, out] = [heads, kvHeads * maxTokens, kvHeads * maxTokens, heads].map((n) =>
      createStorage(gpu, n * 128 * 4)
    );
    const state = createDecodeState(gpu),
      scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
    const [d] = decodeAttention(
      gpu,
      out,
      { buffer: q },
      { buffer: k },
      { buffer: v },
      state,
      scratch,
      s,
    );
    assert.deepEqual(d.workgroups, [splits, blocks, 1], `${heads} / ${kvHeads} heads`);
    [q, k, v, out, state, scratch].forEach((b) => b.destroy());
    d.destroy();
  }
});

Deno.test("decodeAttention() refuses a head block that does not divide the GQA group", () => {
  for (const headBlock of [3, 0, 16]) {
    const s = { headDim: 64, heads: 8, kvHeads: 2, maxTokens: 16, headBlock };
    assert.throws(
      () => decodeAttentionScratchBytes(s),
      (e) =>
        e instanceof InvalidInputError &&
        /headBlock \d+ must divide the GQA group \(4\)/.test(e.message),
      `headBlock ${headBlock}`,
    );
  }
});

Deno.test("decodeAttention() agrees with causalAttention() on the same cache, f32 and f16", async () => {
  const gpu = await sharedGpu();
  for (const cache of ["f32", "f16"] as const) {
    await decodeMatchesPrefill(gpu, cache);
  }
});

async function decodeMatchesPrefill(gpu: Gpu, cache: KvDType): Promise<void> {
  const rng = seeded(23);
  const c = { headDim: 128, heads: 7, kvHeads: 1, seq: 10, offset: 190 };
  const qStride = (c.heads + 2 * c.kvHeads) * c.headDim, keys = c.offset + c.seq;
  const x = {
    qkv: randn(rng, c.seq * qStride),
    qStride,
    keys,
    kc: cacheArray(randn(rng, keys * c.kvHeads * c.headDim), cache),
    vc: cacheArray(randn(rng, keys * c.kvHeads * c.headDim), cache),
  };
  const [bq, bk, bv] = [x.qkv, x.kc, x.vc].map((a) => uploadArray(gpu, a));
  const k = { buffer: bk, dtype: cache }, v = { buffer: bv, dtype: cache };
  const width = c.heads * c.headDim;
  const pre = createStorage(gpu, c.seq * width * 4), dec = createStorage(gpu, width * 4);
  const s = { ...c, maxTokens: x.keys };
  const scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
  const state = createDecodeState(gpu);
  writeDecodeState(gpu, state, { cacheLen: x.keys - 1, position: 0, step: 0 });
  const qLast = { buffer: { buffer: bq, offset: (c.seq - 1) * x.qStride * 4 }, stride: x.qStride };
  run(gpu, [
    causalAttention(gpu, pre, { buffer: bq, stride: x.qStride }, k, v, c),
    ...decodeAttention(gpu, dec, qLast, k, v, state, scratch, s),
  ]);
  const last = (await readF32(gpu, pre)).subarray((c.seq - 1) * width);
  assertClose(await readF32(gpu, dec), last, TOL, `decode vs prefill, ${cache} cache`);
  [bq, bk, bv, pre, dec, scratch, state].forEach((b) => b.destroy());
}

/** An M-RoPE table for head_dim hd (Qwen2-VL's section proportions: 1/4, 3/8, 3/8 of hd/2). */
function ropeTableFor(hd: number, npos: number) {
  const half = hd / 2;
  return mropeTable(hd, 1e6, [half / 4, (3 * half) / 8, (3 * half) / 8], npos);
}

// Batched decode's fused rope + KV write + attention against the two dispatches it replaces,
// ropeKvWriteAt() then decodeAttention() at the same row: the same output, the same cache row, bit
// for bit; the qkv row left unrotated, the other cache rows and out rows as they were. And against
// the plain loops: src/ref/rope.ts ropeKvWrite() (rope + cache write) then the attention reference
// over the cache read back (its row cache_len checked against the reference first: an f16 row may
// round one ulp of f32 apart to the neighbouring f16 value, which the attention would then carry).
// Cache lengths 0 (this token's key the only one), mid-split, maxTokens − 1 (the last row), and
// maxTokens (the write dropped, the attention over the full cache and this token: only the fused
// path reads no row past the cache, so only the reference there). Both kernels, GQA groups of 1
// to 7 with head blocks that split a group (only the group's first block writes), f16 and f32
// caches, several splits, the qkv row from column 0 or further along, a position past the table.
Deno.test("decodeAttentionRopeKv() equals ropeKvWriteAt() then decodeAttention() bit for bit, and the rope + cache write + attention references", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(25);
  const rows = 3, sentinel = 7, npos = 300;
  const tiled = { kernel: "tiled" } as const;
  // [headDim, heads, kvHeads, maxTokens, qkv column offset, options]
  const cases: [number, number, number, number, number, Partial<DecodeAttentionShape>][] = [
    [16, 2, 1, 40, 0, {}],
    [16, 2, 1, 40, 16, tiled],
    [128, 7, 1, 200, 0, {}],
    [128, 8, 2, 150, 0, { ...tiled, headBlock: 2 }],
    [64, 6, 2, 120, 32, { headBlock: 1, splits: 3 }],
    [80, 4, 2, 130, 0, { ...tiled, splits: 5, chunk: 16 }],
    [32, 4, 4, 100, 0, { lanes: 4, keysPerStep: 4 }],
    [128, 4, 1, 64, 0, { splits: 1 }],
    [32, 6, 2, 90, 0, { ...tiled, splits: 1, chunk: 8 }],
  ];
  for (const [i, [headDim, heads, kvHeads, maxTokens, off, opts]] of cases.entries()) {
    const cache: KvDType = i % 2 ? "f16" : "f32";
    const kvWidth = kvHeads * headDim, width = heads * headDim;
    const stride = off + width + 2 * kvWidth + 8;
    const t = ropeTableFor(headDim, npos), gt = uploadRopeTable(gpu, t);
    const state = createDecodeState(gpu);
    const row = i % rows;
    for (const len of [0, Math.floor(maxTokens / 2) + 1, maxTokens - 1, maxTokens]) {
      const position = len === maxTokens ? npos + 5 : len + 17; // past the table: clamped
      writeDecodeState(gpu, state, { cacheLen: len, position, step: 0 });
      const qkv = randn(rng, rows * stride);
      const k0 = cacheValues(randn(rng, maxTokens * kvWidth), cache),
        v0 = cacheValues(randn(rng, maxTokens * kvWidth), cache);
      const s: DecodeAttentionShape = { headDim, heads, kvHeads, maxTokens, ...opts, row };
      const what = `case ${i} hd=${headDim} ${heads}/${kvHeads} row ${row} cache_len ${len} ` +
        `${cache} ${JSON.stringify(opts)}`;
      // The two ways, each on its own copies.
      const run2 = async (fused: boolean) => {
        const bx = uploadArray(gpu, qkv),
          bk = uploadArray(gpu, cacheArray(k0, cache)),
          bv = uploadArray(gpu, cacheArray(v0, cache));
        const out = uploadArray(gpu, new Float32Array(rows * width).fill(sentinel));
        const scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
        const k = { buffer: bk, dtype: cache }, v = { buffer: bv, dtype: cache };
        const q = { buffer: bx, stride, offset: off };
        const ds = fused ? decodeAttentionRopeKv(gpu, out, q, k, v, state, scratch, gt, s) : [
          ropeKvWriteAt(gpu, bx, bk, bv, state, gt, {
            heads: heads + kvHeads,
            kvHeads,
            stride,
            offset: off,
            maxTokens,
            dtype: cache,
            row,
          }),
          ...decodeAttention(gpu, out, q, k, v, state, scratch, s),
        ];
        const lanes = opts.kernel !== "tiled";
        assert.equal(
          ds[ds.length - 1].variant.key.split("[")[0],
          `attention_decode.decode${lanes ? "_lanes" : ""}`,
          `${what}: kernel`,
        );
        if (fused) {
          assert.equal(ds.length, 1, `${what}: one dispatch`);
          assert.match(ds[0].variant.key, /[[,]ROPE[,\]]/);
        }
        run(gpu, ds);
        const got = {
          out: await readF32(gpu, out),
          k: await readKvCache(gpu, bk, cache),
          v: await readKvCache(gpu, bv, cache),
          qkv: await readF32(gpu, bx),
        };
        [bx, bk, bv, out, scratch].forEach((b) => b.destroy());
        ds.forEach((d) => d.destroy());
        return got;
      };
      const got = await run2(true);
      // qkv is only read; out's other rows and the cache's other rows are as they were.
      assertSameBits(got.qkv, qkv, `${what}: qkv untouched`);
      for (let r = 0; r < rows; r++) {
        if (r === row) continue;
        assert.deepEqual(
          got.out.subarray(r * width, (r + 1) * width),
          new Float32Array(width).fill(sentinel),
          `${what}: out row ${r} kept`,
        );
      }
      for (const [name, c, c0] of [["k", got.k, k0], ["v", got.v, v0]] as const) {
        for (let j = 0; j < maxTokens; j++) {
          if (j === len) continue;
          assertSameBits(
            c.subarray(j * kvWidth, (j + 1) * kvWidth),
            c0.subarray(j * kvWidth, (j + 1) * kvWidth),
            `${what}: ${name} cache row ${j} kept`,
          );
        }
      }
      // The references: rope + cache write, then the attention over the cache as written.
      const kWant = k0.slice(), vWant = v0.slice();
      const xRot = ropeKvWrite(
        qkv.subarray(row * stride, (row + 1) * stride),
        position >= npos ? npos - 1 : position,
        t,
        { heads: heads + kvHeads, kvHeads, stride, offset: off },
        kWant,
        vWant,
        len,
      );
      assertCache(got.k, kWant, cache, 1e-6, `${what}: k cache`);
      assertSameBits(got.v, cacheValues(vWant, cache), `${what}: v cache`);
      const kc = got.k.slice(), vc = got.v.slice();
      if (len === maxTokens) {
        // No row to write: the fresh key and value enter the attention only.
        const kFresh = xRot.subarray(off + width, off + width + kvWidth);
        const vFresh = xRot.subarray(off + width + kvWidth, off + width + 2 * kvWidth);
        const kAll = new Float32Array((len + 1) * kvWidth), vAll = kAll.slice();
        kAll.set(kc);
        vAll.set(vc);
        kAll.set(cacheValues(kFresh, cache), len * kvWidth);
        vAll.set(cacheValues(vFresh, cache), len * kvWidth);
        const want = attentionRef(xRot.subarray(off, off + width), kAll, vAll, {
          seq: 1,
          heads,
          kvHeads,
          headDim,
          offset: len,
        });
        assertClose(got.out.subarray(row * width, (row + 1) * width), want, TOL, `${what}: out`);
        continue;
      }
      const want = attentionRef(
        xRot.subarray(off, off + width),
        kc.subarray(0, (len + 1) * kvWidth),
        vc.subarray(0, (len + 1) * kvWidth),
        { seq: 1, heads, kvHeads, headDim, offset: len },
      );
      assertClose(got.out.subarray(row * width, (row + 1) * width), want, TOL, `${what}: out`);
      // The two dispatches it replaces: the same bits.
      const old = await run2(false);
      assertSameBits(got.out, old.out, `${what}: out as the two dispatches'`);
      assertSameBits(got.k, old.k, `${what}: k cache as ropeKvWriteAt's`);
      assertSameBits(got.v, old.v, `${what}: v cache as ropeKvWriteAt's`);
    }
    state.destroy();
    gt.destroy();
  }
});

// The fresh value enters the attention as an f16 cache holds it, rounded in integer arithmetic
// (attention_decode.wgsl f16_round: the H200's compiler kept x's f32 value through an f16 round
// trip): at cache_len 0 it is the only key, so the output is that value — ties to even, subnormal
// steps of 2^-24, the top of f16's range — bit for bit as Float16Array rounds it.
Deno.test("decodeAttentionRopeKv() with an f16 cache takes the fresh value at its f16 rounding: ties, subnormals, the range's top", async () => {
  const gpu = await sharedGpu();
  const headDim = 16, t = ropeTableFor(headDim, 8), gt = uploadRopeTable(gpu, t);
  const v = Float32Array.from([
    1.4136004447937012,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    6e-8,
    1e-5,
    -3.1e-5,
    6.1e-5,
    65504,
    65519,
    -0.33333334,
    2 ** -25,
    3 * 2 ** -25,
    1000.3,
    -2.5e-3,
    0.1,
    -7.777,
  ]);
  const want = Float32Array.from(Float16Array.from(v));
  assert.equal(want[1], 1); // (a tie to even, down)
  assert.equal(want[2], 1 + 2 ** -9); // (a tie to even, up)
  assert.equal(want[10], 0);
  assert.equal(want[11], 2 ** -23);
  const state = createDecodeState(gpu);
  writeDecodeState(gpu, state, { cacheLen: 0, position: 3, step: 0 });
  for (const opts of [{}, { kernel: "tiled" as const }]) {
    const qkv = new Float32Array(3 * headDim);
    qkv.set(randn(seeded(3), 2 * headDim));
    qkv.set(v, 2 * headDim);
    const s: DecodeAttentionShape = { headDim, heads: 1, kvHeads: 1, maxTokens: 4, ...opts };
    const bx = uploadArray(gpu, qkv), out = createStorage(gpu, headDim * 4);
    const bk = createStorage(gpu, 4 * headDim * 2), bv = createStorage(gpu, 4 * headDim * 2);
    const scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
    const ds = decodeAttentionRopeKv(
      gpu,
      out,
      { buffer: bx, stride: 3 * headDim },
      { buffer: bk, dtype: "f16" },
      { buffer: bv, dtype: "f16" },
      state,
      scratch,
      gt,
      s,
    );
    run(gpu, ds);
    assertSameBits(await readF32(gpu, out), want, `${JSON.stringify(opts)}: out`);
    const cached = await readKvCache(gpu, bv, "f16");
    assertSameBits(cached.subarray(0, headDim), want, `${JSON.stringify(opts)}: v cache row 0`);
    [bx, out, bk, bv, scratch].forEach((b) => b.destroy());
    ds.forEach((d) => d.destroy());
  }
});

Deno.test("decodeAttentionRopeKv() refuses a rope table of another head_dim, a row without its k and v heads, and a cache too small to write", async () => {
  const gpu = await sharedGpu();
  const s = { headDim: 16, heads: 2, kvHeads: 1, maxTokens: 16 };
  const t16 = uploadRopeTable(gpu, ropeTableFor(16, 32)),
    t32 = uploadRopeTable(gpu, ropeTableFor(32, 32));
  const out = createStorage(gpu, 32 * 4),
    qkv = createStorage(gpu, 64 * 4),
    state = createDecodeState(gpu),
    scratch = createStorage(gpu, decodeAttentionScratchBytes(s));
  const [k, v, small] = [16 * 16, 16 * 16, 15 * 16].map((n) => createStorage(gpu, n * 4));
  const call = (stride: number, t = t16, kc = k) =>
    decodeAttentionRopeKv(
      gpu,
      out,
      { buffer: qkv, stride },
      { buffer: kc },
      { buffer: v },
      state,
      scratch,
      t,
      s,
    );
  call(64).forEach((d) => d.destroy());
  assert.throws(() => call(64, t32), /rotates heads of 32, not head_dim 16/);
  assert.throws(() => call(48), /overrun the qkv row stride 48/);
  assert.throws(
    () => call(64, t16, small),
    /k cache buffer .* holds 960 bytes but the shape needs 1024/,
  );
  [out, qkv, state, scratch, k, v, small].forEach((b) => b.destroy());
  [t16, t32].forEach((t) => t.destroy());
});
