import assert from "node:assert/strict";
import { seeded } from "../ref/_random.ts";
import { SchemaError } from "../errors.ts";
import { dfaAccepts } from "./_automaton.ts";
import { jsonStringDfa, regexDfa } from "./regex.ts";

/**
 * Milliseconds of CPU time this thread has used (Linux: /proc/thread-self/stat, in 10 ms clock
 * ticks); elsewhere the wall clock's milliseconds.
 */
function cpuMs(): number {
  try {
    // After the command's name, which is in parentheses and may itself hold ") ".
    const stat = Deno.readTextFileSync("/proc/thread-self/stat");
    const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime
  } catch {
    return performance.now();
  }
}

Deno.test("regexDfa() matches answers whole, as RegExp does (fuzzed against it)", () => {
  const patterns = [
    "[A-Z][a-z]+ \\d{1,3}",
    "(yes|no|maybe)",
    "\\d{4}-\\d{2}-\\d{2}",
    "^[^,\\n]+(, [^,\\n]+)*$",
    "(?:ab)+c?|x*",
    "a{2,}b{0,2}",
    "[\\w.+-]+@[\\w-]+\\.[a-z]{2,6}",
    "é+[à-ä]?",
    "\\x41\\u00e9\\.\\s\\S",
    "(?P<n>[0-9]+)\\.(?<m>[0-9]*)",
    "a.c",
    "[\\]a]|[a-]",
  ];
  const rand = seeded(5);
  const alphabet = [..."aAbBcxyzZ0123456789 -.,@+_é\u00e0\u00e2😀\n\t", "yes", "no", "maybe", "ab"];
  let total = 0;
  for (const pattern of patterns) {
    const dfa = regexDfa(pattern);
    const re = new RegExp(
      `^(?:${pattern.replace(/^\^|\$$/g, "").replace(/\(\?P</g, "(?<")})$`,
      "u",
    );
    let matched = 0;
    for (let i = 0; i < 3000; i++) {
      const text = Array.from(
        { length: Math.floor(rand() * 8) },
        () => alphabet[Math.floor(rand() * alphabet.length)],
      ).join("");
      const want = re.test(text);
      assert.equal(dfaAccepts(dfa, text), want, `${pattern} on ${JSON.stringify(text)}`);
      if (want) matched++;
    }
    // A few known matches each, which random strings may miss.
    for (
      const text of ({
        "[A-Z][a-z]+ \\d{1,3}": ["Room 101"],
        "\\d{4}-\\d{2}-\\d{2}": ["2026-11-29"],
        "[\\w.+-]+@[\\w-]+\\.[a-z]{2,6}": ["a.b+c@example.com"],
        "\\x41\\u00e9\\.\\s\\S": ["Aé. x"],
      } as Record<string, string[]>)[pattern] ?? []
    ) {
      assert.ok(re.test(text) && dfaAccepts(dfa, text), `${pattern} on ${text}`);
    }
    total += matched;
  }
  // Random strings match some patterns often ("x*", "(yes|no|maybe)"): both verdicts are tested.
  assert.ok(total > 300, `${total} matches`);
});

