/**
 * Int8 dot-product GEMM for q8/q4 weights at m > 1 (kernels/gemm.wgsl): x (m, k) f32 is quantized
 * per row and 32-element group to int8 codes with an f32 scale (llama.cpp's Q8_1 / MMQ scheme),
 * then y (m, n) f32 = Σ_groups xs · ws · Σ xq · wq (+ bias) (+ y) with the integer sums by
 * dot4I8Packed and f32 accumulation across groups. Reference: src/ref/gemm_q.ts.
 *
 * Why: WebGPU reaches no tensor cores; scalar f32 FMA tops out at 28–52 TFLOP/s on an H100 and the
 * tiled f32 GEMM of kernels/linear.ts runs 12–23 TFLOP/s, while dot4I8Packed measured ≈ 80 TOP/s.
 * Quantizing x costs accuracy the f32 path does not have (each x element rounds to 1/254 of its
 * group's max|x|), which is why only already-quantized weights take this path.
 *
 * A first f32 GEMM in this family (double-buffered tiles, one barrier per k step, 16-byte f16
 * loads; commit ee45984) ran 13–17 TFLOP/s against the plain tile8 kernel's 12–23 on the same
 * H100 run, and was dropped.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { deviceScratch } from "../src/gpu/buffers.ts";
import { isQuant, quantLayout, type Weight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, bufferOf, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { grid2d } from "./_grid.ts";

const Params = defineParams({
  m: "u32",
  n: "u32",
  k: "u32",
  row_start: "u32",
  rows: "u32",
  s_base: "u32", // GEMM: word offset of the chunk's f16 scales
});

/** Kernel shape knobs of {@link gemmQ}; benchmarks override them, callers use the defaults. */
export interface GemmQTuning {
  /** Threads per tile dimension (8 or 16): a workgroup of td² threads. */
  td: 8 | 16;
  /** Output tile rows: 4 · td · rm (rm = 1 or 2: 4 · rm rows per thread). */
  rm: 1 | 2;
  /** Output tile columns: 4 · td · rn (rn = 1 or 2). */
  rn: 1 | 2;
  /** Groups of 32 k per step (1, 2 or 4). */
  g: 1 | 2 | 4;
  /**
   * Pipelined (QPIPE): two shared buffers, one barrier per k step, the next step loaded before
   * this one's products and stored after them. Only at td 16, rm 2, rn 1, g 2, where it is the
   * default: 1.07–1.5× the single-buffered kernel on every shape measured (H200, 2026-11-28 12:25,
   * bench/_gemm.ts, ms single / pipelined: 7B q4 at 478 rows gate_up 2.94 / 2.68, down 1.76 /
   * 1.56, o 0.36 / 0.32, qkv 0.55 / 0.49; at 1564 rows gate_up 9.43 / 8.11; vision q4 at 478
   * patches fc2 0.33 / 0.22; 72B at 478 rows gate_up q4 10.14 / 8.70, q8 10.26 / 8.53); loading
   * two k steps ahead since, 1.07–1.19× more (12:44: 7B q4 gate_up 2.46 ms, down 1.30).
   */
  pipe?: boolean;
}

/**
 * Default tuning: 128 × 64 tiles (16² threads, 8 × 4 outputs each), 2 groups per k step. On an
 * H200 (bench/_gemm.ts, q8 and q4 at the vision / 7B / 72B prefill shapes, one run) it was the
 * fastest of 128², 64² (16² or 8² threads) and 128 × 64 tiles on 32 of 36 shapes at 22–40 TOP/s,
 * 1.1–2.6× linear_q's dequantize + f32 GEMM; two outliers at 23 TOP/s against 30 for 128² (vision
 * fc1 q8 and qkv q4 at m = 5120) ran 33–34 in the other dtype. It runs pipelined
 * ({@link GemmQTuning.pipe}).
 */
export const GEMM_Q_TUNING: Readonly<GemmQTuning> = { td: 16, rm: 2, rn: 1, g: 2 };

/** The quantized x: codes and scales, in one per-device scratch buffer grown when too small. */
const xScratch = deviceScratch("gemm.xq");

/**
 * Quantizes x (m, k) f32 per row and group of 32 into int8 codes `xq` and f32 scales `xs`.
 * @param xq (m, k / 4) u32, 4 int8 codes each
 * @param xs (m, k / 32) f32
 */
export function quantizeX(
  gpu: Gpu,
  xq: BufferArg,
  xs: BufferArg,
  x: BufferArg,
  s: { m: number; k: number },
): Dispatch {
  const { m, k } = s;
  if (!Number.isInteger(m) || m < 1 || !Number.isInteger(k) || k < 32 || k % 32 !== 0) {
    throw new InvalidInputError(
      `quantizeX: m = ${m} must be a positive integer and k = ${k} a positive multiple of 32`,
    );
  }
  checkSize("x", x, m * k * 4);
  checkSize("xq", xq, m * k);
  checkSize("xs", xs, (m * k / 32) * 4);
  const v = variant(gpu, {
    family: "gemm",
    entry: "main",
    bindings: ["read", "read_write", "read_write"],
    params: Params,
    defines: { QUANTIZE_X: true },
  });
  const params = Params.pack({ m, n: 0, k, row_start: 0, rows: 0, s_base: 0 });
  return new Dispatch(gpu, v, [x, xq, xs], params, grid2d(ceilDiv(m * k / 32, 256)));
}

