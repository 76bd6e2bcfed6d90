//! wasm-bindgen wrappers for qvq-image: bytes and numbers in, typed arrays out. Errors cross as
//! JS `Error`s whose `name` is the TypeScript class src/image.ts rethrows them as.

use qvq_image::{ImageError, ProcessorConfig};
use wasm_bindgen::prelude::*;

fn js_error(e: ImageError) -> JsValue {
    let name = match e {
        ImageError::BadConfig { .. } => "ModelFileError",
        _ => "InvalidInputError",
    };
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(name);
    err.into()
}

/// A decoded image: (height, width, 3) u8 RGB.
#[wasm_bindgen(js_name = ImgRgb)]
pub struct ImageRgb {
    inner: qvq_image::RgbImage,
}

#[wasm_bindgen(js_class = ImgRgb)]
impl ImageRgb {
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.inner.width as u32
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.inner.height as u32
    }

    /// Moves the pixels out (a `Uint8Array` copy); the object is empty afterwards.
    #[wasm_bindgen(js_name = takeData)]
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.inner.data)
    }
}

/// One preprocessed image.
#[wasm_bindgen(js_name = ImgPatches)]
pub struct ImagePatches {
    inner: qvq_image::Preprocessed,
}

#[wasm_bindgen(js_class = ImgPatches)]
impl ImagePatches {
    /// `[t, h, w]` in patches.
    #[wasm_bindgen(getter, js_name = gridThw)]
    pub fn grid_thw(&self) -> Vec<u32> {
        self.inner.grid_thw.iter().map(|&v| v as u32).collect()
    }

    /// Moves the (patches, 3 * t * p * p) f32 values out as a `Float32Array`.
    #[wasm_bindgen(js_name = takePixelValues)]
    pub fn take_pixel_values(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.inner.pixel_values)
    }
}

/// Decodes PNG / JPEG / WebP bytes to RGB like transformers' `convert_to_rgb` (transparent images over white).
#[wasm_bindgen(js_name = imgDecode)]
pub fn image_decode(bytes: &[u8]) -> Result<ImageRgb, JsValue> {
    qvq_image::decode(bytes)
        .map(|inner| ImageRgb { inner })
        .map_err(js_error)
}

/// `[width, height]` of PNG / JPEG / WebP bytes from their headers alone, refused as `imgDecode`
/// refuses the image's size or format.
#[wasm_bindgen(js_name = imgSize)]
pub fn image_size(bytes: &[u8]) -> Result<Vec<u32>, JsValue> {
    qvq_image::dimensions(bytes)
        .map(|(w, h)| vec![w as u32, h as u32])
        .map_err(js_error)
}

/// What encoded bytes are by their first bytes, as `imgDecode` sniffs them: "PNG", "JPEG" or
/// "WebP" (what it decodes), else the format it found ("GIF", "BMP", "TIFF", "AVIF", "HEIC", …),
/// "empty input" or "unknown signature".
#[wasm_bindgen(js_name = imgFormat)]
pub fn image_format(bytes: &[u8]) -> String {
    match qvq_image::decode::sniff(bytes) {
        Ok(format) => format.name(),
        Err(ImageError::UnsupportedFormat { detected }) => detected,
        Err(_) => "unknown signature",
    }
    .to_string()
}

/// The processor settings, built once from numbers and arrays for the preprocess calls.
#[wasm_bindgen(js_name = ImgConfig)]
pub struct ImageConfig {
    inner: ProcessorConfig,
}

#[wasm_bindgen(js_class = ImgConfig)]
impl ImageConfig {
    #[wasm_bindgen(constructor)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        patch_size: u32,
        temporal_patch_size: u32,
        merge_size: u32,
        min_pixels: f64,
        max_pixels: f64,
        image_mean: &[f32],
        image_std: &[f32],
        rescale_factor: f64,
    ) -> Result<ImageConfig, JsValue> {
        let triple = |v: &[f32], field: &'static str| -> Result<[f32; 3], JsValue> {
            v.try_into().map_err(|_| {
                js_error(ImageError::BadConfig {
                    field,
                    detail: format!("has {} values, not 3", v.len()),
                })
            })
        };
        let inner = ProcessorConfig {
            patch_size: patch_size as usize,
            temporal_patch_size: temporal_patch_size as usize,
            merge_size: merge_size as usize,
            min_pixels: min_pixels as u64,
            max_pixels: max_pixels as u64,
            image_mean: triple(image_mean, "image_mean")?,
            image_std: triple(image_std, "image_std")?,
            rescale_factor,
        };
        Ok(ImageConfig { inner })
    }
}

