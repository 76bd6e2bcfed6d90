// y = x · wᵀ (+ bias) (+ y if ACC), for one row chunk of the weight: this dispatch computes output
// columns [p.row_start, p.row_start + p.rows) from the chunk's rows [0, p.rows).
// #if F16: weights are f16 (converted to f32 on load; accumulation stays f32).
// #if VEC: k % 4 == 0, so x and w are read as vec4 (w rows stay vec4-aligned).
// #if BIAS: adds bias[col]. #if QGELU: then quick_gelu (the vision MLP's fc1; not with ACC). #if
// ACC: adds the old y (a fused residual add).
// #if GEMV: m == 1 — each workgroup computes ROWS outputs, all WG threads split k; with TPR set
// (small k), TPR threads split each row's k and a workgroup computes WG / TPR rows. Else the tiled
// path: a workgroup computes a 64 × 64 (128 × 128 with TILE8) output tile from shared-memory tiles.
// #if SUBGROUPS (GEMV only): reduce with subgroupAdd (with TPR: subgroupShuffleXor); the host
// enables it only when every subgroup size the adapter may use divides WG (with TPR: is ≥ TPR).
// #if PACK8 (GEMV only, f16, k % 8 == 0): w is read 8 halves at a time as vec4<u32> (16-byte
// loads) and unpacked with unpack2x16float; needs no shader-f16.
// #if NORM (GEMV only, not XROWS): x is RMS-normed on load (a fused Qwen2RMSNorm before the linear):
// y = inv_rms · (w · (x ∘ nw)ᵀ) (+ bias) (+ y), inv_rms = 1 / sqrt(mean(x²) + p.eps). The threads
// of a row (group) cover all of k between them, so each adds up the x² of the x elements it loads
// for its dot products anyway, and Σx² rides along in the dot products' reduction as one more
// value: no extra pass over x (a separate pass per workgroup re-read x — as many bytes as the
// weights with 2 rows of 7 KiB per workgroup — and made the 7B decode step's GEMVs 38 % slower on
// the H200), and every row group of the dispatch reduces the same values in the same order.
// #if ROPE (GEMV ROWS path, ROWS = 2, not ACC, one weight chunk): the fused q/k/v projection of a
// decode step with kernels/rope.wgsl's DECODE KV pass as its epilogue. A workgroup computes a rotary
// pair — rows i and i + half of one of the first p.rot_rows rows (q heads, then k heads) — so it
// can turn them by the angle of state.position before storing; the rest (v heads) two plain rows at
// a time. q, k, v all land in y (attention reads q there); k and v also go to the KV cache row
// state.cache_len (dropped past p.max_rows, as in rope.wgsl). Saves the rope dispatch and its round
// trip through y: ~7 µs per layer on the H200.
// #if SILU (GEMV only, not XROWS): x is (2k) f32 [gate | up] and the linear
// reads silu(gate) · up (the MLP's act_fn(gate_proj(x)) * up_proj(x) fused into down_proj), as
// kernels/elementwise.wgsl's silu_mul.

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
#if W4H
@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;  // (rows, k / 4) 4 × f16: this chunk
#else
@group(0) @binding(1) var<storage, read> w: array<WV>;         // (rows, k) f32|f16: this chunk
#endif
#endif
#if BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;     // (n) f32, indexed by output column
#endif
@group(0) @binding({{Y_BINDING}}) var<storage, read_write> y: array<f32>;  // (m, n) f32
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
// Elements per x array element.
#if VEC
const XW: u32 = 4u;
#else
const XW: u32 = 1u;
#endif
#if VEC
fn dot_xw(a: XV, b: XV) -> f32 { return dot(a, b); }
#else
fn dot_xw(a: XV, b: XV) -> f32 { return a * b; }
#endif

// Output (row, chunk column c) from its dot product: acc (· 1/rms) (+ bias) (→ quick_gelu) (+ old y).
fn finish(row: u32, c: u32, acc: f32) -> f32 {
  let col = p.row_start + c;
#if NORM
  var v = acc * inv_rms;
#else
  var v = acc;
#endif
#if BIAS
  v += bias[col];
#endif
#if QGELU
  v = v / (1.0 + exp(-1.702 * v));  // quick_gelu(v) = v · sigmoid(1.702 v), as kernels/elementwise.wgsl
#endif
#if ACC
  v += y[row * p.n + col];
#endif
  return v;
}

