/**
 * Validation of a `POST /v1/chat/completions` (or `/v1/completions`) body. Every field is checked
 * before any work starts, and every failure is a 400 naming the field (OpenAI's `param`), so a
 * malformed request can never reach the engine or turn into a 500.
 *
 * Request shapes follow OpenAI's API reference for chat completions (as typed in openai-node,
 * src/resources/chat/completions/completions.ts, Apache-2.0); only the fields qvq honours are typed.
 * @module
 */
import {
  MAX_NEW_TOKENS_LIMIT,
  MAX_STOP_LENGTH,
  MAX_STOP_TOKEN_IDS,
  parseLogitBias,
} from "../generate/options.ts";
import { InvalidInputError } from "../errors.ts";
import type { ChatMessage, ContentPart, GenerateOptions } from "../generate/types.ts";
import { badRequest, HttpError } from "./_errors.ts";
import { MAX_TOP_LOGPROBS } from "../../kernels/logprobs.ts";
import { checkDecodes, type ImagePolicy, loadImage } from "./_images.ts";
import {
  type DecodedImage,
  type ImageSize,
  imageSize,
  isVideo,
  MAX_IMAGE_PIXELS,
  MAX_VIDEO_FRAMES,
  otherSizedFrame,
} from "../image.ts";
import { collectImages } from "../generate/chat_template.ts";
import { parseTools, type ToolRequest } from "./_tools.ts";
import {
  QWEN_FUNCTION_MARK,
  QWEN_RETURN_MARK,
  QWEN_TOOL_STOPS,
  qwenToolMessages,
} from "./_qwen_tools.ts";

/** OpenAI accepts at most 4 stop sequences. */
const MAX_STOP_SEQUENCES = 4;

/** One content part of a request message, images not yet fetched. */
export type RequestPart =
  | { type: "text"; text: string }
  | { type: "image_url"; url: string; param: string }
  | {
    type: "video";
    frames: { url: string; param: string }[];
    param: string;
    /** qwen-vl-utils' per-video `min_pixels` / `max_pixels`: bounds on a frame's resized area. */
    minPixels?: number;
    maxPixels?: number;
  };

/** What to send instead of a video file, which qvq does not decode. */
const VIDEO_AS_FRAMES =
  `send the video as its frames, {"type":"video","video":["data:image/jpeg;base64,...", ...]} ` +
  `(Qwen2-VL's format; e.g. ffmpeg -i in.mp4 -vf fps=2 f%03d.jpg): qvq decodes no video files`;

/** A validated message; images are still URLs. */
export interface RequestMessage {
  role: ChatMessage["role"];
  content: string | RequestPart[];
  /** An assistant's `tool_calls`. */
  toolCalls?: ChatMessage["toolCalls"];
  /** A tool message's `tool_call_id`. */
  toolCallId?: string;
}

/** A validated chat completion request. */
export interface ChatRequest {
  /** The model asked for; absent: the one served (as vLLM and llama.cpp's server take it). */
  model?: string;
  messages: RequestMessage[];
  /** Generation options, everything but `signal`. */
  options: Omit<GenerateOptions, "signal">;
  stream: boolean;
  /** `stream_options.include_usage`: send a last chunk with usage and empty choices. */
  includeUsage: boolean;
  /**
   * vLLM's `stream_options.continuous_usage_stats` with `include_usage`: every chunk carries the
   * usage so far (absent: only the last chunk's, as OpenAI streams it).
   */
  continuousUsage?: true;
  /**
   * OpenAI's `n`: answers to generate (1..{@link MAX_CHOICES}), at once on the engine's free
   * places, else one after the other (src/server/app.ts turnEvents).
   */
  n: number;
  /**
   * The field that set `options.responseFormat` (response_format, or vLLM's guided_json,
   * guided_choice, guided_regex): what the engine's refusals of it name.
   */
  formatField?: string;
  /** `tools` and `tool_choice`, where the request sends tools. */
  tools?: ToolRequest;
}

/** Most choices (`n`) a request may ask for: each is a whole generation. */
export const MAX_CHOICES = 8;

type Json = Record<string, unknown>;

const isObject = (x: unknown): x is Json =>
  typeof x === "object" && x !== null && !Array.isArray(x);

function typeName(x: unknown): string {
  return x === null ? "null" : Array.isArray(x) ? "array" : typeof x;
}

interface NumberRule {
  min?: number;
  max?: number;
  /** `min` itself is not allowed. */
  exclusiveMin?: boolean;
  integer?: boolean;
}

/** `body[name]` as a number within `rule`, or undefined when absent or null (OpenAI: null = default). */
function optionalNumber(body: Json, name: string, rule: NumberRule): number | undefined {
  const x = body[name];
  if (x === undefined || x === null) return undefined;
  if (typeof x !== "number" || !Number.isFinite(x)) {
    // JSON's 1e400 parses to Infinity, which JSON.stringify would show as null.
    const shown = typeof x === "number" ? String(x) : JSON.stringify(x);
    throw badRequest(name, `${name} must be a finite number; got ${shown}.`, "invalid_type");
  }
  const { min = -Infinity, max = Infinity, exclusiveMin = false, integer = false } = rule;
  // Out of range first: max_tokens 1e30 is past 8192, whatever JSON's integers hold exactly.
  const outside = x < min || (exclusiveMin && x === min) || x > max;
  if (integer && !Number.isSafeInteger(x) && !(outside && Number.isInteger(x))) {
    throw badRequest(
      name,
      Number.isInteger(x)
        ? `${name} must be at most ${Number.MAX_SAFE_INTEGER} (2^53 − 1, the largest integer JSON ` +
          `numbers hold exactly here); got ${x}.`
        : `${name} must be an integer; got ${x}.`,
      Number.isInteger(x) ? "invalid_value" : "invalid_type",
    );
  }
  if (outside) {
    const low = min === -Infinity ? "" : `${exclusiveMin ? ">" : ">="} ${min}`;
    const high = max === Infinity ? "" : `<= ${max}`;
    throw badRequest(
      name,
      `${name} must be ${[low, high].filter(Boolean).join(" and ")}; got ${x}.`,
    );
  }
  return x;
}

/** `body[name]` as a boolean, or undefined when absent or null; `param` is its full path. */
function optionalBoolean(body: Json, name: string, param = name): boolean | undefined {
  const x = body[name];
  if (x === undefined || x === null) return undefined;
  if (typeof x !== "boolean") {
    throw badRequest(
      param,
      `${param} must be true or false; got ${JSON.stringify(x)}.`,
      "invalid_type",
    );
  }
  return x;
}

