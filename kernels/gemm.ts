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
import { bestSplit, chunkGemm } from "./linear.ts";

const Params = defineParams({
  m: "u32",
  n: "u32",
  k: "u32",
  row_start: "u32",
  rows: "u32",
  s_base: "u32", // GEMM: word offset of the chunk's f16 scales
  splits: "u32", // SPLITK: workgroups along k (wid.z)
  gspan: "u32", // SPLITK: groups of 32 k per split
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
   * this one's products and stored after them. Only at td 16, g 2 with rm 2, rn 1 (the default)
   * or rm 1, rn 2 (the default at m ≤ 64, {@link gemmQChoice}): 1.07–1.5× the single-buffered
   * kernel on every shape measured (H200, 2026-11-28 12:25, bench/_gemm.ts, ms single /
   * pipelined: 7B q4 at 478 rows gate_up 2.94 / 2.68, down 1.76 / 1.56, o 0.36 / 0.32, qkv 0.55 /
   * 0.49; at 1564 rows gate_up 9.43 / 8.11; vision q4 at 478 patches fc2 0.33 / 0.22; 72B at 478
   * rows gate_up q4 10.14 / 8.70, q8 10.26 / 8.53); loading two k steps ahead since, 1.07–1.19×
   * more (12:44: 7B q4 gate_up 2.46 ms, down 1.30).
   */
  pipe?: boolean;
  /**
   * Pipelined only: k split over this many workgroups per output tile (partial products, then
   * kernels/linear.ts splitSum). Default: {@link gemmQChoice}.
   */
  splitK?: number;
  /**
   * Pipelined q4 only, with rm 1, rn 2: 32 × 256 tiles of 32 × 8 threads (kernels/gemm.wgsl
   * NARROW) instead of 64 × 128 — the default at m ≤ 32 ({@link gemmQChoice}).
   */
  narrow?: boolean;
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

/**
 * The tiling and k split {@link gemmQ} runs without a tuning override, for m rows of x times a
 * `dtype` weight chunk of `rows` rows and k columns: at m ≤ 64, 64 × 128 tiles (rm 1, rn 2; q4 at
 * m ≤ 32: 32 × 256, `narrow`) with k split s ≤ 8 ways where kernels/linear.ts splitTime() models
 * it fastest (≈ 2 µs a k step of 64; partials within GEMM_SPLIT_MAX_BYTES); above,
 * {@link GEMM_Q_TUNING}'s 128 × 64, unsplit.
 * Why: a tile's k steps take as long whether its rows are x rows or padding. At 16 and at 40 rows
 * every tall-tile shape took the same time (H200, 2026-11-28 22:51, bench/_gemm.ts, q4, ms at m = 16
 * / 40: 7B qkv 0.125 / 0.129, gate_up 0.582 / 0.619, down 0.606 / 0.611; 72B qkv 0.536 / 0.547,
 * o 0.270 / 0.278, down 0.977 / 0.99), so a 40-token prompt (a chat's next turn from the prompt
 * cache) ran at a third of the rate of a long one; and with few tiles (72B down at 40 rows: 128)
 * most SMs idled, which splitting k over workgroups fills. The 32 × 256 tile at m ≤ 32 (23:49,
 * ms at 16 rows, 64 × 128 → 32 × 256, both split as chosen): 72B qkv 0.206 → 0.135, o 0.167 →
 * 0.109, gate_up 0.991 → 0.622, down 0.520 → 0.311 (BENCHMARKS.md).
 */
export function gemmQChoice(
  m: number,
  rows: number,
  k: number,
  dtype: "q8" | "q4",
): Pick<GemmQTuning, "rm" | "rn" | "splitK" | "narrow"> {
  if (m > 64) return { rm: 2, rn: 1, splitK: 1 };
  const narrow = dtype === "q4" && m <= 32;
  const tiles = narrow ? ceilDiv(m, 32) * ceilDiv(rows, 256) : ceilDiv(m, 64) * ceilDiv(rows, 128);
  const splitK = bestSplit(tiles, ceilDiv(k / 32, 2), 2, m * rows * 4);
  return narrow ? { rm: 1, rn: 2, splitK, narrow } : { rm: 1, rn: 2, splitK };
}

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
  const params = Params.pack({ m, n: 0, k, row_start: 0, rows: 0, s_base: 0, splits: 0, gspan: 0 });
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
 * per-device scratch, then one GEMM dispatch per weight chunk (with split k, into the partials
 * scratch, and a sum pass). The dispatches share those scratches with every other gemmQ() and
 * linear() call's: run them in order, with no other gemmQ() dispatch between them (one layer's
 * list after another is fine).
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
  // Without a kernel override the tiling and split follow the shape (gemmQChoice).
  const auto = tuning.td === undefined && tuning.rm === undefined && tuning.rn === undefined &&
    tuning.g === undefined && tuning.pipe === undefined && tuning.narrow === undefined;
  const rows = Math.max(...w.chunks.map((c) => c.rows));
  const choice = auto ? gemmQChoice(m, rows, k, w.dtype as "q8" | "q4") : {};
  const t = { ...GEMM_Q_TUNING, ...choice, ...tuning };
  const tall = t.rm === 2 && t.rn === 1, wide = t.rm === 1 && t.rn === 2;
  const pipeShape = t.td === 16 && t.g === 2 && (tall || wide);
  const pipe = tuning.pipe ?? pipeShape;
  const narrow = t.narrow === true;
  const splitK = t.splitK ?? 1;
  if (
    ![8, 16].includes(t.td) || ![1, 2].includes(t.rm) || ![1, 2].includes(t.rn) ||
    ![1, 2, 4].includes(t.g) || (pipe && !pipeShape) || !Number.isInteger(splitK) ||
    splitK < 1 || (splitK > 1 && !pipe) || (narrow && (!pipe || !wide || w.dtype !== "q4"))
  ) {
    throw new InvalidInputError(
      `gemmQ: bad tuning ${JSON.stringify(t)}; td ∈ {8, 16}, rm, rn ∈ {1, 2}, g ∈ {1, 2, 4}; ` +
        "pipe only at td 16, g 2 with rm 2, rn 1 or rm 1, rn 2; splitK a positive integer, " +
        "above 1 only pipelined; narrow only pipelined at rm 1, rn 2 over q4",
    );
  }
  // Threads along n and m: NARROW's 32 × 8, else td².
  const [tdn, tdm] = narrow ? [32, 8] : [t.td, t.td];
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
  // k in groups of 32, gspan a split (whole k steps of 2 groups); the real split count.
  const groups = k / 32;
  const gspan = ceilDiv(ceilDiv(groups, splitK), 2) * 2;
  const splits = ceilDiv(groups, gspan), split = splits > 1;
  const v = variant(gpu, {
    family: "gemm",
    entry: "main",
    bindings: bias && !split
      ? ["read", "read", "read", "read", "read_write"]
      : ["read", "read", "read", "read_write"],
    params: Params,
    defines: {
      Q4: w.dtype === "q4",
      QPIPE: pipe,
      WIDE: pipe && wide && !narrow,
      NARROW: narrow,
      SPLITK: split,
      TDN: tdn,
      TDM: tdm,
      RM: t.rm,
      RN: t.rn,
      G: t.g,
      G2: t.g >= 2,
      G4: t.g === 4,
      RM2: t.rm === 2,
      RN2: t.rn === 2,
      // With split-k the sum pass adds the bias, the activation and the old y.
      BIAS: !split && bias !== null,
      ACC: !split && s.accumulate === true,
      QGELU: !split && s.activation === "quick_gelu",
      Y_BINDING: bias && !split ? 4 : 3,
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
      splits,
      gspan,
    });
    const grid = [ceilDiv(m, 4 * tdm * t.rm), ceilDiv(c.rows, 4 * tdn * t.rn), splits] as const;
    out.push(
      ...chunkGemm(gpu, v, [xq, xs, c.buffer], params, grid, y, bias, {
        ...s,
        n: w.rows,
        rowStart: c.rowStart,
        rows: c.rows,
        splits,
      }),
    );
  }
  return out;
}
