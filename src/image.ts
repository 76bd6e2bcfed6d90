/**
 * Qwen2-VL image preprocessing, run in WebAssembly (`wasm/crates/image`): PNG / JPEG / WebP bytes
 * → the `pixel_values` and `image_grid_thw` that transformers 5.17's `Qwen2VLImageProcessor`
 * gives for the same file opened as `apply_chat_template` opens a path, URL or base64 image
 * (`load_image`). The steps are the file's EXIF orientation (`load_image` calls
 * `PIL.ImageOps.exif_transpose`: a phone photo stored sideways with Orientation 6 is turned
 * upright, its width and height swapped; all eight values, from a JPEG's APP1, a PNG's eXIf or a
 * WebP's EXIF chunk, or their XMP, read as PIL reads them; metadata that cannot be read is
 * ignored, never an error, even where PIL refuses the file for it, as past 64 MiB of PNG text;
 * the few other differences from PIL are listed in `wasm/crates/image/src/decode/exif.rs`),
 * transformers' `convert_to_rgb` (an image with transparency composited onto white, as
 * transformers since 5.2x, vLLM and qwen-vl-utils do — 5.17 dropped the alpha),
 * `smart_resize` to multiples of `patch_size * merge_size`, torchvision's antialiased uint8
 * bicubic resize (bit-exact), `(x / 255 - mean) / std` in f32, and the patch layout with each
 * still image repeated over `temporal_patch_size` frames.
 * A video ({@link VideoInput}: its frames) is preprocessed as `Qwen2VLVideoProcessor` does with
 * frame sampling off: every frame resized to the size smart_resize gives the first, the frames
 * paired into temporal patches (an odd last one repeated), `[t, h, w]` with t = ⌈frames / 2⌉.
 * Where the runtime has worker threads (Deno, Node), the images and a video's temporal patches
 * are made on a pool of them, several at once (src/_frame_pool.ts), to the same pixel values.
 *
 * PNG, WebP and JPEG pixels equal PIL's exactly, so inputs give transformers' values bit for
 * bit. JPEG is decoded with libjpeg-turbo's own arithmetic as Pillow 13 runs it (ISLOW IDCT,
 * fancy upsampling, its YCbCr → RGB tables, PIL's CMYK → RGB): baseline and progressive, every
 * sampling layout libjpeg accepts, restart intervals, gray, RGB, CMYK and YCCK
 * (`wasm/crates/image/src/decode/jpeg/`); arithmetic-coded, 12-bit and lossless JPEG are refused.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { imageTokenCount, parsePreprocessorConfig, preprocessImages } from "./image.ts";
 * const dir = new URL("../tests/fixtures/tiny-qwen2vl/", import.meta.url);
 * const config = parsePreprocessorConfig(
 *   JSON.parse(await Deno.readTextFile(new URL("preprocessor_config.json", dir))),
 * );
 * const png = await Deno.readFile(new URL("reference/case1_0.png", dir)); // 123 x 77
 * const { pixelValues, gridThw } = await preprocessImages([png], config);
 * assert.deepEqual(gridThw, [[1, 6, 8]]); // resized to 112 x 84
 * assert.equal(pixelValues.length, 48 * 1176); // (patches, 3 * 2 * 14 * 14)
 * assert.equal(imageTokenCount(gridThw[0], config.mergeSize), 12);
 * ```
 * @module
 */
import { loadWasm, wasm } from "./_wasm.ts";
import { ContextLengthError, InvalidInputError, ModelFileError, type QvqError } from "./errors.ts";
import { sharedFramePool } from "./_frame_pool.ts";
import { copySliced } from "./_worker_pool.ts";

/** The settings of preprocessor_config.json that shape the output. */
export interface ImageProcessorConfig {
  /** Side of a ViT patch in pixels (`patch_size`, 14). */
  patchSize: number;
  /** Frames per temporal patch (`temporal_patch_size`, 2); a still image fills every frame. */
  temporalPatchSize: number;
  /** Patches merged per side by the vision merger (`merge_size`, 2). */
  mergeSize: number;
  /** Smallest resized area in pixels (`min_pixels` or `size.shortest_edge`). */
  minPixels: number;
  /** Largest resized area in pixels (`max_pixels` or `size.longest_edge`). */
  maxPixels: number;
  /** Per-channel mean of the 0..1 pixel values (`image_mean`, CLIP's). */
  imageMean: [number, number, number];
  /** Per-channel standard deviation of the 0..1 pixel values (`image_std`). */
  imageStd: [number, number, number];
  /** Multiplier from 0..255 to 0..1 (`rescale_factor`); 1/255 when left out. */
  rescaleFactor?: number;
}

/**
 * `[t, h, w]`: an image's size in 14-pixel patches (temporal, height, width), as transformers'
 * `image_grid_thw`; `t` is 1 for a still image.
 */
export type GridThw = readonly [t: number, h: number, w: number];

/** The processor's output for a list of images (and videos). */
export interface PreprocessedImages {
  /** (sum of t·h·w over the images, 3 · temporalPatchSize · patchSize²) f32, images in order */
  pixelValues: Float32Array;
  /** One `[t, h, w]` per image (or video). */
  gridThw: GridThw[];
}

/**
 * A video as its frames, in order, all of one size: encoded PNG / JPEG / WebP bytes or decoded
 * pixels (what qwen-vl-utils calls a video given as a list of images). qvq decodes no video
 * files (MP4, WebM): extract the frames first, e.g. `ffmpeg -i in.mp4 -vf fps=2 f%03d.png`.
 * An encoded frame is turned upright by its EXIF orientation, as transformers' `load_image` turns
 * each file of a video given as frame files. A frame with transparency is composited onto white
 * as an image is, to 8-bit pixels, then resized; transformers' video processor blends it onto
 * white in floats and resizes those, so such a frame's pixel values differ from its: by a level
 * or so on smooth content, by tens of levels at hard edges (frames from a video file have no
 * alpha).
 */
export interface VideoInput {
  /** The frames in order, each a file's bytes or decoded pixels, all of one size. */
  frames: readonly (Uint8Array | DecodedImage)[];
  /**
   * This video's own bounds on a frame's resized area in pixels (qwen-vl-utils' `min_pixels` /
   * `max_pixels` on a video), narrowing the video settings' (clamped into them): a video costs
   * ⌈frames / 2⌉ · area / 28² tokens, so a lower `maxPixels` is how to fit more frames in the
   * context.
   */
  minPixels?: number;
  /** See {@link VideoInput.minPixels}. */
  maxPixels?: number;
}

