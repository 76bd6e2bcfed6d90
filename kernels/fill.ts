/**
 * Seeded pseudo-random fill on the GPU (kernels/fill.wgsl), so benchmarks build real-shape models
 * (a 72B at 41 GB of q4) without files and without pushing gigabytes through the CPU.
 * Reference: src/ref/fill.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import type { Weight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { grid2d } from "./_grid.ts";

const Params = defineParams({
  words: "u32",
  base: "u32",
  seed: "u32",
  scale: "f32",
  offset: "f32",
});

/** What {@link fill} writes. */
export interface FillSpec {
  /** Elements to write. */
  count: number;
  /** Element type in the buffer: f32, or f16 pairs packed in u32 words. */
  dtype: "f32" | "f16";
  /** Seed of the tensor: different seeds give unrelated values. */
  seed: number;
  /** Values are uniform in [offset − scale, offset + scale). */
  scale: number;
  /** Centre of the values (default 0; 1 for a norm weight). */
  offset?: number;
  /** Index of the first element within its tensor (default 0): chunks of one tensor pass their row offset · cols. */
  base?: number;
}

/**
 * Fills `count` elements of `y` with seeded uniform values (src/ref/fill.ts gives the same).
 * An f16 fill with an odd count also writes the upper half of the last word.
 * @param y (count) f32, or (ceil(count / 2)) u32 of f16 pairs
 */
export function fill(gpu: Gpu, y: BufferArg, s: FillSpec): Dispatch {
  const { count, dtype, seed, scale } = s;
  const base = s.base ?? 0;
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(base) || base < 0) {
    throw new InvalidInputError(
      `fill: count ${count} and base ${base} must be integers (count ≥ 1)`,
    );
  }
  if (dtype === "f16" && base % 2 !== 0) {
    throw new InvalidInputError(
      `fill: an f16 fill must start at an even element, got base ${base}`,
    );
  }
  const words = dtype === "f16" ? Math.ceil(count / 2) : count;
  checkSize("y", y, words * 4);
  const v = variant(gpu, {
    family: "fill",
    entry: "main",
    bindings: ["read_write"],
    params: Params,
    defines: { F16: false, PAIRS: dtype === "f16" },
  });
  const params = Params.pack({ words, base, seed: seed >>> 0, scale, offset: s.offset ?? 0 });
  return new Dispatch(gpu, v, [y], params, grid2d(ceilDiv(words, 256)));
}

/**
 * Fills every chunk of an f32 or f16 weight with seeded values as one tensor (the same values
 * whatever the chunking).
 */
export function fillWeight(
  gpu: Gpu,
  w: Weight,
  s: { seed: number; scale: number; offset?: number },
): Dispatch[] {
  if (w.dtype !== "f32" && w.dtype !== "f16") {
    throw new InvalidInputError(
      `fillWeight: dtype "${w.dtype}" is not f32 or f16; fill an f16 staging buffer and quantize it`,
    );
  }
  return w.chunks.map((c) =>
    fill(gpu, c.buffer, {
      count: c.rows * w.cols,
      dtype: w.dtype as "f32" | "f16",
      base: c.rowStart * w.cols,
      ...s,
    })
  );
}
