//! The safetensors header: parsing and validation.
//!
//! File layout: `u64` little-endian header length `n`, then `n` bytes of UTF-8 JSON, then the data
//! buffer. The JSON maps tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}`
//! (offsets relative to the data buffer) plus an optional `"__metadata__"` string→string map.
//! A valid file's tensors tile the data buffer exactly: sorted by offset they start at 0, each
//! begins where the previous ends, and the last ends at the end of the file. Each check below
//! names the tensor at fault, so a caller can report "file X, tensor Y: what is wrong".

use crate::dtype::DType;
use crate::json::{self, Value};
use std::fmt;

/// Largest header accepted, as in the reference implementation (huggingface/safetensors): a
/// length beyond this is a damaged file or not a safetensors file, not a real header.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Bytes before the JSON: the little-endian u64 header length.
pub const LENGTH_PREFIX_BYTES: u64 = 8;

/// The kind of a header problem (the message carries the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Fewer than 8 bytes, or the header length runs past the end of the file.
    Truncated,
    /// The header length exceeds [`MAX_HEADER_BYTES`].
    HeaderTooLarge,
    /// The header is not UTF-8.
    InvalidUtf8,
    /// The header is not JSON, or not the expected JSON shape (object of tensor entries).
    InvalidJson,
    /// A tensor entry lacks a field, has a wrongly typed one, or an unexpected one.
    BadEntry,
    /// `__metadata__` is not a string→string object.
    BadMetadata,
    /// A dtype the safetensors format does not define.
    UnknownDType,
    /// `shape` × dtype size differs from `end - begin`.
    SizeMismatch,
    /// `data_offsets` reversed or past the end of the data buffer.
    OffsetsOutOfRange,
    /// Two tensors share bytes.
    Overlap,
    /// Bytes between tensors (or before the first) that no tensor owns.
    Gap,
    /// Bytes after the last tensor.
    TrailingBytes,
}

/// A header problem, with the tensor at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError {
    pub kind: ErrorKind,
    pub tensor: Option<String>,
    pub message: String,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HeaderError {}

fn fail<T>(kind: ErrorKind, tensor: Option<&str>, message: String) -> Result<T, HeaderError> {
    Err(HeaderError {
        kind,
        tensor: tensor.map(str::to_string),
        message,
    })
}

/// One tensor of a validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Byte range in the data buffer, `begin..end`.
    pub begin: u64,
    pub end: u64,
}

/// A validated header: tensors in data-buffer order, metadata in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub tensors: Vec<TensorEntry>,
    pub metadata: Vec<(String, String)>,
    /// Absolute file offset of the data buffer (8 + header length).
    pub data_start: u64,
}

/// Reads the header length from a file's first 8 bytes and checks it against the file size.
/// Returns the header's byte length (the JSON starts at byte 8).
pub fn header_length(prefix: &[u8], file_size: u64) -> Result<u64, HeaderError> {
    if file_size < LENGTH_PREFIX_BYTES || prefix.len() < 8 {
        return fail(
            ErrorKind::Truncated,
            None,
            format!("the file is {file_size} bytes long, too short for the 8-byte header length"),
        );
    }
    let n = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return fail(
            ErrorKind::HeaderTooLarge,
            None,
            format!("the header length {n} bytes exceeds the {MAX_HEADER_BYTES}-byte limit"),
        );
    }
    if n > file_size - LENGTH_PREFIX_BYTES {
        return fail(
            ErrorKind::Truncated,
            None,
            format!(
                "the header length {n} bytes runs past the end of the file ({file_size} bytes): the file is truncated"
            ),
        );
    }
    Ok(n)
}

