/**
 * The resident-x GEMV (kernels/gemv.wgsl): m = 1 over f16 weights, x held in registers for the
 * whole dispatch, the decoder's gate_up with its RMSNorm and silu · up fused. Reference:
 * src/ref/linear.ts (normLinear, then siluMul).
 *
 * Why (bench/gemv_probe.ts, NVIDIA H200, 2026-11-28, 7B shapes, 28 layers of distinct weights):
 * the MLP of a decode step as kernels/linear.ts fuses it — gate_up with the norm (82 µs alone), down
 * with silu · up (43–48 µs) — ran 128.5–130.6 µs a layer; the same two GEMVs unfused run 66 µs
 * and 38 µs, but a norm pass and a silu pass between them cost more than they saved (137–146 µs).
 * This kernel's gate_up (norm and silu fused, 448 threads a workgroup, 4 rows a batch, 1056
 * workgroups) then a plain down: 112.2 µs a layer; 2B (hidden 1536): 39.2–42.5 → 32.1 µs.
 * Every workgroup re-reading x for a few rows is what the fused linear.wgsl GEMV pays for: here
 * x, the norm weight and Σ x² are read once per workgroup for its ≈ 9 batches.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import type { Weight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";

const Params = defineParams({ k8: "u32", n: "u32", rows: "u32", eps: "f32" });

/** Shape knobs of {@link gemvResident}; benchmarks sweep them, callers use the defaults. */
export interface GemvTuning {
  /** Most threads a workgroup: the fewest units of 8 elements per thread that fit (≥ 1). */
  maxThreads: number;
  /** Weight rows a batch (even with siluMul): their loads go out together. */
  rows: number;
  /** Workgroups of the grid (fewer where there are fewer batches). */
  groups: number;
}

/**
 * Defaults (bench/gemv_probe.ts --mlp, H200): 4 rows a batch, 1056 workgroups (8 per SM of 132),
 * at most 512 threads (7B's k = 3584: 448 threads × 1 unit; QVQ-72B's 8192: 512 × 2).
 */
export const GEMV_TUNING: GemvTuning = { maxThreads: 512, rows: 4, groups: 1056 };

/** Options of a resident-x GEMV. */
export interface GemvShape {
  /** Fused Qwen2RMSNorm of x: y = (w · (x ∘ weight)) / rms(x). */
  norm?: { weight: BufferArg; eps: number };
  /** w is [gate; up] (2 n rows): y = silu(gate · x) · (up · x), n = w.rows / 2 values. */
  siluMul?: boolean;
}

/** Threads and units of 8 elements per thread for k (threads: whole multiples of 32). */
function layout(k: number, maxThreads: number): { threads: number; units: number } {
  const k8 = k / 8;
  const units = Math.max(1, Math.ceil(k8 / maxThreads));
  return { threads: Math.min(maxThreads, Math.ceil(ceilDiv(k8, units) / 32) * 32), units };
}

/**
 * Whether {@link gemvResident} runs for `w` on this device: an f16 weight in one chunk with
 * k % 8 == 0 (16-byte loads), subgroups (the row sums), a workgroup of its threads allowed, and an
 * even row count with siluMul. Callers take kernels/linear.ts's GEMV otherwise.
 */
export function gemvResidentFits(
  gpu: Gpu,
  w: Weight,
  siluMul = false,
  tuning: Partial<GemvTuning> = {},
): boolean {
  const t = { ...GEMV_TUNING, ...tuning };
  return w.dtype === "f16" && w.chunks.length === 1 && w.cols % 8 === 0 &&
    gpu.features.subgroups && (!siluMul || w.rows % 2 === 0) &&
    layout(w.cols, t.maxThreads).threads <= gpu.limits.maxComputeInvocationsPerWorkgroup;
}

/**
 * The per-thread x loads (units j: index u{j}, raw rl{j}/rh{j}, times the norm weight xa{j}/xb{j})
 * and a batch's loads and sums, written out for kernels/gemv.wgsl's LOAD_X and BATCH.
 */
