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

// Register tiling: thread (rg, dg) of RG × DGRP owns TQ = BQ / RG consecutive query rows. For
// the scores it computes those rows against keys dg, dg + DGRP, ... of the tile (TK of them);
// for the output it accumulates those rows over vec4 columns dg, dg + DGRP, ... (TD of them).
// Interleaved columns and a padded K/V row stride keep workgroup-memory reads free of bank
// conflicts; the micro-tiles reuse each loaded vec4 several times.
const BQ: u32 = {{BQ}}u;        // queries per workgroup
const BK: u32 = {{BK}}u;        // keys per tile
const DGRP: u32 = {{DGRP}}u;    // threads sharing a row group
const WG: u32 = 128u;
const RG: u32 = WG / DGRP;      // row groups
const TQ: u32 = BQ / RG;        // rows per thread
const TK: u32 = BK / DGRP;      // keys per thread in the scores
const TD: u32 = HD4 / DGRP;     // vec4 output columns per thread
const KS: u32 = HD4 + 1u;       // padded row stride of the K/V tile (vec4)

var<workgroup> qs: array<vec4<f32>, BQ * HD4>;   // (BQ, HD) scaled queries
var<workgroup> kvs: array<vec4<f32>, BK * KS>;   // (BK, HD) the K tile, then the V tile
var<workgroup> ps: array<f32, BQ * BK>;          // (BQ, BK) raw scores, then probabilities

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

// Loads keys kb..kb+BK-1 of `which` (0: K, 1: V) into kvs; rows at or past hi read as 0.
fn load_tile(which: u32, kb: u32, hi: u32, kvh: u32, lid: u32) {
  for (var idx = lid; idx < BK * HD4; idx += WG) {
    let j = idx / HD4;
    let c = idx % HD4;
    let key = kb + j;
    var val = vec4<f32>(0.0);
    if (key < hi) {
      if (which == 0u) {
        val = k[key * p.k_stride + p.k_off + kvh * HD4 + c];
      } else {
        val = v[key * p.v_stride + p.v_off + kvh * HD4 + c];
      }
    }
    kvs[j * KS + c] = val;
  }
}

