//! The one error type of the crate. Every message names the bad value and what to do about it;
//! the wasm layer passes it to JavaScript unchanged, where it becomes an `InvalidInputError`.

use std::fmt;

/// Why an image could not be decoded or preprocessed.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageError {
    /// The bytes start with no signature we decode.
    UnsupportedFormat { detected: &'static str },
    /// The decoder rejected the data (truncated, corrupt, or a feature it lacks).
    Corrupt {
        format: &'static str,
        detail: String,
    },
    /// The header announces a width or height of zero.
    ZeroSize {
        format: &'static str,
        width: u64,
        height: u64,
    },
    /// The header announces more pixels than [`crate::MAX_DECODED_PIXELS`]; checked before any
    /// pixel buffer is allocated, so a few-byte "decompression bomb" costs nothing.
    TooLarge {
        format: &'static str,
        width: u64,
        height: u64,
    },
    /// `max(h, w) / min(h, w) > 200`, which transformers' `smart_resize` refuses too.
    AspectRatio { height: u64, width: u64 },
    /// `smart_resize` produced an empty side (only possible with `min_pixels` = 0).
    ResizedToNothing { height: u64, width: u64 },
    /// A processor setting is out of range.
    BadConfig { field: &'static str, detail: String },
    /// A video frame's size differs from the first frame's.
    FrameSize {
        frame: usize,
        width: u64,
        height: u64,
        first_width: u64,
        first_height: u64,
    },
    /// A video finished with no frames.
    NoFrames,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::UnsupportedFormat { detected } => write!(
                f,
                "unsupported image format ({detected}): pass PNG, JPEG or WebP bytes \
                 (convert other formats first)"
            ),
            ImageError::Corrupt { format, detail } => write!(
                f,
                "cannot decode {format} image: {detail}; the file is truncated, corrupt or uses \
                 a feature we do not decode (e.g. 12-bit or arithmetic-coded JPEG): re-download \
                 it or re-encode it as 8-bit PNG or JPEG"
            ),
            ImageError::ZeroSize {
                format,
                width,
                height,
            } => write!(
                f,
                "{format} image has an empty side ({width}x{height} pixels): pass an image \
                 with at least one pixel"
            ),
            ImageError::TooLarge {
                format,
                width,
                height,
            } => write!(
                f,
                "{format} image is {width}x{height} = {} pixels, more than the limit of {} \
                 (about {side}x{side}); downscale it before sending",
                width * height,
                crate::MAX_DECODED_PIXELS,
                side = (crate::MAX_DECODED_PIXELS as f64).sqrt() as u64,
            ),
            ImageError::AspectRatio { height, width } => write!(
                f,
                "image aspect ratio is too extreme ({width}x{height} pixels, ratio {:.1}): \
                 Qwen2-VL accepts at most 200:1, crop or pad the image",
                *height.max(width) as f64 / *height.min(width) as f64
            ),
            ImageError::ResizedToNothing { height, width } => write!(
                f,
                "image of {width}x{height} pixels resizes to an empty grid with min_pixels = 0: \
                 set min_pixels to at least patch_size * merge_size squared"
            ),
            ImageError::BadConfig { field, detail } => {
                write!(f, "bad image processor setting {field}: {detail}")
            }
            ImageError::FrameSize {
                frame,
                width,
                height,
                first_width,
                first_height,
            } => write!(
                f,
                "video frame {frame} is {width}x{height} pixels but frame 0 is \
                 {first_width}x{first_height}: every frame of a video must have the same size \
                 (resize or crop them alike)"
            ),
            ImageError::NoFrames => write!(f, "the video has no frames: give at least one"),
        }
    }
}

impl std::error::Error for ImageError {}
