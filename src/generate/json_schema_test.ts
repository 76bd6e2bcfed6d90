import assert from "node:assert/strict";
import { seeded } from "../ref/_random.ts";
import { DFA_NONE, dfaAccepts, dfaWalk } from "./_automaton.ts";
import { choiceDfa, FORMATS, MAX_STRING_LENGTH, MAX_UNROLLED, schemaDfa } from "./json_schema.ts";
import { SchemaError } from "../errors.ts";
import { compileFormat, parseGenerationConfig, resolveOptions } from "./options.ts";

const utf8 = new TextEncoder();

/** A schema using every supported keyword. */
const SCHEMA = {
  $defs: {
    point: {
      type: "object",
      properties: { x: { type: "number" }, y: { type: "number" } },
      required: ["x", "y"],
    },
  },
  type: "object",
  properties: {
    name: { type: "string", description: "ignored" },
    age: { type: "integer" },
    tags: { type: "array", items: { type: "string" }, maxItems: 3 },
    kind: { enum: ["cat", "dog", 3, null] },
    where: { $ref: "#/$defs/point" },
    ok: { type: "boolean" },
    nick: { type: ["string", "null"] },
    path: { type: "array", items: { $ref: "#/$defs/point" }, minItems: 2 },
    v: { const: { a: [1, "b"] } },
    any: { anyOf: [{ type: "integer" }, { type: "string", format: "date" }] },
  },
  required: ["name", "age", "kind", "where", "path", "v"],
  additionalProperties: false,
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A random instance of SCHEMA (optional properties left out at random). */
function instance(rand: () => number): Record<string, Json> {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  const str = () =>
    Array.from(
      { length: Math.floor(rand() * 5) },
      () => pick(["a", " ", '"', "\\", "é", "😀", "\n", "\u0007"]),
    ).join("");
  const num = () => pick([0, -1, 2.5, 1e21, -3e-7, 42]);
  const point = () => ({ x: num(), y: num() });
  const o: Record<string, Json> = { name: str(), age: pick([0, 7, -12, 123456]) };
  if (rand() < 0.6) o.tags = Array.from({ length: Math.floor(rand() * 4) }, str);
  o.kind = pick(["cat", "dog", 3, null]);
  o.where = point();
  if (rand() < 0.5) o.ok = rand() < 0.5;
  if (rand() < 0.5) o.nick = rand() < 0.5 ? null : str();
  o.path = Array.from({ length: 2 + Math.floor(rand() * 3) }, point);
  o.v = { a: [1, "b"] };
  if (rand() < 0.5) o.any = rand() < 0.5 ? 5 : "2026-11-29";
  return o;
}

/** JSON text with one space after every `:` and `,` outside strings (the other style allowed). */
function spaced(value: Json): string {
  if (Array.isArray(value)) return `[${value.map(spaced).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    return `{${
      Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${spaced(v)}`).join(", ")
    }}`;
  }
  return JSON.stringify(value);
}

Deno.test("schemaDfa() accepts instances written compact or with spaces, and each prefix goes on", () => {
  const dfa = schemaDfa(SCHEMA);
  const rand = seeded(1);
  for (let i = 0; i < 300; i++) {
    const v = instance(rand);
    for (const text of [JSON.stringify(v), spaced(v)]) {
      assert.ok(dfaAccepts(dfa, text), text);
      const bytes = utf8.encode(text);
      for (let n = 0; n < bytes.length; n++) {
        const s = dfaWalk(dfa, 0, bytes.subarray(0, n));
        assert.notEqual(s, DFA_NONE, `prefix ${n} of ${text}`);
        assert.equal(dfa.accept[s], 0, `${text} ends early at ${n}`);
      }
    }
  }
});

Deno.test("schemaDfa() with freeAfter: the schema's instance, or any text from that prefix on", () => {
  const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"] };
  const dfa = schemaDfa(schema, { after: "✿FUNCTION✿" });
  for (const ok of ['{"n": 3}', "✿FUNCTION✿", '✿FUNCTION✿: look\n✿ARGS✿: {"zoom": 2}\n✿RESULT✿']) {
    assert.ok(dfaAccepts(dfa, ok), ok);
  }
  for (const bad of ['{"n": 3} ', "✿FUNC", "Let me look. ✿FUNCTION✿", '{"n": "3"}', ""]) {
    assert.ok(!dfaAccepts(dfa, bad), bad);
  }
  // Every byte goes on after the prefix (an answer's text, whatever its encoding).
  const at = dfaWalk(dfa, 0, new TextEncoder().encode("✿FUNCTION✿"));
  for (let b = 0; b < 256; b++) assert.notEqual(dfaWalk(dfa, at, [b]), DFA_NONE, `byte ${b}`);
});

Deno.test("schemaDfa() with free.until: calls free up to their results, then held again", () => {
  const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"] };
  const dfa = schemaDfa(schema, { after: "✿FUNCTION✿", until: "✿RETURN✿" });
  const call = '✿FUNCTION✿: f\n✿ARGS✿: {"q": "✿RET"}\n✿RESULT✿: sunny\n✿RETURN✿';
  for (
    const ok of [
      '{"n": 3}',
      call.slice(0, 30),
      `${call}: {"n": 3}`,
      `${call}{"n": 3}`,
      `${call}: ${call}: {"n": 1}`,
      `${call}: ✿FUNCTION✿: g`,
    ]
  ) {
    assert.ok(dfaAccepts(dfa, ok), ok);
  }
  for (const bad of [call, `${call}: hello`, `${call}:  {"n": 3}`, "Let me check."]) {
    assert.ok(!dfaAccepts(dfa, bad), bad);
  }
});

Deno.test("schemaDfa() refuses answers the schema does not allow", () => {
  const dfa = schemaDfa(SCHEMA);
  const ok = JSON.stringify(instance(seeded(2)));
  const base = {
    name: "a",
    age: 1,
    kind: "cat",
    where: { x: 1, y: 2 },
    path: [{ x: 1, y: 2 }, { x: 3, y: 4 }],
    v: { a: [1, "b"] },
  };
  assert.ok(dfaAccepts(dfa, JSON.stringify(base)));
  const refused = [
    { ...base, age: 1.5 }, // integer
    { ...base, kind: "cow" }, // enum
    { ...base, path: [{ x: 1, y: 2 }] }, // minItems 2
    { ...base, tags: ["a", "b", "c", "d"] }, // maxItems 3
    { ...base, extra: 1 }, // a property it does not list
    { age: 1, name: "a", kind: "cat", where: base.where, path: base.path, v: base.v }, // order
    { ...base, where: { y: 2, x: 1 } },
    { ...base, v: { a: [1, "c"] } }, // const
    { ...base, nick: 3 },
    { ...base, any: true },
  ];
  for (const v of refused) assert.ok(!dfaAccepts(dfa, JSON.stringify(v)), JSON.stringify(v));
  const { name: _, ...noName } = base;
  assert.ok(!dfaAccepts(dfa, JSON.stringify(noName)), "a required property left out");
  for (const text of [" " + ok, ok + " ", ok + "\n", ok.replace(":", " :"), `{"name":"a\u0001"}`]) {
    assert.ok(!dfaAccepts(dfa, text), text);
  }
  // Strings are strict UTF-8: an encoded surrogate (ED A0 80) is refused, as in JSON mode.
  const inName = dfaWalk(dfa, 0, utf8.encode('{"name":"'));
  assert.notEqual(inName, DFA_NONE);
  assert.equal(dfaWalk(dfa, inName, [0xed, 0xa0, 0x80]), DFA_NONE);
  assert.notEqual(dfaWalk(dfa, inName, [0xed, 0x9f, 0xbf]), DFA_NONE);
});

Deno.test("schemaDfa() writes bounded lists out and counts their items", () => {
  for (const [min, max] of [[0, 0], [0, 1], [1, 1], [2, 4], [0, undefined], [3, undefined]]) {
    const dfa = schemaDfa({
      type: "array",
      items: { type: "integer" },
      minItems: min,
      maxItems: max,
    });
    for (let n = 0; n <= 6; n++) {
      const list = JSON.stringify(Array.from({ length: n }, (_, i) => i));
      const want = n >= min! && (max === undefined || n <= max);
      assert.equal(dfaAccepts(dfa, list), want, `${list} of [${min}, ${max}]`);
    }
  }
});

Deno.test("schemaDfa() writes a tuple's prefixItems in order, then items for the rest", () => {
  // Items: an int, a string, then true; the list of the first n. Each schema's lengths allowed.
  const values = ["7", '"a"', "true", "8", "9"];
  const prefix = [{ type: "integer" }, { type: "string" }];
  const cases: [Record<string, unknown>, number[]][] = [
    [{ minItems: 2, maxItems: 2 }, [2]], // pydantic tuple[int, str]
    [{ items: false }, [0, 1, 2]],
    [{}, [0, 1, 2]], // items absent: more are allowed, none are written
    [{ items: false, minItems: 1 }, [1, 2]],
    [{ minItems: 2, maxItems: 5 }, [2]],
  ];
  for (const [extra, lengths] of cases) {
    const dfa = schemaDfa({ type: "array", prefixItems: prefix, ...extra });
    for (let n = 0; n <= 5; n++) {
      const list = `[${values.slice(0, n).join(",")}]`;
      assert.equal(dfaAccepts(dfa, list), lengths.includes(n), `${list} ${JSON.stringify(extra)}`);
    }
  }
  // A rest schema: integers after the prefix, as many as maxItems allows (or any).
  const ints = ["7", '"a"', "8", "9", "10", "11"];
  const rest: [Record<string, unknown>, number[]][] = [
    [{ items: { type: "integer" } }, [0, 1, 2, 3, 4, 5, 6]],
    [{ items: { type: "integer" }, minItems: 3 }, [3, 4, 5, 6]],
    [{ items: { type: "integer" }, minItems: 1, maxItems: 4 }, [1, 2, 3, 4]],
  ];
  for (const [extra, lengths] of rest) {
    const dfa = schemaDfa({ type: "array", prefixItems: prefix, ...extra });
    for (let n = 0; n <= 6; n++) {
      const list = `[${ints.slice(0, n).join(", ")}]`;
      assert.equal(dfaAccepts(dfa, list), lengths.includes(n), `${list} ${JSON.stringify(extra)}`);
    }
    // Each item held to its own schema: the prefix in order, the rest to items.
    for (const bad of ['["a", 7]', "[7, 8]", '[7, "a", "b"]', '[7, "a", 8, null]']) {
      assert.ok(!dfaAccepts(dfa, bad), `${bad} ${JSON.stringify(extra)}`);
    }
  }
  // In a property, with no "type" (prefixItems says array).
  const prop = schemaDfa({
    type: "object",
    properties: { pair: { prefixItems: prefix, minItems: 2, maxItems: 2 } },
    required: ["pair"],
  });
  assert.ok(dfaAccepts(prop, '{"pair": [1, "x"]}'));
  assert.ok(!dfaAccepts(prop, '{"pair": [1]}'));
  const refused: [unknown, RegExp][] = [
    [
      { type: "array", prefixItems: prefix, items: false, minItems: 3 },
      /schema: minItems 3 is more than its 2 prefixItems, and no more are allowed/,
    ],
    [{ type: "array", prefixItems: { type: "integer" } }, /prefixItems must be a list of schemas/],
    [
      { type: "array", prefixItems: Array(MAX_UNROLLED + 1).fill({ type: "null" }) },
      /prefixItems up to 32 are supported, got 33/,
    ],
    [{ type: "array", prefixItems: [{}] }, /schema\.prefixItems\[0\] allows any value/],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      JSON.stringify(schema),
    );
  }
});

Deno.test("schemaDfa() and choiceDfa() refuse what they cannot hold an answer to, saying where", () => {
  const cases: [unknown, RegExp][] = [
    [
      { type: "string", pattern: "(a)\\1" },
      /^schema\.pattern "\(a\)\\\\1" at 5: backreferences are not supported/,
    ],
    [{ type: "string", pattern: "a(?=b)" }, /schema\.pattern "a\(\?=b\)" .*lookarounds/],
    [{ type: "string", pattern: 5 }, /schema\.pattern must be a regex string, got 5/],
    [{ type: "object", properties: { a: {} } }, /schema\.properties\.a allows any value/],
    [true, /a JSON schema must be an object/],
    [{
      $defs: { t: { type: "object", properties: { c: { $ref: "#/$defs/t" } } } },
      $ref: "#/$defs/t",
    }, /recursive schemas are not supported/],
    [{ $ref: "https://example.com/s.json" }, /only "#\/\$defs\/<name>"/],
    [
      { type: "array", items: { type: "string" }, maxItems: MAX_UNROLLED + 1 },
      /minItems \/ maxItems up to 32/,
    ],
    [{ type: "array" }, /with no "items"/],
    [{ type: "object", properties: {}, required: ["a"] }, /required names "a"/],
    [{ type: "date" }, /type "date" is not a JSON schema type/],
    // Integers past 2^53 reach the compiler rounded by JSON.parse: refused, not changed.
    [
      JSON.parse('{"const": 9007199254740993}'),
      /schema\.const: 9007199254740992 holds a whole number past 2\^53/,
    ],
    [
      { type: "object", properties: { id: { enum: [1, [2, 12345678901234567000]] } } },
      /properties\.id\.enum: \[2,12345678901234567000\] holds a whole number past 2\^53/,
    ],
  ];
  for (const [schema, message] of cases) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      JSON.stringify(schema),
    );
  }
  // Many optional properties of long strings still compile; a union past the state budget does not.
  const wide = {
    type: "object",
    properties: Object.fromEntries(
      Array.from({ length: 40 }, (_, i) => [`p${i}`, { type: "string" }]),
    ),
  };
  assert.ok(schemaDfa(wide).states > 40);
  // The largest safe integer is fine, and so are large numbers written with exponents, and a
  // member the type leaves out anyway.
  for (const schema of [{ const: Number.MAX_SAFE_INTEGER }, { enum: [1e300, 6.02e23, 1] }]) {
    assert.ok(schemaDfa(schema).states > 1, JSON.stringify(schema));
  }
  assert.ok(schemaDfa({ type: "string", enum: ["a", 1e20] }).states > 1);
  assert.throws(() => choiceDfa([]), SchemaError);
  assert.throws(() => choiceDfa(["a", ""]), /choices\[1\] must be a non-empty string/);
});

