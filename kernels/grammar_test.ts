import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readU32, writeArray } from "../src/gpu/buffers.ts";
import {
  type GrammarState,
  initialState,
  MAX_JSON_WHITESPACE,
  Mode,
  packTokenTable,
  stepBytes,
  tokenBytes,
  type TokenTable,
} from "../src/generate/json_grammar.ts";
import { advanceDfaRef, advanceRef, maskDfaRef, maskRef } from "../src/ref/grammar.ts";
import { DFA_NONE, dfaWalk } from "../src/generate/_automaton.ts";
import { schemaDfa } from "../src/generate/json_schema.ts";
import { argmax, processScores } from "../src/ref/sample.ts";
import { randn, seeded } from "../src/ref/_random.ts";
import {
  createGrammar,
  grammarAdvance,
  grammarMask,
  maskWords,
  readGrammarState,
  uploadDfa,
  uploadTokenTable,
  writeGrammar,
} from "./grammar.ts";
import { createSamplingParams, GREEDY, sample, writeSamplingParams } from "./sample.ts";
import { advance, createDecodeState, writeDecodeState } from "./state.ts";
import { run } from "./_kernel.ts";

const utf8 = new TextEncoder();

/**
 * A synthetic vocabulary of `vocab` ids: short strings over JSON's characters (and whole and
 * partial UTF-8 characters), a few ids with no bytes (special tokens, padding) and the last two
 * ids the end ids.
 */
function syntheticTable(vocab: number, seed: number): { table: TokenTable; ends: number[] } {
  const rand = seeded(seed);
  const pieces = [
    ...'{}[]":,0123456789-+.eEtruefalsnul\\/ \n\tabcxyzu'.split("").map((c) => [c.charCodeAt(0)]),
    [0xc3, 0xa9],
    [0xc3],
    [0xa9],
    [0xe2, 0x82],
    [0xac],
    [0xf0, 0x9f, 0x98, 0x80],
    [0xed, 0xa0],
    [0x80],
    [0x01],
    [0xff],
    [...utf8.encode('": "')],
    [...utf8.encode('", "')],
    [...utf8.encode("true")],
    [...utf8.encode("null}")],
    [...utf8.encode("  ")],
    [...utf8.encode("\n    ")],
  ];
  const entries: number[][] = [];
  for (let id = 0; id < vocab; id++) {
    if (id < pieces.length) {
      entries.push(pieces[id]);
      continue;
    }
    const n = rand() < 0.03 ? 0 : 1 + Math.floor(rand() * 5);
    const e: number[] = [];
    for (let i = 0; i < n; i++) e.push(...pieces[Math.floor(rand() * pieces.length)]);
    entries.push(e);
  }
  return { table: packTokenTable(vocab, (id) => entries[id]), ends: [vocab - 2, vocab - 1] };
}

/** States to test from: the automaton after prefixes of valid objects, and the edge states. */
function states(): GrammarState[] {
  const docs = [
    '{"a": [1, -0.5e+10, true, null, "x\\u00e9"], "b": {"c": {}}}',
    '{\n  "k": "caf\u00e9 \u20ac \ud83d\ude00",\n  "n": 12}',
  ];
  const out: GrammarState[] = [initialState()];
  for (const doc of docs) {
    const bytes = utf8.encode(doc);
    for (let i = 1; i <= bytes.length; i++) {
      out.push(stepBytes(initialState(), bytes.subarray(0, i))!);
    }
  }
  out.push(stepBytes(initialState(), utf8.encode("{" + " ".repeat(MAX_JSON_WHITESPACE)))!);
  out.push(stepBytes(initialState(), utf8.encode('{"a":' + "[".repeat(40)))!);
  const failed = initialState();
  failed[0] = Mode.FAILED;
  out.push(failed);
  return out;
}

Deno.test("grammarMask() matches the reference in every automaton state", async () => {
  const gpu = await sharedGpu();
  const { table, ends } = syntheticTable(3001, 1);
  const t = uploadTokenTable(gpu, table);
  const grammar = createGrammar(gpu);
  const allowed = createStorage(gpu, maskWords(table.vocab) * 4);
  const mask = grammarMask(gpu, { table: t, grammar, allowed });
  const all = states();
  const modes = new Set(all.map((s) => s[0]));
  assert.ok(modes.size >= 14, `states cover ${modes.size} modes`);
  for (const s of all) {
    writeGrammar(gpu, grammar, s, ends);
    run(gpu, [mask]);
    const got = await readU32(gpu, allowed, maskWords(table.vocab));
    const want = maskRef(s, table, ends);
    assert.deepEqual(got, want, `state [${s}]`);
  }
  mask.destroy();
  [t.offsets, t.bytes, grammar, allowed].forEach((b) => b.destroy());
});