Deno.test("regexDfa() refuses what it does not support, saying where", () => {
  const cases: [unknown, RegExp][] = [
    ["", /a non-empty pattern/],
    [5, /a non-empty pattern, got 5/],
    ["(a)\\1", /backreferences are not supported/],
    ["a(?=b)", /lookarounds, flags/],
    ["(?i)a", /lookarounds, flags/],
    ["\\bword", /\\b \(an anchor or boundary\)/],
    ["a^b", /only supported at the pattern's start/],
    ["(ab", /without its "\)"/],
    ["ab)", /unexpected "\)"/],
    ["[ab", /without its "\]"/],
    ["*a", /with nothing to repeat/],
    ["a**", /a quantifier on a quantifier/],
    ["a{3,2}", /bounds must be ordered/],
    ["a{999}", /at most 256/],
    ["a[^\\s\\S]", /matches nothing/],
    ["\\uD83D", /a lone surrogate is no character/],
    ["a*+a", /possessive quantifiers are not supported/],
    ["x{2}{3}", /a quantifier on a quantifier/],
    ["\\012", /octal escapes are not supported/],
    ["(".repeat(100) + "a" + ")".repeat(100), /groups nest deeper than 64/],
    ["[z-a]", /a range must go from one character up to another/],
    ["\\q", /\\q is not a supported escape/],
    ["ab\\", /ending in a backslash/],
  ];
  // Budgets: refused within 5 s of work each (the first takes about 2 s here), not minutes (or a
  // process out of memory). Work as this thread's CPU time: on a loaded machine the wall clock
  // runs on while other processes have the cores (5.2 s for the first with two cores busy).
  for (const pattern of ["((a{0,256}){0,256})", "(.{0,100}){0,100}", "([a-z]{1,20} ?){1,30}"]) {
    const t0 = cpuMs();
    assert.throws(() => regexDfa(pattern), /too large to compile/);
    assert.ok(cpuMs() - t0 < 5000, `${pattern}: ${cpuMs() - t0} ms of CPU`);
  }
  for (const [pattern, message] of cases) {
    assert.throws(
      () => regexDfa(pattern),
      (e) => e instanceof SchemaError && message.test(e.message),
      String(pattern),
    );
  }
});

Deno.test("regexDfa() classes past ASCII: ranges, negations and surrogate pairs, as UTF-8", () => {
  const cases: [string, string[], string[]][] = [
    ["[\\u4e00-\\u9fff]+", ["中文", "漢字"], ["中a", "", "😀", "ぁ"]],
    ["[^，。]+", ["你好", "abc", "😀"], ["你，", "。"]],
    ["[^a]", ["b", "é", "😀", "\n"], ["a", "ab"]],
    ["\\uD83D\\uDE00", ["😀"], ["\uFFFD\uFFFD", ""]],
    ["[😀-😂]", ["😀", "😁", "😂"], ["😃", "😿"]],
    ["[à-ÿ]{2}", ["éü"], ["ea", "é"]],
  ];
  for (const [pattern, yes, no] of cases) {
    const dfa = regexDfa(pattern);
    for (const t of yes) assert.ok(dfaAccepts(dfa, t), `${pattern} on ${t}`);
    for (const t of no) assert.ok(!dfaAccepts(dfa, t), `${pattern} on ${JSON.stringify(t)}`);
  }
});

Deno.test("regexDfa() agrees with RegExp on random patterns (Python's meanings written out for it)", () => {
  const rand = seeded(11);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  // [our pattern piece, the same for JavaScript's RegExp under Python's / ASCII meanings]
  type Piece = [string, string];
  const W = "A-Za-z0-9_", S = "\\t-\\r ";
  const atoms: Piece[] = [
    ...[..."abx0 -,é😀中"].map((c): Piece => [c, c]),
    ["\\.", "\\."],
    ["\\n", "\\n"],
    ["\\x41", "\\x41"],
    ["\\u00e9", "\\u00e9"],
    ["\\d", "[0-9]"],
    ["\\w", `[${W}]`],
    ["\\s", `[${S}]`],
    ["\\D", "[^0-9]"],
    ["\\W", `[^${W}]`],
    ["\\S", `[^${S}]`],
    [".", "[^\\n]"],
    ["[a-c]", "[a-c]"],
    ["[^a-c,]", "[^a-c,]"],
    ["[é-ü\\d]", "[é-ü0-9]"],
    ["[^é😀]", "[^é😀]"],
    ["[\\u4e00-\\u9fff]", "[\\u4e00-\\u9fff]"],
  ];
  const quants = ["", "", "", "*", "+", "?", "{2}", "{0,2}", "{1,}", "{,2}", "*?", "{1,3}"];
  const jsQuant = (q: string) => q.replace("{,", "{0,");
  const seq = (depth: number): Piece => {
    let a = "", b = "";
    for (let n = Math.floor(rand() * 4); n > 0; n--) {
      const [x, y] = depth > 0 && rand() < 0.25 ? group(depth - 1) : pick(atoms);
      const q = pick(quants);
      a += x + q;
      b += (q ? `(?:${y})` : y) + jsQuant(q);
    }
    return [a, b];
  };
  const group = (depth: number): Piece => {
    const alts = Array.from({ length: rand() < 0.7 ? 1 : 2 }, () => seq(depth));
    return [`(${alts.map((p) => p[0]).join("|")})`, `(?:${alts.map((p) => p[1]).join("|")})`];
  };
  const alphabet = [..."abxcA0 -,.\n\t\\é😀中ü"];
  let patterns = 0, matches = 0;
  for (let k = 0; k < 400; k++) {
    const [pattern, js] = seq(2);
    if (!pattern) continue;
    let dfa;
    try {
      dfa = regexDfa(pattern);
    } catch (e) {
      // Only the documented refusals: a pattern matching nothing (x{0}-like is not generated), or
      // one past the budgets.
      assert.ok(
        e instanceof SchemaError && /too large|matches nothing/.test(e.message),
        `${pattern}: ${e}`,
      );
      continue;
    }
    patterns++;
    const re = new RegExp(`^(?:${js})$`, "u");
    for (let i = 0; i < 150; i++) {
      const text = Array.from({ length: Math.floor(rand() * 6) }, () => pick(alphabet)).join("");
      const want = re.test(text);
      assert.equal(dfaAccepts(dfa, text), want, `${pattern} on ${JSON.stringify(text)}`);
      if (want) matches++;
    }
  }
  assert.ok(patterns > 250 && matches > 1000, `${patterns} patterns, ${matches} matches`);
});

/**
 * Every way the string grammar may write code point `cp` inside a JSON string: raw (printable,
 * not `"` or `\`; surrogates never), a short escape, `\uXXXX` in lower and upper case, and past
 * U+FFFF the surrogate pair's escapes (mixed case too).
 */
function spellings(cp: number): string[] {
  const out: string[] = [];
  const short: Record<number, string> = {
    0x22: '\\"',
    0x5c: "\\\\",
    0x2f: "\\/",
    0x08: "\\b",
    0x0c: "\\f",
    0x0a: "\\n",
    0x0d: "\\r",
    0x09: "\\t",
  };
  if (cp >= 0x20 && cp !== 0x22 && cp !== 0x5c && (cp < 0xd800 || cp > 0xdfff)) {
    out.push(String.fromCodePoint(cp));
  }
  if (short[cp]) out.push(short[cp]);
  const u = (n: number) => "\\u" + n.toString(16).padStart(4, "0");
  if (cp <= 0xffff) out.push(u(cp), u(cp).toUpperCase().replace("\\U", "\\u"));
  else {
    const [h, l] = [0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff)];
    out.push(u(h) + u(l), u(h).toUpperCase().replace("\\U", "\\u") + u(l));
  }
  return out;
}