Deno.test("choiceDfa() accepts exactly one of the choices", () => {
  const dfa = choiceDfa(["yes", "no", "not sure", "né"]);
  for (const c of ["yes", "no", "not sure", "né"]) assert.ok(dfaAccepts(dfa, c), c);
  for (const c of ["", "ye", "yess", "no ", "not", "Yes"]) assert.ok(!dfaAccepts(dfa, c), c);
  // "no" is a whole answer and the start of "not sure": accepting, and it goes on.
  const s = dfaWalk(dfa, 0, utf8.encode("no"));
  assert.equal(dfa.accept[s], 1);
  assert.notEqual(dfaWalk(dfa, s, utf8.encode("t")), DFA_NONE);
});

Deno.test("schemaDfa() of a flat object stays small (its table is 1 KiB a state on the GPU)", () => {
  const dfa = schemaDfa({
    type: "object",
    properties: {
      title: { type: "string" },
      year: { type: "integer" },
      tags: { type: "array", items: { type: "string" } },
    },
    required: ["title", "year", "tags"],
  });
  assert.ok(dfa.states < 120, `${dfa.states} states`);
});

/** Whether `v` is an instance of `schema` (the keywords SCHEMA uses; JSON Schema's meaning). */
function valid(v: Json, schema: Record<string, unknown>, root = schema): boolean {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (schema.$ref) {
    const name = (schema.$ref as string).split("/").pop()!;
    return valid(v, (root.$defs as Record<string, Record<string, unknown>>)[name], root);
  }
  if ("const" in schema) return same(v, schema.const);
  if (schema.enum) return (schema.enum as unknown[]).some((e) => same(e, v));
  if (schema.anyOf) {
    return (schema.anyOf as Record<string, unknown>[]).some((s) => valid(v, s, root));
  }
  const types = [schema.type].flat();
  return types.some((t) => {
    switch (t) {
      case "string":
        // The formats held to are patterns: RegExp's verdict on the value.
        return typeof v === "string" &&
          (typeof schema.format !== "string" || !(schema.format in FORMATS) ||
            new RegExp(FORMATS[schema.format], "u").test(v));
      case "integer":
        return Number.isInteger(v);
      case "number":
        return typeof v === "number";
      case "boolean":
        return typeof v === "boolean";
      case "null":
        return v === null;
      case "array":
        return Array.isArray(v) && v.length >= ((schema.minItems as number) ?? 0) &&
          v.length <= ((schema.maxItems as number) ?? Infinity) &&
          v.every((x) => valid(x, schema.items as Record<string, unknown>, root));
      case "object": {
        if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
        const props = schema.properties as Record<string, Record<string, unknown>>;
        return Object.keys(v).every((k) => k in props && valid(v[k], props[k], root)) &&
          (schema.required as string[]).every((k) => k in v);
      }
    }
    return false;
  });
}

Deno.test("schemaDfa() accepts only instances (mutated answers checked by a validator)", () => {
  const dfa = schemaDfa(SCHEMA);
  const rand = seeded(3);
  const alphabet = [...'{}[]",: 0123456789-.eEtrufalsn\\abcxy', "é"];
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    const v = instance(rand);
    const text = [...(rand() < 0.5 ? JSON.stringify(v) : spaced(v))];
    for (let e = 0; e < 1 + Math.floor(rand() * 2); e++) {
      const at = Math.floor(rand() * text.length);
      const c = alphabet[Math.floor(rand() * alphabet.length)];
      const kind = Math.floor(rand() * 3);
      if (kind === 0) text.splice(at, 0, c);
      else if (kind === 1) text.splice(at, 1);
      else text.splice(at, 1, c);
    }
    const mutated = text.join("");
    if (!dfaAccepts(dfa, mutated)) continue;
    accepted++;
    let parsed: Json;
    try {
      parsed = JSON.parse(mutated);
    } catch {
      assert.fail(`accepted, but JSON.parse refuses ${mutated}`);
    }
    assert.ok(valid(parsed, SCHEMA), `accepted, but not an instance: ${mutated}`);
  }
  // Some mutations keep an instance (a digit for a digit, a letter inside a string; fewer in
  // "any"'s date, held to its format).
  assert.ok(accepted > 150, `${accepted} accepted`);
});

