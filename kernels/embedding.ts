/**
 * Embedding gather (kernels/embedding.wgsl): rows of a {@link Weight} table by token id, one
 * dispatch per table chunk. Reference: src/ref/embedding.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import type { Weight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { grid2d } from "./_grid.ts";
import { DECODE_STATE_BYTES } from "./state.ts";

const Params = defineParams({ n: "u32", cols: "u32", row_start: "u32", rows: "u32", vocab: "u32" });

/**
 * y = table[ids]: row i of y is row ids[i] of the table (a zero row for an id ≥ table.rows).
 * @param y (n, table.cols) f32
 * @param ids (n) u32
 * @param table (vocab, hidden) f32 or f16
 * @example
 * ```ts ignore
 * run(gpu, embedding(gpu, hidden, idsBuf, embedTokens, { n: inputIds.length }));
 * ```
 */
export function embedding(
  gpu: Gpu,
  y: BufferArg,
  ids: BufferArg,
  table: Weight,
  s: { n: number },
): Dispatch[] {
  const { n } = s;
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidInputError(`embedding: n must be a positive integer, got ${n}`);
  }
  checkSize("ids", ids, n * 4);
  checkSize("y", y, n * table.cols * 4);
  const v = variant(gpu, {
    family: "embedding",
    entry: "main",
    bindings: ["read", "read", "read_write"],
    params: Params,
    defines: { F16: table.dtype === "f16" },
  });
  return table.chunks.map((c) =>
    new Dispatch(gpu, v, [ids, c.buffer, y], pack(table, c.rowStart, c.rows, n), grid2d(n))
  );
}

/**
 * Decode-step gather: y = table[tokens[state.step]], the id read on the GPU so the same
 * Dispatches serve every step (kernels/state.wgsl: the sampler writes tokens[step + 1], then
 * `advance` increments step).
 * @param y (1, table.cols) f32
 * @param tokens the token ring, u32
 * @param state DecodeState (kernels/state.wgsl)
 * @param table (vocab, hidden) f32 or f16
 */
export function embeddingAt(
  gpu: Gpu,
  y: BufferArg,
  tokens: BufferArg,
  state: BufferArg,
  table: Weight,
): Dispatch[] {
  checkSize("state", state, DECODE_STATE_BYTES);
  checkSize("tokens", tokens, 4);
  checkSize("y", y, table.cols * 4);
  const v = variant(gpu, {
    family: "embedding",
    entry: "main",
    bindings: ["read", "read", "read", "read_write"],
    params: Params,
    defines: { F16: table.dtype === "f16", AT: true },
  });
  return table.chunks.map((c) =>
    new Dispatch(gpu, v, [tokens, state, c.buffer, y], pack(table, c.rowStart, c.rows, 1), [1])
  );
}

function pack(table: Weight, rowStart: number, rows: number, n: number): ArrayBuffer {
  return Params.pack({ n, cols: table.cols, row_start: rowStart, rows, vocab: table.rows });
}
