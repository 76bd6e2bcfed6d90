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
//   k_mean          — #if QUANT_QK and KMEAN: the mean of k over each cu_seqlens block's tokens,
//                     per KV head and dim;
//   quantize_qk     — #if QUANT_QK: q and k − mean(k) rows to int8 for the flash prefill's INT8S.
// Decode (one query against the KV cache) is kernels/attention_decode.wgsl.

const HD: u32 = {{HD}}u;
const HD4: u32 = HD / 4u;
// Masked scores and the initial running max: finite, so exp(m - m_new) never sees inf - inf.
const NEG: f32 = -3.0e38;
// A row of HD values quantized to int8 (#if QUANT_QK writes them, #if INT8S reads them): HD / 16
// vec4 of codes (element 4i + b in byte b of word i), then one vec4 whose .x is the f32 scale d.
const QW4: u32 = HD / 16u + 1u;

#if QUANT_QK
// Why k − mean(k) (SageAttention's smoothing): a component all keys share (a bias) moves every
// score of a query by the same amount, which softmax ignores, but it sets the keys' int8 step;
// subtracted, the step follows what tells keys apart. Each cu_seqlens block (an image, a
// video's frame) has its own mean — a constant shift within the block, all its queries see — so
// a block's codes, and its image's embeddings, do not depend on the other images encoded with it
// (the prompt cache encodes only the images it has not seen; one mean over all tokens moved an
// image's embeddings by 1 %). CPU experiment (src/ref/attention.ts fakeInt8, 256 keys × 80,
// keys N(0, 1) + 10·o, o ∼ N(0, 1) per dim): max |Δ| from f32 0.17 without, 0.041 with, the same
// as with no offset at all.
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;             // (seq, k_stride) f32
@group(0) @binding(2) var<storage, read> cu: array<u32>;                  // (n_cu) u32 cu_seqlens
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// vec4 in one token's KV heads' row (kv heads · HD / 4): kmean's row length.
fn kw4() -> u32 { return p.heads / p.group * HD4; }

#if KMEAN
// k_mean: one workgroup per (vec4 of (KV head, dim), cu_seqlens block); its 256 threads sum the
// block's rows t ≡ cu[b] + lid (mod 256), then a tree over workgroup memory.
@group(0) @binding(0) var<storage, read_write> kmean: array<vec4<f32>>;   // (n_cu − 1, kv heads · HD) f32

var<workgroup> part: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn k_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;                  // vec4 column of the KV heads' row
  let lo = cu[wid.y];
  let hi = cu[wid.y + 1u];
  var s = vec4<f32>(0.0);
  for (var t = lo + lid; t < hi; t += 256u) { s += k[t * p.k_stride + p.k_off + c]; }
  part[lid] = s;
  for (var n = 128u; n > 0u; n >>= 1u) {
    workgroupBarrier();
    if (lid < n) { part[lid] += part[lid + n]; }
  }
  if (lid == 0u) { kmean[wid.y * kw4() + c] = part[0] / f32(max(hi - lo, 1u)); }
}
#else
// quantize_qk: one thread per (token, row), the heads q rows then the heads / group k rows
// (minus k_mean's mean of the token's block) of a token: d = max|x| / 127 (f32), codes
// round(x / d) (half to even, as kernels/gemm.wgsl's QUANTIZE_X; d = 0 gives codes 0). q and k
// as the prefill reads them.
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;         // (seq, q_stride) f32
@group(0) @binding(3) var<storage, read> kmean: array<vec4<f32>>;     // (n_cu − 1, kv heads · HD) f32
@group(0) @binding(4) var<storage, read_write> qk: array<vec4<u32>>;  // (seq, heads + kv heads, QW4)

// The cu_seqlens block of token t: b with cu[b] ≤ t < cu[b + 1] (a video has hundreds of blocks).
fn block_of(t: u32) -> u32 {
  var lo = 0u;
  var hi = p.n_cu - 1u;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (cu[mid] <= t) { lo = mid; } else { hi = mid; }
  }
  return lo;
}

var<private> mean_row: u32;  // this thread's token's row of kmean, in vec4

// Element c (vec4) of row r of token t.
fn qk_at(t: u32, r: u32, c: u32) -> vec4<f32> {
  if (r < p.heads) { return q[t * p.q_stride + p.q_off + r * HD4 + c]; }
  let kc = (r - p.heads) * HD4 + c;
  return k[t * p.k_stride + p.k_off + kc] - kmean[mean_row + kc];
}

#include int8

// The row's HD4 vec4 are loaded at once into x0 .. (QK_LOAD), their max |x| taken (QK_AMAX) and
// stored four vec4 a code vec4 (QK_STORE): the builder writes these out for HD (a loop would wait
// on each load in turn; kernels/attention.ts quantizeQk).
@compute @workgroup_size(256)
fn quantize_qk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let rows = p.heads + p.heads / p.group;
  let f = (wid.x + wid.y * 65535u) * 256u + lid;  // flat (token, row)
  if (f >= p.seq * rows) { return; }
  let t = f / rows;
  let r = f % rows;
  if (r >= p.heads) { mean_row = block_of(t) * kw4(); }
  {{QK_LOAD}}
  let amax = {{QK_AMAX}};
  let d = amax / 127.0;
  let inv = select(0.0, 1.0 / d, d > 0.0);
  {{QK_STORE}}
  qk[f * QW4 + QW4 - 1u] = vec4<u32>(bitcast<u32>(d), 0u, 0u, 0u);
}
#endif
#else

