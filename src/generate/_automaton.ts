/**
 * Byte-level automata for structured outputs (src/generate/json_schema.ts, src/generate/regex.ts):
 * an NFA built fragment by fragment (Thompson's construction, with JSON's strings and numbers and
 * UTF-8 ranges as pieces), determinized into the byte DFA the GPU walks (kernels/grammar.wgsl
 * `#if DFA`) under budgets that bound the work, its dead ends pruned.
 * @module
 */
import { SchemaError } from "../errors.ts";

/** Most DFA states a schema may compile to (its table: 1 KiB a state on the GPU). */
export const MAX_DFA_STATES = 16384;
/**
 * Most steps (NFA states visited) the subset construction may take: a few seconds of one core at
 * worst, past which a constraint is refused as too large.
 */
export const MAX_DFA_WORK = 10_000_000;
/** Most NFA states a schema's compilation may make (each $ref use and list item is a copy). */
export const MAX_NFA_STATES = 200_000;

/** DFA transition to nowhere. */
export const DFA_NONE = 0xffffffff;

/**
 * A byte-level DFA: state 0 is the start; `next[s · 256 + b]` the state after byte b in state s
 * ({@link DFA_NONE}: refused), `accept[s]` 1 where the answer may end.
 */
export interface Dfa {
  states: number;
  /** (states · 256) u32 */
  next: Uint32Array;
  /** (states) u8 */
  accept: Uint8Array;
}

/** The state after `bytes` from `s`, or DFA_NONE. */
export function dfaWalk(dfa: Dfa, s: number, bytes: ArrayLike<number>): number {
  for (let i = 0; i < bytes.length && s !== DFA_NONE; i++) s = dfa.next[s * 256 + bytes[i]];
  return s;
}

/** Whether the DFA accepts `text` whole. */
export function dfaAccepts(dfa: Dfa, text: string): boolean {
  const s = dfaWalk(dfa, 0, new TextEncoder().encode(text));
  return s !== DFA_NONE && dfa.accept[s] === 1;
}

// ---------------------------------------------------------------------------------------------
// An NFA with ε edges, built fragment by fragment (Thompson's construction), then determinized.

/** A piece of the NFA: enter at `start`, leave from `end`. */
export interface Frag {
  start: number;
  end: number;
}

export class Nfa {
  /** Per state: byte edges as (lo, hi, target) triples. */
  readonly edges: number[][] = [];
  /** Per state: ε targets. */
  readonly eps: number[][] = [];

  state(): number {
    if (this.edges.length >= MAX_NFA_STATES) {
      throw new SchemaError(
        `the constraint is too large to compile (over ${MAX_NFA_STATES} automaton states): ` +
          "fewer nested or repeated parts, shorter bounded repeats and lists or fewer $ref uses " +
          "make it smaller",
      );
    }
    this.edges.push([]);
    this.eps.push([]);
    return this.edges.length - 1;
  }

  range(a: number, lo: number, hi: number, b: number): void {
    this.edges[a].push(lo, hi, b);
  }

  byte(a: number, byte: number, b: number): void {
    this.range(a, byte, byte, b);
  }

  empty(a: number, b: number): void {
    this.eps[a].push(b);
  }

  /** A fragment of two fresh states. */
  frag(): Frag {
    return { start: this.state(), end: this.state() };
  }

  literal(bytes: ArrayLike<number>): Frag {
    const start = this.state();
    let at = start;
    for (let i = 0; i < bytes.length; i++) {
      const next = this.state();
      this.byte(at, bytes[i], next);
      at = next;
    }
    return { start, end: at };
  }

  seq(parts: Frag[]): Frag {
    for (let i = 1; i < parts.length; i++) this.empty(parts[i - 1].end, parts[i].start);
    return { start: parts[0].start, end: parts[parts.length - 1].end };
  }

  alt(parts: Frag[]): Frag {
    const f = this.frag();
    for (const p of parts) {
      this.empty(f.start, p.start);
      this.empty(p.end, f.end);
    }
    return f;
  }

  optional(p: Frag): Frag {
    this.empty(p.start, p.end);
    return p;
  }

  /** One optional space (after `:` and `,`). */
  space(): Frag {
    const f = this.frag();
    this.byte(f.start, 0x20, f.end);
    this.empty(f.start, f.end);
    return f;
  }

