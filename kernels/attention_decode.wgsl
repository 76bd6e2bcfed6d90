// Decode attention: this step's one query per head against KV-cache rows 0..state.cache_len
// (flash-decoding, one dispatch), softmax in f32. Heads are HD wide (a define; HD % 16 == 0);
// grouped-query attention: query head h reads KV head h / group (transformers' repeat_kv). q, k
// and v are rows of wider buffers (a fused qkv row, the KV cache), read as vec4 through a row
// stride and a column offset, both in vec4 units. The output goes to out from vec4 p.out_off (batched
// decode: row r of q and of out is session r's token, p.q_off and p.out_off include the row; 0
// otherwise).
//
// The keys 0..n-1 (n = cache_len + 1) are cut into ns ≤ p.nsplit splits of `len` keys (a multiple
// of CHUNK); one workgroup per (split, block of GROUP query heads sharing one KV head), so each
// K/V row is read once per block. A workgroup walks its split CHUNK keys at a time: thread (r, j)
// scores key j for head r, turns its score into a probability once the row max is known, and
// thread (r, d) adds Σ p · v for vec4 column d of head r; every reduction is a short run of
// broadcast reads from workgroup memory (memory latency, not arithmetic, is what a decode step
// pays here). With one split the workgroup normalises and writes the output; otherwise it
// publishes its unnormalised Σ p · v and (max, Σ exp), and the last workgroup of its head block
// to arrive (an atomic counter per block) merges all splits (log-sum-exp rescaling) and resets
// the counter. Partials and counters go through atomics, so the merge sees the other workgroups'
// writes by the memory model, not by cache luck.
//
// Loads in a loop are not overlapped across iterations on this stack (each iteration pays a
// memory latency), so a chunk's K/V loads are written out — at most four of each per thread, as
// CHUNK · HD4 ≤ 4 · WG (kernels/attention_decode.ts picks CHUNK so) — and issued together into
// named registers. #if PF (prefetch) they are issued a chunk ahead: the next chunk's loads are in
// flight while this one's scores and Σ p · v are computed, so a split of many chunks pays the
// memory latency about once rather than once a chunk. The inner loops are written out by the
// builder ({{SCORE}}, {{MAXR}}, {{PV}}: naga wraps every WGSL `for` in a loop counter the driver
// cannot see through, which keeps such loops real loops).
//
// #if LANES (entry decode_lanes): the same splits and merge, without workgroup tiles. Each key row
// belongs to L consecutive lanes of one subgroup (L a power of two ≤ the smallest subgroup size),
// lane ln holding vec4 columns ln, ln + L, … of it; the workgroup's S = WG / L key slots each walk
// their own keys of the split (slot, slot + S, …; U of them a step) as an independent online
// softmax, with the query of every head of the block and their Σ p · v in registers. A score is
// the lanes' partial dot products summed by subgroupShuffleXor; K/V rows go from memory straight
// to registers, the next step's loads issued before this step's arithmetic; no barrier until the
// slots merge (log-sum-exp, through workgroup memory, HR heads at a time) at the split's end. The
// tiled kernel reads each K/V element GROUP times from workgroup memory and meets four barriers a
// chunk: it is bound by workgroup-memory bandwidth and phase latency, not by the cache's bytes.
//
// #if ROPE (either entry; batched decode, kernels/attention_decode.ts decodeAttentionRopeKv): the
// decode step's rope + KV-cache write (kernels/rope.wgsl's DECODE KV variant) folded in. q's row
// holds this token's query heads, then its key heads, then its value heads (a fused qkv row),
// unrotated: the query and the key are rotated here by state.position (rope_col, the same table
// entries and expression as kernels/rope.wgsl, so the same bits), and key cache_len — this token's —
// is that key and value, rounded to the cache's type as a cache write would, taken from q's row
// rather than the cache: no workgroup reads the cache row this dispatch writes. Split 0 of the
// first head block of each KV head writes that KV head's rotated K and its V to cache row
// cache_len (dropped at or past p.max_rows), one vec4 a thread.

