import assert from "node:assert/strict";
import { seeded } from "../ref/_random.ts";
import { SchemaError } from "../errors.ts";
import {
  determinize,
  dfaAccepts,
  embed,
  hexSequences,
  intersect,
  MAX_MULTIPLE_STATES,
  MAX_MULTIPLE_UNITS,
  multipleDfa,
  Nfa,
  utf8Sequences,
} from "./_automaton.ts";

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

Deno.test("Nfa.integer() accepts exactly the integers of its range, in JSON's digits", () => {
  const dfa = (lo: number, hi: number) => {
    const nfa = new Nfa();
    const f = nfa.integer(lo, hi);
    return determinize(nfa, f.start, f.end, "the range");
  };
  const ends = [-Infinity, -1000, -101, -100, -99, -10, -9, -1, 0, 1, 9, 10, 19, 99, 100, 123];
  ends.push(999, 1000, 1234, Infinity);
  for (const lo of ends) {
    for (const hi of ends) {
      if (lo > hi || lo === Infinity || hi === -Infinity) continue;
      const d = dfa(lo, hi);
      for (let x = -1300; x <= 1300; x++) {
        assert.equal(dfaAccepts(d, String(x)), x >= lo && x <= hi, `${x} in [${lo}, ${hi}]`);
      }
      for (const t of ["00", "01", "-01", "-00", "", "-", "+1", "1.0", "1e3"]) {
        assert.ok(!dfaAccepts(d, t), `${t} in [${lo}, ${hi}]`);
      }
      assert.equal(dfaAccepts(d, "-0"), lo <= 0 && hi >= 0, `-0 in [${lo}, ${hi}]`);
    }
  }
  const safe = dfa(-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  assert.deepEqual(
    ["9007199254740991", "9007199254740992", "-9007199254740991", "-9007199254740992"].map((t) =>
      dfaAccepts(safe, t)
    ),
    [true, false, true, false],
  );
});

Deno.test("Nfa.stringLength() counts code points of the decoded string, as JSON Schema does", () => {
  const rand = seeded(5);
  // Escapes are one character each; a surrogate pair of \u escapes is one (JSON.parse joins it),
  // a lone surrogate's escape one; invalid pieces make the text no JSON string at all.
  const pieces = ["a", " ", "é", "😀", "中", "\x7f", "\\n", '\\"', "\\\\", "\\/", "\\u00e9"];
  pieces.push("\\u0041", "\\ud83d", "\\ude00", "\\uD83D\\uDE00", "\\uDBFF", "\\uDC00", "\\uD7FF");
  pieces.push("\\uE000", "\\uD800\\u0041", "\\ud800\\ud800", "\\x", "\n", "\\u12", '"', "\\");
  const bounds: [number, number | undefined][] = [[0, 0], [0, 1], [1, 1], [2, 2], [0, 3], [2, 5]];
  bounds.push([3, undefined], [0, undefined], [1, undefined], [5, 8]);
  for (const [min, max] of bounds) {
    const nfa = new Nfa();
    const f = nfa.stringLength(min, max);
    const dfa = determinize(nfa, f.start, f.end, "the string");
    for (let k = 0; k < 4000; k++) {
      const n = Math.floor(rand() * 10);
      const body = Array.from({ length: n }, () => pieces[Math.floor(rand() * pieces.length)]);
      const text = `"${body.join("")}"`;
      let want: boolean;
      try {
        const chars = [...JSON.parse(text)].length;
        want = chars >= min && chars <= (max ?? Infinity);
      } catch {
        want = false;
      }
      assert.equal(dfaAccepts(dfa, text), want, `${text} in [${min}, ${max}]`);
    }
  }
});

Deno.test("hexSequences() spells exactly a range's 4-digit hex numbers, in either case", () => {
  const rand = seeded(12);
  const hex = (n: number) => n.toString(16).padStart(4, "0");
  for (let k = 0; k < 300; k++) {
    const lo = Math.floor(rand() * 0x10000);
    const hi = Math.min(0xffff, lo + Math.floor(rand() * (rand() < 0.5 ? 40 : 30000)));
    const seqs = hexSequences(lo, hi);
    const hits = (s: string) =>
      seqs.filter((q) =>
        q.every((ranges, i) =>
          ranges.some(([a, b]) => s.charCodeAt(i) >= a && s.charCodeAt(i) <= b)
        )
      ).length;
    for (const n of [lo, hi, lo + Math.floor(rand() * (hi - lo + 1))]) {
      assert.equal(hits(hex(n)), 1, `${hex(n)} in [${hex(lo)}, ${hex(hi)}]`);
      assert.equal(hits(hex(n).toUpperCase()), 1);
    }
    for (const n of [lo - 1, hi + 1]) if (n >= 0 && n <= 0xffff) assert.equal(hits(hex(n)), 0);
  }
});

Deno.test("intersect() accepts what both accept; embed() joins a DFA into an NFA unchanged", () => {
  const nfa = new Nfa();
  const a = nfa.stringLength(2, 3), b = nfa.stringLength(3, 5);
  const both = intersect(
    determinize(nfa, a.start, a.end, "a"),
    determinize(nfa, b.start, b.end, "b"),
    "both",
  );
  for (const t of ['"ab"', '"abc"', '"a\\u00e9c"', '"abcd"', '""']) {
    assert.equal(dfaAccepts(both, t), t === '"abc"' || t === '"a\\u00e9c"', t);
  }
  const outer = new Nfa();
  const f = outer.seq([outer.literal([0x5b]), embed(outer, both), outer.literal([0x5d])]);
  const d = determinize(outer, f.start, f.end, "list");
  assert.ok(dfaAccepts(d, '["abc"]') && !dfaAccepts(d, '["ab"]') && !dfaAccepts(d, '"abc"'));
  // Nothing in common: refused as matching nothing.
  const c = nfa.stringLength(4, 4);
  assert.throws(
    () => intersect(both, determinize(nfa, c.start, c.end, "c"), "both and c"),
    /both and c matches nothing/,
  );
});

/** Whether decimal text `t` (`-?d+(.d+)?`) is a whole multiple of a · 10^-k: exactly, in BigInts. */
function isMultipleText(t: string, a: number, k: number): boolean {
  const [int, frac = ""] = t.replace(/^-/, "").split(".");
  const scale = Math.max(frac.length, k);
  return BigInt(int + frac.padEnd(scale, "0")) % (BigInt(a) * 10n ** BigInt(scale - k)) === 0n;
}

/** n · 10^-k as JSON writes a decimal: `-?int(.frac)?`, the fraction k digits (none for k 0). */
function scaledText(n: bigint, k: number): string {
  const digits = (n < 0n ? -n : n).toString().padStart(k + 1, "0");
  const int = digits.slice(0, digits.length - k), frac = digits.slice(digits.length - k);
  return (n < 0n ? "-" : "") + int + (k ? "." + frac : "");
}

Deno.test("multipleDfa() accepts exactly the multiples of a · 10^-k, in every spelling without exponent", () => {
  const rand = seeded(11);
  // A random decimal spelling: digits biased to 0 and 5, so that multiples come up often.
  const digit = () => "00000512346789"[Math.floor(rand() * 14)];
  const spelling = () => {
    const int = rand() < 0.3 ? "0" : String(1 + Math.floor(rand() * (rand() < 0.5 ? 30 : 30000)));
    const frac = Array.from({ length: Math.floor(rand() * 6) }, digit).join("");
    return (rand() < 0.4 ? "-" : "") + int + (frac ? "." + frac : "");
  };
  const as = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 25, 40, 64, 75, 125, 1000, 1024, 4096];
  for (const a of as) {
    for (const k of [0, 1, 2, 3]) {
      const dfa = multipleDfa(a, k, "m");
      const at = `${a} · 10^-${k}`;
      for (let x = -1000; x <= 1000; x++) {
        const t = String(x);
        assert.equal(dfaAccepts(dfa, t), isMultipleText(t, a, k), `${t} of ${at}`);
      }
      for (let i = 0; i < 300; i++) {
        const t = spelling();
        assert.equal(dfaAccepts(dfa, t), isMultipleText(t, a, k), `${t} of ${at}`);
      }
      // Every multiple, as written and with a zero more in its fraction.
      for (let n = -200n; n <= 200n; n++) {
        const t = scaledText(n * BigInt(a), k);
        assert.ok(dfaAccepts(dfa, t), `${t} of ${at}`);
        assert.ok(dfaAccepts(dfa, t + (k ? "0" : ".0")), `${t}0 of ${at}`);
      }
      assert.ok(dfaAccepts(dfa, "-0") && dfaAccepts(dfa, "0.000"), at);
      for (const t of ["", "-", "01", "-01", "00", "0.", "-.0", ".0", "+0", "--0", "0e0", "0E1"]) {
        assert.ok(!dfaAccepts(dfa, t), `${t} of ${at}`);
      }
    }
  }
});

