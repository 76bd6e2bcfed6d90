/**
 * Linear layers over group-wise quantized weights (kernels/linear_q.wgsl), and the GPU kernels that
 * quantize f16 rows into such weights and dequantize them back. Reference: src/ref/linear_q.ts.
 *
 * Format (src/gpu/tensor.ts {@link QuantDType}): groups of 32 consecutive elements of a row share
 * one f16 scale d = max|v| / 7 (q4) or / 127 (q8), codes = round(v / d) — symmetric, no zero point,
 * like GGUF's Q4_0 / Q8_0 with f16 scales. Bytes per weight: q8 1.0625, q4 0.5625.
 *
 * Decode (m = 1) runs a GEMV (design in kernels/linear_q.wgsl) with RMSNorm / silu · mul fused
 * like the f16 one (same dispatch count per step); the decoder takes kernels/gemv.ts's resident-x
 * GEMV for every q8 one instead (7B q8 180 → 211 tok/s, H200). A few rows of x (1 < m ≤
 * GEMV_XROWS_MAX = 16: batched decode, short prompts, follow-ups) run the few-row GEMV: one PREPX
 * pass quantizes each row of x as m = 1 does (with a fused norm x ∘ nw and its Σx², with silu · mul
 * silu(gate) · up, as m = 1's PREPX: normLinear / siluMulLinear run no pass of their own there),
 * then the prepared-x GEMV over all m rows at once (each row times its 1 / rms with the norm),
 * each weight unit loaded and unpacked once for all of them (kernels/linear_q.wgsl XROWS,
 * {@link gemvQXRowsTuning}; each row's bits are the m = 1 prepared-x GEMV's at the same threads
 * per row) — for q4; q8's few rows keep x in f32 ({@link GEMV_XROWS_F32}: int8 x doubled its logit
 * error), staged in workgroup memory as its m = 1 f32-x GEMV stages it, the norm / silu · mul
 * applied there, each weight unit read once for all rows (each row's bits that GEMV's).
 * Longer prefill and vision (m > 1) run, for q4, kernels/gemm.ts's int8 GEMM
 * ({@link PREFILL_INT8}); q8 (and any x too large for gemmQ's scratch) dequantizes balanced row
 * slices into an f16 scratch and runs the f16 GEMM of kernels/linear.ts — unless the call sets
 * LinearShape.int8x (the q8 vision tower of visionQuant): then the int8 GEMM (at any m).
 *
 * GEMV performance (bench/_gemv.ts: 28 layers × qkv, o, gate_up, down + lm_head of 7B, each its
 * own weight; ms per token's 113 GEMVs, plain x / as the decode step fuses them), 2026-11-28:
 * - first version (x from global memory, shift/and/convert per code): H100 q4 4.24 ms = 0.94 TB/s
 *   at its best tuning, ALU- and L1-bound (lanes read x 128 bytes apart; int→float conversions).
 * - codes to f32 by exponent magic, x staged in padded workgroup memory: H100 q4 best 4.01 / 4.35
 *   ms, q8 5.00 / 5.14 (f16 6.38 / 6.74 on the same run).
 * - int8 x + dot4I8Packed (H200): q4 best per kind 3.29 / 3.52 ms (1.21 / 1.13 TB/s), q8 4.04 /
 *   4.18 (f16 best 5.10 / 5.14). Per kind (q4, TB/s): gate_up 1.86, lm_head 2.67, down 0.92 (f32
 *   x), qkv 0.59, o 0.49 — small matrices and k = 18944 stay far from the bandwidth: every
 *   workgroup stages and quantizes all of x before its first weight load, and down re-stages per
 *   tile (5 barrier rounds of 4 units per lane). Next: stage x once per dispatch (a tiny
 *   quantize-x pass shared by all workgroups, or one per distinct x in the decoder), more
 *   workgroups per SM for small n (split k), whole-k tiles for down.
 * - decode fixed costs (H200, 2026-11-28 10:30, bench/main.ts q4, 478 / 391 tokens; baseline
 *   e09a05f 7B 288.5 tok/s, 230 dispatches a step, QVQ-72B 52.35, 807): rope + KV write as the
 *   qkv GEMV's epilogue (ROPE), o / down emitting the next norm-GEMV's prepared x (EMIT), the
 *   PREPX pass with eight threads a block (72B plain pass 10.2 → 6.4 µs) — 7B 293.7 tok/s (173
 *   dispatches), 72B 55.24 (567); with gate_up emitting silu · up for down (EMIT_SILU, where the
 *   tuning already holds 64-row blocks: 7B only) 7B 303.1 (145). bench/_gemv.ts 72B 10-layer
 *   chain: 2.42 ms fused with passes, 2.06 emitting x.
 * - written-out int8-x loops (H200 13:09, LinearQTuning.xpUnroll; {@link GEMV_WIDE}): 2 units
 *   an iteration with all loads first, and o_proj staging its own x (no PREPX pass: 72B 567 → 487
 *   dispatches a step): the 72B 8-layer emit-x chain 1.755 / 1.758 → 1.680 / 1.723 ms (2–4 %).
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import {
  isQuant,
  QUANT_GROUP,
  type QuantDType,
  quantLayout,
  type Weight,
  type WeightChunk,
} from "../src/gpu/tensor.ts";
import { f32ToF16Bits } from "../src/gpu/tensor.ts";
import { deviceScratch, readBytes, writeArray } from "../src/gpu/buffers.ts";
import { type Quantized, unpack } from "../src/ref/linear_q.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, checkSize, Dispatch, run, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import type { Defines } from "./_preprocess.ts";
import { grid2d } from "./_grid.ts";
import {
  canEmitX,
  checkLinearCall,
  GEMV_XROWS_MAX,
  linear,
  LINEAR_CHOICE,
  type LinearShape,
  ropeKvDefines,
  type RopeKvEpilogue,
  ropeKvParams,
  xrowsBucket,
} from "./linear.ts";
import { gemmQ, gemmQFits } from "./gemm.ts";

const Params = defineParams({
  n: "u32",
  k: "u32",
  row_start: "u32",
  rows: "u32",
  groups: "u32",
  s_base: "u32",
  row0: "u32",
  eps: "f32", // RMSNorm epsilon (GEMV with a fused norm only)
  tile: "u32", // GEMV: units of x staged in workgroup memory at a time
  // GEMV with a rope + KV epilogue only (kernels/linear.ts RopeKvEpilogue): rotary index count,
  // rotated rows, K/V cache row width, cache rows, table positions.
  half: "u32",
  rot_rows: "u32",
  kvw: "u32",
  max_rows: "u32",
  npos: "u32",
  // Few-row GEMV (XROWS) and its PREPX pass only: rows of x, u32 words per prepared x row.
  m: "u32",
  xs: "u32",
});

/** GEMV shape knobs of {@link linearQ}; benchmarks sweep them, callers use the defaults. */
export interface LinearQTuning {
  /** Threads per workgroup: a power of two. */
  wg: number;
  /** Threads per row group (a power of two ≤ wg): they split k, and wg / tpr groups run side by side. */
  tpr: number;
  /** Output rows per row group (each x unit loaded once is used for all of them). */
  rows: number;
  /** Two units per loop iteration (more loads in flight, more registers). */
  unroll: boolean;
  /** Most x units (32 elements for q4 and with `xq`, else 16 for q8) staged in workgroup memory at a time. */
  tile: number;
  /**
   * x as int8 per 32-element block (power-of-two scales) and integer dot4I8Packed products; false:
   * f32 x and f32 products (the reference-exact path, kept for tests and comparison).
   */
  xq: boolean;
  /**
   * With `xq`: one small pass first norms / silu · muls and quantizes x into a per-device buffer
   * (the int8 blocks the GEMV would stage, same bits), and the GEMV's workgroups read those
   * instead of each re-doing all of x: one dispatch more, no per-workgroup x work or barriers.
   */
  prep?: boolean;
  /**
   * int8 x (`xq`, prepared or staged): units (32-element blocks) a thread takes per loop
   * iteration, written out with all their loads before the products ({@link xpSteps}); 1
   * (default): the plain loop.
   */
  xpUnroll?: number;
  /**
   * Threads per 32-element block in the PREPX pass: 8 (one vec4 each, the block's max and sums
   * through workgroup memory; default) or 1 (a thread quantizes a whole block).
   */
  prepThreads?: 1 | 8;
  /**
   * At 1 < m ≤ GEMV_XROWS_MAX (kernels/linear.ts): the few-row GEMV ({@link gemvQXRowsTuning})
   * rather than the int8 GEMM (q4) or dequantize + f16 GEMM (q8). Default true (with
   * kernels/linear.ts LINEAR_CHOICE.xrows); false: the old path (benchmarks, the vision tower).
   * At m > 1 the tuning's wg, tpr, rows and xpUnroll shape the few-row GEMV.
   */
  gemvXRows?: boolean;
}

