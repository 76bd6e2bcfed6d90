/**
 * The types that connect generation to its callers (the module API, the server, the CLI).
 * @module
 */
import type { DecodedImage, ImageSize } from "../image.ts";
import type { QuantDType, WeightDType } from "../gpu/tensor.ts";

/**
 * One part of a message's content. An image is its file's bytes (PNG, JPEG or WebP), or pixels
 * already decoded (a {@link DecodedImage}: from decodeImage(), a canvas, a video frame), which
 * are not decoded again. A video is its frames in order, images of one size (as Qwen2-VL's
 * model card gives a video as a list of frames; video files are not decoded here): every frame
 * is used, two frames a temporal patch.
 */
export type ContentPart =
  | { type: "text"; text: string }
  | { type: "image"; image: Uint8Array | DecodedImage }
  | {
    type: "video";
    video: readonly (Uint8Array | DecodedImage)[];
    /** Bounds on a frame's resized area in pixels, in place of the model's (see VideoInput). */
    minPixels?: number;
    maxPixels?: number;
  };

/** A chat message. `content` as a string is one text part. */
export interface ChatMessage {
  /** Who speaks; "tool" carries a tool's result back (OpenAI's tool messages). */
  role: "system" | "user" | "assistant" | "tool";
  /** The text, or text, image and video parts in order. */
  content: string | ContentPart[];
  /**
   * Assistant messages: the tools it called (OpenAI's `tool_calls`). A chat template that reads
   * `tool_calls` renders them its way; for one that does not (Qwen2-VL's), they are written after
   * the content as the JSON a tool call is generated as (see ToolCall).
   */
  toolCalls?: ToolCall[];
  /** Tool messages: the id of the call this is the result of (OpenAI's `tool_call_id`). */
  toolCallId?: string;
}

/** A call of a tool, as an assistant message records it. */
export interface ToolCall {
  /** The call's id (OpenAI's `call_…`), which the tool message answering it repeats. */
  id?: string;
  /** The function's name. */
  name: string;
  /** Its arguments: JSON text, as the model wrote it. */
  arguments: string;
}

