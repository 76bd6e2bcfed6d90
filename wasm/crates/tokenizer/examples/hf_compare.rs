//! Batch encoder/decoder for comparing with Hugging Face tokenizers (see tools/fuzz_against_hf.py).
//!
//! `hf_compare TOKENIZER_JSON encode < texts.json > ids.json` (a JSON array of strings in, a JSON
//! array of id arrays out); `hf_compare TOKENIZER_JSON decode < ids.json > texts.json` (out: for
//! each id array, [decode, decode skipping special tokens]).

use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, mode] = &args[..] else {
        eprintln!("usage: hf_compare TOKENIZER_JSON encode|decode < input.json");
        std::process::exit(2);
    };
    let tok = qvq_tokenizer::Tokenizer::from_json(&std::fs::read(path).unwrap()).unwrap();
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let out = match mode.as_str() {
        "encode" => {
            let texts: Vec<String> = serde_json::from_str(&input).unwrap();
            serde_json::to_string(&texts.iter().map(|t| tok.encode(t)).collect::<Vec<_>>())
        }
        "decode" => {
            let ids: Vec<Vec<u32>> = serde_json::from_str(&input).unwrap();
            let texts: Vec<[String; 2]> = ids
                .iter()
                .map(|i| [tok.decode(i, false).unwrap(), tok.decode(i, true).unwrap()])
                .collect();
            serde_json::to_string(&texts)
        }
        _ => panic!("mode must be encode or decode"),
    };
    println!("{}", out.unwrap());
}
