// Scaled dot-product attention, softmax in f32, flash-style (online softmax over key tiles, so any
// sequence length runs in fixed workgroup memory). Heads are HD wide (a define; HD % 16 == 0).
// Grouped-query attention: query head h reads KV head h / group (transformers' repeat_kv).
// q, k and v are rows of wider buffers (a fused qkv row, or the KV cache), read as vec4 through
// a row stride and a column offset, both in vec4 units.
//
// Entries:
//   prefill         — queries 0..seq-1 against keys; causal (query i sits at position offset + i and
//                     sees keys 0..offset+i) or, #if VISION, block-diagonal by cu_seqlens (query i
//                     in block b sees keys cu[b]..cu[b+1]-1: each image frame attends to itself).
//   decode_part     — #if DECODE: one query per head against cache rows 0..state.cache_len, split
//                     into CHUNK-key chunks; one workgroup per (block of GROUP query heads sharing
//                     one KV head, chunk), so each K/V row is read once per block. Writes per-chunk
//                     partial results.
//   decode_combine  — #if DECODE: merges the chunks of each head (log-sum-exp rescaling).

#if DECODE
// Layout: kernels/state.wgsl.
struct DecodeState { cache_len: u32, position: u32, step: u32, reserved: u32 }
#endif

const HD: u32 = {{HD}}u;
const HD4: u32 = HD / 4u;
// Masked scores and the initial running max: finite, so exp(m - m_new) never sees inf - inf.
const NEG: f32 = -3.0e38;

#ifnot DECODE
// ---------------------------------------------------------------------------------------------
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;        // (seq, q_stride) f32
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;        // (keys, k_stride) f32
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;        // (keys, v_stride) f32
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // (seq, heads·HD) f32
#if VISION
@group(0) @binding(4) var<storage, read> cu: array<u32>;             // (n_cu) u32 cu_seqlens
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const BQ: u32 = 32u;        // queries per workgroup
const BK: u32 = 16u;        // keys per tile
const LANES: u32 = 4u;      // threads per query row
const WG: u32 = BQ * LANES;
const KPL: u32 = BK / LANES; // scores per thread per tile
const DPL: u32 = HD4 / LANES; // vec4 output columns per thread

var<workgroup> qs: array<vec4<f32>, BQ * HD4>;   // (BQ, HD) scaled queries
var<workgroup> kvs: array<vec4<f32>, BK * HD4>;  // (BK, HD) the K tile, then the V tile
var<workgroup> ps: array<f32, BQ * BK>;          // (BQ, BK) scores of the tile

// Keys [lo, hi) that query i may see.
fn key_range(i: u32) -> vec2<u32> {
#if VISION
  var b = 0u;
  while (b + 2u < p.n_cu && cu[b + 1u] <= i) { b += 1u; }
  return vec2<u32>(cu[b], cu[b + 1u]);
#else
  return vec2<u32>(0u, p.offset + i + 1u);
#endif
}