/** Most frames a video may have (transformers' `max_frames` for Qwen2-VL). */
export const MAX_VIDEO_FRAMES = 768;

/** An image decoded to 8-bit RGB. */
export interface DecodedImage {
  /** Pixels a row. */
  width: number;
  /** Rows. */
  height: number;
  /** (height, width, 3) u8 */
  data: Uint8Array;
}

/**
 * Most pixels a decoded image may have (2^26, e.g. 8192 x 8192): larger images are refused from
 * their header, before any memory is allocated. Mirrors `MAX_DECODED_PIXELS` in the Rust crate.
 */
export const MAX_IMAGE_PIXELS = 2 ** 26;

/** Largest accepted `max(h, w) / min(h, w)`, as in transformers. */
export const MAX_ASPECT_RATIO = 200;

/** transformers' `Qwen2VLImageProcessor` class defaults, for fields a config leaves out. */
export const DEFAULT_IMAGE_PROCESSOR_CONFIG: Readonly<Required<ImageProcessorConfig>> = {
  patchSize: 14,
  temporalPatchSize: 2,
  mergeSize: 2,
  minPixels: 56 * 56,
  maxPixels: 28 * 28 * 1280,
  imageMean: [0.48145466, 0.4578275, 0.40821073],
  imageStd: [0.26862954, 0.26130258, 0.27577711],
  rescaleFactor: 1 / 255,
};

/**
 * transformers' `Qwen2VLVideoProcessor` class defaults (fewer pixels a frame than an image's),
 * for video settings that leave fields out. Without video settings of its own a model's videos
 * read preprocessor_config.json — the image settings, these defaults filling what it leaves out.
 */
export const DEFAULT_VIDEO_PROCESSOR_CONFIG: Readonly<Required<ImageProcessorConfig>> = {
  ...DEFAULT_IMAGE_PROCESSOR_CONFIG,
  minPixels: 128 * 28 * 28,
  maxPixels: 768 * 28 * 28,
};

const FILE = "preprocessor_config.json";

function configError(
  field: string,
  problem: string,
  value: unknown,
  file = FILE,
): ModelFileError {
  return new ModelFileError(
    `${file}: "${field}" ${problem}, got ${JSON.stringify(value) ?? String(value)}; ` +
      `fix the file or remove the field to use the default.`,
  );
}

function positiveInt(
  obj: Record<string, unknown>,
  field: string,
  fallback: number,
  file: string,
): number {
  const v = obj[field];
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1 || v > 1024) {
    throw configError(field, "must be an integer from 1 to 1024", v, file);
  }
  return v;
}

function pixelCount(v: unknown, field: string, file: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw configError(field, "must be a non-negative integer pixel count", v, file);
  }
  return v;
}

function triple(
  obj: Record<string, unknown>,
  field: string,
  fallback: readonly number[],
  positive: boolean,
  file: string,
): [number, number, number] {
  const v = obj[field];
  if (v === undefined) return [fallback[0], fallback[1], fallback[2]];
  // transformers also accepts one number for all channels.
  const values = typeof v === "number" ? [v, v, v] : v;
  if (
    !Array.isArray(values) || values.length !== 3 ||
    !values.every((x) => typeof x === "number" && Number.isFinite(x) && (!positive || x > 0))
  ) {
    throw configError(field, `must be 3 finite${positive ? " positive" : ""} numbers`, v, file);
  }
  return [values[0], values[1], values[2]];
}

/**
 * Reads the image settings of a parsed preprocessor_config.json. Pixel bounds come from
 * `min_pixels` / `max_pixels` when present (as the Qwen2-VL checkpoints write them), else from
 * `size.shortest_edge` / `size.longest_edge` (newer transformers) or `size.min_pixels` /
 * `size.max_pixels` (older); missing fields take transformers' defaults. Throws ModelFileError
 * naming the bad field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePreprocessorConfig } from "./image.ts";
 * const c = parsePreprocessorConfig({ size: { shortest_edge: 3136, longest_edge: 1003520 } });
 * assert.deepEqual([c.minPixels, c.maxPixels, c.patchSize], [3136, 1003520, 14]);
 * ```
 */
export function parsePreprocessorConfig(
  json: unknown,
  defaults: Readonly<Required<ImageProcessorConfig>> = DEFAULT_IMAGE_PROCESSOR_CONFIG,
  file = FILE,
): ImageProcessorConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ModelFileError(
      `${file} must hold a JSON object, got ${Array.isArray(json) ? "an array" : String(json)}.`,
    );
  }
  const obj = json as Record<string, unknown>;
  for (const flag of ["do_resize", "do_rescale", "do_normalize", "do_convert_rgb"]) {
    if (obj[flag] === false) {
      throw configError(
        flag,
        "must be true (qvq always runs this step, as Qwen2-VL expects)",
        false,
        file,
      );
    }
  }
  const size = obj.size ?? {};
  if (typeof size !== "object" || size === null || Array.isArray(size)) {
    throw configError("size", "must be an object", size, file);
  }
  const s = size as Record<string, unknown>;
  const d = defaults;
  const minPixels = pixelCount(obj.min_pixels, "min_pixels", file) ??
    pixelCount(s.shortest_edge, "size.shortest_edge", file) ??
    pixelCount(s.min_pixels, "size.min_pixels", file) ?? d.minPixels;
  const maxPixels = pixelCount(obj.max_pixels, "max_pixels", file) ??
    pixelCount(s.longest_edge, "size.longest_edge", file) ??
    pixelCount(s.max_pixels, "size.max_pixels", file) ?? d.maxPixels;
  if (maxPixels < 1) throw configError("max_pixels", "must be at least 1", maxPixels, file);
  if (minPixels > maxPixels) {
    throw configError("min_pixels", `must not exceed max_pixels (${maxPixels})`, minPixels, file);
  }
  if (minPixels > MAX_IMAGE_PIXELS) {
    throw configError("min_pixels", `must not exceed ${MAX_IMAGE_PIXELS}`, minPixels, file);
  }
  const rescaleFactor = obj.rescale_factor ?? d.rescaleFactor;
  if (
    typeof rescaleFactor !== "number" || !(rescaleFactor > 0) || !Number.isFinite(rescaleFactor)
  ) {
    throw configError("rescale_factor", "must be a positive number", rescaleFactor, file);
  }
  return {
    patchSize: positiveInt(obj, "patch_size", d.patchSize, file),
    temporalPatchSize: positiveInt(obj, "temporal_patch_size", d.temporalPatchSize, file),
    mergeSize: positiveInt(obj, "merge_size", d.mergeSize, file),
    minPixels,
    maxPixels,
    imageMean: triple(obj, "image_mean", d.imageMean, false, file),
    imageStd: triple(obj, "image_std", d.imageStd, true, file),
    rescaleFactor,
  };
}