/// Parses and validates the header JSON (the `n` bytes after the length prefix) of a file of
/// `file_size` bytes.
pub fn parse_header(json_bytes: &[u8], file_size: u64) -> Result<Header, HeaderError> {
    let n = json_bytes.len() as u64;
    let data_start = LENGTH_PREFIX_BYTES + n;
    if data_start > file_size {
        return fail(
            ErrorKind::Truncated,
            None,
            format!("the header ({n} bytes) runs past the end of the file ({file_size} bytes)"),
        );
    }
    let text = std::str::from_utf8(json_bytes).or_else(|e| {
        fail(
            ErrorKind::InvalidUtf8,
            None,
            format!("the header is not valid UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    let root = json::parse(text).or_else(|e| {
        fail(
            ErrorKind::InvalidJson,
            None,
            format!("the header is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(members) = root else {
        return fail(
            ErrorKind::InvalidJson,
            None,
            format!("the header is {}, not a JSON object", root.kind()),
        );
    };
    let mut metadata = Vec::new();
    let mut tensors = Vec::new();
    for (name, v) in members {
        if name == "__metadata__" {
            metadata = parse_metadata(v)?;
        } else {
            tensors.push(parse_entry(name, v)?);
        }
    }
    check_tiling(&mut tensors, file_size - data_start)?;
    Ok(Header {
        tensors,
        metadata,
        data_start,
    })
}

fn parse_metadata(v: Value) -> Result<Vec<(String, String)>, HeaderError> {
    let Value::Object(members) = v else {
        return fail(
            ErrorKind::BadMetadata,
            None,
            format!("__metadata__ is {}, not an object of strings", v.kind()),
        );
    };
    members
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => fail(
                ErrorKind::BadMetadata,
                None,
                format!(
                    "__metadata__ key \"{k}\" is {}, but metadata values must be strings",
                    other.kind()
                ),
            ),
        })
        .collect()
}

fn parse_entry(name: String, v: Value) -> Result<TensorEntry, HeaderError> {
    let bad = |msg: String| {
        fail(
            ErrorKind::BadEntry,
            Some(&name),
            format!("tensor '{name}': {msg}"),
        )
    };
    let Value::Object(fields) = v else {
        return bad(format!(
            "the entry is {}, not an object with dtype, shape and data_offsets",
            v.kind()
        ));
    };
    let (mut dtype, mut shape, mut offsets) = (None, None, None);
    for (key, v) in fields {
        match key.as_str() {
            "dtype" => dtype = Some(v),
            "shape" => shape = Some(v),
            "data_offsets" => offsets = Some(v),
            _ => {
                return bad(format!(
                    "unexpected field \"{key}\" (expected dtype, shape, data_offsets)"
                ));
            }
        }
    }
    let dtype = match dtype {
        None => return bad("missing field \"dtype\"".into()),
        Some(Value::String(s)) => match DType::from_name(&s) {
            Some(d) => d,
            None => {
                return fail(
                    ErrorKind::UnknownDType,
                    Some(&name),
                    format!(
                        "tensor '{name}' has unknown dtype \"{s}\" (the safetensors format defines {})",
                        DType::ALL_NAMES
                    ),
                );
            }
        },
        Some(other) => return bad(format!("dtype is {}, not a string", other.kind())),
    };
    let shape = match u64_array(shape) {
        Some(s) => s,
        None => return bad("\"shape\" must be an array of non-negative integers".into()),
    };
    let (begin, end) = match u64_array(offsets).as_deref() {
        Some(&[b, e]) => (b, e),
        _ => {
            return bad(
                "\"data_offsets\" must be an array of two non-negative integers [begin, end]"
                    .into(),
            );
        }
    };
    if begin > end {
        return fail(
            ErrorKind::OffsetsOutOfRange,
            Some(&name),
            format!("tensor '{name}' has data_offsets [{begin}, {end}]: begin is after end"),
        );
    }
    // A dimension of 0 makes an empty tensor whatever the others are (the reference takes
    // [0, 2^64 - 1] and [2^64 - 1, 0] alike); else the product, which must fit 2^64 bytes.
    let expected = if shape.contains(&0) {
        Some(0)
    } else {
        shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d))
    };
    if expected != Some(end - begin) {
        let want = expected.map_or("more than 2^64".to_string(), |b| b.to_string());
        return fail(
            ErrorKind::SizeMismatch,
            Some(&name),
            format!(
                "tensor '{name}' has shape {shape:?} of {} ({want} bytes) but data_offsets [{begin}, {end}] hold {} bytes",
                dtype.name(),
                end - begin
            ),
        );
    }
    Ok(TensorEntry {
        name,
        dtype,
        shape,
        begin,
        end,
    })
}

fn u64_array(v: Option<Value>) -> Option<Vec<u64>> {
    match v? {
        Value::Array(items) => items.iter().map(Value::as_u64).collect(),
        _ => None,
    }
}

/// Sorts `tensors` by offset and checks they tile `0..data_len` exactly.
fn check_tiling(tensors: &mut [TensorEntry], data_len: u64) -> Result<(), HeaderError> {
    tensors.sort_by_key(|t| (t.begin, t.end));
    let mut covered = 0u64; // end of the bytes owned so far
    let mut prev: Option<&TensorEntry> = None;
    for t in tensors.iter() {
        if t.end > data_len {
            return fail(
                ErrorKind::OffsetsOutOfRange,
                Some(&t.name),
                format!(
                    "tensor '{}' has data_offsets [{}, {}] past the end of the {data_len}-byte data buffer: the file is truncated or the header is wrong",
                    t.name, t.begin, t.end
                ),
            );
        }
        if t.begin < covered {
            let p = prev.expect("covered > 0 implies a previous tensor");
            return fail(
                ErrorKind::Overlap,
                Some(&t.name),
                format!(
                    "tensor '{}' (bytes {}..{}) overlaps tensor '{}' (bytes {}..{})",
                    t.name, t.begin, t.end, p.name, p.begin, p.end
                ),
            );
        }
        if t.begin > covered {
            let after = prev.map_or("the start of the data buffer".to_string(), |p| {
                format!("tensor '{}'", p.name)
            });
            return fail(
                ErrorKind::Gap,
                Some(&t.name),
                format!(
                    "{} unused bytes ({covered}..{}) between {after} and tensor '{}'",
                    t.begin - covered,
                    t.begin,
                    t.name
                ),
            );
        }
        covered = t.end;
        prev = Some(t);
    }
    if covered != data_len {
        let after = prev.map_or("the header (there are no tensors)".to_string(), |p| {
            format!("the last tensor '{}'", p.name)
        });
        return fail(
            ErrorKind::TrailingBytes,
            prev.map(|p| p.name.as_str()),
            format!(
                "{} bytes follow {after} at the end of the file",
                data_len - covered
            ),
        );
    }
    Ok(())
}

impl Header {
    /// The header as canonical JSON for JavaScript:
    /// `{"dataStart":N,"metadata":{..},"tensors":[{"name","dtype","shape","begin","end"},..]}`
    /// with tensors in data-buffer order and offsets relative to the data buffer.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"dataStart\":{},\"metadata\":{{", self.data_start);
        for (i, (k, v)) in self.metadata.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::write_string(&mut out, k);
            out.push(':');
            json::write_string(&mut out, v);
        }
        out.push_str("},\"tensors\":[");
        for (i, t) in self.tensors.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            json::write_string(&mut out, &t.name);
            let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
            out.push_str(&format!(
                ",\"dtype\":\"{}\",\"shape\":[{}],\"begin\":{},\"end\":{}}}",
                t.dtype.name(),
                shape.join(","),
                t.begin,
                t.end
            ));
        }
        out.push_str("]}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole file: length prefix + header JSON + `data_len` zero bytes.
    fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut f = (json.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(json.as_bytes());
        f.resize(f.len() + data_len, 0);
        f
    }

    /// Parses a whole file the way a reader does: length first, then the JSON.
    fn parse_file(f: &[u8]) -> Result<Header, HeaderError> {
        let n = header_length(&f[..f.len().min(8)], f.len() as u64)?;
        parse_header(&f[8..8 + n as usize], f.len() as u64)
    }

    fn err(json: &str, data_len: usize) -> HeaderError {
        parse_file(&file(json, data_len)).unwrap_err()
    }

    fn assert_err(e: &HeaderError, kind: ErrorKind, tensor: Option<&str>, parts: &[&str]) {
        assert_eq!(e.kind, kind, "{e}");
        assert_eq!(e.tensor.as_deref(), tensor, "{e}");
        for p in parts {
            assert!(e.message.contains(p), "message {:?} lacks {p:?}", e.message);
        }
    }

    const TWO: &str = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}  "#;

    #[test]
    fn parses_a_valid_header_in_offset_order() {
        let f = file(TWO, 12);
        let h = parse_file(&f).unwrap();
        assert_eq!(h.data_start, 8 + TWO.len() as u64);
        assert_eq!(h.metadata, vec![("format".to_string(), "pt".to_string())]);
        let names: Vec<_> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            h.tensors[1],
            TensorEntry {
                name: "b".into(),
                dtype: DType::F32,
                shape: vec![2],
                begin: 4,
                end: 12
            }
        );
    }

    #[test]
    fn to_json_is_canonical() {
        let h = parse_file(&file(TWO, 12)).unwrap();
        let want = format!(
            r#"{{"dataStart":{},"metadata":{{"format":"pt"}},"tensors":[{{"name":"a","dtype":"BF16","shape":[2],"begin":0,"end":4}},{{"name":"b","dtype":"F32","shape":[2],"begin":4,"end":12}}]}}"#,
            8 + TWO.len()
        );
        assert_eq!(h.to_json(), want);
        assert!(json::parse(&h.to_json()).is_ok());
    }

    #[test]
    fn accepts_scalars_zero_sized_tensors_and_an_empty_header() {
        let j = r#"{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"F16","shape":[0,5],"data_offsets":[8,8]},"y":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}"#;
        let h = parse_file(&file(j, 11)).unwrap();
        assert_eq!(
            h.tensors
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["s", "z", "y"]
        );
        assert!(parse_file(&file("{}", 0)).unwrap().tensors.is_empty());
        // A zero dimension makes it empty whatever the others, in either order.
        for shape in ["[0,18446744073709551615]", "[18446744073709551615,0]"] {
            let j = format!(r#"{{"z":{{"dtype":"F32","shape":{shape},"data_offsets":[0,0]}}}}"#);
            assert!(parse_file(&file(&j, 0)).is_ok(), "{shape}");
        }
    }

    #[test]
    fn rejects_a_file_shorter_than_the_length_prefix() {
        let e = header_length(&[1, 0, 0], 3).unwrap_err();
        assert_err(&e, ErrorKind::Truncated, None, &["3 bytes", "too short"]);
    }

    #[test]
    fn rejects_a_header_length_past_the_end_of_the_file() {
        let mut f = file(TWO, 12);
        f.truncate(8 + 20);
        let e = parse_file(&f).unwrap_err();
        assert_err(
            &e,
            ErrorKind::Truncated,
            None,
            &[
                &format!("header length {}", TWO.len()),
                "28 bytes",
                "truncated",
            ],
        );
    }

    #[test]
    fn rejects_a_header_over_100_mb() {
        let prefix = (MAX_HEADER_BYTES + 1).to_le_bytes();
        let e = header_length(&prefix, 1 << 40).unwrap_err();
        assert_err(&e, ErrorKind::HeaderTooLarge, None, &["100000001", "limit"]);
        assert_eq!(
            header_length(&MAX_HEADER_BYTES.to_le_bytes(), 1 << 40),
            Ok(MAX_HEADER_BYTES)
        );
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut f = file(
            r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#,
            0,
        );
        f[8 + 2] = 0xFF; // the 'a' of the first name, JSON byte 2
        let e = parse_file(&f).unwrap_err();
        assert_err(&e, ErrorKind::InvalidUtf8, None, &["UTF-8", "byte 2"]);
    }

    #[test]
    fn rejects_invalid_json() {
        assert_err(
            &err(r#"{"a": {"dtype": "F32",}}"#, 0),
            ErrorKind::InvalidJson,
            None,
            &["not valid JSON", "byte 22"],
        );
        assert_err(
            &err("[1, 2]", 0),
            ErrorKind::InvalidJson,
            None,
            &["an array, not a JSON object"],
        );
        assert_err(
            &err(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
            ),
            ErrorKind::InvalidJson,
            None,
            &["duplicate key \"a\""],
        );
    }

    #[test]
    fn rejects_malformed_entries_naming_the_tensor() {
        let cases: &[(&str, &str)] = &[
            (r#"{"w":[1]}"#, "an array, not an object"),
            (
                r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#,
                "missing field \"dtype\"",
            ),
            (
                r#"{"w":{"dtype":3,"shape":[1],"data_offsets":[0,4]}}"#,
                "dtype is a number",
            ),
            (
                r#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#,
                "\"shape\" must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                "\"shape\" must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}"#,
                "\"shape\" must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
                "\"data_offsets\" must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#,
                "\"data_offsets\" must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#,
                "unexpected field \"x\"",
            ),
        ];
        for (j, part) in cases {
            assert_err(
                &err(j, 4),
                ErrorKind::BadEntry,
                Some("w"),
                &["tensor 'w'", part],
            );
        }
    }

    #[test]
    fn rejects_bad_metadata() {
        let e = err(r#"{"__metadata__":{"n":1}}"#, 0);
        assert_err(
            &e,
            ErrorKind::BadMetadata,
            None,
            &["\"n\"", "a number", "must be strings"],
        );
        let e = err(r#"{"__metadata__":"x"}"#, 0);
        assert_err(
            &e,
            ErrorKind::BadMetadata,
            None,
            &["a string, not an object"],
        );
    }

    #[test]
    fn rejects_an_unknown_dtype() {
        let e = err(
            r#"{"w":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        );
        assert_err(
            &e,
            ErrorKind::UnknownDType,
            Some("w"),
            &["tensor 'w'", "\"Q4_K\"", "BF16"],
        );
    }

    #[test]
    fn rejects_shape_times_dtype_size_not_matching_the_byte_length() {
        let e = err(
            r#"{"w":{"dtype":"BF16","shape":[3,4],"data_offsets":[0,48]}}"#,
            48,
        );
        assert_err(
            &e,
            ErrorKind::SizeMismatch,
            Some("w"),
            &[
                "tensor 'w'",
                "[3, 4]",
                "BF16",
                "24 bytes",
                "[0, 48]",
                "48 bytes",
            ],
        );
        let e = err(
            r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
            4,
        );
        assert_err(&e, ErrorKind::SizeMismatch, Some("w"), &["more than 2^64"]);
    }

    #[test]
    fn rejects_offsets_out_of_range() {
        let e = err(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            6,
        );
        assert_err(
            &e,
            ErrorKind::OffsetsOutOfRange,
            Some("w"),
            &["tensor 'w'", "[0, 8]", "6-byte data buffer"],
        );
        let e = err(
            r#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#,
            8,
        );
        assert_err(
            &e,
            ErrorKind::OffsetsOutOfRange,
            Some("w"),
            &["begin is after end"],
        );
    }

    #[test]
    fn rejects_overlapping_tensors() {
        let e = err(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
        );
        assert_err(
            &e,
            ErrorKind::Overlap,
            Some("b"),
            &["tensor 'b' (bytes 4..12) overlaps tensor 'a' (bytes 0..8)"],
        );
    }

    #[test]
    fn rejects_gaps_between_or_before_tensors() {
        let e = err(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
            12,
        );
        assert_err(
            &e,
            ErrorKind::Gap,
            Some("b"),
            &["4 unused bytes (4..8) between tensor 'a' and tensor 'b'"],
        );
        let e = err(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
        );
        assert_err(
            &e,
            ErrorKind::Gap,
            Some("a"),
            &["4 unused bytes (0..4) between the start of the data buffer and tensor 'a'"],
        );
    }

    #[test]
    fn rejects_bytes_after_the_last_tensor() {
        let e = err(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            7,
        );
        assert_err(
            &e,
            ErrorKind::TrailingBytes,
            Some("a"),
            &["3 bytes follow the last tensor 'a'"],
        );
        let e = err("{}", 2);
        assert_err(
            &e,
            ErrorKind::TrailingBytes,
            None,
            &["2 bytes follow the header (there are no tensors)"],
        );
    }
}
