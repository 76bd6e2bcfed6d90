/**
 * Structured outputs (OpenAI's `response_format: {"type": "json_schema"}`, vLLM's guided_json and
 * guided_choice): a JSON schema — or a list of choices — compiled to a byte-level DFA
 * (src/generate/_automaton.ts) whose accepted strings are exactly the answers allowed. The GPU
 * walks each vocabulary entry's bytes through its transition table to mask the next draw
 * (kernels/grammar.wgsl `#if DFA`), as JSON mode's automaton does for any object; regular
 * expressions compile to the same kind of DFA (src/generate/regex.ts).
 *
 * A schema without recursion describes a regular language once whitespace is fixed, so a DFA holds
 * it: objects write their properties in the schema's order (as JavaScript orders an object's keys:
 * integer-like names first; optional ones may be left out, and only the listed ones are written, so
 * beside `properties`, `additionalProperties` is moot), strings and numbers are JSON's (`integer`:
 * no fraction or exponent, so not `1.0`), enums and consts their JSON. Whitespace: one optional
 * space after `:` and `,`, none elsewhere. Supported: `type` (one or a list), `properties` /
 * `required`, or with no properties listed `additionalProperties` with a schema (a map of any
 * keys, Python's dict[str, X]; `false`: only {}) with `minProperties` 0 or 1, `maxProperties`
 * (≤ {@link MAX_UNROLLED}) and `propertyNames` (a schema for its keys, as a string where it
 * names no type: dict[Literal["a", "b"], X], dict[Enum, X]), `items` with `minItems` / `maxItems` (a bounded list up to
 * {@link MAX_UNROLLED} items), `prefixItems` (a tuple: those first, then `items` for the rest; with
 * `items` false or absent, no more are written), `minimum` / `maximum` / `exclusiveMinimum` / `exclusiveMaximum` on
 * integers and numbers (numbers or draft 4's booleans, whole or not, within ±(2^53 − 1); a bounded
 * `number` is written without an exponent, `-?int(.digits)?`, its decimal value held to the bounds
 * exactly, digit by digit), `multipleOf` on integers and numbers (above 0; its exact decimal, the
 * shortest that reads back as its double — 0.1 is a tenth, not the double's 0.1000…055 — and the
 * answer's decimal value a whole multiple of it, as a decimal reader (pydantic's Decimal, Python's
 * int) sees it: a validator that divides doubles may differ, jsonschema's 0.07 / 0.01 being
 * 7.000000000000001; written without an exponent, fraction digits past the multipleOf's own 0s,
 * `5.50` for 0.5; intersected with the bounds; {@link multipleDfa}'s remainder automaton up to a
 * quarter of the state budget: 7 takes 24 states, 0.01 seven, a multipleOf of many digits prime to
 * 10 such as 9999, or of over 100,000 units of its last decimal place, is refused), `minLength` / `maxLength` on strings (code points; `minLength` ≤
 * {@link MAX_STRING_LENGTH}, and a larger `maxLength` holds the answer to
 * {@link MAX_STRING_LENGTH}: shorter, still valid), `pattern` on strings (an ECMA-262 regex found
 * anywhere in the decoded value unless anchored, whatever escapes spell it:
 * src/generate/regex.ts jsonStringDfa, its syntax there), `format` on strings for the formats of
 * {@link FORMATS} (others stay annotations), a string's length, pattern and format intersected,
 * `enum` and `const` (beside a `type`, bounds, a multipleOf, a pattern or a format: its members of
 * that type and within them), `anyOf` / `oneOf` (with the keywords beside them merged into each branch,
 * where the branch does not set them too), `allOf` of one schema, `$ref` into `$defs` /
 * `definitions` (not recursive, nothing beside it), `nullable` (also null); annotations (`title`,
 * `description`, an unknown `format`, `default`, `discriminator`, …) are ignored. oneOf compiles
 * as anyOf: where its branches overlap, an answer two of them allow (which breaks its "exactly
 * one") is not refused. Anything else — a pattern's backreferences or lookarounds,
 * a part that allows any value, keywords that would have to be intersected, a schema past the
 * automaton's budgets (src/generate/_automaton.ts) or {@link MAX_SCHEMA_DEPTH} levels — is refused
 * with SchemaError: the answer could not be held to it.
 * @module
 */
import { preview, SchemaError } from "../errors.ts";
import {
  compareDecimals,
  type Decimal,
  decimalRange,
  determinize,
  type Dfa,
  dfaAccepts,
  embed,
  type Frag,
  intersect,
  MAX_DFA_STATES,
  multipleDfa,
  Nfa,
  utf8,
} from "./_automaton.ts";
import { jsonStringDfa } from "./regex.ts";

/** Most items a bounded list (`maxItems`) is written out for. */
export const MAX_UNROLLED = 32;
/** Deepest a schema may nest (objects, lists, branches, $refs). */
export const MAX_SCHEMA_DEPTH = 64;
/**
 * Longest `minLength` / `maxLength` a string is held to: its automaton has a state per count of
 * characters, about 24 DFA states each (6,147 for 256), and a whole schema has 16,384
 * (src/generate/_automaton.ts MAX_DFA_STATES). A larger `maxLength` (pydantic's HttpUrl: 2083)
 * holds the answer to this many instead (to fewer, {@link SHORTER}, where a pattern or format
 * with this many would take over 3/4 of the budget: a uri, to 128); a larger `minLength` is
 * refused.
 */
export const MAX_STRING_LENGTH = 256;

/** An ECMA-262 piece for a byte of an IPv4 address: 0 to 255, no leading zero. */
const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
/** A domain's label: letters, digits and inner hyphens (its 63-character limit not held). */
const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?";
/**
 * RFC 3339's full-date, calendar-exact: months 01–12, each month's days (February 29 in leap
 * years only: by 4, not by 100 unless by 400), years 0001–9999 (0000 left out, as Python's
 * date and jsonschema's "date" check refuse it).
 */
const DATE = "(?:(?:[1-9]\\d{3}|0[1-9]\\d{2}|00[1-9]\\d|000[1-9])-(?:(?:0[13578]|1[02])-" +
  "(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))|" +
  "(?:\\d\\d(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29)";
