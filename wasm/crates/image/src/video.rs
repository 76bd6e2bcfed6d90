//! A video's frames → pixel values, as transformers 5.17's `Qwen2VLVideoProcessor` does with
//! `do_sample_frames` off (every frame given is used):
//!
//! ```python
//! resized_height, resized_width = smart_resize(height, width, factor=patch_size * merge_size,
//!     min_pixels=size.shortest_edge, max_pixels=size.longest_edge)   # one size for all frames
//! videos = tvF.resize(videos, (resized_height, resized_width), BICUBIC, antialias=True)
//! videos = rescale_and_normalize(videos, ...)
//! if pad := -num_frames % temporal_patch_size:                         # repeat the last frame
//!     videos = torch.cat((videos, videos[:, -1:].expand(-1, pad, ...)), dim=1)
//! grid_t = num_frames // temporal_patch_size                          # rows: one group after another
//! ```
//!
//! Frames arrive one at a time ([`VideoPatcher::push`]), so only one temporal patch of resized
//! frames is held besides the output, and the caller may move the output out as it grows
//! ([`VideoPatcher::take_pixel_values`]): a long video never sits in (wasm32's 4 GiB of) memory
//! whole, decoded or patchified.

use crate::config::ProcessorConfig;
use crate::decode::RgbImage;
use crate::error::ImageError;
use crate::patchify::patchify_group_into;
use crate::resample::{Backend, resize_bicubic};
use crate::{Preprocessed, target_size};

/// Builds one video's pixel values from its frames, in order.
#[derive(Debug)]
pub struct VideoPatcher {
    config: ProcessorConfig,
    /// From frame 0 on: its (width, height), which every frame must have, and the (height, width)
    /// every frame is resized to.
    size: Option<((usize, usize), (usize, usize))>,
    /// Resized frames of the temporal patch being filled (< temporal_patch_size).
    pending: Vec<RgbImage>,
    frames: usize,
    grid_t: usize,
    /// (grid_t * grid_h * grid_w, 3 * temporal_patch_size * patch_size^2) f32 so far
    pixel_values: Vec<f32>,
}

impl VideoPatcher {
    /// An empty video; frame 0 will fix the size of all.
    pub fn new(config: &ProcessorConfig) -> Result<Self, ImageError> {
        config.validate()?;
        Ok(VideoPatcher {
            config: config.clone(),
            size: None,
            pending: Vec::with_capacity(config.temporal_patch_size),
            frames: 0,
            grid_t: 0,
            pixel_values: Vec::new(),
        })
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// `[grid_t, grid_h, grid_w]` of the video once it has `frames` frames in all; known from
    /// frame 0 on (None before), so a caller can refuse a video too long for its context before
    /// decoding the rest.
    pub fn grid_for(&self, frames: usize) -> Option<[usize; 3]> {
        let (p, t) = (self.config.patch_size, self.config.temporal_patch_size);
        self.size
            .map(|(_, (h, w))| [frames.div_ceil(t), h / p, w / p])
    }

    /// Moves out the pixel-value rows made so far (whole temporal patches, in order); later rows
    /// follow in the next take or in [`VideoPatcher::finish`].
    pub fn take_pixel_values(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.pixel_values)
    }

    /// Adds the next frame (RGB, the size of frame 0).
    pub fn push(&mut self, frame: &RgbImage) -> Result<(), ImageError> {
        let dims = (frame.width, frame.height);
        let (first, (h, w)) = match self.size {
            Some(size) => size,
            None => *self
                .size
                .insert((dims, target_size(frame.width, frame.height, &self.config)?)),
        };
        if dims != first {
            return Err(ImageError::FrameSize {
                frame: self.frames,
                width: frame.width as u64,
                height: frame.height as u64,
                first_width: first.0 as u64,
                first_height: first.1 as u64,
            });
        }
        self.pending
            .push(resize_bicubic(frame, w, h, Backend::Torchvision));
        self.frames += 1;
        if self.pending.len() == self.config.temporal_patch_size {
            self.flush();
        }
        Ok(())
    }

    /// Patchifies the pending frames as one temporal patch, the last repeated to fill it.
    fn flush(&mut self) {
        let last = self.pending.len() - 1;
        let group: Vec<&RgbImage> = (0..self.config.temporal_patch_size)
            .map(|i| &self.pending[i.min(last)])
            .collect();
        patchify_group_into(&group, &self.config, &mut self.pixel_values);
        self.grid_t += 1;
        self.pending.clear();
    }

