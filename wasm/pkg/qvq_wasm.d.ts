/* tslint:disable */
/* eslint-disable */

/**
 * The processor settings, built once from numbers and arrays for the preprocess calls.
 */
export class ImgConfig {
    free(): void;
    [Symbol.dispose](): void;
    constructor(patch_size: number, temporal_patch_size: number, merge_size: number, min_pixels: number, max_pixels: number, image_mean: Float32Array | number[], image_std: Float32Array | number[], rescale_factor: number);
}

/**
 * One preprocessed image.
 */
export class ImgPatches {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Moves the (patches, 3 * t * p * p) f32 values out as a `Float32Array`.
     */
    takePixelValues(): Float32Array;
    /**
     * `[t, h, w]` in patches.
     */
    readonly gridThw: Uint32Array;
}

/**
 * A decoded image: (height, width, 3) u8 RGB.
 */
export class ImgRgb {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Moves the pixels out (a `Uint8Array` copy); the object is empty afterwards.
     */
    takeData(): Uint8Array;
    readonly height: number;
    readonly width: number;
}

/**
 * Builds one video's pixel values a frame at a time (see qvq_image::VideoPatcher): frames of one
 * size, decoded pixels or encoded bytes, in order; `finish` gives the patches.
 */
export class ImgVideo {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * The video's patches; the object is spent afterwards.
     */
    finish(): ImgPatches;
    /**
     * `[t, h, w]` the video has with `frames` frames in all, once frame 0 is in (empty before).
     */
    gridFor(frames: number): Uint32Array;
    /**
     * An empty video, resized as `config` says.
     */
    constructor(config: ImgConfig);
    /**
     * Adds the next frame as decoded (height, width, 3) RGB pixels.
     */
    pushRgb(data: Uint8Array | number[], width: number, height: number): void;
    /**
     * Adds the next frame as encoded PNG / JPEG / WebP bytes.
     */
    push(bytes: Uint8Array | number[]): void;
    /**
     * Moves the pixel values made so far out as a `Float32Array` (whole temporal patches).
     */
    takePixelValues(): Float32Array;
}

/**
 * Converts slices of tensor data; the result stays in wasm memory at `outputPtr()` until the
 * next call, so JavaScript copies it out without an extra allocation on this side.
 */
export class StConverter {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Converts `src` (elements of dtype `from`, e.g. "BF16") to `to` ("f16", "f32" or "i32");
     * returns the output's byte length. `first_element` (the slice's start in the tensor) makes
     * out-of-range errors name the tensor's element index.
     */
    convert(from: string, to: string, src: Uint8Array | number[], first_element: number): number;
    constructor();
    /**
     * Byte offset of the last result in `stMemory().buffer`.
     */
    outputPtr(): number;
}

/**
 * Text deltas from ids pushed one at a time.
 */
export class TokStreamDecoder {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    flush(): string;
    push(id: number): string;
}

/**
 * A loaded tokenizer.json.
 */
export class TokTokenizer {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Text of `ids` (any array-like of numbers).
     */
    decode(ids: Float64Array | number[], skip_special: boolean): string;
    /**
     * Ids of `text` (a Uint32Array; ids are below 2^31).
     */
    encode(text: string): Uint32Array;
    /**
     * Parses tokenizer.json's bytes, then adds tokenizer_config.json's `added_tokens_decoder`
     * (the JSON object's bytes) if given.
     */
    static fromJson(json: Uint8Array | number[], added_tokens_decoder?: Uint8Array | number[] | null): TokTokenizer;
    idToToken(id: number): string | undefined;
    /**
     * A streaming decoder; it keeps the tokenizer alive while it lives.
     */
    streamDecoder(skip_special: boolean): TokStreamDecoder;
    tokenToId(token: string): number | undefined;
    readonly vocabSize: number;
}

/**
 * Decodes PNG / JPEG / WebP bytes to RGB like transformers' `convert_to_rgb` (transparent images over white).
 */
export function imgDecode(bytes: Uint8Array | number[]): ImgRgb;

/**
 * What encoded bytes are by their first bytes, as `imgDecode` sniffs them: "PNG", "JPEG" or
 * "WebP" (what it decodes), else the format it found ("GIF", "BMP", "TIFF", "AVIF", "HEIC", …),
 * "empty input" or "unknown signature".
 */
