//! qvq-image: see the crate's modules.
