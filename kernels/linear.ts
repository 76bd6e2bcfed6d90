/**
 * Linear layers (kernels/linear.wgsl): y (m, n) f32 = x (m, k) f32 · wᵀ (+ bias) with w a
 * {@link Weight} (n, k) in f32 or f16, one dispatch per weight chunk. Reference: src/ref/linear.ts.
 *
 * Performance design (where to push for issue 5). Numbers: H100 80GB HBM3 through Deno 2.9.6's
 * WebGPU (Vulkan), f16 weights, measured with a bench of 28 distinct layers' weights (no L2 reuse),
 * one compute pass, timings t(2R) − t(R) to drop submit overheads; ± 15 % between machines.
 * - m = 1 (decode) is a GEMV, purely bandwidth-bound: 7B reads 14.1 GB of weights per token, so
 *   tokens/s ≈ bandwidth / 14.1 GB. A workgroup of gemvWg threads computes gemvRows outputs; all
 *   threads stride over k with 16-byte loads (PACK8: 8 halves as vec4<u32> + unpack2x16float;
 *   vec4<f16> = 8-byte loads is 15 % slower), each x vec4 is loaded once for the gemvRows rows,
 *   then subgroupAdd (fallback: shared-memory tree) reduces. The 169 GEMVs of a 7B decode step
 *   (28 × q,k,v,o,gate_up,down + lm_head; no attention/norm) take 5.07 ms = 2.79 TB/s (run 1) and
 *   6.08 ms = 2.33 TB/s (run 2, another machine): 70–83 % of the 3.35 TB/s peak. Run 1 against
 *   gemvRows 2: rows 4 6.48 ms, rows 8 7.60, rows 4 with vec4<f16> loads 7.52, rows 4 with
 *   gemvWg 128 7.14; run 2: rows 1 6.94. Per kind (run 2): gate_up / down ≈ 2.6 TB/s, lm_head
 *   2.0, o 1.5, k / v 0.4–0.5 (3.7 MB each: launch- and tail-bound — fusing q,k,v into one
 *   weight, or split-k for small n, is the next win). The decoder's gate_up (norm and silu · up
 *   fused) runs kernels/gemv.ts's resident-x GEMV instead, which reads x once per workgroup for
 *   ≈ 9 batches of rows rather than once per 2–4 rows (7B MLP 130 → 112 µs a layer, H200).
 * - m = 1 at small k (< 128 loads per row: only tiny / synthetic models) takes a second GEMV: a
 *   power-of-two number of threads per row adapted to k ({@link gemvThreadsPerRow}), many rows per
 *   workgroup, reduced by subgroupShuffleXor (or workgroup memory). The tiny model's lm_head
 *   (151936 × 32 f16) on lavapipe (2 shared cores, noisy): 365–543 ms → 5–9 ms per call (20 calls,
 *   one readback), as gemvTpr 256 (the gemvRows path) against the default.
 * - m > 1 (prefill, vision) is a shared-memory tiled GEMM, f32 FMA: 256 threads, a 64² (tile 4)
 *   or 128² (tile 8, PIPE) output tile, k steps of 16, 4×4 blocks per thread as named mat4x4
 *   accumulators (arrays indexed in loops spilled to local memory: 3× slower). The default at
 *   m ≥ 128 is the pipelined kernel (PIPE: double-buffered shared tiles, one barrier per k step,
 *   the next step's loads in flight), see {@link gemmKernel}. Its k loop is written out in the
 *   WGSL: naga wraps every `for` in a loop-bound counter the driver cannot see through, and the
 *   same kernel with a `for` over the 16 k of a step ran 1.4× slower (H200, 2026-11-28 10:09:
 *   17–21 → 24–30 TFLOP/s on vision and 7B prefill shapes; without global loads 21–25 → 34–42).
 *   Its loads keep the bits they read until the stores after the products (f16 w converted there,
 *   not on load, which made each warp wait out the load first): 1.1–1.25× more (12:21: 27–37
 *   TFLOP/s; without global loads 32–39); issued two k steps ahead, up to 6 % more (12:35).
 *   Private accumulators with mac() calls written out made TILE8 3× slower (tile8 keeps its
 *   `for`). Removed after one H100 run (2026-11-28 07:28) where none beat PIPE on any of 16
 *   vision / 7B shapes: a single-buffered k-step-32 kernel (25–36 % slower), 64-row tiles
 *   (70–80 % slower), 8 × 4-thread warps and loads after the products.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { isQuant, type Weight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  type BufferArg,
  bufferOf,
  ceilDiv,
  checkSize,
  Dispatch,
  type KernelVariant,
  variant,
} from "./_kernel.ts";
import { deviceScratch } from "../src/gpu/buffers.ts";
import { defineParams } from "./_params.ts";
import type { Defines } from "./_preprocess.ts";
import { checkKvCaches, kvDefines, type KvDType } from "./kv_cache.ts";
import { grid2d } from "./_grid.ts";
import { GEMV_PREP, GEMV_XQ, linearQ, linearQFewRows } from "./linear_q.ts";
import { rmsNorm } from "./norm.ts";
import { siluMul } from "./elementwise.ts";
import type { GpuRopeTable } from "./rope.ts";

const Params = defineParams({
  m: "u32",
  n: "u32",
  k: "u32",
  row_start: "u32",
  rows: "u32",
  eps: "f32", // RMSNorm epsilon (NORM only)
  // ROPE only (see RopeKvEpilogue): rotary index count, rotated rows, K/V cache row width, cache
  // rows, table positions.
  half: "u32",
  rot_rows: "u32",
  kvw: "u32",
  max_rows: "u32",
  npos: "u32",
  // Split-k (tiled PIPE path): k elements per split (a multiple of the k step), splits.
  kspan: "u32",
  splits: "u32",
});

/** Kernel shape knobs of {@link linear}; benchmarks override them, callers use the defaults. */
export interface LinearTuning {
  /** GEMV threads per workgroup: a power of two ≥ every subgroup size. */
  gemvWg: number;
  /** GEMV output rows per workgroup (each x element loaded once is used for all of them). */
  gemvRows: number;
  /** GEMV over f16 weights with k % 8 == 0 reads 16 bytes (8 halves) per load. */
  gemvPack8: boolean;
  /**
   * At 1 < m ≤ {@link GEMV_XROWS_MAX}, the row GEMV over all m rows of x at once
   * (kernels/linear.wgsl XROWS) rather than a tiled GEMM. Default true; false (benchmarks): the
   * tiled kernels.
   */
  gemvXRows?: boolean;
  /**
   * gemvRows path with pack8: units of x a loop step takes, the step written out with all its
   * loads first (kernels/linear.wgsl STEPS; the same sums in the same order, bit-equal on
   * lavapipe). Default 1: the plain loop; {@link gemvVariantTuning} sets 4 or 2 for decode.
   */
  gemvUnroll?: number;
  /**
   * GEMV threads per output row: a power of two ≤ gemvWg. Below gemvWg, the small-k path (gemvWg /
   * gemvTpr rows per workgroup); gemvWg itself is the gemvRows path. Default: from k, see
   * {@link gemvThreadsPerRow}.
   */
  gemvTpr?: number;
  /** Tiled path: each thread computes tile × tile outputs of a (16·tile)² output tile; 4 or 8.
   * Default: {@link gemmKernel} (the pipelined kernel, or tile 4 below m = 128 where it would not
   * split k); setting `tile` or `pipe` overrides that choice (`pipe: false` alone: tile 8 from
   * m = 128 on). */
  tile?: 4 | 8;
  /**
   * Tiled path: the pipelined kernel (PIPE: 128 × 128 output tiles, k steps of 16 through two
   * shared buffers, one barrier per step, the next step's loads in flight during this one's
   * products; register-transposed vec4 shared stores). Ignores `tile`.
   */
  pipe?: boolean;
  /**
   * Pipelined: 64 × 128 output tiles instead of 128 × 128 (kernels/linear.wgsl HALF). Default:
   * {@link gemmKernel} (at m ≤ 64).
   */
  half?: boolean;
  /**
   * Pipelined: split k over this many workgroups per output tile (partial products in a
   * per-device scratch, then a sum pass adds them with bias / y), for shapes with too few tiles
   * to fill the GPU. Default 1.
   */
  splitK?: number;
  /** Benchmarks only, WRONG results: the pipelined kernel without global loads after the first k
   * step (what the loads cost). */
  noLoad?: boolean;
}

