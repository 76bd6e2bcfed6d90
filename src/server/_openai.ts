/**
 * Response objects in OpenAI's chat completion format: the full `chat.completion` and the
 * `chat.completion.chunk`s of a stream; and the legacy `text_completion` of `/v1/completions`.
 * A stream's chunks carry `usage: null` with `stream_options.include_usage`, the usage so far with
 * vLLM's `continuous_usage_stats` too ({@link RunningUsage}), before a last chunk of usage alone.
 * Shapes follow OpenAI's API reference (as typed in openai-node,
 * src/resources/chat/completions/completions.ts, Apache-2.0).
 *
 * Extensions, ignored by OpenAI's clients: `native_finish_reason` on a choice (qvq's own reason,
 * e.g. "loop", where `finish_reason` must be one of OpenAI's), `prompt_tokens_details.image_tokens`
 * in usage, and `timings` (milliseconds and decode speed) beside usage.
 * @module
 */
import type {
  FinishReason,
  GenerationEvent,
  GenerationResult,
  PromptTokenLogprob,
  TokenLogprob,
  TopLogprob,
} from "../generate/types.ts";
import type { HttpError } from "./_errors.ts";
import { type ToolCallOut, ToolCallScanner, type ToolMode } from "./_tools.ts";
import { parseQwenAnswer, QWEN_TOOL_STOPS, QwenAnswerStream } from "./_qwen_tools.ts";

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