/**
 * RFC 3339's full-time: hours 00–23, minutes and seconds 00–59 (no leap second 60), an optional
 * fraction of any digits, an offset `Z` or ±HH:MM required (as jsonschema's check, through
 * rfc3339-validator, reads it); upper case `T` / `Z` only (RFC 3339 allows lower case; writers
 * use upper, and every reader takes it).
 */
const TIME =
  "(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d+)?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)";
/** IPv4 dotted decimal (Python's ipaddress: no leading zeros). */
const IPV4 = `${OCTET}(?:\\.${OCTET}){3}`;
/** One 16-bit group of an IPv6 address: 1 to 4 hex digits, either case. */
const H16 = "[0-9A-Fa-f]{1,4}";
/** An IPv6 address's last 32 bits: two groups, or an IPv4 address. */
const LS32 = `(?:${H16}:${H16}|${IPV4})`;
/**
 * An IPv6 address in RFC 4291's text forms (RFC 3986's IPv6address, line by line): eight
 * groups, or `::` standing for one or more zero groups (once), the last 32 bits two groups or an
 * IPv4 address; no zone (`%eth0`: jsonschema's ipv6 check refuses it).
 */
const IPV6 = "(?:" + [
  `(?:${H16}:){6}${LS32}`,
  `::(?:${H16}:){5}${LS32}`,
  `(?:${H16})?::(?:${H16}:){4}${LS32}`,
  `(?:(?:${H16}:){0,1}${H16})?::(?:${H16}:){3}${LS32}`,
  `(?:(?:${H16}:){0,2}${H16})?::(?:${H16}:){2}${LS32}`,
  `(?:(?:${H16}:){0,3}${H16})?::${H16}:${LS32}`,
  `(?:(?:${H16}:){0,4}${H16})?::${LS32}`,
  `(?:(?:${H16}:){0,5}${H16})?::${H16}`,
  `(?:(?:${H16}:){0,6}${H16})?::`,
].join("|") + ")";
/** A number of a duration: up to 6 digits, so Python's timedelta holds the whole (pydantic). */
const DN = "\\d{1,6}";
/** A duration's date part: years, months, days in that order, each optional, one at least. */
const DUR_DATE = `(?:${DN}Y(?:${DN}M)?(?:${DN}D)?|${DN}M(?:${DN}D)?|${DN}D)`;
/** A duration's time part: `T`, then hours, minutes, seconds in that order, one at least. */
const DUR_TIME = `T(?:${DN}H(?:${DN}M)?(?:${DN}S)?|${DN}M(?:${DN}S)?|${DN}S)`;
/** RFC 3986's characters: unreserved, sub-delims, a %-escape. */
const UNRESERVED = "A-Za-z0-9\\-._~";
const SUB_DELIMS = "!$&'()*+,;=";
const PCT = "%[0-9A-Fa-f]{2}";
const PCHAR = `(?:[${UNRESERVED}${SUB_DELIMS}:@]|${PCT})`;
/** A host's name: RFC 3986's reg-name, not empty (pydantic's AnyUrl refuses "http://"). */
const REG_NAME = `(?:[${UNRESERVED}${SUB_DELIMS}]|${PCT})+`;
/**
 * RFC 3986's URI with `host` as the host: a scheme, ":", then `//`, an authority
 * ([userinfo@]host[:port]) and a path, or a path alone (not starting `//`), then an optional
 * query and fragment.
 */
const uri = (host: string) =>
  `[A-Za-z][A-Za-z0-9+.-]*:(?://(?:(?:[${UNRESERVED}${SUB_DELIMS}:]|${PCT})*@)?${host}` +
  `(?::\\d*)?(?:/${PCHAR}*)*|/(?:${PCHAR}+(?:/${PCHAR}*)*)?|${PCHAR}+(?:/${PCHAR}*)*)?` +
  `(?:\\?(?:${PCHAR}|[/?])*)?(?:#(?:${PCHAR}|[/?])*)?`;
/** A URI whose host is a name or an [IPv6] literal (brackets nowhere else). */
const URI = uri(`(?:\\[${IPV6}\\]|${REG_NAME})`);
/** A dot-atom (RFC 5322's atext) of the local part. */
const ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";

/**
 * The string formats held to (as xgrammar, behind vLLM, holds them), each as an ECMA-262 pattern
 * compiled as `pattern` is: `date`, `time` and `date-time` ({@link DATE}, {@link TIME}); `uuid`
 * 8-4-4-4-12 hex digits of either case; `ipv4` dotted decimal without leading zeros; `ipv6`
 * ({@link IPV6}: every RFC 4291 text form but a zone); `ipvanyaddress` (pydantic's
 * IPvAnyAddress) either; `email` a dot-atom local part, "@", then a domain of two or more
 * {@link LABEL}s (no quoted local parts, no IP literals); `hostname` one or more labels (lengths
 * not held); `uri` RFC 3986's ({@link URI}: brackets only around an IPv6 host, and a host after
 * `//` — pydantic's AnyUrl refuses "http://"; with a length bound, a named host only:
 * {@link COUNTED_FORMATS}); `duration` ISO 8601's as jsonschema checks it
 * (through isoduration) and pydantic reads it: `P`, then weeks alone, or years, months, days and
 * `T` hours, minutes, seconds, each in order and optional, whole numbers of up to 6 digits (no
 * fractions, no sign). Each is written raw (no escapes: its characters never need them), which
 * keeps its automaton a sixth the size. Other formats stay annotations.
 */
export const FORMATS: Record<string, string> = {
  date: `^${DATE}$`,
  time: `^${TIME}$`,
  "date-time": `^${DATE}T${TIME}$`,
  uuid: "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
  ipv4: `^${IPV4}$`,
  ipv6: `^${IPV6}$`,
  ipvanyaddress: `^(?:${IPV4}|${IPV6})$`,
  email: `^${ATOM}(?:\\.${ATOM})*@${LABEL}(?:\\.${LABEL})+$`,
  hostname: `^${LABEL}(?:\\.${LABEL})*$`,
  uri: `^${URI}$`,
  duration: `^P(?:${DN}W|${DUR_DATE}(?:${DUR_TIME})?|${DUR_TIME})$`,
};

/**
 * The forms a format is written in where its characters are counted (a length bound): a uri's
 * host a name only, as counting through an IPv6 literal's automaton would take tens of thousands
 * of states.
 */
