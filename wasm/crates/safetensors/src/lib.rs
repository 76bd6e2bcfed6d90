//! qvq-safetensors: see the crate's modules.
