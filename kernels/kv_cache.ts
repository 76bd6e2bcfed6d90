/**
 * KV cache writes (kernels/kv_cache.wgsl): a layer's cache is a K and a V buffer of
 * (maxTokens, kvHeads · headDim) f16 or f32 ({@link KvDType}); prefill writes its rows at a known
 * offset, a decode step its one row at state.cache_len.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import { readF16, readF32 } from "../src/gpu/buffers.ts";
import {
  type BufferArg,
  ceilDiv,
  checkSize,
  Dispatch,
  type KernelVariant,
  variant,
} from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { grid2d } from "./_grid.ts";

/**
 * Element type of a KV cache (kernels/_kv_types.wgsl): "f32" keeps K and V as computed; "f16"
 * halves the cache's memory (needs shader-f16; rounds K and V to 11 significant bits, 3 more than
 * transformers' own bf16 cache). Decode attention takes the same time over either (BENCHMARKS.md).
 */
export type KvDType = "f16" | "f32";

/**
 * Checks a KV cache dtype option (`kvCacheDtype`, `--kv-cache-dtype`): "f16", "f32", or undefined
 * for the default.
 * @throws InvalidInputError naming `what` for anything else
 */
export function checkKvDType(value: unknown, what = "kvCacheDtype"): KvDType | undefined {
  if (value === undefined || value === "f16" || value === "f32") return value;
  throw new InvalidInputError(
    `${what} must be "f16" or "f32" (or unset: f32), got ${JSON.stringify(value)}`,
  );
}

/** Bytes per element of a KV cache of `dtype` (default f32, as every cache-taking shape's). */
export function kvElementBytes(dtype: KvDType = "f32"): number {
  return dtype === "f16" ? 2 : 4;
}

/** Checks that K and V caches `k`, `v` each hold `rows` rows of `width` elements of `dtype`. */
export function checkKvCaches(
  k: BufferArg,
  v: BufferArg,
  rows: number,
  width: number,
  dtype?: KvDType,
): void {
  const bytes = rows * width * kvElementBytes(dtype);
  checkSize("k cache", k, bytes);
  checkSize("v cache", v, bytes);
}

/** The defines a kernel reading or writing a cache of `dtype` needs. */
export function kvDefines(dtype: KvDType = "f32"): { KV16: boolean } {
  return { KV16: dtype === "f16" };
}

// Widths, strides and offsets in vec4 units.
const Params = defineParams({
  seq: "u32",
  width: "u32",
  src_stride: "u32",
  k_off: "u32",
  v_off: "u32",
  dst_stride: "u32",
  row0: "u32",
  max_rows: "u32",
});
const WG = 256;

/** Where K and V sit in the source rows and how big the cache is. */
export interface KvWriteShape {
  /** Tokens to write. */
  seq: number;
  /** Elements of K (and of V) per token: kvHeads · headDim. */
  width: number;
  /** Elements per source row (a fused qkv row: (heads + 2 · kvHeads) · headDim). */
  srcStride: number;
  /** Element column of K in a source row. */
  kOffset: number;
  /** Element column of V in a source row. */
  vOffset: number;
  /** Rows of the cache buffers; writes at or past it are dropped. */
  maxTokens: number;
  /** The cache's element type (default f32). */
  dtype?: KvDType;
}

/** The write pipeline: src, K cache, V cache, and with `decode` the decode state for the row. */
function kvVariant(gpu: Gpu, decode: boolean, dtype?: KvDType): KernelVariant {
  return variant(gpu, {
    family: "kv_cache",
    entry: "main",
    bindings: decode
      ? ["read", "read_write", "read_write", "read"]
      : ["read", "read_write", "read_write"],
    params: Params,
    defines: { DECODE: decode, ...kvDefines(dtype) },
  });
}

function pack(s: KvWriteShape, row0: number, what: string): ArrayBuffer {
  const vals = [s.width, s.srcStride, s.kOffset, s.vOffset];
  if (
    vals.some((x) => x % 4) || s.kOffset + s.width > s.srcStride ||
    s.vOffset + s.width > s.srcStride
  ) {
    throw new InvalidInputError(
      `${what}: width ${s.width}, stride ${s.srcStride}, K at ${s.kOffset}, V at ${s.vOffset} must be ` +
        `multiples of 4 with K and V inside the row`,
    );
  }
  if (row0 + s.seq > s.maxTokens) {
    throw new InvalidInputError(
      `${what}: rows ${row0}..${row0 + s.seq - 1} overrun the ${s.maxTokens}-token cache`,
    );
  }
  return Params.pack({
    seq: s.seq,
    width: s.width / 4,
    src_stride: s.srcStride / 4,
    k_off: s.kOffset / 4,
    v_off: s.vOffset / 4,
    dst_stride: s.width / 4,
    row0,
    max_rows: s.maxTokens,
  });
}

/**
 * Writes `seq` tokens' K and V into cache rows offset..offset+seq-1.
 * @param src (seq, srcStride) f32 (K already rotated)
 * @param k (maxTokens, width) K cache of s.dtype
 * @param v (maxTokens, width) V cache of s.dtype
 */
export function kvWrite(
  gpu: Gpu,
  k: BufferArg,
  v: BufferArg,
  src: BufferArg,
  s: KvWriteShape & { offset: number },
): Dispatch {
  const vt = kvVariant(gpu, false, s.dtype);
  return new Dispatch(
    gpu,
    vt,
    [src, k, v],
    pack(s, s.offset, "kvWrite"),
    grid2d(ceilDiv((s.seq * s.width) / 4, WG)),
  );
}

/**
 * Decode write: this step's token at cache row state.cache_len.
 * @param src (1, srcStride) f32
 */
export function kvWriteAt(
  gpu: Gpu,
  k: BufferArg,
  v: BufferArg,
  src: BufferArg,
  state: BufferArg,
  s: Omit<KvWriteShape, "seq">,
): Dispatch {
  const vt = kvVariant(gpu, true, s.dtype);
  return new Dispatch(gpu, vt, [src, k, v, state], pack({ ...s, seq: 1 }, 0, "kvWriteAt"), [
    ceilDiv(s.width / 4, WG),
  ]);
}

/** Reads a cache buffer of `dtype` back as f32 values (tests, debugging). */
export function readKvCache(gpu: Gpu, buffer: GPUBuffer, dtype: KvDType): Promise<Float32Array> {
  return dtype === "f16" ? readF16(gpu, buffer) : readF32(gpu, buffer);
}
