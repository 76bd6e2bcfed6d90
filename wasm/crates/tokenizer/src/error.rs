//! The two ways tokenizing can fail.

use std::fmt;

/// An error with a message that quotes the bad value and says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// tokenizer.json (or the added-token config) is malformed or describes an unsupported
    /// tokenizer.
    ModelFile(String),
    /// A caller passed a bad argument, such as an id the vocabulary does not have.
    InvalidInput(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ModelFile(m) | Error::InvalidInput(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for a ModelFile error.
pub(crate) fn model_file(msg: impl Into<String>) -> Error {
    Error::ModelFile(msg.into())
}
