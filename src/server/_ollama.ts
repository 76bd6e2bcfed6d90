/**
 * Ollama's API beside OpenAI's, for the clients that speak it (ollama-js, ollama-python, Open
 * WebUI, editors' Ollama providers): `POST /api/chat` and `/api/generate`, `GET /api/tags`,
 * `/api/ps` and `/api/version`, `POST /api/show`. A request is translated into a chat (or, with
 * `raw`, a completion) request, so the OpenAI endpoints' parser checks every field they share;
 * answers are written as Ollama writes them: a stream of JSON lines unless `stream` is false,
 * durations in nanoseconds, errors as `{"error": "…"}`. A message's `images` may be in any
 * message, as Ollama takes them (Qwen2-VL's chat template places an image in any turn) — with
 * `tools`, not in an assistant's or a tool's, whose turns are written as Qwen's call format, in
 * text. `keep_alive` 0 unloads the model — at once on a request without messages (Ollama's unload,
 * `ollama stop`), else once the request is answered — where the server can load it again (given
 * the function that loads it: src/server/_engine_holder.ts); other durations keep it loaded, as
 * the server does anyway: nothing unloads on a timer. Shapes follow ollama-js's
 * src/interfaces.ts (MIT) and Ollama's docs/api.md.
 *
 * Options: `temperature`, `top_k`, `top_p`, `min_p`, `seed`, `num_predict` (absent, −1, −2 or past
 * 8192: as many tokens as the context holds, up to 8192), `stop`, `presence_penalty`, `frequency_penalty` and `repeat_penalty` (as the
 * chat endpoint's `repetition_penalty`: over the prompt and the answer, not the last
 * `repeat_last_n` tokens) and qvq's `stop_on_loop` (true or false: the /v1 endpoints' extension, the
 * server's loop stop) are used; those that set how llama.cpp runs (`num_ctx`, `num_gpu`,
 * `num_thread`, …) and the samplers Ollama's own engine ignores (`mirostat`, `tfs_z`,
 * `typical_p`, …) are ignored, as Ollama ignores options it does not know.
 * @module
 */
import type { GenerationResult, TokenLogprob, WeightTypes } from "../generate/types.ts";
import { badRequest, HttpError, toHttpError } from "./_errors.ts";
import { DATA_URL_NOT_BASE64 } from "./_images.ts";
import { deltaReader, type Format, logprobEntries } from "./_openai.ts";
import {
  QWEN_AGENT_SYSTEM,
  QWEN_FUNCTION_MARK,
  QWEN_RETURN_MARK,
  toolSystemPrompt,
} from "./_qwen_tools.ts";
import type { ToolMode } from "./_tools.ts";
import { ndjsonLine } from "./_sse.ts";
import { MAX_NEW_TOKENS_LIMIT } from "../generate/options.ts";

type Json = Record<string, unknown>;

/** A call as the chat endpoint's answer holds it. */
type ChatCall = { id: string; function: { name: string; arguments: string } };

/** The Ollama API version whose endpoints and fields this server follows (`GET /api/version`). */
export const OLLAMA_API_VERSION = "0.12.0";

/** Ollama's options and the chat request fields they become. */
const OPTIONS: Readonly<Record<string, string>> = {
  temperature: "temperature",
  top_k: "top_k",
  top_p: "top_p",
  min_p: "min_p",
  seed: "seed",
  num_predict: "max_tokens",
  stop: "stop",
  presence_penalty: "presence_penalty",
  frequency_penalty: "frequency_penalty",
  repeat_penalty: "repetition_penalty",
  // qvq's extension, as /v1's top-level `stop_on_loop`: false lets an answer that repeats itself
  // run on to num_predict; unset, the server's default (on, unless `format` holds the answer).
  stop_on_loop: "stop_on_loop",
};

/** The chat request's field names in its errors → the Ollama request's. */
const RENAMED: [RegExp, string][] = [
  ...Object.entries(OPTIONS).map(([o, chat]): [RegExp, string] => [
    new RegExp(`^${chat}\\b`),
    `options.${o}`,
  ]),
  [/^response_format(\.json_schema(\.schema)?)?\b/, "format"],
];