/** Default {@link LinearTuning}. */
export const LINEAR_TUNING: Readonly<LinearTuning> = {
  gemvWg: 256,
  gemvRows: 2,
  gemvPack8: true,
};

/**
 * GEMV tuning of the fused variants, over {@link LINEAR_TUNING}: a fused norm reads x and the norm
 * weight (8 bytes per element against the weight's 2), silu · mul reads gate and up, so more rows
 * per workgroup share those reads. Per kind of the 7B decode step (bench/_gemv.ts sweep, NVIDIA
 * H200, 2026-11-28, 28 layers' distinct weights): gate_up + norm 2.37 ms at {64, 4} (default
 * {256, 2}: slower), lm_head + norm best at {64, 8} (then {64, 4}), down + silu 1.21 ms at
 * {256, 4}; the chain of all 113 fused GEMVs 5.14 ms at each kind's best against 7.22 ms at the
 * default (the plain o_proj keeps the default; qkv + norm + rope needs 2 rows).
 * The loop written out (gemvUnroll, 17:16, `bench/_gemv.ts --unroll 2,4`): qkv + norm 0.661 →
 * 0.438 ms with 4 units a step, gate_up 2.48 → 2.30, o 0.431 → 0.384 with 2; down + silu slower
 * (1.21 → 1.31–1.41), lm_head the same. In the model (17:19, interleaved): 7B f16 185.4 / 186.0 →
 * 189.2 / 192.1 tok/s, 2B f16 436.0 → 478.2.
 */
export function gemvVariantTuning(norm: boolean, silu: boolean): Partial<LinearTuning> {
  if (norm) return { gemvWg: 64, gemvRows: 4, gemvUnroll: 4 };
  if (silu) return { gemvWg: 256, gemvRows: 4 };
  return { gemvUnroll: 2 };
}

/** linear()'s kernel choices that benchmarks switch off to compare (bench/main.ts --no-xrows). */
export const LINEAR_CHOICE = {
  /** At 1 < m ≤ {@link GEMV_XROWS_MAX}, the row GEMV over all rows of x (else the tiled kernels). */
  xrows: true,
  /**
   * At 1 < m ≤ {@link GEMV_XROWS_MAX}, {@link normLinear} fuses the norm into the few-row GEMV
   * ({@link fusesXTransform}); false: a separate rmsNorm pass first (the path before the
   * fusion). Over q4 it rides in the prepared-x pass: QVQ-72B q4, two generations decoding as one
   * batch, 76.0 tok/s together with --no-xrows-norm, 87.8 fused (H200, 2026-11-30, runs ending
   * 18:17 and 18:15 UTC, bench/main.ts --parallel 2; the q4 tuning of 4b15038 came after).
   */
  xrowsNorm: true,
  /**
   * The same for {@link siluMulLinear}'s silu · mul (q4: computed once, in the prepared-x pass;
   * QVQ-72B q4 at 2 rows 86.7 with --no-xrows-silu, 87.8 fused: within run-to-run noise).
   */
  xrowsSiluMul: true,
};

/**
 * The most rows of x a row GEMV takes at once (kernels/linear.wgsl XROWS); from m = 2 to this, an
 * f16 / f32 linear without a tuning override runs it instead of a tiled GEMM. One 7B layer's four
 * products (qkv, o, gate_up, down; f16; ms; bench/_gemm.ts --shapes 7b --ms 2,4,8,12,16
 * --only-ms, H200, 2026-11-30 14:50 UTC), the tiled kernel as gemmKernel() picks it → this one at
 * {@link gemvXRowsTuning}'s: m = 2 1.195 → 0.150, 4 1.226 → 0.205, 8 1.223 → 0.288, 12 1.236 →
 * 0.529, 16 1.228 → 0.765 (the m = 1 GEMV: 0.135). Past 16 rows the tiled kernel's time stays
 * while this one's grows with m.
 */
export const GEMV_XROWS_MAX = 16;

/**
 * The row GEMV's tuning over m rows of x (XROWS), from the H200 sweep of {@link GEMV_XROWS_MAX}:
 * fewer threads a workgroup than at m = 1 (each holds rows · m accumulators and 2 · m vec4 of x a
 * unit), 2 units a step written out (the plain loop indexes arrays of x and spills: 2.6–9.8× slower
 * at 8–16 rows). Per layer at 2 / 4 / 8 / 12 / 16 rows, ms: {64, 2 rows} 0.150 / 0.205 / 0.438 /
 * 0.592 / 0.820; {32, 4 rows} – / 0.276 / 0.288 / – / –; {64, 4 rows} 0.167 / 0.219 / 0.367 / 0.529 /
 * 0.765; {128, 4 rows} 0.159 / 0.222 / 0.439 / 0.711 / 1.149; {256, 2 rows} (the m = 1 default)
 * 0.182 / 0.294 / 0.592 / – / 2.060.
 */
export function gemvXRowsTuning(m: number): Partial<LinearTuning> {
  if (!LINEAR_CHOICE.xrows) return { gemvXRows: false };
  const bucket = xrowsBucket(m);
  if (bucket <= 4) return { gemvWg: 64, gemvRows: 2, gemvUnroll: 2 };
  if (bucket <= 8) return { gemvWg: 32, gemvRows: 4, gemvUnroll: 2 };
  return { gemvWg: 64, gemvRows: 4, gemvUnroll: 2 };
}

