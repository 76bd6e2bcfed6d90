/**
 * OpenAI's Responses API, `POST /v1/responses`: the request is translated into a chat completion
 * request, so every field the two share is parsed and checked by the chat endpoint's code, and
 * the answer is written as a `response` object or as its stream of typed events. Shapes follow
 * openai-node's src/resources/responses/responses.ts (Apache-2.0). A response created with `store`
 * not false (OpenAI's default) is kept in memory (src/server/_response_store.ts), so a request may
 * continue it (`previous_response_id`: its whole conversation, then the new input — its
 * `instructions` not carried over, as OpenAI does not) or name its items (`item_reference`, which
 * the Vercel AI SDK sends for an earlier answer); one no longer kept is a 400 saying to send the
 * whole conversation. `GET /v1/responses/{id}/input_items` lists a stored response's conversation
 * ({@link inputItemsList}).
 *
 * What it takes: `input` as a string or as items — messages (`input_text`, `input_image` with an
 * `image_url`, an assistant's `output_text`), `function_call` and `function_call_output` —,
 * `instructions`, `max_output_tokens`, `temperature`, `top_p`, `text.format` (text, JSON mode,
 * `json_schema`), function `tools` with `tool_choice` and `parallel_tool_calls`, `top_logprobs`
 * with `include: ["message.output_text.logprobs"]`, `stream`, `metadata`, and the chat endpoint's
 * sampling extensions (`seed`, `stop`, `top_k`, …), `store`, `previous_response_id`,
 * `item_reference` items and `truncation` (`"auto"`: a conversation over the context loses its
 * oldest items until it fits, as Ollama's `truncate` has it). `conversation`, `background`,
 * stored prompts and hosted tools are a 400 saying so.
 * @module
 */
import type { GenerationResult } from "../generate/types.ts";
import { badRequest, HttpError, toHttpError } from "./_errors.ts";
import {
  type CompletionHeader,
  completionObject,
  deltaReader,
  type Events,
  type Format,
  logprobEntries,
} from "./_openai.ts";
import { jsonBytes, type ResponseStore } from "./_response_store.ts";
import { type ToolRequest, toolSchemaError } from "./_tools.ts";

type Json = Record<string, unknown>;

/** The request's fields a response object repeats back. */
export interface ResponsesEcho {
  instructions: string | null;
  max_output_tokens: number | null;
  temperature: number | null;
  top_p: number | null;
  top_logprobs: number | null;
  tools: unknown[];
  tool_choice: unknown;
  parallel_tool_calls: boolean;
  text: { format: unknown };
  metadata: unknown;
  user: string | null;
  /**
   * `truncation`: "auto" drops the conversation's oldest items (never instructions, system or
   * developer messages, nor the last item) until it fits the context with the answer's budget;
   * "disabled" (the default) refuses a conversation over the context.
   */
  truncation: "auto" | "disabled";
  /**
   * Whether the response is kept (in the store), for `previous_response_id` and item references:
   * until it is answered (`response.created`), whether it may be.
   */
  store: boolean;
}

/** Fields that need state this server does not keep (conversations, prompt templates). */
const STATEFUL: Record<string, string> = {
  conversation: "this server keeps no conversations: send the whole conversation as `input`",
  prompt: "this server keeps no prompt templates: send the prompt as `input`",
};

/** Responses fields translated here (the rest pass to the chat request as they are). */
const OWN = new Set([
  "input",
  "instructions",
  "max_output_tokens",
  "text",
  "tools",
  "tool_choice",
  "include",
  "top_logprobs",
  "store",
  "metadata",
  "user",
  "reasoning",
  "truncation",
  "background",
  "service_tier",
  "stream_options",
  "safety_identifier",
  "prompt_cache_key",
  // chat-only names: refused below, or replaced by the translation
  "messages",
  "n",
  "max_tokens",
  "max_completion_tokens",
  "response_format",
  "logprobs",
]);