function code(threads: number, units: number, rows: number): Record<string, string> {
  const U = Array.from({ length: units }, (_, j) => j);
  const R = Array.from({ length: rows }, (_, i) => i);
  const loadX = U.flatMap((j) => [
    `let ok${j} = lid + ${j * threads}u < p.k8; let u${j} = min(lid + ${j * threads}u, p.k8 - 1u);`,
    `let rl${j} = x_lo(u${j}, ok${j}); let rh${j} = x_hi(u${j}, ok${j});`,
    `ss += dot(rl${j}, rl${j}) + dot(rh${j}, rh${j});`,
    `let xa${j} = rl${j} * nw_lo(u${j}); let xb${j} = rh${j} * nw_hi(u${j});`,
  ]);
  const batch = [
    ...R.map((i) => `let w${i} = batch_row(o0, ${i}u);`),
    ...R.flatMap((i) => U.map((j) => `let q${i}_${j} = w[w${i} + u${j}];`)),
    ...R.flatMap((i) => [
      `let t${i} = subgroupAdd(${U.map((j) => `unit_dot(q${i}_${j}, xa${j}, xb${j})`).join(" + ")});`,
      `if (lane == 0u) { red[par * NW + sg][${i}] = t${i}; }`,
    ]),
  ];
  return { LOAD_X: loadX.join("\n  "), BATCH: batch.join("\n    ") };
}

/**
 * y = w · x at m = 1, x resident in registers (kernels/gemv.wgsl); with `s.norm`, x RMS-normed
 * on load; with `s.siluMul`, w is [gate; up] and y = silu(gate) · up. Check
 * {@link gemvResidentFits} first.
 * @param y (w.rows) f32, or (w.rows / 2) with siluMul
 * @param x (w.cols) f32
 * @param w (rows, k) f16, one chunk
 */
export function gemvResident(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  s: GemvShape = {},
  tuning: Partial<GemvTuning> = {},
): Dispatch {
  const t = { ...GEMV_TUNING, ...tuning };
  const silu = s.siluMul === true;
  if (!gemvResidentFits(gpu, w, silu, t)) {
    throw new InvalidInputError(
      `gemvResident: a ${w.dtype} weight (${w.rows}, ${w.cols}) in ${w.chunks.length} chunk(s) ` +
        `does not fit (f16, one chunk, k % 8 == 0, subgroups, even rows with siluMul); use linear()`,
    );
  }
  if (!(Number.isInteger(t.rows) && t.rows >= (silu ? 2 : 1) && (!silu || t.rows % 2 === 0))) {
    throw new InvalidInputError(`gemvResident: rows a batch must be ${silu ? "even" : "≥ 1"}, got ${t.rows}`);
  }
  const n = silu ? w.rows / 2 : w.rows;
  checkSize("x", x, w.cols * 4);
  checkSize("y", y, n * 4);
  if (s.norm) checkSize("norm weight", s.norm.weight, w.cols * 4);
  const { threads, units } = layout(w.cols, t.maxThreads);
  const sgMin = gpu.adapterInfo.subgroupMinSize ?? 4;
  const v = variant(gpu, {
    family: "gemv",
    entry: "main",
    bindings: ["read", "read", ...(s.norm ? ["read" as const] : []), "read_write"],
    params: Params,
    defines: {
      WG: threads,
      R: t.rows,
      NW: ceilDiv(threads, sgMin),
      U: units,
      NORM: s.norm !== undefined,
      SILU: silu,
      Y_BINDING: s.norm ? 3 : 2,
    },
    code: code(threads, units, t.rows),
  });
  const out = silu ? t.rows / 2 : t.rows;
  const params = Params.pack({ k8: w.cols / 8, n, rows: w.rows, eps: s.norm?.eps ?? 0 });
  const buffers = [x, w.chunks[0].buffer, ...(s.norm ? [s.norm.weight] : []), y];
  return new Dispatch(gpu, v, buffers, params, [Math.min(t.groups, ceilDiv(n, out), 65535)]);
}