/** vLLM's stop_token_ids: token ids that end the answer beside the model's eos ids. */
function parseStopTokenIds(body: Json): number[] | undefined {
  const ids = body.stop_token_ids;
  if (ids === undefined || ids === null) return undefined;
  if (
    !Array.isArray(ids) || !ids.every((t) => Number.isSafeInteger(t) && t >= 0 && t < 2 ** 31)
  ) {
    throw badRequest(
      "stop_token_ids",
      "stop_token_ids must be an array of token ids.",
      "invalid_type",
    );
  }
  if (ids.length > MAX_STOP_TOKEN_IDS) {
    throw badRequest(
      "stop_token_ids",
      `stop_token_ids takes at most ${MAX_STOP_TOKEN_IDS} ids; got ${ids.length}.`,
    );
  }
  return ids.length ? ids : undefined;
}

function parseStop(body: Json): string[] | undefined {
  const stop = body.stop;
  if (stop === undefined || stop === null) return undefined;
  const list = typeof stop === "string" ? [stop] : stop;
  if (!Array.isArray(list) || !list.every((s) => typeof s === "string" && s !== "")) {
    throw badRequest(
      "stop",
      "stop must be a non-empty string or an array of non-empty strings.",
      "invalid_type",
    );
  }
  const long = list.find((s) => s.length > MAX_STOP_LENGTH);
  if (long !== undefined) {
    throw badRequest(
      "stop",
      `each stop sequence may be at most ${MAX_STOP_LENGTH} characters; got one of ${long.length}.`,
    );
  }
  if (list.length > MAX_STOP_SEQUENCES) {
    throw badRequest(
      "stop",
      `stop takes at most ${MAX_STOP_SEQUENCES} sequences; got ${list.length}.`,
    );
  }
  return list.length ? list : undefined;
}

/** `logit_bias`: token id (a JSON key) → bias in [−100, 100], at most 300 tokens; null: none. */
function parseLogitBiasField(body: Json): Record<number, number> | undefined {
  const x = body.logit_bias;
  if (x === undefined || x === null) return undefined;
  try {
    const pairs = parseLogitBias(x, "logit_bias"); // the engine's check, named for the request
    return pairs.length ? Object.fromEntries(pairs) : undefined;
  } catch (e) {
    if (e instanceof InvalidInputError) throw badRequest("logit_bias", e.message);
    throw e;
  }
}

/**
 * `logprobs` and `top_logprobs` (0..20; above 0 only with logprobs true, as OpenAI and vLLM
 * require) as the engine's logprobs / topLogprobs; absent when logprobs is not true.
 */
function parseLogprobs(body: Json): Pick<ChatRequest["options"], "logprobs" | "topLogprobs"> {
  const on = optionalBoolean(body, "logprobs") ?? false;
  const top = optionalNumber(body, "top_logprobs", {
    integer: true,
    min: 0,
    max: MAX_TOP_LOGPROBS,
  });
  // As vLLM: 0 without logprobs asks for nothing (clients that send every default send it).
  if (top !== undefined && top > 0 && !on) {
    throw badRequest(
      "top_logprobs",
      `top_logprobs ${top} needs logprobs: true (send both, or leave top_logprobs out).`,
    );
  }
  return on ? { logprobs: true, topLogprobs: top ?? 0 } : {};
}

/**
 * Fields OpenAI defines that qvq cannot honour; sending them with a non-default value is a 400.
 * `tools` only where the endpoint takes them (`withTools`: chat, /tokenize).
 */
function refuseUnsupported(body: Json, { withTools = false } = {}): void {
  for (const name of [...(withTools ? [] : ["tools"]), "functions", "audio"]) {
    const x = body[name];
    if (x !== undefined && x !== null && !(Array.isArray(x) && x.length === 0)) {
      const hint = name === "functions" ? "; send tools (OpenAI's newer form) instead" : "";
      throw badRequest(
        name,
        `${name} is not supported by this server${hint}.`,
        "unsupported_parameter",
      );
    }
  }
  if (!withTools && body.tool_choice !== undefined && body.tool_choice !== null) {
    throw badRequest(
      "tool_choice",
      "tool_choice is not supported here: tools are a chat field.",
      "unsupported_parameter",
    );
  }
  // vLLM's (and llama.cpp's) extensions that would change the answer, where this server lacks
  // them: a 400 rather than an answer that silently ignores them. Their defaults (or null) are
  // accepted.
  for (const [name, isDefault] of VLLM_UNSUPPORTED) {
    const x = body[name];
    if (x !== undefined && x !== null && !isDefault(x)) {
      throw badRequest(
        name,
        `${name} is not supported by this server (${JSON.stringify(x)}).`,
        "unsupported_parameter",
      );
    }
  }
}

/**
 * vLLM's and llama.cpp's request fields this server does not implement, and which of their
 * values mean "off".
 */
const VLLM_UNSUPPORTED: [string, (x: unknown) => boolean][] = [
  ["use_beam_search", (x) => x === false],
  ["include_stop_str_in_output", (x) => x === false],
  ["skip_special_tokens", (x) => x === true],
  ["allowed_token_ids", (x) => Array.isArray(x) && x.length === 0],
  ["bad_words", (x) => Array.isArray(x) && x.length === 0],
  ["guided_whitespace_pattern", () => false],
  ["truncate_prompt_tokens", () => false],
  ["guided_grammar", () => false],
  ["chat_template", () => false],
  ["mm_processor_kwargs", (x) => isObject(x) && Object.keys(x).length === 0],
  // llama.cpp's server's own sampling fields, likewise.
  ["n_predict", () => false],
  ["typical_p", (x) => x === 1],
  ["tfs_z", (x) => x === 1],
  ["mirostat", (x) => x === 0],
  ["dynatemp_range", (x) => x === 0],
  ["repeat_penalty", (x) => x === 1],
  ["xtc_probability", (x) => x === 0],
  ["dry_multiplier", (x) => x === 0],
  ["grammar", (x) => x === ""],
  ["json_schema", () => false],
];

/**
 * One content part of a message of `role`; images in a user message only, unless `anyRole` (they
 * are then where the message is: Qwen2-VL's chat template writes an image's placeholder in any
 * turn).
 */
