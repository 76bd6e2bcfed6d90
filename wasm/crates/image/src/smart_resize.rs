//! The target size of Qwen2-VL's resize. A port of transformers'
//! `models/qwen2_vl/image_processing_qwen2_vl.py::smart_resize` (5.17):
//!
//! ```python
//! if max(height, width) / min(height, width) > 200: raise ValueError(...)
//! h_bar = round(height / factor) * factor
//! w_bar = round(width / factor) * factor
//! if h_bar * w_bar > max_pixels:
//!     beta = math.sqrt((height * width) / max_pixels)
//!     h_bar = max(factor, math.floor(height / beta / factor) * factor)
//!     w_bar = max(factor, math.floor(width / beta / factor) * factor)
//! elif h_bar * w_bar < min_pixels:
//!     beta = math.sqrt(min_pixels / (height * width))
//!     h_bar = math.ceil(height * beta / factor) * factor
//!     w_bar = math.ceil(width * beta / factor) * factor
//! ```
//!
//! Python's `/` on ints is a correctly rounded f64 division, which `as f64` then `/` reproduces
//! for values below 2^53; `round` rounds half to even (`round_ties_even`); `math.sqrt`, `floor`
//! and `ceil` are IEEE, like Rust's.

use crate::error::ImageError;

/// Largest accepted `max(h, w) / min(h, w)`, as in transformers.
pub const MAX_ASPECT_RATIO: f64 = 200.0;

/// Returns `(height, width)`, both multiples of `factor`, with about the same aspect ratio and
/// `min_pixels <= h * w <= max_pixels` (up to rounding), exactly as transformers computes it.
pub fn smart_resize(
    height: u64,
    width: u64,
    factor: u64,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u64, u64), ImageError> {
    if height == 0 || width == 0 {
        return Err(ImageError::ZeroSize {
            format: "input",
            width,
            height,
        });
    }
    if height.max(width) as f64 / height.min(width) as f64 > MAX_ASPECT_RATIO {
        return Err(ImageError::AspectRatio { height, width });
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let mut h_bar = (h / f).round_ties_even() as u64 * factor;
    let mut w_bar = (w / f).round_ties_even() as u64 * factor;
    if h_bar * w_bar > max_pixels {
        let beta = ((height * width) as f64 / max_pixels as f64).sqrt();
        h_bar = factor.max((h / beta / f).floor() as u64 * factor);
        w_bar = factor.max((w / beta / f).floor() as u64 * factor);
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels as f64 / (height * width) as f64).sqrt();
        h_bar = (h * beta / f).ceil() as u64 * factor;
        w_bar = (w * beta / f).ceil() as u64 * factor;
    }
    if h_bar == 0 || w_bar == 0 {
        return Err(ImageError::ResizedToNothing { height, width });
    }
    Ok((h_bar, w_bar))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_rounds_halves_to_even() {
        let (min, max) = (3136, 12845056);
        // 42 / 28 = 1.5 → 2; 70 / 28 = 2.5 → 2; 98 / 28 = 3.5 → 4.
        assert_eq!(smart_resize(42, 84, 28, min, max), Ok((56, 84)));
        assert_eq!(smart_resize(70, 84, 28, min, max), Ok((56, 84)));
        assert_eq!(smart_resize(98, 84, 28, min, max), Ok((112, 84)));
    }

    #[test]
    fn smart_resize_refuses_ratios_over_200() {
        assert!(smart_resize(1, 200, 28, 3136, 12845056).is_ok());
        assert_eq!(
            smart_resize(1, 201, 28, 3136, 12845056),
            Err(ImageError::AspectRatio {
                height: 1,
                width: 201
            })
        );
    }
}