/**
 * Whether the default GEMV of a dtype holds x as int8 (rows up to {@link GEMV_LONG_UNITS} units;
 * longer rows stage f32 x, faster there: see {@link gemvQTuning}). q4 yes: its own rounding error
 * is ~10× larger. q8 keeps f32 x: int8 x moved the tiny model's q8 logits to max |Δ| 0.55, past
 * the measured q8 bound of src/pipeline_test.ts (0.5 of ≈ 35), for ~18 % of its GEMV time.
 */
export const GEMV_XQ: Readonly<Record<QuantDType, boolean>> = { q4: true, q8: false };

/**
 * Whether a dtype's default GEMV prepares x in one pass (tuning.prep) for gate_up, down, lm_head
 * and k ≥ 8192 shapes: down then takes int8 x too (it staged f32 x for speed, not precision).
 */
export const GEMV_PREP: Readonly<Record<QuantDType, boolean>> = { q4: true, q8: false };

/**
 * Whether m > 1 products of a dtype run kernels/gemm.ts's int8 GEMM (x quantized per row and
 * 32-group, dot4I8Packed; 1.1–2.6× the dequantize + f32 GEMM on the H200 bench) instead of
 * dequantizing into f16 and running the f32-FMA GEMM. q4 yes: on the tiny model int8 x in prefill
 * moved q4's max |Δ logit| from 8.08 to 8.12 and its argmax agreement from 59 to 58 of 98 — noise
 * beside q4's own error. q8 no: it doubled q8's (0.485 → 0.985, argmax 98 → 95 of 98). A call's
 * LinearShape.int8x takes the int8 GEMM for either dtype (the vision tower, LoadOptions.visionQuant).
 */
export const PREFILL_INT8: Readonly<Record<QuantDType, boolean>> = { q4: true, q8: false };

/**
 * Whether 1 < m ≤ GEMV_XROWS_MAX products of a dtype run the few-row GEMV ({@link
 * gemvQXRowsTuning}) rather than q4's int8 GEMM (PREFILL_INT8) or q8's dequantize + the f16
 * few-row GEMV (3× the bytes read); both yes. Tests and benchmarks switch it off to compare.
 */
export const GEMV_XROWS: Record<QuantDType, boolean> = { q4: true, q8: true };

/**
 * Whether a dtype's few-row GEMV keeps x in f32 (kernels/linear_q.wgsl XROWS without XP: x staged
 * in workgroup memory, a row's bits the m = 1 f32-x GEMV's) rather than int8 per row (a PREPX pass,
 * a row's bits the m = 1 int8-x GEMV's). q4 int8: its int8 GEMM took int8 x there already. q8 f32,
 * as its decode GEMVs keep it: int8 x doubled q8's logit error ({@link PREFILL_INT8}; the tiny
 * model's batched decode step 0.27–0.33 → 0.47–0.70 max |Δ logit| against f32 weights, lavapipe
 * 2026-11-30). Tests switch it to compare.
 */
export const GEMV_XROWS_F32: Record<QuantDType, boolean> = { q4: false, q8: true };

/**
 * Defaults of the wide int8-x GEMVs (n and k ≥ 8192: QVQ-72B's qkv, o, gate_up, down, lm_head;
 * no 7B shape, which keep the plain loop: not measured with it); benchmarks switch them to compare.
 * H200, bench/_gemv.ts --model 72b --layers 8 --sweep xpu (ms per 8 layers; run to run ±5–10 %):
 * - `xpUnroll`: units per loop iteration of the prepared-x GEMV (LinearQTuning.xpUnroll). Per
 *   kind (12:57, one run), 1 → 2 / 4 / 8: qkv 0.201 → 0.180 / 0.184 / 0.214, o (after its PREPX
 *   pass) 0.214 → 0.205 / 0.221 / 0.285, gate_up 0.708 → 0.676 / 0.681 / 0.754, down 0.454 →
 *   0.422 / 0.423 / 0.497, lm_head 0.218 → 0.208 / 0.218 / 0.231.
 * - `stagedSquare`: o_proj (n ≤ k, rows not long, x not prepared) stages its int8 x itself in
 *   one 256-unit tile, 512 threads × 16 a row, 4 units an iteration, instead of a PREPX pass +
 *   the prepared GEMV (80 dispatches a 72B step fewer): 0.185 against 0.211 (prepared,
 *   xpUnroll 4) and 0.251 (before) ms, one run (12:57).
 * The whole emit-x chain (8 layers of GEMVs as the decoder chains them + lm_head), two
 * interleaved runs (13:09), [xpUnroll, stagedSquare]: [1, off] (before) 1.755 / 1.758 ms, [2, on]
 * 1.680 / 1.723, [4, on] 1.812 / 1.651, [4, off] 1.863 / 1.754 — [2, on] won both, by 2–4 %
 * (a first single run's 1.465 for xpUnroll 4 did not repeat). gate_up emitting silu · up for
 * down on 64-row workgroups (512 × 16 × 2 rows, xpUnroll 4) 1.814 / 1.716: no better.
 */
export const GEMV_WIDE = { xpUnroll: 2, stagedSquare: true };

/** Rows of more than this many 32-element groups (7B down_proj: 592) are "long" to the GEMV. */
export const GEMV_LONG_UNITS = 256;

/**
 * Default GEMV {@link LinearQTuning} for an (n, k) q8/q4 weight: 256 threads; threads per row
 * (tpr) and rows per row group by shape, the best of the bench/_gemv.ts sweep on an H200
 * (2026-11-28, 28 layers of each 7B kind, ms per token's worth):
 * - long rows (k / 32 > {@link GEMV_LONG_UNITS}, down_proj): tpr 32, 1 row, f32 x (q4 1.16 ms
 *   vs 1.36 with int8 x; q8 1.42 either way);
 * - int8 x: n ≥ 65536 (lm_head) tpr 4 × 2 rows (0.115 ms q4), n ≥ 16384 (gate_up) tpr 8 × 2 rows
 *   (1.15 ms q4, 1.48 q8), else (qkv, o) tpr 16 × 1 row (0.44 / 0.41 ms q4);
 * - f32 x: tpr 8 at n ≥ 16384 (q8 gate_up 2.19 ms vs 2.49 at tpr 32), else 32 (q8 o 0.67 vs
 *   1.01 at tpr 8), 1 row.
 * tpr never exceeds the groups of a row (the tiny model's k = 32 is one).
 * @param xq override of the default x precision
 * @param prepared x comes prepared (LinearShape.prepared): the prepared-x shapes at any (n, k)
 */
export function gemvQTuning(
  dtype: QuantDType,
  n: number,
  k: number,
  xq = GEMV_XQ[dtype] && (k / 32 <= GEMV_LONG_UNITS || GEMV_PREP[dtype]),
  prepared = false,
): LinearQTuning {
  const groups = k / 32;
  const long = groups > GEMV_LONG_UNITS;
  const wide = n >= 8192 && k >= 8192;
  let tpr: number, rows = 1;
  if (xq && wide && !prepared && !long && n <= k && GEMV_WIDE.stagedSquare) {
    return { wg: 512, tpr: 16, rows: 1, unroll: false, tile: 256, xq, xpUnroll: 4 };
  }
  if (xq && (prepared || GEMV_PREP[dtype] && (long || n >= 16384 || k >= 8192))) {
    // Prepared x (H100 08:30, bench/_gemv.ts --sweep prep): 72B gate_up 1.58 → 1.08 ms per 10
    // layers, down 1.14 → 0.67, qkv 0.40 → 0.33, o 0.35 → 0.29, lm_head 0.42 → 0.26; 7B gate_up
    // 1.60 → 1.27 and down 1.21 → 0.90 per 28 layers, lm_head 0.185 → 0.125. 7B qkv / o (k 3584,
    // n < 16384) stay staged: the extra pass cost more than it saved (0.57 vs 0.36 ms).
    if (long) tpr = 32;
    else if (n >= 65536) tpr = k >= 8192 ? 32 : 8;
    else if (n >= 16384) [tpr, rows] = k >= 8192 ? [16, 1] : [8, 2];
    else [tpr, rows] = [32, n > k ? 2 : 1];
    tpr = Math.min(tpr, 2 ** Math.floor(Math.log2(Math.max(1, groups))));
    return {
      wg: 256,
      tpr,
      rows,
      unroll: false,
      tile: 128,
      xq,
      prep: true,
      xpUnroll: wide ? GEMV_WIDE.xpUnroll : 1,
    };
  }
  if (long) tpr = 32;
  else if (xq) {
    [tpr, rows] = n >= 65536 ? [4, 2] : n >= 16384 ? [8, 2] : [16, 1];
  } else tpr = n >= 16384 ? 8 : 32;
  tpr = Math.min(tpr, 2 ** Math.floor(Math.log2(Math.max(1, groups))));
  return { wg: 256, tpr, rows, unroll: false, tile: xq || dtype === "q8" ? 128 : 64, xq };
}