function parsePart(part: unknown, param: string, role: string, anyRole = false): RequestPart {
  if (!isObject(part)) {
    throw badRequest(
      param,
      `${param} must be an object like {"type":"text","text":"..."}; got ${typeName(part)}.`,
      "invalid_type",
    );
  }
  if (part.type === "text") {
    if (typeof part.text !== "string") {
      throw badRequest(`${param}.text`, `${param}.text must be a string.`, "invalid_type");
    }
    return { type: "text", text: part.text };
  }
  // An assistant's refusal, as OpenAI's answers carry it (a conversation replayed from there):
  // its text is the assistant's, as OpenAI and vLLM take it.
  if (part.type === "refusal") {
    if (role !== "assistant") {
      throw badRequest(
        `${param}.type`,
        `${param}: a refusal part is an assistant's; a "${role}" message sends its text as ` +
          `{"type": "text", "text": …}.`,
      );
    }
    if (typeof part.refusal !== "string") {
      throw badRequest(`${param}.refusal`, `${param}.refusal must be a string.`, "invalid_type");
    }
    return { type: "text", text: part.refusal };
  }
  // Also as OpenAI and vLLM take it, the URL itself as image_url, and as Qwen's model cards write
  // it (qwen-vl-utils), {"type": "image", "image": URL}.
  if (part.type === "image_url" || part.type === "image") {
    if (role !== "user" && !anyRole) {
      throw badRequest(param, `${param}: images are only allowed in user messages, not "${role}".`);
    }
    if (part.type === "image") {
      if (typeof part.image !== "string") {
        throw badRequest(
          `${param}.image`,
          `${param}.image must be an image URL string (a data: URL).`,
          "invalid_type",
        );
      }
      return { type: "image_url", url: part.image, param: `${param}.image` };
    }
    const image = part.image_url;
    if (typeof image === "string") {
      return { type: "image_url", url: image, param: `${param}.image_url` };
    }
    if (!isObject(image) || typeof image.url !== "string") {
      throw badRequest(
        `${param}.image_url`,
        `${param}.image_url must be an object like {"url":"data:image/png;base64,..."}.`,
        "invalid_type",
      );
    }
    return { type: "image_url", url: image.url, param: `${param}.image_url.url` };
  }
  if (part.type === "video" || part.type === "video_url") {
    if (role !== "user") {
      throw badRequest(param, `${param}: videos are only allowed in user messages, not "${role}".`);
    }
    const frames = part.type === "video" ? part.video : undefined;
    if (!Array.isArray(frames)) {
      throw badRequest(
        `${param}.${part.type}`,
        `${param}: ${VIDEO_AS_FRAMES}.`,
        part.type === "video" && frames !== undefined && typeof frames !== "string"
          ? "invalid_type"
          : "unsupported_video",
      );
    }
    if (frames.length === 0 || frames.length > MAX_VIDEO_FRAMES) {
      throw badRequest(
        `${param}.video`,
        `${param}.video must hold 1 to ${MAX_VIDEO_FRAMES} frames (image URLs); got ${frames.length}.`,
      );
    }
    // Named by their whole path, as a top-level field's errors are by its name.
    const bound = (key: "min_pixels" | "max_pixels") => {
      const at = `${param}.${key}`;
      return optionalNumber({ [at]: part[key] }, at, {
        min: key === "max_pixels" ? 1 : 0,
        max: MAX_IMAGE_PIXELS,
        integer: true,
      });
    };
    const minPixels = bound("min_pixels"), maxPixels = bound("max_pixels");
    if (minPixels !== undefined && maxPixels !== undefined && minPixels > maxPixels) {
      throw badRequest(
        `${param}.min_pixels`,
        `${param}.min_pixels (${minPixels}) must not exceed max_pixels (${maxPixels}).`,
      );
    }
    return {
      type: "video",
      param,
      ...(minPixels !== undefined ? { minPixels } : {}),
      ...(maxPixels !== undefined ? { maxPixels } : {}),
      frames: frames.map((url, k) => {
        const at = `${param}.video[${k}]`;
        if (typeof url !== "string") {
          throw badRequest(at, `${at} must be an image URL string (a data: URL).`, "invalid_type");
        }
        return { url, param: at };
      }),
    };
  }
  throw badRequest(
    `${param}.type`,
    `${param}.type must be "text", "image_url" (or "image"), "video" or (an assistant's) ` +
      `"refusal"; got ${JSON.stringify(part.type)}.`,
  );
}

const ROLES: Record<string, ChatMessage["role"]> = {
  system: "system",
  // OpenAI's newer name for system instructions.
  developer: "system",
  user: "user",
  assistant: "assistant",
  tool: "tool",
};

/** An assistant message's `tool_calls` (OpenAI's shape) as the engine's ToolCalls. */
function parseToolCalls(x: unknown, param: string): ChatMessage["toolCalls"] {
  if (!Array.isArray(x)) throw badRequest(param, `${param} must be an array.`, "invalid_type");
  return x.map((call, j) => {
    const at = `${param}[${j}]`;
    const f = isObject(call) ? call.function : undefined;
    if (
      !isObject(call) || (call.type != null && call.type !== "function") || !isObject(f) ||
      typeof f.name !== "string" || f.name === "" || typeof f.arguments !== "string" ||
      (call.id !== undefined && call.id !== null && typeof call.id !== "string")
    ) {
      throw badRequest(
        at,
        `${at} must be {"id": …, "type": "function", "function": {"name": …, "arguments": ` +
          `"<JSON text>"}}; got ${JSON.stringify(call)?.slice(0, 120)}.`,
        "invalid_type",
      );
    }
    return {
      ...(typeof call.id === "string" ? { id: call.id } : {}),
      name: f.name,
      arguments: f.arguments,
    };
  });
}

function parseMessage(message: unknown, i: number, imagesInAnyRole = false): RequestMessage {
  const param = `messages[${i}]`;
  if (!isObject(message)) {
    throw badRequest(
      param,
      `${param} must be an object with "role" and "content"; got ${typeName(message)}.`,
      "invalid_type",
    );
  }
  const role = typeof message.role === "string" ? ROLES[message.role] : undefined;
  if (!role) {
    throw badRequest(
      `${param}.role`,
      `${param}.role must be "system", "developer", "user", "assistant" or "tool"; got ${
        JSON.stringify(message.role)
      }.`,
    );
  }
  const extra: Pick<RequestMessage, "toolCalls" | "toolCallId"> = {};
  const calls = message.tool_calls;
  if (calls !== undefined && calls !== null && !(Array.isArray(calls) && !calls.length)) {
    if (role !== "assistant") {
      throw badRequest(
        `${param}.tool_calls`,
        `${param}.tool_calls: only assistant messages call tools.`,
      );
    }
    extra.toolCalls = parseToolCalls(calls, `${param}.tool_calls`);
  }
  const id = message.tool_call_id;
  if (role === "tool" && id !== undefined && id !== null) {
    if (typeof id !== "string") {
      throw badRequest(
        `${param}.tool_call_id`,
        `${param}.tool_call_id must be a string.`,
        "invalid_type",
      );
    }
    extra.toolCallId = id;
  }
  const content = message.content;
  if (typeof content === "string") return { role, content, ...extra };
  const refusal = message.refusal;
  if (refusal !== undefined && refusal !== null) {
    if (role !== "assistant") {
      throw badRequest(`${param}.refusal`, `${param}.refusal: only assistant messages refuse.`);
    }
    if (typeof refusal !== "string") {
      throw badRequest(`${param}.refusal`, `${param}.refusal must be a string.`, "invalid_type");
    }
    // OpenAI's answer that refused has no content but its refusal: that is what it said.
    if (content === undefined || content === null) return { role, content: refusal, ...extra };
  }
  // OpenAI's assistant message that only calls tools has no content.
  if ((content === undefined || content === null) && extra.toolCalls) {
    return { role, content: "", ...extra };
  }
  if (Array.isArray(content)) {
    const parts = content.map((p, j) =>
      parsePart(p, `${param}.content[${j}]`, role, imagesInAnyRole)
    );
    return { role, content: parts, ...extra };
  }
  throw badRequest(
    `${param}.content`,
    `${param}.content must be a string or an array of parts; got ${typeName(content)}.`,
    "invalid_type",
  );
}