/**
 * The rows of x the row GEMV computes for m (kernels/linear.wgsl XR): the power of two ≥ m, from
 * 2 to {@link GEMV_XROWS_MAX} — one set of pipelines a bucket, not a row count. Compiling a row
 * count's four 7B products took the H200 155 ms at 2 rows, 331 at 5, 504 at 8, 818 at 12 and 1069
 * at 16, at first use (2026-11-30 16:12 UTC, .devq probe: linear() built per m, then again): every
 * row count a server's short prompts came in would have paid that once; four buckets are what
 * the server's warm-up compiles (src/server/_warmup.ts). Rows past m cost their products: the
 * bucket's time in the table above (3 rows as 4, 9 as 16).
 */
export function xrowsBucket(m: number): number {
  return Math.min(GEMV_XROWS_MAX, Math.max(2, 2 ** Math.ceil(Math.log2(m))));
}

/** Below this many loads per weight row, an m = 1 linear takes the small-k GEMV path. */
export const GEMV_SMALL_K_LOADS = 128;

/**
 * Default GEMV threads per output row for `loads` vector loads per weight row (k / 8 with 16-byte
 * f16 loads, k / 4 with vec4 loads, else k): `wg` (all threads of a workgroup on gemvRows rows) at
 * {@link GEMV_SMALL_K_LOADS} or more — every real model width (1536, 3584, 8192, …). Below, the
 * power of two ≤ loads / 4 (about 4 loads per thread, at least 1), so a workgroup computes many
 * short rows instead of leaving most of its threads idle (the tiny model's lm_head, 151936 × 32:
 * 248 of 256 threads idle on the gemvRows path), at most `subgroupMin` (given when subgroups
 * reduce the row groups): past it the reduction goes through workgroup memory and barriers, 3–5×
 * slower on lavapipe (subgroup size 8) at k = 127 / 500 than 8 threads per row.
 */
export function gemvThreadsPerRow(loads: number, wg: number, subgroupMin = Infinity): number {
  if (loads >= GEMV_SMALL_K_LOADS) return wg;
  const tpr = 2 ** Math.floor(Math.log2(Math.max(1, Math.ceil(loads / 4))));
  return Math.min(wg, subgroupMin, tpr);
}

/** Shape and options of a linear call. */
export interface LinearShape {
  /** Rows of x and y. */
  m: number;
  /** Add the result to y's current contents (a fused residual add): y += x · wᵀ (+ bias). */
  accumulate?: boolean;
  /**
   * Apply an activation to x · wᵀ (+ bias) before storing it: "quick_gelu" (v · sigmoid(1.702 v),
   * the vision MLP's, fused into fc1's epilogue). f16 / f32 weights, or a q8 / q4 weight at m > 1
   * with `int8x` (kernels/gemm.wgsl's epilogue); not with accumulate, norm, siluMul or ropeKv.
   */
  activation?: "quick_gelu";
  /**
   * A q8 / q4 weight at m > 1 runs kernels/gemm.ts's int8 GEMM (x quantized to int8 per row and
   * 32-group, dot4I8Packed) whatever linear_q.ts PREFILL_INT8 says for its dtype — the caller
   * accepts int8 activations' error (x rounds to 1/254 of its group's max |x|): the vision tower
   * of LoadOptions.visionQuant. Where x would not fit gemmQ's scratch binding, gemmQ throws. Only
   * for quantized weights; at m = 1 it changes nothing (the GEMV runs as it would).
   */
  int8x?: boolean;
  /**
   * RMS-normalise x on load (a fused Qwen2RMSNorm): y = rmsNorm(x) · w · wᵀ (+ bias) (+ y), with
   * `weight` (k) f32 and `eps` as in kernels/norm.ts. Only for m = 1 (decode) and a few rows of x
   * on the few-row GEMV ({@link fusesXTransform}); elsewhere the caller runs {@link rmsNorm} first
   * — see {@link normLinear}.
   */
  norm?: { weight: BufferArg; eps: number };
  /**
   * x is (m, 2k) f32 rows [gate | up] and the linear reads silu(gate) · up (a fused
   * {@link siluMul}). Only for m = 1 and a few rows of x on the few-row GEMV
   * ({@link fusesXTransform}), not with `norm` — see {@link siluMulLinear}.
   */
  siluMul?: boolean;
  /**
   * The decode step's q/k/v projection ends with rope at state.position and the KV-cache write at
   * row state.cache_len (kernels/rope.ts ropeKvWriteAt fused in). Only for m = 1, a weight in one
   * chunk (any dtype), no accumulate / siluMul — see {@link canFuseRopeKv}.
   */
  ropeKv?: RopeKvEpilogue;
  /**
   * Also write y (after `accumulate`: the updated residual stream) as the next GEMV's prepared x
   * (kernels/linear_q.wgsl EMIT): normed by `weight` (the next RMSNorm's, n f32; 1 / rms is left to
   * the consumer) — or with `siluMul`, y being [gate | up], silu(gate) · up (n / 2 elements) — and
   * quantized into int8 blocks in `out` (kernels/linear_q.ts preparedXBytes), so that GEMV, given
   * `prepared: out`, runs no PREPX pass. Only for m = 1, a q8 / q4 weight in one chunk with
   * rows % 32 == 0 (siluMul: % 64), no ropeKv — see {@link canEmitX}.
   */
  emit?: { out: BufferArg; weight?: BufferArg; siluMul?: boolean };
  /**
   * x was already prepared for this GEMV into this buffer (an `emit` of the GEMV that produced x,
   * with this call's norm weight if it has a norm): the GEMV reads it instead of x and runs no
   * PREPX pass. Only for m = 1 and weights whose GEMV takes int8 x — see {@link takesPreparedX}.
   */
  prepared?: BufferArg;
}

/**
 * The epilogue of a fused q/k/v decode projection: its rows are `heads` rotated heads (q heads,
 * then k heads) and then `kvHeads` v heads, all of the table's head_dim (2 · table.half).
 */
export interface RopeKvEpilogue {
  table: GpuRopeTable;
  /** Decode state (kernels/state.wgsl): position to rotate by, cache row to write. */
  state: BufferArg;
  /** (maxTokens, kvHeads · headDim) K and V cache of `dtype`. */
  k: BufferArg;
  v: BufferArg;
  /** Rotated heads: q heads + k heads. */
  heads: number;
  kvHeads: number;
  maxTokens: number;
  /** The cache's element type (default f32). */
  dtype?: KvDType;
}

/**
 * The defines of a GEMV with the ROPE epilogue (kernels/_rope_kv.wgsl) `rk`, whose bindings
 * follow output binding `yb`: table, state, K cache, V cache.
 */
export function ropeKvDefines(rk: RopeKvEpilogue | undefined, yb: number): Defines {
  return rk
    ? {
      ROPE: true,
      TABLE_BINDING: yb + 1,
      STATE_BINDING: yb + 2,
      KC_BINDING: yb + 3,
      VC_BINDING: yb + 4,
      ...kvDefines(rk.dtype),
    }
    : {};
}

