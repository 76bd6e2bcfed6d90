/**
 * Position ids, pure TypeScript: the LLM's 3D M-RoPE positions (transformers'
 * `Qwen2VLModel.get_rope_index`) and the vision tower's 2D (h, w) positions and attention segments
 * (`get_vision_position_ids`, `get_vision_cu_seqlens` in transformers/vision_utils.py).
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import { type GridThw, patchCount } from "../image.ts";

export type { GridThw };

/** M-RoPE positions of a prompt. */
export interface RopeIndex {
  /** (3, seq) i32: temporal, height and width position of every prompt token. */
  positions: Int32Array;
  /**
   * max(position) + 1 − seq: decode token at cache index c gets position c + ropeDelta on all
   * three axes (0 for text-only prompts).
   */
  ropeDelta: number;
}

/**
 * The 3D positions of a prompt whose images (and videos) appear as runs of their pad tokens:
 * `padIds` is the image pad, or the image and video pads (a video is its grid's t·h·w/merge²
 * tokens, temporal positions 0..t−1 as an image's are 0, as Qwen2-VL places them).
 *
 * transformers (modeling_qwen2_vl.py, `get_rope_index` and `get_vision_position_ids`):
 * ```python
 * if modality_type == 0:
 *     text_len = end_idx - start_idx
 *     llm_pos_ids_list.append(torch.arange(text_len).view(1, -1).expand(3, -1) + current_pos)
 *     current_pos += text_len
 * else:
 *     grid_thw = next(grid_iters[modality_type])
 *     vision_position_ids = self.get_vision_position_ids(current_pos, grid_thw, 1, spatial_merge_size)
 *     current_pos += max(grid_thw[1], grid_thw[2]) // spatial_merge_size
 * ...
 * mrope_position_deltas.append(llm_positions.max() + 1 - len(current_input_ids))
 * # get_vision_position_ids: t, h, w = grid_t, grid_h // merge, grid_w // merge
 * #   meshgrid(arange(t), arange(h) + start, arange(w) + start, indexing="ij"); [0] += start
 * ```
 * A text-only prompt gets arange(seq) on every axis and delta 0 (`_prepare_position_ids_for_generation`).
 *
 * One difference, for videos: the text after an image or video starts one past its largest
 * position, `current + max(t, h / merge, w / merge)`, as Qwen2-VL's own code (transformers 4.x's
 * `st_idx = llm_pos_ids_list[-1].max() + 1`, which the models were trained with) and vLLM place
 * it; transformers 5.17's `current_pos += max(h, w) // merge` above is the same for every image
 * and for a video of t ≤ max(h, w) / merge, but for a longer video (64 frames of 448 × 252: t =
 * 32 against 16) it starts the text among the video's own temporal positions.
 *
 * @param inputIds (seq) token ids
 * @param grids one grid per image, in prompt order
 * @throws InvalidInputError when the image-token runs do not match the grids' token counts
 */