/** Sampling and stopping options; unset fields come from the model's generation_config.json. */
export interface GenerateOptions {
  /**
   * Most tokens to generate (1..8192; more than the context holds beside the prompt is an error),
   * or Infinity: as many as it holds, up to 8192. Default: generation_config.json's
   * `max_new_tokens`, else 2048 — lowered to what the context holds.
   */
  maxNewTokens?: number;
  /**
   * vLLM's min_tokens: the answer's first this many tokens cannot end it — the stop ids (eos,
   * also with ignoreEos, and `stopTokenIds`) are held back on the GPU, and a stop string (one
   * begun earlier too) or the loop stop ends it from the next token on, as vLLM v1. 0 (default)
   * ..= maxNewTokens and what the context leaves after the prompt.
   */
  minTokens?: number;
  /** 0 = greedy. */
  temperature?: number;
  /** Nucleus sampling: the smallest most likely set of tokens whose probability reaches p. */
  topP?: number;
  /** Keep only the k most likely tokens (0: all). */
  topK?: number;
  /**
   * Min-p sampling: keep only the tokens at least this fraction as likely as the most likely one
   * (vLLM's and llama.cpp's min_p), applied after top-k and top-p as transformers'
   * MinPLogitsWarper is — vLLM applies it before them, which differs where top-p also cuts
   * (min-p and top-k cut from the same maximum). 0..1, 0: off.
   */
  minP?: number;
  /** Penalty on tokens already in the context, as transformers' repetition_penalty (1: none). */
  repetitionPenalty?: number;
  /**
   * Subtracted from a token's score once for every time this answer generated it (OpenAI's and
   * vLLM's frequency_penalty; the prompt does not count). -2..2, 0: none.
   */
  frequencyPenalty?: number;
  /**
   * Subtracted once from every token this answer generated so far (OpenAI's presence_penalty; Qwen
   * suggests 0–2 against endless repetition in its reasoning models). -2..2, 0: none.
   */
  presencePenalty?: number;
  /**
   * OpenAI's logit_bias: token id → bias in [−100, 100], added to that token's logit before the
   * penalties and the temperature (−100 bans it, 100 all but forces it). At most 300 tokens.
   */
  logitBias?: Readonly<Record<number, number>>;
  /**
   * Report each generated token's log probability: log_softmax of the model's raw logits, before
   * penalties and temperature (vLLM's default), on the delta events and the final record.
   */
  logprobs?: boolean;
  /** With `logprobs`: also this many most likely tokens at each position (0..20). */
  topLogprobs?: number;
  /**
   * Score the prompt itself (vLLM's prompt_logprobs; /v1/completions' echo with logprobs): every
   * prompt token's log probability given the tokens before it, and this many most likely tokens
   * at its position (0..20), on a first delta before the answer and on the result (`prompt`). It
   * runs the lm_head over every prompt row and the whole prompt (the prompt cache serves none).
   */
  promptLogprobs?: number;
  /**
   * Chat messages only: continue the last message — usually the assistant's answer begun (a
   * prefill) — rather than answer after it; its text is not repeated in the answer (vLLM's and
   * transformers' `continue_final_message`). Default false: the answer is a new assistant turn.
   */
  continueFinalMessage?: boolean;
  /**
   * Chat messages only: more variables for the chat template (vLLM's `chat_template_kwargs`,
   * e.g. `{ add_vision_id: true }`, which Qwen2-VL's reads: "Picture 1: " before each image).
   */
  chatTemplateKwargs?: Readonly<Record<string, unknown>>;
  /**
   * Put the prompt's text on a first delta before the answer and on the result (`prompt`; OpenAI's
   * `echo`): a raw prompt's as given to `complete()` (token ids decoded; with `promptLogprobs`,
   * its tokens' text, which the tokenizer's NFC normalisation may change), a chat's as the model
   * reads it (the template's text, special tokens and image pads included).
   */
  echo?: boolean;
  /** Same seed, same options, same prompt → same text. */
  seed?: number;
  /** Strings that end the answer (not included in it). */
  stop?: string[];
  /**
   * Token ids that end the answer too, beside the model's end-of-sequence ids (vLLM's
   * stop_token_ids; not included in it). At most 64.
   */
  stopTokenIds?: number[];
  /**
   * Do not end at the model's end-of-sequence ids (vLLM's ignore_eos: answers of a fixed length,
   * for benchmarks); `stopTokenIds` and `stop` still end it.
   */
  ignoreEos?: boolean;
  /** Stop with finishReason "loop" when the text keeps repeating itself. */
  stopOnLoop?: boolean;
  /**
   * What the answer is held to, a token at a time, masked on the GPU at about the decode speed
   * without it; it ends (an end-of-sequence or stop id) only once whole — before, a stop id that
   * is text is text, where the format allows it — so an answer not cut short by `maxNewTokens` or
   * a stop string is what was asked for:
   * - `"json_object"`: JSON mode (OpenAI's `response_format`) — a JSON object, any object;
   * - `{ jsonSchema }`: structured outputs (OpenAI's `json_schema`, vLLM's guided_json) — an
   *   instance of the schema, its properties in the schema's order (src/generate/json_schema.ts
   *   lists the keywords supported; others are refused); with `freeAfter`, or any text that
   *   begins with it (the server's tool calls beside a format: the answer is the format's, or
   *   calls), free up to `freeUntil` where given (the calls' results), then held again (a ":"
   *   and a space optional after it); a continued final message is held from its last
   *   `freeAfter` on;
   * - `{ choice }`: exactly one of the strings (vLLM's guided_choice);
   * - `{ regex }`: a match of the pattern, whole (vLLM's guided_regex; the syntax:
   *   src/generate/json_schema.ts regexDfa);
   * - `"text"` (default): nothing.
   * Say in the prompt what to write, too: the model is held to the form, not told the content.
   * @example
   * ```ts ignore
   * const r = await pipe.chat(messages, {
   *   responseFormat: { jsonSchema: { type: "object", properties: { count: { type: "integer" } },
   *     required: ["count"] } },
   * });
   * const { count } = JSON.parse(r.text);
   * ```
   */
  responseFormat?:
    | "text"
    | "json_object"
    | { jsonSchema: unknown; freeAfter?: string; freeUntil?: string }
    | { choice: string[] }
    | { regex: string };
  /**
   * Cancels generation (also while queued or prefilling). Its KV cache goes to the prompt cache,
   * like a finished one's, or is freed without one.
   */
  signal?: AbortSignal;
}

