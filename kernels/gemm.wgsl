// Int8 dot-product GEMM for group-quantized weights (m > 1: prefill, the vision tower), as
// llama.cpp's MMQ: x is quantized to int8 per row and 32-element group with an f32 scale, and
// y = x · wᵀ (+ bias) (+ y if ACC) = Σ_groups xs · ws · Σ_group xq · wq, each group's integer sum
// by dot4I8Packed (4 int8 products per instruction), the groups accumulated in f32.
// Weight storage (kernels/linear_q.wgsl): a chunk holds the codes (rows, k · BITS / 32) u32 from word
// 0, then the f16 scales (rows · k / 32) from word p.s_base, two per u32 (even group low).
// #if Q4: codes are int4 + 8 in nibbles; word i of a group holds element 8i + b in byte b's low
// nibble and 8i + 4 + b in its high nibble. #else (q8): element 4i + b in byte b of word i.
// Entry points by define: #if QUANTIZE_X quantizes x, else the GEMM.

#if QUANTIZE_X
// One thread per (row, group): d = max|x| / 127 (f32), code = clamp(round(x / d)) as WGSL's
// round() (half to even); d = 0 gives codes 0.
#include int8
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;         // (m, k) f32
@group(0) @binding(1) var<storage, read_write> xq: array<u32>;        // (m, k / 4) 4 × int8
@group(0) @binding(2) var<storage, read_write> xs: array<f32>;        // (m, k / 32) f32 scales
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let f = (wid.x + wid.y * 65535u) * 256u + lid;  // flat (row, group)
  if (f >= p.m * (p.k / 32u)) { return; }
  var v: array<vec4<f32>, 8>;
  var amax = 0.0;
  for (var i = 0u; i < 8u; i++) {
    v[i] = x[f * 8u + i];
    amax = max(amax, amax4(v[i]));
  }
  let d = amax / 127.0;
  let inv = select(0.0, 1.0 / d, d > 0.0);
  for (var i = 0u; i < 8u; i++) {
    xq[f * 8u + i] = codes4(v[i], inv);
  }
  xs[f] = d;
}

#else
// A workgroup of TDN × TDM threads computes a BM × BN output tile (BM = 4·TDM·RM rows of x, BN =
// 4·TDN·RN weight rows; TDN = TDM = TD but for NARROW's 32 × 8); thread (tx, ty) owns the RM × RN
// blocks of 4 × 4 outputs at rows ty·4 (+ BM/2) and columns tx·4 (+ BN/2). k advances G groups
// (32·G elements) per step through k-major workgroup tiles of int8 words (vec4 along m resp. n:
// TDN threads read consecutive vec4 of the weight tile and one broadcast vec4 of the x tile) and
// their scales. Per group, a block's 16 integer sums stay in int registers; then they are scaled
// into the f32 accumulators (mat4x4, column i = output row i). Rows past m / the chunk read the
// last row again (in bounds, never stored).
const TDN: u32 = {{TDN}}u;   // threads along n
const TDM: u32 = {{TDM}}u;   // threads along m
const WG: u32 = TDN * TDM;
const RM: u32 = {{RM}}u;
const RN: u32 = {{RN}}u;
const G: u32 = {{G}}u;       // groups per k step
const BM: u32 = 4u * TDM * RM;
const BN: u32 = 4u * TDN * RN;
const KW: u32 = 8u * G;      // int8 words (4 elements) per row and k step

@group(0) @binding(0) var<storage, read> xq: array<vec4<u32>>;  // (m, k / 4) 4 × int8
@group(0) @binding(1) var<storage, read> xs: array<f32>;        // (m, k / 32) f32
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;   // this chunk: codes, then scales
#if BIAS
@group(0) @binding(3) var<storage, read> bias: array<f32>;      // (n) f32, by output column
#endif
@group(0) @binding({{Y_BINDING}}) var<storage, read_write> y: array<f32>;  // (m, n) f32
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// Shared buffers: two with QPIPE (k steps alternate between them), else one.
#if QPIPE
const NB: u32 = 2u;
#else
const NB: u32 = 1u;
#endif
var<workgroup> Xs: array<array<array<vec4<u32>, BM / 4u>, KW>, NB>;  // [buf][word][row / 4] int8 × 4
var<workgroup> Ws: array<array<array<vec4<u32>, BN / 4u>, KW>, NB>;  // [buf][word][col / 4] int8 × 4
var<workgroup> Xd: array<array<array<vec4<f32>, BM / 4u>, G>, NB>;   // [buf][group][row / 4] scales
var<workgroup> Wd: array<array<array<vec4<f32>, BN / 4u>, G>, NB>;   // [buf][group][col / 4] scales

