/**
 * Structured outputs (OpenAI's `response_format: {"type": "json_schema"}`, vLLM's guided_json,
 * guided_choice and guided_regex): a JSON schema — or a list of choices, or a regular expression
 * ({@link regexDfa}) — compiled to a byte-level DFA whose accepted strings are exactly the answers
 * allowed. The GPU walks each vocabulary entry's bytes
 * through its transition table to mask the next draw (kernels/grammar.wgsl `#if DFA`), as JSON
 * mode's automaton does for any object.
 *
 * A schema without recursion describes a regular language once whitespace is fixed, so a DFA holds
 * it: objects write their properties in the schema's order (as JavaScript orders an object's keys:
 * integer-like names first; optional ones may be left out, and only the listed ones are written, so
 * `additionalProperties` is moot), strings and numbers are JSON's (`integer`: no fraction or
 * exponent, so not `1.0`), enums and consts their JSON. Whitespace: one optional space after `:`
 * and `,`, none elsewhere. Supported: `type` (one or a list), `properties` (required for an object)
 * / `required`, `items` with `minItems` / `maxItems` (a bounded list up to {@link MAX_UNROLLED}
 * items), `enum` and `const` (beside a `type`: its members of that type), `anyOf` / `oneOf` (with
 * the keywords beside them merged into each branch, where the branch does not set them too),
 * `allOf` of one schema, `$ref` into `$defs` / `definitions` (not recursive, nothing beside it),
 * `nullable` (also null); annotations (`title`, `description`, `format`, `default`,
 * `discriminator`, …) are ignored. oneOf compiles as anyOf: where its branches overlap, an answer
 * two of them allow (which breaks its "exactly one") is not refused. Anything else — a pattern, a
 * length or range bound, a part that allows any value, keywords that would have to be intersected,
 * a schema past {@link MAX_NFA_STATES} automaton states or {@link MAX_SCHEMA_DEPTH} levels — is
 * refused with {@link SchemaError}: the answer could not be held to it.
 * @module
 */
import { SchemaError } from "../errors.ts";

/** Most DFA states a schema may compile to (its table: 1 KiB a state on the GPU). */
export const MAX_DFA_STATES = 16384;
/** Most items a bounded list (`maxItems`) is written out for. */
export const MAX_UNROLLED = 32;
/**
 * Most steps (NFA states visited) the subset construction may take: a few seconds of one core at
 * worst, past which a constraint is refused as too large.
 */
export const MAX_DFA_WORK = 10_000_000;
/** Most NFA states a schema's compilation may make (each $ref use and list item is a copy). */
export const MAX_NFA_STATES = 200_000;
/** Deepest a schema may nest (objects, lists, branches, $refs). */
export const MAX_SCHEMA_DEPTH = 64;
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
interface Frag {
  start: number;
  end: number;
}

class Nfa {
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
    let hex = body;
    for (let i = 0; i < 4; i++) {
      const h = this.state();
      for (const [lo, hi] of [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]]) this.range(h, lo, hi, hex);
      hex = h;
    }
    this.byte(esc, 0x75, hex);
    this.nonAscii(body, body);
    return f;
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

const utf8 = new TextEncoder();

/** Keywords that only describe: they do not change which answers a schema allows here. */
const ANNOTATIONS = new Set([
  "$schema",
  "$id",
  "$comment",
  "$defs",
  "definitions",
  "title",
  "description",
  "default",
  "examples",
  "format",
  "deprecated",
  "readOnly",
  "writeOnly",
  "additionalProperties",
  "strict",
  "name",
  "discriminator",
]);
/** The keywords that name a schema's values each their own way: one of them a schema. */
const COMPOSITIONS = ["$ref", "const", "enum", "anyOf", "oneOf", "allOf"] as const;
/** Keywords this compiler reads. */
const KNOWN = new Set([
  "type",
  "properties",
  "required",
  "items",
  "minItems",
  "maxItems",
  "enum",
  "const",
  "anyOf",
  "oneOf",
  "allOf",
  "$ref",
  "nullable",
]);

