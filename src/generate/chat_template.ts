/**
 * The model's own jinja chat template (chat_template.json, chat_template.jinja or
 * tokenizer_config.json's `chat_template`), rendered the way transformers' `apply_chat_template` does: messages in, prompt
 * text out, one `<|vision_start|><|image_pad|><|vision_end|>` per image.
 * @module
 */
import { Template } from "@huggingface/jinja";
import { InvalidInputError, ModelFileError, NoChatTemplateError } from "../errors.ts";
import { preview } from "../errors.ts";
import { MAX_VIDEO_FRAMES, type VideoInput } from "../image.ts";
import type { ChatMessage, ContentPart, ToolCall } from "./types.ts";

const ROLES = new Set(["system", "user", "assistant", "tool"]);
/** The raw template file transformers 5's `save_pretrained` writes. */
export const JINJA_FILE = "chat_template.jinja";

/** Options of {@link ChatTemplate.render}. */
export interface RenderOptions {
  /** Append the assistant header so the model answers (default true). */
  addGenerationPrompt?: boolean;
  /** Qwen2-VL templates: prefix each image with "Picture N: " (default false, as transformers). */
  addVisionId?: boolean;
  /**
   * The last message (usually the assistant's answer begun) is to be continued: the prompt ends
   * with its text (no end-of-turn after it, no new assistant header) — transformers' and vLLM's
   * `continue_final_message`. Needs addGenerationPrompt false or unset.
   */
  continueFinalMessage?: boolean;
  /**
   * More variables for the template (vLLM's and transformers' `chat_template_kwargs`, e.g.
   * `{ enable_thinking: false }` for templates that read it); the template's own (messages,
   * add_generation_prompt, the special tokens) win over them.
   */
  templateKwargs?: Readonly<Record<string, unknown>>;
}

/**
 * A compiled chat template.
 *
 * @example
 * ```ts
 * import { ChatTemplate } from "./chat_template.ts";
 * const t = new ChatTemplate(
 *   "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}" +
 *     "{% if add_generation_prompt %}<|assistant|>{% endif %}",
 * );
 * console.assert(t.render([{ role: "user", content: "hi" }]) === "<|user|>hi<|assistant|>");
 * ```
 */
export class ChatTemplate {
  /** The jinja text. */
  readonly source: string;
  readonly #template: Template;
  readonly #specialTokens: Record<string, string>;
  #defaultSystem?: { text: string | undefined };

  /**
   * Parses the template (throws ModelFileError naming `file` when it does not parse).
   * @param source the jinja text
   * @param specialTokens `bos_token`, `eos_token`, … as the template may reference them
   */
  constructor(source: string, specialTokens: Record<string, string> = {}, file = "chat template") {
    this.source = source;
    this.#specialTokens = specialTokens;
    try {
      this.#template = new Template(source);
    } catch (e) {
      throw new ModelFileError(
        `${file}: the chat template does not parse: ${(e as Error).message}`,
      );
    }
  }

  /**
   * Builds the template from the model directory's files (the JSON ones already decoded), in
   * the order transformers' processor takes them: a `chat_template` in processor_config.json
   * (transformers 5 warns, and uses it), chat_template.json, then the raw chat_template.jinja
   * (what `save_pretrained` writes since transformers 5), then tokenizer_config.json's
   * `chat_template` (the tokenizer's, which vLLM falls back to). Throws NoChatTemplateError when
   * none has one ({@link findInConfigs} returns undefined then).
   */
  static fromConfigs(
    chatTemplateJson: unknown,
    tokenizerConfig: unknown,
    jinja?: string,
    processorConfig?: unknown,
  ): ChatTemplate {
    const t = ChatTemplate.findInConfigs(chatTemplateJson, tokenizerConfig, jinja, processorConfig);
    if (!t) throw noChatTemplate();
    return t;
  }

  /**
   * The template of the model directory's files, as {@link fromConfigs} finds it, or undefined
   * where none has one (a base model's dump: raw prompts only). Throws ModelFileError for one that
   * is there but does not parse.
   */
  static findInConfigs(
    chatTemplateJson: unknown,
    tokenizerConfig: unknown,
    jinja?: string,
    processorConfig?: unknown,
  ): ChatTemplate | undefined {
    const special = specialTokensOf(tokenizerConfig);
    const fromPc = pickTemplate(processorConfig, "processor_config.json");
    if (fromPc !== undefined) return new ChatTemplate(fromPc, special, "processor_config.json");
    const fromCt = pickTemplate(chatTemplateJson, "chat_template.json");
    if (fromCt !== undefined) return new ChatTemplate(fromCt, special, "chat_template.json");
    if (jinja !== undefined) return new ChatTemplate(jinja, special, JINJA_FILE);
    const fromTc = pickTemplate(tokenizerConfig, "tokenizer_config.json");
    if (fromTc !== undefined) return new ChatTemplate(fromTc, special, "tokenizer_config.json");
    return undefined;
  }

