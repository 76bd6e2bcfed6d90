// Group-wise quantized weights (src/gpu/tensor.ts QuantDType): every 32 consecutive elements of a
// row (a group) are int codes times one f16 scale d; the value is d · code.
// A chunk buffer w holds the codes (rows, k · BITS / 32) u32 from word 0, then the scales
// (rows · k / 32) f16 row-major from word p.s_base (two per u32, the even group in the low half).
// #if Q4: codes are int4 in [-8, 7] stored as code + 8. Word i of a group holds elements 8i..8i+7:
//   byte b carries element 8i + b in its low nibble and 8i + 4 + b in its high nibble, so the low
//   nibbles are one vec4 of elements and the high nibbles the next.
// #else (q8): codes are int8 in [-127, 127], element 4i + b in byte b of word i.
// Entry points, one per variant: GEMV (m = 1: y = x · wᵀ (+ bias) (+ y if ACC); with XROWS 2–16
// rows of x at once), DEQUANT (chunk rows to f16 pairs, for the tiled GEMM of prefill/vision),
// QUANTIZE (f16 pairs to codes + scales).

#if Q4
const QMAX: f32 = 7.0;
const WORDS_PER_GROUP: u32 = 4u;
#else
const QMAX: f32 = 127.0;
const WORDS_PER_GROUP: u32 = 8u;
#endif

#if GEMV
// TPR threads (a power of two) share each row group's k: thread t of a group takes units t,
// t + TPR, ... of its ROWS consecutive rows, so each x unit it reads serves ROWS rows, and a
// workgroup of WG threads computes (WG / TPR) · ROWS rows.
// x is staged in workgroup memory, p.tile units at a time, one padding vec4 after each unit: a
// thread reads its unit's 8 (q4) or 4 (q8) vec4 of x, and from global memory those reads (128 or
// 64 bytes apart across lanes) cost up to 8× the L1 wavefronts of contiguous ones — the bound of
// the first version of this GEMV (per element it ran as fast in q4 as in q8). Padded, lanes j
// read 16-byte slots (j · (UNIT/4 + 1) + i) mod 8 of a 128-byte row: conflict-free. Staging also
// applies the norm weight / silu once per workgroup instead of once per row group.
// Reduction: #if XOR (TPR ≤ every subgroup size) subgroupShuffleXor within the row group; #if ADD
// (TPR ≥ every subgroup size) subgroupAdd per subgroup then the subgroups' partials through
// workgroup memory; else a tree over workgroup memory.
// #if NORM: x is RMS-normed on load (a fused Qwen2RMSNorm, as in kernels/linear.wgsl):
// y = inv_rms · (w · (x ∘ nw)ᵀ) (+ bias) (+ y); every workgroup sums x² while staging x.
// #if SILU: x is (2k) f32 [gate | up] and the product reads silu(gate) · up.
// #if PREPX (entry `prep`, with XQ): no product — x is normed (times nw; 1 / rms stays for the
// GEMV) / silu'd and quantized ONCE into the prepared-x buffer xp, which GEMVs #if XP read instead
// of staging and quantizing all of x in every workgroup. xp (u32 words, nb = k / 32 blocks):
// block b's int8 codes at [8b, 8b + 8), its (2^e, Σ codes) as f32 at 8 nb + 2b, and (NORM) its
// Σ x² of the raw x at 10 nb + b — the same bits stage_block() gives, so results do not change.
// #if EMIT (main, not ROPE, one weight chunk, (WG / TPR) · ROWS a multiple of 32): the GEMV also
// writes its output y (after ACC: the updated residual stream) as the prepared x of the next GEMV
// into xpo — normed by the next RMSNorm's weight ew (1 / rms left to the consumer, which sums the
// blocks' Σ y²), int8 blocks as PREPX writes them — so that GEMV needs no PREPX pass. A workgroup
// owns whole 32-row blocks: its stored values go through workgroup memory, then eight threads
// per block quantize it as quant_vec (the code PREPX runs) does: the same codes and scales.
// #if EMIT_SILU (with EMIT): y is the MLP's [gate | up] (p.rows = 2 I) and the GEMV emits
// silu(gate) · up (I elements, no norm) prepared for down_proj, as PREPX with SILU would: a
// workgroup's first RPW / 2 rows are gate rows, the rest the matching up rows.
// #if QVEC: quant_vec is compiled (XQ staging, PREPX, EMIT); #if XPO: write_block (PREPX, EMIT).
// #if ROPE (main, ROWS even, not ACC, one weight chunk): the decode q/k/v projection with rope +
// the KV-cache write as its epilogue, as kernels/linear.wgsl's ROPE: a row group's rows 2i, 2i + 1
// are a rotary pair (rows j, j + half of one of the first p.rot_rows rows: q heads, then k heads)
// or, past those, two consecutive v rows; the lane that stores them turns the pair by the angle of
// state.position (kernels/rope.wgsl's formula), writes y and, for k and v rows, the cache row
// state.cache_len (dropped past p.max_rows). Saves the rope dispatch of quantized weights.
#if XP
@group(0) @binding(0) var<storage, read> xp: array<vec4<u32>>;  // (11 · nb / 4) prepared x
#else
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;  // (k / 4) f32 (SILU: (2k / 4))
#endif
#ifnot PREPX
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;  // this chunk: codes, then scales
#if BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;     // (n) f32, by output column
#endif
#endif
#if NORM
#ifnot XP
@group(0) @binding({{NW_BINDING}}) var<storage, read> nw: array<vec4<f32>>;  // (k / 4) f32
#endif
#endif
#if PREPX
@group(0) @binding({{Y_BINDING}}) var<storage, read_write> xpo: array<u32>;  // (11 · nb) prepared x
#else
@group(0) @binding({{Y_BINDING}}) var<storage, read_write> y: array<f32>;  // (n) f32
#endif
#if EMIT
#ifnot EMIT_SILU
@group(0) @binding({{EW_BINDING}}) var<storage, read> ew: array<vec4<f32>>;  // (n / 4) f32 next norm weight
#endif
@group(0) @binding({{EO_BINDING}}) var<storage, read_write> xpo: array<u32>;  // (11 · n / 32) prepared y
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;
#if ROPE
#include rope_kv
#endif