const COUNTED_FORMATS: Record<string, string> = { uri: `^${uri(REG_NAME)}$` };

/**
 * The shortest and longest values (in characters) of the formats whose values have a fixed span:
 * length bounds around that span need no counting.
 */
const FORMAT_LENGTHS: Record<string, [number, number]> = {
  date: [10, 10],
  uuid: [36, 36],
  ipv4: [7, 15],
  ipv6: [2, 45],
  ipvanyaddress: [2, 45],
};

/**
 * The lengths a `maxLength` past {@link MAX_STRING_LENGTH} is held to, longest first: the first
 * whose automaton (with the string's pattern or format) takes at most 3/4 of the state budget.
 */
const SHORTER = [MAX_STRING_LENGTH, 128, 64, 32];

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
  "prefixItems",
  "minItems",
  "maxItems",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "minLength",
  "maxLength",
  "pattern",
  "minProperties",
  "maxProperties",
  "propertyNames",
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
  /** The parts compiled (properties' values, items), each path once: {@link heaviestParts}. */
  readonly parts: { schema: unknown; path: string; depth: number }[] = [];
  /** A string's constraints compiled, by pattern, format and length: a $def used again reuses it. */
  readonly #strings = new Map<string, Dfa | undefined>();

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
          `${path}: "${k}" is not supported (supported: ${[...KNOWN].join(", ")}; format ` +
            `${Object.keys(FORMATS).join(", ")} on strings; annotations such as title, ` +
            "description and other formats are ignored)",
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
    // A format held to (FORMATS) is a keyword like pattern beside a composition: merged into
    // each branch, not dropped as an annotation (it was: a date beside anyOf took "x").
    const siblings = Object.keys(schema).filter((k) =>
      (KNOWN.has(k) || (k === "format" && heldFormat(schema.format))) && k !== way
    );
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
      const extra = siblings.filter((k) =>
        k !== "type" && k !== "format" && !VALUE_BOUNDS.includes(k)
      );
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
      // Beside bounds, the members within them (a bound holds numbers or strings only).
      const kept = list.filter((v) =>
        (!types || types.some((t) => hasType(v, t))) && withinBounds(v, schema, path) &&
        (typeof v !== "string" || this.#matches(v, schema, path))
      );
      if (!kept.length) {
        // Say only what the schema has: a type, or bounds, a pattern, a format beside it.
        const what = [
          ...(types ? [`of its type ${preview(schema.type)}`] : []),
          "within its bounds, multipleOf, pattern and format",
        ].join(" and ");
        throw new SchemaError(`${path}: no value of its ${way} is ${what}`);
      }
      // JSON.parse gave the schema's numbers as doubles: a whole number of 17 to 21 digits (an
      // id) may not be the one written (12345678901234567891 is 12345678901234567000 by then), and
      // the answer would be held to a number the schema does not list. (1e300 and 6.02e23 are
      // written with an exponent, and are the doubles meant.)
      const big = kept.find(hasUnsafeInteger);
      if (big !== undefined) {
        throw new SchemaError(
          `${path}.${way}: ${preview(big)} holds a whole number past 2^53 (9007199254740992), ` +
            "which reaches the schema compiler rounded (JSON.parse reads numbers as doubles): " +
            "list such ids as strings, or keep numbers below 2^53",
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
      else if (schema.items !== undefined || schema.prefixItems !== undefined) types.push("array");
      else throw new SchemaError(`${path} has no type, enum or const: say which values it takes`);
    }
    return nfa.alt(types.map((t) => this.#typed(schema, t, path, depth)));
  }

  /**
   * A part of an object or a list (a property's value, an item), compiled by {@link value} and
   * recorded in {@link parts}, to name the heaviest when the whole is too large.
   */
  #part(schema: unknown, path: string, depth: number): Frag {
    if (!this.parts.some((p) => p.path === path)) this.parts.push({ schema, path, depth });
    return this.value(schema, path, depth);
  }

  #typed(schema: Schema, type: string, path: string, depth: number): Frag {
    const nfa = this.nfa;
    switch (type) {
      case "string":
        return this.#string(schema, path);
      case "integer": {
        const [lo, hi] = integerBounds(schema, path);
        return this.#multiples(
          schema,
          type,
          path,
          (n) => lo === -Infinity && hi === Infinity ? n.number(true) : n.integer(lo, hi),
        );
      }
      case "number": {
        const bounds = numberBounds(schema, path);
        return this.#multiples(
          schema,
          type,
          path,
          (n) => bounds.lo || bounds.hi ? boundedNumber(n, schema, path, bounds) : n.number(false),
        );
      }
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

  /**
   * An integer's or a number's values (`values(nfa)`: their grammar and bounds), held to the
   * schema's `multipleOf` where it has one: both compiled on their own and intersected
   * ({@link multipleDfa}: written without an exponent, fraction digits past the multipleOf's
   * own 0s), then embedded.
   */
  #multiples(schema: Schema, type: string, path: string, values: (nfa: Nfa) => Frag): Frag {
    const step = multipleOf(schema, path);
    if (!step) return values(this.nfa);
    const nfa = new Nfa();
    const f = values(nfa);
    const dfa = multipleDfa(Number(step.units), step.k, `${path}.multipleOf ${preview(step.x)}`);
    const bounds = boundsText(schema);
    try {
      return embed(
        this.nfa,
        intersect(determinize(nfa, f.start, f.end, path), dfa, `${path}.multipleOf`),
      );
    } catch (e) {
      if (!(e instanceof SchemaError)) throw e;
      if (/matches nothing/.test(e.message)) {
        throw new SchemaError(
          `${path}: no ${type === "integer" ? "integer " : ""}multiple of ${preview(step.x)} ` +
            `is within its bounds (${bounds})`,
        );
      }
      if (/too large/.test(e.message)) {
        throw new SchemaError(
          `${path}: multipleOf ${preview(step.x)}${bounds && ` within its bounds (${bounds})`} ` +
            `is too large to compile (over ${MAX_DFA_STATES} states): a multipleOf of fewer ` +
            "digits, or bounds of fewer digits, make it smaller",
        );
      }
      throw e;
    }
  }

  /**
   * A string, held to `minLength` / `maxLength` (code points), `pattern` and a known `format`
   * ({@link FORMATS}) if it has them.
   */
  #string(schema: Schema, path: string): Frag {
    const dfa = this.#stringDfa(schema, path);
    if (dfa) return embed(this.nfa, dfa);
    const [min, max] = this.#lengths(schema, path);
    if (min === undefined && max === undefined) return this.nfa.string();
    return this.nfa.stringLength(min ?? 0, max);
  }

  /** Whether string `v` (an enum's member) satisfies the schema's pattern and format. */
  #matches(v: string, schema: Schema, path: string): boolean {
    const dfa = this.#stringDfa({ pattern: schema.pattern, format: schema.format }, path);
    return !dfa || dfaAccepts(dfa, JSON.stringify(v));
  }

  /**
   * The DFA of the string literals a schema with a `pattern` or known `format` allows, their
   * length bounds intersected in (each compiled on its own, then the product: the pattern's
   * automaton works on the value's code points, the length's counts them); undefined for a
   * string with neither.
   */
  #stringDfa(schema: Schema, path: string): Dfa | undefined {
    const { pattern, format } = schema;
    if (pattern !== undefined && typeof pattern !== "string") {
      throw new SchemaError(`${path}.pattern must be a regex string, got ${preview(pattern)}`);
    }
    const known = heldFormat(format);
    if (pattern === undefined && !known) return undefined;
    const [min, max, capped] = this.#lengths(schema, path);
    const key = JSON.stringify([pattern, known ? format : null, min, max]);
    if (this.#strings.has(key)) return this.#strings.get(key);
    const parts: Dfa[] = [];
    if (pattern !== undefined) parts.push(jsonStringDfa(pattern, `${path}.pattern`));
    // A format whose every value is within the length bounds needs no count (an IPv6 address's
    // automaton times a count of 45 would pass the state budget).
    const span = pattern === undefined && known ? FORMAT_LENGTHS[format] : undefined;
    const implied = span && (min ?? 0) <= span[0] && (max ?? Infinity) >= span[1];
    const counted = (min !== undefined || max !== undefined) && !implied;
    if (known) {
      const form = (counted && COUNTED_FORMATS[format]) || FORMATS[format];
      parts.push(jsonStringDfa(form, `${path}.format "${format}", as`, true));
    }
    const what = `${path} (${
      ["pattern", "format", "minLength", "maxLength"].filter((k) => schema[k] !== undefined)
        .join(", ")
    } together)`;
    let dfa = parts.reduce((a, b) => intersect(a, b, what));
    if (counted) {
      const bounded = (top: number | undefined, limit?: number) => {
        const nfa = new Nfa();
        const f = nfa.stringLength(min ?? 0, top);
        return intersect(
          dfa,
          determinize(nfa, f.start, f.end, `${path}'s length bounds`),
          what,
          limit,
        );
      };
      // A maxLength past the cap, already shortened, may be shortened further where the pattern
      // or format times the count would take over 3/4 of the states a schema has (a uri: 256 is
      // too many, 128 fits).
      const tops = capped ? SHORTER.filter((n) => n >= (min ?? 0)) : [max];
      for (const [i, top] of tops.entries()) {
        const last = i === tops.length - 1;
        try {
          dfa = bounded(top, last ? MAX_DFA_STATES : (MAX_DFA_STATES * 3) / 4);
          break;
        } catch (e) {
          if (last || !(e instanceof SchemaError && /too large/.test(e.message))) throw e;
        }
      }
    }
    this.#strings.set(key, dfa);
    return dfa;
  }

  /**
   * `minLength` and `maxLength`, checked; a `maxLength` past {@link MAX_STRING_LENGTH} is held to
   * that cap instead (every string that short is still valid: pydantic's HttpUrl says 2083).
   */
  #lengths(schema: Schema, path: string): [number | undefined, number | undefined, boolean] {
    const min = count(schema.minLength, `${path}.minLength`);
    const max = count(schema.maxLength, `${path}.maxLength`);
    if (max !== undefined && max < (min ?? 0)) {
      throw new SchemaError(`${path}: maxLength ${max} is below minLength ${min}`);
    }
    if ((min ?? 0) > MAX_STRING_LENGTH) {
      throw new SchemaError(
        `${path}: minLength up to ${MAX_STRING_LENGTH} is supported (the automaton needs a state ` +
          `per count of characters), got ${min}: ask for a shorter string, or leave minLength out`,
      );
    }
    const capped = max !== undefined && max > MAX_STRING_LENGTH;
    return [min, capped ? MAX_STRING_LENGTH : max, capped];
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

  /**
   * A list: `items` each, or `prefixItems` first (a tuple, pydantic's tuple[int, str]) and then
   * `items` for the rest — `items` false or absent: none after the prefix (absent allows any, of
   * which none are written) — from `minItems` to `maxItems` of them.
   */
  #array(schema: Schema, path: string, depth: number): Frag {
    const prefix = schema.prefixItems ?? [];
    if (!Array.isArray(prefix)) {
      throw new SchemaError(
        `${path}.prefixItems must be a list of schemas, got ${preview(prefix)}`,
      );
    }
    const rest = schema.items === false ? undefined : schema.items;
    if (rest === undefined && schema.prefixItems === undefined && schema.items !== false) {
      throw new SchemaError(`${path} is an array with no "items": say what its items are`);
    }
    const min = count(schema.minItems, `${path}.minItems`) ?? 0;
    let max = count(schema.maxItems, `${path}.maxItems`);
    if (rest === undefined) max = Math.min(max ?? Infinity, prefix.length);
    if (max !== undefined && max < min) {
      throw new SchemaError(
        schema.maxItems !== undefined && schema.maxItems === max
          ? `${path}: maxItems ${max} is below minItems ${min}`
          : `${path}: minItems ${min} is more than its ${prefix.length} prefixItems, and no ` +
            'more are allowed ("items" false or absent): give "items" a schema for the rest',
      );
    }
    if (prefix.length > MAX_UNROLLED) {
      throw new SchemaError(
        `${path}: prefixItems up to ${MAX_UNROLLED} are supported, got ${prefix.length}`,
      );
    }
    if (Math.max(min, max ?? 0) > MAX_UNROLLED) {
      throw new SchemaError(
        `${path}: minItems / maxItems up to ${MAX_UNROLLED} are supported, got ` +
          `${Math.max(min, max ?? 0)}`,
      );
    }
    const item = (i: number) =>
      i < prefix.length
        ? this.#part(prefix[i], `${path}.prefixItems[${i}]`, depth + 1)
        : this.#part(rest, `${path}.items`, depth + 1);
    return this.#repeat("[]", item, min, max, prefix.length);
  }

  /**
   * `brackets[0]`, from `min` to `max` (undefined: any number) of `item(i)` separated by "," and
   * an optional space, then `brackets[1]`: a list's items, a map's entries. The first `fixed`
   * (each its own `item(i)`: a tuple's prefix) and those up to `min` are written out; past them
   * one more `item` repeats, or with a `max` each up to it is written out.
   */
  #repeat(
    brackets: string,
    item: (i: number) => Frag,
    min: number,
    max?: number,
    fixed = 0,
  ): Frag {
    const nfa = this.nfa;
    const open = nfa.literal([brackets.charCodeAt(0)]);
    const close = nfa.literal([brackets.charCodeAt(1)]);
    const sep = () => nfa.seq([nfa.literal([0x2c]), nfa.space()]);
    const f = nfa.frag();
    nfa.empty(f.start, open.start);
    nfa.empty(close.end, f.end);
    if (min === 0) nfa.empty(open.end, close.start);
    if (max === 0) return f;
    const unrolled = max ?? Math.max(min, fixed, 1);
    let at = open.end;
    for (let i = 0; i < unrolled; i++) {
      at = nfa.seq([{ start: at, end: at }, ...(i ? [sep()] : []), item(i)]).end;
      if (i + 1 >= min) nfa.empty(at, close.start);
    }
    if (max === undefined) {
      const more = nfa.seq([sep(), item(unrolled)]);
      nfa.empty(at, more.start);
      nfa.empty(more.end, at);
    }
    return f;
  }

  #object(schema: Schema, path: string, depth: number): Frag {
    const nfa = this.nfa;
    const props = schema.properties;
    if (props !== undefined && !isObject(props)) {
      throw new SchemaError(`${path}.properties must be an object`);
    }
    const ap = schema.additionalProperties;
    const required = schema.required ?? [];
    if ((props === undefined || Object.keys(props).length === 0) && ap !== undefined) {
      if (Array.isArray(required) && required.length) {
        throw new SchemaError(
          `${path}.required names ${preview(required[0])}, which is not in its properties: ` +
            "list it in properties",
        );
      }
      return this.#map(schema, path, depth);
    }
    if (props === undefined) {
      throw new SchemaError(
        `${path} is an object with no "properties": list them, or give "additionalProperties" ` +
          "a schema for a map of any keys (an object of any values cannot be held to; " +
          "properties {} allows only {})",
      );
    }
    const counted = ["minProperties", "maxProperties", "propertyNames"].find((k) =>
      schema[k] !== undefined
    );
    if (counted) {
      throw new SchemaError(
        `${path}: "${counted}" beside listed properties is not supported (it is on a map: ` +
          '"additionalProperties" with no "properties"); make the properties required or optional ' +
          "instead",
      );
    }
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
      const entry = nfa.seq([key, nfa.space(), this.#part(sub, p, depth + 1)]);
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

  /**
   * An object of any keys whose values are `additionalProperties` (Python's dict[str, X]), with
   * from minProperties to maxProperties of them; additionalProperties false: only {}.
   */
  #map(schema: Schema, path: string, depth: number): Frag {
    const ap = schema.additionalProperties;
    const min = count(schema.minProperties, `${path}.minProperties`) ?? 0;
    let max = count(schema.maxProperties, `${path}.maxProperties`);
    if (ap === false) max = 0;
    if (max !== undefined && max < min) {
      throw new SchemaError(`${path}: at most ${max} properties is below minProperties ${min}`);
    }
    // The automaton counts entries as written, not keys: {"a":1,"a":2} is two entries but one
    // property once parsed. So a maximum holds (written entries are never fewer), and a minimum of
    // one does (one entry is one key); two or more would need the keys told apart.
    if (min > 1) {
      throw new SchemaError(
        `${path}: minProperties ${min} is not supported (0 and 1 are): a repeated key would be ` +
          "counted twice, and telling keys apart is past an automaton",
      );
    }
    if ((max ?? 0) > MAX_UNROLLED) {
      throw new SchemaError(
        `${path}: maxProperties up to ${MAX_UNROLLED} is supported, got ${max}`,
      );
    }
    const nfa = this.nfa;
    const keys = max === 0 ? undefined : this.#keys(schema, path, depth);
    const entry = () =>
      nfa.seq([
        keys ? embed(nfa, keys) : nfa.string(),
        nfa.literal([0x3a]),
        nfa.space(),
        this.#part(ap, `${path}.additionalProperties`, depth + 1),
      ]);
    return this.#repeat("{}", entry, min, max);
  }

  /**
   * The DFA of a map's keys under `propertyNames` (dict[Literal["a", "b"], int], dict[Enum, int],
   * dict[constr(pattern=…), int]), or undefined for any key: the key schema compiled on its own
   * (as a string where it names no type, as pydantic leaves it), intersected with JSON's strings
   * (a key is one, whatever else the schema allows).
   */
  #keys(schema: Schema, path: string, depth: number): Dfa | undefined {
    const names = schema.propertyNames;
    const at = `${path}.propertyNames`;
    if (names === undefined || names === true) return undefined;
    if (names === false) {
      throw new SchemaError(`${at} false allows no key: write "maxProperties": 0 for only {}`);
    }
    if (!isObject(names)) {
      throw new SchemaError(`${at} must be a schema object, got ${preview(names)}`);
    }
    // Any key where it says nothing of them — but a format held to says something (a map of
    // dates took "x" as a key).
    const says = (k: string) => !ANNOTATIONS.has(k) || (k === "format" && heldFormat(names.format));
    if (!Object.keys(names).some(says)) return undefined;
    const typed = names.type !== undefined || COMPOSITIONS.some((k) => names[k] !== undefined);
    const sub = new SchemaCompiler(this.#root);
    const f = sub.value(typed ? names : { ...names, type: "string" }, at, depth + 1);
    const strings = new Nfa();
    const any = strings.string();
    return intersect(
      determinize(sub.nfa, f.start, f.end, at),
      determinize(strings, any.start, any.end, "a key"),
      `${at} (keys are strings)`,
    );
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

/** Keywords that bound a number's value. */
const NUMBER_BOUNDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
/**
 * Keywords that bound a number's value (or make it a multiple) or a string's length: beside an
 * enum, they filter it.
 */
const VALUE_BOUNDS = [...NUMBER_BOUNDS, "multipleOf", "minLength", "maxLength", "pattern"];

/** Whether `format` names one the compiler holds strings to ({@link FORMATS}). */
function heldFormat(format: unknown): format is string {
  return typeof format === "string" && Object.hasOwn(FORMATS, format);
}

/**
 * Whether JSON value `v` is within `schema`'s bounds on numbers and string lengths, and a
 * number a multiple of its `multipleOf` (exactly: {@link isMultiple}).
 */
function withinBounds(v: unknown, schema: Schema, path: string): boolean {
  if (typeof v === "string") {
    const n = [...v].length; // code points, as JSON Schema counts
    const min = count(schema.minLength, `${path}.minLength`) ?? 0;
    const max = count(schema.maxLength, `${path}.maxLength`) ?? Infinity;
    return n >= min && n <= max;
  }
  if (typeof v !== "number") return true;
  const b = (k: string) => {
    const x = schema[k];
    if (x === undefined || typeof x === "boolean") return undefined;
    if (typeof x !== "number" || !Number.isFinite(x)) {
      throw new SchemaError(`${path}.${k} must be a number, got ${preview(x)}`);
    }
    return x;
  };
  const [min, max, exMin, exMax] = NUMBER_BOUNDS.map(b);
  // Draft 4: exclusiveMinimum / exclusiveMaximum true make minimum / maximum exclusive.
  const [strictMin, strictMax] = [
    schema.exclusiveMinimum === true,
    schema.exclusiveMaximum === true,
  ];
  const step = multipleOf(schema, path);
  return (min === undefined || (strictMin ? v > min : v >= min)) &&
    (max === undefined || (strictMax ? v < max : v <= max)) &&
    (exMin === undefined || v > exMin) && (exMax === undefined || v < exMax) &&
    (!step || isMultiple(v, step));
}

/** A `multipleOf` exactly: `units` · 10^-`k`, as written (`x`). */
interface Step {
  x: number;
  units: bigint;
  k: number;
}

/**
 * A schema's `multipleOf` (undefined: none) as its exact decimal: that of the shortest decimal
 * that reads back as its double (String(x)), so 0.1 is 1 · 10^-1 — the number as written, not
 * the double's 0.1000000000000000055….
 * @throws SchemaError for a multipleOf that is not a finite number above 0
 */
function multipleOf(schema: Schema, path: string): Step | undefined {
  const x = schema.multipleOf;
  if (x === undefined) return undefined;
  if (typeof x !== "number" || !Number.isFinite(x) || x <= 0) {
    throw new SchemaError(`${path}.multipleOf must be a number above 0, got ${preview(x)}`);
  }
  const { int, frac } = shortestDecimal(x, `${path}.multipleOf`);
  return { x, units: BigInt(int + frac), k: frac.length };
}

/** Whether number `v` is a whole multiple of `step`, exactly (both as their shortest decimals). */
function isMultiple(v: number, step: Step): boolean {
  const { int, frac } = shortestDecimal(v, "a value");
  const scale = Math.max(frac.length, step.k);
  return BigInt(int + frac.padEnd(scale, "0")) % (step.units * 10n ** BigInt(scale - step.k)) ===
    0n;
}

/** A number's lower and upper bound: the tighter of each kind (an exclusive one on a tie). */
interface NumberBounds {
  lo?: { x: number; strict: boolean };
  hi?: { x: number; strict: boolean };
}

/**
 * A number schema's bounds: `minimum` / `maximum` inclusive, `exclusiveMinimum` /
 * `exclusiveMaximum` as numbers (draft 6 on) or as draft 4's booleans on `minimum` / `maximum`.
 * @throws SchemaError for a bound that is not a number, or past ±(2^53 − 1)
 */
function numberBounds(schema: Schema, path: string): NumberBounds {
  const bound = (k: string): number | undefined => {
    const x = schema[k];
    // Draft 4's exclusiveMinimum / exclusiveMaximum are booleans: read by draft4() below.
    if (x === undefined || (typeof x === "boolean" && k.startsWith("exclusive"))) return undefined;
    if (typeof x !== "number" || !Number.isFinite(x)) {
      throw new SchemaError(`${path}.${k} must be a number, got ${preview(x)}`);
    }
    // JSON.parse gave the schema's numbers as doubles: past 2^53 a bound written in digits may
    // not be the one meant (9007199254740993 arrives as 9007199254740992).
    if (Math.abs(x) > Number.MAX_SAFE_INTEGER) {
      throw new SchemaError(
        `${path}.${k} ${preview(x)} is past ±(2^53 − 1) (${Number.MAX_SAFE_INTEGER}), which ` +
          "reaches the schema compiler rounded (JSON.parse reads numbers as doubles): leave the " +
          "bound out, or keep it within ±2^53",
      );
    }
    return x;
  };
  const draft4 = (k: string, beside: string): boolean => {
    const x = schema[k];
    if (typeof x !== "boolean") return false;
    if (x && schema[beside] === undefined) {
      throw new SchemaError(`${path}.${k} true needs "${beside}" beside it (draft 4's form)`);
    }
    return x;
  };
  const out: NumberBounds = {};
  const tighter = (side: "lo" | "hi", x: number | undefined, strict: boolean) => {
    if (x === undefined) return;
    const old = out[side], sign = side === "lo" ? 1 : -1;
    if (!old || sign * (x - old.x) > 0 || (x === old.x && strict)) out[side] = { x, strict };
  };
  tighter("lo", bound("minimum"), draft4("exclusiveMinimum", "minimum"));
  tighter("hi", bound("maximum"), draft4("exclusiveMaximum", "maximum"));
  tighter("lo", bound("exclusiveMinimum"), true);
  tighter("hi", bound("exclusiveMaximum"), true);
  return out;
}

/** The bounds a schema has, for a message: `minimum 0, exclusiveMaximum 1`. */
function boundsText(schema: Schema): string {
  return NUMBER_BOUNDS.filter((k) => k in schema).map((k) => `${k} ${preview(schema[k])}`)
    .join(", ");
}

/**
 * The whole numbers from lo to hi that an integer schema's bounds leave (±Infinity: unbounded);
 * a bound need not be whole (`gt=1.5`: from 2).
 * @throws SchemaError for a bound {@link numberBounds} refuses, or bounds no integer is within
 */
function integerBounds(schema: Schema, path: string): [number, number] {
  const { lo: l, hi: h } = numberBounds(schema, path);
  const lo = !l ? -Infinity : l.strict ? Math.floor(l.x) + 1 : Math.ceil(l.x);
  const hi = !h ? Infinity : h.strict ? Math.ceil(h.x) - 1 : Math.floor(h.x);
  if (lo > hi) {
    throw new SchemaError(`${path}: no integer is within its bounds (${boundsText(schema)})`);
  }
  return [lo + 0, hi + 0]; // -0 (Math.ceil(-0.5)) as 0
}

/**
 * Most fraction digits a number's bound may have (1e-64 is 64): a state or two per digit.
 */
const MAX_BOUND_FRACTION = 64;

/**
 * A bound's exact decimal digits: those of the shortest decimal that reads back as its double
 * (JavaScript's String(x)) — the bound as written, when it was written with up to 17 significant
 * digits (a double holds no more); 0.1 is 0.1, not the double's 0.1000000000000000055….
 */
function exactDecimal(x: number, name: string): Decimal {
  const { neg, int, frac } = shortestDecimal(x, name);
  if (frac.length > MAX_BOUND_FRACTION) {
    throw new SchemaError(
      `${name} ${preview(x)} has ${frac.length} fraction digits: up to ${MAX_BOUND_FRACTION} ` +
        "are supported (each is a step of the automaton)",
    );
  }
  return { neg, int, frac };
}

/** The digits of the shortest decimal that reads back as double `x` (String(x)), unrounded. */
function shortestDecimal(x: number, name: string): Decimal {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(x));
  if (!m) throw new SchemaError(`${name} ${preview(x)} is not a decimal number`);
  let digits = m[2] + (m[3] ?? ""), point = m[2].length + Number(m[4] ?? 0);
  if (point < 0) (digits = "0".repeat(-point) + digits, point = 0);
  digits = digits.padEnd(point, "0");
  const int = digits.slice(0, point).replace(/^0+/, "") || "0";
  const frac = digits.slice(point).replace(/0+$/, "");
  return { neg: m[1] === "-" && (int !== "0" || frac !== ""), int, frac };
}

/** The double next to `x` upward (`dir` 1) or downward (-1). */
function nextDouble(x: number, dir: 1 | -1): number {
  if (x === 0) return dir * Number.MIN_VALUE;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  // The bits count the magnitude: one more moves away from zero, one less toward it.
  view.setBigUint64(0, view.getBigUint64(0) + ((x > 0) === (dir > 0) ? 1n : -1n));
  return view.getFloat64(0);
}

/**
 * A strict bound as the inclusive bound that holds it for a reader that rounds to a double first
 * (JSON.parse, Python's json, pydantic): the next double inward, as its shortest decimal — cut to
 * {@link MAX_BOUND_FRACTION} digits, inward again. A text just inside the bound's exact value can
 * round onto the bound itself (`exclusiveMaximum: 1` took 0.99999999999999999, which reads as 1);
 * every text within the inclusive bound rounds to that double or further in (rounding is
 * monotonic), and only texts that read as a double at most one step from the bound are lost.
 */
function strictAsInclusive(x: number, side: "lo" | "hi", name: string): Decimal {
  const d = shortestDecimal(nextDouble(x, side === "lo" ? 1 : -1), name);
  if (d.frac.length <= MAX_BOUND_FRACTION) return d;
  // Inward: up for a lower bound, down for an upper one. Cutting digits moves toward zero, so
  // it is inward where that is the right way (a positive upper bound, a negative lower one), and
  // one step at the last digit kept away from zero otherwise.
  const frac = d.frac.slice(0, MAX_BOUND_FRACTION).replace(/0+$/, "");
  const cut = { neg: d.neg && (d.int !== "0" || frac !== ""), int: d.int, frac };
  if ((side === "hi") === !d.neg) return cut;
  const scaled = BigInt(cut.int + cut.frac) + 1n;
  const text = scaled.toString().padStart(MAX_BOUND_FRACTION + 1, "0");
  const int = text.slice(0, -MAX_BOUND_FRACTION).replace(/^0+/, "") || "0";
  return { neg: d.neg, int, frac: text.slice(-MAX_BOUND_FRACTION).replace(/0+$/, "") };
}

/**
 * A bounded `number`: written without an exponent, its value within the bounds exactly
 * ({@link decimalRange}). With an exponent no automaton could hold it: whether `0.0…01e+N` is in
 * range compares a count of digits with the exponent's value.
 */
function boundedNumber(nfa: Nfa, schema: Schema, path: string, b: NumberBounds): Frag {
  const at = (name: "lo" | "hi", side?: { x: number; strict: boolean }): Decimal | undefined =>
    side &&
    (side.strict
      ? strictAsInclusive(side.x, name, `${path}'s bound`)
      : exactDecimal(side.x, `${path}'s bound`));
  const [lo, hi] = [at("lo", b.lo), at("hi", b.hi)];
  if (lo && hi) {
    if (compareDecimals(lo, hi) > 0) {
      throw new SchemaError(`${path}: no number is within its bounds (${boundsText(schema)})`);
    }
  }
  return decimalRange(nfa, lo, hi);
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

/**
 * Whether JSON data `v` is, or holds, a whole number from 2^53 up to 1e21: one written out in
 * digits (as ids are) that a double may not hold exactly (from 1e21 on, JSON writes exponents).
 */
function hasUnsafeInteger(v: unknown): boolean {
  if (typeof v === "number") {
    return !Number.isSafeInteger(v) && Number.isInteger(v) && Math.abs(v) < 1e21;
  }
  if (Array.isArray(v)) return v.some(hasUnsafeInteger);
  return isObject(v) && Object.values(v).some(hasUnsafeInteger);
}

/** Whether `v` is JSON data: null, a string, a boolean, a finite number, or plain lists and objects of them. */
function isJsonData(v: unknown): boolean {
  if (v === null || typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(isJsonData);
  return isObject(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v)) &&
    Object.values(v).every(isJsonData);
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

/**
 * The DFA of the answers `schema` allows (a JSON schema object, as OpenAI's json_schema.schema);
 * with `free.after`, also any text that begins with it (a tool call's marker: the answer is the
 * schema's instance, or calls), and with `free.until`, free only up to that marker (the calls'
 * results given back), after which — a ":" and a space optional, as Qwen-Agent writes
 * "✿RETURN✿: " — the answer is held as at its start again.
 * @throws SchemaError naming the part of the schema it cannot hold an answer to
 */
export function schemaDfa(schema: unknown, free?: { after: string; until?: string }): Dfa {
  if (!isObject(schema)) {
    throw new SchemaError(`a JSON schema must be an object, got ${JSON.stringify(schema)}`);
  }
  const c = new SchemaCompiler(schema);
  const instance = c.value(schema, "schema");
  if (!free) {
    return naming(schema, c, () => determinize(c.nfa, instance.start, instance.end, "the schema"));
  }
  const nfa = c.nfa, answer = nfa.frag();
  nfa.empty(answer.start, instance.start);
  nfa.empty(instance.end, answer.end);
  const after = nfa.literal(utf8.encode(free.after));
  nfa.empty(answer.start, after.start);
  if (!free.until) {
    nfa.range(after.end, 0x00, 0xff, after.end); // any bytes from the marker on
    nfa.empty(after.end, answer.end);
  } else {
    // Free text up to the marker (each state an end), then ":" and " " optional, then as at the
    // start again.
    const text = textUntil(nfa, utf8.encode(free.until), answer.end);
    nfa.empty(after.end, text.start);
    const lead = nfa.seq([
      nfa.optional(nfa.literal(utf8.encode(":"))),
      nfa.optional(nfa.literal(utf8.encode(" "))),
    ]);
    nfa.empty(text.found, lead.start);
    nfa.empty(lead.end, answer.start);
  }
  return naming(schema, c, () => determinize(nfa, answer.start, answer.end, "the schema"));
}

/** Most parts {@link heaviestParts} compiles on their own to weigh them. */
const MAX_WEIGHED = 40;

/**
 * `compile()`'s DFA; where the whole schema is past the state budget, its error names the parts
 * that weigh most ({@link heaviestParts}), so the schema's author knows what to make smaller.
 */
function naming(root: Schema, c: SchemaCompiler, compile: () => Dfa): Dfa {
  try {
    return compile();
  } catch (e) {
    if (!(e instanceof SchemaError && /^the schema is too large/.test(e.message))) throw e;
    const heavy = heaviestParts(root, c.parts);
    if (!heavy.length) throw e;
    throw new SchemaError(`${e.message}; its largest parts: ${heavy.join("; ")}`);
  }
}

/**
 * The parts of a schema that weigh most, as "path (N states)": each part (a property's value,
 * an item) compiled on its own, the three largest of the outermost, then the largest within the
 * largest, and so down to one with no parts (at most {@link MAX_WEIGHED} compiled in all). A part
 * alone is not its whole weight in place (a list repeats it), but the order points at the cause.
 */
function heaviestParts(root: Schema, found: SchemaCompiler["parts"]): string[] {
  const out: string[] = [];
  let budget = MAX_WEIGHED;
  const weigh = (part: SchemaCompiler["parts"][number]) => {
    const c = new SchemaCompiler(root);
    budget--;
    try {
      const f = c.value(part.schema, part.path, part.depth);
      const states = determinize(c.nfa, f.start, f.end, part.path).states;
      return { part, states, text: `${part.path} (${states} states)`, inner: c.parts };
    } catch {
      // Too large alone (or past a budget): the heaviest.
      return {
        part,
        states: Infinity,
        text: `${part.path} (over ${MAX_DFA_STATES} states)`,
        inner: c.parts,
      };
    }
  };
  let level = found, parent = "";
  for (let first = true; level.length && budget > 0; first = false) {
    // The outermost parts recorded: those compiled at the least depth.
    const top = Math.min(...level.map((p) => p.depth));
    const weighed = level.filter((p) => p.depth === top).slice(0, budget).map(weigh)
      .sort((a, b) => b.states - a.states);
    const shown = weighed.slice(0, first ? 3 : 1).map((w) => w.text).join(", ");
    out.push(first ? shown : `the largest within ${parent}: ${shown}`);
    [level, parent] = [weighed[0].inner, weighed[0].part.path];
  }
  return out;
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

/**
 * Text that does not contain `marker` until it ends with it: a state per marker prefix matched so
 * far (Knuth–Morris–Pratt), every byte going where the longest match goes — each state ε to
 * `end`, `found` reached by the marker's last byte.
 */
function textUntil(nfa: Nfa, marker: Uint8Array, end: number): { start: number; found: number } {
  const m = marker.length, fail = new Array<number>(m).fill(0);
  for (let i = 1, k = 0; i < m; i++) {
    while (k && marker[i] !== marker[k]) k = fail[k - 1];
    if (marker[i] === marker[k]) k++;
    fail[i] = k;
  }
  const next = (k: number, b: number) => {
    while (k && marker[k] !== b) k = fail[k - 1];
    return marker[k] === b ? k + 1 : 0;
  };
  const states = Array.from({ length: m }, () => nfa.state()), found = nfa.state();
  const bytes = [...new Set(marker)].sort((a, b) => a - b);
  for (let k = 0; k < m; k++) {
    nfa.empty(states[k], end);
    let lo = 0; // bytes not in the marker: no match at all
    for (const b of bytes) {
      if (lo < b) nfa.range(states[k], lo, b - 1, states[0]);
      lo = b + 1;
    }
    if (lo <= 0xff) nfa.range(states[k], lo, 0xff, states[0]);
    for (const b of bytes) {
      const n = next(k, b);
      nfa.byte(states[k], b, n === m ? found : states[n]);
    }
  }
  return { start: states[0], found };
}
