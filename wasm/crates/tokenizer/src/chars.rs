//! Character classes of the pre-tokenizer regex and of the added-token matcher, looked up in
//! the tables measured from Hugging Face tokenizers (see `unicode_tables.rs`).

use crate::unicode_tables::{LETTER, NUMBER, WHITE_SPACE, WORD};

/// The class of one character as the Qwen2 split regex sees it. Every character is in exactly
/// one class (no Unicode letter or number is also White_Space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s` (Unicode White_Space, including `\r` and `\n`)
    Space,
    /// Everything else: punctuation, symbols, marks, controls, unassigned.
    Other,
}

const fn ascii_classes() -> [Class; 128] {
    let mut t = [Class::Other; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphabetic() {
            Class::Letter
        } else if c.is_ascii_digit() {
            Class::Number
        } else if matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
            Class::Space
        } else {
            Class::Other
        };
        b += 1;
    }
    t
}

/// Classes of the ASCII range, so the common case is one indexed load.
static ASCII: [Class; 128] = ascii_classes();

fn in_ranges(table: &[(u32, u32)], cp: u32) -> bool {
    // The last range starting at or before cp is the only one that can hold it.
    let i = table.partition_point(|&(lo, _)| lo <= cp);
    i > 0 && cp <= table[i - 1].1
}

/// The regex class of `c`.
#[inline]
pub fn class(c: char) -> Class {
    let cp = c as u32;
    if cp < 128 {
        return ASCII[cp as usize];
    }
    if in_ranges(LETTER, cp) {
        Class::Letter
    } else if in_ranges(NUMBER, cp) {
        Class::Number
    } else if in_ranges(WHITE_SPACE, cp) {
        Class::Space
    } else {
        Class::Other
    }
}

/// `\s` of the added-token matcher (lstrip / rstrip).
pub fn is_space(c: char) -> bool {
    class(c) == Class::Space
}

/// `\w` of the added-token matcher (single_word).
pub fn is_word(c: char) -> bool {
    in_ranges(WORD, c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_sorts_ascii_like_the_regex() {
        assert_eq!(class('a'), Class::Letter);
        assert_eq!(class('Z'), Class::Letter);
        assert_eq!(class('7'), Class::Number);
        assert_eq!(class(' '), Class::Space);
        assert_eq!(class('\r'), Class::Space);
        assert_eq!(class('_'), Class::Other);
        assert_eq!(class('\''), Class::Other);
        assert_eq!(class('\0'), Class::Other);
    }

    #[test]
    fn class_sorts_unicode_like_the_regex() {
        assert_eq!(class('é'), Class::Letter);
        assert_eq!(class('中'), Class::Letter);
        assert_eq!(class('²'), Class::Number); // No
        assert_eq!(class('Ⅻ'), Class::Number); // Nl
        assert_eq!(class('\u{3000}'), Class::Space);
        assert_eq!(class('\u{85}'), Class::Space);
        assert_eq!(class('\u{200B}'), Class::Other); // zero width space is not White_Space
        assert_eq!(class('\u{301}'), Class::Other); // combining mark
        assert_eq!(class('😀'), Class::Other);
        // Added in Unicode 16.0: the tables follow the library, not an older Unicode.
        assert_eq!(class('\u{1C89}'), Class::Letter);
    }

    #[test]
    fn is_word_includes_marks_digits_and_underscore() {
        assert!(is_word('_'));
        assert!(is_word('\u{301}'));
        assert!(is_word('٣'));
        assert!(!is_word('-'));
        assert!(!is_word(' '));
    }

    #[test]
    fn tables_are_sorted_and_disjoint() {
        for t in [LETTER, NUMBER, WHITE_SPACE, WORD] {
            for w in t.windows(2) {
                assert!(w[0].0 <= w[0].1 && w[0].1 + 1 < w[1].0, "{w:?}");
            }
        }
    }
}
