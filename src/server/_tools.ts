/**
 * OpenAI's tool calling (`tools`, `tool_choice`). `tool_choice: "required"` or a named function
 * holds the answer to the tools' JSON schemas (the structured outputs' DFA, so every call parses
 * and names a tool), as vLLM serves them for any model, and reports it as `tool_calls`; `"none"`
 * answers in text; `"auto"` — the default once tools are sent — lets the model call them in Qwen's
 * own format (src/server/_qwen_tools.ts). The tools also reach the chat template as `tools`, for
 * templates that describe them.
 *
 * What the model writes: for a named function, its arguments (a JSON value of its `parameters`
 * schema); for "required", `[{"name": "f", "parameters": {…}}, …]` — one item a call, each a
 * tool's name and its arguments, at least one (one only with `parallel_tool_calls: false`).
 * {@link ToolCallScanner} reads the calls out of that text as it streams.
 * @module
 */
import { preview } from "../errors.ts";
import type { ToolSpec } from "./_qwen_tools.ts";
import { badRequest, type HttpError, toHttpError } from "./_errors.ts";
import { nestedDeeper } from "./_json.ts";

/** Most tools a request may carry (OpenAI's limit). */
export const MAX_TOOLS = 128;

/** A function's name as OpenAI allows it. */
const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

type Json = Record<string, unknown>;
const isObject = (x: unknown): x is Json =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/**
 * How a request's answer relates to its tools: held to one named function's arguments, or to
 * calls of any of them ("required"); or free, calling them in Qwen's own format where the model
 * chooses ("auto", src/server/_qwen_tools.ts; `continued`: the answer goes on from the results).
 */
export type ToolMode =
  | { kind: "named"; name: string }
  | { kind: "required" }
  | { kind: "auto"; parallel: boolean; continued: boolean };

/** The modes whose answers are held to a schema (ToolCallScanner reads them). */
export type HeldMode = Exclude<ToolMode, { kind: "auto" }>;

/** A request's validated tools. */
export interface ToolRequest {
  /** The tools as sent (`{"type": "function", "function": {…}}`), the chat template's `tools`. */
  tools: Json[];
  /** How the answer relates to the tools; undefined for `tool_choice: "none"` (a text answer). */
  mode?: ToolMode;
  /** The JSON schema the answer is held to (named and required modes). */
  schema?: Json;
  /** Each tool's name, description and parameters, as the "auto" mode's prompt describes them. */
  specs: ToolSpec[];
  /**
   * The request's words for a path in the engine's refusal of `schema` (`schema.items.anyOf[1]
   * .properties.parameters.x` → `tools[1].function.parameters.x`).
   */
  rename(path: string): string;
}

/** The parameters schema of a function that declares none: no arguments. */
const NO_PARAMETERS = { type: "object", properties: {} };

/**
 * Validates `tools`, `tool_choice` and `parallel_tool_calls`; undefined when the request sends no
 * tools (an empty list counts as none). Every fault is a 400 naming its field.
 */
export function parseTools(body: Json): ToolRequest | undefined {
  const list = body.tools;
  const choice = body.tool_choice;
  const parallel = body.parallel_tool_calls;
  if (parallel !== undefined && parallel !== null && typeof parallel !== "boolean") {
    throw badRequest(
      "parallel_tool_calls",
      `parallel_tool_calls must be true or false; got ${JSON.stringify(parallel)}.`,
      "invalid_type",
    );
  }
  if (list !== undefined && list !== null && !Array.isArray(list)) {
    throw badRequest("tools", "tools must be an array of tools.", "invalid_type");
  }
  const tools = (list ?? []) as unknown[];
  if (tools.length > MAX_TOOLS) {
    throw badRequest("tools", `tools takes at most ${MAX_TOOLS} tools; got ${tools.length}.`);
  }
  const functions = tools.map(parseTool);
  const names = new Set<string>();
  functions.forEach((f, i) => {
    if (names.has(f.name)) {
      throw badRequest(
        `tools[${i}].function.name`,
        `tools[${i}].function.name: two tools are named "${f.name}"; names must differ.`,
      );
    }
    names.add(f.name);
  });
  const mode = parseChoice(choice, functions.map((f) => f.name), parallel !== false);
  if (!tools.length) return undefined;
  const base = { tools: tools as Json[], specs: functions };
  if (mode === undefined || mode.kind === "auto") return { ...base, mode, rename: (p) => p };
  if (mode.kind === "named") {
    const i = functions.findIndex((f) => f.name === mode.name);
    const at = `tools[${i}].function.parameters`;
    return {
      ...base,
      mode,
      schema: schemaOf(functions[i].parameters),
      // The compiler names a $ref's target from its $defs, without "schema." before it.
      rename: (p) => p.replace(/^schema\b/, at).replace(/^(\$defs|definitions)\b/, `${at}.$1`),
    };
  }
  return { ...base, mode, ...requiredSchema(functions, parallel !== false) };
}

