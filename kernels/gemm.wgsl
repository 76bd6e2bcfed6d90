// GEMM for m > 1: y = x · wᵀ (+ bias) (+ y if ACC) for one row chunk of the weight; this dispatch
// computes output columns [p.row_start, p.row_start + p.rows) from the chunk's rows [0, p.rows).
// Accumulation is f32 FMA (f16 weights are widened when staged into workgroup memory).
//
// A workgroup of WM × WN threads computes a BM × BN output tile (BM = 8·WM rows of x, BN = 8·WN
// weight rows); thread (tx, ty) owns the 2 × 2 blocks of 4 × 4 outputs at rows ty·4 (+ BM/2) and
// columns tx·4 (+ BN/2), held as four named mat4x4 accumulators (column i = output row i) so they
// stay in registers. k advances BK at a time through double-buffered, k-major workgroup tiles
// (vec4 along m resp. n): while the FMAs run on one buffer, the next k step's global loads are in
// flight into registers and are stored to the other buffer afterwards, so each k step needs one
// barrier and the global latency hides behind the arithmetic.
//
// Staging: both tiles are loaded in segments of 8 consecutive k of one row, LA (resp. LB) segments
// per thread and k step; consecutive threads take consecutive rows, so the transposing stores into
// the k-major tiles hit distinct banks. Rows past m / the chunk read the last row again (in bounds,
// never stored); k past p.k reads zeros.
// #if XVEC: k % 4 == 0, x read as vec4. Else scalar reads (odd k).
// #if W16: weights are f16 pairs in u32 words (unpack2x16float: no shader-f16 needed); with #if W8
// (k % 8 == 0) a segment is one 16-byte load, with #if WVEC (k % 4 == 0) two 8-byte loads, else
// 8 scalar reads. Without W16, f32 weights: WVEC two vec4 loads, else 8 scalar reads.
// #if BIAS: adds bias[col]. #if ACC: adds the old y (a fused residual add).

const WM: u32 = {{WM}}u;
const WN: u32 = {{WN}}u;
const BK: u32 = {{BK}}u;
const BM: u32 = 8u * WM;
const BN: u32 = 8u * WN;
const WG: u32 = WM * WN;
const LA: u32 = {{LA}}u;  // x segments per thread and k step: BM · BK / 8 / WG
const LB: u32 = {{LB}}u;  // w segments per thread and k step: BN · BK / 8 / WG

#if XVEC
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;  // (m, k) f32
#else
@group(0) @binding(0) var<storage, read> x: array<f32>;        // (m, k) f32
#endif
#if W16
#if W8
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;  // (rows, k / 8) 8 × f16: this chunk
#else
#if WVEC
@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;  // (rows, k / 4) 4 × f16
#else
@group(0) @binding(1) var<storage, read> w: array<u32>;        // (rows · k / 2) f16 pairs
#endif
#endif
#else
#if WVEC
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;  // (rows, k / 4) f32
#else
@group(0) @binding(1) var<storage, read> w: array<f32>;        // (rows, k) f32
#endif
#endif
#if BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;     // (n) f32, indexed by output column
#endif
@group(0) @binding({{Y_BINDING}}) var<storage, read_write> y: array<f32>;  // (m, n) f32
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// Double-buffered k-major tiles: [buffer][k][m / 4] of x and [buffer][k][n / 4] of w, f32. Indexed
// per dimension (not flattened) so that the bounds clamps WebGPU adds to every workgroup-array
// index fold away: the buffer and row clamps are invariant over the unrolled k loop, the k clamp
// is a constant there.
var<workgroup> As: array<array<array<vec4<f32>, BM / 4u>, BK>, 2>;
var<workgroup> Bs: array<array<array<vec4<f32>, BN / 4u>, BK>, 2>;

// 8 consecutive k elements of one row, as f32.
struct Seg {
  lo: vec4<f32>,
  hi: vec4<f32>,
}

// A weight segment as loaded (W8: the raw 16 bytes, widened only when stored to the tile, so the
// registers in flight during the FMAs stay few).
// (WSeg is substituted rather than aliased: Naga rejects returning a struct through an alias.)
#if W8
fn wseg_f32(s: vec4<u32>) -> Seg {
  return Seg(vec4<f32>(unpack2x16float(s.x), unpack2x16float(s.y)),
             vec4<f32>(unpack2x16float(s.z), unpack2x16float(s.w)));
}
#else
fn wseg_f32(s: Seg) -> Seg { return s; }
#endif

