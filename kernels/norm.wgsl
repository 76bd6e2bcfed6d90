// RMSNorm and LayerNorm over the last dimension; one workgroup per row.
// #if LAYER: LayerNorm with bias (vision tower); else RMSNorm (Qwen2 decoder).

@group(0) @binding(0) var<storage, read> x: array<f32>;        // (rows, cols) f32
@group(0) @binding(1) var<storage, read> w: array<f32>;        // (cols) f32
#if LAYER
@group(0) @binding(2) var<storage, read> b: array<f32>;        // (cols) f32
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // (rows, cols) f32
#else
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // (rows, cols) f32
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

// Sum of `v` over the workgroup; every thread gets the total.
fn wg_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * 65535u;
  if (row >= p.rows) { return; }
  let base = row * p.cols;
#if LAYER
  var s = 0.0;
  for (var c = lid; c < p.cols; c += WG) { s += x[base + c]; }
  let mean = wg_sum(s, lid) / f32(p.cols);
  var v = 0.0;
  for (var c = lid; c < p.cols; c += WG) { let d = x[base + c] - mean; v += d * d; }
  let inv = inverseSqrt(wg_sum(v, lid) / f32(p.cols) + p.eps);
  for (var c = lid; c < p.cols; c += WG) { y[base + c] = (x[base + c] - mean) * inv * w[c] + b[c]; }
#else
  var ss = 0.0;
  for (var c = lid; c < p.cols; c += WG) { let e = x[base + c]; ss += e * e; }
  let inv = inverseSqrt(wg_sum(ss, lid) / f32(p.cols) + p.eps);
  for (var c = lid; c < p.cols; c += WG) { y[base + c] = (x[base + c] * inv) * w[c]; }
#endif
}