const WG: u32 = {{WG}}u;
const TPR: u32 = {{TPR}}u;
const ROWS: u32 = {{ROWS}}u;
const GROUPS_PER_WG: u32 = WG / TPR;
const RPW: u32 = GROUPS_PER_WG * ROWS;  // rows per workgroup (EMIT: whole 32-row blocks)

#ifnot PREPX
// The f16 scale of flat group f (= row · groups + g) as f32.
fn scale(f: u32) -> f32 {
  let sw = p.s_base + (f >> 1u);
  return unpack2x16float(w[sw >> 2u][sw & 3u])[f & 1u];
}
#endif

// Codes become f32 without int→float conversions (a quarter-rate instruction that bounded the
// first GEMV): a code field at bit s of a word, OR-ed under the exponent of 2^(23 − s), is the
// float 2^(23 − s) + field exactly, and one subtraction of 2^(23 − s) + offset leaves the code.
// Fields at s ∈ {0, 8} (Q4 also 4, 12) come from the word and the word >> 16.
#if Q4
// Elements 0..3 (low nibbles: s = 0, 8 of q and of q >> 16) and 4..7 (high nibbles: s = 4, 12).
fn codes_lo(q: u32) -> vec4<f32> {
  let m = vec4<u32>(q, q, q >> 16u, q >> 16u);
  return bitcast<vec4<f32>>((m & vec4<u32>(0xfu, 0xf00u, 0xfu, 0xf00u)) |
    vec4<u32>(0x4b000000u, 0x47000000u, 0x4b000000u, 0x47000000u)) -
    vec4<f32>(8388616.0, 32776.0, 8388616.0, 32776.0);
}
fn codes_hi(q: u32) -> vec4<f32> {
  let m = vec4<u32>(q, q, q >> 16u, q >> 16u);
  return bitcast<vec4<f32>>((m & vec4<u32>(0xf0u, 0xf000u, 0xf0u, 0xf000u)) |
    vec4<u32>(0x49000000u, 0x45000000u, 0x49000000u, 0x45000000u)) -
    vec4<f32>(524296.0, 2056.0, 524296.0, 2056.0);
}
#else
#include codes8
#endif

#if NORM
#if XROWS
#if PREPX
var<workgroup> nred: array<f32, WG>;
#else
#if XP
// The few-row GEMV: x row i's Σx² over NL lanes (kernels/linear_q.ts XROWS_NORM_LANES, whatever
// WG is), NLT = max(NL / WG, 1) of them a thread; after the thread's own tree levels, its sums at
// [i · WG, (i + 1) · WG).
const NL: u32 = {{NL}}u;
const NLT: u32 = {{NLT}}u;
var<workgroup> nred: array<f32, XR * WG>;
#else
// The f32-x few-row GEMV: NRB x rows' Σx² trees at a time (row_norms()), then each row's 1 / rms.
const NRB: u32 = {{NRB}}u;
var<workgroup> nred: array<f32, NRB * WG>;
var<workgroup> xrs: array<f32, XR>;
#endif
#endif
#else
var<workgroup> nred: array<f32, WG>;
#endif

// 1 / rms from each thread's share ss of Σ x² (a tree over workgroup memory). Called by every
// thread of the workgroup in uniform control flow.
fn inv_rms(lid: u32, ss: f32) -> f32 {
  nred[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { nred[lid] += nred[lid + s]; }
    workgroupBarrier();
  }
  return inverseSqrt(nred[0] / f32(p.k) + p.eps);
}
#ifnot XP
// x vec4 i times the norm weight; 1 / rms is applied in finish().
fn xn(i: u32) -> vec4<f32> { return x[i] * nw[i]; }
#endif
#else
#if SILU
// silu(gate) · up at x vec4 i; up sits k elements after gate.
fn xn(i: u32) -> vec4<f32> {
  let g = x[i];
  return g / (vec4<f32>(1.0) + exp(-g)) * x[i + p.k / 4u];
}
#else
#ifnot XP
fn xn(i: u32) -> vec4<f32> { return x[i]; }
#endif
#endif
#endif

#if QVEC
// One quantized x block: codes of elements 0..15 and 16..31, (2^e, Σ codes), Σ x² (NORM: raw x).
struct QBlock { c0: vec4<u32>, c1: vec4<u32>, s: vec2<f32>, ss: f32 }

