// Element conversion on the GPU, so a checkpoint's stored bytes (BF16, F16 or F32) are uploaded
// as they are and become f16 or f32 weights here: n elements from src element p.src_off go to dst
// elements [p.dst_off, p.dst_off + n). Bit-exact with wasm/crates/safetensors/src/convert.rs, in
// integer arithmetic only (GPUs may flush f32 subnormals and canonicalize NaNs): narrowing rounds
// to nearest even, past f16's range gives ±inf, tiny values f16 subnormals or ±0, NaN keeps its
// sign and the payload's top bits with the quiet bit set.
// Defines: FROM_BF16 | FROM_F16 | FROM_F32 (source), TO_F16 (else f32 out).
// 16-bit elements are packed two per u32 word, low half first (little-endian bytes as stored).

@group(0) @binding(0) var<storage, read> src: array<u32>;        // stored bytes as words
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;  // f16 pairs or f32 bits
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// f32 bits → f16 bits, round to nearest even (convert.rs f32_to_f16_bits, without float ops).
fn f32_to_f16(x: u32) -> u32 {
  let sign = (x >> 16u) & 0x8000u;
  let a = x & 0x7fffffffu;
  if (a >= 0x47800000u) {  // ≥ 65536: inf, or NaN
    return sign | select(0x7c00u, 0x7e00u | ((a >> 13u) & 0x3ffu), a > 0x7f800000u);
  }
  if (a >= 0x38800000u) {  // f16 normal: rebias; a carry out of the mantissa may reach inf
    return sign | ((a - 0x38000000u + 0xfffu + ((a >> 13u) & 1u)) >> 13u);
  }
  // f16 subnormal or zero: the significand in units of 2^-24, i.e. shifted right by 126 - e
  // (≥ 14; past 25 everything rounds to 0, and WGSL shifts wrap at 32, so clamp).
  let e = a >> 23u;
  let m = (a & 0x7fffffu) | select(0u, 0x800000u, e > 0u);
  let s = min(126u - max(e, 1u), 25u);
  let q = m >> s;
  let rem = m & ((1u << s) - 1u);
  let half = 1u << (s - 1u);
  let up = rem > half || (rem == half && (q & 1u) == 1u);
  return sign | (q + select(0u, 1u, up));
}

// f16 bits → f32 bits, exact.
fn f16_to_f32(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 31u) { return sign | 0x7f800000u | (m << 13u); }
  if (e != 0u) { return sign | ((e + 112u) << 23u) | (m << 13u); }
  if (m == 0u) { return sign; }
  let b = firstLeadingBit(m);  // subnormal m · 2^-24 = 1.f · 2^(b - 24)
  return sign | ((b + 103u) << 23u) | ((m << (23u - b)) & 0x7fffffu);
}

// Stored 16-bit element j.
fn raw16(j: u32) -> u32 {
  return (src[j >> 1u] >> ((j & 1u) * 16u)) & 0xffffu;
}

// Output bits of source element j (f16 in the low half, or f32).
fn elem(j: u32) -> u32 {
#if TO_F16
#if FROM_BF16
  return f32_to_f16(raw16(j) << 16u);
#endif
#if FROM_F16
  return raw16(j);
#endif
#if FROM_F32
  return f32_to_f16(src[j]);
#endif
#else
#if FROM_BF16
  return raw16(j) << 16u;
#endif
#if FROM_F16
  return f16_to_f32(raw16(j));
#endif
#if FROM_F32
  return src[j];
#endif
#endif
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * 65535u) * 256u + lid;  // output word of this thread
  if (t >= p.words) { return; }
#if TO_F16
  // Word w holds dst elements 2w, 2w + 1; a half outside [dst_off, end) belongs to a neighbour
  // (another row piece, or padding) and is kept. One thread per word, so no write races.
  let w = (p.dst_off >> 1u) + t;
  let e0 = 2u * w;
  let end = p.dst_off + p.n;
  var word = 0u;
  if (e0 < p.dst_off || e0 + 1u >= end) { word = dst[w]; }
  if (e0 >= p.dst_off) { word = (word & 0xffff0000u) | elem(p.src_off + e0 - p.dst_off); }
  if (e0 + 1u < end) { word = (word & 0xffffu) | (elem(p.src_off + e0 + 1u - p.dst_off) << 16u); }
  dst[w] = word;
#else
  dst[p.dst_off + t] = elem(p.src_off + t);
#endif
}
