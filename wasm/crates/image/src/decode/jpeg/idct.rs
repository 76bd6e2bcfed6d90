//! The inverse DCT of libjpeg's `jidctint.c` ("ISLOW", `JDCT_ISLOW`), the method Pillow leaves
//! libjpeg-turbo on: a separable integer IDCT with 13-bit constants, columns first with 2 extra
//! bits of precision kept between the passes, every intermediate rounded as libjpeg rounds it.
//! libjpeg-turbo's SIMD versions give the same samples for every coefficient a real encoder
//! writes, so this is PIL's output bit for bit.

/// 13-bit fixed-point constants, `round(x * 2^13)` as libjpeg tabulates them.
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;
const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;

/// `x / 2^n` rounded half up, libjpeg's `DESCALE` (an arithmetic shift).
#[inline(always)]
fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// libjpeg's post-IDCT range limit (`IDCT_range_limit`, indexed `& RANGE_MASK`): a value v in
/// -512..=511 becomes `clamp(v + 128, 0, 255)`; values beyond wrap modulo 1024 rather than
/// saturate, which only corrupt coefficients reach.
static RANGE_LIMIT: [u8; 1024] = {
    let mut t = [0u8; 1024];
    let mut i = 0;
    while i < 1024 {
        t[i] = match i {
            0..128 => (i + 128) as u8,
            128..512 => 255,
            512..896 => 0,
            _ => (i - 896) as u8,
        };
        i += 1;
    }
    t
};

#[inline(always)]
fn limit(v: i64) -> u8 {
    RANGE_LIMIT[(v as i32 & 1023) as usize]
}

/// The even and odd halves of one 1-D 8-point IDCT of `x` (already dequantized), shared by both
/// passes: returns the eight outputs before descaling, in output order 0..8.
#[inline(always)]
fn idct_1d(x: [i64; 8], even_dc: [i64; 2]) -> [i64; 8] {
    // Even part: x[0], x[2], x[4], x[6] (x[0] and x[4] arrive pre-shifted in `even_dc`).
    let z1 = (x[2] + x[6]) * FIX_0_541196100;
    let tmp2 = z1 + x[6] * -FIX_1_847759065;
    let tmp3 = z1 + x[2] * FIX_0_765366865;
    let [tmp0, tmp1] = even_dc;
    let tmp10 = tmp0 + tmp3;
    let tmp13 = tmp0 - tmp3;
    let tmp11 = tmp1 + tmp2;
    let tmp12 = tmp1 - tmp2;

    // Odd part: x[7], x[5], x[3], x[1].
    let (t0, t1, t2, t3) = (x[7], x[5], x[3], x[1]);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    let t0 = t0 * FIX_0_298631336;
    let t1 = t1 * FIX_2_053119869;
    let t2 = t2 * FIX_3_072711026;
    let t3 = t3 * FIX_1_501321110;
    let z1 = z1 * -FIX_0_899976223;
    let z2 = z2 * -FIX_2_562915447;
    let z3 = z3 * -FIX_1_961570560 + z5;
    let z4 = z4 * -FIX_0_390180644 + z5;
    let t0 = t0 + z1 + z3;
    let t1 = t1 + z2 + z4;
    let t2 = t2 + z2 + z3;
    let t3 = t3 + z1 + z4;

    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
}

/// Inputs of at most this magnitude keep every intermediate of [`idct_lanes`] inside i32: its
/// largest output is under 178,219 times its largest input, and 2^13 * 178,219 < 2^31.
const NARROW_MAX: u32 = 1 << 13;

/// 8x8 samples from one block: `coef` (64,) in natural (row-major) order, `quant` (64,) the
/// component's quantization table in the same order; writes rows of 8 bytes `stride` apart into
/// `out`. Runs the passes eight columns (then rows) at a time in i32, which the compiler
/// vectorizes; a pass whose inputs could overflow i32 runs libjpeg's 64-bit arithmetic instead
/// ([`pass1_wide`], [`pass2_wide`]), so the result is the same either way.
pub(super) fn idct_islow(coef: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    // (row k, column l): i16 * u16 always fits in i32.
    let x: [[i32; 8]; 8] = std::array::from_fn(|k| {
        std::array::from_fn(|l| coef[k * 8 + l] as i32 * quant[k * 8 + l] as i32)
    });
    if max_abs(&x) > NARROW_MAX {
        let ws = pass1_wide(coef, quant);
        return pass2_wide(&ws, out, stride);
    }
    // Pass 1, columns as lanes: ws (row k, column l).
    let mut ws = [[0i32; 8]; 8];
    idct_lanes(&x, CONST_BITS - PASS1_BITS, &mut ws);
    if max_abs(&ws) > NARROW_MAX {
        let flat: [i32; 64] = std::array::from_fn(|i| ws[i / 8][i % 8]);
        return pass2_wide(&flat, out, stride);
    }
    // Pass 2, rows as lanes: input k of row l is ws[l][k]; o[k][l] is row l's column k.
    let t: [[i32; 8]; 8] = std::array::from_fn(|k| std::array::from_fn(|l| ws[l][k]));
    let mut o = [[0i32; 8]; 8];
    idct_lanes(&t, CONST_BITS + PASS1_BITS + 3, &mut o);
    for l in 0..8 {
        let row: [u8; 8] = std::array::from_fn(|k| limit_i32(o[k][l]));
        out[l * stride..l * stride + 8].copy_from_slice(&row);
    }
}

