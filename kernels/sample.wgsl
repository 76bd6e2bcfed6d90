// Token sampling on the GPU, no readback: transformers' order — repetition penalty (logits
// processor), then temperature → top-k → top-p → min-p (warpers) — then a draw from a counter-based RNG
// keyed by (seed, ring index). Greedy = argmax with the lowest index winning ties (torch.argmax).
// vLLM's min_tokens bans the stop ids (`stops`) while fewer than min_tokens tokens were generated;
// #if MASK, a responseFormat (JSON mode, a schema…) bans every token its grammar does not allow
// (`allowed`) the same way.
// OpenAI's logit_bias is added to the logits first, and its frequency and presence penalties,
// which transformers lacks, come after the repetition penalty and before the temperature, over
// the generated tokens only — the order vLLM applies them in: s − frequency · count − presence ·
// (count > 0).
//
// Two entries:
//   scores_pass — #if STAGE1, many workgroups, one slice of SLICE tokens each: processed scores
//                 (penalty from the slice's bits of the history, temperature) into `proc`, and the
//                 slice's max, lowest argmax and Σ exp(s − slice max).
//   pick        — one workgroup: merges the slices; greedy (or top_k 1) ends there. Otherwise it
//                 finds the top-k / top-p thresholds and draws.
//
// Token ring convention (kernels/state.wgsl): the call writes ring index w = state.step + ahead
// (ahead = 0 for the sampler after prefill, 1 in a decode step); the history for the repetition
// penalty is the prompt ids plus tokens[0..w).
//
// Thresholds compare key(s), the order-preserving u32 image of an f32 score:
//   top-k: τ_k = the k-th largest key; every token with key ≥ τ_k stays (ties at the k-th all
//          kept, like transformers' `scores < topk(scores, k)[0][-1]` removal).
//   top-p: τ_p = the smallest t with mass{key > t} < top_p (bisection over keys): the token at which
//          the descending cumulative probability first reaches top_p is kept with everything above
//          it, as transformers' ascending `cumsum <= 1 - top_p` removal that keeps ≥ 1 token.
//   min-p: τ_m = key(max + ln min_p): transformers' MinPLogitsWarper keeps p ≥ min_p · p_max over
//          what top-k / top-p left, whose max is the overall max, so it is one more lower bound.
// The tokens that can be drawn at all — within CUT of the max (the rest weigh < e^-30 each) and,
// for top-p alone, above its lower bound — are compacted in draw order into workgroup memory when
// they fit (CAP), and the thresholds and the draw run there; else on passes over `proc`.
// Draw order: thread l of `pick` owns tokens 4j..4j+3 for j = l, l + WG, ...; threads in turn
// (src/ref/sample.ts drawInKernelOrder replays it).
// Ties: greedy and top_k 1 take the lowest id (torch.argmax); top-k and top-p keep every token tied
// with the last one they keep (transformers' sort leaves which of them in no set order).
//
// No token: where a logit is NaN or +∞ (damaged weights, an f16 overflow: there is no distribution
// to draw from) the entry is NOT_FINITE, and where every token is masked or −∞ it is NO_TOKEN —
// ids past the vocabulary, which the host reads back with the tokens anyway (src/generate/
// decode_stream.ts fails the answer, naming which), so the check costs no readback of its own.

#include decode_state
// Layout: kernels/sample.ts writeSamplingParams; written once per request.
struct Sampling {
  temperature: f32,
  top_k: u32,          // 0: off
  top_p: f32,          // ≥ 1: off
  penalty: f32,        // repetition_penalty; 1: off
  seed_lo: u32,
  seed_hi: u32,
  greedy: u32,         // 1: argmax (do_sample false or temperature 0)
  prompt_len: u32,     // ids in `prompt` used for the penalty
  frequency: f32,      // frequency_penalty, a generated token's count times it; 0: off
  presence: f32,       // presence_penalty, once for every generated token; 0: off
  bias_count: u32,     // logit_bias entries in `biases`
  min_p: f32,          // 0: off
  biases: array<vec2<u32>, {{MAX_BIAS}}>,  // (token id, bias as f32 bits), ids distinct
  min_tokens: u32,     // the stop ids cannot be drawn at ring entries below it; 0: off
  stop_count: u32,     // ids in `stops`
  stops: array<u32, {{MAX_STOPS}}>,        // the stop ids min_tokens holds back
}

