/**
 * Test helpers shared by the kernel tests.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { createWeight, type Weight, type WeightDType, writeWeightRows } from "../src/gpu/tensor.ts";

/**
 * Uploads `data` (rows, cols) f32 as a Weight of `dtype`; returns it and the values the GPU
 * holds (f16-rounded for f16), which is what a kernel's result must be compared against.
 */
export function uploadWeight(
  gpu: Gpu,
  data: Float32Array,
  rows: number,
  cols: number,
  dtype: WeightDType,
  label: string,
  maxChunkBytes?: number,
): { w: Weight; held: Float32Array } {
  const w = createWeight(gpu, rows, cols, dtype, label, maxChunkBytes);
  writeWeightRows(gpu, w, 0, data);
  return { w, held: dtype === "f16" ? data.map(Math.f16round) : data };
}