fn max_abs(x: &[[i32; 8]; 8]) -> u32 {
    x.iter().flatten().fold(0, |m, v| m.max(v.unsigned_abs()))
}

/// [`limit`] in arithmetic the compiler can vectorize: wrap to -512..=511, then clamp + 128.
#[inline(always)]
fn limit_i32(v: i32) -> u8 {
    ((((v + 512) & 1023) - 512 + 128).clamp(0, 255)) as u8
}

/// The 1-D IDCT of eight lanes at once: `x[k]` holds input k of every lane, `out[k]` gets
/// output k descaled by `shift`. Inputs are at most [`NARROW_MAX`] in magnitude.
#[inline(always)]
fn idct_lanes(x: &[[i32; 8]; 8], shift: u32, out: &mut [[i32; 8]; 8]) {
    let round = 1 << (shift - 1);
    let c = |f: i64| f as i32;
    for l in 0..8 {
        // Even part.
        let z1 = (x[2][l] + x[6][l]) * c(FIX_0_541196100);
        let tmp2 = z1 - x[6][l] * c(FIX_1_847759065);
        let tmp3 = z1 + x[2][l] * c(FIX_0_765366865);
        let tmp0 = (x[0][l] + x[4][l]) << CONST_BITS;
        let tmp1 = (x[0][l] - x[4][l]) << CONST_BITS;
        let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
        let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
        // Odd part.
        let (t0, t1, t2, t3) = (x[7][l], x[5][l], x[3][l], x[1][l]);
        let z5 = (t0 + t1 + t2 + t3) * c(FIX_1_175875602);
        let z1 = (t0 + t3) * -c(FIX_0_899976223);
        let z2 = (t1 + t2) * -c(FIX_2_562915447);
        let z3 = (t0 + t2) * -c(FIX_1_961570560) + z5;
        let z4 = (t1 + t3) * -c(FIX_0_390180644) + z5;
        let t0 = t0 * c(FIX_0_298631336) + z1 + z3;
        let t1 = t1 * c(FIX_2_053119869) + z2 + z4;
        let t2 = t2 * c(FIX_3_072711026) + z2 + z3;
        let t3 = t3 * c(FIX_1_501321110) + z1 + z4;
        out[0][l] = (tmp10 + t3 + round) >> shift;
        out[7][l] = (tmp10 - t3 + round) >> shift;
        out[1][l] = (tmp11 + t2 + round) >> shift;
        out[6][l] = (tmp11 - t2 + round) >> shift;
        out[2][l] = (tmp12 + t1 + round) >> shift;
        out[5][l] = (tmp12 - t1 + round) >> shift;
        out[3][l] = (tmp13 + t0 + round) >> shift;
        out[4][l] = (tmp13 - t0 + round) >> shift;
    }
}

/// libjpeg's pass 1 in 64-bit arithmetic: the workspace, (row, column) row-major, stored as
/// `int` (truncated, as C stores it).
fn pass1_wide(coef: &[i16; 64], quant: &[u16; 64]) -> [i32; 64] {
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let x: [i64; 8] =
            std::array::from_fn(|r| coef[r * 8 + col] as i64 * quant[r * 8 + col] as i64);
        if x[1..].iter().all(|&v| v == 0) {
            // A column of only DC: every output is it scaled up (what the full pass computes too).
            let dc = (x[0] << PASS1_BITS) as i32;
            for r in 0..8 {
                ws[r * 8 + col] = dc;
            }
            continue;
        }
        let even = [(x[0] + x[4]) << CONST_BITS, (x[0] - x[4]) << CONST_BITS];
        let y = idct_1d(x, even);
        for r in 0..8 {
            ws[r * 8 + col] = descale(y[r], CONST_BITS - PASS1_BITS) as i32;
        }
    }
    ws
}