function isObject(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** An Ollama request's error (400) naming its field `param`. */
function invalid(param: string, message: string): HttpError {
  return badRequest(param, message);
}

/**
 * The served model's Ollama name: its id with the tag Ollama gives an untagged name, so a client
 * that lists the models and names one back is served.
 */
export function ollamaName(modelId: string): string {
  return /:[^/]+$/.test(modelId) ? modelId : `${modelId}:latest`;
}

/** The served model's names as a list: the one it is served as first. */
function servedNames(names: string | readonly string[]): readonly string[] {
  return typeof names === "string" ? [names] : names;
}

/**
 * The model a request names (`model`, or the older `name`), checked against the served one's
 * names (`names`: the one it is served as first, then any other it answers to), each also with
 * Ollama's tag: a 404 as Ollama's for another. Undefined where it names none (a 400 where it
 * must: `required`).
 */
export function namedModel(
  json: unknown,
  names: string | readonly string[],
  required = false,
): string | undefined {
  const all = servedNames(names);
  if (!isObject(json)) throw invalid("", "The request body must be a JSON object.");
  const model = json.model ?? json.name;
  if (model === undefined || model === null || model === "") {
    if (required) throw invalid("model", "model is required: name the model (GET /api/tags).");
    return undefined;
  }
  if (typeof model !== "string") throw invalid("model", "model must be a string.");
  if (!all.some((name) => model === name || model === ollamaName(name))) {
    throw new HttpError(
      404,
      `model "${model}" not found: this server serves "${ollamaName(all[0])}" ` +
        `(start another with QVQ_MODEL for another model).`,
      "invalid_request_error",
      "model",
      "model_not_found",
    );
  }
  return model;
}

/** What an /api/chat or /api/generate request asks, translated. */
export interface OllamaRequest {
  /** The chat completion request body, or (`raw`) the completion request body. */
  body: Json;
  /** /api/generate with `raw`: `body` is a /v1/completions request. */
  raw: boolean;
  /**
   * No messages (no prompt): Ollama's request to load the model — or, with `keepAlive` 0, to
   * unload it — answered without generating.
   */
  load: boolean;
  /**
   * `keep_alive` in seconds (Infinity: a negative one, for ever), or undefined where not given. 0
   * unloads the model once the request is done (the server can: the function it loads the model
   * with; it loads it again for the next request); others keep it loaded, as the server does
   * anyway — it unloads on no timer.
   */
  keepAlive: number | undefined;
  /** Stream JSON lines (Ollama's default) or answer once. */
  stream: boolean;
  /** The model as the request named it (answers repeat it), or the served one's name. */
  model: string;
  /**
   * `num_predict` was not given, −1 or −2 (Ollama's "until the context is full"), or past the
   * 8192-token ceiling: as many tokens as the context holds beside the prompt, up to 8192.
   */
  toContext: boolean;
  /** Where each chat message came from, for errors (see {@link Source}). */
  sources: Source[];
  /** Ollama's `truncate` (default true): a conversation over the context loses its oldest turns. */
  truncate: boolean;
  /** `options.stop`: any number (the engine takes 16), set on the parsed request's options. */
  stop: string[] | undefined;
}

/**
 * A chat request body without its `drop` oldest messages — never a system message or the last
 * one, as Ollama's chatPrompt drops them — nor a tool result left without the call it answered;
 * undefined where it has fewer to drop.
 */
export function withoutOldest(
  body: Json,
  drop: number,
): { body: Json; kept: number[] } | undefined {
  const messages = body.messages as Json[];
  const droppable = messages.flatMap((m, i) =>
    m.role !== "system" && i < messages.length - 1 ? [i] : []
  );
  if (drop > droppable.length) return undefined;
  const gone = new Set(droppable.slice(0, drop));
  const kept = messages.flatMap((_, i) => gone.has(i) ? [] : [i]);
  // Results whose call went: those now first after the system messages.
  const first = kept.findIndex((i) => messages[i].role !== "system");
  while (first >= 0 && first < kept.length - 1 && messages[kept[first]].role === "tool") {
    kept.splice(first, 1);
  }
  return { body: { ...body, messages: kept.map((i) => messages[i]) }, kept };
}

/**
 * Where a chat message came from, for errors: the Ollama request's field for the message (`at`),
 * for its text, and for its images (`images[j]`), and how many images it has.
 */
export interface Source {
  at: string;
  text: string;
  images: string;
  count: number;
}

/** /api/chat's message i as a {@link Source}. */
function messageSource(i: number, count: number): Source {
  return {
    at: `messages[${i}]`,
    text: `messages[${i}].content`,
    images: `messages[${i}].images`,
    count,
  };
}

/** The request body's sampling fields from `options`, `format`, `think` and `logprobs`. */
function sampling(
  json: Json,
  body: Json,
  raw = false,
): { toContext: boolean; stop: string[] | undefined } {
  const options = json.options ?? {};
  if (!isObject(options)) throw invalid("options", "options must be an object of model options.");
  let toContext = true;
  let stop: unknown;
  for (const [name, value] of Object.entries(options)) {
    const field = OPTIONS[name];
    if (!field || value === null) continue; // llama.cpp's runtime settings, unknown names
    if (name === "num_predict" && typeof value === "number" && value < 0) {
      if (value !== -1 && value !== -2) {
        throw invalid(
          "options.num_predict",
          `options.num_predict must be a positive number of tokens, or -1 / -2 for as many as ` +
            `the context holds; got ${value}.`,
        );
      }
      continue;
    }
    // Past the ceiling: at most that many is as many as the context holds, up to it.
    if (name === "num_predict" && typeof value === "number" && value > MAX_NEW_TOKENS_LIMIT) {
      continue;
    }
    if (name === "num_predict" && value === 0) continue; // Ollama's runner: 0 limits nothing
    if (name === "num_predict") toContext = false;
    if (name === "stop") {
      stop = value;
      continue;
    }
    body[field] = value;
  }
  const format = json.format;
  if (format === "json") body.response_format = { type: "json_object" };
  else if (isObject(format)) {
    body.response_format = { type: "json_schema", json_schema: { name: "format", schema: format } };
  } else if (format !== undefined && format !== null && format !== "") {
    throw invalid(
      "format",
      `format must be "json" or a JSON schema; got ${JSON.stringify(format)}.`,
    );
  }
  const think = json.think;
  if (think !== undefined && think !== null && think !== false) {
    throw invalid(
      "think",
      "think: this model writes its reasoning in the answer (it has no separate thinking); " +
        "send think: false or leave it out.",
    );
  }
  const logprobs = json.logprobs ?? false;
  if (typeof logprobs !== "boolean") throw invalid("logprobs", "logprobs must be true or false.");
  // top_logprobs without logprobs is ignored, as Ollama ignores it.
  const top = json.top_logprobs ?? 0;
  if (logprobs) {
    if (typeof top !== "number") {
      throw invalid("top_logprobs", "top_logprobs must be a number of alternatives.");
    }
    // /v1/completions (raw) takes the count of alternatives as its `logprobs` (checked here, so
    // its refusal names top_logprobs).
    if (raw && !(Number.isInteger(top) && top >= 0 && top <= 20)) {
      throw invalid("top_logprobs", `top_logprobs must be 0 to 20 alternatives; got ${top}.`);
    }
    if (raw) body.logprobs = top;
    else Object.assign(body, { logprobs: true, top_logprobs: top });
  }
  const stream = json.stream ?? true;
  if (typeof stream !== "boolean") throw invalid("stream", "stream must be true or false.");
  body.stream = stream;
  // Any number of stop strings (Ollama has no cap; the chat endpoint's 4 is OpenAI's): the engine
  // checks them (at most 16).
  if (stop !== undefined && !(Array.isArray(stop) && stop.every((x) => typeof x === "string"))) {
    throw invalid("options.stop", "options.stop must be an array of strings.");
  }
  return { toContext, stop: stop as string[] | undefined };
}

/** Seconds in each unit of a Go duration (Ollama's keep_alive is one: time.ParseDuration's). */
const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-9,
  us: 1e-6,
  "µs": 1e-6, // U+00B5
  "μs": 1e-6, // U+03BC
  ms: 1e-3,
  s: 1,
  m: 60,
  h: 3600,
};