Deno.test("schemaDfa() holds sibling keywords or refuses them; never drops one", () => {
  const refused: [unknown, RegExp][] = [
    // "At least one of": required beside anyOf and in its branch would need intersecting.
    [{
      type: "object",
      properties: { a: { type: "string" }, x: { type: "string" } },
      required: ["a"],
      anyOf: [{ required: ["x"] }],
    }, /anyOf\[0\] sets "required", which is also set beside anyOf/],
    [{ type: "string", anyOf: [{ type: "integer" }] }, /sets "type"/],
    [{ type: "string", allOf: [{ type: "integer" }] }, /sets "type"/],
    [{ type: "string", anyOf: [false] }, /anyOf\[0\] must be a schema object, got false/],
    [{ enum: [1, "x"], anyOf: [{ type: "string" }] }, /enum beside anyOf is not supported/],
    [{ anyOf: [{ type: "string" }], oneOf: [{ type: "integer" }] }, /anyOf beside oneOf/],
    [{ const: 1, enum: [1] }, /const beside enum/],
    [{
      $defs: { a: { type: "object", properties: { x: { type: "string" } } } },
      $ref: "#/$defs/a",
      required: ["x"],
    }, /"\$ref" beside required is not supported/],
    [{ enum: [undefined] }, /values must be JSON data, got undefined/],
    [{ enum: [{ a: undefined }] }, /values must be JSON data/],
    [{ enum: [NaN] }, /values must be JSON data, got NaN/],
    [{ enum: [new Date(0)] }, /values must be JSON data/],
    [{ enum: [1n] }, /values must be JSON data, got 1/],
    [
      { type: "object" },
      /an object with no "properties": list them, or give "additionalProperties"/,
    ],
    [{ type: "string", nullable: "yes" }, /nullable must be true or false/],
    [{ type: "string", enum: [1, 2] }, /no value of its enum is of its type "string"/],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      String(message),
    );
  }
  // Beside a type, only the enum's members of that type.
  const typed = schemaDfa({ type: "string", enum: ["a", null, 1] });
  assert.deepEqual(['"a"', "null", "1"].map((t) => dfaAccepts(typed, t)), [true, false, false]);
  // Siblings of anyOf that its branches do not set apply to each branch.
  const merged = schemaDfa({
    type: "object",
    anyOf: [{ properties: { a: { type: "integer" } }, required: ["a"] }, {
      properties: { b: { type: "null" } },
      required: ["b"],
    }],
  });
  assert.ok(dfaAccepts(merged, '{"a":1}') && dfaAccepts(merged, '{"b":null}'));
  assert.ok(!dfaAccepts(merged, "1") && !dfaAccepts(merged, "{}"));
  // nullable adds null (to a type, an enum, a $ref alike) without changing the caller's schema.
  const types = ["string"];
  const nullable = schemaDfa({ type: types, nullable: true });
  assert.ok(dfaAccepts(nullable, "null") && dfaAccepts(nullable, '"s"'));
  assert.deepEqual(types, ["string"]);
});

Deno.test("schemaDfa() refuses schemas too large or too deep quickly, and compiles deep objects in linear time", () => {
  // Twenty nested one-property objects: each property compiled once (was exponential).
  let nested: Record<string, unknown> = { type: "integer" };
  for (let i = 0; i < 20; i++) {
    nested = { type: "object", properties: { a: nested }, required: ["a"] };
  }
  const t0 = performance.now();
  const dfa = schemaDfa(nested);
  assert.ok(performance.now() - t0 < 2000, `${performance.now() - t0} ms`);
  assert.ok(dfaAccepts(dfa, '{"a":'.repeat(20) + "7" + "}".repeat(20)));
  const slow: [unknown, RegExp][] = [];
  // A chain of definitions each used twice: 2^20 copies.
  const defs: Record<string, unknown> = { d0: { type: "integer" } };
  for (let i = 1; i <= 20; i++) {
    defs[`d${i}`] = { anyOf: [{ $ref: `#/$defs/d${i - 1}` }, { $ref: `#/$defs/d${i - 1}` }] };
  }
  slow.push([{ $defs: defs, $ref: "#/$defs/d20" }, /too large to compile/]);
  // Four nested lists of up to 32 items: 32^4 copies.
  let lists: Record<string, unknown> = { type: "integer" };
  for (let i = 0; i < 4; i++) lists = { type: "array", items: lists, maxItems: 32 };
  slow.push([lists, /too large to compile/]);
  let deep: Record<string, unknown> = { type: "integer" };
  for (let i = 0; i < 20_000; i++) deep = { anyOf: [deep] };
  slow.push([deep, /nests deeper than 64 levels/]);
  for (const [schema, message] of slow) {
    const t = performance.now();
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
    );
    assert.ok(performance.now() - t < 5000, `${performance.now() - t} ms for ${message}`);
  }
});

Deno.test("schemaDfa() past the state budget names the parts that weigh most", () => {
  const text = (n: number) => ({ type: "string", maxLength: n });
  const schema = {
    type: "object",
    properties: {
      n: { type: "integer" },
      x: {
        type: "object",
        properties: { y: text(20), z: { type: "array", items: text(200), maxItems: 3 } },
      },
      w: text(100),
    },
  };
  assert.throws(
    () => schemaDfa(schema),
    (e) =>
      e instanceof SchemaError &&
      e.message.endsWith(
        "; its largest parts: schema.properties.x (14909 states), " +
          "schema.properties.w (2403 states), schema.properties.n (4 states); the largest " +
          "within schema.properties.x: schema.properties.x.properties.z (14413 states); the " +
          "largest within schema.properties.x.properties.z: " +
          "schema.properties.x.properties.z.items (4803 states)",
      ),
  );
});

/** Whether integer `x` is within `schema`'s bounds, read straight off JSON Schema's wording. */
function inRange(x: number, s: Record<string, number | boolean>): boolean {
  const { minimum: min, maximum: max, exclusiveMinimum: exMin, exclusiveMaximum: exMax } = s;
  return (min === undefined || (exMin === true ? x > (min as number) : x >= (min as number))) &&
    (max === undefined || (exMax === true ? x < (max as number) : x <= (max as number))) &&
    (typeof exMin !== "number" || x > exMin) && (typeof exMax !== "number" || x < exMax);
}

Deno.test("schemaDfa() holds integers to minimum / maximum / exclusive bounds exactly", () => {
  const SAFE = Number.MAX_SAFE_INTEGER;
  const cases: Record<string, number | boolean>[] = [
    { minimum: 0 },
    { maximum: 0 },
    { exclusiveMinimum: 0 },
    { exclusiveMaximum: 0 },
    { minimum: -5, maximum: 5 },
    { minimum: 0, maximum: 0 },
    { minimum: 10, maximum: 10 },
    { exclusiveMinimum: 0, exclusiveMaximum: 100 },
    { minimum: -100, maximum: -10 },
    { minimum: -123, exclusiveMaximum: -99 },
    { minimum: 123, maximum: 4567 },
    { minimum: 7, maximum: 1000 },
    { minimum: 1.0 }, // pydantic ge=1.0
    { exclusiveMinimum: 1.5 }, // gt=1.5: from 2
    { minimum: -1.5, maximum: 2.5 },
    { exclusiveMinimum: -2.5, exclusiveMaximum: 0.5 },
    { minimum: 0, exclusiveMinimum: true, maximum: 9, exclusiveMaximum: true }, // draft 4
    { minimum: 3, exclusiveMinimum: false },
    { minimum: 5, exclusiveMinimum: 2, maximum: 50, exclusiveMaximum: 60 }, // all four
    { minimum: 999, maximum: 1001 },
    { maximum: SAFE },
    { minimum: -SAFE, maximum: SAFE },
    { minimum: SAFE - 15 },
    { maximum: -SAFE + 15 },
  ];
  for (const bounds of cases) {
    const dfa = schemaDfa({ type: "integer", ...bounds });
    const ends = [bounds.minimum, bounds.maximum, bounds.exclusiveMinimum, bounds.exclusiveMaximum]
      .filter((x): x is number => typeof x === "number").map(Math.round);
    const xs = new Set<number>();
    for (const e of [...ends, 0]) for (let d = -20; d <= 20; d++) xs.add(e + d);
    for (const x of xs) {
      assert.equal(
        dfaAccepts(dfa, String(x)),
        inRange(x, bounds),
        `${x} ${JSON.stringify(bounds)}`,
      );
    }
    // Far out, in digits a double cannot hold, and forms that are no JSON integer.
    const far = ["9".repeat(17), "-" + "9".repeat(17), "12345678901234567890123", "-100000"];
    for (const t of far) {
      assert.equal(
        dfaAccepts(dfa, t),
        inRange(Number(t), bounds),
        `${t} ${JSON.stringify(bounds)}`,
      );
    }
    for (const t of ["", "-", "+1", "01", "-01", "00", "1.0", "1e2", " 1", "1 "]) {
      assert.ok(!dfaAccepts(dfa, t), `${t} ${JSON.stringify(bounds)}`);
    }
    // "-0" is the integer 0 (JSON.parse and Python read it so): where 0 is in range.
    assert.equal(dfaAccepts(dfa, "-0"), inRange(0, bounds), JSON.stringify(bounds));
  }
  // Bounds live only on the integer branch of a list of types, and in a property.
  const both = schemaDfa({
    type: "object",
    properties: { n: { type: ["integer", "null"], minimum: 1, maximum: 12 } },
    required: ["n"],
  });
  assert.deepEqual(
    ['{"n":1}', '{"n": 12}', '{"n":null}', '{"n":0}', '{"n":13}', '{"n":"1"}'].map((t) =>
      dfaAccepts(both, t)
    ),
    [true, true, true, false, false, false],
  );
  // An enum beside bounds keeps its members within them (a string is not held to a minimum).
  const kept = schemaDfa({ enum: [1, 5, 10, "x", 2.5], minimum: 2, exclusiveMaximum: 10 });
  assert.deepEqual(
    ["1", "5", "10", '"x"', "2.5"].map((t) => dfaAccepts(kept, t)),
    [false, true, false, true, true],
  );
  // A whole range of safe integers stays small.
  assert.ok(schemaDfa({ type: "integer", minimum: -SAFE, maximum: SAFE }).states < 300);
  const refused: [unknown, RegExp][] = [
    [
      { type: "integer", minimum: 2 ** 53 },
      /schema\.minimum 9007199254740992 is past ±\(2\^53 − 1\)/,
    ],
    [{ type: "integer", maximum: -1e300 }, /schema\.maximum -1e\+300 is past ±\(2\^53 − 1\)/],
    [{ type: "integer", minimum: "1" }, /schema\.minimum must be a number, got "1"/],
    [
      { type: "integer", exclusiveMinimum: true },
      /exclusiveMinimum true needs "minimum" beside it/,
    ],
    [
      { type: "integer", minimum: 5, maximum: 4 },
      /no integer is within its bounds \(minimum 5, maximum 4\)/,
    ],
    [{ type: "integer", exclusiveMinimum: 1.2, exclusiveMaximum: 1.8 }, /no integer is within/],
    [
      { enum: [1, 2], minimum: 3 },
      /: no value of its enum is within its bounds, multipleOf, pattern and format$/,
    ],
    [{ type: "integer", multipleOf: 0 }, /schema\.multipleOf must be a number above 0, got 0/],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      JSON.stringify(schema),
    );
  }
});