  /**
   * The system message the template writes where a conversation has none — Qwen2-VL's "You are a
   * helpful assistant.", QVQ-72B-Preview's "You are a helpful and harmless assistant. You are
   * Qwen developed by Alibaba. You should think step-by-step." — or undefined where it writes
   * none. Found by rendering one user message with a system message of its own and without: the
   * text the second has where the first has the given one.
   *
   * @example
   * ```ts
   * import { ChatTemplate } from "./chat_template.ts";
   * const t = new ChatTemplate(
   *   "{% for m in messages %}{% if loop.first and m.role != 'system' %}<|system|>Be kind." +
   *     "{% endif %}<|{{ m.role }}|>{{ m.content }}{% endfor %}",
   * );
   * console.assert(t.defaultSystemPrompt === "Be kind.");
   * ```
   */
  get defaultSystemPrompt(): string | undefined {
    this.#defaultSystem ??= { text: this.#findDefaultSystem() };
    return this.#defaultSystem.text;
  }

  #findDefaultSystem(): string | undefined {
    const user: ChatMessage = { role: "user", content: "\u2063user\u2063" };
    let given: string, none: string;
    try {
      given = this.render([{ role: "system", content: DEFAULT_SYSTEM_MARK }, user], {
        addGenerationPrompt: false,
      });
      none = this.render([user], { addGenerationPrompt: false });
    } catch {
      return undefined; // a template that refuses either conversation has no default to find
    }
    const at = given.indexOf(DEFAULT_SYSTEM_MARK);
    if (at < 0) return undefined;
    const [before, after] = [given.slice(0, at), given.slice(at + DEFAULT_SYSTEM_MARK.length)];
    // The default written where the given one is, between the same text before and after.
    if (
      none.length < before.length + after.length || !none.startsWith(before) ||
      !none.endsWith(after)
    ) {
      return undefined;
    }
    return none.slice(before.length, none.length - after.length);
  }

  /** Renders `messages` (validated) to the prompt text. Images become the template's image placeholders. */
  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    validateMessages(messages);
    const cont = options.continueFinalMessage ?? false;
    if (cont && options.addGenerationPrompt) {
      throw new InvalidInputError(
        "continueFinalMessage continues the last message: it cannot also add a generation prompt",
      );
    }
    const readsCalls = this.source.includes("tool_calls");
    const msgs = messages.map((m) => templateMessage(m, readsCalls));
    if (cont) markFinal(msgs);
    let text: string;
    try {
      text = this.#template.render({
        ...options.templateKwargs,
        ...this.#specialTokens,
        messages: msgs,
        add_generation_prompt: !cont && (options.addGenerationPrompt ?? true),
        // A caller's chat_template_kwargs may set it too (vLLM passes them through).
        add_vision_id: options.addVisionId ?? options.templateKwargs?.add_vision_id ?? false,
      });
    } catch (e) {
      // includes the template's own raise_exception('...')
      throw new InvalidInputError(
        `the chat template failed on these messages: ${(e as Error).message}`,
      );
    }
    if (!cont) return text;
    // As transformers: the text up to the mark, which the template wrote where the final
    // message's text ends (less the spaces it trims there).
    const at = text.lastIndexOf(FINAL_MARK.trim());
    if (at < 0) {
      throw new InvalidInputError(
        "continueFinalMessage: the chat template does not write the final message's text, so it " +
          "cannot be continued",
      );
    }
    return text.slice(at, at + FINAL_MARK.length) === FINAL_MARK
      ? text.slice(0, at)
      : text.slice(0, at).trimEnd();
  }
}

/**
 * A message as the template reads it: images as placeholders; a tool message's `tool_call_id`;
 * an assistant's tool calls as OpenAI's `tool_calls` (arguments parsed, as vLLM hands them to
 * templates) where the template reads them, else written after its text as {@link toolCallsText}
 * — so a template without a tool format (Qwen2-VL's) still shows the model what it called.
 */
function templateMessage(m: ChatMessage, readsCalls: boolean): TemplateMessage {
  let content: TemplateMessage["content"] = typeof m.content === "string"
    ? m.content
    : m.content.map((p) => (p.type === "text" ? { type: "text", text: p.text } : { type: p.type }));
  const out: TemplateMessage = { role: m.role, content };
  if (m.toolCallId !== undefined) out.tool_call_id = m.toolCallId;
  if (!m.toolCalls?.length) return out;
  if (readsCalls) {
    out.tool_calls = m.toolCalls.map((c) => ({
      ...(c.id !== undefined ? { id: c.id } : {}),
      type: "function",
      function: { name: c.name, arguments: parsedOr(c.arguments) },
    }));
    return out;
  }
  const calls = toolCallsText(m.toolCalls);
  if (typeof content === "string") content = content ? `${content}\n${calls}` : calls;
  else content = [...content, { type: "text", text: content.length ? `\n${calls}` : calls }];
  return { ...out, content };
}

