// Elementwise kernels over flat f32 arrays; thread t = (wid.x + wid.y · 65535) · WG + lid handles
// element t (2D grids for more than 65535 · WG elements).
// Entries (one per variant build, chosen by the builder):
//   unary         y = f(x), f by #if GELU / QUICK_GELU / SILU; #if INPLACE y is x.
//   add           y = a + b; #if INPLACE y += b (y is a); #if BCAST b is a row (cols) broadcast.
//   silu_mul      y (rows, cols) = silu(gate) · up with gate_up (rows, 2·cols) = [gate | up].
//   scatter_rows  dst[idx[i]] = src[i] for rows of cols.
//   copy_rows     dst rows [dst_row, dst_row + n / cols) = src rows [src_row, ...).

const WG: u32 = 256u;

fn flat(wid: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * 65535u) * WG + lid;
}

// erf(x) in f32, max error ≈ 1 ulp (5.9e-8 absolute measured against an f64 erf with exact
// exp): N. Juffa's minimax approximation. |x| > 0.9277: 1 − exp(−x²·(…)) form; else odd polynomial.
fn erf_f32(a: f32) -> f32 {
  let t = abs(a);
  let s = a * a;
  if (t > 0.927734375) {
    var r = fma(-1.72853470e-5, t, 3.83197126e-4);
    let u = fma(-3.88396438e-3, t, 2.42546219e-2);
    r = fma(r, s, u);
    r = fma(r, t, -1.06777877e-1);
    r = fma(r, t, -6.34846687e-1);
    r = fma(r, t, -1.28717512e-1);
    r = fma(r, t, -t);
    // exp(r) ≤ 0.4 here; r < −88 underflows to 0 and erf saturates at ±1.
    let e = 1.0 - exp(max(r, -100.0));
    return select(e, -e, a < 0.0);
  }
  var r = -5.96761703e-4;
  r = fma(r, s, 4.99119423e-3);
  r = fma(r, s, -2.67681349e-2);
  r = fma(r, s, 1.12819925e-1);
  r = fma(r, s, -3.76125336e-1);
  r = fma(r, s, 1.28379166e-1);
  return fma(r, a, a);
}

// x · sigmoid(k · x) without overflow: exp(−k·x) → inf gives x / inf = ±0.
fn x_sigmoid(x: f32, k: f32) -> f32 {
  return x / (1.0 + exp(-k * x));
}

#if UNARY
#if INPLACE
@group(0) @binding(0) var<storage, read_write> y: array<f32>;  // (n) f32, in place
#else
@group(0) @binding(0) var<storage, read> x: array<f32>;        // (n) f32
@group(0) @binding(1) var<storage, read_write> y: array<f32>;  // (n) f32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, lid);
  if (i >= p.n) { return; }
#if INPLACE
  let v = y[i];
#else
  let v = x[i];
#endif
#if GELU
  // torch.nn.functional.gelu (approximate="none"): x · ½ · (1 + erf(x / √2)).
  y[i] = v * 0.5 * (1.0 + erf_f32(v * 0.70710678118654752));
#endif
#if QUICK_GELU
  y[i] = x_sigmoid(v, 1.702);
#endif
#if SILU
  y[i] = x_sigmoid(v, 1.0);
#endif
}
#endif

#if ADD
#if INPLACE
@group(0) @binding(0) var<storage, read> b: array<f32>;        // (n) f32, or (cols) if BCAST
@group(0) @binding(1) var<storage, read_write> y: array<f32>;  // (n) f32, += b
#else
@group(0) @binding(0) var<storage, read> a: array<f32>;        // (n) f32
@group(0) @binding(1) var<storage, read> b: array<f32>;        // (n) f32, or (cols) if BCAST
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // (n) f32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, lid);
  if (i >= p.n) { return; }
#if BCAST
  let bv = b[i % p.cols];
#else
  let bv = b[i];
#endif
#if INPLACE
  y[i] += bv;
#else
  y[i] = a[i] + bv;
#endif
}
#endif

#if SILU_MUL
@group(0) @binding(0) var<storage, read> gu: array<f32>;       // (rows, 2·cols) f32: [gate | up]
@group(0) @binding(1) var<storage, read_write> y: array<f32>;  // (rows, cols) f32
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn silu_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, lid);
  if (i >= p.n) { return; }
  let r = i / p.cols;
  let g = gu[i + r * p.cols];  // = gu[r · 2cols + c]
  y[i] = x_sigmoid(g, 1.0) * gu[i + (r + 1u) * p.cols];
}
#endif

#if SCATTER
@group(0) @binding(0) var<storage, read> src: array<f32>;      // (n / cols, cols) f32
@group(0) @binding(1) var<storage, read> idx: array<u32>;      // (n / cols) u32: destination rows
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // (≥ max idx + 1, cols) f32
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn scatter_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, lid);
  if (i >= p.n) { return; }
  let r = i / p.cols;
  dst[idx[r] * p.cols + (i - r * p.cols)] = src[i];
}
#endif

#if COPY
@group(0) @binding(0) var<storage, read> src: array<f32>;        // (≥ src_row + n / cols, cols) f32
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;  // (≥ dst_row + n / cols, cols) f32
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn copy_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, lid);
  if (i >= p.n) { return; }
  dst[p.dst_row * p.cols + i] = src[p.src_row * p.cols + i];
}
#endif
