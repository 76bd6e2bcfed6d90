//! Deterministic mutation fuzzing of the header parser ([`header_length`], [`parse_header`],
//! [`Header::to_json`]) and the [`Converter`] on hostile bytes: each input gives `Ok` or `Err`,
//! never a panic (a trap in WebAssembly), never a hang. Failures name the seed and mutations.
//! `cargo test --release -p qvq-safetensors --test fuzz -- --ignored` runs many more cases.

use qvq_fuzz_support::{
    Rng, copy_span, delete, flip_bit, guarded, insert_piece, mutations, replace_number, report,
    set_byte, silence_panics, truncate,
};
use qvq_safetensors::{Converter, DType, Target, header_length, parse_header};
use std::time::Duration;

/// A valid header of three tensors and metadata, and the data length it describes.
fn valid_header() -> (String, u64) {
    let h = r#"{"__metadata__":{"format":"pt","note":"a \"q\" \u00e9"},"a.weight":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]},"c.bias":{"dtype":"I64","shape":[],"data_offsets":[28,36]},"e":{"dtype":"U8","shape":[0,5],"data_offsets":[36,36]}}"#;
    (h.to_string(), 36)
}

const NUMBERS: [&str; 16] = [
    "0",
    "1",
    "-1",
    "1.5",
    "1e3",
    "36",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "00",
    "-0",
    "1E400",
    "12",
];

const JUNK: [&str; 16] = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u",
    "\\ud800",
    "\\udc00\\ud800",
    "null",
    "true",
    "\u{0}",
    "\u{ffff}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

/// One mutation of the header text (as bytes: it may stop being UTF-8).
fn mutate(b: &mut Vec<u8>, rng: &mut Rng) -> String {
    if b.is_empty() {
        b.push(b'{');
        return "push".into();
    }
    match rng.below(9) {
        0 => {
            let i = rng.below(b.len());
            flip_bit(b, i, rng)
        }
        1 => truncate(b, rng),
        // Replace a number with an extreme one.
        2 | 3 => replace_number(b, rng, &NUMBERS),
        4 => insert_piece(b, rng, &JUNK),
        // Duplicate a span (a tensor entry, a key, an array item...).
        5 => copy_span(b, rng, 80),
        6 => delete(b, rng, 20),
        7 => {
            let i = rng.below(b.len());
            let v = *rng.pick(&[0x00, 0xff, 0x80, 0xc3, 0xed, 0xf4, b'"', b'\\', b'\n']);
            set_byte(b, i, v)
        }
        _ => {
            // Swap a dtype for another (or an unknown one).
            let dtypes = [
                "BF16", "F32", "I64", "U8", "BOOL", "F8_E4M3", "F64", "bf16", "",
            ];
            let Ok(text) = String::from_utf8(b.clone()) else {
                return "not UTF-8".into();
            };
            let Some(i) = text.find("\"dtype\":\"") else {
                return "no dtype".into();
            };
            let s = i + 9;
            let Some(len) = text[s..].find('"') else {
                return "no dtype".into();
            };
            let d = *rng.pick(&dtypes);
            *b = [&b[..s], d.as_bytes(), &b[s + len..]].concat();
            format!("dtype at {s} = {d}")
        }
    }
}

const CASE_LIMIT: Duration = Duration::from_secs(2);

fn check(what: &str, f: impl FnOnce()) -> Result<(), String> {
    guarded(CASE_LIMIT, f).map_err(|why| format!("{what} {why}"))?;
    Ok(())
}

