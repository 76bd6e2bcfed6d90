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
//                     into nsplit ranges; one workgroup per (block of GROUP query heads sharing
//                     one KV head, split), so each K/V row is read once per block. Writes per-split
//                     partial results.
//   decode_combine  — #if DECODE: merges the splits of each head (log-sum-exp rescaling).

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
// Flash-decoding: the keys 0..n-1 (n = cache_len + 1) are cut into p.nsplit splits of `len` keys
// (a multiple of CHUNK, so short contexts use few splits); each workgroup walks its split CHUNK
// keys at a time with an online softmax and writes unnormalised partials, which decode_combine
// merges. Every loop a thread runs is short (a quarter K row, CHUNK / DG keys of V): with little
// reuse to exploit, the cost is memory latency, hidden by many threads rather than long loops.
const CHUNK: u32 = {{CHUNK}}u;  // keys per step (32 or 64)
const WG: u32 = 256u;
const QT: u32 = WG / CHUNK;     // threads per key in the scores, each a strided part of the row
const GROUP: u32 = {{GROUP}}u;  // query heads per workgroup (≤ 8), all on one KV head
const DG: u32 = WG / HD4;       // key groups in Σ p·v (threads = DG · HD4 ≤ WG)
const LANES: u32 = 32u;         // threads per head in the softmax statistics
const KPL: u32 = CHUNK / LANES; // keys per lane in the statistics

#if PART
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;          // (1, q_stride) f32
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;          // (max_tokens, k_stride) f32
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;          // (max_tokens, v_stride) f32
@group(0) @binding(3) var<storage, read> state: DecodeState;
@group(0) @binding(4) var<storage, read_write> part: array<vec4<f32>>; // scratch, layout below
#else
@group(0) @binding(0) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> state: DecodeState;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;  // (1, heads·HD) f32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// Scratch, in vec4 units: acc (heads, nsplit, HD4) unnormalised Σ p·v of each split, then stats
// (heads, nsplit) as vec4(m, l, 0, 0): the split's max score and Σ exp(s − m).
fn acc_at(h: u32, sp: u32) -> u32 { return (h * p.nsplit + sp) * HD4; }
fn stats_at(h: u32, sp: u32) -> u32 { return p.heads * p.nsplit * HD4 + h * p.nsplit + sp; }
// Keys per split for a context of n keys: the same in both entries.
fn split_len(n: u32) -> u32 {
  let per = (n + p.nsplit - 1u) / p.nsplit;
  return (per + CHUNK - 1u) / CHUNK * CHUNK;
}

var<workgroup> red: array<f32, WG>;
var<workgroup> sums: array<vec4<f32>, WG>;           // (DG, HD4) partial Σ p·v of one head

#if PART
var<workgroup> qs: array<vec4<f32>, GROUP * HD4>;    // (GROUP, HD) scaled queries
var<workgroup> part_s: array<f32, GROUP * CHUNK * QT>; // (GROUP, CHUNK, QT) partial scores
var<workgroup> ps: array<f32, GROUP * CHUNK>;        // (GROUP, CHUNK) probabilities of this step
var<workgroup> m_sm: array<f32, GROUP>;              // running max per head
var<workgroup> l_sm: array<f32, GROUP>;              // running Σ exp(s − m) per head
var<workgroup> alpha_sm: array<f32, GROUP>;          // this step's rescale exp(m_old − m_new)

// Max (or sum) over the LANES threads of each head row; every lane gets its row's result.
fn lanes_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
  workgroupBarrier();
  red[lid] = v;
  let lane = lid % LANES;
  for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lane < s) { red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max); }
  }
  workgroupBarrier();
  return red[lid - lane];
}

