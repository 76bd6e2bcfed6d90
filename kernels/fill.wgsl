// Pseudo-random fill from a seed, for synthetic weights (benchmarks at real shapes with no files).
// Element e of the tensor (e = p.base + index in this binding) gets
//   offset + scale · (2·u − 1),  u = (hash(e + hash(seed)) >> 8) / 2^24  ∈ [0, 1)
// so the values of a tensor do not depend on how it is split into chunks or dispatches.
// #if PAIRS: the binding holds f16 pairs (two elements per u32 word, low half first); else f32.

@group(0) @binding(0) var<storage, read_write> y: array<u32>;  // (words) f16 pairs or f32 bits
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

// PCG-style 32-bit integer hash (Jarzynski & Olano 2020, "pcg" output permutation).
fn hash(x: u32) -> u32 {
  let s = x * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

fn value(e: u32) -> f32 {
  let u = f32(hash(e + hash(p.seed)) >> 8u) * (1.0 / 16777216.0);
  return p.offset + p.scale * (2.0 * u - 1.0);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * 65535u) * 256u + lid;  // word index
  if (i >= p.words) { return; }
#if PAIRS
  let e = p.base + 2u * i;
  y[i] = pack2x16float(vec2<f32>(value(e), value(e + 1u)));
#else
  y[i] = bitcast<u32>(value(p.base + i));
#endif
}
