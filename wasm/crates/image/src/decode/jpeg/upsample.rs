//! Component planes → full-resolution rows, choosing each component's method exactly as
//! libjpeg-turbo's `jdsample.c` does with Pillow's settings (`do_fancy_upsampling` on, no DCT
//! scaling): the "fancy" triangle filters for 2:1 horizontally (`h2v1`), vertically (`h1v2`) and
//! both (`h2v2`), plain replication for the other integer ratios and for planes only 1 or 2
//! samples wide, and libjpeg's edges: a plane's real extent is its downsampled size
//! `ceil(image size * factor / max factor)`, the row above the first is the first, the row below
//! the last is the last, and the filters stop at the last real column.

use super::corrupt;
use crate::error::ImageError;

/// One component's decoded samples: (rows, stride) u8, of which `width` x `height` are real.
pub(super) struct Plane {
    pub data: Vec<u8>,
    pub stride: usize,
    /// libjpeg's `downsampled_width` / `downsampled_height`.
    pub width: usize,
    pub height: usize,
}

impl Plane {
    fn row(&self, y: usize) -> &[u8] {
        &self.data[y * self.stride..y * self.stride + self.width]
    }
}

/// How one component reaches the output resolution (`jinit_upsampler`'s choice).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Method {
    Full,
    H2V1Fancy,
    H1V2Fancy,
    H2V2Fancy,
    /// Each sample repeated h times across and v times down.
    Replicate {
        h: usize,
        v: usize,
    },
}

impl Method {
    /// The method for a component sampled (h, v) in a frame whose largest factors are
    /// (max_h, max_v), `width` samples wide once decoded; refused where libjpeg refuses.
    pub fn choose(
        (h, v): (usize, usize),
        (max_h, max_v): (usize, usize),
        width: usize,
    ) -> Result<Method, ImageError> {
        Ok(if (h, v) == (max_h, max_v) {
            Method::Full
        } else if h * 2 == max_h && v == max_v {
            if width > 2 {
                Method::H2V1Fancy
            } else {
                Method::Replicate { h: 2, v: 1 }
            }
        } else if h == max_h && v * 2 == max_v {
            Method::H1V2Fancy
        } else if h * 2 == max_h && v * 2 == max_v {
            if width > 2 {
                Method::H2V2Fancy
            } else {
                Method::Replicate { h: 2, v: 2 }
            }
        } else if max_h % h == 0 && max_v % v == 0 {
            Method::Replicate {
                h: max_h / h,
                v: max_v / v,
            }
        } else {
            return Err(corrupt(format!(
                "a component sampled {h}x{v} against a largest {max_h}x{max_v} is not an \
                 integer ratio, which libjpeg (and so PIL) does not decode either"
            )));
        })
    }

    /// Output row `y` of `plane` at full resolution: the plane's own row for [`Method::Full`],
    /// else written into `scratch` (at least the image width rounded up to whole MCUs, so the
    /// filters write whole pairs). `y` is below the image height; the first image-width samples
    /// of the result are the row.
    pub fn row<'a>(self, plane: &'a Plane, y: usize, scratch: &'a mut [u8]) -> &'a [u8] {
        match self {
            Method::Full => return plane.row(y),
            Method::Replicate { h, v } => {
                let src = plane.row(y / v);
                for (chunk, &s) in scratch.chunks_exact_mut(h).zip(src) {
                    chunk.fill(s);
                }
            }
            Method::H2V1Fancy => h2v1(plane.row(y), scratch),
            Method::H1V2Fancy => {
                let (near, far, bias) = context(plane, y);
                for ((o, &n), &f) in scratch.iter_mut().zip(near).zip(far) {
                    *o = ((n as u32 * 3 + f as u32 + bias) >> 2) as u8;
                }
            }
            Method::H2V2Fancy => {
                let (near, far, _) = context(plane, y);
                h2v2(near, far, scratch);
            }
        }
        scratch
    }
}

/// For output row `y` of a vertically doubled plane: the nearer input row, the further one
/// (above for even rows, below for odd ones, clamped to the real rows) and `h1v2`'s rounding
/// bias (1 above, 2 below).
fn context(plane: &Plane, y: usize) -> (&[u8], &[u8], u32) {
    let iy = y / 2;
    if y.is_multiple_of(2) {
        (plane.row(iy), plane.row(iy.saturating_sub(1)), 1)
    } else {
        (plane.row(iy), plane.row((iy + 1).min(plane.height - 1)), 2)
    }
}