/** Server settings validation depends on. */
export interface RequestLimits {
  /** Default of the `stop_on_loop` extension. */
  stopOnLoop: boolean;
  /** Most images in one request. */
  maxImages: number;
  /**
   * The system message the engine's chat template writes where a conversation has none
   * (ChatEngine.defaultSystemPrompt): with tools (tool_choice "auto") and no system message, the
   * tools are described after it. Unset: Qwen-Agent's "You are a helpful assistant.".
   */
  defaultSystemPrompt?: string;
  /**
   * Take images in system, assistant and tool messages too, as Ollama's API does (the chat
   * template places them in any turn). Unset: in user messages only, as OpenAI's API takes them.
   */
  imagesInAnyRole?: boolean;
}

/** A request body as an object, and its model name (checked against the engine by the caller). */
function modelRequest(body: unknown): { body: Json; model: string } {
  if (!isObject(body)) {
    throw badRequest(
      null,
      `The request body must be a JSON object; got ${typeName(body)}.`,
      "invalid_type",
    );
  }
  if (typeof body.model !== "string" || body.model === "") {
    throw badRequest(
      "model",
      "model must be a non-empty string (see GET /v1/models).",
      "invalid_type",
    );
  }
  return { body, model: body.model };
}

/** A body's `messages`: a non-empty array of OpenAI messages, at most `limits.maxImages` images. */
function parseMessages(body: Json, limits: RequestLimits): RequestMessage[] {
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    throw badRequest("messages", "messages must be a non-empty array of messages.", "invalid_type");
  }
  const messages = body.messages.map((m, i) => parseMessage(m, i, limits.imagesInAnyRole));
  // A video's frames count as images: each is decoded and held like one.
  const parts = messages.flatMap((m) => (typeof m.content === "string" ? [] : m.content));
  const hasVideo = parts.some((p) => p.type === "video");
  const images = parts
    .flatMap((p) =>
      p.type === "image_url" ? [p.param] : p.type === "video" ? p.frames.map((f) => f.param) : []
    );
  if (images.length > limits.maxImages) {
    throw badRequest(
      images[limits.maxImages].replace(/\.(image_url\.url|image_url|image)$/, ""),
      `A request may carry at most ${limits.maxImages} images${
        hasVideo ? " (a video's frames count one each)" : ""
      }; this one has ${images.length}.`,
      "too_many_images",
    );
  }
  return messages;
}

/** A POST /tokenize request (vLLM's): a raw prompt, or chat messages as the chat endpoint takes them. */
export type TokenizeRequest =
  & { model?: string }
  & ({ prompt: string } | {
    messages: RequestMessage[];
    continueFinalMessage: boolean;
    addGenerationPrompt: boolean;
    chatTemplateKwargs?: Record<string, unknown>;
  });

/**
 * Validates a /tokenize body: `prompt` (text), or `messages` with `add_generation_prompt` (true
 * by default; false counts a finished conversation) and `continue_final_message`; `model`
 * optional (as vLLM's). `add_special_tokens` is accepted either way (Qwen's tokenizer adds none);
 * vLLM's `return_token_strs`, and what the chat endpoint refuses of the template (`tools`,
 * `chat_template`, …), are refused.
 */
export function parseTokenizeRequest(json: unknown, limits: RequestLimits): TokenizeRequest {
  const body = optionalModel(json);
  refuseUnsupported(body, { withTools: true });
  optionalBoolean(body, "add_special_tokens");
  if (optionalBoolean(body, "return_token_strs")) {
    throw badRequest(
      "return_token_strs",
      "return_token_strs is not supported by this server; /detokenize gives a token's text.",
      "unsupported_parameter",
    );
  }
  const model = body.model as string | undefined;
  if (body.messages !== undefined) {
    let messages = parseMessages(body, limits);
    let turn = parseContinuation(body, { finished: true });
    // The prompt the chat endpoint would make: tools as the template's `tools`; with tool_choice
    // "auto" (their default) described in the system message and the calls written in Qwen's
    // format (the prompt is the same for the other choices, as vLLM's /tokenize has it).
    const tools = parseTools(body);
    if (tools?.mode?.kind === "auto") {
      const qwen = qwenToolMessages(
        messages,
        tools.specs,
        tools.mode.parallel,
        limits.defaultSystemPrompt,
      );
      messages = qwen.messages;
      if (qwen.continueFinal) turn = { continueFinalMessage: true, addGenerationPrompt: false };
    }
    const chatTemplateKwargs = withTools(parseTemplateKwargs(body), tools?.tools);
    return {
      model,
      messages,
      ...turn,
      ...(chatTemplateKwargs ? { chatTemplateKwargs } : {}),
    };
  }
  if (typeof body.prompt !== "string") {
    throw badRequest("prompt", "Send prompt (a string) or messages to tokenize.", "invalid_type");
  }
  return { model, prompt: body.prompt };
}

/** Validates a /detokenize body: `tokens`, token ids; `model` optional. */
export function parseDetokenizeRequest(json: unknown): { model?: string; tokens: number[] } {
  const body = optionalModel(json);
  const ids = body.tokens;
  if (!Array.isArray(ids) || !ids.every((t) => Number.isSafeInteger(t) && t >= 0)) {
    throw badRequest("tokens", "tokens must be an array of token ids.", "invalid_type");
  }
  return { model: body.model as string | undefined, tokens: ids };
}

/**
 * A body whose `model`, where given, is a non-empty string (the caller checks it names the
 * engine's); an empty one, as none, is for the served model (vLLM's `if not model_name`).
 */
