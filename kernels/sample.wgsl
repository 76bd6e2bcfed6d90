// Token sampling on the GPU, one workgroup of WG threads over the whole vocabulary, no readback:
// transformers' order — repetition penalty (logits processor), then temperature → top-k → top-p
// (warpers) — then a draw from a counter-based RNG keyed by (seed, ring index). Greedy = argmax
// with the lowest index winning ties (torch.argmax).
//
// Token ring convention (kernels/state.wgsl): this call writes ring index w = state.step + ahead
// (ahead = 0 for the sampler after prefill, 1 in a decode step); the history for the repetition
// penalty is the prompt ids plus tokens[0..w).
//
// Scores are compared through key(): the order-preserving u32 image of an f32.
//   top-k: τ_k = the k-th largest key, by radix select (4 passes of 8-bit digit histograms); every
//          token with key ≥ τ_k stays (ties at the k-th all kept, like transformers'
//          `scores < topk(scores, k)[0][-1]` removal).
//   top-p: τ_p = the smallest t with mass{key > t} < top_p (bisection over keys): the token at which
//          the descending cumulative probability first reaches top_p is kept with everything above
//          it, as transformers' ascending `cumsum <= 1 - top_p` removal that keeps ≥ 1 token.
// After top-k, the tokens that can still be drawn — within CUT of the max (the rest weigh < e^-30
// each) and above top-p's lower bound — are compacted, in draw order, into workgroup memory when
// they fit (CAP); top-p and the draw then run there. Else both make passes over the vocabulary.
// Draw order: thread l owns tokens l, l + WG, l + 2·WG, ...; threads in turn (src/ref/sample.ts
// drawInKernelOrder replays it).

// Layout: kernels/state.wgsl.
struct DecodeState { cache_len: u32, position: u32, step: u32, reserved: u32 }
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
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;      // (vocab) f32
@group(0) @binding(1) var<storage, read> prompt: array<u32>;      // (≥ prompt_len) u32 prompt ids
@group(0) @binding(2) var<storage, read> sp: Sampling;
@group(0) @binding(3) var<storage, read> state: DecodeState;
@group(0) @binding(4) var<storage, read_write> tokens: array<u32>; // (capacity) u32 token ring
@group(0) @binding(5) var<storage, read_write> scores: array<f32>; // (capacity) f32 max processed score
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = {{WG}}u;
const WORDS: u32 = {{WORDS}}u;    // ceil(vocab / 32)
const CAP: u32 = {{CAP}}u;        // candidate slots
const CUT: f32 = 30.0;            // candidates: score ≥ max − CUT
const NONE: u32 = 0xffffffffu;

var<workgroup> seen: array<atomic<u32>, WORDS>;  // bit i: token i is in the history
var<workgroup> red: array<u32, WG>;              // reductions and scans (f32 as bits)
var<workgroup> hist: array<atomic<u32>, 256>;    // radix-select digit histogram
var<workgroup> cand_i: array<u32, CAP>;          // compacted candidates, in draw order
var<workgroup> cand_s: array<f32, CAP>;
var<workgroup> pick: atomic<u32>;
var<workgroup> shared_u: u32;

