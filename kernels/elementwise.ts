/**
 * Elementwise kernels (kernels/elementwise.wgsl): residual add, bias add, activations (exact GELU,
 * QuickGELU, SiLU), the gated MLP's silu(gate) · up, and row scatter/copy. Reference:
 * src/ref/elementwise.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, bufferOf, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import type { Defines } from "./_preprocess.ts";
import { grid2d } from "./_grid.ts";

const Params = defineParams({ n: "u32", cols: "u32", src_row: "u32", dst_row: "u32" });
const WG = 256;

/** Activation functions {@link activation} applies. */
export type Activation = "gelu" | "quickGelu" | "silu";

const ACT_DEFINE: Record<Activation, string> = {
  gelu: "GELU",
  quickGelu: "QUICK_GELU",
  silu: "SILU",
};

/** Whether two bindings are the same bytes (same buffer, same offset). */
function sameBinding(a: BufferArg, b: BufferArg): boolean {
  const off = (x: BufferArg) => (x instanceof GPUBuffer ? 0 : x.offset ?? 0);
  return bufferOf(a) === bufferOf(b) && off(a) === off(b);
}

/** WebGPU forbids binding one buffer as writable and readable in one dispatch. */
function assertNoAlias(what: string, out: BufferArg, ...ins: BufferArg[]): void {
  for (const b of ins) {
    if (bufferOf(b) === bufferOf(out)) {
      throw new InvalidInputError(
        `${what}: the output buffer "${bufferOf(out).label}" is also an input; use another buffer`,
      );
    }
  }
}

function positive(what: string, v: Record<string, number>): void {
  for (const [k, x] of Object.entries(v)) {
    if (!Number.isInteger(x) || x < 1) {
      throw new InvalidInputError(`${what}: ${k} must be a positive integer, got ${x}`);
    }
  }
}

/** Builds a flat-grid Dispatch of the elementwise family over `n` elements. */
function flatDispatch(
  gpu: Gpu,
  entry: string,
  defines: Defines,
  buffers: BufferArg[],
  writable: number,
  p: { n: number; cols?: number; src_row?: number; dst_row?: number },
): Dispatch {
  const v = variant(gpu, {
    family: "elementwise",
    entry,
    bindings: buffers.map((_, i) => (i === writable ? "read_write" : "read")),
    params: Params,
    defines,
  });
  const params = Params.pack({
    n: p.n,
    cols: p.cols ?? 1,
    src_row: p.src_row ?? 0,
    dst_row: p.dst_row ?? 0,
  });
  return new Dispatch(gpu, v, buffers, params, grid2d(ceilDiv(p.n, WG)));
}

/**
 * y = a + b over n elements; y may be a (or b) itself, for the residual add `h += attn`.
 * @param y (n) f32
 * @param a (n) f32
 * @param b (n) f32
 */
export function add(gpu: Gpu, y: BufferArg, a: BufferArg, b: BufferArg, n: number): Dispatch {
  positive("add", { n });
  for (const [name, buf] of [["y", y], ["a", a], ["b", b]] as const) checkSize(name, buf, n * 4);
  if (sameBinding(y, b) && !sameBinding(y, a)) [a, b] = [b, a];
  if (sameBinding(y, a)) {
    assertNoAlias("add", y, b);
    return flatDispatch(gpu, "add", { ADD: true, INPLACE: true }, [b, y], 1, { n });
  }
  assertNoAlias("add", y, a, b);
  return flatDispatch(gpu, "add", { ADD: true }, [a, b, y], 2, { n });
}

/**
 * y += bias per row.
 * @param y (rows, cols) f32, in place
 * @param bias (cols) f32
 */
export function addBias(
  gpu: Gpu,
  y: BufferArg,
  bias: BufferArg,
  s: { rows: number; cols: number },
): Dispatch {
  positive("addBias", s);
  checkSize("y", y, s.rows * s.cols * 4);
  checkSize("bias", bias, s.cols * 4);
  assertNoAlias("addBias", y, bias);
  return flatDispatch(gpu, "add", { ADD: true, INPLACE: true, BCAST: true }, [bias, y], 1, {
    n: s.rows * s.cols,
    cols: s.cols,
  });
}

/**
 * y = f(x) over n elements; y may be x itself.
 * `gelu` is exact (erf-based, torch's default), `quickGelu` x·sigmoid(1.702x), `silu` x·sigmoid(x).
 * @param y (n) f32
 * @param x (n) f32
 */
