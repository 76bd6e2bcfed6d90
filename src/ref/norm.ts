/**
 * Plain-loop references for kernels/norm.wgsl. Row-major, f32/f64 math.
 * @module
 */

/**
 * RMSNorm as Qwen2RMSNorm: `x / sqrt(mean(x²) + eps) * w`, variance in f32 like transformers.
 * @param x (rows, cols) f32
 * @param w (cols) f32
 * @returns (rows, cols) f32
 */
export function rmsNorm(
  x: Float32Array,
  w: Float32Array,
  rows: number,
  cols: number,
  eps: number,
): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += x[r * cols + c] ** 2;
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let c = 0; c < cols; c++) out[r * cols + c] = Math.fround(x[r * cols + c] * inv) * w[c];
  }
  return out;
}

/**
 * LayerNorm (biased variance, as torch.nn.LayerNorm).
 * @param x (rows, cols) f32
 * @param w (cols) f32
 * @param b (cols) f32
 * @returns (rows, cols) f32
 */
export function layerNorm(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  rows: number,
  cols: number,
  eps: number,
): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let c = 0; c < cols; c++) mean += x[r * cols + c];
    mean /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[r * cols + c] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / cols + eps);
    for (let c = 0; c < cols; c++) out[r * cols + c] = (x[r * cols + c] - mean) * inv * w[c] + b[c];
  }
  return out;
}
