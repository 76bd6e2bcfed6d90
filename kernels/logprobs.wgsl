// Log probabilities of sampled tokens (OpenAI's logprobs / top_logprobs), on the GPU beside the
// sampler: log_softmax of the raw logits — before any penalty or temperature, as vLLM reports them
// by default — for the token the sampler chose, and the p.top most likely tokens with theirs.
// p.top is a parameter (≤ TOPN, the 0 or 20 the variant has room for), so a new top_logprobs
// value compiles nothing.
//
// Two entries, as the sampler's (kernels/sample.wgsl):
//   slice_pass — #if STAGE1, one workgroup per SLICE logits: the slice's max, Σ exp(x − max), and
//                its p.top largest (value, id), by p.top rounds of a workgroup argmax.
//   merge      — one workgroup: log Σ exp over the slices, the p.top largest of the slices',
//                and the record of ring entry w = state.step + ahead (dropped at or past capacity):
//                (chosen id, its logprob), then p.top × (id, logprob), most likely first; ties go to
//                the lower id. Logprobs are f32 bits in a u32 array.
// Taken entries are marked by their id (NONE), not their value, so any finite logit can win.
//
// #if ROWS: a prompt's logprobs (vLLM's prompt_logprobs, /v1/completions' echo) — the same two
// entries over a (rows, vocab) block of logits, row r scored for the prompt's next token:
// slice_pass runs (nslices, rows) workgroups, merge one a row, and record r takes the id at
// tokens[r + p.ahead] (tokens: the prompt's ids) rather than a ring entry's; no decode state.

#include decode_state

const NONE: u32 = 0xffffffffu;
// −∞ (a function: WGSL's const expressions must be finite).
fn neg_inf() -> f32 { return bitcast<f32>(0xff800000u); }
const SLICE: u32 = 1024u;
const WG: u32 = 256u;
const TOPN: u32 = {{TOPN}}u;  // room for this many alternatives (scratch, candidates)

var<workgroup> red_v: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

// Whether (v, i) beats (bv, bi): larger value, then lower id; NONE never wins.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

// The invocation's ids (the subgroup's #if SUBGROUPS), one struct for both entries.
struct Thread {
  @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_size) sg_size: u32,
  @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
}

var<private> lid_: u32;

#if SUBGROUPS
// The best of each subgroup (subgroupMax, then the lowest id holding it) in one of two buffers
// (rounds alternate, so one barrier a round keeps a round's reads apart from the next's writes),
// then every thread reduces the few subgroup bests itself. A barrier tree took 10 barriers a
// round: 100 µs for 20 rounds over Qwen's 149 slices on the H200 (2026-11-29), 7 % of a 2B step.
// Needs 4 ..= WG lanes a subgroup (kernels/logprobs.ts checks). NONE lanes offer −∞, so a real
// −∞ logit still beats them (subgroupMin then takes its id).
var<private> sg_size_: u32;
var<private> sg_lane_: u32;
var<private> round_: u32;
var<workgroup> sg_v: array<array<f32, WG / 4u>, 2>;  // subgroups have at least 4 lanes
var<workgroup> sg_i: array<array<u32, WG / 4u>, 2>;

fn wg_best(v: f32, i: u32) -> vec2<u32> {
  let vv = select(v, neg_inf(), i == NONE);
  let m = subgroupMax(vv);
  let id = subgroupMin(select(NONE, i, vv == m && i != NONE));
  let b = round_ % 2u;
  round_ += 1u;
  if (sg_lane_ == 0u) {
    sg_v[b][lid_ / sg_size_] = m;
    sg_i[b][lid_ / sg_size_] = id;
  }
  workgroupBarrier();
  var bv = 0.0;
  var bi = NONE;
  for (var g = 0u; g < WG / sg_size_; g++) {
    if (beats(sg_v[b][g], sg_i[b][g], bv, bi)) { bv = sg_v[b][g]; bi = sg_i[b][g]; }
  }
  return vec2<u32>(bitcast<u32>(bv), bi);
}
#else
// The workgroup's best (value, id) of one per thread, by a barrier tree; every thread gets it.
fn wg_best(v: f32, i: u32) -> vec2<u32> {
  workgroupBarrier();
  red_v[lid_] = v;
  red_i[lid_] = i;
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid_ < s && beats(red_v[lid_ + s], red_i[lid_ + s], red_v[lid_], red_i[lid_])) {
      red_v[lid_] = red_v[lid_ + s];
      red_i[lid_] = red_i[lid_ + s];
    }
  }
  workgroupBarrier();
  return vec2<u32>(bitcast<u32>(red_v[0]), red_i[0]);
}
#endif

