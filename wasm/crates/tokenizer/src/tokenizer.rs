//! The tokenizer: added tokens, NFC, the Qwen2 pre-tokenizer and byte-level BPE for encoding;
//! the byte-level decoder for decoding.

use std::borrow::Cow;

use unicode_normalization_alignments::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use crate::added::{AddedToken, AddedVocabulary, Split};
use crate::bpe::{Bpe, Cache, MergeMap};
use crate::byte_level::{BYTE_CHARS, token_bytes};
use crate::error::{Error, model_file};
use crate::json::{self, Config};
use crate::pretokenize;
use crate::vocab::Vocab;

/// A Hugging Face byte-level BPE tokenizer of the Qwen2 family, giving exactly the ids of
/// Hugging Face tokenizers 0.23.
pub struct Tokenizer {
    /// The BPE model's vocabulary.
    vocab: Vocab,
    bpe: Bpe,
    added: AddedVocabulary,
    config: Config,
    /// What decoding each id produces (before UTF-8 decoding), back to back.
    decode_bytes: Vec<u8>,
    /// Per id: (start, end) in `decode_bytes`, or None for an id with no token.
    decode_spans: Vec<Option<(u32, u32)>>,
    /// Per id: whether `skip_special_tokens` drops it.
    special: Vec<bool>,
}

/// NFC of `s`, borrowed when it is already normalized (the common case, found without
/// allocating).
fn nfc(s: &str) -> Cow<'_, str> {
    if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfc().map(|(c, _)| c).collect())
    }
}

/// The merge table of `merges` (in rank order) over `vocab`, as Hugging Face builds it.
fn merge_map(vocab: &Vocab, merges: &[(Cow<str>, Cow<str>)]) -> Result<MergeMap, Error> {
    let mut map = MergeMap::with_capacity(merges.len());
    let mut joined = String::new();
    let mut last = None;
    for (rank, (a, b)) in merges.iter().enumerate() {
        let id = |s: &str| {
            vocab.get(s).ok_or_else(|| {
                model_file(format!(
                    "tokenizer.json's merge {rank} ({a:?} {b:?}) uses {s:?}, which is not in the vocab"
                ))
            })
        };
        // Trained vocabs number merged tokens in merge order: try the id after the last one
        // before hashing the joined string.
        let guess = last.map_or(u32::MAX, |l: u32| l.wrapping_add(1));
        let merged = if vocab.is_concat(guess, a, b) {
            guess
        } else {
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            id(&joined)?
        };
        map.insert(id(a)?, id(b)?, rank as u32, merged);
        last = Some(merged);
    }
    Ok(map)
}

impl Tokenizer {
    /// Loads tokenizer.json (its bytes).
    ///
    /// Fails with [`Error::ModelFile`] when the JSON is malformed or describes a tokenizer other
    /// than byte-level BPE with the Qwen2 pre-tokenizer.
    pub fn from_json(json: &[u8]) -> Result<Tokenizer, Error> {
        let t = json::parse(json)?;
        let config = json::check(&t)?;
        let v = &t.model.vocab.0;
        let mut vocab = Vocab::with_capacity(v.len(), v.iter().map(|(s, _)| s.len()).sum());
        for (token, id) in v {
            // The tables are indexed by id (some 30 bytes an id): an id far past the others,
            // up to 2^32 - 1, would make a few-byte file allocate up to 128 GiB (and overflow
            // wasm32's usize). A real vocab numbers its tokens from 0, each entry taking
            // several bytes of the file, so its ids stay below the file's size.
            if *id as u64 >= json.len() as u64 {
                return Err(model_file(format!(
                    "tokenizer.json's vocab gives {token:?} the id {id}, past what a file of {} \
                     bytes can number (its {} tokens should have ids from 0): the file is corrupt",
                    json.len(),
                    v.len()
                )));
            }
            if !vocab.insert(token, *id) {
                let other = vocab.token(*id).map(str::to_string);
                return Err(model_file(match other {
                    Some(o) if o != **token => {
                        format!("tokenizer.json's vocab gives id {id} to both {o:?} and {token:?}")
                    }
                    _ => format!("tokenizer.json's vocab lists {token:?} twice"),
                }));
            }
        }
        let byte_ids = std::array::from_fn(|b| vocab.get(BYTE_CHARS[b].encode_utf8(&mut [0; 4])));
        let map = merge_map(&vocab, &t.model.merges.0)?;
        let mut tok = Tokenizer {
            bpe: Bpe::new(map, byte_ids),
            vocab,
            added: AddedVocabulary::default(),
            config,
            decode_bytes: Vec::new(),
            decode_spans: Vec::new(),
            special: Vec::new(),
        };
        tok.add_tokens(t.added_tokens.iter().map(|a| a.token()).collect())?;
        Ok(tok)
    }

    /// Adds tokenizer_config.json's `added_tokens_decoder` (the JSON object's bytes), as
    /// transformers does on top of tokenizer.json: new contents become added tokens, known ones
    /// take the flags given there.
    /// Its errors begin "added_tokens_decoder", naming the field (and so the file) at fault.
    pub fn add_tokens_decoder(&mut self, json: &[u8]) -> Result<(), Error> {
        let tokens = json::parse_added_tokens_decoder(json)?;
        self.add_tokens(tokens).map_err(|e| match e {
            Error::ModelFile(m) => Error::ModelFile(format!("added_tokens_decoder: {m}")),
            other => other,
        })
    }