/**
 * Checks that `w`'s rows are rk's rotated (q, k) heads then its v heads, of the table's head_dim,
 * and that the K and V caches hold rk.maxTokens rows of them; `what` names the caller.
 */
export function checkRopeKv(what: string, w: Weight, rk: RopeKvEpilogue): void {
  const hd = 2 * rk.table.half;
  if (w.rows !== (rk.heads + rk.kvHeads) * hd || rk.kvHeads > rk.heads) {
    throw new InvalidInputError(
      `${what}: ${w.rows} weight rows are not ${rk.heads} rotated + ${rk.kvHeads} v heads of ` +
        `head_dim ${hd}`,
    );
  }
  checkKvCaches(rk.k, rk.v, rk.maxTokens, rk.kvHeads * hd, rk.dtype);
}

/**
 * The params fields of kernels/_rope_kv.wgsl for epilogue `rk` (all 0 without one): rotary index
 * count, rotated rows, K/V cache row width, cache rows, table positions.
 */
export function ropeKvParams(rk: RopeKvEpilogue | undefined) {
  return {
    half: rk?.table.half ?? 0,
    rot_rows: rk ? rk.heads * 2 * rk.table.half : 0,
    kvw: rk ? rk.kvHeads * 2 * rk.table.half : 0,
    max_rows: rk?.maxTokens ?? 0,
    npos: rk?.table.npos ?? 0,
  };
}

/**
 * Whether {@link linear} can fuse `ropeKv` for weight `w` (else: linear, then ropeKvWriteAt): m = 1
 * and one chunk, float weights (kernels/linear.wgsl ROPE) or q8 / q4 (kernels/linear_q.wgsl ROPE).
 */
export function canFuseRopeKv(w: Weight, m: number): boolean {
  return m === 1 && w.chunks.length === 1;
}

/**
 * Whether a GEMV over `w` can `emit` its output as prepared x (kernels/linear_q.wgsl EMIT): m = 1,
 * a q8 / q4 weight in one chunk, whole 32-row blocks (with `siluMul`, of gate and of up rows).
 */
export function canEmitX(w: Weight, m: number, siluMul = false): boolean {
  return m === 1 && isQuant(w.dtype) && w.chunks.length === 1 &&
    w.rows % (siluMul ? 64 : 32) === 0;
}

/**
 * Whether the default GEMV over `w` reads x as int8 blocks, so it can take `prepared` x (m = 1):
 * q4 (kernels/linear_q.ts GEMV_XQ / GEMV_PREP).
 */
export function takesPreparedX(w: Weight, m: number): boolean {
  return m === 1 && isQuant(w.dtype) && GEMV_XQ[w.dtype] && GEMV_PREP[w.dtype];
}

/**
 * The checks every linear call shares, float or quantized ({@link linear}, linear_q.ts's
 * `linearQ`): m, the fused norm / siluMul (decode only, not both), buffer sizes, no aliasing.
 * @param what the caller's name, for the messages
 */
export function checkLinearCall(
  what: string,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: LinearShape,
): void {
  const { m, norm } = s;
  const silu = s.siluMul === true;
  if (!Number.isInteger(m) || m < 1) {
    throw new InvalidInputError(`${what}: m must be a positive integer, got ${m}`);
  }
  if (norm && m > GEMV_XROWS_MAX) {
    throw new InvalidInputError(
      `${what}: a fused norm needs m = 1 or the few-row GEMV (m ≤ ${GEMV_XROWS_MAX}), got m = ` +
        `${m}, ${w.dtype}; use normLinear(), which runs a separate rmsNorm there`,
    );
  }
  if (silu && (m > GEMV_XROWS_MAX || norm)) {
    throw new InvalidInputError(
      `${what}: a fused siluMul needs m = 1 or the few-row GEMV (m ≤ ${GEMV_XROWS_MAX}) and no ` +
        `norm, got m = ${m}, ${w.dtype}${norm ? ", norm" : ""}; use siluMulLinear(), which runs ` +
        "a separate siluMul there",
    );
  }
  checkSize("x", x, m * w.cols * (silu ? 2 : 1) * 4);
  checkSize("y", y, m * w.rows * 4);
  if (bias) checkSize("bias", bias, w.rows * 4);
  if (norm) checkSize("norm weight", norm.weight, w.cols * 4);
  if (bufferOf(y) === bufferOf(x)) throw new InvalidInputError(`${what}: y must not alias x`);
}

/**
 * y = x · wᵀ (+ bias) (+ y when `s.accumulate`): one Dispatch per weight chunk.
 * @param y (m, w.rows) f32; must not alias x
 * @param x (m, w.cols) f32
 * @param w (w.rows, w.cols) f32 or f16
 * @param bias (w.rows) f32, or null
 * @param tuning overrides of {@link LINEAR_TUNING} (benchmarks)
 * @example
 * ```ts ignore
 * const ds = linear(gpu, y, x, qProj, qBias, { m: 1 });
 * run(gpu, ds);
 * ```
 */
