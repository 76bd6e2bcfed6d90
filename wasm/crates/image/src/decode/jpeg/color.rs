//! Full-resolution component rows → RGB, as PIL's `Image.open(f).convert("RGB")` gets them:
//! libjpeg-turbo's `jdcolor.c` turns YCbCr into RGB (and YCCK into CMYK) with 16-bit fixed-point
//! tables; PIL reads CMYK as Adobe-inverted (`CMYK;I`) and converts it with its own `cmyk2rgb`.

/// What the components hold, as libjpeg guesses it from the markers (`default_decompress_parms`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ColorSpace {
    Gray,
    Rgb,
    YCbCr,
    Cmyk,
    Ycck,
}

impl ColorSpace {
    /// libjpeg's guess for `components` components: a JFIF APP0 means YCbCr, else an Adobe APP14
    /// transform (0 plain, 1 YCbCr, 2 YCCK; other values as YCbCr / YCCK), else component ids
    /// 'R', 'G', 'B' mean RGB; 4 components without an Adobe marker are plain CMYK.
    pub fn guess(ids: &[u8], jfif: bool, adobe: Option<u8>) -> ColorSpace {
        match ids.len() {
            1 => ColorSpace::Gray,
            3 if jfif => ColorSpace::YCbCr,
            3 => match adobe {
                Some(0) => ColorSpace::Rgb,
                Some(_) => ColorSpace::YCbCr,
                None if ids == b"RGB" => ColorSpace::Rgb,
                None => ColorSpace::YCbCr,
            },
            _ => match adobe {
                None | Some(0) => ColorSpace::Cmyk,
                Some(_) => ColorSpace::Ycck,
            },
        }
    }
}

const SCALEBITS: u32 = 16;
const ONE_HALF: i32 = 1 << (SCALEBITS - 1);
/// `round(x * 2^16)` of jdcolor.c's coefficients.
const FIX_1_40200: i32 = 91881;
const FIX_1_77200: i32 = 116130;
const FIX_0_71414: i32 = 46802;
const FIX_0_34414: i32 = 22554;

/// libjpeg's YCbCr → RGB of one sample. `build_ycc_rgb_table` tabulates these terms per chroma
/// value: R's and B's offsets rounded to integers, G's two terms kept in 16-bit fixed point (with
/// the rounding half in Cb's) and rounded once summed. Computing them here instead gives the same
/// integers and lets the compiler vectorize the row (a table lookup would not).
#[inline(always)]
fn ycc_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (y as i32, cb as i32 - 128, cr as i32 - 128);
    [
        clamp(y + ((FIX_1_40200 * cr + ONE_HALF) >> SCALEBITS)),
        clamp(y + ((-FIX_0_34414 * cb + ONE_HALF - FIX_0_71414 * cr) >> SCALEBITS)),
        clamp(y + ((FIX_1_77200 * cb + ONE_HALF) >> SCALEBITS)),
    ]
}

#[inline(always)]
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// PIL's CMYK → RGB of libjpeg's raw (Adobe-inverted) CMYK samples: `CMYK;I` stores
/// `255 - sample`, then `cmyk2rgb` computes `nk - nk * ink / 255` with `nk = 255 - K`.
#[inline(always)]
fn cmyk_rgb(raw: [u8; 4]) -> [u8; 3] {
    let nk = raw[3] as i32; // 255 - (255 - k)
    let muldiv255 = |a: i32| {
        let t = a * nk + 128;
        ((t >> 8) + t) >> 8
    };
    [0, 1, 2].map(|c| clamp(nk - muldiv255(255 - raw[c] as i32)))
}

