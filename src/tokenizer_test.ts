import assert from "node:assert/strict";
import { InvalidInputError, ModelFileError } from "./errors.ts";
import { MemoryModelSource } from "./model_files.ts";
import { Tokenizer } from "./tokenizer.ts";

const MODEL_DIR = new URL("../tests/fixtures/tiny-qwen2vl/", import.meta.url);
const JSON_BYTES = await Deno.readFile(new URL("tokenizer.json", MODEL_DIR));

interface Case {
  text: string;
  ids: number[];
  decoded: string;
}
const CASES: Case[] = JSON.parse(
  await Deno.readTextFile(new URL("../tests/fixtures/tokenizer_cases.json", import.meta.url)),
).cases;

const tok = await Tokenizer.fromJson(JSON_BYTES);

Deno.test("encode() gives HF ids for every reference case", () => {
  assert.equal(CASES.length, 89);
  const bad = CASES.filter((c) => tok.encode(c.text).join() !== c.ids.join()).map((c) => c.text);
  assert.deepEqual(bad, []);
});

Deno.test("encode() returns an Int32Array", () => {
  const ids = tok.encode("Hello world");
  assert.ok(ids instanceof Int32Array);
  assert.deepEqual(Array.from(ids), [9707, 1879]);
  assert.equal(tok.encode("").length, 0);
});

Deno.test("decode() of encode() gives the HF decoding for every reference case", () => {
  for (const c of CASES) assert.equal(tok.decode(tok.encode(c.text)), c.decoded, c.text);
});

Deno.test("encodeBatch() encodes each text", () => {
  const texts = CASES.slice(0, 10).map((c) => c.text);
  const batch = tok.encodeBatch(texts);
  assert.deepEqual(batch.map((a) => Array.from(a)), CASES.slice(0, 10).map((c) => c.ids));
});

Deno.test("decode() skips special tokens when asked", () => {
  const ids = tok.encode(
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>",
  );
  assert.deepEqual(Array.from(ids), [151644, 872, 198, 151652, 151655, 151653, 6023, 151645]);
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "user\nhi");
  assert.equal(
    tok.decode(Array.from(ids)),
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>",
  );
});

Deno.test("decode() rejects ids outside the vocabulary or not integers", () => {
  assert.throws(
    () => tok.decode([9707, 151657]),
    (e) => e instanceof InvalidInputError && /151657/.test(e.message),
  );
  assert.throws(() => tok.decode([-1]), InvalidInputError);
  assert.throws(() => tok.decode([1.5]), InvalidInputError);
});

Deno.test("createStreamDecoder() deltas add up to decode() for every reference case", () => {
  for (const c of CASES) {
    const d = tok.createStreamDecoder();
    let text = "";
    for (const id of c.ids) text += d.push(id);
    text += d.flush();
    d.dispose();
    assert.equal(text, c.decoded, c.text);
  }
});

Deno.test("createStreamDecoder() holds back partial characters and skips special tokens", () => {
  const ids = tok.encode("<|im_start|>family 👨\u200d👩");
  using d = tok.createStreamDecoder({ skipSpecialTokens: true });
  // " 👨" and the ZWJ are each split across two tokens: nothing half-formed comes out.
  assert.deepEqual(Array.from(ids, (id) => d.push(id)), [
    "",
    "family",
    " ",
    "👨",
    "",
    "\u200d",
    "👩",
  ]);
  assert.equal(d.flush(), "");
});

Deno.test("createStreamDecoder() emits U+FFFD only for bytes that cannot become a character", () => {
  const byte = (b: number) => {
    // Byte-level characters: 0x7F..0xA0 map to U+0121.. (after the 33 bytes 0x00..0x20).
    const id = tok.tokenToId(
      String.fromCodePoint(b >= 0x7f && b <= 0xa0 ? 0x100 + 33 + (b - 0x7f) : b),
    );
    assert.notEqual(id, undefined);
    return id!;
  };
  const ids = [byte(0xf0), byte(0x9f), tok.tokenToId("a")!, byte(0xf0)];
  const d = tok.createStreamDecoder();
  assert.deepEqual(ids.map((id) => d.push(id)), ["", "", "\ufffda", ""]);
  assert.equal(d.flush(), "\ufffd");
  assert.equal(tok.decode(ids), "\ufffda\ufffd");
  assert.throws(() => d.push(1e9), InvalidInputError);
});

Deno.test("tokenToId() and idToToken() match HF", () => {
  assert.equal(tok.vocabSize, 151657);
  assert.equal(tok.tokenToId("Hello"), 9707);
  assert.equal(tok.tokenToId("Ġworld"), 1879);
  assert.equal(tok.tokenToId("<|image_pad|>"), 151655);
  assert.equal(tok.tokenToId("no such token"), undefined);
  assert.equal(tok.idToToken(1879), "Ġworld");
  assert.equal(tok.idToToken(151644), "<|im_start|>");
  assert.equal(tok.idToToken(151657), undefined);
  assert.equal(tok.idToToken(-3), undefined);
});

Deno.test("load() reads tokenizer.json from a directory path, a file: URL and a ModelSource", async () => {
  const path = decodeURIComponent(MODEL_DIR.pathname);
  const source = new MemoryModelSource({ "tokenizer.json": JSON_BYTES });
  for (const where of [path, MODEL_DIR, source]) {
    using t = await Tokenizer.load(where);
    assert.deepEqual(Array.from(t.encode("Hello world")), [9707, 1879]);
    assert.equal(t.vocabSize, 151657);
  }
});