@compute @workgroup_size(WG)
fn prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q0 = wid.x * BQ;
  let h = wid.y;
  let kvh = h / p.group;
  let rg = lid / DGRP;
  let dg = lid % DGRP;
  let r0 = rg * TQ;            // first row (in the tile) of this thread
  let last = min(q0 + BQ, p.seq) - 1u;

  for (var idx = lid; idx < BQ * HD4; idx += WG) {
    let row = q0 + idx / HD4;
    var val = vec4<f32>(0.0);
    if (row < p.seq) { val = q[row * p.q_stride + p.q_off + h * HD4 + idx % HD4] * p.scale; }
    qs[idx] = val;
  }
  // Rows are consecutive and both range ends grow with i: the tile needs [lo(first), hi(last)).
  let lo_t = key_range(q0).x;
  let hi_t = key_range(last).y;
  var lo: array<u32, TQ>;
  var hi: array<u32, TQ>;
  var m: array<f32, TQ>;
  var l: array<f32, TQ>;      // this thread's share of the row sums (its keys only)
  var acc: array<vec4<f32>, TQ * TD>;
  for (var i = 0u; i < TQ; i++) {
    let kr = key_range(min(q0 + r0 + i, last));
    lo[i] = kr.x;
    hi[i] = kr.y;
    m[i] = NEG;
    l[i] = 0.0;
    for (var c = 0u; c < TD; c++) { acc[i * TD + c] = vec4<f32>(0.0); }
  }

  for (var kb = lo_t; kb < hi_t; kb += BK) {
    workgroupBarrier();               // the previous V tile is used up (first pass: qs written)
    load_tile(0u, kb, hi_t, kvh, lid);
    workgroupBarrier();
    var s: array<f32, TQ * TK>;
    for (var i = 0u; i < TQ * TK; i++) { s[i] = 0.0; }
    for (var c = 0u; c < HD4; c++) {
      var kk: array<vec4<f32>, TK>;
      for (var t = 0u; t < TK; t++) { kk[t] = kvs[(dg + t * DGRP) * KS + c]; }
      for (var i = 0u; i < TQ; i++) {
        let qq = qs[(r0 + i) * HD4 + c];
        for (var t = 0u; t < TK; t++) { s[i * TK + t] += dot(qq, kk[t]); }
      }
    }
    for (var i = 0u; i < TQ; i++) {
      for (var t = 0u; t < TK; t++) {
        let key = kb + dg + t * DGRP;
        if (key < lo[i] || key >= hi[i]) { s[i * TK + t] = NEG; }
        ps[(r0 + i) * BK + dg + t * DGRP] = s[i * TK + t];
      }
    }
    workgroupBarrier();
    // Row maxima from every thread's scores; the K tile is no longer read, so V replaces it.
    var alpha: array<f32, TQ>;
    for (var i = 0u; i < TQ; i++) {
      var mx = m[i];
      for (var j = 0u; j < BK; j++) { mx = max(mx, ps[(r0 + i) * BK + j]); }
      alpha[i] = exp(m[i] - mx);
      m[i] = mx;
      l[i] *= alpha[i];
      for (var t = 0u; t < TK; t++) {
        let e = select(0.0, exp(s[i * TK + t] - mx), s[i * TK + t] > NEG);
        s[i * TK + t] = e;
        l[i] += e;
      }
    }
    load_tile(1u, kb, hi_t, kvh, lid);
    workgroupBarrier();               // all raw scores read: overwrite them with probabilities
    for (var i = 0u; i < TQ; i++) {
      for (var t = 0u; t < TK; t++) { ps[(r0 + i) * BK + dg + t * DGRP] = s[i * TK + t]; }
    }
    workgroupBarrier();
    for (var i = 0u; i < TQ; i++) {
      for (var c = 0u; c < TD; c++) { acc[i * TD + c] *= alpha[i]; }
    }
    for (var j = 0u; j < BK; j++) {
      var vv: array<vec4<f32>, TD>;
      for (var c = 0u; c < TD; c++) { vv[c] = kvs[j * KS + dg + c * DGRP]; }
      for (var i = 0u; i < TQ; i++) {
        let pj = ps[(r0 + i) * BK + j];
        for (var c = 0u; c < TD; c++) { acc[i * TD + c] += pj * vv[c]; }
      }
    }
  }

  // Row sums: add the DGRP threads' shares through ps (free now), then normalise and write.
  workgroupBarrier();
  for (var i = 0u; i < TQ; i++) { ps[(r0 + i) * BK + dg] = l[i]; }
  workgroupBarrier();
  for (var i = 0u; i < TQ; i++) {
    let row = q0 + r0 + i;
    if (row < p.seq) {
      var tot = 0.0;
      for (var g = 0u; g < DGRP; g++) { tot += ps[(r0 + i) * BK + g]; }
      let inv = 1.0 / tot;
      for (var c = 0u; c < TD; c++) {
        out[row * p.heads * HD4 + h * HD4 + dg + c * DGRP] = acc[i * TD + c] * inv;
      }
    }
  }
}
#endif

#if DECODE
// ---------------------------------------------------------------------------------------------
// Flash-decoding: the keys 0..n-1 (n = cache_len + 1) are cut into p.nsplit splits of `len` keys
// (a multiple of CHUNK, so short contexts use few splits); each workgroup walks its split CHUNK
// keys at a time with an online softmax and writes unnormalised partials, which decode_combine
// merges. Workgroup memory stays small: WebGPU zero-fills it for every workgroup, idle ones too.
const CHUNK: u32 = 128u;        // keys per step; also the workgroup size (one key per thread)
const WG: u32 = CHUNK;
const GROUP: u32 = {{GROUP}}u;  // query heads per workgroup, all on one KV head
const DG: u32 = WG / HD4;       // key groups in Σ p·v (threads = DG · HD4 ≤ WG)

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

// Scratch, in vec4 units: acc (heads, nsplit, DG, HD4) unnormalised Σ p·v of each split and key
// group, then stats (heads, nsplit) as vec4(m, l, 0, 0): the split's max score and Σ exp(s − m).
fn acc_at(h: u32, sp: u32, g: u32) -> u32 { return ((h * p.nsplit + sp) * DG + g) * HD4; }
fn stats_at(h: u32, sp: u32) -> u32 { return p.heads * p.nsplit * DG * HD4 + h * p.nsplit + sp; }
// Keys per split for a context of n keys: the same in both entries.
fn split_len(n: u32) -> u32 {
  let per = (n + p.nsplit - 1u) / p.nsplit;
  return (per + CHUNK - 1u) / CHUNK * CHUNK;
}