fn store(row: u32, c: u32, acc: f32) { y[row * p.n + p.row_start + c] = finish(row, c, acc); }

#if ROPE
#include rope_kv

// Stores workgroup g's two outputs (dot products a, b): rotated if a rotary pair, into y and, for
// k and v rows, into the cache.
fn store_rope(g: u32, a: f32, b: f32) {
  let r0 = rope_row(g, 0u);
  let r1 = rope_row(g, 1u);
  store_rope_pair(r0, r1, g % p.half, g < p.rot_rows / 2u, finish(0u, r0, a), finish(0u, r1, b));
}
#endif

#if GEMV
const WG: u32 = {{WG}}u;

#if NORM
@group(0) @binding({{NW_BINDING}}) var<storage, read> nw: array<XV>;  // (k) f32 RMSNorm weight
var<private> inv_rms: f32;
// Σx² of the x elements this thread loaded (its share of mean(x²)).
var<private> ss: f32 = 0.0;

fn set_inv_rms(sum_sq: f32) { inv_rms = inverseSqrt(sum_sq / f32(p.k) + p.eps); }
#endif

// x element i (in XV units), as the product reads it — #if NORM times the norm weight (the 1 / rms
// factor is applied in store()) and its x² added to ss, #if SILU silu(gate) · up (up sits k elements
// after gate) — or, where `ok` is false (a unit of a written-out step past k; i clamped in bounds
// by the caller), 0, adding nothing to Σx².
fn xm(i: u32, ok: bool) -> XV {
#if NORM
  let e = select(XV(0.0), x[i], ok);
  ss += dot_xw(e, e);
  return e * nw[i];
#else
#if SILU
  let g = select(XV(0.0), x[i], ok);
  return g / (XV(1.0) + exp(-g)) * x[i + p.k / XW];
#else
  return select(XV(0.0), x[i], ok);
#endif
#endif
}

fn xn(i: u32) -> XV { return xm(i, true); }
#if TPR
// Small k (a row is a few dozen loads): TPR threads (a power of two) per output row, each doing
// about 4 loads, so few threads idle; the row groups of a workgroup are WG / TPR consecutive rows.
const TPR: u32 = {{TPR}}u;
#ifnot SUBGROUPS
var<workgroup> red: array<f32, WG>;  // one partial per thread, tree-reduced per row group
#endif

// The sum of v over the TPR lanes of this thread's row group, in lane t == 0 (every lane with
// subgroups). Both reductions add in the same order (lane t takes t + s for s = TPR/2, …, 1), so
// they give the same bits. Called by every thread in uniform control flow.
fn row_group_sum(v: f32, lid: u32, t: u32) -> f32 {
  var a = v;
#if SUBGROUPS
  // A 1D workgroup is split into subgroups of consecutive invocations (as the ROWS path assumes
  // too) and TPR ≤ the subgroup size, both powers of two: a row group is TPR aligned lanes of one
  // subgroup, closed under lane ^ s for s < TPR.
  for (var s = TPR / 2u; s > 0u; s = s >> 1u) { a += subgroupShuffleXor(a, s); }
#else
  if (TPR > 1u) {
    workgroupBarrier();  // red may still be read by an earlier call
    red[lid] = a;
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s = s >> 1u) {
      if (t < s) { red[lid] += red[lid + s]; }
      workgroupBarrier();
    }
    a = red[lid];
  }
#endif
  return a;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = (wid.x + wid.y * 65535u) * (WG / TPR) + lid / TPR;  // this thread's chunk row
  let t = lid % TPR;                                          // its lane within the row group
  // Rows past the chunk's end read the last row again (in bounds) and are not stored.
  let base = min(r, p.rows - 1u) * (p.k / V);
  var acc = 0.0;
  for (var j = t; j < p.k / V; j += TPR) {
#if PACK8
    let q = w[base + j];
    acc += dot(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), xn(2u * j)) +
      dot(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)), xn(2u * j + 1u));
#else
    acc += dot_xw(XV(w[base + j]), xn(j));
#endif
  }
  acc = row_group_sum(acc, lid, t);