// A 4 × 4 block's integer sums of one group: r_i[j] for row i, column j.
struct IBlock {
  r0: vec4<i32>,
  r1: vec4<i32>,
  r2: vec4<i32>,
  r3: vec4<i32>,
}

fn dots(a: u32, b: vec4<u32>) -> vec4<i32> {
  return vec4<i32>(dot4I8Packed(a, b.x), dot4I8Packed(a, b.y), dot4I8Packed(a, b.z),
                   dot4I8Packed(a, b.w));
}

// b + the products of one word of 4 rows (a) and 4 columns (c).
fn dacc(b: IBlock, a: vec4<u32>, c: vec4<u32>) -> IBlock {
  return IBlock(b.r0 + dots(a.x, c), b.r1 + dots(a.y, c), b.r2 + dots(a.z, c), b.r3 + dots(a.w, c));
}

// Integer sums start at the bits of 1.5 · 2^23 (F0): a group's sum s (|s| ≤ 32 · 127² < 2^22) then
// leaves the bits of the float F0 + s exactly, so the sum becomes f32 by a bitcast and a subtraction
// instead of an int→float conversion (a quarter-rate instruction on NVIDIA; 16 per block and group).
const I0: i32 = 0x4b400000;
const F0: f32 = 12582912.0;
fn iblock() -> IBlock { return IBlock(vec4<i32>(I0), vec4<i32>(I0), vec4<i32>(I0), vec4<i32>(I0)); }
fn sum_f32(r: vec4<i32>) -> vec4<f32> { return bitcast<vec4<f32>>(r) - F0; }

// c + the group's sums scaled by row scales sa and column scales sc.
fn facc(c: mat4x4<f32>, b: IBlock, sa: vec4<f32>, sc: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(sum_f32(b.r0), sa.x * sc, c[0]), fma(sum_f32(b.r1), sa.y * sc, c[1]),
                     fma(sum_f32(b.r2), sa.z * sc, c[2]), fma(sum_f32(b.r3), sa.w * sc, c[3]));
}

// The f16 scale of flat group f (= row · groups + g) as f32.
fn wscale(f: u32) -> f32 {
  let sw = p.s_base + (f >> 1u);
  return unpack2x16float(w[sw >> 2u][sw & 3u])[f & 1u];
}

#if Q4
// Nibbles of a code word as int8 words: codes − 8, byte-wise without borrows (n + 0x78 ≤ 0x87,
// then ^ 0x80 gives n − 8 as a signed byte). lo: elements 8i..8i+3, hi: 8i+4..8i+7.
fn q4_lo(q: u32) -> u32 { return ((q & 0x0f0f0f0fu) + 0x78787878u) ^ 0x80808080u; }
fn q4_hi(q: u32) -> u32 { return (((q >> 4u) & 0x0f0f0f0fu) + 0x78787878u) ^ 0x80808080u; }
#endif

// Writes output (row, chunk column c) = acc (+ bias), then quick_gelu'd #if QGELU (the vision MLP's
// fc1; not with ACC), (+ old y).
fn store(row: u32, c: u32, acc: f32) {
  let col = p.row_start + c;
  let i = row * p.n + col;
  var v = acc;
#if BIAS
  v += bias[col];
#endif
#if QGELU
  v = v / (1.0 + exp(-1.702 * v));  // quick_gelu(v) = v · sigmoid(1.702 v), as kernels/linear.wgsl
#endif
#if ACC
  v += y[i];
#endif
  y[i] = v;
}

