/**
 * Weights on the GPU: a 2D matrix in PyTorch's (out_features, in_features) row-major layout, split
 * by rows into buffers that each fit one storage binding (the 72B embedding is 2.3 GB of f16;
 * lavapipe binds at most 128 MiB, an H100 2 GiB). Kernels that read a weight emit one dispatch per
 * chunk.
 * @module
 */
import type { Gpu } from "./device.ts";
import { fmtBytes } from "./device.ts";
import { writeArray } from "./buffers.ts";
import { InvalidInputError } from "../errors.ts";

/** Element type of a weight on the GPU. */
export type WeightDType = "f32" | "f16";

/**
 * Group-wise quantized weights (kernels/linear_q.ts): each run of {@link QUANT_GROUP} elements of a
 * row is int8 ("q8") or int4 ("q4") codes times one f16 scale. A chunk's buffer holds the codes
 * (rows, cols · bits / 32) u32, then from {@link quantLayout}'s `scalesOffset` the scales
 * (rows · cols / 32) f16, row-major.
 */
export type QuantDType = "q8" | "q4";

/** Elements per f16 scale of a quantized weight. */
export const QUANT_GROUP = 32;

/** Rows [rowStart, rowStart + rows) of a weight, in one buffer of rows · cols elements. */
export interface WeightChunk {
  buffer: GPUBuffer;
  rowStart: number;
  rows: number;
}

/** A 2D weight (rows = out_features, cols = in_features), row-major, split by rows into chunks ≤ gpu.maxBinding bytes. */
export interface Weight {
  dtype: WeightDType | QuantDType;
  rows: number;
  cols: number;
  chunks: WeightChunk[];
}

/** Bytes per element of each dtype (quantized: with the share of its group's f16 scale). */
export const DTYPE_BYTES: Record<WeightDType | QuantDType, number> = {
  f32: 4,
  f16: 2,
  q8: 1 + 2 / QUANT_GROUP,
  q4: 0.5 + 2 / QUANT_GROUP,
};

/**
 * Byte layout of one chunk of `rows` rows of a quantized weight. Its size is a whole number of 16
 * bytes: kernels read a chunk as array<vec4<u32>>, whose length is the binding's size / 16 rounded
 * down, so scales ending in a partial vec4 read out of bounds — the H200 (2026-11-29) returned other
 * words there, giving the last row of such a chunk wrong last-group scales (lavapipe did not).
 */
export function quantLayout(
  rows: number,
  cols: number,
  dtype: QuantDType,
): { codesBytes: number; scalesOffset: number; size: number } {
  const codesBytes = rows * cols * (dtype === "q8" ? 1 : 0.5);
  const scalesOffset = Math.ceil(codesBytes / 256) * 256;
  const size = scalesOffset + Math.ceil((rows * cols / QUANT_GROUP) * 2 / 16) * 16;
  return { codesBytes, scalesOffset, size };
}

/** Whether a weight dtype is group-wise quantized. */
export function isQuant(dtype: string): dtype is QuantDType {
  return dtype === "q8" || dtype === "q4";
}

/**
 * Rows per chunk of a (rows, cols) weight under a byte limit: as many whole rows as fit; f16 with
 * an odd `cols` (or a quantized weight with an odd number of groups per row) keeps an even count
 * so every chunk starts 4-byte aligned.
 */
export function chunkRows(
  rows: number,
  cols: number,
  dtype: WeightDType | QuantDType,
  limit: number,
): number {
  const q = isQuant(dtype);
  // Quantized: room for the scales' 256-byte alignment and the size's 16-byte one (quantLayout).
  let per = Math.floor((q ? limit - 256 - 16 : limit) / (cols * DTYPE_BYTES[dtype]));
  const odd = q ? (cols / QUANT_GROUP) % 2 === 1 : dtype === "f16" && cols % 2 === 1;
  if (odd && per < rows) per &= ~1;
  return Math.min(per, rows);
}

/**
 * Allocates a zero-filled weight of `rows` × `cols` elements.
 *
 * Chunks hold as many whole rows as fit in `maxChunkBytes` (default: the adapter's binding limit);
 * for f16 with an odd `cols` the rows per chunk are kept even so every chunk starts 4-byte aligned.
 * @param maxChunkBytes cap on one chunk's byte size, below gpu.maxBinding (tests force small chunks).
 * @example
 * ```ts ignore
 * const w = createWeight(gpu, 3584, 3584, "f16", "q_proj");
 * writeWeightRows(gpu, w, 0, f16Bits); // Uint16Array of 3584 * 3584
 * ```
 */