/// One output row: `rows` the full-resolution rows of the components (each at least
/// `out.len() / 3` samples) → `out` (width, 3) RGB.
pub(super) fn convert_row(space: ColorSpace, rows: &[&[u8]], out: &mut [u8]) {
    let w = out.len() / 3;
    let px = out.chunks_exact_mut(3);
    match space {
        ColorSpace::Gray => {
            for (o, &g) in px.zip(&rows[0][..w]) {
                o.fill(g);
            }
        }
        ColorSpace::Rgb => {
            let (r, g, b) = (&rows[0][..w], &rows[1][..w], &rows[2][..w]);
            for (((o, &r), &g), &b) in px.zip(r).zip(g).zip(b) {
                o.copy_from_slice(&[r, g, b]);
            }
        }
        ColorSpace::YCbCr => {
            let (y, cb, cr) = (&rows[0][..w], &rows[1][..w], &rows[2][..w]);
            for (((o, &y), &cb), &cr) in px.zip(y).zip(cb).zip(cr) {
                o.copy_from_slice(&ycc_rgb(y, cb, cr));
            }
        }
        ColorSpace::Cmyk => {
            for (x, o) in px.enumerate() {
                o.copy_from_slice(&cmyk_rgb([rows[0][x], rows[1][x], rows[2][x], rows[3][x]]));
            }
        }
        ColorSpace::Ycck => {
            for (x, o) in px.enumerate() {
                // ycck_cmyk_convert: C, M, Y = 255 - RGB of the YCC part, K as stored.
                let rgb = ycc_rgb(rows[0][x], rows[1][x], rows[2][x]);
                let [c, m, y] = rgb.map(|v| 255 - v);
                o.copy_from_slice(&cmyk_rgb([c, m, y, rows[3][x]]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycc_rgb_matches_libjpeg_turbo() {
        // build_ycc_rgb_table's arithmetic worked through in Python for these (Y, Cb, Cr).
        assert_eq!(ycc_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(ycc_rgb(0, 0, 255), [178, 0, 0]);
        assert_eq!(ycc_rgb(255, 255, 0), [76, 255, 255]);
        assert_eq!(ycc_rgb(100, 90, 200), [201, 62, 33]);
    }

    #[test]
    fn ycc_rgb_equals_libjpegs_tables_for_every_chroma_pair() {
        // build_ycc_rgb_table's four tables, then ycc_rgb_convert's sums, for all (Cb, Cr).
        let table =
            |f: i32, half: i32| -> Vec<i32> { (0..256).map(|i| f * (i - 128) + half).collect() };
        let cr_r: Vec<i32> = table(FIX_1_40200, ONE_HALF)
            .iter()
            .map(|v| v >> 16)
            .collect();
        let cb_b: Vec<i32> = table(FIX_1_77200, ONE_HALF)
            .iter()
            .map(|v| v >> 16)
            .collect();
        let (cr_g, cb_g) = (table(-FIX_0_71414, 0), table(-FIX_0_34414, ONE_HALF));
        for y in [0, 1, 77, 128, 200, 254, 255] {
            for cb in 0..256 {
                for cr in 0..256 {
                    let g = y + ((cb_g[cb] + cr_g[cr]) >> 16);
                    let want = [y + cr_r[cr], g, y + cb_b[cb]].map(clamp);
                    assert_eq!(ycc_rgb(y as u8, cb as u8, cr as u8), want, "{y} {cb} {cr}");
                }
            }
        }
    }

    #[test]
    fn cmyk_rgb_is_pils_cmyk_i_then_convert() {
        // Image.frombytes("CMYK", (1, 1), bytes(255 - s for s in raw)).convert("RGB")
        assert_eq!(cmyk_rgb([255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(cmyk_rgb([0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(cmyk_rgb([200, 100, 50, 180]), [141, 71, 35]);
    }

    #[test]
    fn guess_follows_default_decompress_parms() {
        assert_eq!(ColorSpace::guess(&[1], false, None), ColorSpace::Gray);
        assert_eq!(
            ColorSpace::guess(&[1, 2, 3], false, Some(0)),
            ColorSpace::Rgb
        );
        assert_eq!(
            ColorSpace::guess(&[1, 2, 3], true, Some(0)),
            ColorSpace::YCbCr
        );
        assert_eq!(ColorSpace::guess(b"RGB", false, None), ColorSpace::Rgb);
        assert_eq!(
            ColorSpace::guess(&[0, 1, 2], false, None),
            ColorSpace::YCbCr
        );
        assert_eq!(
            ColorSpace::guess(&[1, 2, 3, 4], false, None),
            ColorSpace::Cmyk
        );
        assert_eq!(
            ColorSpace::guess(&[1, 2, 3, 4], false, Some(2)),
            ColorSpace::Ycck
        );
        assert_eq!(
            ColorSpace::guess(&[1, 2, 3, 4], false, Some(1)),
            ColorSpace::Ycck
        );
    }
}
