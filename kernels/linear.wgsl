// y = x · wᵀ (+ bias) (+ y if ACC), for one row chunk of the weight: this dispatch computes output
// columns [p.row_start, p.row_start + p.rows) from the chunk's rows [0, p.rows).
// #if F16: weights are f16 (converted to f32 on load; accumulation stays f32).
// #if VEC: k % 4 == 0, so x and w are read as vec4 (w rows stay vec4-aligned).
// #if BIAS: adds bias[col]. #if ACC: adds the old y (a fused residual add).
// #if GEMV: m == 1 — each workgroup computes ROWS outputs, all WG threads split k; else the tiled
// path: a workgroup computes a (16·TM) × (16·TN) output tile from shared-memory tiles of BK = 16.
// #if SUBGROUPS (GEMV only): reduce with subgroupAdd; the host enables it only when every
// subgroup size the adapter may use divides WG.
// #if PACK8 (GEMV only, f16, k % 8 == 0): w is read 8 halves at a time as vec4<u32> (16-byte
// loads) and unpacked with unpack2x16float; needs no shader-f16.

#if VEC
alias XV = vec4<f32>;
#if F16
alias WV = vec4<f16>;
#else
alias WV = vec4<f32>;
#endif
#else
alias XV = f32;
#if F16
alias WV = f16;
#else
alias WV = f32;
#endif
#endif

@group(0) @binding(0) var<storage, read> x: array<XV>;         // (m, k) f32
#if PACK8
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;  // (rows, k / 8) 8 × f16: this chunk
#else
@group(0) @binding(1) var<storage, read> w: array<WV>;         // (rows, k) f32|f16: this chunk
#endif
#if BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;     // (n) f32, indexed by output column
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // (m, n) f32
#else
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // (m, n) f32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// Elements per x / w array element (PACK8: per vec4<u32> of w).
#if PACK8
const V: u32 = 8u;
#else
#if VEC
const V: u32 = 4u;
#else
const V: u32 = 1u;
#endif
#endif
#if VEC
fn dot_xw(a: XV, b: XV) -> f32 { return dot(a, b); }
#else
fn dot_xw(a: XV, b: XV) -> f32 { return a * b; }
#endif

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

#if GEMV
const WG: u32 = {{WG}}u;
const ROWS: u32 = {{ROWS}}u;

#if SUBGROUPS
// One partial per (row, subgroup); subgroups have at least 4 lanes.
var<workgroup> red: array<f32, ROWS * (WG / 4u)>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_size) sg_size: u32,
  @builtin(subgroup_invocation_id) sg_lane: u32,
) {
#else
// One partial per (row, thread), tree-reduced.
var<workgroup> red: array<f32, ROWS * WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
#endif
  let r0 = (wid.x + wid.y * 65535u) * ROWS;  // first chunk row of this workgroup
  let kv = p.k / V;
  var acc: array<f32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { acc[r] = 0.0; }
  // Each x element is loaded once and used for ROWS weight rows. Rows past the chunk's end read
  // the last row again (in bounds, branch-free) and are not stored.
  for (var j = lid; j < kv; j += WG) {
#if PACK8
    let xa = x[2u * j];
    let xb = x[2u * j + 1u];
#else
    let xv = x[j];
#endif
    for (var r = 0u; r < ROWS; r++) {
      let row = min(r0 + r, p.rows - 1u);
#if PACK8
      let q = w[row * kv + j];
      let wa = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
      let wb = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
      acc[r] += dot(wa, xa) + dot(wb, xb);
#else
      acc[r] += dot_xw(XV(w[row * kv + j]), xv);
#endif
    }
  }
#if SUBGROUPS
  let nsg = WG / sg_size;
  for (var r = 0u; r < ROWS; r++) {
    let s = subgroupAdd(acc[r]);
    if (sg_lane == 0u) { red[r * (WG / 4u) + lid / sg_size] = s; }
  }
  workgroupBarrier();
  if (lid < ROWS && r0 + lid < p.rows) {
    var t = 0.0;
    for (var i = 0u; i < nsg; i++) { t += red[lid * (WG / 4u) + i]; }
    store(0u, r0 + lid, t);
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
  if (lid < ROWS && r0 + lid < p.rows) { store(0u, r0 + lid, red[lid * WG]); }
#endif
}

#else
// Tiled: 256 threads as 16 × 16 compute a BM × BN = (16·TM) × (16·TN) output tile; thread
// (tx, ty) owns rows ib·64 + ty·4 + (0..3) for ib < TM/4 and columns jb·64 + tx·4 + (0..3) for
// jb < TN/4 (interleaved, so the shared-memory reads of a half-warp are consecutive vec4).
// Shared tiles are k-major, vec4 along m (resp. n): per k, TM/4 + TN/4 vec4 reads feed TM·TN FMAs.
const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const BM: u32 = 16u * TM;
const BN: u32 = 16u * TN;
const BK: u32 = 16u;
var<workgroup> As: array<vec4<f32>, BK * BM / 4u>;  // [k][m / 4] of x
var<workgroup> Bs: array<vec4<f32>, BK * BN / 4u>;  // [k][n / 4] of w

// Four consecutive k elements of a row of x (zero past m or k).
fn load_x(row: u32, k: u32) -> vec4<f32> {
  if (row >= p.m) { return vec4<f32>(0.0); }
#if VEC
  if (k >= p.k) { return vec4<f32>(0.0); }
  return x[(row * p.k + k) / 4u];
#else
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < p.k) { v[i] = x[row * p.k + k + i]; }
  }
  return v;
