// Rotary position embedding in place, rotate_half style: for each token t, head h and rotary index
// i < half, the pair (x[i], x[i + half]) turns by the angle of position pos[t][axis[i]] and
// frequency i, read from a cos/sin table built on the CPU (src/ref/rope.ts). One thread per pair.
// Serves the decoder's M-RoPE (3 axes) and the vision tower's 2D rope (2 axes).
// #if DECODE: one token whose position on every axis is state.position (text decode).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // (seq, stride) f32; heads at [offset, offset + heads·2·half)
@group(0) @binding(1) var<storage, read> table: array<f32>;     // (2, npos, half) f32: cos rows, then sin rows
@group(0) @binding(2) var<storage, read> axis: array<u32>;      // (half) u32: position axis of rotary index i
#if DECODE
// Layout: kernels/state.wgsl.
struct DecodeState { cache_len: u32, position: u32, step: u32, reserved: u32 }
@group(0) @binding(3) var<storage, read> state: DecodeState;
#else
@group(0) @binding(3) var<storage, read> pos: array<u32>;       // (seq, naxes) u32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.x + wid.y * 65535u) * WG + lid;
  if (g >= p.seq * p.heads * p.half) { return; }
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
  let base = t * p.stride + p.offset + h * 2u * p.half + i;
  let a = x[base];
  let b = x[base + p.half];
  x[base] = a * c - b * s;
  x[base + p.half] = b * c + a * s;
}