/** A token at a generated position and its log probability. */
export interface TopLogprob {
  /** The token's text alone (U+FFFD where it holds part of a character). */
  token: string;
  /** The token's id. */
  id: number;
  /** log_softmax of the model's raw logits at this position. */
  logprob: number;
  /** The token's exact UTF-8 bytes (a character may span tokens). */
  bytes: number[];
}

/** A generated token's log probability, and the most likely tokens at its position. */
export interface TokenLogprob extends TopLogprob {
  /** `topLogprobs` entries, most likely first (the lower id on ties). */
  topLogprobs: TopLogprob[];
}

/** A prompt token and, from the second on, its log probability given the tokens before it. */
export interface PromptTokenLogprob extends Omit<TokenLogprob, "logprob"> {
  /**
   * log_softmax of the raw logits of the position before it; null for the first token (nothing
   * predicts it: its `topLogprobs` are empty).
   */
  logprob: number | null;
}

/** The prompt, echoed (`echo`) and scored (`promptLogprobs`). */
export interface PromptEcho {
  /** With `echo`: the prompt's text. */
  text?: string;
  /**
   * With `promptLogprobs`: one entry per prompt token, in order (special tokens by their text,
   * e.g. "<|im_start|>").
   */
  logprobs?: PromptTokenLogprob[];
}

/** Why generation ended. */
export type FinishReason = "stop" | "length" | "loop" | "abort";

/** The record that ends a stream. */
export interface GenerationResult {
  /** Why the generation ended. */
  finishReason: FinishReason;
  /**
   * What ended a "stop" answer, where the caller asked for it (vLLM's stop_reason): the stop
   * string (from `stop`), or the id (from `stopTokenIds`); absent for an end-of-sequence id.
   */
  stopReason?: string | number;
  /** The full generated text (without the stop string). */
  text: string;
  /**
   * Token counts. `cachedTokens`: prompt tokens whose prefill the prompt cache skipped (the start
   * the prompt shares with the previous generation; OpenAI's `prompt_tokens_details.cached_tokens`).
   */
  usage: {
    promptTokens: number;
    completionTokens: number;
    imageTokens: number;
    cachedTokens: number;
  };
  /** Milliseconds spent in the vision tower, prefill and decode, and the decode rate. */
  timings: { visionMs: number; prefillMs: number; decodeMs: number; tokensPerSecond: number };
  /** With `logprobs`: every answer token's, in order (those of the delta events together). */
  logprobs?: TokenLogprob[];
  /** With `echo` or `promptLogprobs`: the prompt's record (as on the first delta). */
  prompt?: PromptEcho;
}

/** What a stream yields: text as it is written, then one final record. */
export type GenerationEvent =
  | {
    type: "delta";
    text: string;
    /**
     * With `logprobs`: the tokens read since the last delta, text or not (a delta may then have
     * empty text: tokens held back for a stop string or an unfinished character). The tokens that
     * complete a stop string keep theirs, as they count in `usage.completionTokens` (vLLM does
     * the same); a stop id has none: it is not part of the answer.
     */
    logprobs?: TokenLogprob[];
    /**
     * With `echo` or `promptLogprobs`: the prompt's record, on a first delta of its own (empty
     * text) as soon as the prompt has run, before any answer text.
     */
    prompt?: PromptEcho;
    /**
     * The counts so far, as the result's `usage` will count them: the prompt's, and the answer
     * tokens read up to this delta (tokens held back for a stop string count, as in the result:
     * vLLM's `continuous_usage_stats`). Absent from engines that do not count as they go.
     */
    usage?: GenerationResult["usage"];
  }
  | { type: "done"; result: GenerationResult };

/** The most generations a Pipeline runs at once (PipelineOptions.parallel, `QVQ_PARALLEL`). */
export const MAX_PARALLEL = 64;