interface TemplateMessage {
  role: string;
  content: string | { type: string; text?: string }[];
  tool_call_id?: string;
  tool_calls?: object[];
}

/** JSON text as its value; other text as it is. */
function parsedOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Tool calls as the text a server's `tool_choice: "required"` has the model write:
 * `[{"name": "f", "parameters": {…}}]`, each call's arguments as given (quoted as a string where
 * they are not JSON).
 */
function toolCallsText(calls: readonly ToolCall[]): string {
  const one = (c: ToolCall) => {
    const args = parsedOr(c.arguments) === c.arguments ? JSON.stringify(c.arguments) : c.arguments;
    return `{"name": ${JSON.stringify(c.name)}, "parameters": ${args}}`;
  };
  return `[${calls.map(one).join(", ")}]`;
}

/**
 * The error for chat messages given to a model without a chat template: what is missing, and the
 * two ways on (add a template, or send a raw prompt, which needs none).
 */
export function noChatTemplate(): NoChatTemplateError {
  return new NoChatTemplateError(
    `the model has no chat template (none of chat_template.json, ${JINJA_FILE} or ` +
      `tokenizer_config.json's "chat_template" exists), so chat messages cannot be made into a ` +
      `prompt: add one of them to the model directory, or send a raw prompt, which needs none ` +
      `(Pipeline.complete, POST /v1/completions, qvq generate --raw)`,
  );
}

/** A system message's text no template writes itself ({@link ChatTemplate.defaultSystemPrompt}). */
const DEFAULT_SYSTEM_MARK = "\u2063system\u2063";

/** transformers' continue_final_message tag, appended to the final message's text to find its end. */
const FINAL_MARK = "CONTINUE_FINAL_MESSAGE_TAG ";

/** Appends {@link FINAL_MARK} to the last message's last text (as transformers). */
function markFinal(msgs: { content: string | { type: string; text?: string }[] }[]): void {
  const last = msgs[msgs.length - 1];
  if (typeof last.content === "string") {
    last.content += FINAL_MARK;
    return;
  }
  const at = last.content.findLastIndex((p) => p.type === "text");
  if (at < 0) {
    throw new InvalidInputError("continueFinalMessage: the final message has no text to continue");
  }
  if (at < last.content.length - 1) {
    // Cut after the text, the image's placeholder would be lost while its pixels are not.
    throw new InvalidInputError(
      `continueFinalMessage continues the final message's text, but messages[${
        msgs.length - 1
      }].content[${at + 1}] (an image) comes after it: put its images before the text`,
    );
  }
  last.content[at].text += FINAL_MARK;
}

/**
 * The images and videos of `messages`, in prompt order (the order of their placeholders): an
 * image as it is, a video as its frames ({@link VideoInput}).
 */
export function collectImages(messages: readonly ChatMessage[]): (ContentImage | VideoInput)[] {
  const out: (ContentImage | VideoInput)[] = [];
  for (const m of messages) {
    if (typeof m.content === "string") continue;
    for (const p of m.content) {
      if (p.type === "image") out.push(p.image);
      else if (p.type === "video") {
        out.push({ frames: p.video, minPixels: p.minPixels, maxPixels: p.maxPixels });
      }
    }
  }
  return out;
}

/** Throws InvalidInputError naming the first malformed message or part. */
export function validateMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new InvalidInputError(`messages must be a non-empty array, got ${preview(messages)}`);
  }
  messages.forEach((m, i) => {
    if (m === null || typeof m !== "object") {
      throw new InvalidInputError(`messages[${i}] must be an object, got ${preview(m)}`);
    }
    if (!ROLES.has(m.role)) {
      throw new InvalidInputError(
        `messages[${i}].role must be "system", "user", "assistant" or "tool", got ${
          preview(m.role)
        }`,
      );
    }
    validateToolFields(m, i);
    if (typeof m.content === "string") return;
    if (!Array.isArray(m.content)) {
      throw new InvalidInputError(
        `messages[${i}].content must be a string or an array of parts, got ${preview(m.content)}`,
      );
    }
    (m.content as ContentPart[]).forEach((p, j) => {
      const where = `messages[${i}].content[${j}]`;
      if (p?.type === "text") {
        if (typeof p.text !== "string") {
          throw new InvalidInputError(`${where}.text must be a string, got ${preview(p.text)}`);
        }
      } else if (p?.type === "image") {
        const fault = imageFault(p.image);
        if (fault) throw new InvalidInputError(`${where}.image ${fault}`);
      } else if (p?.type === "video") {
        const frames: unknown = p.video;
        if (!Array.isArray(frames) || frames.length === 0 || frames.length > MAX_VIDEO_FRAMES) {
          throw new InvalidInputError(
            `${where}.video must be the video's frames, an array of 1 to ${MAX_VIDEO_FRAMES} ` +
              `images of one size, got ${
                Array.isArray(frames) ? `${frames.length} frames` : preview(frames)
              }`,
          );
        }
        frames.forEach((f, k) => {
          const fault = imageFault(f);
          if (fault) throw new InvalidInputError(`${where}.video[${k}] ${fault}`);
        });
      } else {
        throw new InvalidInputError(
          `${where}.type must be "text", "image" or "video", got ${
            preview((p as { type?: unknown })?.type)
          }`,
        );
      }
    });
  });
}