// Quantizes the 32 values v of a block (normed / silu'd; ss: the raw block's Σ x², or 0) as the
// XQ comment below says.
fn quant_vec(v: array<vec4<f32>, 8>, ss: f32) -> QBlock {
  var amax = 0.0;
  for (var i = 0u; i < 8u; i++) {
    let a = abs(v[i]);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  // amax = f · 2^E, f in [0.5, 1): 2^(E − 7) holds it in 127 steps unless f > 127/128.
  let fe = frexp(amax);
  let e = max(select(fe.exp - 6, fe.exp - 7, fe.fract <= 0.9921875), -120);
  let inv = ldexp(1.0, -e);
  var words: array<u32, 8>;
  var sum = 0;
  for (var i = 0u; i < 8u; i++) {
    let c = vec4<i32>(round(v[i] * inv));
    sum += c.x + c.y + c.z + c.w;
    words[i] = pack4xI8(c);
  }
  return QBlock(vec4<u32>(words[0], words[1], words[2], words[3]),
    vec4<u32>(words[4], words[5], words[6], words[7]), vec2<f32>(ldexp(1.0, e), f32(sum)), ss);
}
#endif

#if XPO
#if XROWS
var<private> xo: u32;  // PREPX over m rows of x (XROWS): this thread's x row's first word in xpo
#else
const xo: u32 = 0u;
#endif
var<workgroup> e_max: array<f32, CQ>;  // per slot (block, vec4 of it): max |v|
var<workgroup> e_ss: array<f32, CQ>;   // Σ x²
var<workgroup> e_sum: array<i32, CQ>;  // Σ codes

// Quantizes blocks cooperatively, eight threads a block: the thread of slot (block lb, vec4 j of
// it) = 8 lb + j holds v (its 4 values, normed / silu'd) and ss (their raw Σ x², or 0) of block gb
// of nb, and writes its codes word; the block's j = 0 thread its (2^e, Σ codes) and Σ x². The
// codes and scales are quant_vec's (max |v| and Σ codes are exact in any order); Σ x² is summed
// in another order. `live`: the slot is this thread's (else it only joins the barriers); `ok`:
// block gb exists. Called by every thread of the workgroup in uniform control flow.
fn coop_quant(live: bool, slot: u32, gb: u32, nb: u32, ok: bool, v: vec4<f32>, ss: f32) {
  let j = slot % 8u;
  let l0 = slot - j;
  let a = abs(v);
  if (live) {
    e_max[slot] = max(max(a.x, a.y), max(a.z, a.w));
    e_ss[slot] = ss;
  }
  workgroupBarrier();
  var amax = 0.0;
  for (var t = 0u; t < 8u; t++) { amax = max(amax, e_max[l0 + t]); }
  // As quant_vec: amax = f · 2^E, f in [0.5, 1): 2^(E − 7) holds it in 127 steps unless f > 127/128.
  let fe = frexp(amax);
  let ex = max(select(fe.exp - 6, fe.exp - 7, fe.fract <= 0.9921875), -120);
  let c = vec4<i32>(round(v * ldexp(1.0, -ex)));
  if (ok) { xpo[xo + 8u * gb + j] = pack4xI8(c); }
  if (live) { e_sum[slot] = c.x + c.y + c.z + c.w; }
  workgroupBarrier();
  if (ok && j == 0u) {
    var sum = 0;
    var s2 = 0.0;
    for (var t = 0u; t < 8u; t++) {
      sum += e_sum[l0 + t];
      s2 += e_ss[l0 + t];
    }
    xpo[xo + 8u * nb + 2u * gb] = bitcast<u32>(ldexp(1.0, ex));
    xpo[xo + 8u * nb + 2u * gb + 1u] = bitcast<u32>(f32(sum));
    xpo[xo + 10u * nb + gb] = bitcast<u32>(s2);
  }
  workgroupBarrier();  // the slots are reused by the next round
}

// Block b of nb into xpo (PREPX or EMIT): codes at [8b, 8b + 8), (2^e, Σ codes) at 8 nb + 2b, Σ x² at 10 nb + b.
fn write_block(b: u32, nb: u32, q: QBlock) {
  for (var i = 0u; i < 4u; i++) {
    xpo[8u * b + i] = q.c0[i];
    xpo[8u * b + 4u + i] = q.c1[i];
  }
  xpo[8u * nb + 2u * b] = bitcast<u32>(q.s.x);
  xpo[8u * nb + 2u * b + 1u] = bitcast<u32>(q.s.y);
  xpo[10u * nb + b] = bitcast<u32>(q.ss);
}
#endif

#if XQ
// x as int8 (llama.cpp's MMVQ idea): each 32-element block of x (one weight group) is staged as
// int8 codes c = round(x / 2^e) with the smallest power of two 2^e ≥ max|x| / 127, and a block's
// product is exact integer dot4I8Packed sums (q4: Σ nibble · c − 8 · Σ c) times d · 2^e (exact:
// 2^e is a power of two), one f32 rounding per block and row. A power of two rather than
// max|x| / 127 makes the codes exactly reproducible (no division: src/ref/linear_q.ts gets the
// same bits) at up to 2× the rounding step. Per 8 q4 weights: 3 bit ops and 2 dot4I8Packed.
const UNIT: u32 = 32u;
#if Q4
const CV: u32 = 1u;  // vec4<u32> of codes per unit
#else
const CV: u32 = 2u;
#endif
#ifnot XP
var<workgroup> xq0: array<vec4<u32>, {{TILE}}u>;  // tile block j: int8 codes of elements 0..15
var<workgroup> xq1: array<vec4<u32>, {{TILE}}u>;  // elements 16..31
var<workgroup> xqs: array<vec2<f32>, {{TILE}}u>;  // (2^e, Σ codes)

// Quantizes x block b (elements 32b..32b+31, normed / silu'd).
fn quant_block(b: u32) -> QBlock {
  var v: array<vec4<f32>, 8>;
  var ss = 0.0;
  for (var i = 0u; i < 8u; i++) {
#if NORM
    let e = x[8u * b + i];
    ss += dot(e, e);
#endif
    v[i] = xn(8u * b + i);
  }
  return quant_vec(v, ss);
}

// Quantizes x block b into tile slot j; returns its Σ x² (NORM).
fn stage_block(b: u32, j: u32) -> f32 {
  let q = quant_block(b);
  xq0[j] = q.c0;
  xq1[j] = q.c1;
  xqs[j] = q.s;
  return q.ss;
}
#endif

#if PREPX
#if PREP8
// Eight threads a block, one vec4 each (coop_quant): eight blocks a workgroup.
const CQ: u32 = 64u;

@compute @workgroup_size(64)
fn prep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let nb = p.k / 32u;
#if XROWS
  // Blocks of all p.m rows of x in a row: block g of the dispatch is block b of x row g / nb,
  // prepared at word p.xs of each row. SILU: x rows are [gate | up], 2k wide.
  let g = (wid.x + wid.y * 65535u) * 8u + lid / 8u;
  let xr = min(g / nb, p.m - 1u);
  let b = g - (g / nb) * nb;
  let ok = g < p.m * nb;
  xo = xr * p.xs;
  let c = 8u * min(b, nb - 1u) + lid % 8u;  // x vec4 within the row (the norm weight's)
#if SILU
  let i = xr * (p.k / 2u) + c;  // x vec4
#else
  let i = xr * (p.k / 4u) + c;  // x vec4
#endif
#else
  let b = (wid.x + wid.y * 65535u) * 8u + lid / 8u;
  let ok = b < nb;
  let i = 8u * min(b, nb - 1u) + lid % 8u;  // x vec4
#endif
#if NORM
  let e = x[i];
  let ss = dot(e, e);
#else
  let ss = 0.0;
#endif
#if XROWS
#if NORM
  coop_quant(true, lid, b, nb, ok, x[i] * nw[c], ss);
#else
  coop_quant(true, lid, b, nb, ok, xn(i), ss);
#endif
#else
  coop_quant(true, lid, b, nb, ok, xn(i), ss);
#endif
}
#else
const CQ: u32 = 1u;  // (coop_quant unused)