/**
 * A request's `keep_alive` in seconds, as Ollama reads it: a number of seconds, or a Go duration
 * ("5m", "1h30m", "0"); negative is for ever (Infinity). A string of a plain number is taken as
 * seconds too (Ollama refuses it; its OLLAMA_KEEP_ALIVE takes it). Undefined where not given.
 */
export function keepAliveSeconds(json: Json): number | undefined {
  const v = json.keep_alive;
  if (v === undefined || v === null) return undefined;
  let seconds: number | undefined;
  if (typeof v === "number" && Number.isFinite(v)) seconds = v;
  else if (typeof v === "string") {
    const t = v.trim();
    if (/^[-+]?(\d+\.?\d*|\.\d+)$/.test(t)) seconds = Number(t);
    else {
      const sign = t.startsWith("-") ? -1 : 1;
      const body = t.replace(/^[-+]/, "");
      const part = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
      let total = 0, end = 0;
      for (let m; (m = part.exec(body));) {
        total += Number(m[1]) * DURATION_UNITS[m[2]];
        end = part.lastIndex;
      }
      if (body && end === body.length) seconds = sign * total;
    }
  }
  if (seconds === undefined) {
    throw invalid(
      "keep_alive",
      `keep_alive must be a duration ("5m", "1h", "0") or a number of seconds (negative: for ` +
        `ever); got ${JSON.stringify(v)}.`,
    );
  }
  return seconds < 0 ? Infinity : seconds;
}

/** A message's base64 `images` (or data: URLs) as the chat endpoint's image parts. */
function imageParts(images: unknown, at: string): Json[] {
  if (images === undefined || images === null) return [];
  if (!Array.isArray(images) || !images.every((x) => typeof x === "string")) {
    throw invalid(at, `${at} must be an array of base64-encoded images.`);
  }
  return images.map((b64) => ({
    type: "image_url",
    image_url: { url: b64.startsWith("data:") ? b64 : `data:;base64,${b64}` },
  }));
}