#if SPLITK
// This workgroup's k range (wid.z of p.splits, p.gspan groups each): its partial product goes to y
// as (splits, m, p.rows) f32, bias, activation and the old y added by the sum pass
// (kernels/linear.ts splitSum).
var<private> split: u32;
#endif

// Stores the 4 × 4 block c at output rows row0.., chunk columns col0...
fn store_block(row0: u32, col0: u32, c: mat4x4<f32>) {
  for (var i = 0u; i < 4u; i++) {
    if (row0 + i >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
#if SPLITK
      if (col0 + j < p.rows) { y[(split * p.m + row0 + i) * p.rows + col0 + j] = c[i][j]; }
#else
      if (col0 + j < p.rows) { store(row0 + i, col0 + j, c[i][j]); }
#endif
    }
  }
}

// This thread's f32 accumulators (c) and one group's integer sums (i), private so that the
// written-out steps below update them: naga wraps every `for` in a loop-bound counter, which kept
// the driver from unrolling the word loop (each shared load waited on, each index clamp computed;
// kernels/linear.wgsl's PIPE measured 1.4× from the same change).
var<private> c00: mat4x4<f32>;
var<private> i00: IBlock;
#if RN2
var<private> c01: mat4x4<f32>;
var<private> i01: IBlock;
#endif
#if RM2
var<private> c10: mat4x4<f32>;
var<private> i10: IBlock;
#if RN2
var<private> c11: mat4x4<f32>;
var<private> i11: IBlock;
#endif
#endif
var<private> tx: u32;
var<private> ty: u32;

// Adds the products of int8 word wj (of the k step staged in buffer buf) into the integer sums.
fn word(buf: u32, wj: u32) {
  let a0 = Xs[buf][wj][ty];
  let b0 = Ws[buf][wj][tx];
  i00 = dacc(i00, a0, b0);
#if RN2
  let b1 = Ws[buf][wj][TDN + tx];
  i01 = dacc(i01, a0, b1);
#endif
#if RM2
  let a1 = Xs[buf][wj][TDM + ty];
  i10 = dacc(i10, a1, b0);
#if RN2
  i11 = dacc(i11, a1, b1);
#endif
#endif
}

// Group g of the k step staged in buffer buf: its 8 words' integer sums, then scaled into the
// accumulators.
fn group(buf: u32, g: u32) {
  i00 = iblock();
#if RN2
  i01 = iblock();
#endif
#if RM2
  i10 = iblock();
#if RN2
  i11 = iblock();
#endif
#endif
  word(buf, 8u * g);
  word(buf, 8u * g + 1u);
  word(buf, 8u * g + 2u);
  word(buf, 8u * g + 3u);
  word(buf, 8u * g + 4u);
  word(buf, 8u * g + 5u);
  word(buf, 8u * g + 6u);
  word(buf, 8u * g + 7u);
  let sa0 = Xd[buf][g][ty];
  let sb0 = Wd[buf][g][tx];
  c00 = facc(c00, i00, sa0, sb0);
#if RN2
  let sb1 = Wd[buf][g][TDN + tx];
  c01 = facc(c01, i01, sa0, sb1);
#endif
#if RM2
  let sa1 = Xd[buf][g][TDM + ty];
  c10 = facc(c10, i10, sa1, sb0);
#if RN2
  c11 = facc(c11, i11, sa1, sb1);
#endif
#endif
}