Deno.test("spellings() are what JSON.parse reads back as the code point", () => {
  for (const cp of [0, 0x0a, 0x22, 0x2f, 0x41, 0x5c, 0xe9, 0x2028, 0xd800, 0xdfff, 0x1f600]) {
    for (const s of spellings(cp)) {
      assert.equal(JSON.parse(`"${s}"`), String.fromCodePoint(cp), s);
    }
  }
});

/**
 * Code points for random strings: ASCII the patterns name, JSON's escaped ones, ECMA's line
 * terminators and spaces, past ASCII and past U+FFFF, and lone surrogates (which JSON.parse gives).
 */
const JSON_ALPHABET = [
  ...'abcxA09 -_.,/"\\@é中ü😀😂',
  "\n",
  "\r",
  "\t",
  "\b",
  "\f",
  "\v",
  "\u0000",
  "\u001f",
  "\u007f",
  "\u00a0",
  "\u2028",
  "\u2029",
  "\u3000",
  "\ufeff",
  "\ud83d",
  "\ude00",
  "\udbff",
].map((c) => c.codePointAt(0)!);

/** A random JSON string literal of up to `n` code points, each spelled one of its ways. */
function randomLiteral(rand: () => number, n: number): string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  let body = "";
  for (let k = Math.floor(rand() * (n + 1)); k > 0; k--) {
    const cp = pick(JSON_ALPHABET);
    // A lone high surrogate's escape drawn before a low one's makes one character of the two,
    // as JSON.parse reads them: the automaton must too.
    body += pick(spellings(cp));
  }
  return `"${body}"`;
}

