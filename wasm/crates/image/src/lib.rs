//! qvq-image: Qwen2-VL image preprocessing, bit-compatible with transformers 5.17's default
//! (torchvision-backend) `Qwen2VLImageProcessor`.
//!
//! The data path, one module per step:
//! 1. [`decode`]: PNG / JPEG / WebP bytes → 8-bit RGB like transformers' `load_image` and
//!    `convert_to_rgb`: turned upright by the EXIF orientation, transparent images over white.
//! 2. [`smart_resize`]: the target size, multiples of `patch_size * merge_size`.
//! 3. [`resample`]: antialiased bicubic, torchvision's (or Pillow's) fixed-point arithmetic.
//! 4. [`patchify`]: `(x - mean) / std` in f32 and the `(patches, 3 * 2 * 14 * 14)` layout.
//!
//! [`video`] runs steps 2–4 over a video's frames (`Qwen2VLVideoProcessor`), a frame at a time.

pub mod config;
pub mod decode;
pub mod error;
pub mod patchify;
pub mod resample;
pub mod smart_resize;
pub mod video;

pub use config::ProcessorConfig;
pub use decode::{Orientation, RgbImage, decode, dimensions};
pub use error::ImageError;
pub use resample::{Backend, resize_bicubic};
pub use smart_resize::smart_resize;
pub use video::VideoPatcher;

/// Most pixels a decoded image may have: 2^26 = 67,108,864 (8192 x 8192, a 64 Mpx photo).
/// Checked against the file header before any pixel buffer exists, so a small file announcing a
/// huge image fails fast. 2^26 is 5x Qwen2-VL's largest `max_pixels` (12,845,056) and keeps the
/// worst case — a 16-bit RGBA PNG, 8 bytes a pixel, plus its RGB copy — near 700 MB of wasm
/// memory, well inside wasm32's 4 GiB; PIL refuses from about 179 Mpx.
pub const MAX_DECODED_PIXELS: u64 = 1 << 26;

/// One image after preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessed {
    /// (grid_t * grid_h * grid_w, 3 * temporal_patch_size * patch_size^2) f32
    pub pixel_values: Vec<f32>,
    /// (grid_t, grid_h, grid_w) in patches; grid_t is 1 for a still image.
    pub grid_thw: [usize; 3],
}

/// Decodes, resizes, normalises and flattens one encoded image.
pub fn preprocess(bytes: &[u8], config: &ProcessorConfig) -> Result<Preprocessed, ImageError> {
    config.validate()?;
    preprocess_rgb(&decode(bytes)?, config)
}

/// Resizes, normalises and flattens an image already decoded (by [`decode`], or pixels a caller
/// holds): what [`preprocess`] does after decoding, so an image decoded once to check it is not
/// decoded again. Refuses an empty or oversized image as [`decode`] would.
pub fn preprocess_rgb(
    img: &RgbImage,
    config: &ProcessorConfig,
) -> Result<Preprocessed, ImageError> {
    config.validate()?;
    let (height, width) = target_size(img.width, img.height, config)?;
    let img = resize_bicubic(img, width, height, Backend::Torchvision);
    let mut pixel_values = Vec::new();
    let (grid_h, grid_w) = patchify::patchify_into(&img, config, &mut pixel_values);
    Ok(Preprocessed {
        pixel_values,
        grid_thw: [1, grid_h, grid_w],
    })
}

/// The `(height, width)` pixels of `width` x `height` decoded pixels resize to (smart_resize with
/// the config's bounds); refuses an empty or oversized input as [`decode`] would.
pub(crate) fn target_size(
    width: usize,
    height: usize,
    config: &ProcessorConfig,
) -> Result<(usize, usize), ImageError> {
    let (w, h) = (width as u64, height as u64);
    if w == 0 || h == 0 {
        return Err(ImageError::ZeroSize {
            format: "RGB",
            width: w,
            height: h,
        });
    }
    if w * h > MAX_DECODED_PIXELS {
        return Err(ImageError::TooLarge {
            format: "RGB",
            width: w,
            height: h,
        });
    }
    let factor = config.factor() as u64;
    let (th, tw) = smart_resize(h, w, factor, config.min_pixels, config.max_pixels)?;
    Ok((th as usize, tw as usize))
}