/** A new header: a fresh id (`prefix` and 32 hex digits) and the time in Unix seconds. */
export function completionHeader(model: string, prefix = "chatcmpl-"): CompletionHeader {
  return {
    id: `${prefix}${crypto.randomUUID().replaceAll("-", "")}`,
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
}

/** What a stream step sends: one event, several, or none. */
export type Events = object | object[] | undefined;

/** How an endpoint words its responses: whole, or as stream events. */
export interface Format {
  /** Its ids' prefix: "chatcmpl-", "cmpl-", "resp_". */
  prefix: string;
  /**
   * A prompt's fault (a 400) as the 400 naming the endpoint's own prompt field, where the engine's
   * words name another; undefined for everything else (mapped and logged as usual).
   */
  inputError(error: unknown): HttpError | undefined;
  /** The whole response: a choice a result (OpenAI's `n`). */
  whole(header: CompletionHeader, results: GenerationResult[]): object;
  /**
   * Choice `index`'s events of a stream. `usage`: shared by the stream's chunks, its `result` the
   * usage so far where every chunk carries it (vLLM's continuous_usage_stats).
   */
  chunks(header: CompletionHeader, usage: StreamUsage, index: number): {
    /** What is sent before any text, at once (a queued client sees its stream begin). */
    open(): Events;
    /** A delta's events; none where it shows nothing. */
    delta(event: Delta): Events;
    finish(result: GenerationResult): Events;
  };
  /** A stream's last chunk: no choices, the usage of them all (absent: none). */
  usage?(header: CompletionHeader, results: GenerationResult[]): object;
  /**
   * Typed events (the Responses API): each sent as an SSE event named by its `type`, no `[DONE]`
   * at the end. Else `data:` lines and `[DONE]`, as chat completions stream.
   */
  typed?: boolean;
  /** Ollama's stream: each event one line of JSON (no SSE framing, no `[DONE]`). */
  ndjson?: boolean;
  /** A stream's error event (default: OpenAI's `{error: {…}}`). */
  streamError?(error: HttpError): object;
}

/** A delta event of a generation. */
export type Delta = Extract<GenerationEvent, { type: "delta" }>;

/**
 * What a stream's chunks say of usage: with `include`, a `usage` field — null, or where `result`
 * is set its counts (every chunk's, with vLLM's continuous_usage_stats).
 */
export interface StreamUsage {
  include: boolean;
  result?: Pick<GenerationResult, "usage">;
}

/**
 * The usage so far of a stream's `n` choices (vLLM's continuous_usage_stats), as
 * {@link combinedResult} counts a finished request's: the prompt once (the lowest choice's that
 * reported it), the completions' tokens summed. A choice's counts come from its finished result,
 * or from the engine's running counts on its deltas (`usage`); a choice not begun has
 * written none. Unknown (undefined) before the prompt's count is known, and while a choice has
 * written tokens the engine did not count.
 */
export class RunningUsage {
  /** By choice: its counts so far; null where it wrote tokens without them. */
  readonly #choices = new Map<number, GenerationResult["usage"] | null>();

  /** Takes choice `index`'s `event` into the counts. */
  push(index: number, event: GenerationEvent): void {
    if (event.type === "done") {
      this.#choices.set(index, event.result.usage);
      return;
    }
    if (event.usage) this.#choices.set(index, event.usage);
    else if (event.text || event.logprobs?.length) this.#choices.set(index, null);
  }

  /** The request's usage so far; undefined where not known. */
  get current(): Pick<GenerationResult, "usage"> | undefined {
    const known = [...this.#choices].sort(([a], [b]) => a - b).map(([, u]) => u);
    if (!known.length || known.includes(null)) return undefined;
    const all = known as GenerationResult["usage"][];
    const completionTokens = all.reduce((sum, u) => sum + u.completionTokens, 0);
    return { usage: { ...all[0], completionTokens } };
  }
}

/** How a streamed chat answer's text becomes its chunks' deltas. */
export interface DeltaReader {
  /** A delta's text as a chunk's delta fields; undefined where it shows nothing yet. */
  push(text: string): Record<string, unknown> | undefined;
  /** The last chunk's delta fields, and how many tool calls the answer made. */
  end(): { delta: Record<string, unknown>; calls: number };
}

/**
 * The reader for `mode`: content deltas; a held answer's tool-call deltas (an answer cut off
 * before any call's name: its text as content at the end, as completionObject gives it); or the
 * "auto" mode's content as it is written and its calls, whole, at the end.
 */
export function deltaReader(mode?: ToolMode): DeltaReader {
  if (!mode) return { push: (text) => ({ content: text }), end: () => ({ delta: {}, calls: 0 }) };
  if (mode.kind === "auto") {
    const answer = new QwenAnswerStream(mode);
    return {
      push: (text) => {
        const content = answer.push(text);
        return content ? { content } : undefined;
      },
      end: () => {
        const { content, calls } = answer.finish();
        const toolCalls = calls.map((c, index) => ({ index, ...c }));
        const delta = {
          ...(content ? { content } : {}),
          ...(calls.length ? { tool_calls: toolCalls } : {}),
        };
        return { delta, calls: calls.length };
      },
    };
  }
  const scanner = new ToolCallScanner(mode);
  let text = "";
  return {
    push: (more) => {
      text += more;
      const deltas = scanner.push(more);
      return deltas.length ? { tool_calls: deltas } : undefined;
    },
    end: () => ({
      delta: !scanner.calls.length && text ? { content: text } : {},
      calls: scanner.calls.length,
    }),
  };
}

/** OpenAI's finish reasons have no "loop" or "abort": both ended the answer early, i.e. "stop". */
export function openAIFinishReason(reason: FinishReason): "stop" | "length" {
  return reason === "length" ? "length" : "stop";
}

/** Usage in OpenAI's shape. */
export function usageOf(result: Pick<GenerationResult, "usage">): Usage {
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

/** A logprob for JSON: −∞ (a −∞ logit) would be null there, so it is −9999, as vLLM sends it. */
function jsonLogprob(x: number): number {
  return Math.max(x, -9999);
}

/** OpenAI's `logprobs` of a choice: one entry a token (null without logprobs). */
export function logprobsObject(entries: TokenLogprob[] | undefined): object | null {
  return entries ? { content: logprobEntries(entries), refusal: null } : null;
}

/** OpenAI's entry of each token's logprob, with its alternatives (the Responses API's too). */
export function logprobEntries(entries: readonly TokenLogprob[]): object[] {
  const one = (t: TopLogprob) => ({
    token: t.token,
    logprob: jsonLogprob(t.logprob),
    bytes: t.bytes,
  });
  return entries.map((e) => ({ ...one(e), top_logprobs: e.topLogprobs.map(one) }));
}

/**
 * The usage and timings of `n` choices of one prompt (OpenAI's `n`): the prompt counted once (the
 * first choice's, which ran it), the completions' tokens and the times summed (choices that ran at
 * once: their times overlap), the decode rate their tokens over their summed decode times (at
 * once: a choice's mean rate, not the request's).
 */
export function combinedResult(results: readonly GenerationResult[]): GenerationResult {
  const [first] = results;
  if (results.length === 1) return first;
  const sum = (f: (r: GenerationResult) => number) => results.reduce((a, r) => a + f(r), 0);
  const decodeMs = sum((r) => r.timings.decodeMs);
  const decoded = sum((r) => Math.max(0, r.usage.completionTokens - 1));
  return {
    ...first,
    usage: { ...first.usage, completionTokens: sum((r) => r.usage.completionTokens) },
    timings: {
      visionMs: sum((r) => r.timings.visionMs),
      prefillMs: sum((r) => r.timings.prefillMs),
      decodeMs,
      tokensPerSecond: decodeMs > 0 ? decoded / (decodeMs / 1000) : 0,
    },
  };
}

/** One result, or the `n` choices' results in order. */
type Results = GenerationResult | readonly GenerationResult[];

function list(results: Results): readonly GenerationResult[] {
  return Array.isArray(results) ? results : [results as GenerationResult];
}

/**
 * The non-streaming response: one choice a result. With `tools` (an answer held to tool calls)
 * the message carries the calls read from the text as `tool_calls` and no content — unless the
 * answer was cut off before any call's name, when its text is the content.
 */
export function completionObject(
  header: CompletionHeader,
  results: Results,
  tools?: ToolMode,
): object {
  const all = list(results);
  return whole(header, "chat.completion", all, (r) => {
    const { content, calls } = readCalls(r.text, tools);
    return {
      message: calls.length
        ? { role: "assistant", content: content || null, refusal: null, tool_calls: calls }
        : { role: "assistant", content, refusal: null },
      logprobs: logprobsObject(r.logprobs),
      ...toolFinish(r, tools, calls.length),
    };
  });
}

/** An answer's content and tool calls, as `tools` (if any) has the model write them. */
function readCalls(text: string, tools?: ToolMode): { content: string; calls: ToolCallOut[] } {
  if (!tools) return { content: text, calls: [] };
  if (tools.kind === "auto") return parseQwenAnswer(text, tools);
  const scanner = new ToolCallScanner(tools);
  scanner.push(text);
  return { content: scanner.calls.length ? "" : text, calls: [...scanner.calls] };
}

/**
 * The finish reason of an answer with tool calls, where it is not the generation's own:
 * "tool_calls" for calls of "required" or "auto" that ended whole, as vLLM and OpenAI report them
 * (a named function's call ends with "stop", as theirs does). Whole: ended by the model (an
 * end-of-sequence id, or in the "auto" format the result it would write next), not by a stop
 * string or id of the client's, which may have cut a call short.
 */
export function toolFinish(
  result: GenerationResult,
  tools: ToolMode | undefined,
  calls: number,
): { finish_reason?: "tool_calls"; stop_reason?: null } {
  const reason = result.stopReason;
  // The "auto" format's own stop strings are the server's, not the client's: no stop_reason.
  const ours = tools?.kind === "auto" && QWEN_TOOL_STOPS.includes(reason as string);
  const whole = result.finishReason === "stop" && (reason === undefined || ours);
  const chosen = tools?.kind === "required" || tools?.kind === "auto";
  return {
    ...(chosen && whole && calls > 0 ? { finish_reason: "tool_calls" as const } : {}),
    ...(ours ? { stop_reason: null } : {}),
  };
}

/**
 * A whole response of either endpoint: each result's choice (its `body`, finish reasons), usage,
 * timings.
 */
function whole(
  header: CompletionHeader,
  object: string,
  results: readonly GenerationResult[],
  body: (r: GenerationResult) => Record<string, unknown>,
): object {
  const all = combinedResult(results);
  return {
    ...header,
    object,
    // The body's finish_reason, where it sets one, wins.
    choices: results.map((r, index) => ({ index, ...finish(r), ...body(r) })),
    usage: usageOf(all),
    timings: timingsOf(all),
  };
}

/**
 * A choice's finish fields: OpenAI's reason, qvq's own, and vLLM's stop_reason (the client's stop
 * string or id that ended it; null for the model's end or any other reason), or null while it is
 * written.
 */
function finish(result?: GenerationResult): Record<string, unknown> {
  return result
    ? {
      finish_reason: openAIFinishReason(result.finishReason),
      native_finish_reason: result.finishReason,
      stop_reason: result.stopReason ?? null,
    }
    : { finish_reason: null };
}

/**
 * One streamed chunk. `delta` is `{role, content: ""}` first, then `{content}` (with the tokens'
 * logprobs when asked for), then `{}` with the finish reason; `usage` is null on those when the
 * client asked for usage, and a last chunk has empty choices and the usage (exactly as OpenAI
 * streams it).
 */
export function chunkObject(
  header: CompletionHeader,
  choice:
    | {
      delta: object;
      result?: GenerationResult;
      logprobs?: TokenLogprob[];
      index?: number;
      /** In place of the result's finish fields (see toolFinish). */
      finish?: { finish_reason?: string; stop_reason?: null };
    }
    | null,
  usage?: StreamUsage,
): object {
  const body = choice &&
    { delta: choice.delta, logprobs: logprobsObject(choice.logprobs), ...choice.finish };
  return chunk(header, "chat.completion.chunk", body, choice?.result, usage, choice?.index);
}

/**
 * A streamed chunk of either endpoint: choice `index`'s `body` (none: empty choices), usage
 * (with `n` choices, of them all: {@link combinedResult}).
 */
function chunk(
  header: CompletionHeader,
  object: string,
  body: Record<string, unknown> | null,
  result: GenerationResult | undefined,
  usage: StreamUsage | undefined,
  index = 0,
): object {
  const c: Record<string, unknown> = { ...header, object };
  c.choices = body ? [{ index, ...finish(result), ...body }] : [];
  if (body && result) c.timings = timingsOf(result);
  if (usage?.include) c.usage = usage.result ? usageOf(usage.result) : null;
  return c;
}

/** The legacy completions' `logprobs` of a choice (null without logprobs). */
export interface TextLogprobs {
  tokens: string[];
  /** null for an echoed prompt's first token (nothing predicts it). */
  token_logprobs: (number | null)[];
  /** Each token itself and its alternatives, by text (OpenAI's shape); null where its logprob is. */
  top_logprobs: (Record<string, number> | null)[];
  /** Where each token starts in the completion's text, in characters (code points, as Python's). */
  text_offset: number[];
}

/**
 * Where each token of a completion starts in its text, in characters (code points: a Python
 * client's index into `text`). Counted from the tokens' bytes, so a character split over two
 * tokens counts once, where it ends; one per completion, carried across a stream's chunks.
 */
export class TextOffsets {
  #chars = 0;
  readonly #utf8 = new TextDecoder();

  /** The offset of the token with these bytes, then moves past it. */
  next(bytes: number[]): number {
    const at = this.#chars;
    this.#chars += [...this.#utf8.decode(Uint8Array.from(bytes), { stream: true })].length;
    return at;
  }
}

/**
 * The legacy logprobs of `entries` (an echoed prompt's, then the completion's), their offsets from
 * `offsets` (a stream's goes on).
 */
export function textLogprobsObject(
  entries: readonly (TokenLogprob | PromptTokenLogprob)[] | undefined,
  offsets: TextOffsets = new TextOffsets(),
): TextLogprobs | null {
  if (!entries) return null;
  const out: TextLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const e of entries) {
    out.tokens.push(e.token);
    const lp = e.logprob === null ? null : jsonLogprob(e.logprob);
    out.token_logprobs.push(lp);
    // The token first: where alternatives share its text (a split character's "\ufffd", a
    // special token's ""), the entry under that text is its own.
    const top: Record<string, number> | null = lp === null ? null : { [e.token]: lp };
    if (top) { for (const t of e.topLogprobs) top[t.token] ??= jsonLogprob(t.logprob); }
    out.top_logprobs.push(top);
    out.text_offset.push(offsets.next(e.bytes));
  }
  return out;
}

/** A /v1/completions request's `echo`: `only` for the prompt alone (max_tokens 0). */
export interface Echo {
  only: boolean;
}

/**
 * What a completion reports of `result`: with `echo.only` the generated token (run, as in vLLM)
 * is not shown or counted, and the completion ended at its length of 0.
 */
export function shownResult(result: GenerationResult, echo?: Echo): GenerationResult {
  if (!echo?.only || result.finishReason === "abort") return result;
  return {
    ...result,
    finishReason: "length",
    text: "",
    usage: { ...result.usage, completionTokens: 0 },
    ...(result.logprobs ? { logprobs: [] } : {}),
  };
}

/**
 * The non-streaming `/v1/completions` response, one choice a result; with `echo`, the prompt (and
 * its logprobs) first in each.
 */
export function textCompletionObject(
  header: CompletionHeader,
  results: Results,
  echo?: Echo,
): object {
  const shown = list(results).map((r) => shownResult(r, echo));
  return whole(header, "text_completion", shown, (r) => {
    const prompt = echo ? r.prompt : undefined;
    return {
      text: (prompt?.text ?? "") + r.text,
      logprobs: textLogprobsObject(r.logprobs && [...(prompt?.logprobs ?? []), ...r.logprobs]),
    };
  });
}

/**
 * One streamed `/v1/completions` chunk: `{text, logprobs}` while the answer is written, then an
 * empty text with the finish reason; with `include_usage` a last chunk with empty choices and the
 * usage (null on the others), as vLLM streams them.
 */
export function textChunkObject(
  header: CompletionHeader,
  choice:
    | { text: string; logprobs?: TextLogprobs | null; result?: GenerationResult; index?: number }
    | null,
  usage?: StreamUsage,
): object {
  const body = choice && { text: choice.text, logprobs: choice.logprobs ?? null };
  return chunk(header, "text_completion", body, choice?.result, usage, choice?.index);
}