/** Content with images before the text, as Qwen2-VL's examples put them (text alone: a string). */
function content(text: string, images: Json[]): string | Json[] {
  return images.length ? [...images, ...(text ? [{ type: "text", text }] : [])] : text;
}

/** An Ollama message as a chat message. */
function chatMessage(m: unknown, i: number): Json {
  const at = `messages[${i}]`;
  if (!isObject(m)) throw invalid(at, `${at} must be an object with "role" and "content".`);
  const text = m.content ?? "";
  if (typeof text !== "string") throw invalid(`${at}.content`, `${at}.content must be a string.`);
  // Ollama takes roles in any case.
  const role = typeof m.role === "string" ? m.role.toLowerCase() : m.role;
  const out: Json = { role, content: content(text, imageParts(m.images, `${at}.images`)) };
  if (m.tool_calls !== undefined && m.tool_calls !== null) {
    if (!Array.isArray(m.tool_calls)) {
      throw invalid(`${at}.tool_calls`, `${at}.tool_calls must be an array.`);
    }
    out.tool_calls = m.tool_calls.map((c, j) => {
      const f = isObject(c) ? c.function : undefined;
      const args = isObject(f) ? f.arguments ?? {} : undefined;
      if (
        !isObject(f) || typeof f.name !== "string" || !(isObject(args) || typeof args === "string")
      ) {
        throw invalid(
          `${at}.tool_calls[${j}]`,
          `${at}.tool_calls[${j}] must be {"function": {"name": …, "arguments": {…}}}.`,
        );
      }
      return {
        type: "function",
        function: {
          name: f.name,
          arguments: typeof args === "string" ? args : JSON.stringify(args),
        },
      };
    });
  }
  return out;
}

/**
 * The model an /api/chat or /api/generate request names ({@link namedModel}), else the served
 * one's Ollama name.
 */
function requestModel(json: Json, names: string | readonly string[]): string {
  return namedModel(json, names) ?? ollamaName(servedNames(names)[0]);
}

/** POST /api/chat's request, translated (`names`: as {@link namedModel} takes them). */
export function ollamaChat(json: unknown, names: string | readonly string[]): OllamaRequest {
  if (!isObject(json)) throw invalid("", "The request body must be a JSON object.");
  const model = requestModel(json, names);
  const messages = json.messages ?? [];
  if (!Array.isArray(messages)) throw invalid("messages", "messages must be an array of messages.");
  const body: Json = { messages: messages.map(chatMessage) };
  const sources = messages.map((m, i) =>
    messageSource(i, isObject(m) && Array.isArray(m.images) ? m.images.length : 0)
  );
  // Ollama continues an assistant's answer sent last (a prefill).
  const last = messages.at(-1);
  const lastRole = isObject(last) && typeof last.role === "string" ? last.role.toLowerCase() : "";
  if (lastRole === "assistant" && isObject(last) && !last.tool_calls) {
    body.continue_final_message = true;
    body.add_generation_prompt = false;
    // Images alone: the answer goes on after them (the template continues a message's text).
    const final = (body.messages as Json[]).at(-1)!;
    if (Array.isArray(final.content)) {
      const parts = final.content as Json[];
      if (!parts.some((p) => p.type === "text")) parts.push({ type: "text", text: "" });
    }
  }
  if (json.tools !== undefined && json.tools !== null) body.tools = json.tools;
  const { toContext, stop } = sampling(json, body);
  const truncate = json.truncate ?? true;
  if (typeof truncate !== "boolean") throw invalid("truncate", "truncate must be true or false.");
  return {
    keepAlive: keepAliveSeconds(json),
    truncate,
    stop,
    body,
    raw: false,
    load: messages.length === 0,
    stream: body.stream as boolean,
    model,
    toContext,
    sources,
  };
}

