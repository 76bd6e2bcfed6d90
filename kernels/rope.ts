/**
 * Rotary position embedding kernels (kernels/rope.wgsl): the decoder's M-RoPE and the vision
 * tower's 2D rope, in place on q/k. Tables come from src/ref/rope.ts ({@link mropeTable},
 * {@link visionRopeTable}); reference: {@link applyRope}.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { uploadArray } from "../src/gpu/buffers.ts";
import { InvalidInputError } from "../src/errors.ts";
import type { RopeTable } from "../src/ref/rope.ts";
import {
  type BufferArg,
  ceilDiv,
  checkSize,
  Dispatch,
  type KernelVariant,
  variant,
} from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { checkKvCaches, kvDefines, type KvDType } from "./kv_cache.ts";
import { grid2d } from "./_grid.ts";

export { mropeTable, type RopeTable, visionRopeTable } from "../src/ref/rope.ts";

const Params = defineParams({
  seq: "u32",
  heads: "u32",
  half: "u32",
  stride: "u32",
  offset: "u32",
  naxes: "u32",
  npos: "u32",
  kv_heads: "u32", // KV only: the last kv_heads rotated heads are K
  max_rows: "u32", // KV only: rows of the cache
  x_base: "u32", // KV only: element of x where the token's row starts (row · stride)
});
const WG = 256;

/** A rope table on the GPU. */
export interface GpuRopeTable {
  /** (2, npos, half) f32: the cos rows, then the sin rows. */
  readonly table: GPUBuffer;
  /** (half) u32: the position axis of each rotary index. */
  readonly axis: GPUBuffer;
  readonly npos: number;
  readonly half: number;
  readonly naxes: number;
  destroy(): void;
}

/**
 * Uploads a table built by {@link mropeTable} or {@link visionRopeTable}.
 * @example
 * ```ts ignore
 * const rt = uploadRopeTable(gpu, mropeTable(128, 1e6, [16, 24, 24], 32768 + 1024));
 * ```
 */
export function uploadRopeTable(gpu: Gpu, t: RopeTable, label = "rope"): GpuRopeTable {
  const both = new Float32Array(2 * t.npos * t.half);
  both.set(t.cos);
  both.set(t.sin, t.npos * t.half);
  const table = uploadArray(gpu, both, `${label}.table`);
  const axis = uploadArray(gpu, t.axis, `${label}.axis`);
  return {
    table,
    axis,
    npos: t.npos,
    half: t.half,
    naxes: t.naxes,
    destroy() {
      table.destroy();
      axis.destroy();
    },
  };
}

/** Where the rotated heads sit in x. */
export interface RopeShape {
  /** Tokens (rows of x). */
  seq: number;
  /** Heads to rotate, consecutive from `offset`. */
  heads: number;
  /** Elements per token row of x (default heads · head_dim: x is (seq, heads, head_dim)). */
  stride?: number;
  /** Column of the first rotated head (default 0). A fused qkv row rotates q and k in one call. */
  offset?: number;
}

/** The rope pipeline; with `decode`, binding 3 is the decode state instead of the positions. */
function ropeVariant(gpu: Gpu, decode: boolean, kv = false, dtype?: KvDType): KernelVariant {
  return variant(gpu, {
    family: "rope",
    entry: "main",
    bindings: [
      "read_write",
      "read",
      "read",
      "read",
      ...(kv ? ["read_write", "read_write"] as const : []),
    ],
    params: Params,
    defines: { DECODE: decode, KV: kv, ...kvDefines(dtype) },
  });
}

function pack(
  t: GpuRopeTable,
  s: RopeShape,
  what: string,
  kv: { kvHeads: number; maxTokens: number; row?: number } = { kvHeads: 0, maxTokens: 0 },
): ArrayBuffer {
  const headDim = 2 * t.half;
  const stride = s.stride ?? s.heads * headDim, offset = s.offset ?? 0;
  if (offset + s.heads * headDim > stride) {
    throw new InvalidInputError(
      `${what}: heads ${s.heads} × head_dim ${headDim} from column ${offset} overrun the row stride ${stride}`,
    );
  }
  return Params.pack({
    seq: s.seq,
    heads: s.heads,
    half: t.half,
    stride,
    offset,
    naxes: t.naxes,
    npos: t.npos,
    kv_heads: kv.kvHeads,
    max_rows: kv.maxTokens,
    x_base: (kv.row ?? 0) * stride,
  });
}

