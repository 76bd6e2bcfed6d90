/**
 * Regular expressions as a format (vLLM's guided_regex): a pattern compiled to the byte DFA of the
 * answers that match it whole ({@link regexDfa}), which the GPU walks as it walks a schema's.
 * @module
 */
import { preview, SchemaError } from "../errors.ts";
import { determinize, type Dfa, type Frag, Nfa } from "./_automaton.ts";

/** Deepest groups may nest. */
const MAX_GROUP_DEPTH = 64;

/** Most repetitions a `{n,m}` bound may name. */
export const MAX_REPEAT = 256;

/** A set of characters: ASCII by bitmap, the rest as code point ranges (from 0x80 on). */
interface CharSet {
  ascii: boolean[];
  /** [lo, hi] code points, each ≥ 0x80 (surrogates left out when compiled). */
  ranges: [number, number][];
}

/** Every code point past ASCII. */
const NON_ASCII: [number, number] = [0x80, 0x10ffff];

/** Every code point (`[\s\S]`): a lone surrogate too, as a JSON string may hold one. */
const ANY: CharSet = { ascii: Array(128).fill(true), ranges: [NON_ASCII] };

/**
 * ECMA-262's `\s` past ASCII (WhiteSpace and LineTerminator: U+00A0, U+1680, U+2000–U+200A,
 * U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF); in ASCII it is Python's (tab to CR, space).
 */
const ECMA_SPACE: [number, number][] = [
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];

/**
 * Which language's meanings a pattern has: Python's `re` (vLLM's guided_regex, matched whole) or
 * ECMA-262's (JSON Schema's `pattern`, searched for anywhere in the string unless anchored).
 * They differ here in `.` (ECMA: no `\r`, U+2028 or U+2029 either), `\s` (ECMA: Unicode's
 * spaces too), `{,m}` (Python's only) and where `^` / `$` may stand.
 */
export type Dialect = "python" | "ecma";

type Node =
  | { k: "set"; set: CharSet }
  | { k: "seq"; items: Node[] }
  | { k: "alt"; items: Node[] }
  | { k: "rep"; node: Node; min: number; max?: number };

const asciiSet = (test: (b: number) => boolean): CharSet => ({
  ascii: Array.from({ length: 128 }, (_, b) => test(b)),
  ranges: [],
});
const isWordByte = (b: number) =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f;
const isSpaceByte = (b: number) => b === 0x20 || (b >= 0x09 && b <= 0x0d);
const isDigitByte = (b: number) => b >= 0x30 && b <= 0x39;

/**
 * A class escape's set (\d \w \s and their complements: ASCII meanings, but ECMA's `\s` takes
 * {@link ECMA_SPACE} too), or undefined.
 */
function classEscape(c: string, dialect: Dialect): CharSet | undefined {
  const base = { d: isDigitByte, w: isWordByte, s: isSpaceByte }[c.toLowerCase()];
  if (!base) return undefined;
  const wide = dialect === "ecma" && c.toLowerCase() === "s" ? ECMA_SPACE : [];
  if (c === c.toLowerCase()) return { ...asciiSet(base), ranges: [...wide] };
  const set = asciiSet((b) => !base(b));
  set.ranges = complement(wide);
  return set;
}

