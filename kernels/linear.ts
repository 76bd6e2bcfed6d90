/**
 * Linear layers (kernels/linear.wgsl): y (m, n) f32 = x (m, k) f32 · wᵀ (+ bias) with w a
 * {@link Weight} (n, k) in f32 or f16, one dispatch per weight chunk. Reference: src/ref/linear.ts.
 *
 * Performance design (where to push for issue 5):
 * - m = 1 (decode) is a GEMV and purely bandwidth-bound: 7B f16 reads 14 GB of weights per token,
 *   so tokens/s ≈ achieved bandwidth / 14 GB. Each workgroup of WG threads computes ROWS output
 *   rows; all threads stride over k with vec4 loads (8 B of f16 / 16 B of f32 per load), each x
 *   vec4 is loaded once and reused for the ROWS rows, then a subgroupAdd (fallback: shared-memory
 *   tree) reduces. Knobs: WG, ROWS, vector width (vec4<f16> = 8 B loads; 16 B loads via
 *   array<vec4<u32>> + unpack2x16float may be faster), and rows per workgroup vs workgroup count
 *   (small n like 512-row k/v projections leave SMs idle: split-k would help there).
 * - m > 1 (prefill, vision) is a shared-memory tiled GEMM: 256 threads, a (16·TM) × 64 output
 *   tile, k steps of 16, TM × 4 outputs per thread, f32 FMA throughout. It is compute-bound for
 *   large m; the next steps are 8×8 micro-tiles / larger tiles, double-buffered shared tiles, and
 *   f16 shared tiles with f16 FMA where accuracy allows (transformers computes in f32 here).
 * Measured numbers live in the report of the engineer who measured them (bench/); re-measure
 * after any change with `deno task bench`.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import type { Weight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { grid2d } from "./_grid.ts";

const Params = defineParams({ m: "u32", n: "u32", k: "u32", row_start: "u32", rows: "u32" });

/** Kernel shape knobs of {@link linear}; benchmarks override them, callers use the defaults. */
export interface LinearTuning {
  /** GEMV threads per workgroup: a power of two ≥ every subgroup size. */
  gemvWg: number;
  /** GEMV output rows per workgroup (each x element loaded once is used for all of them). */
  gemvRows: number;
  /** GEMV over f16 weights with k % 8 == 0 reads 16 bytes (8 halves) per load. */
  gemvPack8: boolean;
  /** Tiled path: each thread computes tile × tile outputs of a (16·tile)² output tile; 4 or 8. */
  tile: 4 | 8;
}

/** Default {@link LinearTuning}. */
export const LINEAR_TUNING: Readonly<LinearTuning> = {
  gemvWg: 256,
  gemvRows: 2,
  gemvPack8: true,
  tile: 4,
};
/** Shape and options of a linear call. */
export interface LinearShape {
  /** Rows of x and y. */
  m: number;
  /** Add the result to y's current contents (a fused residual add): y += x · wᵀ (+ bias). */
  accumulate?: boolean;
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
  const { m } = s;
  const t = { ...LINEAR_TUNING, ...tuning };
  if (
    !(t.gemvWg >= 4 && t.gemvWg <= gpu.limits.maxComputeInvocationsPerWorkgroup &&
      (t.gemvWg & (t.gemvWg - 1)) === 0) ||
    !(Number.isInteger(t.gemvRows) && t.gemvRows >= 1) ||
    (t.tile !== 4 && t.tile !== 8)
  ) {
    throw new InvalidInputError(`linear: bad tuning ${JSON.stringify(t)}`);
  }
  if (!Number.isInteger(m) || m < 1) {
    throw new InvalidInputError(`linear: m must be a positive integer, got ${m}`);
  }
  checkSize("x", x, m * w.cols * 4);
  checkSize("y", y, m * w.rows * 4);
  if (bias) checkSize("bias", bias, w.rows * 4);
  if (bufferOf(y) === bufferOf(x)) throw new InvalidInputError("linear: y must not alias x");
  const gemv = m === 1;
  const subgroups = gemv && gpu.features.subgroups &&
    (gpu.adapterInfo.subgroupMaxSize ?? Infinity) <= t.gemvWg;
  const pack8 = gemv && t.gemvPack8 && w.dtype === "f16" && w.cols % 8 === 0;
  const v = variant(gpu, {
    family: "linear",
    entry: "main",
    bindings: bias ? ["read", "read", "read", "read_write"] : ["read", "read", "read_write"],
    params: Params,
    defines: {
      F16: w.dtype === "f16" && !pack8,
      PACK8: pack8,
      VEC: w.cols % 4 === 0,
      BIAS: bias !== null,
      ACC: s.accumulate === true,
      GEMV: gemv,
      SUBGROUPS: subgroups,
      ...(gemv ? { WG: t.gemvWg, ROWS: t.gemvRows } : { TILE8: t.tile === 8 }),
    },
  });
  return w.chunks.map((c) => {
    const params = Params.pack({ m, n: w.rows, k: w.cols, row_start: c.rowStart, rows: c.rows });
    const grid = gemv
      ? grid2d(ceilDiv(c.rows, t.gemvRows))
      : [ceilDiv(c.rows, 16 * t.tile), ceilDiv(m, 16 * t.tile)] as const;
    const buffers = bias ? [x, c.buffer, bias, y] : [x, c.buffer, y];
    return new Dispatch(gpu, v, buffers, params, grid);
  });
}

/** The GPUBuffer behind a BufferArg. */
export function bufferOf(b: BufferArg): GPUBuffer {
  return b instanceof GPUBuffer ? b : b.buffer;
}

/** Byte size a BufferArg binds. */
export function bindSize(b: BufferArg): number {
  if (b instanceof GPUBuffer) return b.size;
  return b.size ?? b.buffer.size - (b.offset ?? 0);
}

/** Throws if `b` binds fewer than `bytes` bytes. */
export function checkSize(name: string, b: BufferArg, bytes: number): void {
  const have = bindSize(b);
  if (have < bytes) {
    throw new InvalidInputError(
      `${name} buffer "${bufferOf(b).label}" holds ${have} bytes but the shape needs ${bytes}`,
    );
  }
}
