//! The preprocessor settings that shape the output (preprocessor_config.json). Parsing the JSON is
//! the TypeScript side's job; this only holds and checks the numbers.

use crate::error::ImageError;

/// Qwen2-VL image processor settings; `Default` is transformers' class defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorConfig {
    /// Side of a ViT patch in pixels (14).
    pub patch_size: usize,
    /// Frames per temporal patch (2); a still image is repeated to fill them.
    pub temporal_patch_size: usize,
    /// Patches merged per side by the vision merger (2); resized sides are multiples of
    /// `patch_size * merge_size`.
    pub merge_size: usize,
    /// Lower bound on the resized area in pixels (`min_pixels` / `size.shortest_edge`).
    pub min_pixels: u64,
    /// Upper bound on the resized area in pixels (`max_pixels` / `size.longest_edge`).
    pub max_pixels: u64,
    /// Per-channel mean of the 0..1 pixel values (CLIP's by default).
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation of the 0..1 pixel values.
    pub image_std: [f32; 3],
    /// Multiplier from 0..255 to 0..1 (1/255).
    pub rescale_factor: f64,
}

impl Default for ProcessorConfig {
    // CLIP's mean and std with the digits preprocessor_config.json has; rounding them to f32 is
    // what torch.tensor(image_mean) does too.
    #[allow(clippy::excessive_precision)]
    fn default() -> Self {
        ProcessorConfig {
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            image_mean: [0.48145466, 0.4578275, 0.40821073],
            image_std: [0.26862954, 0.26130258, 0.27577711],
            rescale_factor: 1.0 / 255.0,
        }
    }
}

impl ProcessorConfig {
    /// `patch_size * merge_size`: resized sides are multiples of this.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// Refuses settings that would divide by zero, overflow or allocate absurdly.
    pub fn validate(&self) -> Result<(), ImageError> {
        let bad =
            |field: &'static str, detail: String| Err(ImageError::BadConfig { field, detail });
        for (field, v) in [
            ("patch_size", self.patch_size),
            ("temporal_patch_size", self.temporal_patch_size),
            ("merge_size", self.merge_size),
        ] {
            if v == 0 || v > 1024 {
                return bad(field, format!("{v} is not between 1 and 1024"));
            }
        }
        if self.max_pixels == 0 {
            return bad(
                "max_pixels",
                "0 leaves no room for a single patch".to_string(),
            );
        }
        // min_pixels decides how far small images are upscaled, so it bounds the output size.
        if self.min_pixels > crate::MAX_DECODED_PIXELS {
            return bad(
                "min_pixels",
                format!(
                    "{} is above the limit of {} pixels",
                    self.min_pixels,
                    crate::MAX_DECODED_PIXELS
                ),
            );
        }
        if self.min_pixels > self.max_pixels {
            return bad(
                "min_pixels",
                format!(
                    "{} is above max_pixels {}",
                    self.min_pixels, self.max_pixels
                ),
            );
        }
        for c in 0..3 {
            if !self.image_mean[c].is_finite() {
                return bad(
                    "image_mean",
                    format!("{:?} has a non-finite value", self.image_mean),
                );
            }
            if !(self.image_std[c].is_finite() && self.image_std[c] > 0.0) {
                return bad(
                    "image_std",
                    format!("{:?} must be finite and positive", self.image_std),
                );
            }
        }
        if !(self.rescale_factor.is_finite() && self.rescale_factor > 0.0) {
            return bad(
                "rescale_factor",
                format!("{} must be finite and positive", self.rescale_factor),
            );
        }
        Ok(())
    }
}
