#!/usr/bin/env python3
"""Compares qvq-tokenizer with Hugging Face tokenizers on random text (a development check; CI
runs the committed reference cases instead).

    pip install tokenizers==0.23.2
    cargo build --release --example hf_compare      # from wasm/
    python3 tools/fuzz_against_hf.py TOKENIZER_JSON HF_COMPARE_BINARY [CORPUS] [N] [SEED]
"""
import json, random, subprocess, sys
from tokenizers import Tokenizer

path, binary = sys.argv[1], sys.argv[2]
corpus = open(sys.argv[3], encoding="utf-8").read() if len(sys.argv) > 3 else ""
n = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
hf = Tokenizer.from_file(path)
rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else 0)

POOL = (
    list("abcxyzABCXYZ0123456789") + list(" \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2028\u2029\u3000")
    + list("'''''sStTmMdDrReEvVlLſK") + list("!?.,;:-_()[]{}<>|/\\\"#$%&*+=@^`~")
    + list("éÉñßøåĳǅ\u0301\u0308\u0327\u0345\u1100\u1161\u11a8가각") + list("中文日本語한국어ÀÅÇ")
    + list("١٢٣१२३¹²½Ⅻ") + list("😀👍🏽🇯🇵👨\u200d\u200b\u200c\ufeff\ufffd")
    + [chr(c) for c in (0x1C89, 0x1E5D0, 0x31350, 0x16D40, 0x11F00, 0x0378, 0xE000, 0x10FFFF, 0x1D7CE)]
    + ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_start|>", "<|im_", "|>", "<|endoftext|>"]
)


def random_text():
    kind = rng.random()
    if corpus and kind < 0.3:
        a = rng.randrange(len(corpus))
        return corpus[a:a + rng.randrange(1, 400)]
    if kind < 0.4:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 30)))
    if kind < 0.42:
        cps = (rng.randrange(0x110000) for _ in range(rng.randrange(1, 20)))
        return "".join(chr(c) for c in cps if not 0xD800 <= c < 0xE000)
    if kind < 0.45:
        return "".join(rng.choice("ab ") for _ in range(rng.randrange(50, 3000)))
    return "".join(rng.choice(POOL) for _ in range(rng.randrange(0, 40)))


def run(mode, payload):
    out = subprocess.run([binary, path, mode], input=json.dumps(payload), capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


texts = [random_text() for _ in range(n)]
ours = run("encode", texts)
bad = 0
for t, o in zip(texts, ours):
    ref = hf.encode(t).ids
    if o != ref:
        bad += 1
        if bad <= 10:
            print("ENCODE MISMATCH", repr(t), "\n  hf  ", ref, "\n  ours", o)
print(f"encode: {n - bad}/{n} identical")

size = hf.get_vocab_size()
id_lists = [[rng.randrange(size) for _ in range(rng.randrange(0, 12))] for _ in range(n // 2)]
id_lists += [[rng.choice([151643, 151644, 151655, 9707, 220, 198, 101, 235, 378]) for _ in range(8)]
             for _ in range(n // 10)]
ours = run("decode", id_lists)
bad = 0
for ids, (plain, skipped) in zip(id_lists, ours):
    ref = (hf.decode(ids, skip_special_tokens=False), hf.decode(ids, skip_special_tokens=True))
    if (plain, skipped) != ref:
        bad += 1
        if bad <= 10:
            print("DECODE MISMATCH", ids, "\n  hf  ", ref, "\n  ours", (plain, skipped))
print(f"decode: {len(id_lists) - bad}/{len(id_lists)} identical")