type Schema = Record<string, unknown>;

/** Compiles a schema's NFA: one fragment per schema node, `path` naming where for errors. */
class SchemaCompiler {
  readonly nfa = new Nfa();
  readonly #root: Schema;
  readonly #open: string[] = [];

  constructor(root: Schema) {
    this.#root = root;
  }

  value(schema: unknown, path: string, depth = 0): Frag {
    if (depth > MAX_SCHEMA_DEPTH) {
      throw new SchemaError(`${path}: the schema nests deeper than ${MAX_SCHEMA_DEPTH} levels`);
    }
    if (
      schema === true || (isObject(schema) && Object.keys(schema).every((k) => ANNOTATIONS.has(k)))
    ) {
      throw new SchemaError(
        `${path} allows any value, which structured output cannot hold an answer to: give it a ` +
          "type (or enum / const)",
      );
    }
    if (!isObject(schema)) {
      throw new SchemaError(`${path} must be a schema object, got ${preview(schema)}`);
    }
    for (const k of Object.keys(schema)) {
      if (!KNOWN.has(k) && !ANNOTATIONS.has(k)) {
        throw new SchemaError(
          `${path}: "${k}" is not supported (supported: ${[...KNOWN].join(", ")}; annotations ` +
            "such as title, description and format are ignored)",
        );
      }
    }
    const nfa = this.nfa;
    if (schema.nullable !== undefined) {
      if (typeof schema.nullable !== "boolean") {
        throw new SchemaError(
          `${path}.nullable must be true or false, got ${preview(schema.nullable)}`,
        );
      }
      const { nullable: _, ...rest } = schema;
      const inner = this.value(rest, path, depth);
      return schema.nullable ? nfa.alt([inner, nfa.literal(utf8.encode("null"))]) : inner;
    }
    // One way of naming the values at a time; beside it, only keywords it can honour.
    const ways = COMPOSITIONS.filter((k) => schema[k] !== undefined);
    if (ways.length > 1) {
      throw new SchemaError(
        `${path}: ${ways.join(" beside ")} is not supported: write one of them`,
      );
    }
    const way = ways[0];
    const siblings = Object.keys(schema).filter((k) => KNOWN.has(k) && k !== way);
    if (way === "$ref") {
      if (siblings.length) {
        throw new SchemaError(
          `${path}: "$ref" beside ${siblings.join(", ")} is not supported: put them in the ` +
            "definition",
        );
      }
      return this.#ref(schema, path, depth);
    }
    if (way === "const" || way === "enum") {
      const extra = siblings.filter((k) => k !== "type");
      if (extra.length) {
        throw new SchemaError(`${path}: "${way}" beside ${extra.join(", ")} is not supported`);
      }
      const list = way === "const" ? [schema.const] : schema.enum;
      if (!Array.isArray(list) || list.length === 0) {
        throw new SchemaError(`${path}.enum must be a non-empty list of values`);
      }
      const bad = list.find((v) => !isJsonData(v));
      if (bad !== undefined || list.some((v) => v === undefined)) {
        throw new SchemaError(`${path}.${way}: values must be JSON data, got ${preview(bad)}`);
      }
      // Beside a type, the members of that type (JSON Schema: both must hold).
      const types = schema.type === undefined ? undefined : typeList(schema.type, path);
      const kept = list.filter((v) => !types || types.some((t) => hasType(v, t)));
      if (!kept.length) {
        throw new SchemaError(
          `${path}: no value of its ${way} is of its type ${preview(schema.type)}`,
        );
      }
      const distinct = new Map(kept.map((v) => [JSON.stringify(v), v]));
      return nfa.alt([...distinct.values()].map((v) => this.#constant(v)));
    }
    if (way === "anyOf" || way === "oneOf" || way === "allOf") {
      const list = schema[way];
      if (!Array.isArray(list) || list.length === 0) {
        throw new SchemaError(`${path}.${way} must be a non-empty list of schemas`);
      }
      if (way === "allOf" && list.length !== 1) {
        throw new SchemaError(`${path}.allOf is supported with one schema only`);
      }
      // The keywords beside it apply to every branch: merged in, where the branch sets none of
      // them itself (two of a kind would have to be intersected). oneOf is compiled as anyOf:
      // an answer its branches both allow would break its "exactly one" (the module doc).
      return nfa.alt(list.map((branch, i) => {
        const at = `${path}.${way}[${i}]`;
        if (!isObject(branch)) {
          throw new SchemaError(`${at} must be a schema object, got ${preview(branch)}`);
        }
        const clash = siblings.find((k) => branch[k] !== undefined);
        if (clash) {
          throw new SchemaError(
            `${at} sets "${clash}", which is also set beside ${way}: not supported (write it in ` +
              "each branch alone)",
          );
        }
        const merged: Schema = { ...branch };
        for (const k of siblings) merged[k] = schema[k];
        return this.value(merged, at, depth + 1);
      }));
    }
    const types = schema.type === undefined ? [] : typeList(schema.type, path);
    if (types.length === 0) {
      if (schema.properties !== undefined) types.push("object");
      else if (schema.items !== undefined) types.push("array");
      else throw new SchemaError(`${path} has no type, enum or const: say which values it takes`);
    }
    return nfa.alt(types.map((t) => this.#typed(schema, t, path, depth)));
  }

  #typed(schema: Schema, type: string, path: string, depth: number): Frag {
    const nfa = this.nfa;
    switch (type) {
      case "string":
        return nfa.string();
      case "number":
      case "integer":
        return nfa.number(type === "integer");
      case "boolean":
        return nfa.alt([nfa.literal(utf8.encode("true")), nfa.literal(utf8.encode("false"))]);
      case "null":
        return nfa.literal(utf8.encode("null"));
      case "array":
        return this.#array(schema, path, depth);
      case "object":
        return this.#object(schema, path, depth);
    }
    throw new SchemaError(`${path}.type ${preview(type)} is not a JSON schema type`);
  }

  /** One JSON value exactly (const, an enum's member), its whitespace as everywhere else. */
  #constant(v: unknown): Frag {
    const nfa = this.nfa;
    const sep = () => nfa.seq([nfa.literal([0x2c]), nfa.space()]);
    if (Array.isArray(v)) {
      const parts = [nfa.literal([0x5b])];
      v.forEach((x, i) => parts.push(...(i ? [sep()] : []), this.#constant(x)));
      return nfa.seq([...parts, nfa.literal([0x5d])]);
    }
    if (isObject(v)) {
      const parts = [nfa.literal([0x7b])];
      Object.entries(v).forEach(([k, x], i) =>
        parts.push(
          ...(i ? [sep()] : []),
          nfa.literal(utf8.encode(JSON.stringify(k) + ":")),
          nfa.space(),
          this.#constant(x),
        )
      );
      return nfa.seq([...parts, nfa.literal([0x7d])]);
    }
    return nfa.literal(utf8.encode(JSON.stringify(v)));
  }

  #array(schema: Schema, path: string, depth: number): Frag {
    const nfa = this.nfa;
    const min = count(schema.minItems, `${path}.minItems`) ?? 0;
    const max = count(schema.maxItems, `${path}.maxItems`);
    if (max !== undefined && max < min) {
      throw new SchemaError(`${path}: maxItems ${max} is below minItems ${min}`);
    }
    if (Math.max(min, max ?? 0) > MAX_UNROLLED) {
      throw new SchemaError(
        `${path}: minItems / maxItems up to ${MAX_UNROLLED} are supported, got ` +
          `${Math.max(min, max ?? 0)}`,
      );
    }
    if (schema.items === undefined) {
      throw new SchemaError(`${path} is an array with no "items": say what its items are`);
    }
    const item = () => this.value(schema.items, `${path}.items`, depth + 1);
    const open = nfa.literal([0x5b]), close = nfa.literal([0x5d]);
    const sep = () => nfa.seq([nfa.literal([0x2c]), nfa.space()]);
    const f = nfa.frag();
    nfa.empty(f.start, open.start);
    nfa.empty(close.end, f.end);
    if (min === 0) nfa.empty(open.end, close.start);
    if (max === 0) return f;
    // The first item, then up to min in all; from there the list may close, or take more: any
    // number (no maxItems) or up to max, each written out.
    let at = nfa.seq([{ start: open.end, end: open.end }, item()]).end;
    for (let i = 2; i <= min; i++) at = nfa.seq([{ start: at, end: at }, sep(), item()]).end;
    nfa.empty(at, close.start);
    if (max === undefined) {
      const more = nfa.seq([sep(), item()]);
      nfa.empty(at, more.start);
      nfa.empty(more.end, at);
    } else {
      for (let i = Math.max(min, 1) + 1; i <= max; i++) {
        at = nfa.seq([{ start: at, end: at }, sep(), item()]).end;
        nfa.empty(at, close.start);
      }
    }
    return f;
  }

  #object(schema: Schema, path: string, depth: number): Frag {
    const nfa = this.nfa;
    const props = schema.properties;
    if (props === undefined) {
      throw new SchemaError(
        `${path} is an object with no "properties": list them (an object of any properties ` +
          "cannot be held to; properties {} allows only {})",
      );
    }
    if (!isObject(props)) throw new SchemaError(`${path}.properties must be an object`);
    const required = schema.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === "string")) {
      throw new SchemaError(`${path}.required must be a list of property names`);
    }
    const missing = required.find((r) => !Object.hasOwn(props, r));
    if (missing !== undefined) {
      throw new SchemaError(`${path}.required names "${missing}", which is not in its properties`);
    }
    const f = nfa.frag();
    const open = nfa.literal([0x7b]);
    nfa.empty(f.start, open.start);
    // Two tracks before each property: nothing written yet (no comma next), or something. The
    // property itself is compiled once, entered from either.
    let none = open.end, some = nfa.state();
    for (const [name, sub] of Object.entries(props)) {
      const p = `${path}.properties.${name}`;
      const key = nfa.literal(utf8.encode(JSON.stringify(name) + ":"));
      const entry = nfa.seq([key, nfa.space(), this.value(sub, p, depth + 1)]);
      const comma = nfa.seq([nfa.literal([0x2c]), nfa.space()]);
      const [none2, some2] = [nfa.state(), nfa.state()];
      nfa.empty(none, entry.start);
      nfa.empty(some, comma.start);
      nfa.empty(comma.end, entry.start);
      nfa.empty(entry.end, some2);
      if (!required.includes(name)) {
        nfa.empty(none, none2);
        nfa.empty(some, some2);
      }
      [none, some] = [none2, some2];
    }
    const close = nfa.literal([0x7d]);
    nfa.empty(none, close.start);
    nfa.empty(some, close.start);
    nfa.empty(close.end, f.end);
    return f;
  }