/** Python's `round()`: halves go to the even neighbour (2.5 → 2, 3.5 → 4). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The size Qwen2-VL resizes a `height` x `width` image to: `[h, w]`, multiples of
 * `patchSize * mergeSize` with `minPixels <= h * w <= maxPixels` and about the same aspect ratio.
 * A line-by-line port of transformers' `smart_resize` (Python `round` is half-to-even; the
 * float operations are the same IEEE doubles), so sizes always agree. Throws InvalidInputError
 * for empty images and aspect ratios over 200.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_IMAGE_PROCESSOR_CONFIG as defaults, smartResize } from "./image.ts";
 * assert.deepEqual(smartResize(960, 1280, { ...defaults, maxPixels: 12845056 }), [952, 1288]);
 * assert.deepEqual(smartResize(960, 1280, defaults), [840, 1148]); // over 1003520 px: shrunk
 * ```
 */
export function smartResize(
  height: number,
  width: number,
  config: Pick<ImageProcessorConfig, "patchSize" | "mergeSize" | "minPixels" | "maxPixels">,
): [number, number] {
  for (const [name, v] of [["height", height], ["width", width]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new InvalidInputError(`Image ${name} must be a positive integer, got ${v}.`);
    }
  }
  const factor = config.patchSize * config.mergeSize;
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > MAX_ASPECT_RATIO) {
    throw new InvalidInputError(
      `Image aspect ratio is too extreme (${width}x${height} pixels, ratio ${ratio.toFixed(1)}): ` +
        `Qwen2-VL accepts at most ${MAX_ASPECT_RATIO}:1, crop or pad the image.`,
    );
  }
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > config.maxPixels) {
    const beta = Math.sqrt((height * width) / config.maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < config.minPixels) {
    const beta = Math.sqrt(config.minPixels / (height * width));
    h = Math.ceil(height * beta / factor) * factor;
    w = Math.ceil(width * beta / factor) * factor;
  }
  if (h === 0 || w === 0) {
    throw new InvalidInputError(
      `Image of ${width}x${height} pixels resizes to an empty grid with min_pixels = ` +
        `${config.minPixels}: set min_pixels to at least ${factor * factor}.`,
    );
  }
  return [h, w];
}

/**
 * How many `<|image_pad|>` tokens an image takes in the prompt: `t·h·w / mergeSize²` (the
 * merger turns each mergeSize x mergeSize block of patches into one token).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { imageTokenCount } from "./image.ts";
 * assert.equal(imageTokenCount([1, 24, 32], 2), 192);
 * ```
 */
export function imageTokenCount(
  gridThw: readonly [number, number, number],
  mergeSize: number,
): number {
  const [t, h, w] = gridThw;
  if (h % mergeSize !== 0 || w % mergeSize !== 0) {
    throw new InvalidInputError(
      `Image grid [${gridThw.join(", ")}] is not divisible by merge_size ${mergeSize}: ` +
        `h and w must be multiples of it.`,
    );
  }
  return (t * h * w) / (mergeSize * mergeSize);
}

/** Patches (rows of pixel values) of the images of `grids`: Σ t·h·w. */
export function patchCount(grids: readonly GridThw[]): number {
  return grids.reduce((a, [t, h, w]) => a + t * h * w, 0);
}

const ERRORS: Record<string, new (message: string) => QvqError> = {
  ModelFileError,
  InvalidInputError,
};

/** Runs a wasm call, turning its named JS errors into qvq's error classes (with a prefix). */
function call<T>(prefix: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const cls = e instanceof Error ? ERRORS[e.name] : undefined;
    if (cls) throw new cls(`${prefix}${(e as Error).message}`);
    throw e;
  }
}

function checkBytes(bytes: unknown, what: string): Uint8Array {
  if (!(bytes instanceof Uint8Array)) {
    throw new InvalidInputError(
      `${what} must be a Uint8Array of encoded PNG, JPEG or WebP bytes, got ${typeof bytes}.`,
    );
  }
  return bytes;
}

/** Throws InvalidInputError unless `image` is decoded pixels: `data` of width × height RGB triples. */
function checkDecoded(image: unknown, what: string): void {
  const { width, height, data } = (image ?? {}) as Partial<DecodedImage>;
  const size = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  if (
    typeof image !== "object" || !size(width) || !size(height) || !(data instanceof Uint8Array)
  ) {
    throw new InvalidInputError(
      `${what} must be encoded bytes (a Uint8Array of PNG, JPEG or WebP) or decoded pixels ` +
        `({ width, height, data: (height, width, 3) RGB Uint8Array }), got ${typeof image}.`,
    );
  }
  if (data.length !== width! * height! * 3) {
    throw new InvalidInputError(
      `${what}: data has ${data.length} bytes, not width × height × 3 = ${
        width! * height! * 3
      } for ${width}×${height} RGB pixels.`,
    );
  }
}

/**
 * Decodes PNG, JPEG or WebP bytes to upright 8-bit RGB exactly as transformers' `load_image` and
 * `convert_to_rgb` make of the file: turned by its EXIF orientation
 * (`PIL.ImageOps.exif_transpose`; values 5–8 swap width and height), then `convert("RGB")`, an
 * image with transparency (alpha, a PNG's tRNS) composited onto white as `Image.alpha_composite`
 * does (every format bit-exact: see the module notes). Throws InvalidInputError for unsupported,
 * corrupt, empty or oversized ({@link MAX_IMAGE_PIXELS}) images; metadata that cannot be read
 * leaves the image as stored.
 */
export async function decodeImage(bytes: Uint8Array): Promise<DecodedImage> {
  checkBytes(bytes, "The image");
  await loadWasm();
  return call("", () => decodeRgb(bytes));
}

/** decodeImage() once the wasm is loaded, its errors wasm's. */
function decodeRgb(bytes: Uint8Array): DecodedImage {
  const img = wasm.imgDecode(bytes);
  try {
    return { width: img.width, height: img.height, data: img.takeData() };
  } finally {
    img.free();
  }
}

/**
 * The size {@link decodeImage} gives PNG, JPEG or WebP bytes (upright: EXIF orientations 5–8 swap
 * the stored width and height), from their headers and metadata alone: no pixels decoded (a
 * server counts a request's image tokens before it spends the memory and time of decoding them).
 * Throws InvalidInputError where {@link decodeImage} would refuse the size or the format; an image
 * whose headers read fine may still fail to decode.
 */