function optionalModel(json: unknown): Json {
  if (isObject(json) && (json.model === undefined || json.model === null || json.model === "")) {
    const { model: _, ...rest } = json;
    return rest;
  }
  return modelRequest(json).body;
}

/**
 * With tools ("auto"), an assistant's turn and a tool's result are written in Qwen's call format,
 * as text (qwenToolMessages): an image in one (Ollama's API takes them there) would be lost, so it
 * is refused, saying where images can go.
 */
function refuseImagesInCallTurns(messages: readonly RequestMessage[]): void {
  messages.forEach((m, i) => {
    if (m.role !== "assistant" && m.role !== "tool") return;
    const j = typeof m.content === "string" ? -1 : m.content.findIndex((p) => p.type !== "text");
    if (j < 0) return;
    const whose = m.role === "assistant" ? "an assistant message's" : "a tool result's";
    throw badRequest(
      `messages[${i}].content[${j}]`,
      `messages[${i}].content[${j}]: with tools, ${whose} images cannot be placed: its turn is ` +
        "written as text in Qwen's tool-call format. Send the image in a user (or system) message.",
    );
  });
}

/** Validates a parsed JSON body (the model name is checked by the caller, who knows the engine). */
export function parseChatRequest(json: unknown, limits: RequestLimits): ChatRequest {
  const body = optionalModel(json);
  const model = body.model as string | undefined;
  let messages = parseMessages(body, limits);
  refusePromptLogprobs(body);
  if (optionalBoolean(body, "echo")) {
    // vLLM's chat echo puts a continued final message's text before the answer; not here.
    throw badRequest(
      "echo",
      "echo is not supported on /v1/chat/completions; /v1/completions echoes a raw prompt.",
      "unsupported_parameter",
    );
  }
  const tools = parseTools(body);
  const sampling = parseSampling(body, limits, { chat: true, tools });
  // Without max_tokens an answer may run as long as the context holds (up to the ceiling), as
  // vLLM's chat answers do: the module's 2048 would cut QVQ's longer reasoning off at "length".
  sampling.options.maxNewTokens ??= Infinity;
  if (parseContinuation(body).continueFinalMessage) {
    if (tools?.schema) {
      // The calls' text is written anew from the message's tool_calls: it cannot be continued.
      throw badRequest(
        "continue_final_message",
        `continue_final_message continues an answer's text; with tool_choice ${
          JSON.stringify(body.tool_choice)
        } the answer is tool calls, which start anew: send one of them.`,
      );
    }
    sampling.options.continueFinalMessage = true;
  }
  const mode = tools?.mode;
  if (tools && mode?.kind === "auto") {
    const field = sampling.formatField;
    if (field) {
      // A schema beside tools holds the answer to its instance — or to calls, once it begins
      // with one (OpenAI's structured outputs beside function tools: an agent's final answer).
      const f = sampling.options.responseFormat;
      if (typeof f !== "object" || !("jsonSchema" in f)) {
        throw badRequest(
          field,
          `${field} beside tools (tool_choice "auto") must be a JSON schema (json_schema): the ` +
            "answer is then its instance, or the model's tool calls; JSON mode, a regex or a " +
            "choice cannot make way for a call.",
        );
      }
      // Calls free until their results come back (✿RETURN✿), then held again: the answer after
      // a tool's result (an agent's final turn) is the schema's too.
      sampling.options.responseFormat = {
        jsonSchema: f.jsonSchema,
        freeAfter: `${QWEN_FUNCTION_MARK}:`, // as the answer's calls are read
        freeUntil: QWEN_RETURN_MARK,
      };
    }
    refuseImagesInCallTurns(messages);
    // The tools described, the conversation's calls and results written in Qwen's format.
    const qwen = qwenToolMessages(messages, tools.specs, mode.parallel, limits.defaultSystemPrompt);
    messages = qwen.messages;
    mode.continued = qwen.continueFinal;
    if (qwen.continueFinal) sampling.options.continueFinalMessage = true;
    sampling.options.stop = [...(sampling.options.stop ?? []), ...QWEN_TOOL_STOPS];
  }
  const kwargs = withTools(parseTemplateKwargs(body), tools?.tools);
  if (kwargs) sampling.options.chatTemplateKwargs = kwargs;
  return { model, messages, ...sampling, ...(tools ? { tools } : {}) };
}

/**
 * Template variables with the request's tools as `tools` (transformers' and vLLM's name); a
 * `tools` the client put in chat_template_kwargs wins, as in vLLM.
 */
function withTools(kwargs: Json | undefined, tools: Json[] | undefined): Json | undefined {
  return tools ? { tools, ...kwargs } : kwargs;
}

/** vLLM's `chat_template_kwargs`: more variables for the chat template (an object), or none. */
function parseTemplateKwargs(body: Json): Json | undefined {
  const x = body.chat_template_kwargs;
  if (x === undefined || x === null) return undefined;
  if (!isObject(x)) {
    throw badRequest(
      "chat_template_kwargs",
      "chat_template_kwargs must be an object of template variables.",
      "invalid_type",
    );
  }
  return Object.keys(x).length ? x : undefined;
}

/**
 * vLLM's `continue_final_message` (an assistant's answer begun, to continue) and its
 * `add_generation_prompt` (true by default; false beside it, or with `finished` — /tokenize
 * counting a finished chat: a chat to answer that ends on a user's turn with no assistant header
 * has no use here).
 */
function parseContinuation(
  body: Json,
  { finished = false } = {},
): { continueFinalMessage: boolean; addGenerationPrompt: boolean } {
  const cont = optionalBoolean(body, "continue_final_message") ?? false;
  const header = optionalBoolean(body, "add_generation_prompt");
  if (cont && header) {
    throw badRequest(
      "add_generation_prompt",
      "continue_final_message continues the last message: add_generation_prompt must be false.",
    );
  }
  if (!cont && header === false && !finished) {
    throw badRequest(
      "add_generation_prompt",
      "add_generation_prompt false is supported only with continue_final_message true.",
      "unsupported_value",
    );
  }
  return { continueFinalMessage: cont, addGenerationPrompt: !cont && (header ?? true) };
}

/** A POST /v1/completions request (OpenAI's legacy completions, as vLLM serves them). */
export interface TextCompletionRequest extends Omit<ChatRequest, "messages"> {
  /** The raw prompt: text, or token ids. */
  prompt: string | number[];
  /**
   * `echo`: the prompt comes first in the text (and, with logprobs, its tokens scored); `only`
   * for `max_tokens` 0: the prompt alone (one token is generated and not shown, as vLLM does).
   */
  echo?: { only: boolean };
}