/** Decimal string `t` (`-?d+(.d+)?`) compared with `u`, exactly: BigInts at a shared scale. */
function compareExact(t: string, u: string): number {
  const parts = (x: string) => {
    const [int, frac = ""] = x.replace(/^-/, "").split(".");
    return { neg: x.startsWith("-"), int, frac };
  };
  const [a, b] = [parts(t), parts(u)];
  const scale = Math.max(a.frac.length, b.frac.length);
  const big = (d: typeof a) => (d.neg ? -1n : 1n) * BigInt(d.int + d.frac.padEnd(scale, "0"));
  const [x, y] = [big(a), big(b)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The double next to `x` upward (`dir` 1) or downward (-1): the reference's own. */
function nextDouble(x: number, dir: 1 | -1): number {
  if (x === 0) return dir * Number.MIN_VALUE;
  const a = new Float64Array([x]);
  const bits = new BigInt64Array(a.buffer);
  bits[0] += (x > 0) === (dir > 0) ? 1n : -1n;
  return a[0];
}

Deno.test("schemaDfa() holds bounded numbers to their bounds as readers read them (doubles), written without exponent", () => {
  // Each bound set as written (a string, the reference compares its digits) and in the schema.
  const cases: [Record<string, string | boolean>][] = [
    [{ minimum: "0", maximum: "1" }], // pydantic confloat(ge=0, le=1)
    [{ exclusiveMinimum: "0", exclusiveMaximum: "1" }],
    [{ minimum: "0.5" }],
    [{ maximum: "-2.75" }],
    [{ exclusiveMinimum: "-2.75", maximum: "100" }],
    [{ minimum: "1e-3", exclusiveMaximum: "0.5" }],
    [{ minimum: "-1", maximum: "-0.001" }],
    [{ minimum: "0", exclusiveMinimum: true, maximum: "10", exclusiveMaximum: true }], // draft 4
    [{ exclusiveMinimum: "0" }],
    [{ maximum: "0" }],
    [{ minimum: "0" }],
    [{ exclusiveMaximum: "0" }],
    [{ minimum: "12.345", maximum: "12.35" }],
    [{ minimum: "-100", maximum: "100" }],
    [{ minimum: "99.99", exclusiveMaximum: "1000" }],
    [{ minimum: "5", exclusiveMinimum: "5", maximum: "7.25", exclusiveMaximum: "8" }],
    [{ minimum: "0.25", maximum: "0.25" }],
  ];
  const rand = seeded(5);
  for (const [written] of cases) {
    const bounds = Object.fromEntries(
      Object.entries(written).map(([k, v]) => [k, typeof v === "string" ? Number(v) : v]),
    );
    const t0 = performance.now();
    const dfa = schemaDfa({ type: "number", ...bounds });
    const ms = performance.now() - t0;
    assert.ok(dfa.states < 200 && ms < 500, `${dfa.states} states, ${ms} ms`);
    const ends = Object.values(written).filter((v): v is string => typeof v === "string")
      .map((v) => String(Number(v))); // 1e-3 as 0.001
    // The grid: whole parts around each bound and 0, with 0 to 4 fraction digits; long fractions
    // just beside each bound.
    const ints = new Set(["0", "1", "2", "9", "10", "99", "100", "101", "999", "1000", "12345"]);
    for (const e of ends) {
      const n = Math.trunc(Math.abs(Number(e)));
      for (let d = -2; d <= 2; d++) if (n + d >= 0) ints.add(String(n + d));
    }
    const fracs = ["", "0", "00", "0000"];
    for (let d = 0; d < 10; d++) fracs.push(String(d), `${d}0`, `${d}5`, `${d}9`, `0${d}`);
    for (let k = 0; k < 30; k++) {
      fracs.push(String(Math.floor(rand() * 1000)).padStart(3, "0"));
      fracs.push(String(Math.floor(rand() * 10000)).padStart(4, "0"));
    }
    for (const e of ends) {
      const [, f = ""] = e.replace(/^-/, "").split(".");
      fracs.push(f, f + "0", f + "00001", f + "0000000000000000000001");
      fracs.push(f.padEnd(4, "0"), f.slice(0, -1) + "4999999999");
      if (f) fracs.push(f.slice(0, -1) + String(Number(f.at(-1)) - 1) + "99999999999");
    }
    const texts: string[] = [];
    for (const i of ints) {
      for (const f of new Set(fracs)) {
        const body = f ? `${i}.${f}` : i;
        texts.push(body, "-" + body);
      }
    }
    // Readers (JSON.parse, Python's json, pydantic) round a number to a double before comparing:
    // an accepted text's double must be within the bounds (a text just inside a strict bound's
    // exact value can round onto it: 0.99999999999999999 is 1). Inclusive bounds hold exactly
    // over the digits; a strict bound may refuse texts that read as the double next to it.
    for (const t of texts) {
      const v = Number(t);
      let sound = true, whole = true;
      for (const [k, b] of Object.entries(written)) {
        if (typeof b === "boolean") continue;
        const lower = k.endsWith("inimum");
        const strict = k.startsWith("exclusive") ||
          written[`exclusive${k[0].toUpperCase()}${k.slice(1)}`] === true;
        const x = Number(b);
        if (strict) {
          sound &&= lower ? v > x : v < x;
          const far = nextDouble(nextDouble(x, lower ? 1 : -1), lower ? 1 : -1);
          whole &&= lower ? v >= far : v <= far;
        } else {
          const c = compareExact(t, String(x));
          sound &&= lower ? v >= x : v <= x;
          whole &&= lower ? c >= 0 : c <= 0;
        }
      }
      const accepted = dfaAccepts(dfa, t);
      if (accepted) assert.ok(sound, `${t} accepted, outside ${JSON.stringify(written)}`);
      if (whole) assert.ok(accepted, `${t} refused, inside ${JSON.stringify(written)}`);
    }
    // Only the exponent-free form of a JSON number.
    for (
      const t of ["", "-", "+1", "01", "-01", "00", "1.", ".5", "-.5", "1e0", "0E0", "0.5e1", " 0"]
    ) {
      assert.ok(!dfaAccepts(dfa, t), `${t} ${JSON.stringify(written)}`);
    }
  }
  // Bounds on a number beside other types and in a property; unbounded numbers keep exponents.
  const prop = schemaDfa({
    type: "object",
    properties: { p: { type: ["number", "null"], exclusiveMinimum: 0, maximum: 1 } },
  });
  assert.deepEqual(
    ['{"p":0.5}', '{"p": 1.0}', '{"p":null}', '{"p":0}', '{"p":-0.0}', '{"p":1.01}', '{"p":5e-1}']
      .map((t) => dfaAccepts(prop, t)),
    [true, true, true, false, false, false, false],
  );
  assert.ok(dfaAccepts(schemaDfa({ type: "number" }), "5e-1"));
  // A whole range of safe integers as bounds stays small.
  const wide = schemaDfa({ type: "number", minimum: -(2 ** 53 - 1), maximum: 2 ** 53 - 1 });
  assert.ok(wide.states < 500, `${wide.states}`);
  const refused: [unknown, RegExp][] = [
    [
      { type: "number", minimum: 1, maximum: 0.5 },
      /no number is within its bounds \(minimum 1, maximum 0\.5\)/,
    ],
    [{ type: "number", exclusiveMinimum: 0.5, maximum: 0.5 }, /no number is within its bounds/],
    [
      { type: "number", maximum: 2 ** 53 },
      /schema\.maximum 9007199254740992 is past ±\(2\^53 − 1\)/,
    ],
    [{ type: "number", minimum: 1e-70 }, /has 70 fraction digits: up to 64 are supported/],
    [{ type: "number", minimum: true }, /schema\.minimum must be a number, got true/],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      JSON.stringify(schema),
    );
  }
});

Deno.test("schemaDfa() holds strings to minLength / maxLength in code points", () => {
  // Each piece one character once decoded: ASCII, 2- to 4-byte UTF-8, escapes, a \u pair.
  const pieces = ["a", "é", "中", "😀", "\\n", '\\"', "\\u00e9", "\\ud83d\\ude00", "\\uDC00"];
  const cases: [number | undefined, number | undefined][] = [[undefined, 0], [undefined, 3]];
  cases.push([1, undefined], [4, undefined], [2, 2], [0, 5], [3, 6]);
  for (const [min, max] of cases) {
    const dfa = schemaDfa({ type: "string", minLength: min, maxLength: max });
    const rand = seeded(11);
    for (let n = 0; n <= 8; n++) {
      for (let k = 0; k < 30; k++) {
        const body = Array.from({ length: n }, () => pieces[Math.floor(rand() * pieces.length)]);
        const text = `"${body.join("")}"`;
        assert.equal([...JSON.parse(text)].length, n, text);
        const want = n >= (min ?? 0) && n <= (max ?? Infinity);
        assert.equal(dfaAccepts(dfa, text), want, `${text} in [${min}, ${max}]`);
      }
    }
  }
  // A high surrogate's escape then a low one's is one character; a lone one is one, too.
  const one = schemaDfa({ type: "string", minLength: 1, maxLength: 1 });
  for (const t of ['"\\uD83D\\uDE00"', '"\\ud800"', '"\\udc00"', '"\\u0041"', '"\\\\"']) {
    assert.ok(dfaAccepts(one, t), t);
  }
  for (const t of ['"\\ud800\\ud800"', '"\\udc00\\ud800"', '"\\ud800a"', '""', '"ab"']) {
    assert.ok(!dfaAccepts(one, t), t);
  }
  // Beside other types a length bound holds strings only; an enum keeps its members within it.
  const mixed = schemaDfa({ type: ["string", "integer"], maxLength: 2 });
  assert.deepEqual(['"ab"', '"abc"', "12345"].map((t) => dfaAccepts(mixed, t)), [
    true,
    false,
    true,
  ]);
  const named = schemaDfa({ enum: ["no", "yes", "é😀x"], maxLength: 3, minLength: 3 });
  assert.deepEqual(['"no"', '"yes"', '"é😀x"'].map((t) => dfaAccepts(named, t)), [
    false,
    true,
    true,
  ]);
  // The longest bound allowed compiles within the state budget; past it is refused, saying so.
  const long = schemaDfa({ type: "string", maxLength: MAX_STRING_LENGTH });
  assert.ok(long.states < 6500, `${long.states} states`);
  assert.ok(dfaAccepts(long, JSON.stringify("é".repeat(MAX_STRING_LENGTH))));
  assert.ok(!dfaAccepts(long, JSON.stringify("é".repeat(MAX_STRING_LENGTH + 1))));
  // A longer maxLength (pydantic's HttpUrl: 2083) is held to the cap: shorter answers, all valid;
  // a uri's, to 128 (counting its characters to 256 would take over 3/4 of the state budget),
  // its host a name (no [IPv6] literal, too costly to count through).
  const cases2: [Record<string, unknown>, number][] = [
    [{ maxLength: 2083 }, MAX_STRING_LENGTH],
    [{ minLength: 3, maxLength: 300, format: "uri" }, 128],
  ];
  for (const [schema, top] of cases2) {
    const capped = schemaDfa({ type: "string", ...schema });
    const at = (n: number) => JSON.stringify("http://a/" + "x".repeat(n - 9));
    assert.deepEqual(
      [at(10), at(top), at(top + 1)].map((t) => dfaAccepts(capped, t)),
      [true, true, false],
      JSON.stringify(schema),
    );
  }
  const bounded = schemaDfa({ type: "string", format: "uri", maxLength: 40 });
  assert.deepEqual(
    ['"http://a.b/c"', '"http://[::1]/"', '"http://"'].map((t) => dfaAccepts(bounded, t)),
    [true, false, false],
  );
  // Length bounds around every value of a fixed-span format need no count.
  const ip = schemaDfa({ type: "string", format: "ipv6", maxLength: 45 });
  assert.ok(ip.states < 700 && dfaAccepts(ip, '"1:2:3:4:5:6:255.255.255.255"'), `${ip.states}`);
  const refused: [unknown, RegExp][] = [
    [{ type: "string", minLength: 257 }, /minLength up to 256 is supported .* got 257/],
    [{ type: "string", minLength: 300, maxLength: 2083 }, /minLength up to 256 is supported/],
    [{ type: "string", minLength: 3, maxLength: 2 }, /maxLength 2 is below minLength 3/],
    [{ type: "string", maxLength: -1 }, /maxLength must be a whole number ≥ 0, got -1/],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      JSON.stringify(schema),
    );
  }
});

