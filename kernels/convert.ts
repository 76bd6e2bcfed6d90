/**
 * Element conversion on the GPU (kernels/convert.wgsl): a checkpoint's stored bytes (BF16, F16 or
 * F32) go to the GPU as they are and become the f16 or f32 weights there, so loading does no
 * per-element CPU work. Bit-exact with the WASM converter (wasm/crates/safetensors/src/convert.rs);
 * reference: src/ref/convert.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import type { Weight, WeightDType } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { grid2d } from "./_grid.ts";

const Params = defineParams({ n: "u32", src_off: "u32", dst_off: "u32", words: "u32" });

/** How source elements are stored (a safetensors dtype, lower-cased). */
export type SourceDType = "bf16" | "f16" | "f32";

const BYTES: Record<SourceDType, number> = { bf16: 2, f16: 2, f32: 4 };

/** What {@link convert} does. */
export interface ConvertSpec {
  /** Source element type. */
  from: SourceDType;
  /** Destination element type. */
  to: WeightDType;
  /** Elements to convert. */
  n: number;
  /** First source element (any index; default 0). */
  srcOffset?: number;
  /** First destination element (any index: f16 words shared with neighbours keep their other half; default 0). */
  dstOffset?: number;
}

/**
 * dst[dstOffset + i] = convert(src[srcOffset + i]) for i < n: bf16/f16/f32 → f16 (round to nearest
 * even, ±inf past 65504, subnormals, NaN payloads kept) or → f32 (exact); same-type is a copy.
 * @param dst f16 pairs or f32, ≥ dstOffset + n elements (rounded up to a word)
 * @param src stored elements (16-bit ones two per word, low half first), ≥ srcOffset + n
 */
export function convert(gpu: Gpu, dst: BufferArg, src: BufferArg, s: ConvertSpec): Dispatch {
  const { from, to, n } = s;
  const srcOffset = s.srcOffset ?? 0, dstOffset = s.dstOffset ?? 0;
  if (!Object.hasOwn(BYTES, from) || (to !== "f16" && to !== "f32")) {
    throw new InvalidInputError(
      `convert: ${from} → ${to} is not supported; sources are bf16, f16 or f32, targets f16 or f32`,
    );
  }
  for (const [k, v] of [["n", n], ["srcOffset", srcOffset], ["dstOffset", dstOffset]] as const) {
    if (!Number.isInteger(v) || v < (k === "n" ? 1 : 0) || v >= 2 ** 32) {
      throw new InvalidInputError(
        `convert: ${k} must be a ${
          k === "n" ? "positive" : "non-negative"
        } integer < 2^32, got ${v}`,
      );
    }
  }
  const round4 = (bytes: number) => Math.ceil(bytes / 4) * 4;
  checkSize("src", src, round4((srcOffset + n) * BYTES[from]));
  checkSize("dst", dst, round4((dstOffset + n) * (to === "f16" ? 2 : 4)));
  const words = to === "f16" ? ((dstOffset + n - 1) >> 1) - (dstOffset >> 1) + 1 : n;
  const v = variant(gpu, {
    family: "convert",
    entry: "main",
    bindings: ["read", "read_write"],
    params: Params,
    defines: {
      FROM_BF16: from === "bf16",
      FROM_F16: from === "f16",
      FROM_F32: from === "f32",
      TO_F16: to === "f16",
    },
  });
  const params = Params.pack({ n, src_off: srcOffset, dst_off: dstOffset, words });
  return new Dispatch(gpu, v, [src, dst], params, grid2d(ceilDiv(words, 256)));
}

/**
 * Converts `rows` whole rows held in `src` (stored elements, row-major, from element 0) into rows
 * [rowStart, rowStart + rows) of an f16 or f32 weight, one dispatch per chunk they touch. Any row
 * and any count: f16 words at piece borders keep their other half.
 * @param src (rows, w.cols) elements of `from`
 */
export function convertRows(
  gpu: Gpu,
  w: Weight,
  rowStart: number,
  src: BufferArg,
  from: SourceDType,
  rows: number,
): Dispatch[] {
  if (w.dtype !== "f16" && w.dtype !== "f32") {
    throw new InvalidInputError(
      `convertRows: weight is ${w.dtype}; quantized weights are written by quantizeRows() (kernels/linear_q.ts)`,
    );
  }
  if (
    !Number.isInteger(rowStart) || !Number.isInteger(rows) || rowStart < 0 || rows < 1 ||
    rowStart + rows > w.rows
  ) {
    throw new InvalidInputError(
      `convertRows: rows [${rowStart}, ${
        rowStart + rows
      }) are outside the (${w.rows}, ${w.cols}) weight`,
    );
  }
  const out: Dispatch[] = [];
  for (const c of w.chunks) {
    const r0 = Math.max(rowStart, c.rowStart), r1 = Math.min(rowStart + rows, c.rowStart + c.rows);
    if (r0 >= r1) continue;
    out.push(convert(gpu, c.buffer, src, {
      from,
      to: w.dtype,
      n: (r1 - r0) * w.cols,
      srcOffset: (r0 - rowStart) * w.cols,
      dstOffset: (r0 - c.rowStart) * w.cols,
    }));
  }
  return out;
}
