/* @ts-self-types="./qvq_wasm.d.ts" */

/**
 * The processor settings, built once from numbers and arrays for the preprocess calls.
 */
export class ImgConfig {
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        ImgConfigFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_imgconfig_free(ptr, 0);
    }
    /**
     * @param {number} patch_size
     * @param {number} temporal_patch_size
     * @param {number} merge_size
     * @param {number} min_pixels
     * @param {number} max_pixels
     * @param {Float32Array | number[]} image_mean
     * @param {Float32Array | number[]} image_std
     * @param {number} rescale_factor
     */
    constructor(patch_size, temporal_patch_size, merge_size, min_pixels, max_pixels, image_mean, image_std, rescale_factor) {
        const val3 = +patch_size;
        const val4 = +temporal_patch_size;
        const val5 = +merge_size;
        const val6 = +min_pixels;
        const val7 = +max_pixels;
        const val8 = +rescale_factor;
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passArrayF32ToWasm0(image_mean, wasm.__wbindgen_malloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArrayF32ToWasm0(image_std, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 4, 4); }
            throw e;
        }
        const ret = wasm.imgconfig_new(val3, val4, val5, val6, val7, ptr0, len0, ptr1, len1, val8);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        this.__wbg_ptr = ret[0];
        ImgConfigFinalization.register(this, this.__wbg_ptr, this);
        return this;
    }
}
if (Symbol.dispose) ImgConfig.prototype[Symbol.dispose] = ImgConfig.prototype.free;

/**
 * One preprocessed image.
 */
export class ImgPatches {
    static __wrap(ptr) {
        const obj = Object.create(ImgPatches.prototype);
        obj.__wbg_ptr = ptr;
        ImgPatchesFinalization.register(obj, obj.__wbg_ptr, obj);
        return obj;
    }
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        ImgPatchesFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_imgpatches_free(ptr, 0);
    }
    /**
     * `[t, h, w]` in patches.
     * @returns {Uint32Array}
     */
    get gridThw() {
        const ret = wasm.imgpatches_gridThw(this.__wbg_ptr);
        var v1 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v1;
    }
    /**
     * Moves the (patches, 3 * t * p * p) f32 values out as a `Float32Array`.
     * @returns {Float32Array}
     */
    takePixelValues() {
        const ret = wasm.imgpatches_takePixelValues(this.__wbg_ptr);
        var v1 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v1;
    }
}
if (Symbol.dispose) ImgPatches.prototype[Symbol.dispose] = ImgPatches.prototype.free;

/**
 * A decoded image: (height, width, 3) u8 RGB.
 */
export class ImgRgb {
    static __wrap(ptr) {
        const obj = Object.create(ImgRgb.prototype);
        obj.__wbg_ptr = ptr;
        ImgRgbFinalization.register(obj, obj.__wbg_ptr, obj);
        return obj;
    }
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        ImgRgbFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_imgrgb_free(ptr, 0);
    }
    /**
     * @returns {number}
     */
    get height() {
        const ret = wasm.imgrgb_height(this.__wbg_ptr);
        return ret >>> 0;
    }
    /**
     * Moves the pixels out (a `Uint8Array` copy); the object is empty afterwards.
     * @returns {Uint8Array}
     */
    takeData() {
        const ret = wasm.imgrgb_takeData(this.__wbg_ptr);
        var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
        return v1;
    }
    /**
     * @returns {number}
     */
    get width() {
        const ret = wasm.imgrgb_width(this.__wbg_ptr);
        return ret >>> 0;
    }
}
if (Symbol.dispose) ImgRgb.prototype[Symbol.dispose] = ImgRgb.prototype.free;

/**
 * Builds one video's pixel values a frame at a time (see qvq_image::VideoPatcher): frames of one
 * size, decoded pixels or encoded bytes, in order; `finish` gives the patches.
 */