/**
 * Whether the default GEMV of q8 / q4 weight `w` (m = 1; x `prepared` or not) already runs whole
 * emitted blocks per workgroup (LinearShape.emit: 32 rows, with `siluMul` 64), so emitting keeps
 * its shape; else {@link linearQ} grows the workgroups for the emission. Measured on the H200
 * (2026-11-28 10:30, bench/main.ts): 7B gate_up (tpr 8 × 2 rows: 64 rows already) with
 * silu · up emitted for down_proj 303.1 tok/s against 293.7 without; 72B gate_up (tpr 16 × 1 row,
 * grown to 1024 threads) 53.4 against 55.2 (its GEMV 104.5 µs a layer against 90 + a 6.9 µs
 * PREPX pass; the best grown shape in bench/_gemv.ts --sweep emit, 256 threads × 4 rows, 96 µs).
 */
export function emitKeepsTuning(w: Weight, siluMul: boolean, prepared: boolean): boolean {
  const t = gemvQTuning(checkQuant(w, "emitKeepsTuning"), w.rows, w.cols, undefined, prepared);
  return rowsPerWorkgroup(t) % emitBlock(siluMul) === 0;
}

/**
 * The int8-x GEMV's loop over `u` units per iteration for `rows` rows per row group (WGSL for
 * kernels/linear_q.wgsl's XP_STEPS, prepared x, or with `staged` its XQ_STEPS over a staged tile;
 * "" for u ≤ 1): unit i of an iteration is j + i · TPR; its x block, then every row's term are
 * computed before any is added, so the weight and scale loads of all u units are in flight
 * together. Each row adds its terms in unit order, as the plain loop does: the same bits.
 */
export function xpSteps(u: number, rows: number, staged = false): string {
  if (u <= 1) return "";
  const us = [...Array(u).keys()], rs = [...Array(rows).keys()];
  const end = staged ? "tu" : "units", pad = staged ? "  " : "";
  const lines = [`for (; j + ${u - 1}u * TPR < ${end}; j += ${u}u * TPR) {`];
  for (const i of us) {
    lines.push(`  let j${i} = j + ${i}u * TPR;`);
    if (staged) {
      lines.push(
        `  let g${i} = u0 + j${i};`,
        `  let a${i} = xq0[j${i}];`,
        `  let b${i} = xq1[j${i}];`,
        `  let sx${i} = xqs[j${i}];`,
      );
    } else {
      lines.push(
        `  let g${i} = j${i};`,
        `  let a${i} = xp[2u * j${i}];`,
        `  let b${i} = xp[2u * j${i} + 1u];`,
        `  let sv${i} = xp[2u * units + (j${i} >> 1u)];`,
        `  let sx${i} = bitcast<vec2<f32>>(select(sv${i}.xy, sv${i}.zw, (j${i} & 1u) == 1u));`,
      );
    }
  }
  for (const r of rs) {
    for (const i of us) {
      lines.push(
        `  let d${r}_${i} = scale(sbase[${r}u] + g${i}) * sx${i}.x * ` +
          `block_dot(base[${r}u] + CV * g${i}, a${i}, b${i}, sx${i}.y);`,
      );
    }
  }
  for (const r of rs) for (const i of us) lines.push(`  acc[${r}u] += d${r}_${i};`);
  lines.push("}");
  return lines.map((l) => `  ${pad}${l}`).join("\n");
}

/**
 * The few-row GEMV's accumulation (WGSL for kernels/linear_q.wgsl's XR_STEPS): named accumulators
 * acc{r}_{i} for weight row r of the row group and x row i (< xr), a loop over `u` units a step
 * (unit i of a step is j + i · TPR; every weight load of the step, then every x row's loads and
 * products), then a plain loop over the rest, and the accumulators into `acc` (slot r · xr + i).
 * Each accumulator adds its units' terms in unit order, as m = 1's acc[r]: the same sums.
 */
export function xrowsSteps(u: number, rows: number, xr: number): string {
  const R = [...Array(rows).keys()], I = [...Array(xr).keys()];
  const lines: string[] = [];
  for (const r of R) {
    lines.push(
      `let row${r} = min(rgi * ROWS + ${r}u, p.rows - 1u);`,
      `let base${r} = row${r} * units * CV;`,
      `let sbase${r} = row${r} * p.groups;`,
    );
  }
  for (const i of I) lines.push(`let xo${i} = xrow(${i}u);`);
  for (const r of R) for (const i of I) lines.push(`var acc${r}_${i} = 0.0;`);
  const step = (n: number): string[] => {
    const U = [...Array(n).keys()];
    const b: string[] = [];
    for (const k of U) b.push(`let j${k} = j + ${k}u * TPR;`);
    for (const r of R) {
      for (const k of U) {
        b.push(
          `let c${r}_${k} = unit_codes(base${r} + CV * j${k});`,
          `let s${r}_${k} = scale(sbase${r} + j${k});`,
        );
      }
    }
    for (const i of I) {
      for (const k of U) {
        b.push(
          `let xa${i}_${k} = xp[xo${i} + 2u * j${k}];`,
          `let xb${i}_${k} = xp[xo${i} + 2u * j${k} + 1u];`,
          `let xv${i}_${k} = xp[xo${i} + 2u * units + (j${k} >> 1u)];`,
          `let sx${i}_${k} = bitcast<vec2<f32>>(select(xv${i}_${k}.xy, xv${i}_${k}.zw, ` +
            `(j${k} & 1u) == 1u));`,
        );
      }
      for (const r of R) {
        for (const k of U) {
          b.push(
            `acc${r}_${i} += s${r}_${k} * sx${i}_${k}.x * ` +
              `codes_dot(c${r}_${k}, xa${i}_${k}, xb${i}_${k}, sx${i}_${k}.y);`,
          );
        }
      }
    }
    return b.map((l) => `  ${l}`);
  };
  lines.push("var j = t;");
  if (u > 1) {
    lines.push(`for (; j + ${u - 1}u * TPR < units; j += ${u}u * TPR) {`, ...step(u), "}");
  }
  lines.push("for (; j < units; j += TPR) {", ...step(1), "}");
  for (const r of R) for (const i of I) lines.push(`acc[${r * xr + i}u] = acc${r}_${i};`);
  return lines.map((l) => `  ${l}`).join("\n");
}

/**
 * The f32-x few-row GEMV's body (WGSL for kernels/linear_q.wgsl's XF_STEPS): named accumulators
 * acc{r}_{i} (weight row r of the row group, x row i < xr); per x tile of p.tile units (m = 1's
 * tiles), rounds of SUB units: the rows' units staged (x rows past p.m are not: their slots are not
 * stored), then each unit j of the thread (t, t + TPR, … of the tile, as m = 1's loop takes them):
 * its weight vec4 and scale per row, once, and each x row's term scale · unit_dot() — m = 1's
 * expression — added in unit order; last the accumulators into `acc` (slot r · xr + i).
 */
