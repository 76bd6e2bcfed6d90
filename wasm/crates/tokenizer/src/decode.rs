//! Streaming decode: text deltas as ids arrive, never splitting a UTF-8 character.

use crate::error::Error;
use crate::tokenizer::Tokenizer;

/// Turns ids into text one at a time. The deltas concatenate to exactly what
/// [`Tokenizer::decode`] gives for all the ids: bytes that may still become a character are held
/// back, and U+FFFD is emitted only for bytes that can no longer be valid (or, at
/// [`flush`](StreamDecoder::flush), for an incomplete character left at the end).
#[derive(Default)]
pub struct StreamDecoder {
    skip_special: bool,
    /// Bytes not yet emitted: at most an incomplete character's prefix between calls.
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder that drops special tokens when `skip_special` is set.
    pub fn new(skip_special: bool) -> StreamDecoder {
        StreamDecoder {
            skip_special,
            pending: Vec::new(),
        }
    }

    /// Adds one id; returns the text it completes (often all of it, maybe "").
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, Error> {
        tokenizer.push_bytes(id, self.skip_special, &mut self.pending)?;
        Ok(self.take(false))
    }

    /// Ends the stream: returns what is held back, an incomplete character as U+FFFD.
    pub fn flush(&mut self) -> String {
        self.take(true)
    }

    /// Decodes the pending bytes as `String::from_utf8_lossy` would, stopping before an
    /// incomplete character at the end unless `all`.
    fn take(&mut self, all: bool) -> String {
        let mut text = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    text.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // SAFETY-free: from_utf8 just validated this prefix.
                    text.push_str(std::str::from_utf8(valid).unwrap());
                    match e.error_len() {
                        Some(n) => {
                            text.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                        // An incomplete character that more bytes could complete.
                        None if !all => {
                            rest = after;
                            break;
                        }
                        None => {
                            text.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        self.pending.drain(..self.pending.len() - keep);
        text
    }
}