export async function imageSize(bytes: Uint8Array): Promise<ImageSize> {
  checkBytes(bytes, "The image");
  await loadWasm();
  const [width, height] = call("", () => wasm.imgSize(bytes));
  return { width, height };
}

/** The formats {@link decodeImage} reads. */
export const DECODED_FORMATS: readonly string[] = ["PNG", "JPEG", "WebP"];

/**
 * Bytes enough to tell an image's format: {@link imageFormat} reads no further (an ISO media
 * file's brand ends at byte 12).
 */
const SIGNATURE_BYTES = 16;

/**
 * What encoded image bytes are, by their first bytes, as {@link decodeImage} tells them before it
 * decodes: "PNG", "JPEG" or "WebP" ({@link DECODED_FORMATS}), else the format found — "GIF",
 * "BMP", "TIFF", "AVIF", "HEIC", "HEIF/HEIC or MP4" (another ISO media file), "JPEG XL",
 * "Photoshop", "text (SVG or HTML?)" —, "empty input" or "unknown signature". One table, in Rust
 * (`sniff` in wasm/crates/image/src/decode/mod.rs), for this and for the decoder's refusals.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { imageFormat } from "./image.ts";
 * assert.equal(await imageFormat(new TextEncoder().encode("GIF89a\x01\x00")), "GIF");
 * assert.equal(await imageFormat(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])), "JPEG");
 * ```
 */
export async function imageFormat(bytes: Uint8Array): Promise<string> {
  checkBytes(bytes, "The image");
  await loadWasm();
  // The signature alone crosses into wasm's memory, not a 20 MB photo.
  return wasm.imgFormat(bytes.subarray(0, SIGNATURE_BYTES));
}

/** Options of {@link preprocessImages}. */
export interface PreprocessOptions {
  /**
   * How videos are resized (the model's video_preprocessor_config.json); the image settings when
   * left out, as transformers does for a model without that file. Patch, merge and temporal
   * sizes must be the image settings'.
   */
  videoConfig?: ImageProcessorConfig;
  /**
   * Refuse the images as soon as they need more image tokens than this (the model's context), so
   * that a request with many huge images fails after the first one over the limit instead of
   * holding every image's pixel values (up to ~300 MB each at the default max_pixels) first.
   */
  maxImageTokens?: number;
  /**
   * Where images and a video's frames are resized: on these threads, several at once (a job an
   * image, a temporal patch of a video; {@link sharedFramePool} by default, where the runtime has
   * worker threads), or on this one, one after another, where null. The pixel values and the
   * errors are the same either way.
   * @internal the pool's job and answer types are qvq's own (src/_frame_pool.ts, tests)
   */
  framePool?: FramePool | null;
}

/**
 * Preprocesses encoded images (PNG, JPEG or WebP bytes) as transformers' Qwen2-VL image
 * processor does: one `[t, h, w]` per image, and their patches concatenated in order. A
 * {@link VideoInput} among them is preprocessed as the video processor does (its `[t, h, w]` with
 * t = ⌈frames / 2⌉), in its place. Throws InvalidInputError naming the image (by index; a video's
 * frame too) that is unsupported, corrupt, empty, oversized or too elongated, and ModelFileError
 * for impossible settings.
 */
export async function preprocessImages(
  images: readonly (Uint8Array | DecodedImage | VideoInput)[],
  config: ImageProcessorConfig,
  options: PreprocessOptions = {},
): Promise<PreprocessedImages> {
  if (!Array.isArray(images)) {
    throw new InvalidInputError(`images must be an array of Uint8Array, got ${typeof images}.`);
  }
  images.forEach((image, i) => {
    if (isVideo(image)) checkVideo(image, `Image ${i} (a video)`);
    else checkImage(image, `Image ${i}`);
  });
  const video = options.videoConfig;
  if (video) {
    for (const key of ["patchSize", "temporalPatchSize", "mergeSize"] as const) {
      if (video[key] !== config[key]) {
        throw new InvalidInputError(
          `videoConfig.${key} is ${video[key]} but the images' is ${config[key]}: the vision ` +
            `tower has one patch layout.`,
        );
      }
    }
  }
  await loadWasm();
  const settings = wasmConfig(config, "config");
  try {
    if (video && images.some(isVideo)) wasmConfig(video, "videoConfig").free(); // its errors first
    const pool = images.length
      ? (options.framePool === undefined ? sharedFramePool() : options.framePool ?? undefined)
      : undefined;
    return await preprocessEach(images, settings, video ?? config, config, options, pool);
  } finally {
    settings.free();
  }
}

/** `config` as the wasm preprocess calls take it (`what` names it in errors). */
function wasmConfig(
  config: ImageProcessorConfig,
  what: string,
): wasm.ImgConfig {
  // Ranges are checked in Rust; here only what would be silently truncated crossing into wasm.
  for (
    const key of ["patchSize", "temporalPatchSize", "mergeSize", "minPixels", "maxPixels"] as const
  ) {
    if (!Number.isSafeInteger(config[key]) || config[key] < 0) {
      throw new InvalidInputError(
        `${what}.${key} must be a non-negative integer, got ${config[key]}.`,
      );
    }
  }
  return call("", () =>
    new wasm.ImgConfig(
      config.patchSize,
      config.temporalPatchSize,
      config.mergeSize,
      config.minPixels,
      config.maxPixels,
      Float32Array.from(config.imageMean),
      Float32Array.from(config.imageStd),
      config.rescaleFactor ?? DEFAULT_IMAGE_PROCESSOR_CONFIG.rescaleFactor,
    ));
}

/** Whether `x` is a {@link VideoInput} (an object with `frames`), not an image. */
export function isVideo(x: unknown): x is VideoInput {
  return typeof x === "object" && x !== null && !(x instanceof Uint8Array) && "frames" in x;
}

function checkImage(image: unknown, what: string): void {
  if (image instanceof Uint8Array) checkBytes(image, what);
  else checkDecoded(image, what);
}

function checkVideo(video: VideoInput, what: string): void {
  const frames = video.frames;
  if (!Array.isArray(frames) || frames.length === 0 || frames.length > MAX_VIDEO_FRAMES) {
    throw new InvalidInputError(
      `${what}: frames must be an array of 1 to ${MAX_VIDEO_FRAMES} images (encoded bytes or ` +
        `decoded pixels), got ${
          Array.isArray(frames) ? `${frames.length} frames` : typeof frames
        }.`,
    );
  }
  frames.forEach((f, k) => checkImage(f, `${what}, frame ${k}`));
  for (const key of ["minPixels", "maxPixels"] as const) {
    const v = video[key];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < (key === "maxPixels" ? 1 : 0))) {
      throw new InvalidInputError(
        `${what}: ${key} must be an integer of at least ${key === "maxPixels" ? 1 : 0}, got ${v}.`,
      );
    }
  }
}

