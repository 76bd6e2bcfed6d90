/**
 * Plain-loop reference for kernels/fill.wgsl: the same hash and the same f32 arithmetic, so the
 * GPU's values must match exactly (before any f16 rounding).
 * @module
 */

/** kernels/fill.wgsl's PCG-style u32 hash. */
export function hash(x: number): number {
  const s = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/**
 * Values of elements [base, base + n) of a tensor filled with `seed`.
 * @returns (n) f32: offset + scale · (2u − 1), u ∈ [0, 1) from the hash
 */
export function fillValues(
  n: number,
  seed: number,
  scale: number,
  offset = 0,
  base = 0,
): Float32Array {
  const out = new Float32Array(n);
  const hs = hash(seed);
  const f = Math.fround;
  const [sc, off] = [f(scale), f(offset)];
  for (let i = 0; i < n; i++) {
    const u = f((hash((base + i + hs) >>> 0) >>> 8) * (1 / 16777216));
    // WGSL: offset + scale * (2u - 1), each op rounded to f32 (2u - 1 is exact for u < 1).
    out[i] = f(off + f(sc * f(2 * u - 1)));
  }
  return out;
}
