//! qvq-tokenizer: the Qwen2 family's byte-level BPE tokenizer, giving exactly the ids of
//! Hugging Face tokenizers 0.23 for a tokenizer.json.
//!
//! Encoding runs the same stages as Hugging Face, each in its own module:
//! [`added`] tokens are cut out of the raw text, the rest is NFC-normalized, split by the
//! Qwen2 regex ([`pretokenize`], a hand-written scanner over the character classes in [`chars`])
//! and merged by [`bpe`] one symbol per byte. Decoding maps tokens back to bytes ([`byte_level`])
//! and UTF-8; [`decode::StreamDecoder`] does so incrementally.
//!
//! ```
//! # let json = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../tests/fixtures/tiny-qwen2vl/tokenizer.json")).unwrap();
//! let tok = qvq_tokenizer::Tokenizer::from_json(&json).unwrap();
//! let ids = tok.encode("<|im_start|>user\nHello world");
//! assert_eq!(ids, [151644, 872, 198, 9707, 1879]);
//! assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHello world");
//! ```

pub mod added;
pub mod bpe;
pub mod byte_level;
pub mod chars;
pub mod decode;
mod error;
mod json;
pub mod pretokenize;
mod tokenizer;
#[rustfmt::skip] // generated; one line per several ranges
mod unicode_tables;
mod vocab;

pub use decode::StreamDecoder;
pub use error::Error;
pub use tokenizer::Tokenizer;