#include decode_state

const HD: u32 = {{HD}}u;
const HD4: u32 = HD / 4u;
const NEG: f32 = -3.0e38;       // masked scores and the initial max: finite, so no inf - inf
const WG: u32 = 256u;
const GROUP: u32 = {{GROUP}}u;  // query heads per workgroup (≤ 8; GROUP · HD4 ≤ WG)
const MAXS: u32 = {{MAXS}}u;    // most splits (p.nsplit ≤ MAXS)
#if LANES
const L: u32 = {{L}}u;          // lanes per key row
const S: u32 = WG / L;          // key slots
const CHUNK: u32 = S * {{U}}u;  // keys per step: U a slot
#else
const CHUNK: u32 = {{CHUNK}}u;  // keys per step (8, 16 or 32)
const KS: u32 = HD4 + 1u;       // padded K row stride, vec4 (odd: conflict-free column reads)
const NKV: u32 = CHUNK * HD4;   // vec4 of one chunk's K (and of its V); ≤ 4 · WG
#endif

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;          // (rows, q_stride) f32
#include kv_types
#if ROPE
@group(0) @binding(1) var<storage, read_write> k: array<KV4>;          // (max_tokens, k_stride) f32 (f16 #if KV16)
@group(0) @binding(2) var<storage, read_write> v: array<KV4>;          // (max_tokens, v_stride) f32 (f16 #if KV16)
#else
@group(0) @binding(1) var<storage, read> k: array<KV4>;                // (max_tokens, k_stride) f32 (f16 #if KV16)
@group(0) @binding(2) var<storage, read> v: array<KV4>;                // (max_tokens, v_stride) f32 (f16 #if KV16)
#endif
@group(0) @binding(3) var<storage, read> state: DecodeState;
@group(0) @binding(4) var<storage, read_write> scratch: array<atomic<u32>>; // layout below
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;  // (rows, heads·HD) f32
#if ROPE
@group(0) @binding(6) var<storage, read> table: array<vec4<f32>>;      // (2, npos, HD / 2) f32: cos rows, then sin rows
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

#if ROPE
const H4: u32 = HD4 / 2u;       // vec4 of a rotary half (HD / 2 pairs (i, i + HD / 2))

// Vec4 column col of the head whose first vec4 is q[base], rotated by state.position: kernels/
// rope.wgsl's a·cos − b·sin below the half, b·cos + a·sin above it, a and b the pair's elements.
fn rope_col(base: u32, col: u32) -> vec4<f32> {
  let i = col % H4;
  // Positions past the table would read another row; clamp so the read stays in bounds.
  let row = min(state.position, p.npos - 1u);
  let c = table[row * H4 + i];
  let s = table[(p.npos + row) * H4 + i];
  let a = q[base + i];
  let b = q[base + H4 + i];
  if (col < H4) { return a * c - b * s; }
  return b * c + a * s;
}

// x rounded to the cache's type, as a cache write and read round it. f16: in integer arithmetic —
// on the H200 a KV4(x) widened again at once, and unpack2x16float(pack2x16float(x)) too, kept x's
// f32 value (an f16 cache's fresh value read 4.6e-4 off at 1.41; kernels/attention_decode_test.ts).
fn as_kv(x: vec4<f32>) -> KV4 {
#if KV16
  return KV4(vec4<f32>(f16_round(x.x), f16_round(x.y), f16_round(x.z), f16_round(x.w)));
#else
  return x;
#endif
}

#if KV16
// The f16 nearest x (ties to even) as an f32: 10 mantissa bits kept in f16's normal range, steps
// of 2^-24 below it (x · 2^24 and the product back are exact there, round() ties to even), ±inf
// from 65520 on.
fn f16_round(x: f32) -> f32 {
  let a = abs(x);
  if (a < 6.103515625e-5) { return round(x * 16777216.0) * 5.9604644775390625e-8; }
  if (a >= 65520.0) { return x * 3.0e38; }  // (overflows to ±inf: no infinite constant in WGSL)
  let b = bitcast<u32>(x);
  return bitcast<f32>((b + 0xfffu + ((b >> 13u) & 1u)) & 0xffffe000u);
}
#endif

