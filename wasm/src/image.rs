//! wasm-bindgen wrappers for qvq-image.