/** An image as a content part holds it: encoded bytes, or decoded pixels. */
type ContentImage = Extract<ContentPart, { type: "image" }>["image"];

/**
 * What is wrong with `x` as an image a content part may hold — non-empty bytes, or pixels whose
 * `data` holds width × height RGB triples (sizes the preprocessor refuses are its to refuse) —
 * or undefined where nothing is.
 */
function imageFault(x: unknown): string | undefined {
  const what = "must be the image file's bytes (a non-empty Uint8Array) or its decoded pixels " +
    "({ width, height, data: (height, width, 3) RGB Uint8Array })";
  if (x instanceof Uint8Array) return x.length > 0 ? undefined : what;
  if (x === null || typeof x !== "object") return what;
  const { width, height, data } = x as Record<string, unknown>;
  const size = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
  if (!size(width) || !size(height) || !ArrayBuffer.isView(data)) return what;
  if (!(data instanceof Uint8Array)) {
    return `${what}; its data is a ${data.constructor.name} (a canvas's ImageData is RGBA in a ` +
      "Uint8ClampedArray: copy its R, G and B bytes into a Uint8Array)";
  }
  const want = width * height * 3;
  if (data.length === want) return undefined;
  const rgba = data.length === width * height * 4 ? " (4 bytes a pixel: RGBA? drop the A)" : "";
  return `${what}; its data has ${data.length} bytes, not width × height × 3 = ${want}${rgba}`;
}

/** A message's toolCalls (assistant messages only) and toolCallId (tool messages only). */
function validateToolFields(m: ChatMessage, i: number): void {
  if (m.toolCallId !== undefined && (m.role !== "tool" || typeof m.toolCallId !== "string")) {
    throw new InvalidInputError(
      `messages[${i}].toolCallId must be a string on a "tool" message, got ${
        preview(m.toolCallId)
      } on a "${m.role}" one`,
    );
  }
  if (m.toolCalls === undefined) return;
  if (m.role !== "assistant" || !Array.isArray(m.toolCalls)) {
    throw new InvalidInputError(
      `messages[${i}].toolCalls must be an array on an "assistant" message, got ${
        preview(m.toolCalls)
      } on a "${m.role}" one`,
    );
  }
  m.toolCalls.forEach((c, j) => {
    const ok = c !== null && typeof c === "object" && typeof c.name === "string" &&
      c.name !== "" && typeof c.arguments === "string" &&
      (c.id === undefined || typeof c.id === "string");
    if (!ok) {
      throw new InvalidInputError(
        `messages[${i}].toolCalls[${j}] must be { name: <non-empty string>, arguments: ` +
          `<JSON text>, id?: <string> }, got ${preview(c)}`,
      );
    }
  });
}

function pickTemplate(json: unknown, file: string): string | undefined {
  if (json === undefined || json === null) return undefined;
  if (typeof json !== "object") {
    throw new ModelFileError(`${file}: expected a JSON object, got ${preview(json)}`);
  }
  const t = (json as Record<string, unknown>).chat_template;
  if (t === undefined || t === null) return undefined;
  if (typeof t === "string") return t;
  // tokenizer_config.json may list named templates: [{name: "default", template: "..."}, ...]
  if (Array.isArray(t)) {
    const named = t.find((x) => x?.name === "default") ?? t[0];
    if (typeof named?.template === "string") return named.template;
  }
  throw new ModelFileError(`${file}: "chat_template" must be a string, got ${preview(t)}`);
}

function specialTokensOf(tokenizerConfig: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (tokenizerConfig === null || typeof tokenizerConfig !== "object") return out;
  for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
    const v = (tokenizerConfig as Record<string, unknown>)[key];
    // a string, or an AddedToken object {content: "..."}
    const s = typeof v === "string" ? v : (v as { content?: unknown })?.content;
    if (typeof s === "string") out[key] = s;
  }
  return out;
}