@compute @workgroup_size(64)
fn prep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = (wid.x + wid.y * 65535u) * 64u + lid;
  let nb = p.k / 32u;
  if (b >= nb) { return; }
  write_block(b, nb, quant_block(b));
}
#endif
#endif

#ifnot PREPX
// Σ code · c over the block at code vec4 index i (exact; a small integer as f32).
fn block_dot(i: u32, a: vec4<u32>, b: vec4<u32>, sum: f32) -> f32 {
#if Q4
  // Word n holds elements 8n..8n+3 in its low nibbles, 8n+4..8n+7 in its high ones: as bytes
  // 0..15 they are int8 too. The − 8 of every code is the − 8 · Σ c.
  let q = w[i];
  let m = 0x0f0f0f0fu;
  let d = dot4I8Packed(q.x & m, a.x) + dot4I8Packed((q.x >> 4u) & m, a.y) +
    dot4I8Packed(q.y & m, a.z) + dot4I8Packed((q.y >> 4u) & m, a.w) +
    dot4I8Packed(q.z & m, b.x) + dot4I8Packed((q.z >> 4u) & m, b.y) +
    dot4I8Packed(q.w & m, b.z) + dot4I8Packed((q.w >> 4u) & m, b.w);
  return f32(d) - 8.0 * sum;
#else
  let q0 = w[i];
  let q1 = w[i + 1u];
  let d = dot4I8Packed(q0.x, a.x) + dot4I8Packed(q0.y, a.y) + dot4I8Packed(q0.z, a.z) +
    dot4I8Packed(q0.w, a.w) + dot4I8Packed(q1.x, b.x) + dot4I8Packed(q1.y, b.y) +
    dot4I8Packed(q1.z, b.z) + dot4I8Packed(q1.w, b.w);
  return f32(d);
#endif
}
#endif
#else
// A thread's unit is one vec4<u32> of codes: 32 elements (one group) for Q4, 16 (half a group)
// for q8. Its x elements are loaded once and reused for the ROWS rows.
#if Q4
const UNIT: u32 = 32u;
#else
const UNIT: u32 = 16u;
#endif
const UV: u32 = UNIT / 4u;  // vec4 of x per unit
// x units [u0, u0 + p.tile) of the current tile, unit j at slot j · (UV + 1).
var<workgroup> xs: array<vec4<f32>, {{TILE}}u * (UV + 1u)>;

#if Q4
struct XU { a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>, e: vec4<f32>, f: vec4<f32>, g: vec4<f32>, h: vec4<f32> }
// The staged x of tile unit j.
fn load_x(j: u32) -> XU {
  let i = j * (UV + 1u);
  return XU(xs[i], xs[i + 1u], xs[i + 2u], xs[i + 3u], xs[i + 4u], xs[i + 5u], xs[i + 6u], xs[i + 7u]);
}
fn unit_dot(q: vec4<u32>, v: XU) -> f32 {
  return dot(codes_lo(q.x), v.a) + dot(codes_hi(q.x), v.b) + dot(codes_lo(q.y), v.c) +
    dot(codes_hi(q.y), v.d) + dot(codes_lo(q.z), v.e) + dot(codes_hi(q.z), v.f) +
    dot(codes_lo(q.w), v.g) + dot(codes_hi(q.w), v.h);
}
#else
struct XU { a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32> }
fn load_x(j: u32) -> XU {
  let i = j * (UV + 1u);
  return XU(xs[i], xs[i + 1u], xs[i + 2u], xs[i + 3u]);
}
fn unit_dot(q: vec4<u32>, v: XU) -> f32 {
  return dot(codes8(q.x), v.a) + dot(codes8(q.y), v.b) + dot(codes8(q.z), v.c) + dot(codes8(q.w), v.d);
}
#endif

