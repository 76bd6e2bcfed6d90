//! Element conversion from stored dtypes to what the GPU and the engine use (f16, f32, i32).
//!
//! Every float narrowing rounds to nearest, ties to even, like a GPU or PyTorch `.to()`:
//! values past f16's range become ±inf, tiny values become f16 subnormals or ±0, NaNs stay NaN
//! (sign and the payload's top bits kept, quiet bit set). The per-element functions are
//! branch-free so the loops vectorize (wasm simd128 in the release build).

use crate::dtype::DType;
use std::fmt;

/// What a tensor is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    F16,
    F32,
    I32,
}

impl Target {
    /// `"f16"`, `"f32"` or `"i32"` (the names used by the TypeScript side).
    pub fn from_name(name: &str) -> Option<Target> {
        match name {
            "f16" => Some(Target::F16),
            "f32" => Some(Target::F32),
            "i32" => Some(Target::I32),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::F16 => "f16",
            Target::F32 => "f32",
            Target::I32 => "i32",
        }
    }

    /// Bytes per output element.
    pub fn size(self) -> usize {
        match self {
            Target::F16 => 2,
            Target::F32 | Target::I32 => 4,
        }
    }
}

/// Why a conversion failed. Messages do not name the tensor; the caller adds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// No conversion from this dtype to this target (e.g. F32 → i32, or any U8 tensor).
    Unsupported { from: DType, to: Target },
    /// An I64 element does not fit in i32.
    OutOfRange { index: u64, value: i64 },
    /// `src`/`dst` lengths do not describe the same number of elements.
    Length {
        from: DType,
        to: Target,
        src_bytes: usize,
        dst_bytes: usize,
    },
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Unsupported { from, to } => write!(
                f,
                "cannot convert {} to {} (qvq reads BF16/F16/F32 as f16 or f32, and I32/I64 as i32)",
                from.name(),
                to.name()
            ),
            ConvertError::OutOfRange { index, value } => {
                write!(f, "element {index} is {value}, which does not fit in int32")
            }
            ConvertError::Length {
                from,
                to,
                src_bytes,
                dst_bytes,
            } => write!(
                f,
                "{src_bytes} bytes of {} do not convert to {dst_bytes} bytes of {}",
                from.name(),
                to.name()
            ),
        }
    }
}

impl std::error::Error for ConvertError {}

/// The simd128 bulk conversion (wasm release build) or nothing: returns what the scalar loop
/// still has to convert. Native builds and tests run the scalar loop over everything.
macro_rules! simd {
    ($f:ident, $src:expr, $dst:expr) => {{
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let r = crate::simd::$f($src, $dst);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        let r = ($src, $dst);
        r
    }};
}

/// Converts the little-endian elements in `src` (dtype `from`) into `dst` (little-endian
/// `to` elements). `dst.len()` must be `src.len() / from.size() * to.size()`.
pub fn convert(from: DType, to: Target, src: &[u8], dst: &mut [u8]) -> Result<(), ConvertError> {
    let n = src.len() / from.size();
    if !src.len().is_multiple_of(from.size()) || dst.len() != n * to.size() {
        return Err(ConvertError::Length {
            from,
            to,
            src_bytes: src.len(),
            dst_bytes: dst.len(),
        });
    }
    match (from, to) {
        (DType::F16, Target::F16) | (DType::F32, Target::F32) | (DType::I32, Target::I32) => {
            dst.copy_from_slice(src)
        }
        (DType::BF16, Target::F16) => {
            let (src, dst) = simd!(bf16_to_f16, src, dst);
            map(src, dst, |b: [u8; 2]| {
                f32_to_f16_bits((u16::from_le_bytes(b) as u32) << 16).to_le_bytes()
            })
        }
        (DType::F32, Target::F16) => {
            let (src, dst) = simd!(f32_to_f16, src, dst);
            map(src, dst, |b: [u8; 4]| {
                f32_to_f16_bits(u32::from_le_bytes(b)).to_le_bytes()
            })
        }
        (DType::BF16, Target::F32) => {
            let (src, dst) = simd!(bf16_to_f32, src, dst);
            map(src, dst, |b: [u8; 2]| {
                ((u16::from_le_bytes(b) as u32) << 16).to_le_bytes()
            })
        }
        (DType::F16, Target::F32) => {
            let (src, dst) = simd!(f16_to_f32, src, dst);
            map(src, dst, |b: [u8; 2]| {
                f16_to_f32_bits(u16::from_le_bytes(b)).to_le_bytes()
            })
        }
        (DType::I64, Target::I32) => return i64_to_i32(src, dst),
        _ => return Err(ConvertError::Unsupported { from, to }),
    }
    Ok(())
}