// ---------------------------------------------------------------------------------------------
// Prefill: a register-tiled flash attention. A workgroup owns BQ = 4·TY queries of one head and
// walks their key range BK = 4·TX keys at a time. Thread (tx, ty) owns query rows ty·4 .. ty·4+3:
// - S = Q·Kᵀ: the 4 × 4 block of those rows × keys tx + TX·e (e < 4), over d in chunks of 4·DC
//   staged in workgroup memory (Q and K rows, padded so vec4 reads do not collide on banks);
//   Q is re-read per key tile (it stays in L2) so memory does not grow with head_dim, unless
//   #if QRES, where the whole Q tile stays in workgroup memory (fewer loads and barriers);
// - online softmax in f32: the tile's row max through workgroup memory (all TX threads of a row
//   then hold the same running max), Σ exp kept per thread and added across the row at the end;
// - O += P·V: the same 4 rows × vec4 columns tx + TX·i (i < CV), with P in workgroup memory and V
//   staged KC keys at a time in the Q/K staging area.
// So TX = HD/4 / CV and BK = HD / CV. Masks (causal, block-diagonal) apply per score; key tiles
// past the workgroup's last query's range are never visited.
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;        // (seq, q_stride) f32
#include kv_types
@group(0) @binding(1) var<storage, read> k: array<KV4>;              // (keys, k_stride) f32 (f16 #if KV16)
@group(0) @binding(2) var<storage, read> v: array<KV4>;              // (keys, v_stride) f32 (f16 #if KV16)
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // (seq, heads·HD) f32
#if VISION
@group(0) @binding(4) var<storage, read> cu: array<u32>;             // (n_cu) u32 cu_seqlens
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

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

fn max4(x: vec4<f32>) -> f32 { return max(max(x.x, x.y), max(x.z, x.w)); }
fn sum4(x: vec4<f32>) -> f32 { return dot(x, vec4<f32>(1.0)); }

// Scores of one row outside [lo, hi) become NEG.
fn mask_row(s: vec4<f32>, keys: vec4<u32>, lo: u32, hi: u32) -> vec4<f32> {
  return select(vec4<f32>(NEG), s, (keys >= vec4<u32>(lo)) & (keys < vec4<u32>(hi)));
}

// c[r] = c[r] · a[r] (each column is one query row).
fn scale_cols(c: mat4x4<f32>, a: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(c[0] * a.x, c[1] * a.y, c[2] * a.z, c[3] * a.w);
}

// c + outer(a, b): c[r] += a[r] · b.
fn outer_acc(c: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(vec4(a.x), b, c[0]), fma(vec4(a.y), b, c[1]), fma(vec4(a.z), b, c[2]),
    fma(vec4(a.w), b, c[3]));
}

fn store_row(i: u32, col: u32, x: vec4<f32>) {
  if (i < p.seq) { out[i * p.heads * HD4 + col] = x; }
}

#if FLASH
// ---------------------------------------------------------------------------------------------
// Prefill, #if FLASH: the flash kernel with the whole Q tile resident, K/V tiles prefetched into
// registers a phase ahead, and larger per-thread register blocks. A workgroup owns BQ = 4·TY
// queries of one head and walks their keys BK = RK·TX at a time. Thread (tx, ty) owns the 4 query
// rows ty + TY·r (r < 4: interleaved, so a warp's Q reads hit distinct banks):
// - S = Q·Kᵀ: the 4 × RK block of those rows × keys tx + TX·e, over all of head_dim, with Q
//   staged once (scaled by scale · log2 e, so the softmax is exp2) and K in `kv`;
// - online softmax in f32 as the tiled kernel's (row max through `red`, Σ exp per thread);
// - O += P·V: the 4 rows × CV vec4 columns tx + TX·i, with P in `ps` and V in `kv` (K is used
//   up by then);
// - global loads are not overlapped across loop iterations on this stack, so each thread's share
//   of a tile (NL vec4 in groups of 4, named registers) is loaded a phase before it is stored:
//   this tile's V while S is computed, the next tile's K while P·V is. Four barriers a tile.
// The defaults (kernels/attention.ts prefillDefault): vision TX = 10, TY = 16, RK = 4 at head_dim
// 80 (160 threads, 64 queries, 40-key tiles, 48.5 KB; three workgroups an SM, bound by
// registers; warps numbered in 8 × 4 blocks, thread_xy), H200 5120 patches 5.7 ms against the
// tiled kernel's 10.8 (TY = 17 COMPACT where only that grid fits one wave: 1564 patches 590
// against 723 µs); causal COMPACT TX = 8, TY = 12 at 128 (47.6 KB) with loops and VLATE, 7B 1024
// tokens 571 against 750 µs.
// No `for` in a tile's hot path: naga wraps every WGSL loop in a loop-bound counter the driver
// cannot see through, so a loop stays a loop (each shared load waited on, its index clamp
// computed per step; an indexed register array would stay in local memory). The builder
// (kernels/attention.ts flashCode) writes the steps out as text into four placeholders: S_STEPS
// is s_step(0u) … s_step(HD4 − 1u), PV_STEPS pv_step(0u) … pv_step(BK − 1u), ROW_MAX and ROW_SUM
// the row reductions over red_row(0u) … red_row(TX − 1u); flash { loops } keeps them `for`
// loops (at head_dim 128 the causal default: written out ran slower there). Shared arrays are
// indexed per dimension (not flattened), so WebGPU's clamp of each index folds: a literal step
// index is a constant, the thread's row or column is the same every step. Every register block is
// a named private.
const TX: u32 = {{TX}}u;       // threads along keys (S) and along vec4 columns (O)
const TY: u32 = {{TY}}u;       // threads along queries, 4 rows each
const CV: u32 = HD4 / TX;      // vec4 output columns per thread (1 ..= 5): blocks o0 .. o{CV-1}
const RK: u32 = {{RK}}u;       // keys per thread and tile: 4, or 8 #if RK8
const BQ: u32 = 4u * TY;
const BK: u32 = RK * TX;
const WG: u32 = TX * TY;
const SQ: u32 = {{SQ}}u;       // padded row length of kv (and qs), vec4: odd
// #if COMPACT: less workgroup memory for one more workgroup an SM: qs and ps rows unpadded (a
// few more bank conflicts) and the row partials kept in ps (one more barrier a tile).
const QST: u32 = {{QST}}u;     // row length of qs, vec4: SQ, or HD4 #if COMPACT
const PS: u32 = {{PS}}u;       // row length of ps (and red), vec4: TY + 1, or TY #if COMPACT
const NT: u32 = BK * HD4;      // vec4 in one K or V tile
const NL: u32 = (NT + WG - 1u) / WG;            // of them loaded by one thread
#if INT8S
// #if INT8S: S = Q·Kᵀ from int8 rows (quantize_qk's QW4 vec4 each, bit-cast through the f32
// arrays): dot4I8Packed integer sums, scaled by the row's and the key's d. K tiles are QW4 vec4
// a key (V tiles stay f32), and qs holds the Q rows as they come, unscaled.
const KW4: u32 = QW4;          // vec4 per K row in a K tile
#else
const KW4: u32 = HD4;
#endif
const NTK: u32 = BK * KW4;     // vec4 in one K tile
const NLK: u32 = (NTK + WG - 1u) / WG;
const NU: u32 = (NT / 4u + WG - 1u) / WG;       // #if OUTER: K units (4 keys × vec4) per thread
const LOG2E: f32 = 1.4426950408889634;

