import assert from "node:assert/strict";
import { HttpError } from "./_errors.ts";
import {
  parseTools,
  toolCallId,
  type ToolCallOut,
  ToolCallScanner,
  toolSchemaError,
} from "./_tools.ts";
import { schemaDfa } from "../generate/json_schema.ts";
import { dfaAccepts } from "../generate/_automaton.ts";
import { SchemaError } from "../errors.ts";
import { toHttpError } from "./_errors.ts";

const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather now",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { enum: ["c", "f"] } },
      required: ["city"],
    },
  },
};
const TIME = { type: "function", function: { name: "get-time" } }; // no parameters

function refusal(body: Record<string, unknown>): HttpError {
  try {
    parseTools(body);
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw error;
  }
  assert.fail(`accepted ${JSON.stringify(body)}`);
}

Deno.test("parseTools(): no tools, an empty list or tool_choice none ask for a text answer", () => {
  assert.equal(parseTools({}), undefined);
  assert.equal(parseTools({ tools: [] }), undefined);
  assert.equal(parseTools({ tools: null, tool_choice: "none" }), undefined);
  const none = parseTools({ tools: [WEATHER], tool_choice: "none" })!;
  assert.deepEqual(none.tools, [WEATHER]); // still the template's
  assert.equal(none.mode, undefined);
  assert.equal(none.schema, undefined);
});

Deno.test("parseTools(): a named function holds the answer to its parameters", () => {
  const t = parseTools({
    tools: [TIME, WEATHER],
    tool_choice: { type: "function", function: { name: "get_weather" } },
  })!;
  assert.deepEqual(t.mode, { kind: "named", name: "get_weather" });
  assert.deepEqual(t.schema, WEATHER.function.parameters);
  assert.equal(t.rename("schema.properties.city"), "tools[1].function.parameters.properties.city");
  const time = parseTools({
    tools: [TIME],
    tool_choice: { type: "function", function: { name: "get-time" } },
  })!;
  assert.deepEqual(time.schema, { type: "object", properties: {} });
  const dfa = schemaDfa(time.schema);
  assert.ok(dfaAccepts(dfa, "{}"));
  assert.ok(!dfaAccepts(dfa, '{"a": 1}'));
});

Deno.test("parseTools(): required holds the answer to a list of calls, one only without parallel calls", () => {
  const t = parseTools({ tools: [WEATHER, TIME], tool_choice: "required" })!;
  assert.deepEqual(t.mode, { kind: "required" });
  const dfa = schemaDfa(t.schema);
  assert.ok(dfaAccepts(dfa, '[{"name": "get_weather", "parameters": {"city": "Oslo"}}]'));
  assert.ok(
    dfaAccepts(
      dfa,
      '[{"name":"get-time","parameters":{}},{"name":"get_weather","parameters":{"city":"x","unit":"f"}}]',
    ),
  );
  assert.ok(!dfaAccepts(dfa, "[]"));
  assert.ok(!dfaAccepts(dfa, '[{"name": "get_weather", "parameters": {}}]')); // city is required
  assert.ok(!dfaAccepts(dfa, '[{"name": "other", "parameters": {}}]'));
  const one = schemaDfa(
    parseTools({ tools: [TIME], tool_choice: "required", parallel_tool_calls: false })!.schema,
  );
  assert.ok(dfaAccepts(one, '[{"name": "get-time", "parameters": {}}]'));
  assert.ok(
    !dfaAccepts(
      one,
      '[{"name": "get-time", "parameters": {}}, {"name": "get-time", "parameters": {}}]',
    ),
  );
});

Deno.test("parseTools(): required moves the tools' $defs to the root, where their $refs point", () => {
  const point = { type: "object", properties: { x: { type: "number" } }, required: ["x"] };
  const a = {
    type: "function",
    function: {
      name: "a",
      parameters: {
        type: "object",
        properties: { p: { $ref: "#/$defs/P" } },
        required: ["p"],
        $defs: { P: point },
      },
    },
  };
  const b = {
    type: "function",
    function: {
      name: "b",
      parameters: {
        type: "object",
        properties: { q: { $ref: "#/$defs/P" } },
        required: ["q"],
        $defs: { P: point },
      },
    },
  };
  const t = parseTools({ tools: [a, b], tool_choice: "required" })!;
  assert.deepEqual(t.schema!.$defs, { P: point });
  const dfa = schemaDfa(t.schema);
  assert.ok(dfaAccepts(dfa, '[{"name": "b", "parameters": {"q": {"x": 1.5}}}]'));
  assert.equal(
    t.rename("schema.$defs.P.properties.x"),
    "tools[0].function.parameters.$defs.P.properties.x",
  );
  assert.equal(
    t.rename("schema.items.anyOf[1].properties.parameters.properties.q"),
    "tools[1].function.parameters.properties.q",
  );
  const other = {
    ...b,
    function: {
      ...b.function,
      parameters: { ...b.function.parameters, $defs: { P: { type: "string" } } },
    },
  };
  const e = refusal({ tools: [a, other], tool_choice: "required" });
  assert.equal(e.param, "tools[1].function.parameters.$defs.P");
  assert.match(e.message, /tools\[0\] defines "P" otherwise/);
});