Deno.test("grammarAdvance() matches the reference after prefill and in decode steps", async () => {
  const gpu = await sharedGpu();
  const { table, ends } = syntheticTable(3001, 2);
  const t = uploadTokenTable(gpu, table);
  const grammar = createGrammar(gpu);
  const state = createDecodeState(gpu);
  const steps = 24;
  const tokens = createStorage(gpu, (steps + 1) * 4);
  const first = grammarAdvance(gpu, { table: t, grammar, state, tokens }, { afterPrefill: true });
  const next = grammarAdvance(gpu, { table: t, grammar, state, tokens });
  const adv = advance(gpu, state);
  const rand = seeded(3);
  for (const start of states().filter((_, i) => i % 7 === 0)) {
    // A chain of allowed ids (by the reference), ending in a refused one half the time.
    const ids: number[] = [];
    let s = start;
    for (let i = 0; i <= steps; i++) {
      const m = maskRef(s, table, ends);
      const ok = [...Array(table.vocab).keys()].filter((id) => (m[id >> 5] >>> (id & 31)) & 1);
      const refuse = ok.length === 0 || (i === steps && rand() < 0.5);
      const id = refuse
        ? [...Array(table.vocab).keys()].find((x) => !ok.includes(x))!
        : ok[Math.floor(rand() * ok.length)];
      ids.push(id);
      s = advanceRef(s, table, id, ends);
    }
    writeGrammar(gpu, grammar, start, ends);
    writeDecodeState(gpu, state, { cacheLen: 0, position: 0, step: 0 });
    writeArray(gpu, tokens, new Uint32Array(ids));
    const ds = [first];
    for (let i = 0; i < steps; i++) ds.push(next, adv);
    run(gpu, ds);
    assert.deepEqual(await readGrammarState(gpu, grammar), s, `from [${start}] by ${ids}`);
  }
  [first, next, adv].forEach((d) => d.destroy());
  [t.offsets, t.bytes, grammar, state, tokens].forEach((b) => b.destroy());
});

Deno.test("sample() with a grammar mask draws only allowed tokens: a greedy JSON decode loop", async () => {
  const gpu = await sharedGpu();
  const vocab = 3001;
  const { table, ends } = syntheticTable(vocab, 4);
  const t = uploadTokenTable(gpu, table);
  const steps = 40;
  const b = {
    logits: createStorage(gpu, vocab * 4),
    prompt: createStorage(gpu, 4),
    params: createSamplingParams(gpu),
    state: createDecodeState(gpu),
    tokens: createStorage(gpu, (steps + 1) * 4),
    scores: createStorage(gpu, (steps + 1) * 4),
    allowed: createStorage(gpu, maskWords(vocab) * 4),
    grammar: createGrammar(gpu),
    table: t,
  };
  const shape = { vocab, capacity: steps + 1 };
  const mask = grammarMask(gpu, b);
  const ds = [
    mask,
    sample(gpu, b, { ...shape, afterPrefill: true }),
    grammarAdvance(gpu, b, { afterPrefill: true }),
  ];
  const step = [mask, sample(gpu, b, shape), grammarAdvance(gpu, b), advance(gpu, b.state)];
  const loop = async (logits: Float32Array, presencePenalty: number) => {
    writeArray(gpu, b.logits, logits);
    writeSamplingParams(gpu, b.params, { ...GREEDY, presencePenalty, promptLength: 0 });
    writeDecodeState(gpu, b.state, { cacheLen: 0, position: 0, step: 0 });
    writeGrammar(gpu, b.grammar, initialState(), ends);
    const all = [...ds];
    for (let i = 0; i < steps; i++) all.push(...step);
    run(gpu, all);
    const got = [...await readU32(gpu, b.tokens, steps + 1)];
    // Replay on the CPU: each id is the argmax of the processed, masked scores.
    let s = initialState();
    const history: number[] = [], modes = new Set<number>();
    for (const id of got) {
      modes.add(s[0]);
      const allowed = maskRef(s, table, ends);
      const o = { ...GREEDY, presencePenalty, allowed };
      assert.equal(id, argmax(processScores(logits, history, o, 0)), `step ${history.length}`);
      assert.ok((allowed[id >> 5] >>> (id & 31)) & 1, `step ${history.length}: ${id} not allowed`);
      history.push(id);
      s = advanceRef(s, table, id, ends);
    }
    return { ids: got, state: s, modes };
  };
  // Random scores and a presence penalty: a walk through the grammar's modes.
  const rand = await loop(randn(seeded(5), vocab, 2), 3);
  assert.ok(rand.modes.size >= 5 && !rand.modes.has(Mode.FAILED), `modes ${[...rand.modes]}`);
  // The end ids score highest, then `}`: the object closes at once and an end id follows.
  const x = randn(seeded(6), vocab, 2);
  for (const e of ends) x[e] = 20;
  x[1] = 10; // "}"
  const closing = await loop(x, 0);
  assert.equal(closing.state[0], Mode.DONE);
  const text = closing.ids.slice(0, closing.ids.indexOf(ends[0]));
  assert.ok(text.length > 0 && closing.ids.slice(text.length).every((id) => id === ends[0]));
  const json = new TextDecoder().decode(
    new Uint8Array(text.flatMap((id) => [...tokenBytes(table, id)])),
  );
  assert.deepEqual(JSON.parse(json), {});
  [...new Set([...ds, ...step])].forEach((d) => d.destroy());
  [
    t.offsets,
    t.bytes,
    b.logits,
    b.prompt,
    b.params,
    b.state,
    b.tokens,
    b.scores,
    b.allowed,
    b.grammar,
  ].forEach((x) => x.destroy());
});