#if OUTER
// #if OUTER: Q and K staged transposed (d-major, a vec4 holds 4 rows or 4 keys at one d), so S
// is an outer product per d. The transposition is free: each thread loads 4 rows (keys) at one
// vec4 of d and stores the transposed 4 × 4 block. K^T (HD, NCOL) lies flat in kv (kv_at), so its
// index clamps do not fold.
const NCOL: u32 = BK / 4u;     // vec4 of keys per d: col holds keys col % TX + TX·(4·(col / TX) + i)
var<workgroup> qs: array<array<vec4<f32>, TY>, HD>;  // [d][ty] rows ty + TY·r at d, · scale · log2 e
#else
var<workgroup> qs: array<array<vec4<f32>, QST>, BQ>; // [row][c] queries · scale · log2 e
#endif
// [key][c] this tile's keys (#if OUTER: (HD, NCOL) transposed, flat), then its values
var<workgroup> kv: array<array<vec4<f32>, SQ>, BK>;
var<workgroup> ps: array<array<vec4<f32>, PS>, BK>;  // [key][ty] vec4 of 4 rows: this tile's P
#ifnot COMPACT
var<workgroup> red: array<array<vec4<f32>, PS>, TX>; // [tx][ty] per-thread row partials
#endif

var<private> lid_: u32;
var<private> tx_: u32;
var<private> ty_: u32;
var<private> kbase_: u32;
var<private> vbase_: u32;
var<private> sa: mat4x4<f32>;  // column r: row ty + TY·r, keys tx + TX·e (e < 4)
var<private> sb: mat4x4<f32>;  // #if RK8: keys tx + TX·(4 + e)
var<private> ia0: vec4<i32>;   // #if INT8S: S of row ty + TY·r (ia_r), keys tx + TX·e, integer sums
var<private> ia1: vec4<i32>;
var<private> ia2: vec4<i32>;
var<private> ia3: vec4<i32>;
var<private> o0: mat4x4<f32>;  // column r: row ty + TY·r, vec4 column tx
var<private> o1: mat4x4<f32>;  // vec4 column tx + TX (CV ≥ 2), and so on
var<private> o2: mat4x4<f32>;
var<private> o3: mat4x4<f32>;
var<private> o4: mat4x4<f32>;
var<private> f0: mat4x4<f32>;  // this thread's share of the next K or V tile: vec4 n = 4g + c
var<private> f1: mat4x4<f32>;  // of group g is tile element lid + n·WG (g < GROUPS; the rest unused)
var<private> f2: mat4x4<f32>;
var<private> f3: mat4x4<f32>;
var<private> f4: mat4x4<f32>;
var<private> f5: mat4x4<f32>;
var<private> f6: mat4x4<f32>;
var<private> f7: mat4x4<f32>;

// This thread's row partial (in red, or #if COMPACT in ps, free while the partials are live).
fn red_st(x: vec4<f32>) {
#if COMPACT
  ps[tx_][ty_] = x;
#else
  red[tx_][ty_] = x;
#endif
}

// The row partial of thread (x, ty) of this thread's row ty.
fn red_row(x: u32) -> vec4<f32> {
#if COMPACT
  return ps[x][ty_];
#else
  return red[x][ty_];
#endif
}

// Tile element n of this thread from keys k0.. (V #if is_v, else K); 0 past the tile or hi.
// Whether tile element n of this thread exists: n and is_v are literals, so past NL (NLK) and
// where WG divides NT (NTK), always, the test folds away with the registers it would have used.
fn in_tile(is_v: bool, n: u32, idx: u32) -> bool {
  let nt = select(NTK, NT, is_v);
  return n < select(NLK, NL, is_v) && (nt % WG == 0u || idx < nt);
}