const NONE: u32 = 0xffffffffu;
const NO_TOKEN: u32 = 0xffffffffu;   // written where nothing can be drawn (kernels/sample.ts)
const NOT_FINITE: u32 = 0xfffffffeu; // written where a logit is NaN or +∞
const LOWEST: f32 = -3.4028235e38;
const SLICE: u32 = 1024u;         // tokens per scores_pass workgroup (one vec4 per thread)

// Scratch (vec4 units): proc (nvec = nslices · SLICE / 4) processed scores, padded with LOWEST;
// then one vec4(max, bitcast(argmax), Σ exp(s − max), 1 if a logit is NaN or +∞ else 0) per slice.

#if STAGE1
@group(0) @binding(0) var<storage, read> logits: array<f32>;       // (vocab) f32
@group(0) @binding(1) var<storage, read> prompt: array<u32>;       // (≥ prompt_len) u32 prompt ids
@group(0) @binding(2) var<storage, read> sp: Sampling;
@group(0) @binding(3) var<storage, read> state: DecodeState;
@group(0) @binding(4) var<storage, read> tokens: array<u32>;       // (capacity) u32 token ring
@group(0) @binding(5) var<storage, read_write> scratch: array<vec4<f32>>;
#if MASK
// A responseFormat's grammar (kernels/grammar.wgsl mask): bit i set when token i may come next.
@group(0) @binding(6) var<storage, read> allowed: array<u32>;      // (ceil(vocab / 32)) u32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = SLICE / 4u;
var<workgroup> seen: array<atomic<u32>, SLICE / 32u>;   // bit i: token base + i is in the history
var<workgroup> counts: array<atomic<u32>, SLICE>;      // generated occurrences of token base + i
var<workgroup> bias: array<f32, SLICE>;                // logit_bias of token base + i (0: none)
var<workgroup> banned: array<atomic<u32>, SLICE / 32u>; // bit i: token base + i held back (min_tokens)
var<workgroup> red: array<f32, WG>;
var<workgroup> redi: array<u32, WG>;
var<workgroup> nonfinite: atomic<u32>;                  // 1: a logit of the slice is NaN or +∞

fn mark(id: u32, base: u32) {
  if (id >= base && id < base + SLICE) { atomicOr(&seen[(id - base) >> 5u], 1u << ((id - base) & 31u)); }
}