Deno.test("grammarMask() and grammarAdvance() with a DFA match the reference", async () => {
  const gpu = await sharedGpu();
  const { table, ends } = syntheticTable(3001, 7);
  const dfa = schemaDfa({
    type: "object",
    properties: {
      a: { type: "array", items: { enum: [1, "x", true] }, maxItems: 3 },
      b: { type: "string" },
      n: { type: ["number", "null"] },
    },
    required: ["a", "b"],
  });
  const t = uploadTokenTable(gpu, table);
  const gd = uploadDfa(gpu, dfa);
  const grammar = createGrammar(gpu);
  const allowed = createStorage(gpu, maskWords(table.vocab) * 4);
  const state = createDecodeState(gpu);
  const steps = 16;
  const tokens = createStorage(gpu, (steps + 1) * 4);
  const mask = grammarMask(gpu, { table: t, grammar, allowed, dfa: gd });
  const b = { table: t, grammar, state, tokens, dfa: gd };
  const first = grammarAdvance(gpu, b, { afterPrefill: true });
  const next = grammarAdvance(gpu, b);
  const adv = advance(gpu, state);
  // States along an answer, its accepting end, and the refused state.
  const answer = utf8.encode('{"a": [1, "x"], "b": "caf\u00e9 \\u00e9", "n": -1.5e3}');
  const qs = [...Array(answer.length + 1).keys()].map((n) =>
    dfaWalk(dfa, 0, answer.subarray(0, n))
  );
  assert.equal(dfa.accept[qs.at(-1)!], 1);
  qs.push(DFA_NONE);
  const word = (q: number) => Uint32Array.of(q, 0, 0, 0, 0, 0, 0, 0);
  for (const q of qs) {
    writeGrammar(gpu, grammar, word(q), ends);
    run(gpu, [mask]);
    assert.deepEqual(
      await readU32(gpu, allowed, maskWords(table.vocab)),
      maskDfaRef(q, table, dfa, ends),
      `state ${q}`,
    );
  }
  const rand = seeded(8);
  for (const q0 of qs.filter((_, i) => i % 9 === 0)) {
    const ids: number[] = [];
    let q = q0;
    for (let i = 0; i <= steps; i++) {
      const m = maskDfaRef(q, table, dfa, ends);
      const ok = [...Array(table.vocab).keys()].filter((id) => (m[id >> 5] >>> (id & 31)) & 1);
      const id = ok.length && !(i === steps && rand() < 0.5)
        ? ok[Math.floor(rand() * ok.length)]
        : Math.floor(rand() * table.vocab);
      ids.push(id);
      q = advanceDfaRef(q, table, dfa, id, ends);
    }
    writeGrammar(gpu, grammar, word(q0), ends);
    writeDecodeState(gpu, state, { cacheLen: 0, position: 0, step: 0 });
    writeArray(gpu, tokens, new Uint32Array(ids));
    const ds = [first];
    for (let i = 0; i < steps; i++) ds.push(next, adv);
    run(gpu, ds);
    assert.equal((await readGrammarState(gpu, grammar))[0], q, `from ${q0} by ${ids}`);
  }
  [mask, first, next, adv].forEach((d) => d.destroy());
  [t.offsets, t.bytes, gd.buffer, grammar, allowed, state, tokens].forEach((x) => x.destroy());
});