Deno.test("multipleDfa() merges remainders no digit tells apart, and refuses past its budgets", () => {
  // Divisibility by 1000 needs 4 classes (how many of the last three digits are 0), by 7 all 7;
  // each class a whole part, a point and max(k, 1) fraction states, beside start, "-" and "0".
  assert.equal(multipleDfa(1000, 0, "m").states, 3 + 4 * 3);
  assert.equal(multipleDfa(7, 0, "m").states, 3 + 7 * 3);
  assert.equal(multipleDfa(1, 2, "m").states, 3 + 1 * 4);
  assert.ok(multipleDfa(MAX_MULTIPLE_UNITS, 0, "m").states < 30);
  const refused: [() => unknown, RegExp | ErrorConstructor][] = [
    [
      () => multipleDfa(MAX_MULTIPLE_UNITS + 1, 0, "schema.multipleOf 100001"),
      /^schema\.multipleOf 100001 is 100001 units of its last decimal place: up to 100000/,
    ],
    [
      () => multipleDfa(9999, 0, "m"),
      new RegExp(
        `^m needs at least 30000 automaton states \\(9999 remainders by 9999, through 0 ` +
          `fraction digits\\): up to ${MAX_MULTIPLE_STATES} are supported`,
      ),
    ],
    // 2^16: few digits prime to 10, but its last 16 digits tell thousands of classes apart.
    [() => multipleDfa(65536, 0, "m"), /^m needs \d+ automaton states \(\d+ remainders by 65536/],
    [() => multipleDfa(0, 0, "m"), RangeError],
    [() => multipleDfa(2.5, 0, "m"), RangeError],
    [() => multipleDfa(5, -1, "m"), RangeError],
  ];
  for (const [f, why] of refused) {
    assert.throws(
      f,
      (e) =>
        why instanceof RegExp ? e instanceof SchemaError && why.test(e.message) : e instanceof why,
      String(why),
    );
  }
});