  /** A JSON string: escapes, strict UTF-8 (RFC 3629), control characters escaped. */
  string(): Frag {
    const f = this.frag();
    const body = this.state();
    const esc = this.state();
    this.byte(f.start, 0x22, body);
    this.byte(body, 0x22, f.end);
    this.range(body, 0x20, 0x21, body);
    this.range(body, 0x23, 0x5b, body);
    this.range(body, 0x5d, 0x7f, body);
    this.byte(body, 0x5c, esc);
    for (const c of '"\\/bfnrt') this.byte(esc, c.charCodeAt(0), body);
    this.byte(esc, 0x75, this.#hexChain(4, body));
    this.nonAscii(body, body);
    return f;
  }

  /**
   * A JSON string of `min` to `max` characters (`max` undefined: no bound), counted as JSON
   * Schema counts them — code points of the decoded string: an escape (`\n`, `\u00e9`) is one,
   * a UTF-8 sequence is one, and a surrogate pair written as two `\u` escapes is one (JSON.parse
   * and Python's json join a high surrogate's escape and a low one's right after it); a lone
   * surrogate's escape is one. A state per count, so its size grows with `max` (or `min`).
   */
  stringLength(min: number, max?: number): Frag {
    const f = this.frag();
    const top = max ?? min;
    // n[i]: i characters read. h[i]: i read, the last a high surrogate's escape — a low
    // surrogate's escape next completes that character (no count), anything else is a new one.
    const n: number[] = [], h: number[] = [];
    for (let i = 0; i <= top; i++) n.push(this.state()), h.push(this.state());
    this.byte(f.start, 0x22, n[0]);
    for (let i = 0; i <= top; i++) {
      if (i >= min) this.byte(n[i], 0x22, f.end), this.byte(h[i], 0x22, f.end);
      // Past max no character; with no max the last count takes any more.
      const j = i < top ? i + 1 : max === undefined ? top : -1;
      if (j >= 0) this.#character(n[i], h[i], n[j], h[j]);
      // After a high surrogate's escape, a low one's completes the same character. (h[0] is
      // reached only where the last count loops: min 0, no max.)
      this.#lowEscape(h[i], this.#hexChain(2, n[i]));
    }
    return f;
  }

  /** `k` hex digits from the state returned to `to`. */
  #hexChain(k: number, to: number): number {
    let at = to;
    for (let i = 0; i < k; i++) {
      const s = this.state();
      for (const [lo, hi] of [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]]) this.range(s, lo, hi, at);
      at = s;
    }
    return at;
  }

  /** `\uD` and C–F from `from` to `rest` (where the escape's last two hex digits are read). */
  #lowEscape(from: number, rest: number): void {
    const [e, v, w] = [this.state(), this.state(), this.state()];
    this.byte(from, 0x5c, e);
    this.byte(e, 0x75, v);
    this.byte(v, 0x44, w);
    this.byte(v, 0x64, w);
    this.range(w, 0x43, 0x46, rest);
    this.range(w, 0x63, 0x66, rest);
  }

  /**
   * Edges for one character of a JSON string from `fromN` (no high surrogate pending) and `fromH`
   * (one pending) to `toN`, or to `toH` where it is a high surrogate's escape. (From `fromH`, a
   * low surrogate's escape is not a character: stringLength() adds it.)
   */
  #character(fromN: number, fromH: number, toN: number, toH: number): void {
    const c = this.state(); // any character but a low surrogate's escape
    this.empty(fromN, c);
    this.empty(fromH, c);
    this.range(c, 0x20, 0x21, toN);
    this.range(c, 0x23, 0x5b, toN);
    this.range(c, 0x5d, 0x7f, toN);
    this.nonAscii(c, toN);
    const esc = this.state(), u = this.state(), d = this.state();
    this.byte(c, 0x5c, esc);
    for (const e of '"\\/bfnrt') this.byte(esc, e.charCodeAt(0), toN);
    this.byte(esc, 0x75, u);
    const [x3, x2] = [this.#hexChain(3, toN), this.#hexChain(2, toN)];
    // \uXXXX: not D first (no surrogate), D then 0-7 (neither), D then 8-B (high).
    for (const [lo, hi] of [[0x30, 0x39], [0x41, 0x43], [0x45, 0x46], [0x61, 0x63], [0x65, 0x66]]) {
      this.range(u, lo, hi, x3);
    }
    this.byte(u, 0x44, d);
    this.byte(u, 0x64, d);
    this.range(d, 0x30, 0x37, x2);
    const y2 = this.#hexChain(2, toH);
    for (const [lo, hi] of [[0x38, 0x39], [0x41, 0x42], [0x61, 0x62]]) this.range(d, lo, hi, y2);
    // A low surrogate's escape with none pending (D then C-F): a character of its own.
    this.#lowEscape(fromN, x2);
  }

  /**
   * Edges for one character whose code point is in `ranges` ([lo, hi] pairs; D800–DFFF: a lone
   * surrogate, as JSON.parse reads a `\uXXXX` escape that is not half of a pair), in every
   * encoding the string grammar ({@link string}, {@link stringLength}) accepts for it: raw (UTF-8
   * past ASCII, ASCII from 0x20 but `"` and `\`), the short escapes (`\" \\ \/ \b \f \n \r \t`)
   * and `\uXXXX` in either case of hex digit, a character past U+FFFF also as a surrogate pair of
   * them. From `fromN` (no high surrogate's escape just read) and `fromH` (one just read: a low
   * surrogate's escape next would join it, so it is no character of its own) to `toN`, or to `toH`
   * where the character is a lone high surrogate's escape — {@link stringLength}'s two tracks.
   */
  jsonCharacters(
    fromN: number,
    fromH: number,
    toN: number,
    toH: number,
    ranges: [number, number][],
  ): void {
    const c = this.state(); // the edges both tracks share
    this.empty(fromN, c);
    this.empty(fromH, c);
    const within = (lo: number, hi: number): [number, number][] =>
      ranges.flatMap(([a, b]): [number, number][] =>
        Math.max(a, lo) <= Math.min(b, hi) ? [[Math.max(a, lo), Math.min(b, hi)]] : []
      );
    // Raw: printable ASCII but `"` and `\`, and any scalar value past it (utf8Sequences leaves
    // surrogates out: UTF-8 cannot hold them).
    for (const [lo, hi] of [[0x20, 0x21], [0x23, 0x5b], [0x5d, 0x10ffff]]) {
      for (const [a, b] of within(lo, hi)) {
        this.utf8Range(c, a, b, toN);
      }
    }
    const esc = this.state(), u = this.state();
    this.byte(c, 0x5c, esc);
    this.byte(esc, 0x75, u);
    for (const [e, cp] of SHORT_ESCAPES) {
      if (within(cp, cp).length) this.byte(esc, e, toN);
    }
    // \uXXXX of a scalar value up to U+FFFF; of a high surrogate (to the H track); of a low one
    // only from the N track (after a high one's escape it would join it).
    for (const [a, b] of [...within(0, 0xd7ff), ...within(0xe000, 0xffff)]) {
      for (const seq of hexSequences(a, b)) this.#byteChain(u, seq, toN);
    }
    for (const [a, b] of within(0xd800, 0xdbff)) {
      for (const seq of hexSequences(a, b)) this.#byteChain(u, seq, toH);
    }
    const low = within(0xdc00, 0xdfff);
    if (low.length) {
      const [escN, uN] = [this.state(), this.state()];
      this.byte(fromN, 0x5c, escN);
      this.byte(escN, 0x75, uN);
      for (const [a, b] of low) for (const seq of hexSequences(a, b)) this.#byteChain(uN, seq, toN);
    }
    // Past U+FFFF, as a pair: the high half's escape, then the low half's — a split of the range
    // into pieces of one high half (some low halves) or of many (every low half).
    for (const [a, b] of within(0x10000, 0x10ffff)) {
      const high = (cp: number) => 0xd800 + ((cp - 0x10000) >> 10);
      const low = (cp: number) => 0xdc00 + ((cp - 0x10000) & 0x3ff);
      const pieces: [number, number, number, number][] = [];
      const [ha, hb] = [high(a), high(b)];
      if (ha === hb) pieces.push([ha, ha, low(a), low(b)]);
      else {
        const first = low(a) === 0xdc00 ? ha : ha + 1, last = low(b) === 0xdfff ? hb : hb - 1;
        if (first !== ha) pieces.push([ha, ha, low(a), 0xdfff]);
        if (first <= last) pieces.push([first, last, 0xdc00, 0xdfff]);
        if (last !== hb) pieces.push([hb, hb, 0xdc00, low(b)]);
      }
      for (const [h1, h2, l1, l2] of pieces) {
        for (const hs of hexSequences(h1, h2)) {
          const mid = this.state(), [e2, u2] = [this.state(), this.state()];
          this.#byteChain(u, hs, mid);
          this.byte(mid, 0x5c, e2);
          this.byte(e2, 0x75, u2);
          for (const ls of hexSequences(l1, l2)) this.#byteChain(u2, ls, toN);
        }
      }
    }
  }

  /** Edges from `a` to `b` through one byte per step, each step's byte in one of its ranges. */
  /** Edges from `a` to `b` for the code points `lo`..`hi` as UTF-8 ({@link utf8Sequences}). */
  utf8Range(a: number, lo: number, hi: number, b: number): void {
    for (const seq of utf8Sequences(lo, hi)) this.#byteChain(a, seq.map((r) => [r]), b);
  }

  #byteChain(a: number, steps: [number, number][][], b: number): void {
    let at = a;
    steps.forEach((ranges, i) => {
      const to = i === steps.length - 1 ? b : this.state();
      for (const [lo, hi] of ranges) this.range(at, lo, hi, to);
      at = to;
    });
  }

  /**
   * Edges from `a` to `b` for every character past ASCII, as well-formed UTF-8 (RFC 3629: no
   * overlong forms, no surrogates, nothing past U+10FFFF).
   */
  nonAscii(a: number, b: number): void {
    // Continuation bytes still to come: c1 one, c2 two, c3 three.
    const c1 = this.state(), c2 = this.state(), c3 = this.state();
    this.range(c1, 0x80, 0xbf, b);
    this.range(c2, 0x80, 0xbf, c1);
    this.range(c3, 0x80, 0xbf, c2);
    this.range(a, 0xc2, 0xdf, c1);
    const narrow = (lead: number, lo: number, hi: number, then: number) => {
      const s = this.state();
      this.byte(a, lead, s);
      this.range(s, lo, hi, then);
    };
    narrow(0xe0, 0xa0, 0xbf, c1);
    this.range(a, 0xe1, 0xec, c2);
    narrow(0xed, 0x80, 0x9f, c1);
    this.range(a, 0xee, 0xef, c2);
    narrow(0xf0, 0x90, 0xbf, c2);
    this.range(a, 0xf1, 0xf3, c3);
    narrow(0xf4, 0x80, 0x8f, c2);
  }

  /**
   * A JSON integer from `lo` to `hi` (±Infinity: no bound; otherwise whole numbers within ±2^53,
   * lo ≤ hi), written as {@link number} writes integers: no leading zeros, and "-0" (the integer
   * 0, as JSON.parse and Python read it) only where 0 is in the range.
   */
  integer(lo: number, hi: number): Frag {
    const f = this.frag();
    if (hi >= Math.max(lo, 0)) naturals(this, f.start, f.end, Math.max(lo, 0), hi);
    if (lo <= 0 && hi >= 0) {
      const z = this.literal(utf8.encode("-0"));
      this.empty(f.start, z.start);
      this.empty(z.end, f.end);
    }
    if (lo <= -1) {
      // -n for n from max(1, -hi) to -lo.
      const minus = this.state();
      this.byte(f.start, 0x2d, minus);
      naturals(this, minus, f.end, Math.max(1, -hi), -lo);
    }
    return f;
  }

  /** A JSON number (`integer`: no fraction or exponent). */
  number(integer: boolean): Frag {
    const f = this.frag();
    const sign = this.state(), zero = this.state(), digits = this.state(), int = this.state();
    this.byte(f.start, 0x2d, sign);
    this.empty(f.start, sign);
    this.byte(sign, 0x30, zero);
    this.range(sign, 0x31, 0x39, digits);
    this.range(digits, 0x30, 0x39, digits);
    this.empty(zero, int);
    this.empty(digits, int);
    if (integer) {
      this.empty(int, f.end);
      return f;
    }
    const dot = this.state(), frac = this.state(), exp = this.state();
    const e = this.state(), esign = this.state(), edigits = this.state();
    this.byte(int, 0x2e, dot);
    this.range(dot, 0x30, 0x39, frac);
    this.range(frac, 0x30, 0x39, frac);
    this.empty(int, exp);
    this.empty(frac, exp);
    this.empty(exp, f.end);
    this.byte(exp, 0x65, e);
    this.byte(exp, 0x45, e);
    this.byte(e, 0x2b, esign);
    this.byte(e, 0x2d, esign);
    this.empty(e, esign);
    this.range(esign, 0x30, 0x39, edigits);
    this.range(edigits, 0x30, 0x39, edigits);
    this.empty(edigits, f.end);
    return f;
  }
}

