//! The Qwen2 pre-tokenizer: a hand-written scanner equivalent to the `Split` regex
//!
//! ```text
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! with behaviour `Isolated`, as Oniguruma (a backtracking engine) runs it: at each position the
//! alternatives are tried left to right and the first that matches wins. Every character starts
//! some alternative, so the pieces tile the text without gaps and none is empty.

use crate::chars::{Class, class};

/// The `Split` pattern this scanner implements, as it appears in tokenizer.json.
pub const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The character starting at byte `i` of `s` and its length in bytes. `i` must be a char boundary
/// before the end.
#[inline]
fn char_at(s: &str, i: usize) -> (char, usize) {
    let b = s.as_bytes()[i];
    if b < 0x80 {
        return (b as char, 1);
    }
    let c = s[i..].chars().next().unwrap();
    (c, c.len_utf8())
}

/// End of the run of characters of class `k` starting at byte `i`.
#[inline]
fn run_end(s: &str, mut i: usize, k: Class) -> usize {
    while i < s.len() {
        let (c, n) = char_at(s, i);
        if class(c) != k {
            break;
        }
        i += n;
    }
    i
}

/// Matches `(?i:'s|'t|'re|'ve|'m|'ll|'d)` after the apostrophe at `i`; returns the end.
/// Case-insensitive matching folds U+017F LATIN SMALL LETTER LONG S to `s` as well (measured on
/// Oniguruma: no other character folds onto these letters).
fn contraction_end(s: &str, i: usize) -> Option<usize> {
    let rest = &s[i + 1..];
    let mut it = rest.chars();
    let a = it.next()?;
    match a {
        's' | 'S' | 't' | 'T' | 'm' | 'M' | 'd' | 'D' | 'ſ' => Some(i + 1 + a.len_utf8()),
        'r' | 'R' | 'v' | 'V' if matches!(it.next(), Some('e' | 'E')) => Some(i + 3),
        'l' | 'L' if matches!(it.next(), Some('l' | 'L')) => Some(i + 3),
        _ => None,
    }
}

/// End (byte index) of the piece of `s` that starts at byte `i` (`i < s.len()`).
// Not inlined into the caller's loop, so the wasm engine optimizes it during a long first call.
#[inline(never)]
pub fn piece_end(s: &str, i: usize) -> usize {
    let (c, n) = char_at(s, i);
    let k = class(c);
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c == '\''
        && let Some(end) = contraction_end(s, i)
    {
        return end;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if k == Class::Letter {
        return run_end(s, i + n, Class::Letter);
    }
    let next = if i + n < s.len() {
        Some(char_at(s, i + n))
    } else {
        None
    };
    let next_class = next.map(|(c2, _)| class(c2));
    if k != Class::Number && c != '\r' && c != '\n' && next_class == Some(Class::Letter) {
        return run_end(s, i + n, Class::Letter);
    }
    // \p{N}
    if k == Class::Number {
        return i + n;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let punct_start = if c == ' ' && next_class == Some(Class::Other) {
        Some(i + n)
    } else if k == Class::Other {
        Some(i)
    } else {
        None
    };
    if let Some(p) = punct_start {
        let end = run_end(s, p, Class::Other);
        let tail = s.as_bytes()[end..]
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        return end + tail;
    }
    // Only whitespace is left. Find its run, the last line break in it and its last character.
    debug_assert_eq!(k, Class::Space);
    let (mut j, mut last_break_end, mut last_char_start) = (i, None, i);
    while j < s.len() {
        let (c2, n2) = char_at(s, j);
        if class(c2) != Class::Space {
            break;
        }
        if c2 == '\r' || c2 == '\n' {
            last_break_end = Some(j + 1);
        }
        last_char_start = j;
        j += n2;
    }
    // \s*[\r\n]+ : the greedy \s* backs off to the last line break of the run.
    if let Some(end) = last_break_end {
        return end;
    }
    // \s+(?!\S) : the whole run at the end of the text, else the run less its last character
    // (which then is the whitespace the lookahead sees), if that leaves at least one.
    if j == s.len() {
        return j;
    }
    if last_char_start > i {
        return last_char_start;
    }
    // \s+
    j
}

/// Calls `f` with the byte range of every piece of `s`, in order.
pub fn split(s: &str, mut f: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < s.len() {
        let end = piece_end(s, i);
        f(i, end);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        split(s, |a, b| v.push(&s[a..b]));
        v
    }

    #[test]
    fn split_isolates_words_with_their_leading_space() {
        assert_eq!(pieces("Hello world"), ["Hello", " world"]);
        assert_eq!(pieces("\tand"), ["\tand"]);
        assert_eq!(pieces("\u{3000}中文"), ["\u{3000}中文"]);
    }

    #[test]
    fn split_matches_contractions_case_insensitively() {
        assert_eq!(pieces("I'm"), ["I", "'m"]);
        assert_eq!(pieces("DON'T"), ["DON", "'T"]);
        assert_eq!(pieces("we'LL'Ve"), ["we", "'LL", "'Ve"]);
        assert_eq!(pieces("x'ſa"), ["x", "'ſ", "a"]);
        assert_eq!(pieces("'x"), ["'x"]);
    }

    #[test]
    fn split_keeps_digits_single() {
        assert_eq!(pieces("a123"), ["a", "1", "2", "3"]);
        assert_eq!(pieces(" 1"), [" ", "1"]);
    }

    #[test]
    fn split_glues_punctuation_runs_and_trailing_newlines() {
        assert_eq!(pieces("!!!???"), ["!!!???"]);
        assert_eq!(pieces("x **2"), ["x", " **", "2"]);
        assert_eq!(pieces("):\n\n    r"), ["):\n\n", "   ", " r"]);
    }

    #[test]
    fn split_handles_whitespace_runs_like_the_lookahead() {
        assert_eq!(pieces("a   b"), ["a", "  ", " b"]);
        assert_eq!(pieces("a   "), ["a", "   "]);
        assert_eq!(pieces("a \u{3000}1"), ["a", " ", "\u{3000}", "1"]);
        assert_eq!(pieces("a \n \nb"), ["a", " \n \n", "b"]);
        assert_eq!(pieces("    \n    \n"), ["    \n    \n"]);
        assert_eq!(pieces("a\r\n\r\nb"), ["a", "\r\n\r\n", "b"]);
        assert_eq!(pieces(" \t"), [" \t"]);
        assert_eq!(pieces("1 2"), ["1", " ", "2"]);
    }
}
