//! GPT-2's reversible byte ↔ character mapping used by the `ByteLevel` pre-tokenizer and decoder:
//! printable Latin-1 bytes stand for themselves, the other 68 bytes are moved to U+0100.. in order.

/// `BYTE_CHARS[b]` is the character that stands for byte `b`.
pub static BYTE_CHARS: [char; 256] = byte_chars();

const fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

const fn byte_chars() -> [char; 256] {
    let mut t = ['\0'; 256];
    let mut shifted = 0u32;
    let mut b = 0;
    while b < 256 {
        t[b] = if is_printable(b as u8) {
            b as u8 as char
        } else {
            shifted += 1;
            // Never fails: 256 + 68 is a valid scalar value.
            match char::from_u32(255 + shifted) {
                Some(c) => c,
                None => '\0',
            }
        };
        b += 1;
    }
    t
}

/// `CHAR_BYTES[c]` is the byte that character `c` (below U+0144) stands for, or -1.
static CHAR_BYTES: [i16; 256 + 68] = char_bytes();

const fn char_bytes() -> [i16; 256 + 68] {
    let mut t = [-1i16; 256 + 68];
    let mut b = 0;
    while b < 256 {
        t[BYTE_CHARS[b] as usize] = b as i16;
        b += 1;
    }
    t
}

/// The byte a byte-level character stands for, or None for any other character.
#[inline]
pub fn char_byte(c: char) -> Option<u8> {
    match CHAR_BYTES.get(c as usize) {
        Some(&b) if b >= 0 => Some(b as u8),
        _ => None,
    }
}

/// Bytes of a token as the `ByteLevel` decoder produces them: the byte of every character when
/// all are byte-level characters, else the token's own UTF-8 (so an added token such as
/// `<|im_start|>` or one with a real space decodes to itself).
// Not inlined: loading calls it for every token, and a separate function tiers up in the wasm
// engine while loading runs.
#[inline(never)]
pub fn token_bytes(token: &str, out: &mut Vec<u8>) {
    let start = out.len();
    for c in token.chars() {
        match char_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.truncate(start);
                out.extend_from_slice(token.as_bytes());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_matches_gpt2_table() {
        assert_eq!(BYTE_CHARS[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_CHARS[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_CHARS[0], 'Ā');
        assert_eq!(BYTE_CHARS[b'a' as usize], 'a');
        assert_eq!(BYTE_CHARS[0xAD], 'Ń'); // the 68th and last moved byte: U+0143
    }

    #[test]
    fn char_byte_inverts_byte_chars() {
        for b in 0..=255u8 {
            assert_eq!(char_byte(BYTE_CHARS[b as usize]), Some(b));
        }
        assert_eq!(char_byte(' '), None);
        assert_eq!(char_byte('中'), None);
    }

    #[test]
    fn token_bytes_falls_back_to_utf8() {
        let mut v = Vec::new();
        token_bytes("Ġhi", &mut v);
        assert_eq!(v, b" hi");
        v.clear();
        token_bytes("a b", &mut v);
        assert_eq!(v, b"a b");
    }
}
