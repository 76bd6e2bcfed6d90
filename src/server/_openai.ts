/**
 * Response objects in OpenAI's chat completion format: the full `chat.completion` and the
 * `chat.completion.chunk`s of a stream. Shapes follow OpenAI's API reference (as typed in
 * openai-node, src/resources/chat/completions/completions.ts, Apache-2.0).
 *
 * Extensions, ignored by OpenAI's clients: `native_finish_reason` on a choice (qvq's own reason,
 * e.g. "loop", where `finish_reason` must be one of OpenAI's), `prompt_tokens_details.image_tokens`
 * in usage, and `timings` (milliseconds and decode speed) beside usage.
 * @module
 */
import type {
  FinishReason,
  GenerationResult,
  TokenLogprob,
  TopLogprob,
} from "../generate/types.ts";

/** Reported as `system_fingerprint`, so clients can tell which server answered. */
export const SYSTEM_FINGERPRINT = "qvq-webgpu";

/** OpenAI's token counts, plus the image tokens inside the prompt. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number; image_tokens: number };
}

/** qvq's timings of one generation (extension). */
export interface Timings {
  vision_ms: number;
  prefill_ms: number;
  decode_ms: number;
  tokens_per_second: number;
}

/** The fields every object of one completion shares. */
export interface CompletionHeader {
  id: string;
  created: number;
  model: string;
  system_fingerprint: string;
}

/** A new header: a fresh `chatcmpl-` id and the current time in Unix seconds. */
export function completionHeader(model: string): CompletionHeader {
  return {
    id: `chatcmpl-${crypto.randomUUID().replaceAll("-", "")}`,
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
}

/** OpenAI's finish reasons have no "loop" or "abort": both ended the answer early, i.e. "stop". */
export function openAIFinishReason(reason: FinishReason): "stop" | "length" {
  return reason === "length" ? "length" : "stop";
}

/** Usage in OpenAI's shape. */
export function usageOf(result: GenerationResult): Usage {
  const { promptTokens, completionTokens, imageTokens, cachedTokens } = result.usage;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens, image_tokens: imageTokens },
  };
}

/** Timings in snake_case, rounded to 0.1 ms / 0.01 token/s. */
export function timingsOf(result: GenerationResult): Timings {
  const t = result.timings;
  const r = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;
  return {
    vision_ms: r(t.visionMs, 1),
    prefill_ms: r(t.prefillMs, 1),
    decode_ms: r(t.decodeMs, 1),
    tokens_per_second: r(t.tokensPerSecond, 2),
  };
}

/**
 * OpenAI's `logprobs` of a choice: one entry a token (null without logprobs). A logprob of −∞ (a
 * −∞ logit) would be null in JSON: it is −9999, as vLLM sends it.
 */
export function logprobsObject(entries: TokenLogprob[] | undefined): object | null {
  if (!entries) return null;
  const one = (t: TopLogprob) => ({
    token: t.token,
    logprob: Math.max(t.logprob, -9999),
    bytes: t.bytes,
  });
  return {
    content: entries.map((e) => ({ ...one(e), top_logprobs: e.topLogprobs.map(one) })),
    refusal: null,
  };
}

/** The non-streaming response. */
export function completionObject(header: CompletionHeader, result: GenerationResult): object {
  return {
    ...header,
    object: "chat.completion",
    choices: [{
      index: 0,
      message: { role: "assistant", content: result.text, refusal: null },
      logprobs: logprobsObject(result.logprobs),
      finish_reason: openAIFinishReason(result.finishReason),
      native_finish_reason: result.finishReason,
    }],
    usage: usageOf(result),
    timings: timingsOf(result),
  };
}

/**
 * One streamed chunk. `delta` is `{role, content: ""}` first, then `{content}` (with the tokens'
 * logprobs when asked for), then `{}` with the finish reason; `usage` is null on those when the
 * client asked for usage, and a last chunk has empty choices and the usage (exactly as OpenAI
 * streams it).
 */
export function chunkObject(
  header: CompletionHeader,
  choice: { delta: object; result?: GenerationResult; logprobs?: TokenLogprob[] } | null,
  usage?: { include: boolean; result?: GenerationResult },
): object {
  const chunk: Record<string, unknown> = { ...header, object: "chat.completion.chunk" };
  if (choice === null) {
    chunk.choices = [];
  } else {
    const { delta, result } = choice;
    chunk.choices = [{
      index: 0,
      delta,
      logprobs: logprobsObject(choice.logprobs),
      finish_reason: result ? openAIFinishReason(result.finishReason) : null,
      ...(result ? { native_finish_reason: result.finishReason } : {}),
    }];
    if (result) chunk.timings = timingsOf(result);
  }
  if (usage?.include) chunk.usage = usage.result ? usageOf(usage.result) : null;
  return chunk;
}