export function activation(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  n: number,
  fn: Activation,
): Dispatch {
  positive(fn, { n });
  if (!(fn in ACT_DEFINE)) throw new InvalidInputError(`activation: unknown function "${fn}"`);
  checkSize("x", x, n * 4);
  checkSize("y", y, n * 4);
  const defines = { UNARY: true, [ACT_DEFINE[fn]]: true };
  if (sameBinding(y, x)) {
    return flatDispatch(gpu, "unary", { ...defines, INPLACE: true }, [y], 0, { n });
  }
  assertNoAlias(fn, y, x);
  return flatDispatch(gpu, "unary", defines, [x, y], 1, { n });
}

/** y = gelu(x) (exact, erf-based) over n elements; y may be x. */
export function gelu(gpu: Gpu, y: BufferArg, x: BufferArg, n: number): Dispatch {
  return activation(gpu, y, x, n, "gelu");
}

/** y = x · sigmoid(1.702 · x) over n elements (the Qwen2-VL vision MLP's "quick_gelu"); y may be x. */
export function quickGelu(gpu: Gpu, y: BufferArg, x: BufferArg, n: number): Dispatch {
  return activation(gpu, y, x, n, "quickGelu");
}

/**
 * y = silu(gate) · up, the gated MLP after one linear over the concatenated [gate_proj; up_proj].
 * @param y (rows, cols) f32
 * @param gateUp (rows, 2·cols) f32, each row [gate | up]
 */
export function siluMul(
  gpu: Gpu,
  y: BufferArg,
  gateUp: BufferArg,
  s: { rows: number; cols: number },
): Dispatch {
  positive("siluMul", s);
  checkSize("gateUp", gateUp, s.rows * 2 * s.cols * 4);
  checkSize("y", y, s.rows * s.cols * 4);
  assertNoAlias("siluMul", y, gateUp);
  return flatDispatch(gpu, "silu_mul", { SILU_MUL: true }, [gateUp, y], 1, {
    n: s.rows * s.cols,
    cols: s.cols,
  });
}

/**
 * dst[rowIdx[i]] = src[i] for i < n: places image embeddings at the `<|image_pad|>` positions.
 * Indices must be distinct and in range (dst rows); the GPU does not check them.
 * @param dst (≥ max(rowIdx) + 1, cols) f32
 * @param src (n, cols) f32
 * @param rowIdx (n) u32
 */
export function scatterRows(
  gpu: Gpu,
  dst: BufferArg,
  src: BufferArg,
  rowIdx: BufferArg,
  s: { n: number; cols: number },
): Dispatch {
  positive("scatterRows", s);
  checkSize("src", src, s.n * s.cols * 4);
  checkSize("rowIdx", rowIdx, s.n * 4);
  assertNoAlias("scatterRows", dst, src, rowIdx);
  return flatDispatch(gpu, "scatter_rows", { SCATTER: true }, [src, rowIdx, dst], 2, {
    n: s.n * s.cols,
    cols: s.cols,
  });
}

/**
 * Copies n rows: dst rows [dstRow, dstRow + n) = src rows [srcRow, srcRow + n) (e.g. the last
 * prompt position's hidden state into the lm_head input). Inside a compute pass, unlike
 * copyBufferToBuffer, and without the 256-byte binding offset alignment.
 * @param dst (≥ dstRow + n, cols) f32
 * @param src (≥ srcRow + n, cols) f32
 */
export function copyRows(
  gpu: Gpu,
  dst: BufferArg,
  src: BufferArg,
  s: { n: number; cols: number; srcRow?: number; dstRow?: number },
): Dispatch {
  const srcRow = s.srcRow ?? 0, dstRow = s.dstRow ?? 0;
  positive("copyRows", { n: s.n, cols: s.cols });
  if (!Number.isInteger(srcRow) || srcRow < 0 || !Number.isInteger(dstRow) || dstRow < 0) {
    throw new InvalidInputError(
      `copyRows: srcRow ${srcRow} and dstRow ${dstRow} must be integers ≥ 0`,
    );
  }
  checkSize("src", src, (srcRow + s.n) * s.cols * 4);
  checkSize("dst", dst, (dstRow + s.n) * s.cols * 4);
  assertNoAlias("copyRows", dst, src);
  return flatDispatch(gpu, "copy_rows", { COPY: true }, [src, dst], 1, {
    n: s.n * s.cols,
    cols: s.cols,
    src_row: srcRow,
    dst_row: dstRow,
  });
}
