//! Deterministic mutation fuzzing of the tokenizer's public entry points on hostile input:
//! [`Tokenizer::from_json`] and [`Tokenizer::add_tokens_decoder`] on mutated JSON (bytes, so
//! also invalid UTF-8), then `encode`, `decode` and the [`StreamDecoder`] on arbitrary text and
//! ids. Each must give `Ok` or `Err`, never a panic (a trap in WebAssembly), a hang or an
//! allocation far beyond the input's size. Failures name the seed and mutations.
//! `cargo test --release -p qvq-tokenizer --test fuzz -- --ignored` runs many more cases.

use qvq_fuzz_support::{
    Rng, copy_span, delete, flip_bit, guarded, insert_piece, mutations, replace_number, report,
    set_byte, silence_panics, truncate,
};
use qvq_tokenizer::{StreamDecoder, Tokenizer};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

qvq_fuzz_support::counting_allocator!();

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures")
}

fn full_json() -> &'static Value {
    static JSON: OnceLock<Value> = OnceLock::new();
    JSON.get_or_init(|| {
        let bytes = std::fs::read(fixtures().join("tiny-qwen2vl/tokenizer.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    })
}

fn real_tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let bytes = std::fs::read(fixtures().join("tiny-qwen2vl/tokenizer.json")).unwrap();
        Tokenizer::from_json(&bytes).unwrap()
    })
}

/// The Qwen2 tokenizer.json cut down to its first 400 tokens and the merges among them, plus
/// added tokens of every flag: small enough to mutate and load thousands of times.
fn small_json() -> String {
    let mut t = full_json().clone();
    let vocab = t["model"]["vocab"].as_object().unwrap();
    let kept: serde_json::Map<String, Value> = vocab
        .iter()
        .filter(|(_, id)| id.as_u64().unwrap() < 400)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let merges: Vec<Value> = t["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            let (a, b) = (m[0].as_str().unwrap(), m[1].as_str().unwrap());
            kept.contains_key(a) && kept.contains_key(b) && kept.contains_key(&format!("{a}{b}"))
        })
        .cloned()
        .collect();
    t["model"]["vocab"] = Value::Object(kept);
    t["model"]["merges"] = Value::Array(merges);
    let added = |id: u32, content: &str, flags: [bool; 5]| {
        json!({"id": id, "content": content, "single_word": flags[0], "lstrip": flags[1],
               "rstrip": flags[2], "normalized": flags[3], "special": flags[4]})
    };
    t["added_tokens"] = json!([
        added(400, "<|endoftext|>", [false, false, false, false, true]),
        added(401, "<|im_start|>", [false, false, false, false, true]),
        added(402, " word", [true, true, true, true, false]),
        added(403, "é", [false, false, false, true, false]),
    ]);
    serde_json::to_string(&t).unwrap()
}

const NUMBERS: [&str; 14] = [
    "0",
    "1",
    "-1",
    "1.5",
    "255",
    "399",
    "400",
    "65535",
    "2147483647",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "1e9",
    "100000000",
];

const JUNK: [&str; 18] = [
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
    "null",
    "true",
    " ",
    "\"a\":1,",
    "[\"a\",\"b\"],",
    "\"Ġ Ġ\",",
    "\u{0}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

/// One mutation of JSON bytes (they may stop being UTF-8, or JSON).
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
        2..=4 => replace_number(b, rng, &NUMBERS),
        5 => insert_piece(b, rng, &JUNK),
        6 => copy_span(b, rng, 60),
        7 => delete(b, rng, 30),
        _ => {
            let i = rng.below(b.len());
            let v = *rng.pick(&[0x00, 0xff, 0x80, 0xc3, 0xed, b'"', b'\\', b' ', b'0']);
            set_byte(b, i, v)
        }
    }
}

