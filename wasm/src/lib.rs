//! The wasm-bindgen layer: thin wrappers that move bytes and numbers between JavaScript and the
//! plain Rust crates in `crates/`. No logic lives here; each wrapper converts errors to JS errors.

mod image;
mod safetensors;
mod tokenizer;
