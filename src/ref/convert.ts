/**
 * Plain-loop reference for kernels/convert.wgsl, independent of its integer arithmetic: values go
 * through JavaScript's own f16 conversion (Float16Array: round to nearest even, subnormals,
 * overflow to ±inf); NaNs, which JavaScript canonicalizes, follow convert.rs's rule explicitly.
 * @module
 */

const f16 = new Float16Array(1), f16Bits = new Uint16Array(f16.buffer);
const f32 = new Float32Array(1), f32Bits = new Uint32Array(f32.buffer);

/** f32 bits → f16 bits: nearest even; NaN keeps its sign and payload's top 10 bits, quiet bit set. */
export function f32BitsToF16(x: number): number {
  f32Bits[0] = x;
  if (Number.isNaN(f32[0])) return ((x >>> 16) & 0x8000) | 0x7e00 | ((x >>> 13) & 0x3ff);
  f16[0] = f32[0];
  return f16Bits[0];
}

/** f16 bits → f32 bits, exact; NaN keeps sign and payload. */
export function f16BitsToF32(h: number): number {
  f16Bits[0] = h;
  if (Number.isNaN(f16[0])) return (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0;
  f32[0] = f16[0];
  return f32Bits[0];
}

/**
 * Converts stored elements to f16 bits or f32 bits.
 * @param src (n) bf16/f16 bits (Uint16Array) or f32 bits (Uint32Array)
 * @returns (n) f16 bits (Uint16Array) or f32 bits (Uint32Array)
 */
export function convertBits(
  from: "bf16" | "f16" | "f32",
  to: "f16" | "f32",
  src: Uint16Array | Uint32Array,
): Uint16Array | Uint32Array {
  const out = to === "f16" ? new Uint16Array(src.length) : new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    // As f32 bits first (exact for every source), then narrowed if asked.
    const x = from === "bf16"
      ? (src[i] << 16) >>> 0
      : from === "f16"
      ? f16BitsToF32(src[i])
      : src[i];
    out[i] = to === "f32" ? x : from === "f16" ? src[i] : f32BitsToF16(x);
  }
  return out;
}