// Σ of one f32 per thread over the workgroup (once a call: a barrier tree); every thread gets it.
fn wg_sum(v: f32) -> f32 {
  workgroupBarrier();
  red_v[lid_] = v;
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid_ < s) { red_v[lid_] += red_v[lid_ + s]; }
  }
  workgroupBarrier();
  return red_v[0];
}

// Sets the thread's ids for wg_best and wg_sum.
fn set_thread(t: Thread) {
  lid_ = t.lid;
#if SUBGROUPS
  sg_size_ = t.sg_size;
  sg_lane_ = t.sg_lane;
#endif
}

// Scratch, per slice: vec2(max, Σ exp(x − max)) as f32 bits, then TOPN × vec2(value bits, id).
const SREC: u32 = 1u + TOPN;

#if STAGE1
@group(0) @binding(0) var<storage, read> logits: array<f32>;               // (vocab) f32; #if ROWS (rows, vocab)
@group(0) @binding(1) var<storage, read_write> scratch: array<vec2<u32>>;  // ([rows,] nslices, SREC)
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// A thread's four logits, sorted (larger first, the lower id on ties), and the next to offer:
// each round compares one head a thread.
var<private> v4: vec4<f32>;
var<private> i4: vec4<u32>;  // their ids; NONE past the vocabulary
var<private> next4: u32;

// Orders entries a and b of the thread's four.
fn order(a: u32, b: u32) {
  if (beats(v4[b], i4[b], v4[a], i4[a])) {
    let tv = v4[a];
    let ti = i4[a];
    v4[a] = v4[b];
    i4[a] = i4[b];
    v4[b] = tv;
    i4[b] = ti;
  }
}

@compute @workgroup_size(WG)
fn slice_pass(@builtin(workgroup_id) wid: vec3<u32>, t: Thread) {
  set_thread(t);
  let lid = t.lid;
  let base = wid.x * SLICE;
#if ROWS
  let lo = wid.y * p.vocab;    // this row's logits
  let so = wid.y * p.nslices;  // and its slices' scratch records
#else
  let lo = 0u;
  let so = 0u;
#endif
  for (var c = 0u; c < 4u; c++) {
    let i = base + lid * 4u + c;
    v4[c] = select(0.0, logits[lo + min(i, p.vocab - 1u)], i < p.vocab);
    i4[c] = select(NONE, i, i < p.vocab);
  }
  // A sorting network of four.
  order(0u, 1u);
  order(2u, 3u);
  order(0u, 2u);
  order(1u, 3u);
  order(1u, 2u);
  let top = wg_best(v4.x, i4.x);
  let mx = bitcast<f32>(top.x);
  // A slice of −∞ logits only has Σ exp = 0 (exp(−∞ − −∞) would be NaN, and every logprob with it).
  let some = mx > neg_inf();
  var z = 0.0;
  for (var c = 0u; c < 4u; c++) { z += select(0.0, exp(v4[c] - mx), i4[c] != NONE && some); }
  let zs = wg_sum(z);
  if (lid == 0u) { scratch[(so + wid.x) * SREC] = vec2<u32>(top.x, bitcast<u32>(zs)); }
  // p.top rounds, each taking the best head, whose thread moves on to its next; the first round's
  // is the max found above.
  if (p.top > 0u) {
    if (top.y != NONE && top.y == i4.x) { next4 = 1u; }
    if (lid == 0u) { scratch[(so + wid.x) * SREC + 1u] = top; }
  }
  for (var r = 1u; r < p.top; r++) {
    let h = min(next4, 3u);
    let b = wg_best(v4[h], select(NONE, i4[h], next4 < 4u));
    if (b.y != NONE && next4 < 4u && b.y == i4[h]) { next4 += 1u; }
    if (lid == 0u) { scratch[(so + wid.x) * SREC + 1u + r] = b; }
  }
}
#else
@group(0) @binding(0) var<storage, read> logits: array<f32>;             // (vocab) f32; #if ROWS (rows, vocab)
@group(0) @binding(1) var<storage, read> scratch: array<vec2<u32>>;      // ([rows,] nslices, SREC)
#if ROWS
@group(0) @binding(2) var<storage, read> tokens: array<u32>;             // (p.ahead + rows) u32 prompt ids
@group(0) @binding(3) var<storage, read_write> out: array<vec2<u32>>;    // (rows, 1 + p.top)
#else
@group(0) @binding(2) var<storage, read> state: DecodeState;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;             // (capacity) u32 token ring
@group(0) @binding(4) var<storage, read_write> out: array<vec2<u32>>;    // (capacity, 1 + p.top)
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// The slices' candidates, p.top a slice in its order (larger first, the lower id on ties: the order
// of the answer), and each slice's next one: a round compares the slices' heads only.
var<workgroup> cand_v: array<f32, {{CANDIDATES}}>;
var<workgroup> cand_i: array<u32, {{CANDIDATES}}>;
var<workgroup> head: array<u32, {{SLICES}}>;