    /// The video's pixel values not yet taken and `[grid_t, grid_h, grid_w]`; a last incomplete
    /// temporal patch is filled with its last frame.
    pub fn finish(mut self) -> Result<Preprocessed, ImageError> {
        if self.frames == 0 {
            return Err(ImageError::NoFrames);
        }
        if !self.pending.is_empty() {
            self.flush();
        }
        let p = self.config.patch_size;
        let (gh, gw) = self.size.map_or((0, 0), |(_, (h, w))| (h / p, w / p));
        Ok(Preprocessed {
            pixel_values: self.pixel_values,
            grid_thw: [self.grid_t, gh, gw],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess_rgb;

    fn config() -> ProcessorConfig {
        ProcessorConfig {
            min_pixels: 28 * 28,
            max_pixels: 56 * 56,
            ..ProcessorConfig::default()
        }
    }

    /// (height, width, 3) hash noise, different for each seed.
    fn noise(width: usize, height: usize, seed: u32) -> RgbImage {
        let data = (0..width * height * 3)
            .map(|i| {
                let v = (i as u32 ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(0x5BD1_E995);
                (v >> 13) as u8
            })
            .collect();
        RgbImage::new(width, height, data)
    }

    fn rows(p: &Preprocessed) -> usize {
        p.pixel_values.len() / (3 * 2 * 14 * 14)
    }

    #[test]
    fn frames_pair_into_temporal_patches_and_an_odd_last_frame_repeats() {
        let cfg = config();
        let frames: Vec<RgbImage> = (0..3).map(|s| noise(70, 50, s)).collect();
        let mut v = VideoPatcher::new(&cfg).unwrap();
        for f in &frames {
            v.push(f).unwrap();
        }
        assert_eq!(v.frames(), 3);
        let out = v.finish().unwrap();
        // 70x50 → smart_resize within 28²..56² (round(2.5) = 2, round(1.8) = 2) → 56x56.
        assert_eq!(out.grid_thw, [2, 4, 4]);
        assert_eq!(rows(&out), 32);
        // Group 0 is frames 0 and 1; group 1 is frame 2 twice.
        let resized: Vec<RgbImage> = frames
            .iter()
            .map(|f| resize_bicubic(f, 56, 56, Backend::Torchvision))
            .collect();
        let mut expected = Vec::new();
        patchify_group_into(&[&resized[0], &resized[1]], &cfg, &mut expected);
        patchify_group_into(&[&resized[2], &resized[2]], &cfg, &mut expected);
        assert_eq!(out.pixel_values, expected);
    }

    #[test]
    fn rows_taken_as_they_are_made_add_up_to_the_video() {
        let cfg = config();
        let frames: Vec<RgbImage> = (0..5).map(|s| noise(70, 50, s)).collect();
        let whole = {
            let mut v = VideoPatcher::new(&cfg).unwrap();
            frames.iter().for_each(|f| v.push(f).unwrap());
            v.finish().unwrap()
        };
        let mut v = VideoPatcher::new(&cfg).unwrap();
        assert_eq!(v.grid_for(5), None);
        let mut taken = Vec::new();
        for (k, f) in frames.iter().enumerate() {
            v.push(f).unwrap();
            assert_eq!(v.grid_for(5), Some([3, 4, 4]));
            let rows = v.take_pixel_values();
            // A temporal patch is made by every second frame.
            assert_eq!(rows.len(), if k % 2 == 1 { 16 * 1176 } else { 0 });
            taken.extend(rows);
        }
        let last = v.finish().unwrap();
        assert_eq!(last.grid_thw, whole.grid_thw);
        taken.extend(last.pixel_values);
        assert_eq!(taken, whole.pixel_values);
    }

    #[test]
    fn a_one_frame_video_is_the_still_image() {
        let cfg = config();
        let frame = noise(33, 61, 9);
        let mut v = VideoPatcher::new(&cfg).unwrap();
        v.push(&frame).unwrap();
        assert_eq!(v.finish().unwrap(), preprocess_rgb(&frame, &cfg).unwrap());
    }

    #[test]
    fn bad_videos_are_refused_with_the_reason() {
        let cfg = config();
        let mut v = VideoPatcher::new(&cfg).unwrap();
        v.push(&noise(40, 40, 1)).unwrap();
        let e = v.push(&noise(40, 41, 2)).unwrap_err();
        assert_eq!(
            e,
            ImageError::FrameSize {
                frame: 1,
                width: 40,
                height: 41,
                first_width: 40,
                first_height: 40
            }
        );
        assert!(
            e.to_string()
                .contains("video frame 1 is 40x41 pixels but frame 0 is 40x40")
        );
        let fresh = || VideoPatcher::new(&cfg).unwrap();
        assert_eq!(fresh().finish().unwrap_err(), ImageError::NoFrames);
        assert!(matches!(
            fresh().push(&RgbImage::new(0, 40, vec![])).unwrap_err(),
            ImageError::ZeroSize { .. }
        ));
        assert!(matches!(
            fresh().push(&noise(1, 400, 3)).unwrap_err(),
            ImageError::AspectRatio { .. }
        ));
    }
}