Deno.test("schemaDfa() writes a map (additionalProperties with no properties) as any keys' entries", () => {
  // pydantic's dict[str, int], and dict[str, list[str]] in a property.
  const ints = schemaDfa({ type: "object", additionalProperties: { type: "integer" } });
  const yes = ["{}", '{"a":1}', '{"a": 1, "b":-2}', '{"":0,"\\u00e9\\n":3}', '{"a":1,"a":2}'];
  for (const t of yes) assert.ok(dfaAccepts(ints, t), t);
  const no = ['{"a":"1"}', '{"a":1,}', "{a:1}", '{"a":1.5}', "{ }", '{"a" :1}', "[]", '{"a":}'];
  for (const t of no) assert.ok(!dfaAccepts(ints, t), t);
  const nested = schemaDfa({
    type: "object",
    properties: {
      tags: {
        type: "object",
        additionalProperties: { type: "array", items: { type: "string" } },
        maxProperties: 2,
        minProperties: 1,
      },
    },
    required: ["tags"],
  });
  const counted = ['{"tags":{}}', '{"tags":{"a":[]}}', '{"tags":{"a":["x"],"b":[]}}'];
  counted.push('{"tags":{"a":[],"b":[],"c":[]}}');
  assert.deepEqual(counted.map((t) => dfaAccepts(nested, t)), [false, true, true, false]);
  // properties {} beside additionalProperties is the same map; false allows only {}.
  const empty = schemaDfa({
    type: "object",
    properties: {},
    additionalProperties: { type: "null" },
  });
  assert.ok(dfaAccepts(empty, '{"x":null}') && !dfaAccepts(empty, '{"x":1}'));
  const none = schemaDfa({ type: "object", additionalProperties: false });
  assert.deepEqual(["{}", '{"a":1}'].map((t) => dfaAccepts(none, t)), [true, false]);
  // Beside listed properties it is moot (only they are written), as before.
  const listed = schemaDfa({
    type: "object",
    properties: { a: { type: "integer" } },
    additionalProperties: { type: "string" },
  });
  assert.deepEqual(['{"a":1}', '{"a":1,"b":"x"}'].map((t) => dfaAccepts(listed, t)), [true, false]);
  const refused: [unknown, RegExp][] = [
    [{ type: "object", additionalProperties: true }, /additionalProperties allows any value/],
    [{ type: "object", additionalProperties: {} }, /additionalProperties allows any value/],
    [{ type: "object", additionalProperties: { description: "x" } }, /allows any value/],
    [
      { type: "object", additionalProperties: { type: "integer" }, minProperties: 2 },
      /minProperties 2 is not supported \(0 and 1 are\): a repeated key would be counted twice/,
    ],
    [
      { type: "object", additionalProperties: { type: "integer" }, maxProperties: 33 },
      /maxProperties up to 32 is supported, got 33/,
    ],
    [
      { type: "object", additionalProperties: false, minProperties: 1 },
      /at most 0 properties is below minProperties 1/,
    ],
    [
      { type: "object", properties: { a: { type: "integer" } }, maxProperties: 1 },
      /"maxProperties" beside listed properties is not supported/,
    ],
    [
      { type: "object", additionalProperties: { type: "integer" }, required: ["a"] },
      /required names "a", which is not in its properties/,
    ],
    [
      {
        type: "object",
        properties: { a: { type: "integer" } },
        propertyNames: { maxLength: 3 },
      },
      /"propertyNames" beside listed properties is not supported/,
    ],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      JSON.stringify(schema),
    );
  }
});

Deno.test("schemaDfa() holds a map's keys to propertyNames", () => {
  const map = (names: unknown, extra = {}) =>
    schemaDfa({
      $defs: { Color: { enum: ["red", "green", "blue"], type: "string" } },
      type: "object",
      additionalProperties: { type: "integer" },
      propertyNames: names,
      ...extra,
    });
  const cases: [unknown, string[], string[]][] = [
    // dict[Literal["a", "b"], int]: pydantic's enum, no type.
    [{ enum: ["a", "b"] }, ['{"a": 1, "b": 2}', '{"b":1}', "{}"], [
      '{"c": 1}',
      '{"a": 1, "ab": 2}',
    ]],
    // dict[Color, int]: the enum by $ref.
    [{ $ref: "#/$defs/Color" }, ['{"red": 1, "blue": 2}'], ['{"Red": 1}', '{"red": 1, "x": 2}']],
    // dict[constr(pattern=…), int]: a pattern with no type is on a string; escapes decoded.
    [
      { pattern: "^[a-z]{2}$" },
      ['{"ab": 1}', '{"\\u0061b": 1, "zz": 2}'],
      ['{"abc": 1}', '{"A1": 1}', '{"": 1}'],
    ],
    [{ maxLength: 2, minLength: 1 }, ['{"é😀": 1}', '{"a": 1}'], ['{"abc": 1}', '{"": 1}']],
    // Members that are not strings cannot be keys.
    [{ enum: [1, "one", null] }, ['{"one": 1}'], ["{1: 1}", "{null: 1}", '{"1": 1}']],
    // true or annotations only: any key.
    [true, ['{"anything": 1}'], ['{"a": "x"}']],
    [{ title: "Key" }, ['{"anything": 1}', '{"": 2}'], []],
  ];
  for (const [names, yes, no] of cases) {
    const dfa = map(names);
    for (const t of yes) assert.ok(dfaAccepts(dfa, t), `${t} ${JSON.stringify(names)}`);
    for (const t of no) assert.ok(!dfaAccepts(dfa, t), `${t} ${JSON.stringify(names)}`);
  }
  // Beside maxProperties: each entry's key held.
  const two = map({ enum: ["a", "b"] }, { maxProperties: 2 });
  assert.deepEqual(
    ['{"a":1,"b":2}', '{"a":1,"b":2,"a":3}', '{"a":1,"c":2}'].map((t) => dfaAccepts(two, t)),
    [true, false, false],
  );
  const refused: [unknown, RegExp][] = [
    [false, /schema\.propertyNames false allows no key: write "maxProperties": 0/],
    [{ enum: [1, 2] }, /schema\.propertyNames \(keys are strings\) matches nothing/],
    [{ type: "string", pattern: "(a)\\1" }, /schema\.propertyNames\.pattern .*backreferences/],
    ["x", /schema\.propertyNames must be a schema object, got "x"/],
  ];
  for (const [names, message] of refused) {
    assert.throws(
      () => map(names),
      (e) => e instanceof SchemaError && message.test(e.message),
      JSON.stringify(names),
    );
  }
});