@compute @workgroup_size(WG)
fn decode_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let split = wid.x;
  let h0 = wid.y * GROUP;     // first query head of the block
  let kvh = h0 / p.group;
  let n = state.cache_len + 1u;
  let len = split_len(n);
  let start = split * len;
  if (start >= n) { return; }   // split past the context: decode_combine does not read it
  let end = min(n, start + len);

  for (var idx = lid; idx < GROUP * HD4; idx += WG) {
    qs[idx] = q[p.q_off + (h0 + idx / HD4) * HD4 + idx % HD4] * p.scale;
  }
  if (lid < GROUP) { m_sm[lid] = NEG; l_sm[lid] = 0.0; }
  workgroupBarrier();

  let kj = lid / QT;          // scores: key kj of the step, part qd of its row
  let qd = lid % QT;
  let r_st = lid / LANES;     // statistics: head row r_st, keys lane, lane + LANES, ...
  let lane = lid % LANES;
  let g = lid / HD4;          // Σ p·v: thread (g, d) sums keys g, g + DG, ... of column d
  let d = lid % HD4;
  var acc: array<vec4<f32>, GROUP>;
  for (var r = 0u; r < GROUP; r++) { acc[r] = vec4<f32>(0.0); }

  for (var c0 = start; c0 < end; c0 += CHUNK) {
    let key = c0 + kj;
    var sp: array<f32, GROUP>;
    for (var r = 0u; r < GROUP; r++) { sp[r] = 0.0; }
    if (key < end) {
      let kbase = key * p.k_stride + p.k_off + kvh * HD4;
      for (var dd = qd; dd < HD4; dd += QT) {
        let kv = k[kbase + dd];
        for (var r = 0u; r < GROUP; r++) { sp[r] += dot(qs[r * HD4 + dd], kv); }
      }
    }
    for (var r = 0u; r < GROUP; r++) { part_s[(r * CHUNK + kj) * QT + qd] = sp[r]; }
    workgroupBarrier();

    // Online softmax statistics, LANES threads per head row.
    let r = min(r_st, GROUP - 1u);
    var s2 = vec2<f32>(NEG);    // this lane's KPL (≤ 2) scores
    for (var e = 0u; e < KPL; e++) {
      let j = lane + e * LANES;
      if (c0 + j < end) {
        var t = 0.0;
        for (var x = 0u; x < QT; x++) { t += part_s[(r * CHUNK + j) * QT + x]; }
        s2[e] = t;
      }
    }
    let mx = max(m_sm[r], lanes_reduce(max(s2.x, s2.y), lid, true));
    let pr = select(vec2<f32>(0.0), exp(s2 - mx), s2 > vec2<f32>(NEG));
    if (r_st < GROUP) {
      for (var e = 0u; e < KPL; e++) { ps[r * CHUNK + lane + e * LANES] = pr[e]; }
    }
    let psum = lanes_reduce(pr.x + pr.y, lid, false);
    if (r_st < GROUP && lane == 0u) {
      let alpha = exp(m_sm[r] - mx);
      alpha_sm[r] = alpha;
      l_sm[r] = l_sm[r] * alpha + psum;
      m_sm[r] = mx;
    }
    workgroupBarrier();

    if (g < DG) {
      for (var rr = 0u; rr < GROUP; rr++) { acc[rr] *= alpha_sm[rr]; }
      let kend = min(CHUNK, end - c0);
      for (var j = g; j < kend; j += DG) {
        let vv = v[(c0 + j) * p.v_stride + p.v_off + kvh * HD4 + d];
        for (var rr = 0u; rr < GROUP; rr++) { acc[rr] += ps[rr * CHUNK + j] * vv; }
      }
    }
    workgroupBarrier();       // part_s, ps and the statistics are rewritten by the next step
  }

  // Per head: add the DG key groups' partial sums, write them and the statistics.
  for (var rr = 0u; rr < GROUP; rr++) {
    if (g < DG) { sums[g * HD4 + d] = acc[rr]; }
    workgroupBarrier();
    if (lid < HD4) {
      var tot = vec4<f32>(0.0);
      for (var gg = 0u; gg < DG; gg++) { tot += sums[gg * HD4 + lid]; }
      part[acc_at(h0 + rr, split) + lid] = tot;
    }
    workgroupBarrier();
  }
  if (lid < GROUP) { part[stats_at(h0 + lid, split)] = vec4<f32>(m_sm[lid], l_sm[lid], 0.0, 0.0); }
}
#else
fn wg_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
  workgroupBarrier();
  red[lid] = v;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) { red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max); }
  }
  workgroupBarrier();
  return red[0];
}

@compute @workgroup_size(WG)
fn decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let n = state.cache_len + 1u;
  let len = split_len(n);
  let ns = min((n + len - 1u) / len, p.nsplit);
  var mine = NEG;
  for (var sp = lid; sp < ns; sp += WG) { mine = max(mine, part[stats_at(h, sp)].x); }
  let big = wg_reduce(mine, lid, true);
  var lsum = 0.0;
  for (var sp = lid; sp < ns; sp += WG) {
    let st = part[stats_at(h, sp)];
    lsum += st.y * exp(st.x - big);
  }
  let l = wg_reduce(lsum, lid, false);
  // Thread (g, d): splits g, g + DG, ... of column d; then the DG groups are added.
  let g = lid / HD4;
  let d = lid % HD4;
  var acc = vec4<f32>(0.0);
  if (g < DG) {
    for (var sp = g; sp < ns; sp += DG) {
      acc += part[acc_at(h, sp) + d] * exp(part[stats_at(h, sp)].x - big);
    }
    sums[g * HD4 + d] = acc;
  }
  workgroupBarrier();
  if (lid < HD4) {
    var tot = vec4<f32>(0.0);
    for (var gg = 0u; gg < DG; gg++) { tot += sums[gg * HD4 + lid]; }
    out[h * HD4 + lid] = tot / l;
  }
}
#endif
#endif