// vec4 per row of a K (V #if is_v) tile.
fn row4(is_v: bool) -> u32 { return select(KW4, HD4, is_v); }

fn ld_kv(is_v: bool, k0: u32, hi: u32, n: u32) -> vec4<f32> {
  let idx = lid_ + n * WG;
  let key = k0 + idx / row4(is_v);
  var x = vec4<f32>(0.0);
  if (in_tile(is_v, n, idx) && key < hi) {
    if (is_v) {
      x = vec4<f32>(v[key * p.v_stride + vbase_ + idx % HD4]);
    } else {
      x = vec4<f32>(k[key * p.k_stride + kbase_ + idx % KW4]);
    }
  }
  return x;
}

#if OUTER
// Element f of the flat (HD, NCOL) K^T in kv.
fn kv_at(f: u32) -> vec4<f32> { return kv[f / SQ][f % SQ]; }
fn kv_put(f: u32, x: vec4<f32>) { kv[f / SQ][f % SQ] = x; }

// K unit u = lid + g·WG of the transposed tile: vec4 c of the 4 keys of column col.
fn ld_k1(key: u32, hi: u32, c: u32, ok: bool) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  if (ok && key < hi) { x = vec4<f32>(k[key * p.k_stride + kbase_ + c]); }
  return x;
}

fn in_units(g: u32, u: u32) -> bool { return g < NU && ((NT / 4u) % WG == 0u || u < NT / 4u); }

fn ld_kt(k0: u32, hi: u32, g: u32) -> mat4x4<f32> {
  let u = lid_ + g * WG;
  let col = u % NCOL;
  let c = u / NCOL;
  let key = k0 + col % TX + 4u * TX * (col / TX);
  let ok = in_units(g, u);
  return mat4x4<f32>(ld_k1(key, hi, c, ok), ld_k1(key + TX, hi, c, ok),
    ld_k1(key + 2u * TX, hi, c, ok), ld_k1(key + 3u * TX, hi, c, ok));
}

fn st_kt(g: u32, x: mat4x4<f32>) {
  let u = lid_ + g * WG;
  if (in_units(g, u)) {
    let col = u % NCOL;
    let a = u / NCOL * 4u * NCOL + col;
    let t = transpose(x);   // column i: d = 4c + i of the 4 keys
    kv_put(a, t[0]);
    kv_put(a + NCOL, t[1]);
    kv_put(a + 2u * NCOL, t[2]);
    kv_put(a + 3u * NCOL, t[3]);
  }
}
#endif

fn ld4(is_v: bool, k0: u32, hi: u32, g: u32) -> mat4x4<f32> {
#if OUTER
  if (!is_v) { return ld_kt(k0, hi, g); }
#endif
  return mat4x4<f32>(ld_kv(is_v, k0, hi, 4u * g), ld_kv(is_v, k0, hi, 4u * g + 1u),
    ld_kv(is_v, k0, hi, 4u * g + 2u), ld_kv(is_v, k0, hi, 4u * g + 3u));
}

fn st_kv(is_v: bool, n: u32, x: vec4<f32>) {
  let idx = lid_ + n * WG;
  if (in_tile(is_v, n, idx)) { kv[idx / row4(is_v)][idx % row4(is_v)] = x; }
}

fn st4(is_v: bool, g: u32, x: mat4x4<f32>) {
#if OUTER
  if (!is_v) {
    st_kt(g, x);
    return;
  }
#endif
  st_kv(is_v, 4u * g, x[0]);
  st_kv(is_v, 4u * g + 1u, x[1]);
  st_kv(is_v, 4u * g + 2u, x[2]);
  st_kv(is_v, 4u * g + 3u, x[3]);
}

// Issues this thread's loads of the (BK, HD) tile of keys k0.. into f0.. (used by store_tile):
// the builder writes f_g = ld4(is_v, k0, hi, g) out for each of the tiling's GROUPS groups.
fn load_tile(is_v: bool, k0: u32, hi: u32) {
  {{LOAD_TILE}}
}

// st4(is_v, g, f_g) for each group, written out by the builder.
fn store_tile(is_v: bool) {
  {{STORE_TILE}}
}

// Query element idx of the tile (rows q0..), scaled; 0 past seq.
fn ld_q(q0: u32, qbase: u32, idx: u32) -> vec4<f32> {
  let i = q0 + idx / HD4;
  var x = vec4<f32>(0.0);
  if (i < p.seq) { x = q[i * p.q_stride + qbase + idx % HD4] * (p.scale * LOG2E); }
  return x;
}

#if OUTER
// One d of the S block: 1 Q read, RK / 4 K reads, 4·RK FMAs.
fn s_step(d: u32) {
  let qv = qs[d][ty_];
  sa = outer_acc(sa, qv, kv_at(d * NCOL + tx_));
#if RK8
  sb = outer_acc(sb, qv, kv_at(d * NCOL + TX + tx_));
#endif
}
#else
#if INT8S
// s + the int8 dot products of row a with the keys b_e (HD / 16 · 4 codes a vec4).
fn idp(s: i32, a: vec4<u32>, b: vec4<u32>) -> i32 {
  return dot4I8Packed(a.w, b.w) + (dot4I8Packed(a.z, b.z) + (dot4I8Packed(a.y, b.y) +
    (dot4I8Packed(a.x, b.x) + s)));
}