/// Applies `f` to each `I`-byte element of `src`, writing `O`-byte elements to `dst`.
#[inline(always)]
fn map<const I: usize, const O: usize>(src: &[u8], dst: &mut [u8], f: impl Fn([u8; I]) -> [u8; O]) {
    for (s, d) in src.chunks_exact(I).zip(dst.chunks_exact_mut(O)) {
        d.copy_from_slice(&f(s.try_into().expect("chunks_exact gives I bytes")));
    }
}

fn i64_to_i32(src: &[u8], dst: &mut [u8]) -> Result<(), ConvertError> {
    for (index, (s, d)) in src.chunks_exact(8).zip(dst.chunks_exact_mut(4)).enumerate() {
        let value = i64::from_le_bytes(s.try_into().expect("8 bytes"));
        let v = i32::try_from(value).map_err(|_| ConvertError::OutOfRange {
            index: index as u64,
            value,
        })?;
        d.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// f32 (as bits) → f16 (as bits), round to nearest even. Branch-free after F. Giesen's
/// `float_to_half_fast3_rtne` (public domain), with NaN payloads kept instead of canonicalized.
#[inline(always)]
pub fn f32_to_f16_bits(x: u32) -> u16 {
    const F16_OVERFLOW: u32 = (127 + 16) << 23; // 65536.0: at or above, inf (or NaN)
    const F16_MIN_NORMAL: u32 = 113 << 23; // 2^-14: below, f16 subnormal or 0
    const HALF: f32 = 0.5; // adding it aligns the f16 subnormal ulp (2^-24) to f32's at 0.5
    let sign = ((x >> 16) & 0x8000) as u16;
    let a = x & 0x7FFF_FFFF;
    // Normal: rebias the exponent and round off 13 mantissa bits; a carry out of the mantissa
    // correctly bumps the exponent, up to inf for [65520, 65536).
    let odd = (a >> 13) & 1;
    let normal = (a
        .wrapping_add(((15u32.wrapping_sub(127)) << 23).wrapping_add(0xFFF))
        .wrapping_add(odd)
        >> 13) as u16;
    // Subnormal: the float add rounds to nearest even at exactly the f16 subnormal ulp.
    let sub = ((f32::from_bits(a) + HALF)
        .to_bits()
        .wrapping_sub(HALF.to_bits())) as u16;
    let big = if a > 0x7F80_0000 {
        0x7E00 | ((a >> 13) & 0x3FF) as u16
    } else {
        0x7C00
    };
    let mag = if a >= F16_OVERFLOW {
        big
    } else if a < F16_MIN_NORMAL {
        sub
    } else {
        normal
    };
    sign | mag
}

/// f16 (as bits) → f32 (as bits), exact. Branch-free after F. Giesen's `half_to_float`.
#[inline(always)]
pub fn f16_to_f32_bits(h: u16) -> u32 {
    const SHIFTED_EXP: u32 = 0x7C00 << 13; // f16 exponent mask after the shift
    const MAGIC: f32 = f32::from_bits(113 << 23); // 2^-14, renormalizes subnormals
    let h = h as u32;
    let mut o = (h & 0x7FFF) << 13;
    let exp = o & SHIFTED_EXP;
    o = o.wrapping_add((127 - 15) << 23);
    let inf_nan = o.wrapping_add((128 - 16) << 23);
    let sub = (f32::from_bits(o.wrapping_add(1 << 23)) - MAGIC).to_bits();
    let mag = if exp == SHIFTED_EXP {
        inf_nan
    } else if exp == 0 {
        sub
    } else {
        o
    };
    mag | ((h & 0x8000) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent reference for f16 decoding: the textbook formula in f64.
    fn f16_value(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let e = ((h >> 10) & 0x1F) as i32;
        let m = (h & 0x3FF) as f64;
        sign * match e {
            0 => m * 2f64.powi(-24),
            31 if m == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
        }
    }

    /// Independent reference for f16 encoding: binary search over the non-negative f16 bit
    /// patterns (ordered like their values), treating 0x7C00 (inf) as 65536, the next grid point
    /// after 65504 — so ties there go to inf exactly as round-to-nearest-even overflow requires.
    fn f16_nearest(v: f64) -> u16 {
        let sign = if v.is_sign_negative() { 0x8000 } else { 0 };
        let a = v.abs();
        if a.is_nan() {
            return 0x7E00;
        }
        let val = |b: u16| if b == 0x7C00 { 65536.0 } else { f16_value(b) };
        if a >= 65536.0 {
            return sign | 0x7C00;
        }
        let (mut lo, mut hi) = (0u16, 0x7C00u16); // val(lo) <= a < val(hi) unless a == 0
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if val(mid) <= a { lo = mid } else { hi = mid }
        }
        let (dl, dh) = (a - val(lo), val(hi) - a);
        let pick = if dl < dh || (dl == dh && lo % 2 == 0) {
            lo
        } else {
            hi
        };
        sign | pick
    }

    fn conv<const O: usize>(from: DType, to: Target, src: &[u8]) -> Vec<[u8; O]> {
        let mut dst = vec![0u8; src.len() / from.size() * O];
        convert(from, to, src, &mut dst).unwrap();
        dst.chunks_exact(O).map(|c| c.try_into().unwrap()).collect()
    }

    #[test]
    fn bf16_to_f16_is_correct_for_all_65536_patterns() {
        let src: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        let out = conv::<2>(DType::BF16, Target::F16, &src);
        for (b, o) in (0..=u16::MAX).zip(out) {
            let got = u16::from_le_bytes(o);
            let v = f32::from_bits((b as u32) << 16) as f64;
            if v.is_nan() {
                // NaN stays NaN with its sign; the top 7 payload bits move up 3, quiet bit set.
                assert_eq!(
                    got,
                    (b & 0x8000) | 0x7E00 | ((b & 0x7F) << 3),
                    "bf16 {b:#06x}"
                );
            } else {
                assert_eq!(got, f16_nearest(v), "bf16 {b:#06x} = {v}");
            }
        }
    }

    #[test]
    fn f16_to_f32_is_exact_for_all_65536_patterns() {
        let src: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        let out = conv::<4>(DType::F16, Target::F32, &src);
        for (h, o) in (0..=u16::MAX).zip(out) {
            let got = f32::from_le_bytes(o);
            let want = f16_value(h);
            if want.is_nan() {
                assert!(got.is_nan(), "f16 {h:#06x}");
                assert_eq!(got.to_bits() >> 31, (h >> 15) as u32);
                // and converting back gives the same pattern (payload kept)
                assert_eq!(f32_to_f16_bits(got.to_bits()), h | 0x200);
            } else {
                assert_eq!(got as f64, want, "f16 {h:#06x}");
                assert_eq!(got.is_sign_negative(), h & 0x8000 != 0);
                assert_eq!(f32_to_f16_bits(got.to_bits()), h, "round trip of {h:#06x}");
            }
        }
    }

    /// SplitMix64: a tiny deterministic generator, so failures reproduce.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn f32_to_f16_matches_the_reference_on_random_and_edge_values() {
        let mut next = rng(7);
        let mut bits: Vec<u32> = (0..400_000).map(|_| next() as u32).collect();
        // Values near f16's range: exponents 100..=145 with random mantissas and signs.
        bits.extend((0..400_000).map(|_| {
            let r = next();
            ((r as u32) & 0x8000_0000)
                | (((100 + (r >> 32) % 46) as u32) << 23)
                | ((r >> 40) as u32 & 0x7F_FFFF)
        }));
        // Exact ties and their neighbours around every f16 grid point of one binade and the
        // subnormal range, plus overflow edges.
        for base in [
            0x3F80_0000u32,
            0x3380_0000,
            0x3300_0000,
            0x3880_0000,
            0x477F_E000,
        ] {
            for k in 0..64u32 {
                let t = base + (k << 13) + 0x1000;
                bits.extend([t - 1, t, t + 1]);
            }
        }
        bits.extend([
            0x477F_EFFF,
            0x477F_F000,
            0x477F_F001,
            0x7F80_0000,
            0xFF80_0000,
            0x7FC0_0000,
            0x0000_0001,
            0x8000_0000,
        ]);
        let src: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        let out = conv::<2>(DType::F32, Target::F16, &src);
        for (&b, o) in bits.iter().zip(out) {
            let got = u16::from_le_bytes(o);
            let v = f32::from_bits(b) as f64;
            if v.is_nan() {
                assert_eq!(got & 0x7E00, 0x7E00, "f32 {b:#010x}");
                assert_eq!(got & 0x8000, ((b >> 16) & 0x8000) as u16);
            } else {
                assert_eq!(got, f16_nearest(v), "f32 {b:#010x} = {v:e}");
            }
        }
    }

    #[test]
    fn bf16_to_f32_shifts_the_bits() {
        let out = conv::<4>(
            DType::BF16,
            Target::F32,
            &[0x80, 0x3F, 0x49, 0xC0, 0x80, 0x7F],
        );
        let got: Vec<f32> = out.into_iter().map(f32::from_le_bytes).collect();
        assert_eq!(got, [1.0, -3.140625, f32::INFINITY]);
    }

    #[test]
    fn same_type_reads_copy_bytes() {
        let src: Vec<u8> = (0..16).collect();
        for (from, to) in [
            (DType::F16, Target::F16),
            (DType::F32, Target::F32),
            (DType::I32, Target::I32),
        ] {
            let mut dst = vec![0u8; 16];
            convert(from, to, &src, &mut dst).unwrap();
            assert_eq!(dst, src);
        }
    }

    #[test]
    fn i64_to_i32_checks_the_range() {
        let vals = [0i64, -1, i32::MAX as i64, i32::MIN as i64, 151_655];
        let src: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let got: Vec<i32> = conv::<4>(DType::I64, Target::I32, &src)
            .into_iter()
            .map(i32::from_le_bytes)
            .collect();
        assert_eq!(got, [0, -1, i32::MAX, i32::MIN, 151_655]);
        for bad in [i32::MAX as i64 + 1, i32::MIN as i64 - 1, i64::MAX] {
            let src: Vec<u8> = [7i64, bad].iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut dst = vec![0u8; 8];
            let e = convert(DType::I64, Target::I32, &src, &mut dst).unwrap_err();
            assert_eq!(
                e,
                ConvertError::OutOfRange {
                    index: 1,
                    value: bad
                }
            );
            assert_eq!(
                e.to_string(),
                format!("element 1 is {bad}, which does not fit in int32")
            );
        }
    }

    #[test]
    fn rejects_unsupported_pairs_and_bad_lengths() {
        let mut dst = [0u8; 8];
        for (from, to) in [
            (DType::F32, Target::I32),
            (DType::I32, Target::F32),
            (DType::U8, Target::F32),
            (DType::F64, Target::F32),
        ] {
            let n = 8 / to.size() * from.size();
            let e = convert(from, to, &vec![0u8; n], &mut dst[..8]).unwrap_err();
            assert_eq!(e, ConvertError::Unsupported { from, to });
            assert!(e.to_string().contains(from.name()));
        }
        let e = convert(DType::BF16, Target::F32, &[0u8; 4], &mut dst[..4]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "4 bytes of BF16 do not convert to 4 bytes of f32"
        );
        assert!(convert(DType::BF16, Target::F32, &[0u8; 3], &mut dst[..4]).is_err());
    }
}
