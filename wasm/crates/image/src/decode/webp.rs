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
    if !decoder.is_animated() {
        check_still_canvas(bytes, width, height)?;
    }
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

/// A still extended (VP8X) file's canvas must be the size of the image inside it, as libwebp
/// (PIL) requires; image-webp allocates the canvas first and decodes the bitstream into it, so
/// a few bytes announcing a 64 Mpx canvas around a tiny image would cost that buffer. Checked
/// before anything is allocated; a simple (non-VP8X) file's size is its bitstream's already.
fn check_still_canvas(bytes: &[u8], width: u32, height: u32) -> Result<(), ImageError> {
    if bytes.get(12..16) != Some(b"VP8X") {
        return Ok(());
    }
    let inner = bitstream_size(bytes);
    if inner == Some((width, height)) {
        return Ok(());
    }
    let detail = match inner {
        Some((w, h)) => {
            format!("the VP8X canvas is {width}x{height} pixels but the image inside it is {w}x{h}")
        }
        None => format!("the {width}x{height} VP8X canvas holds no VP8 or VP8L image data"),
    };
    Err(ImageError::Corrupt {
        format: "WebP",
        detail,
    })
}

/// (width, height) of the image data image-webp decodes in a still file: its first VP8L chunk's
/// header, else its first VP8 chunk's; None where there is none (or it is cut short).
fn bitstream_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let (mut vp8, mut vp8l) = (None, None);
    let mut i = 12usize;
    while let Some(head) = bytes.get(i..i + 8) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let data = &bytes[i + 8..bytes.len().min((i + 8).saturating_add(len))];
        match &head[..4] {
            b"VP8L" if vp8l.is_none() => vp8l = Some(data),
            b"VP8 " if vp8.is_none() => vp8 = Some(data),
            _ => {}
        }
        // Chunks are padded to even sizes.
        i = i
            .saturating_add(8)
            .saturating_add(len)
            .saturating_add(len & 1);
    }
    if let Some(d) = vp8l {
        let h = d.get(1..5)?;
        let h = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        return Some(((h & 0x3fff) + 1, ((h >> 14) & 0x3fff) + 1));
    }
    let d = vp8?.get(6..10)?;
    let side = |lo: u8, hi: u8| u16::from_le_bytes([lo, hi]) as u32 & 0x3fff;
    Some((side(d[0], d[1]), side(d[2], d[3])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = kind.to_vec();
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut f = b"RIFF".to_vec();
        f.extend_from_slice(&(body.len() as u32 + 4).to_le_bytes());
        f.extend_from_slice(b"WEBP");
        f.extend(body);
        f
    }

    /// A VP8X chunk (no flags) for a `w` x `h` canvas.
    fn vp8x(w: u32, h: u32) -> Vec<u8> {
        let mut d = vec![0u8; 4];
        d.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
        d.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
        chunk(b"VP8X", &d)
    }

    #[test]
    fn a_still_canvas_larger_than_its_image_is_refused_before_allocating() {
        // Found by tests/fuzz.rs: a 2 x 2 lossless image (a 0x2f signature, then 14-bit sides
        // less one) inside a 8192 x 8192 canvas made image-webp allocate 192 MiB, then fail.
        let vp8l = chunk(b"VP8L", &[0x2f, 0x01, 0x40, 0x00, 0x00, 0, 0, 0]);
        assert_eq!(
            bitstream_size(&riff(&[vp8x(2, 2), vp8l.clone()])),
            Some((2, 2))
        );
        let file = riff(&[vp8x(8192, 8192), vp8l]);
        let err = decode(&file).unwrap_err().to_string();
        assert!(
            err.contains("VP8X canvas is 8192x8192 pixels but the image inside it is 2x2"),
            "{err}"
        );
        // Image data cut short of its size (image-webp itself refuses a file without any).
        let cut = chunk(b"VP8L", &[0x2f, 0x01]);
        let err = decode(&riff(&[vp8x(8192, 8192), cut]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Corrupt") || err.contains("cannot decode WebP"),
            "{err}"
        );
        // A lossy bitstream's size: 3-byte frame tag, start code, 14-bit sides.
        let vp8 = chunk(
            b"VP8 ",
            &[0, 0, 0, 0x9d, 0x01, 0x2a, 0x07, 0xc0, 0x05, 0x00],
        );
        assert_eq!(bitstream_size(&riff(&[vp8x(7, 5), vp8])), Some((7, 5)));
    }
}
