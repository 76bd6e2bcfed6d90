//! JPEG through `zune-jpeg`: baseline, progressive, restart intervals, the usual chroma
//! subsampling, grayscale, CMYK and YCCK. zune-jpeg's CMYK → RGB (`c * k / 255` on Adobe-inverted
//! samples) is the same arithmetic as PIL's `CMYK;I` read followed by `convert("RGB")`. The IDCT,
//! chroma upsampling and YCbCr → RGB rounding are not libjpeg-turbo's, so pixels may differ from
//! PIL's by a level or two (the tests bound this).
//!
//! Two legal layouts zune-jpeg 0.5 decodes to garbage (or refuses) go to `jpeg-decoder` instead,
//! which decodes them within the same few levels of PIL: a chroma component sampled more finely
//! than luma (e.g. `cjpeg -sample 1x1,2x2,2x2`), and a subsampled baseline image whose components
//! come in separate scans (non-interleaved). [`layout`] reads that from the headers.

use super::{Format, RgbImage, check_dimensions};
use crate::error::ImageError;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

fn corrupt(e: impl std::fmt::Display) -> ImageError {
    ImageError::Corrupt {
        format: "JPEG",
        detail: e.to_string(),
    }
}

pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        // Our own pixel limit applies below; the per-side limits only need to admit any JPEG.
        .set_max_width(u16::MAX as usize)
        .set_max_height(u16::MAX as usize)
        // Strict: a truncated or corrupt stream is an error, as in PIL, not a grey bottom half.
        .set_strict_mode(true);
    if layout(bytes).is_some_and(|l| l.zune_misreads()) {
        return decode_other(bytes);
    }
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| corrupt("no frame header"))?;
    check_dimensions(Format::Jpeg, width as u64, height as u64)?;
    let pixels = decoder.decode().map_err(corrupt)?;
    Ok(RgbImage::new(width, height, pixels))
}

/// (width, height) from the frame header.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize), ImageError> {
    let l = layout(bytes).ok_or_else(|| corrupt("no frame header before the first scan"))?;
    Ok((l.width, l.height))
}

/// What [`layout`] reads of a JPEG's frame and first scan headers.
#[derive(Debug, PartialEq)]
pub(crate) struct Layout {
    width: usize,
    height: usize,
    /// Each component's (horizontal, vertical) sampling factors, luma first.
    sampling: Vec<(u8, u8)>,
    /// Baseline or extended sequential (SOF0 / SOF1), not progressive.
    sequential: bool,
    /// Components in the first scan.
    first_scan: usize,
}

impl Layout {
    /// Whether zune-jpeg 0.5 would misdecode it: three components with a chroma one sampled more
    /// finely than luma in either direction, or subsampled and not interleaved in one scan.
    fn zune_misreads(&self) -> bool {
        let [(h0, v0), ..] = self.sampling[..] else {
            return false;
        };
        let finer_chroma = self.sampling[1..].iter().any(|&(h, v)| h > h0 || v > v0);
        let subsampled = self.sampling.iter().any(|&(h, v)| (h, v) != (h0, v0));
        let separate_scans = self.sequential && self.first_scan < self.sampling.len();
        self.sampling.len() == 3 && (finer_chroma || (subsampled && separate_scans))
    }
}

/// The sampling factors and first scan of a JPEG, from its markers up to the first SOS; None
/// where the headers end or break before it (zune-jpeg then reports what is wrong).
pub(crate) fn layout(bytes: &[u8]) -> Option<Layout> {
    let mut i = 2; // after SOI
    let mut frame: Option<(Vec<(u8, u8)>, bool, usize, usize)> = None;
    loop {
        while *bytes.get(i)? == 0xff && *bytes.get(i + 1)? == 0xff {
            i += 1; // fill bytes
        }
        if *bytes.get(i)? != 0xff {
            return None;
        }
        let marker = *bytes.get(i + 1)?;
        i += 2;
        if marker == 0x01 || (0xd0..=0xd7).contains(&marker) {
            continue; // no length
        }
        let len = u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]) as usize;
        let seg = bytes.get(i + 2..i + len)?;
        match marker {
            // SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC): precision, height, width, then
            // (id, H << 4 | V, table) for each component.
            0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                let n = *seg.get(5)? as usize;
                let sampling = (0..n)
                    .map(|c| seg.get(7 + 3 * c).map(|hv| (hv >> 4, hv & 15)))
                    .collect::<Option<Vec<_>>>()?;
                let height = u16::from_be_bytes([*seg.get(1)?, *seg.get(2)?]) as usize;
                let width = u16::from_be_bytes([*seg.get(3)?, *seg.get(4)?]) as usize;
                frame = Some((sampling, matches!(marker, 0xc0 | 0xc1), width, height));
            }
            0xda => {
                let (sampling, sequential, width, height) = frame?;
                let first_scan = *seg.first()? as usize;
                return Some(Layout {
                    width,
                    height,
                    sampling,
                    sequential,
                    first_scan,
                });
            }
            _ => {}
        }
        i += len;
    }
}

