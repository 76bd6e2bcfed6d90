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

const Params = defineParams({
  n: "u32",
  cols: "u32",
  row_start: "u32",
  rows: "u32",
  vocab: "u32",
  y_row: "u32", // row of y that output row 0 goes to (embeddingAt's `row`; 0 for embedding)
});

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
 * `advance` increments step). With `row`, the embedding goes to row `row` of y and the other rows
 * are left as they are (batched decode: row r of y is session r's token).
 * @param y (rows, table.cols) f32, rows > `row`
 * @param tokens the token ring, u32
 * @param state DecodeState (kernels/state.wgsl)
 * @param table (vocab, hidden) f32 or f16
 * @param opts.row the row of y to write (default 0)
 * @example
 * ```ts ignore
 * run(gpu, embeddingAt(gpu, hidden, tokens, state, embedTokens, { row: 2 }));
 * ```
 */
export function embeddingAt(
  gpu: Gpu,
  y: BufferArg,
  tokens: BufferArg,
  state: BufferArg,
  table: Weight,
  opts: { row?: number } = {},
): Dispatch[] {
  const row = opts.row ?? 0;
  if (!Number.isInteger(row) || row < 0) {
    throw new InvalidInputError(`embeddingAt: row must be a non-negative integer, got ${row}`);
  }
  checkSize("state", state, DECODE_STATE_BYTES);
  checkSize("tokens", tokens, 4);
  checkSize("y", y, (row + 1) * table.cols * 4);
  const v = variant(gpu, {
    family: "embedding",
    entry: "main",
    bindings: ["read", "read", "read", "read_write"],
    params: Params,
    defines: { F16: table.dtype === "f16", AT: true },
  });
  return table.chunks.map((c) =>
    new Dispatch(gpu, v, [tokens, state, c.buffer, y], pack(table, c.rowStart, c.rows, 1, row), [1])
  );
}

function pack(table: Weight, rowStart: number, rows: number, n: number, yRow = 0): ArrayBuffer {
  return Params.pack({
    n,
    cols: table.cols,
    row_start: rowStart,
    rows,
    vocab: table.rows,
    y_row: yRow,
  });
}