#endif

#ifnot PREPX
// Chunk row r (< ROWS) of row group rgi (its index in the dispatch); past p.rows: not stored.
fn chunk_row(rgi: u32, r: u32) -> u32 {
#if ROPE
  return rope_row(rgi * (ROWS / 2u) + r / 2u, r % 2u);  // row pair, then its side
#else
#if EMIT_SILU
  // Gate rows, then the matching up rows; past the gate rows: p.rows (not stored).
  let h = RPW / 2u;
  let lr = (rgi % GROUPS_PER_WG) * ROWS + r;
  let g = (rgi / GROUPS_PER_WG) * h + lr % h;
  let half = p.rows / 2u;
  if (g >= half) { return p.rows; }
  return select(half + g, g, lr < h);
#else
  return rgi * ROWS + r;
#endif
#endif
}

// Output of chunk row c from its dot product; `rs`: 1 / rms with NORM, else 1.
fn finish(c: u32, acc: f32, rs: f32) -> f32 {
  let col = p.row_start + c;
  var v = acc * rs;
#if BIAS
  v += bias[col];
#endif
#if ACC
  v += y[col];
#endif
  return v;
}

#if EMIT
var<workgroup> ev: array<f32, RPW>;  // the workgroup's outputs, by row within it

#if EMIT_SILU
const EB: u32 = RPW / 64u;  // emitted blocks per workgroup: 32 gate rows + their 32 up rows each
#else
const EB: u32 = RPW / 32u;
#endif
const CQ: u32 = 8u * EB;  // coop_quant slots

// Emits the workgroup's blocks (values in ev) into xpo, eight threads a block, each one vec4 (v =
// y ∘ ew, or silu(gate) · up): coop_quant. Called by every thread of the workgroup in uniform
// control flow, after the outputs are in ev.
fn emit_blocks(wgi: u32, lid: u32) {
#if EMIT_SILU
  let nb = p.rows / 64u;  // blocks of silu(gate) · up
#else
  let nb = p.rows / 32u;
#endif
  for (var i0 = 0u; i0 < CQ; i0 += WG) {
    let i = i0 + lid;
    let lb = min(i / 8u, EB - 1u);  // block within the workgroup (threads past CQ repeat the last)
    let j = i % 8u;
    let gb = wgi * EB + lb;
    let o = 32u * lb + 4u * j;
    let e = vec4<f32>(ev[o], ev[o + 1u], ev[o + 2u], ev[o + 3u]);
#if EMIT_SILU
    let u = o + RPW / 2u;
    let v = e / (vec4<f32>(1.0) + exp(-e)) * vec4<f32>(ev[u], ev[u + 1u], ev[u + 2u], ev[u + 3u]);
    let ss = 0.0;
#else
    let v = e * ew[8u * min(gb, nb - 1u) + j];
    let ss = dot(e, e);
#endif
    coop_quant(i < CQ, 8u * lb + j, gb, nb, i < CQ && gb < nb, v, ss);
  }
}
#endif

#ifnot XROWS
// Stores row r of row group rgi from its dot product (not past the chunk).
fn put(rgi: u32, r: u32, acc: f32, rs: f32) {
  let c = chunk_row(rgi, r);
  if (c >= p.rows) { return; }
  let v = finish(c, acc, rs);
  y[p.row_start + c] = v;
#if EMIT
  ev[(rgi % GROUPS_PER_WG) * ROWS + r] = v;
#endif
}
#endif

#if ROPE
// Stores row pair q (< ROWS / 2) of row group rgi from its dot products a, b: rotated if a rotary
// pair, into y and, for k and v rows, into the cache (kernels/linear.wgsl's store_rope).
fn store_pair(rgi: u32, q: u32, a: f32, b: f32, rs: f32) {
  let r0 = chunk_row(rgi, 2u * q);
  let r1 = chunk_row(rgi, 2u * q + 1u);
  if (r1 >= p.rows) { return; }
  store_rope_pair(r0, r1, r0 % p.half, r0 < p.rot_rows, finish(r0, a, rs), finish(r1, b, rs));
}
#endif

#if XROWS
// #if XROWS (1 < m ≤ 16 rows of x; BIAS, ACC, NORM and (f32 x) SILU, no ROPE or EMIT): the
// few-row GEMV over all m rows of x at once. Each weight unit a thread loads serves XR x rows (XR:
// m's bucket, 2, 4, 8 or 16; rows past p.m are computed on whatever x they read and not stored),
// so a product of 2 rows streams the weights once, as m = 1 does. Accumulator (chunk row r of the
// row group, x row i) is slot r · XR + i. Each adds its units' terms in the order m = 1's acc[r]
// adds them (units t, t + TPR, … of the thread), each term the same expression, and is reduced
// across the row group as m = 1 reduces a row (main's XOR / ADD / TREE over NACC slots, same
// TPR): a row's result has the bits the m = 1 GEMV of the same x precision and TPR gives that row
// alone. The loops are written out (named accumulators: an indexed array of XR · ROWS of them
// would spill) by kernels/linear_q.ts — XR_STEPS (xrowsSteps()) or XF_STEPS (xrowsF32Steps()).
// #if XP (int8 x, with XQ): one PREPX pass quantized every row of x into its own block list (x row
// i's words from i · p.xs; with SILU silu(gate) · up of each row [gate | up]); a weight unit's
// codes are unpacked once (unit_codes) for all x rows, each term scale · 2^e · the exact integer
// block dot.
// #if NORM (XP): the PREPX pass prepared each row's x ∘ nw and its blocks' Σx²; each x row's Σx² is
// summed over NL lanes whatever WG is (WG follows m's bucket: summed over the workgroup, a row's
// 1 / rms would depend on the rows beside it) as m = 1's prepared-x GEMV sums its one row's over
// its WG threads (lane v's blocks v, v + NL, …, then a tree over the lanes — its levels ≥ WG in a
// thread's registers, the rest in nred; the m = 1 default WG is NL), and
// its outputs are scaled by its 1 / rms before bias and the old y (finish()'s order): a row's bits
// are m = 1's fused norm product's at WG = NL (where k / 32 ≤ NL: any WG ≥ k / 32) and the same
// TPR.
// #else (f32 x, q8: kernels/linear_q.ts GEMV_XROWS_F32): x stays f32, staged in workgroup memory as
// the m = 1 f32-x GEMV stages it — x units of p.tile a tile, padded — but SUB units of every row a
// round (the rows' whole tiles do not fit: SUB a multiple of TPR, so a thread still takes units t,
// t + TPR, … of each tile), the norm weight / silu · mul applied while staging (xn()'s expressions).
// With NORM each x row's Σx² is summed by thread and tile as m = 1 sums its one row's (WG is m = 1's)
// and reduced by the same tree over workgroup memory, NRB rows a round (row_norms()).
const XR: u32 = {{XR}}u;

