//! The parts of tokenizer.json that a byte-level BPE tokenizer needs, deserialized borrowing
//! from the file's bytes (151k vocab strings and 151k merges: no allocation per entry unless the
//! JSON string has escapes), and the check that the file describes a tokenizer we implement.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::added::AddedToken;
use crate::error::{Error, model_file};
use crate::pretokenize::QWEN2_PATTERN;

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// tokenizer.json, top level.
#[derive(Deserialize)]
pub struct TokenizerJson<'a> {
    #[serde(default, borrow)]
    pub added_tokens: Vec<AddedTokenJson<'a>>,
    #[serde(default)]
    pub normalizer: Value,
    #[serde(default)]
    pub pre_tokenizer: Value,
    #[serde(default)]
    pub post_processor: Value,
    #[serde(default)]
    pub decoder: Value,
    #[serde(borrow)]
    pub model: ModelJson<'a>,
}

/// One entry of `added_tokens` / `added_tokens_decoder`. Missing flags take Hugging Face's
/// defaults.
#[derive(Deserialize)]
pub struct AddedTokenJson<'a> {
    // (The "id" field is ignored, as Hugging Face ignores it: see AddedVocabulary::add.)
    #[serde(borrow)]
    pub content: Str<'a>,
    #[serde(default)]
    pub single_word: bool,
    #[serde(default)]
    pub lstrip: bool,
    #[serde(default)]
    pub rstrip: bool,
    #[serde(default)]
    pub normalized: Option<bool>,
    #[serde(default)]
    pub special: bool,
}

impl AddedTokenJson<'_> {
    /// The token with defaults applied: as transformers' `AddedToken`, a token is normalized
    /// unless it is special or says otherwise (tokenizer.json writes every flag; a
    /// tokenizer_config.json entry may leave `normalized` out).
    pub fn token(&self) -> AddedToken {
        AddedToken {
            content: self.content.0.to_string(),
            single_word: self.single_word,
            lstrip: self.lstrip,
            rstrip: self.rstrip,
            normalized: self.normalized.unwrap_or(!self.special),
            special: self.special,
        }
    }
}

/// tokenizer.json's `model`.
#[derive(Deserialize)]
pub struct ModelJson<'a> {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub dropout: Option<f64>,
    #[serde(default)]
    pub continuing_subword_prefix: Option<String>,
    #[serde(default)]
    pub end_of_word_suffix: Option<String>,
    #[serde(default)]
    pub byte_fallback: bool,
    #[serde(default)]
    pub ignore_merges: bool,
    #[serde(borrow)]
    pub vocab: VocabJson<'a>,
    #[serde(default, borrow)]
    pub merges: MergesJson<'a>,
}

// The per-entry parsers of the two big tables are kept out of line: the wasm engine first runs
// code unoptimized and only optimizes a function when it is called again, so a loop inlined into a
// function that runs once (the whole load) would never be optimized.
#[inline(never)]
fn next_entry<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<(Str<'de>, u32)>, A::Error> {
    map.next_entry()
}

#[inline(never)]
fn next_element<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<Option<Merge<'de>>, A::Error> {
    seq.next_element()
}

/// `model.vocab`: (token, id) in file order.
#[derive(Default)]
pub struct VocabJson<'a>(pub Vec<(Cow<'a, str>, u32)>);

impl<'de: 'a, 'a> Deserialize<'de> for VocabJson<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = VocabJson<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping token strings to ids")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(1 << 17));
                while let Some((Str(k), id)) = next_entry(&mut map)? {
                    v.push((k, id));
                }
                Ok(VocabJson(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// `model.merges`: pairs in rank order, from either the `["a", "b"]` or the legacy `"a b"` form.
#[derive(Default)]
pub struct MergesJson<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

/// One merge in either form.
struct Merge<'a>(Cow<'a, str>, Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Merge<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        fn halves<'a, E: de::Error>(s: Cow<'a, str>) -> Result<Merge<'a>, E> {
            let bad = || {
                E::custom(format!(
                    "merge {s:?} is not two tokens separated by one space"
                ))
            };
            let i = s.find(' ').ok_or_else(bad)?;
            if s[i + 1..].contains(' ') {
                return Err(bad());
            }
            Ok(match s {
                Cow::Borrowed(b) => Merge(Cow::Borrowed(&b[..i]), Cow::Borrowed(&b[i + 1..])),
                Cow::Owned(o) => Merge(
                    Cow::Owned(o[..i].to_string()),
                    Cow::Owned(o[i + 1..].to_string()),
                ),
            })
        }
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Merge<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a merge: ["a", "b"] or "a b""#)
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                halves(Cow::Borrowed(s))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                halves(Cow::Owned(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let two = || de::Error::custom("a merge pair must hold exactly two tokens");
                let Str(a) = seq.next_element::<Str<'de>>()?.ok_or_else(two)?;
                let Str(b) = seq.next_element::<Str<'de>>()?.ok_or_else(two)?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(two());
                }
                Ok(Merge(a, b))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for MergesJson<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = MergesJson<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of merges")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(1 << 17));
                while let Some(Merge(a, b)) = next_element(&mut seq)? {
                    v.push((a, b));
                }
                Ok(MergesJson(v))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// Parses tokenizer.json.
pub fn parse(json: &[u8]) -> Result<TokenizerJson<'_>, Error> {
    let bad = |e: &dyn fmt::Display| model_file(format!("tokenizer.json is not valid: {e}"));
    // Validating the UTF-8 once up front is much cheaper than per string (300k of them).
    let text = std::str::from_utf8(json).map_err(|e| bad(&e))?;
    serde_json::from_str(text).map_err(|e| bad(&e))
}

