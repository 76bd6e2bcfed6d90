// Bytes 0..3 of a q8 code word as f32, shared by kernels/linear_q.wgsl and kernels/gemv.wgsl.
// Without int→float conversions (a quarter-rate instruction): XOR 0x80 makes each code c into
// c + 128 in [1, 255]; a byte at bit s (0 or 8, of the word and of the word >> 16) OR-ed under the
// exponent of 2^(23 − s) is the float 2^(23 − s) + byte exactly, and one subtraction of
// 2^(23 − s) + 128 leaves c.
fn codes8(q: u32) -> vec4<f32> {
  let u = q ^ 0x80808080u;
  let m = vec4<u32>(u, u, u >> 16u, u >> 16u);
  return bitcast<vec4<f32>>((m & vec4<u32>(0xffu, 0xff00u, 0xffu, 0xff00u)) |
    vec4<u32>(0x4b000000u, 0x47000000u, 0x4b000000u, 0x47000000u)) -
    vec4<f32>(8388736.0, 32896.0, 8388736.0, 32896.0);
}