/**
 * Validates a /v1/completions body: `prompt` (a string, token ids, or a list of one of them),
 * `logprobs` as the legacy integer of alternatives (0..20), `echo` (with logprobs, the prompt's
 * tokens scored too — lm-evaluation-harness's loglikelihood requests send it with `max_tokens` 1;
 * with `max_tokens` 0, the prompt alone), `max_tokens` defaulting to 16 as OpenAI's and vLLM's do,
 * and the chat endpoint's sampling fields. `suffix`, `best_of` and vLLM's `prompt_logprobs` are
 * refused (400 naming them).
 */
export function parseCompletionRequest(
  json: unknown,
  limits: RequestLimits,
): TextCompletionRequest {
  const body = optionalModel(json);
  const model = body.model as string | undefined;
  const prompt = parsePrompt(body.prompt);
  const echo = optionalBoolean(body, "echo") ?? false;
  // max_tokens 0 asks for the prompt alone: only with echo (one token runs, as in vLLM).
  const only = echo && body.max_tokens === 0;
  if (body.max_tokens === 0 && !echo) {
    throw badRequest(
      "max_tokens",
      "max_tokens must be at least 1; 0 (the prompt alone) needs echo: true. got 0.",
    );
  }
  const completion = body.max_completion_tokens;
  if (only && completion !== undefined && completion !== null) {
    throw badRequest(
      "max_completion_tokens",
      `max_tokens 0 asks for the prompt alone; max_completion_tokens ${
        JSON.stringify(completion)
      } asks for more. Send one of them.`,
    );
  }
  refusePromptLogprobs(body);
  if (body.suffix !== undefined && body.suffix !== null && body.suffix !== "") {
    throw badRequest("suffix", "suffix is not supported by this server.", "unsupported_parameter");
  }
  const bestOf = optionalNumber(body, "best_of", { integer: true, min: 1 });
  if (bestOf !== undefined && bestOf !== 1) {
    throw badRequest("best_of", `best_of must be 1 here; got ${bestOf}.`, "unsupported_value");
  }
  if (body.top_logprobs !== undefined && body.top_logprobs !== null) {
    throw badRequest(
      "top_logprobs",
      "top_logprobs is a chat field; on /v1/completions logprobs is the count of alternatives.",
      "unsupported_parameter",
    );
  }
  // The legacy logprobs: the count of alternatives (0: the chosen token's alone), not a flag.
  const top = optionalNumber(body, "logprobs", { integer: true, min: 0, max: MAX_TOP_LOGPROBS });
  // The chat fields of those names are not this endpoint's (both checked above).
  const sampling = parseSampling({
    ...body,
    logprobs: undefined,
    top_logprobs: undefined,
    ...(only ? { max_tokens: 1 } : {}),
  }, limits);
  sampling.options.maxNewTokens ??= 16;
  if (top !== undefined) Object.assign(sampling.options, { logprobs: true, topLogprobs: top });
  if (!echo) return { model, prompt, ...sampling };
  Object.assign(sampling.options, { echo: true, promptLogprobs: top });
  return { model, prompt, ...sampling, echo: { only } };
}

/**
 * vLLM's `prompt_logprobs` (its own response field, with each token's rank): refused rather than
 * ignored; /v1/completions' `echo` with `logprobs` scores the prompt.
 */
function refusePromptLogprobs(body: Json): void {
  if (body.prompt_logprobs !== undefined && body.prompt_logprobs !== null) {
    throw badRequest(
      "prompt_logprobs",
      "prompt_logprobs is not supported by this server; on /v1/completions send echo: true with " +
        "logprobs to have the prompt's tokens scored.",
      "unsupported_parameter",
    );
  }
}

/** A completions `prompt`: text or token ids, alone or as a list of one (batches are refused). */
function parsePrompt(x: unknown): string | number[] {
  const ids = (v: unknown): v is number[] =>
    Array.isArray(v) && v.length > 0 && v.every((t) => Number.isSafeInteger(t) && t >= 0);
  if (typeof x === "string" || ids(x)) return x;
  if (Array.isArray(x) && x.length === 1 && (typeof x[0] === "string" || ids(x[0]))) return x[0];
  if (Array.isArray(x) && x.length > 1 && x.every((p) => typeof p === "string" || ids(p))) {
    throw badRequest(
      "prompt",
      `prompt holds ${x.length} prompts; this server completes one a request: send them apart.`,
      "unsupported_value",
    );
  }
  // What is wrong with a list: empty, or an entry no token id.
  const list = Array.isArray(x) && x.length === 1 && Array.isArray(x[0]) ? x[0] : x;
  if (Array.isArray(list) && !list.length) {
    throw badRequest("prompt", "prompt is empty: send text or at least one token id.");
  }
  const bad = Array.isArray(list) ? list.findIndex((t) => !Number.isSafeInteger(t) || t < 0) : -1;
  if (Array.isArray(list) && list.every((t) => typeof t === "number") && bad >= 0) {
    throw badRequest(
      "prompt",
      `prompt[${bad}] must be a token id (an integer >= 0); got ${JSON.stringify(list[bad])}.`,
    );
  }
  throw badRequest(
    "prompt",
    `prompt must be a string or an array of token ids; got ${typeName(x)}.`,
    "invalid_type",
  );
}

/**
 * What the answer is held to: OpenAI's response_format — `{"type": "json_object"}` (JSON mode),
 * `{"type": "json_schema", "json_schema": {"schema": …}}` (structured outputs), `{"type":
 * "text"}` or none — or vLLM's guided_json (a schema, or its JSON text), guided_choice (a list
 * of strings) and guided_regex (a pattern). One of them a request. The schema is compiled by the engine (its errors name the
 * part it cannot hold an answer to).
 */