export class ImgVideo {
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        ImgVideoFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_imgvideo_free(ptr, 0);
    }
    /**
     * The video's patches; the object is spent afterwards.
     * @returns {ImgPatches}
     */
    finish() {
        const ret = wasm.imgvideo_finish(this.__wbg_ptr);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return ImgPatches.__wrap(ret[0]);
    }
    /**
     * `[t, h, w]` the video has with `frames` frames in all, once frame 0 is in (empty before).
     * @param {number} frames
     * @returns {Uint32Array}
     */
    gridFor(frames) {
        const ret = wasm.imgvideo_gridFor(this.__wbg_ptr, frames);
        var v1 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v1;
    }
    /**
     * An empty video, resized as `config` says.
     * @param {ImgConfig} config
     */
    constructor(config) {
        _assertClass(config, ImgConfig);
        const ret = wasm.imgvideo_new(config.__wbg_ptr);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        this.__wbg_ptr = ret[0];
        ImgVideoFinalization.register(this, this.__wbg_ptr, this);
        return this;
    }
    /**
     * Adds the next frame as decoded (height, width, 3) RGB pixels.
     * @param {Uint8Array | number[]} data
     * @param {number} width
     * @param {number} height
     */
    pushRgb(data, width, height) {
        const val2 = +width;
        const val3 = +height;
        const ptr0 = passArray8ToWasm0(data, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.imgvideo_pushRgb(this.__wbg_ptr, ptr0, len0, val2, val3);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Adds the next frame as encoded PNG / JPEG / WebP bytes.
     * @param {Uint8Array | number[]} bytes
     */
    push(bytes) {
        const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.imgvideo_push(this.__wbg_ptr, ptr0, len0);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Moves the pixel values made so far out as a `Float32Array` (whole temporal patches).
     * @returns {Float32Array}
     */
    takePixelValues() {
        const ret = wasm.imgvideo_takePixelValues(this.__wbg_ptr);
        var v1 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v1;
    }
}
if (Symbol.dispose) ImgVideo.prototype[Symbol.dispose] = ImgVideo.prototype.free;

/**
 * Converts slices of tensor data; the result stays in wasm memory at `outputPtr()` until the
 * next call, so JavaScript copies it out without an extra allocation on this side.
 */
export class StConverter {
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        StConverterFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_stconverter_free(ptr, 0);
    }
    /**
     * Converts `src` (elements of dtype `from`, e.g. "BF16") to `to` ("f16", "f32" or "i32");
     * returns the output's byte length. `first_element` (the slice's start in the tensor) makes
     * out-of-range errors name the tensor's element index.
     * @param {string} from
     * @param {string} to
     * @param {Uint8Array | number[]} src
     * @param {number} first_element
     * @returns {number}
     */
    convert(from, to, src, first_element) {
        const val4 = +first_element;
        let ptr0, len0, ptr1, len1, ptr2, len2;
        try {
            ptr0 = passStringToWasm0(from, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passStringToWasm0(to, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len1 = WASM_VECTOR_LEN;
            ptr2 = passArray8ToWasm0(src, wasm.__wbindgen_malloc);
            len2 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr2) { wasm.__wbindgen_free(ptr2, len2 * 1, 1); }
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.stconverter_convert(this.__wbg_ptr, ptr0, len0, ptr1, len1, ptr2, len2, val4);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return ret[0] >>> 0;
    }
    constructor() {
        const ret = wasm.stconverter_new();
        this.__wbg_ptr = ret;
        StConverterFinalization.register(this, this.__wbg_ptr, this);
        return this;
    }
    /**
     * Byte offset of the last result in `stMemory().buffer`.
     * @returns {number}
     */
    outputPtr() {
        const ret = wasm.stconverter_outputPtr(this.__wbg_ptr);
        return ret >>> 0;
    }
}
if (Symbol.dispose) StConverter.prototype[Symbol.dispose] = StConverter.prototype.free;

/**
 * Text deltas from ids pushed one at a time.
 */
export class TokStreamDecoder {
    static __wrap(ptr) {
        const obj = Object.create(TokStreamDecoder.prototype);
        obj.__wbg_ptr = ptr;
        TokStreamDecoderFinalization.register(obj, obj.__wbg_ptr, obj);
        return obj;
    }
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        TokStreamDecoderFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_tokstreamdecoder_free(ptr, 0);
    }
    /**
     * @returns {string}
     */
    flush() {
        let deferred1_0;
        let deferred1_1;
        try {
            const ret = wasm.tokstreamdecoder_flush(this.__wbg_ptr);
            deferred1_0 = ret[0];
            deferred1_1 = ret[1];
            return getStringFromWasm0(ret[0], ret[1]);
        } finally {
            wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
        }
    }
    /**
     * @param {number} id
     * @returns {string}
     */
    push(id) {
        let deferred2_0;
        let deferred2_1;
        try {
            const ret = wasm.tokstreamdecoder_push(this.__wbg_ptr, id);
            var ptr1 = ret[0];
            var len1 = ret[1];
            if (ret[3]) {
                ptr1 = 0; len1 = 0;
                throw takeFromExternrefTable0(ret[2]);
            }
            deferred2_0 = ptr1;
            deferred2_1 = len1;
            return getStringFromWasm0(ptr1, len1);
        } finally {
            wasm.__wbindgen_free(deferred2_0, deferred2_1, 1);
        }
    }
}
if (Symbol.dispose) TokStreamDecoder.prototype[Symbol.dispose] = TokStreamDecoder.prototype.free;

/**
 * A loaded tokenizer.json.
 */
export class TokTokenizer {
    static __wrap(ptr) {
        const obj = Object.create(TokTokenizer.prototype);
        obj.__wbg_ptr = ptr;
        TokTokenizerFinalization.register(obj, obj.__wbg_ptr, obj);
        return obj;
    }
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        TokTokenizerFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_toktokenizer_free(ptr, 0);
    }
    /**
     * Text of `ids` (any array-like of numbers).
     * @param {Float64Array | number[]} ids
     * @param {boolean} skip_special
     * @returns {string}
     */
    decode(ids, skip_special) {
        let deferred4_0;
        let deferred4_1;
        try {
            const val2 = +skip_special;
            const ptr0 = passArrayF64ToWasm0(ids, wasm.__wbindgen_malloc);
            const len0 = WASM_VECTOR_LEN;
            const ret = wasm.toktokenizer_decode(this.__wbg_ptr, ptr0, len0, val2);
            var ptr3 = ret[0];
            var len3 = ret[1];
            if (ret[3]) {
                ptr3 = 0; len3 = 0;
                throw takeFromExternrefTable0(ret[2]);
            }
            deferred4_0 = ptr3;
            deferred4_1 = len3;
            return getStringFromWasm0(ptr3, len3);
        } finally {
            wasm.__wbindgen_free(deferred4_0, deferred4_1, 1);
        }
    }
    /**
     * Ids of `text` (a Uint32Array; ids are below 2^31).
     * @param {string} text
     * @returns {Uint32Array}
     */
    encode(text) {
        const ptr0 = passStringToWasm0(text, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.toktokenizer_encode(this.__wbg_ptr, ptr0, len0);
        var v2 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v2;
    }
    /**
     * Parses tokenizer.json's bytes, then adds tokenizer_config.json's `added_tokens_decoder`
     * (the JSON object's bytes) if given.
     * @param {Uint8Array | number[]} json
     * @param {Uint8Array | number[] | null} [added_tokens_decoder]
     * @returns {TokTokenizer}
     */
    static fromJson(json, added_tokens_decoder) {
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passArray8ToWasm0(json, wasm.__wbindgen_malloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = isLikeNone(added_tokens_decoder) ? 0 : passArray8ToWasm0(added_tokens_decoder, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.toktokenizer_fromJson(ptr0, len0, ptr1, len1);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return TokTokenizer.__wrap(ret[0]);
    }
    /**
     * @param {number} id
     * @returns {string | undefined}
     */
    idToToken(id) {
        const ret = wasm.toktokenizer_idToToken(this.__wbg_ptr, id);
        let v1;
        if (ret[0] !== 0) {
            v1 = getStringFromWasm0(ret[0], ret[1]);
            wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
        }
        return v1;
    }
    /**
     * A streaming decoder; it keeps the tokenizer alive while it lives.
     * @param {boolean} skip_special
     * @returns {TokStreamDecoder}
     */
    streamDecoder(skip_special) {
        const ret = wasm.toktokenizer_streamDecoder(this.__wbg_ptr, skip_special);
        return TokStreamDecoder.__wrap(ret);
    }
    /**
     * @param {string} token
     * @returns {number | undefined}
     */
    tokenToId(token) {
        const ptr0 = passStringToWasm0(token, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.toktokenizer_tokenToId(this.__wbg_ptr, ptr0, len0);
        return ret === Number.MAX_SAFE_INTEGER ? undefined : ret;
    }
    /**
     * @returns {number}
     */
    get vocabSize() {
        const ret = wasm.toktokenizer_vocabSize(this.__wbg_ptr);
        return ret >>> 0;
    }
}
if (Symbol.dispose) TokTokenizer.prototype[Symbol.dispose] = TokTokenizer.prototype.free;

/**
 * Decodes PNG / JPEG / WebP bytes to RGB like transformers' `convert_to_rgb` (transparent images over white).
 * @param {Uint8Array | number[]} bytes
 * @returns {ImgRgb}
 */
export function imgDecode(bytes) {
    const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
    const len0 = WASM_VECTOR_LEN;
    const ret = wasm.imgDecode(ptr0, len0);
    if (ret[2]) {
        throw takeFromExternrefTable0(ret[1]);
    }
    return ImgRgb.__wrap(ret[0]);
}

/**
 * What encoded bytes are by their first bytes, as `imgDecode` sniffs them: "PNG", "JPEG" or
 * "WebP" (what it decodes), else the format it found ("GIF", "BMP", "TIFF", "AVIF", "HEIC", …),
 * "empty input" or "unknown signature".
 * @param {Uint8Array | number[]} bytes
 * @returns {string}
 */
export function imgFormat(bytes) {
    let deferred2_0;
    let deferred2_1;
    try {
        const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.imgFormat(ptr0, len0);
        deferred2_0 = ret[0];
        deferred2_1 = ret[1];
        return getStringFromWasm0(ret[0], ret[1]);
    } finally {
        wasm.__wbindgen_free(deferred2_0, deferred2_1, 1);
    }
}

/**
 * Decodes, resizes and flattens one image as Qwen2-VL's processor does.
 * @param {Uint8Array | number[]} bytes
 * @param {ImgConfig} config
 * @returns {ImgPatches}
 */
export function imgPreprocess(bytes, config) {
    _assertClass(config, ImgConfig);
    const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
    const len0 = WASM_VECTOR_LEN;
    const ret = wasm.imgPreprocess(ptr0, len0, config.__wbg_ptr);
    if (ret[2]) {
        throw takeFromExternrefTable0(ret[1]);
    }
    return ImgPatches.__wrap(ret[0]);
}

/**
 * Resizes and flattens decoded (height, width, 3) RGB pixels as [`image_preprocess`] does after
 * decoding.
 * @param {Uint8Array | number[]} data
 * @param {number} width
 * @param {number} height
 * @param {ImgConfig} config
 * @returns {ImgPatches}
 */
export function imgPreprocessRgb(data, width, height, config) {
    _assertClass(config, ImgConfig);
    const val2 = +width;
    const val3 = +height;
    const ptr0 = passArray8ToWasm0(data, wasm.__wbindgen_malloc);
    const len0 = WASM_VECTOR_LEN;
    const ret = wasm.imgPreprocessRgb(ptr0, len0, val2, val3, config.__wbg_ptr);
    if (ret[2]) {
        throw takeFromExternrefTable0(ret[1]);
    }
    return ImgPatches.__wrap(ret[0]);
}

/**
 * `[width, height]` of PNG / JPEG / WebP bytes from their headers alone, refused as `imgDecode`
 * refuses the image's size or format.
 * @param {Uint8Array | number[]} bytes
 * @returns {Uint32Array}
 */
export function imgSize(bytes) {
    const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
    const len0 = WASM_VECTOR_LEN;
    const ret = wasm.imgSize(ptr0, len0);
    if (ret[3]) {
        throw takeFromExternrefTable0(ret[2]);
    }
    var v2 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v2;
}

/**
 * The header length from a file's first 8 bytes, checked against the file size.
 * @param {Uint8Array | number[]} prefix
 * @param {number} file_size
 * @returns {number}
 */
export function stHeaderLength(prefix, file_size) {
    const val2 = +file_size;
    const ptr0 = passArray8ToWasm0(prefix, wasm.__wbindgen_malloc);
    const len0 = WASM_VECTOR_LEN;
    const ret = wasm.stHeaderLength(ptr0, len0, val2);
    if (ret[2]) {
        throw takeFromExternrefTable0(ret[1]);
    }
    return ret[0];
}

/**
 * The module's `WebAssembly.Memory`, for views of `StConverter` results.
 * @returns {any}
 */
export function stMemory() {
    const ret = wasm.stMemory();
    return ret;
}

/**
 * Validates a header (the JSON bytes after the length) and returns it as canonical JSON
 * (see `Header::to_json`).
 * @param {Uint8Array | number[]} json
 * @param {number} file_size
 * @returns {string}
 */
export function stParseHeader(json, file_size) {
    let deferred4_0;
    let deferred4_1;
    try {
        const val2 = +file_size;
        const ptr0 = passArray8ToWasm0(json, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.stParseHeader(ptr0, len0, val2);
        var ptr3 = ret[0];
        var len3 = ret[1];
        if (ret[3]) {
            ptr3 = 0; len3 = 0;
            throw takeFromExternrefTable0(ret[2]);
        }
        deferred4_0 = ptr3;
        deferred4_1 = len3;
        return getStringFromWasm0(ptr3, len3);
    } finally {
        wasm.__wbindgen_free(deferred4_0, deferred4_1, 1);
    }
}
function __wbg_get_imports() {
    const import0 = {
        __proto__: null,
        __wbg_Error_208446807d0d1e30: function(arg0, arg1) {
            const ret = Error(getStringFromWasm0(arg0, arg1));
            return ret;
        },
        __wbg___wbindgen_memory_17a1178bc3328ea3: function() {
            const ret = wasm.memory;
            return ret;
        },
        __wbg___wbindgen_throw_4c88d8bf264fd984: function(arg0, arg1) {
            throw new Error(getStringFromWasm0(arg0, arg1));
        },
        __wbg_new_787b9fb330d55d78: function(arg0, arg1) {
            const ret = new Error(getStringFromWasm0(arg0, arg1));
            return ret;
        },
        __wbg_set_name_822e3903f3184979: function(arg0, arg1, arg2) {
            arg0.name = getStringFromWasm0(arg1, arg2);
        },
        __wbindgen_init_externref_table: function() {
            const table = wasm.__wbindgen_externrefs;
            table.set(0, undefined);
            table.set(1024, undefined);
            table.set(1025, null);
            table.set(1026, true);
            table.set(1027, false);
        },
    };
    return {
        __proto__: null,
        "./qvq_wasm_bg.js": import0,
    };
}

const ImgConfigFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_imgconfig_free(ptr, 1));
const ImgPatchesFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_imgpatches_free(ptr, 1));
const ImgRgbFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_imgrgb_free(ptr, 1));
const ImgVideoFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_imgvideo_free(ptr, 1));
const StConverterFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_stconverter_free(ptr, 1));
const TokStreamDecoderFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_tokstreamdecoder_free(ptr, 1));
const TokTokenizerFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_toktokenizer_free(ptr, 1));

