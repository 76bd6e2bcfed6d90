import assert from "node:assert/strict";
import { HttpError } from "./_errors.ts";
import {
  parseQwenAnswer,
  pythonJson,
  QWEN_AGENT_SYSTEM,
  QwenAnswerStream,
  qwenToolMessages,
  type ToolSpec,
  toolSystemPrompt,
} from "./_qwen_tools.ts";
import type { RequestMessage } from "./_request.ts";

const WEATHER: ToolSpec = {
  name: "get_weather",
  description: "Weather now.",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const TIME: ToolSpec = {
  name: "now",
  description: "",
  parameters: { type: "object", properties: {} },
};

Deno.test("pythonJson() writes JSON as Python's json.dumps(ensure_ascii=False)", () => {
  assert.equal(
    pythonJson({ a: [1, "é\n", null, true], b: { c: 2.5 } }),
    '{"a": [1, "é\\n", null, true], "b": {"c": 2.5}}',
  );
  assert.equal(pythonJson([]), "[]");
  assert.equal(pythonJson({}), "{}");
});

Deno.test("toolSystemPrompt() is Qwen-Agent's tools section, one call at a time or in parallel, English or Chinese", () => {
  const desc = "### get_weather\n\nget_weather: Weather now. Parameters: " +
    '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]} ' +
    "Format the arguments as a JSON object.\n\n### now\n\nnow:  Parameters: " +
    '{"type": "object", "properties": {}} Format the arguments as a JSON object.';
  assert.equal(
    toolSystemPrompt([WEATHER, TIME], false, "en"),
    "# Tools\n\n## You have access to the following tools:\n\n" + desc + "\n\n" +
      "## When you need to call a tool, please insert the following command in your reply, which " +
      "can be called zero or multiple times according to your needs:\n\n" +
      "✿FUNCTION✿: The tool to use, should be one of [get_weather,now]\n" +
      "✿ARGS✿: The input of the tool\n✿RESULT✿: Tool results\n" +
      "✿RETURN✿: Reply based on tool results. Images need to be rendered as ![](url)",
  );
  const parallel = toolSystemPrompt([WEATHER], true, "en");
  assert.ok(
    parallel.includes(
      "## Insert the following command in your reply when you need to call N tools in parallel:\n\n✿FUNCTION✿: The name of tool 1, should be one of [get_weather]\n✿ARGS✿: The input of tool 1\n",
    ),
  );
  assert.ok(
    parallel.endsWith(
      "✿RESULT✿: The result of tool N\n✿RETURN✿: Reply based on tool results. Images need to be rendered as ![](url)",
    ),
  );
  const zh = toolSystemPrompt([WEATHER], false, "zh");
  assert.ok(
    zh.startsWith(
      "# 工具\n\n## 你拥有如下工具：\n\n### get_weather\n\nget_weather: Weather now. 输入参数：",
    ),
  );
  assert.ok(
    zh.includes(
      "此工具的输入应为JSON对象。\n\n## 你可以在回复中插入零次、一次或多次以下命令以调用工具：\n\n✿FUNCTION✿: 工具名称，必须是[get_weather]之一。",
    ),
  );
});

Deno.test("qwenToolMessages() writes a conversation's calls and results into one assistant turn, and continues it from ✿RETURN✿", () => {
  const messages: RequestMessage[] = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Weather in Paris and Oslo?" },
    {
      role: "assistant",
      content: "Checking.",
      toolCalls: [
        { id: "a", name: "get_weather", arguments: '{"city": "Paris"}' },
        { id: "b", name: "get_weather", arguments: '{"city": "Oslo"}' },
      ],
    },
    { role: "tool", content: "12 C", toolCallId: "a" },
    { role: "tool", content: [{ type: "text", text: "3 C" }], toolCallId: "b" },
  ];
  const { messages: out, continueFinal } = qwenToolMessages(messages, [WEATHER], true);
  assert.equal(continueFinal, true);
  assert.deepEqual(out.slice(1), [
    { role: "user", content: "Weather in Paris and Oslo?" },
    {
      role: "assistant",
      content: 'Checking.\n✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}\n' +
        '✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Oslo"}\n✿RESULT✿: 12 C\n✿RESULT✿: 3 C\n✿RETURN✿',
    },
  ]);
  assert.equal(out[0].content, `Be brief.\n\n${toolSystemPrompt([WEATHER], true, "en")}`);
  // The answer after the results, then a new question: one turn, then the user's.
  const later = qwenToolMessages(
    [
      ...messages,
      { role: "assistant", content: "Paris is warmer." },
      { role: "user", content: "Thanks" },
    ],
    [WEATHER],
    false,
  );
  assert.equal(later.continueFinal, false);
  assert.equal(
    later.messages[0].content,
    `You are a helpful assistant.\n\n${toolSystemPrompt([WEATHER], false, "en")}`.replace(
      "You are a helpful assistant.\n\n",
      "Be brief.\n\n",
    ),
  );
  assert.ok(
    (later.messages[2].content as string).endsWith("✿RESULT✿: 3 C\n✿RETURN✿: Paris is warmer."),
  );
  assert.deepEqual(later.messages[3], { role: "user", content: "Thanks" });
  // No system message: Qwen-Agent's default before the tools; a call alone starts the turn.
  const bare = qwenToolMessages(
    [
      { role: "user", content: "现在几点？" },
      { role: "assistant", content: "", toolCalls: [{ name: "now", arguments: "{}" }] },
    ],
    [TIME],
    true,
  );
  assert.equal(
    bare.messages[0].content,
    `You are a helpful assistant.\n\n${toolSystemPrompt([TIME], true, "zh")}`,
  );
  assert.deepEqual(bare.messages[2], { role: "assistant", content: "✿FUNCTION✿: now\n✿ARGS✿: {}" });
  assert.equal(bare.continueFinal, false);
  assert.throws(
    () =>
      qwenToolMessages(
        [{ role: "user", content: "x" }, { role: "tool", content: "r" }],
        [TIME],
        true,
      ),
    (e) =>
      e instanceof HttpError && e.param === "messages[1]" &&
      /must follow the assistant message/.test(e.message),
  );
});

