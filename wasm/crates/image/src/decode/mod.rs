//! Encoded bytes → 8-bit RGB, the way `PIL.Image.open(f).convert("RGB")` does it (what
//! transformers' `convert_to_rgb` calls): alpha is dropped, not composited; transparency keys are
//! ignored; 16-bit samples keep their high byte, except 16-bit grayscale (PIL mode `I;16`), which
//! saturates at 255; EXIF orientation is not applied.

mod jpeg;
mod png;
mod webp;

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
        let brand = &bytes[8..12];
        let detected = if brand.starts_with(b"avi") {
            "AVIF"
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

/// Decodes a PNG, JPEG or WebP file to RGB like PIL's `convert("RGB")`.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    match sniff(bytes)? {
        Format::Png => png::decode(bytes),
        Format::Jpeg => jpeg::decode(bytes),
        Format::WebP => webp::decode(bytes),
    }
}

/// Keeps the first `keep` of every `stride` bytes: RGBA → RGB (`keep` 3, `stride` 4) drops alpha
/// as PIL's RGBA → RGB conversion does.
pub(crate) fn drop_channels(data: &[u8], stride: usize, keep: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / stride * 3);
    for px in data.chunks_exact(stride) {
        out.extend_from_slice(&px[..keep]);
    }
    out
}

/// Replicates the first byte of every `stride` bytes three times: L or LA → RGB.
pub(crate) fn gray_to_rgb(data: &[u8], stride: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / stride * 3);
    for px in data.chunks_exact(stride) {
        out.extend_from_slice(&[px[0], px[0], px[0]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_names_formats_it_does_not_decode() {
        let cases: [(&[u8], &str); 5] = [
            (b"GIF89a\x01\x00", "GIF"),
            (b"BM\x00\x00", "BMP"),
            (b"\0\0\0\x1cftypavif", "AVIF"),
            (b"\0\0\0\x18ftypheic", "HEIF/HEIC or MP4"),
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
