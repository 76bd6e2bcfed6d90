/**
 * Plain-loop reference for kernels/embedding.wgsl.
 * @module
 */

/**
 * Row gather, as torch.nn.Embedding; ids at or past the table's rows give zero rows.
 * @param table (rows, cols) f32 (an f16 table is passed as its f16-rounded values)
 * @param ids (n) token ids
 * @returns (n, cols) f32
 */
export function embedding(table: Float32Array, ids: ArrayLike<number>, cols: number): Float32Array {
  const rows = table.length / cols;
  const y = new Float32Array(ids.length * cols);
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < rows) y.set(table.subarray(ids[i] * cols, (ids[i] + 1) * cols), i * cols);
  }
  return y;
}