export function linear(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: LinearShape,
  tuning: Partial<LinearTuning> = {},
): Dispatch[] {
  const { m, norm } = s;
  const silu = s.siluMul === true;
  const rk = s.ropeKv;
  if (rk) {
    if (!canFuseRopeKv(w, m) || s.accumulate || silu) {
      throw new InvalidInputError(
        `linear: a fused rope + KV write needs m = 1, a weight in one chunk and no ` +
          `accumulate / siluMul, got m = ${m}, ${w.dtype} in ${w.chunks.length} chunks; ` +
          "check canFuseRopeKv() and run ropeKvWriteAt() after the linear otherwise",
      );
    }
    checkRopeKv("linear", w, rk);
  }
  if (s.int8x && !isQuant(w.dtype)) {
    throw new InvalidInputError(`linear: int8x needs a q8 / q4 weight, got ${w.dtype}`);
  }
  const int8Gemm = s.int8x === true && m > 1;
  if (
    s.activation && ((isQuant(w.dtype) && !int8Gemm) || s.accumulate || norm || silu || rk)
  ) {
    throw new InvalidInputError(
      `linear: activation "${s.activation}" needs an f16 / f32 weight (or a q8 / q4 one with ` +
        `int8x at m > 1) and no accumulate / norm / siluMul / ropeKv, got ${w.dtype} at m = ${m}` +
        `${s.accumulate ? " with accumulate" : ""}` +
        `${norm ? " with norm" : ""}${silu ? " with siluMul" : ""}${rk ? " with ropeKv" : ""}`,
    );
  }
  if (isQuant(w.dtype)) {
    // q8/q4: kernels/linear_q.ts (a caller's gemvXRows: false keeps m > 1 off its few-row GEMV)
    return linearQ(gpu, y, x, w, bias, s, tuning.gemvXRows === false ? { gemvXRows: false } : {});
  }
  if (s.emit || s.prepared) {
    throw new InvalidInputError(
      `linear: emit / prepared x need a q8 / q4 weight, got ${w.dtype} (check canEmitX() / ` +
        "takesPreparedX())",
    );
  }
  checkLinearCall("linear", y, x, w, bias, s);
  const few = m > 1 && m <= GEMV_XROWS_MAX;
  const t = {
    ...LINEAR_TUNING,
    ...(few ? gemvXRowsTuning(m) : gemvVariantTuning(norm !== undefined, silu)),
    ...tuning,
  };
  const tile = t.tile ?? (m >= 128 ? 8 : 4);
  if (
    !(t.gemvWg >= 4 && t.gemvWg <= gpu.limits.maxComputeInvocationsPerWorkgroup &&
      (t.gemvWg & (t.gemvWg - 1)) === 0) ||
    !(Number.isInteger(t.gemvRows) && t.gemvRows >= 1) ||
    (t.gemvTpr !== undefined &&
      !(t.gemvTpr >= 1 && t.gemvTpr <= t.gemvWg && (t.gemvTpr & (t.gemvTpr - 1)) === 0)) ||
    (t.tile !== undefined && t.tile !== 4 && t.tile !== 8) ||
    (t.splitK !== undefined && !(Number.isInteger(t.splitK) && t.splitK >= 1)) ||
    (t.gemvUnroll !== undefined && !(Number.isInteger(t.gemvUnroll) && t.gemvUnroll >= 1))
  ) {
    throw new InvalidInputError(`linear: bad tuning ${JSON.stringify(t)}`);
  }
  // A few rows of x (1 < m ≤ GEMV_XROWS_MAX): the row GEMV over all of them at once, where its
  // partial sums fit the workgroup's memory (GEMV below covers both).
  const xrows = few && t.gemvXRows !== false && t.pipe === undefined && t.tile === undefined &&
    xrowsFit(gpu, xrowsBucket(m), t.gemvRows, t.gemvWg);
  // The float kernels fuse a norm / silu · mul at m = 1 only (a fused one in the float few-row
  // GEMV ran slower than the separate passes on the H200, and was removed).
  if (m > 1 && (norm || silu)) {
    throw new InvalidInputError(
      `linear: a fused ${norm ? "norm" : "siluMul"} at m = ${m} over ${w.dtype} weights is not ` +
        `run (check fusesXTransform()); use ${norm ? "normLinear()" : "siluMulLinear()"}, which ` +
        "runs a separate pass there",
    );
  }
  const gemv = m === 1 || xrows;
  // Without a kernel override (tile / pipe), m ≥ 128 picks tile 8 or PIPE (and its split-k) by
  // shape.
  if (!gemv && t.pipe === undefined && t.tile === undefined) {
    const pick = gemmKernel(m, Math.max(...w.chunks.map((c) => c.rows)), w.cols);
    if (pick.kernel === "pipe") {
      return pipeLinear(gpu, y, x, w, bias, s, {
        ...t,
        splitK: t.splitK ?? pick.splitK,
        half: t.half ?? pick.half,
      });
    }
  }
  if (!gemv && t.pipe) return pipeLinear(gpu, y, x, w, bias, s, t);
  const pack8 = gemv && t.gemvPack8 && w.dtype === "f16" && w.cols % 8 === 0;
  const loads = w.cols / (pack8 ? 8 : w.cols % 4 === 0 ? 4 : 1); // per weight row
  // The small-k path shuffles within TPR lanes of one subgroup: it needs the minimum size.
  const sgMin = gpu.features.subgroups ? gpu.adapterInfo.subgroupMinSize : undefined;
  // The rope epilogue pairs rows inside a workgroup: the gemvRows path with 2 rows, at any k.
  const tpr = gemv
    ? (rk || xrows ? t.gemvWg : t.gemvTpr ?? gemvThreadsPerRow(loads, t.gemvWg, sgMin))
    : 0;
  const smallK = gemv && tpr < t.gemvWg;
  // The gemvRows path sums whole subgroups: each must divide gemvWg.
  const subgroups = gemv && gpu.features.subgroups &&
    (smallK
      ? tpr > 1 && tpr <= (sgMin ?? 0)
      : (gpu.adapterInfo.subgroupMaxSize ?? Infinity) <= t.gemvWg);
  const rowsPerGroup = smallK ? t.gemvWg / tpr : rk ? 2 : t.gemvRows;
  const steps = gemv && !smallK && pack8 && (t.gemvUnroll ?? 1) > 1;
  // Bindings: x, w, [bias], [norm weight], y, [rope table, state, k cache, v cache].
  const inputs = [x, ...(bias ? [bias] : []), ...(norm ? [norm.weight] : [])];
  const rope = rk ? [rk.table.table, rk.state, rk.k, rk.v] : [];
  const yb = inputs.length + 1;
  const v = variant(gpu, {
    family: "linear",
    entry: "main",
    bindings: [
      ...inputs.map(() => "read" as const),
      "read",
      "read_write",
      ...(rk ? ["read", "read", "read_write", "read_write"] as const : []),
    ],
    params: Params,
    defines: {
      ...ropeKvDefines(rk, yb),
      NORM: norm !== undefined,
      SILU: silu,
      ...(norm ? { NW_BINDING: inputs.length } : {}),
      Y_BINDING: yb,
      F16: w.dtype === "f16" && !pack8,
      PACK8: pack8,
      VEC: w.cols % 4 === 0,
      BIAS: bias !== null,
      QGELU: s.activation === "quick_gelu",
      ACC: s.accumulate === true,
      GEMV: gemv,
      XROWS: xrows,
      ...(xrows ? { XR: xrowsBucket(m) } : {}),
      SUBGROUPS: subgroups,
      ...(!gemv ? { TILE8: tile === 8 } : smallK ? { WG: t.gemvWg, TPR: tpr } : {
        WG: t.gemvWg,
        ROWS: rowsPerGroup,
        ...(steps ? { STEPS: true, UNROLL: t.gemvUnroll! } : {}),
      }),
    },
    code: steps
      ? {
        GEMV_STEPS: gemvSteps(
          rowsPerGroup,
          t.gemvUnroll!,
          t.gemvWg,
          rk !== undefined,
          xrows ? xrowsBucket(m) : 1,
        ),
      }
      : {},
  });
  return w.chunks.map((c) => {
    const params = Params.pack({
      m,
      n: w.rows,
      k: w.cols,
      row_start: c.rowStart,
      rows: c.rows,
      eps: norm?.eps ?? 0,
      ...ropeKvParams(rk),
      kspan: 0,
      splits: 0,
    });
    const grid = gemv
      ? grid2d(ceilDiv(c.rows, rowsPerGroup))
      : [ceilDiv(c.rows, 16 * tile), ceilDiv(m, 16 * tile)] as const;
    const buffers = [x, c.buffer, ...inputs.slice(1), y, ...rope];
    return new Dispatch(gpu, v, buffers, params, grid);
  });
}

