// The rope + KV-cache write epilogue of the decode qkv GEMVs (kernels/linear.wgsl and
// kernels/linear_q.wgsl, #if ROPE): their bindings, and the store of one row pair. The includer
// declares `y: array<f32>` and params `p` with half, npos, rot_rows (q then k rows that rotate),
// kvw (K/V cache row width) and max_rows; rope pairs are rows (j, j + half) of one head, rotated by
// kernels/rope.wgsl's formula at state.position.
#include decode_state
@group(0) @binding({{TABLE_BINDING}}) var<storage, read> table: array<f32>;  // (2, npos, half) f32: cos rows, then sin rows
@group(0) @binding({{STATE_BINDING}}) var<storage, read> state: DecodeState;
#include kv_types
@group(0) @binding({{KC_BINDING}}) var<storage, read_write> kc: array<KV1>;  // (max_rows, kvw) f32 (f16 #if KV16)
@group(0) @binding({{VC_BINDING}}) var<storage, read_write> vc: array<KV1>;  // (max_rows, kvw) f32 (f16 #if KV16)

// Weight row r (0 or 1) of row pair g: a rotary pair (rows j, j + half of one head) below
// p.rot_rows, then plain row pairs (v rows).
fn rope_row(g: u32, r: u32) -> u32 {
  let pairs = p.rot_rows / 2u;
  if (g < pairs) { return (g / p.half) * 2u * p.half + g % p.half + r * p.half; }
  return p.rot_rows + 2u * (g - pairs) + r;
}

// Stores outputs v0, v1 of rows r0, r1 into y — turned by rotary index i first when `rotate` (a
// q or k pair) — and, for k and v rows, into cache row state.cache_len (dropped past max_rows).
fn store_rope_pair(r0: u32, r1: u32, i: u32, rotate: bool, a: f32, b: f32) {
  var v0 = a;
  var v1 = b;
  if (rotate) {
    // Positions past the table would read another row; clamp so the read stays in bounds.
    let row = min(state.position, p.npos - 1u);
    let c = table[row * p.half + i];
    let s = table[(p.npos + row) * p.half + i];
    let ra = v0 * c - v1 * s;
    v1 = v1 * c + v0 * s;
    v0 = ra;
  }
  y[r0] = v0;
  y[r1] = v1;
  let q_rows = p.rot_rows - p.kvw;
  if (r0 >= q_rows && state.cache_len < p.max_rows) {
    let row = state.cache_len * p.kvw;
    if (r0 < p.rot_rows) {
      kc[row + r0 - q_rows] = KV1(v0);
      kc[row + r1 - q_rows] = KV1(v1);
    } else {
      vc[row + r0 - p.rot_rows] = KV1(v0);
      vc[row + r1 - p.rot_rows] = KV1(v1);
    }
  }
}
