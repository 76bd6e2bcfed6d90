//! Normalisation and patch flattening, as transformers 5.17's torchvision-backend
//! `Qwen2VLImageProcessor` does after the resize:
//!
//! ```python
//! # _fuse_mean_std_and_rescale_factor: fold the 1/255 rescale into mean and std (f32 tensors)
//! image_mean = torch.tensor(image_mean) * (1.0 / rescale_factor)
//! image_std = torch.tensor(image_std) * (1.0 / rescale_factor)
//! images = tvF.normalize(images.to(torch.float32), image_mean, image_std)   # (x - m) / s
//! # patchify
//! patches = images.reshape(b, c, gh // m, m, p, gw // m, m, p)
//! patches = patches.permute(0, 2, 5, 3, 6, 1, 4, 7)
//! flat = patches.unsqueeze(6).expand(..., temporal_patch_size, ...).reshape(b, gh * gw, c * t * p * p)
//! ```
//!
//! So each value is `(f32(x) - m) / s` in f32 with `m = f32(mean) * f32(1 / rescale)`, and rows
//! run over merge windows (gh/m, gw/m), then positions inside the window (m, m); columns over
//! (channel, frame, py, px). A still image fills both temporal frames with the same pixels.
//!
//! A video (`Qwen2VLVideoProcessor.patchify`) is the same per temporal patch: its frames taken
//! `temporal_patch_size` at a time (the last repeated to fill the final group), each group's rows
//! after the previous group's — `permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)` of
//! `(b, gt, t, c, gh/m, m, p, gw/m, m, p)`: rows (gt, gh/m, gw/m, m, m), columns (c, t, p, p).

use crate::config::ProcessorConfig;
use crate::decode::RgbImage;

/// Per-channel `(mean, std)` in pixel units (0..255), rounded to f32 the way torch does.
pub fn fused_mean_std(config: &ProcessorConfig) -> [(f32, f32); 3] {
    // torch multiplies an f32 tensor by a Python float in f32: the scalar is rounded first.
    let inv = (1.0 / config.rescale_factor) as f32;
    std::array::from_fn(|c| (config.image_mean[c] * inv, config.image_std[c] * inv))
}

/// `(x - mean) / std` for every u8 `x` of each channel: 3 x 256 f32, computed with the same f32
/// operations as torch, so looking a value up is bit-identical to computing it (and much faster
/// than a division per sample).
fn normalisation_table(config: &ProcessorConfig) -> [[f32; 256]; 3] {
    let mean_std = fused_mean_std(config);
    std::array::from_fn(|c| {
        let (mean, std) = mean_std[c];
        std::array::from_fn(|x| (x as f32 - mean) / std)
    })
}

/// Flattens a resized image (both sides multiples of `patch_size * merge_size`) into
/// `(grid_h * grid_w, 3 * temporal_patch_size * patch_size^2)` f32 rows, appended to `out`.
/// Returns `(grid_h, grid_w)`.
pub fn patchify_into(
    img: &RgbImage,
    config: &ProcessorConfig,
    out: &mut Vec<f32>,
) -> (usize, usize) {
    patchify_group_into(&vec![img; config.temporal_patch_size], config, out)
}