export function xrowsF32Steps(rows: number, xr: number): string {
  const R = [...Array(rows).keys()], I = [...Array(xr).keys()];
  const lines: string[] = [];
  for (const r of R) {
    lines.push(
      `let row${r} = min(rgi * ROWS + ${r}u, p.rows - 1u);`,
      `let base${r} = row${r} * units;`,
      `let sbase${r} = row${r} * p.groups;`,
    );
  }
  for (const r of R) for (const i of I) lines.push(`var acc${r}_${i} = 0.0;`);
  lines.push(
    "let nx = min(p.m, XR);  // x rows staged",
    "for (var u0 = 0u; u0 < units; u0 += p.tile) {",
    "  let tu = min(p.tile, units - u0);",
    "  for (var s0 = 0u; s0 < tu; s0 += SUB) {",
    "    let su = min(SUB, tu - s0);",
    "    workgroupBarrier();  // the previous round is consumed",
    "    for (var e = lid; e < nx * su * UV; e += WG) {",
    "      let i = e / (su * UV);",
    "      let v = e - i * (su * UV);",
    "      xs[(i * SUB + v / UV) * (UV + 1u) + v % UV] = xr(i, (u0 + s0) * UV + v);",
    "    }",
    "    workgroupBarrier();",
    "    for (var j = s0 + t; j < s0 + su; j += TPR) {",
    "      let g = (u0 + j) * UNIT / 32u;",
  );
  for (const r of R) {
    lines.push(
      `      let q${r} = w[base${r} + u0 + j];`,
      `      let d${r} = scale(sbase${r} + g);`,
    );
  }
  for (const i of I) {
    lines.push(`      let x${i} = load_x(${i}u * SUB + j - s0);`);
    for (const r of R) lines.push(`      acc${r}_${i} += d${r} * unit_dot(q${r}, x${i});`);
  }
  lines.push("    }", "  }", "}");
  for (const r of R) for (const i of I) lines.push(`acc[${r * xr + i}u] = acc${r}_${i};`);
  return lines.map((l) => `  ${l}`).join("\n");
}

/**
 * Default tuning of the few-row GEMV (kernels/linear_q.wgsl XROWS) over a q8 / q4 (n, k) weight
 * for m rows of x (1 < m ≤ GEMV_XROWS_MAX; by m's bucket, kernels/linear.ts xrowsBucket), with x
 * in f32 where `f32` ({@link GEMV_XROWS_F32}: q8) — then the m = 1 f32-x GEMV's threads and tile,
 * weight rows by bucket — else int8:
 * Threads per row (tpr) follow the shape only, never m, so that a row's bits do not depend on the
 * rows beside it (batched decode: src/model/decode_batch.ts): at QVQ-72B's widths (n and k ≥
 * 8192) 16, 32 for rows more than twice as long as n is wide (down_proj), 4 weight rows a row
 * group, 8 · tpr threads a workgroup at up to 4 rows of x; elsewhere the m = 1 int8-x GEMV's
 * tpr for the shape ({@link gemvQTuning} with xq: a row then sums as m = 1 sums it), 2 weight rows
 * and 256 threads; 2 units a step. From 8 rows of x on: 4 weight rows; at QVQ-72B's widths 64
 * threads and 2 units a step at 8 rows, 128 and 1 at 16; elsewhere 1 unit a step and 128 threads
 * at 8, 64 at 16 (not swept).
 * H200, 2026-11-30, run ending 17:45 UTC (bench/_gemv.ts --xrows 2,4 --xrows-tunings, ms per 8
 * QVQ-72B layers at 2 / 4 rows; the m = 1 defaults before): qkv 0.246 / 0.363 → 0.231 / 0.286, o 0.212 /
 * 0.295 → 0.212 / 0.263, gate_up 0.803 / 1.280 → 0.788 / 1.132, down 0.591 / 0.920 → 0.414 /
 * 0.586, lm_head 0.268 / 0.404 → 0.212 / 0.317; at 8 / 16 rows (run ending 18:37 UTC, threads per
 * row kept) qkv 0.657 / 1.014 → 0.435 / 0.739, o 0.570 / 0.665 → 0.384 / 0.662, gate_up 2.246 /
 * 3.648 → 1.962 / 3.600, down 1.302 / 2.154 → 1.288 (64 threads, 1 unit: not the default's
 * 2) / 2.169 (±5 % run to run), lm_head 0.730 / 1.102 → 0.611 / 1.097. 7B's shapes had no
 * tuning better on every kind and both row counts (their best differed by kind and m, within
 * 5–15 % of these defaults).
 */
export function gemvQXRowsTuning(
  dtype: QuantDType,
  n: number,
  k: number,
  m: number,
  f32 = GEMV_XROWS_F32[dtype],
): LinearQTuning {
  const xr = xrowsBucket(m), few = xr <= 4;
  if (f32) {
    // f32 x (q8): m = 1's default f32-x GEMV (its workgroup and x tile; its threads per row but
    // for short rows below), the same in every bucket, so a row sums — and with a fused norm sums
    // its Σx² — alike whatever the batch; 4 weight rows a row group, 2 at 16 rows of x with 8
    // threads a row (H200 sweeps, 2026-11-30, 7B q8, ms per 28 layers at 16 rows, 4 rows / 2:
    // gate_up 11.27 / 9.02, down 8.58 / 12.73).
    const one = gemvQTuning(dtype, n, k, false);
    // 7B's qkv and o (few short rows): 16 threads a row (whatever the bucket), one weight row a
    // group, two at 16 rows (qkv / o at 2, 4, 8 rows: 0.55 / 0.49, 0.73 / 0.65, 1.37 / 1.15 ms
    // against 0.69 / 0.53, 0.97 / 0.79, 2.26 / 1.22 on m = 1's threads).
    if (n < 8192 && k >= 1024 && k <= 4096) {
      return { ...one, tpr: 16, rows: xr <= 8 ? 1 : 2, unroll: false, xq: false };
    }
    return { ...one, rows: xr <= 8 || one.tpr > 8 ? 4 : 2, unroll: false, xq: false };
  }
  const wide = n >= 8192 && k >= 8192;
  const tpr = wide ? (k > 2 * n ? 32 : 16) : gemvQTuning(dtype, n, k, true).tpr;
  const wg = few ? (wide ? 8 * tpr : 256) : wide ? (xr <= 8 ? 64 : 128) : xr <= 8 ? 128 : 64;
  return {
    wg,
    tpr,
    rows: few && !wide ? 2 : 4,
    unroll: false,
    tile: 1,
    xq: true,
    prep: true,
    xpUnroll: few || (wide && xr <= 8) ? 2 : 1,
  };
}

/**
 * The x tile of a GEMV over `units` units a row at most `most` a tile: equal tiles (k = 3584 in q4:
 * 2 × 56 units rather than 64 + 48).
 */
function equalTile(units: number, most: number): number {
  return Math.ceil(units / Math.ceil(units / most));
}

/** Weight rows one GEMV workgroup computes under tuning `t`. */
function rowsPerWorkgroup(t: LinearQTuning): number {
  return (t.wg / t.tpr) * t.rows;
}

/** Rows an emitting GEMV's workgroup must own whole: a 32-row block, with siluMul gate + up. */
function emitBlock(siluMul: boolean): number {
  return siluMul ? 64 : 32;
}

/** Bytes of the per-device f16 staging that quantization uploads go through, slice by slice. */
const STAGING_BYTES = 64 << 20;
/**
 * Bytes of the per-device f16 scratch that m > 1 products dequantize into, slice by slice: large
 * enough that every 7B matrix is one slice (gate_up 37888 × 3584 f16 is 272 MB), so the GEMM runs
 * as for f16 weights. A slice's GEMM runs (rows / 128) × (m / 128) workgroups: the old 64 MiB
 * scratch cut down_proj into 1770 + 1770 + 44 rows — 56, 56 and 4 workgroups of a 478-token
 * prompt for 132 SMs, one after another, each over all of k = 18944 — and gate_up into 4 × 9362
 * + 440 rows.
 */
export const DEQUANT_SCRATCH_BYTES = 272 << 20;
const dequantScratch = deviceScratch("linear_q.scratch");
const staging = deviceScratch("linear_q.staging");
/**
 * Bytes of a prepared x of k elements (kernels/linear_q.wgsl PREPX: 44 per 32-element block),
 * rounded up to whole vec4 (the GEMV reads it as array<vec4<u32>>: a tail word past the last
 * whole vec4 would read as out of bounds).
 */
export function preparedXBytes(k: number): number {
  return 16 * Math.ceil((44 * (k / 32)) / 16);
}

/** Bytes of the per-device prepared-x buffer: 44 bytes per 32 elements (k up to 186 k). */
const PREP_BYTES = 256 << 10;
const preparedX = deviceScratch("linear_q.prepared_x");

