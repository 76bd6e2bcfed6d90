// Rotary position embedding in place, rotate_half style: for each token t, head h and rotary index
// i < half, the pair (x[i], x[i + half]) turns by the angle of position pos[t][axis[i]] and
// frequency i, read from a cos/sin table built on the CPU (src/ref/rope.ts). One thread per pair.
// Serves the decoder's M-RoPE (3 axes) and the vision tower's 2D rope (2 axes).
// #if DECODE: one token whose position on every axis is state.position (text decode).
// #if KV (with DECODE): also the decode KV-cache write (kernels/kv_cache.wgsl) fused in: the last
// p.kv_heads rotated heads are K, written rotated to kc at row state.cache_len, and p.kv_heads ·
// 2 · half more threads copy V (the columns right after the rotated heads) to vc. The token is
// x's row from element p.x_base (row · stride; batched decode's row r is session r's token, 0
// otherwise).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // (seq, stride) f32; heads at [offset, offset + heads·2·half)
@group(0) @binding(1) var<storage, read> table: array<f32>;     // (2, npos, half) f32: cos rows, then sin rows
@group(0) @binding(2) var<storage, read> axis: array<u32>;      // (half) u32: position axis of rotary index i
#if DECODE
#include decode_state
@group(0) @binding(3) var<storage, read> state: DecodeState;
#else
@group(0) @binding(3) var<storage, read> pos: array<u32>;       // (seq, naxes) u32
#endif
#if KV
#include kv_types
@group(0) @binding(4) var<storage, read_write> kc: array<KV1>;  // (max_rows, kv_heads·2·half) f32 (f16 #if KV16)
@group(0) @binding(5) var<storage, read_write> vc: array<KV1>;  // (max_rows, kv_heads·2·half) f32 (f16 #if KV16)
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.x + wid.y * 65535u) * WG + lid;
  let pairs = p.seq * p.heads * p.half;
#if KV
  let kvw = p.kv_heads * 2u * p.half;  // elements of a cache row
  // A decode loop that runs past the cache must not write over other memory: drop the row.
  let in_cache = state.cache_len < p.max_rows;
  if (g >= pairs) {
    let c = g - pairs;
    if (c < kvw && in_cache) {
      vc[state.cache_len * kvw + c] = KV1(x[p.x_base + p.offset + p.heads * 2u * p.half + c]);
    }
    return;
  }
#else
  if (g >= pairs) { return; }
#endif
  let i = g % p.half;
  let th = g / p.half;
  let h = th % p.heads;
  let t = th / p.heads;
#if DECODE
  let position = state.position;
#else
  let position = pos[t * p.naxes + axis[i]];
#endif
  // Positions past the table would read another row; clamp so the read stays in bounds.
  let row = min(position, p.npos - 1u);
  let c = table[row * p.half + i];
  let s = table[(p.npos + row) * p.half + i];
  let base = p.x_base + t * p.stride + p.offset + h * 2u * p.half + i;
  let a = x[base];
  let b = x[base + p.half];
  let ra = a * c - b * s;
  let rb = b * c + a * s;
  x[base] = ra;
  x[base + p.half] = rb;
#if KV
  let kh = p.heads - p.kv_heads;  // first K head among the rotated ones
  if (h >= kh && in_cache) {
    let kb = state.cache_len * kvw + (h - kh) * 2u * p.half + i;
    kc[kb] = KV1(ra);
    kc[kb + p.half] = KV1(rb);
  }
#endif
}
