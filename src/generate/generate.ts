/**
 * One generation on the GPU: vision tower, prefill, then the GPU-resident decode loop streaming
 * text deltas and a final record. Every GPU resource it makes (image embeddings, the session's KV
 * cache, the sampler) is freed when the stream ends, however it ends: finished, stopped, aborted,
 * or abandoned by the consumer (`break` out of `for await`) — but for the session, which a prompt
 * cache keeps (with what its rows hold) unless the generation failed.
 * @module
 */
import { ContextLengthError } from "../errors.ts";
import { gpuIdle } from "../gpu/buffers.ts";
import { patchCount } from "../image.ts";
import type { ImageEmbeds, Qwen2VLModel, Session } from "../model/qwen2vl.ts";
import type { Tokenizer } from "../tokenizer.ts";
import {
  decodeStream,
  type DecodeStreamOptions,
  skipUnknownIds,
  usageSoFar,
} from "./decode_stream.ts";
import type { ResolvedOptions } from "./options.ts";
import type { PreparedPrompt } from "./prompt.ts";
import { type CacheClaim, imageKeys, type PromptCache } from "./prompt_cache.ts";
import { type RunGrammar, SessionRun } from "./session_run.ts";
import { promptEcho, tokenTexts } from "./logprobs.ts";
import { FormatTracker } from "./format_tracker.ts";
import type { GenerationEvent, GenerationResult } from "./types.ts";

/** The prompt cache to use, and hooks for tests. */
export interface RunGenerationHooks extends Omit<DecodeStreamOptions, "ids"> {
  /** Called with the session once made or taken from the prompt cache (tests check its fate). */
  onSession?: (s: Session) => void;
  /**
   * Serve the prompt's start from this cache's session and give the session back to it at the
   * end (freed instead after an error). Without one, each generation has a session of its own.
   */
  promptCache?: PromptCache;
  /**
   * The constraint's token table and start state (needed when the options' responseFormat holds
   * the answer to something).
   */
  grammar?: Pick<RunGrammar, "table" | "start">;
}

/**
 * Streams the model's answer to `prompt`. The token budget is {@link tokenBudget}'s.
 * @throws ContextLengthError (an InvalidInputError) when the prompt alone fills the model's
 *   context, or an explicit `maxNewTokens` does not fit beside it
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
  const cache = hooks.promptCache;
  let images: ImageEmbeds | undefined;
  let session: Session | undefined;
  let run: SessionRun | undefined;
  const decoder = tokenizer.createStreamDecoder({ skipSpecialTokens: true });
  // What the session's KV rows hold for the prompt cache: `heldRows` of the prompt, then (once
  // prefilled) the generated ids but the last (no decode step has read it yet).
  const history = {
    ids: prompt.inputIds,
    images: cache ? imageKeys(prompt, model.config.vision.spatialMergeSize) : [],
  };
  const generated: number[] = [];
  let heldRows = 0, failed = false;
  let claim: CacheClaim | undefined;
  try {
    let visionMs = 0;
    if (o.signal?.aborted) return yield* aborted(S, prompt.imageTokens, visionMs);
    // What the cache holds of the prompt decides which images to encode. The session is claimed
    // now (a generation running beside this one cannot take it meanwhile) and made, where it is
    // new, after the vision tower, whose activations the memory plan does not count beside a
    // whole-context KV cache. Scoring the prompt runs all of it: the cache serves none.
    const none = { tokens: 0, images: 0 };
    const scoring = o.promptLogprobs !== undefined;
    // (Scoring runs all of the prompt: rows copied from another session would not serve.)
    claim = cache?.claim(history, S + o.maxNewTokens, { copy: !scoring });
    const peeked = (!scoring && claim?.cached) || none;
    // The images past the first `from`, which the cache does not hold: their rows of pixel values
    // are the last ones.
    const encode = async (from: number) => {
      if (prompt.gridThw.length <= from) return;
      const t0 = performance.now();
      const cols = prompt.pixelValues.length / patchCount(prompt.gridThw);
      images?.destroy();
      images = model.encodeImages(
        prompt.pixelValues.subarray(patchCount(prompt.gridThw.slice(0, from)) * cols),
        prompt.gridThw.slice(from),
      );
      // The GPU's time for the tower (gpuIdle: Deno waits inside the call and settles at once;
      // onSubmittedWorkDone() would resolve 10 ms later, a sleep the prefill need not sit out).
      await gpuIdle(gpu);
      visionMs += performance.now() - t0;
    };
    await encode(peeked.images);
    const hit = claim
      ? await claim.open(o.signal)
      : { session: model.createSession(S + o.maxNewTokens), cached: peeked };
    session = hit.session;
    const cached = scoring ? none : hit.cached;
    // Fewer than claimed where the running generation whose rows it was to copy ended meanwhile
    // (PromptCache.share): the images it held are encoded now.
    if (cached.images < peeked.images) await encode(cached.images);
    const cachedGrids = prompt.gridThw.slice(0, cached.images);
    // Scoring prefills from row 0, rewriting what the session held of the prompt with the same
    // rows: those stay valid whether or not it is stopped part way.
    heldRows = hit.cached.tokens;
    hooks.onSession?.(session);
    const prefillStart = performance.now();
    let echo;
    try {
      // An abort during the vision tower or between prefill chunks stops the prefill.
      const { promptLogprobs } = await model.prefill(session, prompt.inputIds, images, {
        signal: o.signal,
        cached: { tokens: cached.tokens, grids: cachedGrids },
        promptLogprobs: o.promptLogprobs,
      });
      echo = promptEcho(tokenizer, prompt, o, promptLogprobs);
    } catch (error) {
      if (!o.signal?.aborted) throw error;
      // Prefill stops between chunks and writes rows from heldRows on only: the session stays
      // cacheable with the rows before.
      return yield* aborted(S, prompt.imageTokens, visionMs, cached.tokens);
    }
    heldRows = S;
    // Running generations may copy these rows from now on (n choices, the same prompt at once).
    cache?.share(session, history);
    images?.destroy();
    images = undefined;
    const held = grammar(o, hooks.grammar);
    run = new SessionRun(
      model,
      session,
      {
        doSample: o.temperature > 0,
        temperature: o.temperature,
        topK: o.topK,
        topP: o.topP,
        minP: o.minP,
        repetitionPenalty: o.repetitionPenalty,
        frequencyPenalty: o.frequencyPenalty,
        presencePenalty: o.presencePenalty,
        logitBias: o.logitBias,
        seed: o.seed,
        minTokens: o.minTokens,
        stopIds: o.heldStopIds,
      },
      o.logprobs ? o.topLogprobs : undefined,
      held,
    );
    const stats = {
      promptTokens: S,
      imageTokens: prompt.imageTokens,
      cachedTokens: cached.tokens,
      visionMs,
      prefillStart,
      prompt: echo,
    };
    if (echo) yield { type: "delta", text: "", prompt: echo, usage: usageSoFar(stats, 0) };
    const texts = tokenTexts(tokenizer);
    // The format's state on the host too: a stop id is text where the answer may not end.
    const format = held &&
      new FormatTracker(
        held.dfa ?? "json_object",
        held.start,
        held.endIds,
        (id) => texts(id).bytes,
      );
    return yield* decodeStream(run, o, skipUnknownIds(decoder, tokenizer.vocabSize), stats, {
      ...hooks,
      ids: generated,
      ...(o.logprobs ? { tokenText: texts } : {}),
      ...(format ? { format } : {}),
    });
  } catch (error) {
    failed = true; // the session's rows may be half written
    throw error;
  } finally {
    run?.dispose();
    claim?.cancel(); // unopened: the vision tower failed or was aborted
    if (cache && session && !failed) {
      const ids = Array.from(prompt.inputIds.subarray(0, heldRows));
      if (heldRows === S) ids.push(...generated.slice(0, -1));
      cache.keep(session, { ids, images: history.images });
    } else {
      session?.dispose();
    }
    images?.destroy();
    decoder.dispose();
  }
}

/**
 * The constraint's part of the run, if the options ask for one: the stop ids end the answer where
 * it may end (and are text before: {@link FormatTracker}).
 */