@compute @workgroup_size(WG)
fn merge(t: Thread, @builtin(workgroup_id) wid: vec3<u32>) {
  set_thread(t);
  let lid = t.lid;
#if ROWS
  let w = wid.x;
#else
  let w = state.step + p.ahead;
#endif
  if (w >= p.capacity) { return; }  // uniform: every thread returns
#if ROWS
  let lo = w * p.vocab;  // the row's logits and its slices' records
  let so = w * p.nslices;
  let id = tokens[w + p.ahead];
#else
  let lo = 0u;
  let so = 0u;
  let id = tokens[w];
#endif
  // log Σ exp over the slices: M = max of the slice maxima, Z = Σ z_s · exp(m_s − M).
  var m = -3.4028235e38;
  for (var s = lid; s < p.nslices; s += WG) { m = max(m, bitcast<f32>(scratch[(so + s) * SREC].x)); }
  let mm = wg_best(m, lid);
  let big = bitcast<f32>(mm.x);
  var z = 0.0;
  for (var s = lid; s < p.nslices; s += WG) {
    let e = scratch[(so + s) * SREC];
    z += select(0.0, bitcast<f32>(e.y) * exp(bitcast<f32>(e.x) - big), bitcast<f32>(e.y) > 0.0);
  }
  let lse = big + log(wg_sum(z));
  let rec = w * (1u + p.top);
  if (lid == 0u) {
    out[rec] = vec2<u32>(id, bitcast<u32>(logits[lo + min(id, p.vocab - 1u)] - lse));
  }
  let n = p.nslices * p.top;
  for (var c = lid; c < n; c += WG) {
    let e = scratch[(so + c / p.top) * SREC + 1u + c % p.top];
    cand_v[c] = bitcast<f32>(e.x);
    cand_i[c] = e.y;
  }
  for (var l = lid; l < p.nslices; l += WG) { head[l] = 0u; }
  workgroupBarrier();
  for (var r = 0u; r < p.top; r++) {
    var bv = 0.0;
    var bi = NONE;
    var bl = 0u;  // the slice of this thread's best head
    for (var l = lid; l < p.nslices; l += WG) {
      let h = head[l];
      if (h < p.top && beats(cand_v[l * p.top + h], cand_i[l * p.top + h], bv, bi)) {
        bv = cand_v[l * p.top + h];
        bi = cand_i[l * p.top + h];
        bl = l;
      }
    }
    // Ids are unique: the thread holding the winner moves its slice's head on (slices are owned
    // by thread, so no other thread reads that head).
    let b = wg_best(bv, bi);
    if (lid == 0u) { out[rec + 1u + r] = vec2<u32>(b.y, bitcast<u32>(bitcast<f32>(b.x) - lse)); }
    if (b.y != NONE && bi == b.y) { head[bl] += 1u; }
  }
}
#endif