#if NORM
  set_inv_rms(row_group_sum(ss, lid, t));
#endif
  if (t == 0u && r < p.rows) { store(0u, r, acc); }
}

#else
const ROWS: u32 = {{ROWS}}u;

// #if XROWS (1 < m ≤ kernels/linear.ts GEMV_XROWS_MAX; no NORM, SILU or ROPE): all m rows of x at
// once, XR ≥ m of them computed (XR: m's bucket, 2, 4, 8 or 16 — a set of pipelines a bucket, not
// a row count: each took the H200 0.15–1.07 s to compile at first use; rows past m read row m − 1
// again and are not stored) — each weight element loaded once serves XR dot products (a prefill of a few tokens,
// the prompt cache's rerun of a prompt's last two rows), where the tiled kernels' 64-row tiles
// computed mostly padding rows. Output (x row i, chunk row r0 + r) is slot r · XR + i, its products
// added in the order the m = 1 GEMV of the same WG adds them: a row's bits are what it alone would
// get at that tuning (kernels/linear.ts gemvXRowsTuning: WG follows m, and is not the decode
// GEMV's), not the tiled kernels' that a longer chunk's rows take (≈ 2e-7 of the largest logit
// apart: a prompt cache's rerun of a prompt's last rows does not give an uncached prefill's bits).
// (A fused norm / silu · mul here ran slower than their own passes on the H200 and was removed:
// kernels/linear.ts normLinear / siluMulLinear run those passes first.)
#if XROWS
const XR: u32 = {{XR}}u;
#else
const XR: u32 = 1u;
#endif
// Values reduced over the workgroup: the ROWS · XR dot products (+ Σx² with NORM, in slot ROWS).
#if NORM
const SLOTS: u32 = ROWS + 1u;
#else
const SLOTS: u32 = ROWS * XR;
#endif

#if XROWS
// x element idx (XV units) of x row i, or 0 where `ok` is false (a unit of a written-out step past
// k, idx clamped in bounds by the caller).
fn xr(i: u32, idx: u32, ok: bool) -> XV {
  return select(XV(0.0), x[min(i, p.m - 1u) * (p.k / XW) + idx], ok);
}
#endif

