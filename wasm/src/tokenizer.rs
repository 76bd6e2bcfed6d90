//! wasm-bindgen wrappers for qvq-tokenizer.
