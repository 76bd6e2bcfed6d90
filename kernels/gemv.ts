/**
 * The resident-x GEMV (kernels/gemv.wgsl): m = 1 over f16 or q8 weights, x held in registers for
 * the whole dispatch — the decoder's gate_up with its RMSNorm and silu · up fused, and every q8
 * GEMV of a decode step (qkv with the rope + KV-write epilogue). Reference: src/ref/linear.ts
 * (normLinear, then siluMul), src/ref/rope.ts (ropeKvWrite), src/ref/linear_q.ts.
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
import { quantLayout, type Weight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { checkRopeKv, ropeKvDefines, type RopeKvEpilogue, ropeKvParams } from "./linear.ts";
import { defineParams } from "./_params.ts";

const Params = defineParams({
  ku: "u32",
  n: "u32",
  rows: "u32",
  eps: "f32",
  s_base: "u32",
  // #if ROPE (kernels/_rope_kv.wgsl, linear.ts ropeKvParams)
  half: "u32",
  rot_rows: "u32",
  kvw: "u32",
  max_rows: "u32",
  npos: "u32",
});

/** Weight dtypes the resident-x GEMV reads. */
export type GemvDType = "f16" | "q8";

/** Elements in a 16-byte unit of a row. */
const UNIT: Record<GemvDType, number> = { f16: 8, q8: 16 };

/** Shape knobs of {@link gemvResident}; benchmarks sweep them, callers use the defaults. */
export interface GemvTuning {
  /** Most threads a workgroup (and the device's limit): the fewest units per thread that fit. */
  maxThreads: number;
  /** Weight rows a batch (even with siluMul or ropeKv): their loads go out together. */
  rows: number;
  /** Workgroups of the grid (fewer where there are fewer batches). */
  groups: number;
}

/**
 * Defaults per dtype (H200, 2026-11-28; 1056 workgroups = 8 per SM of 132):
 * - f16, 4 rows a batch, ≤ 512 threads (bench/gemv_probe.ts --mlp: 7B k = 3584 at 448 threads ×
 *   1 unit 112.2 µs a layer, 2 units 128.7–130.5; QVQ-72B's 8192 would take 512 × 2);
 * - q8, 4 rows, ≤ 320 threads: in the model (bench/main.ts, 478 tokens + image, interleaved with
 *   linear_q's GEMVs) 7B q8 180.6 / 178.3 → 208.8 tok/s at 4 rows, 198.4 at 8, 169.1 at 16; 2B
 *   422.1 / 414.0 → 529.8, 454.8, 299.4 — though 16 rows ran best alone (7B plain gate_up 57.2 µs
 *   against 63–66 at 4): more rows' loads a thread than the fused variants' registers hold. k =
 *   18944 (down) ran 34.6–37.3 µs at 320 threads × 4 units against 50.7–59.5 at 608 × 2.
 */
export const GEMV_TUNING: Record<GemvDType, GemvTuning> = {
  f16: { maxThreads: 512, rows: 4, groups: 1056 },
  q8: { maxThreads: 320, rows: 4, groups: 1056 },
};

/**
 * Whether the decoder runs every m = 1 GEMV over this dtype on the resident-x kernel — qkv (norm,
 * bias, rope + KV write fused), o_proj, down_proj, lm_head — rather than gate_up alone. q8 yes:
 * plain GEMVs alone (bench/gemv_probe.ts, H200, 7B) down 36.3 µs against linear_q's 50.8, o 13.5
 * against 15.8, qkv 13.6 against 21.2; in the model 7B q8 197.1 tok/s with gate_up alone on it,
 * 208.8 with o, down and lm_head too, and qkv then 206.7 / 205.2 → 210.7 / 211.4 (2B 509.8 /
 * 510.8 → 530.4 / 530.6). f16 no: linear()'s GEMV ran down 37.6 µs against 40.9 and o 11.6
 * against 11.5, and qkv on it moved 7B f16 203.8 / 204.6 → 203.3 / 202.9 tok/s.
 */
export const GEMV_EVERY: Readonly<Record<GemvDType, boolean>> = { f16: false, q8: true };