#if SUBGROUPS
// One partial per (slot, subgroup); subgroups have at least 4 lanes.
var<workgroup> red: array<f32, SLOTS * (WG / 4u)>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_size) sg_size: u32,
  @builtin(subgroup_invocation_id) sg_lane: u32,
) {
#else
// One partial per (slot, thread), tree-reduced.
var<workgroup> red: array<f32, SLOTS * WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
#endif
  let g = wid.x + wid.y * 65535u;
  let r0 = g * ROWS;  // first chunk row of this workgroup
  let kv = p.k / V;
  var acc: array<f32, ROWS * XR>;
#if STEPS
  // #if STEPS (PACK8): the loop below written out by the builder (kernels/linear.ts gemvSteps),
  // UNROLL units of x a step with all their loads issued before any product, into named
  // accumulators: the same products added in the same order (a unit past k adds 0).
  {{GEMV_STEPS}}
#else
#if XROWS
  for (var r = 0u; r < ROWS * XR; r++) { acc[r] = 0.0; }
  // Each weight element is loaded once and used for XR rows of x.
  for (var j = lid; j < kv; j += WG) {
    var xa: array<XV, XR>;
#if PACK8
    var xb: array<XV, XR>;
    for (var i = 0u; i < XR; i++) { xa[i] = xr(i, 2u * j, true); xb[i] = xr(i, 2u * j + 1u, true); }
#else
    for (var i = 0u; i < XR; i++) { xa[i] = xr(i, j, true); }
#endif
    for (var r = 0u; r < ROWS; r++) {
      let row = min(r0 + r, p.rows - 1u);
#if PACK8
      let q = w[row * kv + j];
      let wa = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
      let wb = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
      for (var i = 0u; i < XR; i++) { acc[r * XR + i] += dot(wa, xa[i]) + dot(wb, xb[i]); }
#else
      let wv = XV(w[row * kv + j]);
      for (var i = 0u; i < XR; i++) { acc[r * XR + i] += dot_xw(wv, xa[i]); }
#endif
    }
  }
#else
  for (var r = 0u; r < ROWS * XR; r++) { acc[r] = 0.0; }
  // Each x element is loaded once and used for ROWS weight rows. Rows past the chunk's end read
  // the last row again (in bounds, branch-free) and are not stored.
  for (var j = lid; j < kv; j += WG) {
#if PACK8
    let xa = xn(2u * j);
    let xb = xn(2u * j + 1u);
#else
    let xv = xn(j);
#endif
    for (var r = 0u; r < ROWS; r++) {
#if ROPE
      let row = rope_row(g, r);
#else
      let row = min(r0 + r, p.rows - 1u);
#endif
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
#endif
#endif
#if SUBGROUPS
  let nsg = WG / sg_size;
  for (var r = 0u; r < ROWS * XR; r++) {
    let s = subgroupAdd(acc[r]);
    if (sg_lane == 0u) { red[r * (WG / 4u) + lid / sg_size] = s; }
  }
#if NORM
  let s2 = subgroupAdd(ss);
  if (sg_lane == 0u) { red[ROWS * (WG / 4u) + lid / sg_size] = s2; }
#endif
  workgroupBarrier();
#if XROWS
  if (lid < ROWS * XR && lid % XR < p.m && r0 + lid / XR < p.rows) {
    var t = 0.0;
    for (var i = 0u; i < nsg; i++) { t += red[lid * (WG / 4u) + i]; }
    store(lid % XR, r0 + lid / XR, t);
  }
#else
  if (lid < ROWS && r0 + lid < p.rows) {
#if NORM
    var q = 0.0;
    for (var i = 0u; i < nsg; i++) { q += red[ROWS * (WG / 4u) + i]; }
    set_inv_rms(q);
#endif
    var t = 0.0;
    for (var i = 0u; i < nsg; i++) { t += red[lid * (WG / 4u) + i]; }
#if ROPE
    // Lane 1 hands its row to lane 0, which rotates the pair.
    red[lid * (WG / 4u)] = t;
  }
  workgroupBarrier();
  if (lid == 0u) {
    store_rope(g, red[0], red[WG / 4u]);
#else
    store(0u, r0 + lid, t);
#endif
  }
#endif
#else
  for (var r = 0u; r < ROWS * XR; r++) { red[r * WG + lid] = acc[r]; }
#if NORM
  red[ROWS * WG + lid] = ss;
#endif
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      for (var r = 0u; r < SLOTS; r++) { red[r * WG + lid] += red[r * WG + lid + s]; }
    }
    workgroupBarrier();
  }
#if NORM
  set_inv_rms(red[ROWS * WG]);
#endif
#if ROPE
  if (lid == 0u) { store_rope(g, red[0], red[WG]); }
#else
#if XROWS
  if (lid < ROWS * XR && lid % XR < p.m && r0 + lid / XR < p.rows) {
    store(lid % XR, r0 + lid / XR, red[lid * WG]);
  }
#else
  if (lid < ROWS && r0 + lid < p.rows) { store(0u, r0 + lid, red[lid * WG]); }
#endif
#endif
#endif
}
#endif

#else
#if REDUCE
// Split-k sum (after a SPLITK GEMM): y = Σ over p.splits partial products (+ bias) (+ y), the
// partials read through x as (splits, m, p.rows) f32 for this chunk's columns.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * 65535u) * 256u + lid;  // (row, chunk column) index
  if (i >= p.m * p.rows) { return; }
  var acc = 0.0;
  for (var s = 0u; s < p.splits; s++) { acc += x[s * p.m * p.rows + i]; }
  store(i / p.rows, i % p.rows, acc);
}

#else
#if SPLITK
// This workgroup's k range (SPLITK: wid.z of p.splits, p.kspan each): its partial product goes
// to y as (splits, m, p.rows) f32, bias and the old y added by the REDUCE pass.
var<private> split: u32;
#endif

// c + outer(a, b): c[i] += a[i] · b.
fn outer_acc(c: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(vec4(a.x), b, c[0]), fma(vec4(a.y), b, c[1]), fma(vec4(a.z), b, c[2]), fma(vec4(a.w), b, c[3]));
}

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