Deno.test("qwenToolMessages() describes the tools after the chat template's default system message where a conversation has none", () => {
  const qvq = "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You " +
    "should think step-by-step.";
  const question: RequestMessage[] = [{ role: "user", content: "Weather in Paris?" }];
  const section = toolSystemPrompt([WEATHER], true, "en");
  // QVQ-72B-Preview's default kept, the tools after it (not Qwen-Agent's default instead).
  assert.deepEqual(qwenToolMessages(question, [WEATHER], true, qvq).messages[0], {
    role: "system",
    content: `${qvq}\n\n${section}`,
  });
  // A template whose default is empty: the tools alone; none known: Qwen-Agent's default.
  assert.equal(qwenToolMessages(question, [WEATHER], true, "").messages[0].content, section);
  assert.equal(
    qwenToolMessages(question, [WEATHER], true, undefined).messages[0].content,
    `${QWEN_AGENT_SYSTEM}\n\n${section}`,
  );
  // The conversation's own system message wins over any default.
  const own = qwenToolMessages(
    [{ role: "system", content: "Be brief." }, ...question],
    [
      WEATHER,
    ],
    true,
    qvq,
  );
  assert.equal(own.messages[0].content, `Be brief.\n\n${section}`);
});

Deno.test("parseQwenAnswer() reads the content before the first call and each call, as Qwen-Agent does", () => {
  assert.deepEqual(parseQwenAnswer("\n\nJust text. ✿RET"), { content: "Just text.", calls: [] });
  const { content, calls } = parseQwenAnswer(
    'Let me look.\n✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"} <!-- a note -->\n' +
      '✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Oslo"}\n✿ARGS✿: {"city": "Rome"}\n',
  );
  assert.equal(content, "Let me look.");
  assert.deepEqual(calls.map((c) => [c.type, c.function.name, c.function.arguments]), [
    ["function", "get_weather", '{"city": "Paris"}'],
    ["function", "get_weather", '{"city": "Oslo"}'],
    ["function", "get_weather", '{"city": "Rome"}'],
  ]);
  assert.equal(new Set(calls.map((c) => c.id)).size, 3);
  const one = parseQwenAnswer("✿FUNCTION✿: now\n✿ARGS✿: {}\n✿FUNCTION✿: now\n✿ARGS✿: {}", {
    parallel: false,
  });
  assert.deepEqual(one.content, "");
  assert.equal(one.calls.length, 1);
  assert.deepEqual(parseQwenAnswer(": It is 12 C.", { continued: true }).content, "It is 12 C.");
  assert.deepEqual(parseQwenAnswer(":It is", { continued: true }).content, "It is");
  // A call cut off before its arguments: its name, no arguments.
  assert.deepEqual(parseQwenAnswer("✿FUNCTION✿: now").calls.map((c) => c.function), [{
    name: "now",
    arguments: "",
  }]);
});

