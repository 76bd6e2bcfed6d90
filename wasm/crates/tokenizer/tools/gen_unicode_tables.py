#!/usr/bin/env python3
"""Regenerates src/unicode_tables.rs by probing Hugging Face tokenizers itself.

The character classes are not taken from a Unicode database but measured from the library whose
ids we must reproduce, so the tables carry exactly its Unicode version (Oniguruma for the Split
regex's \\p{L}, \\p{N} and \\s; the `regex` crate for the added-token \\w and \\s):

    pip install tokenizers==0.23.2
    python3 tools/gen_unicode_tables.py > src/unicode_tables.rs

Only needed when moving to a new tokenizers release; CI never runs it.
"""
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer
from tokenizers.models import BPE
from tokenizers.pre_tokenizers import Split

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
split = Split(Regex(QWEN2_PATTERN), "isolated")


def pieces(s):
    return [p for p, _ in split.pre_tokenize_str(s)]


def code_points():
    return (cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000)


def regex_classes():
    """\\p{L}, \\p{N} and \\s as the Split regex sees them."""
    letter, number, space = [], [], []
    for cp in code_points():
        c = chr(cp)
        if c in "\r\n":
            space.append(cp)
            continue
        # "x" c "x": a letter joins both x; a number or a space stands alone (3 pieces); anything
        # else is punctuation glued to the following letters by [^\r\n\p{L}\p{N}]?\p{L}+.
        n = len(pieces("x" + c + "x"))
        if n == 1:
            letter.append(cp)
        elif n == 3:
            number.append(cp)
        # A space (not U+0020) followed by "!" is its own piece; punctuation joins the "!".
        elif c == " " or len(pieces(c + "!")) == 2:
            space.append(cp)
    return letter, number, space


def added_token_classes():
    """\\w (single_word) and \\s (lstrip/rstrip) as the added-token matcher sees them."""
    single = Tokenizer(BPE(vocab={"a": 0}, merges=[]))
    single.add_tokens([AddedToken("Q", single_word=True)])
    strip = Tokenizer(BPE(vocab={"a": 0}, merges=[]))
    strip.add_tokens([AddedToken("Q", lstrip=True)])
    word, space = [], []
    for cp in code_points():
        c = chr(cp)
        if 1 not in single.encode(c + "Q").ids:
            word.append(cp)
        enc = strip.encode("a" + c + "Q")
        # ("Q" itself would be matched as the token at offset 1: it is a letter anyway.)
        if c != "Q" and enc.offsets[enc.ids.index(1)][0] == 1:
            space.append(cp)
    return word, space


def ranges(cps):
    out = []
    for cp in cps:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def emit(name, doc, cps):
    rs = ranges(cps)
    print(f"/// {doc} ({len(cps)} code points in {len(rs)} inclusive ranges).")
    print(f"pub const {name}: &[(u32, u32)] = &[")
    line = "   "
    for a, b in rs:
        item = f" (0x{a:X}, 0x{b:X}),"
        if len(line) + len(item) > 100:
            print(line)
            line = "   "
        line += item
    print(line)
    print("];\n")


letter, number, space = regex_classes()
word, strip_space = added_token_classes()
assert strip_space == space, "the two libraries disagree on White_Space"
print(f"//! Character classes measured from Hugging Face tokenizers {tokenizers.__version__} by")
print("//! tools/gen_unicode_tables.py. Generated: do not edit by hand.\n")
emit("LETTER", "`\\p{L}` of the pre-tokenizer regex (Oniguruma)", letter)
emit("NUMBER", "`\\p{N}` of the pre-tokenizer regex (Oniguruma)", number)
emit("WHITE_SPACE", "`\\s` of both the pre-tokenizer regex and the added-token matcher", space)
emit("WORD", "`\\w` of the added-token matcher (`single_word`, Rust `regex`)", word)