function isObject(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function unsupported(param: string, why: string): HttpError {
  return badRequest(param, `${param} is not supported: ${why}.`, "unsupported_parameter");
}

/**
 * The chat completion request body of a Responses request, the fields its response repeats, and
 * the conversation it answers as input items (to keep, where `echo.store`): `previous_response_id`
 * and item references expanded from `store` (without one, or with one that keeps nothing, they
 * are refused). Throws a 400 naming the Responses field for what the translation itself refuses.
 */
export function chatBodyOfResponses(
  json: unknown,
  store?: ResponseStore,
): { chat: Json; echo: ResponsesEcho; sources: Sources; conversation: Json[] } {
  if (!isObject(json)) {
    throw badRequest(null, "The request body must be a JSON object.");
  }
  for (const [field, why] of Object.entries(STATEFUL)) {
    if (json[field] !== undefined && json[field] !== null) throw unsupported(field, why);
  }
  const keeps = store?.enabled ? store : undefined;
  if (json.store !== undefined && json.store !== null && typeof json.store !== "boolean") {
    throw badRequest("store", `store must be true or false; got ${JSON.stringify(json.store)}.`);
  }
  if (json.background === true) {
    throw unsupported("background", "this server answers while the request is open");
  }
  for (const field of ["messages", "n", "max_tokens", "max_completion_tokens", "response_format"]) {
    if (json[field] !== undefined) {
      const instead: Record<string, string> = {
        messages: "input",
        n: "one request per answer",
        max_tokens: "max_output_tokens",
        max_completion_tokens: "max_output_tokens",
        response_format: "text.format",
      };
      throw badRequest(
        field,
        `${field} is a chat completions field; /v1/responses takes ${instead[field]}.`,
        "unsupported_parameter",
      );
    }
  }
  const chat: Json = {};
  for (const [k, v] of Object.entries(json)) if (!OWN.has(k)) chat[k] = v;

  const instructions = optionalString(json, "instructions");
  // The conversation: a previous response's (its input and output items), then this input.
  const earlier = previousConversation(json, keeps);
  const conversation = [...earlier, ...inputItems(json.input, keeps)];
  const input = inputMessages(conversation, earlier.length);
  chat.messages = [
    ...(instructions !== undefined ? [{ role: "system", content: instructions }] : []),
    ...input.messages,
  ];
  const sources = [...(instructions !== undefined ? [INSTRUCTIONS] : []), ...input.sources];
  if (json.max_output_tokens !== undefined && json.max_output_tokens !== null) {
    chat.max_completion_tokens = json.max_output_tokens;
  }
  const format = textFormat(json.text);
  if (format) chat.response_format = format;
  const tools = json.tools ?? [];
  if (!Array.isArray(tools)) throw badRequest("tools", "tools must be an array of tools.");
  if (tools.length) chat.tools = tools.map(chatTool);
  const choice = json.tool_choice;
  if (choice !== undefined && choice !== null) {
    if (!tools.length && choice !== "none" && choice !== "auto") {
      throw badRequest(
        "tool_choice",
        `tool_choice ${JSON.stringify(choice)} needs tools: send the tools it may call.`,
      );
    }
    chat.tool_choice = chatToolChoice(choice);
  }
  const include = json.include ?? [];
  if (!Array.isArray(include) || !include.every((x) => typeof x === "string")) {
    throw badRequest("include", "include must be an array of strings.");
  }
  const topLogprobs = json.top_logprobs ?? undefined;
  if (include.includes("message.output_text.logprobs") || (topLogprobs ?? 0) !== 0) {
    chat.logprobs = true;
    if (topLogprobs !== undefined) chat.top_logprobs = topLogprobs;
  }
  const user = optionalString(json, "user");
  const truncation = json.truncation ?? "disabled";
  if (truncation !== "auto" && truncation !== "disabled") {
    throw badRequest(
      "truncation",
      `truncation must be "auto" or "disabled"; got ${JSON.stringify(json.truncation)}.`,
    );
  }
  return {
    chat,
    sources,
    echo: {
      instructions: instructions ?? null,
      max_output_tokens: typeof json.max_output_tokens === "number" ? json.max_output_tokens : null,
      temperature: typeof json.temperature === "number" ? json.temperature : null,
      top_p: typeof json.top_p === "number" ? json.top_p : null,
      top_logprobs: typeof topLogprobs === "number" ? topLogprobs : null,
      tools,
      tool_choice: json.tool_choice ?? "auto",
      parallel_tool_calls: json.parallel_tool_calls !== false,
      text: {
        format: isObject(json.text) && json.text.format ? json.text.format : { type: "text" },
      },
      metadata: json.metadata ?? null,
      user: user ?? null,
      truncation,
      // Kept unless asked not to (OpenAI's default), where its conversation fits in the store at
      // all; the answer's store is then the store's word (responsesFormat's keep).
      store: keeps !== undefined && json.store !== false &&
        jsonBytes(conversation) <= keeps.maxBytes,
    },
    conversation,
  };
}

/** How a client that names what the store no longer holds goes on. */
const RESEND = "send the whole conversation as `input` (and `store: false` where it keeps its own)";

/** The conversation of the response `previous_response_id` names: its input, then its output. */
function previousConversation(json: Json, store: ResponseStore | undefined): Json[] {
  const id = json.previous_response_id;
  if (id === undefined || id === null) return [];
  if (!store) {
    throw unsupported(
      "previous_response_id",
      "this server keeps no responses (its response store is off): send the whole conversation " +
        "as `input`",
    );
  }
  if (typeof id !== "string") {
    throw badRequest("previous_response_id", "previous_response_id must be a string.");
  }
  const previous = store.get(id);
  if (!previous) {
    // OpenAI's answer to an id it does not know (a 400, not a 404), with what to do here.
    throw badRequest(
      "previous_response_id",
      `Previous response with id '${id}' not found: this server keeps the last ` +
        `${store.maxResponses} responses in memory (up to ${store.maxBytes} bytes), not across ` +
        `restarts, and none created with store: false; ${RESEND}.`,
      "previous_response_not_found",
    );
  }
  return [...previous.input, ...previous.output];
}

/**
 * `input` as items (a string is one user message), each `item_reference` as the item it names.
 * The client's items lose their `id` (nothing here reads it): only the server's own ids (its
 * output items', carried on by previous_response_id and item references) go to the store, so an
 * item sent under a stored item's id cannot stand in for it.
 */
function inputItems(input: unknown, store: ResponseStore | undefined): Json[] {
  if (typeof input === "string") return [{ type: "message", role: "user", content: input }];
  if (!Array.isArray(input)) {
    throw badRequest(
      "input",
      input === undefined
        ? "input is required: a string, or an array of messages and items."
        : "input must be a string, or an array of messages and items.",
    );
  }
  return input.map((item, i) => {
    const at = `input[${i}]`;
    if (!isObject(item)) throw badRequest(at, `${at} must be an object (a message or an item).`);
    if (item.type !== "item_reference") {
      const { id: _, ...sent } = item;
      return sent;
    }
    if (!store) {
      throw unsupported(
        at,
        "this server keeps no items (its response store is off): send the item itself",
      );
    }
    const id = requireString(item, "id", at);
    const found = store.item(id);
    if (!found) {
      throw badRequest(
        `${at}.id`,
        `${at}: item with id '${id}' not found: this server keeps the items of its last ` +
          `${store.maxResponses} responses in memory, not across restarts, and none of a ` +
          `response created with store: false; ${RESEND}.`,
        "item_not_found",
      );
    }
    return found;
  });
}

function optionalString(json: Json, field: string): string | undefined {
  const v = json[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw badRequest(field, `${field} must be a string.`);
  return v;
}

/**
 * Where each chat message came from, for errors: the `input` items it was made of (one, or a
 * merged turn's calls, one a call), or {@link INSTRUCTIONS}.
 */
export type Sources = number[][];
const INSTRUCTIONS = [-1];

/**
 * The conversation's items as chat messages, in order; the first `earlier` are a previous
 * response's (their sources negative: errors name previous_response_id), the rest `input`'s.
 */
function inputMessages(items: Json[], earlier: number): { messages: Json[]; sources: Sources } {
  const messages: Json[] = [];
  const sources: Sources = [];
  for (const [k, item] of items.entries()) {
    const i = k - earlier;
    const at = i < 0 ? "previous_response_id" : `input[${i}]`;
    const type = item.type ?? "message";
    if (type === "message") {
      messages.push(message(item, at));
      sources.push([i]);
    } else if (type === "function_call") {
      const call = {
        id: requireString(item, "call_id", at),
        type: "function",
        function: {
          name: requireString(item, "name", at),
          arguments: requireString(item, "arguments", at),
        },
      };
      // Calls one after another belong to one assistant turn.
      const last = messages.at(-1);
      if (last?.role === "assistant" && Array.isArray(last.tool_calls)) {
        last.tool_calls.push(call);
        sources.at(-1)!.push(i);
      } else {
        messages.push({ role: "assistant", content: null, tool_calls: [call] });
        sources.push([i]);
      }
    } else if (type === "function_call_output") {
      const output = item.output;
      messages.push({
        role: "tool",
        tool_call_id: requireString(item, "call_id", at),
        content: typeof output === "string" ? output : partsText(output, `${at}.output`),
      });
      sources.push([i]);
    } else {
      throw badRequest(
        `${at}.type`,
        `${at}.type ${JSON.stringify(type)} is not supported here; send messages, ` +
          `function_call and function_call_output items.`,
        "unsupported_value",
      );
    }
  }
  return { messages, sources };
}

function requireString(item: Json, field: string, at: string): string {
  const v = item[field];
  if (typeof v !== "string") throw badRequest(`${at}.${field}`, `${at}.${field} must be a string.`);
  return v;
}

/** A message item as a chat message: its parts as the chat endpoint's, `developer` as `system`. */
function message(item: Json, at: string): Json {
  const role = item.role === "developer" ? "system" : item.role;
  const content = item.content;
  if (typeof content === "string") return { role, content };
  if (!Array.isArray(content)) {
    throw badRequest(`${at}.content`, `${at}.content must be a string or an array of parts.`);
  }
  if (role === "assistant") return { role, content: partsText(content, `${at}.content`, true) };
  return { role, content: content.map((p, j) => chatPart(p, `${at}.content[${j}]`)) };
}

/** An input part as a chat content part. */
function chatPart(part: unknown, at: string): Json {
  if (!isObject(part)) throw badRequest(at, `${at} must be an object.`);
  switch (part.type) {
    case "input_text":
    case "output_text":
      return { type: "text", text: part.text };
    case "input_image": {
      if (typeof part.image_url !== "string") {
        const why = part.file_id !== undefined
          ? "this server has no files API: send the image as image_url (a data: URL)"
          : "an input_image needs image_url (a data: URL, or http(s) where the server allows it)";
        throw badRequest(`${at}.image_url`, `${at}: ${why}.`);
      }
      return { type: "image_url", image_url: { url: part.image_url } };
    }
    default:
      throw badRequest(
        `${at}.type`,
        `${at}.type ${JSON.stringify(part.type)} is not supported; send input_text and ` +
          `input_image parts.`,
        "unsupported_value",
      );
  }
}

/**
 * The text of parts that are all text (an assistant's earlier answer, a tool's output); an
 * assistant's `refusal` parts (`refusals`: OpenAI's answers carry them) are its text too.
 */
function partsText(parts: unknown, at: string, refusals = false): string {
  if (!Array.isArray(parts)) throw badRequest(at, `${at} must be a string or an array of parts.`);
  return parts.map((p, j) => {
    if (refusals && isObject(p) && p.type === "refusal") {
      if (typeof p.refusal !== "string") {
        throw badRequest(`${at}[${j}].refusal`, `${at}[${j}].refusal must be a string.`);
      }
      return p.refusal;
    }
    if (
      !isObject(p) || !["output_text", "input_text", "text"].includes(p.type as string) ||
      typeof p.text !== "string"
    ) {
      throw badRequest(`${at}[${j}]`, `${at}[${j}] must be a text part ({type, text}).`);
    }
    return p.text;
  }).join("");
}

/** `text.format` as the chat endpoint's `response_format` (none for plain text). */
function textFormat(text: unknown): Json | undefined {
  if (text === undefined || text === null) return undefined;
  if (!isObject(text)) throw badRequest("text", "text must be an object ({format: …}).");
  const f = text.format;
  if (f === undefined || f === null) return undefined;
  if (!isObject(f)) throw badRequest("text.format", "text.format must be an object.");
  if (f.type === "text") return undefined;
  if (f.type === "json_object") return { type: "json_object" };
  if (f.type === "json_schema") {
    if (!isObject(f.schema) && typeof f.schema !== "boolean") {
      throw badRequest(
        "text.format.schema",
        'text.format {"type": "json_schema"} needs "schema": the JSON schema of the answer.',
      );
    }
    const { type: _, ...schema } = f;
    return { type: "json_schema", json_schema: schema };
  }
  throw badRequest(
    "text.format.type",
    `text.format.type must be "text", "json_object" or "json_schema", got ${
      JSON.stringify(f.type)
    }.`,
  );
}

/** A Responses function tool (flat) as a chat tool (`function` nested). */
function chatTool(tool: unknown, i: number): Json {
  const at = `tools[${i}]`;
  if (!isObject(tool)) throw badRequest(at, `${at} must be an object.`);
  if (tool.type !== "function") {
    throw badRequest(
      `${at}.type`,
      `${at}.type ${JSON.stringify(tool.type)} is not supported: this server runs no hosted ` +
        `tools; declare functions ({type: "function", name, parameters}).`,
      "unsupported_value",
    );
  }
  const { type: _, ...fn } = tool;
  return { type: "function", function: fn };
}

/** A Responses tool_choice as the chat endpoint's. */
function chatToolChoice(choice: unknown): unknown {
  if (typeof choice === "string") return choice;
  if (isObject(choice) && choice.type === "function") {
    return { type: "function", function: { name: choice.name } };
  }
  throw badRequest(
    "tool_choice",
    `tool_choice must be "auto", "none", "required" or {type: "function", name}, got ${
      JSON.stringify(choice)
    }.`,
  );
}

/** Chat field names in errors → the Responses request's (messages: {@link inputParam}). */
const RENAMED: [RegExp, string][] = [
  [/^max_completion_tokens\b/, "max_output_tokens"],
  [/^response_format(\.json_schema)?/, "text.format"],
  [/^tools\[(\d+)\]\.function\b/, "tools[$1]"],
  [/^tool_choice\.function\b/, "tool_choice"],
  [/^logprobs\b/, "include"],
];

/**
 * A chat message's field as the `input` item's (or `instructions`) it came from: a merged turn's
 * `tool_calls[k]` is its k-th function_call item; an image part's `image_url.url` its `image_url`.
 */
function inputParam(param: string, sources: Sources): string | undefined {
  const m = param.match(/^messages\[(\d+)\](.*)$/);
  if (!m) return /^messages\b/.test(param) ? param.replace(/^messages/, "input") : undefined;
  const from = sources[Number(m[1])];
  if (!from) return "input";
  if (from === INSTRUCTIONS) return "instructions";
  if (from[0] < 0) return "previous_response_id"; // a message of the previous conversation
  const call = m[2].match(/^\.tool_calls\[(\d+)\](?:\.function)?(.*)$/);
  if (call) return `input[${from[Number(call[1])] ?? from[0]}]${call[2]}`;
  // A function_call_output's call_id (the chat message's tool_call_id).
  if (m[2] === ".tool_call_id") return `input[${from[0]}].call_id`;
  return `input[${from[0]}]${m[2].replace(/\.image_url\.url$/, ".image_url")}`;
}

/** A chat request's 400 as the Responses request's: its field (and the message's) renamed. */
export function responsesError(error: unknown, sources: Sources = []): unknown {
  if (!(error instanceof HttpError) || error.status !== 400 || error.param === null) return error;
  const renamed = RENAMED.find(([from]) => from.test(error.param!));
  const param = inputParam(error.param, sources) ??
    (renamed ? error.param.replace(renamed[0], renamed[1]) : undefined);
  if (param === undefined) return error;
  const message =
    (error.message.startsWith(error.param)
      ? param + error.message.slice(error.param.length)
      : error.message)
      // The context's refusal names the length field wherever it says it ("… (max_tokens)").
      .replace(/\bmax(?:_completion)?_tokens\b/g, "max_output_tokens");
  return new HttpError(400, message, error.type, param, error.code, error.headers);
}

/** The usage object of a response. */
function usageOf(r: GenerationResult): Json {
  const { promptTokens, completionTokens, cachedTokens } = r.usage;
  return {
    input_tokens: promptTokens,
    input_tokens_details: { cached_tokens: cachedTokens },
    output_tokens: completionTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: promptTokens + completionTokens,
  };
}

/** A response's status, and why it is incomplete, from how its generation ended. */
function statusOf(r: GenerationResult): { status: string; incomplete_details: Json | null } {
  if (r.finishReason === "length") {
    return { status: "incomplete", incomplete_details: { reason: "max_output_tokens" } };
  }
  if (r.finishReason === "abort") return { status: "cancelled", incomplete_details: null };
  return { status: "completed", incomplete_details: null };
}

/** Ids of a response's output items: `msg_` / `fc_` and the response's own hex. */
function itemId(header: CompletionHeader, kind: "msg" | "fc", i = 0): string {
  return `${kind}_${header.id.slice(header.id.indexOf("_") + 1)}${i ? `_${i}` : ""}`;
}

/** The output items of an answer: its text as a message (where it has any or calls none), then its calls. */
function outputItems(
  header: CompletionHeader,
  r: GenerationResult,
  tools: ToolRequest | undefined,
  status: string,
): Json[] {
  // completionObject reads the calls out of the text as the chat endpoint does.
  const chat = completionObject(header, [r], tools?.mode) as {
    choices: [{ message: { content: string | null; tool_calls?: ChatCall[] } }];
  };
  const { content, tool_calls: calls = [] } = chat.choices[0].message;
  // Cut short at max_output_tokens: only the last item was being written; those before it are
  // whole.
  const cut = status === "incomplete";
  const last = calls.length ? calls.length - 1 : -1; // -1: the message
  const itemStatus = (i: number) => cut && i === last ? "incomplete" : "completed";
  const items: Json[] = [];
  if (content || !calls.length) {
    items.push(
      messageItem(header, itemStatus(-1), content ?? "", logprobEntries(r.logprobs ?? [])),
    );
  }
  calls.forEach((c, i) => items.push(callItem(header, c, i, itemStatus(i))));
  return items;
}

interface ChatCall {
  id: string;
  function: { name: string; arguments: string };
}

function messageItem(
  header: CompletionHeader,
  status: string,
  text: string,
  logprobs: object[],
): Json {
  return {
    type: "message",
    id: itemId(header, "msg"),
    status,
    role: "assistant",
    content: status === "in_progress" ? [] : [outputText(text, logprobs)],
  };
}

function outputText(text: string, logprobs: object[]): Json {
  return { type: "output_text", text, annotations: [], logprobs };
}

function callItem(header: CompletionHeader, c: ChatCall, i: number, status: string): Json {
  return {
    type: "function_call",
    id: itemId(header, "fc", i),
    call_id: c.id,
    name: c.function.name,
    arguments: status === "in_progress" ? "" : c.function.arguments,
    status,
  };
}

/** A response object: `output` and `usage` once it has a result, else in progress. */
function responseObject(
  header: CompletionHeader,
  echo: ResponsesEcho,
  tools: ToolRequest | undefined,
  result?: GenerationResult,
): Json {
  const done = result && statusOf(result);
  return {
    id: header.id,
    object: "response",
    created_at: header.created,
    status: done?.status ?? "in_progress",
    error: null,
    incomplete_details: done?.incomplete_details ?? null,
    model: header.model,
    output: result ? outputItems(header, result, tools, done!.status) : [],
    ...echo,
    reasoning: null,
    usage: result ? usageOf(result) : null,
  };
}

/**
 * /v1/responses: the response object, or its events — `response.created` and
 * `response.in_progress` at once; the message item and its text part opened at the first text,
 * `response.output_text.delta` for each delta; then the text, part and item done, each function
 * call an item with its arguments, and `response.completed` (or `response.incomplete` at
 * max_output_tokens), every event with its `sequence_number`. `keep` is given each response
 * answered (not one whose client left) as it is written, before it is sent: a client that reads
 * it may name it at once; its answer (whether it was kept) is the response's `store`.
 */
export function responsesFormat(
  tools: ToolRequest | undefined,
  echo: ResponsesEcho,
  sources: Sources,
  keep?: (response: Json) => boolean,
): Format {
  const answered = (response: Json, result: GenerationResult) => {
    // The store may refuse it (over its bytes with its output): the answer says what happened.
    if (keep && result.finishReason !== "abort") response.store = keep(response);
    return response;
  };
  let sequence = 0;
  const event = (type: string, fields: Json) => ({ type, sequence_number: sequence++, ...fields });
  return {
    prefix: "resp_",
    typed: true,
    inputError: (error) => {
      // The chat endpoint's words (a tool's parameters, response_format) in the Responses'.
      const tool = tools?.schema ? toolSchemaError(error, tools) : undefined;
      const http = tool ?? toHttpError(error);
      const renamed = responsesError(http, sources);
      return renamed !== http ? renamed as HttpError : tool;
    },
    whole: (header, [result]) => answered(responseObject(header, echo, tools, result), result),
    chunks: (header) => {
      const reader = deltaReader(tools?.mode);
      const msg = itemId(header, "msg");
      let text = "";
      const logprobs: object[] = [];
      const pending: object[] = [];
      let opened = false;
      const part = { item_id: msg, output_index: 0, content_index: 0 };
      const openMessage = (): object[] => {
        if (opened) return [];
        opened = true;
        return [
          event("response.output_item.added", {
            output_index: 0,
            item: messageItem(header, "in_progress", "", []),
          }),
          event("response.content_part.added", { ...part, part: outputText("", []) }),
        ];
      };
      return {
        open: () => [
          event("response.created", { response: responseObject(header, echo, tools) }),
          event("response.in_progress", { response: responseObject(header, echo, tools) }),
        ],
        delta: (ev): Events => {
          const delta = reader.push(ev.text);
          const more = typeof delta?.content === "string" ? delta.content : "";
          // Tokens that show no text yet (held for a stop string, or a tool call's) keep their
          // logprobs for the text they become: no message item opens for them.
          pending.push(...logprobEntries(ev.logprobs ?? []));
          if (!more) return undefined;
          text += more;
          const lp = pending.splice(0);
          logprobs.push(...lp);
          return [
            ...openMessage(),
            event("response.output_text.delta", { ...part, delta: more, logprobs: lp }),
          ];
        },
        finish: (result) => {
          const whole = answered(responseObject(header, echo, tools, result), result);
          const items = whole.output as Json[];
          const events: object[] = [];
          // The message item (first, where there is one) ends with the text the deltas showed.
          const message = items[0]?.type === "message" ? items[0] : undefined;
          if (message) {
            const { text: final } = (message.content as Json[])[0] as { text: string };
            const rest = final.startsWith(text) ? final.slice(text.length) : "";
            events.push(...openMessage());
            const lp = pending.splice(0);
            logprobs.push(...lp);
            if (rest || lp.length) {
              events.push(
                event("response.output_text.delta", { ...part, delta: rest, logprobs: lp }),
              );
            }
            const done = outputText(final, logprobs);
            events.push(
              event("response.output_text.done", { ...part, text: final, logprobs }),
              event("response.content_part.done", { ...part, part: done }),
              event("response.output_item.done", {
                output_index: 0,
                item: { ...message, content: [done] },
              }),
            );
          }
          items.forEach((item, output_index) => {
            if (item.type !== "function_call") return;
            events.push(
              event("response.output_item.added", {
                output_index,
                item: { ...item, arguments: "", status: "in_progress" },
              }),
              event("response.function_call_arguments.delta", {
                item_id: item.id,
                output_index,
                delta: item.arguments,
              }),
              event("response.function_call_arguments.done", {
                item_id: item.id,
                output_index,
                name: item.name,
                arguments: item.arguments,
              }),
              event("response.output_item.done", { output_index, item }),
            );
          });
          const kind = whole.status === "incomplete" ? "response.incomplete" : "response.completed";
          events.push(event(kind, { response: whole }));
          return events;
        },
      };
    },
    streamError: (http) =>
      event("error", { code: http.code, message: http.message, param: http.param }),
  };
}

/** The id prefix of an input item of `type` (OpenAI's: `msg_`, `fc_`, …). */
function itemPrefix(type: unknown): string {
  if (type === "function_call") return "fc";
  if (type === "function_call_output") return "fco";
  return "msg";
}

/**
 * The conversation `responseId` answered, to keep: each item without an id (the client's own
 * items, whose ids were dropped) given one of the server's — `msg_` / `fc_` / `fco_`, the
 * response's hex, `_in` and the item's place — so `GET /v1/responses/{id}/input_items` lists
 * each under an id, a later response that carries it on (previous_response_id) keeps that id, and
 * an item reference may name it, as with OpenAI. Items that have one (a previous response's,
 * an item reference's) keep theirs.
 */
export function withItemIds(conversation: Json[], responseId: string): Json[] {
  const hex = responseId.slice(responseId.indexOf("_") + 1);
  return conversation.map((item, k) =>
    typeof item.id === "string"
      ? item
      : { id: `${itemPrefix(item.type ?? "message")}_${hex}_in${k}`, ...item }
  );
}

/**
 * An input item as OpenAI lists it: a message (its `type` given where the client left it out)
 * with its content as parts — a string as one `input_text` part (`output_text` for an
 * assistant's).
 */
function listedItem(item: Json): Json {
  const type = item.type ?? "message";
  if (type !== "message") return item;
  const content = typeof item.content === "string"
    ? [{
      type: item.role === "assistant" ? "output_text" : "input_text",
      text: item.content,
      ...(item.role === "assistant" ? { annotations: [] } : {}),
    }]
    : item.content;
  return { ...item, type, content };
}

/**
 * `GET /v1/responses/{id}/input_items`: a stored response's input items (its whole conversation:
 * the items of the responses it followed, then its own input) as OpenAI's list object, a page of
 * them as `query` asks — `limit` (1–100, default 20), `order` (`asc` or `desc`, the default:
 * newest first) and `after` (the id of the item the page follows). Throws a 400 naming the query
 * parameter that is malformed, or an `after` that is none of the response's items.
 */
export function inputItemsList(
  input: Json[],
  query: { limit?: string; order?: string; after?: string },
): Json {
  let limit = 20;
  if (query.limit !== undefined) {
    limit = Number(query.limit);
    if (!/^\d+$/.test(query.limit) || limit < 1 || limit > 100) {
      throw badRequest(
        "limit",
        `limit must be an integer from 1 to 100; got ${JSON.stringify(query.limit)}.`,
      );
    }
  }
  const order = query.order ?? "desc";
  if (order !== "asc" && order !== "desc") {
    throw badRequest("order", `order must be "asc" or "desc"; got ${JSON.stringify(order)}.`);
  }
  const items = order === "asc" ? [...input] : [...input].reverse();
  let start = 0;
  if (query.after !== undefined) {
    const at = items.findIndex((item) => item.id === query.after);
    if (at < 0) {
      throw badRequest(
        "after",
        `after: no input item of this response has id '${query.after}'; give the id of an ` +
          `item listed (a page's last_id), or leave after out for the first page.`,
      );
    }
    start = at + 1;
  }
  const data = items.slice(start, start + limit).map(listedItem);
  return {
    object: "list",
    data,
    first_id: data.length ? data[0].id : null,
    last_id: data.length ? data.at(-1)!.id : null,
    has_more: start + limit < items.length,
  };
}
