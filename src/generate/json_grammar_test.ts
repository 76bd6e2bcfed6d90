import assert from "node:assert/strict";
import { seeded } from "../ref/_random.ts";
import { Tokenizer } from "../tokenizer.ts";
import {
  initialState,
  isComplete,
  MAX_JSON_DEPTH,
  MAX_JSON_WHITESPACE,
  Mode,
  packTokenTable,
  stateAfter,
  stepBytes,
  tokenBytes,
  tokenTable,
} from "./json_grammar.ts";

const utf8 = new TextEncoder();
const TINY = new URL("../../tests/fixtures/tiny-qwen2vl/", import.meta.url);

/** Where the automaton first refuses `bytes` (-1: never), and its state after the rest. */
function run(bytes: Uint8Array): { refused: number; complete: boolean } {
  let s = initialState();
  for (let i = 0; i < bytes.length; i++) {
    const t = stepBytes(s, [bytes[i]]);
    if (!t) return { refused: i, complete: false };
    s = t;
  }
  return { refused: -1, complete: isComplete(s) };
}

/** JSON.parse's verdict on bytes, as JSON mode means it: valid UTF-8 and a top-level object. */
function isJsonObject(bytes: Uint8Array): boolean {
  try {
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    const v = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) && text[0] === "{" &&
      text.endsWith("}");
  } catch {
    return false;
  }
}

/** A random JSON value of at most `depth` levels (strings with escapes and non-ASCII). */
function randomValue(rand: () => number, depth: number): unknown {
  const pick = Math.floor(rand() * (depth > 0 ? 8 : 6));
  const str = () =>
    Array.from(
      { length: Math.floor(rand() * 6) },
      () =>
        ["a", "Z", " ", '"', "\\", "/", "\n", "\t", "é", "€", "😀", "\u0001", "\u2028"][
          Math.floor(rand() * 13)
        ],
    ).join("");
  switch (pick) {
    case 0:
      return str();
    case 1:
      return Math.floor(rand() * 2000) - 1000;
    case 2:
      return (rand() - 0.5) * 10 ** Math.floor(rand() * 40 - 20);
    case 3:
      return rand() < 0.5;
    case 4:
      return null;
    case 5:
      return 0;
    case 6:
      return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth - 1));
    default:
      return randomObject(rand, depth - 1, str);
  }
}

function randomObject(rand: () => number, depth: number, key?: () => string): object {
  const o: Record<string, unknown> = {};
  const n = Math.floor(rand() * 4);
  for (let i = 0; i < n; i++) o[key ? key() : `k${i}`] = randomValue(rand, depth);
  return o;
}

/** Valid objects: JSON.stringify of random values, compact and indented. */
function validDocs(n: number, seed: number): string[] {
  const rand = seeded(seed);
  const docs = [
    "{}",
    "{ }",
    '{"a":[]}',
    '{"a":[1,-0.5e+10,0E3,true,false,null,"x"]}',
    '{"\\u00e9\\n":{"b":{}}}',
    '{\n  "a": 1\n}',
  ];
  for (let i = 0; i < n; i++) {
    const o = randomObject(rand, 3);
    docs.push(JSON.stringify(o), JSON.stringify(o, null, 2), JSON.stringify(o, null, "\t"));
  }
  return docs;
}

Deno.test("the JSON automaton accepts every prefix of valid objects and completes them", () => {
  for (const doc of validDocs(150, 1)) {
    const r = run(utf8.encode(doc));
    assert.equal(r.refused, -1, `refused byte ${r.refused} of ${JSON.stringify(doc)}`);
    assert.ok(r.complete, `not complete after ${JSON.stringify(doc)}`);
  }
});

Deno.test("the JSON automaton completes exactly what JSON.parse takes as an object (mutated docs)", () => {
  const rand = seeded(2);
  const alphabet = [...'{}[]",:0123456789-+.eEtruefalsnul\\/ \n\tx', "é", "\u0001"];
  let agreed = 0, objects = 0;
  for (const doc of validDocs(400, 3)) {
    const bytes = [...utf8.encode(doc)];
    const edits = 1 + Math.floor(rand() * 2);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rand() * (bytes.length + 1));
      const c = [...utf8.encode(alphabet[Math.floor(rand() * alphabet.length)])];
      const kind = Math.floor(rand() * 3);
      if (kind === 0) bytes.splice(at, 0, ...c);
      else if (kind === 1) bytes.splice(at, 1);
      else bytes.splice(at, 1, ...c);
    }
    // Raw bytes too: a lone continuation or lead byte inside a string.
    if (rand() < 0.1) {
      bytes.splice(Math.floor(rand() * bytes.length), 0, 0x80 + Math.floor(rand() * 0x80));
    }
    const b = new Uint8Array(bytes);
    const want = isJsonObject(b);
    const r = run(b);
    assert.equal(
      r.refused === -1 && r.complete,
      want,
      `${JSON.stringify(new TextDecoder().decode(b))}`,
    );
    agreed++;
    if (want) objects++;
  }
  // Both verdicts must occur often, or the comparison says little.
  assert.ok(objects > 100 && agreed - objects > 300, `${objects} objects of ${agreed}`);
});