/// Pieces of text that exercise every stage (added tokens, NFC, the pre-tokenizer's classes).
const PIECES: [&str; 24] = [
    "a",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\t",
    "'s",
    "'LL",
    "7",
    "123",
    "é",
    "e\u{301}",
    "\u{301}",
    "中文",
    "🙂",
    "\u{200d}",
    "<|im_start|>",
    "<|im_",
    "<|endoftext|>",
    " word",
    "word ",
    "!!",
    "\u{ffff}",
    "\u{10ffff}",
];

fn random_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(24) {
        if rng.below(4) == 0 {
            s.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'));
        } else {
            let piece: &&str = rng.pick(&PIECES);
            s.push_str(piece);
        }
    }
    s
}

fn random_ids(rng: &mut Rng, vocab: u32) -> Vec<u32> {
    (0..rng.below(12))
        .map(|_| match rng.below(6) {
            0 => u32::MAX,
            1 => vocab,
            2 => rng.next() as u32,
            _ => rng.below(vocab.max(1) as usize) as u32,
        })
        .collect()
}

/// Encodes, decodes and stream-decodes random input with `t`.
fn exercise(t: &Tokenizer, rng: &mut Rng) {
    let vocab = t.vocab_size();
    for _ in 0..3 {
        let ids = t.encode(&random_text(rng));
        let _ = t.decode(&ids, rng.below(2) == 0);
        let ids = random_ids(rng, vocab);
        let _ = t.decode(&ids, rng.below(2) == 0);
        let _ = t.decode_bytes(&ids, false);
        let mut s = StreamDecoder::new(rng.below(2) == 0);
        for id in ids {
            let _ = s.push(t, id);
        }
        let _ = s.flush();
        let _ = t.id_to_token(rng.next() as u32);
        let _ = t.token_to_id(&random_text(rng));
    }
}

const CASE_LIMIT: Duration = Duration::from_secs(3);

/// Runs `f`; Err(why) on a panic, a hang, or an allocation past `max_alloc` bytes.
fn check(max_alloc: usize, f: impl FnOnce()) -> Result<(), String> {
    let ((), largest) = guarded(CASE_LIMIT, f)?;
    if largest > max_alloc {
        return Err(format!("allocated {largest} bytes at once"));
    }
    Ok(())
}

/// A loaded tokenizer's tables: a few dozen bytes a token at most, whatever its ids, over the
/// fixed 6 MiB the loader reserves for a Qwen2-sized merge list (2^17 entries).
fn load_limit(json_len: usize) -> usize {
    (16 << 20).max(json_len * 64)
}

fn fuzz_loading(first: u64, cases: u64) {
    silence_panics();
    let valid = small_json();
    let decoder_json = br#"{"400": {"content": "<|endoftext|>", "special": true}, "404": {"content": "<x>", "lstrip": true, "normalized": true}}"#;
    let mut failures = Vec::new();
    for s in first..first + cases {
        let mut rng = Rng::new(s);
        let mut b = valid.clone().into_bytes();
        let mut steps = mutations(&mut b, &mut rng, 3, mutate);
        let mut extra = decoder_json.to_vec();
        if rng.below(2) == 0 {
            steps.push(format!(
                "added_tokens_decoder: {}",
                mutate(&mut extra, &mut rng)
            ));
        }
        let r = check(load_limit(b.len() + extra.len()), || {
            if let Ok(mut t) = Tokenizer::from_json(&b) {
                let _ = t.add_tokens_decoder(&extra);
                exercise(&t, &mut rng);
            }
        });
        if let Err(why) = r {
            failures.push(format!("seed {s} [{}]: {why}", steps.join("; ")));
        }
    }
    report(&failures);
}

#[test]
fn mutated_tokenizer_json_gives_errors_not_panics() {
    fuzz_loading(0, 1_500);
}

#[test]
#[ignore = "minutes: cargo test --release -p qvq-tokenizer --test fuzz -- --ignored"]
fn mutated_tokenizer_json_gives_errors_not_panics_long() {
    fuzz_loading(1_000_000, 200_000);
}