fn idp4(s: vec4<i32>, a: vec4<f32>, b0: vec4<u32>, b1: vec4<u32>, b2: vec4<u32>,
  b3: vec4<u32>) -> vec4<i32> {
  let u = bitcast<vec4<u32>>(a);
  return vec4<i32>(idp(s.x, u, b0), idp(s.y, u, b1), idp(s.z, u, b2), idp(s.w, u, b3));
}

fn kcode(e: u32, c: u32) -> vec4<u32> { return bitcast<vec4<u32>>(kv[tx_ + e * TX][c]); }

// One vec4 of codes (c < HD / 16: 16 dims) of the S block: 4 Q reads, 4 K reads, 64 dot4I8Packed.
fn s_step(c: u32) {
  let k0 = kcode(0u, c);
  let k1 = kcode(1u, c);
  let k2 = kcode(2u, c);
  let k3 = kcode(3u, c);
  ia0 = idp4(ia0, qs[ty_][c], k0, k1, k2, k3);
  ia1 = idp4(ia1, qs[ty_ + TY][c], k0, k1, k2, k3);
  ia2 = idp4(ia2, qs[ty_ + 2u * TY][c], k0, k1, k2, k3);
  ia3 = idp4(ia3, qs[ty_ + 3u * TY][c], k0, k1, k2, k3);
}

// The S block from the integer sums, in log2 units: · d of the row · d of the key · scale · log2 e.
fn s_scaled() -> mat4x4<f32> {
  let l = QW4 - 1u;
  let dk = vec4<f32>(kv[tx_][l].x, kv[tx_ + TX][l].x, kv[tx_ + 2u * TX][l].x, kv[tx_ + 3u * TX][l].x);
  let dq = vec4<f32>(qs[ty_][l].x, qs[ty_ + TY][l].x, qs[ty_ + 2u * TY][l].x,
    qs[ty_ + 3u * TY][l].x) * (p.scale * LOG2E);
  return mat4x4<f32>(vec4<f32>(ia0) * (dq.x * dk), vec4<f32>(ia1) * (dq.y * dk),
    vec4<f32>(ia2) * (dq.z * dk), vec4<f32>(ia3) * (dq.w * dk));
}
#else
fn st_q(idx: u32, x: vec4<f32>) { qs[idx / HD4][idx % HD4] = x; }

// s + (q · key e for the 4 keys e) as FMA chains: column i of kt is component i of the 4 keys
// (the dot product form spends an extra add per 4 FMAs).
fn dot_acc(s: vec4<f32>, q: vec4<f32>, kt: mat4x4<f32>) -> vec4<f32> {
  return fma(vec4(q.w), kt[3], fma(vec4(q.z), kt[2], fma(vec4(q.y), kt[1], fma(vec4(q.x), kt[0], s))));
}

// One vec4 of head_dim (c) of the S block: 4 Q reads, RK K reads, 16·RK FMAs.
fn s_step(c: u32) {
  let q0 = qs[ty_][c];
  let q1 = qs[ty_ + TY][c];
  let q2 = qs[ty_ + 2u * TY][c];
  let q3 = qs[ty_ + 3u * TY][c];
  let kt = transpose(mat4x4<f32>(kv[tx_][c], kv[tx_ + TX][c], kv[tx_ + 2u * TX][c],
    kv[tx_ + 3u * TX][c]));
  sa = mat4x4<f32>(dot_acc(sa[0], q0, kt), dot_acc(sa[1], q1, kt), dot_acc(sa[2], q2, kt),
    dot_acc(sa[3], q3, kt));
#if RK8
  let kt2 = transpose(mat4x4<f32>(kv[tx_ + 4u * TX][c], kv[tx_ + 5u * TX][c],
    kv[tx_ + 6u * TX][c], kv[tx_ + 7u * TX][c]));
  sb = mat4x4<f32>(dot_acc(sb[0], q0, kt2), dot_acc(sb[1], q1, kt2), dot_acc(sb[2], q2, kt2),
    dot_acc(sb[3], q3, kt2));
#endif
}
#endif
#endif

// The O register blocks o_c (c < CV) are written out by the builder in the three functions below.
// One key (j) of O += P·V: 1 P read, CV V reads, 16·CV FMAs (o_c += outer(pj, column tx + c·TX)).
fn pv_step(j: u32) {
  let pj = ps[j][ty_];
  {{PV_O}}
}

// o_c = scale_cols(o_c, a) for each block.
fn scale_o(a: vec4<f32>) {
  {{SCALE_O}}
}

// Writes column r (query row i) of the O blocks, times inv (block c at vec4 column col + c·TX).
fn store_o(i: u32, r: u32, col: u32, inv: f32) {
  {{STORE_O}}
}

// exp2(s − m), 0 where masked.
fn prob2(s: vec4<f32>, m: f32) -> vec4<f32> {
  return select(vec4<f32>(0.0), exp2(s - m), s > vec4<f32>(NEG));
}

fn mask4(s: mat4x4<f32>, keys: vec4<u32>, r0: vec2<u32>, r1: vec2<u32>, r2: vec2<u32>,
  r3: vec2<u32>) -> mat4x4<f32> {
  return mat4x4<f32>(mask_row(s[0], keys, r0.x, r0.y), mask_row(s[1], keys, r1.x, r1.y),
    mask_row(s[2], keys, r2.x, r2.y), mask_row(s[3], keys, r3.x, r3.y));
}

fn rowmax(s: mat4x4<f32>) -> vec4<f32> {
  return vec4<f32>(max4(s[0]), max4(s[1]), max4(s[2]), max4(s[3]));
}