/// Flattens one temporal patch of a video — `temporal_patch_size` resized frames of one size, in
/// order — into `(grid_h * grid_w, 3 * temporal_patch_size * patch_size^2)` f32 rows appended to
/// `out`. A frame given twice in a row (a still image, a padded group) is normalised once.
/// Returns `(grid_h, grid_w)`.
pub fn patchify_group_into(
    frames: &[&RgbImage],
    config: &ProcessorConfig,
    out: &mut Vec<f32>,
) -> (usize, usize) {
    let p = config.patch_size;
    let m = config.merge_size;
    let t = config.temporal_patch_size;
    assert_eq!(frames.len(), t, "one temporal patch is {t} frames");
    let (width, height) = (frames[0].width, frames[0].height);
    assert!(
        frames
            .iter()
            .all(|f| f.width == width && f.height == height),
        "the frames of a temporal patch have one size"
    );
    assert!(
        height.is_multiple_of(p * m) && width.is_multiple_of(p * m),
        "resize to a multiple of {}",
        p * m
    );
    let (grid_h, grid_w) = (height / p, width / p);
    let table = normalisation_table(config);
    out.reserve(grid_h * grid_w * 3 * t * p * p);
    // (p, p) f32: one channel of one patch of one frame, copied again for the next frame when it
    // is the same image
    let mut frame = vec![0f32; p * p];
    let row_bytes = width * 3;
    for block_y in 0..grid_h / m {
        for block_x in 0..grid_w / m {
            for in_y in 0..m {
                for in_x in 0..m {
                    let (y0, x0) = ((block_y * m + in_y) * p, (block_x * m + in_x) * p);
                    // Row layout (channel, frame, py, px).
                    for (c, lut) in table.iter().enumerate() {
                        for (i, img) in frames.iter().enumerate() {
                            if i == 0 || !std::ptr::eq(*img, frames[i - 1]) {
                                for (py, dst) in frame.chunks_exact_mut(p).enumerate() {
                                    let src = &img.data[(y0 + py) * row_bytes + x0 * 3..][..p * 3];
                                    for (d, px) in dst.iter_mut().zip(src.chunks_exact(3)) {
                                        *d = lut[px[c] as usize];
                                    }
                                }
                            }
                            out.extend_from_slice(&frame);
                        }
                    }
                }
            }
        }
    }
    (grid_h, grid_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(patch: usize, merge: usize, temporal: usize) -> ProcessorConfig {
        ProcessorConfig {
            patch_size: patch,
            merge_size: merge,
            temporal_patch_size: temporal,
            image_mean: [0.0; 3],
            image_std: [1.0 / 255.0; 3],
            ..ProcessorConfig::default()
        }
    }

    #[test]
    fn patchify_into_orders_rows_by_merge_window_then_position() {
        // 4x4 image, patch 1, merge 2: pixel value = 10 * y + x in the red channel.
        let mut data = Vec::new();
        for y in 0..4u8 {
            for x in 0..4u8 {
                data.extend_from_slice(&[10 * y + x, 100, 200]);
            }
        }
        let img = RgbImage::new(4, 4, data);
        let cfg = config(1, 2, 2);
        let mut out = Vec::new();
        assert_eq!(patchify_into(&img, &cfg, &mut out), (4, 4));
        // std = 1/255 * 255 = 1 and mean 0: values are the raw pixels (up to f32 rounding of std).
        let red: Vec<u8> = out.chunks_exact(6).map(|r| r[0].round() as u8).collect();
        assert_eq!(
            red,
            [0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 30, 31, 22, 23, 32, 33]
        );
        // Each row is (channel, frame): both frames equal.
        for row in out.chunks_exact(6) {
            assert_eq!(row[0], row[1]);
            assert_eq!(
                (row[2].round(), row[3].round(), row[4].round()),
                (100.0, 100.0, 200.0)
            );
        }
    }

    #[test]
    fn patchify_group_into_puts_each_frame_in_its_temporal_slot() {
        // Two 2x2 frames, patch 1, merge 2, temporal 2: frame f's red = 50 * f + 10 * y + x.
        let frame = |f: u8| {
            let mut data = Vec::new();
            for y in 0..2u8 {
                for x in 0..2u8 {
                    data.extend_from_slice(&[50 * f + 10 * y + x, 7 + f, 9]);
                }
            }
            RgbImage::new(2, 2, data)
        };
        let (a, b) = (frame(0), frame(1));
        let cfg = config(1, 2, 2);
        let mut out = Vec::new();
        assert_eq!(patchify_group_into(&[&a, &b], &cfg, &mut out), (2, 2));
        // Rows (y, x) in merge order; columns (channel, frame).
        let rows: Vec<Vec<u8>> = out
            .chunks_exact(6)
            .map(|r| r.iter().map(|v| v.round() as u8).collect())
            .collect();
        assert_eq!(
            rows,
            [
                [0, 50, 7, 8, 9, 9],
                [1, 51, 7, 8, 9, 9],
                [10, 60, 7, 8, 9, 9],
                [11, 61, 7, 8, 9, 9]
            ]
        );
        // The same frame twice is what patchify_into writes for a still image.
        let (mut twice, mut still) = (Vec::new(), Vec::new());
        patchify_group_into(&[&b, &b], &cfg, &mut twice);
        patchify_into(&b, &cfg, &mut still);
        assert_eq!(twice, still);
    }
}
