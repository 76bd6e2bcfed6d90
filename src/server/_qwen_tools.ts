/**
 * `tool_choice: "auto"` in Qwen's own tool-call format, the one Qwen2-VL was trained on through
 * Qwen-Agent (its "qwen" function-call prompt, qwen_agent/llm/fncall_prompts/qwen_fncall_prompt.py,
 * Apache-2.0; its prompt text is reproduced here, since the model answers to those words): the
 * tools are described in the system message, and the model, answering freely, calls one by writing
 *
 *     ✿FUNCTION✿: get_weather
 *     ✿ARGS✿: {"city": "Paris"}
 *
 * and stops at `✿RESULT✿` (the result is the caller's to give). A conversation's calls and
 * results go back in as Qwen-Agent writes them — one assistant turn holding the calls, each
 * `✿RESULT✿: …`, then `✿RETURN✿: ` and the answer — and a conversation that ends on results is
 * continued from `✿RETURN✿`. The answer's calls are read out of its text as Qwen-Agent reads
 * them (the text before the first call is the content; after the calls, nothing).
 * @module
 */
import { badRequest } from "./_errors.ts";
import type { RequestMessage, RequestPart } from "./_request.ts";
import { toolCallId, type ToolCallOut } from "./_tools.ts";

const FN_NAME = "✿FUNCTION✿";
/** What starts a call in an answer of this format (the text before it is the content). */
export const QWEN_FUNCTION_MARK = FN_NAME;
const FN_ARGS = "✿ARGS✿";
const FN_RESULT = "✿RESULT✿";
const FN_EXIT = "✿RETURN✿";
/** What follows a call's results in the turn (the answer goes on from it). */
export const QWEN_RETURN_MARK = FN_EXIT;
const SPECIAL = [FN_NAME, FN_ARGS, FN_RESULT, FN_EXIT];

/** What ends an answer in this format: the model would go on to write the tool's result. */
export const QWEN_TOOL_STOPS: readonly string[] = [FN_RESULT, FN_EXIT];

/**
 * Qwen-Agent's system message where a conversation has none (its DEFAULT_SYSTEM_MESSAGE): the
 * tools' section follows it where the chat template has no default of its own to give.
 */
export const QWEN_AGENT_SYSTEM = "You are a helpful assistant.";

/** A tool as the prompt describes it. */
export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

type Lang = "en" | "zh";

// Qwen-Agent's prompt text, English and Chinese, one call at a time or several in parallel.
const INFO: Record<Lang, string> = {
  en: "# Tools\n\n## You have access to the following tools:\n\n",
  zh: "# 工具\n\n## 你拥有如下工具：\n\n",
};
const FORMAT: Record<Lang, string> = {
  en: "## When you need to call a tool, please insert the following command in your reply, " +
    "which can be called zero or multiple times according to your needs:\n\n" +
    `${FN_NAME}: The tool to use, should be one of [{names}]\n${FN_ARGS}: The input of the tool\n` +
    `${FN_RESULT}: Tool results\n${FN_EXIT}: Reply based on tool results. Images need to be ` +
    "rendered as ![](url)",
  zh: "## 你可以在回复中插入零次、一次或多次以下命令以调用工具：\n\n" +
    `${FN_NAME}: 工具名称，必须是[{names}]之一。\n${FN_ARGS}: 工具输入\n${FN_RESULT}: 工具结果\n` +
    `${FN_EXIT}: 根据工具结果进行回复，需将图片用![](url)渲染出来`,
};
const PARALLEL: Record<Lang, string> = {
  en:
    "## Insert the following command in your reply when you need to call N tools in parallel:\n\n" +
    `${FN_NAME}: The name of tool 1, should be one of [{names}]\n${FN_ARGS}: The input of tool 1\n` +
    `${FN_NAME}: The name of tool 2\n${FN_ARGS}: The input of tool 2\n...\n` +
    `${FN_NAME}: The name of tool N\n${FN_ARGS}: The input of tool N\n` +
    `${FN_RESULT}: The result of tool 1\n${FN_RESULT}: The result of tool 2\n...\n` +
    `${FN_RESULT}: The result of tool N\n${FN_EXIT}: Reply based on tool results. Images need ` +
    "to be rendered as ![](url)",
  zh: "## 你可以在回复中插入以下命令以并行调用N个工具：\n\n" +
    `${FN_NAME}: 工具1的名称，必须是[{names}]之一\n${FN_ARGS}: 工具1的输入\n` +
    `${FN_NAME}: 工具2的名称\n${FN_ARGS}: 工具2的输入\n...\n` +
    `${FN_NAME}: 工具N的名称\n${FN_ARGS}: 工具N的输入\n` +
    `${FN_RESULT}: 工具1的结果\n${FN_RESULT}: 工具2的结果\n...\n${FN_RESULT}: 工具N的结果\n` +
    `${FN_EXIT}: 根据工具结果进行回复，需将图片用![](url)渲染出来`,
};
// A tool's line: "<name>: <description> <Parameters:><parameters> <how to write its input>".
const DESCRIPTION: Record<Lang, { params: string; json: string; code: string }> = {
  en: {
    params: "Parameters: ",
    json: "Format the arguments as a JSON object.",
    code: "Enclose the code within triple backticks (`) at the beginning and end of the code.",
  },
  zh: {
    params: "输入参数：",
    json: "此工具的输入应为JSON对象。",
    code: "此工具的输入应为Markdown代码块。",
  },
};