#if XP
// A weight unit's codes as 8 words of int8 (Q4: nibbles, code + 8), loaded and unpacked once for
// every x row: block_dot's operands.
struct Codes { c0: vec4<u32>, c1: vec4<u32> }
fn unit_codes(i: u32) -> Codes {
#if Q4
  let q = w[i];
  let m = 0x0f0f0f0fu;
  return Codes(vec4<u32>(q.x & m, (q.x >> 4u) & m, q.y & m, (q.y >> 4u) & m),
    vec4<u32>(q.z & m, (q.z >> 4u) & m, q.w & m, (q.w >> 4u) & m));
#else
  return Codes(w[i], w[i + 1u]);
#endif
}

// block_dot() from loaded codes: the same integer sum (exact in any order), the same f32 value.
fn codes_dot(c: Codes, a: vec4<u32>, b: vec4<u32>, sum: f32) -> f32 {
  let d = dot4I8Packed(c.c0.x, a.x) + dot4I8Packed(c.c0.y, a.y) + dot4I8Packed(c.c0.z, a.z) +
    dot4I8Packed(c.c0.w, a.w) + dot4I8Packed(c.c1.x, b.x) + dot4I8Packed(c.c1.y, b.y) +
    dot4I8Packed(c.c1.z, b.z) + dot4I8Packed(c.c1.w, b.w);
#if Q4
  return f32(d) - 8.0 * sum;
#else
  return f32(d);
#endif
}

// The first vec4 of x row i's prepared blocks (rows past p.m: row p.m − 1).
fn xrow(i: u32) -> u32 { return min(i, p.m - 1u) * (p.xs / 4u); }

#if NORM
// x row i's 1 / rms, from its Σx² in nred[i · WG].
fn row_rs(i: u32) -> f32 { return inverseSqrt(nred[i * WG] / f32(p.k) + p.eps); }
#endif
#else
const SUB: u32 = {{SUB}}u;  // x units of each row staged a round

// x row i's vec4 v (rows past p.m: row p.m − 1) as the product reads it, as xn() reads m = 1's:
// times the norm weight (1 / rms applied in put()), or silu(gate) · up of the row [gate | up].
fn xr(i: u32, v: u32) -> vec4<f32> {
#if SILU
  let o = min(i, p.m - 1u) * (p.k / 2u) + v;
  let g = x[o];
  return g / (vec4<f32>(1.0) + exp(-g)) * x[o + p.k / 4u];
#else
  let e = x[min(i, p.m - 1u) * (p.k / 4u) + v];
#if NORM
  return e * nw[v];
#else
  return e;
#endif
#endif
}

#if NORM
// Each x row's 1 / rms from every thread's share ss of its Σx²: m = 1's inv_rms() tree, NRB rows a
// round. Called by every thread of the workgroup in uniform control flow.
fn row_norms(lid: u32, ss: array<f32, XR>) {
  for (var i0 = 0u; i0 < XR; i0 += NRB) {
    for (var b = 0u; b < NRB; b++) { nred[b * WG + lid] = ss[i0 + b]; }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
      if (lid < s) {
        for (var b = 0u; b < NRB; b++) { nred[b * WG + lid] += nred[b * WG + lid + s]; }
      }
      workgroupBarrier();
    }
    if (lid < NRB) { xrs[i0 + lid] = inverseSqrt(nred[lid * WG] / f32(p.k) + p.eps); }
    workgroupBarrier();
  }
}

fn row_rs(i: u32) -> f32 { return xrs[i]; }
#endif
#endif

// Stores slot `slot` (chunk row r, x row i) of row group rgi from its dot product: y row i, times
// the row's 1 / rms (NORM), with bias and the old y as finish() adds them (not past the chunk or
// p.m). (`rs`: main's 1, as m = 1's put() takes it.)
fn put(rgi: u32, slot: u32, acc: f32, rs: f32) {
  let c = rgi * ROWS + slot / XR;
  let i = slot % XR;
  if (c >= p.rows || i >= p.m) { return; }
  let col = p.row_start + c;
#if NORM
  var v = acc * row_rs(i);
#else
  var v = acc;
#endif
#if BIAS
  v += bias[col];
#endif
#if ACC
  v += y[i * p.n + col];
#endif
  y[i * p.n + col] = v;
}