/** The code points past ASCII that `ranges` leave out. */
function complement(ranges: [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  let from = 0x80;
  for (const [lo, hi] of sorted) {
    if (lo > from) out.push([from, lo - 1]);
    from = Math.max(from, hi + 1);
  }
  if (from <= 0x10ffff) out.push([from, 0x10ffff]);
  return out;
}

/** Parses a pattern (Python / JavaScript syntax, the subset regexDfa documents) into a tree. */
class RegexParser {
  #at = 0;
  #depth = 0;
  /** Whether the last sequence read ended in `$`. */
  #endAnchor = false;
  constructor(
    readonly src: string,
    readonly dialect: Dialect = "python",
    readonly label = "regex",
  ) {}

  fail(what: string): never {
    const shown = this.src.length > 80 ? this.src.slice(0, 77) + "…" : this.src;
    throw new SchemaError(`${this.label} ${JSON.stringify(shown)} at ${this.#at}: ${what}`);
  }

  parse(): Node {
    // Whole-answer anchors are what the match means anyway.
    if (this.src.startsWith("^")) this.#at = 1;
    const node = this.#alt();
    if (this.#at < this.src.length) this.fail(`unexpected "${this.src[this.#at]}"`);
    return node;
  }

  /**
   * The pattern as JSON Schema's search: each top-level alternative found anywhere in the string
   * — any characters before it unless it starts with `^`, after it unless it ends with `$` (so
   * `^a|b$` is "starts with a, or ends with b", as ECMA reads it).
   */
  parseSearch(): Node {
    const any: Node = { k: "rep", node: { k: "set", set: ANY }, min: 0 };
    const alts: Node[] = [];
    do {
      if (alts.length) this.#at++; // "|"
      const start = this.#peek() === "^";
      if (start) this.#at++;
      this.#endAnchor = false;
      const node = this.#seq();
      alts.push({
        k: "seq",
        items: [...(start ? [] : [any]), node, ...(this.#endAnchor ? [] : [any])],
      });
    } while (this.#peek() === "|");
    if (this.#at < this.src.length) this.fail(`unexpected "${this.src[this.#at]}"`);
    return alts.length === 1 ? alts[0] : { k: "alt", items: alts };
  }

  #peek(): string | undefined {
    return this.src[this.#at];
  }

  /** The next character (a whole code point); "" at the end. */
  #next(): string {
    if (this.#at >= this.src.length) return "";
    const c = String.fromCodePoint(this.src.codePointAt(this.#at)!);
    this.#at += c.length;
    return c;
  }

  #alt(): Node {
    const items = [this.#seq()];
    while (this.#peek() === "|") {
      this.#at++;
      items.push(this.#seq());
    }
    return items.length === 1 ? items[0] : { k: "alt", items };
  }

  #seq(): Node {
    const items: Node[] = [];
    for (let c = this.#peek(); c !== undefined && c !== "|" && c !== ")"; c = this.#peek()) {
      // "$" ends the answer: at the pattern's end, or (ECMA's search) a top-level alternative's.
      const last = this.#at === this.src.length - 1 ||
        (this.dialect === "ecma" && this.#depth === 0 && this.src[this.#at + 1] === "|");
      if (c === "$" && last) {
        this.#at++;
        this.#endAnchor = true;
        break;
      }
      items.push(this.#quantified(this.#atom()));
    }
    return { k: "seq", items };
  }

  #quantified(node: Node): Node {
    let min: number, max: number | undefined;
    const c = this.#peek();
    if (c === "*") [min, max] = [0, undefined];
    else if (c === "+") [min, max] = [1, undefined];
    else if (c === "?") [min, max] = [0, 1];
    else if (c === "{") {
      const m = this.#bound();
      if (!m) return node; // a literal "{", as Python reads it
      min = m.min;
      max = m.max;
      if (min > MAX_REPEAT || (max ?? 0) > MAX_REPEAT || (max !== undefined && max < min)) {
        this.fail(`${m.text}: bounds must be ordered and at most ${MAX_REPEAT}`);
      }
      this.#at += m.text.length - 1;
    } else return node;
    this.#at++;
    if (this.#peek() === "?") this.#at++; // lazy: the same answers match
    const after = this.#peek();
    if (after === "+") this.fail("possessive quantifiers are not supported");
    if ((after !== undefined && "*?".includes(after)) || (after === "{" && this.#bound())) {
      this.fail("a quantifier on a quantifier");
    }
    return { k: "rep", node, min, max };
  }

  /** A `{n}`, `{n,}`, `{n,m}` or `{,m}` bound here (Python's forms), or undefined: a literal. */
  #bound(): { text: string; min: number; max?: number } | undefined {
    const m = /^\{(\d*)(,(\d*))?\}/.exec(this.src.slice(this.#at));
    if (!m || (m[1] === "" && m[2] === undefined)) return undefined;
    if (m[1] === "" && this.dialect === "ecma") {
      this.fail(`${m[0]} is Python's, not ECMA-262's: write {0${m[0].slice(1)}`);
    }
    const min = m[1] === "" ? 0 : Number(m[1]);
    return {
      text: m[0],
      min,
      max: m[2] === undefined ? min : m[3] === "" ? undefined : Number(m[3]),
    };
  }

  #atom(): Node {
    const c = this.#next();
    switch (c) {
      case "(": {
        if (++this.#depth > MAX_GROUP_DEPTH) {
          this.fail(`groups nest deeper than ${MAX_GROUP_DEPTH}`);
        }
        if (this.#peek() === "?") {
          const m = /^\?(:|P?<[A-Za-z_][A-Za-z0-9_]*>)/.exec(this.src.slice(this.#at));
          if (!m) this.fail("lookarounds, flags and other (?…) groups are not supported");
          this.#at += m[0].length;
        }
        const node = this.#alt();
        if (this.#next() !== ")") this.fail('a "(" without its ")"');
        this.#depth--;
        return node;
      }
      case ")":
        return this.fail('a ")" without its "("');
      case "[":
        return { k: "set", set: this.#class() };
      case ".": {
        // Python: any character but \n. ECMA: no line terminator (\n \r U+2028 U+2029).
        if (this.dialect === "python") {
          const set = asciiSet((b) => b !== 0x0a);
          set.ranges.push(NON_ASCII);
          return { k: "set", set };
        }
        const set = asciiSet((b) => b !== 0x0a && b !== 0x0d);
        set.ranges.push([0x80, 0x2027], [0x202a, 0x10ffff]);
        return { k: "set", set };
      }
      case "\\":
        return { k: "set", set: this.#escape(false) };
      case "^":
      case "$":
        return this.fail(
          this.dialect === "python"
            ? `"${c}" is only supported at the pattern's start / end (it matches whole)`
            : `"${c}" is only supported at the start / end of the pattern or of its top-level ` +
              'alternatives ("^a|b$"): not inside a group or mid-pattern',
        );
      case "*":
      case "+":
      case "?":
        return this.fail(`"${c}" with nothing to repeat`);
    }
    return { k: "set", set: this.#char(c) };
  }

  #char(c: string): CharSet {
    const cp = c.codePointAt(0)!;
    if (cp >= 0xd800 && cp <= 0xdfff) this.fail("a lone surrogate is no character");
    const set = asciiSet((b) => b === cp);
    if (cp >= 0x80) set.ranges.push([cp, cp]);
    return set;
  }

  /** After a backslash: a class escape, or one character. */
  #escape(inClass: boolean): CharSet {
    const c = this.#next();
    if (c === "") this.fail("a pattern ending in a backslash");
    const cls = classEscape(c, this.dialect);
    if (cls) return cls;
    if (inClass && c === "b") return this.#char("\b"); // backspace, in both languages
    if (c === "0" && /[0-9]/.test(this.#peek() ?? "")) this.fail("octal escapes are not supported");
    const simple: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, "0": 0 };
    if (c in simple) return this.#char(String.fromCharCode(simple[c]));
    if (c === "x" || c === "u") {
      const n = c === "x" ? 2 : 4;
      const hex = this.src.slice(this.#at, this.#at + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) this.fail(`\\${c} needs ${n} hex digits`);
      this.#at += n;
      let cp = parseInt(hex, 16);
      // A surrogate pair written as two \u escapes is one character (as JavaScript reads it).
      const low = /^\\u(d[c-f][0-9a-f]{2})/i.exec(this.src.slice(this.#at));
      if (c === "u" && cp >= 0xd800 && cp <= 0xdbff && low) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (parseInt(low[1], 16) - 0xdc00);
        this.#at += 6;
      }
      return this.#char(String.fromCodePoint(cp));
    }

    if (/[1-9]/.test(c)) this.fail("backreferences are not supported");
    if (!inClass && "bBAZzG".includes(c)) {
      this.fail(`\\${c} (an anchor or boundary) is not supported`);
    }
    if (/[A-Za-z]/.test(c)) this.fail(`\\${c} is not a supported escape`);
    return this.#char(c);
  }

  #class(): CharSet {
    const negate = this.#peek() === "^";
    if (negate) this.#at++;
    const set = asciiSet(() => false);
    const add = (s: CharSet) => {
      s.ascii.forEach((on, b) => on && (set.ascii[b] = true));
      set.ranges.push(...s.ranges);
    };
    // Python takes a "]" right after "[" or "[^" as a literal; in ECMA it closes the class:
    // "[]" matches nothing and "[^]" any character.
    let first = this.dialect !== "ecma";
    while (true) {
      const c = this.#peek();
      if (c === undefined) this.fail('a "[" without its "]"');
      if (c === "]" && !first) break;
      first = false;
      const lo = c === "\\" ? (this.#at++, this.#escape(true)) : this.#char(this.#next());
      const single = (s: CharSet) => {
        const on = s.ascii.findIndex((x) => x);
        const one = s.ranges.length === 1 && s.ranges[0][0] === s.ranges[0][1];
        const count = s.ascii.filter((x) => x).length + (one ? 1 : s.ranges.length ? 2 : 0);
        return count === 1 ? (on >= 0 ? on : s.ranges[0][0]) : undefined;
      };
      if (
        this.#peek() === "-" && this.src[this.#at + 1] !== "]" &&
        this.src[this.#at + 1] !== undefined
      ) {
        this.#at++;
        const hiC = this.#peek() === "\\"
          ? (this.#at++, this.#escape(true))
          : this.#char(this.#next());
        const [a, b] = [single(lo), single(hiC)];
        if (a === undefined || b === undefined || a > b) {
          this.fail("a range must go from one character up to another");
        }
        const range = asciiSet((x) => x >= a && x <= b);
        if (b >= 0x80) range.ranges.push([Math.max(a, 0x80), b]);
        add(range);
      } else add(lo);
    }
    this.#at++; // "]"
    if (!negate) return set;
    const out = asciiSet((b) => !set.ascii[b]);
    out.ranges = complement(set.ranges);
    return out;
  }
}

/** A set as sorted, disjoint, non-adjacent [lo, hi] code point ranges. */
function setRanges(set: CharSet): [number, number][] {
  const all: [number, number][] = [];
  set.ascii.forEach((on, b) => on && all.push([b, b]));
  all.push(...set.ranges);
  all.sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [lo, hi] of all) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/**
 * Compiles a regex tree into the NFA by Thompson's construction; each set as `charSet` makes it —
 * UTF-8 bytes (the default), or one edge of code point ranges for {@link jsonStringDfa}.
 */
function regexFrag(nfa: Nfa, node: Node, charSet = utf8Set): Frag {
  switch (node.k) {
    case "set":
      return charSet(nfa, node.set);
    case "seq": {
      if (!node.items.length) {
        const s = nfa.state();
        return { start: s, end: s };
      }
      return nfa.seq(node.items.map((n) => regexFrag(nfa, n, charSet)));
    }
    case "alt":
      return nfa.alt(node.items.map((n) => regexFrag(nfa, n, charSet)));
    case "rep": {
      const start = nfa.state();
      let at = start;
      for (let i = 0; i < node.min; i++) {
        at = nfa.seq([{ start: at, end: at }, regexFrag(nfa, node.node, charSet)]).end;
      }
      const end = nfa.state();
      nfa.empty(at, end);
      if (node.max === undefined) {
        const more = regexFrag(nfa, node.node, charSet);
        nfa.empty(at, more.start);
        nfa.empty(more.end, at);
      } else {
        for (let i = node.min; i < node.max; i++) {
          at = nfa.seq([{ start: at, end: at }, regexFrag(nfa, node.node, charSet)]).end;
          nfa.empty(at, end);
        }
      }
      return { start, end };
    }
  }
}

/**
 * Edges from `a` to `b` for the code points of `ranges` written raw in a JSON string: their UTF-8
 * bytes, less those JSON requires escaped (controls, `"`, `\`) and surrogates.
 */
function rawCharacters(nfa: Nfa, a: number, b: number, ranges: [number, number][]): void {
  for (const [lo, hi] of ranges) {
    for (const [x, y] of [[0x20, 0x21], [0x23, 0x5b], [0x5d, hi]]) {
      const [l, h] = [Math.max(lo, x), Math.min(hi, y)];
      if (l <= h) nfa.utf8Range(a, l, h, b);
    }
  }
}

/** A set as UTF-8 byte edges (surrogates left out: no answer's bytes can hold one). */
function utf8Set(nfa: Nfa, set: CharSet): Frag {
  const f = nfa.frag();
  set.ascii.forEach((on, b) => on && nfa.byte(f.start, b, f.end));
  for (const [lo, hi] of set.ranges) nfa.utf8Range(f.start, lo, hi, f.end);
  return f;
}

/**
 * The DFA of the JSON string literals (quotes and all) whose value — as JSON.parse decodes it —
 * `pattern` matches with JSON Schema's meaning: an ECMA-262 regex searched for anywhere in the
 * string unless anchored (`^` / `$` at the ends of the pattern or of its top-level
 * alternatives). The syntax is {@link regexDfa}'s with ECMA's meanings: `.` no line terminator,
 * `\s` Unicode's spaces (`\d` `\w` ASCII, as ECMA's without the `i` flag), `{,m}` refused.
 *
 * The pattern is compiled over code points, then each character it reads is spelled in every way
 * the string grammar ({@link Nfa.string}) may write it (Nfa.jsonCharacters): raw, a short escape,
 * `\uXXXX` in either case, a surrogate pair of escapes; a lone surrogate's escape is a character
 * of its own, as JSON.parse reads it. `label` names the pattern in errors. With `raw`, each
 * character is written as itself only (control characters, `"` and `\` then cannot be): a
 * format's form (its characters never need escaping), and an automaton about a sixth the size —
 * small enough to count its characters against a length bound.
 * @throws SchemaError for syntax it does not support (backreferences, lookarounds, …), a pattern
 * no string matches, or one past the compile budgets
 */
export function jsonStringDfa(pattern: string, label = "pattern", raw = false): Dfa {
  const tree = new RegexParser(pattern, "ecma", label).parseSearch();
  // Over code points: each set one edge of its ranges (Nfa stores any numbers as an edge's ends).
  const cp = new Nfa();
  const body = regexFrag(cp, tree, (nfa, set) => {
    const f = nfa.frag();
    for (const [lo, hi] of setRanges(set)) nfa.range(f.start, lo, hi, f.end);
    return f;
  });
  // Then over bytes, two states per code point state: no high surrogate's escape just read (N),
  // or one (H: a low one's escape would join it) — Nfa.stringLength's two tracks.
  const nfa = new Nfa();
  const N = cp.edges.map(() => nfa.state()), H = cp.edges.map(() => nfa.state());
  cp.edges.forEach((edges, q) => {
    for (const t of cp.eps[q]) (nfa.empty(N[q], N[t]), nfa.empty(H[q], H[t]));
    // A set's ranges all go to one target: one character's encodings for them together.
    const byTarget = new Map<number, [number, number][]>();
    for (let i = 0; i < edges.length; i += 3) {
      const list = byTarget.get(edges[i + 2]) ?? [];
      list.push([edges[i], edges[i + 1]]);
      byTarget.set(edges[i + 2], list);
    }
    for (const [t, ranges] of byTarget) {
      if (!raw) nfa.jsonCharacters(N[q], H[q], N[t], H[t], ranges);
      else rawCharacters(nfa, N[q], N[t], ranges);
    }
  });
  const f = nfa.frag();
  nfa.byte(f.start, 0x22, N[body.start]);
  nfa.byte(N[body.end], 0x22, f.end);
  nfa.byte(H[body.end], 0x22, f.end);
  return determinize(nfa, f.start, f.end, `${label} ${JSON.stringify(pattern)}`);
}

/**
 * The DFA of the answers that match `pattern` whole (vLLM's guided_regex). The syntax is Python's
 * `re` where JavaScript agrees: literals and escapes (`\n`, `\xHH`, `\uHHHH` — a surrogate pair
 * of them one character —, `\.`), `.` (any character but `\n`, as Python's), classes `[a-z\d_]`,
 * `[\u4e00-\u9fff]` and `[^…]` (any characters, as UTF-8 byte ranges), `\d \w \s` and
 * `\D \W \S` (ASCII meanings, as Python's re.ASCII), groups `(…)`, `(?:…)`, `(?P<name>…)`, `|`,
 * `* + ?` and `{n}`, `{n,}`, `{,m}`, `{n,m}` (≤ {@link MAX_REPEAT}; lazy forms match the same
 * answers), and `^` / `$` at the ends. Backreferences, lookarounds, inline flags, possessive
 * quantifiers, octal escapes and `\b` (in a class: backspace) are refused, as is a pattern that
 * matches nothing or one whose automaton passes the compile budgets ({@link MAX_DFA_WORK}: nested
 * bounded repeats such as `([a-z]{1,20} ?){1,30}` can).
 * @throws SchemaError saying where the pattern is not supported
 */
export function regexDfa(pattern: unknown): Dfa {
  if (typeof pattern !== "string" || pattern === "") {
    throw new SchemaError(`regex must be a non-empty pattern, got ${preview(pattern)}`);
  }
  const tree = new RegexParser(pattern).parse();
  const nfa = new Nfa();
  const f = regexFrag(nfa, tree);
  return determinize(nfa, f.start, f.end, "the regex");
}