/**
 * The settings a video is resized with: `config` with its bounds narrowed by the video's own
 * (see VideoInput) — clamped into the config's [minPixels, maxPixels], as qwen-vl-utils' resize is
 * followed by the processor's, so a request cannot make frames larger (or smaller) than the model
 * allows; undefined where the video has none.
 */
function ownBounds(
  video: VideoInput,
  config: ImageProcessorConfig,
  what: string,
): ImageProcessorConfig | undefined {
  if (video.minPixels === undefined && video.maxPixels === undefined) return undefined;
  const clamp = (x: number) => Math.min(Math.max(x, config.minPixels), config.maxPixels);
  const minPixels = clamp(video.minPixels ?? config.minPixels);
  const maxPixels = clamp(video.maxPixels ?? config.maxPixels);
  if (minPixels > maxPixels) {
    throw new InvalidInputError(
      `${what}: minPixels ${video.minPixels} must not exceed maxPixels ${video.maxPixels}.`,
    );
  }
  return { ...config, minPixels, maxPixels };
}

/** An image's or a video's output: its grid and its rows of pixel values (in parts). */
export interface Patches {
  grid: GridThw;
  values: Float32Array[];
}

/** Frees a wasm object, keeping the error in flight (a trapped instance refuses to free). */
function freeQuietly(x: { free(): void }): void {
  try {
    x.free();
  } catch {
    // after a trap the instance is unusable; the original error says why
  }
}

/**
 * One video's patches, its frames resized on `pool`'s threads where given (see
 * {@link patchOnPool}), else here one after another ({@link patchFrames}). From frame 0 the
 * video's size is known: `tokenRoom` refuses (ContextLengthError) a video that would not fit
 * before the other frames are resized.
 */
async function preprocessVideo(
  video: VideoInput,
  config: ImageProcessorConfig,
  what: string,
  tokenRoom: (tokens: number) => void,
  pool: FramePool | undefined,
): Promise<Patches> {
  const own = ownBounds(video, config, what) ?? config;
  const room = (grid: GridThw) => tokenRoom(imageTokenCount(grid, config.mergeSize));
  const total = video.frames.length;
  if (!pool) return patchFrames(video.frames, { start: 0, total }, own, what, room);
  return await patchOnPool(pool, video.frames, own, what, room);
}

/** Where a run of a video's frames lies in it: see {@link patchFrames}. */
export interface FrameRun {
  /** The index of the run's first frame in the video. */
  start: number;
  /** Frames in the whole video (its grid's t is ⌈total / temporalPatchSize⌉). */
  total: number;
  /**
   * Frame 0's size, which every frame must have, for a run that does not start at frame 0 (one
   * that does holds frame 0 itself).
   */
  first?: ImageSize;
}

/**
 * A run of a video's frames patchified with `config` (the video's own bounds applied): `frames`
 * are the video's from `run.start` on — whole temporal patches, unless the run ends the video (its
 * last patch then repeats its last frame). Each frame is decoded (when bytes) and fed to the wasm
 * patcher in turn, each temporal patch's rows moved out of wasm's memory as soon as it is made;
 * `onGrid` hears the video's grid once the run's first frame is in (it may throw, to stop there).
 * Throws what the whole video's preprocessing throws at the run's first bad frame, in the same
 * words. The serial path runs it on the whole video; a {@link FramePool}'s workers on a temporal
 * patch each (src/_frame_worker.ts). Not part of the module's API (mod.ts).
 */
export function patchFrames(
  frames: readonly (Uint8Array | DecodedImage)[],
  run: FrameRun,
  config: ImageProcessorConfig,
  what: string,
  onGrid: (grid: GridThw) => void,
): Patches {
  const settings = wasmConfig(config, what);
  let v: wasm.ImgVideo;
  try {
    v = call(`${what}: `, () => new wasm.ImgVideo(settings));
  } finally {
    freeQuietly(settings); // the patcher holds its own copy
  }
  const { start, total, first } = run;
  // The patcher checks each frame's size against its own first frame; a run after frame 0 checks
  // against frame 0's here, in the patcher's words (wasm/crates/image/src/error.rs, FrameSize).
  const push = (f: Uint8Array | DecodedImage, k: number) => {
    if (!first) return f instanceof Uint8Array ? v.push(f) : v.pushRgb(f.data, f.width, f.height);
    const { width, height, data } = f instanceof Uint8Array ? decodeRgb(f) : f;
    if (width !== first.width || height !== first.height) {
      throw new InvalidInputError(
        `video frame ${k} is ${width}x${height} pixels but frame 0 is ` +
          `${first.width}x${first.height}: every frame of a video must have the same size ` +
          "(resize or crop them alike)",
      );
    }
    v.pushRgb(data, width, height);
  };
  const values: Float32Array[] = [];
  try {
    frames.forEach((f, i) => {
      call(`${what}, frame ${start + i}: `, () => push(f, start + i));
      if (i === 0) {
        const [t, h, w] = v.gridFor(total);
        onGrid([t, h, w]);
      }
      const rows = v.takePixelValues();
      if (rows.length) values.push(rows);
    });
    const out = call(`${what}: `, () => v.finish());
    try {
      const [t, h, w] = out.gridThw;
      values.push(out.takePixelValues());
      return { grid: [t, h, w], values };
    } finally {
      freeQuietly(out);
    }
  } finally {
    freeQuietly(v);
  }
}

/** A job for a {@link FramePool}: {@link patchFrames} of `frames`, a run of a video's frames. */
export interface FrameJob {
  frames: readonly (Uint8Array | DecodedImage)[];
  run: FrameRun;
  config: ImageProcessorConfig;
  what: string;
}

/**
 * A {@link FrameJob}'s answer: the video's grid once the run's first frame was in, the run's rows
 * (in parts), and the error that stopped it, if one did (after the grid, where the first frame
 * was in).
 */
export interface FrameAnswer {
  grid?: GridThw;
  values: Float32Array[];
  error?: Error;
}

/** A job for a {@link FramePool}: {@link patchImage} of a still image. */
export interface ImageJob {
  image: Uint8Array | DecodedImage;
  config: ImageProcessorConfig;
  what: string;
}

/**
 * Threads that resize images ({@link patchImage}) and a video's frames ({@link patchFrames}),
 * `size` jobs at once: the shared one of src/_frame_pool.ts by default, where the runtime has
 * worker threads.
 */