Deno.test("parseTools(): auto (also the default with tools) holds nothing and keeps the tools' descriptions", () => {
  for (
    const body of [{ tools: [WEATHER, TIME] }, { tools: [WEATHER, TIME], tool_choice: "auto" }]
  ) {
    const t = parseTools(body)!;
    assert.deepEqual(t.mode, { kind: "auto", parallel: true, continued: false });
    assert.equal(t.schema, undefined);
    assert.deepEqual(t.specs, [
      { name: "get_weather", description: "Weather now", parameters: WEATHER.function.parameters },
      { name: "get-time", description: "", parameters: { type: "object", properties: {} } },
    ]);
  }
  const one = parseTools({ tools: [TIME], parallel_tool_calls: false })!;
  assert.deepEqual(one.mode, { kind: "auto", parallel: false, continued: false });
});

Deno.test("parseTools() refuses unknown names and malformed tools, naming the field", () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ tools: {} }, "tools", /must be an array/],
    [
      { tools: [{ type: "retrieval" }], tool_choice: "required" },
      "tools[0]",
      /must be \{"type": "function"/,
    ],
    [
      { tools: [{ type: "function", function: { name: "a b" } }], tool_choice: "required" },
      "tools[0].function.name",
      /letters, digits/,
    ],
    [
      {
        tools: [{ type: "function", function: { name: "f", parameters: [] } }],
        tool_choice: "required",
      },
      "tools[0].function.parameters",
      /JSON schema/,
    ],
    [
      {
        tools: [{ type: "function", function: { name: "f", description: 1 } }],
        tool_choice: "required",
      },
      "tools[0].function.description",
      /string/,
    ],
    [
      { tools: [TIME, TIME], tool_choice: "required" },
      "tools[1].function.name",
      /two tools are named "get-time"/,
    ],
    [
      { tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } },
      "tool_choice",
      /"nope", which is not among the tools \("get_weather"\)/,
    ],
    [{ tools: [WEATHER], tool_choice: "sometimes" }, "tool_choice", /must be "none", "required"/],
    [{ tool_choice: "required" }, "tool_choice", /needs tools/],
    [
      { tools: [], tool_choice: { type: "function", function: { name: "f" } } },
      "tool_choice",
      /needs tools/,
    ],
    [
      { tools: [WEATHER], tool_choice: "required", parallel_tool_calls: "no" },
      "parallel_tool_calls",
      /true or false/,
    ],
    [{ tools: Array(129).fill(TIME), tool_choice: "required" }, "tools", /at most 128/],
  ];
  for (const [body, param, re] of cases) {
    const e = refusal(body);
    assert.equal(e.param, param, JSON.stringify(body).slice(0, 80));
    assert.match(e.message, re);
  }
});

Deno.test("toolSchemaError() names the tool whose parameters the engine could not hold an answer to", () => {
  const t = parseTools({ tools: [TIME, WEATHER], tool_choice: "required" })!;
  // As the engine's refusal reaches the server: responseFormat named as the request field.
  const engine = toHttpError(
    new SchemaError(
      "responseFormat: schema.items.anyOf[1].properties.parameters.properties.city: pattern is not supported",
    ),
  );
  const e = toolSchemaError(engine, t)!;
  assert.equal(e.param, "tools[1].function.parameters");
  assert.equal(e.message, "tools[1].function.parameters.properties.city: pattern is not supported");
  const budget = toolSchemaError(
    toHttpError(new SchemaError("responseFormat: the schema needs more than 16384 states")),
    t,
  )!;
  assert.equal(budget.param, "tools");
  assert.equal(
    toolSchemaError(new HttpError(400, "x", "invalid_request_error", "messages"), t),
    undefined,
  );
});

/** The calls and the deltas a scanner gives for `text` pushed in the pieces `cuts` makes. */
function scan(
  mode: ConstructorParameters<typeof ToolCallScanner>[0],
  text: string,
  cuts: number[],
) {
  const s = new ToolCallScanner(mode);
  const deltas = [];
  let at = 0;
  for (const cut of [...cuts, text.length]) {
    deltas.push(...s.push(text.slice(at, cut)));
    at = cut;
  }
  return { calls: s.calls, deltas };
}

/** Deltas joined as a client joins them (by index: id and name once, arguments appended). */
function joined(deltas: ReturnType<typeof scan>["deltas"]): ToolCallOut[] {
  const out: ToolCallOut[] = [];
  for (const d of deltas) {
    if (d.id) {
      assert.equal(d.index, out.length);
      out.push({ id: d.id, type: d.type!, function: { name: d.function.name!, arguments: "" } });
    }
    out[d.index].function.arguments += d.function.arguments;
  }
  return out;
}

