//! A small strict JSON parser (RFC 8259) for safetensors headers.
//!
//! Why not serde_json: the header schema is tiny, and a parser of our own can reject what a
//! permissive one silently accepts (duplicate keys, where the last one would win and a tensor
//! could vanish), keeps every integer as its exact text, and adds no dependency to the wasm
//! binary. Nesting is capped so hostile input cannot overflow the stack.

use std::collections::HashSet;
use std::fmt;

/// Deepest nesting of arrays/objects accepted; a safetensors header needs 3.
const MAX_DEPTH: usize = 64;

/// A parsed JSON value. Objects keep their members in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number's text exactly as written (validated against the JSON grammar).
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Where and why parsing failed; `offset` is a byte offset into the parsed text.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl Value {
    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// The value as a u64 when it is a plain non-negative integer literal (no sign, fraction or
    /// exponent) that fits; `None` otherwise.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(t) if t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok(),
            _ => None,
        }
    }
}

/// Parses `text` as one JSON value; whitespace around it is allowed (safetensors writers pad the
/// header with spaces), anything else after it is an error. Duplicate object keys are errors.
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(p.err("unexpected text after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> JsonError {
        JsonError {
            offset: self.i,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    fn value(&mut self) -> Result<Value, JsonError> {
        match self.peek() {
            None => Err(self.err("unexpected end of JSON")),
            Some(b'{') => self.nested(Parser::object),
            Some(b'[') => self.nested(Parser::array),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, v) in [
                    ("null", Value::Null),
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                ] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Ok(v);
                    }
                }
                Err(self.err("unexpected character"))
            }
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Value, JsonError>) -> Result<Value, JsonError> {
        if self.depth == MAX_DEPTH {
            return Err(self.err("JSON nested too deeply"));
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Result<Value, JsonError> {
        self.i += 1; // '{'
        let mut members: Vec<(String, Value)> = Vec::new();
        // The keys seen, to refuse a duplicate in constant time: comparing each key with all the
        // earlier ones took minutes for a header of 200,000 short keys (2 MB).
        let mut keys: HashSet<String> = HashSet::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let key_at = self.i;
            let key = self.string()?;
            if !keys.insert(key.clone()) {
                return Err(JsonError {
                    offset: key_at,
                    message: format!("duplicate key \"{key}\""),
                });
            }
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let v = self.value()?;
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self) -> Result<Value, JsonError> {
        self.i += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else if self.digits() == 0 {
            return Err(self.err("expected a digit"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("expected a digit in the exponent"));
            }
        }
        // The grammar above only admits ASCII, so this slice is valid UTF-8.
        Ok(Value::Number(
            String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
        ))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("truncated \\u escape"))?;
        let mut v = 0u32;
        for &c in h {
            let d = (c as char)
                .to_digit(16)
                .ok_or_else(|| self.err("bad hex digit in \\u escape"))?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // '"'
        let mut out = String::new();
        loop {
            // Copy the run of plain characters in one go; the input is already valid UTF-8, and
            // runs start and end at ASCII bytes, so each run is valid UTF-8 too.
            let start = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(
                std::str::from_utf8(&self.s[start..self.i])
                    .map_err(|_| self.err("invalid UTF-8"))?,
            );
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid escape"));
                        }
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` already consumed), joining surrogate pairs.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.s[self.i..].starts_with(b"\\u") {
                return Err(self.err("unpaired surrogate in \\u escape"));
            }
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err("unpaired surrogate in \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.err("unpaired surrogate in \\u escape"))
    }
}

/// Writes `s` as a JSON string literal (quotes included) onto `out`.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(members: &[(&str, Value)]) -> Value {
        Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn parses_nested_values_in_order() {
        let v = parse(r#" {"b": [1, -2.5e+3, true, null], "a": {"x": "y"}}   "#).unwrap();
        let want = obj(&[
            (
                "b",
                Value::Array(vec![
                    Value::Number("1".into()),
                    Value::Number("-2.5e+3".into()),
                    Value::Bool(true),
                    Value::Null,
                ]),
            ),
            ("a", obj(&[("x", Value::String("y".into()))])),
        ]);
        assert_eq!(v, want);
    }

    #[test]
    fn decodes_escapes_and_surrogate_pairs() {
        let v = parse(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z""#).unwrap();
        assert_eq!(
            v,
            Value::String("a\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}z".into())
        );
    }

    #[test]
    fn rejects_malformed_json_with_offsets() {
        let cases: &[(&str, usize, &str)] = &[
            ("{\"a\": 1,}", 8, "expected a string key"),
            ("{\"a\" 1}", 5, "expected ':'"),
            ("[1 2]", 3, "expected ',' or ']'"),
            ("{\"a\": 1} x", 9, "unexpected text"),
            ("\"abc", 4, "unterminated string"),
            ("\"a\u{1}\"", 2, "control character"),
            ("\"\\x\"", 2, "invalid escape"),
            ("\"\\ud800\"", 7, "unpaired surrogate"),
            ("\"\\udc00\"", 7, "unpaired surrogate"),
            ("01", 1, "unexpected text"),
            ("-", 1, "expected a digit"),
            ("1.", 2, "expected a digit after '.'"),
            ("1e", 2, "exponent"),
            ("tru", 0, "unexpected character"),
            ("", 0, "unexpected end"),
            ("{\"a\": 1, \"a\": 2}", 9, "duplicate key \"a\""),
        ];
        for &(text, offset, msg) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(msg), "{text:?}: got {e}");
            assert_eq!(e.offset, offset, "{text:?}: got {e}");
        }
    }

    #[test]
    fn finds_a_duplicate_among_many_keys_in_linear_time() {
        // Found by tests/fuzz.rs: 200,000 keys (2 MB of header) took minutes, each key compared
        // with every earlier one; a header may be 100 MB.
        let n = 200_000;
        let mut text = String::from("{");
        for i in 0..n {
            text.push_str(&format!("\"k{i}\":0,"));
        }
        let start = std::time::Instant::now();
        let Value::Object(members) = parse(&(text.clone() + "\"x\":0}")).unwrap() else {
            panic!("an object");
        };
        assert_eq!(members.len(), n + 1);
        assert_eq!(members[7].0, "k7"); // file order kept
        let e = parse(&(text + "\"k0\":1}")).unwrap_err();
        assert!(e.message.contains("duplicate key \"k0\""), "{e}");
        let t = start.elapsed();
        assert!(t.as_secs() < 10, "{t:?}");
    }

    #[test]
    fn caps_nesting_depth() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(100_000);
        assert!(
            parse(&deep)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
    }

    #[test]
    fn as_u64_accepts_only_plain_integers() {
        let n = |t: &str| Value::Number(t.into()).as_u64();
        assert_eq!(n("0"), Some(0));
        assert_eq!(n("18446744073709551615"), Some(u64::MAX));
        assert_eq!(n("18446744073709551616"), None);
        assert_eq!(n("-1"), None);
        assert_eq!(n("1.0"), None);
        assert_eq!(n("1e3"), None);
        assert_eq!(Value::String("1".into()).as_u64(), None);
    }

    #[test]
    fn write_string_round_trips() {
        for s in ["plain", "q\"b\\s", "ctl\u{1}\n\t", "é😀"] {
            let mut out = String::new();
            write_string(&mut out, s);
            assert_eq!(parse(&out).unwrap(), Value::String(s.into()));
        }
    }
}
