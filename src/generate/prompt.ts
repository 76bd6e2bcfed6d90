/**
 * Prompt text → input ids, with each image's single `<|image_pad|>` expanded to the number of
 * vision tokens the image becomes, as Qwen2VLProcessor does. From transformers'
 * processing_qwen2_vl.py:
 * ```python
 * merge_length = self.image_processor.merge_size**2
 * for i in range(len(text)):
 *     while self.image_token in text[i]:
 *         num_image_tokens = image_grid_thw[index].prod() // merge_length
 *         text[i] = text[i].replace(self.image_token, "<|placeholder|>" * num_image_tokens, 1)
 *         index += 1
 *     text[i] = text[i].replace("<|placeholder|>", self.image_token)
 * ```
 * The tokenizer splits special tokens out before anything else, so tokenizing the text with one
 * pad per image and repeating the pad id afterwards gives the same ids. Videos are the same with
 * `<|video_pad|>` (`replace_video_token`: video_grid_thw.prod() // merge_length each).
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import { type GridThw, imageTokenCount } from "../image.ts";

export type { GridThw };

/** Vision tokens per image after the merger: t·h·w / merge² each. */
export function imageTokenCounts(gridThw: readonly GridThw[], mergeSize: number): number[] {
  return gridThw.map((g) => imageTokenCount(g, mergeSize));
}

/**
 * Replaces the k-th placeholder in `ids` — a token among `padIds` (the image pad, and the video
 * pad) — by `counts[k]` copies of it.
 * Throws InvalidInputError when the number of placeholders differs from the number of images
 * (e.g. the text itself contains "<|image_pad|>"), or when `kinds` is given and the k-th
 * placeholder is not `kinds[k]` (an image's pad where a video's stands).
 * @param kinds the pad id each image (or video) needs, in order
 * @returns (seq) i32
 */
export function expandImagePads(
  ids: ArrayLike<number>,
  padIds: number | readonly number[],
  counts: readonly number[],
  kinds?: readonly number[],
): Int32Array {
  const pads = new Set(typeof padIds === "number" ? [padIds] : padIds);
  const at: number[] = []; // where the placeholders are
  for (let i = 0; i < ids.length; i++) if (pads.has(ids[i])) at.push(i);
  if (at.length !== counts.length) {
    throw new InvalidInputError(
      `the prompt has ${at.length} image placeholder(s) (token ${
        [...pads].join(" or ")
      }) but ${counts.length} image(s) ` +
        `were given; give one image per placeholder and do not type "<|image_pad|>" in text`,
    );
  }
  at.forEach((i, k) => {
    if (kinds && ids[i] !== kinds[k]) {
      throw new InvalidInputError(
        `placeholder ${k} of the prompt is token ${ids[i]} but its ${
          k < kinds.length ? `input needs token ${kinds[k]}` : "input is missing"
        }: the chat template must write an image's and a video's placeholders as given`,
      );
    }
  });
  const total = ids.length - at.length + counts.reduce((a, b) => a + b, 0);
  const out = new Int32Array(total);
  let o = 0, k = 0;
  for (let i = 0; i < ids.length; i++) {
    if (pads.has(ids[i])) {
      out.fill(ids[i], o, o + counts[k]);
      o += counts[k++];
    } else {
      out[o++] = ids[i];
    }
  }
  return out;
}

/** A prompt ready for the model: ids with expanded image pads and the preprocessed images. */
export interface PreparedPrompt {
  /** (seq) i32 */
  inputIds: Int32Array;
  /** (Σ t·h·w, channels · temporal_patch · patch²) f32, empty without images */
  pixelValues: Float32Array;
  /** One (t, h, w) per image or video, in prompt order. */
  gridThw: GridThw[];
  /** Σ vision tokens (image and video pads in inputIds). */
  imageTokens: number;
  /** A raw prompt's text as given (what `echo` shows; else the ids are decoded). */
  text?: string;
}