Deno.test("schemaDfa() holds a string to its pattern: the decoded value, however it is spelled", () => {
  // pydantic's Field(pattern=r"^\d{3}-\d{4}$"), and an unanchored one (found anywhere).
  const phone = schemaDfa({
    type: "object",
    properties: { phone: { type: "string", pattern: "^\\d{3}-\\d{4}$" } },
    required: ["phone"],
  });
  const yes = ['{"phone":"555-1234"}', '{"phone": "\\u0035\\u00355-1234"}'];
  const no = ['{"phone":"555-12345"}', '{"phone":"x555-1234"}', '{"phone":"555\\n1234"}'];
  for (const t of yes) assert.ok(dfaAccepts(phone, t), t);
  for (const t of no) assert.ok(!dfaAccepts(phone, t), t);
  const word = schemaDfa({ type: "string", pattern: "cat|dog" });
  for (const [t, want] of [['"a cat!"', true], ['"\\u0063at"', true], ['"c\\nat"', false]]) {
    assert.equal(dfaAccepts(word, t as string), want, t as string);
  }
  // Beside an enum: its members the pattern matches. Under nullable and $ref, as anywhere.
  const e = schemaDfa({ enum: ["ab", "b", 1], pattern: "^a" });
  assert.deepEqual(['"ab"', '"b"', "1"].map((t) => dfaAccepts(e, t)), [true, false, true]);
  const r = schemaDfa({
    type: "array",
    items: { $ref: "#/$defs/code" },
    $defs: { code: { type: "string", pattern: "^[A-Z]{2}$", nullable: true } },
  });
  for (const [t, want] of [['["AB",null,"CD"]', true], ['["AB","cd"]', false]] as const) {
    assert.equal(dfaAccepts(r, t), want, t);
  }
});

Deno.test("schemaDfa() intersects a pattern with minLength / maxLength, exactly", () => {
  const schema = { type: "string", pattern: "^[a-c😀]*$", minLength: 2, maxLength: 3 };
  const dfa = schemaDfa(schema);
  const rand = seeded(8);
  for (let i = 0; i < 2000; i++) {
    const n = Math.floor(rand() * 5);
    const value = Array.from({ length: n }, () => [..."abcd😀", "\ud83d"][Math.floor(rand() * 6)])
      .join("");
    // Spelled raw (a lone surrogate as JSON.stringify escapes it), or every character escaped
    // (😀 as a surrogate pair of escapes).
    const escaped = '"' +
      [...value].map((c) =>
        c.split("").map((u) => "\\u" + u.charCodeAt(0).toString(16).padStart(4, "0")).join("")
      ).join("") + '"';
    const want = /^[a-c😀]*$/u.test(value) && [...value].length >= 2 && [...value].length <= 3;
    for (const t of [JSON.stringify(value), escaped]) assert.equal(dfaAccepts(dfa, t), want, t);
  }
  assert.throws(
    () => schemaDfa({ type: "string", pattern: "^a{5}$", maxLength: 3 }),
    /schema \(pattern, maxLength together\) matches nothing/,
  );
});

/** Whether `s` is an IPv6 address in RFC 4291's text forms, no zone (Python's ipaddress). */
function isIpv6(s: string): boolean {
  const octet = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
  if (s.includes(".")) {
    // An IPv4 tail is the last 32 bits: two groups.
    const i = s.lastIndexOf(":");
    if (!new RegExp(`^${octet}(?:\\.${octet}){3}$`).test(s.slice(i + 1))) return false;
    s = s.slice(0, i + 1) + "0:0";
  }
  const group = (g: string) => /^[0-9A-Fa-f]{1,4}$/.test(g);
  const halves = s.split("::");
  if (halves.length > 2) return false;
  const groups = halves.map((h) => h === "" ? [] : h.split(":"));
  if (!groups.every((gs) => gs.every(group))) return false;
  const n = groups.flat().length;
  return halves.length === 2 ? n <= 7 : n === 8;
}

Deno.test("schemaDfa() holds format ipv6 exactly: every text form, :: once, an IPv4 tail", () => {
  const dfa = schemaDfa({ type: "string", format: "ipv6" });
  const rand = seeded(21);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  const groups = ["", "0", "a", "F", "12", "abc", "ffff", "0db8", "12345", "g"];
  const tails = ["", "", "", "1.2.3.4", "255.255.255.255", "01.2.3.4", "256.0.0.1", "1.2.3"];
  let valid = 0;
  for (let i = 0; i < 20000; i++) {
    const n = Math.floor(rand() * 10);
    const parts = Array.from({ length: n }, () => pick(groups));
    let text = parts.join(":");
    if (rand() < 0.6) {
      const at = Math.floor(rand() * (text.length + 1));
      text = text.slice(0, at) + pick(["::", "::", ":::", ":"]) + text.slice(at);
    }
    const tail = pick(tails);
    if (tail) text += (text.endsWith(":") ? "" : ":") + tail;
    const want = isIpv6(text);
    valid += want ? 1 : 0;
    assert.equal(dfaAccepts(dfa, JSON.stringify(text)), want, text);
  }
  assert.ok(valid > 1000, `${valid} valid`); // the draw reaches both sides
});

Deno.test("schemaDfa() holds the formats it knows, at their boundaries; others stay annotations", () => {
  const cases: Record<string, [string[], string[]]> = {
    date: [
      ["2024-02-29", "2000-02-29", "2023-12-31", "0001-01-01", "9999-04-30", "1999-01-31"],
      ["2023-02-29", "1900-02-29", "2024-04-31", "2024-13-01", "2024-00-10", "2024-01-00"].concat(
        [
          "0000-01-01",
          "2024-1-01",
          "24-01-01",
          "2024-01-01T00:00:00Z",
          " 2024-01-01",
          "２０２４-01-01",
        ],
      ),
    ],
    time: [
      ["00:00:00Z", "23:59:59+05:30", "12:00:00.123456789-00:00", "08:30:00.5Z"],
      ["24:00:00Z", "12:60:00Z", "12:00:60Z", "12:00:00", "12:00Z", "12:00:00z", "12:00:00+5:30"],
    ],
    "date-time": [
      ["2024-02-29T23:59:59Z", "1970-01-01T00:00:00.0+01:00"],
      ["2024-02-29t23:59:59Z", "2024-02-29 23:59:59Z", "2023-02-29T00:00:00Z", "2024-01-01T00:00Z"],
    ],
    uuid: [
      ["123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000"],
      [
        "123e4567e89b12d3a456426614174000",
        "123e4567-e89b-12d3-a456-42661417400g",
        "{123e4567-e89b-12d3-a456-426614174000}",
      ],
    ],
    ipv4: [
      ["0.0.0.0", "255.255.255.255", "192.168.1.10"],
      ["256.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1.2.3.-4"],
    ],
    email: [
      ["a@b.co", "first.last+tag@sub.example-mail.org", "x!#$%&'*+/=?^_`{|}~-@a.b"],
      ["a@b", "a..b@c.d", ".a@b.c", "a@-b.c", "a@b-.c", "a b@c.d", "@b.c", "a@b..c"],
    ],
    hostname: [["localhost", "a-b.example.com", "x1"], ["-a.com", "a_b.com", "a..b", ""]],
    uri: [
      [
        "https://example.com/a?b=c#d",
        "urn:isbn:0451450523",
        "mailto:a@b.c",
        "x:%41",
        "http://[::1]:8080/x",
        "http://[2001:db8::1.2.3.4]",
        "http://user:pw@host/",
        "file:/etc/hosts",
        "a:",
        "http://a//b?c/?d#e?/",
      ],
      [
        "example.com",
        "1http://a",
        "http://a b",
        "http://a%4",
        "://a",
        "http://", // a host after //, as pydantic's AnyUrl asks
        "http:///x",
        "http://[1.2.3.4]/",
        "http://a/[b]",
        "http://[::1",
        "http://a]b",
        "http://a?[x]",
      ],
    ],
    ipv6: [
      [
        "::",
        "::1",
        "1::",
        "2001:db8::8a2e:370:7334",
        "2001:0DB8:0000:0000:0000:0000:1428:57ab",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "::ffff:192.168.0.1",
        "1:2:3:4:5:6:1.2.3.4",
        "1::1.2.3.4",
      ],
      [
        "",
        ":",
        ":::",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4::5:6:7:8",
        "1::2::3",
        "12345::",
        "g::",
        "1:2:3:4:5:6:7:1.2.3.4",
        "::01.2.3.4",
        "::1.2.3",
        "fe80::1%eth0",
        "1.2.3.4",
        ":1::",
      ],
    ],
    ipvanyaddress: [["1.2.3.4", "::1", "2001:db8::8a2e:370:7334"], ["01.2.3.4", "1:2", "", "x"]],
    duration: [
      [
        "P1Y",
        "P1M",
        "PT1M",
        "P1Y2M3DT4H5M6S",
        "P2W",
        "PT0S",
        "P0D",
        "P1Y1D",
        "PT1H1S",
        "P999999Y",
        "P01D",
      ],
      [
        "P",
        "PT",
        "P1DT",
        "P1W1D",
        "P1.5D",
        "-P1D",
        "p1d",
        "P1d",
        "P1D2Y",
        "PT1H2H",
        "P1234567D",
        "1D",
        "P1H",
        "PT1D",
      ],
    ],
  };
  for (const [format, [yes, no]] of Object.entries(cases)) {
    const dfa = schemaDfa({ type: "string", format });
    const re = new RegExp(FORMATS[format], "u");
    for (const v of yes) {
      assert.ok(dfaAccepts(dfa, JSON.stringify(v)) && re.test(v), `${format}: ${v}`);
    }
    for (const v of no) {
      assert.ok(!dfaAccepts(dfa, JSON.stringify(v)) && !re.test(v), `${format} refuses ${v}`);
    }
  }
  // Every date of some years, against the calendar (Date's, in UTC).
  const date = schemaDfa({ type: "string", format: "date" });
  for (const y of [0, 1, 4, 100, 400, 1900, 2000, 2023, 2024, 2100, 9999]) {
    for (let m = 0; m <= 13; m++) {
      for (let d = 0; d <= 32; d++) {
        const text = [String(y).padStart(4, "0"), m, d].map((x) => String(x).padStart(2, "0"))
          .join("-");
        const t = new Date(0);
        t.setUTCFullYear(y, m - 1, d);
        const real = y > 0 && m >= 1 && m <= 12 && t.getUTCMonth() === m - 1 &&
          t.getUTCDate() === d;
        assert.equal(dfaAccepts(date, JSON.stringify(text)), real, text);
      }
    }
  }
  // A format is written raw: its characters never need escapes, and its automaton stays small.
  assert.ok(!dfaAccepts(date, '"\\u0032024-01-0\\u0031"'));
  // A format beside a pattern, both held; others ignored.
  const both = schemaDfa({ type: "string", format: "date", pattern: "^2024-" });
  assert.ok(dfaAccepts(both, '"2024-05-05"') && !dfaAccepts(both, '"2023-05-05"'));
  const other = schemaDfa({ type: "string", format: "color" });
  assert.ok(dfaAccepts(other, '"anything"'));
  // An enum beside a format keeps the members in that format.
  const e = schemaDfa({ enum: ["2024-01-01", "soon"], format: "date" });
  assert.ok(dfaAccepts(e, '"2024-01-01"') && !dfaAccepts(e, '"soon"'));
});