Deno.test("jsonStringDfa() accepts exactly the JSON strings whose value RegExp(p, 'u') finds (fuzzed, every spelling)", () => {
  const rand = seeded(21);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  // Written the same for ECMA's RegExp: the reference is the pattern itself.
  const atoms = [
    ..."abx0 -,é😀中/",
    "\\.",
    "\\n",
    "\\r",
    "\\t",
    '"',
    "\\\\",
    "\\x41",
    "\\u00e9",
    "\\uD83D\\uDE00",
    "\\d",
    "\\w",
    "\\s",
    "\\D",
    "\\W",
    "\\S",
    ".",
    "[a-c]",
    "[^a-c,]",
    "[é-ü\\d]",
    "[^é😀]",
    "[\\u4e00-\\u9fff]",
    "[^\\n]",
    "[\\s\\S]",
    "[\\b]",
  ];
  const quants = ["", "", "", "*", "+", "?", "{2}", "{0,2}", "{1,}", "*?", "{1,3}"];
  const seq = (depth: number): string => {
    let p = "";
    for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) {
      p += (depth > 0 && rand() < 0.25 ? group(depth - 1) : pick(atoms)) + pick(quants);
    }
    return p;
  };
  const group = (depth: number) =>
    `(${Array.from({ length: rand() < 0.7 ? 1 : 2 }, () => seq(depth)).join("|")})`;
  let patterns = 0, matches = 0, literals = 0;
  for (let k = 0; k < 80; k++) {
    // Anchors at the ends of the top-level alternatives, at random.
    const alts = Array.from(
      { length: rand() < 0.8 ? 1 : 2 },
      () => (rand() < 0.4 ? "^" : "") + seq(2) + (rand() < 0.4 ? "$" : ""),
    );
    const pattern = alts.join("|");
    let dfa;
    try {
      dfa = jsonStringDfa(pattern);
    } catch (e) {
      assert.ok(e instanceof SchemaError && /too large/.test(e.message), `${pattern}: ${e}`);
      continue;
    }
    patterns++;
    const re = new RegExp(pattern, "u");
    for (let i = 0; i < 120; i++) {
      const literal = randomLiteral(rand, 6);
      const want = re.test(JSON.parse(literal));
      assert.equal(dfaAccepts(dfa, literal), want, `${pattern} on ${literal}`);
      literals++;
      if (want) matches++;
    }
  }
  assert.ok(
    patterns > 70 && matches > 2000 && literals - matches > 5000,
    `${patterns} patterns, ${matches} of ${literals} matched`,
  );
});

Deno.test("jsonStringDfa() gives ., \\s, \\S, \\w, \\d ECMA's meanings, every code point checked", () => {
  for (const p of [".", "\\s", "\\S", "\\w", "\\d", "[^\\s\\d]"]) {
    const dfa = jsonStringDfa(`^${p}$`);
    const re = new RegExp(`^${p}$`, "u");
    // Every BMP code point (surrogates as lone escapes), and past it every 97th.
    for (let cp = 0; cp <= 0x10ffff; cp += cp < 0x10000 ? 1 : 97) {
      const literal = `"${spellings(cp).at(-1)}"`;
      assert.equal(dfaAccepts(dfa, literal), re.test(JSON.parse(literal)), `${p} on ${literal}`);
    }
  }
});

Deno.test("jsonStringDfa() reads a value, not its spelling: escapes and raw forms alike", () => {
  const cases: [string, string[], string[]][] = [
    // [pattern, literals accepted, literals refused]
    ["^abc$", ['"abc"', '"a\\u0062c"', '"\\u0061\\u0062\\u0063"', '"\\u0061b\\u0063"'], [
      '"abcd"',
      '"a\\u0042c"',
      '"ab\\c"',
    ]],
    ["^a\\nb$", ['"a\\nb"', '"a\\u000ab"', '"a\\u000Ab"'], ['"a\nb"', '"a\\\\nb"', '"anb"']],
    ['^"/\\\\$', ['"\\"/\\\\"', '"\\u0022\\/\\u005c"'], ['"\\"/"', '"/\\\\"']],
    ["^😀$", ['"😀"', '"\\ud83d\\ude00"', '"\\uD83D\\uDE00"'], ['"\\ud83d"', '"\\ude00\\ud83d"']],
    // A lone surrogate is a character of its own (as JSON.parse reads it); a pair is one.
    ["^.$", ['"\\ud83d"', '"\\ude00"', '"\\ud83d\\ude00"', '"é"', '"\\u00e9"'], [
      '"\\ud83d\\ud83d"',
      '"\\ude00\\ud83d"',
      '"\\n"',
      '"\\r"',
      '"\\u2028"',
    ]],
    ["^..$", ['"\\ud83d\\ud83d"', '"\\ude00\\ud83d"', '"\\ud83da"'], ['"\\ud83d\\ude00"']],
    // Unanchored: found anywhere, across lines.
    ["\\d{3}", ['"a\\n123\\nb"', '"1\\u00323"'], ['"12\\n3"', '"12"']],
    ["^a|b$", ['"ax"', '"xb"', '"ab"'], ['"xa"', '"bx"']],
    ["", ['""', '"anything \\n"'], []],
    // Not a JSON string at all: refused whatever the pattern.
    ["a", ['"a"'], ['"a\n"', '"a\\x"', '"a\\u12"', "a", '"a', '"\\ud83d\\ude0g"']],
  ];
  for (const [pattern, yes, no] of cases) {
    const dfa = jsonStringDfa(pattern);
    const re = new RegExp(pattern, "u");
    for (const t of yes) {
      assert.ok(re.test(JSON.parse(t)), `the case: ${pattern} on ${t}`);
      assert.ok(dfaAccepts(dfa, t), `${pattern} on ${t}`);
    }
    for (const t of no) assert.ok(!dfaAccepts(dfa, t), `${pattern} on ${t}`);
  }
});

