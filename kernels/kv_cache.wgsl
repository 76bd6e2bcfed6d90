// KV cache write: copies this call's K and V rows (from a fused qkv row, after rope on K) into the
// layer's cache at rows row0.. ; one thread per vec4 of K and of V.
// #if DECODE: one token written at row state.cache_len.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;         // (seq, src_stride) f32
#include kv_types
@group(0) @binding(1) var<storage, read_write> kc: array<KV4>;          // (max_rows, dst_stride) f32 (f16 #if KV16)
@group(0) @binding(2) var<storage, read_write> vc: array<KV4>;          // (max_rows, dst_stride) f32 (f16 #if KV16)
#if DECODE
#include decode_state
@group(0) @binding(3) var<storage, read> state: DecodeState;
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.x + wid.y * 65535u) * WG + lid;
  if (g >= p.seq * p.width) { return; }
  let t = g / p.width;
  let c = g % p.width;
#if DECODE
  let row = state.cache_len + t;
#else
  let row = p.row0 + t;
#endif
  // A decode loop that runs past the cache must not write over other memory: drop the row.
  if (row >= p.max_rows) { return; }
  let s = t * p.src_stride + c;
  kc[row * p.dst_stride + c] = KV4(src[s + p.k_off]);
  vc[row * p.dst_stride + c] = KV4(src[s + p.v_off]);
}