  #ref(schema: Schema, path: string, depth: number): Frag {
    const ref = schema.$ref;
    const m = typeof ref === "string" ? /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref) : null;
    const defs = m ? this.#root[m[1]] : undefined;
    const name = m ? m[2].replace(/~1/g, "/").replace(/~0/g, "~") : "";
    if (!m || !isObject(defs) || !Object.hasOwn(defs, name)) {
      throw new SchemaError(
        `${path}.$ref ${JSON.stringify(ref)}: only "#/$defs/<name>" and "#/definitions/<name>" ` +
          "of this schema are supported",
      );
    }
    if (this.#open.includes(ref as string)) {
      throw new SchemaError(
        `${path}.$ref ${JSON.stringify(ref)} refers to itself (through ` +
          `${this.#open.join(" → ")}): recursive schemas are not supported`,
      );
    }
    this.#open.push(ref as string);
    try {
      return this.value(defs[name], `${m[1]}.${name}`, depth + 1);
    } finally {
      this.#open.pop();
    }
  }
}

/** A schema's `type` as a list, each a JSON schema type. */
function typeList(type: unknown, path: string): string[] {
  const list = Array.isArray(type) ? [...type] : [type];
  const bad = list.find((t) => typeof t !== "string" || !TYPES.includes(t));
  if (bad !== undefined || !list.length) {
    throw new SchemaError(`${path}.type ${preview(bad ?? type)} is not a JSON schema type`);
  }
  return list as string[];
}