type FunctionSpec = ToolSpec;

function parseTool(tool: unknown, i: number): FunctionSpec {
  const at = `tools[${i}]`;
  if (!isObject(tool) || tool.type !== "function" || !isObject(tool.function)) {
    throw badRequest(
      at,
      `${at} must be {"type": "function", "function": {"name": …, "parameters": {…}}}; got ${
        preview(tool)
      }.`,
      "invalid_type",
    );
  }
  const f = tool.function;
  if (typeof f.name !== "string" || !NAME.test(f.name)) {
    throw badRequest(
      `${at}.function.name`,
      `${at}.function.name must be 1 to 64 letters, digits, underscores or dashes; got ${
        preview(f.name)
      }.`,
    );
  }
  if (f.description !== undefined && f.description !== null && typeof f.description !== "string") {
    throw badRequest(
      `${at}.function.description`,
      `${at}.function.description must be a string.`,
      "invalid_type",
    );
  }
  const params = f.parameters;
  if (params !== undefined && params !== null && !isObject(params)) {
    throw badRequest(
      `${at}.function.parameters`,
      `${at}.function.parameters must be a JSON schema (an object); got ${preview(params)}.`,
      "invalid_type",
    );
  }
  if (params && nestedDeeper(params, MAX_PARAMETERS_DEPTH)) {
    throw badRequest(
      `${at}.function.parameters`,
      `${at}.function.parameters nests deeper than ${MAX_PARAMETERS_DEPTH} levels.`,
    );
  }
  // As sent, for the "auto" prompt's description (the held modes take schemaOf it).
  return {
    name: f.name,
    description: (f.description as string | undefined) ?? "",
    parameters: (params as Json | null | undefined) ?? NO_PARAMETERS,
  };
}

/** Deepest a tool's parameters may nest (objects and arrays): deeper is no schema anyone writes. */
const MAX_PARAMETERS_DEPTH = 200;

/** The schema an answer to these parameters is held to: `{}` where they declare no arguments. */
function schemaOf(params: Json): Json {
  return noArguments(params) ? NO_PARAMETERS : params;
}

/**
 * Whether a parameters schema declares no arguments: none, `{}`, or an object with no
 * properties (`{"type": "object"}`, as MCP's tools without arguments send) — held to `{}`, as
 * vLLM holds a missing one, rather than refused as allowing any value.
 */
function noArguments(params: Json | null | undefined): boolean {
  if (params === undefined || params === null) return true;
  const words = new Set(["type", "properties", "required", "additionalProperties", "title"]);
  for (const word of ["description", "$schema", "$comment"]) words.add(word);
  const empty = (x: unknown) => x === undefined || (isObject(x) && !Object.keys(x).length);
  const none = (x: unknown) => x === undefined || (Array.isArray(x) && !x.length);
  return Object.keys(params).every((k) => words.has(k)) &&
    (params.type === undefined || params.type === "object") && empty(params.properties) &&
    none(params.required) && typeof (params.additionalProperties ?? false) === "boolean";
}

/** `tool_choice` as a mode (undefined: "none", or no tools). */
function parseChoice(
  choice: unknown,
  names: string[],
  parallel: boolean,
): ToolMode | undefined {
  if (choice === undefined || choice === null) {
    if (!names.length) return undefined;
    choice = "auto"; // OpenAI's default once tools are sent
  }
  // "auto" among no tools (some clients send both always) is a text answer too.
  if (choice === "none" || (choice === "auto" && !names.length)) return undefined;
  if (!names.length) {
    throw badRequest(
      "tool_choice",
      `tool_choice ${JSON.stringify(choice)} needs tools: send the tools it may call.`,
    );
  }
  if (choice === "required") return { kind: "required" };
  if (choice === "auto") return { kind: "auto", parallel, continued: false };
  // vLLM takes a named choice without its "type" too.
  const f = isObject(choice) && (choice.type === "function" || choice.type === undefined)
    ? choice.function
    : undefined;
  const name = isObject(f) ? f.name : undefined;
  if (typeof name !== "string") {
    throw badRequest(
      "tool_choice",
      'tool_choice must be "none", "required", "auto" or {"type": "function", "function": ' +
        `{"name": …}}; got ${preview(choice)}.`,
    );
  }
  if (!names.includes(name)) {
    throw badRequest(
      "tool_choice",
      `tool_choice names the function "${name}", which is not among the tools (${
        names.map((n) => `"${n}"`).join(", ")
      }).`,
    );
  }
  return { kind: "named", name };
}