@compute @workgroup_size(WG)
fn prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q0 = wid.x * BQ;
  let h = wid.y;
  let kvh = h / p.group;
  let r = lid / LANES;
  let lane = lid % LANES;
  let qi = q0 + r;
  let last = min(q0 + BQ, p.seq) - 1u;

  for (var idx = lid; idx < BQ * HD4; idx += WG) {
    let row = q0 + idx / HD4;
    var val = vec4<f32>(0.0);
    if (row < p.seq) { val = q[row * p.q_stride + p.q_off + h * HD4 + idx % HD4] * p.scale; }
    qs[idx] = val;
  }
  let mine = key_range(min(qi, last));
  // Rows are consecutive and both range ends grow with i: the tile needs [lo(first), hi(last)).
  let lo_t = key_range(q0).x;
  let hi_t = key_range(last).y;

  var m = NEG;
  var l = 0.0;
  var acc: array<vec4<f32>, DPL>;
  for (var c = 0u; c < DPL; c++) { acc[c] = vec4<f32>(0.0); }

  for (var kb = lo_t; kb < hi_t; kb += BK) {
    workgroupBarrier(); // previous V tile fully used (first pass: qs written)
    for (var idx = lid; idx < BK * HD4; idx += WG) {
      let key = kb + idx / HD4;
      var val = vec4<f32>(0.0);
      if (key < hi_t) { val = k[key * p.k_stride + p.k_off + kvh * HD4 + idx % HD4]; }
      kvs[idx] = val;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < KPL; jj++) {
      let j = lane * KPL + jj;
      let key = kb + j;
      var s = NEG;
      if (key >= mine.x && key < mine.y) {
        var d = 0.0;
        for (var c = 0u; c < HD4; c++) { d += dot(qs[r * HD4 + c], kvs[j * HD4 + c]); }
        s = d;
      }
      ps[r * BK + j] = s;
    }
    workgroupBarrier();
    for (var idx = lid; idx < BK * HD4; idx += WG) {
      let key = kb + idx / HD4;
      var val = vec4<f32>(0.0);
      if (key < hi_t) { val = v[key * p.v_stride + p.v_off + kvh * HD4 + idx % HD4]; }
      kvs[idx] = val;
    }
    workgroupBarrier();
    // Every lane of a row computes the row's statistics itself (same inputs, same result).
    var mx = m;
    for (var j = 0u; j < BK; j++) { mx = max(mx, ps[r * BK + j]); }
    let alpha = exp(m - mx);
    l *= alpha;
    for (var c = 0u; c < DPL; c++) { acc[c] *= alpha; }
    for (var j = 0u; j < BK; j++) {
      let s = ps[r * BK + j];
      if (s > NEG) {
        let pj = exp(s - mx);
        l += pj;
        for (var c = 0u; c < DPL; c++) { acc[c] += pj * kvs[j * HD4 + lane + c * LANES]; }
      }
    }
    m = mx;
  }
  if (qi < p.seq) {
    let inv = 1.0 / l;
    for (var c = 0u; c < DPL; c++) {
      out[qi * p.heads * HD4 + h * HD4 + lane + c * LANES] = acc[c] * inv;
    }
  }
}
#endif

#if DECODE
// ---------------------------------------------------------------------------------------------
const CHUNK: u32 = 128u;    // keys per workgroup; also the workgroup size (one key per thread)
const WG: u32 = CHUNK;
const GROUP: u32 = {{GROUP}}u;  // query heads per workgroup, all on one KV head
const DG: u32 = WG / HD4;   // key groups in the weighted sum of V (threads = DG · HD4 ≤ WG)

#if PART
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;          // (1, q_stride) f32
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;          // (max_tokens, k_stride) f32
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;          // (max_tokens, v_stride) f32
@group(0) @binding(3) var<storage, read> state: DecodeState;
@group(0) @binding(4) var<storage, read_write> part: array<vec4<f32>>; // see scratch layout below
#else
@group(0) @binding(0) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> state: DecodeState;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;  // (1, heads·HD) f32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// Scratch, in vec4 units: acc (heads, nchunks, HD4) unnormalised Σ p·v of each chunk, then stats
// (heads, nchunks) as vec4(m, l, 0, 0): the chunk's max score and Σ exp(s - m).
fn stats_at(h: u32, c: u32) -> u32 { return p.heads * p.nchunks * HD4 + h * p.nchunks + c; }

#if PART
var<workgroup> qs: array<vec4<f32>, GROUP * HD4>;    // (GROUP, HD) scaled queries
var<workgroup> ss: array<f32, GROUP * CHUNK>;        // (GROUP, CHUNK) scores, then probabilities
var<workgroup> red: array<f32, GROUP * WG>;          // (GROUP, WG) reduction scratch
var<workgroup> sums: array<vec4<f32>, DG * GROUP * HD4>; // (DG, GROUP, HD) partial Σ p·v