function _assertClass(instance, klass) {
    if (!(instance instanceof klass)) {
        throw new Error(`expected instance of ${klass.name}`);
    }
}

function getArrayF32FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getFloat32ArrayMemory0().subarray(ptr / 4, ptr / 4 + len);
}

function getArrayU32FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getUint32ArrayMemory0().subarray(ptr / 4, ptr / 4 + len);
}

function getArrayU8FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getUint8ArrayMemory0().subarray(ptr / 1, ptr / 1 + len);
}

let cachedFloat32ArrayMemory0 = null;
function getFloat32ArrayMemory0() {
    if (cachedFloat32ArrayMemory0 === null || cachedFloat32ArrayMemory0.byteLength === 0) {
        cachedFloat32ArrayMemory0 = new Float32Array(wasm.memory.buffer);
    }
    return cachedFloat32ArrayMemory0;
}

let cachedFloat64ArrayMemory0 = null;
function getFloat64ArrayMemory0() {
    if (cachedFloat64ArrayMemory0 === null || cachedFloat64ArrayMemory0.byteLength === 0) {
        cachedFloat64ArrayMemory0 = new Float64Array(wasm.memory.buffer);
    }
    return cachedFloat64ArrayMemory0;
}

function getStringFromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return decodeText(getUint8ArrayMemory0().subarray(ptr, ptr + len));
}

