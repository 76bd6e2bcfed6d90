/**
 * Plain-loop reference for kernels/linear.wgsl. Sums in f64, so it is the exact product of the
 * f32 inputs up to one final rounding; GPU results differ by their f32 summation error only.
 * @module
 */
import { rmsNorm } from "./norm.ts";
import { siluMul } from "./elementwise.ts";

/**
 * y = x · wᵀ (+ bias) (+ y0), PyTorch's nn.Linear with w in (out_features, in_features) layout.
 * @param x (m, k) f32
 * @param w (n, k) f32 (an f16 weight is passed as its f16-rounded values)
 * @param bias (n) f32 or null
 * @param y0 (m, n) f32 added to the result (the fused residual), or undefined
 * @returns (m, n) f32
 */
export function linear(
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  m: number,
  n: number,
  k: number,
  y0?: Float32Array,
): Float32Array {
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j] : 0;
      for (let t = 0; t < k; t++) s += x[i * k + t] * w[j * k + t];
      y[i * n + j] = y0 ? s + y0[i * n + j] : s;
    }
  }
  return y;
}

/**
 * The fused norm + linear of kernels/linear.wgsl's NORM variant: linear(rmsNorm(x) · nw).
 * @param x (m, k) f32
 * @param nw (k) f32 RMSNorm weight
 * @param w (n, k) f32 (f16-rounded values for an f16 weight)
 * @param bias (n) f32 or null
 * @param y0 (m, n) f32 added to the result, or undefined
 * @returns (m, n) f32
 */
export function normLinear(
  x: Float32Array,
  nw: Float32Array,
  eps: number,
  w: Float32Array,
  bias: Float32Array | null,
  m: number,
  n: number,
  k: number,
  y0?: Float32Array,
): Float32Array {
  return linear(rmsNorm(x, nw, m, k, eps), w, bias, m, n, k, y0);
}

/**
 * The fused siluMul + linear of kernels/linear.wgsl's SILU variant: linear(silu(gate) · up).
 * @param gateUp (m, 2k) f32 rows [gate | up]
 * @param w (n, k) f32 (f16-rounded values for an f16 weight)
 * @param bias (n) f32 or null
 * @param y0 (m, n) f32 added to the result, or undefined
 * @returns (m, n) f32
 */
export function siluMulLinear(
  gateUp: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  m: number,
  n: number,
  k: number,
  y0?: Float32Array,
): Float32Array {
  return linear(siluMul(gateUp, m, k), w, bias, m, n, k, y0);
}
