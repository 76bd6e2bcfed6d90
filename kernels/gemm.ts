/**
 * GEMM (kernels/gemm.wgsl): y (m, n) f32 = x (m, k) f32 · wᵀ (+ bias) (+ y) with w a {@link Weight}
 * (n, k) in f32 or f16, one dispatch per weight chunk — the m > 1 path of kernels/linear.ts
 * (prefill, the vision tower). Reference: src/ref/linear.ts.
 *
 * Design: f32 FMA (WebGPU reaches no tensor cores; accumulation stays f32 for parity), a WM × WN
 * thread workgroup per (8·WM) × (8·WN) output tile, 8 × 8 outputs per thread in four mat4x4
 * registers, k in steps of BK through double-buffered workgroup tiles with the next step's global
 * loads in flight during the FMAs (one barrier per step), f16 weights loaded 16 bytes at a time and
 * widened to f32 when staged. Any m, n, k works (k % 4 ≠ 0 reads scalars).
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import type { Weight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, bufferOf, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";

const Params = defineParams({ m: "u32", n: "u32", k: "u32", row_start: "u32", rows: "u32" });

/** Kernel shape knobs of {@link gemm}; benchmarks override them, callers use the defaults. */
export interface GemmTuning {
  /** Threads along m: the tile has 8·wm rows of x. */
  wm: 8 | 16;
  /** Threads along n: the tile has 8·wn weight rows (output columns). */
  wn: 8 | 16;
  /** k per step (a multiple of 8); bk / wn and bk / wm must be 1, 2 or 4 (segments per thread). */
  bk: 8 | 16 | 32;
}

/**
 * Default tuning for an (m, n) output: 128 × 128 tiles (256 threads) when they make at least two
 * waves of workgroups over a large GPU (≥ 264 tiles: 132 SMs on an H100), else 64 × 64 tiles (64
 * threads), so short prompts still fill every SM.
 */
export function gemmTuning(m: number, n: number): GemmTuning {
  const big = ceilDiv(m, 128) * ceilDiv(n, 128) >= 264;
  return big ? { wm: 16, wn: 16, bk: 16 } : { wm: 8, wn: 8, bk: 16 };
}

/**
 * y = x · wᵀ (+ bias) (+ y when `s.accumulate`), any m ≥ 1: one Dispatch per weight chunk.
 * @param y (m, w.rows) f32; must not alias x
 * @param x (m, w.cols) f32
 * @param w (w.rows, w.cols) f32 or f16
 * @param bias (w.rows) f32, or null
 * @param tuning overrides of {@link gemmTuning}'s choice (benchmarks)
 */
export function gemm(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: { m: number; accumulate?: boolean },
  tuning: Partial<GemmTuning> = {},
): Dispatch[] {
  const { m } = s;
  if (w.dtype !== "f32" && w.dtype !== "f16") {
    throw new InvalidInputError(
      `gemm: weight dtype ${w.dtype} is not f32 or f16; quantized weights go through linearQ()`,
    );
  }
  if (!Number.isInteger(m) || m < 1) {
    throw new InvalidInputError(`gemm: m must be a positive integer, got ${m}`);
  }
  const t = { ...gemmTuning(m, w.rows), ...tuning };
  const la = t.bk / t.wn, lb = t.bk / t.wm;
  const smem = 2 * t.bk * 8 * (t.wm + t.wn) * 4;
  if (
    ![8, 16].includes(t.wm) || ![8, 16].includes(t.wn) || t.bk % 8 !== 0 ||
    ![1, 2, 4].includes(la) || ![1, 2, 4].includes(lb) ||
    smem > gpu.limits.maxComputeWorkgroupStorageSize ||
    t.wm * t.wn > gpu.limits.maxComputeInvocationsPerWorkgroup
  ) {
    throw new InvalidInputError(
      `gemm: bad tuning ${JSON.stringify(t)} (segments per thread ${la}/${lb}, ${smem} bytes of ` +
        "workgroup memory); use wm, wn ∈ {8, 16} and bk ∈ {8, 16, 32} with bk / wm, bk / wn ≤ 4",
    );
  }
  const k = w.cols;
  checkSize("x", x, m * k * 4);
  checkSize("y", y, m * w.rows * 4);
  if (bias) checkSize("bias", bias, w.rows * 4);
  if (bufferOf(y) === bufferOf(x)) throw new InvalidInputError("gemm: y must not alias x");
  const w16 = w.dtype === "f16";
  const v = variant(gpu, {
    family: "gemm",
    entry: "main",
    bindings: bias ? ["read", "read", "read", "read_write"] : ["read", "read", "read_write"],
    params: Params,
    defines: {
      WM: t.wm,
      WN: t.wn,
      BK: t.bk,
      LA: la,
      LB: lb,
      LA2: la >= 2,
      LA4: la >= 4,
      LB2: lb >= 2,
      LB4: lb >= 4,
      XVEC: k % 4 === 0,
      W16: w16,
      W8: w16 && k % 8 === 0,
      WSEG: w16 && k % 8 === 0 ? "vec4<u32>" : "Seg",
      WVEC: k % 4 === 0,
      BIAS: bias !== null,
      ACC: s.accumulate === true,
      Y_BINDING: bias ? 3 : 2,
    },
  });
  return w.chunks.map((c) => {
    const params = Params.pack({ m, n: w.rows, k, row_start: c.rowStart, rows: c.rows });
    const grid = [ceilDiv(m, 8 * t.wm), ceilDiv(c.rows, 8 * t.wn)] as const;
    return new Dispatch(gpu, v, [x, c.buffer, ...(bias ? [bias] : []), y], params, grid);
  });
}
