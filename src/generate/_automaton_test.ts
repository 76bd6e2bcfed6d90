import assert from "node:assert/strict";
import { seeded } from "../ref/_random.ts";
import { utf8Sequences } from "./_automaton.ts";

Deno.test("utf8Sequences() covers exactly a range's encodings", () => {
  const rand = seeded(9);
  const utf8Of = (cp: number) => new TextEncoder().encode(String.fromCodePoint(cp));
  for (let k = 0; k < 200; k++) {
    const lo = 0x80 + Math.floor(rand() * 0x10ff00);
    const hi = Math.min(0x10ffff, lo + Math.floor(rand() * (rand() < 0.5 ? 300 : 200_000)));
    const seqs = utf8Sequences(lo, hi);
    const hits = (bytes: Uint8Array) =>
      seqs.filter((q) =>
        q.length === bytes.length && q.every(([a, b], i) => bytes[i] >= a && bytes[i] <= b)
      )
        .length;
    for (let i = 0; i < 50; i++) {
      // A member (one sequence each), and code points just outside (none).
      const cp = lo + Math.floor(rand() * (hi - lo + 1));
      if (cp < 0xd800 || cp > 0xdfff) {
        assert.equal(
          hits(utf8Of(cp)),
          1,
          `${cp.toString(16)} in [${lo.toString(16)}, ${hi.toString(16)}]`,
        );
      }
    }
    for (const cp of [lo - 1, hi + 1]) {
      if (cp >= 0x80 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff)) {
        assert.equal(hits(utf8Of(cp)), 0);
      }
    }
  }
});