#[test]
fn loading_refuses_hostile_ids_without_huge_tables() {
    silence_panics();
    let valid = small_json();
    let mut failures = Vec::new();
    for id in [
        "4294967295",
        "4294967294",
        "2147483648",
        "100000000",
        "16777216",
    ] {
        // A vocab entry, then an added token, with an id far past the file's other ids.
        let entry = valid.replacen("\"!\":0", &format!("\"!\":{id}"), 1);
        assert_ne!(entry, valid);
        let r = check(load_limit(entry.len()), || {
            if let Ok(t) = Tokenizer::from_json(entry.as_bytes()) {
                let _ = t.decode(&[0, 5, u32::MAX], false);
            }
        });
        if let Err(why) = r {
            failures.push(format!("vocab id {id}: {why}"));
        }
        let decoder = format!(r#"{{"{id}": {{"content": "<x>", "special": true}}}}"#);
        let r = check(load_limit(valid.len()), || {
            let mut t = Tokenizer::from_json(valid.as_bytes()).unwrap();
            if t.add_tokens_decoder(decoder.as_bytes()).is_ok() {
                let _ = t.decode(&[0, 5, u32::MAX], false);
            }
        });
        if let Err(why) = r {
            failures.push(format!("added_tokens_decoder id {id}: {why}"));
        }
    }
    // An empty vocab (no tokens at all): decoding any id is an error.
    let mut t: Value = serde_json::from_str(&valid).unwrap();
    t["model"]["vocab"] = json!({});
    t["model"]["merges"] = json!([]);
    t["added_tokens"] = json!([]);
    let empty = serde_json::to_vec(&t).unwrap();
    let r = check(load_limit(empty.len()), || {
        let t = Tokenizer::from_json(&empty).unwrap();
        let _ = t.decode(&[0], false);
        let _ = StreamDecoder::new(false).push(&t, 0);
        let _ = t.encode("abc");
    });
    if let Err(why) = r {
        failures.push(format!("empty vocab: {why}"));
    }
    report(&failures);
}

fn fuzz_text(first: u64, cases: u64) {
    silence_panics();
    let t = real_tokenizer();
    let mut failures = Vec::new();
    for s in first..first + cases {
        let mut rng = Rng::new(s);
        if let Err(why) = check(64 << 20, || exercise(t, &mut rng)) {
            failures.push(format!("seed {s}: {why}"));
        }
    }
    report(&failures);
}

#[test]
fn arbitrary_text_and_ids_encode_and_decode() {
    fuzz_text(0, 1_500);
}

#[test]
#[ignore = "minutes: cargo test --release -p qvq-tokenizer --test fuzz -- --ignored"]
fn arbitrary_text_and_ids_encode_and_decode_long() {
    fuzz_text(1_000_000, 300_000);
}

#[test]
fn long_runs_encode_in_linear_time() {
    silence_panics();
    let t = real_tokenizer();
    let mut failures = Vec::new();
    // 64 KiB of each: quadratic work in any stage would take minutes.
    let n = 1 << 16;
    let runs: Vec<(&str, String)> = vec![
        ("letters", "a".repeat(n)),
        ("spaces", " ".repeat(n)),
        ("newlines", "\n".repeat(n)),
        ("spaces then a letter", " ".repeat(n) + "a"),
        ("digits", "7".repeat(n)),
        ("punctuation", "!".repeat(n)),
        ("contractions", "'s".repeat(n / 2)),
        (
            "combining marks",
            "e".to_string() + &"\u{301}".repeat(n / 2),
        ),
        ("CJK", "中".repeat(n / 3)),
        ("emoji", "🙂".repeat(n / 4)),
        ("cut special tokens", "<|im_start|".repeat(n / 11)),
        ("special tokens", "<|im_start|>".repeat(n / 12)),
        ("alternating", "a ".repeat(n / 2)),
        ("no merges", "\u{1}\u{2}".repeat(n / 2)),
    ];
    for (name, text) in runs {
        let r = check(64 << 20, || {
            let ids = t.encode(&text);
            let _ = t.decode(&ids, false);
        });
        if let Err(why) = r {
            failures.push(format!("{name}: {why}"));
        }
    }
    report(&failures);
}