Deno.test("the JSON automaton refuses at the first byte no object can continue with", () => {
  const cases: [string, number][] = [
    ["[1]", 0], // json_object: the top level is an object
    ['"a"', 0],
    ['{"a":01}', 6], // no leading zeros
    ['{"a":1.}', 7],
    ['{"a":-}', 6],
    ['{"a":tru}', 8],
    ['{"a":1]', 6], // the wrong close
    ['{"a" 1}', 5],
    ["{'a':1}", 1],
    ['{"a":1,}', 7], // no trailing comma
    ['{"a":"\\x"}', 7],
    ['{"a":"\\u12g4"}', 10],
    ['{"a":"tab\there"}', 9], // control characters must be escaped
    ["{} x", 2],
    ["{}{}", 2],
  ];
  for (const [text, at] of cases) {
    assert.equal(run(utf8.encode(text)).refused, at, text);
  }
});

Deno.test("the JSON automaton takes only well-formed UTF-8 in strings", () => {
  const inString = (...b: number[]) =>
    run(new Uint8Array([...utf8.encode('{"'), ...b, 0x22])).refused;
  assert.equal(inString(0xc3, 0xa9), -1); // é
  assert.equal(inString(0xe2, 0x82, 0xac), -1); // €
  assert.equal(inString(0xf0, 0x9f, 0x98, 0x80), -1); // 😀
  assert.equal(inString(0xef, 0xbf, 0xbf), -1); // U+FFFF
  assert.equal(inString(0xf4, 0x8f, 0xbf, 0xbf), -1); // U+10FFFF
  assert.equal(inString(0x80), 2); // a continuation byte alone
  assert.equal(inString(0xc0, 0x80), 2); // overlong
  assert.equal(inString(0xc1, 0xbf), 2);
  assert.equal(inString(0xe0, 0x80, 0x80), 3); // overlong three-byte form
  assert.equal(inString(0xed, 0xa0, 0x80), 3); // a surrogate
  assert.equal(inString(0xf0, 0x80, 0x80, 0x80), 3); // overlong four-byte form
  assert.equal(inString(0xf4, 0x90, 0x80, 0x80), 3); // past U+10FFFF
  assert.equal(inString(0xf5, 0x80, 0x80, 0x80), 2);
  assert.equal(inString(0xc3, 0x41), 3); // a character cut short
});

Deno.test("the JSON automaton caps nesting and whitespace runs", () => {
  const deep = "[".repeat(MAX_JSON_DEPTH);
  assert.equal(run(utf8.encode('{"a":' + deep.slice(1))).refused, -1);
  assert.equal(run(utf8.encode('{"a":' + deep)).refused, 5 + MAX_JSON_DEPTH - 1);
  const ws = " ".repeat(MAX_JSON_WHITESPACE);
  assert.equal(run(utf8.encode(`{${ws}"a"${ws}:${ws}1${ws}}`)).refused, -1);
  // The answer is its object's text, nothing around it.
  assert.equal(run(utf8.encode(` {}`)).refused, 0);
  assert.equal(run(utf8.encode(`{}\n`)).refused, 2);
  assert.equal(run(utf8.encode(`{${ws} }`)).refused, 1 + MAX_JSON_WHITESPACE);
  // Whitespace inside strings is text, not counted.
  assert.equal(run(utf8.encode(`{"${ws}${ws}":1}`)).refused, -1);
});

Deno.test("stateAfter() gives a continued answer's state, or undefined", () => {
  const s = stateAfter('{"name": "Ad');
  assert.ok(s);
  assert.equal(s[0], Mode.STRING);
  assert.ok(isComplete(stepBytes(s, utf8.encode('a"}'))!));
  assert.equal(stateAfter("Sure! {"), undefined);
  assert.deepEqual(stateAfter(""), initialState());
});

Deno.test("packTokenTable() round-trips each id's bytes", () => {
  const entries = [[0x7b], [], [0x20, 0x22, 0x61], undefined, [0xe2, 0x82]];
  const t = packTokenTable(6, (id) => entries[id]);
  assert.equal(t.offsets.length, 7);
  for (let id = 0; id < 6; id++) assert.deepEqual([...tokenBytes(t, id)], entries[id] ?? []);
});

Deno.test("tokenTable() gives vocabulary entries their bytes and special tokens none", async () => {
  const tok = await Tokenizer.load(TINY);
  try {
    const t = tokenTable(tok, tok.vocabSize + 3);
    const bytes = (text: string) => [...tokenBytes(t, tok.encode(text)[0])];
    assert.deepEqual(bytes("{"), [0x7b]);
    assert.deepEqual(bytes(" world"), [...utf8.encode(" world")]);
    for (const special of ["<|im_end|>", "<|endoftext|>", "<|vision_start|>"]) {
      assert.deepEqual(bytes(special), [], special);
    }
    for (let id = tok.vocabSize; id < tok.vocabSize + 3; id++) {
      assert.equal(tokenBytes(t, id).length, 0); // the lm_head's padding rows
    }
    // A token holding part of a character keeps its raw bytes (é = c3 a9 across two tokens?):
    // whatever the split, the table's bytes of an encoding concatenate to the text's UTF-8.
    const text = '{"città": "東京 😀"}';
    const all = [...tok.encode(text)].flatMap((id) => [...tokenBytes(t, id)]);
    assert.deepEqual(all, [...utf8.encode(text)]);
  } finally {
    tok.dispose();
  }
});
