//! PNG through the `png` crate. PIL's modes, and so transformers' `convert_to_rgb`, depend on the
//! colour type in the header; the conversions below follow them for each one:
//!
//! | PNG                       | PIL mode | → RGB                                   |
//! |---------------------------|----------|-----------------------------------------|
//! | gray 1/2/4/8 bit          | 1 / L    | scaled to 0..255, replicated            |
//! | gray 16 bit (± tRNS)      | I;16     | `min(v, 255)`, replicated (tRNS unused) |
//! | gray+alpha 8/16           | LA/RGBA  | high byte of gray, over white           |
//! | RGB / RGBA 8/16           | RGB/RGBA | high byte, over white where RGBA        |
//! | palette                   | P        | palette lookup                          |
//!
//! A tRNS chunk (a palette's alphas, or one transparent gray level or colour) makes the image
//! transparent for transformers (`info["transparency"]`): the png crate expands it to an alpha
//! channel, composited onto white like any other.

use super::{Format, RgbImage, check_dimensions, to_rgb};
use crate::error::ImageError;
use png::{BitDepth, ColorType, Decoder, Transformations};
use std::io::Cursor;

fn corrupt(e: png::DecodingError) -> ImageError {
    ImageError::Corrupt {
        format: "PNG",
        detail: e.to_string(),
    }
}

/// (width, height) from the IHDR chunk.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize), ImageError> {
    let mut decoder = Decoder::new(Cursor::new(bytes));
    let info = decoder.read_header_info().map_err(corrupt)?;
    Ok((info.width as usize, info.height as usize))
}

pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let mut decoder = Decoder::new(Cursor::new(bytes));
    let (width, height, color, depth) = {
        let info = decoder.read_header_info().map_err(corrupt)?;
        (info.width, info.height, info.color_type, info.bit_depth)
    };
    check_dimensions(Format::Png, width as u64, height as u64)?;
    // The png crate's own allocation limit (64 MiB by default) would refuse large images that
    // our pixel limit allows; 8 bytes per pixel covers 16-bit RGBA.
    decoder.set_limits(png::Limits {
        bytes: (width as usize * height as usize) * 8 + (1 << 20),
    });
    let gray16 = color == ColorType::Grayscale && depth == BitDepth::Sixteen;
    // EXPAND: palette → RGB(A), gray < 8 bit → 8 bit scaled like PIL's L;1/L;2/L;4, tRNS → alpha.
    decoder.set_transformations(if gray16 {
        Transformations::IDENTITY
    } else {
        Transformations::EXPAND
    });
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let size = reader.output_buffer_size().ok_or(ImageError::TooLarge {
        format: "PNG",
        width: width as u64,
        height: height as u64,
    })?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(corrupt)?;
    buf.truncate(frame.buffer_size());
    let (width, height) = (width as usize, height as usize);
    if gray16 {
        // PIL's I;16 → L conversion clips instead of shifting: 256..65535 all become 255.
        let mut rgb = Vec::with_capacity(width * height * 3);
        for px in buf.chunks_exact(2) {
            let v = u16::from_be_bytes([px[0], px[1]]).min(255) as u8;
            rgb.extend_from_slice(&[v, v, v]);
        }
        return Ok(RgbImage::new(width, height, rgb));
    }
    // 16-bit samples are big-endian: their high byte comes first, and PIL keeps only that byte.
    let w = if frame.bit_depth == BitDepth::Sixteen {
        2
    } else {
        1
    };
    let stride = frame.color_type.samples() * w;
    let rgb = match frame.color_type {
        ColorType::Grayscale => to_rgb(&buf, stride, [0; 3], None),
        ColorType::GrayscaleAlpha => to_rgb(&buf, stride, [0; 3], Some(w)),
        ColorType::Rgb => to_rgb(&buf, stride, [0, w, 2 * w], None),
        ColorType::Rgba => to_rgb(&buf, stride, [0, w, 2 * w], Some(3 * w)),
        // EXPAND turns palette images into RGB; an error beats a panic, which would abort the wasm.
        ColorType::Indexed => {
            let detail = "palette samples were not expanded to RGB".to_string();
            return Err(ImageError::Corrupt {
                format: "PNG",
                detail,
            });
        }
    };
    Ok(RgbImage::new(width, height, rgb))
}
