/**
 * What a KV cache holds (kernels/kv_cache.ts KvDType): the references compare a kernel that reads
 * or writes an f16 cache against these values.
 * @module
 */
import type { KvDType } from "../../kernels/kv_cache.ts";
import { assertClose } from "./_random.ts";

/**
 * The values a cache of `dtype` holds for `x`: f16 rounds to nearest even (Float16Array; the
 * GPUs' f32 → f16 conversion, exact on lavapipe and NVIDIA), f32 keeps them.
 */
export function cacheValues(x: Float32Array, dtype: KvDType): Float32Array {
  return dtype === "f16" ? Float32Array.from(Float16Array.from(x)) : x;
}

/** `x` as the array to upload into a cache of `dtype`. */
export function cacheArray(x: Float32Array, dtype: KvDType): Float32Array | Float16Array {
  return dtype === "f16" ? Float16Array.from(x) : x;
}

/**
 * Asserts that `got`, read back from a cache of `dtype`, holds `want` (f32 values a kernel
 * computed) as such a cache would: within `tol` (relative to the largest |want|, as assertClose)
 * for f32; for f16 within one f16 step of the largest values (2⁻¹⁰ relative), since a kernel's f32
 * result one ulp off the reference's may round to the neighbouring f16 value.
 */
export function assertCache(
  got: Float32Array,
  want: Float32Array,
  dtype: KvDType,
  tol: number,
  what: string,
): void {
  assertClose(got, cacheValues(want, dtype), dtype === "f16" ? 2 ** -10 : tol, what);
}