// Four consecutive k elements of x row `row` (< p.m: the caller clamps), zero past k.
fn ld_x(row: u32, k: u32) -> vec4<f32> {
#if VEC
  return select(x[(row * p.k + k) / 4u], vec4<f32>(0.0), k >= p.k);
#else
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < p.k) { v[i] = x[row * p.k + k + i]; }
  }
  return v;
#endif
}

// Four consecutive k elements of chunk row `row` (< p.rows) of w as f32, zero past k.
fn ld_w(row: u32, k: u32) -> vec4<f32> {
#if W4H
  let h = w[(row * p.k + k) / 4u];
  return select(vec4(unpack2x16float(h.x), unpack2x16float(h.y)), vec4<f32>(0.0), k >= p.k);
#else
#if VEC
  return select(vec4<f32>(w[(row * p.k + k) / 4u]), vec4<f32>(0.0), k >= p.k);
#else
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < p.k) { v[i] = f32(w[row * p.k + k + i]); }
  }
  return v;
#endif
#endif
}

#if PIPE
// Tiled, pipelined (PIPE): 256 threads (16 × 16) compute a 128 × 128 output tile; thread (tx, ty)
// owns the 4 × 4 blocks at rows ib·64 + ty·4, columns jb·64 + tx·4 (ib, jb < 2) as named mat4x4
// accumulators, as in TILE8. k steps of BK = 16 through two shared buffers, one barrier per step:
// the products of one buffer run while the global loads of the step after next are in flight,
// and the next step's blocks (loaded a step ago) are stored to the other buffer after them.
// Warps 0–3 load x, warps 4–7 load w: one 4 × 4 block per thread (4 rows × one vec4 of k),
// transposed in registers and stored as 4 vec4 into the k-major shared tiles (TILE8 stores 16
// scalars per 16 k, 4-way bank-conflicted). Shared rows are padded by one vec4 so a quarter
// warp's stores (2 k blocks × 4 row blocks) hit 8 distinct 16-byte banks. It runs at full speed
// with one workgroup per SM.
// A loaded block is held as the bits it was loaded as (f16 w read as vec2<u32>, four halves:
// W4H) and converted, zeroed past k and transposed only when stored, after a step's products,
// and the loads are branch-free (the last steps reload their own): no instruction before the
// products uses a loaded value, so none waits on the loads. Converting on load (f16 → f32,
// the past-k select) made every warp wait out the load latency before its products: 1.1–1.25×
// slower on the H200 (2026-11-28 12:21, bench/_gemm.ts: 7B at 478 rows gate_up 4.49 → 4.04 ms,
// down 2.62 → 2.38, o 0.50 → 0.44; vision at 5120 patches fc1 2.22 → 1.80, fc2 2.83 → 2.24, qkv
// 1.72 → 1.49, at 1564 1.1×). 128 × 64 tiles of 128 threads (two workgroups an SM, had they
// shared one) ran 2× slower on every shape, as one workgroup of 4 warps an SM would.
// No `for` inside a step: naga wraps every WGSL loop in a loop-bound counter (its infinite-loop
// guard) that the driver cannot see through, so a `for` over the step's 16 k stayed a loop — its
// shared loads waited on, their index clamps computed per k. Written out as mac() calls with
// literal k, and two steps per iteration (buffer 0, then 1) so every shared index but the
// thread's is a constant, the loop ran 1.4× faster on the H200 (2026-11-28, bench/_gemm.ts:
// without global loads 21–25 → 34–42 TFLOP/s; with them 17–21 → 24–30). Loads issued two steps
// ahead were 1–4 % slower while they converted on load; with raw loads they are 0–6 % faster than
// one step ahead (H200 12:35: 7B at 478 rows gate_up 3.89 → 3.65 ms, down 2.24 → 2.15; vision
// fc1 at 5120 patches 2.08 → 2.00; qkv, o, fc2 ±1 %). 512 threads of 8 × 4 outputs on this tile
// (16 warps an SM) were 1.1–1.3× slower.
// #if HALF (m ≤ 64): a 64 × 128 tile, thread (tx, ty) owning the blocks at rows ty·4, columns
// jb·64 + tx·4 (jb < 2) — half the products a k of the full tile from three shared loads instead
// of four, on half the rows: a full tile's products at 40 rows were mostly of padding rows (7B
// at 16 and 40 rows took the same time, H200 2026-11-28 22:51). Threads 0–63 load x blocks,
// 64–191 w blocks, the rest load a w block again and store nothing (branch-free loads). A 64 ×
// 256 tile of the full tile's 64 accumulators a thread ran 2.5–5× slower (23:05).
// #if NOLOAD (benchmarks only, wrong results): every k step reuses the first step's loads — the
// kernel without global memory traffic, to measure what the loads cost.
#if HALF
const BM: u32 = 64u;
#else
const BM: u32 = 128u;
#endif
const BN: u32 = 128u;
const BK: u32 = 16u;
// Indexed per dimension (not flattened), so the bounds clamps WebGPU adds to every workgroup
// array index fold: buffer and k clamps are constants, the column clamp invariant.
var<workgroup> As: array<array<array<vec4<f32>, BM / 4u + 1u>, BK>, 2>;  // [buffer][k][m / 4] of x, padded
var<workgroup> Bs: array<array<array<vec4<f32>, BN / 4u + 1u>, BK>, 2>;  // [buffer][k][n / 4] of w, padded

