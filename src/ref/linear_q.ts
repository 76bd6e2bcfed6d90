/**
 * Plain-loop reference for kernels/linear_q.wgsl: group-wise symmetric quantization (groups of 32
 * elements of a row, one f16 scale each) and the packed layout the kernels read.
 * @module
 */

/** Elements per scale. */
export const GROUP = 32;

/** Round half to even, as WGSL's round(). */
function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Quantized rows: codes and f16-valued scales. */
export interface Quantized {
  /** (rows, cols) integer codes in [-8, 7] (q4) or [-127, 127] (q8). */
  codes: Int8Array;
  /** (rows, cols / 32) scales, f16-rounded values. */
  scales: Float32Array;
}

/**
 * Quantizes (rows, cols) values: d = f16(max|v| / qmax) per group, code = round(v / d) clamped.
 * @param values (rows · cols) f32, cols % 32 == 0
 */
export function quantize(values: Float32Array, cols: number, dtype: "q8" | "q4"): Quantized {
  const qmax = dtype === "q4" ? 7 : 127, lo = dtype === "q4" ? -8 : -127;
  const groups = values.length / GROUP;
  const codes = new Int8Array(values.length), scales = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    let amax = 0;
    for (let i = 0; i < GROUP; i++) amax = Math.max(amax, Math.abs(values[g * GROUP + i]));
    const d = Math.f16round(Math.fround(amax / qmax));
    scales[g] = d;
    const inv = d > 0 ? Math.fround(1 / d) : 0;
    for (let i = 0; i < GROUP; i++) {
      const c = roundEven(Math.fround(values[g * GROUP + i] * inv));
      codes[g * GROUP + i] = Math.min(qmax, Math.max(lo, c));
    }
  }
  void cols;
  return { codes, scales };
}

/**
 * The values a quantized weight stands for: d · code, exact in f32 (what the GEMV multiplies);
 * with `f16`, rounded to f16 as the m > 1 path's dequantized scratch holds them.
 * @returns (rows · cols) f32
 */
export function dequantize(q: Quantized, f16 = false): Float32Array {
  const out = new Float32Array(q.codes.length);
  for (let i = 0; i < out.length; i++) {
    const v = q.scales[Math.floor(i / GROUP)] * q.codes[i];
    out[i] = f16 ? Math.f16round(v) : v;
  }
  return out;
}

/**
 * Reads a quantized chunk's bytes (codes from byte 0, f16 scales from `scalesOffset`) back into
 * codes and scales, following kernels/linear_q.wgsl's packing.
 * @param rows rows in the chunk
 */
export function unpack(
  bytes: ArrayBuffer,
  rows: number,
  cols: number,
  dtype: "q8" | "q4",
  scalesOffset: number,
): Quantized {
  const n = rows * cols;
  const codes = new Int8Array(n);
  const u8 = new Uint8Array(bytes);
  if (dtype === "q8") {
    codes.set(new Int8Array(bytes, 0, n));
  } else {
    // Word i of a group: byte b holds element 8i + b (low nibble) and 8i + 4 + b (high nibble).
    for (let e = 0; e < n; e++) {
      const byte = u8[(e >> 3) * 4 + (e % 4)];
      const nib = e % 8 < 4 ? byte & 15 : byte >> 4;
      codes[e] = nib - 8;
    }
  }
  const h = new Float16Array(bytes, scalesOffset, n / GROUP);
  return { codes, scales: Float32Array.from(h) };
}

/**
 * x as the GEMV's int8 path (kernels/linear_q.wgsl XQ) holds it: per block of 32 elements, codes
 * c = round(x / 2^e) (half to even) with the smallest power of two 2^e ≥ max|x| / 127 (e ≥ −120).
 * @param x (k) f32, k % 32 == 0
 * @returns (k) the values c · 2^e (exact in f32) and the per-block steps 2^e
 */
export function quantizeActivations(
  x: Float32Array,
): { values: Float32Array; steps: Float32Array } {
  const values = new Float32Array(x.length), steps = new Float32Array(x.length / GROUP);
  for (let b = 0; b < steps.length; b++) {
    let amax = 0;
    for (let i = 0; i < GROUP; i++) amax = Math.max(amax, Math.abs(x[b * GROUP + i]));
    // frexp: amax = f · 2^E, f in [0.5, 1) (f = 0, E = 0 for 0).
    let E = amax === 0 ? 0 : Math.floor(Math.log2(amax)) + 1;
    if (amax !== 0 && amax / 2 ** E >= 1) E++;
    if (amax !== 0 && amax / 2 ** E < 0.5) E--;
    const f = amax === 0 ? 0 : amax / 2 ** E;
    const e = Math.max(f <= 127 / 128 ? E - 7 : E - 6, -120);
    steps[b] = 2 ** e;
    for (let i = 0; i < GROUP; i++) {
      values[b * GROUP + i] = roundEven(x[b * GROUP + i] / 2 ** e) * 2 ** e;
    }
  }
  return { values, steps };
}