Deno.test("load() applies added_tokens_decoder from tokenizer_config.json", async () => {
  const config = {
    added_tokens_decoder: {
      "151645": {
        content: "<|im_end|>",
        lstrip: true,
        rstrip: true,
        normalized: false,
        special: true,
      },
      "151657": { content: "<tool>", normalized: false, special: false },
    },
  };
  const source = new MemoryModelSource({
    "tokenizer.json": JSON_BYTES,
    "tokenizer_config.json": new TextEncoder().encode(JSON.stringify(config)),
  });
  using t = await Tokenizer.load(source);
  assert.deepEqual(Array.from(t.encode("hi  <|im_end|>\n<tool>")), [6023, 151645, 151657]);
  assert.equal(t.decode([6023, 151657, 151645], { skipSpecialTokens: true }), "hi<tool>");
  assert.equal(t.vocabSize, 151658);
});

Deno.test("fromJson() accepts text and rejects unsupported tokenizers with ModelFileError", async () => {
  const text = new TextDecoder().decode(JSON_BYTES);
  using t = await Tokenizer.fromJson(text);
  assert.deepEqual(Array.from(t.encode("Hello")), [9707]);
  await assert.rejects(
    Tokenizer.fromJson("{"),
    (e) => e instanceof ModelFileError && /not valid/.test(e.message),
  );
  await assert.rejects(
    Tokenizer.fromJson('{"model": {"type": "Unigram", "vocab": {}}}'),
    (e) => e instanceof ModelFileError && /"Unigram"/.test(e.message),
  );
  const nfkc = text.replace('"normalizer": {"type": "NFC"}', '"normalizer": {"type": "NFKC"}');
  await assert.rejects(
    Tokenizer.fromJson(nfkc),
    (e) => e instanceof ModelFileError && /NFKC/.test(e.message),
  );
});

Deno.test("load() names the file when tokenizer.json is bad or missing", async () => {
  const bad = new MemoryModelSource({ "tokenizer.json": new TextEncoder().encode("[]") });
  await assert.rejects(
    Tokenizer.load(bad),
    (e) => e instanceof ModelFileError && /tokenizer\.json/.test(e.message),
  );
  await assert.rejects(Tokenizer.load(new MemoryModelSource({})), ModelFileError);
});

Deno.test("a disposed Tokenizer throws a clear error", async () => {
  const t = await Tokenizer.fromJson(JSON_BYTES);
  const d = t.createStreamDecoder();
  t.dispose();
  assert.throws(
    () => t.encode("x"),
    (e) => e instanceof InvalidInputError && /disposed/.test(e.message),
  );
  // The stream decoder keeps its own reference to the wasm tokenizer.
  assert.equal(d.push(9707), "Hello");
  d.dispose();
  assert.throws(() => d.push(9707), InvalidInputError);
  t.dispose(); // twice is fine
});

Deno.test("an added token of tokenizer_config.json is normalized unless special, as in transformers", async () => {
  // U+212B (Angstrom sign) NFC-normalizes to U+00C5: a normalized token matches neither form
  // as written, so it stays a special token matched in the raw text only.
  const config = { added_tokens_decoder: { "151657": { content: "\u212b", special: true } } };
  const source = new MemoryModelSource({
    "tokenizer.json": JSON_BYTES,
    "tokenizer_config.json": new TextEncoder().encode(JSON.stringify(config)),
  });
  using t = await Tokenizer.load(source);
  // transformers 5.24's AutoTokenizer on the same files: [64, 144044, 65] and [64, 151657, 65]
  assert.deepEqual(Array.from(t.encode("a\u00c5b")), [64, 144044, 65]);
  assert.deepEqual(Array.from(t.encode("a\u212bb")), [64, 151657, 65]);
  assert.equal(t.decode(t.encode("a\u212bb")), "a\u212bb");
});

Deno.test("load() names tokenizer_config.json for a bad added_tokens_decoder entry", async () => {
  for (
    const added of [{ x: { content: "y" } }, { "151657": { content: 5 } }]
  ) {
    const source = new MemoryModelSource({
      "tokenizer.json": JSON_BYTES,
      "tokenizer_config.json": new TextEncoder().encode(
        JSON.stringify({ added_tokens_decoder: added }),
      ),
    });
    await assert.rejects(
      Tokenizer.load(source),
      (e) =>
        e instanceof ModelFileError &&
        /tokenizer_config\.json: added_tokens_decoder/.test(e.message),
      JSON.stringify(added),
    );
  }
});

Deno.test("decode() and StreamDecoder.push() refuse what is not a token id", async () => {
  using t = await Tokenizer.fromJson(JSON_BYTES);
  const d = t.createStreamDecoder();
  for (
    const ids of [
      [null],
      [""],
      [true],
      [[5]],
      "abc",
      null,
      new Set([1, 2]),
      { length: 1 },
      new DataView(new ArrayBuffer(8)),
      BigInt64Array.of(1n),
    ]
  ) {
    assert.throws(
      () => t.decode(ids as unknown as number[]),
      (e) => e instanceof InvalidInputError && /token id/.test(e.message),
      String(ids),
    );
  }
  for (const id of [null, false, "5", [5]]) {
    assert.throws(() => d.push(id as unknown as number), InvalidInputError, String(id));
  }
  // Arrays and typed arrays of ids still decode.
  assert.equal(t.decode([9707, 1879]), "Hello world");
  assert.equal(t.decode(Int32Array.of(9707, 1879)), "Hello world");
  assert.equal(t.decode({ length: 2, 0: 9707, 1: 1879 }), "Hello world"); // any ArrayLike
  d.dispose();
});