export function imgFormat(bytes: Uint8Array | number[]): string;

/**
 * Decodes, resizes and flattens one image as Qwen2-VL's processor does.
 */
export function imgPreprocess(bytes: Uint8Array | number[], config: ImgConfig): ImgPatches;

/**
 * Resizes and flattens decoded (height, width, 3) RGB pixels as [`image_preprocess`] does after
 * decoding.
 */
export function imgPreprocessRgb(data: Uint8Array | number[], width: number, height: number, config: ImgConfig): ImgPatches;

/**
 * `[width, height]` of PNG / JPEG / WebP bytes from their headers alone, refused as `imgDecode`
 * refuses the image's size or format.
 */
export function imgSize(bytes: Uint8Array | number[]): Uint32Array;

/**
 * The header length from a file's first 8 bytes, checked against the file size.
 */
export function stHeaderLength(prefix: Uint8Array | number[], file_size: number): number;

/**
 * The module's `WebAssembly.Memory`, for views of `StConverter` results.
 */
export function stMemory(): any;

/**
 * Validates a header (the JSON bytes after the length) and returns it as canonical JSON
 * (see `Header::to_json`).
 */
export function stParseHeader(json: Uint8Array | number[], file_size: number): string;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_imgconfig_free: (a: number, b: number) => void;
    readonly __wbg_imgpatches_free: (a: number, b: number) => void;
    readonly __wbg_imgrgb_free: (a: number, b: number) => void;
    readonly __wbg_imgvideo_free: (a: number, b: number) => void;
    readonly __wbg_stconverter_free: (a: number, b: number) => void;
    readonly __wbg_tokstreamdecoder_free: (a: number, b: number) => void;
    readonly __wbg_toktokenizer_free: (a: number, b: number) => void;
    readonly imgDecode: (a: number, b: number) => [number, number, number];
    readonly imgFormat: (a: number, b: number) => [number, number];
    readonly imgPreprocess: (a: number, b: number, c: number) => [number, number, number];
    readonly imgPreprocessRgb: (a: number, b: number, c: number, d: number, e: number) => [number, number, number];
    readonly imgSize: (a: number, b: number) => [number, number, number, number];
    readonly imgconfig_new: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number) => [number, number, number];
    readonly imgpatches_gridThw: (a: number) => [number, number];
    readonly imgpatches_takePixelValues: (a: number) => [number, number];
    readonly imgrgb_height: (a: number) => number;
    readonly imgrgb_takeData: (a: number) => [number, number];
    readonly imgrgb_width: (a: number) => number;
    readonly imgvideo_finish: (a: number) => [number, number, number];
    readonly imgvideo_gridFor: (a: number, b: number) => [number, number];
    readonly imgvideo_new: (a: number) => [number, number, number];
    readonly imgvideo_push: (a: number, b: number, c: number) => [number, number];
    readonly imgvideo_pushRgb: (a: number, b: number, c: number, d: number, e: number) => [number, number];
    readonly imgvideo_takePixelValues: (a: number) => [number, number];
    readonly stHeaderLength: (a: number, b: number, c: number) => [number, number, number];
    readonly stMemory: () => any;
    readonly stParseHeader: (a: number, b: number, c: number) => [number, number, number, number];
    readonly stconverter_convert: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number];
    readonly stconverter_new: () => number;
    readonly stconverter_outputPtr: (a: number) => number;
    readonly tokstreamdecoder_flush: (a: number) => [number, number];
    readonly tokstreamdecoder_push: (a: number, b: number) => [number, number, number, number];
    readonly toktokenizer_decode: (a: number, b: number, c: number, d: number) => [number, number, number, number];
    readonly toktokenizer_encode: (a: number, b: number, c: number) => [number, number];
    readonly toktokenizer_fromJson: (a: number, b: number, c: number, d: number) => [number, number, number];
    readonly toktokenizer_idToToken: (a: number, b: number) => [number, number];
    readonly toktokenizer_streamDecoder: (a: number, b: number) => number;
    readonly toktokenizer_tokenToId: (a: number, b: number, c: number) => number;
    readonly toktokenizer_vocabSize: (a: number) => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
