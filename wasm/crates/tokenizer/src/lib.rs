//! qvq-tokenizer: see the crate's modules.