/**
 * Whether the row GEMV over m rows of x (kernels/linear.wgsl XROWS) fits: one thread per output of
 * a workgroup (rows · m ≤ wg) to sum it, and the partials of its outputs in workgroup memory — a
 * partial per subgroup of 4 lanes or more where it sums subgroups (as {@link linear} decides:
 * every subgroup size the adapter may use divides wg), else per thread.
 */
function xrowsFit(gpu: Gpu, m: number, rows: number, wg: number): boolean {
  const outs = rows * m;
  const bySubgroup = gpu.features.subgroups &&
    (gpu.adapterInfo.subgroupMaxSize ?? Infinity) <= wg;
  const partials = outs * (bySubgroup ? wg / 4 : wg) * 4;
  return outs <= wg && partials <= gpu.limits.maxComputeWorkgroupStorageSize;
}

/**
 * Whether {@link linear} over `w` at m rows fuses a `norm` (else a `siluMul`) into its product
 * (kernels/linear.wgsl / linear_q.wgsl NORM, SILU), as {@link normLinear} and
 * {@link siluMulLinear} ask before passing it: at m = 1 always; at 1 < m ≤ GEMV_XROWS_MAX where
 * linear_q.ts's few-row GEMV runs over a q8 / q4 weight (its x rows normed / silu'd as it reads
 * them); elsewhere (f16 / f32 weights — there a fused transform ran slower than its own pass on
 * the H200 —, longer m, the switches off — xrows, xrowsNorm, xrowsSiluMul — a device it does
 * not fit) not.
 */
export function fusesXTransform(gpu: Gpu, w: Weight, m: number, norm: boolean): boolean {
  if (m === 1) return true;
  if (!(m > 1 && m <= GEMV_XROWS_MAX && LINEAR_CHOICE.xrows)) return false;
  if (!(norm ? LINEAR_CHOICE.xrowsNorm : LINEAR_CHOICE.xrowsSiluMul)) return false;
  return isQuant(w.dtype) && linearQFewRows(gpu, w, m, norm) === "xrows";
}

/**
 * The gemvRows path's loop written out (kernels/linear.wgsl STEPS, pack8): `rows` named
 * accumulators (× `xrows` rows of x, XROWS), `unroll` units of x a step (unit j + u · wg, clamped
 * to the row and masked past it), every x and weight load of a step before its products, then the
 * sums into `acc` (slot r · xrows + i). Accumulator (r, i) adds its products in the order the
 * one-row loop adds row r's; one row of x is read through kernels/linear.wgsl's xm() (its fused
 * norm or silu · mul), several through xr().
 */
function gemvSteps(rows: number, unroll: number, wg: number, rope: boolean, xrows = 1): string {
  const R = Array.from({ length: rows }, (_, r) => r);
  const U = Array.from({ length: unroll }, (_, u) => u);
  const I = Array.from({ length: xrows }, (_, i) => i);
  const RI = R.flatMap((r) => I.map((i) => [r, i] as const));
  const half = (q: string, a: string, b: string) =>
    `vec4<f32>(unpack2x16float(${q}.${a}), unpack2x16float(${q}.${b}))`;
  const x = (i: number, idx: string, ok: string) =>
    xrows === 1 ? `xm(${idx}, ${ok})` : `xr(${i}u, ${idx}, ${ok})`;
  return [
    ...RI.map(([r, i]) => `var a${r}_${i} = 0.0;`),
    ...R.map((r) =>
      `let wr${r} = ${rope ? `rope_row(g, ${r}u)` : `min(r0 + ${r}u, p.rows - 1u)`} * kv;`
    ),
    `for (var j = lid; j < kv; j += ${unroll * wg}u) {`,
    ...U.map((u) =>
      `  let ok${u} = j + ${u * wg}u < kv; let c${u} = min(j + ${u * wg}u, kv - 1u);`
    ),
    ...U.flatMap((u) =>
      I.map((i) =>
        `  let xa${u}_${i} = ${x(i, `2u * c${u}`, `ok${u}`)}; ` +
        `let xb${u}_${i} = ${x(i, `2u * c${u} + 1u`, `ok${u}`)};`
      )
    ),
    ...U.flatMap((u) => R.map((r) => `  let q${u}_${r} = w[wr${r} + c${u}];`)),
    ...U.flatMap((u) =>
      RI.map(([r, i]) =>
        `  a${r}_${i} += select(0.0, dot(${half(`q${u}_${r}`, "x", "y")}, xa${u}_${i}) + ` +
        `dot(${half(`q${u}_${r}`, "z", "w")}, xb${u}_${i}), ok${u});`
      )
    ),
    "}",
    ...RI.map(([r, i]) => `acc[${r * xrows + i}] = a${r}_${i};`),
  ].join("\n  ");
}

/**
 * Streaming multiprocessors the default tiled-kernel choice ({@link gemmKernel}) assumes: the
 * H100's and H200's 132 (WebGPU does not report it; on other GPUs the choice is a guess).
 */
export const GEMM_SMS = 132;

/** A tiled kernel choice of {@link gemmKernel}. */
export interface GemmChoice {
  kernel: "tile4" | "pipe";
  /** PIPE: k split over this many workgroups per output tile (then a sum pass). */
  splitK: number;
  /** PIPE: 64 × 128 tiles (HALF, at m ≤ 64) rather than 128 × 128. */
  half?: boolean;
}

/**
 * The tiled kernel {@link linear} runs for m > 1 without a tuning override: "pipe" (the
 * double-buffered pipelined kernel, 128 × 128 output tiles; 64 × 128 at m ≤ 64), its k split over
 * s of {@link GEMM_SPLITS} workgroups per tile (at k ≥ 1024, partials within
 * {@link GEMM_SPLIT_MAX_BYTES}) where {@link gemmTime} is least; at 64 < m < 128 "tile4" (64 × 64
 * tiles) where PIPE would not split.
 * The 64-row tile (HALF) at m ≤ 64 (H200, 2026-11-28 23:27, bench/_gemm.ts, 7B f16 at 40 rows, ms
 * 128-row tiles as chosen before → 64-row as chosen now): qkv 0.137 → 0.107, o 0.116 → 0.088,
 * gate_up 0.957 → 0.714, down 0.528 → 0.390; the same at 16 and 64 rows within 10 %. It has half
 * the products a shared load of the full tile (LDS-bound, so 1.3×, not the 2× of its rows).
 * PIPE beats TILE8 on every shape measured on the H200 (bench/_gemm.ts, 2026-11-28 10:09, f16, ms
 * PIPE / TILE8, before its raw loads made it 1.1–1.25× faster still): 7B at 478 rows o 0.50 /
 * 1.01, gate_up 4.46 / 6.45, down 2.58 / 5.40; vision at 1564 patches qkv 0.53 / 1.03, fc1 0.71 /
 * 1.05, fc2 0.70 / 1.49, at 5120 qkv 1.71 / 2.43, fc1 2.22 / 3.31, fc2 2.81 / 3.71. TILE8 (two
 * workgroups per SM, 264 slots) is no longer chosen.
 * The split counts the time model picks, H200 12:21 (raw loads, ms by split count): 7B at 478
 * rows qkv (144 tiles) 1: 0.79, 2: 0.63–0.64, 3: 0.59, 5: 0.56, 7: 0.59; down (112 tiles) 1:
 * 2.21–2.38, 2: 2.18, 3: 2.19, 7: 2.04; o 1: 0.43–0.44, 3: 0.47, 7: 0.45; vision at 5120 patches
 * fc2 (400 tiles) 1: 2.23–2.26, 2: 2.06, 3: 2.00; proj 1: 0.59–0.61, 2: 0.61, 3: 0.63. Below 128
 * rows (11:02 / 11:15, before raw loads; ms tile4 / PIPE split in two / in four at 64 / 100 rows):
 * 7B o 0.48 / 0.24 / 0.14, down 2.62 / 1.31 / 0.69, vision fc2 0.69 / 0.36 / 0.19, gate_up 1.14
 * / 1.25 / 1.16 at 64 rows.
 * @param rows output columns of the largest weight chunk
 * @param k the reduction length (weight columns)
 */