// x segment at (row, k0..k0+8), zeros past p.k.
fn load_x(row: u32, k0: u32) -> Seg {
#if XVEC
  // Indices clamped to the row's last vec4 (then discarded): no reads past the row.
  let r = row * p.k;
  let lo = x[(r + min(k0, p.k - 4u)) / 4u];
  let hi = x[(r + min(k0 + 4u, p.k - 4u)) / 4u];
  return Seg(select(vec4<f32>(0.0), lo, k0 < p.k), select(vec4<f32>(0.0), hi, k0 + 4u < p.k));
#else
  var v: array<f32, 8>;
  for (var j = 0u; j < 8u; j++) { v[j] = select(0.0, x[row * p.k + min(k0 + j, p.k - 1u)], k0 + j < p.k); }
  return Seg(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
#endif
}

#ifnot WVEC
// Weight element e (row-major index within the chunk) as f32, for the scalar path.
fn w_at(e: u32) -> f32 {
#if W16
  return unpack2x16float(w[e / 2u])[e % 2u];
#else
  return w[e];
#endif
}
#endif

// Weight segment at (chunk row, k0..k0+8), zeros past p.k.
fn load_w(row: u32, k0: u32) -> {{WSEG}} {
#if W8
  return select(vec4<u32>(0u), w[(row * p.k + min(k0, p.k - 8u)) / 8u], k0 < p.k);
#else
#if WVEC
  let r = row * p.k;
  let a = w[(r + min(k0, p.k - 4u)) / 4u];
  let b = w[(r + min(k0 + 4u, p.k - 4u)) / 4u];
#if W16
  return Seg(select(vec4<f32>(0.0), vec4<f32>(unpack2x16float(a.x), unpack2x16float(a.y)), k0 < p.k),
             select(vec4<f32>(0.0), vec4<f32>(unpack2x16float(b.x), unpack2x16float(b.y)), k0 + 4u < p.k));
#else
  return Seg(select(vec4<f32>(0.0), a, k0 < p.k), select(vec4<f32>(0.0), b, k0 + 4u < p.k));
#endif
#else
  var v: array<f32, 8>;
  for (var j = 0u; j < 8u; j++) { v[j] = select(0.0, w_at(row * p.k + min(k0 + j, p.k - 1u)), k0 + j < p.k); }
  return Seg(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
#endif
#endif
}

// Segment s of this thread's share of a tile with `rows` rows: (tile row, first k within BK).
fn seg_pos(lid: u32, s: u32, rows: u32) -> vec2<u32> {
  let e = lid + s * WG;
  return vec2<u32>(e % rows, (e / rows) * 8u);
}

// Stores a segment at pos (tile row, first k) transposed into tile buffer `buf`.
fn store_a(buf: u32, pos: vec2<u32>, v: Seg) {
  let r4 = pos.x / 4u;
  let c = pos.x % 4u;
  for (var j = 0u; j < 4u; j++) {
    As[buf][pos.y + j][r4][c] = v.lo[j];
    As[buf][pos.y + 4u + j][r4][c] = v.hi[j];
  }
}
fn store_b(buf: u32, pos: vec2<u32>, v: Seg) {
  let r4 = pos.x / 4u;
  let c = pos.x % 4u;
  for (var j = 0u; j < 4u; j++) {
    Bs[buf][pos.y + j][r4][c] = v.lo[j];
    Bs[buf][pos.y + 4u + j][r4][c] = v.hi[j];
  }
}

// c + outer(a, b): c[i] += a[i] · b.
fn outer_acc(c: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(vec4(a.x), b, c[0]), fma(vec4(a.y), b, c[1]), fma(vec4(a.z), b, c[2]),
                     fma(vec4(a.w), b, c[3]));
}

// Writes output (row, chunk column c) = acc (+ bias) (+ old y).
fn store(row: u32, c: u32, acc: f32) {
  let col = p.row_start + c;
  let i = row * p.n + col;
  var v = acc;
#if BIAS
  v += bias[col];
#endif
#if ACC
  v += y[i];
#endif
  y[i] = v;
}

// Stores the 4 × 4 block c at output rows row0.., chunk columns col0...
fn store_block(row0: u32, col0: u32, c: mat4x4<f32>) {
  for (var i = 0u; i < 4u; i++) {
    if (row0 + i >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
      if (col0 + j < p.rows) { store(row0 + i, col0 + j, c[i][j]); }
    }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // Row tiles vary fastest: workgroups running together share weight tiles, so the weight (the
  // large operand: 271 MB for the 7B gate_up) streams from memory about once while x stays in L2.
  let m0 = wid.x * BM;
  let n0 = wid.y * BN;  // first chunk row (output column) of the tile
  let tx = lid % WN;
  let ty = lid / WN;
  var c00 = mat4x4<f32>();
  var c01 = mat4x4<f32>();
  var c10 = mat4x4<f32>();
  var c11 = mat4x4<f32>();

  // This thread's staging segments (fixed over k) and their clamped global rows.
  let pa0 = seg_pos(lid, 0u, BM);
  let ra0 = min(m0 + pa0.x, p.m - 1u);
#if LA2
  let pa1 = seg_pos(lid, 1u, BM);
  let ra1 = min(m0 + pa1.x, p.m - 1u);
#endif
#if LA4
  let pa2 = seg_pos(lid, 2u, BM);
  let ra2 = min(m0 + pa2.x, p.m - 1u);
  let pa3 = seg_pos(lid, 3u, BM);
  let ra3 = min(m0 + pa3.x, p.m - 1u);
#endif
  let pb0 = seg_pos(lid, 0u, BN);
  let rb0 = min(n0 + pb0.x, p.rows - 1u);
#if LB2
  let pb1 = seg_pos(lid, 1u, BN);
  let rb1 = min(n0 + pb1.x, p.rows - 1u);
#endif
#if LB4
  let pb2 = seg_pos(lid, 2u, BN);
  let rb2 = min(n0 + pb2.x, p.rows - 1u);
  let pb3 = seg_pos(lid, 3u, BN);
  let rb3 = min(n0 + pb3.x, p.rows - 1u);
#endif

  // Prologue: k step 0 into buffer 0.
  var xa0 = load_x(ra0, pa0.y);
#if LA2
  var xa1 = load_x(ra1, pa1.y);
#endif
#if LA4
  var xa2 = load_x(ra2, pa2.y);
  var xa3 = load_x(ra3, pa3.y);
#endif
  var wb0 = load_w(rb0, pb0.y);
#if LB2
  var wb1 = load_w(rb1, pb1.y);
#endif
#if LB4
  var wb2 = load_w(rb2, pb2.y);
  var wb3 = load_w(rb3, pb3.y);
#endif
  store_a(0u, pa0, xa0);
#if LA2
  store_a(0u, pa1, xa1);
#endif
#if LA4
  store_a(0u, pa2, xa2);
  store_a(0u, pa3, xa3);
#endif
  store_b(0u, pb0, wseg_f32(wb0));
#if LB2
  store_b(0u, pb1, wseg_f32(wb1));
#endif
#if LB4
  store_b(0u, pb2, wseg_f32(wb2));
  store_b(0u, pb3, wseg_f32(wb3));
#endif
  workgroupBarrier();

  let steps = (p.k + BK - 1u) / BK;
  for (var t = 0u; t < steps; t++) {
    let cur = t % 2u;
    let more = t + 1u < steps;
    // Next k step's segments: in flight during the FMAs below.
    if (more) {
      let k1 = (t + 1u) * BK;
      xa0 = load_x(ra0, k1 + pa0.y);
#if LA2
      xa1 = load_x(ra1, k1 + pa1.y);
#endif
#if LA4
      xa2 = load_x(ra2, k1 + pa2.y);
      xa3 = load_x(ra3, k1 + pa3.y);
#endif
      wb0 = load_w(rb0, k1 + pb0.y);
#if LB2
      wb1 = load_w(rb1, k1 + pb1.y);
#endif
#if LB4
      wb2 = load_w(rb2, k1 + pb2.y);
      wb3 = load_w(rb3, k1 + pb3.y);
#endif
    }
    for (var k = 0u; k < BK; k++) {
      let a0 = As[cur][k][ty];
      let a1 = As[cur][k][WM + ty];
      let b0 = Bs[cur][k][tx];
      let b1 = Bs[cur][k][WN + tx];
      c00 = outer_acc(c00, a0, b0);
      c01 = outer_acc(c01, a0, b1);
      c10 = outer_acc(c10, a1, b0);
      c11 = outer_acc(c11, a1, b1);
    }
    if (more) {
      // The other buffer was last read in step t − 1, before the barrier that ended it.
      let nxt = 1u - cur;
      store_a(nxt, pa0, xa0);
#if LA2
      store_a(nxt, pa1, xa1);
#endif
#if LA4
      store_a(nxt, pa2, xa2);
      store_a(nxt, pa3, xa3);
#endif
      store_b(nxt, pb0, wseg_f32(wb0));
#if LB2
      store_b(nxt, pb1, wseg_f32(wb1));
#endif
#if LB4
      store_b(nxt, pb2, wseg_f32(wb2));
      store_b(nxt, pb3, wseg_f32(wb3));
#endif
    }
    workgroupBarrier();
  }
  store_block(m0 + ty * 4u, n0 + tx * 4u, c00);
  store_block(m0 + ty * 4u, n0 + BN / 2u + tx * 4u, c01);
  store_block(m0 + BM / 2u + ty * 4u, n0 + tx * 4u, c10);
  store_block(m0 + BM / 2u + ty * 4u, n0 + BN / 2u + tx * 4u, c11);
}
