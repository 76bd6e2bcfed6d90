//! JPEG through `zune-jpeg`: baseline, progressive, restart intervals, any chroma subsampling,
//! grayscale, CMYK and YCCK. zune-jpeg's CMYK → RGB (`c * k / 255` on Adobe-inverted samples) is
//! the same arithmetic as PIL's `CMYK;I` read followed by `convert("RGB")`. The IDCT, chroma
//! upsampling and YCbCr → RGB rounding are not libjpeg-turbo's, so pixels may differ from PIL's by
//! a level or two (the tests bound this).

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
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| corrupt("no frame header"))?;
    check_dimensions(Format::Jpeg, width as u64, height as u64)?;
    let pixels = decoder.decode().map_err(corrupt)?;
    Ok(RgbImage::new(width, height, pixels))
}