#endif
}

// Four consecutive k elements of a chunk row of w, as f32 (zero past the chunk or k).
fn load_w(row: u32, k: u32) -> vec4<f32> {
  if (row >= p.rows) { return vec4<f32>(0.0); }
#if VEC
  if (k >= p.k) { return vec4<f32>(0.0); }
  return vec4<f32>(w[(row * p.k + k) / 4u]);
#else
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < p.k) { v[i] = f32(w[row * p.k + k + i]); }
  }
  return v;
#endif
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n0 = wid.x * BN;  // first chunk row (output column) of the tile
  let m0 = wid.y * BM;
  let tx = lid % 16u;
  let ty = lid / 16u;
  var acc: array<vec4<f32>, TM * TN / 4u>;  // [row i][column block jb]
  for (var i = 0u; i < TM * TN / 4u; i++) { acc[i] = vec4<f32>(0.0); }
  // Loader roles: thread lid loads the vec4 of k [lk, lk + 4) for tile rows lr + 64·pass.
  let lr = lid / 4u;
  let lk = (lid % 4u) * 4u;
  for (var k0 = 0u; k0 < p.k; k0 += BK) {
    for (var mr = lr; mr < BM; mr += 64u) {
      let v = load_x(m0 + mr, k0 + lk);
      for (var i = 0u; i < 4u; i++) { As[((lk + i) * BM + mr) / 4u][mr % 4u] = v[i]; }
    }
    for (var nr = lr; nr < BN; nr += 64u) {
      let v = load_w(n0 + nr, k0 + lk);
      for (var i = 0u; i < 4u; i++) { Bs[((lk + i) * BN + nr) / 4u][nr % 4u] = v[i]; }
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var b: array<vec4<f32>, TN / 4u>;
      for (var jb = 0u; jb < TN / 4u; jb++) { b[jb] = Bs[k * (BN / 4u) + jb * 16u + tx]; }
      for (var ib = 0u; ib < TM / 4u; ib++) {
        let a = As[k * (BM / 4u) + ib * 16u + ty];
        for (var jb = 0u; jb < TN / 4u; jb++) {
          let r = ib * 4u * (TN / 4u) + jb;
          acc[r] += a.x * b[jb];
          acc[r + TN / 4u] += a.y * b[jb];
          acc[r + 2u * (TN / 4u)] += a.z * b[jb];
          acc[r + 3u * (TN / 4u)] += a.w * b[jb];
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let row = m0 + (i / 4u) * 64u + ty * 4u + i % 4u;
    if (row >= p.m) { continue; }
    for (var jb = 0u; jb < TN / 4u; jb++) {
      for (var j = 0u; j < 4u; j++) {
        let c = n0 + jb * 64u + tx * 4u + j;
        if (c < p.rows) { store(row, c, acc[i * (TN / 4u) + jb][j]); }
      }
    }
  }
}
#endif