// One thread's 4 × 4 block of x or w (rows r, 4 k each) as f32, and as loaded bits.
struct Blk { r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32> }
struct Raw { r0: vec4<u32>, r1: vec4<u32>, r2: vec4<u32>, r3: vec4<u32> }

// Loader block b (< rows) of a tile of `rows` rows (64 or 128): (first row, first k) = (4·rb,
// 4·kb). Two neighbouring lanes read one 32-byte sector of a row.
fn blk(b: u32, rows: u32) -> vec2<u32> {
  return vec2(4u * ((b / 2u) % (rows / 4u)), 4u * (b % 2u + 2u * (b / (rows / 2u))));
}

// The block's rows from tile row r0 on, clamped to `last`: rows past m (past the chunk) read the
// last one again (in bounds, branch-free) and are not stored.
fn blk_rows(r0: u32, last: u32) -> vec4<u32> { return min(vec4(r0) + vec4(0u, 1u, 2u, 3u), vec4(last)); }

// Four consecutive k elements of x row / chunk row `row` as loaded bits (w with W4H: four halves
// in .xy); without VEC converted on load (scalar loads: no fast path).
fn raw_x(row: u32, k: u32) -> vec4<u32> {
#if VEC
  return bitcast<vec4<u32>>(x[(row * p.k + k) / 4u]);
#else
  return bitcast<vec4<u32>>(ld_x(row, k));
#endif
}
fn raw_w(row: u32, k: u32) -> vec4<u32> {
#if W4H
  return vec4(w[(row * p.k + k) / 4u], 0u, 0u);
#else
#if VEC
  return bitcast<vec4<u32>>(vec4<f32>(w[(row * p.k + k) / 4u]));
#else
  return bitcast<vec4<u32>>(ld_w(row, k));
#endif
#endif
}

// This thread's loader block (tile row, k within the step), its clamped rows and its role (x or
// w); the accumulators and the thread's tile position, private so the written-out calls can
// update them.
var<private> pos: vec2<u32>;
var<private> rows: vec4<u32>;
var<private> w_role: bool;
var<private> c00: mat4x4<f32>;
var<private> c01: mat4x4<f32>;
#if HALF
var<private> loader: bool;  // stores its block (threads below 192)
#else
var<private> c10: mat4x4<f32>;
var<private> c11: mat4x4<f32>;
#endif
var<private> tx: u32;
var<private> ty: u32;

// Sets the loader role of thread lid for the tile at (m0, n0).
fn set_role(lid: u32, m0: u32, n0: u32) {
#if HALF
  w_role = lid >= BM;
  loader = lid < BM + BN;
  pos = blk(select(lid, (lid - BM) % BN, w_role), select(BM, BN, w_role));
#else
  w_role = lid >= 128u;
  pos = blk(lid % 128u, 128u);
#endif
  rows = blk_rows(select(m0, n0, w_role) + pos.x, select(p.m, p.rows, w_role) - 1u);
}