/// Parses tokenizer_config.json's `added_tokens_decoder` object (`{"151643": {...}, ...}`) into
/// tokens in id order.
pub fn parse_added_tokens_decoder(json: &[u8]) -> Result<Vec<AddedToken>, Error> {
    let bad = |e: String| model_file(format!("added_tokens_decoder is not valid: {e}"));
    let map: Vec<(String, AddedTokenJson)> =
        serde_json::from_slice::<serde_json::Map<String, Value>>(json)
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    k,
                    AddedTokenJson::deserialize(v).map_err(|e| bad(e.to_string()))?,
                ))
            })
            .collect::<Result<_, Error>>()?;
    let mut with_ids = map
        .into_iter()
        .map(|(k, t)| {
            let id: u32 = k
                .parse()
                .map_err(|_| bad(format!("key {k:?} is not a token id")))?;
            Ok((id, t.token()))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    with_ids.sort_by_key(|(id, _)| *id);
    Ok(with_ids.into_iter().map(|(_, t)| t).collect())
}

/// What the rest of tokenizer.json asks for, once checked to be something we implement.
pub struct Config {
    /// Whether the normalizer is NFC (else there is none).
    pub nfc: bool,
    /// Whether a piece found whole in the vocab skips merging.
    pub ignore_merges: bool,
}

fn kind(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!("{}…", &s[..s.floor_char_boundary(300)])
    } else {
        s
    }
}

/// Checks that tokenizer.json describes a Qwen2-style byte-level BPE tokenizer.
pub fn check(t: &TokenizerJson) -> Result<Config, Error> {
    let unsupported = |what: &str, v: &Value| {
        model_file(format!(
            "tokenizer.json has an unsupported {what}: {}; qvq implements the byte-level BPE \
             tokenizer of the Qwen2 family (NFC, the Qwen2 Split regex, ByteLevel)",
            describe(v)
        ))
    };
    let m = &t.model;
    if let Some(k) = &m.kind
        && k != "BPE"
    {
        return Err(model_file(format!(
            "tokenizer.json has model type {k:?}; qvq only implements byte-level \"BPE\" \
                 tokenizers (the Qwen2 family)"
        )));
    }
    let model_option = |name: &str, bad: bool, v: String| {
        if bad {
            Err(model_file(format!(
                "tokenizer.json's BPE model sets {name} to {v}, which qvq does not implement; use a Qwen2 tokenizer.json"
            )))
        } else {
            Ok(())
        }
    };
    model_option(
        "dropout",
        m.dropout.is_some_and(|d| d != 0.0),
        format!("{:?}", m.dropout),
    )?;
    model_option("byte_fallback", m.byte_fallback, "true".into())?;
    let prefix = m.continuing_subword_prefix.as_deref().unwrap_or("");
    model_option(
        "continuing_subword_prefix",
        !prefix.is_empty(),
        format!("{prefix:?}"),
    )?;
    let suffix = m.end_of_word_suffix.as_deref().unwrap_or("");
    model_option(
        "end_of_word_suffix",
        !suffix.is_empty(),
        format!("{suffix:?}"),
    )?;

    let nfc = match &t.normalizer {
        Value::Null => false,
        v if kind(v) == Some("NFC") => true,
        v if kind(v) == Some("Sequence")
            && v["normalizers"]
                .as_array()
                .is_some_and(|a| a.len() == 1 && kind(&a[0]) == Some("NFC")) =>
        {
            true
        }
        v => return Err(unsupported("normalizer", v)),
    };

    let pre = &t.pre_tokenizer;
    let steps = pre["pretokenizers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let qwen2 = kind(pre) == Some("Sequence")
        && steps.len() == 2
        && kind(&steps[0]) == Some("Split")
        && steps[0]["pattern"]["Regex"].as_str() == Some(QWEN2_PATTERN)
        && steps[0]["behavior"].as_str() == Some("Isolated")
        && !steps[0]["invert"].as_bool().unwrap_or(false)
        && is_plain_byte_level(&steps[1]);
    if !qwen2 {
        return Err(unsupported("pre_tokenizer", pre));
    }
    if kind(&t.decoder) != Some("ByteLevel") {
        return Err(unsupported("decoder", &t.decoder));
    }
    if !(t.post_processor.is_null() || kind(&t.post_processor) == Some("ByteLevel")) {
        return Err(unsupported("post_processor", &t.post_processor));
    }
    Ok(Config {
        nfc,
        ignore_merges: m.ignore_merges,
    })
}

/// A ByteLevel step without its own regex and without a prefix space.
fn is_plain_byte_level(v: &Value) -> bool {
    kind(v) == Some("ByteLevel")
        && !v["add_prefix_space"].as_bool().unwrap_or(false)
        && !v["use_regex"].as_bool().unwrap_or(true)
}