/** Options of a resident-x GEMV. */
export interface GemvShape {
  /** Fused Qwen2RMSNorm of x: y = (w · (x ∘ weight)) / rms(x). */
  norm?: { weight: BufferArg; eps: number };
  /** w is [gate; up] (2 n rows): y = silu(gate · x) · (up · x), n = w.rows / 2 values. */
  siluMul?: boolean;
  /** y += w · x (the residual add fused); not with siluMul. */
  accumulate?: boolean;
  /** (rows) f32 added to each output; not with siluMul. */
  bias?: BufferArg;
  /**
   * The decode q/k/v projection's rope + KV-cache write as the epilogue (linear.ts
   * {@link RopeKvEpilogue}); not with siluMul or accumulate.
   */
  ropeKv?: RopeKvEpilogue;
}

/**
 * Threads and units per thread for `units` units a row: the fewest units a thread within
 * `maxThreads` and the device's workgroup limit, threads rounded up to whole multiples of 32.
 */
function layout(gpu: Gpu, units: number, maxThreads: number): { threads: number; per: number } {
  const most = Math.min(maxThreads, gpu.limits.maxComputeInvocationsPerWorkgroup);
  const per = Math.max(1, Math.ceil(units / most));
  return { threads: Math.min(most, Math.ceil(ceilDiv(units, per) / 32) * 32), per };
}

/** Whether `d` is a dtype the resident-x GEMV reads. */
export function isGemvDType(d: string): d is GemvDType {
  return d in UNIT;
}

/**
 * Whether {@link gemvResident} runs for `w` on this device: an f16 or q8 weight in one chunk
 * whose rows are whole 16-byte units (k % 8 == 0 for f16, k % 32 for q8), subgroups (the row
 * sums), and an even row count with siluMul (ropeKv: checked by gemvResident). Callers take
 * kernels/linear.ts's GEMV otherwise.
 */
export function gemvResidentFits(gpu: Gpu, w: Weight, siluMul = false): boolean {
  return isGemvDType(w.dtype) && w.chunks.length === 1 &&
    w.cols % (w.dtype === "q8" ? 32 : UNIT[w.dtype]) === 0 && gpu.features.subgroups &&
    (!siluMul || w.rows % 2 === 0);
}

/**
 * The per-thread x loads (unit j: index u{j}, its x vec4 x{j}_{c} times the norm weight, Σ x²
 * into ss) and a batch's loads and sums, written out for kernels/gemv.wgsl's LOAD_X and BATCH.
 */
function code(
  dtype: GemvDType,
  threads: number,
  per: number,
  rows: number,
): Record<string, string> {
  const U = Array.from({ length: per }, (_, j) => j);
  const R = Array.from({ length: rows }, (_, i) => i);
  const C = Array.from({ length: UNIT[dtype] / 4 }, (_, c) => c);
  const q8 = dtype === "q8";
  const loadX = U.flatMap((j) => [
    `let ok${j} = lid + ${j * threads}u < p.ku; let u${j} = min(lid + ${j * threads}u, p.ku - 1u);`,
    ...C.map((c) =>
      `let r${j}_${c} = x_at(u${j}, ${c}u, ok${j}); ss += dot(r${j}_${c}, r${j}_${c}); ` +
      `let x${j}_${c} = r${j}_${c} * nw_at(u${j}, ${c}u);`
    ),
  ]);
  const xs = (j: number) => C.map((c) => `x${j}_${c}`).join(", ");
  const batch = [
    ...R.map((i) => `let b${i} = batch_row(o0, ${i}u);`),
    ...R.flatMap((i) =>
      U.flatMap((j) => [
        `let q${i}_${j} = w[b${i} * p.ku + u${j}];`,
        ...(q8 ? [`let d${i}_${j} = scale(b${i} * (p.ku / 2u) + (u${j} >> 1u));`] : []),
      ])
    ),
    ...R.flatMap((i) => [
      `let t${i} = subgroupAdd(${
        U.map((j) => `unit_dot(q${i}_${j}, ${q8 ? `d${i}_${j}, ` : ""}${xs(j)})`).join(" + ")
      });`,
      `if (lane == 0u) { red[par * NW + sg][${i}] = t${i}; }`,
    ]),
  ];
  return { LOAD_X: loadX.join("\n  "), BATCH: batch.join("\n    ") };
}