Deno.test("jsonStringDfa() refuses what it cannot compile, naming the pattern", () => {
  const cases: [string, RegExp][] = [
    ["(a)\\1", /^p "\(a\)\\\\1" at 5: backreferences are not supported/],
    ["a(?=b)", /lookarounds, flags/],
    ["(?<!a)b", /lookarounds, flags/],
    ["a^b", /"\^" is only supported at the start \/ end of the pattern or of its top-level/],
    ["(a$)", /"\$" is only supported/],
    ["a{,3}", /\{,3\} is Python's, not ECMA-262's: write \{0,3\}/],
    ["\\bword", /\\b \(an anchor or boundary\)/],
    ["\\p{L}", /\\p is not a supported escape/],
    ["[^\\s\\S]", /matches nothing/],
  ];
  for (const [pattern, message] of cases) {
    assert.throws(
      () => jsonStringDfa(pattern, "p"),
      (e) => e instanceof SchemaError && message.test(e.message),
      pattern,
    );
  }
  // Budgets: the search's leading "any characters" makes a subset per set of places a match may
  // have started — refused within 5 s of work each, not minutes.
  for (const pattern of ["a.{12}b", "[a-z]{0,256}x.{5}", "^(.{0,100}){0,100}$"]) {
    const t0 = cpuMs();
    assert.throws(() => jsonStringDfa(pattern), /too large to compile/);
    assert.ok(cpuMs() - t0 < 5000, `${pattern}: ${cpuMs() - t0} ms of CPU`);
  }
});

Deno.test("jsonStringDfa(): in ECMA a ']' right after '[' or '[^' closes the class — '[]' matches nothing, '[^]' any character (Python's literal ']' is regexDfa's)", () => {
  const any = jsonStringDfa("^[^]$");
  for (const v of ["x", "]", "\n", "😀"]) assert.ok(dfaAccepts(any, JSON.stringify(v)), v);
  assert.ok(!dfaAccepts(any, JSON.stringify("xy")));
  const optional = jsonStringDfa("^a[]?b$");
  assert.ok(dfaAccepts(optional, '"ab"'));
  assert.ok(!dfaAccepts(optional, '"a]b"'));
  for (const nothing of ["^[^][]$", "[][a]"]) {
    assert.throws(() => jsonStringDfa(nothing), /matches nothing/, nothing);
  }
  // The guided_regex dialect (Python's re) keeps its literal "]".
  assert.ok(dfaAccepts(regexDfa("[]a]"), "]"));
});

Deno.test("jsonStringDfa() with raw writes each character as itself: no escapes, none needed", () => {
  const raw = jsonStringDfa('^[a-z"\\\\\\x00é]+$', "p", true);
  const full = jsonStringDfa('^[a-z"\\\\\\x00é]+$', "p");
  const texts = ['"abc"', '"é"', '"\\u0061"', '"a\\/"', '"\\""', '"\\\\"', '"\\u0000"', '"a"'];
  // Raw: only the characters JSON lets stand unescaped; the full DFA reads every spelling.
  assert.deepEqual(texts.map((t) => dfaAccepts(raw, t)), [
    true,
    true,
    false,
    false,
    false,
    false,
    false,
    true,
  ]);
  assert.deepEqual(texts.map((t) => dfaAccepts(full, t)), [
    true,
    true,
    true,
    false,
    true,
    true,
    true,
    true,
  ]);
  assert.ok(raw.states * 3 < full.states, `${raw.states} vs ${full.states}`);
});