export function createWeight(
  gpu: Gpu,
  rows: number,
  cols: number,
  dtype: WeightDType | QuantDType,
  label: string,
  maxChunkBytes: number = gpu.maxBinding,
): Weight {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new InvalidInputError(
      `weight "${label}": shape (${rows}, ${cols}) must be positive integers`,
    );
  }
  if (dtype !== "f32" && dtype !== "f16" && !isQuant(dtype)) {
    throw new InvalidInputError(
      `weight "${label}": dtype "${dtype}" is not supported; use "f32", "f16", "q8" or "q4"`,
    );
  }
  if (isQuant(dtype) && cols % QUANT_GROUP !== 0) {
    throw new InvalidInputError(
      `weight "${label}": ${dtype} needs cols divisible by ${QUANT_GROUP}, got ${cols}; keep it f16`,
    );
  }
  const limit = Math.min(maxChunkBytes, gpu.maxBinding, gpu.limits.maxBufferSize);
  const rowBytes = cols * DTYPE_BYTES[dtype];
  const perChunk = chunkRows(rows, cols, dtype, limit);
  if (perChunk < 1) {
    throw new InvalidInputError(
      `weight "${label}": one row of ${cols} ${dtype} (${fmtBytes(rowBytes)}) exceeds the ` +
        `${fmtBytes(limit)} a storage binding may hold on this adapter`,
    );
  }
  const chunks: WeightChunk[] = [];
  for (let rowStart = 0; rowStart < rows; rowStart += perChunk) {
    const n = Math.min(perChunk, rows - rowStart);
    const buffer = gpu.device.createBuffer({
      label: chunks.length || n < rows ? `${label}[${chunks.length}]` : label,
      size: isQuant(dtype) ? quantLayout(n, cols, dtype).size : Math.ceil((n * rowBytes) / 4) * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    chunks.push({ buffer, rowStart, rows: n });
  }
  return { dtype, rows, cols, chunks };
}

/** Converts f32 values to f16 bits (round to nearest even, as torch's `.half()`). */
export function f32ToF16Bits(x: Float32Array): Uint16Array {
  return new Uint16Array(Float16Array.from(x).buffer);
}

/** Converts f16 bits to f32 values (exact). */
export function f16BitsToF32(bits: Uint16Array): Float32Array {
  const h = new Float16Array(bits.buffer, bits.byteOffset, bits.length);
  return Float32Array.from(h);
}

/**
 * Writes rows [rowStart, rowStart + n) of `w`, given as f32 values or as f16 bits (Uint16Array),
 * converting to the weight's dtype and crossing chunk borders as needed. `data.length` must be a
 * multiple of `w.cols`.
 *
 * WebGPU writes whole 4-byte words, so an f16 weight with an odd `cols` must be written in pieces
 * that start and end on an even element of their chunk (an even row count from an even row), or
 * that run to the chunk's end.
 */
export function writeWeightRows(
  gpu: Gpu,
  w: Weight,
  rowStart: number,
  data: Float32Array | Uint16Array,
): void {
  if (isQuant(w.dtype)) {
    throw new InvalidInputError(
      `writeWeightRows: weight is ${w.dtype}; quantize rows into it with writeQuantRows() ` +
        `(kernels/linear_q.ts)`,
    );
  }
  const n = data.length / w.cols;
  if (
    !Number.isInteger(n) || !Number.isInteger(rowStart) || rowStart < 0 || rowStart + n > w.rows
  ) {
    throw new InvalidInputError(
      `writeWeightRows: ${data.length} values from row ${rowStart} do not fit whole rows of a ` +
        `(${w.rows}, ${w.cols}) weight`,
    );
  }
  let vals: Float32Array | Uint16Array = data;
  if (w.dtype === "f16" && data instanceof Float32Array) vals = f32ToF16Bits(data);
  if (w.dtype === "f32" && data instanceof Uint16Array) vals = f16BitsToF32(data);
  const bytes = DTYPE_BYTES[w.dtype];
  for (const c of w.chunks) {
    const r0 = Math.max(rowStart, c.rowStart), r1 = Math.min(rowStart + n, c.rowStart + c.rows);
    if (r0 >= r1) continue;
    const e0 = (r0 - c.rowStart) * w.cols, e1 = (r1 - c.rowStart) * w.cols;
    if (((e0 * bytes) % 4 !== 0) || ((e1 * bytes) % 4 !== 0 && r1 !== c.rowStart + c.rows)) {
      throw new InvalidInputError(
        `writeWeightRows: rows [${r0}, ${r1}) of an f16 weight with odd cols (${w.cols}) are not ` +
          `4-byte aligned in their chunk; write an even number of rows starting at an even row`,
      );
    }
    const part = vals.subarray((r0 - rowStart) * w.cols, (r1 - rowStart) * w.cols);
    writeArray(gpu, c.buffer, part, e0 * bytes);
  }
}

/** Frees the weight's buffers. */
export function destroyWeight(w: Weight): void {
  for (const c of w.chunks) c.buffer.destroy();
}

/** Total bytes of the weight's data (without the padding of each chunk; quantized: codes + scales). */
export function weightBytes(w: Weight): number {
  return w.rows * w.cols * DTYPE_BYTES[w.dtype];
}