Deno.test("ToolCallScanner reads a required answer's calls the same in any pieces, and its deltas add up to them", () => {
  const text =
    '[{"name": "get_weather", "parameters": {"city": "Sa\\"o \\\\ {P}, [x]", "unit": "c"}},' +
    ' {"name":"get-time","parameters":{}}, {"name": "n\\u00e9", "parameters": 3}]';
  const whole = scan({ kind: "required" }, text, []);
  assert.deepEqual(whole.calls.map((c) => [c.function.name, c.function.arguments]), [
    ["get_weather", '{"city": "Sa\\"o \\\\ {P}, [x]", "unit": "c"}'],
    ["get-time", "{}"],
    ["né", "3"],
  ]);
  for (const c of whole.calls) assert.match(c.id, /^call_[0-9a-f]{24}$/);
  assert.deepEqual(joined(whole.deltas), whole.calls);
  for (let i = 0; i <= text.length; i++) {
    for (
      const cuts of [
        [i],
        [i, Math.min(text.length, i + 3)],
        Array.from({ length: text.length }, (_, k) => k),
      ]
    ) {
      const { calls, deltas } = scan({ kind: "required" }, text, cuts);
      assert.deepEqual(
        calls.map((c) => c.function),
        whole.calls.map((c) => c.function),
        `cut ${cuts}`,
      );
      assert.deepEqual(joined(deltas), calls);
    }
  }
});

Deno.test("ToolCallScanner: a cut-off answer leaves its last call's arguments unfinished; a named call is the whole text", () => {
  const cut = scan({ kind: "required" }, '[{"name": "f", "parameters": {"a": [1, 2', []);
  assert.deepEqual(cut.calls.map((c) => c.function), [{ name: "f", arguments: '{"a": [1, 2' }]);
  assert.deepEqual(scan({ kind: "required" }, '[{"name": "f', []).calls, []); // no name yet: no call
  const named = scan({ kind: "named", name: "g" }, '{"x": 1}', [1, 4]);
  assert.deepEqual(named.calls.map((c) => c.function), [{ name: "g", arguments: '{"x": 1}' }]);
  assert.deepEqual(named.deltas.map((d) => d.function), [
    { name: "g", arguments: "{" },
    { arguments: '"x"' },
    { arguments: ": 1}" },
  ]);
  assert.notEqual(toolCallId(), toolCallId());
});

Deno.test("toolSchemaError() names the tool of a refused part of its $defs, the compiler's own message in", () => {
  const params = {
    type: "object",
    properties: { p: { $ref: "#/$defs/P" } },
    required: ["p"],
    $defs: { P: { type: "string", pattern: "(a)\\1" } },
  };
  const tool = { type: "function", function: { name: "f", parameters: params } };
  for (
    const choice of ["required", { type: "function", function: { name: "f" } }] as unknown[]
  ) {
    const t = parseTools({ tools: [TIME, tool], tool_choice: choice })!;
    let refused: unknown;
    try {
      schemaDfa(t.schema);
    } catch (e) {
      // As the engine words it: responseFormat, then the compiler's message.
      refused = new SchemaError(`responseFormat: ${(e as Error).message}`);
    }
    assert.ok(refused instanceof SchemaError, JSON.stringify(choice));
    const e = toolSchemaError(toHttpError(refused), t)!;
    assert.equal(e.param, "tools[1].function.parameters", JSON.stringify(choice));
    assert.match(e.message, /^tools\[1\]\.function\.parameters\.\$defs\.P\b.*pattern/);
  }
});

Deno.test("parseTools(): parameters {} or an object with no properties take no arguments; a named choice may leave out its type", () => {
  for (
    const parameters of [{}, { type: "object" }, {
      type: "object",
      properties: {},
      additionalProperties: false,
    }]
  ) {
    const t = parseTools({
      tools: [{ type: "function", function: { name: "f", parameters } }],
      tool_choice: { function: { name: "f" } },
    })!;
    assert.deepEqual(t.schema, { type: "object", properties: {} }, JSON.stringify(parameters));
  }
  // A map (additionalProperties a schema) is not "no arguments": it is held to as a map
  // (dict[str, str]); additionalProperties true or false without properties is.
  const tools = (additionalProperties: unknown) =>
    parseTools({
      tools: [{
        type: "function",
        function: { name: "f", parameters: { type: "object", additionalProperties } },
      }],
      tool_choice: "required",
    })!;
  const map = tools({ type: "string" });
  assert.notDeepEqual(map.schema, tools(false).schema);
  assert.doesNotThrow(() => schemaDfa(map.schema));
  assert.deepEqual(tools(true).schema, tools(false).schema);
});

Deno.test("toolSchemaError(): past the automaton's budget, required says to send fewer tools or name one", () => {
  const t = parseTools({ tools: [WEATHER, TIME], tool_choice: "required" })!;
  const e = toolSchemaError(
    toHttpError(new SchemaError("responseFormat: the schema needs more than 16384 states")),
    t,
  )!;
  assert.equal(e.param, "tools");
  assert.match(e.message, /all 2 tools at once: send fewer tools, or name the one to call/);
});

Deno.test("parseTools() refuses parameters nested past 200 levels (a 400, not a stack overflow)", () => {
  let deep: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < 6000; i++) deep = { type: "object", properties: { a: deep } };
  const e = refusal({ tools: [{ type: "function", function: { name: "f", parameters: deep } }] });
  assert.equal(e.param, "tools[0].function.parameters");
  assert.match(e.message, /nests deeper than 200 levels/);
});