function parseResponseFormat(
  body: Json,
): { value: NonNullable<GenerateOptions["responseFormat"]>; field: string } | undefined {
  const given = [
    "response_format",
    "guided_json",
    "guided_choice",
    "guided_regex",
    "structured_outputs",
  ].filter((k) =>
    body[k] !== undefined && body[k] !== null &&
    !(k === "response_format" && isObject(body[k]) && (body[k] as Json).type === "text")
  );
  if (given.length > 1) {
    throw badRequest(given[1], `${given.join(" and ")} both constrain the answer: send one.`);
  }
  // vLLM's newer form of the guided_* fields.
  const so = body.structured_outputs;
  if (so !== undefined && so !== null) {
    if (!isObject(so)) {
      throw badRequest(
        "structured_outputs",
        "structured_outputs must be an object.",
        "invalid_type",
      );
    }
    const keys = Object.keys(so).filter((k) => so[k] !== undefined && so[k] !== null);
    const bad = keys.find((k) => !["json", "regex", "choice"].includes(k));
    if (bad !== undefined || keys.length !== 1) {
      throw badRequest(
        "structured_outputs",
        bad !== undefined
          ? `structured_outputs.${bad} is not supported by this server (json, regex and choice are).`
          : "structured_outputs needs exactly one of json, regex and choice.",
        bad !== undefined ? "unsupported_parameter" : undefined,
      );
    }
    // Checked as its guided_* field would be, its errors named as the field the client sent.
    const guided = `guided_${keys[0]}`;
    try {
      const inner = parseResponseFormat({ [guided]: so[keys[0]] })!;
      return { value: inner.value, field: "structured_outputs" };
    } catch (e) {
      if (!(e instanceof HttpError) || e.param !== guided) throw e;
      const field = `structured_outputs.${keys[0]}`;
      throw badRequest(field, e.message.replace(guided, field), e.code ?? undefined);
    }
  }
  if (body.guided_choice !== undefined && body.guided_choice !== null) {
    const choice = body.guided_choice;
    if (
      !Array.isArray(choice) || !choice.length ||
      !choice.every((c) => typeof c === "string" && c.length > 0)
    ) {
      throw badRequest(
        "guided_choice",
        "guided_choice must be a non-empty list of non-empty strings.",
        "invalid_type",
      );
    }
    return { value: { choice }, field: "guided_choice" };
  }
  if (body.guided_regex !== undefined && body.guided_regex !== null) {
    if (typeof body.guided_regex !== "string" || body.guided_regex === "") {
      throw badRequest("guided_regex", "guided_regex must be a non-empty pattern.", "invalid_type");
    }
    return { value: { regex: body.guided_regex }, field: "guided_regex" };
  }
  if (body.guided_json !== undefined && body.guided_json !== null) {
    let schema: unknown = body.guided_json;
    if (typeof schema === "string") {
      try {
        schema = JSON.parse(schema);
      } catch {
        schema = undefined;
      }
    }
    if (!isObject(schema)) {
      throw badRequest(
        "guided_json",
        "guided_json must be a JSON schema (an object or its JSON text).",
      );
    }
    return { value: { jsonSchema: schema }, field: "guided_json" };
  }
  const format = body.response_format;
  if (format === undefined || format === null) return undefined;
  const type = isObject(format) ? format.type : undefined;
  if (type === "text") return undefined;
  if (type === "json_object") return { value: "json_object", field: "response_format" };
  if (type === "json_schema") {
    const spec = (format as Json).json_schema;
    if (!isObject(spec) || spec.schema === undefined) {
      throw badRequest(
        "response_format",
        'response_format {"type": "json_schema"} needs "json_schema": {"name": …, "schema": {…}}.',
      );
    }
    return { value: { jsonSchema: spec.schema }, field: "response_format" };
  }
  throw badRequest(
    "response_format",
    'response_format must be {"type": "text"}, {"type": "json_object"} or {"type": ' +
      `"json_schema", "json_schema": {…}}; got ${JSON.stringify(format)}.`,
    "invalid_value",
  );
}

/**
 * The sampling, length and streaming fields both endpoints take; `tools` (chat) may hold the
 * answer to their schemas in place of a response format.
 */
function parseSampling(
  body: Json,
  limits: RequestLimits,
  { chat = false, tools }: { chat?: boolean; tools?: ToolRequest } = {},
): Pick<
  ChatRequest,
  "options" | "stream" | "includeUsage" | "continuousUsage" | "n" | "formatField"
> {
  refuseUnsupported(body, { withTools: chat });
  const n = optionalNumber(body, "n", { integer: true, min: 1, max: MAX_CHOICES }) ?? 1;
  const maxTokens = optionalNumber(body, "max_tokens", {
    integer: true,
    min: 1,
    max: MAX_NEW_TOKENS_LIMIT,
  });
  const maxCompletion = optionalNumber(body, "max_completion_tokens", {
    integer: true,
    min: 1,
    max: MAX_NEW_TOKENS_LIMIT,
  });
  const stream = optionalBoolean(body, "stream") ?? false;
  const streamOptions = body.stream_options;
  if (streamOptions !== undefined && streamOptions !== null) {
    if (!stream) {
      throw badRequest("stream_options", "stream_options is only allowed when stream is true.");
    }
    if (!isObject(streamOptions)) {
      throw badRequest("stream_options", "stream_options must be an object.", "invalid_type");
    }
  }
  const topK = optionalNumber(body, "top_k", { integer: true, min: -1, max: 2 ** 31 - 1 });
  const seed = optionalNumber(body, "seed", { integer: true, min: -1 });
  const ignoreEos = optionalBoolean(body, "ignore_eos");
  let format = parseResponseFormat(body);
  // A forced call (tool_choice "required" or a named function) is this turn's answer: it holds
  // the answer, not a response format sent beside it (for the turn after the call), as OpenAI
  // answers and vLLM's tool parsers rule.
  if (tools?.schema) format = { value: { jsonSchema: tools.schema }, field: "tools" };
  const responseFormat = format?.value;
  const includeUsage = isObject(streamOptions) &&
    (optionalBoolean(streamOptions, "include_usage", "stream_options.include_usage") ?? false);
  // vLLM's: checked either way, acted on only with include_usage (as vLLM does).
  const continuous = isObject(streamOptions) &&
    optionalBoolean(
        streamOptions,
        "continuous_usage_stats",
        "stream_options.continuous_usage_stats",
      ) === true;
  const options: ChatRequest["options"] = {
    maxNewTokens: maxCompletion ?? maxTokens,
    temperature: optionalNumber(body, "temperature", { min: 0, max: 2 }),
    topP: optionalNumber(body, "top_p", { min: 0, max: 1, exclusiveMin: true }),
    minP: optionalNumber(body, "min_p", { min: 0, max: 1 }),
    minTokens: optionalNumber(body, "min_tokens", {
      integer: true,
      min: 0,
      max: MAX_NEW_TOKENS_LIMIT,
    }),
    // The engine's ranges (generate/options.ts resolveOptions), checked here so they are 400s
    // naming the field even for a request that would first wait in the queue.
    topK: topK === -1 ? 0 : topK, // vLLM's -1 for "off": the module's 0
    repetitionPenalty: optionalNumber(body, "repetition_penalty", { min: 0.01, max: 100 }),
    frequencyPenalty: optionalNumber(body, "frequency_penalty", { min: -2, max: 2 }),
    presencePenalty: optionalNumber(body, "presence_penalty", { min: -2, max: 2 }),
    logitBias: parseLogitBiasField(body),
    ...parseLogprobs(body),
    seed: seed === -1 ? undefined : seed, // llama.cpp's -1: a random seed, as none
    stop: parseStop(body),
    stopTokenIds: parseStopTokenIds(body),
    ignoreEos,
    // ignore_eos asks for answers of exactly max_tokens (vLLM's benchmarks send it): the loop
    // stop, on by default here, would cut them short; and an answer held to a format (JSON) it
    // would end unfinished with finish_reason "stop", which clients take for a whole one.
    stopOnLoop: optionalBoolean(body, "stop_on_loop") ??
      (ignoreEos || responseFormat ? false : limits.stopOnLoop),
    responseFormat,
  };
  // Leave unset fields out, so the engine's defaults (generation_config.json) apply.
  for (const key of Object.keys(options) as (keyof typeof options)[]) {
    if (options[key] === undefined) delete options[key];
  }
  return {
    options,
    stream,
    includeUsage,
    ...(includeUsage && continuous ? { continuousUsage: true as const } : {}),
    n,
    ...(format ? { formatField: format.field } : {}),
  };
}