function grammar(
  o: ResolvedOptions,
  g: RunGenerationHooks["grammar"],
): RunGrammar | undefined {
  if (!o.constraint) return undefined;
  if (!g) throw new Error("runGeneration: responseFormat needs hooks.grammar (the token table)");
  const dfa = o.constraint === "json_object" ? {} : { dfa: o.constraint };
  return { ...g, ...dfa, endIds: o.stopTokenIds };
}

/**
 * Tokens the context still holds after `prompt` (≥ 1).
 * @throws ContextLengthError when the prompt alone fills the context
 */
export function contextRoom(maxContext: number, prompt: PreparedPrompt): number {
  const S = prompt.inputIds.length;
  const room = maxContext - S;
  if (room < 1) {
    throw new ContextLengthError(
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
 * @throws ContextLengthError when the prompt fills the context or the caller's maxNewTokens does
 *   not fit beside it
 */
export function tokenBudget(
  maxContext: number,
  prompt: PreparedPrompt,
  options: Pick<ResolvedOptions, "maxNewTokens" | "maxNewTokensGiven">,
): number {
  const room = contextRoom(maxContext, prompt);
  if (options.maxNewTokensGiven && options.maxNewTokens > room) {
    throw new ContextLengthError(
      `maxNewTokens ${options.maxNewTokens} does not fit: the prompt has ${prompt.inputIds.length} ` +
        `tokens (${prompt.imageTokens} of them image tokens) and the model's context holds ` +
        `${maxContext}; ask for at most ${room} new tokens (max_tokens), or shorten the prompt`,
    );
  }
  return Math.min(options.maxNewTokens, room);
}

/**
 * The stream of a generation cancelled before its first token (`cachedTokens`: what the prompt
 * cache had served of the prompt by then).
 */
async function* aborted(
  promptTokens: number,
  imageTokens: number,
  visionMs: number,
  cachedTokens = 0,
): AsyncGenerator<GenerationEvent, GenerationResult, undefined> {
  const result: GenerationResult = {
    finishReason: "abort",
    text: "",
    usage: { promptTokens, completionTokens: 0, imageTokens, cachedTokens },
    timings: { visionMs, prefillMs: 0, decodeMs: 0, tokensPerSecond: 0 },
  };
  yield { type: "done", result };
  return result;
}