/** Rows of a k-wide f16 matrix that fit `bytes` (and one binding), even (slices stay on even groups). */
function sliceRows(gpu: Gpu, k: number, bytes: number): number {
  const n = Math.floor(Math.min(bytes, gpu.maxBinding) / (2 * k)) & ~1;
  if (n < 2) throw new InvalidInputError(`linear_q: rows of ${k} f16 do not fit the scratch`);
  return n;
}

/**
 * Slices of `rows` rows, at most `max` (even) each, as few and as equal as possible (a multiple of
 * 128 rows, the GEMM's tile, where that fits, else even): no narrow tail slice whose GEMM would
 * fill a few SMs.
 */
export function balancedSlices(rows: number, max: number): number[] {
  const count = Math.ceil(rows / max);
  const even = 2 * Math.ceil(rows / count / 2);
  const tiled = 128 * Math.ceil(rows / count / 128);
  const per = tiled <= max ? tiled : even;
  const out: number[] = [];
  for (let r = 0; r < rows; r += per) out.push(Math.min(per, rows - r));
  return out;
}

function checkQuant(w: Weight, what: string): QuantDType {
  if (!isQuant(w.dtype)) throw new InvalidInputError(`${what}: weight is ${w.dtype}, not q8/q4`);
  if (w.cols % QUANT_GROUP !== 0) {
    throw new InvalidInputError(`${what}: cols ${w.cols} is not a multiple of ${QUANT_GROUP}`);
  }
  return w.dtype;
}

/** Params of a chunk: the scale region's first u32 word, groups per row. */
function chunkParams(
  w: Weight,
  c: WeightChunk,
  extra: {
    n?: number;
    row0?: number;
    eps?: number;
    tile?: number;
    rk?: RopeKvEpilogue;
    m?: number;
    xs?: number;
  } = {},
) {
  const { scalesOffset } = quantLayout(c.rows, w.cols, w.dtype as QuantDType);
  const rk = extra.rk;
  return Params.pack({
    n: extra.n ?? w.rows,
    k: w.cols,
    row_start: c.rowStart,
    rows: c.rows,
    groups: w.cols / QUANT_GROUP,
    s_base: scalesOffset / 4,
    row0: extra.row0 ?? 0,
    eps: extra.eps ?? 0,
    tile: extra.tile ?? 0,
    ...ropeKvParams(rk),
    m: extra.m ?? 1,
    xs: extra.xs ?? 0,
  });
}

/**
 * y = x · wᵀ (+ bias) (+ y when `s.accumulate`) for a q8/q4 weight; kernels/linear.ts's
 * `linear()` forwards here for quantized weights.
 * @param y (m, w.rows) f32; must not alias x
 * @param x (m, w.cols) f32
 * @param bias (w.rows) f32, or null
 */
export function linearQ(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: LinearShape,
  tuning: Partial<LinearQTuning> = {},
): Dispatch[] {
  const q = checkQuant(w, "linearQ");
  const { m, norm } = s;
  const silu = s.siluMul === true;
  checkLinearCall("linearQ", y, x, w, bias, s);
  if ((s.emit || s.prepared) && m !== 1) {
    throw new InvalidInputError(`linearQ: emit / prepared x need m = 1, got m = ${m}`);
  }
  const { gemvXRows, ...gemvTuning } = tuning;
  if (m > 1) {
    const { path, t } = manyRowsPath(gpu, q, w, s, s.norm !== undefined, gemvTuning, gemvXRows);
    if (path === "xrows") return xrowsLinear(gpu, y, x, w, bias, s, t!);
    if (norm || silu) {
      throw new InvalidInputError(
        `linearQ: a fused ${norm ? "norm" : "siluMul"} at m = ${m} needs the few-row GEMV, ` +
          `which does not run here (${q}${s.int8x ? ", int8x" : ""}; check ` +
          "kernels/linear.ts fusesXTransform()); use normLinear() / siluMulLinear()",
      );
    }
    if (path === "gemm") return gemmQ(gpu, y, x, w, bias, s);
    return dequantLinear(gpu, y, x, w, bias, s, gemvXRows === false);
  }
  // An explicit tuning (benchmarks, tests) runs staged x unless it asks for prep; x given
  // prepared (s.prepared) is read as prep would write it, with no pass.
  const given = s.prepared;
  const d = gemvQTuning(q, w.rows, w.cols, tuning.xq, given !== undefined);
  const t = Object.keys(gemvTuning).length === 0 ? d : { ...d, prep: false, ...gemvTuning };
  if (given) {
    if (!t.xq) {
      throw new InvalidInputError(`linearQ: prepared x needs int8 x, tuning ${JSON.stringify(t)}`);
    }
    checkSize("prepared x", given, preparedXBytes(w.cols));
    t.prep = true;
  }
  // A rope epilogue takes row pairs: an even number of rows per row group (linear() checked the
  // rest: m = 1, one chunk, no accumulate / siluMul, the head layout).
  const rk = s.ropeKv;
  if (rk) t.rows = 2 * Math.ceil(t.rows / 2);
  // An emitting GEMV's workgroups own whole 32-row blocks: more threads (then rows) per workgroup.
  const emit = s.emit;
  const emitSilu = emit?.siluMul === true;
  if (emit) {
    const block = emitBlock(emitSilu);
    if (rk || !canEmitX(w, m, emitSilu)) {
      throw new InvalidInputError(
        `linearQ: emit needs one chunk (got ${w.chunks.length}), rows % ${block} == 0 (got ` +
          `${w.rows}) and no ropeKv`,
      );
    }
    if (emitSilu === (emit.weight !== undefined)) {
      throw new InvalidInputError("linearQ: emit takes a norm weight or siluMul, one of them");
    }
    if (emit.weight) checkSize("emit norm weight", emit.weight, w.rows * 4);
    checkSize("emit out", emit.out, preparedXBytes(emitSilu ? w.rows / 2 : w.rows));
    while (rowsPerWorkgroup(t) % block !== 0) {
      if (2 * t.wg <= gpu.limits.maxComputeInvocationsPerWorkgroup) t.wg *= 2;
      else t.rows *= 2;
    }
  }
  const pow2 = (v: number) => Number.isInteger(v) && v >= 1 && (v & (v - 1)) === 0;
  if (
    !(pow2(t.wg) && t.wg <= gpu.limits.maxComputeInvocationsPerWorkgroup) ||
    !(pow2(t.tpr) && t.tpr <= t.wg) || !(Number.isInteger(t.rows) && t.rows >= 1) ||
    !(Number.isInteger(t.tile) && t.tile >= 1)
  ) {
    throw new InvalidInputError(`linearQ: bad tuning ${JSON.stringify(t)}`);
  }
  const { xor, add } = reduction(gpu, t.tpr);
  const prep = t.prep === true;
  if (prep && !t.xq) {
    throw new InvalidInputError(`linearQ: tuning ${JSON.stringify(t)}: prep needs xq`);
  }
  // Workgroup memory: the x tile (a padding vec4 per unit), the reduction's and the norm's arrays.
  const uv = t.xq || q === "q4" ? 8 : 4; // x vec4 per unit
  const shared = (prep ? 0 : t.xq ? 40 * t.tile : 16 * t.tile * (uv + 1)) +
    4 * (add ? t.rows * t.wg / 4 : xor ? 0 : t.rows * t.wg) + (norm ? 4 * t.wg : 0) +
    (emit ? 7 * (t.wg / t.tpr) * t.rows : 0); // EMIT: the outputs, 3 values per vec4 of a block
  if (shared > gpu.limits.maxComputeWorkgroupStorageSize) {
    throw new InvalidInputError(
      `linearQ: tuning ${JSON.stringify(t)} needs ${shared} bytes of workgroup memory, over the ` +
        `device's ${gpu.limits.maxComputeWorkgroupStorageSize}`,
    );
  }
  const tile = equalTile(w.cols / (uv * 4), t.tile);
  const pre: Dispatch[] = [];
  let gx = x;
  if (given) gx = given;
  else if (prep) {
    // (11 · k / 32) u32: codes, (2^e, Σ c) pairs, Σ x² per block (kernels/linear_q.wgsl PREPX).
    const xp = preparedX(gpu, PREP_BYTES);
    if (preparedXBytes(w.cols) > xp.size) {
      throw new InvalidInputError(`linearQ: k = ${w.cols} too long for the prepared-x buffer`);
    }
    pre.push(prepareX(gpu, xp, x, w, norm, silu, t.prepThreads ?? 8));
    gx = xp;
  }
  // Bindings: x (prepared: xp), w, [bias], [norm weight unless prepared], y, then [rope table,
  // state, k cache, v cache] or [emit norm weight (not with siluMul), emit out].
  const extra = [...(bias ? [bias] : []), ...(norm && !prep ? [norm.weight] : [])];
  const yb = 2 + extra.length;
  const tail = rk
    ? [rk.table.table, rk.state, rk.k, rk.v]
    : emit
    ? [...(emit.weight ? [emit.weight] : []), emit.out]
    : [];
  const v = variant(gpu, {
    family: "linear_q",
    entry: "main",
    bindings: [
      ...extra.map(() => "read" as const),
      "read",
      "read",
      "read_write",
      ...(rk ? ["read", "read", "read_write", "read_write"] as const : []),
      ...(emit ? [...(emitSilu ? [] : ["read" as const]), "read_write" as const] : []),
    ],
    params: Params,
    defines: {
      ...gemvDefines(q, bias, s, { xor, add }, t),
      EMIT: emit !== undefined,
      XPO: emit !== undefined,
      QVEC: t.xq || emit !== undefined,
      EMIT_SILU: emitSilu,
      ...(emit
        ? emitSilu ? { EO_BINDING: yb + 1 } : { EW_BINDING: yb + 1, EO_BINDING: yb + 2 }
        : {}),
      ...ropeKvDefines(rk, yb),
      SILU: silu && !prep,
      XP: prep,
      ...(norm && !prep ? { NW_BINDING: 2 + extra.length - 1 } : {}),
      Y_BINDING: yb,
      UNROLL2: t.unroll,
      TILE: t.tile,
      XQ: t.xq,
      XPU: t.xq ? t.xpUnroll ?? 1 : 1,
    },
    code: {
      XP_STEPS: xpSteps(t.xq ? t.xpUnroll ?? 1 : 1, t.rows),
      XQ_STEPS: xpSteps(t.xq ? t.xpUnroll ?? 1 : 1, t.rows, true),
    },
  });
  const perGroup = rowsPerWorkgroup(t);
  return [
    ...pre,
    ...w.chunks.map((c) => {
      const params = chunkParams(w, c, { eps: norm?.eps ?? 0, tile, rk });
      return new Dispatch(
        gpu,
        v,
        [gx, c.buffer, ...extra, y, ...tail],
        params,
        grid2d(ceilDiv(c.rows, perGroup)),
      );
    }),
  ];
}