export interface FramePool {
  /** How many jobs run at once. */
  readonly size: number;
  /** A job's answer; rejects only where the thread failed (ended, past its time limit). */
  patch(job: FrameJob): Promise<FrameAnswer>;
  /**
   * A still image's answer (its grid and rows, or the error that refused it); rejects only where
   * the thread failed.
   */
  image(job: ImageJob): Promise<FrameAnswer>;
}

/**
 * A video's patches made on `pool`: a job a temporal patch ({@link patchFrames} of its frames),
 * `pool.size` at once, so a video's frames are resized in parallel and off this thread (an engine
 * thread's decode loop goes on meanwhile). The rows are the serial path's exactly — a temporal
 * patch's rows depend on its own frames alone, and they follow one another in order — and so is
 * the error: answers are taken in frame order, the room checked after frame 0's, the first error
 * thrown, and no job starts after one failed. Frame 0's size (its header's, for bytes) goes with
 * every later job; where frame 0's header does not read (it will not decode either), one job takes
 * the whole video, which fails as the serial path does.
 */
async function patchOnPool(
  pool: FramePool,
  frames: readonly (Uint8Array | DecodedImage)[],
  config: ImageProcessorConfig,
  what: string,
  room: (grid: GridThw) => void,
): Promise<Patches> {
  const total = frames.length, step = config.temporalPatchSize;
  const first = await frameSize(frames[0]);
  const starts = first ? Array.from({ length: Math.ceil(total / step) }, (_, j) => j * step) : [0];
  const answers = starts.map(() => Promise.withResolvers<FrameAnswer>());
  let next = 0, stop = false;
  const lane = async () => {
    while (!stop && next < starts.length) {
      const j = next++, start = starts[j];
      const job: FrameJob = {
        frames: frames.slice(start, starts[j + 1] ?? total),
        run: { start, total, ...(start > 0 ? { first } : {}) },
        config,
        what,
      };
      let answer: FrameAnswer = await pool.patch(job).catch((error) => ({ values: [], error }));
      if (j === 0 && answer.grid) {
        try {
          room(answer.grid); // before the job's own error (a bad frame 1), as the serial path
        } catch (error) {
          answer = { ...answer, error: error as Error };
        }
      }
      if (answer.error) stop = true;
      answers[j].resolve(answer);
    }
  };
  for (let i = 0; i < Math.min(pool.size, starts.length); i++) lane();
  // The rows go into one array as they come, sized from frame 0's grid: no 90 MB copy at the end
  // (8 frames of 1280 × 720 took 60–90 ms to join on the 2-core VM, holding this thread).
  let grid: GridThw | undefined, rows: Float32Array | undefined, at = 0;
  try {
    for (const [j, { promise }] of answers.entries()) {
      const answer = await promise;
      if (answer.error) throw answer.error;
      if (j === 0) {
        const [t, h, w] = grid = answer.grid!;
        rows = new Float32Array(t * h * w * 3 * step * config.patchSize ** 2);
      }
      for (const part of answer.values) {
        await copySliced(rows!, part, at); // a slice a turn: this thread is an engine's
        at += part.length;
      }
    }
  } finally {
    stop = true; // the jobs in flight end unheard
  }
  return { grid: grid!, values: [rows!] };
}

/** A frame's size: decoded pixels' own, bytes' from their header; undefined where it does not read. */
async function frameSize(frame: Uint8Array | DecodedImage): Promise<ImageSize | undefined> {
  if (!(frame instanceof Uint8Array)) return { width: frame.width, height: frame.height };
  try {
    return await imageSize(frame);
  } catch (e) {
    if (!(e instanceof InvalidInputError)) throw e;
  }
}

/**
 * A still image's patches with `config`, as the serial path makes them ({@link preprocessOne}): a
 * {@link FramePool}'s workers run it (src/_frame_worker.ts). Not part of the module's API (mod.ts).
 */
export function patchImage(
  image: Uint8Array | DecodedImage,
  config: ImageProcessorConfig,
  what: string,
): Patches {
  const settings = wasmConfig(config, "config");
  try {
    return preprocessOne(image, settings, what);
  } finally {
    freeQuietly(settings);
  }
}

/** One image's patches. */
function preprocessOne(
  image: Uint8Array | DecodedImage,
  settings: wasm.ImgConfig,
  what: string,
): Patches {
  const out = call(
    `${what}: `,
    () =>
      image instanceof Uint8Array
        ? wasm.imgPreprocess(image, settings)
        : wasm.imgPreprocessRgb(image.data, image.width, image.height, settings),
  );
  try {
    const [t, h, w] = out.gridThw;
    return { grid: [t, h, w], values: [out.takePixelValues()] };
  } finally {
    freeQuietly(out);
  }
}

/**
 * Throws ContextLengthError where the images up to image `i` need more than `most` image tokens
 * (`tokens` of them).
 */
function checkRoom(
  i: number,
  image: Uint8Array | DecodedImage | VideoInput,
  tokens: number,
  most: number | undefined,
): void {
  if (most === undefined || tokens <= most) return;
  throw new ContextLengthError(
    `Image ${i}: the images so far need ${tokens} image tokens, more than the model's context ` +
      `of ${most}; send fewer or smaller images` +
      `${
        isVideo(image) ? " (or fewer frames, or a lower max_pixels — maxPixels in a module)" : ""
      }.`,
  );
}

/**
 * The grid an image (a video: `image` is it, `size` its frames') of `size` is resized to:
 * `smartResize` with the image settings, or the video's (its own bounds within them), a temporal
 * patch a pair of frames.
 */
function gridOf(
  image: Uint8Array | DecodedImage | VideoInput,
  size: ImageSize,
  config: ImageProcessorConfig,
  videoConfig: ImageProcessorConfig,
  what: string,
): GridThw {
  const video = isVideo(image);
  const settings = video ? ownBounds(image, videoConfig, what) ?? videoConfig : config;
  // Preprocessing refuses these (the wasm's limit, in its words): so do the grids.
  const pixels = size.width * size.height;
  if (pixels > MAX_IMAGE_PIXELS) {
    throw new InvalidInputError(
      `${what}: RGB image is ${size.width}x${size.height} = ${pixels} pixels, more than the ` +
        `limit of ${MAX_IMAGE_PIXELS} (about 8192x8192); downscale it before sending`,
    );
  }
  let h: number, w: number;
  try {
    [h, w] = smartResize(size.height, size.width, settings);
  } catch (e) {
    if (e instanceof InvalidInputError) throw new InvalidInputError(`${what}: ${e.message}`);
    throw e;
  }
  const t = video ? Math.ceil(image.frames.length / settings.temporalPatchSize) : 1;
  return [t, h / settings.patchSize, w / settings.patchSize];
}