/** POST /api/generate's request, translated: a chat of the system prompt and the prompt, or raw. */
export function ollamaGenerate(json: unknown, names: string | readonly string[]): OllamaRequest {
  if (!isObject(json)) throw invalid("", "The request body must be a JSON object.");
  const model = requestModel(json, names);
  const refuse = (field: string, why: string) => {
    const v = json[field];
    if (v !== undefined && v !== null && v !== "" && !(Array.isArray(v) && !v.length)) {
      throw invalid(field, `${field} is not supported: ${why}.`);
    }
  };
  refuse("suffix", "this model has no fill-in-the-middle prompt");
  refuse("template", "the model's own chat template renders the prompt");
  refuse("context", "send the conversation as messages to /api/chat");
  const prompt = json.prompt ?? "";
  if (typeof prompt !== "string") throw invalid("prompt", "prompt must be a string.");
  const system = json.system ?? "";
  if (typeof system !== "string") throw invalid("system", "system must be a string.");
  const images = imageParts(json.images, "images");
  const raw = json.raw ?? false;
  if (typeof raw !== "boolean") throw invalid("raw", "raw must be true or false.");
  let body: Json;
  let sources: Source[] = [];
  if (raw) {
    if (images.length) {
      throw invalid("images", "images need the chat template: send them without raw.");
    }
    if (system) {
      throw invalid("system", "raw mode takes no system prompt: write it into the prompt.");
    }
    body = { prompt };
  } else {
    const messages = [
      ...(system ? [{ role: "system", content: system }] : []),
      { role: "user", content: content(prompt, images) },
    ];
    const prompted = { at: "prompt", text: "prompt", images: "images", count: images.length };
    sources = [
      ...(system ? [{ at: "system", text: "system", images: "images", count: 0 }] : []),
      prompted,
    ];
    body = { messages };
  }
  const { toContext, stop } = sampling(json, body, raw);
  return {
    keepAlive: keepAliveSeconds(json),
    truncate: false, // one prompt: nothing to drop
    stop,
    body,
    raw,
    load: !prompt && !images.length,
    stream: body.stream as boolean,
    model,
    toContext,
    sources,
  };
}

/**
 * A chat or completion request's error in the Ollama request's words: its message with the chat
 * fields renamed (`max_tokens` → `options.num_predict`, a message's image part → its `images[j]`;
 * /api/generate's message fields → `prompt`, `images[j]`, `system`).
 */
export function ollamaError(error: unknown, sources: Source[] = []): unknown {
  // A client's fault (400, 413 …): in the request's words.
  if (!(error instanceof HttpError) || error.status < 400 || error.status >= 500) return error;
  // A field named where it leads (a param, or a message's first words: a schema's own property
  // names further on stay as they are) — and a message's path anywhere.
  const rename = (text: string) => {
    const out = text.replace(
      /\bmessages\[(\d+)\](?:\.content(?:\[(\d+)\])?)?(?:\.image_url(?:\.url)?)?/g,
      (all, i: string, j: string | undefined) => {
        const source = sources[Number(i)];
        if (!source) return all;
        if (j !== undefined && Number(j) < source.count) return `${source.images}[${j}]`;
        return all.includes(".content") ? source.text : source.at;
      },
    );
    const renamed = RENAMED.find(([from]) => from.test(out));
    return renamed ? out.replace(renamed[0], renamed[1]) : out;
  };
  const param = error.param === null ? null : rename(error.param);
  // The context's refusal says which length to lower: "… new tokens (max_tokens)".
  let message = rename(error.message).replace("(max_tokens)", "(options.num_predict)");
  // An Ollama image is base64, not the data URL its translation made of it (imageParts): the
  // refusal is the entry's.
  if (param !== null && param !== error.param && /(^|\.)images\[\d+\]$/.test(param)) {
    message = message
      .replace(
        `${param}: ${DATA_URL_NOT_BASE64}`,
        `${param} is not valid base64: send the image file's bytes base64-encoded.`,
      )
      .replace(`${param}: the data URL is `, `${param} is `);
  }
  if (param === error.param && message === error.message) return error;
  return new HttpError(error.status, message, error.type, param, error.code, error.headers);
}

/** Ollama's `done_reason`: "length" where max tokens ended it, else "stop". */
function doneReason(r: GenerationResult): string {
  return r.finishReason === "length" ? "length" : "stop";
}

/** The counts and times Ollama's last object carries, in nanoseconds. */
function stats(r: GenerationResult, started: number): Json {
  const ns = (ms: number) => Math.round(ms * 1e6);
  return {
    total_duration: ns(performance.now() - started),
    // Not measured: a request that waited for the model to load (again) has the wait in
    // total_duration.
    load_duration: 0,
    prompt_eval_count: r.usage.promptTokens,
    prompt_eval_duration: ns(r.timings.visionMs + r.timings.prefillMs),
    eval_count: r.usage.completionTokens,
    eval_duration: ns(r.timings.decodeMs),
  };
}

/** An object's first fields: the model as named, the time now. */
function stamp(model: string): Json {
  return { model, created_at: new Date().toISOString() };
}

/**
 * Ollama's tool calls: each with its id and its `function.index` (Open WebUI merges calls that
 * share an index), arguments as objects; undefined where one's arguments are no JSON object.
 */
function ollamaCalls(calls: ChatCall[]): Json[] | undefined {
  const out: Json[] = [];
  for (const [index, c] of calls.entries()) {
    let args: unknown;
    try {
      args = JSON.parse(c.function.arguments || "{}");
    } catch {
      return undefined;
    }
    if (!isObject(args)) return undefined;
    out.push({ id: c.id, function: { index, name: c.function.name, arguments: args } });
  }
  return out;
}