// This token's key (rotated) and value, vec4 column col of KV head kvh, as the cache holds them.
fn fresh_k(kvh: u32, col: u32) -> KV4 { return as_kv(rope_col(p.q_off + (p.heads + kvh) * HD4, col)); }
fn fresh_v(kvh: u32, col: u32) -> KV4 {
  return as_kv(q[p.q_off + (p.heads + p.heads / p.group + kvh) * HD4 + col]);
}

// Cache row cache_len of KV head h0 / group, by split 0 of the head's first block: thread lid <
// HD4 writes K column lid, HD4 ≤ lid < 2 · HD4 V column lid − HD4 (2 · HD4 ≤ WG as HD ≤ 512).
fn write_fresh(lid: u32, split: u32, h0: u32) {
  if (split != 0u || h0 % p.group != 0u || state.cache_len >= p.max_rows) { return; }
  let kvh = h0 / p.group;
  if (lid < HD4) {
    k[state.cache_len * p.k_stride + p.k_off + kvh * HD4 + lid] = fresh_k(kvh, lid);
  } else if (lid < 2u * HD4) {
    let c = lid - HD4;
    v[state.cache_len * p.v_stride + p.v_off + kvh * HD4 + c] = fresh_v(kvh, c);
  }
}
#endif

// Scratch, in u32 words (f32 bits): acc (heads, nsplit, HD) unnormalised Σ p·v of each split;
// stats (heads, nsplit, 2): the split's max score m and Σ exp(s − m); then one arrival counter per
// head block (zero between calls).
fn acc_at(h: u32, sp: u32) -> u32 { return (h * p.nsplit + sp) * HD; }
fn stats_at(h: u32, sp: u32) -> u32 { return p.heads * p.nsplit * HD + (h * p.nsplit + sp) * 2u; }
fn counter_at(b: u32) -> u32 { return p.heads * p.nsplit * (HD + 2u) + b; }
fn store_f(i: u32, x: f32) { atomicStore(&scratch[i], bitcast<u32>(x)); }
fn load_f(i: u32) -> f32 { return bitcast<f32>(atomicLoad(&scratch[i])); }
fn load4(i: u32) -> vec4<f32> { return vec4<f32>(load_f(i), load_f(i + 1u), load_f(i + 2u), load_f(i + 3u)); }

var<workgroup> ms_all: array<f32, GROUP * MAXS>;    // merge: (GROUP, ns) split maxima
var<workgroup> ls_all: array<f32, GROUP * MAXS>;    // merge: (GROUP, ns) split Σ exp
var<workgroup> last_sm: u32;                        // 1 if this workgroup merges

// Split sp's partial Σ p · v of this thread's column (clamped to the last split, ns − 1).
fn split_acc(h: u32, sp: u32, ns: u32, d: u32) -> vec4<f32> { return load4(acc_at(h, min(sp, ns - 1u)) + d * 4u); }

// Weight of split sp in the merge (0 past the last split, whose loads were clamped).
fn merge_w(row: u32, sp: u32, ns: u32, big: f32) -> f32 {
  return select(0.0, exp(ms_all[row + min(sp, ns - 1u)] - big), sp < ns);
}