// This thread's block of the k step from k0 as loaded bits. Past the last k they are the next
// row's, or past the binding's end at the last row (robust access returns some in-bounds value or
// 0 there): cvt zeroes them either way.
fn load_step(k0: u32) -> Raw {
  let k = k0 + pos.y;
  if (w_role) { return Raw(raw_w(rows.x, k), raw_w(rows.y, k), raw_w(rows.z, k), raw_w(rows.w, k)); }
  return Raw(raw_x(rows.x, k), raw_x(rows.y, k), raw_x(rows.z, k), raw_x(rows.w, k));
}

// Loaded bits as f32 (w with W4H: the unpacked halves), zero where k (the block's first) is past
// p.k.
fn cvt(v: vec4<u32>, k: u32) -> vec4<f32> {
  var f = bitcast<vec4<f32>>(v);
#if W4H
  if (w_role) { f = vec4(unpack2x16float(v.x), unpack2x16float(v.y)); }
#endif
  return select(f, vec4<f32>(0.0), k >= p.k);
}

// Stores the loaded block b of the k step from k0 into shared buffer buf, converted and
// transposed: k row pos.y + j gets the vec4 of the 4 rows' element j (written out: a loop over j
// would index t dynamically).
fn put_step(buf: u32, b: Raw, k0: u32) {
#if HALF
  if (!loader) { return; }
#endif
  let k = k0 + pos.y;
  let t = transpose(mat4x4(cvt(b.r0, k), cvt(b.r1, k), cvt(b.r2, k), cvt(b.r3, k)));
  let c = pos.x / 4u;
  if (w_role) {
    Bs[buf][pos.y][c] = t[0];
    Bs[buf][pos.y + 1u][c] = t[1];
    Bs[buf][pos.y + 2u][c] = t[2];
    Bs[buf][pos.y + 3u][c] = t[3];
  } else {
    As[buf][pos.y][c] = t[0];
    As[buf][pos.y + 1u][c] = t[1];
    As[buf][pos.y + 2u][c] = t[2];
    As[buf][pos.y + 3u][c] = t[3];
  }
}

// The products of k row k of shared buffer buf.
fn mac(buf: u32, k: u32) {
  let a0 = As[buf][k][ty];
  let b0 = Bs[buf][k][tx];
  let b1 = Bs[buf][k][16u + tx];
  c00 = outer_acc(c00, a0, b0);
  c01 = outer_acc(c01, a0, b1);
#ifnot HALF
  let a1 = As[buf][k][16u + ty];
  c10 = outer_acc(c10, a1, b0);
  c11 = outer_acc(c11, a1, b1);
#endif
}

// The products of one k step (BK = 16) from shared buffer buf.
fn products(buf: u32) {
  mac(buf, 0u); mac(buf, 1u); mac(buf, 2u); mac(buf, 3u);
  mac(buf, 4u); mac(buf, 5u); mac(buf, 6u); mac(buf, 7u);
  mac(buf, 8u); mac(buf, 9u); mac(buf, 10u); mac(buf, 11u);
  mac(buf, 12u); mac(buf, 13u); mac(buf, 14u); mac(buf, 15u);
}

// The blocks in flight, two steps ahead: blk_v for the steps of buffer 0, blk_w for those of
// buffer 1.
var<private> blk_v: Raw;
var<private> blk_w: Raw;

// One k step from k0 (< kend) in buffer cur (a literal at each call): the loads of the step after
// next into this buffer's block, this one's products, the next step's stores (loaded a step ago)
// into the other buffer (last read in the step before, which ended at a barrier), a barrier.
fn step(k0: u32, kend: u32, cur: u32) {
#ifnot NOLOAD
  let k2 = select(k0, k0 + 2u * BK, k0 + 2u * BK < kend);  // branch-free: the last steps reload
  if (cur == 0u) { blk_v = load_step(k2); } else { blk_w = load_step(k2); }
#endif
  products(cur);
  if (k0 + BK < kend) {
    if (cur == 0u) { put_step(1u, blk_w, k0 + BK); } else { put_step(0u, blk_v, k0 + BK); }
  }
  workgroupBarrier();
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n0 = wid.x * BN;  // first chunk row (output column) of the tile
  let m0 = wid.y * BM;
  tx = lid % 16u;
  ty = lid / 16u;
#if SPLITK
  split = wid.z;
  let kbeg = split * p.kspan;  // a multiple of BK
  let kend = min(p.k, kbeg + p.kspan);
#else
  let kbeg = 0u;
  let kend = p.k;
#endif
  set_role(lid, m0, n0);
  blk_v = load_step(kbeg);
  blk_w = load_step(select(kbeg, kbeg + BK, kbeg + BK < kend));
  put_step(0u, blk_v, kbeg);
  workgroupBarrier();
  for (var k0 = kbeg; k0 < kend; k0 += 2u * BK) {
    step(k0, kend, 0u);
    if (k0 + BK >= kend) { break; }
    step(k0 + BK, kend, 1u);
  }
  store_block(m0 + ty * 4u, n0 + tx * 4u, c00);
  store_block(m0 + ty * 4u, n0 + 64u + tx * 4u, c01);
#ifnot HALF
  store_block(m0 + 64u + ty * 4u, n0 + tx * 4u, c10);
  store_block(m0 + 64u + ty * 4u, n0 + 64u + tx * 4u, c11);
#endif
}

