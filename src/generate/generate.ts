/**
 * One generation on the GPU: vision tower, prefill, then the GPU-resident decode loop streaming
 * text deltas and a final record. Every GPU resource it makes (image embeddings, the session's KV
 * cache, the sampler) is freed when the stream ends, however it ends: finished, stopped, aborted,
 * or abandoned by the consumer (`break` out of `for await`).
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import type { ImageEmbeds, Qwen2VLModel, Session } from "../model/qwen2vl.ts";
import type { Tokenizer } from "../tokenizer.ts";
import { decodeStream, type DecodeStreamOptions } from "./decode_stream.ts";
import type { ResolvedOptions } from "./options.ts";
import type { PreparedPrompt } from "./prompt.ts";
import { SessionRun } from "./session_run.ts";
import type { GenerationEvent, GenerationResult } from "./types.ts";

/** Hooks for tests. */
export interface RunGenerationHooks extends DecodeStreamOptions {
  /** Called with the session right after it is created (tests check it gets disposed). */
  onSession?: (s: Session) => void;
}

/**
 * Streams the model's answer to `prompt`. The token budget is {@link tokenBudget}'s.
 * @throws InvalidInputError when the prompt alone fills the model's context, or an explicit
 *   `maxNewTokens` does not fit beside it
 */
export async function* runGeneration(
  model: Qwen2VLModel,
  tokenizer: Tokenizer,
  prompt: PreparedPrompt,
  options: ResolvedOptions,
  hooks: RunGenerationHooks = {},
): AsyncGenerator<GenerationEvent, GenerationResult | undefined, undefined> {
  const S = prompt.inputIds.length;
  const o: ResolvedOptions = {
    ...options,
    maxNewTokens: tokenBudget(model.maxContext, prompt, options),
  };
  const gpu = model.gpu;
  let images: ImageEmbeds | undefined;
  let session: Session | undefined;
  let run: SessionRun | undefined;
  const decoder = tokenizer.createStreamDecoder({ skipSpecialTokens: true });
  try {
    let visionMs = 0;
    if (o.signal?.aborted) return yield* aborted(S, prompt.imageTokens, visionMs);
    if (prompt.gridThw.length > 0) {
      const t0 = performance.now();
      images = model.encodeImages(prompt.pixelValues, prompt.gridThw);
      // One round trip so visionMs is the GPU's time, not just the recording.
      await gpu.device.queue.onSubmittedWorkDone();
      visionMs = performance.now() - t0;
    }
    const prefillStart = performance.now();
    session = model.createSession(S + o.maxNewTokens);
    hooks.onSession?.(session);
    try {
      // An abort during the vision tower or between prefill chunks stops the prefill.
      await model.prefill(session, prompt.inputIds, images, { signal: o.signal });
    } catch (error) {
      if (!o.signal?.aborted) throw error;
      return yield* aborted(S, prompt.imageTokens, visionMs);
    }
    images?.destroy();
    images = undefined;
    run = new SessionRun(model, session, {
      doSample: o.temperature > 0,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      repetitionPenalty: o.repetitionPenalty,
      seed: o.seed,
    });
    return yield* decodeStream(run, o, decoder, {
      promptTokens: S,
      imageTokens: prompt.imageTokens,
      visionMs,
      prefillStart,
    }, hooks);
  } finally {
    run?.dispose();
    session?.dispose();
    images?.destroy();
    decoder.dispose();
  }
}

/**
 * Tokens the context still holds after `prompt` (≥ 1).
 * @throws InvalidInputError when the prompt alone fills the context
 */
export function contextRoom(maxContext: number, prompt: PreparedPrompt): number {
  const S = prompt.inputIds.length;
  const room = maxContext - S;
  if (room < 1) {
    throw new InvalidInputError(
      `the prompt has ${S} tokens (${prompt.imageTokens} of them image tokens) but the model's ` +
        `context holds ${maxContext}; shorten the text or use smaller images`,
    );
  }
  return room;
}

/**
 * The tokens a generation may produce: a `maxNewTokens` the caller set, which must fit the context
 * left after the prompt (as OpenAI and vLLM refuse `max_tokens` over the context), or the default,
 * lowered to what is left.
 * @throws InvalidInputError when the prompt fills the context or the caller's maxNewTokens does
 *   not fit beside it
 */
export function tokenBudget(
  maxContext: number,
  prompt: PreparedPrompt,
  options: Pick<ResolvedOptions, "maxNewTokens" | "maxNewTokensGiven">,
): number {
  const room = contextRoom(maxContext, prompt);
  if (options.maxNewTokensGiven && options.maxNewTokens > room) {
    throw new InvalidInputError(
      `maxNewTokens ${options.maxNewTokens} does not fit: the prompt has ${prompt.inputIds.length} ` +
        `tokens (${prompt.imageTokens} of them image tokens) and the model's context holds ` +
        `${maxContext}; ask for at most ${room} new tokens (max_tokens), or shorten the prompt`,
    );
  }
  return Math.min(options.maxNewTokens, room);
}

/** The stream of a generation cancelled before its first token. */
async function* aborted(
  promptTokens: number,
  imageTokens: number,
  visionMs: number,
): AsyncGenerator<GenerationEvent, GenerationResult, undefined> {
  const result: GenerationResult = {
    finishReason: "abort",
    text: "",
    usage: { promptTokens, completionTokens: 0, imageTokens },
    timings: { visionMs, prefillMs: 0, decodeMs: 0, tokensPerSecond: 0 },
  };
  yield { type: "done", result };
  return result;
}