/**
 * Rotates `heads` heads of every token of x in place by the positions in `pos`.
 * @param x (seq, stride) f32, rotated in place
 * @param pos (seq, naxes) u32: (t, h, w) positions for M-RoPE, (h, w) for vision
 */
export function rope(
  gpu: Gpu,
  x: BufferArg,
  pos: BufferArg,
  t: GpuRopeTable,
  s: RopeShape,
): Dispatch {
  const v = ropeVariant(gpu, false);
  return new Dispatch(
    gpu,
    v,
    [x, t.table, t.axis, pos],
    pack(t, s, "rope"),
    grid2d(ceilDiv(s.seq * s.heads * t.half, WG)),
  );
}

/**
 * Decode rope: rotates one token's heads by `state.position` on every axis (after the prompt,
 * Qwen2-VL's three M-RoPE axes advance together).
 * @param x (1, stride) f32, rotated in place
 * @param state the decode state buffer (kernels/state.ts)
 */
export function ropeAt(
  gpu: Gpu,
  x: BufferArg,
  state: BufferArg,
  t: GpuRopeTable,
  s: Omit<RopeShape, "seq">,
): Dispatch {
  const v = ropeVariant(gpu, true);
  const sh = { ...s, seq: 1 };
  return new Dispatch(gpu, v, [x, t.table, t.axis, state], pack(t, sh, "ropeAt"), [
    ceilDiv(s.heads * t.half, WG),
  ]);
}

/** Shape of {@link ropeKvWriteAt}. */
export interface RopeKvShape {
  /** Heads to rotate, consecutive from `offset`: the query heads, then the kvHeads key heads. */
  heads: number;
  /** Key (and value) heads: the last `kvHeads` rotated heads are K, V's follow them in the row. */
  kvHeads: number;
  /** Elements per row of x (a fused qkv row: (heads + kvHeads) · head_dim + V). */
  stride: number;
  /** Column of the first rotated head (default 0). */
  offset?: number;
  /** Rows of the cache buffers; a write at or past it is dropped. */
  maxTokens: number;
  /** The cache's element type (default f32). */
  dtype?: KvDType;
  /**
   * Row of x holding the token (default 0): batched decode, x (rows, stride) with row r session
   * r's token. The cache row written is still state.cache_len.
   */
  row?: number;
}

/**
 * The decode step's {@link ropeAt} and {@link kvWriteAt} in one dispatch: rotates the q and k
 * heads of x's row `s.row` (default 0) in place by state.position, and writes the rotated K and
 * the V that follows the rotated heads to row state.cache_len of the cache; x's other rows are left
 * as they are.
 * @param x (rows, stride) f32, rows > `s.row`: [q heads | k heads | v heads] from `offset`
 * @param k (maxTokens, kvHeads · head_dim) f32 key cache
 * @param v (maxTokens, kvHeads · head_dim) f32 value cache
 * @param state the decode state (kernels/state.ts)
 */
export function ropeKvWriteAt(
  gpu: Gpu,
  x: BufferArg,
  k: BufferArg,
  v: BufferArg,
  state: BufferArg,
  t: GpuRopeTable,
  s: RopeKvShape,
): Dispatch {
  const headDim = 2 * t.half, offset = s.offset ?? 0, row = s.row ?? 0;
  if (!Number.isInteger(row) || row < 0) {
    throw new InvalidInputError(`ropeKvWriteAt: row must be a non-negative integer, got ${row}`);
  }
  if (!(s.kvHeads >= 1 && s.kvHeads <= s.heads)) {
    throw new InvalidInputError(
      `ropeKvWriteAt: kvHeads ${s.kvHeads} must be in 1..heads ${s.heads}`,
    );
  }
  const width = s.kvHeads * headDim;
  if (offset + s.heads * headDim + width > s.stride) {
    throw new InvalidInputError(
      `ropeKvWriteAt: ${s.heads} rotated heads and ${s.kvHeads} V heads of head_dim ${headDim} from ` +
        `column ${offset} overrun the row stride ${s.stride}`,
    );
  }
  checkSize("x", x, (row + 1) * s.stride * 4);
  checkKvCaches(k, v, s.maxTokens, width, s.dtype);
  const sh = { heads: s.heads, stride: s.stride, offset, seq: 1 };
  return new Dispatch(
    gpu,
    ropeVariant(gpu, true, true, s.dtype),
    [x, t.table, t.axis, state, k, v],
    pack(t, sh, "ropeKvWriteAt", s),
    [ceilDiv(s.heads * t.half + width, WG)],
  );
}