Deno.test("grammarMask() allows a stop id that is text where the answer may not end, as text; an end only once whole", async () => {
  const gpu = await sharedGpu();
  // Ids: 0 "e", 1 "]", 2 "}", 3 "[", 4 "1", 5 "{", 6 '"a":tru', 7 "x", 8 eos (no bytes).
  const entries = ["e", "]", "}", "[", "1", "{", '"a":tru', "x", ""].map((t) => utf8.encode(t));
  const table = packTokenTable(entries.length, (id) => entries[id]);
  const ends = [0, 1, 8]; // the stop ids "e" and "]", and the eos
  const t = uploadTokenTable(gpu, table);
  const grammar = createGrammar(gpu);
  const allowed = createStorage(gpu, maskWords(table.vocab) * 4);
  const bits = async (dfa?: ReturnType<typeof uploadDfa>) => {
    const mask = grammarMask(gpu, { table: t, grammar, allowed, dfa });
    run(gpu, [mask]);
    mask.destroy();
    const m = (await readU32(gpu, allowed, 1))[0];
    return [...Array(table.vocab).keys()].filter((id) => (m >>> id) & 1);
  };
  // JSON mode: after {"a":tru only the stop id "e" goes on (the trap: held back as an end, it
  // left no token); once the object is closed the end ids end it.
  const tru = stepBytes(initialState(), utf8.encode('{"a":tru'))!;
  writeGrammar(gpu, grammar, tru, ends);
  assert.deepEqual(await bits(), [0]);
  assert.deepEqual([...maskRef(tru, table, ends)], [1]);
  const done = stepBytes(initialState(), utf8.encode('{"a":true}'))!;
  writeGrammar(gpu, grammar, done, ends);
  assert.deepEqual(await bits(), [0, 1, 8]);
  // A DFA (an array of integers): "]" closes the array as text; where the array is whole, the
  // end ids end it.
  const dfa = schemaDfa({ type: "array", items: { type: "integer" } });
  const gd = uploadDfa(gpu, dfa);
  const at = (text: string) =>
    Uint32Array.of(dfaWalk(dfa, 0, utf8.encode(text)), 0, 0, 0, 0, 0, 0, 0);
  for (
    const [text, want] of [["", [3]], ["[", [1, 4]], ["[1", [1, 4]], ["[1]", [0, 1, 8]]] as const
  ) {
    writeGrammar(gpu, grammar, at(text), ends);
    assert.deepEqual(await bits(gd), want, JSON.stringify(text));
    const ref = maskDfaRef(at(text)[0], table, dfa, ends)[0];
    assert.deepEqual([...Array(table.vocab).keys()].filter((id) => (ref >>> id) & 1), want);
  }
  // The advance: "]" drawn after "[1" is text (the array closes); drawn again, it ends the answer
  // (the state stays).
  const state = createDecodeState(gpu);
  const tokens = createStorage(gpu, 8);
  const b = { table: t, grammar, state, tokens, dfa: gd };
  const first = grammarAdvance(gpu, b, { afterPrefill: true });
  const next = grammarAdvance(gpu, b);
  const adv = advance(gpu, state);
  writeGrammar(gpu, grammar, at("[1"), ends);
  writeDecodeState(gpu, state, { cacheLen: 0, position: 0, step: 0 });
  writeArray(gpu, tokens, Uint32Array.of(1, 1));
  run(gpu, [first]);
  assert.equal((await readGrammarState(gpu, grammar))[0], at("[1]")[0]);
  run(gpu, [next, adv]);
  assert.equal((await readGrammarState(gpu, grammar))[0], at("[1]")[0]);
  assert.equal(advanceDfaRef(at("[1")[0], table, dfa, 1, ends), at("[1]")[0]);
  [first, next, adv].forEach((d) => d.destroy());
  [t.offsets, t.bytes, gd.buffer, grammar, allowed, state, tokens].forEach((x) => x.destroy());
});