const TYPES = ["string", "number", "integer", "boolean", "null", "array", "object"];

/** Whether JSON value `v` is of JSON schema type `t`. */
function hasType(v: unknown, t: string): boolean {
  switch (t) {
    case "null":
      return v === null;
    case "integer":
      return Number.isInteger(v);
    case "array":
      return Array.isArray(v);
    case "object":
      return isObject(v);
    case "string":
      return typeof v === "string";
    case "boolean":
      return typeof v === "boolean";
    default: // number
      return typeof v === "number";
  }
}

/** Whether `v` is JSON data: null, a string, a boolean, a finite number, or plain lists and objects of them. */
function isJsonData(v: unknown): boolean {
  if (v === null || typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(isJsonData);
  return isObject(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v)) &&
    Object.values(v).every(isJsonData);
}

/** A short rendering of a value for messages (JSON where it is JSON). */
function preview(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function isObject(x: unknown): x is Schema {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function count(x: unknown, name: string): number | undefined {
  if (x === undefined) return undefined;
  if (!Number.isInteger(x) || (x as number) < 0) {
    throw new SchemaError(`${name} must be a whole number ≥ 0, got ${JSON.stringify(x)}`);
  }
  return x as number;
}

/** Subset construction: the DFA of `nfa` from `start`, accepting where `end` is reached. */
function determinize(nfa: Nfa, start: number, end: number, what: string): Dfa {
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
 * The DFA of the answers `schema` allows (a JSON schema object, as OpenAI's json_schema.schema).
 * @throws SchemaError naming the part of the schema it cannot hold an answer to
 */
export function schemaDfa(schema: unknown): Dfa {
  if (!isObject(schema)) {
    throw new SchemaError(`a JSON schema must be an object, got ${JSON.stringify(schema)}`);
  }
  const c = new SchemaCompiler(schema);
  const f = c.value(schema, "schema");
  return determinize(c.nfa, f.start, f.end, "the schema");
}

/**
 * The DFA of exactly one of `choices` (vLLM's guided_choice): the answer is one of the strings.
 * @throws SchemaError for an empty list or a choice that is not a non-empty string
 */
export function choiceDfa(choices: unknown): Dfa {
  if (!Array.isArray(choices) || choices.length === 0) {
    throw new SchemaError(
      `choices must be a non-empty list of strings, got ${JSON.stringify(choices)}`,
    );
  }
  const bad = choices.findIndex((c) => typeof c !== "string" || c.length === 0);
  if (bad >= 0) {
    throw new SchemaError(
      `choices[${bad}] must be a non-empty string, got ${JSON.stringify(choices[bad])}`,
    );
  }
  const nfa = new Nfa();
  const f = nfa.alt(choices.map((c: string) => nfa.literal(utf8.encode(c))));
  return determinize(nfa, f.start, f.end, "the choice list");
}

// ---------------------------------------------------------------------------------------------
// Regular expressions (vLLM's guided_regex): the answer matches the pattern whole.

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

/** A class escape's set (\d \w \s and their complements, ASCII semantics), or undefined. */
function classEscape(c: string): CharSet | undefined {
  const base = { d: isDigitByte, w: isWordByte, s: isSpaceByte }[c.toLowerCase()];
  if (!base) return undefined;
  if (c === c.toLowerCase()) return asciiSet(base);
  const set = asciiSet((b) => !base(b));
  set.ranges.push(NON_ASCII);
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

/** Parses a pattern (Python / JavaScript syntax, the subset regexDfa documents) into a tree. */
class RegexParser {
  #at = 0;
  #depth = 0;
  constructor(readonly src: string) {}

  fail(what: string): never {
    const shown = this.src.length > 80 ? this.src.slice(0, 77) + "…" : this.src;
    throw new SchemaError(`regex ${JSON.stringify(shown)} at ${this.#at}: ${what}`);
  }

  parse(): Node {
    // Whole-answer anchors are what the match means anyway.
    if (this.src.startsWith("^")) this.#at = 1;
    const node = this.#alt();
    if (this.#at < this.src.length) this.fail(`unexpected "${this.src[this.#at]}"`);
    return node;
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
      if (c === "$" && this.#at === this.src.length - 1) {
        this.#at++;
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
        if (++this.#depth > MAX_SCHEMA_DEPTH) {
          this.fail(`groups nest deeper than ${MAX_SCHEMA_DEPTH}`);
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
        const set = asciiSet((b) => b !== 0x0a);
        set.ranges.push(NON_ASCII);
        return { k: "set", set };
      }
      case "\\":
        return { k: "set", set: this.#escape(false) };
      case "^":
      case "$":
        return this.fail(
          `"${c}" is only supported at the pattern's start / end (it matches whole)`,
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
    const cls = classEscape(c);
    if (cls) return cls;
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
    let first = true;
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

/** Compiles a regex tree into the NFA. */
function regexFrag(nfa: Nfa, node: Node): Frag {
  switch (node.k) {
    case "set": {
      const f = nfa.frag();
      node.set.ascii.forEach((on, b) => on && nfa.byte(f.start, b, f.end));
      for (const [lo, hi] of node.set.ranges) {
        for (const seq of utf8Sequences(lo, hi)) {
          let at = f.start;
          seq.forEach(([a, b], i) => {
            const to = i === seq.length - 1 ? f.end : nfa.state();
            nfa.range(at, a, b, to);
            at = to;
          });
        }
      }
      return f;
    }
    case "seq": {
      if (!node.items.length) {
        const s = nfa.state();
        return { start: s, end: s };
      }
      return nfa.seq(node.items.map((n) => regexFrag(nfa, n)));
    }
    case "alt":
      return nfa.alt(node.items.map((n) => regexFrag(nfa, n)));
    case "rep": {
      const start = nfa.state();
      let at = start;
      for (let i = 0; i < node.min; i++) {
        at = nfa.seq([{ start: at, end: at }, regexFrag(nfa, node.node)]).end;
      }
      const end = nfa.state();
      nfa.empty(at, end);
      if (node.max === undefined) {
        const more = regexFrag(nfa, node.node);
        nfa.empty(at, more.start);
        nfa.empty(more.end, at);
      } else {
        for (let i = node.min; i < node.max; i++) {
          at = nfa.seq([{ start: at, end: at }, regexFrag(nfa, node.node)]).end;
          nfa.empty(at, end);
        }
      }
      return { start, end };
    }
  }
}

/**
 * The DFA of the answers that match `pattern` whole (vLLM's guided_regex). The syntax is Python's
 * `re` where JavaScript agrees: literals and escapes (`\n`, `\xHH`, `\uHHHH` — a surrogate pair
 * of them one character —, `\.`), `.` (any character but `\n`, as Python's), classes `[a-z\d_]`,
 * `[\u4e00-\u9fff]` and `[^…]` (any characters, as UTF-8 byte ranges), `\d \w \s` and
 * `\D \W \S` (ASCII meanings, as Python's re.ASCII), groups `(…)`, `(?:…)`, `(?P<name>…)`, `|`,
 * `* + ?` and `{n}`, `{n,}`, `{,m}`, `{n,m}` (≤ {@link MAX_REPEAT}; lazy forms match the same
 * answers), and `^` / `$` at the ends. Backreferences, lookarounds, inline flags, possessive
 * quantifiers, octal escapes and `\b` are refused, as is a pattern that matches nothing or one
 * whose automaton passes the compile budgets ({@link MAX_DFA_WORK}: nested bounded repeats such
 * as `([a-z]{1,20} ?){1,30}` can).
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