// P of a 4-row block at row maxima mx, transposed: column e is key e's 4 rows.
fn probs(s: mat4x4<f32>, mx: vec4<f32>) -> mat4x4<f32> {
  return transpose(mat4x4<f32>(prob2(s[0], mx.x), prob2(s[1], mx.y), prob2(s[2], mx.z),
    prob2(s[3], mx.w)));
}

// Writes a P block (column e: key tx + TX·(e0 + e)) to ps; returns its Σ over keys.
fn put_p(pt: mat4x4<f32>, e0: u32) -> vec4<f32> {
  ps[tx_ + e0 * TX][ty_] = pt[0];
  ps[tx_ + (e0 + 1u) * TX][ty_] = pt[1];
  ps[tx_ + (e0 + 2u) * TX][ty_] = pt[2];
  ps[tx_ + (e0 + 3u) * TX][ty_] = pt[3];
  return (pt[0] + pt[1]) + (pt[2] + pt[3]);
}

// Thread lid's (tx, ty). #if BLOCKED (TX ≥ 8, TY % 4 == 0): each warp of 32 lanes takes an
// 8 (tx) × 4 (ty) block of the first TX − TX % 8 columns, then the lanes left take the last
// columns ty-major. So a warp's shared reads of K / V rows (kv[tx + …]) touch 8 rows and those of
// Q / P rows (qs[ty + …], ps[…][ty]) 4: one 128-byte wavefront each. lid % TX puts 10 tx of a
// TX = 10 grid into every warp, and those reads take two.
fn thread_xy(lid: u32) -> vec2<u32> {
#if BLOCKED
  let x8 = TX / 8u * 8u;
  if (lid < x8 * TY) {
    let w = lid / 32u;
    let i = lid % 32u;
    return vec2<u32>(8u * (w % (x8 / 8u)) + i % 8u, 4u * (w / (x8 / 8u)) + i / 8u);
  }
  let i = lid - x8 * TY;
  return vec2<u32>(x8 + i / TY, i % TY);
#else
  return vec2<u32>(lid % TX, lid / TX);
#endif
}

@compute @workgroup_size(WG)
fn prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  lid_ = lid;
  let xy = thread_xy(lid);
  tx_ = xy.x;
  ty_ = xy.y;
  let q0 = wid.x * BQ;
  let h = wid.y;
  let kvh = h / p.group;
  let last = min(q0 + BQ, p.seq) - 1u;
  let r0 = key_range(min(q0 + ty_, last));
  let r1 = key_range(min(q0 + ty_ + TY, last));
  let r2 = key_range(min(q0 + ty_ + 2u * TY, last));
  let r3 = key_range(min(q0 + ty_ + 3u * TY, last));
  // Both range ends grow with i: the tiles cover [lo(first), hi(last)), and a tile inside
  // [lo(last), hi(first)) is visible to every row (no mask).
  let lo_t = key_range(q0).x;
  let hi_t = key_range(last).y;
  let lo_all = key_range(last).x;
  let hi_all = key_range(q0).y;
  let qbase = p.q_off + h * KW4;
  kbase_ = p.k_off + kvh * KW4;
  vbase_ = p.v_off + kvh * HD4;

#if OUTER
  // The Q tile, transposed: unit u is vec4 c of rows ty + TY·r (HD4 · TY = CV · WG units).
  for (var u = lid; u < HD4 * TY; u += WG) {
    let t = u % TY;
    let c = u / TY;
    let x = transpose(mat4x4<f32>(ld_q(q0, qbase, t * HD4 + c), ld_q(q0, qbase, (t + TY) * HD4 + c),
      ld_q(q0, qbase, (t + 2u * TY) * HD4 + c), ld_q(q0, qbase, (t + 3u * TY) * HD4 + c)));
    qs[4u * c][t] = x[0];
    qs[4u * c + 1u][t] = x[1];
    qs[4u * c + 2u][t] = x[2];
    qs[4u * c + 3u][t] = x[3];
  }
#else
#if INT8S
  // The Q tile's int8 rows, as they are (BQ · QW4 vec4).
  for (var n = lid; n < BQ * QW4; n += WG) {
    let i = q0 + n / QW4;
    var x = vec4<f32>(0.0);
    if (i < p.seq) { x = q[i * p.q_stride + qbase + n % QW4]; }
    qs[n / QW4][n % QW4] = x;
  }
#else
  // The Q tile, four loads in flight per thread (BQ · HD4 = 4 · CV · WG).
  for (var n = lid; n < BQ * HD4; n += 4u * WG) {
    let x0 = ld_q(q0, qbase, n);
    let x1 = ld_q(q0, qbase, n + WG);
    let x2 = ld_q(q0, qbase, n + 2u * WG);
    let x3 = ld_q(q0, qbase, n + 3u * WG);
    st_q(n, x0);
    st_q(n + WG, x1);
    st_q(n + 2u * WG, x2);
    st_q(n + 3u * WG, x3);
  }
