//! Deterministic mutation fuzzing of the header parser ([`header_length`], [`parse_header`],
//! [`Header::to_json`]) and the [`Converter`] on hostile bytes: each input gives `Ok` or `Err`,
//! never a panic (a trap in WebAssembly), never a hang. Failures name the seed and mutations.
//! `cargo test --release -p qvq-safetensors --test fuzz -- --ignored` runs many more cases.

use qvq_safetensors::{Converter, DType, Target, header_length, parse_header};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

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
            let bit = rng.below(8);
            b[i] ^= 1 << bit;
            format!("flip bit {bit} of byte {i}")
        }
        1 => {
            let at = rng.below(b.len());
            b.truncate(at);
            format!("truncate at {at}")
        }
        2 | 3 => {
            // Replace a number with an extreme one.
            let starts: Vec<usize> = (0..b.len())
                .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
                .collect();
            if starts.is_empty() {
                return "no number".into();
            }
            let s = *rng.pick(&starts);
            let mut e = s;
            while e < b.len() && b[e].is_ascii_digit() {
                e += 1;
            }
            let n = *rng.pick(&NUMBERS);
            b.splice(s..e, n.bytes());
            format!("number at {s} = {n}")
        }
        4 => {
            let i = rng.below(b.len() + 1);
            let j = *rng.pick(&JUNK);
            b.splice(i..i, j.bytes());
            format!("insert {j:?} at {i}")
        }
        5 => {
            // Duplicate a span (a tensor entry, a key, an array item...).
            let i = rng.below(b.len());
            let n = (1 + rng.below(80)).min(b.len() - i);
            let copy = b[i..i + n].to_vec();
            let at = rng.below(b.len() + 1);
            b.splice(at..at, copy);
            format!("copy {n} bytes at {i} to {at}")
        }
        6 => {
            let i = rng.below(b.len());
            let n = (1 + rng.below(20)).min(b.len() - i);
            b.drain(i..i + n);
            format!("delete {n} bytes at {i}")
        }
        7 => {
            let i = rng.below(b.len());
            let v = *rng.pick(&[0x00, 0xff, 0x80, 0xc3, 0xed, 0xf4, b'"', b'\\', b'\n']);
            b[i] = v;
            format!("byte {i} = {v:#04x}")
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

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn check(what: &str, f: impl FnOnce()) -> Result<(), String> {
    let start = Instant::now();
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| format!("{what} panicked: {}", panic_message(p)))?;
    let t = start.elapsed();
    if t > CASE_LIMIT {
        return Err(format!("{what} took {t:?}"));
    }
    Ok(())
}

fn report(failures: &[String]) {
    let _ = std::panic::take_hook();
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

fn fuzz_headers(first: u64, cases: u64) {
    std::panic::set_hook(Box::new(|_| {}));
    let (valid, data_len) = valid_header();
    let mut failures = Vec::new();
    for s in first..first + cases {
        let mut rng = Rng::new(s);
        let mut b = valid.clone().into_bytes();
        let mut steps = Vec::new();
        for _ in 0..1 + rng.below(4) {
            steps.push(mutate(&mut b, &mut rng));
        }
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
    std::panic::set_hook(Box::new(|_| {}));
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
    std::panic::set_hook(Box::new(|_| {}));
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
