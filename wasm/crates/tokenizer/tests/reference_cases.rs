//! The tokenizer against Hugging Face tokenizers 0.23 on the project's fixtures.

use std::path::PathBuf;
use std::sync::OnceLock;

use qvq_tokenizer::{Error, StreamDecoder, Tokenizer};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures")
}

fn tokenizer_json() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| std::fs::read(fixtures().join("tiny-qwen2vl/tokenizer.json")).unwrap())
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_json(tokenizer_json()).unwrap())
}

struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
}

fn cases() -> Vec<Case> {
    let bytes = std::fs::read(fixtures().join("tokenizer_cases.json")).unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect(),
            decoded: c["decoded"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[test]
fn encode_gives_hf_ids_for_every_reference_case() {
    let cases = cases();
    assert_eq!(cases.len(), 89);
    let bad: Vec<_> = cases
        .iter()
        .filter(|c| tokenizer().encode(&c.text) != c.ids)
        .map(|c| &c.text)
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} cases differ: {bad:?}",
        bad.len(),
        cases.len()
    );
}

#[test]
fn decode_of_encode_gives_hf_text_for_every_reference_case() {
    for c in cases() {
        assert_eq!(
            tokenizer().decode(&c.ids, false).unwrap(),
            c.decoded,
            "{:?}",
            c.text
        );
    }
}

#[test]
fn stream_decoder_deltas_add_up_to_decode() {
    let tok = tokenizer();
    for c in cases() {
        let mut d = StreamDecoder::new(false);
        let mut text = String::new();
        for &id in &c.ids {
            let delta = d.push(tok, id).unwrap();
            assert!(
                !delta.contains('\u{FFFD}') || c.decoded.contains('\u{FFFD}'),
                "{:?}",
                c.text
            );
            text.push_str(&delta);
        }
        text.push_str(&d.flush());
        assert_eq!(text, c.decoded);
    }
}

#[test]
fn stream_decoder_holds_back_partial_characters() {
    let tok = tokenizer();
    // BPE splits " 👨" (U+1F468, 4 bytes) after its third byte and ZWJ (3 bytes) after its
    // second: the space goes out at once, each character when its last byte arrives.
    let ids = tok.encode("family 👨\u{200d}👩");
    assert_eq!(ids, [18984, 61804, 101, 378, 235, 145233]);
    let mut d = StreamDecoder::new(false);
    let deltas: Vec<String> = ids.iter().map(|&id| d.push(tok, id).unwrap()).collect();
    assert_eq!(deltas, ["family", " ", "👨", "", "\u{200d}", "👩"]);
    assert_eq!(d.flush(), "");
    assert!(deltas.iter().all(|s| !s.contains('\u{FFFD}')));
}

#[test]
fn stream_decoder_replaces_invalid_bytes_like_decode() {
    let tok = tokenizer();
    // Byte tokens: 0xF0 0x9F (start of a 4-byte character), then "a", then a lone 0xF0 at the end.
    let byte = |b: u8| {
        tok.token_to_id(qvq_tokenizer::byte_level::BYTE_CHARS[b as usize].encode_utf8(&mut [0; 4]))
            .unwrap()
    };
    let ids = [
        byte(0xF0),
        byte(0x9F),
        tok.token_to_id("a").unwrap(),
        byte(0xF0),
    ];
    let mut d = StreamDecoder::new(false);
    assert_eq!(d.push(tok, ids[0]).unwrap(), "");
    assert_eq!(d.push(tok, ids[1]).unwrap(), "");
    assert_eq!(d.push(tok, ids[2]).unwrap(), "\u{FFFD}a");
    assert_eq!(d.push(tok, ids[3]).unwrap(), "");
    assert_eq!(d.flush(), "\u{FFFD}");
    assert_eq!(tok.decode(&ids, false).unwrap(), "\u{FFFD}a\u{FFFD}");
}

#[test]
fn decode_skips_special_tokens_on_request() {
    let tok = tokenizer();
    let ids =
        tok.encode("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>");
    assert_eq!(
        ids,
        [151644, 872, 198, 151652, 151655, 151653, 6023, 151645]
    );
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nhi");
    let mut d = StreamDecoder::new(true);
    let streamed: String = ids.iter().map(|&id| d.push(tok, id).unwrap()).collect();
    assert_eq!(streamed, "user\nhi");
}

#[test]
fn decode_rejects_unknown_ids() {
    let err = tokenizer().decode(&[9707, 151657], false).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("151657") && m.contains("151656")),
        "{err}"
    );
    assert!(
        StreamDecoder::new(false)
            .push(tokenizer(), u32::MAX)
            .is_err()
    );
}

