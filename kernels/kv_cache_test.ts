import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray, writeArray } from "../src/gpu/buffers.ts";
import { cacheValues } from "../src/ref/kv_cache.ts";
import { randn, seeded } from "../src/ref/_random.ts";
import { kvElementBytes, kvWrite, kvWriteAt, readKvCache } from "./kv_cache.ts";
import { advance, createDecodeState, writeDecodeState } from "./state.ts";
import { run } from "./_kernel.ts";

// Tiny model layout: 2 q heads + 1 k + 1 v head of 16 per fused qkv row.
const S = { width: 16, srcStride: 64, kOffset: 32, vOffset: 48, maxTokens: 12 };

/** The expected cache after copying K/V of `src` rows to cache rows starting at `row0`. */
function expectCache(
  cache: Float32Array,
  src: Float32Array,
  rows: number,
  row0: number,
  off: number,
): void {
  for (let t = 0; t < rows; t++) {
    cache.set(
      src.subarray(t * S.srcStride + off, t * S.srcStride + off + S.width),
      (row0 + t) * S.width,
    );
  }
}

Deno.test("kvWrite() and kvWriteAt() put K and V at the prefill offset and at state.cache_len, in an f32 and an f16 cache", async () => {
  const gpu = await sharedGpu();
  for (const dtype of ["f32", "f16"] as const) {
    const rng = seeded(30);
    const prompt = randn(rng, 5 * S.srcStride),
      tok = randn(rng, S.srcStride),
      tok2 = randn(rng, S.srcStride);
    const [bp, bt] = [uploadArray(gpu, prompt), uploadArray(gpu, tok)];
    const bytes = S.maxTokens * S.width * kvElementBytes(dtype);
    const kc = createStorage(gpu, bytes), vc = createStorage(gpu, bytes);
    const state = createDecodeState(gpu);
    writeDecodeState(gpu, state, { cacheLen: 7, position: 7, step: 0 });
    const s = { ...S, dtype };
    const at = kvWriteAt(gpu, kc, vc, bt, state, s);
    // Second turn's prompt at offset 2, then two decode steps (the second with new data).
    run(gpu, [kvWrite(gpu, kc, vc, bp, { ...s, seq: 5, offset: 2 }), at, advance(gpu, state)]);
    writeArray(gpu, bt, tok2);
    run(gpu, [at]);
    const wantK = new Float32Array(S.maxTokens * S.width), wantV = wantK.slice();
    expectCache(wantK, prompt, 5, 2, S.kOffset);
    expectCache(wantV, prompt, 5, 2, S.vOffset);
    expectCache(wantK, tok, 1, 7, S.kOffset);
    expectCache(wantV, tok, 1, 7, S.vOffset);
    expectCache(wantK, tok2, 1, 8, S.kOffset);
    expectCache(wantV, tok2, 1, 8, S.vOffset);
    assert.deepEqual(await readKvCache(gpu, kc, dtype), cacheValues(wantK, dtype), dtype);
    assert.deepEqual(await readKvCache(gpu, vc, dtype), cacheValues(wantV, dtype), dtype);
    [bp, bt, kc, vc, state].forEach((b) => b.destroy());
  }
});

Deno.test("kvWriteAt() drops a write past the cache instead of overrunning it", async () => {
  const gpu = await sharedGpu();
  const big = createStorage(gpu, (S.maxTokens + 1) * S.width * 4); // one spare row after the cache
  const src = uploadArray(gpu, new Float32Array(S.srcStride).fill(1));
  const state = createDecodeState(gpu);
  writeDecodeState(gpu, state, { cacheLen: S.maxTokens, position: 0, step: 0 });
  run(gpu, [kvWriteAt(gpu, big, big, src, state, S)]);
  assert.ok((await readF32(gpu, big)).every((x) => x === 0));
  [big, src, state].forEach((b) => b.destroy());
});

Deno.test("kvWrite() rejects rows past the cache", async () => {
  const gpu = await sharedGpu();
  const b = createStorage(gpu, 4096);
  assert.throws(
    () => kvWrite(gpu, b, b, b, { ...S, seq: 5, offset: 10 }),
    /rows 10\.\.14 overrun the 12-token cache/,
  );
  b.destroy();
});