/**
 * How {@link linearQ} runs m > 1 rows of x over `w`: "xrows" the few-row GEMV (with its tuning `t`),
 * unless switched off (the vision tower's int8x, its {gemvXRows: false}, LINEAR_CHOICE.xrows,
 * GEMV_XROWS[dtype]) or it does not fit this device; else "gemm" the int8 dot-product GEMM
 * (kernels/gemm.ts) where the caller asks for it (s.int8x: the vision tower of visionQuant) or the
 * dtype takes it and x fits its scratch; else "dequant" (dequantize + the float product).
 */
function manyRowsPath(
  gpu: Gpu,
  q: QuantDType,
  w: Weight,
  s: Pick<LinearShape, "m" | "int8x" | "activation" | "ropeKv">,
  norm: boolean,
  gemvTuning: Partial<LinearQTuning>,
  gemvXRows?: boolean,
): { path: "xrows" | "gemm" | "dequant"; t?: LinearQTuning } {
  const { m } = s;
  const few = GEMV_XROWS[q] && !s.int8x && gemvXRows !== false && LINEAR_CHOICE.xrows &&
    m <= GEMV_XROWS_MAX && s.activation === undefined && !s.ropeKv;
  const t = few ? xrowsTuningFit(gpu, q, w, m, gemvTuning, norm) : null;
  if (t) return { path: "xrows", t };
  if (s.int8x || (PREFILL_INT8[q] && gemmQFits(gpu, m, w.cols))) return { path: "gemm" };
  return { path: "dequant" };
}

/**
 * How {@link linearQ} runs m > 1 rows of x over q8 / q4 weight `w` by default, with a fused norm
 * (`norm`) or not (under `tuning`, a few-row GEMV tuning: tests): kernels/linear.ts
 * fusesXTransform() asks, as the few-row GEMV fuses the norm / silu · mul (into q4's prepared rows,
 * into q8's staged f32 x) and no other path does.
 */
export function linearQFewRows(
  gpu: Gpu,
  w: Weight,
  m: number,
  norm: boolean,
  tuning: Partial<LinearQTuning> = {},
): "xrows" | "gemm" | "dequant" {
  return manyRowsPath(gpu, checkQuant(w, "linearQFewRows"), w, { m }, norm, tuning).path;
}

/**
 * Lanes over which the few-row GEMV sums each x row's Σx² with a fused norm (kernels/linear_q.wgsl
 * XROWS NORM), whatever its workgroup size: that follows m's bucket ({@link gemvQXRowsTuning}),
 * and summed over the workgroup's threads a row's 1 / rms — so its bits — changed with the rows
 * beside it (a batched decode row at 9–16 rows against 2–8). A thread sums NL / wg lanes' first
 * tree levels itself: workgroup memory and barriers as before. 256: the m = 1 prepared-x GEMV's
 * workgroup ({@link gemvQTuning}), whose Σx² order a row then keeps.
 */
export const XROWS_NORM_LANES = 256;

/** Bytes of the per-device prepared-x buffer of the few-row GEMV: 16 rows of k up to 93 k. */
const XROWS_PREP_BYTES = 2 << 20;
const preparedXRows = deviceScratch("linear_q.prepared_xrows");

/**
 * How a GEMV with `tpr` threads a row group reduces them: shuffles need each row group inside one
 * subgroup; subgroupAdd needs whole subgroups per group; else a tree over workgroup memory.
 */
function reduction(gpu: Gpu, tpr: number): { xor: boolean; add: boolean } {
  const sg = gpu.features.subgroups;
  const xor = sg && tpr > 1 && tpr <= (gpu.adapterInfo.subgroupMinSize ?? 0);
  const add = sg && !xor && (gpu.adapterInfo.subgroupMaxSize ?? Infinity) <= tpr;
  return { xor, add };
}

/**
 * The few-row GEMV's tuning for m rows of x over `w` ({@link gemvQXRowsTuning} under `over`),
 * or null where it cannot run on this device: its partial sums (with a fused `norm`, and each x
 * row's Σx² over the workgroup) past the workgroup memory, the prepared rows
 * past their buffer. A bad explicit tuning throws.
 */
function xrowsTuningFit(
  gpu: Gpu,
  q: QuantDType,
  w: Weight,
  m: number,
  over: Partial<LinearQTuning>,
  norm = false,
): LinearQTuning | null {
  const f32 = over.xq === undefined ? GEMV_XROWS_F32[q] : !over.xq;
  const t = { ...gemvQXRowsTuning(q, w.rows, w.cols, m, f32), ...over };
  const pow2 = (v: number) => Number.isInteger(v) && v >= 1 && (v & (v - 1)) === 0;
  const u = t.xpUnroll ?? 1;
  if (
    !(pow2(t.wg) && t.wg <= gpu.limits.maxComputeInvocationsPerWorkgroup) ||
    !(pow2(t.tpr) && t.tpr <= t.wg) || !(Number.isInteger(t.rows) && t.rows >= 1) ||
    !(Number.isInteger(u) && u >= 1) || !(Number.isInteger(t.tile) && t.tile >= 1)
  ) {
    throw new InvalidInputError(`linearQ: bad few-row tuning ${JSON.stringify(t)}`);
  }
  if (!t.xq) return xrowsSub(gpu, q, w, t, m, norm) > 0 ? t : null;
  const slots = t.rows * xrowsBucket(m);
  const { xor, add } = reduction(gpu, t.tpr);
  const shared = 4 * (add ? slots * t.wg / 4 : xor ? 0 : slots * t.wg) +
    (norm ? 4 * xrowsBucket(m) * t.wg : 0);
  if (shared > gpu.limits.maxComputeWorkgroupStorageSize) return null;
  if (m * preparedXBytes(w.cols) > Math.min(XROWS_PREP_BYTES, gpu.maxBinding)) return null;
  return t;
}

/**
 * {@link reduction} for the f32-x few-row GEMV: with one thread a row group (tpr 1: nothing to
 * reduce) the XOR variant, whose shuffle loop is empty, rather than a tree whose partials (rows ·
 * rows of x · wg) would take the workgroup memory its x needs (the tiny test model's k = 32).
 */