/**
 * Whether the conversation is in Chinese as Qwen-Agent tells: a CJK ideograph in a system or user
 * message's text.
 */
function chinese(messages: readonly RequestMessage[]): boolean {
  return messages.some((m) =>
    (m.role === "system" || m.role === "user") && /[\u4e00-\u9fff]/.test(textOf(m.content))
  );
}

/** The text of a message's content (its text parts, joined). */
function textOf(content: RequestMessage["content"]): string {
  if (typeof content === "string") return content;
  return content.map((p) => (p.type === "text" ? p.text : "")).join("");
}

/**
 * A JSON value as Python's `json.dumps(value, ensure_ascii=False)` writes it (", " and ": "
 * between items), which is how Qwen-Agent puts a tool's parameters in the prompt.
 */
export function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    const items = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`);
    return `{${items.join(", ")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The system prompt's tools section (Qwen-Agent's FN_CALL_TEMPLATE, filled). */
export function toolSystemPrompt(
  tools: readonly ToolSpec[],
  parallel: boolean,
  lang: Lang,
): string {
  const words = DESCRIPTION[lang];
  const descs = tools.map((t) => {
    // Qwen-Agent's code interpreter takes a code block, every other tool a JSON object.
    const how = t.name === "code_interpreter" ? words.code : words.json;
    return `### ${t.name}\n\n${t.name}: ${t.description} ${words.params}${
      pythonJson(t.parameters)
    } ${how}`.trimEnd();
  });
  const how = (parallel ? PARALLEL : FORMAT)[lang].replace(
    "{names}",
    tools.map((t) => t.name).join(","),
  );
  return INFO[lang] + descs.join("\n\n") + "\n\n" + how;
}

/**
 * A conversation as Qwen-Agent gives it to the model with tools: the tools' section after the
 * system message — where the conversation has none, after `defaultSystem`: the system message the
 * model's chat template writes then (ChatTemplate.defaultSystemPrompt: Qwen2-VL's "You are a
 * helpful assistant.", QVQ-72B-Preview's step-by-step one), by default Qwen-Agent's own; each
 * assistant message's calls written into its turn, each tool message's result after them, the
 * next assistant text after `✿RETURN✿: `. With `continueFinal` the prompt ends inside the last
 * assistant turn (it ends on results: the answer goes on from `✿RETURN✿`).
 */
export function qwenToolMessages(
  messages: readonly RequestMessage[],
  tools: readonly ToolSpec[],
  parallel: boolean,
  defaultSystem: string = QWEN_AGENT_SYSTEM,
): { messages: RequestMessage[]; continueFinal: boolean } {
  const out: RequestMessage[] = [];
  // Appends text to the assistant turn being built (text: only this function writes one), or
  // starts one.
  const append = (text: string) => {
    const last = out[out.length - 1];
    if (last?.role === "assistant") last.content = (last.content as string) + text;
    else out.push({ role: "assistant", content: text });
  };
  const exit = `\n${FN_EXIT}: `;
  inCallOrder(messages).forEach(({ m, i }) => {
    if (m.role === "system" || m.role === "user") {
      out.push({ role: m.role, content: m.content });
    } else if (m.role === "assistant") {
      const text = textOf(m.content);
      if (text || !m.toolCalls?.length) append(text);
      for (const call of m.toolCalls ?? []) {
        const lead = out[out.length - 1]?.role === "assistant" ? "\n" : "";
        const args = call.arguments.startsWith("```") ? `\n${call.arguments}` : call.arguments;
        append(`${lead}${FN_NAME}: ${call.name}\n${FN_ARGS}: ${args}`);
      }
    } else {
      const last = out[out.length - 1];
      if (last?.role !== "assistant") {
        throw badRequest(
          `messages[${i}]`,
          `messages[${i}]: a tool message must follow the assistant message whose tool_calls it ` +
            "answers.",
        );
      }
      const turn = last.content as string;
      if (turn.endsWith(exit)) last.content = turn.slice(0, -exit.length);
      append(`\n${FN_RESULT}: ${textOf(m.content)}${exit}`);
    }
  });
  const section = toolSystemPrompt(tools, parallel, chinese(messages) ? "zh" : "en");
  const first = out[0];
  if (first?.role === "system") {
    out[0] = {
      role: "system",
      content: typeof first.content === "string"
        ? `${first.content}\n\n${section}`
        : [...first.content, { type: "text", text: `\n\n${section}` } as RequestPart],
    };
  } else {
    out.unshift({
      role: "system",
      content: defaultSystem ? `${defaultSystem}\n\n${section}` : section,
    });
  }
  // Ending on results: continue the turn from "✿RETURN✿" (": " would often be one token with
  // what follows, so the prompt stops before it and the answer's ": " is dropped).
  const last = out[out.length - 1];
  const continueFinal = last.role === "assistant" && typeof last.content === "string" &&
    last.content.endsWith(`${FN_EXIT}: `);
  if (continueFinal) last.content = (last.content as string).slice(0, -2);
  return { messages: out, continueFinal };
}

/**
 * Text without what Qwen-Agent drops from the ends of shown text: a special word (or the start
 * of one) at the end, the whitespace around it, newlines at the start. `all`: every special word
 * at the end, not just the last (a stream holds back what a later word could drop).
 */
function shown(text: string, all = false): string {
  let t = text.trimEnd();
  for (let more = true; more;) {
    const before = t;
    const whole = SPECIAL.find((s) => t.endsWith(s));
    if (whole) t = t.slice(0, -whole.length);
    else {
      const at = t.lastIndexOf("✿");
      if (at >= 0 && SPECIAL.some((s) => s.startsWith(t.slice(at)))) t = t.slice(0, at);
    }
    t = t.trimEnd();
    more = all && t !== before;
  }
  return t.replace(/^\n+/, "");
}

/** Arguments without a trailing comment after the JSON object or code block (Qwen-Agent's fix). */
function argsOf(text: string): string {
  let t = shown(text).trim();
  if (t.startsWith("{") && t.lastIndexOf("}") > 0) t = t.slice(0, t.lastIndexOf("}") + 1);
  if (t.startsWith("```") && t.lastIndexOf("\n```") > 0) t = t.slice(0, t.lastIndexOf("\n```") + 4);
  return t;
}

/**
 * An answer's text split as Qwen-Agent splits it: the content before the first `✿FUNCTION✿:`
 * (all of it where there is none), and the calls (each `✿ARGS✿:` of a name one call; only the
 * first with `parallel` false). `continued`: the answer went on from `✿RETURN✿` (its leading ":"
 * dropped).
 */
export function parseQwenAnswer(
  text: string,
  { continued = false, parallel = true } = {},
): { content: string; calls: ToolCallOut[] } {
  if (continued) text = text.replace(/^: ?/, "");
  const at = text.indexOf(`${FN_NAME}:`);
  if (at < 0) return { content: shown(text), calls: [] };
  const calls: ToolCallOut[] = [];
  for (let part of text.slice(at).split(`${FN_NAME}:`)) {
    if (!part) continue;
    if (part.endsWith("\n")) part = part.slice(0, -1);
    const sep = part.indexOf(`${FN_ARGS}:`);
    const name = shown(sep < 0 ? part : part.slice(0, sep)).trim();
    const args = sep < 0 ? [""] : part.slice(sep + FN_ARGS.length + 1).split(`${FN_ARGS}:`);
    for (const a of args) {
      calls.push({ id: toolCallId(), type: "function", function: { name, arguments: argsOf(a) } });
    }
  }
  return { content: shown(text.slice(0, at)), calls: parallel ? calls : calls.slice(0, 1) };
}

/**
 * The messages, each with its index, a turn's tool results in the order of the calls they answer
 * (by `tool_call_id`, as OpenAI links them: the format writes results in the calls' order; a
 * client may send them as its tools finish). Results without ids stay where they are; an id that
 * answers none of the turn's calls is a 400.
 */
function inCallOrder(messages: readonly RequestMessage[]): { m: RequestMessage; i: number }[] {
  const out = messages.map((m, i) => ({ m, i }));
  for (let i = 0; i < out.length; i++) {
    const ids = (out[i].m.toolCalls ?? []).map((c) => c.id);
    // Calls without ids (some clients', Ollama's) leave their results where they are.
    if (out[i].m.role !== "assistant" || !ids.length || ids.includes(undefined)) continue;
    let end = i + 1;
    while (end < out.length && out[end].m.role === "tool") end++;
    const run = out.slice(i + 1, end);
    for (const { m, i: at } of run) {
      if (m.toolCallId !== undefined && !ids.includes(m.toolCallId)) {
        throw badRequest(
          `messages[${at}].tool_call_id`,
          `messages[${at}].tool_call_id ${JSON.stringify(m.toolCallId)} answers none of the ` +
            `calls of the assistant message before it (${ids.join(", ")}).`,
        );
      }
    }
    if (run.every(({ m }) => m.toolCallId !== undefined)) {
      run.sort((a, b) => ids.indexOf(a.m.toolCallId) - ids.indexOf(b.m.toolCallId));
      out.splice(i + 1, run.length, ...run);
    }
    i = end - 1;
  }
  return out;
}

/**
 * Streams an answer in this format: the content as it is written (held back where it could be
 * the start of a call or of text Qwen-Agent would drop), then, at the end, the calls. The pieces
 * it gives add up to {@link parseQwenAnswer}'s content.
 */
export class QwenAnswerStream {
  #text = "";
  #sent = "";
  #calling = false;
  readonly #options: { continued?: boolean; parallel?: boolean };

  constructor(options: { continued?: boolean; parallel?: boolean } = {}) {
    this.#options = options;
  }

  /** Adds a delta's text; returns the content to show now ("" for none). */
  push(text: string): string {
    this.#text += text;
    if (this.#calling) return "";
    let t = this.#text;
    if (this.#options.continued) {
      if (t === ":") return ""; // is a space next?
      t = t.replace(/^: ?/, "");
    }
    const at = t.indexOf(`${FN_NAME}:`);
    if (at >= 0) this.#calling = true;
    return this.#more(shown(at >= 0 ? t.slice(0, at) : t, true));
  }

  /** The end: the content not yet shown, and the calls. */
  finish(): { content: string; calls: ToolCallOut[] } {
    const { content, calls } = parseQwenAnswer(this.#text, this.#options);
    return { content: this.#more(content), calls };
  }

  /** What of `content` (the content so far) has not been shown. */
  #more(content: string): string {
    if (!content.startsWith(this.#sent)) return ""; // cannot be: shown() only grows
    const more = content.slice(this.#sent.length);
    this.#sent = content;
    return more;
  }
}
