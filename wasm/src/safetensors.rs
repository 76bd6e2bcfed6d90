//! wasm-bindgen wrappers for qvq-safetensors. File offsets and sizes cross as f64 (exact below
//! 2^53 bytes); errors cross as JS `Error`s whose message names the tensor at fault.

use qvq_safetensors::{self as st, DType, Target};
use wasm_bindgen::prelude::*;

fn to_u64(x: f64, what: &str) -> Result<u64, JsError> {
    if x >= 0.0 && x.fract() == 0.0 && x <= 9_007_199_254_740_992.0 {
        Ok(x as u64)
    } else {
        Err(JsError::new(&format!(
            "{what} must be a non-negative integer, got {x}"
        )))
    }
}

/// The header length from a file's first 8 bytes, checked against the file size.
#[wasm_bindgen(js_name = stHeaderLength)]
pub fn header_length(prefix: &[u8], file_size: f64) -> Result<f64, JsError> {
    let n = st::header_length(prefix, to_u64(file_size, "file size")?)
        .map_err(|e| JsError::new(&e.message))?;
    Ok(n as f64)
}

/// Validates a header (the JSON bytes after the length) and returns it as canonical JSON
/// (see `Header::to_json`).
#[wasm_bindgen(js_name = stParseHeader)]
pub fn parse_header(json: &[u8], file_size: f64) -> Result<String, JsError> {
    let h = st::parse_header(json, to_u64(file_size, "file size")?)
        .map_err(|e| JsError::new(&e.message))?;
    Ok(h.to_json())
}

/// Converts slices of tensor data; the result stays in wasm memory at `outputPtr()` until the
/// next call, so JavaScript copies it out without an extra allocation on this side.
#[wasm_bindgen(js_name = StConverter)]
pub struct StConverter {
    inner: st::Converter,
}

#[wasm_bindgen(js_class = StConverter)]
impl StConverter {
    #[wasm_bindgen(constructor)]
    pub fn new() -> StConverter {
        StConverter {
            inner: st::Converter::new(),
        }
    }

    /// Converts `src` (elements of dtype `from`, e.g. "BF16") to `to` ("f16", "f32" or "i32");
    /// returns the output's byte length. `first_element` (the slice's start in the tensor) makes
    /// out-of-range errors name the tensor's element index.
    pub fn convert(
        &mut self,
        from: &str,
        to: &str,
        src: &[u8],
        first_element: f64,
    ) -> Result<usize, JsError> {
        let f = DType::from_name(from)
            .ok_or_else(|| JsError::new(&format!("unknown dtype \"{from}\"")))?;
        let t = Target::from_name(to)
            .ok_or_else(|| JsError::new(&format!("unknown target \"{to}\"")))?;
        let out = self
            .inner
            .convert(f, t, src, to_u64(first_element, "first_element")?)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(out.len())
    }

    /// Byte offset of the last result in `stMemory().buffer`.
    #[wasm_bindgen(js_name = outputPtr)]
    pub fn output_ptr(&self) -> usize {
        self.inner.output_ptr() as usize
    }
}

impl Default for StConverter {
    fn default() -> Self {
        StConverter::new()
    }
}

/// The module's `WebAssembly.Memory`, for views of `StConverter` results.
#[wasm_bindgen(js_name = stMemory)]
pub fn memory() -> JsValue {
    wasm_bindgen::memory()
}
