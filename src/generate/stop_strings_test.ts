import assert from "node:assert/strict";
import { StopStringFilter } from "./stop_strings.ts";

/** Feeds `pieces` and returns [emitted deltas, whether it stopped, the final flush]. */
function feed(stops: string[], pieces: string[]): [string[], boolean, string] {
  const f = new StopStringFilter(stops);
  const out: string[] = [];
  for (const p of pieces) {
    const r = f.push(p);
    out.push(r.text);
    if (r.stopped) return [out, true, f.flush()];
  }
  return [out, false, f.flush()];
}

Deno.test("StopStringFilter.push() passes text through when no stop string can start", () => {
  assert.deepEqual(feed(["STOP"], ["hello", " world"]), [["hello", " world"], false, ""]);
  assert.deepEqual(feed([], ["a", "b"]), [["a", "b"], false, ""]);
});

Deno.test("StopStringFilter.push() holds back a possible beginning and cuts at a stop split across pieces", () => {
  const [out, stopped] = feed(["</answer>"], ["The answer is 4", "2</", "ans", "wer> and more"]);
  assert.deepEqual(out, ["The answer is 4", "2", "", ""]);
  assert.equal(stopped, true);
});

Deno.test("StopStringFilter.push() releases held text once it stops matching", () => {
  const [out, stopped, tail] = feed(["STOP"], ["ab S", "T", "ring", " end ST"]);
  assert.deepEqual(out, ["ab ", "", "STring", " end "]);
  assert.equal(stopped, false);
  assert.equal(tail, "ST", "flush() gives back the partial match at the end");
});

Deno.test("StopStringFilter.push() cuts at the earliest of several stop strings", () => {
  assert.deepEqual(feed(["world", "lo w"], ["hello world"]), [["hel"], true, ""]);
  // "a" is held (it may begin "abc"); then "abc" at 0 is earlier than "b" at 1.
  assert.deepEqual(feed(["b", "abc"], ["xa", "bc"]), [["x", ""], true, ""]);
});

Deno.test("StopStringFilter.push() keeps the longest partial match among stop strings", () => {
  // "xxab" ends with "ab" (prefix of "abc") and "b" (prefix of "bq"): hold "ab".
  assert.deepEqual(feed(["abc", "bq"], ["xxab"]), [["xx"], false, "ab"]);
});

Deno.test("StopStringFilter.push() emits nothing after a stop", () => {
  const f = new StopStringFilter(["\n\n"]);
  assert.deepEqual(f.push("line\n"), { text: "line", stopped: false });
  assert.deepEqual(f.push("\nnext"), { text: "", stopped: true });
  assert.deepEqual(f.push("more"), { text: "", stopped: true });
  assert.equal(f.flush(), "");
  assert.equal(f.stopped, true);
});

Deno.test("StopStringFilter.push() handles stop strings of non-ASCII characters", () => {
  assert.deepEqual(feed(["。\n"], ["你好。", "\n再见"]), [["你好", ""], true, ""]);
  assert.deepEqual(feed(["🙂!"], ["ok 🙂", "?"]), [["ok ", "🙂?"], false, ""]);
});

Deno.test("StopStringFilter.push() not armed keeps the tail a stop string may begin with, and stops only once armed", () => {
  const f = new StopStringFilter([" </a>"]);
  // A whole stop string before the boundary does not stop (min_tokens) ...
  assert.deepEqual(f.push("x </a>y", false), { text: "x </a>y", stopped: false });
  // ... and one begun before it and completed after it does.
  assert.deepEqual(f.push(" <", false), { text: "", stopped: false });
  assert.deepEqual(f.push("/a", false), { text: "", stopped: false });
  assert.deepEqual(f.push(">z", true), { text: "", stopped: true });
});

Deno.test("StopStringFilter.push() armed again does not stop on a stop string that ended while unarmed", () => {
  // "\n" is whole, and the held tail of "\n\n": armed, only a match ending in the new text counts.
  const f = new StopStringFilter(["\n\n", "\n"]);
  assert.deepEqual(f.push("a\n", false), { text: "a", stopped: false });
  assert.deepEqual(f.push("b", true), { text: "\nb", stopped: false });
  assert.deepEqual(f.push("c\n", true), { text: "c", stopped: true });
});
