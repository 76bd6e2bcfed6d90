/**
 * Plain-loop reference for kernels/gemm.wgsl: x quantized per row and group of 32 to int8 with an
 * f32 scale, and the int8 GEMM against a group-quantized weight.
 * @module
 */
import { GROUP, type Quantized } from "./linear_q.ts";

/** Round half to even, as WGSL's round(). */
function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Quantizes x (m, k) f32 per row and group: d = max|x| / 127 (f32), code = round(x · (1 / d)),
 * clamped to ±127 (codes 0 where d = 0). The GPU's f32 division may differ in the last bit, so a
 * code can differ by one where x · (1 / d) is within rounding of a half.
 * @param x (m · k) f32, k % group == 0
 * @param group elements per scale: 32 (gemmQ's x), or a whole head row (attention's int8 Q / K)
 * @returns codes (m · k) and scales (m · k / group) f32
 */
export function quantizeX(x: Float32Array, group = GROUP): Quantized {
  const groups = x.length / group;
  const codes = new Int8Array(x.length), scales = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    let amax = 0;
    for (let i = 0; i < group; i++) amax = Math.max(amax, Math.abs(x[g * group + i]));
    const d = Math.fround(amax / 127);
    scales[g] = d;
    const inv = d > 0 ? Math.fround(1 / d) : 0;
    for (let i = 0; i < group; i++) {
      const c = roundEven(Math.fround(x[g * group + i] * inv));
      codes[g * group + i] = Math.min(127, Math.max(-127, c));
    }
  }
  return { codes, scales };
}

/**
 * y = Σ_groups xs · ws · Σ_group xq · wq (+ bias) (+ y0), summed in f64 (exact integer group
 * sums; the GPU differs by its f32 accumulation across groups only).
 * @param xq (m, k) quantized x
 * @param wq (n, k) quantized weight
 * @param bias (n) f32 or null
 * @param y0 (m, n) f32 added to the result, or undefined
 * @returns (m, n) f32
 */
export function gemmQ(
  xq: Quantized,
  wq: Quantized,
  bias: Float32Array | null,
  m: number,
  n: number,
  k: number,
  y0?: Float32Array,
): Float32Array {
  const y = new Float32Array(m * n);
  const groups = k / GROUP;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j] : 0;
      for (let g = 0; g < groups; g++) {
        let dot = 0;
        for (let t = g * GROUP; t < (g + 1) * GROUP; t++) {
          dot += xq.codes[i * k + t] * wq.codes[j * k + t];
        }
        s += dot * xq.scales[i * groups + g] * wq.scales[j * groups + g];
      }
      y[i * n + j] = y0 ? s + y0[i * n + j] : s;
    }
  }
  return y;
}