/**
 * An answer's message fields from its content and the calls read from it: calls whose arguments
 * are not a JSON object stay text (the answer's own words from the first call on), as Ollama
 * leaves a call it cannot parse, and so does a call without arguments in an answer `cut` at its
 * length. `whole`: the answer's whole content (`content` is the part not streamed yet).
 */
function messageFields(
  content: string,
  calls: ChatCall[],
  text: string,
  whole: string,
  cut: boolean,
): Json {
  if (!calls.length) return { role: "assistant", content };
  // Cut off (num_predict) before its arguments were written, the last call is no call: "{}" would
  // have the client run it without them.
  const unfinished = cut && calls[calls.length - 1].function.arguments.trim() === "";
  const parsed = unfinished ? undefined : ollamaCalls(calls);
  if (!parsed) return { role: "assistant", content: content + callsText(text, whole) };
  return { role: "assistant", content, tool_calls: parsed };
}

/**
 * The answer's text from its first tool call on — from the end of `content` (the text before the
 * call, its trailing whitespace trimmed), so the whitespace between them stays ("Hm.\n✿FUNCTION✿",
 * not "Hm.✿FUNCTION✿").
 */
function callsText(text: string, content: string): string {
  const at = text.indexOf(QWEN_FUNCTION_MARK);
  if (at < 0) return "";
  const before = content ? text.lastIndexOf(content, at) : -1;
  return text.slice(before < 0 ? at : before + content.length);
}

/** `logprobs` where asked for: Ollama's entries are OpenAI's. */
function logprobsField(entries: readonly TokenLogprob[] | undefined): Json {
  return entries ? { logprobs: logprobEntries(entries) } : {};
}

/**
 * /api/chat's answer: `{model, created_at, message, done, …}` objects, the text as it is written
 * and a last one with `done_reason` and the counts; tool calls (the "auto" mode the chat endpoint
 * gives tools) with the last.
 */
export function ollamaChatFormat(
  model: string,
  mode: ToolMode | undefined,
  sources: Source[],
): Format {
  return ndjsonFormat(model, {
    inputError: (error) => {
      const http = toHttpError(error);
      return http.status < 500 ? ollamaError(http, sources) as HttpError : undefined;
    },
    reader: () => {
      const reader = deltaReader(mode);
      let pushed = ""; // the content read so far, streamed or not
      return {
        push: (text) => {
          const content = (reader.push(text)?.content ?? "") as string;
          pushed += content;
          return content;
        },
        last: (r, shown) => {
          const { delta } = reader.end();
          const calls = (delta.tool_calls ?? []) as ChatCall[];
          const rest = (delta.content ?? "") as string;
          return {
            message: messageFields(
              shown + rest,
              calls,
              r.text,
              pushed + rest,
              r.finishReason === "length",
            ),
          };
        },
      };
    },
    part: (text) => ({ message: { role: "assistant", content: text } }),
  });
}

/** /api/generate's answer: as /api/chat's, the text in `response`. */
export function ollamaGenerateFormat(model: string, sources: Source[], raw = false): Format {
  return ndjsonFormat(model, {
    inputError: (error) => {
      const http = toHttpError(error);
      if (http.status >= 500) return undefined;
      if (!raw) return ollamaError(http, sources) as HttpError;
      // The completion endpoint's refusals of the raw prompt name no field, or "messages".
      const named = http.status === 400 && (http.param === null || http.param === "messages")
        ? badRequest("prompt", http.message, http.code ?? undefined)
        : http;
      return ollamaError(named, sources) as HttpError;
    },
    reader: () => ({ push: (text) => text, last: (_, shown) => ({ response: shown }) }),
    part: (text) => ({ response: text }),
  });
}

/**
 * An Ollama answer as objects: `reader()` reads one answer — the text a delta shows, and the last
 * object's fields given the text already shown (all of it answered whole, none streamed) —,
 * `part` a shown piece's fields; every object begins with the model and the time, the last has
 * `done_reason` and the counts, and logprobs go with the text they belong to.
 */
function ndjsonFormat(model: string, answer: {
  inputError: Format["inputError"];
  reader: () => { push(text: string): string; last(r: GenerationResult, shown: string): Json };
  part: (text: string) => Json;
}): Format {
  const started = performance.now();
  const last = (r: GenerationResult, fields: Json, logprobs?: readonly TokenLogprob[]) => ({
    ...stamp(model),
    ...fields,
    done: true,
    done_reason: doneReason(r),
    ...stats(r, started),
    ...logprobsField(logprobs),
  });
  return {
    prefix: "",
    ndjson: true,
    inputError: answer.inputError,
    whole: (_, [r]) => {
      const reader = answer.reader();
      return last(r, reader.last(r, reader.push(r.text)), r.logprobs);
    },
    chunks: () => {
      const reader = answer.reader();
      const pending: TokenLogprob[] = [];
      return {
        open: () => undefined,
        delta: (ev) => {
          const text = reader.push(ev.text);
          if (ev.logprobs) pending.push(...ev.logprobs);
          if (!text) return undefined; // tokens held back: their logprobs go with the text
          return {
            ...stamp(model),
            ...answer.part(text),
            done: false,
            ...logprobsField(ev.logprobs ? pending.splice(0) : undefined),
          };
        },
        finish: (r) => last(r, reader.last(r, ""), r.logprobs ? pending.splice(0) : undefined),
      };
    },
    streamError: (http) => ({ error: http.message }),
  };
}

