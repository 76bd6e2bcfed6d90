/**
 * Test helpers shared by the kernel tests.
 * @module
 */
import assert from "node:assert/strict";
import type { Gpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { createWeight, type Weight, type WeightDType, writeWeightRows } from "../src/gpu/tensor.ts";
import { ropeKvWrite, type RopeTable } from "../src/ref/rope.ts";
import { assertCache, cacheArray, cacheValues } from "../src/ref/kv_cache.ts";
import { assertClose, randn } from "../src/ref/_random.ts";
import { type KvDType, readKvCache } from "./kv_cache.ts";
import type { GpuRopeTable } from "./rope.ts";
import type { RopeKvEpilogue } from "./linear.ts";
import { createDecodeState, writeDecodeState } from "./state.ts";
import { type Dispatch, run } from "./_kernel.ts";

/**
 * Runs a matrix product's dispatches (`build`: linear(), gemmQ(), … bound to their weight and
 * tuning) on fresh buffers — x (m, k), the bias, y starting as y0 (accumulate) or empty — and
 * returns y (m, rows).
 */
export async function runProduct(
  gpu: Gpu,
  build: (y: GPUBuffer, x: GPUBuffer, bias: GPUBuffer | null, s: ProductShape) => Dispatch[],
  x: Float32Array,
  rows: number,
  bias: Float32Array | null,
  m: number,
  y0?: Float32Array,
): Promise<Float32Array> {
  const bx = uploadArray(gpu, x, "x");
  const bb = bias ? uploadArray(gpu, bias, "bias") : null;
  const by = y0 ? uploadArray(gpu, y0, "y") : createStorage(gpu, m * rows * 4, "y");
  const ds = build(by, bx, bb, { m, accumulate: y0 !== undefined });
  run(gpu, ds);
  const y = await readF32(gpu, by, m * rows);
  [bx, bb, by].forEach((b) => b?.destroy());
  ds.forEach((d) => d.destroy());
  return y;
}

/** The shape runProduct() gives its builder. */
export interface ProductShape {
  m: number;
  accumulate: boolean;
}

/**
 * runProduct() for a product function of the (gpu, y, x, w, bias, shape, tuning) form (linear(),
 * gemmQ()): the runner takes the weight and a tuning and returns y.
 */
export function productRunner<T>(
  product: (
    gpu: Gpu,
    y: GPUBuffer,
    x: GPUBuffer,
    w: Weight,
    bias: GPUBuffer | null,
    s: ProductShape,
    tuning?: T,
  ) => Dispatch[],
): (
  gpu: Gpu,
  x: Float32Array,
  w: Weight,
  bias: Float32Array | null,
  m: number,
  y0?: Float32Array,
  tuning?: T,
) => Promise<Float32Array> {
  return (gpu, x, w, bias, m, y0, tuning) =>
    runProduct(gpu, (y, xb, b, s) => product(gpu, y, xb, w, b, s, tuning), x, w.rows, bias, m, y0);
}

/**
 * Uploads `data` (rows, cols) f32 as a Weight of `dtype`; returns it and the values the GPU
 * holds (f16-rounded for f16), which is what a kernel's result must be compared against.
 */
export function uploadWeight(
  gpu: Gpu,
  data: Float32Array,
  rows: number,
  cols: number,
  dtype: WeightDType,
  label: string,
  maxChunkBytes?: number,
): { w: Weight; held: Float32Array } {
  const w = createWeight(gpu, rows, cols, dtype, label, maxChunkBytes);
  writeWeightRows(gpu, w, 0, data);
  return { w, held: dtype === "f16" ? data.map(Math.f16round) : data };
}

/** One decode q/k/v projection with the rope + KV-write epilogue to test, set up on the GPU. */
export interface RopeKvCase {
  /** The epilogue to pass (ropeKv). */
  ropeKv: RopeKvEpilogue;
  /** Inputs: x (k), the norm weight (k, around 1), the bias (n), and their buffers; y's buffer. */
  x: Float32Array;
  nw: Float32Array;
  bias: Float32Array;
  bx: GPUBuffer;
  bnw: GPUBuffer;
  bb: GPUBuffer;
  by: GPUBuffer;
  /**
   * Asserts y and both caches against the reference: `lin` (the projection before rope) rotated
   * at the case's position and written at its cache row (src/ref/rope.ts ropeKvWrite).
   */
  check(lin: Float32Array, tol: number, what: string): Promise<void>;
  destroy(): void;
}

/**
 * A {@link RopeKvCase}: q + kv rotated heads and kv value heads of the table's head_dim over k
 * inputs, a cache of maxTokens rows of `cache` filled at random, the decode state at cache row
 * `row` and a random position below 60.
 */
export function ropeKvCase(
  gpu: Gpu,
  rng: () => number,
  s: {
    table: RopeTable;
    gpuTable: GpuRopeTable;
    q: number;
    kv: number;
    k: number;
    row: number;
    maxTokens: number;
    cache: KvDType;
  },
): RopeKvCase {
  const { table, q, kv, k, row, maxTokens, cache } = s;
  const hd = 2 * table.half, n = (q + 2 * kv) * hd, width = kv * hd;
  const position = Math.floor(rng() * 60);
  const x = randn(rng, k, 3), nw = randn(rng, k, 0.5).map((v) => v + 1), bias = randn(rng, n);
  const k0 = cacheValues(randn(rng, maxTokens * width), cache),
    v0 = cacheValues(randn(rng, maxTokens * width), cache);
  const state = createDecodeState(gpu);
  writeDecodeState(gpu, state, { cacheLen: row, position, step: 1 });
  const [bx, bnw, bb] = [x, nw, bias].map((a) => uploadArray(gpu, a));
  const by = createStorage(gpu, n * 4, "y");
  const bk = uploadArray(gpu, cacheArray(k0, cache), "k"),
    bv = uploadArray(gpu, cacheArray(v0, cache), "v");
  const ropeKv: RopeKvEpilogue = {
    table: s.gpuTable,
    state,
    k: bk,
    v: bv,
    heads: q + kv,
    kvHeads: kv,
    maxTokens,
    dtype: cache,
  };
  return {
    ropeKv,
    x,
    nw,
    bias,
    bx,
    bnw,
    bb,
    by,
    async check(lin, tol, what) {
      const kWant = k0.slice(), vWant = v0.slice();
      const sh = { heads: q + kv, kvHeads: kv, stride: n, offset: 0 };
      const yWant = ropeKvWrite(lin, position, table, sh, kWant, vWant, row);
      const at = `${what}, row ${row}, ${cache} cache`;
      assertClose(await readF32(gpu, by, n), yWant, tol, `${at}: y`);
      assertCache(await readKvCache(gpu, bk, cache), kWant, cache, tol, `${at}: k cache`);
      assertCache(await readKvCache(gpu, bv, cache), vWant, cache, tol, `${at}: v cache`);
      if (row < maxTokens) assert.notDeepEqual(kWant, k0, `${at}: the reference wrote K`);
    },
    destroy() {
      [bx, bnw, bb, by, bk, bv, state].forEach((b) => b.destroy());
    },
  };
}

/**
 * Runs `body` with `target`'s fields set to `values` (module switches such as
 * kernels/linear.ts LINEAR_CHOICE), restoring what they were however it ends.
 */
export async function withSettings<T extends object>(
  target: T,
  values: Partial<T>,
  body: () => Promise<void>,
): Promise<void> {
  const saved = { ...target };
  Object.assign(target, values);
  try {
    await body();
  } finally {
    Object.assign(target, saved);
  }
}