export function gemmKernel(m: number, rows: number, k: number): GemmChoice {
  const half = m <= 64;
  // k steps of 16 (PIPE's kspan: whole steps per split).
  const splitK = k < 1024
    ? 1
    : bestSplit(pipeTiles(m, rows, half), ceilDiv(k, 16), 1.75, m * rows * 4);
  if (half) return { kernel: "pipe", splitK, half };
  if (m < 128 && splitK === 1) return { kernel: "tile4", splitK: 1 };
  return { kernel: "pipe", splitK };
}

/** The k splits {@link gemmKernel} may choose for PIPE. */
export const GEMM_SPLITS: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 8];

/**
 * Split-k partials {@link gemmKernel} allows (splits · m · rows f32): 80 MiB, the scratch
 * src/model/weights.ts estimateMemory() budgets for a 7B prefill chunk (gate_up at 256 rows split
 * in two, 77.6 MB; src/model/weights_test.ts checks that number). 37 MiB (the cap before) kept
 * 7B down at 478 rows unsplit and vision fc2 at 5120 patches unsplit; at 80 MiB they split in 7
 * (48 MB; H200 12:57: 1.73 ms against 2.13) and in 3 (79 MB; 2.04 against 2.30).
 */
export const GEMM_SPLIT_MAX_BYTES = 80 * 2 ** 20;

/** k elements per split of PIPE split s ways: whole k steps of 16. */
function pipeKSpan(k: number, s: number): number {
  return ceilDiv(ceilDiv(k, s), 16) * 16;
}

/**
 * PIPE's modelled time (µs) for an (m, k) · (rows, k)ᵀ product split s ways, fitted to the H200
 * runs in {@link gemmKernel}: one workgroup per SM ({@link GEMM_SMS} a wave), each wave as long as
 * a workgroup's k steps plus a fixed 10 (first load, stores, the wave's ramp), 1.75 µs a step;
 * with s > 1 a sum pass, 5 µs plus the partials written and read at 3.5 TB/s.
 */
export function gemmTime(m: number, rows: number, k: number, s: number, half = false): number {
  return splitTime(pipeTiles(m, rows, half), k / 16, 1.75, s, m * rows * 4);
}

/** PIPE's output tiles for (m, rows): 128 × 128, or 64 × 128 with `half`. */
function pipeTiles(m: number, rows: number, half: boolean): number {
  return ceilDiv(m, half ? 64 : 128) * ceilDiv(rows, 128);
}

/**
 * A tiled GEMM's modelled time (µs) with its k split s ways (the form of {@link gemmTime}, which
 * kernels/gemm.ts's split choice shares): `tiles` output tiles of `steps` k steps each, one
 * workgroup per SM ({@link GEMM_SMS} a wave), each wave as long as a workgroup's steps plus a
 * fixed 10 at `stepUs` a step; with s > 1 a sum pass, 5 µs plus s partials of `outBytes` each
 * written and read at 3.5 TB/s.
 */
export function splitTime(
  tiles: number,
  steps: number,
  stepUs: number,
  s: number,
  outBytes: number,
): number {
  const gemm = stepUs * ceilDiv(s * tiles, GEMM_SMS) * (Math.ceil(steps / s) + 10);
  return s > 1 ? gemm + 5 + 2 * s * outBytes / 3.5e6 : gemm;
}

/**
 * The split of {@link GEMM_SPLITS} that {@link splitTime} models fastest for `tiles` output tiles
 * of `steps` whole k steps (outputs of `outBytes`): splits whose partials exceed
 * {@link GEMM_SPLIT_MAX_BYTES}, or that whole steps would make fewer in fact, are skipped.
 */
export function bestSplit(tiles: number, steps: number, stepUs: number, outBytes: number): number {
  let splitK = 1, best = splitTime(tiles, steps, stepUs, 1, outBytes);
  for (const s of GEMM_SPLITS) {
    if (s === 1 || s * outBytes > GEMM_SPLIT_MAX_BYTES) continue;
    if (ceilDiv(steps, ceilDiv(steps, s)) !== s) continue; // fewer splits in fact
    const t = splitTime(tiles, steps, stepUs, s, outBytes);
    if (t < best) [splitK, best] = [s, t];
  }
  return splitK;
}

/**
 * Split-k partial products (splits, m, rows) f32: one scratch per device, grown when too small,
 * shared by linear()'s and kernels/gemm.ts's split GEMMs (each call's dispatches run in order).
 */
export const splitPartials = deviceScratch("linear.partials");

/**
 * One weight chunk's tiled GEMM dispatch: binding `inputs`, then (unsplit) the bias and y; or, with
 * `s.splits` > 1 (a SPLITK variant), the per-device partials scratch, then {@link splitSum} into y
 * (bias, activation and accumulate in the sum pass).
 */
export function chunkGemm(
  gpu: Gpu,
  v: KernelVariant,
  inputs: readonly BufferArg[],
  params: ArrayBuffer,
  grid: readonly [number, number, number],
  y: BufferArg,
  bias: BufferArg | null,
  s: Parameters<typeof splitSum>[4],
): Dispatch[] {
  if (s.splits <= 1) {
    return [new Dispatch(gpu, v, [...inputs, ...(bias ? [bias] : []), y], params, grid)];
  }
  const part = splitPartials(gpu, s.splits * s.m * s.rows * 4);
  return [new Dispatch(gpu, v, [...inputs, part], params, grid), splitSum(gpu, y, part, bias, s)];
}

/**
 * The split-k sum pass: y (m, n) columns [rowStart, rowStart + rows) = Σ of `splits` partial
 * products (+ bias) (then quick_gelu with `activation`) (+ y when `accumulate`).
 * @param y (m, n) f32
 * @param part (splits, m, rows) f32
 * @param bias (n) f32, or null
 */