/**
 * The answer to a request with no messages (no prompt): Ollama's "the model is loaded", or (with
 * keep_alive 0) "unloaded".
 */
export function loadedObject(
  model: string,
  kind: "chat" | "generate",
  reason: "load" | "unload" = "load",
): Json {
  return {
    ...stamp(model),
    ...(kind === "chat" ? { message: { role: "assistant", content: "" } } : { response: "" }),
    done: true,
    done_reason: reason,
  };
}

/**
 * The served weights' `quantization_level`, named as Ollama names its own (the level of the
 * model's bulk): "Q8" / "Q4" where qvq quantized the decoder's matrices and lm_head to q8 / q4 —
 * groups of 32 weights sharing one f16 scale, 8.5 / 4.5 bits a weight: the block and scale of
 * ggml's Q8_0 / Q4_0, not their codes (the embedding and the vision tower stay float) —, else the float type the weights are
 * held in as loaded, "F16" or "F32" (a bf16 checkpoint is held as f16, so never "BF16"); "" where
 * the engine does not say.
 */
export function quantizationLevel(weights: WeightTypes | undefined): string {
  if (!weights) return "";
  return (weights.quant ?? weights.dtype).toUpperCase();
}

/** What /api/tags, /api/ps and /api/show say of the served model. */
export function modelDetails(weights?: WeightTypes): Json {
  return {
    parent_model: "",
    format: "safetensors",
    family: "qwen2vl",
    families: ["qwen2vl"],
    parameter_size: "",
    quantization_level: quantizationLevel(weights),
  };
}

/** A stable digest-like id of the model's name (Ollama's is its manifest's sha256). */
export async function modelDigest(modelId: string): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(modelId));
  return new Uint8Array(hash).toHex();
}

/**
 * The served model as /api/tags lists it (`since`: when the server began serving it, ISO;
 * `weights`: how they are held, for its quantization level).
 */
export async function modelEntry(
  modelId: string,
  since: string,
  weights?: WeightTypes,
): Promise<Json> {
  const name = ollamaName(modelId);
  return {
    name,
    model: name,
    modified_at: since,
    size: 0, // not known to the server: the weights may be quantized while loading
    digest: await modelDigest(modelId),
    details: modelDetails(weights),
  };
}

/**
 * POST /api/show's answer: what Ollama's clients read of a model (its capabilities, context, and
 * its prompt template, {@link ollamaTemplate}, with `defaultSystem` as the engine's chat template
 * writes it).
 */
export function showObject(
  maxContext: number | undefined,
  since: string,
  weights?: WeightTypes,
  defaultSystem?: string,
): Json {
  return {
    license: "",
    modelfile: "",
    parameters: "",
    template: ollamaTemplate(defaultSystem),
    details: modelDetails(weights),
    model_info: {
      "general.architecture": "qwen2vl",
      ...(maxContext ? { "qwen2vl.context_length": maxContext } : {}),
    },
    capabilities: ["completion", "vision", "tools"],
    modified_at: since,
  };
}

/** A request answered without generating (a load, a pull of the served model): one line, or JSON. */
export function onceResponse(stream: boolean, object: object): Response {
  return stream
    ? new Response(`${ndjsonLine(object)}\n`, {
      headers: { "content-type": "application/x-ndjson" },
    })
    : Response.json(object);
}

/** An error as Ollama sends it: `{"error": "…"}` with the status. */
export function ollamaErrorResponse(error: HttpError): Response {
  return Response.json({ error: error.message }, { status: error.status, headers: error.headers });
}

/** Literal text inside a Go template (where `{{` would open an action). */
function goText(text: string): string {
  return text.replaceAll("{{", '{{ "{{" }}');
}

/**
 * The tools' section of the system message (Qwen-Agent's, {@link toolSystemPrompt}: English,
 * parallel calls — an Ollama request's) as a Go template over Ollama's `.Tools`: the text is
 * toolSystemPrompt's own, written for placeholder tools, each placeholder replaced by the action
 * that writes it — so the template says what the server writes, word for word. (Qwen-Agent writes
 * a tool's parameters as Python's json.dumps, ", " between items; Ollama's `json`, Go's
 * json.Marshal, writes them compact.)
 */
