// Group-wise quantized weights (src/gpu/tensor.ts QuantDType): every 32 consecutive elements of a
// row (a group) are int codes times one f16 scale d; the value is d · code.
// A chunk buffer w holds the codes (rows, k · BITS / 32) u32 from word 0, then the scales
// (rows · k / 32) f16 row-major from word p.s_base (two per u32, the even group in the low half).
// #if Q4: codes are int4 in [-8, 7] stored as code + 8. Word i of a group holds elements 8i..8i+7:
//   byte b carries element 8i + b in its low nibble and 8i + 4 + b in its high nibble, so the low
//   nibbles are one vec4 of elements and the high nibbles the next.
// #else (q8): codes are int8 in [-127, 127], element 4i + b in byte b of word i.
// Entry points, one per variant: GEMV (m = 1: y = x · wᵀ (+ bias) (+ y if ACC)), DEQUANT (chunk rows
// to f16 pairs, for the tiled GEMM of prefill/vision), QUANTIZE (f16 pairs to codes + scales).

#if Q4
const QMAX: f32 = 7.0;
const WORDS_PER_GROUP: u32 = 4u;
#else
const QMAX: f32 = 127.0;
const WORDS_PER_GROUP: u32 = 8u;
#endif

// Elements e..e+3 (e % 4 == 0) of the group's word `q` at position e % 8 (Q4) as f32 codes.
#if Q4
fn codes_lo(q: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(q) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u)) - 8.0;
}
fn codes_hi(q: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(q) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u)) - 8.0;
}
#else
fn codes8(q: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}
#endif

#if GEMV
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;  // (k / 4) f32
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;  // this chunk: codes, then scales
#if BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;     // (n) f32, by output column
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // (n) f32
#else
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // (n) f32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = {{WG}}u;
const ROWS: u32 = {{ROWS}}u;

// The f16 scale of flat group f (= row · groups + g) as f32.
fn scale(f: u32) -> f32 {
  let sw = p.s_base + (f >> 1u);
  return unpack2x16float(w[sw >> 2u][sw & 3u])[f & 1u];
}

// A thread's unit is one vec4<u32> of codes: 32 elements (one group) for Q4, 16 (half a group)
// for q8. Its x elements are loaded once and reused for the ROWS rows.
#if Q4
const UNIT: u32 = 32u;
struct XU { a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>, e: vec4<f32>, f: vec4<f32>, g: vec4<f32>, h: vec4<f32> }
fn load_x(j: u32) -> XU {
  let i = 8u * j;
  return XU(x[i], x[i + 1u], x[i + 2u], x[i + 3u], x[i + 4u], x[i + 5u], x[i + 6u], x[i + 7u]);
}
fn unit_dot(q: vec4<u32>, v: XU) -> f32 {
  return dot(codes_lo(q.x), v.a) + dot(codes_hi(q.x), v.b) + dot(codes_lo(q.y), v.c) +
    dot(codes_hi(q.y), v.d) + dot(codes_lo(q.z), v.e) + dot(codes_hi(q.z), v.f) +
    dot(codes_lo(q.w), v.g) + dot(codes_hi(q.w), v.h);
}
#else
const UNIT: u32 = 16u;
struct XU { a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32> }
fn load_x(j: u32) -> XU {
  let i = 4u * j;
  return XU(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}
fn unit_dot(q: vec4<u32>, v: XU) -> f32 {
  return dot(codes8(q.x), v.a) + dot(codes8(q.y), v.b) + dot(codes8(q.z), v.c) + dot(codes8(q.w), v.d);
}
#endif

fn store(c: u32, acc: f32) {
  let col = p.row_start + c;
  var v = acc;
#if BIAS
  v += bias[col];
#endif
#if ACC
  v += y[col];
#endif
  y[col] = v;
}

#if SUBGROUPS
var<workgroup> red: array<f32, ROWS * (WG / 4u)>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_size) sg_size: u32,
  @builtin(subgroup_invocation_id) sg_lane: u32,
) {
#else
var<workgroup> red: array<f32, ROWS * WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
#endif
  let r0 = (wid.x + wid.y * 65535u) * ROWS;
  let units = p.k / UNIT;
  var acc: array<f32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { acc[r] = 0.0; }
  for (var j = lid; j < units; j += WG) {
    let xv = load_x(j);
    let g = j * UNIT / 32u;
    for (var r = 0u; r < ROWS; r++) {
      // Rows past the chunk's end read the last row again (in bounds) and are not stored.
      let row = min(r0 + r, p.rows - 1u);
      acc[r] += scale(row * p.groups + g) * unit_dot(w[row * units + j], xv);
    }
  }
#if SUBGROUPS
  let nsg = WG / sg_size;
  for (var r = 0u; r < ROWS; r++) {
    let s = subgroupAdd(acc[r]);
    if (sg_lane == 0u) { red[r * (WG / 4u) + lid / sg_size] = s; }
  }
  workgroupBarrier();
  // ROWS may exceed WG (short rows): each thread stores rows lid, lid + WG, ...
  for (var r = lid; r < ROWS && r0 + r < p.rows; r += WG) {
    var t = 0.0;
    for (var i = 0u; i < nsg; i++) { t += red[r * (WG / 4u) + i]; }
    store(r0 + r, t);
  }
#else
  for (var r = 0u; r < ROWS; r++) { red[r * WG + lid] = acc[r]; }
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      for (var r = 0u; r < ROWS; r++) { red[r * WG + lid] += red[r * WG + lid + s]; }
    }
    workgroupBarrier();
  }
  for (var r = lid; r < ROWS && r0 + r < p.rows; r += WG) { store(r0 + r, red[r * WG]); }