const NACC: u32 = ROWS * XR;  // accumulators a thread: SLOTS
#else
const NACC: u32 = ROWS;
#endif
#if ADD
// One partial per (accumulator of the workgroup, subgroup of its row group); subgroups have ≥ 4
// lanes.
var<workgroup> red: array<f32, WG / TPR * NACC * (TPR / 4u)>;
#endif
#if TREE
var<workgroup> red: array<f32, NACC * WG>;
#endif

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
#if ADD
  @builtin(subgroup_size) sg_size: u32,
  @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
) {
  let t = lid % TPR;         // lane within the row group
  let rg = lid / TPR;        // row group within the workgroup
  let rgi = (wid.x + wid.y * 65535u) * GROUPS_PER_WG + rg;  // its index in the dispatch
  let units = p.k / UNIT;
#if XROWS
#if XP
  var acc: array<f32, NACC>;
#if NORM
  // Lanes lid + c · WG (c < NLT) of each x row's Σx²: a lane's blocks' sums (word 10 nb + b of the
  // row; lanes ≥ NL hold 0), then the tree levels s ≥ WG (lane l + s into lane l < s) in registers.
  for (var i = 0u; i < XR; i++) {
    var ls: array<f32, NLT>;
    for (var c = 0u; c < NLT; c++) {
      let l = lid + c * WG;
      var ss = 0.0;
      if (l < NL) {
        for (var b = l; b < units; b += NL) {
          let o = 4u * xrow(i) + 10u * units + b;
          ss += bitcast<f32>(xp[o >> 2u][o & 3u]);
        }
      }
      ls[c] = ss;
    }
    for (var s = NLT / 2u; s > 0u; s = s >> 1u) {
      for (var c = 0u; c < s; c++) { ls[c] += ls[c + s]; }
    }
    nred[i * WG + lid] = ls[0];
  }
#endif
{{XR_STEPS}}
#if NORM
  // The tree's levels s < WG as m = 1's inv_rms() (levels past NL add 0s): nred[i · WG] is row
  // i's Σx².
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      for (var i = 0u; i < XR; i++) { nred[i * WG + lid] += nred[i * WG + lid + s]; }
    }
    workgroupBarrier();
  }
#endif
#else
  var acc: array<f32, NACC>;
#if NORM
  // Each x row's Σx², thread lid's share as m = 1's (its vec4 lid, lid + WG, … of each tile).
  var ssr: array<f32, XR>;
  for (var u0 = 0u; u0 < units; u0 += p.tile) {
    let tu = min(p.tile, units - u0);
    for (var v = lid; v < tu * UV; v += WG) {
      for (var i = 0u; i < XR; i++) {
        let e = x[min(i, p.m - 1u) * (p.k / 4u) + u0 * UV + v];
        ssr[i] += dot(e, e);
      }
    }
  }
  row_norms(lid, ssr);
#endif
{{XF_STEPS}}
#endif
  let f = 1.0;  // (each x row's 1 / rms: put())
#else
  // Rows past the chunk's end read the last row again (in bounds) and are not stored.
  var ss = 0.0;  // NORM: this thread's share of Σ x²
#if XQ
  var base: array<u32, ROWS>;  // code vec4 before each row
  var sbase: array<u32, ROWS>; // groups before each row
  var acc: array<f32, ROWS>;
  for (var r = 0u; r < ROWS; r++) {
    let row = min(chunk_row(rgi, r), p.rows - 1u);
    base[r] = row * units * CV;
    sbase[r] = row * p.groups;
    acc[r] = 0.0;
  }
#if XP
  // Prepared x: blocks straight from global memory (k / 32 · 44 bytes, L1/L2-resident), no
  // staging and no barriers; NORM sums the blocks' Σ x².
#if NORM
  for (var b = lid; b < units; b += WG) {
    let o = 10u * units + b;
    ss += bitcast<f32>(xp[o >> 2u][o & 3u]);
  }
#endif
  var j = t;
  // XPU > 1: XPU units per iteration, written out (XP_STEPS: kernels/linear_q.ts xpSteps()): all
  // their loads issued before the products, so a thread keeps XPU weight loads in flight (a `for`
  // here stays a loop that waits on each load); each row's terms are added in the same order.
{{XP_STEPS}}
  for (; j < units; j += TPR) {
    let a = xp[2u * j];
    let b = xp[2u * j + 1u];
    let sv = xp[2u * units + (j >> 1u)];
    let sx = bitcast<vec2<f32>>(select(sv.xy, sv.zw, (j & 1u) == 1u));
    for (var r = 0u; r < ROWS; r++) {
      acc[r] += scale(sbase[r] + j) * sx.x * block_dot(base[r] + CV * j, a, b, sx.y);
    }
  }
#else
  for (var u0 = 0u; u0 < units; u0 += p.tile) {
    let tu = min(p.tile, units - u0);
    workgroupBarrier();  // the previous tile is consumed
    for (var b = lid; b < tu; b += WG) { ss += stage_block(u0 + b, b); }
    workgroupBarrier();
    var j = t;
    // XPU > 1: as XP_STEPS, over the staged tile (XQ_STEPS).
{{XQ_STEPS}}
    for (; j < tu; j += TPR) {
      let a = xq0[j];
      let b = xq1[j];
      let sx = xqs[j];
      let g = u0 + j;
      for (var r = 0u; r < ROWS; r++) {
        acc[r] += scale(sbase[r] + g) * sx.x * block_dot(base[r] + CV * g, a, b, sx.y);
      }
    }
  }