#if QPIPE
// QPIPE (g 2, 16 int8 words a row per k step): as PIPE in kernels/linear.wgsl, two shared
// buffers and one barrier per k step; each thread loads its part of the step after next into
// registers before this step's products (the loads branch-free: threads that store nothing load
// all the same) and converts and stores the next one after them, so nothing before the products
// waits on a load. Loading one step ahead instead was 1.07–1.19× slower (H200 12:44, 7B q4 at 478
// rows: gate_up 2.63 → 2.46 ms, down 1.55 → 1.30, o 0.32 → 0.27, qkv 0.46 → 0.41). Written out
// for three tilings of 256 threads, each thread 32 dot4I8Packed per word from three shared loads:
// - tall (td 16, rm 2, rn 1: 128 × 64 tiles): thread lid loads x words lid and lid + 256 (row
//   lid / 4 and 64 + lid / 4, vec4 lid % 4 of the step), x scale lid (row lid / 2, group lid % 2),
//   and weight vec4 / scale word e = lid % 128 (q4: row e / 2, the group's 4 code words; q8: row
//   lid / 4, vec4 lid % 4); threads below 128 store the weight words, the rest the weight scales.
// - WIDE (td 16, rm 1, rn 2: 64 × 128 tiles, for m ≤ 64, where a tall tile's products are mostly
//   of padding rows: it took the same time at 16, 40 and 64 rows): x word lid (row lid / 4), x
//   scale lid < 128 (row lid / 2, group lid % 2), weight row lid / 2's codes of group lid % 2 and
//   that group's scale (q8: rows lid / 4 and 64 + lid / 4, vec4 lid % 4).
// - NARROW (q4; 32 × 8 threads, rm 1, rn 2: 32 × 256 tiles, for m ≤ 32): x word lid < 128 (row
//   lid / 4), x scale lid < 64 (row lid / 2), weight rows lid / 2 and 128 + lid / 2: codes and
//   scale of group lid % 2.
// SPLITK: the workgroup runs groups [wid.z · p.gspan, gend) only.
var<private> gend: u32;        // one past the last group of this workgroup's k range
var<private> xsr: u32;         // the x scale row (clamped)
var<private> wr: u32;          // the weight row of the code vec4 (clamped)
var<private> wsr: u32;         // the weight row of the scale (clamped)
#if NARROW
var<private> xr: u32;          // the x row (clamped)
var<private> wr1: u32;         // the second weight row, codes and scale (clamped)
// A thread's part of a k step as loaded: x words, x scale, two rows' weight words and scale words.
struct QRaw { x0: vec4<u32>, xs: f32, w: vec4<u32>, w1: vec4<u32>, ws: vec4<u32>, ws1: vec4<u32> }
const X_THREADS: u32 = 128u;   // threads that store x words
const XS_THREADS: u32 = 64u;   // threads that store an x scale
#else
#if WIDE
var<private> xr: u32;          // the x row (clamped)
#ifnot Q4
var<private> wr1: u32;         // q8: the second weight row (clamped)
#endif
// A thread's part of a k step as loaded: x words, x scale, weight words, weight scale words.
struct QRaw {
  x0: vec4<u32>,
  xs: f32,
  w: vec4<u32>,
#ifnot Q4
  w1: vec4<u32>,
#endif
  ws: vec4<u32>,
}
const X_THREADS: u32 = 256u;
const XS_THREADS: u32 = 128u;
#else
var<private> xr: vec2<u32>;    // the two x rows (clamped)
struct QRaw { x0: vec4<u32>, x1: vec4<u32>, xs: f32, w: vec4<u32>, ws: vec4<u32> }
const X_THREADS: u32 = 256u;
const XS_THREADS: u32 = 256u;
#endif
#endif

// The flat f16 scale index of weight row `row`'s group g, and the vec4 of words holding it.
fn wsf(row: u32, g: u32) -> u32 { return row * (p.k / 32u) + g; }
fn ws_vec(f: u32) -> u32 { return (p.s_base + (f >> 1u)) >> 2u; }

// Loads this thread's part of the k step from group g0 (clamped to the last group: in bounds).
fn qload(g0: u32, lid: u32) -> QRaw {
  let groups = p.k / 32u;
  let xv = min(g0 * 2u + lid % 4u, p.k / 16u - 1u);  // vec4 of 16 k within an x row
  let g = min(g0 + lid % 2u, groups - 1u);
#if Q4
  let wv = w[wr * groups + g];
#else
  let wv = w[(wr * p.k) / 16u + xv];
#endif
  let xsv = xs[xsr * groups + g];
  let wsv = w[ws_vec(wsf(wsr, g))];
#if NARROW
  return QRaw(xq[(xr * p.k) / 16u + xv], xsv, wv, w[wr1 * groups + g], wsv,
              w[ws_vec(wsf(wr1, g))]);
#else
#if WIDE
#if Q4
  return QRaw(xq[(xr * p.k) / 16u + xv], xsv, wv, wsv);
#else
  return QRaw(xq[(xr * p.k) / 16u + xv], xsv, wv, w[(wr1 * p.k) / 16u + xv], wsv);
#endif
#else
  return QRaw(xq[(xr.x * p.k) / 16u + xv], xq[(xr.y * p.k) / 16u + xv], xsv, wv, wsv);
#endif
#endif
}