Deno.test("QwenAnswerStream shows the content as it comes, in any pieces, adding up to parseQwenAnswer's", () => {
  const texts = [
    'Let me look.\n\n✿FUNCTION✿: get_weather\n✿ARGS✿: {"city": "Paris"}\n',
    "\n\nPlain answer,\nwith lines and a ✿ inside ✿ and ✿ARGS✿ words.  \n",
    ": It is 12 C in Paris.",
    "Trailing ✿FUNC",
  ];
  for (const text of texts) {
    const continued = text.startsWith(":");
    const want = parseQwenAnswer(text, { continued });
    for (let cut = 0; cut <= text.length; cut++) {
      for (const pieces of [[text.slice(0, cut), text.slice(cut)], [...text]]) {
        const stream = new QwenAnswerStream({ continued });
        let shown = "";
        for (const p of pieces) shown += stream.push(p);
        const end = stream.finish();
        assert.equal(shown + end.content, want.content, `${JSON.stringify(text)} cut ${cut}`);
        assert.deepEqual(end.calls.map((c) => c.function), want.calls.map((c) => c.function));
      }
    }
  }
  // Held back: a call's start, and what might be one.
  const s = new QwenAnswerStream();
  assert.equal(s.push("Looking ✿FUNC"), "Looking");
  assert.equal(s.push("TION✿: now"), "");
  assert.deepEqual(s.finish().content, "");
});

Deno.test("toolSystemPrompt(): no space after 输入参数：, the code interpreter's own instruction; the language from system and user text", () => {
  assert.ok(
    toolSystemPrompt([WEATHER], false, "zh").includes(
      'get_weather: Weather now. 输入参数：{"type": "object"',
    ),
  );
  const code: ToolSpec = { name: "code_interpreter", description: "Runs Python.", parameters: {} };
  assert.ok(
    toolSystemPrompt([code], false, "en").includes(
      "code_interpreter: Runs Python. Parameters: {} Enclose the code within triple backticks (`) at the beginning and end of the code.",
    ),
  );
  assert.ok(
    toolSystemPrompt([code], false, "zh").includes("输入参数：{} 此工具的输入应为Markdown代码块。"),
  );
  // A Chinese tool result (or answer) does not make the prompt Chinese; a user's question does.
  const english = qwenToolMessages(
    [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "", toolCalls: [{ name: "get_weather", arguments: "{}" }] },
      { role: "tool", content: "晴" },
    ],
    [WEATHER],
    true,
  );
  assert.match(english.messages[0].content as string, /# Tools/);
  const chinese = qwenToolMessages([{ role: "user", content: "天气？" }], [WEATHER], true);
  assert.match(chinese.messages[0].content as string, /# 工具/);
});

Deno.test("QwenAnswerStream holds back special words a later call would drop", () => {
  for (
    const [pieces, content] of [
      [["Text ✿ARGS✿ ✿FUNCTION✿", ": f"], "Text"],
      [["✿FUNC✿FUNCTION✿", ": f"], ""],
      [["Text ✿ARGS✿ ✿FUNCTION✿"], "Text ✿ARGS✿"],
    ] as const
  ) {
    const s = new QwenAnswerStream();
    let shown = "";
    for (const p of pieces) shown += s.push(p);
    const end = s.finish();
    assert.equal(shown + end.content, content, JSON.stringify(pieces));
    assert.equal(end.content, parseQwenAnswer(pieces.join("")).content.slice(shown.length));
  }
});

Deno.test("qwenToolMessages() writes a turn's results in its calls' order, by tool_call_id; an id answering no call is a 400", () => {
  const turn: RequestMessage[] = [
    { role: "user", content: "Weather in Paris and the time in Rome?" },
    {
      role: "assistant",
      content: "",
      toolCalls: [
        { id: "call_1", name: "get_weather", arguments: '{"city": "Paris"}' },
        { id: "call_2", name: "get_weather", arguments: '{"city": "Rome"}' },
      ],
    },
  ];
  // The client's tools finished in the other order.
  const { messages } = qwenToolMessages(
    [
      ...turn,
      { role: "tool", content: "15:00", toolCallId: "call_2" },
      { role: "tool", content: "sunny", toolCallId: "call_1" },
    ],
    [WEATHER],
    true,
  );
  assert.match(
    messages[2].content as string,
    /Paris.*Rome.*\n✿RESULT✿: sunny\n✿RESULT✿: 15:00\n✿RETURN✿$/s,
  );
  // Without ids: in the order sent.
  const positional = qwenToolMessages(
    [
      ...turn,
      { role: "tool", content: "15:00" },
      { role: "tool", content: "sunny" },
    ],
    [WEATHER],
    true,
  );
  assert.match(positional.messages[2].content as string, /✿RESULT✿: 15:00\n✿RESULT✿: sunny/);
  assert.throws(
    () =>
      qwenToolMessages(
        [...turn, { role: "tool", content: "x", toolCallId: "call_9" }],
        [WEATHER],
        true,
      ),
    (e) =>
      e instanceof HttpError && e.param === "messages[2].tool_call_id" &&
      /"call_9" answers none of the calls of the assistant message before it \(call_1, call_2\)/
        .test(e.message),
  );
});