#else
// Tiled: 256 threads as 16 × 16 compute a BT × BT output tile, BT = 16·MT (MT = 4 or 8 with
// #if TILE8); thread (tx, ty) owns the 4 × 4 blocks at rows ib·64 + ty·4 and columns
// jb·64 + tx·4 (ib, jb < MT/4), held as named mat4x4 accumulators (column i = output row i) so
// they stay in registers. Shared tiles are k-major, vec4 along m (resp. n): a half-warp reads
// consecutive vec4 of Bs and one broadcast vec4 of As per k.
#if TILE8
const BT: u32 = 128u;
#else
const BT: u32 = 64u;
#endif
const BK: u32 = 16u;
var<workgroup> As: array<vec4<f32>, BK * BT / 4u>;  // [k][m / 4] of x
var<workgroup> Bs: array<vec4<f32>, BK * BT / 4u>;  // [k][n / 4] of w

// Four consecutive k elements of a row of x / of a chunk row of w as f32 (zero past m, the chunk
// or k).
fn load_x(row: u32, k: u32) -> vec4<f32> {
  if (row >= p.m) { return vec4<f32>(0.0); }
  return ld_x(row, k);
}
fn load_w(row: u32, k: u32) -> vec4<f32> {
  if (row >= p.rows) { return vec4<f32>(0.0); }
  return ld_w(row, k);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n0 = wid.x * BT;  // first chunk row (output column) of the tile
  let m0 = wid.y * BT;
  let tx = lid % 16u;
  let ty = lid / 16u;
  var c00 = mat4x4<f32>();
#if TILE8
  var c01 = mat4x4<f32>();
  var c10 = mat4x4<f32>();
  var c11 = mat4x4<f32>();
#endif
  // Loader roles: thread lid loads the vec4 of k [lk, lk + 4) for tile rows lr + 64·pass.
  let lr = lid / 4u;
  let lk = (lid % 4u) * 4u;
  for (var k0 = 0u; k0 < p.k; k0 += BK) {
    for (var r = lr; r < BT; r += 64u) {
      let xv = load_x(m0 + r, k0 + lk);
      let wv = load_w(n0 + r, k0 + lk);
      for (var i = 0u; i < 4u; i++) {
        As[((lk + i) * BT + r) / 4u][r % 4u] = xv[i];
        Bs[((lk + i) * BT + r) / 4u][r % 4u] = wv[i];
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      let a0 = As[k * (BT / 4u) + ty];
      let b0 = Bs[k * (BT / 4u) + tx];
      c00 = outer_acc(c00, a0, b0);
#if TILE8
      let a1 = As[k * (BT / 4u) + 16u + ty];
      let b1 = Bs[k * (BT / 4u) + 16u + tx];
      c01 = outer_acc(c01, a0, b1);
      c10 = outer_acc(c10, a1, b0);
      c11 = outer_acc(c11, a1, b1);
#endif
    }
    workgroupBarrier();
  }
  store_block(m0 + ty * 4u, n0 + tx * 4u, c00);
#if TILE8
  store_block(m0 + ty * 4u, n0 + 64u + tx * 4u, c01);
  store_block(m0 + 64u + ty * 4u, n0 + tx * 4u, c10);
  store_block(m0 + 64u + ty * 4u, n0 + 64u + tx * 4u, c11);
#endif
}
#endif
#endif
#endif