#endif
#endif
  load_tile(false, lo_t, hi_t);
  store_tile(false);
  var m = vec4<f32>(NEG);       // running max of the 4 rows (log2 units; same in a row's threads)
  var l = vec4<f32>(0.0);       // this thread's part of Σ exp2(s − m)
  for (var kb = lo_t; kb < hi_t; kb += BK) {
    workgroupBarrier();         // this tile's K (and, first, Q) staged
#ifnot VLATE
    load_tile(true, kb, hi_t);  // this tile's V: in flight while S is computed
#endif
#if INT8S
    ia0 = vec4<i32>();
    ia1 = vec4<i32>();
    ia2 = vec4<i32>();
    ia3 = vec4<i32>();
#else
    sa = mat4x4<f32>();
#endif
#if RK8
    sb = mat4x4<f32>();
#endif
    // S: s_step over head_dim (c < HD4; #if OUTER d < HD; #if INT8S c < HD / 16)
    {{S_STEPS}}
#if INT8S
    sa = s_scaled();
#endif
#if VLATE
    // #if VLATE: this tile's V issued after S, in flight through the softmax: its registers are
    // not live during S, where the register blocks peak (fewer registers a thread, so more
    // workgroups an SM where registers bound them).
    load_tile(true, kb, hi_t);
#endif
    if (kb < lo_all || kb + BK > hi_all) {
      let keys = vec4<u32>(kb + tx_) + vec4<u32>(0u, TX, 2u * TX, 3u * TX);
      sa = mask4(sa, keys, r0, r1, r2, r3);
#if RK8
      sb = mask4(sb, keys + vec4<u32>(4u * TX), r0, r1, r2, r3);
#endif
    }
#if RK8
    red_st(max(rowmax(sa), rowmax(sb)));
#else
    red_st(rowmax(sa));
#endif
    workgroupBarrier();         // S done (kv free), row maxima visible
    var mx = m;
    {{ROW_MAX}}
    let alpha = exp2(m - mx);
    m = mx;
#if COMPACT
    workgroupBarrier();         // row partials read: ps free for P
#endif
    l = l * alpha + put_p(probs(sa, mx), 0u);
#if RK8
    l += put_p(probs(sb, mx), 4u);
#endif
    store_tile(true);           // this tile's V
#if EARLY
    load_tile(false, kb + BK, hi_t);  // #if EARLY: the next tile's K issued before the barrier
#endif
    scale_o(alpha);
    workgroupBarrier();         // P and V staged
#ifnot EARLY
    load_tile(false, kb + BK, hi_t);  // the next tile's K: in flight while P·V is computed
#endif
    // O += P·V: pv_step over the tile's keys (j < BK)
    {{PV_STEPS}}
    workgroupBarrier();         // kv and ps read
    store_tile(false);          // the next tile's K
  }

  workgroupBarrier();
  red_st(l);
  workgroupBarrier();
  var lt = vec4<f32>(0.0);
  {{ROW_SUM}}
  let inv = 1.0 / lt;
  let col = h * HD4 + tx_;
  store_o(q0 + ty_, 0u, col, inv.x);
  store_o(q0 + ty_ + TY, 1u, col, inv.y);
  store_o(q0 + ty_ + 2u * TY, 2u, col, inv.z);
  store_o(q0 + ty_ + 3u * TY, 3u, col, inv.w);
}
#else
const TX: u32 = {{TX}}u;       // threads along keys (S) and along vec4 columns (O)
const TY: u32 = {{TY}}u;       // threads along queries, 4 rows each
const CV: u32 = HD4 / TX;      // vec4 output columns per thread: 1 or 2
const BQ: u32 = 4u * TY;
const BK: u32 = 4u * TX;
const WG: u32 = TX * TY;
const DC: u32 = {{DC}}u;       // vec4 per d chunk of S (divides HD4)
const SP: u32 = {{SP}}u;       // row stride of the staged Q/K chunk, vec4: odd, so 8 threads'
                               // vec4 reads of 8 consecutive rows hit distinct banks
const KC: u32 = {{KC}}u;       // keys per staged V chunk (divides BK)
#if QRES
// Q resident: the workgroup's Q rows are staged once, whole (row stride SQ, odd), and only K
// chunks go through the staging area.
const SQ: u32 = {{SQ}}u;
const QROWS: u32 = 0u;
var<workgroup> qs: array<vec4<f32>, BQ * SQ>;
#else
const QROWS: u32 = BQ;         // Q chunk rows staged ahead of the K chunk rows
#endif
const PS: u32 = TY + 1u;       // padded row stride of P, vec4
// Staging area: the Q chunk (QROWS, SP) then the K chunk (BK, SP); or a V chunk (KC, HD4).
var<workgroup> stage: array<vec4<f32>, {{STAGE}}>;
var<workgroup> ps: array<vec4<f32>, BK * PS>;   // (BK, TY) vec4 of 4 rows: this tile's P, key-major
var<workgroup> red: array<vec4<f32>, WG>;       // (TY, TX) per-thread row partials

// exp(s − m), 0 where masked.
fn prob_row(s: vec4<f32>, m: f32) -> vec4<f32> {
  return select(vec4<f32>(0.0), exp(s - m), s > vec4<f32>(NEG));
}

@compute @workgroup_size(WG)
fn prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % TX;
  let ty = lid / TX;
  let q0 = wid.x * BQ;
  let h = wid.y;
  let kvh = h / p.group;
  let last = min(q0 + BQ, p.seq) - 1u;
  let row0 = q0 + ty * 4u;
  let r0 = key_range(min(row0, last));
  let r1 = key_range(min(row0 + 1u, last));
  let r2 = key_range(min(row0 + 2u, last));
  let r3 = key_range(min(row0 + 3u, last));
  // Rows are consecutive and both range ends grow with i: the tiles cover [lo(first), hi(last)).
  let lo_t = key_range(q0).x;
  let hi_t = key_range(last).y;
  let qbase = p.q_off + h * HD4;
  let kbase = p.k_off + kvh * HD4;
  let vbase = p.v_off + kvh * HD4;

#if QRES
  for (var idx = lid; idx < BQ * HD4; idx += WG) {
    let i = q0 + idx / HD4;
    var val = vec4<f32>(0.0);
    if (i < p.seq) { val = q[i * p.q_stride + qbase + idx % HD4] * p.scale; }
    qs[idx / HD4 * SQ + idx % HD4] = val;   // made visible by the first barrier below
  }