// The end of a workgroup's work, for both kernels: thread lid < GROUP · HD4 holds vec4 column
// lid % HD4 of head block·GROUP + lid / HD4 of its split's result — acc, the unnormalised Σ p · v;
// l, the Σ exp; m, the max score both are relative to. With one split it normalises and writes
// the output; otherwise it publishes them, and the last workgroup of the head block to arrive
// merges all splits.
fn finish_split(lid: u32, block: u32, split: u32, ns: u32, acc: vec4<f32>, l: f32, m: f32) {
  let h0 = block * GROUP;
  let r = lid / HD4;
  let d = lid % HD4;
  if (ns == 1u) {             // the whole context in this workgroup: normalise and write
    if (lid < GROUP * HD4) { out[p.out_off + h0 * HD4 + lid] = acc / l; }
    return;
  }
  if (lid < GROUP * HD4) {
    let a = acc_at(h0 + r, split) + d * 4u;
    store_f(a, acc.x);
    store_f(a + 1u, acc.y);
    store_f(a + 2u, acc.z);
    store_f(a + 3u, acc.w);
    if (d == 0u) {
      store_f(stats_at(h0 + r, split), m);
      store_f(stats_at(h0 + r, split) + 1u, l);
    }
  }
  // Release this workgroup's partials, then arrive; the last arrival merges.
  storageBarrier();
  if (lid == 0u) { last_sm = u32(atomicAdd(&scratch[counter_at(block)], 1u) == ns - 1u); }
  if (workgroupUniformLoad(&last_sm) == 0u) { return; }
  storageBarrier();           // acquire the other workgroups' partials
  if (lid == 0u) { atomicStore(&scratch[counter_at(block)], 0u); }
  for (var idx = lid; idx < GROUP * ns; idx += WG) {
    let st = stats_at(h0 + idx / ns, idx % ns);
    ms_all[idx] = load_f(st);
    ls_all[idx] = load_f(st + 1u);
  }
  workgroupBarrier();
  if (lid < GROUP * HD4) {
    var big = NEG;
    for (var sp = 0u; sp < ns; sp++) { big = max(big, ms_all[r * ns + sp]); }
    var lt = 0.0;
    for (var sp = 0u; sp < ns; sp++) { lt += exp(ms_all[r * ns + sp] - big) * ls_all[r * ns + sp]; }
    // MB splits a step, their 4 · MB loads issued before any is used (atomics may not be
    // reordered by the compiler, so the builder writes the batch out: x_i = split sp + i's
    // partial, clamped to the last split, then a += merge_w(…, sp + i, …) · x_i).
    var a = vec4<f32>(0.0);
    for (var sp = 0u; sp < ns; sp += {{MB}}u) {
      {{MERGE}}
    }
    out[p.out_off + h0 * HD4 + lid] = a / lt;
  }
}

// The keys of a workgroup's split: [start, end) of the n = cache_len + 1 keys, cut into ns splits
// of a whole number of CHUNK-key steps each.
struct Split { n: u32, ns: u32, start: u32, end: u32 }
fn split_of(split: u32) -> Split {
  let n = state.cache_len + 1u;
  let per = (n + p.nsplit - 1u) / p.nsplit;
  let len = (per + CHUNK - 1u) / CHUNK * CHUNK;
  let start = split * len;
  return Split(n, (n + len - 1u) / len, start, min(n, start + len));
}

#if LANES
const HR: u32 = {{HR}}u;         // heads a merge round
var<workgroup> red: array<vec4<f32>, HR * S * HD4>; // (HR, S, HD) a round's heads' Σ p·v of each slot
var<workgroup> ms_sl: array<f32, S * GROUP>;        // (S, GROUP) each slot's max score
var<workgroup> ls_sl: array<f32, S * GROUP>;        // (S, GROUP) each slot's Σ exp
var<workgroup> big_sm: array<f32, GROUP>;           // (GROUP) the max over the slots
var<workgroup> lt_sm: array<f32, GROUP>;            // (GROUP) Σ exp over the slots, relative to it

// The slots' merged result for thread (r, d) of the epilogue.
var<private> fin_acc: vec4<f32>;
var<private> fin_l: f32;
var<private> fin_m: f32;