@compute @workgroup_size(WG)
fn scores_pass(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = state.step + p.ahead;
  let base = wid.x * SLICE;
  if (sp.penalty != 1.0) {
    for (var i = lid; i < sp.prompt_len; i += WG) { mark(prompt[i], base); }
    for (var i = lid; i < min(w, p.capacity); i += WG) { mark(tokens[i], base); }
  }
  for (var i = lid; i < sp.bias_count; i += WG) {
    let e = sp.biases[i];
    if (e.x >= base && e.x < base + SLICE) { bias[e.x - base] = bitcast<f32>(e.y); }
  }
  if (w < sp.min_tokens) {
    for (var i = lid; i < sp.stop_count; i += WG) {
      let id = sp.stops[i];
      if (id >= base && id < base + SLICE) {
        atomicOr(&banned[(id - base) >> 5u], 1u << ((id - base) & 31u));
      }
    }
  }
  let counted = sp.frequency != 0.0 || sp.presence != 0.0;
  if (counted) {
    for (var i = lid; i < min(w, p.capacity); i += WG) {
      let id = tokens[i];
      if (id >= base && id < base + SLICE) { atomicAdd(&counts[id - base], 1u); }
    }
  }
  workgroupBarrier();
  let t = select(sp.temperature, 1.0, sp.greedy != 0u);
  var s4 = vec4<f32>(LOWEST);
  var best = LOWEST;
  var besti = NONE;
  for (var c = 0u; c < 4u; c++) {
    let i = base + lid * 4u + c;
    if (i < p.vocab) {
      let raw = logits[i];
      // NaN or +∞, told by its bits (arithmetic may assume NaN away); −∞ is a token never drawn.
      let rb = bitcast<u32>(raw);
      if ((rb & 0x7fffffffu) >= 0x7f800000u && rb != 0xff800000u) { atomicStore(&nonfinite, 1u); }
      var x = raw + bias[lid * 4u + c];
      if ((atomicLoad(&seen[(lid * 4u + c) >> 5u]) & (1u << ((lid * 4u + c) & 31u))) != 0u) {
        x = select(x / sp.penalty, x * sp.penalty, x < 0.0);
      }
      if (counted) {
        let n = atomicLoad(&counts[lid * 4u + c]);
        x = x - sp.frequency * f32(n);
        x = x - select(0.0, sp.presence, n > 0u);
      }
      x = x / t;
      // Held back by min_tokens: scored as the padding past the vocabulary is, never drawn.
      if ((atomicLoad(&banned[(lid * 4u + c) >> 5u]) & (1u << ((lid * 4u + c) & 31u))) != 0u) {
        x = LOWEST;
      }
#if MASK
      if (((allowed[i >> 5u] >> (i & 31u)) & 1u) == 0u) { x = LOWEST; }
#endif
      s4[c] = x;
      if (x > best || besti == NONE) { best = x; besti = i; }
    }
  }
  scratch[base / 4u + lid] = s4;
  // Slice max and its lowest index.
  red[lid] = best;
  redi[lid] = besti;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) {
      let ov = red[lid + s];
      let oi = redi[lid + s];
      if (ov > red[lid] || (ov == red[lid] && oi < redi[lid])) { red[lid] = ov; redi[lid] = oi; }
    }
  }
  let mx = workgroupUniformLoad(&red[0]);
  let arg = redi[0];
  var z = 0.0;
  for (var c = 0u; c < 4u; c++) { z += exp(s4[c] - mx); }
  workgroupBarrier();
  red[lid] = z;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) { red[lid] += red[lid + s]; }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let flag = f32(atomicLoad(&nonfinite));
    scratch[p.nvec + wid.x] = vec4<f32>(mx, bitcast<f32>(arg), red[0], flag);
  }
}
#else
@group(0) @binding(0) var<storage, read> sp: Sampling;
@group(0) @binding(1) var<storage, read> state: DecodeState;
@group(0) @binding(2) var<storage, read_write> tokens: array<u32>;  // (capacity) u32 token ring
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;  // (capacity) f32 max processed score
@group(0) @binding(4) var<storage, read> scratch: array<vec4<f32>>;
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = {{WG}}u;
const CAP: u32 = {{CAP}}u;        // candidate slots
const CUT: f32 = 30.0;            // candidates: score ≥ max − CUT

var<workgroup> red: array<u32, WG>;              // reductions and scans (f32 as bits)
var<workgroup> hist: array<atomic<u32>, 256>;    // radix-select digit histogram
var<workgroup> cand_i: array<u32, CAP>;          // compacted candidates, in draw order
var<workgroup> cand_s: array<f32, CAP>;
var<workgroup> pick_at: atomic<u32>;
var<workgroup> shared_u: u32;

fn key(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

const SUM: u32 = 0u;
const MAX: u32 = 1u;
const MIN_U: u32 = 2u;
fn combine(a: u32, b: u32, op: u32) -> u32 {
  switch op {
    case 0u: { return bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b)); }
    case 1u: { return bitcast<u32>(max(bitcast<f32>(a), bitcast<f32>(b))); }
    default: { return min(a, b); }
  }
}
// Reduces one u32 per thread (f32 as bits for SUM/MAX); every thread gets the result.
fn wg_reduce(v: u32, lid: u32, op: u32) -> u32 {
  workgroupBarrier();
  red[lid] = v;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) { red[lid] = combine(red[lid], red[lid + s], op); }
  }
  return workgroupUniformLoad(&red[0]);
}
fn wg_sum(v: f32, lid: u32) -> f32 { return bitcast<f32>(wg_reduce(bitcast<u32>(v), lid, SUM)); }

