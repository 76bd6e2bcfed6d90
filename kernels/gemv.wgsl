// Resident-x GEMV (m = 1: decode): y = w · x, w (rows, k) f16 or #if Q8 q8 (kernels/linear_q.wgsl's
// format: int8 codes, then one f16 scale per 32-element group from word p.s_base), x (k) f32.
// kernels/linear.wgsl's GEMV gives each workgroup a few rows and all of k, so every workgroup
// re-reads x (and a fused norm's weight) from L2 for a few rows' worth of weights, and a fused
// norm's Σ x² once per workgroup. Here a workgroup's WG threads cover k once, each holding U units
// (16 bytes of weights: 8 f16 or 16 q8 elements; thread t's units t, t + WG, …) of x in registers
// for the whole dispatch, and the workgroup walks batches of R rows over a grid-strided loop: a
// batch's R · U weight loads go out together, each row's sum is a subgroupAdd, and the
// subgroups' partials meet in workgroup memory (double-buffered by batch parity: one barrier a
// batch).
// #if NORM: x is RMS-normed on load (a fused Qwen2RMSNorm, kernels/linear.wgsl's NORM): the dot
// products take x ∘ nw, Σ x² is summed once per workgroup, and each sum is scaled by 1 / rms.
// #if SILU: the weight is an MLP's [gate; up] (p.rows = 2 p.n) and the output is silu(gate) · up
// (p.n values): a batch holds R / 2 gate rows and the up rows p.n further.
// #if ACC (not SILU): y += w · x (the residual add fused). #if BIAS (not SILU): + bias.
// #if ROPE (not SILU, not ACC): the decode q/k/v projection with rope + the KV-cache write as its
// epilogue (kernels/_rope_kv.wgsl): p.n counts row pairs, a batch holds R / 2 of them (rope_row),
// and each pair is stored turned by state.position, k and v rows into the cache too.
// The builder (kernels/gemv.ts) writes the per-thread x loads (LOAD_X) and a batch's loads and
// sums (BATCH) out as text: a loop would wait on each load in turn.
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;     // (k / 4) f32
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;     // (rows, units) 16-byte units
#if NORM
@group(0) @binding(2) var<storage, read> nw: array<vec4<f32>>;    // (k / 4) f32 RMSNorm weight
#endif
#if BIAS
@group(0) @binding({{BIAS_BINDING}}) var<storage, read> bias: array<f32>;  // (rows) f32
#endif
@group(0) @binding({{Y_BINDING}}) var<storage, read_write> y: array<f32>;  // (n) f32; ROPE (rows)
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;
#if ROPE
#include rope_kv
#endif

const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;        // weight rows a batch
const NW: u32 = {{NW}}u;      // subgroups a workgroup can hold (WG / the smallest subgroup size)
#if SILU
const OUT: u32 = R / 2u;      // outputs a batch (SILU), or row pairs (ROPE)
#else
#if ROPE
const OUT: u32 = R / 2u;
#else
const OUT: u32 = R;
#endif
#endif

var<workgroup> red: array<array<f32, R>, 2u * NW>;  // [parity · NW + subgroup][row] partial sums
#if NORM
var<workgroup> ssr: array<f32, NW>;                 // [subgroup] Σ x²
#endif

#if Q8
const XV: u32 = 4u;  // x vec4 per unit
#include codes8

// The f16 scale of flat group f (= row · k / 32 + group) as f32.
fn scale(f: u32) -> f32 {
  let sw = p.s_base + (f >> 1u);
  return unpack2x16float(w[sw >> 2u][sw & 3u])[f & 1u];
}

// A unit (16 codes) times its x (a .. d), times its group's scale d.
fn unit_dot(q: vec4<u32>, d: f32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, e: vec4<f32>) -> f32 {
  return d * (dot(codes8(q.x), a) + dot(codes8(q.y), b) + dot(codes8(q.z), c) + dot(codes8(q.w), e));
}
#else
const XV: u32 = 2u;
// A unit (8 halves) times its x (a: the first 4, b: the next).
fn unit_dot(q: vec4<u32>, a: vec4<f32>, b: vec4<f32>) -> f32 {
  return dot(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), a) +
    dot(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)), b);
}
#endif

// Weight row of a batch's row i (outputs o0 ..), clamped in bounds (rows past the end are read
// again and not stored).
fn batch_row(o0: u32, i: u32) -> u32 {
#if SILU
  let r = select(p.n + o0 + i - OUT, o0 + i, i < OUT);
#else
#if ROPE
  let r = rope_row(min(o0 + i / 2u, p.n - 1u), i % 2u);
#else
  let r = o0 + i;
#endif
#endif
  return min(r, p.rows - 1u);
}

// Output of weight row r from its summed products a (times 1 / rms, plus the bias).
fn out_row(r: u32, a: f32, rs: f32) -> f32 {
#if BIAS
  return a * rs + bias[r];
#else
  return a * rs;
#endif
}

// x vec4 c of unit u of this thread (0 past k), and the norm weight's.
fn x_at(u: u32, c: u32, ok: bool) -> vec4<f32> { return select(vec4<f32>(0.0), x[XV * u + c], ok); }
#if NORM
fn nw_at(u: u32, c: u32) -> vec4<f32> { return nw[XV * u + c]; }
#else
fn nw_at(u: u32, c: u32) -> vec4<f32> { return vec4<f32>(1.0); }
#endif

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_size) sg_size: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  var ss = 0.0;  // this thread's Σ x² (NORM)
  {{LOAD_X}}
  let sg = lid / sg_size;
  let subgroups = (WG + sg_size - 1u) / sg_size;
  var rs = 1.0;  // 1 / rms (NORM)
#if NORM
  let sum_sq = subgroupAdd(ss);
  if (lane == 0u) { ssr[sg] = sum_sq; }
  workgroupBarrier();
  var tot = 0.0;
  for (var i = 0u; i < subgroups; i++) { tot += ssr[i]; }
  rs = inverseSqrt(tot / f32(4u * XV * p.ku) + p.eps);
#endif
  var par = 0u;
  for (var o0 = wid.x * OUT; o0 < p.n; o0 += groups.x * OUT) {
    {{BATCH}}
    workgroupBarrier();
    if (lid < OUT && o0 + lid < p.n) {
      var a = 0.0;
      var b = 0.0;  // SILU: the up row's; ROPE: the pair's second row's
      for (var i = 0u; i < subgroups; i++) {
#if SILU
        a += red[par * NW + i][lid];
        b += red[par * NW + i][lid + OUT];
#else
#if ROPE
        a += red[par * NW + i][2u * lid];
        b += red[par * NW + i][2u * lid + 1u];
#else
        a += red[par * NW + i][lid];
#endif
#endif
      }
      let o = o0 + lid;
#if SILU
      let g = a * rs;
      y[o] = g / (1.0 + exp(-g)) * (b * rs);
#else
#if ROPE
      let r0 = rope_row(o, 0u);
      let r1 = rope_row(o, 1u);
      store_rope_pair(r0, r1, o % p.half, o < p.rot_rows / 2u, out_row(r0, a, rs), out_row(r1, b, rs));
#else
#if ACC
      y[o] += out_row(o, a, rs);
#else
      y[o] = out_row(o, a, rs);
#endif
#endif
#endif
    }
    par ^= 1u;
  }
}