#endif
  var m = vec4<f32>(NEG);       // running max of the 4 rows (the same in all TX threads of a row)
  var l = vec4<f32>(0.0);       // this thread's part of Σ exp(s − m)
  var o0 = mat4x4<f32>();       // column r: row ty·4 + r, vec4 column tx
#if CV2
  var o1 = mat4x4<f32>();       // vec4 column tx + TX
#endif

  for (var kb = lo_t; kb < hi_t; kb += BK) {
    var s = mat4x4<f32>();      // column r: row r, keys tx + TX·e
    for (var d0 = 0u; d0 < HD4; d0 += DC) {
      workgroupBarrier();       // the staging area is free (previous chunk or V chunk used)
      for (var idx = lid; idx < (QROWS + BK) * DC; idx += WG) {
        let row = idx / DC;
        let c = d0 + idx % DC;
        var val = vec4<f32>(0.0);
        if (row < QROWS) {
          let i = q0 + row;
          if (i < p.seq) { val = q[i * p.q_stride + qbase + c] * p.scale; }
        } else {
          let key = kb + row - QROWS;
          if (key < hi_t) { val = vec4<f32>(k[key * p.k_stride + kbase + c]); }
        }
        stage[row * SP + idx % DC] = val;
      }
      workgroupBarrier();
      for (var c = 0u; c < DC; c++) {
        let kt = mat4x4<f32>(stage[(QROWS + tx) * SP + c], stage[(QROWS + tx + TX) * SP + c],
          stage[(QROWS + tx + 2u * TX) * SP + c], stage[(QROWS + tx + 3u * TX) * SP + c]);
#if QRES
        let qa = ty * 4u * SQ + d0 + c;
        s[0] += qs[qa] * kt;
        s[1] += qs[qa + SQ] * kt;
        s[2] += qs[qa + 2u * SQ] * kt;
        s[3] += qs[qa + 3u * SQ] * kt;
#else
        let qa = ty * 4u * SP + c;
        s[0] += stage[qa] * kt;
        s[1] += stage[qa + SP] * kt;
        s[2] += stage[qa + 2u * SP] * kt;
        s[3] += stage[qa + 3u * SP] * kt;
#endif
      }
    }
    let keys = vec4<u32>(kb + tx) + vec4<u32>(0u, TX, 2u * TX, 3u * TX);
    let s0 = mask_row(s[0], keys, r0.x, r0.y);
    let s1 = mask_row(s[1], keys, r1.x, r1.y);
    let s2 = mask_row(s[2], keys, r2.x, r2.y);
    let s3 = mask_row(s[3], keys, r3.x, r3.y);
    red[lid] = vec4<f32>(max4(s0), max4(s1), max4(s2), max4(s3));
    workgroupBarrier();
    var mx = m;
    for (var x = 0u; x < TX; x++) { mx = max(mx, red[ty * TX + x]); }
    let alpha = exp(m - mx);
    m = mx;
    let pt = transpose(mat4x4<f32>(prob_row(s0, mx.x), prob_row(s1, mx.y), prob_row(s2, mx.z),
      prob_row(s3, mx.w)));     // column e: key tx + TX·e, the 4 rows
    l = l * alpha + pt[0] + pt[1] + pt[2] + pt[3];
    ps[(tx) * PS + ty] = pt[0];
    ps[(tx + TX) * PS + ty] = pt[1];
    ps[(tx + 2u * TX) * PS + ty] = pt[2];
    ps[(tx + 3u * TX) * PS + ty] = pt[3];
    o0 = scale_cols(o0, alpha);
#if CV2
    o1 = scale_cols(o1, alpha);
#endif
    for (var kc = 0u; kc < BK; kc += KC) {
      workgroupBarrier();       // P written; the staging area (K or the last V chunk) is free
      for (var idx = lid; idx < KC * HD4; idx += WG) {
        let key = kb + kc + idx / HD4;
        var val = vec4<f32>(0.0);
        if (key < hi_t) { val = vec4<f32>(v[key * p.v_stride + vbase + idx % HD4]); }
        stage[idx] = val;
      }
      workgroupBarrier();
      for (var j = 0u; j < KC; j++) {
        let pj = ps[(kc + j) * PS + ty];
        o0 = outer_acc(o0, pj, stage[j * HD4 + tx]);
#if CV2
        o1 = outer_acc(o1, pj, stage[j * HD4 + tx + TX]);
#endif
      }
    }
  }

  workgroupBarrier();
  red[lid] = l;
  workgroupBarrier();
  var lt = vec4<f32>(0.0);
  for (var x = 0u; x < TX; x++) { lt += red[ty * TX + x]; }
  let inv = 1.0 / lt;
  store_row(row0, h * HD4 + tx, o0[0] * inv.x);
  store_row(row0 + 1u, h * HD4 + tx, o0[1] * inv.y);
  store_row(row0 + 2u, h * HD4 + tx, o0[2] * inv.z);
  store_row(row0 + 3u, h * HD4 + tx, o0[3] * inv.w);
#if CV2
  store_row(row0, h * HD4 + tx + TX, o1[0] * inv.x);
  store_row(row0 + 1u, h * HD4 + tx + TX, o1[1] * inv.y);
  store_row(row0 + 2u, h * HD4 + tx + TX, o1[2] * inv.z);
  store_row(row0 + 3u, h * HD4 + tx + TX, o1[3] * inv.w);
#endif
}
#endif
#endif