/** Bytes of x (m, k) quantized: codes, then the f32 scales from a 256-byte boundary. */
function xBytes(m: number, k: number): { codes: number; total: number } {
  const codes = Math.ceil(m * k / 256) * 256;
  return { codes, total: codes + m * k / 32 * 4 };
}

/** Whether {@link gemmQ} takes an (m, k) x: its quantized form fits one binding. */
export function gemmQFits(gpu: Gpu, m: number, k: number): boolean {
  return xBytes(m, k).total <= gpu.maxBinding;
}

/**
 * y = x · wᵀ (+ bias) (+ y when `s.accumulate`) for a q8/q4 weight, x quantized to int8 on the
 * way; with `s.activation` "quick_gelu" (not with accumulate) y = quick_gelu(x · wᵀ + bias), the
 * vision MLP's fc1 (kernels/linear.ts LinearShape.activation): a quantize dispatch into a
 * per-device scratch, then one GEMM dispatch per weight chunk. The dispatches share that scratch
 * with every other gemmQ() call's: run them in order, with no other gemmQ() dispatch between them
 * (one layer's list after another is fine).
 * @param y (m, w.rows) f32; must not alias x
 * @param x (m, w.cols) f32
 * @param w (w.rows, w.cols) q8 or q4 (src/gpu/tensor.ts)
 * @param bias (w.rows) f32, or null
 * @param tuning overrides of {@link GEMM_Q_TUNING} (benchmarks)
 */
export function gemmQ(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: Weight,
  bias: BufferArg | null,
  s: { m: number; accumulate?: boolean; activation?: "quick_gelu" },
  tuning: Partial<GemmQTuning> = {},
): Dispatch[] {
  const { m } = s;
  if (s.activation !== undefined && (s.activation !== "quick_gelu" || s.accumulate)) {
    throw new InvalidInputError(
      `gemmQ: activation ${
        JSON.stringify(s.activation)
      } must be "quick_gelu" and without accumulate`,
    );
  }
  const k = w.cols;
  if (!isQuant(w.dtype)) {
    throw new InvalidInputError(
      `gemmQ: weight dtype ${w.dtype} is not q8 or q4; f32/f16 weights go through linear()`,
    );
  }
  if (!Number.isInteger(m) || m < 1) {
    throw new InvalidInputError(`gemmQ: m must be a positive integer, got ${m}`);
  }
  const t = { ...GEMM_Q_TUNING, ...tuning };
  const pipeShape = t.td === 16 && t.rm === 2 && t.rn === 1 && t.g === 2;
  const pipe = tuning.pipe ?? pipeShape;
  if (
    ![8, 16].includes(t.td) || ![1, 2].includes(t.rm) || ![1, 2].includes(t.rn) ||
    ![1, 2, 4].includes(t.g) || (pipe && !pipeShape)
  ) {
    throw new InvalidInputError(
      `gemmQ: bad tuning ${JSON.stringify(t)}; td ∈ {8, 16}, rm, rn ∈ {1, 2}, g ∈ {1, 2, 4}; ` +
        "pipe only at td 16, rm 2, rn 1, g 2",
    );
  }
  checkSize("y", y, m * w.rows * 4);
  if (bias) checkSize("bias", bias, w.rows * 4);
  if (bufferOf(y) === bufferOf(x)) throw new InvalidInputError("gemmQ: y must not alias x");
  // Codes then scales, the scales 256-byte aligned as a binding offset must be.
  const { codes: codeBytes, total } = xBytes(m, k), scaleBytes = total - codeBytes;
  if (!gemmQFits(gpu, m, k)) {
    throw new InvalidInputError(
      `gemmQ: x of ${m} × ${k} quantizes to ${total} bytes, over one binding ` +
        `(${gpu.maxBinding}); pass fewer rows at a time`,
    );
  }
  const buf = xScratch(gpu, total);
  const xq = { buffer: buf, offset: 0, size: m * k };
  const xs = { buffer: buf, offset: codeBytes, size: scaleBytes };
  const v = variant(gpu, {
    family: "gemm",
    entry: "main",
    bindings: bias
      ? ["read", "read", "read", "read", "read_write"]
      : ["read", "read", "read", "read_write"],
    params: Params,
    defines: {
      Q4: w.dtype === "q4",
      QPIPE: pipe,
      TD: t.td,
      RM: t.rm,
      RN: t.rn,
      G: t.g,
      G2: t.g >= 2,
      G4: t.g === 4,
      RM2: t.rm === 2,
      RN2: t.rn === 2,
      BIAS: bias !== null,
      ACC: s.accumulate === true,
      QGELU: s.activation === "quick_gelu",
      Y_BINDING: bias ? 4 : 3,
    },
  });
  const out = [quantizeX(gpu, xq, xs, x, { m, k })];
  for (const c of w.chunks) {
    const params = Params.pack({
      m,
      n: w.rows,
      k,
      row_start: c.rowStart,
      rows: c.rows,
      s_base: quantLayout(c.rows, k, w.dtype).scalesOffset / 4,
    });
    const grid = [ceilDiv(m, 4 * t.td * t.rm), ceilDiv(c.rows, 4 * t.td * t.rn)] as const;
    const buffers = [xq, xs, c.buffer, ...(bias ? [bias] : []), y];
    out.push(new Dispatch(gpu, v, buffers, params, grid));
  }
  return out;
}