Deno.test("schemaDfa(): a format held to beside anyOf / oneOf / allOf is merged into each branch, not dropped; beside $ref it is refused; an unknown format stays an annotation", () => {
  const accepts = (schema: unknown, text: string) => dfaAccepts(schemaDfa(schema), text);
  const beside = { type: "string", format: "date", anyOf: [{ maxLength: 20 }] };
  assert.ok(accepts(beside, '"2024-02-29"'));
  assert.ok(!accepts(beside, '"x"')); // was taken: the format dropped
  assert.ok(!accepts({ type: "string", format: "date", allOf: [{ maxLength: 20 }] }, '"x"'));
  const nullable = { format: "date", oneOf: [{ type: "string" }, { type: "null" }] };
  assert.ok(accepts(nullable, "null") && accepts(nullable, '"2024-01-01"'));
  assert.ok(!accepts(nullable, '"x"'));
  assert.throws(
    () => schemaDfa({ type: "string", format: "date", anyOf: [{ format: "time" }] }),
    /anyOf\[0\] sets "format", which is also set beside anyOf/,
  );
  assert.throws(
    () => schemaDfa({ format: "date", $ref: "#/$defs/d", $defs: { d: { type: "string" } } }),
    /"\$ref" beside format is not supported/,
  );
  assert.ok(accepts({ type: "string", format: "made-up", anyOf: [{ maxLength: 3 }] }, '"xyz"'));
});

Deno.test("schemaDfa(): a strict number bound holds for a reader that rounds to a double (the review's texts)", () => {
  const cases: [Record<string, number>, string][] = [
    [{ exclusiveMaximum: 1 }, "0.99999999999999999"], // reads as 1
    [{ exclusiveMinimum: 0 }, `0.${"0".repeat(330)}1`], // reads as 0
    [{ minimum: 0, exclusiveMaximum: 0.30000000000000004 }, "0.30000000000000003"],
    [{ exclusiveMinimum: -937 }, "-936.9999999999999999"],
  ];
  for (const [bounds, text] of cases) {
    const dfa = schemaDfa({ type: "number", ...bounds });
    assert.ok(!dfaAccepts(dfa, text), `${text} ${JSON.stringify(bounds)}`);
  }
  // What stays: the double next to the bound inward, and all further in.
  const positive = schemaDfa({ type: "number", exclusiveMinimum: 0 });
  for (const t of ["0.5", "1", `0.${"0".repeat(60)}1`]) assert.ok(dfaAccepts(positive, t), t);
  for (const t of ["0", "-0", "-0.0", "0.0"]) assert.ok(!dfaAccepts(positive, t), t);
  const below1 = schemaDfa({ type: "number", exclusiveMaximum: 1 });
  for (const t of ["0.9999999999999999", "0.5", "-3"]) assert.ok(dfaAccepts(below1, t), t);
});

Deno.test("schemaDfa(): propertyNames with only a format holds the keys to it (it took any key)", () => {
  const dates = schemaDfa({
    type: "object",
    additionalProperties: { type: "integer" },
    propertyNames: { format: "date" },
  });
  assert.ok(dfaAccepts(dates, '{"2024-02-29":1}'));
  for (const t of ['{"x":1}', '{"2023-02-29":1}']) assert.ok(!dfaAccepts(dates, t), t);
  // An unknown format stays an annotation: any key.
  const any = schemaDfa({
    type: "object",
    additionalProperties: { type: "integer" },
    propertyNames: { format: "made-up", description: "a key" },
  });
  assert.ok(dfaAccepts(any, '{"x":1}'));
});

/** Whether decimal text `t` (`-?d+(.d+)?`) is a whole multiple of `m`'s decimal: exact BigInts. */
function isMultipleText(t: string, m: number): boolean {
  const [mi, mf = ""] = String(m).split(".");
  const [int, frac = ""] = t.replace(/^-/, "").split(".");
  const scale = Math.max(frac.length, mf.length);
  const step = BigInt(mi + mf) * 10n ** BigInt(scale - mf.length);
  return BigInt(int + frac.padEnd(scale, "0")) % step === 0n;
}

/** Whether decimal text `t` is within numeric `bounds` (draft 6's), compared exactly. */
function inBoundsText(t: string, b: Record<string, number>): boolean {
  const c = (k: string) => compareExact(t, String(b[k]));
  return (b.minimum === undefined || c("minimum") >= 0) &&
    (b.maximum === undefined || c("maximum") <= 0) &&
    (b.exclusiveMinimum === undefined || c("exclusiveMinimum") > 0) &&
    (b.exclusiveMaximum === undefined || c("exclusiveMaximum") < 0);
}

Deno.test("schemaDfa() holds integers to multipleOf exactly, within their bounds", () => {
  const bounds: Record<string, number>[] = [
    {},
    { minimum: 10, maximum: 100 },
    { exclusiveMinimum: -50, maximum: 49 },
    { minimum: -1000, exclusiveMaximum: -3 },
    { maximum: 0 },
  ];
  for (const m of [1, 2, 3, 5, 7, 10, 12, 25, 100, 0.5, 2.5]) {
    for (const b of bounds) {
      const schema = { type: "integer", multipleOf: m, ...b };
      const dfa = schemaDfa(schema);
      for (let x = -1000; x <= 1000; x++) {
        const t = String(x);
        assert.equal(
          dfaAccepts(dfa, t),
          inRange(x, b) && isMultipleText(t, m),
          `${t} ${JSON.stringify(schema)}`,
        );
      }
      // Past a double's digits, exactly; never a fraction or an exponent (not JSON integers here).
      for (const t of ["7" + "0".repeat(20), "7".repeat(21), "-" + "5".repeat(19) + "0"]) {
        assert.equal(
          dfaAccepts(dfa, t),
          inBoundsText(t, b) && isMultipleText(t, m),
          `${t} ${JSON.stringify(schema)}`,
        );
      }
      for (const t of ["0.0", "14.0", "1e1", "0e0", "-", "", "07", "+7"]) {
        assert.ok(!dfaAccepts(dfa, t), `${t} ${JSON.stringify(schema)}`);
      }
      assert.equal(dfaAccepts(dfa, "-0"), inRange(0, b), JSON.stringify(schema));
    }
  }
  // The brief's case: exactly 14, 21, …, 98.
  const sevens = schemaDfa({ type: "integer", minimum: 10, maximum: 100, multipleOf: 7 });
  const taken = [];
  for (let x = -1000; x <= 1000; x++) if (dfaAccepts(sevens, String(x))) taken.push(x);
  assert.deepEqual(taken, [14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91, 98]);
});