function goToolSection(): string {
  const NAME = "\u0001", DESCRIPTION = "\u0002", PARAMETERS = "\u0003";
  const prompt = (name: string) =>
    toolSystemPrompt(
      [{ name, description: DESCRIPTION, parameters: PARAMETERS as unknown as Json }],
      true,
      "en",
    );
  const params = JSON.stringify(PARAMETERS); // as pythonJson writes the placeholder
  // prompt = the heading, a tool's description (from "### "), then "\n\n## " and how to call.
  const plain = prompt(NAME), code = prompt("code_interpreter");
  const start = plain.indexOf("### ");
  const end = plain.indexOf("\n\n## ", start);
  const tool = plain.slice(start, end);
  const [described, asJson] = tool.split(`${params} `);
  const asCode = code.slice(
    code.indexOf(`${params} `) + params.length + 1,
    code.indexOf("\n\n## ", code.indexOf("### ")),
  );
  const action = (text: string) =>
    goText(text).replaceAll(NAME, "{{ .Function.Name }}")
      .replaceAll(DESCRIPTION, "{{ .Function.Description }}");
  const names = "{{ range $i, $_ := .Tools }}{{ if $i }},{{ end }}{{ .Function.Name }}{{ end }}";
  return goText(plain.slice(0, start)) +
    "{{ range $i, $_ := .Tools }}{{ if $i }}\n\n{{ end }}" + action(described) +
    "{{ json .Function.Parameters }} " +
    `{{ if eq .Function.Name "code_interpreter" }}${goText(asCode)}{{ else }}${
      goText(asJson)
    }{{ end }}{{ end }}` +
    goText(plain.slice(end)).replaceAll(NAME, names);
}

/**
 * The prompt template /api/show gives, as Ollama's Go template (its `.System`, `.Messages`,
 * `.Tools`): what the server writes for an /api/chat request — Qwen2-VL's ChatML, the system
 * message (or, without one, `defaultSystem`: what the engine's chat template writes then; with
 * tools and no default, Qwen-Agent's) with the tools' section after it, a turn's calls as Qwen's
 * `✿FUNCTION✿`/`✿ARGS✿` lines and the tools' results after them in the same turn, an answer
 * that ends on results continued from `✿RETURN✿`, a last assistant message continued. Clients
 * read it for what the model can do: litellm takes a model whose template never mentions "tools"
 * for one without tool calls. Not rendered here (the server renders the model's own template);
 * where it differs: every system message goes first (Ollama's `.System`), and a conversation in
 * Chinese gets the tools' section in Chinese.
 */
export function ollamaTemplate(defaultSystem?: string): string {
  // Written as Ollama's own templates are: `{{-` eats the line break before it, so the lines
  // starting with one only lay the template out; every other line break is the prompt's.
  const system = defaultSystem
    ? `{{- /* always: the default where there is none */}}<|im_start|>system
{{ if .System }}{{ .System }}{{ else }}${goText(defaultSystem)}{{ end }}`
    : `{{- if or .System .Tools }}<|im_start|>system
{{ if .System }}{{ .System }}{{ else }}${goText(QWEN_AGENT_SYSTEM)}{{ end }}`;
  const [fn, args, result, ret] = [QWEN_FUNCTION_MARK, "✿ARGS✿", "✿RESULT✿", QWEN_RETURN_MARK];
  // $next: the role of the message after this one (a tool's results continue the caller's turn).
  return `{{- if .Messages }}
${system}{{ if .Tools }}

${goToolSection()}{{ end }}<|im_end|>
${defaultSystem ? "{{/* no end: the system message is always written */}}" : "{{ end }}"}
{{- $prev := "" }}
{{- range $i, $m := .Messages }}
{{- $rest := slice $.Messages $i }}
{{- $next := "" }}{{ if gt (len $rest) 1 }}{{ $next = (index $rest 1).Role }}{{ end }}
{{- if eq .Role "user" }}<|im_start|>user
{{ range .Images }}<|vision_start|><|image_pad|><|vision_end|>{{ end }}{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}
{{- if ne $prev "tool" }}<|im_start|>assistant
{{ end }}{{ .Content }}
{{- range $j, $c := .ToolCalls }}
{{- if or $j $m.Content (eq $prev "tool") }}
{{ end }}${fn}: {{ .Function.Name }}
${args}: {{ json .Function.Arguments }}
{{- end }}
{{- if and $next (ne $next "tool") }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}
${result}: {{ .Content }}
{{- if ne $next "tool" }}
${ret}{{ if $next }}: {{ end }}
{{- end }}
{{- if and $next (ne $next "tool") (ne $next "assistant") }}<|im_end|>
{{ end }}
{{- end }}
{{- if ne .Role "system" }}{{ $prev = .Role }}{{ end }}
{{- end }}
{{- if eq $prev "user" }}<|im_start|>assistant
{{ end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}`;
}
