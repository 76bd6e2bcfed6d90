import assert from "node:assert/strict";
import { FormatTracker } from "./format_tracker.ts";
import { initialState, isComplete, Mode, packTokenTable, tokenBytes } from "./json_grammar.ts";
import { DFA_NONE, dfaWalk } from "./_automaton.ts";
import { schemaDfa } from "./json_schema.ts";
import { advanceDfaRef, advanceRef, maskDfaRef, maskRef } from "../ref/grammar.ts";
import { seeded } from "../ref/_random.ts";

const utf8 = new TextEncoder();
// Ids: 0 "e", 1 "]", 2 "}", 3 "[", 4 "1", 5 "{", 6 '"a":tru', 7 ",", 8 eos (no bytes).
const TEXTS = ["e", "]", "}", "[", "1", "{", '"a":tru', ",", ""];
const TABLE = packTokenTable(TEXTS.length, (id) => utf8.encode(TEXTS[id]));
const bytesOf = (id: number) => tokenBytes(TABLE, id);
const ENDS = [0, 1, 8]; // the stop ids "e" and "]", and the eos

Deno.test("FormatTracker: a stop id is text where the answer may not end, and ends it once whole", () => {
  // JSON mode: {"a":tru goes on with "e" (text), and "e" ends the answer once the object closes.
  const json = new FormatTracker("json_object", initialState(), ENDS, bytesOf);
  assert.deepEqual([5, 6, 0, 2].map((id) => json.push(id)), [false, false, false, false]);
  assert.ok(json.mayEnd);
  assert.equal(json.push(0), true, "the stop id ends the whole object");
  assert.equal(json.push(8), true, "so does the eos");
  // A DFA: an array of integers closes with the stop id "]" (text), which then ends it.
  const dfa = schemaDfa({ type: "array", items: { type: "integer" } });
  const arr = new FormatTracker(dfa, initialState(), ENDS, bytesOf);
  assert.deepEqual([3, 4, 7, 4].map((id) => arr.push(id)), [false, false, false, false]);
  assert.ok(!arr.mayEnd);
  assert.equal(arr.push(1), false, '"]" closes the array');
  assert.ok(arr.mayEnd);
  assert.equal(arr.push(1), true, 'a second "]" ends the answer');
  // A continued answer starts where its text left the format.
  const start = Uint32Array.of(dfaWalk(dfa, 0, utf8.encode("[1")), 0, 0, 0, 0, 0, 0, 0);
  const begun = new FormatTracker(dfa, start, [1], bytesOf);
  assert.deepEqual([begun.push(1), begun.push(1)], [false, true]);
});

Deno.test("FormatTracker follows the GPU's grammar advance (the reference) over random answers", () => {
  const rand = seeded(5);
  const dfa = schemaDfa({ type: "array", items: { type: "integer" } });
  for (let run = 0; run < 200; run++) {
    const useDfa = run % 2 === 1;
    const tracker = new FormatTracker(useDfa ? dfa : "json_object", initialState(), ENDS, bytesOf);
    let json = initialState();
    let q = 0;
    for (let step = 0; step < 12; step++) {
      // An allowed id mostly (the mask's), now and then any id (a refused one: FAILED).
      const m = useDfa ? maskDfaRef(q, TABLE, dfa, ENDS) : maskRef(json, TABLE, ENDS);
      const ok = [...Array(TABLE.vocab).keys()].filter((id) => (m[0] >>> id) & 1);
      const id = ok.length && rand() < 0.9
        ? ok[Math.floor(rand() * ok.length)]
        : Math.floor(rand() * TABLE.vocab);
      const mayEnd = useDfa
        ? q === DFA_NONE || dfa.accept[q] === 1
        : isComplete(json) || json[0] === Mode.FAILED;
      assert.equal(tracker.mayEnd, mayEnd);
      const ends = tracker.push(id);
      assert.equal(ends, ENDS.includes(id) && mayEnd, `run ${run} step ${step} id ${id}`);
      if (ends) break;
      if (useDfa) q = advanceDfaRef(q, TABLE, dfa, id, ENDS);
      else json = advanceRef(json, TABLE, id, ENDS);
    }
  }
});