fn fuzz_headers(first: u64, cases: u64) {
    silence_panics();
    let (valid, data_len) = valid_header();
    let mut failures = Vec::new();
    for s in first..first + cases {
        let mut rng = Rng::new(s);
        let mut b = valid.clone().into_bytes();
        let steps = mutations(&mut b, &mut rng, 4, mutate);
        let natural = 8 + b.len() as u64 + data_len;
        let random = rng.next();
        let file_size = *rng.pick(&[
            natural,
            natural,
            natural - 1,
            natural + 1,
            0,
            7,
            8 + b.len() as u64,
            u64::MAX,
            random,
        ]);
        let r = check("parse_header", || {
            if let Ok(h) = parse_header(&b, file_size) {
                let _ = h.to_json();
            }
        })
        .and_then(|()| {
            let mut prefix = (b.len() as u64).to_le_bytes().to_vec();
            if rng.below(2) == 0 {
                prefix = rng.next().to_le_bytes().to_vec();
            }
            prefix.truncate(rng.below(12));
            check("header_length", || {
                let _ = header_length(&prefix, file_size);
            })
        });
        if let Err(why) = r {
            let text = String::from_utf8_lossy(&b);
            failures.push(format!(
                "seed {s} [{}], file size {file_size}: {why}\n  header: {text}",
                steps.join("; ")
            ));
        }
    }
    report(&failures);
}

#[test]
fn mutated_headers_give_errors_not_panics() {
    fuzz_headers(0, 20_000);
}

#[test]
#[ignore = "a minute: cargo test --release -p qvq-safetensors --test fuzz -- --ignored"]
fn mutated_headers_give_errors_not_panics_long() {
    fuzz_headers(1_000_000, 3_000_000);
}

#[test]
fn hostile_headers_are_refused_quickly() {
    silence_panics();
    let mut failures = Vec::new();
    let many_keys = |n: usize| {
        let mut h = String::from("{");
        for i in 0..n {
            h.push_str(&format!("\"{i}\":0,"));
        }
        h.push_str("\"x\":0}");
        h
    };
    let cases: Vec<(&str, String)> = vec![
        ("deep arrays", "[".repeat(1 << 20)),
        ("deep objects", "{\"a\":".repeat(1 << 18)),
        ("long string", format!("{{\"{}\":1}}", "a".repeat(1 << 22))),
        // Duplicate keys are refused; finding them must not cost n^2 comparisons.
        ("many keys", many_keys(200_000)),
        (
            "many metadata keys",
            format!("{{\"__metadata__\":{}}}", many_keys(200_000).replace(":0", ":\"v\"")),
        ),
        (
            "huge shape",
            r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}"#
                .into(),
        ),
        (
            "offsets past u64",
            r#"{"t":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,18446744073709551616]}}"#
                .into(),
        ),
    ];
    for (name, h) in cases {
        if let Err(why) = check(name, || {
            let _ = parse_header(h.as_bytes(), u64::MAX);
        }) {
            failures.push(why);
        }
    }
    report(&failures);
}

#[test]
fn converter_takes_any_bytes() {
    silence_panics();
    let dtypes = [
        DType::Bool,
        DType::U8,
        DType::F8E4M3,
        DType::I16,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::F32,
        DType::F64,
        DType::I64,
    ];
    let targets = [Target::F16, Target::F32, Target::I32];
    let mut failures = Vec::new();
    let mut c = Converter::new();
    for s in 0..20_000u64 {
        let mut rng = Rng::new(s);
        let (from, to) = (*rng.pick(&dtypes), *rng.pick(&targets));
        let n = rng.below(40);
        let src: Vec<u8> = (0..n)
            .map(|_| {
                let random = rng.next() as u8;
                *rng.pick(&[0, 0xff, 0x7f, 0x80, random])
            })
            .collect();
        let mut src = src;
        if rng.below(4) == 0 && src.len() >= 16 {
            src[..8].copy_from_slice(&7i64.to_le_bytes());
            src[8..16].copy_from_slice(&(1i64 << 40).to_le_bytes()); // out of i32's range
        }
        let random = rng.next();
        let first = *rng.pick(&[0, 1, u64::MAX, u64::MAX - 3, 1 << 53, random]);
        if let Err(why) = check("convert", || {
            let _ = c.convert(from, to, &src, first);
        }) {
            failures.push(format!(
                "seed {s}: {from:?} → {to:?}, {n} bytes, first {first}: {why}"
            ));
        }
    }
    report(&failures);
}