#if PART
var<workgroup> qs: array<vec4<f32>, GROUP * HD4>;    // (GROUP, HD) scaled queries
var<workgroup> ps: array<f32, GROUP * CHUNK>;        // (GROUP, CHUNK) probabilities of this step
var<workgroup> red: array<f32, GROUP * WG>;          // (GROUP, WG) reduction scratch

// Tree reduction of red[r][*] for every r at once; results in red[r][0].
fn reduce_rows(lid: u32, is_max: bool) {
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) {
      for (var r = 0u; r < GROUP; r++) {
        let a = red[r * WG + lid];
        let b = red[r * WG + lid + s];
        red[r * WG + lid] = select(a + b, max(a, b), is_max);
      }
    }
  }
  workgroupBarrier();
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
  workgroupBarrier();

  let g = lid / HD4;          // Σ p·v: thread (g, d) sums keys g, g + DG, ... of column d
  let d = lid % HD4;
  var m: array<f32, GROUP>;   // running max per head (the same in every thread)
  var l: array<f32, GROUP>;   // this thread's share of Σ exp(s − m)
  var acc: array<vec4<f32>, GROUP>;
  for (var r = 0u; r < GROUP; r++) { m[r] = NEG; l[r] = 0.0; acc[r] = vec4<f32>(0.0); }

  for (var c0 = start; c0 < end; c0 += CHUNK) {
    // Scores of key c0 + lid for all GROUP heads, its K row read once.
    let key = c0 + lid;
    var s: array<f32, GROUP>;
    for (var r = 0u; r < GROUP; r++) { s[r] = NEG; }
    if (key < end) {
      for (var r = 0u; r < GROUP; r++) { s[r] = 0.0; }
      let kbase = key * p.k_stride + p.k_off + kvh * HD4;
      for (var dd = 0u; dd < HD4; dd++) {
        let kv = k[kbase + dd];
        for (var r = 0u; r < GROUP; r++) { s[r] += dot(qs[r * HD4 + dd], kv); }
      }
    }
    for (var r = 0u; r < GROUP; r++) { red[r * WG + lid] = s[r]; }
    reduce_rows(lid, true);
    var alpha: array<f32, GROUP>;
    for (var r = 0u; r < GROUP; r++) {
      let mx = max(m[r], red[r * WG]);
      alpha[r] = exp(m[r] - mx);
      m[r] = mx;
      var pr = 0.0;
      if (key < end) { pr = exp(s[r] - mx); }
      ps[r * CHUNK + lid] = pr;
      l[r] = l[r] * alpha[r] + pr;
    }
    workgroupBarrier();
    if (g < DG) {
      for (var r = 0u; r < GROUP; r++) { acc[r] *= alpha[r]; }
      let kend = min(CHUNK, end - c0);
      for (var j = g; j < kend; j += DG) {
        let vv = v[(c0 + j) * p.v_stride + p.v_off + kvh * HD4 + d];
        for (var r = 0u; r < GROUP; r++) { acc[r] += ps[r * CHUNK + j] * vv; }
      }
    }
    workgroupBarrier();   // ps and red are rewritten by the next step
  }

  if (g < DG) {
    for (var r = 0u; r < GROUP; r++) { part[acc_at(h0 + r, split, g) + d] = acc[r]; }
  }
  for (var r = 0u; r < GROUP; r++) { red[r * WG + lid] = l[r]; }
  reduce_rows(lid, false);
  if (lid < GROUP) {
    part[stats_at(h0 + lid, split)] = vec4<f32>(m[lid], red[lid * WG], 0.0, 0.0);
  }
}
#else
@compute @workgroup_size(64)
fn decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let n = state.cache_len + 1u;
  let len = split_len(n);
  let ns = min((n + len - 1u) / len, p.nsplit);
  var big = NEG;
  for (var sp = 0u; sp < ns; sp++) { big = max(big, part[stats_at(h, sp)].x); }
  var l = 0.0;
  for (var sp = 0u; sp < ns; sp++) {
    let st = part[stats_at(h, sp)];
    l += st.y * exp(st.x - big);
  }
  for (var dd = lid; dd < HD4; dd += 64u) {
    var acc = vec4<f32>(0.0);
    for (var sp = 0u; sp < ns; sp++) {
      var a = vec4<f32>(0.0);
      for (var g = 0u; g < DG; g++) { a += part[acc_at(h, sp, g) + dd]; }
      acc += a * exp(part[stats_at(h, sp)].x - big);
    }
    out[h * HD4 + dd] = acc / l;
  }
}
#endif
#endif