#[test]
fn token_and_id_lookups_match_hf() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 151657);
    assert_eq!(tok.token_to_id("Hello"), Some(9707));
    assert_eq!(tok.token_to_id("Ġworld"), Some(1879));
    assert_eq!(tok.token_to_id("<|image_pad|>"), Some(151655));
    assert_eq!(tok.token_to_id("no such token"), None);
    assert_eq!(tok.id_to_token(1879), Some("Ġworld"));
    assert_eq!(tok.id_to_token(151644), Some("<|im_start|>"));
    assert_eq!(tok.id_to_token(151657), None);
}

#[test]
fn encode_handles_empty_and_huge_pieces() {
    let tok = tokenizer();
    assert!(tok.encode("").is_empty());
    // One 100 000-letter piece takes the priority-queue merge path; it must stay fast and exact.
    let long = "ab".repeat(50_000);
    let ids = tok.encode(&long);
    assert_eq!(tok.decode(&ids, false).unwrap(), long);
}

#[test]
fn added_tokens_decoder_adds_and_updates_tokens() {
    let mut tok = Tokenizer::from_json(tokenizer_json()).unwrap();
    let config = br#"{
        "151645": {"content": "<|im_end|>", "lstrip": true, "rstrip": true, "normalized": false, "single_word": false, "special": true},
        "151657": {"content": "<tool>", "lstrip": false, "rstrip": false, "normalized": false, "single_word": false, "special": false}
    }"#;
    tok.add_tokens_decoder(config).unwrap();
    assert_eq!(tok.encode("hi  <|im_end|>\n<tool>"), [6023, 151645, 151657]);
    assert_eq!(
        tok.decode(&[6023, 151657, 151645], true).unwrap(),
        "hi<tool>"
    );
    assert_eq!(tok.vocab_size(), 151658);
}

#[test]
fn from_json_rejects_bad_files_with_clear_errors() {
    let json = std::str::from_utf8(tokenizer_json()).unwrap();
    let err = |s: &str| match Tokenizer::from_json(s.as_bytes()) {
        Err(Error::ModelFile(m)) => m,
        Err(e) => panic!("wrong kind: {e}"),
        Ok(_) => panic!("accepted"),
    };
    assert!(err("{").contains("not valid"));
    assert!(err(r#"{"model": {"type": "WordPiece", "vocab": {}}}"#).contains("\"WordPiece\""));
    let no_nfc = json.replacen(
        r#""normalizer": {"type": "NFC"}"#,
        r#""normalizer": {"type": "NFKC"}"#,
        1,
    );
    assert!(err(&no_nfc).contains("NFKC"));
    let gpt2 = json.replacen("(?i:'s|'t", "(?:'s|'t", 1);
    assert!(err(&gpt2).contains("pre_tokenizer"));
    let bad_merge = json.replacen(r#"["Ġ", "Ġ"]"#, r#"["Ġ", "nope"]"#, 1);
    assert!(err(&bad_merge).contains("\"nope\""));
}

#[test]
fn from_json_refuses_a_vocab_id_past_the_file_before_allocating_for_it() {
    // Found by tests/fuzz.rs: the id tables are indexed by id, so `"!": 4294967295` made a
    // 6 MB file ask for 32 GiB and abort the process (wasm32: overflow, then a trap).
    let json = std::str::from_utf8(tokenizer_json()).unwrap();
    for id in [u32::MAX as u64, 1 << 31, json.len() as u64 + 100] {
        let bad = json.replacen(r#""!": 0"#, &format!(r#""!": {id}"#), 1);
        assert_ne!(bad, json);
        match Tokenizer::from_json(bad.as_bytes()) {
            Err(Error::ModelFile(m)) => {
                assert!(
                    m.contains(&format!("gives \"!\" the id {id}, past what a file")),
                    "{m}"
                )
            }
            Err(e) => panic!("wrong kind: {e}"),
            Ok(_) => panic!("accepted id {id}"),
        }
    }
}

#[test]
fn decode_with_an_empty_vocab_is_an_error_not_an_overflow() {
    // Found by tests/fuzz.rs: with no tokens at all, naming the last id subtracted 1 from 0.
    let mut t: Value = serde_json::from_slice(tokenizer_json()).unwrap();
    t["model"]["vocab"] = serde_json::json!({});
    t["model"]["merges"] = serde_json::json!([]);
    t["added_tokens"] = serde_json::json!([]);
    let tok = Tokenizer::from_json(&serde_json::to_vec(&t).unwrap()).unwrap();
    assert_eq!(tok.vocab_size(), 0);
    match tok.decode(&[0], false) {
        Err(Error::InvalidInput(m)) => assert!(m.contains("the tokenizer has no tokens"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(StreamDecoder::new(false).push(&tok, 7).is_err());
}
