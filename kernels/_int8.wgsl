// Int8 quantization of f32 values, shared by kernels/gemm.wgsl (QUANTIZE_X) and
// kernels/attention.wgsl (quantize_qk): a group's scale is d = max|x| / 127, its codes round(x / d)
// (WGSL's round(): half to even), four packed a u32 (element b in byte b).

// max |x| over a vec4.
fn amax4(x: vec4<f32>) -> f32 {
  let a = abs(x);
  return max(max(a.x, a.y), max(a.z, a.w));
}

// The codes of x at 1 / d = inv, packed.
fn codes4(x: vec4<f32>, inv: f32) -> u32 { return pack4xI8Clamp(vec4<i32>(round(x * inv))); }