let cachedUint32ArrayMemory0 = null;
function getUint32ArrayMemory0() {
    if (cachedUint32ArrayMemory0 === null || cachedUint32ArrayMemory0.byteLength === 0) {
        cachedUint32ArrayMemory0 = new Uint32Array(wasm.memory.buffer);
    }
    return cachedUint32ArrayMemory0;
}

let cachedUint8ArrayMemory0 = null;
function getUint8ArrayMemory0() {
    if (cachedUint8ArrayMemory0 === null || cachedUint8ArrayMemory0.byteLength === 0) {
        cachedUint8ArrayMemory0 = new Uint8Array(wasm.memory.buffer);
    }
    return cachedUint8ArrayMemory0;
}

function isLikeNone(x) {
    return x === undefined || x === null;
}

function passArray8ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 1, 1) >>> 0;
    getUint8ArrayMemory0().set(arg, ptr / 1);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passArrayF32ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 4, 4) >>> 0;
    getFloat32ArrayMemory0().set(arg, ptr / 4);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passArrayF64ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 8, 8) >>> 0;
    getFloat64ArrayMemory0().set(arg, ptr / 8);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passStringToWasm0(arg, malloc, realloc) {
    if (realloc === undefined) {
        const buf = cachedTextEncoder.encode(arg);
        const ptr = malloc(buf.length, 1) >>> 0;
        getUint8ArrayMemory0().subarray(ptr, ptr + buf.length).set(buf);
        WASM_VECTOR_LEN = buf.length;
        return ptr;
    }

    let len = arg.length;
    let ptr = malloc(len, 1) >>> 0;

    const mem = getUint8ArrayMemory0();

    let offset = 0;

    for (; offset < len; offset++) {
        const code = arg.charCodeAt(offset);
        if (code > 0x7F) break;
        mem[ptr + offset] = code;
    }
    if (offset !== len) {
        if (offset !== 0) {
            arg = arg.slice(offset);
        }
        ptr = realloc(ptr, len, len = offset + arg.length * 3, 1) >>> 0;
        const view = getUint8ArrayMemory0().subarray(ptr + offset, ptr + len);
        const ret = cachedTextEncoder.encodeInto(arg, view);

        offset += ret.written;
        ptr = realloc(ptr, len, offset, 1) >>> 0;
    }

    WASM_VECTOR_LEN = offset;
    return ptr;
}

