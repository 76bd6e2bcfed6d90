//! Added tokens (`<|im_start|>`, `<|image_pad|>`, …): found in the text before the BPE model
//! sees it, with Hugging Face's rules for `single_word`, `lstrip`, `rstrip` and `normalized`.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::chars::{is_space, is_word};

/// One entry of tokenizer.json's `added_tokens` (or tokenizer_config.json's
/// `added_tokens_decoder`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedToken {
    /// The text of the token.
    pub content: String,
    /// Match only where no word character touches either end.
    pub single_word: bool,
    /// Swallow the whitespace before the match.
    pub lstrip: bool,
    /// Swallow the whitespace after the match.
    pub rstrip: bool,
    /// Match in the normalized text (after NFC) instead of the raw text.
    pub normalized: bool,
    /// A special token: dropped by `skip_special_tokens` when decoding.
    pub special: bool,
}

/// Finds a set of strings in text, leftmost-longest and non-overlapping (Hugging Face builds an
/// Aho-Corasick automaton with `MatchKind::LeftmostLongest`; with a few dozen tokens a first-byte
/// index does the same work).
#[derive(Default)]
struct Matcher {
    /// (pattern, id), sorted by first byte, then longest first.
    patterns: Vec<(String, u32)>,
    /// Patterns starting with byte b are patterns[first[b]..first[b + 1]].
    first: Vec<u32>,
}

impl Matcher {
    fn new(mut patterns: Vec<(String, u32)>) -> Matcher {
        patterns.retain(|(p, _)| !p.is_empty());
        patterns.sort_by(|(a, _), (b, _)| {
            a.as_bytes()[0]
                .cmp(&b.as_bytes()[0])
                .then(b.len().cmp(&a.len()))
        });
        let mut first = vec![0u32; 257];
        for (p, _) in &patterns {
            first[p.as_bytes()[0] as usize + 1] += 1;
        }
        for b in 0..256 {
            first[b + 1] += first[b];
        }
        Matcher { patterns, first }
    }

    /// The next match at or after byte `from`: (start, end, id).
    fn find(&self, s: &str, from: usize) -> Option<(usize, usize, u32)> {
        if self.patterns.is_empty() {
            return None;
        }
        let bytes = s.as_bytes();
        for i in from..bytes.len() {
            let b = bytes[i] as usize;
            let (lo, hi) = (self.first[b] as usize, self.first[b + 1] as usize);
            for (p, id) in &self.patterns[lo..hi] {
                if bytes[i..].starts_with(p.as_bytes()) {
                    return Some((i, i + p.len(), *id));
                }
            }
        }
        None
    }
}

/// A piece of text after splitting on added tokens.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// An added token (its span may include stripped whitespace).
    Token(u32),
    /// Text for the model: a byte range of the split text.
    Text(usize, usize),
}

/// The added tokens of a tokenizer.
#[derive(Default)]
pub struct AddedVocabulary {
    by_id: FxHashMap<u32, AddedToken>,
    by_content: FxHashMap<String, u32>,
    /// Contents of special tokens (a token stays special once added as such, as in HF).
    special: FxHashSet<String>,
    /// The normalized form of `normalized` tokens that normalization changes.
    normalized_forms: FxHashMap<u32, String>,
    raw: Matcher,
    normalized: Matcher,
}

impl AddedVocabulary {
    /// Adds tokens with Hugging Face's id rule: a content already known (added, or in the model
    /// vocab per `model_id`) keeps its id; a new one takes the next free id after the model
    /// vocab (`model_size` tokens) and earlier added tokens. The ids written in tokenizer.json are
    /// not used, exactly as Hugging Face ignores them. Returns the (id, token) pairs taken.
    pub fn add(
        &mut self,
        tokens: impl IntoIterator<Item = AddedToken>,
        model_size: u32,
        model_id: impl Fn(&str) -> Option<u32>,
        normalize: impl Fn(&str) -> String,
    ) -> Vec<(u32, AddedToken)> {
        let mut next_id = match self.by_id.keys().max() {
            Some(&max) if max >= model_size || model_size == 0 => max + 1,
            _ => model_size,
        };
        let mut taken = Vec::new();
        for token in tokens {
            if token.content.is_empty() {
                continue;
            }
            if let Some(id) = self.by_content.get(&token.content)
                && self.by_id.get(id) == Some(&token)
            {
                continue;
            }
            let id = match self
                .by_content
                .get(&token.content)
                .copied()
                .or_else(|| model_id(&token.content))
            {
                Some(id) => id,
                None => {
                    next_id += 1;
                    next_id - 1
                }
            };
            if token.normalized {
                let n = normalize(&token.content);
                if n != token.content {
                    self.normalized_forms.insert(id, n);
                }
            }
            self.by_content.insert(token.content.clone(), id);
            if token.special {
                self.special.insert(token.content.clone());
            }
            taken.push((id, token.clone()));
            self.by_id.insert(id, token);
        }
        self.rebuild_matchers();
        taken
    }

    fn rebuild_matchers(&mut self) {
        let (mut raw, mut normalized) = (Vec::new(), Vec::new());
        for (&id, t) in &self.by_id {
            if t.normalized {
                let p = self.normalized_forms.get(&id).unwrap_or(&t.content);
                normalized.push((p.clone(), id));
            } else {
                raw.push((t.content.clone(), id));
            }
        }
        self.raw = Matcher::new(raw);
        self.normalized = Matcher::new(normalized);
    }