// Thread (r, d) of a round's heads r0 .. r0 + HR − 1 takes head r's Σ p·v — the sum over the
// slots in red, each already rescaled to the head's max (loads written out: a loop would wait on
// each in turn) — and statistics.
fn take_heads(lid: u32, r0: u32) {
  let r = lid / HD4;
  if (r >= r0 && r < min(r0 + HR, GROUP)) {
    let b = (r - r0) * S * HD4 + lid % HD4;
    fin_acc = {{L_SUM}};
    fin_l = lt_sm[r];
    fin_m = big_sm[r];
  }
}

@compute @workgroup_size(WG)
fn decode_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sp = split_of(wid.x);
  if (sp.start >= sp.n) { return; }   // split past the context: not counted, not merged
  let h0 = wid.y * GROUP;
  let end = sp.end;
#if ROPE
  write_fresh(lid, wid.x, h0);
  let kvh = h0 / p.group;
  let last = sp.n - 1u;       // this token's key: from q's row, not the cache
#endif
  let slot = lid / L;
  let ln = lid % L;
  let kb = p.k_off + h0 / p.group * HD4 + ln;  // this lane's first vec4 of a K row
  let vb = p.v_off + h0 / p.group * HD4 + ln;
  // Every slot takes the same number of steps, so the shuffles stay in uniform control flow;
  // keys past the split's end are clamped on load and weigh nothing.
  let steps = (end - sp.start + CHUNK - 1u) / CHUNK;
  var j = sp.start + slot;    // this step's first key of the slot (the others S apart)
  {{L_DECL}}
  { let jf = j; {{L_FETCH}} }
  for (var it = 0u; it < steps; it++) {
    {{L_TAKE}}
    let jn = j + CHUNK;
    if (it + 1u < steps) { let jf = jn; {{L_FETCH}} }  // in flight during this step
    {{L_STEP}}
    j = jn;
  }
  // The slots' statistics (the same in each lane of a slot), each head's max and Σ exp over
  // them, then HR heads at a time the slots' Σ p·v rescaled to that max.
  if (ln == 0u) {
    {{L_STATS}}
  }
  workgroupBarrier();
  if (lid < GROUP) {
    {{L_BIG}}
    big_sm[lid] = big;
    lt_sm[lid] = lt;
  }
  workgroupBarrier();
  {{L_MERGE}}
  finish_split(lid, wid.y, wid.x, sp.ns, fin_acc, fin_l, fin_m);
}
#else
var<workgroup> qs: array<vec4<f32>, GROUP * HD4>;   // (GROUP, HD) scaled queries
var<workgroup> ks: array<vec4<f32>, CHUNK * KS>;    // (CHUNK, HD) this chunk's keys, padded rows
var<workgroup> vs: array<vec4<f32>, NKV>;           // (CHUNK, HD) this chunk's values
var<workgroup> ss: array<f32, GROUP * CHUNK>;       // (GROUP, CHUNK) scores
var<workgroup> pr: array<f32, GROUP * CHUNK>;       // (GROUP, CHUNK) probabilities
var<workgroup> alpha_sm: array<f32, GROUP>;         // this chunk's rescale exp(m_old − m_new)
var<workgroup> m_sm: array<f32, GROUP>;             // running max per head

// This thread's share of a chunk's K and V: elements lid + i · WG (i < 4) of the (CHUNK, HD4)
// tile, in flight in named registers until put_chunk() stores them.
var<private> lid_: u32;
var<private> kbase_: u32;
var<private> vbase_: u32;
#if ROPE
var<private> kvh_: u32;     // the block's KV head
#endif
var<private> k0: vec4<f32>;
var<private> k1: vec4<f32>;
var<private> k2: vec4<f32>;
var<private> k3: vec4<f32>;
var<private> v0: vec4<f32>;
var<private> v1: vec4<f32>;
var<private> v2: vec4<f32>;
var<private> v3: vec4<f32>;