    fn add_tokens(&mut self, tokens: Vec<AddedToken>) -> Result<(), Error> {
        let (vocab, nfc_on) = (&self.vocab, self.config.nfc);
        let taken = self.added.add(
            tokens,
            vocab.len() as u32,
            |s| vocab.get(s),
            |s| {
                if nfc_on {
                    nfc(s).into_owned()
                } else {
                    s.to_string()
                }
            },
        );
        for (id, t) in &taken {
            if let Some(other) = self.vocab.token(*id).filter(|o| *o != t.content) {
                return Err(model_file(format!(
                    "added token {:?} would take id {id}, which the vocab already gives to {other:?}",
                    t.content
                )));
            }
        }
        self.build_decode_table();
        Ok(())
    }

    /// Precomputes the bytes and the special flag of every id.
    fn build_decode_table(&mut self) {
        let end = self.vocab_size() as usize;
        let mut bytes = Vec::with_capacity(end * 7);
        let mut spans = vec![None; end];
        let mut special = vec![false; end];
        for id in 0..end as u32 {
            let Some(s) = self.id_to_token(id) else {
                continue;
            };
            let start = bytes.len() as u32;
            token_bytes(s, &mut bytes);
            spans[id as usize] = Some((start, bytes.len() as u32));
            // Hugging Face skips by string: any token whose string is a special token's content.
            special[id as usize] = self.added.is_special(s);
        }
        (self.decode_bytes, self.decode_spans, self.special) = (bytes, spans, special);
    }

    /// Number of ids: one more than the largest id of the vocab and the added tokens.
    pub fn vocab_size(&self) -> u32 {
        let added = self.added.tokens().map(|(id, _)| id + 1).max().unwrap_or(0);
        self.vocab.id_end().max(added)
    }

    /// The id of a token string (an added token's content or a vocab entry such as `"Ġhello"`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added.id(token).or_else(|| self.vocab.get(token))
    }

    /// The token string of an id (for vocab entries, byte-level characters: `"Ġhello"`).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.added
            .decoder_string(id)
            .or_else(|| self.vocab.token(id))
    }

    /// The ids of `text`, with added and special tokens recognised in it.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        let (mut raw, mut normalized) = (Vec::new(), Vec::new());
        let mut cache = self.bpe.cache();
        self.added.split_raw(text, &mut raw);
        for split in raw {
            let (a, b) = match split {
                Split::Token(id) => {
                    ids.push(id);
                    continue;
                }
                Split::Text(a, b) => (a, b),
            };
            let segment = if self.config.nfc {
                nfc(&text[a..b])
            } else {
                Cow::Borrowed(&text[a..b])
            };
            normalized.clear();
            self.added.split_normalized(&segment, &mut normalized);
            for split in &normalized {
                match *split {
                    Split::Token(id) => ids.push(id),
                    Split::Text(a, b) => {
                        self.encode_model(&segment[a..b], cache.as_deref_mut(), &mut ids)
                    }
                }
            }
        }
        ids
    }

    /// Pre-tokenizes and BPE-encodes text that holds no added token.
    fn encode_model(&self, text: &str, mut cache: Option<&mut Cache>, ids: &mut Vec<u32>) {
        pretokenize::split(text, |a, b| {
            let piece = &text.as_bytes()[a..b];
            if self.config.ignore_merges {
                let chars: String = piece.iter().map(|&b| BYTE_CHARS[b as usize]).collect();
                if let Some(id) = self.vocab.get(&chars) {
                    ids.push(id);
                    return;
                }
            }
            self.bpe.encode_piece(piece, cache.as_deref_mut(), ids);
        });
    }

    /// Appends the bytes `id` decodes to, unless it is special and `skip_special` is set.
    pub(crate) fn push_bytes(
        &self,
        id: u32,
        skip_special: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let Some(Some((a, b))) = self.decode_spans.get(id as usize) else {
            // (A tokenizer.json may have no tokens at all: no last id to name.)
            let ids = match self.vocab_size().checked_sub(1) {
                Some(last) => format!("ids run from 0 to {last}"),
                None => "the tokenizer has no tokens".to_string(),
            };
            return Err(Error::InvalidInput(format!(
                "token id {id} is not in the vocabulary ({ids}); pass ids this tokenizer produced"
            )));
        };
        if !(skip_special && self.special[id as usize]) {
            out.extend_from_slice(&self.decode_bytes[*a as usize..*b as usize]);
        }
        Ok(())
    }

    /// The bytes of `ids` before UTF-8 decoding (what the byte-level decoder reassembles).
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.push_bytes(id, skip_special, &mut out)?;
        }
        Ok(out)
    }

    /// The text of `ids`; invalid UTF-8 becomes U+FFFD exactly where Hugging Face puts it.
    /// Fails with [`Error::InvalidInput`] for an id the tokenizer does not have.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, Error> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids, skip_special)?).into_owned())
    }
}