    /// The id of an added token's content.
    pub fn id(&self, content: &str) -> Option<u32> {
        self.by_content.get(content).copied()
    }

    /// The string the decoder receives for added token `id`: its normalized form if
    /// normalization changed it, else its content.
    pub fn decoder_string(&self, id: u32) -> Option<&str> {
        let t = self.by_id.get(&id)?;
        Some(self.normalized_forms.get(&id).unwrap_or(&t.content))
    }

    /// Whether a token string is the content of a special token (decode skips those strings).
    pub fn is_special(&self, token: &str) -> bool {
        self.special.contains(token)
    }

    /// All added tokens by id.
    pub fn tokens(&self) -> impl Iterator<Item = (u32, &AddedToken)> {
        self.by_id.iter().map(|(&id, t)| (id, t))
    }

    /// Splits raw text on the non-normalized tokens.
    pub fn split_raw(&self, s: &str, out: &mut Vec<Split>) {
        self.split(&self.raw, s, out)
    }

    /// Splits normalized text on the normalized tokens.
    pub fn split_normalized(&self, s: &str, out: &mut Vec<Split>) {
        self.split(&self.normalized, s, out)
    }

    /// Hugging Face's `find_matches`: pieces covering `s` (stripped whitespace goes to the token).
    fn split(&self, m: &Matcher, s: &str, out: &mut Vec<Split>) {
        let mut done = 0; // end of the last piece pushed
        let mut from = 0; // where the next match may start (end of the last raw match)
        while let Some((mut start, end, id)) = m.find(s, from) {
            from = end;
            let t = &self.by_id[&id];
            let mut stop = end;
            if t.single_word {
                let word_before = s[..start].chars().next_back().is_some_and(is_word);
                let word_after = s[stop..].chars().next().is_some_and(is_word);
                if word_before || word_after {
                    continue;
                }
            }
            if t.lstrip {
                let ws = s[..start]
                    .chars()
                    .rev()
                    .take_while(|&c| is_space(c))
                    .map(char::len_utf8)
                    .sum::<usize>();
                start = (start - ws).max(done);
            }
            if t.rstrip {
                stop += s[stop..]
                    .chars()
                    .take_while(|&c| is_space(c))
                    .map(char::len_utf8)
                    .sum::<usize>();
            }
            if done < start {
                out.push(Split::Text(done, start));
            }
            out.push(Split::Token(id));
            done = stop;
        }
        if done < s.len() {
            out.push(Split::Text(done, s.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(content: &str) -> AddedToken {
        AddedToken {
            content: content.into(),
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
            special: true,
        }
    }

    fn vocab(tokens: Vec<AddedToken>) -> AddedVocabulary {
        let mut v = AddedVocabulary::default();
        v.add(
            tokens,
            100,
            |s| (s == "known").then_some(7),
            |s| s.to_lowercase(),
        );
        v
    }

    fn split(v: &AddedVocabulary, s: &str) -> Vec<Split> {
        let mut out = Vec::new();
        v.split_raw(s, &mut out);
        out
    }

    #[test]
    fn add_assigns_ids_after_the_model_vocab() {
        let mut v = AddedVocabulary::default();
        let taken = v.add(
            [token("<a>"), token("known"), token("<b>")],
            100,
            |s| (s == "known").then_some(7),
            |s| s.into(),
        );
        let ids: Vec<u32> = taken.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [100, 7, 101]);
        assert_eq!(v.id("<b>"), Some(101));
        let again = v.add([token("<a>"), token("<c>")], 100, |_| None, |s| s.into());
        assert_eq!(again.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [102]);
    }

    #[test]
    fn split_prefers_the_leftmost_then_longest_token() {
        let v = vocab(vec![token("<a>"), token("<a>b"), token("a>")]);
        use Split::*;
        assert_eq!(split(&v, "x<a>by"), [Text(0, 1), Token(101), Text(5, 6)]);
        assert_eq!(split(&v, "<a><a>"), [Token(100), Token(100)]);
        assert_eq!(split(&v, "a>"), [Token(102)]);
        assert_eq!(split(&v, "plain"), [Text(0, 5)]);
    }

    #[test]
    fn split_strips_whitespace_into_the_token() {
        let mut t = token("<m>");
        t.lstrip = true;
        t.rstrip = true;
        let v = vocab(vec![t]);
        use Split::*;
        assert_eq!(
            split(&v, "a \u{3000}<m>\n b"),
            [Text(0, 1), Token(100), Text(10, 11)]
        );
        assert_eq!(split(&v, "<m> <m>"), [Token(100), Token(100)]);
    }

    #[test]
    fn split_skips_single_word_tokens_inside_words() {
        let mut t = token("m");
        t.single_word = true;
        let v = vocab(vec![t]);
        use Split::*;
        assert_eq!(split(&v, "am m_ m."), [Text(0, 6), Token(100), Text(7, 8)]);
    }

    #[test]
    fn normalized_tokens_match_their_normalized_form() {
        let mut t = token("ABC");
        t.normalized = true;
        let v = vocab(vec![t]);
        let mut out = Vec::new();
        v.split_normalized("xabc", &mut out);
        assert_eq!(out, [Split::Text(0, 1), Split::Token(100)]);
        assert_eq!(v.decoder_string(100), Some("abc"));
        assert!(
            split(&v, "ABC")
                .iter()
                .all(|s| matches!(s, Split::Text(..)))
        );
    }
}
