//! wasm-bindgen wrappers for qvq-safetensors.