#endif
}
#endif

#if DEQUANT
// f16 pairs of chunk rows [p.row0, p.row0 + p.n): one thread per output word (2 elements, same
// group since k % 32 == 0).
@group(0) @binding(0) var<storage, read> w: array<u32>;         // this chunk: codes, then scales
@group(0) @binding(1) var<storage, read_write> out: array<u32>;  // (n, k / 2) f16 pairs
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * 65535u) * 256u + lid;
  if (t >= p.n * p.k / 2u) { return; }
  let e = p.row0 * p.k + 2u * t;  // flat element in the chunk
  let f = e / 32u;
  let d = unpack2x16float(w[p.s_base + (f >> 1u)])[f & 1u];
  let word = w[f * WORDS_PER_GROUP + (e % 32u) / (32u / WORDS_PER_GROUP)];
#if Q4
  // Elements e, e + 1 sit in bytes b, b + 1 (low nibbles if e % 8 < 4, else high nibbles).
  let b = e % 4u;
  let sh = 8u * b + select(0u, 4u, e % 8u >= 4u);
  let c = vec2<f32>(f32((word >> sh) & 15u), f32((word >> (sh + 8u)) & 15u)) - 8.0;
#else
  let b = e % 4u;
  let c = vec2<f32>(bitcast<vec2<i32>>(vec2<u32>(word) << vec2<u32>(24u - 8u * b, 16u - 8u * b)) >> vec2<u32>(24u));
#endif
  out[t] = pack2x16float(d * c);
}
#endif

#if QUANTIZE
// Rows given as f16 (or with SRC_BF16, bf16) pairs → codes and scales of chunk rows
// [p.row0, p.row0 + p.n). One thread per two groups (64 elements), so each scale word has one
// writer; p.row0 · groups must be even.
@group(0) @binding(0) var<storage, read> src: array<u32>;          // (n, k / 2) f16|bf16 pairs
@group(0) @binding(1) var<storage, read_write> w: array<u32>;      // this chunk
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// Elements 2i, 2i + 1 of the source rows as f32.
fn load_pair(i: u32) -> vec2<f32> {
#if SRC_BF16
  let q = src[i];  // bf16 is the upper half of an f32
  return vec2<f32>(bitcast<f32>(q << 16u), bitcast<f32>(q & 0xffff0000u));
#else
  return unpack2x16float(src[i]);
#endif
}

// Quantizes group fl of src into chunk group f; returns its scale.
fn quant_group(fl: u32, f: u32) -> f32 {
  var v: array<f32, 32>;
  var amax = 0.0;
  for (var i = 0u; i < 16u; i++) {
    let h = load_pair(fl * 16u + i);
    v[2u * i] = h.x;
    v[2u * i + 1u] = h.y;
    amax = max(amax, max(abs(h.x), abs(h.y)));
  }
  // The scale as stored (f16), so codes are rounded against the value the kernels multiply by.
  let d = unpack2x16float(pack2x16float(vec2<f32>(amax / QMAX, 0.0))).x;
  let inv = select(0.0, 1.0 / d, d > 0.0);
  for (var i = 0u; i < WORDS_PER_GROUP; i++) {
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
#if Q4
      let lo = u32(clamp(round(v[8u * i + b] * inv), -8.0, 7.0) + 8.0);
      let hi = u32(clamp(round(v[8u * i + 4u + b] * inv), -8.0, 7.0) + 8.0);
      word |= (lo | (hi << 4u)) << (8u * b);
#else
      let c = i32(clamp(round(v[4u * i + b] * inv), -127.0, 127.0));
      word |= (bitcast<u32>(c) & 255u) << (8u * b);
#endif
    }
    w[f * WORDS_PER_GROUP + i] = word;
  }
  return d;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * 65535u) * 64u + lid;
  let ng = p.n * (p.k / 32u);  // groups in this slice
  if (2u * t >= ng) { return; }
  let f0 = p.row0 * (p.k / 32u);  // first chunk group of the slice (even)
  let d0 = quant_group(2u * t, f0 + 2u * t);
  var d1 = 0.0;
  if (2u * t + 1u < ng) { d1 = quant_group(2u * t + 1u, f0 + 2u * t + 1u); }
  w[p.s_base + (f0 >> 1u) + t] = pack2x16float(vec2<f32>(d0, d1));
}
#endif
