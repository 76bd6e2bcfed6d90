import assert from "node:assert/strict";
import { seeded } from "../ref/_random.ts";
import { SchemaError } from "../errors.ts";
import { dfaAccepts } from "./_automaton.ts";
import { regexDfa } from "./regex.ts";

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