/**
 * The schema of "required": a list of at least one call (at most one unless `parallel`), each
 * `{"name": <a tool's>, "parameters": <its arguments>}` — vLLM's. The tools' `$defs` (and
 * `definitions`) move to the root, where their `$ref`s point; one name defined two ways is a 400.
 */
function requiredSchema(
  functions: FunctionSpec[],
  parallel: boolean,
): Pick<ToolRequest, "schema" | "rename"> {
  const defs: Record<string, Json> = {};
  const owner: Record<string, number> = {};
  const branches = functions.map((f, i) => {
    const { $defs, definitions, ...parameters } = schemaOf(f.parameters);
    for (const [key, group] of [["$defs", $defs], ["definitions", definitions]] as const) {
      if (group === undefined) continue;
      if (!isObject(group)) {
        throw badRequest(
          `tools[${i}].function.parameters.${key}`,
          `tools[${i}].function.parameters.${key} must be an object of schemas.`,
          "invalid_type",
        );
      }
      for (const [name, schema] of Object.entries(group)) {
        const id = `${key}/${name}`;
        if (id in defs && JSON.stringify(defs[id]) !== JSON.stringify(schema)) {
          throw badRequest(
            `tools[${i}].function.parameters.${key}.${name}`,
            `tools[${i}].function.parameters.${key}.${name}: tools[${owner[id]}] defines ` +
              `"${name}" otherwise; with tool_choice "required" the tools' definitions share one ` +
              "namespace: rename one.",
          );
        }
        defs[id] = schema as Json;
        owner[id] ??= i;
      }
    }
    return {
      type: "object",
      properties: { name: { const: f.name }, parameters },
      required: ["name", "parameters"],
    };
  });
  const schema: Json = {
    type: "array",
    minItems: 1,
    ...(parallel ? {} : { maxItems: 1 }),
    items: { anyOf: branches },
  };
  for (const [id, s] of Object.entries(defs)) {
    const [key, name] = [id.slice(0, id.indexOf("/")), id.slice(id.indexOf("/") + 1)];
    ((schema[key] ??= {}) as Json)[name] = s;
  }
  return {
    schema,
    rename: (p) =>
      p.replace(
        /^schema\.items\.anyOf\[(\d+)\]\.properties\.parameters/,
        "tools[$1].function.parameters",
      )
        .replace(
          /^(?:schema\.)?(\$defs|definitions)\.([^.[\s:]+)/,
          (_, key, name) => `tools[${owner[`${key}/${name}`]}].function.parameters.${key}.${name}`,
        ),
  };
}

/**
 * The engine's refusal of a tool request's schema (a 400 naming `response_format`, its message
 * "response_format: <path> …") as the fault of the tool whose part it is; undefined for others.
 */
export function toolSchemaError(error: unknown, tools: ToolRequest): HttpError | undefined {
  const http = toHttpError(error);
  if (http.status !== 400 || http.param !== "response_format") return undefined;
  const message = tools.rename(http.message.replace(/^response_format: /, ""));
  const param = message.match(/^tools\[\d+\]\.function\.parameters/)?.[0] ?? "tools";
  // The automaton's budgets, for all the tools together: what to send instead.
  const hint = param === "tools" && tools.mode?.kind === "required"
    ? ` (tool_choice "required" holds the answer to all ${tools.tools.length} tools at once: ` +
      "send fewer tools, or name the one to call)"
    : "";
  return badRequest(param, message + hint, http.code ?? undefined);
}

/** One call as a response reports it. */
export interface ToolCallOut {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** What a stream sends of one call: its id, type and name first, then pieces of its arguments. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: "function";
  function: { name?: string; arguments: string };
}

/** A fresh call id, as OpenAI's: `call_` and 24 characters. */
export function toolCallId(): string {
  return `call_${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
}

/**
 * Reads tool calls out of an answer held to a {@link ToolMode} as its text arrives. A named
 * function's call is the whole text (its arguments); with "required" the text is the list of
 * calls, and the scanner follows its JSON — strings and nesting — to take each item's name and
 * its `parameters` value's text as written. A call's first delta carries its id and name (once
 * the name is whole), later ones its arguments; an answer cut short leaves its last call's
 * arguments unfinished, as they streamed.
 */
export class ToolCallScanner {
  readonly #mode: HeldMode;
  readonly #calls: ToolCallOut[] = [];
  // "required": the JSON walk. Depth 1 is the list, 2 an item (a call), more its arguments.
  #depth = 0;
  #inString = false;
  #escaped = false;
  #key: string | undefined; // the item's key whose value comes next (or is being read)
  #expectKey = false; // at depth 2: the next string is a key
  #capture: "key" | "name" | undefined; // what the current depth-2 string is
  #raw = ""; // that string's characters so far (escapes as written)
  #inArgs = false; // inside the item's "parameters" value
  #pending = ""; // arguments read before the item's name
  #name: string | undefined;

  constructor(mode: HeldMode) {
    this.#mode = mode;
  }

  /** The calls read so far. */
  get calls(): readonly ToolCallOut[] {
    return this.#calls;
  }

  /** Reads more of the answer; returns what a stream sends of it (possibly nothing). */
  push(text: string): ToolCallDelta[] {
    const out: ToolCallDelta[] = [];
    if (this.#mode.kind === "named") {
      if (!this.#calls.length) {
        out.push(this.#open(this.#mode.name, text));
      } else if (text) {
        this.#calls[0].function.arguments += text;
        out.push({ index: 0, function: { arguments: text } });
      }
      return out;
    }
    let args = "";
    const flush = () => {
      if (!args) return;
      if (this.#name === undefined) this.#pending += args;
      else {
        this.#calls[this.#calls.length - 1].function.arguments += args;
        const last = out[out.length - 1];
        if (last?.index === this.#calls.length - 1) last.function.arguments += args;
        else out.push({ index: this.#calls.length - 1, function: { arguments: args } });
      }
      args = "";
    };
    for (const ch of text) {
      if (this.#inArgs && !this.#endsArgs(ch)) {
        if (args || this.#pending || this.#argsStarted() || ch.trim()) args += ch;
        this.#walk(ch);
        continue;
      }
      if (this.#inArgs) { // a , or } at the item's depth closes the arguments
        flush();
        this.#inArgs = false;
      }
      const named = this.#step(ch);
      if (named !== undefined) {
        flush();
        out.push(this.#open(named, this.#pending));
        this.#pending = "";
      }
    }
    flush();
    return out;
  }

  /** Whether the current call's arguments have begun (so a space is part of them). */
  #argsStarted(): boolean {
    return this.#name !== undefined &&
      this.#calls[this.#calls.length - 1].function.arguments !== "";
  }

  /** Whether `ch` ends the arguments being read: a , or } of the item itself. */
  #endsArgs(ch: string): boolean {
    return !this.#inString && this.#depth === 2 && (ch === "," || ch === "}");
  }

  /** Starts a call of `name`; its first delta (id, type, name, the arguments so far). */
  #open(name: string, args: string): ToolCallDelta {
    const call: ToolCallOut = {
      id: toolCallId(),
      type: "function",
      function: { name, arguments: args },
    };
    this.#calls.push(call);
    return {
      index: this.#calls.length - 1,
      id: call.id,
      type: "function",
      function: { ...call.function },
    };
  }

  /** Strings and nesting, for a character inside the arguments. */
  #walk(ch: string): void {
    if (this.#inString) {
      if (this.#escaped) this.#escaped = false;
      else if (ch === "\\") this.#escaped = true;
      else if (ch === '"') this.#inString = false;
    } else if (ch === '"') this.#inString = true;
    else if (ch === "{" || ch === "[") this.#depth++;
    else if (ch === "}" || ch === "]") this.#depth--;
  }

  /** A character outside the arguments; returns a call's name where it ends that name's string. */
  #step(ch: string): string | undefined {
    if (this.#inString) {
      if (this.#escaped) this.#escaped = false;
      else if (ch === "\\") this.#escaped = true;
      else if (ch === '"') {
        this.#inString = false;
        return this.#endString();
      }
      this.#raw += ch;
      return undefined;
    }
    if (ch === '"') {
      this.#inString = true;
      this.#raw = "";
      this.#capture = this.#depth !== 2
        ? undefined
        : this.#expectKey
        ? "key"
        : this.#key === "name"
        ? "name"
        : undefined;
    } else if (ch === "[" || ch === "{") {
      this.#depth++;
      if (this.#depth === 2) { // a new item
        this.#expectKey = true;
        this.#name = undefined;
        this.#pending = "";
      }
    } else if (ch === "]" || ch === "}") {
      this.#depth--;
    } else if (this.#depth === 2 && ch === ":") {
      this.#expectKey = false;
      this.#inArgs = this.#key === "parameters";
    } else if (this.#depth === 2 && ch === ",") {
      this.#expectKey = true;
    }
    return undefined;
  }

  /** A depth-2 string ended: a key noted, or a name returned (once per item). */
  #endString(): string | undefined {
    const capture = this.#capture;
    this.#capture = undefined;
    if (capture === undefined) return undefined;
    const value = JSON.parse(`"${this.#raw}"`) as string;
    if (capture === "key") {
      this.#key = value;
      return undefined;
    }
    if (this.#name !== undefined) return undefined;
    this.#name = value;
    return value;
  }
}
