//! PNG through the `png` crate. PIL's modes, and so transformers' `convert_to_rgb`, depend on the
//! colour type in the header; the conversions below follow them for each one:
//!
//! | PNG                       | PIL mode | → RGB                                   |
//! |---------------------------|----------|-----------------------------------------|
//! | gray 1/2/4/8 bit          | 1 / L    | scaled to 0..255, replicated            |
//! | gray 16 bit (± tRNS)      | I;16     | `min(v, 255)`, replicated (see tRNS)    |
//! | gray+alpha 8/16           | LA/RGBA  | high byte of gray, over white           |
//! | RGB / RGBA 8/16           | RGB/RGBA | high byte, over white where RGBA        |
//! | palette                   | P        | palette lookup                          |
//!
//! A tRNS chunk (a palette's alphas, or one transparent gray level or colour) makes the image
//! transparent for transformers (`info["transparency"]`): the png crate expands it to an alpha
//! channel, composited onto white like any other — where PIL matches the key as the png crate
//! does; its quirks with 2- and 4-bit gray and 16-bit samples are followed in `decode`.

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

/// Deflate writes at most 258 bytes for 2 bits (a length code and a distance code of one bit
/// each), so a file inflates to at most 1032 times its size. A header announcing more pixel data
/// than that is a truncated file or a bomb (PIL refuses a truncated image too): refused before
/// the pixel buffers exist, which could otherwise reach hundreds of MB for a 100-byte file.
const MAX_INFLATE_RATIO: u64 = 1032;

fn check_data_fits(
    file_len: usize,
    width: u32,
    height: u32,
    color: ColorType,
    depth: BitDepth,
) -> Result<(), ImageError> {
    // The pixels' bits alone (without the filter bytes that precede each row).
    let bits = width as u64 * height as u64 * color.samples() as u64 * depth as u8 as u64;
    let need = bits / 8;
    let most = file_len as u64 * MAX_INFLATE_RATIO;
    if need <= most {
        return Ok(());
    }
    Err(ImageError::Corrupt {
        format: "PNG",
        detail: format!(
            "the header announces {width}x{height} pixels ({need} bytes of image data) but the \
             file's {file_len} bytes inflate to at most {most}"
        ),
    })
}

pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let mut decoder = Decoder::new(Cursor::new(bytes));
    let (width, height, color, depth) = {
        let info = decoder.read_header_info().map_err(corrupt)?;
        (info.width, info.height, info.color_type, info.bit_depth)
    };
    check_dimensions(Format::Png, width as u64, height as u64)?;
    check_data_fits(bytes.len(), width, height, color, depth)?;
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
    // The png crate (0.18.1) slices a 3-byte entry off a palette's last bytes when expanding it,
    // and panics where they are fewer: a PLTE chunk must hold whole RGB entries.
    if let Some(palette) = reader.info().palette.as_deref()
        && color == ColorType::Indexed
        && palette.len() % 3 != 0
    {
        return Err(ImageError::Corrupt {
            format: "PNG",
            detail: format!(
                "the PLTE chunk holds {} bytes, not a whole number of 3-byte RGB entries",
                palette.len()
            ),
        });
    }
    // The tRNS key's low byte of each sample, as PIL keeps it (the png crate already keeps those
    // alone below 16 bits).
    let trns_low: Option<Vec<u8>> = reader.info().trns.as_ref().map(|t| {
        if depth == BitDepth::Sixteen {
            t.iter().skip(1).step_by(2).copied().collect()
        } else {
            t.to_vec()
        }
    });
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
        // PIL's I;16 → L conversion clips instead of shifting: 256..65535 all become 255. A tRNS
        // gray makes the pixels whose clipped value is its low byte transparent: white.
        let key = trns_low.as_ref().and_then(|t| t.first().copied());
        let mut rgb = Vec::with_capacity(width * height * 3);
        for px in buf.chunks_exact(2) {
            let v = u16::from_be_bytes([px[0], px[1]]).min(255) as u8;
            let v = if Some(v) == key { 255 } else { v };
            rgb.extend_from_slice(&[v, v, v]);
        }
        return Ok(RgbImage::new(width, height, rgb));
    }
    // Where PIL reads a tRNS key otherwise than the png crate expands it (exact samples), the
    // alpha is made again as PIL's: 2- and 4-bit gray compare the key, unscaled, with the scaled
    // 8-bit gray (so only a key of 0 matches, the black pixels); 16-bit RGB compares the low byte
    // of each key sample with the high byte PIL keeps of each pixel's.
    if let Some(key) = &trns_low {
        let (gray_low_bits, rgb16) = (
            color == ColorType::Grayscale && matches!(depth, BitDepth::Two | BitDepth::Four),
            color == ColorType::Rgb && depth == BitDepth::Sixteen,
        );
        if gray_low_bits && frame.color_type == ColorType::GrayscaleAlpha {
            for px in buf.chunks_exact_mut(2) {
                px[1] = if Some(&px[0]) == key.first() { 0 } else { 255 };
            }
        } else if rgb16 && frame.color_type == ColorType::Rgba && key.len() == 3 {
            for px in buf.chunks_exact_mut(8) {
                let hit = [px[0], px[2], px[4]] == key[..];
                px[6] = if hit { 0 } else { 255 };
                px[7] = px[6];
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use qvq_fuzz_support::crc32;

    #[test]
    fn a_header_announcing_more_data_than_the_file_can_hold_is_refused_before_allocating() {
        // Found by tests/fuzz.rs: a 182-byte PNG whose IHDR (CRC fixed) announced 65535 x 768
        // RGBA made the png crate's output buffer 201 MB, allocated before the data ran out.
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&[0, 0, 0xff, 0xff, 0, 0, 3, 0, 8, 6, 0, 0, 0]);
        let crc = crc32(&png[12..29]);
        png.extend_from_slice(&crc.to_be_bytes());
        png.extend_from_slice(&[0; 148]);
        let err = decode(&png).unwrap_err().to_string();
        assert!(err.contains("announces 65535x768 pixels"), "{err}");
        // The bound itself: 1032 bytes of pixels a byte of file.
        assert!(check_data_fits(100, 1032, 100, ColorType::Grayscale, BitDepth::Eight).is_ok());
        assert!(check_data_fits(100, 1033, 100, ColorType::Grayscale, BitDepth::Eight).is_err());
        assert!(check_data_fits(100, 8256, 100, ColorType::Indexed, BitDepth::One).is_ok());
    }

    #[test]
    fn a_palette_of_partial_entries_is_refused_not_a_panic() {
        // Found by tests/fuzz.rs: a 1 x 1 palette PNG whose PLTE holds 4 bytes (an entry and a
        // byte) made the png crate panic ("range end index 3 out of range for slice of length 1").
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            let crc = crc32(&c[4..]);
            c.extend_from_slice(&crc.to_be_bytes());
            c
        };
        let file = |plte: &[u8]| {
            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            png.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 3, 0, 0, 0]));
            png.extend(chunk(b"PLTE", plte));
            // zlib of the one row: filter 0, index 0.
            png.extend(chunk(
                b"IDAT",
                &[0x78, 0x01, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
            ));
            png.extend(chunk(b"IEND", &[]));
            png
        };
        let err = decode(&file(&[10, 20, 30, 40])).unwrap_err().to_string();
        assert!(err.contains("PLTE chunk holds 4 bytes"), "{err}");
        // With whole entries the same file decodes.
        assert_eq!(decode(&file(&[10, 20, 30])).unwrap().data, [10, 20, 30]);
    }
}