export function splitSum(
  gpu: Gpu,
  y: BufferArg,
  part: BufferArg,
  bias: BufferArg | null,
  s: {
    m: number;
    n: number;
    rowStart: number;
    rows: number;
    splits: number;
    accumulate?: boolean;
    activation?: "quick_gelu";
  },
): Dispatch {
  const { m, n, rowStart, rows, splits } = s;
  checkSize("y", y, m * n * 4);
  checkSize("partials", part, splits * m * rows * 4);
  if (bias) checkSize("bias", bias, n * 4);
  // The sum pass reads the partials through x (and binds them as w too: a binding it never reads).
  const v = variant(gpu, {
    family: "linear",
    entry: "main",
    bindings: ["read", "read", ...(bias ? ["read" as const] : []), "read_write"],
    params: Params,
    defines: {
      Y_BINDING: bias ? 3 : 2,
      REDUCE: true,
      BIAS: bias !== null,
      QGELU: s.activation === "quick_gelu",
      ACC: s.accumulate === true,
    },
  });
  const params = Params.pack({
    m,
    n,
    k: 0,
    row_start: rowStart,
    rows,
    eps: 0,
    ...ropeKvParams(undefined),
    kspan: 0,
    splits,
  });
  const buffers = [part, part, ...(bias ? [bias] : []), y];
  return new Dispatch(gpu, v, buffers, params, grid2d(ceilDiv(m * rows, 256)));
}

/**
 * The pipelined tiled path (m > 1, `tuning.pipe`): per weight chunk one GEMM dispatch, or with
 * split-k a GEMM into the per-device partials scratch and a sum pass. Split-k dispatches share
 * that scratch with every other split-k linear() call's: run them in order.
 */
function pipeLinear(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: LinearShape,
  t: LinearTuning,
): Dispatch[] {
  const { m } = s;
  const k = w.cols;
  const kspan = pipeKSpan(k, t.splitK ?? 1);
  const splits = ceilDiv(k, kspan);
  const split = splits > 1;
  const common = {
    F16: w.dtype === "f16",
    VEC: k % 4 === 0,
    W4H: w.dtype === "f16" && k % 4 === 0, // f16 w read as vec2<u32>
    Y_BINDING: split ? 2 : bias ? 3 : 2,
  };
  const gemm = variant(gpu, {
    family: "linear",
    entry: "main",
    bindings: split ? ["read", "read", "read_write"] : [
      "read",
      "read",
      ...(bias ? ["read" as const] : []),
      "read_write",
    ],
    params: Params,
    defines: {
      ...common,
      PIPE: true,
      HALF: t.half === true,
      NOLOAD: t.noLoad === true,
      SPLITK: split,
      BIAS: !split && bias !== null,
      QGELU: !split && s.activation === "quick_gelu",
      ACC: !split && s.accumulate === true,
    },
  });
  return w.chunks.flatMap((c) => {
    const params = Params.pack({
      m,
      n: w.rows,
      k,
      row_start: c.rowStart,
      rows: c.rows,
      eps: 0,
      ...ropeKvParams(undefined),
      kspan,
      splits,
    });
    const grid = [ceilDiv(c.rows, 128), ceilDiv(m, t.half ? 64 : 128), splits] as const;
    return chunkGemm(gpu, gemm, [x, c.buffer], params, grid, y, bias, {
      ...s,
      n: w.rows,
      rowStart: c.rowStart,
      rows: c.rows,
      splits,
    });
  });
}

/**
 * y = rmsNorm(x) · nw · wᵀ (+ bias) (+ y when `s.accumulate`): one fused dispatch per weight chunk
 * (q4: the prepared-x pass, then that) where {@link linear}'s `norm` applies — m = 1, any weight
 * dtype, or a few rows of x on the few-row GEMV ({@link fusesXTransform}: batched decode, short
 * prompts) — else {@link rmsNorm} into `h` then {@link linear} from `h`.
 * @param y (m, w.rows) f32
 * @param x (m, w.cols) f32
 * @param h (m, w.cols) f32 scratch for the normed x (untouched when fused)
 * @param nw (w.cols) f32 norm weight
 * @param bias (w.rows) f32, or null
 * @param s.prepared x already prepared for this GEMV (m = 1, {@link LinearShape.prepared})
 * @param s.emit also write y prepared for the next GEMV (m = 1, {@link LinearShape.emit})
 */
export function normLinear(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  h: BufferArg,
  nw: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: {
    m: number;
    eps: number;
    accumulate?: boolean;
    prepared?: BufferArg;
    emit?: LinearShape["emit"];
  },
): Dispatch[] {
  const { m, eps, accumulate, prepared, emit } = s;
  if (fusesXTransform(gpu, w, m, true)) {
    const p = { ...(prepared ? { prepared } : {}), ...(emit ? { emit } : {}) };
    return linear(gpu, y, x, w, bias, { m, accumulate, norm: { weight: nw, eps }, ...p });
  }
  return [
    rmsNorm(gpu, h, x, nw, { rows: m, cols: w.cols, eps }),
    ...linear(gpu, y, h, w, bias, { m, accumulate }),
  ];
}

/**
 * y = (silu(gate) · up) · wᵀ (+ bias) (+ y when `s.accumulate`) from gateUp rows [gate | up]: one
 * fused dispatch per weight chunk (q4: the prepared-x pass, then that) where {@link linear}'s
 * `siluMul` applies — m = 1, any weight dtype, or a few rows on the few-row GEMV
 * ({@link fusesXTransform}) — else {@link siluMul} into `act` then {@link linear} from `act`.
 * @param y (m, w.rows) f32
 * @param gateUp (m, 2 · w.cols) f32
 * @param act (m, w.cols) f32 scratch for silu(gate) · up (untouched when fused)
 * @param bias (w.rows) f32, or null
 * @param s.emit also write y as the next GEMV's prepared x (m = 1, {@link LinearShape.emit})
 * @param s.prepared silu(gate) · up already prepared for this GEMV (m = 1,
 * {@link LinearShape.prepared})
 */
export function siluMulLinear(
  gpu: Gpu,
  y: BufferArg,
  gateUp: BufferArg,
  act: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: { m: number; accumulate?: boolean; emit?: LinearShape["emit"]; prepared?: BufferArg },
): Dispatch[] {
  const { m, accumulate, emit, prepared } = s;
  if (fusesXTransform(gpu, w, m, false)) {
    return linear(gpu, y, gateUp, w, bias, {
      m,
      accumulate,
      siluMul: true,
      ...(emit ? { emit } : {}),
      ...(prepared ? { prepared } : {}),
    });
  }
  return [
    siluMul(gpu, act, gateUp, { rows: m, cols: w.cols }),
    ...linear(gpu, y, act, w, bias, { m, accumulate }),
  ];
}