function takeFromExternrefTable0(idx) {
    const value = wasm.__wbindgen_externrefs.get(idx);
    wasm.__externref_table_dealloc(idx);
    return value;
}

let cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
cachedTextDecoder.decode();
const MAX_SAFARI_DECODE_BYTES = 2146435072;
let numBytesDecoded = 0;
function decodeText(bytes) {
    numBytesDecoded += bytes.length;
    if (numBytesDecoded >= MAX_SAFARI_DECODE_BYTES) {
        cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
        cachedTextDecoder.decode();
        numBytesDecoded = bytes.length;
    }
    return cachedTextDecoder.decode(bytes);
}

const cachedTextEncoder = new TextEncoder();

if (!('encodeInto' in cachedTextEncoder)) {
    cachedTextEncoder.encodeInto = function (arg, view) {
        const buf = cachedTextEncoder.encode(arg);
        view.set(buf);
        return {
            read: arg.length,
            written: buf.length
        };
    };
}

let WASM_VECTOR_LEN = 0;

let wasmModule, wasmInstance, wasm;
function __wbg_finalize_init(instance, module) {
    wasmInstance = instance;
    wasm = instance.exports;
    wasmModule = module;
    cachedFloat32ArrayMemory0 = null;
    cachedFloat64ArrayMemory0 = null;
    cachedUint32ArrayMemory0 = null;
    cachedUint8ArrayMemory0 = null;
    wasm.__wbindgen_start();
    return wasm;
}