/** An image's size alone: what {@link imageGrids} needs of it. */
export interface ImageSize {
  /** Pixels a row. */
  width: number;
  /** Rows. */
  height: number;
}

/**
 * The index of a video's first frame whose size is not frame 0's, or -1 where all share it:
 * every frame of a video must have one size (the server, the CLI and {@link imageGrids} each say
 * so in their own terms).
 */
export function otherSizedFrame(sizes: readonly ImageSize[]): number {
  const [first] = sizes;
  return sizes.findIndex((s) => s.width !== first.width || s.height !== first.height);
}

/**
 * The `[t, h, w]` grid of each image or video, as {@link preprocessImages} would make it, from
 * sizes alone — nothing resized or patchified: `sizes[i]` (an image's size, a video's frames')
 * where given, else a decoded image's (a video's frame 0's) own, else its bytes decoded for it.
 * Refuses what preprocessImages refuses of sizes (an extreme aspect ratio; more image tokens
 * than `maxImageTokens`: ContextLengthError), so a prompt can be measured, and checked, without
 * the memory and time its pixel values take (tens of MB an image at the model's bounds).
 */
export async function imageGrids(
  images: readonly (Uint8Array | DecodedImage | VideoInput)[],
  config: ImageProcessorConfig,
  options: PreprocessOptions & { sizes?: readonly ImageSize[] } = {},
): Promise<GridThw[]> {
  const videoConfig = options.videoConfig ?? config;
  const grids: GridThw[] = [];
  let tokens = 0;
  for (const [i, image] of images.entries()) {
    const what = isVideo(image) ? `Image ${i} (a video)` : `Image ${i}`;
    if (isVideo(image)) checkVideo(image, what);
    else checkImage(image, what);
    const size = options.sizes?.[i] ?? await sizeOf(image, what);
    const grid = gridOf(image, size, config, videoConfig, what);
    tokens += imageTokenCount(grid, config.mergeSize);
    checkRoom(i, image, tokens, options.maxImageTokens);
    grids.push(grid);
  }
  return grids;
}

/**
 * An image's size (bytes decoded for it), or a video's: every frame's, which must be frame 0's
 * (as preprocessing refuses a video of mixed sizes, or a frame that does not decode).
 */
async function sizeOf(
  image: Uint8Array | DecodedImage | VideoInput,
  what: string,
): Promise<ImageSize> {
  const one = async (x: Uint8Array | DecodedImage, at: string) => {
    if (!(x instanceof Uint8Array)) return x;
    try {
      return await decodeImage(x);
    } catch (e) {
      if (!(e instanceof InvalidInputError)) throw e;
      throw new InvalidInputError(`${at}: ${e.message}`);
    }
  };
  if (!isVideo(image)) return one(image, what);
  // One decoded at a time, each checked before the next (as the preprocessing refuses them).
  const sizes: ImageSize[] = [];
  for (const [k, f] of image.frames.entries()) {
    const { width, height } = await one(f, `${what}, frame ${k}`);
    sizes.push({ width, height });
    if (otherSizedFrame(sizes) > 0) { // this frame: the ones before matched
      throw new InvalidInputError(
        `${what}, frame ${k}: ${width}x${height} pixels, but frame 0 is ` +
          `${sizes[0].width}x${sizes[0].height}; every frame of a video must have the same size.`,
      );
    }
  }
  return sizes[0];
}

/**
 * The images preprocessed with `settings` (see preprocessImages), their patches concatenated: on
 * `pool` where given (still images a job each, several at once: {@link stillsOnPool}; a video's
 * temporal patches: {@link patchOnPool}), else here one after another. Either way an image is
 * taken in order with the image tokens of those before it, and refused as soon as they would not
 * fit: decoded pixels before they are resized, bytes once their grid is known.
 */
async function preprocessEach(
  images: readonly (Uint8Array | DecodedImage | VideoInput)[],
  settings: wasm.ImgConfig,
  videoConfig: ImageProcessorConfig,
  config: ImageProcessorConfig,
  options: PreprocessOptions,
  pool: FramePool | undefined,
): Promise<PreprocessedImages> {
  const parts: Float32Array[] = [];
  const gridThw: GridThw[] = [];
  const mergeSize = videoConfig.mergeSize;
  const most = options.maxImageTokens;
  const layout = pool && rowsAhead(images, config, most);
  const stills = pool && stillsOnPool(pool, images, config, most, layout);
  let tokens = 0;
  try {
    for (const [i, image] of images.entries()) {
      // Throws once the images so far and `more` tokens would not fit the context.
      const room = (more: number) => checkRoom(i, image, tokens + more, most);
      let out: Patches;
      if (isVideo(image)) {
        out = await preprocessVideo(image, videoConfig, `Image ${i} (a video)`, room, pool);
      } else if (stills) {
        out = await stills.take(i, tokens);
      } else {
        // Decoded pixels tell their grid before they are resized: refused then, not after (a size
        // smartResize refuses is left for the preprocessing to refuse in its words).
        const ahead = image instanceof Uint8Array ? undefined : gridAhead(image, i, config);
        if (ahead) room(imageTokenCount(ahead, mergeSize));
        out = preprocessOne(image, settings, `Image ${i}`);
      }
      const more = imageTokenCount(out.grid, mergeSize);
      room(more);
      tokens += more;
      gridThw.push(out.grid);
      parts.push(...out.values);
    }
  } finally {
    stills?.stop(); // after a failure no job starts; those in flight end unheard
  }
  if (laidOut(parts, layout)) return { pixelValues: layout!.rows, gridThw };
  if (parts.length === 1) return { pixelValues: parts[0], gridThw };
  const pixelValues = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    pixelValues.set(p, offset);
    offset += p.length;
  }
  return { pixelValues, gridThw };
}

/**
 * A still image's grid, known before it is resized: decoded pixels' exactly, bytes' from their
 * header (what {@link imageSize} reads; the wasm loaded); undefined where the size is refused —
 * or, for bytes, does not read —, which the preprocessing then refuses in its words.
 */
function gridAhead(
  image: Uint8Array | DecodedImage,
  i: number,
  config: ImageProcessorConfig,
): GridThw | undefined {
  let size: ImageSize = image as DecodedImage;
  if (image instanceof Uint8Array) {
    try {
      const [width, height] = wasm.imgSize(image);
      size = { width, height };
    } catch {
      return undefined;
    }
  }
  try {
    return gridOf(image, size, config, config, `Image ${i}`);
  } catch (e) {
    if (!(e instanceof InvalidInputError)) throw e;
  }
}