/// Decodes, resizes and flattens one image as Qwen2-VL's processor does.
#[wasm_bindgen(js_name = imgPreprocess)]
pub fn image_preprocess(bytes: &[u8], config: &ImageConfig) -> Result<ImagePatches, JsValue> {
    qvq_image::preprocess(bytes, &config.inner)
        .map(|inner| ImagePatches { inner })
        .map_err(js_error)
}

/// Resizes and flattens decoded (height, width, 3) RGB pixels as [`image_preprocess`] does after
/// decoding.
#[wasm_bindgen(js_name = imgPreprocessRgb)]
pub fn image_preprocess_rgb(
    data: Vec<u8>,
    width: u32,
    height: u32,
    config: &ImageConfig,
) -> Result<ImagePatches, JsValue> {
    let (w, h) = (width as usize, height as usize);
    if data.len() as u64 != w as u64 * h as u64 * 3 {
        return Err(bad_rgb_len(data.len(), width, height));
    }
    qvq_image::preprocess_rgb(&qvq_image::RgbImage::new(w, h, data), &config.inner)
        .map(|inner| ImagePatches { inner })
        .map_err(js_error)
}

/// Builds one video's pixel values a frame at a time (see qvq_image::VideoPatcher): frames of one
/// size, decoded pixels or encoded bytes, in order; `finish` gives the patches.
#[wasm_bindgen(js_name = ImgVideo)]
pub struct ImageVideo {
    inner: Option<qvq_image::VideoPatcher>,
}

#[wasm_bindgen(js_class = ImgVideo)]
impl ImageVideo {
    /// An empty video, resized as `config` says.
    #[wasm_bindgen(constructor)]
    pub fn new(config: &ImageConfig) -> Result<ImageVideo, JsValue> {
        qvq_image::VideoPatcher::new(&config.inner)
            .map(|p| ImageVideo { inner: Some(p) })
            .map_err(js_error)
    }

    /// `[t, h, w]` the video has with `frames` frames in all, once frame 0 is in (empty before).
    #[wasm_bindgen(js_name = gridFor)]
    pub fn grid_for(&self, frames: u32) -> Vec<u32> {
        let patcher = self.inner.as_ref().expect("ImgVideo used after finish");
        patcher
            .grid_for(frames as usize)
            .map_or(Vec::new(), |g| g.iter().map(|&v| v as u32).collect())
    }

    /// Moves the pixel values made so far out as a `Float32Array` (whole temporal patches).
    #[wasm_bindgen(js_name = takePixelValues)]
    pub fn take_pixel_values(&mut self) -> Vec<f32> {
        self.patcher_mut().take_pixel_values()
    }

    /// Adds the next frame as decoded (height, width, 3) RGB pixels.
    #[wasm_bindgen(js_name = pushRgb)]
    pub fn push_rgb(&mut self, data: Vec<u8>, width: u32, height: u32) -> Result<(), JsValue> {
        let (w, h) = (width as usize, height as usize);
        if data.len() as u64 != w as u64 * h as u64 * 3 {
            return Err(bad_rgb_len(data.len(), width, height));
        }
        let frame = qvq_image::RgbImage::new(w, h, data);
        self.patcher_mut().push(&frame).map_err(js_error)
    }

    /// Adds the next frame as encoded PNG / JPEG / WebP bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), JsValue> {
        let frame = qvq_image::decode(bytes).map_err(js_error)?;
        self.patcher_mut().push(&frame).map_err(js_error)
    }

    /// The video's patches; the object is spent afterwards.
    pub fn finish(&mut self) -> Result<ImagePatches, JsValue> {
        let patcher = self.inner.take().expect("ImgVideo.finish called twice");
        patcher
            .finish()
            .map(|inner| ImagePatches { inner })
            .map_err(js_error)
    }
}

impl ImageVideo {
    fn patcher_mut(&mut self) -> &mut qvq_image::VideoPatcher {
        self.inner.as_mut().expect("ImgVideo used after finish")
    }
}

/// The InvalidInputError for decoded RGB data of the wrong length.
fn bad_rgb_len(len: usize, width: u32, height: u32) -> JsValue {
    let err = js_sys::Error::new(&format!(
        "decoded image data has {len} bytes, not width x height x 3 = {} for {width}x{height} \
         RGB pixels",
        width as u64 * height as u64 * 3
    ));
    err.set_name("InvalidInputError");
    err.into()
}
