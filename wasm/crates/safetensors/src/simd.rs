//! wasm simd128 versions of the float conversions, 8 elements per step. Each converts the whole
//! 16-byte blocks of its input and returns the unconverted tails; the scalar functions in
//! `convert` (the tested reference) finish them. The lane arithmetic is the scalar arithmetic of
//! `f32_to_f16_bits` / `f16_to_f32_bits`, spelled with selects instead of ifs.

use core::arch::wasm32::*;

/// Four f32 bit patterns → four f16 bit patterns in the low 16 bits of each lane (RNE).
#[inline(always)]
fn f32x4_to_f16(x: v128) -> v128 {
    let sign = v128_and(u32x4_shr(x, 16), u32x4_splat(0x8000));
    let a = v128_and(x, u32x4_splat(0x7FFF_FFFF));
    let odd = v128_and(u32x4_shr(a, 13), u32x4_splat(1));
    // (15 - 127) << 23 wrapping, plus 0xFFF: rebias and round-half-up-before-odd
    let normal = u32x4_shr(i32x4_add(i32x4_add(a, u32x4_splat(0xC800_0FFF)), odd), 13);
    let sub = i32x4_sub(f32x4_add(a, f32x4_splat(0.5)), u32x4_splat(0x3F00_0000));
    let nan = v128_or(
        u32x4_splat(0x7E00),
        v128_and(u32x4_shr(a, 13), u32x4_splat(0x3FF)),
    );
    let big = v128_bitselect(
        nan,
        u32x4_splat(0x7C00),
        u32x4_gt(a, u32x4_splat(0x7F80_0000)),
    );
    let small = v128_bitselect(sub, normal, u32x4_lt(a, u32x4_splat(113 << 23)));
    let mag = v128_bitselect(big, small, u32x4_ge(a, u32x4_splat((127 + 16) << 23)));
    v128_or(mag, sign)
}

/// Four f16 bit patterns (low 16 bits of each lane) → four f32 bit patterns, exact.
#[inline(always)]
fn f16x4_to_f32(h: v128) -> v128 {
    const SHIFTED_EXP: u32 = 0x7C00 << 13;
    let o = u32x4_shl(v128_and(h, u32x4_splat(0x7FFF)), 13);
    let exp = v128_and(o, u32x4_splat(SHIFTED_EXP));
    let o = i32x4_add(o, u32x4_splat((127 - 15) << 23));
    let inf_nan = i32x4_add(o, u32x4_splat((128 - 16) << 23));
    let sub = f32x4_sub(
        i32x4_add(o, u32x4_splat(1 << 23)),
        f32x4_splat(f32::from_bits(113 << 23)),
    );
    let small = v128_bitselect(sub, o, u32x4_eq(exp, u32x4_splat(0)));
    let mag = v128_bitselect(inf_nan, small, u32x4_eq(exp, u32x4_splat(SHIFTED_EXP)));
    v128_or(mag, u32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16))
}

/// Runs `step` over `src` in blocks of `I` bytes producing `O` bytes; returns the tails.
#[inline(always)]
fn blocks<'a, 'b, const I: usize, const O: usize>(
    src: &'a [u8],
    dst: &'b mut [u8],
    step: impl Fn(&[u8], &mut [u8]),
) -> (&'a [u8], &'b mut [u8]) {
    let n = (src.len() / I).min(dst.len() / O);
    let (s, s_tail) = src.split_at(n * I);
    let (d, d_tail) = dst.split_at_mut(n * O);
    for (s, d) in s.chunks_exact(I).zip(d.chunks_exact_mut(O)) {
        step(s, d);
    }
    (s_tail, d_tail)
}

#[inline(always)]
fn load(s: &[u8]) -> v128 {
    assert!(s.len() >= 16);
    // SAFETY: 16 readable bytes (checked above); wasm loads need no alignment.
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

#[inline(always)]
fn store(d: &mut [u8], v: v128) {
    assert!(d.len() >= 16);
    // SAFETY: 16 writable bytes (checked above); wasm stores need no alignment.
    unsafe { v128_store(d.as_mut_ptr() as *mut v128, v) }
}

/// BF16 → f16, eight lanes of 16 bits. Normal f16 values need no rounding (bf16 has 7 mantissa
/// bits, f16 has 10): rebias the exponent and shift. Only lanes below f16's normal range (which
/// round) or above it (±inf, NaN) need more; in real weights few blocks have any, so those blocks
/// take the general f32 path of `f32x4_to_f16` and the rest skip it.
pub fn bf16_to_f16<'a, 'b>(src: &'a [u8], dst: &'b mut [u8]) -> (&'a [u8], &'b mut [u8]) {
    blocks::<16, 16>(src, dst, |s, d| {
        let v = load(s);
        let a = v128_and(v, u16x8_splat(0x7FFF));
        // a - 113<<7 (wrapping) < 30<<7 exactly when 113 <= exponent < 143: f16 normal range
        let normal_range = u16x8_lt(i16x8_sub(a, u16x8_splat(113 << 7)), u16x8_splat(30 << 7));
        let out = if u16x8_all_true(normal_range) {
            let mag = i16x8_shl(i16x8_sub(a, u16x8_splat(112 << 7)), 3);
            v128_or(mag, v128_and(v, u16x8_splat(0x8000)))
        } else {
            let lo = f32x4_to_f16(u32x4_shl(u32x4_extend_low_u16x8(v), 16));
            let hi = f32x4_to_f16(u32x4_shl(u32x4_extend_high_u16x8(v), 16));
            u16x8_narrow_i32x4(lo, hi)
        };
        store(d, out);
    })
}

/// F32 → f16.
pub fn f32_to_f16<'a, 'b>(src: &'a [u8], dst: &'b mut [u8]) -> (&'a [u8], &'b mut [u8]) {
    blocks::<32, 16>(src, dst, |s, d| {
        let lo = f32x4_to_f16(load(&s[..16]));
        let hi = f32x4_to_f16(load(&s[16..]));
        store(d, u16x8_narrow_i32x4(lo, hi));
    })
}

/// BF16 → f32: the bits shifted into the top half.
pub fn bf16_to_f32<'a, 'b>(src: &'a [u8], dst: &'b mut [u8]) -> (&'a [u8], &'b mut [u8]) {
    blocks::<16, 32>(src, dst, |s, d| {
        let v = load(s);
        store(&mut d[..16], u32x4_shl(u32x4_extend_low_u16x8(v), 16));
        store(&mut d[16..], u32x4_shl(u32x4_extend_high_u16x8(v), 16));
    })
}

/// F16 → f32.
pub fn f16_to_f32<'a, 'b>(src: &'a [u8], dst: &'b mut [u8]) -> (&'a [u8], &'b mut [u8]) {
    blocks::<16, 32>(src, dst, |s, d| {
        let v = load(s);
        store(&mut d[..16], f16x4_to_f32(u32x4_extend_low_u16x8(v)));
        store(&mut d[16..], f16x4_to_f32(u32x4_extend_high_u16x8(v)));
    })
}