function xrowsReduction(gpu: Gpu, tpr: number): { xor: boolean; add: boolean } {
  return tpr === 1 && gpu.features.subgroups ? { xor: true, add: false } : reduction(gpu, tpr);
}

/** Workgroup memory the f32-x few-row GEMV's x prefers to stay within (a round of SUB units). */
const XROWS_F32_X_BYTES = 16 << 10;

/** Σx² trees the f32-x few-row GEMV with a fused norm runs at once (kernels/linear_q.wgsl NRB). */
function xrowsNormRounds(xr: number): number {
  return Math.min(xr, 4);
}

/**
 * The f32-x few-row GEMV's x units of each row staged a round (kernels/linear_q.wgsl SUB) under
 * tuning `t` for m rows: a multiple of t.tpr (so a thread's units stay m = 1's), within
 * {@link XROWS_F32_X_BYTES} where one tpr fits there, else within the workgroup memory beside the
 * reduction's and the norm's arrays, no more than a tile's; 0 where not even tpr units fit.
 */
function xrowsSub(
  gpu: Gpu,
  q: QuantDType,
  w: Weight,
  t: LinearQTuning,
  m: number,
  norm: boolean,
): number {
  const xr = xrowsBucket(m), slots = t.rows * xr, uv = q === "q4" ? 8 : 4;
  const { xor, add } = xrowsReduction(gpu, t.tpr);
  const other = 4 * (add ? slots * t.wg / 4 : xor ? 0 : slots * t.wg) +
    (norm ? 4 * (xrowsNormRounds(xr) * t.wg + xr) : 0);
  const room = gpu.limits.maxComputeWorkgroupStorageSize - other;
  const round = 16 * (uv + 1) * xr * t.tpr; // bytes of tpr units of every row, padded
  const sub = t.tpr * Math.floor(Math.min(XROWS_F32_X_BYTES, room) / round) ||
    t.tpr * Math.floor(room / round);
  const tile = equalTile(w.cols / (uv * 4), t.tile);
  return Math.max(0, Math.min(sub, t.tpr * Math.ceil(tile / t.tpr)));
}

/**
 * The defines every GEMV entry (m = 1, the few-row ones over int8 or f32 x) shares: the weight's
 * dtype, bias / accumulate / norm, the reduction and the tuning's shape.
 */
function gemvDefines(
  q: QuantDType,
  bias: BufferArg | null,
  s: LinearShape,
  { xor, add }: { xor: boolean; add: boolean },
  t: LinearQTuning,
): Defines {
  return {
    GEMV: true,
    Q4: q === "q4",
    BIAS: bias !== null,
    ACC: s.accumulate === true,
    NORM: s.norm !== undefined,
    XOR: xor,
    ADD: add,
    TREE: !xor && !add,
    WG: t.wg,
    TPR: t.tpr,
    ROWS: t.rows,
  };
}

/**
 * 1 < m ≤ GEMV_XROWS_MAX: one PREPX pass quantizes the m rows of x (each as the m = 1 GEMV's
 * PREPX would: with s.norm x ∘ nw and each block's Σx², with s.siluMul silu(gate) · up of the rows
 * [gate | up]), then per chunk the few-row GEMV (kernels/linear_q.wgsl XROWS) over all of them
 * (with s.norm each x row's outputs times its 1 / rms, from its blocks' Σx²).
 */
function xrowsLinear(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: LinearShape,
  t: LinearQTuning,
): Dispatch[] {
  const { m, norm } = s, q = w.dtype as QuantDType, xr = xrowsBucket(m);
  const silu = s.siluMul === true;
  if (!t.xq) return xrowsF32Linear(gpu, y, x, w, bias, s, t);
  const xs = preparedXBytes(w.cols) / 4; // u32 words per prepared row (whole vec4)
  const xp = preparedXRows(gpu, Math.min(XROWS_PREP_BYTES, gpu.maxBinding));
  const prep = prepareX(gpu, xp, x, w, norm, silu, 8, { m, xs });
  const u = t.xpUnroll ?? 1;
  const v = variant(gpu, {
    family: "linear_q",
    entry: "main",
    bindings: [...(bias ? ["read" as const] : []), "read", "read", "read_write"],
    params: Params,
    defines: {
      ...gemvDefines(q, bias, s, reduction(gpu, t.tpr), t),
      XROWS: true,
      XR: xr,
      XQ: true,
      XP: true,
      ...(norm ? { NL: XROWS_NORM_LANES, NLT: Math.max(1, XROWS_NORM_LANES / t.wg) } : {}),
      Y_BINDING: bias ? 3 : 2,
      TILE: 1,
      XPU: u,
    },
    code: { XR_STEPS: xrowsSteps(u, t.rows, xr) },
  });
  return [
    prep,
    ...w.chunks.map((c) =>
      new Dispatch(
        gpu,
        v,
        [xp, c.buffer, ...(bias ? [bias] : []), y],
        chunkParams(w, c, { m, xs, eps: norm?.eps ?? 0 }),
        grid2d(ceilDiv(c.rows, rowsPerWorkgroup(t))),
      )
    ),
  ];
}

/**
 * 1 < m ≤ GEMV_XROWS_MAX with f32 x (q8): per chunk the few-row GEMV (kernels/linear_q.wgsl XROWS
 * without XP) over the m rows of x as they are — with s.norm each row's x ∘ nw and outputs times
 * its 1 / rms, with s.siluMul silu(gate) · up of the rows [gate | up], as m = 1's f32-x GEMV reads
 * its one row — each row's terms and sums in that GEMV's order at the same tuning's tpr and tile.
 */
function xrowsF32Linear(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: LinearShape,
  t: LinearQTuning,
): Dispatch[] {
  const { m, norm } = s, q = w.dtype as QuantDType, xr = xrowsBucket(m);
  const silu = s.siluMul === true;
  const sub = xrowsSub(gpu, q, w, t, m, norm !== undefined);
  const uv = q === "q4" ? 8 : 4;
  // Bindings: x, w, [bias], [norm weight], y.
  const extra = [...(bias ? [bias] : []), ...(norm ? [norm.weight] : [])];
  const v = variant(gpu, {
    family: "linear_q",
    entry: "main",
    bindings: [...extra.map(() => "read" as const), "read", "read", "read_write"],
    params: Params,
    defines: {
      ...gemvDefines(q, bias, s, xrowsReduction(gpu, t.tpr), t),
      XROWS: true,
      XR: xr,
      SILU: silu,
      ...(norm ? { NW_BINDING: 1 + extra.length, NRB: xrowsNormRounds(xr) } : {}),
      Y_BINDING: 2 + extra.length,
      TILE: xr * sub,
      SUB: sub,
    },
    code: { XF_STEPS: xrowsF32Steps(t.rows, xr) },
  });
  const tile = equalTile(w.cols / (uv * 4), t.tile);
  return w.chunks.map((c) =>
    new Dispatch(
      gpu,
      v,
      [x, c.buffer, ...extra, y],
      chunkParams(w, c, { m, tile, eps: norm?.eps ?? 0 }),
      grid2d(ceilDiv(c.rows, rowsPerWorkgroup(t))),
    )
  );
}

/**
 * The PREPX pass: x (normed by nw without 1 / rms, or silu(gate) · up) as int8 blocks into xp —
 * with `rows`, each of x's m rows into its own `xs` words of xp (the few-row GEMV's).
 */
function prepareX(
  gpu: Gpu,
  xp: GPUBuffer,
  x: BufferArg,
  w: Weight,
  norm: LinearShape["norm"],
  silu: boolean,
  threads: 1 | 8,
  rows?: { m: number; xs: number },
): Dispatch {
  const v = variant(gpu, {
    family: "linear_q",
    entry: "prep",
    bindings: [...(norm ? ["read" as const] : []), "read", "read_write"],
    params: Params,
    defines: {
      GEMV: true,
      PREPX: true,
      PREP8: threads === 8,
      XPO: true,
      QVEC: true,
      XQ: true,
      ...(rows ? { XROWS: true } : {}),
      Q4: w.dtype === "q4",
      NORM: norm !== undefined,
      SILU: silu,
      ...(norm ? { NW_BINDING: 1 } : {}),
      Y_BINDING: norm ? 2 : 1,
      WG: 64,
      TPR: 1,
      ROWS: 1,
      TILE: 1,
    },
  });
  const blocks = (rows?.m ?? 1) * (w.cols / 32);
  return new Dispatch(
    gpu,
    v,
    [x, ...(norm ? [norm.weight] : []), xp],
    chunkParams(w, w.chunks[0], rows ?? {}),
    grid2d(ceilDiv(blocks, threads === 8 ? 8 : 64)),
  );
}