// Inclusive prefix sum of one f32 per thread (Hillis–Steele); returns this thread's and the total.
fn wg_scan(v: f32, lid: u32) -> vec2<f32> {
  workgroupBarrier();
  red[lid] = bitcast<u32>(v);
  for (var s = 1u; s < WG; s = s << 1u) {
    workgroupBarrier();
    var add = 0.0;
    if (lid >= s) { add = bitcast<f32>(red[lid - s]); }
    workgroupBarrier();
    red[lid] = bitcast<u32>(bitcast<f32>(red[lid]) + add);
  }
  workgroupBarrier();
  return vec2<f32>(bitcast<f32>(red[lid]), bitcast<f32>(workgroupUniformLoad(&red[WG - 1u])));
}

// Counter-based RNG (lowbias32 rounds): uniform in [0, 1) from (seed, index).
fn mix(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u; x *= 0x7feb352du;
  x ^= x >> 15u; x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}
fn uniform01(index: u32) -> f32 {
  let h = mix(sp.seed_lo ^ mix(sp.seed_hi ^ mix(index ^ 0x9e3779b9u)));
  return f32(h >> 8u) * (1.0 / 16777216.0);
}

// Passes over proc: thread l takes vec4s l, l + WG, l + 2·WG, ... (the draw order), four per
// iteration, all four loaded before any is used so that their memory latencies overlap.
// proc vec4 j, LOWEST past the end.
fn ld(j: u32) -> vec4<f32> { return select(vec4<f32>(LOWEST), scratch[min(j, p.nvec - 1u)], j < p.nvec); }

// Σ exp(s − mx) over the scores with key ≥ lo and key > above (NONE: no upper test).
fn mass1(x: f32, lo: u32, above: u32, mx: f32) -> f32 {
  let k = key(x);
  return select(0.0, exp(x - mx), k >= lo && (above == NONE || k > above));
}
fn mass4(s4: vec4<f32>, lo: u32, above: u32, mx: f32) -> f32 {
  return mass1(s4.x, lo, above, mx) + mass1(s4.y, lo, above, mx) + mass1(s4.z, lo, above, mx) +
    mass1(s4.w, lo, above, mx);
}
fn count4(s4: vec4<f32>, floor_key: u32) -> u32 {
  return select(0u, 1u, key(s4.x) >= floor_key) + select(0u, 1u, key(s4.y) >= floor_key) +
    select(0u, 1u, key(s4.z) >= floor_key) + select(0u, 1u, key(s4.w) >= floor_key);
}
// Appends vec4 j's candidates at `at`; returns the next free slot.
fn compact4(s4: vec4<f32>, j: u32, floor_key: u32, at0: u32) -> u32 {
  var at = at0;
  for (var c = 0u; c < 4u; c++) {
    if (key(s4[c]) >= floor_key) { cand_i[at] = 4u * j + c; cand_s[at] = s4[c]; at += 1u; }
  }
  return at;
}
// Radix-select histogram of vec4 j's tokens whose higher digits match the prefix.
fn hist4(s4: vec4<f32>, j: u32, digit: u32, shift: u32, prefix: u32) {
  for (var c = 0u; c < 4u; c++) {
    let kk = key(s4[c]);
    if (4u * j + c < p.vocab && (digit == 0u || (kk >> (shift + 8u)) == (prefix >> (shift + 8u)))) {
      atomicAdd(&hist[(kk >> shift) & 255u], 1u);
    }
  }
}

// Mass Σ exp(s − mx) of this thread's tokens with key ≥ lo and key > above (NONE: no upper test).
fn own_mass(lid: u32, use_cand: bool, n_cand: u32, lo: u32, above: u32, mx: f32) -> f32 {
  var m = 0.0;
  if (use_cand) {
    for (var j = lid; j < n_cand; j += WG) { m += mass1(cand_s[j], lo, above, mx); }
  } else {
    for (var j = lid; j < p.nvec; j += 4u * WG) {
      let a = ld(j);
      let b = ld(j + WG);
      let c = ld(j + 2u * WG);
      let d = ld(j + 3u * WG);
      m += mass4(a, lo, above, mx) + mass4(b, lo, above, mx) + mass4(c, lo, above, mx) + mass4(d, lo, above, mx);
    }
  }
  return m;
}