async function __wbg_load(module, imports) {
    if (typeof Response === 'function' && module instanceof Response) {
        if (!module.ok) {
            throw new Error(`failed to fetch Wasm: ${module.status} ${module.statusText} fetching '${module.url}'`);
        }

        if (typeof WebAssembly.instantiateStreaming === 'function') {
            try {
                return await WebAssembly.instantiateStreaming(module, imports);
            } catch (e) {
                const validResponse = expectedResponseType(module.type);

                if (validResponse && module.headers.get('Content-Type') !== 'application/wasm') {
                    console.warn("`WebAssembly.instantiateStreaming` failed because your server does not serve Wasm with `application/wasm` MIME type. Falling back to `WebAssembly.instantiate` which is slower. Original error:\n", e);

                } else { throw e; }
            }
        }

        const bytes = await module.arrayBuffer();
        return await WebAssembly.instantiate(bytes, imports);
    } else {
        const instance = await WebAssembly.instantiate(module, imports);

        if (instance instanceof WebAssembly.Instance) {
            return { instance, module };
        } else {
            return instance;
        }
    }

    function expectedResponseType(type) {
        switch (type) {
            case 'basic': case 'cors': case 'default': return true;
        }
        return false;
    }
}

function initSync(module) {
    if (wasm !== undefined) return wasm;


    if (module !== undefined) {
        if (Object.getPrototypeOf(module) === Object.prototype) {
            ({module} = module)
        } else {
            console.warn('using deprecated parameters for `initSync()`; pass a single object instead')
        }
    }

    const imports = __wbg_get_imports();
    if (!(module instanceof WebAssembly.Module)) {
        module = new WebAssembly.Module(module);
    }
    const instance = new WebAssembly.Instance(module, imports);
    return __wbg_finalize_init(instance, module);
}

let __wbg_init_promise;
async function __wbg_init(module_or_path) {
    if (wasm !== undefined) return wasm;
    if (__wbg_init_promise === undefined) {
        __wbg_init_promise = __wbg_init_once(module_or_path);
        __wbg_init_promise.catch(() => { __wbg_init_promise = undefined; });
    }
    return __wbg_init_promise;
}

async function __wbg_init_once(module_or_path) {

    if (module_or_path !== undefined) {
        if (Object.getPrototypeOf(module_or_path) === Object.prototype) {
            ({module_or_path} = module_or_path)
        } else {
            console.warn('using deprecated parameters for the initialization function; pass a single object instead')
        }
    }

    if (module_or_path === undefined) {
        module_or_path = new URL('qvq_wasm_bg.wasm', import.meta.url);
    }
    const imports = __wbg_get_imports();

    if (typeof module_or_path === 'string' || (typeof Request === 'function' && module_or_path instanceof Request) || (typeof URL === 'function' && module_or_path instanceof URL)) {
        module_or_path = fetch(module_or_path);
    }

    const { instance, module } = await __wbg_load(await module_or_path, imports);

    return __wbg_finalize_init(instance, module);
}

export { initSync, __wbg_init as default };