fn key(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Processed score of token i: repetition penalty, then temperature (t = 1 when greedy).
fn score(i: u32, t: f32) -> f32 {
  var x = logits[i];
  if ((atomicLoad(&seen[i >> 5u]) & (1u << (i & 31u))) != 0u) {
    x = select(x / sp.penalty, x * sp.penalty, x < 0.0);
  }
  return x / t;
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

// Inclusive prefix sum of one f32 per thread (Hillis–Steele); returns this thread's, and leaves
// the total in red[WG - 1].
fn wg_scan(v: f32, lid: u32) -> f32 {
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
  return bitcast<f32>(red[lid]);
}

fn mark(id: u32) {
  if (id < p.vocab) { atomicOr(&seen[id >> 5u], 1u << (id & 31u)); }
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

// The k-th largest key among all tokens (radix select, most significant digit first).
fn kth_largest(k: u32, t: f32, lid: u32) -> u32 {
  var prefix = 0u;
  var remaining = k;
  for (var digit = 0u; digit < 4u; digit++) {
    let shift = 24u - 8u * digit;
    workgroupBarrier();
    for (var b = lid; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    for (var i = lid; i < p.vocab; i += WG) {
      let kk = key(score(i, t));
      // Same higher digits as the prefix found so far (all keys on the first pass).
      if (digit == 0u || (kk >> (shift + 8u)) == (prefix >> (shift + 8u))) {
        atomicAdd(&hist[(kk >> shift) & 255u], 1u);
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
fn main(@builtin(local_invocation_index) lid: u32) {
  let w = state.step + p.ahead;
  if (w >= p.capacity) { return; }   // ring full: never write past it

  for (var i = lid; i < WORDS; i += WG) { atomicStore(&seen[i], 0u); }
  if (lid == 0u) { atomicStore(&pick, 0u); }
  workgroupBarrier();
  if (sp.penalty != 1.0) {
    for (var i = lid; i < sp.prompt_len; i += WG) { mark(prompt[i]); }
    for (var i = lid; i < w; i += WG) { mark(tokens[i]); }
  }
  workgroupBarrier();

  let greedy = sp.greedy != 0u;
  let t = select(sp.temperature, 1.0, greedy);

  // Max; then the lowest index holding it.
  var best = -3.4028235e38;
  for (var i = lid; i < p.vocab; i += WG) { best = max(best, score(i, t)); }
  let mx = bitcast<f32>(wg_reduce(bitcast<u32>(best), lid, MAX));
  if (greedy) {
    var first = NONE;
    for (var i = lid; i < p.vocab; i += WG) {
      if (score(i, t) == mx) { first = i; break; }
    }
    let argmax = wg_reduce(first, lid, MIN_U);
    if (lid == 0u) { tokens[w] = argmax; scores[w] = mx; }
    return;
  }

  var tau = 0u;
  if (sp.top_k > 0u && sp.top_k < p.vocab) { tau = kth_largest(sp.top_k, t, lid); }
  // z: Σ exp(s − max) over the top-k survivors, the top-p normaliser.
  var z = 0.0;
  var cut = mx - CUT;
  if (sp.top_p < 1.0) {
    var zl = 0.0;
    for (var i = lid; i < p.vocab; i += WG) {
      let s = score(i, t);
      if (key(s) >= tau) { zl += exp(s - mx); }
    }
    z = wg_sum(zl, lid);
    // The last token top-p keeps has probability ≥ (1 − top_p) / vocab: at least that much mass
    // lies at or below it, on at most vocab tokens. Tokens under that bound (with a margin for
    // rounding) cannot be kept, so leaving them out of the candidates is exact.
    cut = max(cut, mx + log(z * (1.0 - sp.top_p) / f32(p.vocab)) - 0.01);
  }
  let floor_key = max(tau, key(cut));

  // Compact the candidates in draw order: count per thread, scan, write.
  var mine = 0u;
  for (var i = lid; i < p.vocab; i += WG) { mine += select(0u, 1u, key(score(i, t)) >= floor_key); }
  let incl = wg_scan(f32(mine), lid);
  let n_cand = u32(bitcast<f32>(workgroupUniformLoad(&red[WG - 1u])));
#if NO_CANDIDATES
  let use_cand = false;
#else
  let use_cand = n_cand <= CAP;
#endif
  if (use_cand) {
    var at = u32(incl) - mine;
    for (var i = lid; i < p.vocab; i += WG) {
      let s = score(i, t);
      if (key(s) >= floor_key) { cand_i[at] = i; cand_s[at] = s; at += 1u; }
    }
  }
  workgroupBarrier();

  if (sp.top_p < 1.0) {
    let need = sp.top_p * z;
    var lo = tau;
    var hi = key(mx);
    while (lo < hi) {
      let mid = lo + (hi - lo) / 2u;
      var m = 0.0;
      if (use_cand) {
        for (var j = lid; j < n_cand; j += WG) {
          if (key(cand_s[j]) > mid) { m += exp(cand_s[j] - mx); }
        }
      } else {
        for (var i = lid; i < p.vocab; i += WG) {
          let s = score(i, t);
          let k = key(s);
          if (k > mid && k >= tau) { m += exp(s - mx); }
        }
      }
      if (wg_sum(m, lid) < need) { hi = mid; } else { lo = mid + 1u; }
    }
    tau = lo;
  }

  // Draw: a prefix sum over the threads finds the one whose run crosses u · total; that thread
  // walks its run. Candidates: thread l owns the contiguous slots [l·per, (l+1)·per), which keeps
  // the compacted order; otherwise tokens l, l + WG, ...
  let per = (n_cand + WG - 1u) / WG;
  var own = 0.0;
  if (use_cand) {
    for (var j = lid * per; j < min(n_cand, lid * per + per); j++) {
      if (key(cand_s[j]) >= tau) { own += exp(cand_s[j] - mx); }
    }
  } else {
    for (var i = lid; i < p.vocab; i += WG) {
      let s = score(i, t);
      if (key(s) >= tau) { own += exp(s - mx); }
    }
  }
  let before = wg_scan(own, lid) - own;
  let total = bitcast<f32>(workgroupUniformLoad(&red[WG - 1u]));
  let goal = uniform01(w) * total;
  if (own > 0.0 && before <= goal) { atomicMax(&pick, lid + 1u); }
  let chosen = workgroupUniformLoad(&pick);
  if (lid + 1u == chosen) {
    var acc = before;
    var tok = NONE;
    if (use_cand) {
      for (var j = lid * per; j < min(n_cand, lid * per + per); j++) {
        if (key(cand_s[j]) >= tau) {
          tok = cand_i[j];
          acc += exp(cand_s[j] - mx);
          if (acc > goal) { break; }
        }
      }
    } else {
      for (var i = lid; i < p.vocab; i += WG) {
        let s = score(i, t);
        if (key(s) >= tau) {
          tok = i;
          acc += exp(s - mx);
          if (acc > goal) { break; }
        }
      }
    }
    tokens[w] = tok;
    scores[w] = mx;
  }
}