Deno.test("schemaDfa() holds numbers to a decimal multipleOf exactly, however the value is spelt", () => {
  const rand = seeded(17);
  const digit = () => "0000055123456789"[Math.floor(rand() * 16)];
  const spelling = () => {
    const int = rand() < 0.3 ? "0" : String(1 + Math.floor(rand() * (rand() < 0.6 ? 20 : 3000)));
    const frac = Array.from({ length: Math.floor(rand() * 6) }, digit).join("");
    const exp = rand() < 0.15 ? ["e0", "E1", "e-2", "e+1"][Math.floor(rand() * 4)] : "";
    return (rand() < 0.4 ? "-" : "") + int + (frac ? "." + frac : "") + exp;
  };
  const bounds: Record<string, number>[] = [
    {},
    { minimum: 0, maximum: 10 },
    { exclusiveMinimum: -2.5, exclusiveMaximum: 7.5 },
    { minimum: -0.35, maximum: 12.25 },
  ];
  for (const m of [0.01, 0.5, 2.5, 0.1, 0.3, 1.5, 0.25, 0.001, 5, 1]) {
    const [, mf = ""] = String(m).split(".");
    for (const b of bounds) {
      const schema = { type: "number", multipleOf: m, ...b };
      const dfa = schemaDfa(schema);
      const at = JSON.stringify(schema);
      for (let i = 0; i < 1500; i++) {
        const t = spelling();
        const want = !/e/i.test(t) && inBoundsText(t, b) && isMultipleText(t, m);
        assert.equal(dfaAccepts(dfa, t), want, `${t} ${at}`);
      }
      // Every multiple n · m from -30 to 30 within the bounds is written (as JSON writes it,
      // and with its fraction padded by a 0), and none out of them.
      for (let n = -30 * 10 ** mf.length; n <= 30 * 10 ** mf.length; n++) {
        const scaled = BigInt(n) * BigInt(String(m).replace(".", ""));
        const digits = (scaled < 0n ? -scaled : scaled).toString().padStart(mf.length + 1, "0");
        const cut = digits.length - mf.length;
        const t = (scaled < 0n ? "-" : "") + digits.slice(0, cut) +
          (mf ? "." + digits.slice(cut) : "");
        if (!isMultipleText(t, m)) continue;
        assert.equal(dfaAccepts(dfa, t), inBoundsText(t, b), `${t} ${at}`);
        assert.equal(dfaAccepts(dfa, t + (mf ? "0" : ".0")), inBoundsText(t, b), `${t}0 ${at}`);
      }
    }
  }
  // Decimals a double does not hold: the multipleOf as written (0.3 / 0.1 is 2.9999999999999996
  // in doubles, 0.07 / 0.01 is 7.000000000000001), the answer's digits as written.
  const tenths = schemaDfa({ type: "number", multipleOf: 0.1 });
  assert.deepEqual(
    ["0.3", "0.7", "-2.9", "0.30", "0.35", "0.01", "1e-1"].map((t) => dfaAccepts(tenths, t)),
    [true, true, true, true, false, false, false],
  );
  const cents = schemaDfa({ type: "number", multipleOf: 0.01, minimum: 0 });
  assert.deepEqual(
    ["0.07", "19.99", "1.005", "1.000", "-0.01", "0"].map((t) => dfaAccepts(cents, t)),
    [true, true, false, true, false, true],
  );
  // A whole multipleOf on a number: its fraction 0s only.
  const fives = schemaDfa({ type: "number", multipleOf: 5 });
  assert.deepEqual(
    ["10", "10.0", "-15.000", "0.0", "10.5", "12", "1e1", "5E0"].map((t) => dfaAccepts(fives, t)),
    [true, true, true, true, false, false, false, false],
  );
});

Deno.test("schemaDfa(): multipleOf beside enum / const, anyOf, nullable and $ref, as other number keywords", () => {
  // Beside an enum it keeps the members that are multiples (exactly); other types stay.
  const kept = schemaDfa({ enum: [0, 3, 4.5, 5, -15, 0.3, "x", null], multipleOf: 1.5 });
  assert.deepEqual(
    ["0", "3", "4.5", "5", "-15", "0.3", '"x"', "null"].map((t) => dfaAccepts(kept, t)),
    [true, true, true, false, true, false, true, true],
  );
  assert.ok(dfaAccepts(schemaDfa({ const: 0.3, multipleOf: 0.1 }), "0.3"));
  // Merged into each branch of an anyOf; a list of types holds only its numbers to it.
  const merged = schemaDfa({
    multipleOf: 5,
    anyOf: [{ type: "integer" }, { type: "number", minimum: 0.5 }],
  });
  assert.deepEqual(
    ["10", "-10", "5.0", "-5.0", "12", "2.5"].map((t) => dfaAccepts(merged, t)),
    [true, true, true, false, false, false],
  );
  const mixed = schemaDfa({ type: ["integer", "string", "null"], multipleOf: 3, nullable: true });
  assert.deepEqual(
    ["9", "10", '"10"', "null"].map((t) => dfaAccepts(mixed, t)),
    [true, false, true, true],
  );
  // As pydantic writes a condecimal(multiple_of=Decimal("0.01")): a number branch or a string.
  const price = schemaDfa({
    type: "object",
    properties: {
      price: { anyOf: [{ type: "number", multipleOf: 0.01 }, { type: "string" }] },
      n: { type: "integer", multipleOf: 5, exclusiveMinimum: 0 },
    },
    required: ["price", "n"],
  });
  assert.deepEqual(
    [
      '{"price": 19.99, "n": 5}',
      '{"price":"19.999","n":10}',
      '{"price": 19.999, "n": 5}',
      '{"price": 1, "n": 0}',
    ]
      .map((t) => dfaAccepts(price, t)),
    [true, true, false, false],
  );
  const refused: [unknown, RegExp][] = [
    [{ const: 5, multipleOf: 2 }, /no value of its const is within its bounds, multipleOf/],
    [
      { multipleOf: 5, anyOf: [{ type: "integer", multipleOf: 3 }] },
      /anyOf\[0\] sets "multipleOf", which is also set beside anyOf/,
    ],
    [
      { $defs: { n: { type: "integer" } }, $ref: "#/$defs/n", multipleOf: 2 },
      /"\$ref" beside multipleOf is not supported/,
    ],
    [{ multipleOf: 2 }, /schema has no type, enum or const/],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      JSON.stringify(schema),
    );
  }
});

Deno.test("schemaDfa() refuses a multipleOf it cannot hold an answer to, saying what to do", () => {
  const SAFE = Number.MAX_SAFE_INTEGER;
  const refused: [unknown, RegExp][] = [
    [{ type: "integer", multipleOf: 0 }, /^schema\.multipleOf must be a number above 0, got 0$/],
    [{ type: "number", multipleOf: -0.5 }, /must be a number above 0, got -0\.5$/],
    [{ type: "number", multipleOf: "5" }, /must be a number above 0, got "5"$/],
    [{ type: "number", multipleOf: Infinity }, /must be a number above 0/],
    [{ type: "number", multipleOf: NaN }, /must be a number above 0/],
    [{ type: "number", multipleOf: true }, /must be a number above 0, got true$/],
    [{ enum: [1, 2], multipleOf: 0 }, /schema\.multipleOf must be a number above 0/],
    [
      { type: "object", properties: { n: { type: "integer", multipleOf: 9999 } } },
      /^schema\.properties\.n\.multipleOf 9999 needs at least 30000 automaton states .*: up to 4096 are supported: use a multipleOf with fewer digits/,
    ],
    [
      { type: "integer", multipleOf: 1e21 },
      /^schema\.multipleOf 1e\+21 is 1e\+21 units of its last decimal place: up to 100000/,
    ],
    [
      { type: "number", multipleOf: 0.000123457 },
      /^schema\.multipleOf 0\.000123457 is 123457 units of its last decimal place/,
    ],
    [
      { type: "integer", minimum: 1, maximum: 6, multipleOf: 7 },
      /^schema: no integer multiple of 7 is within its bounds \(minimum 1, maximum 6\)$/,
    ],
    [
      { type: "integer", minimum: 1, maximum: 4, multipleOf: 2.5 },
      /^schema: no integer multiple of 2\.5 is within its bounds/,
    ],
    [
      { type: "number", exclusiveMinimum: 0, exclusiveMaximum: 0.5, multipleOf: 0.5 },
      /^schema: no multiple of 0\.5 is within its bounds \(exclusiveMinimum 0, exclusiveMaximum 0\.5\)$/,
    ],
    [
      { type: "integer", minimum: -SAFE, maximum: SAFE, multipleOf: 1361 },
      /^schema: multipleOf 1361 within its bounds \(minimum -9007199254740991, maximum 9007199254740991\) is too large to compile \(over 16384 states\)/,
    ],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => schemaDfa(schema),
      (e) => e instanceof SchemaError && message.test(e.message),
      String(message),
    );
  }
  // What fits: a multipleOf of many 2s and 5s, a coprime one of four digits alone.
  assert.ok(schemaDfa({ type: "integer", multipleOf: 100000, minimum: 0 }).states < 30);
  assert.ok(schemaDfa({ type: "integer", multipleOf: 1361 }).states < 1400);
});

Deno.test("compileFormat() and resolveOptions() hold a response_format schema's multipleOf, and name a refused one", () => {
  const schema = {
    type: "object",
    properties: {
      qty: { type: "integer", multipleOf: 5 },
      price: { type: "number", multipleOf: 0.01 },
    },
    required: ["qty", "price"],
  };
  const dfa = compileFormat({ kind: "schema", value: schema });
  assert.ok(dfaAccepts(dfa, '{"qty": 15, "price": 4.99}'));
  assert.ok(!dfaAccepts(dfa, '{"qty": 12, "price": 4.99}'));
  assert.ok(!dfaAccepts(dfa, '{"qty": 15, "price": 4.999}'));
  const config = parseGenerationConfig({ eos_token_id: [2] });
  const held = resolveOptions({ responseFormat: { jsonSchema: schema } }, config).constraint;
  assert.ok(typeof held === "object" && dfaAccepts(held, '{"qty":-5,"price":0.1}'));
  const bad = {
    ...schema,
    properties: { ...schema.properties, qty: { type: "integer", multipleOf: 0 } },
  };
  assert.throws(
    () => resolveOptions({ responseFormat: { jsonSchema: bad } }, config),
    (e) =>
      e instanceof SchemaError &&
      e.message ===
        "responseFormat: schema.properties.qty.multipleOf must be a number above 0, got 0",
  );
});