// Cache row of tile element idx of the chunk from c0, clamped to the split's last key (rows past
// `end` get p = 0, so any finite value will do), and its vec4 column.
// #if ROPE key cache_len is this token's, from q's row.
fn k_at(c0: u32, end: u32, idx: u32) -> vec4<f32> {
  let row = min(c0 + idx / HD4, end - 1u);
#if ROPE
  if (row == state.cache_len) { return vec4<f32>(fresh_k(kvh_, idx % HD4)); }
#endif
  return vec4<f32>(k[row * p.k_stride + kbase_ + idx % HD4]);
}
fn v_at(c0: u32, end: u32, idx: u32) -> vec4<f32> {
  let row = min(c0 + idx / HD4, end - 1u);
#if ROPE
  if (row == state.cache_len) { return vec4<f32>(fresh_v(kvh_, idx % HD4)); }
#endif
  return vec4<f32>(v[row * p.v_stride + vbase_ + idx % HD4]);
}

// Issues this thread's loads of the chunk from c0 (all of them before any is used).
fn fetch_chunk(c0: u32, end: u32) {
  let i0 = lid_;
  let i1 = lid_ + WG;
  let i2 = lid_ + 2u * WG;
  let i3 = lid_ + 3u * WG;
  if (i0 < NKV) { k0 = k_at(c0, end, i0); v0 = v_at(c0, end, i0); }
  if (i1 < NKV) { k1 = k_at(c0, end, i1); v1 = v_at(c0, end, i1); }
  if (i2 < NKV) { k2 = k_at(c0, end, i2); v2 = v_at(c0, end, i2); }
  if (i3 < NKV) { k3 = k_at(c0, end, i3); v3 = v_at(c0, end, i3); }
}

fn put_kv(idx: u32, kv: vec4<f32>, vv: vec4<f32>) {
  if (idx < NKV) {
    ks[idx / HD4 * KS + idx % HD4] = kv;
    vs[idx] = vv;
  }
}

// Stores the fetched chunk into ks / vs.
fn put_chunk() {
  put_kv(lid_, k0, v0);
  put_kv(lid_ + WG, k1, v1);
  put_kv(lid_ + 2u * WG, k2, v2);
  put_kv(lid_ + 3u * WG, k3, v3);
}

// Score partial sums: four independent chains over the head's vec4 columns (HD4 % 4 == 0).
var<private> t0: vec4<f32>;
var<private> t1: vec4<f32>;
var<private> t2: vec4<f32>;
var<private> t3: vec4<f32>;
// Columns c .. c + 3 of q row qa · k row ka.
fn score4(qa: u32, ka: u32, c: u32) {
  t0 = fma(qs[qa + c], ks[ka + c], t0);
  t1 = fma(qs[qa + c + 1u], ks[ka + c + 1u], t1);
  t2 = fma(qs[qa + c + 2u], ks[ka + c + 2u], t2);
  t3 = fma(qs[qa + c + 3u], ks[ka + c + 3u], t3);
}

// Σ p · v partial sums, four chains over the chunk's keys (CHUNK % 4 == 0), and Σ p.
var<private> a0: vec4<f32>;
var<private> a1: vec4<f32>;
var<private> a2: vec4<f32>;
var<private> a3: vec4<f32>;
var<private> p4: vec4<f32>;
// Keys x .. x + 3 of head row r's probabilities times v column d.
fn pv4(r: u32, d: u32, x: u32) {
  let b = r * CHUNK + x;
  let px = vec4<f32>(pr[b], pr[b + 1u], pr[b + 2u], pr[b + 3u]);
  a0 = fma(vec4<f32>(px.x), vs[x * HD4 + d], a0);
  a1 = fma(vec4<f32>(px.y), vs[(x + 1u) * HD4 + d], a1);
  a2 = fma(vec4<f32>(px.z), vs[(x + 2u) * HD4 + d], a2);
  a3 = fma(vec4<f32>(px.w), vs[(x + 3u) * HD4 + d], a3);
  p4 += px;
}