/** Throws a 400 naming the first frame whose size differs from frame 0's. */
function checkFrameSizes(
  sizes: readonly { width: number; height: number }[],
  part: { frames: { param: string }[] },
): void {
  const { width: w, height: h } = sizes[0];
  const k = otherSizedFrame(sizes);
  if (k > 0) {
    const at = part.frames[k].param;
    throw badRequest(
      at,
      `${at}: the frame is ${sizes[k].width}x${sizes[k].height} pixels but frame 0 is ${w}x${h}; ` +
        "every frame of a video must have the same size.",
    );
  }
}

/** An image's bytes and its size from their headers (nothing decoded yet). */
interface Sized {
  bytes: Uint8Array;
  width: number;
  height: number;
}

/** Fetches an image's bytes and reads its size from their headers: a 400 where they do not read. */
async function sizedImage(
  url: string,
  param: string,
  policy: ImagePolicy,
  signal: AbortSignal | undefined,
): Promise<Sized> {
  const bytes = await loadImage(url, param, policy, signal);
  try {
    return { bytes, ...await imageSize(bytes) };
  } catch (e) {
    if (!(e instanceof InvalidInputError)) throw e;
    throw badRequest(param, `${param}: ${e.message}`, "invalid_image");
  }
}

/**
 * The messages with each image part (each video frame) as `load` makes it, in order; a video's
 * frames checked to be of one size.
 */
function mapImages(
  messages: RequestMessage[],
  load: (
    p: { url: string; param: string },
  ) => Promise<{ image: Uint8Array | DecodedImage } & ImageSize>,
): Promise<ChatMessage[]> {
  return Promise.all(messages.map(async ({ role, content, ...tool }): Promise<ChatMessage> => {
    if (typeof content === "string") return { role, content, ...tool };
    const parts = await Promise.all(
      content.map(async (part): Promise<ContentPart> => {
        if (part.type === "text") return part;
        if (part.type === "image_url") return { type: "image", image: (await load(part)).image };
        const frames = await Promise.all(part.frames.map(load));
        checkFrameSizes(frames, part);
        const { minPixels, maxPixels } = part;
        return {
          type: "video",
          video: frames.map((f) => f.image),
          ...(minPixels !== undefined ? { minPixels } : {}),
          ...(maxPixels !== undefined ? { maxPixels } : {}),
        };
      }),
    );
    return { role, content: parts, ...tool };
  }));
}

/** The size of each image {@link loadMessages} loaded, by the object its message holds. */
const SIZES = new WeakMap<object, ImageSize>();

/**
 * The sizes of the images (a video's frames) of messages from {@link loadMessages}, in prompt
 * order, as the engine's checkChat and tokenize take them in place of the images themselves;
 * undefined where an image did not come from there.
 */
export function imageSizes(messages: readonly ChatMessage[]): ImageSize[] | undefined {
  const sizes = collectImages(messages).map((x) => SIZES.get(isVideo(x) ? x.frames[0] : x));
  return sizes.every((s) => s !== undefined) ? sizes as ImageSize[] : undefined;
}

/**
 * Validated messages with each image as its bytes, its size read from their headers (nothing
 * decoded): what counting a prompt's tokens needs (vLLM's /tokenize), and {@link loadMessages}'
 * first step. A 400 where an image cannot be fetched or its headers do not read.
 */
export function sizeMessages(
  messages: RequestMessage[],
  policy: ImagePolicy,
  signal?: AbortSignal,
): Promise<ChatMessage[]> {
  return sizedMessages(messages, policy, signal, new Map());
}

function sizedMessages(
  messages: RequestMessage[],
  policy: ImagePolicy,
  signal: AbortSignal | undefined,
  sized: Map<string, Sized>,
): Promise<ChatMessage[]> {
  return mapImages(messages, async (p) => {
    const s = await sizedImage(p.url, p.param, policy, signal);
    sized.set(p.param, s);
    SIZES.set(s.bytes, { width: s.width, height: s.height });
    return { image: s.bytes, ...s };
  });
}

/**
 * Fetches or decodes every image of validated messages, in order, and checks that each decodes
 * (a bad image is a 400 here, before the request waits in the queue). First every image's bytes
 * and its size from their headers, which `precheck` (if given) sees — the messages with the
 * images' bytes, and their sizes — so a request the engine refuses (its images over the context)
 * is refused before any is decoded (32 photos of 8000 x 8000 had taken 7 GB and 20 s to be
 * refused); then each is decoded (none once `signal` aborts). Each image is then its decoded
 * pixels where `pixels()` says so — the request will run at once, and the engine need not decode
 * it again — else its bytes (a request that waits holds the smaller form).
 */
export async function loadMessages(
  messages: RequestMessage[],
  policy: ImagePolicy,
  signal?: AbortSignal,
  pixels: () => boolean = () => false,
  precheck?: (messages: ChatMessage[], sizes: ImageSize[]) => Promise<void>,
): Promise<ChatMessage[]> {
  const sized = new Map<string, Sized>(); // by param: one a part or frame
  const headers = await sizedMessages(messages, policy, signal, sized);
  if (precheck) await precheck(headers, imageSizes(headers) ?? []);
  return await mapImages(messages, async (p) => {
    const { bytes } = sized.get(p.param)!;
    signal?.throwIfAborted();
    const decoded = await checkDecodes(bytes, p.param, policy.decode);
    const { width, height } = decoded;
    const image = pixels() ? decoded : bytes;
    SIZES.set(image, { width, height });
    return { image, width, height };
  });
}