// Tree reduction of red[r][*] for every r at once (max or sum); leaves results in red[r][0].
fn reduce_rows(lid: u32, is_max: bool) {
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      for (var r = 0u; r < GROUP; r++) {
        let a = red[r * WG + lid];
        let b = red[r * WG + lid + s];
        red[r * WG + lid] = select(a + b, max(a, b), is_max);
      }
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(WG)
fn decode_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let h0 = wid.y * GROUP;     // first query head of the block
  let kvh = h0 / p.group;
  let n = state.cache_len + 1u;
  let start = c * CHUNK;
  if (start >= n) { return; }   // chunk past the context: the combine step does not read it

  for (var idx = lid; idx < GROUP * HD4; idx += WG) {
    let hh = h0 + idx / HD4;
    qs[idx] = q[p.q_off + hh * HD4 + idx % HD4] * p.scale;
  }
  workgroupBarrier();

  // Scores: thread lid takes key start + lid for all GROUP heads, reading its K row once.
  let key = start + lid;
  var s: array<f32, GROUP>;
  for (var r = 0u; r < GROUP; r++) { s[r] = NEG; }
  if (key < n) {
    for (var r = 0u; r < GROUP; r++) { s[r] = 0.0; }
    let kbase = key * p.k_stride + p.k_off + kvh * HD4;
    for (var d = 0u; d < HD4; d++) {
      let kv = k[kbase + d];
      for (var r = 0u; r < GROUP; r++) { s[r] += dot(qs[r * HD4 + d], kv); }
    }
  }
  for (var r = 0u; r < GROUP; r++) { red[r * WG + lid] = s[r]; }
  workgroupBarrier();
  reduce_rows(lid, true);
  var mx: array<f32, GROUP>;
  for (var r = 0u; r < GROUP; r++) { mx[r] = red[r * WG]; }
  workgroupBarrier();
  for (var r = 0u; r < GROUP; r++) {
    var pr = 0.0;
    if (key < n) { pr = exp(s[r] - mx[r]); }
    ss[r * CHUNK + lid] = pr;
    red[r * WG + lid] = pr;
  }
  workgroupBarrier();
  reduce_rows(lid, false);

  // Σ p·v: thread (g, d) sums keys g, g + DG, ... of column d for all heads, each V row read once.
  let g = lid / HD4;
  let d = lid % HD4;
  if (g < DG) {
    var acc: array<vec4<f32>, GROUP>;
    for (var r = 0u; r < GROUP; r++) { acc[r] = vec4<f32>(0.0); }
    let kend = min(CHUNK, n - start);
    for (var j = g; j < kend; j += DG) {
      let vv = v[(start + j) * p.v_stride + p.v_off + kvh * HD4 + d];
      for (var r = 0u; r < GROUP; r++) { acc[r] += ss[r * CHUNK + j] * vv; }
    }
    for (var r = 0u; r < GROUP; r++) { sums[(g * GROUP + r) * HD4 + d] = acc[r]; }
  }
  workgroupBarrier();
  for (var idx = lid; idx < GROUP * HD4; idx += WG) {
    var tot = vec4<f32>(0.0);
    for (var gg = 0u; gg < DG; gg++) { tot += sums[gg * GROUP * HD4 + idx]; }
    let hh = h0 + idx / HD4;
    part[(hh * p.nchunks + c) * HD4 + idx % HD4] = tot;
  }
  if (lid < GROUP) {
    part[stats_at(h0 + lid, c)] = vec4<f32>(mx[lid], red[lid * WG], 0.0, 0.0);
  }
}
#else
@compute @workgroup_size(64)
fn decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let n = state.cache_len + 1u;
  let nc = min((n + CHUNK - 1u) / CHUNK, p.nchunks);
  var big = NEG;
  for (var c = 0u; c < nc; c++) { big = max(big, part[stats_at(h, c)].x); }
  var l = 0.0;
  for (var c = 0u; c < nc; c++) {
    let st = part[stats_at(h, c)];
    l += st.y * exp(st.x - big);
  }
  for (var d = lid; d < HD4; d += 64u) {
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < nc; c++) {
      acc += part[(h * p.nchunks + c) * HD4 + d] * exp(part[stats_at(h, c)].x - big);
    }
    out[h * HD4 + d] = acc / l;
  }
}
#endif
#endif