/// libjpeg's pass 2 in 64-bit arithmetic, rows of `ws` into rows of `out`.
fn pass2_wide(ws: &[i32; 64], out: &mut [u8], stride: usize) {
    for (r, row) in ws.chunks_exact(8).enumerate() {
        let o = &mut out[r * stride..r * stride + 8];
        let x: [i64; 8] = std::array::from_fn(|c| row[c] as i64);
        if x[1..].iter().all(|&v| v == 0) {
            o.fill(limit(descale(x[0], PASS1_BITS + 3)));
            continue;
        }
        let even = [(x[0] + x[4]) << CONST_BITS, (x[0] - x[4]) << CONST_BITS];
        let y = idct_1d(x, even);
        for c in 0..8 {
            o[c] = limit(descale(y[c], CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// [`idct_islow`] of a block whose AC coefficients are all zero (most blocks of a photo's
/// chroma): one flat value, the same the full IDCT computes through its shortcuts.
pub(super) fn idct_dc_only(dc: i16, quant: u16, out: &mut [u8], stride: usize) {
    let ws = ((dc as i64 * quant as i64) << PASS1_BITS) as i32;
    let v = limit(descale(ws as i64, PASS1_BITS + 3));
    for r in 0..8 {
        out[r * stride..r * stride + 8].fill(v);
    }
}

/// [`idct_islow`], or [`idct_dc_only`] where the AC coefficients are all zero.
pub(super) fn idct_block(coef: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    if coef[1..].iter().all(|&c| c == 0) {
        idct_dc_only(coef[0], quant[0], out, stride);
    } else {
        idct_islow(coef, quant, out, stride);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(coef: &[i16; 64], quant: &[u16; 64]) -> [u8; 64] {
        let mut out = [0u8; 64];
        idct_islow(coef, quant, &mut out, 8);
        out
    }

    #[test]
    fn range_limit_clamps_then_wraps_like_libjpeg() {
        assert_eq!(
            [limit(-128), limit(0), limit(127), limit(128)],
            [0, 128, 255, 255]
        );
        assert_eq!(
            [limit(511), limit(512), limit(-129), limit(-512)],
            [255, 0, 0, 0]
        );
        assert_eq!([limit(-513), limit(1024 + 5)], [255, 133]);
    }

    #[test]
    fn idct_islow_lanes_equal_libjpegs_64_bit_passes_on_random_blocks() {
        // Coefficient scales from photo-like to far past NARROW_MAX (both paths taken), sparse
        // and dense blocks, 8- and 16-bit quantization.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..20_000 {
            let scale = [4, 64, 1024, 32767][i % 4] as u64;
            let density = 1 + rnd() % 64;
            let coef: [i16; 64] = std::array::from_fn(|_| {
                if rnd() % 64 < density {
                    ((rnd() % (2 * scale + 1)) as i64 - scale as i64) as i16
                } else {
                    0
                }
            });
            let qmax = if i % 3 == 0 { 65535 } else { 255 };
            let quant: [u16; 64] = std::array::from_fn(|_| 1 + (rnd() % qmax) as u16);
            let mut wide = [0u8; 64];
            pass2_wide(&pass1_wide(&coef, &quant), &mut wide, 8);
            assert_eq!(run(&coef, &quant), wide, "block {i}");
        }
    }

    #[test]
    fn limit_i32_is_the_range_limit_table() {
        for v in -5000..5000 {
            assert_eq!(limit_i32(v), limit(v as i64), "{v}");
        }
    }

    #[test]
    fn idct_dc_only_is_idct_islow_of_a_dc_block() {
        for (dc, q) in [
            (0, 1),
            (100, 2),
            (-1023, 1),
            (-300, 7),
            (7, 255),
            (20000, 40000),
        ] {
            let mut coef = [0i16; 64];
            coef[0] = dc;
            let mut quant = [3u16; 64];
            quant[0] = q;
            let mut flat = [0u8; 64];
            idct_dc_only(dc, q, &mut flat, 8);
            assert_eq!(flat, run(&coef, &quant), "{dc} * {q}");
        }
    }

    #[test]
    fn idct_islow_of_a_flat_block_is_the_dc_over_8() {
        let mut coef = [0i16; 64];
        coef[0] = 100; // 100 * 2 / 8 = 25 above mid-grey
        let mut quant = [1u16; 64];
        quant[0] = 2;
        assert_eq!(run(&coef, &quant), [153; 64]);
    }

    #[test]
    fn idct_islow_is_within_one_level_of_the_exact_idct() {
        // ISLOW's 13-bit constants keep it within a level of the real-valued IDCT (IEEE 1180).
        let mut coef = [0i16; 64];
        for (k, c) in coef.iter_mut().enumerate() {
            *c = ((k as i32 * 37 + 11) % 41 - 20) as i16;
        }
        let quant: [u16; 64] = std::array::from_fn(|k| 1 + (k % 5) as u16);
        let out = run(&coef, &quant);
        let a = |u: usize| if u == 0 { (0.125f64).sqrt() } else { 0.5 };
        for y in 0..8 {
            for x in 0..8 {
                let mut s = 0.0;
                for v in 0..8 {
                    for u in 0..8 {
                        let f = (coef[v * 8 + u] as f64) * quant[v * 8 + u] as f64;
                        s += a(u)
                            * a(v)
                            * f
                            * (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos()
                            * (((2 * y + 1) * v) as f64 * std::f64::consts::PI / 16.0).cos();
                    }
                }
                let exact = (s + 128.0).round().clamp(0.0, 255.0);
                assert!((out[y * 8 + x] as f64 - exact).abs() <= 1.0, "({y}, {x})");
            }
        }
    }
}