/// Decodes with `jpeg-decoder` (three components, so RGB out).
fn decode_other(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(|| corrupt("no frame header"))?;
    let (width, height) = (info.width as usize, info.height as usize);
    check_dimensions(Format::Jpeg, width as u64, height as u64)?;
    let pixels = decoder.decode().map_err(corrupt)?;
    if info.pixel_format != jpeg_decoder::PixelFormat::RGB24 {
        return Err(corrupt(format!(
            "unexpected pixel format {:?}",
            info.pixel_format
        )));
    }
    Ok(RgbImage::new(width, height, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an SOF with `sof` and these (H, V) factors, an SOS of `scan` components.
    fn headers(sof: u8, sampling: &[(u8, u8)], scan: u8) -> Vec<u8> {
        let mut b = vec![0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0]; // SOI, an APP0 of 2 bytes
        let n = sampling.len() as u8;
        b.extend_from_slice(&[0xff, sof, 0, 8 + 3 * n, 8, 0, 16, 0, 16, n]);
        for (c, &(h, v)) in sampling.iter().enumerate() {
            b.extend_from_slice(&[c as u8 + 1, h << 4 | v, 0]);
        }
        b.extend_from_slice(&[0xff, 0xff, 0xda, 0, 6 + 2 * scan, scan]); // a fill byte first
        b.extend(std::iter::repeat_n(0, 2 * scan as usize + 3));
        b
    }

    #[test]
    fn layout_reads_sampling_and_the_first_scan() {
        assert_eq!(
            layout(&headers(0xc2, &[(2, 2), (1, 1), (1, 1)], 1)),
            Some(Layout {
                width: 16,
                height: 16,
                sampling: vec![(2, 2), (1, 1), (1, 1)],
                sequential: false,
                first_scan: 1
            })
        );
        assert_eq!(layout(&[0xff, 0xd8, 0xff]), None);
        assert_eq!(layout(&headers(0xc0, &[(1, 1)], 1)[..20]), None);
    }

    #[test]
    fn zune_misreads_finer_chroma_and_separate_subsampled_scans_only() {
        let misreads =
            |sof, s: &[(u8, u8)], scan| layout(&headers(sof, s, scan)).unwrap().zune_misreads();
        // cjpeg -sample 2x2 / 2x1 / 1x1 (4:2:0, 4:2:2, 4:4:4), interleaved, or progressive
        assert!(!misreads(0xc0, &[(2, 2), (1, 1), (1, 1)], 3));
        assert!(!misreads(0xc0, &[(2, 1), (1, 1), (1, 1)], 3));
        assert!(!misreads(0xc2, &[(2, 2), (1, 1), (1, 1)], 1));
        assert!(!misreads(0xc0, &[(1, 1), (1, 1), (1, 1)], 1));
        assert!(!misreads(0xc0, &[(1, 1)], 1));
        // chroma finer than luma
        assert!(misreads(0xc0, &[(1, 1), (2, 2), (2, 2)], 3));
        assert!(misreads(0xc2, &[(1, 2), (2, 1), (1, 1)], 1));
        assert!(misreads(0xc0, &[(1, 1), (1, 2), (1, 2)], 3));
        // subsampled, one scan a component
        assert!(misreads(0xc0, &[(2, 2), (1, 1), (1, 1)], 1));
        assert!(misreads(0xc1, &[(2, 1), (1, 1), (1, 1)], 1));
    }
}