#if Q4
// Stores a group's 4 code words (weight tile row `wrow`, group gi of the step) as 8 int8 words.
fn put_codes(buf: u32, wrow: u32, gi: u32, v: vec4<u32>) {
  Ws[buf][gi * 8u][wrow / 4u][wrow % 4u] = q4_lo(v.x);
  Ws[buf][gi * 8u + 1u][wrow / 4u][wrow % 4u] = q4_hi(v.x);
  Ws[buf][gi * 8u + 2u][wrow / 4u][wrow % 4u] = q4_lo(v.y);
  Ws[buf][gi * 8u + 3u][wrow / 4u][wrow % 4u] = q4_hi(v.y);
  Ws[buf][gi * 8u + 4u][wrow / 4u][wrow % 4u] = q4_lo(v.z);
  Ws[buf][gi * 8u + 5u][wrow / 4u][wrow % 4u] = q4_hi(v.z);
  Ws[buf][gi * 8u + 6u][wrow / 4u][wrow % 4u] = q4_lo(v.w);
  Ws[buf][gi * 8u + 7u][wrow / 4u][wrow % 4u] = q4_hi(v.w);
}
#endif

// Stores the f16 scale of chunk row `row`, group g0 + gi (in the loaded words ws) at weight tile
// row `wrow`. Past the k range the x scale is 0, so any weight scale does.
fn put_wscale(buf: u32, wrow: u32, gi: u32, row: u32, g0: u32, ws: vec4<u32>) {
  let f = wsf(row, min(g0 + gi, p.k / 32u - 1u));
  Wd[buf][gi][wrow / 4u][wrow % 4u] = unpack2x16float(ws[(p.s_base + (f >> 1u)) & 3u])[f & 1u];
}

// Stores the loaded k step from group g0 into buffer buf: x words (zero past the k range) and
// scales, weight words and weight scales.
fn qput(buf: u32, g0: u32, lid: u32, b: QRaw) {
  let q = (lid % 4u) * 4u;  // first word of the x vec4
  let r = lid / 4u;
  let xin = g0 + q / 8u < gend;
  if (lid < X_THREADS) {
    let v0 = select(vec4<u32>(0u), b.x0, xin);
    Xs[buf][q][r / 4u][r % 4u] = v0.x;
    Xs[buf][q + 1u][r / 4u][r % 4u] = v0.y;
    Xs[buf][q + 2u][r / 4u][r % 4u] = v0.z;
    Xs[buf][q + 3u][r / 4u][r % 4u] = v0.w;
  }
#ifnot WIDE
#ifnot NARROW
  let v1 = select(vec4<u32>(0u), b.x1, xin);
  Xs[buf][q][16u + r / 4u][r % 4u] = v1.x;
  Xs[buf][q + 1u][16u + r / 4u][r % 4u] = v1.y;
  Xs[buf][q + 2u][16u + r / 4u][r % 4u] = v1.z;
  Xs[buf][q + 3u][16u + r / 4u][r % 4u] = v1.w;
#endif
#endif
  let sr = lid / 2u;
  let sg = lid % 2u;
  if (lid < XS_THREADS) { Xd[buf][sg][sr / 4u][sr % 4u] = select(0.0, b.xs, g0 + sg < gend); }
#if NARROW
  let wrow = lid / 2u;
  let gi = lid % 2u;
  put_codes(buf, wrow, gi, b.w);
  put_codes(buf, 128u + wrow, gi, b.w1);
  put_wscale(buf, wrow, gi, wsr, g0, b.ws);
  put_wscale(buf, 128u + wrow, gi, wr1, g0, b.ws1);
#else
#if WIDE
  let wrow = lid / 2u;
  let gi = lid % 2u;
#if Q4
  put_codes(buf, wrow, gi, b.w);
#endif
  put_wscale(buf, wrow, gi, wsr, g0, b.ws);
#else
  let e = lid % 128u;
  let wrow = e / 2u;
  let gi = e % 2u;
  if (lid < 128u) {
#if Q4
    put_codes(buf, wrow, gi, b.w);
#endif
  } else {
    put_wscale(buf, wrow, gi, wsr, g0, b.ws);
  }
#endif
#ifnot Q4
  // q8: every thread stores its weight vec4 (row lid / 4, words q..q + 3; WIDE: and row 64 + lid / 4).
  Ws[buf][q][r / 4u][r % 4u] = b.w.x;
  Ws[buf][q + 1u][r / 4u][r % 4u] = b.w.y;
  Ws[buf][q + 2u][r / 4u][r % 4u] = b.w.z;
  Ws[buf][q + 3u][r / 4u][r % 4u] = b.w.w;
#if WIDE
  Ws[buf][q][16u + r / 4u][r % 4u] = b.w1.x;
  Ws[buf][q + 1u][16u + r / 4u][r % 4u] = b.w1.y;
  Ws[buf][q + 2u][16u + r / 4u][r % 4u] = b.w1.z;
  Ws[buf][q + 3u][16u + r / 4u][r % 4u] = b.w1.w;
#endif
#endif
#endif
}