/**
 * m > 1: per slice of rows, dequantize into the scratch, then the f16 GEMM on that slice (at m ≤
 * GEMV_XROWS_MAX kernels/linear.ts's few-row GEMV unless `noXRows`).
 */
function dequantLinear(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: LinearShape,
  noXRows: boolean,
): Dispatch[] {
  const buf = dequantScratch(gpu, Math.min(DEQUANT_SCRATCH_BYTES, gpu.maxBinding));
  const max = sliceRows(gpu, w.cols, DEQUANT_SCRATCH_BYTES);
  const out: Dispatch[] = [];
  for (const c of w.chunks) {
    let r = 0;
    for (const n of balancedSlices(c.rows, max)) {
      out.push(dequantize(gpu, buf, w, c, r, n));
      const view: Weight = {
        dtype: "f16",
        rows: w.rows,
        cols: w.cols,
        chunks: [{ buffer: buf, rowStart: c.rowStart + r, rows: n }],
      };
      out.push(...linear(gpu, y, x, view, bias, s, noXRows ? { gemvXRows: false } : {}));
      r += n;
    }
  }
  return out;
}

/**
 * Dequantizes rows [row0, row0 + n) of chunk `c` into `out` as f16 (n, cols), row-major.
 * @param out ≥ n · cols · 2 bytes
 */
export function dequantize(
  gpu: Gpu,
  out: BufferArg,
  w: Weight,
  c: WeightChunk,
  row0: number,
  n: number,
): Dispatch {
  const q = checkQuant(w, "dequantize");
  if (
    !(Number.isInteger(row0) && Number.isInteger(n) && row0 >= 0 && n >= 1 && row0 + n <= c.rows)
  ) {
    throw new InvalidInputError(
      `dequantize: rows [${row0}, ${row0 + n}) outside the chunk's ${c.rows}`,
    );
  }
  checkSize("out", out, n * w.cols * 2);
  const v = variant(gpu, {
    family: "linear_q",
    entry: "main",
    bindings: ["read", "read_write"],
    params: Params,
    defines: { DEQUANT: true, Q4: q === "q4" },
  });
  return new Dispatch(
    gpu,
    v,
    [c.buffer, out],
    chunkParams(w, c, { n, row0 }),
    grid2d(ceilDiv((n * w.cols) / 2, 256)),
  );
}

/**
 * Quantizes n rows given as f16 (or bf16) pairs in `src` into rows [rowStart, rowStart + n) of
 * `w`, on the GPU; the rows must lie in one chunk. With an odd number of groups per row, rowStart
 * (within its chunk) must be even.
 * @param src (n, cols) f16 or bf16 bits, row-major (two per u32 word)
 * @param srcType how `src` holds its values (bf16: a checkpoint's raw bytes, no CPU conversion)
 */
export function quantizeRows(
  gpu: Gpu,
  w: Weight,
  rowStart: number,
  src: BufferArg,
  n: number,
  srcType: "f16" | "bf16" = "f16",
): Dispatch {
  const q = checkQuant(w, "quantizeRows");
  const c = w.chunks.find((c) => rowStart >= c.rowStart && rowStart < c.rowStart + c.rows);
  if (!c || !Number.isInteger(n) || n < 1 || rowStart + n > c.rowStart + c.rows) {
    throw new InvalidInputError(
      `quantizeRows: rows [${rowStart}, ${rowStart + n}) do not lie in one chunk of "${
        c?.buffer.label ?? "?"
      }" (${w.rows} rows)`,
    );
  }
  const row0 = rowStart - c.rowStart;
  if ((row0 * (w.cols / QUANT_GROUP)) % 2 !== 0) {
    throw new InvalidInputError(
      `quantizeRows: with ${
        w.cols / QUANT_GROUP
      } groups per row, start at an even row of the chunk (got ${row0})`,
    );
  }
  checkSize("src", src, n * w.cols * 2);
  const v = variant(gpu, {
    family: "linear_q",
    entry: "main",
    bindings: ["read", "read_write"],
    params: Params,
    defines: { QUANTIZE: true, Q4: q === "q4", SRC_BF16: srcType === "bf16" },
  });
  const pairs = Math.ceil((n * w.cols) / QUANT_GROUP / 2);
  return new Dispatch(
    gpu,
    v,
    [src, c.buffer],
    chunkParams(w, c, { n, row0 }),
    grid2d(ceilDiv(pairs, 64)),
  );
}

/**
 * Quantizes rows [rowStart, rowStart + n) of `w` from CPU data (f32 values, or 16-bit bits: f16 by
 * default, bf16 with `srcType` — a checkpoint's raw bytes, so loading needs no CPU conversion)
 * through a per-device staging buffer, crossing chunk borders; submits the work. Pieces start on
 * even rows when a row has an odd number of groups (uploads in even row counts satisfy this).
 */
export function writeQuantRows(
  gpu: Gpu,
  w: Weight,
  rowStart: number,
  data: Float32Array | Uint16Array,
  srcType: "f16" | "bf16" = "f16",
): void {
  checkQuant(w, "writeQuantRows");
  const n = data.length / w.cols;
  if (
    !Number.isInteger(n) || !Number.isInteger(rowStart) || rowStart < 0 || rowStart + n > w.rows
  ) {
    throw new InvalidInputError(
      `writeQuantRows: ${data.length} values from row ${rowStart} do not fit whole rows of a ` +
        `(${w.rows}, ${w.cols}) weight`,
    );
  }
  const bits = data instanceof Float32Array ? f32ToF16Bits(data) : data;
  const buf = staging(gpu, STAGING_BYTES);
  const per = sliceRows(gpu, w.cols, STAGING_BYTES);
  forEachSlice(w, rowStart, n, per, (r, len) => {
    writeArray(gpu, buf, bits.subarray((r - rowStart) * w.cols, (r - rowStart + len) * w.cols));
    const d = quantizeRows(gpu, w, r, buf, len, data instanceof Float32Array ? "f16" : srcType);
    run(gpu, [d], "quantize");
    d.destroy();
  });
}

/**
 * Fills rows [rowStart, rowStart + n) of `w` on the GPU: `produce(staging, row, len)` writes
 * `len` rows of f16 into the per-device staging buffer, then they are quantized. Used by
 * synthetic weights (a seeded fill in place of file data).
 */
export function fillQuantRows(
  gpu: Gpu,
  w: Weight,
  produce: (staging: GPUBuffer, row: number, len: number) => Dispatch,
): void {
  checkQuant(w, "fillQuantRows");
  const buf = staging(gpu, STAGING_BYTES);
  forEachSlice(w, 0, w.rows, sliceRows(gpu, w.cols, STAGING_BYTES), (r, len) => {
    const ds = [produce(buf, r, len), quantizeRows(gpu, w, r, buf, len)];
    run(gpu, ds, "quantize");
    ds.forEach((d) => d.destroy());
  });
}

/** Calls fn(row, len) over [rowStart, rowStart + n) in pieces of ≤ per rows within one chunk. */
function forEachSlice(
  w: Weight,
  rowStart: number,
  n: number,
  per: number,
  fn: (row: number, len: number) => void,
): void {
  for (const c of w.chunks) {
    const r0 = Math.max(rowStart, c.rowStart), r1 = Math.min(rowStart + n, c.rowStart + c.rows);
    for (let r = r0; r < r1; r += per) fn(r, Math.min(per, r1 - r));
  }
}

/**
 * Reads a q8/q4 weight back as codes + scales, rows in order (one readback per chunk: for tests
 * and debugging, not for inference).
 */
export async function readQuantWeight(gpu: Gpu, w: Weight): Promise<Quantized> {
  const q = checkQuant(w, "readQuantWeight");
  const codes = new Int8Array(w.rows * w.cols), scales = new Float32Array(w.rows * w.cols / 32);
  for (const c of w.chunks) {
    const l = quantLayout(c.rows, w.cols, q);
    const u = unpack(await readBytes(gpu, c.buffer, l.size), c.rows, w.cols, q, l.scalesOffset);
    codes.set(u.codes, c.rowStart * w.cols);
    scales.set(u.scales, (c.rowStart * w.cols) / 32);
  }
  return { codes, scales };
}
