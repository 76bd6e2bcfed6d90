//! Encoded bytes → 8-bit RGB, the way transformers' `convert_to_rgb` turns a `PIL.Image.open(f)`
//! into RGB: an image with transparency (an alpha channel, or a PNG's tRNS chunk) is composited
//! onto white exactly as `PIL.Image.alpha_composite` does (transformers ≥ 5.2x, vLLM and
//! qwen-vl-utils all put transparent images on white; transformers 5.17 still dropped the alpha,
//! which turned black text on a transparent background into a black image); 16-bit samples keep
//! their high byte, except 16-bit grayscale (PIL mode `I;16`), which saturates at 255 and whose
//! tRNS PIL ignores. The pixels are then flipped or turned upright by the file's EXIF orientation
//! ([`exif`] reads it, [`orientation`] moves them) as transformers' `load_image` does with
//! `PIL.ImageOps.exif_transpose` before `convert("RGB")`.

mod exif;
mod jpeg;
mod orientation;
mod png;
mod webp;

pub use orientation::Orientation;

use crate::MAX_DECODED_PIXELS;
use crate::error::ImageError;

/// An 8-bit RGB image, rows top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// (height, width, 3) u8
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Wraps `data`, which must hold `height * width * 3` bytes.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> RgbImage {
        assert_eq!(
            data.len(),
            width * height * 3,
            "RGB buffer of {width}x{height}"
        );
        RgbImage {
            width,
            height,
            data,
        }
    }
}

/// The container formats we recognise by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    WebP,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "PNG",
            Format::Jpeg => "JPEG",
            Format::WebP => "WebP",
        }
    }
}

/// Recognises the format from its signature; names what it found when it is not one we decode.
pub fn sniff(bytes: &[u8]) -> Result<Format, ImageError> {
    const OTHERS: [(&[u8], &str); 8] = [
        (b"GIF8", "GIF"),
        (b"BM", "BMP"),
        (b"II*\0", "TIFF"),
        (b"MM\0*", "TIFF"),
        (b"\0\0\0\x0cjXL", "JPEG XL"),
        (b"\xff\x0a", "JPEG XL"),
        (b"8BPS", "Photoshop"),
        (b"<", "text (SVG or HTML?)"),
    ];
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if bytes.starts_with(b"\xff\xd8\xff") {
        return Ok(Format::Jpeg);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(Format::WebP);
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        // The ISO base media file's major brand: AVIF's, HEIF's (an iPhone's HEIC photos), else
        // a video's (MP4, MOV) or another HEIF.
        let brand = &bytes[8..12];
        const HEIF: [&[u8; 4]; 8] = [
            b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
        ];
        let detected = if brand.starts_with(b"avi") {
            "AVIF"
        } else if HEIF.iter().any(|b| brand == &b[..]) {
            "HEIC"
        } else {
            "HEIF/HEIC or MP4"
        };
        return Err(ImageError::UnsupportedFormat { detected });
    }
    let detected = if bytes.is_empty() {
        "empty input"
    } else {
        OTHERS
            .iter()
            .find(|(magic, _)| bytes.starts_with(magic))
            .map_or("unknown signature", |m| m.1)
    };
    Err(ImageError::UnsupportedFormat { detected })
}

/// Refuses empty images and images over [`MAX_DECODED_PIXELS`]. Each decoder calls this with the
/// header's dimensions before it allocates the pixel buffer.
pub(crate) fn check_dimensions(format: Format, width: u64, height: u64) -> Result<(), ImageError> {
    let format = format.name();
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroSize {
            format,
            width,
            height,
        });
    }
    if width.saturating_mul(height) > MAX_DECODED_PIXELS {
        return Err(ImageError::TooLarge {
            format,
            width,
            height,
        });
    }
    Ok(())
}

/// An image's (width, height) as [`decode`] gives it (EXIF orientations 5–8 swap the stored
/// sides) from its headers and metadata alone — nothing decoded, nothing allocated for its
/// pixels — refused as [`decode`] refuses its size (empty, over the pixel limit) or its format.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize), ImageError> {
    let format = sniff(bytes)?;
    let (width, height) = match format {
        Format::Png => png::dimensions(bytes)?,
        Format::Jpeg => jpeg::dimensions(bytes)?,
        Format::WebP => webp::dimensions(bytes)?,
    };
    check_dimensions(format, width as u64, height as u64)?;
    Ok(exif::orientation(bytes, format).size(width, height))
}

/// Decodes a PNG, JPEG or WebP file to upright RGB like transformers' `load_image`:
/// `PIL.ImageOps.exif_transpose`, then `convert("RGB")` (transparency over white).
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let format = sniff(bytes)?;
    let img = match format {
        Format::Png => png::decode(bytes),
        Format::Jpeg => jpeg::decode(bytes),
        Format::WebP => webp::decode(bytes),
    }?;
    Ok(exif::orientation(bytes, format).apply(img))
}