// The k steps in flight, two ahead: qa for the steps of buffer 0, qb for those of buffer 1.
var<private> qa: QRaw;
var<private> qb: QRaw;

// One k step from group g0 in buffer cur (a literal at each call): the loads of the step after
// next (branch-free: the last steps reload), this one's products, the next step's stores (loaded
// a step ago) into the other buffer, a barrier.
fn qstep(g0: u32, cur: u32, lid: u32) {
  let g2 = select(g0, g0 + 2u * G, g0 + 2u * G < gend);
  if (cur == 0u) { qa = qload(g2, lid); } else { qb = qload(g2, lid); }
  group(cur, 0u);
  group(cur, 1u);
  if (g0 + G < gend) {
    if (cur == 0u) { qput(1u, g0 + G, lid, qb); } else { qput(0u, g0 + G, lid, qa); }
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let m0 = wid.x * BM;
  let n0 = wid.y * BN;  // first chunk row (output column) of the tile
  tx = lid % TDN;
  ty = lid / TDN;
  let groups = p.k / 32u;
#if SPLITK
  split = wid.z;
  let g_start = split * p.gspan;
  gend = min(g_start + p.gspan, groups);
#else
  let g_start = 0u;
  gend = groups;
#endif
#if NARROW
  xr = min(m0 + (lid % 128u) / 4u, p.m - 1u);
  xsr = min(m0 + (lid % 64u) / 2u, p.m - 1u);
  wr = min(n0 + lid / 2u, p.rows - 1u);
  wr1 = min(n0 + 128u + lid / 2u, p.rows - 1u);
  wsr = wr;
#else
#if WIDE
  xr = min(m0 + lid / 4u, p.m - 1u);
  xsr = min(m0 + (lid % 128u) / 2u, p.m - 1u);
#if Q4
  wr = min(n0 + lid / 2u, p.rows - 1u);
#else
  wr = min(n0 + lid / 4u, p.rows - 1u);
  wr1 = min(n0 + 64u + lid / 4u, p.rows - 1u);
#endif
  wsr = min(n0 + lid / 2u, p.rows - 1u);
#else
  xr = min(vec2(m0 + lid / 4u, m0 + 64u + lid / 4u), vec2(p.m - 1u));
  xsr = min(m0 + lid / 2u, p.m - 1u);
#if Q4
  wr = min(n0 + (lid % 128u) / 2u, p.rows - 1u);
#else
  wr = min(n0 + lid / 4u, p.rows - 1u);
#endif
  wsr = min(n0 + (lid % 128u) / 2u, p.rows - 1u);
#endif
#endif
  qa = qload(g_start, lid);
  qb = qload(select(g_start, g_start + G, g_start + G < gend), lid);
  qput(0u, g_start, lid, qa);
  workgroupBarrier();
  for (var g0 = g_start; g0 < gend; g0 += 2u * G) {
    qstep(g0, 0u, lid);
    if (g0 + G >= gend) { break; }
    qstep(g0 + G, 1u, lid);
  }
  store_block(m0 + ty * 4u, n0 + tx * 4u, c00);
#if RN2
  store_block(m0 + ty * 4u, n0 + BN / 2u + tx * 4u, c01);
#else
  store_block(m0 + BM / 2u + ty * 4u, n0 + tx * 4u, c10);
#endif
}

#else
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // Row tiles vary fastest: workgroups running together share weight tiles.
  let m0 = wid.x * BM;
  let n0 = wid.y * BN;  // first chunk row (output column) of the tile
  tx = lid % TDN;
  ty = lid / TDN;
  let groups = p.k / 32u;
  for (var g0 = 0u; g0 < groups; g0 += G) {
    // Stage x words: 16-byte loads, consecutive threads along a row's k, stored transposed.
    for (var e = lid; e < BM * KW / 4u; e += WG) {
      let r = e / (KW / 4u);
      let q = (e % (KW / 4u)) * 4u;
      let row = min(m0 + r, p.m - 1u);
      // Groups past k (a last step of G = 2 over an odd group count) read zeros.
      let i = (row * p.k) / 16u + min(g0 * 2u + q / 4u, p.k / 16u - 1u);
      let v = select(vec4<u32>(0u), xq[i], g0 * 32u + q * 4u < p.k);
      for (var j = 0u; j < 4u; j++) { Xs[0][q + j][r / 4u][r % 4u] = v[j]; }
    }
    for (var e = lid; e < BM * G; e += WG) {
      let r = e / G;
      let g = g0 + e % G;
      let row = min(m0 + r, p.m - 1u);
      Xd[0][e % G][r / 4u][r % 4u] = select(0.0, xs[row * groups + min(g, groups - 1u)], g < groups);
    }
#if Q4
    // One 16-byte load is a whole group of a row (4 code words → 8 int8 words).
    for (var e = lid; e < BN * G; e += WG) {
      let r = e / G;
      let gi = e % G;
      let row = min(n0 + r, p.rows - 1u);
      let g = min(g0 + gi, groups - 1u);
      let v = w[row * groups + g];
      for (var j = 0u; j < 4u; j++) {
        Ws[0][gi * 8u + 2u * j][r / 4u][r % 4u] = q4_lo(v[j]);
        Ws[0][gi * 8u + 2u * j + 1u][r / 4u][r % 4u] = q4_hi(v[j]);
      }
    }
#else
    for (var e = lid; e < BN * KW / 4u; e += WG) {
      let r = e / (KW / 4u);
      let q = (e % (KW / 4u)) * 4u;
      let row = min(n0 + r, p.rows - 1u);
      let v = w[(row * p.k) / 16u + min(g0 * 2u + q / 4u, p.k / 16u - 1u)];
      for (var j = 0u; j < 4u; j++) { Ws[0][q + j][r / 4u][r % 4u] = v[j]; }
    }
#endif
    for (var e = lid; e < BN * G; e += WG) {
      let r = e / G;
      let row = min(n0 + r, p.rows - 1u);
      // Past k the x scale is 0, so any weight scale does.
      Wd[0][e % G][r / 4u][r % 4u] = wscale(row * groups + min(g0 + e % G, groups - 1u));
    }
    workgroupBarrier();
    group(0u, 0u);
#if G2
    group(0u, 1u);
#endif
#if G4
    group(0u, 2u);
    group(0u, 3u);
#endif
    workgroupBarrier();
  }
  store_block(m0 + ty * 4u, n0 + tx * 4u, c00);
#if RN2
  store_block(m0 + ty * 4u, n0 + BN / 2u + tx * 4u, c01);
#endif
#if RM2
  store_block(m0 + BM / 2u + ty * 4u, n0 + tx * 4u, c10);
#if RN2
  store_block(m0 + BM / 2u + ty * 4u, n0 + BN / 2u + tx * 4u, c11);
#endif
#endif
}
#endif
#endif
