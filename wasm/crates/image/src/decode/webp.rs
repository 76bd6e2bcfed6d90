//! WebP through `image-webp` (lossy, lossless, alpha, extended; the first frame of an animation,
//! as PIL shows), an image with alpha over white (see the decode module). Lossless pixels are exact; lossy ones go through image-webp's YUV → RGB, which
//! can differ from libwebp's (PIL's) by a level or so.

use super::{Format, RgbImage, check_dimensions, to_rgb};
use crate::error::ImageError;
use image_webp::WebPDecoder;
use std::io::Cursor;

fn corrupt(e: image_webp::DecodingError) -> ImageError {
    ImageError::Corrupt {
        format: "WebP",
        detail: e.to_string(),
    }
}

/// (width, height) from the RIFF headers (the canvas of an extended file).
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize), ImageError> {
    let (width, height) = WebPDecoder::new(Cursor::new(bytes))
        .map_err(corrupt)?
        .dimensions();
    Ok((width as usize, height as usize))
}

pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let mut decoder = WebPDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(Format::WebP, width as u64, height as u64)?;
    let size = decoder.output_buffer_size().ok_or(ImageError::TooLarge {
        format: "WebP",
        width: width as u64,
        height: height as u64,
    })?;
    let mut buf = vec![0u8; size];
    decoder.read_image(&mut buf).map_err(corrupt)?;
    let rgb = if decoder.has_alpha() {
        to_rgb(&buf, 4, [0, 1, 2], Some(3))
    } else {
        buf
    };
    Ok(RgbImage::new(width as usize, height as usize, rgb))
}