/// One sample of value `v` and alpha `a` over white, as `PIL.Image.alpha_composite` onto an opaque
/// white background computes it (its fixed-point arithmetic reduces to this rounding: equal for all
/// 65,536 (v, a) pairs, checked against Pillow 12).
pub(crate) fn over_white(v: u8, a: u8) -> u8 {
    let (v, a) = (v as u32, a as u32);
    ((v * a + 255 * (255 - a) + 127) / 255) as u8
}

/// RGB from pixels of `stride` bytes: the bytes at offsets `rgb` of each pixel (one offset thrice
/// for gray; a 16-bit sample's high byte, which comes first), over white by the alpha byte at
/// offset `alpha` where the image has one.
pub(crate) fn to_rgb(data: &[u8], stride: usize, rgb: [usize; 3], alpha: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / stride * 3);
    for px in data.chunks_exact(stride) {
        let [r, g, b] = rgb.map(|i| px[i]);
        match alpha {
            Some(i) => out.extend_from_slice(&[r, g, b].map(|v| over_white(v, px[i]))),
            None => out.extend_from_slice(&[r, g, b]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_white_matches_pillows_alpha_composite() {
        // Image.alpha_composite(white, RGBA (v, v, v, a)) from Pillow 12.
        let pil = [
            (0, 0, 255),
            (0, 255, 0),
            (200, 255, 200),
            (0, 128, 127),
            (0, 127, 128),
            (100, 1, 254),
            (37, 200, 84),
            (254, 3, 255),
            (10, 77, 181),
        ];
        for (v, a, expected) in pil {
            assert_eq!(over_white(v, a), expected, "v {v}, a {a}");
        }
        // Opaque keeps the value; each step of alpha moves it toward white monotonically.
        for v in 0..=255u8 {
            assert_eq!(over_white(v, 255), v);
            assert_eq!(over_white(v, 0), 255);
            for a in 1..=255u8 {
                assert!(over_white(v, a) <= over_white(v, a - 1));
            }
        }
    }

    #[test]
    fn to_rgb_picks_samples_and_composites_alpha() {
        // Two RGBA pixels: opaque red, half-transparent black.
        let rgba = [255, 0, 0, 255, 0, 0, 0, 128];
        assert_eq!(to_rgb(&rgba, 4, [0, 1, 2], None), [255, 0, 0, 0, 0, 0]);
        assert_eq!(
            to_rgb(&rgba, 4, [0, 1, 2], Some(3)),
            [255, 0, 0, 127, 127, 127]
        );
        // Gray + alpha, 16-bit (high bytes first): gray 0x80.., alpha 0x00.. → white.
        let la16 = [0x80, 0x11, 0x00, 0xff, 0x40, 0x00, 0xff, 0x00];
        assert_eq!(
            to_rgb(&la16, 4, [0, 0, 0], Some(2)),
            [255, 255, 255, 0x40, 0x40, 0x40]
        );
    }

    #[test]
    fn dimensions_read_headers_and_refuse_what_decode_refuses() {
        // A 3 x 2 PNG's signature and IHDR (no pixel data: dimensions needs none).
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x03\0\0\0\x02\x08\x02\0\0\0".to_vec();
        png.extend_from_slice(&[0x12, 0x16, 0xf1, 0x4d]); // its CRC
        assert_eq!(dimensions(&png), Ok((3, 2)));
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(matches!(
            dimensions(&png),
            Err(ImageError::Corrupt { .. } | ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            dimensions(b"GIF89a"),
            Err(ImageError::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn sniff_names_formats_it_does_not_decode() {
        let cases: [(&[u8], &str); 8] = [
            (b"GIF89a\x01\x00", "GIF"),
            (b"BM\x00\x00", "BMP"),
            (b"\0\0\0\x1cftypavif", "AVIF"),
            (b"\0\0\0\x18ftypheic", "HEIC"),
            (b"\0\0\0\x18ftypmif1", "HEIC"),
            (b"\0\0\0\x18ftypisom", "HEIF/HEIC or MP4"),
            (b"II*\0\x08\0", "TIFF"),
            (b"", "empty input"),
        ];
        for (bytes, detected) in cases {
            assert_eq!(
                sniff(bytes),
                Err(ImageError::UnsupportedFormat { detected })
            );
        }
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Ok(Format::WebP));
    }

    #[test]
    fn check_dimensions_allows_the_limit_and_refuses_one_more_pixel() {
        assert!(check_dimensions(Format::Png, 1 << 13, 1 << 13).is_ok());
        assert!(matches!(
            check_dimensions(Format::Png, (1 << 13) + 1, 1 << 13),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            check_dimensions(Format::Jpeg, 0, 5),
            Err(ImageError::ZeroSize { .. })
        ));
        // No overflow on absurd headers.
        assert!(matches!(
            check_dimensions(Format::WebP, u64::MAX, u64::MAX),
            Err(ImageError::TooLarge { .. })
        ));
    }
}