/** Where each image's rows go in one array made ahead: see {@link rowsAhead}. */
interface RowLayout {
  /** (Σ t·h·w, 3 · temporalPatchSize · patchSize²) f32 */
  rows: Float32Array;
  /** Image i's first value in `rows`, and (at i + 1) where its next begins. */
  at: number[];
}

/**
 * One array for the rows of several still images, where each one's grid is known ahead
 * ({@link gridAhead}) and together they fit `most` image tokens: a pool's answers are copied in as
 * they come, a slice a turn of the event loop ({@link copySliced}), rather than joined at the end
 * in one (4 images of 1280 × 960 make 118 MB: 80–110 ms on the 2-core VM, 2026-11-30). Undefined where not
 * (a video among them, a grid not known, too many tokens, no memory for it): then they are joined.
 */
function rowsAhead(
  images: readonly (Uint8Array | DecodedImage | VideoInput)[],
  config: ImageProcessorConfig,
  most: number | undefined,
): RowLayout | undefined {
  if (images.length < 2) return undefined;
  const row = 3 * config.temporalPatchSize * config.patchSize ** 2;
  const at = [0];
  let tokens = 0;
  for (const [i, image] of images.entries()) {
    if (isVideo(image)) return undefined;
    const grid = gridAhead(image, i, config);
    if (!grid) return undefined;
    tokens += imageTokenCount(grid, config.mergeSize);
    at.push(at[i] + patchCount([grid]) * row);
  }
  if (most !== undefined && tokens > most) return undefined;
  try {
    return { rows: new Float32Array(at[images.length]), at };
  } catch {
    return undefined; // past the memory an array may have: each image's rows apart, as here
  }
}

/** Whether `parts` are `layout`'s rows, in order: all of them, nothing to join. */
function laidOut(parts: readonly Float32Array[], layout: RowLayout | undefined): boolean {
  return !!layout && parts.length === layout.at.length - 1 &&
    parts.every((p, i) =>
      p.buffer === layout.rows.buffer && p.byteOffset === layout.at[i] * 4 &&
      p.length === layout.at[i + 1] - layout.at[i]
    );
}

/**
 * `answer` (image `j`'s) with its rows copied into `layout`'s, where they are the size laid out
 * for them: its values, a view of them there. (Else as it came: they are joined at the end.)
 */
async function placed(answer: FrameAnswer, j: number, layout: RowLayout): Promise<FrameAnswer> {
  const { at, rows } = layout;
  const length = answer.values.reduce((n, part) => n + part.length, 0);
  if (length !== at[j + 1] - at[j]) return answer;
  let offset = at[j];
  for (const part of answer.values) {
    await copySliced(rows, part, offset);
    offset += part.length;
  }
  return { ...answer, values: [rows.subarray(at[j], at[j + 1])] };
}

/** The still images of a request in the making on a {@link FramePool}: see {@link stillsOnPool}. */
interface StillsOnPool {
  /**
   * Image `i`'s patches (`tokens`: the image tokens of the images before it, all taken), or the
   * error that refused it.
   */
  take(i: number, tokens: number): Promise<Patches>;
  /** Starts no more jobs. */
  stop(): void;
}

/**
 * A request's still images resized on `pool`, a job an image ({@link patchImage}), up to
 * `pool.size` at once, so that several images are resized in parallel and off this thread. Jobs
 * start in image order, none past a video the caller has not reached (it runs the video itself);
 * the caller takes the answers in order, checks the room as the serial path does and throws the
 * first error, so the pixel values and the error are the serial path's. Under `most` image
 * tokens, a job starts only where the images up to it fit by what is known ahead
 * ({@link gridAhead}: exact for decoded pixels, the header's size for bytes); where they would
 * not, or it is not known, it waits until the caller has taken every image before it, and then
 * decoded pixels over the room are refused before they are resized, as on the serial path (bytes
 * are resized, as there: whether they decode decides the error). No job starts after one failed.
 */
function stillsOnPool(
  pool: FramePool,
  images: readonly (Uint8Array | DecodedImage | VideoInput)[],
  config: ImageProcessorConfig,
  most: number | undefined,
  layout: RowLayout | undefined,
): StillsOnPool {
  const answers = images.map(() => Promise.withResolvers<FrameAnswer>());
  const ahead: (number | undefined)[] = []; // the tokens of each image started, as known ahead
  let next = 0, inFlight = 0, stopped = false;
  let taken = 0, tokens = 0; // the caller's: images taken, and their image tokens
  const fits = (j: number, own: number | undefined) => {
    if (most === undefined) return true;
    let sum = tokens + (own ?? NaN);
    for (let k = taken; k < j; k++) sum += ahead[k] ?? NaN;
    return sum <= most; // false where one is not known (NaN)
  };
  const fill = () => {
    while (!stopped && next < images.length && inFlight < pool.size) {
      const j = next, image = images[j];
      if (isVideo(image)) {
        if (j >= taken) return; // the caller runs it when it gets there
        next++;
        continue;
      }
      const grid = most === undefined ? undefined : gridAhead(image, j, config);
      const own = grid && imageTokenCount(grid, config.mergeSize);
      if (!fits(j, own)) {
        if (j > taken) return; // again once the caller has taken the images before it
        // Decoded pixels over the room, counted exactly now: refused before they are resized.
        if (!(image instanceof Uint8Array) && own !== undefined) {
          try {
            checkRoom(j, image, tokens + own, most);
          } catch (error) {
            stopped = true;
            answers[j].resolve({ values: [], error: error as Error });
            return;
          }
        }
      }
      next++;
      inFlight++;
      ahead[j] = own;
      const job: ImageJob = { image, config, what: `Image ${j}` };
      Promise.try(() => pool.image(job))
        .catch((error: Error) => ({ values: [], error }))
        .then(async (answer: FrameAnswer) => {
          inFlight--;
          if (answer.error) stopped = true;
          fill();
          // Once stopped the request fails: its rows are not copied.
          answers[j].resolve(
            layout && !stopped
              ? await placed(answer, j, layout).catch((error: Error) => ({ values: [], error }))
              : answer,
          );
        });
    }
  };
  return {
    async take(i, before) {
      [taken, tokens] = [i, before];
      fill();
      const { grid, values, error } = await answers[i].promise;
      if (error) throw error;
      return { grid: grid!, values };
    },
    stop() {
      stopped = true;
    },
  };
}
