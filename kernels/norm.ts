/**
 * RMSNorm / LayerNorm kernels (kernels/norm.wgsl). Reference: src/ref/norm.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { type BufferArg, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { grid2d } from "./_grid.ts";

const Params = defineParams({ rows: "u32", cols: "u32", eps: "f32" });

/** Shape of a norm call. */
export interface NormShape {
  rows: number;
  cols: number;
  eps: number;
}

/**
 * y = rmsNorm(x) · w.
 * @param x (rows, cols) f32
 * @param w (cols) f32
 * @param y (rows, cols) f32, may not alias x
 */
export function rmsNorm(gpu: Gpu, y: BufferArg, x: BufferArg, w: BufferArg, s: NormShape): Dispatch {
  const v = variant(gpu, { family: "norm", entry: "main", bindings: ["read", "read", "read_write"], params: Params });
  return new Dispatch(gpu, v, [x, w, y], Params.pack(s), grid2d(s.rows));
}

/**
 * y = layerNorm(x) · w + b.
 * @param x (rows, cols) f32
 * @param w (cols) f32
 * @param b (cols) f32
 * @param y (rows, cols) f32, may not alias x
 */
export function layerNorm(
  gpu: Gpu,
  y: BufferArg,
  x: BufferArg,
  w: BufferArg,
  b: BufferArg,
  s: NormShape,
): Dispatch {
  const v = variant(gpu, {
    family: "norm",
    entry: "main",
    bindings: ["read", "read", "read", "read_write"],
    params: Params,
    defines: { LAYER: true },
  });
  return new Dispatch(gpu, v, [x, w, b, y], Params.pack(s), grid2d(s.rows));
}
