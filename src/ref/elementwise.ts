/**
 * Plain-loop references for kernels/elementwise.wgsl, in f64 (the results are rounded to f32 once).
 * @module
 */

/**
 * erf(x) in f64, accurate to ~1e-15: Maclaurin series below |x| = 3, the continued fraction of
 * erfc above (where erf is within 2e-5 of ±1).
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let sum = 0, term = x;
    for (let n = 0; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      sum += term / (2 * n + 1);
      term *= -x * x / (n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  let cf = 0;
  for (let k = 60; k >= 1; k--) cf = k / 2 / (ax + cf);
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + cf));
}

/** Applies `f` to each element, as f32. */
function map(x: Float32Array, f: (v: number) => number): Float32Array {
  return Float32Array.from(x, f);
}

/** torch.nn.functional.gelu(x) (approximate="none"): x · ½ · (1 + erf(x / √2)). */
export function gelu(x: Float32Array): Float32Array {
  return map(x, (v) => v * 0.5 * (1 + erf(v / Math.SQRT2)));
}

/** x · sigmoid(1.702 · x). */
export function quickGelu(x: Float32Array): Float32Array {
  return map(x, (v) => v / (1 + Math.exp(-1.702 * v)));
}

/** x · sigmoid(x). */
export function silu(x: Float32Array): Float32Array {
  return map(x, (v) => v / (1 + Math.exp(-v)));
}

/** a + b elementwise; b of length cols is broadcast over rows. */
export function add(a: Float32Array, b: Float32Array): Float32Array {
  return Float32Array.from(a, (v, i) => v + b[i % b.length]);
}

/**
 * silu(gate) · up.
 * @param gateUp (rows, 2·cols) f32, rows [gate | up]
 * @returns (rows, cols) f32
 */
export function siluMul(gateUp: Float32Array, rows: number, cols: number): Float32Array {
  const y = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const g = gateUp[r * 2 * cols + c];
      y[r * cols + c] = (g / (1 + Math.exp(-g))) * gateUp[r * 2 * cols + cols + c];
    }
  }
  return y;
}

/**
 * dst[rowIdx[i]] = src[i], on a copy of dst.
 * @param dst (rows, cols) f32
 * @param src (n, cols) f32
 */
export function scatterRows(
  dst: Float32Array,
  src: Float32Array,
  rowIdx: ArrayLike<number>,
  cols: number,
): Float32Array {
  const out = dst.slice();
  for (let i = 0; i < rowIdx.length; i++) {
    out.set(src.subarray(i * cols, (i + 1) * cols), rowIdx[i] * cols);
  }
  return out;
}

/** dst rows [dstRow, dstRow + n) = src rows [srcRow, srcRow + n), on a copy of dst. */
export function copyRows(
  dst: Float32Array,
  src: Float32Array,
  n: number,
  cols: number,
  srcRow: number,
  dstRow: number,
): Float32Array {
  const out = dst.slice();
  out.set(src.subarray(srcRow * cols, (srcRow + n) * cols), dstRow * cols);
  return out;
}