// The max of scores x .. x + 3 of head row rs and mx.
fn max4(rs: u32, x: u32, mx: f32) -> f32 {
  let b = rs * CHUNK + x;
  return max(mx, max(max(ss[b], ss[b + 1u]), max(ss[b + 2u], ss[b + 3u])));
}

@compute @workgroup_size(WG)
fn decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  lid_ = lid;
  let h0 = wid.y * GROUP;     // first query head of the block
  kbase_ = p.k_off + h0 / p.group * HD4;
  vbase_ = p.v_off + h0 / p.group * HD4;
  let sp = split_of(wid.x);
  let start = sp.start;
  if (start >= sp.n) { return; }   // split past the context: not counted, not merged
  let end = sp.end;
#if ROPE
  kvh_ = h0 / p.group;
  write_fresh(lid, wid.x, h0);
#endif

  // The first chunk's loads, then this thread's query element (stored into qs with the chunk),
  // so the two reads' latencies overlap (GROUP · HD4 ≤ WG: one per thread).
  fetch_chunk(start, end);
  var qv = vec4<f32>(0.0);
#if ROPE
  if (lid < GROUP * HD4) { qv = rope_col(p.q_off + (h0 + lid / HD4) * HD4, lid % HD4) * p.scale; }
#else
  if (lid < GROUP * HD4) { qv = q[p.q_off + h0 * HD4 + lid] * p.scale; }
#endif
  // Scores: thread (rs, j) for lid < GROUP · CHUNK. Σ p·v: thread (r, d) for lid < GROUP · HD4.
  let rs = lid / CHUNK;
  let j = lid % CHUNK;
  let r = lid / HD4;
  let d = lid % HD4;
  var m = NEG;                // score threads: running max of row rs
  var l = 0.0;                // Σ p·v threads: running Σ exp of row r
  var acc = vec4<f32>(0.0);   // Σ p·v threads: column d of row r

  for (var c0 = start; c0 < end; c0 += CHUNK) {
    workgroupBarrier();       // the previous chunk's ks, vs, pr are read
#ifnot PF
    if (c0 != start) { fetch_chunk(c0, end); }
#endif
    put_chunk();
    if (c0 == start && lid < GROUP * HD4) { qs[lid] = qv; }
    workgroupBarrier();
#if PF
    if (c0 + CHUNK < end) { fetch_chunk(c0 + CHUNK, end); }  // in flight during this chunk
#endif
    if (lid < GROUP * CHUNK) {
      t0 = vec4<f32>(0.0);
      t1 = vec4<f32>(0.0);
      t2 = vec4<f32>(0.0);
      t3 = vec4<f32>(0.0);
      let qa = rs * HD4;
      let ka = j * KS;
      {{SCORE}}
      let t = (t0 + t1) + (t2 + t3);
      ss[lid] = select(NEG, t.x + t.y + t.z + t.w, c0 + j < end);
    }
    workgroupBarrier();
    if (lid < GROUP * CHUNK) {
      var mx = m;
      {{MAXR}}
      let s = ss[lid];
      pr[lid] = select(0.0, exp(s - mx), s > NEG);
      if (j == 0u) {
        alpha_sm[rs] = exp(m - mx);
        m_sm[rs] = mx;
      }
      m = mx;
    }
    workgroupBarrier();
    if (lid < GROUP * HD4) {
      let alpha = alpha_sm[r];
      a0 = vec4<f32>(0.0);
      a1 = vec4<f32>(0.0);
      a2 = vec4<f32>(0.0);
      a3 = vec4<f32>(0.0);
      p4 = vec4<f32>(0.0);
      {{PV}}
      acc = acc * alpha + ((a0 + a1) + (a2 + a3));
      l = l * alpha + ((p4.x + p4.y) + (p4.z + p4.w));
    }
  }

  finish_split(lid, wid.y, wid.x, sp.ns, acc, l, m_sm[min(r, GROUP - 1u)]);
}
#endif