/**
 * y = w · x (+ bias) at m = 1, x resident in registers (kernels/gemv.wgsl); with `s.norm`, x
 * RMS-normed on load; with `s.siluMul`, w is [gate; up] and y = silu(gate) · up; with
 * `s.accumulate`, y += w · x; with `s.ropeKv`, q and k rows rotated and k, v written to the cache.
 * Check {@link gemvResidentFits} first.
 * @param y (w.rows) f32, or (w.rows / 2) with siluMul
 * @param x (w.cols) f32
 * @param w (rows, k) f16 or q8, one chunk
 */
export function gemvResident(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  s: GemvShape = {},
  tuning: Partial<GemvTuning> = {},
): Dispatch {
  const silu = s.siluMul === true;
  if (!gemvResidentFits(gpu, w, silu) || !isGemvDType(w.dtype)) {
    throw new InvalidInputError(
      `gemvResident: a ${w.dtype} weight (${w.rows}, ${w.cols}) in ${w.chunks.length} chunk(s) ` +
        `does not fit (f16 or q8, one chunk, whole 16-byte units a row, subgroups, even rows ` +
        `with siluMul); use linear()`,
    );
  }
  const dtype = w.dtype;
  const t = { ...GEMV_TUNING[dtype], ...tuning };
  const pairs = silu || s.ropeKv !== undefined;
  if (!(Number.isInteger(t.rows) && t.rows >= (pairs ? 2 : 1) && (!pairs || t.rows % 2 === 0))) {
    throw new InvalidInputError(
      `gemvResident: rows a batch must be ${pairs ? "even" : "≥ 1"}, got ${t.rows}`,
    );
  }
  if (
    !(Number.isInteger(t.maxThreads) && t.maxThreads >= 1 && Number.isInteger(t.groups) &&
      t.groups >= 1)
  ) {
    throw new InvalidInputError(`gemvResident: bad tuning ${JSON.stringify(t)}`);
  }
  const rk = s.ropeKv;
  if (silu && (s.accumulate || s.bias || rk) || rk && s.accumulate) {
    throw new InvalidInputError(
      "gemvResident: siluMul takes no accumulate, bias or ropeKv, and ropeKv no accumulate",
    );
  }
  if (rk) checkRopeKv("gemvResident", w, rk);
  // Outputs: silu · up values, rope row pairs, or rows.
  const n = silu || rk ? w.rows / 2 : w.rows;
  checkSize("x", x, w.cols * 4);
  checkSize("y", y, (rk ? w.rows : n) * 4);
  if (s.norm) checkSize("norm weight", s.norm.weight, w.cols * 4);
  if (s.bias) checkSize("bias", s.bias, w.rows * 4);
  const units = w.cols / UNIT[dtype];
  const { threads, per } = layout(gpu, units, t.maxThreads);
  const sgMin = gpu.adapterInfo.subgroupMinSize ?? 4;
  // Bindings: x, w, [norm weight], [bias], y, [rope table, state, k cache, v cache].
  const inputs = [...(s.norm ? [s.norm.weight] : []), ...(s.bias ? [s.bias] : [])];
  const yb = 2 + inputs.length;
  const v = variant(gpu, {
    family: "gemv",
    entry: "main",
    bindings: [
      "read",
      "read",
      ...inputs.map(() => "read" as const),
      "read_write",
      ...(rk ? ["read", "read", "read_write", "read_write"] as const : []),
    ],
    params: Params,
    defines: {
      WG: threads,
      R: t.rows,
      NW: ceilDiv(threads, sgMin),
      U: per,
      Q8: dtype === "q8",
      NORM: s.norm !== undefined,
      SILU: silu,
      ACC: s.accumulate === true,
      BIAS: s.bias !== undefined,
      ...(s.bias ? { BIAS_BINDING: yb - 1 } : {}),
      Y_BINDING: yb,
      ...ropeKvDefines(rk, yb),
    },
    code: code(dtype, threads, per, t.rows),
  });
  const out = silu || rk ? t.rows / 2 : t.rows;
  const params = Params.pack({
    ku: units,
    n,
    rows: w.rows,
    eps: s.norm?.eps ?? 0,
    s_base: dtype === "q8" ? quantLayout(w.rows, w.cols, "q8").scalesOffset / 4 : 0,
    ...ropeKvParams(rk),
  });
  const rope = rk ? [rk.table.table, rk.state, rk.k, rk.v] : [];
  const buffers = [x, w.chunks[0].buffer, ...inputs, y, ...rope];
  return new Dispatch(gpu, v, buffers, params, [Math.min(t.groups, ceilDiv(n, out), 65535)]);
}