export function getRopeIndex(
  inputIds: ArrayLike<number>,
  grids: readonly GridThw[],
  padIds: number | readonly number[],
  spatialMergeSize: number,
): RopeIndex {
  const pads = new Set(typeof padIds === "number" ? [padIds] : padIds);
  const seq = inputIds.length;
  const pos = new Int32Array(3 * seq); // (3, seq)
  let current = 0; // next free position
  let maxPos = -1;
  let img = 0;
  let i = 0;
  while (i < seq) {
    const pad = inputIds[i];
    if (!pads.has(pad)) {
      pos[i] = pos[seq + i] = pos[2 * seq + i] = current;
      maxPos = Math.max(maxPos, current);
      current++;
      i++;
      continue;
    }
    if (img >= grids.length) {
      throw new InvalidInputError(
        `the prompt has more image-token runs (id ${pad}) than the ${grids.length} image grid(s) given`,
      );
    }
    const [t, gh, gw] = grids[img];
    const lh = gh / spatialMergeSize, lw = gw / spatialMergeSize;
    if (!Number.isInteger(lh) || !Number.isInteger(lw)) {
      throw new InvalidInputError(
        `image ${img} grid [${t}, ${gh}, ${gw}]: h and w must be multiples of the merge size ${spatialMergeSize}`,
      );
    }
    const n = t * lh * lw;
    for (let k = 0; k < n; k++) {
      if (i + k >= seq || inputIds[i + k] !== pad) {
        throw new InvalidInputError(
          `image ${img} (grid [${t}, ${gh}, ${gw}]) needs ${n} consecutive image tokens at ` +
            `position ${i}, found ${k}; expand each image placeholder to t·h·w/${
              spatialMergeSize ** 2
            } tokens`,
        );
      }
      const tt = Math.floor(k / (lh * lw)), hh = Math.floor(k / lw) % lh, ww = k % lw;
      pos[i + k] = tt + current;
      pos[seq + i + k] = hh + current;
      pos[2 * seq + i + k] = ww + current;
      maxPos = Math.max(maxPos, tt + current, hh + current, ww + current);
    }
    current += Math.max(t, lh, lw); // one past the largest position of the run (see above)
    i += n;
    img++;
  }
  if (img !== grids.length) {
    throw new InvalidInputError(
      `${grids.length} image grid(s) given but the prompt has image tokens for ${img}`,
    );
  }
  return { positions: pos, ropeDelta: seq === 0 ? 0 : maxPos + 1 - seq };
}

/**
 * The vision tower's rotary positions: for each patch row of pixel_values, its (h, w) patch
 * coordinate, in the 2×2 merge-block order the image processor emits the patches in.
 *
 * transformers/vision_utils.py `get_vision_position_ids`:
 * ```python
 * hpos_ids, wpos_ids = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
 * block_shape = (h // merge_size, merge_size, w // merge_size, merge_size)
 * hpos_ids = hpos_ids.reshape(block_shape).transpose(1, 2).flatten()
 * wpos_ids = wpos_ids.reshape(block_shape).transpose(1, 2).flatten()
 * position_ids.append(torch.stack([hpos_ids, wpos_ids], dim=-1).repeat(t, 1))
 * ```
 * @returns (Σ t·h·w, 2) u32: [h, w] per patch
 */
export function visionPositionIds(
  grids: readonly GridThw[],
  spatialMergeSize: number,
): Uint32Array {
  const m = spatialMergeSize;
  const out = new Uint32Array(patchCount(grids) * 2);
  let o = 0;
  for (const [t, h, w] of grids) {
    for (let f = 0; f < t; f++) {
      // Index order of (h/m, m, w/m, m) after transpose(1, 2): (bh, bw, ih, iw).
      for (let bh = 0; bh < h / m; bh++) {
        for (let bw = 0; bw < w / m; bw++) {
          for (let ih = 0; ih < m; ih++) {
            for (let iw = 0; iw < m; iw++) {
              out[o++] = bh * m + ih;
              out[o++] = bw * m + iw;
            }
          }
        }
      }
    }
  }
  return out;
}

/**
 * Attention segments of the vision tower: every frame of every image attends only to itself.
 *
 * transformers/vision_utils.py `get_vision_cu_seqlens`:
 * ```python
 * seqlens = torch.repeat_interleave(grid_thw[:, 1] * grid_thw[:, 2], grid_thw[:, 0])
 * return F.pad(seqlens.cumsum(dim=0, dtype=dtype), (1, 0), value=0)
 * ```
 * @returns (frames + 1) u32 cumulative patch counts, starting at 0
 */
export function visionCuSeqlens(grids: readonly GridThw[]): Uint32Array {
  const out: number[] = [0];
  for (const [t, h, w] of grids) {
    for (let f = 0; f < t; f++) out.push(out[out.length - 1] + h * w);
  }
  return Uint32Array.from(out);
}