// The k-th largest key: radix select (most significant digit first) over the candidates or proc.
fn kth_largest(k: u32, lid: u32, use_cand: bool, n_cand: u32) -> u32 {
  var prefix = 0u;
  var remaining = k;
  for (var digit = 0u; digit < 4u; digit++) {
    let shift = 24u - 8u * digit;
    workgroupBarrier();
    for (var b = lid; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    if (use_cand) {
      for (var j = lid; j < n_cand; j += WG) {
        let kk = key(cand_s[j]);
        if (digit == 0u || (kk >> (shift + 8u)) == (prefix >> (shift + 8u))) {
          atomicAdd(&hist[(kk >> shift) & 255u], 1u);
        }
      }
    } else {
      for (var j = lid; j < p.nvec; j += 4u * WG) {
        let a = ld(j);
        let b = ld(j + WG);
        let c = ld(j + 2u * WG);
        let d = ld(j + 3u * WG);
        hist4(a, j, digit, shift, prefix);
        hist4(b, j + WG, digit, shift, prefix);
        hist4(c, j + 2u * WG, digit, shift, prefix);
        hist4(d, j + 3u * WG, digit, shift, prefix);
      }
    }
    workgroupBarrier();
    if (lid == 0u) {
      var cum = 0u;
      var d = 255u;
      loop {
        let c = atomicLoad(&hist[d]);
        if (cum + c >= remaining || d == 0u) { break; }
        cum += c;
        d -= 1u;
      }
      shared_u = d | ((remaining - cum) << 8u);
    }
    let r = workgroupUniformLoad(&shared_u);
    prefix |= (r & 255u) << shift;
    remaining = r >> 8u;
  }
  return prefix;
}

@compute @workgroup_size(WG)
fn pick(@builtin(local_invocation_index) lid: u32) {
  let w = state.step + p.ahead;
  if (w >= p.capacity) { return; }   // ring full: never write past it
  if (lid == 0u) { atomicStore(&pick_at, 0u); }

  // Merge the slices: max, its lowest index, and z = Σ exp(s − max) over all tokens.
  var sl = vec4<f32>(LOWEST, bitcast<f32>(NONE), 0.0, 0.0);
  if (lid < p.nslices) { sl = scratch[p.nvec + lid]; }
  let mx = bitcast<f32>(wg_reduce(bitcast<u32>(sl.x), lid, MAX));
  let argmax = wg_reduce(select(NONE, bitcast<u32>(sl.y), sl.x == mx), lid, MIN_U);
  let z_all = wg_sum(sl.z * exp(sl.x - mx), lid);
  let nan_or_inf = wg_sum(sl.w, lid) > 0.0;
  // Nothing to draw from: a NaN / +∞ logit, or every score masked (LOWEST) or −∞.
  if (nan_or_inf || !(mx > LOWEST)) {
    if (lid == 0u) { tokens[w] = select(NO_TOKEN, NOT_FINITE, nan_or_inf); scores[w] = mx; }
    return;
  }
  if (sp.greedy != 0u || sp.top_k == 1u) {
    // top_k 1 keeps only the maximum (ties aside: it takes the lowest index, as greedy).
    if (lid == 0u) { tokens[w] = argmax; scores[w] = mx; }
    return;
  }
  let topk = sp.top_k > 0u && sp.top_k < p.vocab;

  // Candidates. Top-p alone: the last token it keeps has probability ≥ (1 − top_p) / vocab (at
  // least that much mass lies at or below it, on at most vocab tokens); under that bound (with a
  // margin for rounding) nothing can be drawn, so the cut is exact.
  var cut = mx - CUT;
  if (sp.top_p < 1.0 && !topk) { cut = max(cut, mx + log(z_all * (1.0 - sp.top_p) / f32(p.vocab)) - 0.01); }
  // Nothing below min-p's bound is drawn; but top-p weighs the mass above top-k's threshold, all
  // of it, so with top-p on the candidates keep it.
  if (sp.min_p > 0.0 && sp.top_p >= 1.0) { cut = max(cut, mx + log(sp.min_p) - 0.01); }
  let floor_key = key(cut);
  var mine = 0u;
  for (var j = lid; j < p.nvec; j += 4u * WG) {
    let a = ld(j);
    let b = ld(j + WG);
    let c = ld(j + 2u * WG);
    let d = ld(j + 3u * WG);
    mine += count4(a, floor_key) + count4(b, floor_key) + count4(c, floor_key) + count4(d, floor_key);
  }
  let cnt = wg_scan(f32(mine), lid);
  let n_cand = u32(cnt.y);
#if NO_CANDIDATES
  let use_cand = false;
#else
  let use_cand = n_cand <= CAP;
#endif
  if (use_cand) {
    var at = u32(cnt.x) - mine;
    for (var j = lid; j < p.nvec; j += 4u * WG) {
      let a = ld(j);
      let b = ld(j + WG);
      let c = ld(j + 2u * WG);
      let d = ld(j + 3u * WG);
      at = compact4(a, j, floor_key, at);
      at = compact4(b, j + WG, floor_key, at);
      at = compact4(c, j + 2u * WG, floor_key, at);
      at = compact4(d, j + 3u * WG, floor_key, at);
    }
  }
  workgroupBarrier();

  // top-k; with candidates, fewer than k of them means everything left is kept.
  var tau = 0u;
  if (topk && (!use_cand || n_cand > sp.top_k)) { tau = kth_largest(sp.top_k, lid, use_cand, n_cand); }

  // top-p over the top-k survivors' softmax; top-p alone over all of it (z_all): the candidates
  // leave out the tail under their cut, whose mass still counts toward 1 − top_p.
  if (sp.top_p < 1.0) {
    var need = sp.top_p * z_all;
    if (topk) { need = sp.top_p * wg_sum(own_mass(lid, use_cand, n_cand, tau, NONE, mx), lid); }
    var lo = tau;
    var hi = key(mx);
    while (lo < hi) {
      let mid = lo + (hi - lo) / 2u;
      if (wg_sum(own_mass(lid, use_cand, n_cand, tau, mid, mx), lid) < need) { hi = mid; } else { lo = mid + 1u; }
    }
    tau = lo;
  }
  if (sp.min_p > 0.0) { tau = max(tau, key(mx + log(sp.min_p))); }

  // Draw: a prefix sum over the threads finds the one whose run crosses u · total; that thread
  // walks its run. Candidates: thread l owns the contiguous slots [l·per, (l+1)·per), which keeps
  // the compacted order; otherwise its own vec4s of proc.
  let per = (n_cand + WG - 1u) / WG;
  var own = 0.0;
  if (use_cand) {
    for (var j = lid * per; j < min(n_cand, lid * per + per); j++) {
      if (key(cand_s[j]) >= tau) { own += exp(cand_s[j] - mx); }
    }
  } else {
    own = own_mass(lid, false, 0u, tau, NONE, mx);
  }
  let sc = wg_scan(own, lid);
  let before = sc.x - own;
  let goal = uniform01(w) * sc.y;
  if (own > 0.0 && before <= goal) { atomicMax(&pick_at, lid + 1u); }
  let chosen = workgroupUniformLoad(&pick_at);
  // No thread's run reached the goal (it cannot, with finite scores): the entry is still written.
  if (chosen == 0u && lid == 0u) { tokens[w] = NO_TOKEN; scores[w] = mx; }
  if (lid + 1u == chosen) {
    var acc = before;
    var tok = NO_TOKEN;
    // Only tokens of positive weight can be picked (not padding, not a -inf logit), also when
    // rounding leaves the walk short of the goal and the run's last such token is taken.
    if (use_cand) {
      for (var j = lid * per; j < min(n_cand, lid * per + per); j++) {
        let e = exp(cand_s[j] - mx);
        if (key(cand_s[j]) >= tau && e > 0.0) {
          tok = cand_i[j];
          acc += e;
          if (acc > goal) { break; }
        }
      }
    } else {
      for (var j0 = lid; j0 < p.nvec && acc <= goal; j0 += 4u * WG) {
        let blk = array<vec4<f32>, 4>(ld(j0), ld(j0 + WG), ld(j0 + 2u * WG), ld(j0 + 3u * WG));
        for (var b = 0u; b < 4u && acc <= goal; b++) {
          for (var c = 0u; c < 4u; c++) {
            let x = blk[b][c];
            let e = exp(x - mx);
            if (key(x) >= tau && e > 0.0) {
              tok = 4u * (j0 + b * WG) + c;
              acc += e;
              if (acc > goal) { break; }
            }
          }
        }
      }
    }
    tokens[w] = tok;
    scores[w] = mx;
  }
}
#endif