/**
 * A decimal's digits, exactly: `int` its whole part (no leading zeros; "0"), `frac` its fraction
 * (no trailing zeros; "" for none), `neg` its sign (never for zero).
 */
export interface Decimal {
  neg: boolean;
  int: string;
  frac: string;
}

/** -1, 0 or 1 as decimal `a` is below, equal to or above `b` (exactly: digits, not doubles). */
export function compareDecimals(a: Decimal, b: Decimal): number {
  const scale = Math.max(a.frac.length, b.frac.length);
  const big = (d: Decimal) => (d.neg ? -1n : 1n) * BigInt(d.int + d.frac.padEnd(scale, "0"));
  const [x, y] = [big(a), big(b)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** How an unsigned decimal compares with a constant: the outcomes (-1, 0, 1) allowed. */
type Comparison = { c: Decimal; allow: number[] };

/**
 * Edges from `f.start` to `f.end` for the unsigned decimals `(0|[1-9][0-9]*)(\.[0-9]+)?` whose value
 * compares with `cmp.c` as `cmp.allow` says, digit by digit: a shorter whole part is smaller, a
 * longer one larger; of the same length the first differing digit decides, then the fraction's
 * (past `c`'s fraction, any nonzero digit is larger; ending early, smaller unless the rest of `c`
 * is none).
 */
function unsignedDecimal(nfa: Nfa, f: Frag, cmp: Comparison): void {
  const { int, frac } = cmp.c;
  const out = new Map<number, number>();
  for (const o of [-1, 0, 1]) {
    const s = nfa.state();
    if (cmp.allow.includes(o)) nfa.empty(s, f.end);
    out.set(o, s);
  }
  // tail(o): the whole part read with outcome o settled; an optional free fraction follows.
  const tails = new Map<number, number>();
  const tail = (o: number): number => {
    if (tails.has(o)) return tails.get(o)!;
    const t = nfa.state(), dot = nfa.state(), d = nfa.state();
    nfa.empty(t, out.get(o)!);
    nfa.byte(t, 0x2e, dot);
    nfa.range(dot, 0x30, 0x39, d);
    nfa.range(d, 0x30, 0x39, d);
    nfa.empty(d, out.get(o)!);
    tails.set(o, t);
    return t;
  };
  // fracTail(o): inside the fraction with outcome o settled: any more digits.
  const fracTail = (o: number): number => {
    const u = nfa.state();
    nfa.range(u, 0x30, 0x39, u);
    nfa.empty(u, out.get(o)!);
    return u;
  };
  // free(k, o): k more digits of the whole part, then tail(o).
  const free = (k: number, o: number): number => {
    let at = tail(o);
    for (let i = 0; i < k; i++) {
      const s = nfa.state();
      nfa.range(s, 0x30, 0x39, at);
      at = s;
    }
    return at;
  };
  const eqInt = nfa.state();
  if (int === "0") {
    nfa.byte(f.start, 0x30, eqInt);
    const more = nfa.state(); // any whole part from 1 is larger
    nfa.range(f.start, 0x31, 0x39, more);
    nfa.range(more, 0x30, 0x39, more);
    nfa.empty(more, tail(1));
  } else {
    const n = int.length;
    nfa.byte(f.start, 0x30, tail(-1));
    // Shorter whole parts (1 to n − 1 digits): smaller.
    if (n > 1) {
      let at = nfa.state();
      nfa.range(f.start, 0x31, 0x39, at);
      for (let i = 1; i < n; i++) {
        nfa.empty(at, tail(-1));
        if (i < n - 1) {
          const s = nfa.state();
          nfa.range(at, 0x30, 0x39, s);
          at = s;
        }
      }
    }
    // Longer ones (more than n digits): larger.
    const longer = nfa.state();
    nfa.range(longer, 0x30, 0x39, longer);
    nfa.empty(longer, tail(1));
    let at = longer;
    for (let i = 0; i < n; i++) {
      const s = nfa.state();
      nfa.range(s, 0x30, 0x39, at);
      at = s;
    }
    nfa.range(f.start, 0x31, 0x39, at);
    // The same length: digit by digit.
    let e = f.start;
    for (let k = 0; k < n; k++) {
      const d = int.charCodeAt(k), low = k === 0 ? 0x31 : 0x30;
      if (d < 0x39) nfa.range(e, d + 1, 0x39, free(n - k - 1, 1));
      if (d > low) nfa.range(e, low, d - 1, free(n - k - 1, -1));
      const next = k === n - 1 ? eqInt : nfa.state();
      nfa.byte(e, d, next);
      e = next;
    }
  }
  // The whole parts equal: no fraction, or the fraction's digits against c's.
  nfa.empty(eqInt, out.get(frac ? -1 : 0)!);
  let q = nfa.state();
  nfa.byte(eqInt, 0x2e, q);
  for (let k = 0; k < frac.length; k++) {
    const d = frac.charCodeAt(k);
    if (d < 0x39) nfa.range(q, d + 1, 0x39, fracTail(1));
    if (d > 0x30) nfa.range(q, 0x30, d - 1, fracTail(-1));
    const next = nfa.state();
    nfa.byte(q, d, next);
    if (k < frac.length - 1) nfa.empty(next, out.get(-1)!);
    q = next;
  }
  // Past c's fraction: zeros keep it equal, any other digit makes it larger.
  const past = frac ? q : nfa.state();
  if (!frac) nfa.byte(q, 0x30, past), nfa.range(q, 0x31, 0x39, fracTail(1));
  nfa.byte(past, 0x30, past);
  nfa.range(past, 0x31, 0x39, fracTail(1));
  nfa.empty(past, out.get(0)!);
}

/**
 * A JSON number from `lo` to `hi`, both included (undefined: no bound; json_schema.ts holds a
 * strict bound as the inclusive one a double-reading reader needs), written without an exponent,
 * `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, its decimal value compared with the bounds exactly (any length
 * of fraction, trailing zeros allowed); "-0" and "-0.0" are 0, so allowed where 0 is (as
 * {@link Nfa.integer}). The non-negative and the negative answers are each an unsigned decimal
 * held to at most two comparisons, compiled and intersected on their own, then embedded.
 * @throws SchemaError when no number is within the bounds
 */
export function decimalRange(nfa: Nfa, lo?: Decimal, hi?: Decimal): Frag {
  const zero = (d: Decimal) => d.int === "0" && d.frac === "";
  const abs = (d: Decimal): Decimal => ({ ...d, neg: false });
  // Each branch's comparisons of the unsigned part m; null: the branch holds no number.
  const branch = (negative: boolean): Comparison[] | null => {
    const out: Comparison[] = [];
    // A lower bound on the value is one on m for "m" (m ≥ lo), an upper one for "-m" (m ≤ -lo).
    const add = (c: Decimal | undefined, below: boolean): boolean => {
      if (!c) return true;
      // With m ≥ 0: m ≥ a negative number always holds; m ≤ one never does.
      const mAbove = negative ? !below : below; // does the bound ask m to be at least c?
      if (c.neg !== negative && !zero(c)) return mAbove;
      if (zero(c) && mAbove) return true;
      out.push({ c: abs(c), allow: mAbove ? [0, 1] : [-1, 0] });
      return true;
    };
    return add(lo, true) && add(hi, false) ? out : null;
  };
  const unsigned = (cmps: Comparison[]): Frag => {
    const dfas =
      (cmps.length ? cmps : [{ c: { neg: false, int: "0", frac: "" }, allow: [-1, 0, 1] }])
        .map((cmp) => {
          const part = new Nfa();
          const f = part.frag();
          unsignedDecimal(part, f, cmp);
          return determinize(part, f.start, f.end, "a number's bound");
        });
    return embed(nfa, dfas.reduce((a, b) => intersect(a, b, "a number's bounds")));
  };
  const parts: Frag[] = [];
  const pos = branch(false), neg = branch(true);
  if (pos) parts.push(unsigned(pos));
  if (neg) parts.push(nfa.seq([nfa.literal([0x2d]), unsigned(neg)]));
  if (!parts.length) throw new SchemaError("no number is within the bounds");
  return nfa.alt(parts);
}

/**
 * Most units of its last decimal place a `multipleOf` may be (2.5 is 25 tenths, 1000 is 1000
 * ones): {@link multipleDfa} builds a table of that many remainders before merging those no
 * digits tell apart, so this bounds its work (100,000: about a tenth of a second of one core).
 */
export const MAX_MULTIPLE_UNITS = 100_000;
/**
 * Most states {@link multipleDfa}'s automaton may have: a quarter of a schema's
 * ({@link MAX_DFA_STATES}), leaving room for the bounds it is intersected with and the rest.
 */
export const MAX_MULTIPLE_STATES = MAX_DFA_STATES / 4;

/**
 * The remainders by `a` of whole numbers read digit by digit (most significant first: r → 10r + d),
 * those that no digits to come tell apart merged (Moore's partition refinement): divisibility by
 * 1000 needs 4 classes (how many of the last three digits are 0), by 7 all 7.
 * @returns `of[r]`, the class of remainder r; `next[c · 10 + d]`, the class after digit d
 */
function remainderClasses(a: number): { classes: number; of: Int32Array; next: Int32Array } {
  const of = new Int32Array(a).map((_, r) => (r === 0 ? 0 : 1));
  let classes = a === 1 ? 1 : 2;
  for (let changed = true; changed;) {
    changed = false;
    // Split each class by the class digit d leads to, one digit at a time (a key per pair).
    for (let d = 0; d < 10; d++) {
      const ids = new Map<number, number>();
      const refined = new Int32Array(a);
      for (let r = 0; r < a; r++) {
        const key = of[r] * classes + of[(r * 10 + d) % a];
        let id = ids.get(key);
        if (id === undefined) ids.set(key, id = ids.size);
        refined[r] = id;
      }
      if (ids.size !== classes) changed = true;
      of.set(refined);
      classes = ids.size;
    }
  }
  const next = new Int32Array(classes * 10);
  for (let r = 0; r < a; r++) {
    for (let d = 0; d < 10; d++) next[of[r] * 10 + d] = of[(r * 10 + d) % a];
  }
  return { classes, of, next };
}

/**
 * The DFA of the JSON numbers written without an exponent, `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, whose
 * value is a whole multiple of `a`·10^-`k` (`a` ≥ 1 and `k` ≥ 0 whole: 2.5 is 25·10^-1; 0.01 is
 * 1·10^-2): the value times 10^k, an integer, leaves no remainder by `a`. Its digits are read
 * through the k-th fraction digit, each state a class of the remainder so far
 * ({@link remainderClasses}) beside how many fraction digits are read; a number ending before
 * the k-th is read as padded with zeros, and a fraction digit past the k-th must be 0 (`5.50`
 * is a multiple of 0.5; `5.05` of 0.5 is not, and of 0.05 it is). The sign changes nothing:
 * "-0" is 0. Intersect it with a number's grammar and bounds for a `multipleOf`.
 * @throws SchemaError (naming `what`) where `a` is past {@link MAX_MULTIPLE_UNITS} or the
 * automaton past {@link MAX_MULTIPLE_STATES}; RangeError where `a` or `k` is not as above
 */
export function multipleDfa(a: number, k: number, what: string): Dfa {
  if (a > MAX_MULTIPLE_UNITS) {
    throw new SchemaError(
      `${what} is ${a} units of its last decimal place: up to ${MAX_MULTIPLE_UNITS} are ` +
        "supported (the automaton tracks the remainder of the digits read): use a smaller " +
        "multipleOf, or leave it out and say it in the prompt",
    );
  }
  if (!Number.isInteger(a) || a < 1 || !Number.isSafeInteger(k) || k < 0) {
    throw new RangeError(`multipleDfa(): a ${a} and k ${k} must be whole, a ≥ 1, k ≥ 0`);
  }
  // Per class: the whole part (int), a point just read (dot), then f fraction slots — slot j
  // after j digits, the last also after any more (zeros only, past the k-th).
  const f = Math.max(k, 1), per = f + 2;
  const tooMany = (states: number, classes: number, least = "") =>
    new SchemaError(
      `${what} needs ${least}${states} automaton states (${classes} remainders by ${a}, through ${k} ` +
        `fraction digits): up to ${MAX_MULTIPLE_STATES} are supported: use a multipleOf with ` +
        "fewer digits (2s and 5s cost least: 0.01, 250), or leave it out and say it in the prompt",
    );
  // Remainders by a's factor prime to 10 are told apart by some digits to come, each: at least
  // that many classes, refused before the table is built.
  let odd = a;
  while (odd % 2 === 0) odd /= 2;
  while (odd % 5 === 0) odd /= 5;
  if (3 + odd * per > MAX_MULTIPLE_STATES) throw tooMany(3 + odd * per, odd, "at least ");
  const { classes, of, next: step } = remainderClasses(a);
  const states = 3 + classes * per;
  if (states > MAX_MULTIPLE_STATES) throw tooMany(states, classes);
  const [START, MINUS, ZERO] = [0, 1, 2];
  const int = (c: number) => 3 + c * per, dot = (c: number) => int(c) + 1;
  const frac = (c: number, j: number) => int(c) + 1 + j; // j from 1 to f
  // The class after `n` more zeros: whether the value, padded to k fraction digits, is a multiple.
  const zeros = (c: number, n: number) => {
    for (let i = 0; i < n; i++) c = step[c * 10];
    return c;
  };
  const ok = of[0];
  const next = new Uint32Array(states * 256).fill(DFA_NONE);
  const accept = new Uint8Array(states);
  const digit = (s: number, d: number, t: number) => (next[s * 256 + 0x30 + d] = t);
  next[START * 256 + 0x2d] = MINUS;
  for (const s of [START, MINUS]) {
    digit(s, 0, ZERO);
    for (let d = 1; d <= 9; d++) digit(s, d, int(of[d % a]));
  }
  next[ZERO * 256 + 0x2e] = dot(ok);
  accept[ZERO] = zeros(ok, k) === ok ? 1 : 0;
  for (let c = 0; c < classes; c++) {
    for (let d = 0; d <= 9; d++) digit(int(c), d, int(step[c * 10 + d]));
    next[int(c) * 256 + 0x2e] = dot(c);
    accept[int(c)] = zeros(c, k) === ok ? 1 : 0;
    // The j-th fraction digit from slot j − 1 (dot: slot 0): counted through the k-th, then 0s.
    for (let j = 1; j <= f + 1; j++) {
      const from = j === 1 ? dot(c) : frac(c, j - 1);
      if (j <= k) { for (let d = 0; d <= 9; d++) digit(from, d, frac(step[c * 10 + d], j)); }
      else digit(from, 0, frac(c, f));
    }
    for (let j = 1; j <= f; j++) accept[frac(c, j)] = zeros(c, Math.max(k - j, 0)) === ok ? 1 : 0;
  }
  return prune({ states, next, accept }, what);
}

export const utf8 = new TextEncoder();

/** The short escapes of a JSON string: the byte after `\`, the code point it stands for. */
const SHORT_ESCAPES: [number, number][] = [
  [0x22, 0x22],
  [0x5c, 0x5c],
  [0x2f, 0x2f],
  [0x62, 0x08],
  [0x66, 0x0c],
  [0x6e, 0x0a],
  [0x72, 0x0d],
  [0x74, 0x09],
];

/**
 * The 4-hex-digit spellings of the numbers [lo, hi] (0 ≤ lo ≤ hi ≤ 0xFFFF): each a list of four
 * digits, each digit the byte ranges of its values in either case (`[0-9a-fA-F]`-like) — the
 * standard split of a range of fixed-length numbers, as {@link digitRange} does in base 10.
 */
export function hexSequences(lo: number, hi: number, digits = 4): [number, number][][][] {
  if (digits === 0) return [[]];
  const shift = 4 * (digits - 1), m = (1 << shift) - 1;
  const [l, h] = [lo >> shift, hi >> shift];
  const out: [number, number][][][] = [];
  const via = (first: number, last: number, restLo: number, restHi: number) => {
    for (const rest of hexSequences(restLo, restHi, digits - 1)) {
      out.push([hexDigitBytes(first, last), ...rest]);
    }
  };
  if (l === h) via(l, l, lo & m, hi & m);
  else {
    const from = (lo & m) === 0 ? l : l + 1, to = (hi & m) === m ? h : h - 1;
    if (from !== l) via(l, l, lo & m, m);
    if (from <= to) via(from, to, 0, m);
    if (to !== h) via(h, h, 0, hi & m);
  }
  return out;
}

/** The bytes of hex digits with values [a, b], upper and lower case. */
function hexDigitBytes(a: number, b: number): [number, number][] {
  const out: [number, number][] = [];
  if (a <= 9) out.push([0x30 + a, 0x30 + Math.min(b, 9)]);
  if (b >= 10) {
    const [x, y] = [Math.max(a, 10) - 10, b - 10];
    out.push([0x41 + x, 0x41 + y], [0x61 + x, 0x61 + y]);
  }
  return out;
}

/**
 * Edges from `a` to `b` for the decimal digit strings of the same length from `lo` to `hi`
 * (`lo` ≤ `hi`, both that length): the standard split — a shared first digit, or the rest of
 * `lo`'s first digit up, the digits between free, and the rest of `hi`'s first digit down.
 */
function digitRange(nfa: Nfa, a: number, b: number, lo: string, hi: string): void {
  const n = lo.length;
  if (n === 0) return nfa.empty(a, b);
  const [l, h] = [lo.charCodeAt(0), hi.charCodeAt(0)];
  const via = (first: number, last: number, restLo: string, restHi: string) => {
    const s = nfa.state();
    nfa.range(a, first, last, s);
    digitRange(nfa, s, b, restLo, restHi);
  };
  const [zeros, nines] = ["0".repeat(n - 1), "9".repeat(n - 1)];
  if (l === h) return via(l, l, lo.slice(1), hi.slice(1));
  // lo's first digit with every rest ≥ lo's, and hi's with every rest ≤ hi's; a first digit whose
  // whole span is in (rest from 0…0 / up to 9…9) joins the free middle.
  const from = lo.slice(1) === zeros ? l : l + 1, to = hi.slice(1) === nines ? h : h - 1;
  if (from !== l) via(l, l, lo.slice(1), nines);
  if (from <= to) via(from, to, zeros, nines);
  if (to !== h) via(h, h, zeros, hi.slice(1));
}

/**
 * Edges from `a` to `b` for the whole numbers from `lo` to `hi` (0 ≤ lo ≤ hi; hi Infinity for no
 * bound; both below 2^53) in JSON's digits: no leading zero.
 */
function naturals(nfa: Nfa, a: number, b: number, lo: number, hi: number): void {
  const loS = String(lo), hiS = hi === Infinity ? "" : String(hi);
  const top = hi === Infinity ? loS.length : hiS.length;
  for (let n = loS.length; n <= top; n++) {
    const first = n === loS.length ? loS : "1" + "0".repeat(n - 1);
    const last = n === hiS.length ? hiS : "9".repeat(n);
    digitRange(nfa, a, b, first, last);
  }
  if (hi === Infinity) {
    // Longer than lo: any such number is larger.
    let at = nfa.state();
    nfa.range(a, 0x31, 0x39, at);
    for (let i = 0; i < loS.length; i++) {
      const s = nfa.state();
      nfa.range(at, 0x30, 0x39, s);
      at = s;
    }
    nfa.range(at, 0x30, 0x39, at);
    nfa.empty(at, b);
  }
}

/** Subset construction: the DFA of `nfa` from `start`, accepting where `end` is reached. */
export function determinize(nfa: Nfa, start: number, end: number, what: string): Dfa {
  // Work done (NFA states visited), bounded so no constraint can hold the thread for long: the
  // DFA-state limit alone does not bound the size of the sets that make each state.
  let work = 0;
  const tooLarge = (why: string): never => {
    throw new SchemaError(
      `${what} is too large to compile (${why}): fewer alternatives, shorter bounded repeats and ` +
        "lists, or fewer optional parts make it smaller",
    );
  };
  const closure = (set: number[]): number[] => {
    const seen = new Set(set);
    const stack = [...set];
    while (stack.length) {
      for (const t of nfa.eps[stack.pop()!]) {
        if (!seen.has(t)) {
          seen.add(t);
          stack.push(t);
        }
      }
    }
    work += seen.size;
    if (work > MAX_DFA_WORK) tooLarge(`over ${MAX_DFA_WORK} steps of subset construction`);
    return [...seen].sort((a, b) => a - b);
  };
  const ids = new Map<string, number>();
  const sets: number[][] = [];
  const next: number[] = [];
  const accept: number[] = [];
  const add = (set: number[]): number => {
    const key = set.join(",");
    let id = ids.get(key);
    if (id === undefined) {
      id = sets.length;
      if (id >= MAX_DFA_STATES) tooLarge(`over ${MAX_DFA_STATES} states`);
      ids.set(key, id);
      sets.push(set);
      accept.push(set.includes(end) ? 1 : 0);
    }
    return id;
  };
  add(closure([start]));
  for (let s = 0; s < sets.length; s++) {
    const targets: number[][] = Array.from({ length: 256 }, () => []);
    for (const q of sets[s]) {
      const e = nfa.edges[q];
      for (let i = 0; i < e.length; i += 3) {
        for (let b = e[i]; b <= e[i + 1]; b++) targets[b].push(e[i + 2]);
        work += e[i + 1] - e[i] + 1;
      }
    }
    if (work > MAX_DFA_WORK) tooLarge(`over ${MAX_DFA_WORK} steps of subset construction`);
    // Bytes with the same targets (a class's letters) share one closure.
    const byTargets = new Map<string, number>();
    for (let b = 0; b < 256; b++) {
      if (!targets[b].length) {
        next[s * 256 + b] = DFA_NONE;
        continue;
      }
      const key = targets[b].join(",");
      let to = byTargets.get(key);
      if (to === undefined) byTargets.set(key, to = add(closure(targets[b])));
      next[s * 256 + b] = to;
    }
  }
  return prune(
    { states: sets.length, next: Uint32Array.from(next), accept: Uint8Array.from(accept) },
    what,
  );
}

/**
 * The DFA of the byte strings both `a` and `b` accept (the product construction, from the pairs
 * reachable), for constraints that must hold at once — a string's pattern, format and length.
 * @throws SchemaError past `limit` states, or when no string satisfies both
 */
export function intersect(a: Dfa, b: Dfa, what: string, limit = MAX_DFA_STATES): Dfa {
  const ids = new Map<number, number>([[0, 0]]);
  const pairs: [number, number][] = [[0, 0]];
  const next: number[] = [], accept: number[] = [];
  for (let s = 0; s < pairs.length; s++) {
    const [x, y] = pairs[s];
    accept.push(a.accept[x] & b.accept[y]);
    for (let c = 0; c < 256; c++) {
      const [tx, ty] = [a.next[x * 256 + c], b.next[y * 256 + c]];
      if (tx === DFA_NONE || ty === DFA_NONE) {
        next.push(DFA_NONE);
        continue;
      }
      const key = tx * b.states + ty;
      let id = ids.get(key);
      if (id === undefined) {
        id = pairs.length;
        if (id >= limit) {
          throw new SchemaError(
            `${what} is too large to compile (over ${limit} states): a shorter ` +
              "length bound, or fewer constraints on the one string, make it smaller",
          );
        }
        ids.set(key, id);
        pairs.push([tx, ty]);
      }
      next.push(id);
    }
  }
  return prune(
    { states: pairs.length, next: Uint32Array.from(next), accept: Uint8Array.from(accept) },
    what,
  );
}

/**
 * `dfa` as a fragment of `nfa`: a state per DFA state (its bytes to one target as one range), its
 * accepting states ε to the end — a part compiled (and bounded) on its own, then joined in.
 */
export function embed(nfa: Nfa, dfa: Dfa): Frag {
  const states = Array.from({ length: dfa.states }, () => nfa.state());
  const end = nfa.state();
  for (let s = 0; s < dfa.states; s++) {
    if (dfa.accept[s]) nfa.empty(states[s], end);
    for (let b = 0; b < 256;) {
      const t = dfa.next[s * 256 + b];
      let e = b;
      while (e < 255 && dfa.next[s * 256 + e + 1] === t) e++;
      if (t !== DFA_NONE) nfa.range(states[s], b, e, states[t]);
      b = e + 1;
    }
  }
  return { start: states[0], end };
}

/**
 * `dfa` with every transition into a state that cannot reach an accepting one removed, so the
 * mask never lets an answer into a dead end (a pattern part that matches nothing, `[^\s\S]`).
 * @throws SchemaError when the start itself is such a state: nothing matches at all
 */
function prune(dfa: Dfa, what: string): Dfa {
  const n = dfa.states;
  const live = new Uint8Array(n);
  const into: number[][] = Array.from({ length: n }, () => []);
  for (let s = 0; s < n; s++) {
    for (let b = 0; b < 256; b++) {
      const t = dfa.next[s * 256 + b];
      if (t !== DFA_NONE) into[t].push(s);
    }
  }
  const stack: number[] = [];
  for (let s = 0; s < n; s++) if (dfa.accept[s]) (live[s] = 1, stack.push(s));
  while (stack.length) {
    for (const s of into[stack.pop()!]) if (!live[s]) (live[s] = 1, stack.push(s));
  }
  if (!live[0]) throw new SchemaError(`${what} matches nothing: no answer could satisfy it`);
  for (let i = 0; i < dfa.next.length; i++) {
    if (dfa.next[i] !== DFA_NONE && !live[dfa.next[i]]) dfa.next[i] = DFA_NONE;
  }
  return dfa;
}

/**
 * The UTF-8 byte sequences of code points [lo, hi] (surrogates left out): each a list of byte
 * ranges, one a byte, that together match exactly the range's encodings (Russ Cox's split, as
 * Go's and Rust's regex engines compile classes).
 */
export function utf8Sequences(lo: number, hi: number): [number, number][][] {
  const out: [number, number][][] = [];
  const todo: [number, number][] = [[lo, hi]];
  next: while (todo.length) {
    const [a, b] = todo.pop()!;
    if (a > b) continue;
    if (a <= 0xdfff && b >= 0xd800) {
      todo.push([a, 0xd7ff], [0xe000, b]);
      continue;
    }
    for (const max of [0x7f, 0x7ff, 0xffff]) {
      if (a <= max && b > max) {
        todo.push([a, max], [max + 1, b]);
        continue next;
      }
    }
    const n = b <= 0x7f ? 1 : b <= 0x7ff ? 2 : b <= 0xffff ? 3 : 4;
    for (let i = 1; i < n; i++) {
      const m = (1 << (6 * i)) - 1;
      if ((a & ~m) !== (b & ~m)) {
        if ((a & m) !== 0) {
          todo.push([a, a | m], [(a | m) + 1, b]);
          continue next;
        }
        if ((b & m) !== m) {
          todo.push([a, (b & ~m) - 1], [b & ~m, b]);
          continue next;
        }
      }
    }
    const ea = utf8.encode(String.fromCodePoint(a)), eb = utf8.encode(String.fromCodePoint(b));
    out.push([...ea].map((x, i) => [x, eb[i]]));
  }
  return out;
}