#endif
#else
  var base: array<u32, ROWS>;  // code units before each row
  var sbase: array<u32, ROWS>; // groups before each row
  var acc: array<f32, ROWS>;
  for (var r = 0u; r < ROWS; r++) {
    let row = min(chunk_row(rgi, r), p.rows - 1u);
    base[r] = row * units;
    sbase[r] = row * p.groups;
    acc[r] = 0.0;
  }
  for (var u0 = 0u; u0 < units; u0 += p.tile) {
    let tu = min(p.tile, units - u0);
    workgroupBarrier();  // the previous tile is consumed
    for (var i = lid; i < tu * UV; i += WG) {
#if NORM
      let e = x[u0 * UV + i];
      ss += dot(e, e);
#endif
      xs[(i / UV) * (UV + 1u) + i % UV] = xn(u0 * UV + i);
    }
    workgroupBarrier();
#if UNROLL2
    // Two units per iteration: twice the independent loads in flight.
    var j = t;
    for (; j + TPR < tu; j += 2u * TPR) {
      let xa = load_x(j);
      let xb = load_x(j + TPR);
      let ga = (u0 + j) * UNIT / 32u;
      let gb = (u0 + j + TPR) * UNIT / 32u;
      for (var r = 0u; r < ROWS; r++) {
        let qa = w[base[r] + u0 + j];
        let qb = w[base[r] + u0 + j + TPR];
        acc[r] += scale(sbase[r] + ga) * unit_dot(qa, xa) + scale(sbase[r] + gb) * unit_dot(qb, xb);
      }
    }
    if (j < tu) {
#else
    for (var j = t; j < tu; j += TPR) {
#endif
      let xv = load_x(j);
      let g = (u0 + j) * UNIT / 32u;
      for (var r = 0u; r < ROWS; r++) {
        acc[r] += scale(sbase[r] + g) * unit_dot(w[base[r] + u0 + j], xv);
      }
    }
  }
#endif
#if NORM
  let f = inv_rms(lid, ss);
#else
  let f = 1.0;
#endif
#endif
  // Reductions: slot r of each thread summed over its row group.
#if XOR
  // TPR aligned lanes of one subgroup (1D workgroups split into subgroups of consecutive
  // invocations), closed under lane ^ s for s < TPR.
  for (var s = TPR / 2u; s > 0u; s = s >> 1u) {
    for (var r = 0u; r < NACC; r++) { acc[r] += subgroupShuffleXor(acc[r], s); }
  }
  if (t == 0u) {
#if ROPE
    for (var q = 0u; q < ROWS / 2u; q++) { store_pair(rgi, q, acc[2u * q], acc[2u * q + 1u], f); }
#else
    for (var r = 0u; r < NACC; r++) { put(rgi, r, acc[r], f); }
#endif
  }
#endif
#if ADD
  // A row group is TPR / sg_size whole subgroups.
  let per = TPR / sg_size;
  for (var r = 0u; r < NACC; r++) {
    let s = subgroupAdd(acc[r]);
    if (sg_lane == 0u) { red[(rg * NACC + r) * (TPR / 4u) + t / sg_size] = s; }
  }
  workgroupBarrier();
#if ROPE
  // Lane t stores pairs t, t + TPR, ...
  for (var q = t; q < ROWS / 2u; q += TPR) {
    var a = 0.0;
    var b = 0.0;
    for (var i = 0u; i < per; i++) {
      a += red[(rg * ROWS + 2u * q) * (TPR / 4u) + i];
      b += red[(rg * ROWS + 2u * q + 1u) * (TPR / 4u) + i];
    }
    store_pair(rgi, q, a, b, f);
  }
#else
  // Lanes t store rows t, t + TPR, ... (ROWS may exceed TPR).
  for (var r = t; r < NACC; r += TPR) {
    var v = 0.0;
    for (var i = 0u; i < per; i++) { v += red[(rg * NACC + r) * (TPR / 4u) + i]; }
    put(rgi, r, v, f);
  }
#endif
#endif
#if TREE
  for (var r = 0u; r < NACC; r++) { red[r * WG + lid] = acc[r]; }
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s = s >> 1u) {
    if (t < s) {
      for (var r = 0u; r < NACC; r++) { red[r * WG + lid] += red[r * WG + lid + s]; }
    }
    workgroupBarrier();
  }
#if ROPE
  for (var q = t; q < ROWS / 2u; q += TPR) {
    store_pair(rgi, q, red[2u * q * WG + lid - t], red[(2u * q + 1u) * WG + lid - t], f);
  }
#else
  for (var r = t; r < NACC; r += TPR) { put(rgi, r, red[r * WG + lid - t], f); }
#endif
#endif
#if EMIT
  // The workgroup's RPW outputs are in ev: eight threads a block prepare them.
  workgroupBarrier();
  emit_blocks(wid.x + wid.y * 65535u, lid);
#endif
}
#endif
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

// x (≥ 0) rounded to the nearest f16, ties to even, as the f32 it stands for — in integer steps,
// which no compiler folds away: unpack2x16float(pack2x16float(x)) was, on the H200 (2026-11-29: q8
// codes came out rounded against the unrounded scale, one off at v / d 0.015 from a tie). Below
// 2^-14 f16 steps are 2^-24 (subnormals); from 65520 on f16 overflows (pack2x16float's inf).
fn f16_round(x: f32) -> f32 {
  if (x < 6.103515625e-05) { return round(x * 16777216.0) * 5.9604644775390625e-08; }
  if (x >= 65520.0) { return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x; }
  let u = bitcast<u32>(x);
  return bitcast<f32>((u + 0xfffu + ((u >> 13u) & 1u)) & 0xffffe000u);
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
  let d = f16_round(amax / QMAX);
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