/** Anything that can answer chat messages: the real pipeline, or a fake in server tests. */
export interface ChatEngine {
  /** The id clients name in requests (e.g. "Qwen/QVQ-72B-Preview"). */
  readonly modelId: string;
  /** Streams the answer to `messages`. Must stop promptly and free resources when `options.signal` aborts. */
  generate(messages: ChatMessage[], options?: GenerateOptions): AsyncIterable<GenerationEvent>;
  /**
   * Streams the continuation of a raw prompt (text without a chat template, or token ids), as
   * `generate` streams an answer: `/v1/completions`. Optional: a server whose engine lacks it
   * answers that route with a 404.
   */
  complete?(prompt: string | number[], options?: GenerateOptions): AsyncIterable<GenerationEvent>;
  /**
   * Checks what `complete` would refuse of a raw prompt and options before it waits its turn: a
   * server calls it before queueing, so a bad prompt is a 400 at once. Optional.
   */
  checkPrompt?(prompt: string | number[], options?: GenerateOptions): Promise<void>;
  /**
   * Checks what `generate` would refuse of chat messages and options (malformed parts, a format
   * that cannot hold, a prompt over the context) without waiting its turn or resizing an image: a
   * server calls it before queueing, so such a request is a 400 at once rather than a stream that
   * fails when its turn comes. `sizes`: the images' sizes (a video's frames'), in prompt order,
   * where the caller knows them (their contents are then not read). Optional.
   */
  checkChat?(
    messages: ChatMessage[],
    options?: GenerateOptions,
    sizes?: readonly ImageSize[],
  ): Promise<void>;
  /** The model's context in tokens (vLLM's `max_model_len`). Optional. */
  readonly maxContext?: number;
  /**
   * Generations it runs at once (Pipeline's `parallel`, at most {@link MAX_PARALLEL}): a server
   * lets this many run and queues the rest. Optional: 1.
   */
  readonly parallel?: number;
  /**
   * How the model's weights are held (their float type, what is quantized): a server reports it
   * (Ollama's `quantization_level`, its start-up line). Optional.
   */
  readonly weightTypes?: WeightTypes;
  /**
   * The system message the model's chat template writes where a conversation has none
   * (ChatTemplate.defaultSystemPrompt); undefined where it writes none. The server describes
   * tools after it (tool_choice "auto") when a conversation has no system message. Optional.
   */
  readonly defaultSystemPrompt?: string;
  /**
   * The token ids the model would read: of a raw prompt as `complete` reads it, or of chat
   * messages as `generate` renders them (image placeholders expanded to each image's tokens).
   * Optional: a server whose engine lacks it answers `/tokenize` with a 404.
   */
  tokenize?(input: TokenizeInput): Promise<number[]>;
  /** The text of token ids, special tokens included. Optional (`/detokenize`). */
  detokenize?(ids: number[]): Promise<string>;
  /**
   * Why the engine can answer nothing more, once it cannot (its GPU device lost, its worker
   * failed; or, for a worker engine, disposed): the server's `/health` then answers with this
   * error's status (500; 503 while shutting down) instead of "ok". Optional.
   */
  readonly failure?: Error;
}

/** How a loaded model's weights are held on the GPU ({@link ChatEngine.weightTypes}). */
export interface WeightTypes {
  /** The float type of every weight not quantized (all of them where nothing is). */
  readonly dtype: WeightDType;
  /** The decoder's matrices and lm_head quantized to this (src/model/quantize.ts), if they are. */
  readonly quant?: QuantDType;
  /** The vision tower's matrices quantized to this, if they are. */
  readonly visionQuant?: QuantDType;
}

/** What {@link ChatEngine.tokenize} takes: a raw prompt, or chat messages. */
export type TokenizeInput =
  | { prompt: string }
  | {
    messages: ChatMessage[];
    continueFinalMessage?: boolean;
    /** Append the assistant's header, as generate does (default true; false: a finished chat). */
    addGenerationPrompt?: boolean;
    /** As GenerateOptions.chatTemplateKwargs. */
    chatTemplateKwargs?: Readonly<Record<string, unknown>>;
    /**
     * The images' sizes (a video's frames'), in prompt order, where the caller knows them: their
     * contents are then not read (an image's token count follows from its size).
     */
    imageSizes?: readonly ImageSize[];
  };