/// `h2v1_fancy_upsample`: each sample becomes two, 3/4 of it and 1/4 of its neighbour on that
/// side, rounded alternately down (+1) and up (+2); the outermost outputs are the samples.
/// `input` has at least 3 samples, `out` room for twice as many.
fn h2v1(input: &[u8], out: &mut [u8]) {
    let n = input.len();
    let out = &mut out[..2 * n];
    let at = |i: usize| input[i] as u32;
    out[0] = input[0];
    out[1] = ((at(0) * 3 + at(1) + 2) >> 2) as u8;
    // Each middle sample from its window (previous, itself, next): no value carried between
    // iterations, so the loop vectorizes.
    for (w, pair) in input.windows(3).zip(out[2..2 * n - 2].chunks_exact_mut(2)) {
        let (prev, this, next) = (w[0] as u32, w[1] as u32 * 3, w[2] as u32);
        pair[0] = ((this + prev + 1) >> 2) as u8;
        pair[1] = ((this + next + 2) >> 2) as u8;
    }
    out[2 * n - 2] = ((at(n - 1) * 3 + at(n - 2) + 1) >> 2) as u8;
    out[2 * n - 1] = input[n - 1];
}

/// `h2v2_fancy_upsample`: column sums `3 * near + far`, then the same triangle across with
/// 9/16, 3/16, 3/16, 1/16 weights, rounded alternately +8 and +7. Rows of at least 3 samples,
/// `out` room for twice as many.
fn h2v2(near: &[u8], far: &[u8], out: &mut [u8]) {
    let n = near.len();
    let out = &mut out[..2 * n];
    let sum = |i: usize| near[i] as u32 * 3 + far[i] as u32;
    out[0] = ((sum(0) * 4 + 8) >> 4) as u8;
    out[1] = ((sum(0) * 3 + sum(1) + 7) >> 4) as u8;
    // Each middle pair from its windows of both rows, the three column sums recomputed rather
    // than carried between iterations, so the loop vectorizes.
    let windows = near.windows(3).zip(far.windows(3));
    for ((a, b), pair) in windows.zip(out[2..2 * n - 2].chunks_exact_mut(2)) {
        let s = |j: usize| a[j] as u32 * 3 + b[j] as u32;
        let this = s(1) * 3;
        pair[0] = ((this + s(0) + 8) >> 4) as u8;
        pair[1] = ((this + s(2) + 7) >> 4) as u8;
    }
    out[2 * n - 2] = ((sum(n - 1) * 3 + sum(n - 2) + 8) >> 4) as u8;
    out[2 * n - 1] = ((sum(n - 1) * 4 + 7) >> 4) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(rows: &[&[u8]]) -> Plane {
        Plane {
            data: rows.concat(),
            stride: rows[0].len(),
            width: rows[0].len(),
            height: rows.len(),
        }
    }

    #[test]
    fn choose_follows_jinit_upsampler() {
        let m = |hv, max, w| Method::choose(hv, max, w).unwrap();
        assert_eq!(m((2, 2), (2, 2), 5), Method::Full);
        assert_eq!(m((1, 1), (2, 1), 3), Method::H2V1Fancy);
        assert_eq!(m((1, 1), (2, 1), 2), Method::Replicate { h: 2, v: 1 });
        assert_eq!(m((1, 1), (1, 2), 1), Method::H1V2Fancy);
        assert_eq!(m((1, 1), (2, 2), 3), Method::H2V2Fancy);
        assert_eq!(m((1, 1), (2, 2), 2), Method::Replicate { h: 2, v: 2 });
        assert_eq!(m((1, 1), (4, 2), 9), Method::Replicate { h: 4, v: 2 });
        assert_eq!(m((1, 2), (2, 4), 9), Method::H2V2Fancy);
        assert!(Method::choose((2, 1), (3, 1), 9).is_err());
    }

    #[test]
    fn h2v1_weights_three_quarters_near_and_keeps_the_ends() {
        let p = plane(&[&[0, 100, 200]]);
        let mut out = [0u8; 8];
        // (3*0+100+2)/4, (300+0+1)/4, (300+200+2)/4, (600+100+1)/4
        assert_eq!(
            Method::H2V1Fancy.row(&p, 0, &mut out)[..6],
            [0, 25, 75, 125, 175, 200]
        );
    }

    #[test]
    fn h1v2_uses_the_row_above_then_below_clamped_at_the_edges() {
        let p = plane(&[&[0], &[100]]);
        let rows: Vec<u8> = (0..4)
            .map(|y| {
                let mut o = [0u8];
                Method::H1V2Fancy.row(&p, y, &mut o)[0]
            })
            .collect();
        // (0*3+0+1)/4, (0*3+100+2)/4, (300+0+1)/4, (300+100+2)/4
        assert_eq!(rows, [0, 25, 75, 100]);
    }

    #[test]
    fn h2v2_rounds_with_8_then_7() {
        let p = plane(&[&[0, 16, 32], &[64, 80, 96]]);
        let mut out = [0u8; 6];
        let out = Method::H2V2Fancy.row(&p, 1, &mut out);
        // column sums for row 1 (near row 0, far row 1): 64, 128, 192
        // [(256+8)/16, (192+128+7)/16, (384+64+8)/16, (384+192+7)/16, (576+128+8)/16, (768+7)/16]
        assert_eq!(out, [16, 20, 28, 36, 44, 48]);
        let mut rep = [0u8; 9];
        let rep = Method::Replicate { h: 3, v: 2 }.row(&p, 2, &mut rep);
        assert_eq!(rep, [64, 64, 64, 80, 80, 80, 96, 96, 96]);
    }
}
