// Row gather: y[i] = table[ids[i]], for the ids that fall in this chunk of the table (rows
// [p.row_start, p.row_start + p.rows)); one workgroup per output row. Ids at or past p.vocab
// (the table's total rows) give a zero row from the last chunk's dispatch.
// #if F16: the table is f16. #if AT (decode): one row, id = tokens[state.step] (kernels/state.wgsl),
// written to row p.y_row of y (batched decode: row r is session r's token; 0 otherwise).

#if F16
alias WV = f16;
#else
alias WV = f32;
#endif

#if AT
@group(0) @binding(0) var<storage, read> ids: array<u32>;      // token ring (capacity) u32
#include decode_state
@group(0) @binding(1) var<storage, read> state: DecodeState;
@group(0) @binding(2) var<storage, read> table: array<WV>;     // (p.rows, p.cols) this chunk
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // (> p.y_row, p.cols) f32
#else
@group(0) @binding(0) var<storage, read> ids: array<u32>;      // (p.n) u32
@group(0) @binding(1) var<storage, read> table: array<WV>;     // (p.rows, p.cols) this chunk
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // (p.n, p.cols) f32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wid.x + wid.y * 65535u;
  if (i >= p.n) { return; }
#if AT
  let id = ids[state.step];
#else
  let id = ids[i];
#endif
  let out = (p.y_row + i) * p.cols;
  if (id >= p.row_start && id < p.row_start + p.rows) {
    let src = (id - p.row_start) * p.cols;
    for (var c = lid; c < p.cols; c += WG) { y[out + c] = f32(table[src + c]); }
  } else if (id >= p.vocab && p.row_start + p.rows == p.vocab) {
    for (var c = lid; c < p.cols; c += WG) { y[out + c] = 0.0; }
  }
}
