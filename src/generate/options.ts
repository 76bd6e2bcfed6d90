/**
 * Generation options: the model's generation_config.json (defaults and stop ids) and the one
 * validator every caller's {@link GenerateOptions} go through.
 * @module
 */
import { InvalidInputError, ModelFileError, preview, SchemaError } from "../errors.ts";
import type { GenerateOptions } from "./types.ts";
import { MAX_TOP_LOGPROBS } from "../../kernels/logprobs.ts";
import { MAX_HELD_STOPS, MAX_LOGIT_BIAS } from "../../kernels/sample.ts";
import type { Dfa } from "./_automaton.ts";
import { choiceDfa, schemaDfa } from "./json_schema.ts";
import { regexDfa } from "./regex.ts";

/**
 * Temperatures below this sample greedily (vLLM's sampling epsilon): the most likely token, not a
 * division of the logits by a number that small.
 */
export const GREEDY_TEMPERATURE = 1e-5;

/** Hard ceiling on `maxNewTokens` (QVQ's reasoning fits; longer runs are loops in practice). */
export const MAX_NEW_TOKENS_LIMIT = 8192;
/** `maxNewTokens` when neither the caller nor generation_config.json sets it. */
export const DEFAULT_MAX_NEW_TOKENS = 2048;
/** Most stop strings per request; each is matched against every new piece of text. */
export const MAX_STOP_STRINGS = 16;
/** Most `stopTokenIds` per request. */
export const MAX_STOP_TOKEN_IDS = 64;
/** Longest stop string in UTF-16 code units. */
export const MAX_STOP_LENGTH = 256;

/** What generation_config.json says, with transformers' defaults for absent fields. */
export interface GenerationConfig {
  /** Token ids that end generation (`eos_token_id`: an int or a list in the file). */
  eosTokenIds: number[];
  /** Token id of the beginning of a sequence, if the model has one. */
  bosTokenId?: number;
  /** Token id used for padding. */
  padTokenId?: number;
  /** false → greedy unless the caller sets a temperature. */
  doSample: boolean;
  /** Sampling temperature (when doSample). */
  temperature: number;
  /** Keep only the k most likely tokens (0: all). */
  topK: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches p (1: all). */
  topP: number;
  /** MinPLogitsWarper: keep tokens at least this fraction as likely as the most likely (0: off). */
  minP: number;
  /**
   * Penalty on tokens already in the context: their positive scores divided by it, negative ones
   * multiplied (transformers' repetition_penalty; 1: none).
   */
  repetitionPenalty: number;
  /** `max_new_tokens` if the file has it. */
  maxNewTokens?: number;
}

/**
 * Parses generation_config.json (already JSON-decoded). Missing fields take transformers'
 * GenerationConfig defaults (do_sample false, temperature 1, top_k 50, top_p 1, penalty 1).
 * @param fallbackEos eos ids to use when the file has none (e.g. config.json's eos_token_id).
 */
export function parseGenerationConfig(
  json: unknown,
  file = "generation_config.json",
  fallbackEos: number[] = [],
): GenerationConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new ModelFileError(`${file}: expected a JSON object, got ${preview(json)}`);
  }
  const j = json as Record<string, unknown>;
  const num = (key: string, dflt: number): number => {
    const v = j[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new ModelFileError(`${file}: "${key}" must be a number, got ${preview(v)}`);
    }
    return v;
  };
  const id = (key: string): number | undefined => {
    const v = j[key];
    if (v === undefined || v === null) return undefined;
    if (!isTokenId(v)) {
      throw new ModelFileError(`${file}: "${key}" must be a token id, got ${preview(v)}`);
    }
    return v;
  };
  let eos = fallbackEos;
  const e = j.eos_token_id;
  if (e !== undefined && e !== null) {
    const list = Array.isArray(e) ? e : [e];
    if (!list.every(isTokenId)) {
      throw new ModelFileError(
        `${file}: "eos_token_id" must be a token id or a list of them, got ${preview(e)}`,
      );
    }
    eos = list as number[];
  }
  const doSample = j.do_sample ?? false;
  if (typeof doSample !== "boolean") {
    throw new ModelFileError(
      `${file}: "do_sample" must be true or false, got ${preview(doSample)}`,
    );
  }
  const maxNew = j.max_new_tokens;
  if (
    maxNew !== undefined && maxNew !== null &&
    !(Number.isInteger(maxNew) && (maxNew as number) >= 1)
  ) {
    // It is every answer's default length: a fraction or 0 would fail each request instead.
    throw new ModelFileError(
      `${file}: "max_new_tokens" must be an integer ≥ 1, got ${preview(maxNew)}`,
    );
  }
  return {
    eosTokenIds: [...new Set(eos)],
    bosTokenId: id("bos_token_id"),
    padTokenId: id("pad_token_id"),
    doSample,
    temperature: num("temperature", 1),
    topK: num("top_k", 50),
    topP: num("top_p", 1),
    minP: num("min_p", 0),
    repetitionPenalty: num("repetition_penalty", 1),
    maxNewTokens: maxNew === undefined || maxNew === null ? undefined : num("max_new_tokens", 0),
  };
}

/** Options after validation and defaulting: every field set. */
export interface ResolvedOptions {
  maxNewTokens: number;
  /**
   * The caller set `maxNewTokens` (a request: more than the context holds is an error) rather than
   * taking the default (a cap: lowered to what the context holds). Absent = default.
   */
  maxNewTokensGiven?: boolean;
  /** The first this many tokens cannot end the answer (0: off). */
  minTokens: number;
  /**
   * The ids minTokens holds back: the eos ids (also with ignoreEos, as vLLM) and stopTokenIds;
   * empty without minTokens.
   */
  heldStopIds: number[];
  /** 0 = greedy (argmax, lowest id on ties); a temperature under {@link GREEDY_TEMPERATURE} is 0. */
  temperature: number;
  /** 0 = no top-k filter. */
  topK: number;
  /** 1 = no top-p filter. */
  topP: number;
  /** 0 = no min-p filter. */
  minP: number;
  /** 1 = no penalty. */
  repetitionPenalty: number;
  /** 0 = no penalty. */
  frequencyPenalty: number;
  /** 0 = no penalty. */
  presencePenalty: number;
  /** (token id, bias) pairs, ids distinct; empty: none. */
  logitBias: [number, number][];
  /** Report logprobs, and this many alternatives a position. */
  logprobs: boolean;
  topLogprobs: number;
  /** Score the prompt with this many alternatives a position (undefined: not at all). */
  promptLogprobs?: number;
  /** Echo the prompt's text. */
  echo: boolean;
  /** Continue the last (assistant's) message rather than answer after it. */
  continueFinalMessage: boolean;
  /** More variables for the chat template. */
  chatTemplateKwargs?: Readonly<Record<string, unknown>>;
  /** Integer in [0, 2^53): the GPU RNG takes its low and high 32 bits. */
  seed: number;
  stop: string[];
  /** Token ids that end generation (not part of the text). */
  stopTokenIds: number[];
  /** The stop ids the caller asked for (stopTokenIds less the eos ids): a result's stopReason. */
  askedStopIds: number[];
  stopOnLoop: boolean;
  /**
   * What the answer is held to (responseFormat): "json_object" (JSON mode's automaton), or the DFA
   * of a JSON schema or a choice list; undefined: nothing.
   */
  constraint?: "json_object" | Dfa;
  /**
   * A schema's `freeAfter` marker: a continued final message is held from its last one on (the
   * text before it, the turn's words and earlier rounds of calls, is history).
   */
  constraintFrom?: string;
  signal?: AbortSignal;
}

/** The fields of GenerateOptions (the compiler keeps this list whole). */
const OPTION_KEYS: Record<keyof GenerateOptions, true> = {
  maxNewTokens: true,
  minTokens: true,
  temperature: true,
  topP: true,
  minP: true,
  topK: true,
  repetitionPenalty: true,
  frequencyPenalty: true,
  presencePenalty: true,
  logitBias: true,
  logprobs: true,
  topLogprobs: true,
  promptLogprobs: true,
  echo: true,
  continueFinalMessage: true,
  chatTemplateKwargs: true,
  seed: true,
  stop: true,
  stopTokenIds: true,
  ignoreEos: true,
  stopOnLoop: true,
  responseFormat: true,
  signal: true,
};

/**
 * Throws InvalidInputError naming the keys of `o` that `known` lacks (`what`: "generation",
 * "load"), and listing the known ones; `hint` follows the names.
 */
export function refuseUnknownKeys(
  o: object,
  known: Readonly<Record<string, true>>,
  what: string,
  hint = "",
): void {
  const unknown = Object.keys(o).filter((k) => !Object.hasOwn(known, k));
  if (!unknown.length) return;
  throw new InvalidInputError(
    `unknown ${what} option${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}${hint}; ` +
      `the options are ${Object.keys(known).join(", ")}`,
  );
}

/**
 * Validates `options` and fills the unset fields from `config`. Throws InvalidInputError naming
 * the field and quoting its bad value.
 *
 * @example
 * ```ts
 * import { parseGenerationConfig, resolveOptions } from "./options.ts";
 * const cfg = parseGenerationConfig({ eos_token_id: [151645, 151643], do_sample: false });
 * const o = resolveOptions({ maxNewTokens: 64, stop: ["\n\n"] }, cfg);
 * console.assert(o.temperature === 0 && o.stopTokenIds.length === 2);
 * ```
 */
export function resolveOptions(
  options: GenerateOptions | undefined,
  config: GenerationConfig,
): ResolvedOptions {
  const o = (options ?? {}) as Record<string, unknown>;
  if (typeof o !== "object" || Array.isArray(o)) {
    throw new InvalidInputError(`generation options must be an object, got ${preview(options)}`);
  }
  // A misspelt option would otherwise be ignored (OpenAI's max_tokens as maxTokens: 2048 tokens).
  refuseUnknownKeys(
    o,
    OPTION_KEYS,
    "generation",
    Object.hasOwn(o, "maxTokens") ? " (maxNewTokens is the answer's token limit)" : "",
  );
  // Infinity: as many as the context holds beside the prompt, up to the ceiling (Ollama's -1).
  const toContext = o.maxNewTokens === Infinity;
  const maxNewTokens = toContext ? MAX_NEW_TOKENS_LIMIT : intField(
    o,
    "maxNewTokens",
    Math.min(config.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS, MAX_NEW_TOKENS_LIMIT),
    1,
    MAX_NEW_TOKENS_LIMIT,
  );
  // transformers samples only with do_sample; a caller who sets a temperature > 0 asks for it.
  const given = numField(
    o,
    "temperature",
    config.doSample ? config.temperature : 0,
    (v) => v >= 0 && v <= 100,
    "a number in [0, 100] (0 = greedy)",
  );
  // Below GREEDY_TEMPERATURE, greedy, as vLLM: the sampler divides f32 logits by it, and under
  // ≈ 1e-37 they overflow to ±inf (or it rounds to 0) and the draw picks a wrong token.
  const temperature = given < GREEDY_TEMPERATURE ? 0 : given;
  const topK = intField(o, "topK", Math.max(0, Math.round(config.topK)), 0, 2 ** 31 - 1);
  const topP = numField(
    o,
    "topP",
    clampTopP(config.topP),
    (v) => v > 0 && v <= 1,
    "a number in (0, 1]",
  );
  const minP = numField(
    o,
    "minP",
    config.minP >= 0 && config.minP <= 1 ? config.minP : 0,
    (v) => v >= 0 && v <= 1,
    "a number in [0, 1] (0 = off)",
  );
  // At least 1/100, as at most 100: a seen token's logit is divided by it, and a penalty near 0
  // (1e-40) turned finite logits into +∞ on the GPU, so the sampler found nothing to draw and the
  // answer failed as if every token were masked.
  const repetitionPenaltyOk = (v: number) => v >= 0.01 && v <= 100;
  const repetitionPenalty = numField(
    o,
    "repetitionPenalty",
    repetitionPenaltyOk(config.repetitionPenalty) ? config.repetitionPenalty : 1,
    repetitionPenaltyOk,
    "a number in [0.01, 100] (1 = no penalty)",
  );
  const [frequencyPenalty, presencePenalty] = (["frequencyPenalty", "presencePenalty"] as const)
    .map((key) => numField(o, key, 0, (v) => v >= -2 && v <= 2, "a number in [-2, 2] (0 = none)"));
  const logitBias = o.logitBias === undefined ? [] : parseLogitBias(o.logitBias);
  const logprobs = boolField(o, "logprobs");
  const topLogprobs = intField(o, "topLogprobs", 0, 0, MAX_TOP_LOGPROBS);
  if (topLogprobs > 0 && !logprobs) {
    // As vLLM: alternatives only with logprobs true (0 without it asks for nothing: clients that
    // send every default send it).
    throw new InvalidInputError(
      `topLogprobs needs logprobs: true (got topLogprobs ${topLogprobs} without it)`,
    );
  }
  const promptLogprobs = o.promptLogprobs === undefined
    ? undefined
    : intField(o, "promptLogprobs", 0, 0, MAX_TOP_LOGPROBS);
  const seed = intField(o, "seed", randomSeed(), 0, Number.MAX_SAFE_INTEGER);
  const stop = stopField(o.stop);
  const ignoreEos = boolField(o, "ignoreEos");
  const asked = stopIdsField(o.stopTokenIds);
  const stopTokenIds = [...new Set([...(ignoreEos ? [] : config.eosTokenIds), ...asked])];
  // As vLLM's stop_reason: an eos id ends the answer as itself, even where it was asked for too.
  const askedStopIds = asked.filter((id) => ignoreEos || !config.eosTokenIds.includes(id));
  const minTokens = intField(o, "minTokens", 0, 0, MAX_NEW_TOKENS_LIMIT);
  if (minTokens > maxNewTokens) {
    throw new InvalidInputError(
      `minTokens ${minTokens} is more than maxNewTokens ${maxNewTokens}${
        o.maxNewTokens === undefined ? " (the default)" : ""
      }: the answer could not end`,
    );
  }
  const heldStopIds = minTokens > 0 ? [...new Set([...config.eosTokenIds, ...stopTokenIds])] : [];
  if (heldStopIds.length > MAX_HELD_STOPS) {
    throw new InvalidInputError(
      `minTokens holds back at most ${MAX_HELD_STOPS} stop ids; the eos ids and stopTokenIds ` +
        `make ${heldStopIds.length}`,
    );
  }
  const stopOnLoop = boolField(o, "stopOnLoop");
  const constraint = responseFormatField(o.responseFormat);
  if (constraint && ignoreEos && stopTokenIds.length === 0) {
    throw new InvalidInputError(
      "responseFormat ends the answer with an end-of-sequence or stop id once it is whole, but " +
        "ignoreEos leaves none: give stopTokenIds, or drop ignoreEos",
    );
  }
  if (constraint && minTokens > 0) {
    // Once the answer is whole only an end id may follow, which minTokens holds back: the draw
    // would have nothing left to take.
    throw new InvalidInputError(
      `responseFormat and minTokens ${minTokens} do not go together: an answer held to a format ` +
        "ends when it is whole; ask for a longer answer in the prompt instead",
    );
  }
  const echo = boolField(o, "echo");
  const continueFinalMessage = boolField(o, "continueFinalMessage");
  const chatTemplateKwargs = o.chatTemplateKwargs as Record<string, unknown> | undefined;
  if (
    chatTemplateKwargs !== undefined &&
    (typeof chatTemplateKwargs !== "object" || chatTemplateKwargs === null ||
      Array.isArray(chatTemplateKwargs))
  ) {
    throw new InvalidInputError(
      `chatTemplateKwargs must be an object of template variables, got ${
        preview(chatTemplateKwargs)
      }`,
    );
  }
  const signal = o.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidInputError(`signal must be an AbortSignal, got ${preview(signal)}`);
  }
  return {
    maxNewTokens,
    maxNewTokensGiven: o.maxNewTokens !== undefined && !toContext,
    minTokens,
    heldStopIds,
    temperature,
    topK,
    topP,
    minP,
    repetitionPenalty,
    frequencyPenalty,
    presencePenalty,
    logitBias,
    logprobs,
    topLogprobs,
    promptLogprobs,
    echo,
    continueFinalMessage,
    ...(chatTemplateKwargs ? { chatTemplateKwargs } : {}),
    seed,
    stop,
    stopTokenIds,
    askedStopIds,
    stopOnLoop,
    ...(constraint ? { constraint } : {}),
    ...(constraint && typeof o.responseFormat === "object" && o.responseFormat !== null &&
        "freeAfter" in o.responseFormat && typeof o.responseFormat.freeAfter === "string"
      ? { constraintFrom: o.responseFormat.freeAfter }
      : {}),
    signal,
  };
}

/**
 * The DFAs of the last schemas and choice lists compiled, by their JSON: clients send the same
 * schema request after request, and a request's options are resolved more than once (checked
 * before it queues, then run). Least recently used first; at most {@link DFA_CACHE_BYTES} of
 * tables.
 */
const dfaCache = new Map<string, Dfa>();
const DFA_CACHE_BYTES = 64 << 20;

/**
 * The last schemas and choice lists refused, by their JSON, with their error's class and message:
 * one past the automaton's budget takes most of a second to refuse, and a client that retries it
 * (or a request checked before it queues, then run) would pay that again on the engine's thread.
 * Least recently used first; at most {@link REFUSED_CACHE_ENTRIES}.
 */
const refusedCache = new Map<string, { error: new (message: string) => Error; message: string }>();
const REFUSED_CACHE_ENTRIES = 64;

/** How many refusals {@link cachedDfa} holds (tests). */
export function cachedRefusals(): number {
  return refusedCache.size;
}

/** The cache key of a format's compile (undefined: not JSON — a cycle, a BigInt). */
function formatKey(job: FormatJob): string | undefined {
  try {
    return `${job.kind}:${JSON.stringify(job.value)}`;
  } catch {
    return undefined; // the compiler says what is wrong with it
  }
}

/** Moves `key` to the most recent end of `cache`. */
function touch<V>(cache: Map<string, V>, key: string, v: V): V {
  cache.delete(key);
  cache.set(key, v);
  return v;
}

function cachedDfa(job: FormatJob): Dfa {
  const key = formatKey(job);
  const hit = key === undefined ? undefined : dfaCache.get(key);
  if (hit) return touch(dfaCache, key!, hit);
  const refused = key === undefined ? undefined : refusedCache.get(key);
  if (refused) {
    touch(refusedCache, key!, refused);
    throw new refused.error(refused.message); // a fresh error: callers may add to its message
  }
  let dfa: Dfa;
  try {
    dfa = compileFormat(job);
  } catch (e) {
    if (key !== undefined && e instanceof InvalidInputError) {
      remember(key, { error: e.constructor as new (message: string) => Error, message: e.message });
    }
    throw e;
  }
  if (key !== undefined) remember(key, dfa);
  return dfa;
}

/** Keeps a compiled DFA or a refusal under `key`, within the caches' bounds. */
function remember(
  key: string,
  v: Dfa | { error: new (message: string) => Error; message: string },
): void {
  if (!("next" in v)) {
    refusedCache.set(key, v);
    if (refusedCache.size > REFUSED_CACHE_ENTRIES) {
      refusedCache.delete(refusedCache.keys().next().value!);
    }
    return;
  }
  dfaCache.set(key, v);
  let bytes = 0;
  for (const d of dfaCache.values()) bytes += d.next.byteLength;
  for (const [k, d] of dfaCache) {
    if (bytes <= DFA_CACHE_BYTES || k === key) break;
    dfaCache.delete(k);
    bytes -= d.next.byteLength;
  }
}

/**
 * What a responseFormat's automaton is compiled from: a JSON schema (with the span a `freeAfter`
 * leaves free), a choice list or a regular expression — plain data, so another thread can compile
 * it ({@link precompileFormat}).
 */
export type FormatJob =
  | { kind: "schema"; value: unknown }
  | { kind: "schema+free"; value: [unknown, { after: string; until?: string }] }
  | { kind: "choice"; value: unknown }
  | { kind: "regex"; value: unknown };

/**
 * Compiles `job` (on any thread: src/server/_format_worker.ts runs it beside the engine).
 * @throws SchemaError / InvalidInputError, as the compilers refuse it
 */
export function compileFormat(job: FormatJob): Dfa {
  switch (job.kind) {
    case "schema":
      return schemaDfa(job.value);
    case "schema+free":
      return schemaDfa(job.value[0], job.value[1]);
    case "choice":
      return choiceDfa(job.value);
    case "regex":
      return regexDfa(job.value);
  }
}

/**
 * The compile a responseFormat needs (undefined: JSON mode, text, or none).
 * @throws InvalidInputError for a malformed responseFormat (not its schema: the compiler checks that)
 */
function formatJob(v: unknown): FormatJob | undefined {
  if (v === undefined || v === "text" || v === "json_object") return undefined;
  if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    const keys = Object.keys(v);
    const free = ["freeAfter", "freeUntil"];
    if (keys.includes("jsonSchema") && keys.every((k) => k === "jsonSchema" || free.includes(k))) {
      const { jsonSchema: schema, freeAfter, freeUntil } = v as Record<string, unknown>;
      for (const [name, x] of [["freeAfter", freeAfter], ["freeUntil", freeUntil]] as const) {
        if (x !== undefined && (typeof x !== "string" || x === "")) {
          throw new InvalidInputError(
            `responseFormat.${name} must be a non-empty string, got ${preview(x)}`,
          );
        }
      }
      if (freeUntil !== undefined && freeAfter === undefined) {
        throw new InvalidInputError("responseFormat.freeUntil needs freeAfter");
      }
      if (freeAfter === undefined) return { kind: "schema", value: schema };
      const span = { after: freeAfter as string, until: freeUntil as string | undefined };
      return { kind: "schema+free", value: [schema, span] };
    }
    if (keys.length === 1 && keys[0] === "choice") {
      return { kind: "choice", value: (v as { choice: unknown }).choice };
    }
    if (keys.length === 1 && keys[0] === "regex") {
      return { kind: "regex", value: (v as { regex: unknown }).regex };
    }
  }
  throw new InvalidInputError(
    `responseFormat must be "text", "json_object", { jsonSchema: <schema>[, freeAfter] }, { choice: ` +
      `[<strings>] } or { regex: <pattern> }, got ${preview(v)}`,
  );
}

/** What another thread's compile of a {@link FormatJob} gave: its DFA, or its refusal. */
export type CompiledFormat = { dfa: Dfa } | { error: { name: string; message: string } };

/** The refusals a compile may give, by class name (others are not cached: bugs, not answers). */
const REFUSALS: Record<string, new (message: string) => Error> = {
  SchemaError,
  InvalidInputError,
};

/**
 * The {@link precompileFormat} calls under way, by their format's key: a call for a format being
 * compiled waits for that compile rather than queueing one more (requests sent together with one
 * schema — a client's parallel calls, a request's check and its run — each compiled it again, the
 * last waiting for them all, where on one thread the first's cached DFA served the others).
 */
const compiling = new Map<string, Promise<void>>();

/**
 * Compiles the automaton of `options.responseFormat` with `compile` — another thread, so a long
 * compile (a pattern-heavy schema: seconds) holds neither the engine's thread nor the decode loops
 * on it — into the cache {@link resolveOptions} reads, where it is not there yet; resolveOptions
 * then finds it (or its refusal) at once. Does nothing for a malformed or uncachable format (the
 * options' own check says what is wrong), or where `compile` fails (the format compiles where it
 * is resolved, as without). A call for a format whose compile is under way waits for that one.
 */
export function precompileFormat(
  options: unknown,
  compile: (job: FormatJob) => Promise<CompiledFormat>,
): Promise<void> {
  if (typeof options !== "object" || options === null) return Promise.resolve();
  let job: FormatJob | undefined;
  try {
    job = formatJob((options as { responseFormat?: unknown }).responseFormat);
  } catch {
    return Promise.resolve();
  }
  const key = job && formatKey(job);
  if (!job || key === undefined || dfaCache.has(key) || refusedCache.has(key)) {
    return Promise.resolve();
  }
  let done = compiling.get(key);
  if (!done) {
    done = compileInto(key, job, compile).finally(() => compiling.delete(key));
    compiling.set(key, done);
  }
  return done;
}

/** {@link precompileFormat}'s compile of `job`, its DFA or refusal kept under `key`. */
async function compileInto(
  key: string,
  job: FormatJob,
  compile: (job: FormatJob) => Promise<CompiledFormat>,
): Promise<void> {
  let done: CompiledFormat;
  try {
    done = await compile(job);
  } catch {
    return;
  }
  if ("dfa" in done) return remember(key, done.dfa);
  const error = REFUSALS[done.error.name];
  if (error) remember(key, { error, message: done.error.message });
}

/** What responseFormat holds the answer to (undefined: nothing), a schema compiled. */
function responseFormatField(v: unknown): ResolvedOptions["constraint"] {
  if (v === "json_object") return "json_object";
  const job = formatJob(v);
  if (!job) return undefined;
  try {
    return cachedDfa(job);
  } catch (e) {
    // Named as the option, which the server's errors turn into its request field.
    if (e instanceof SchemaError) throw new SchemaError(`responseFormat: ${e.message}`);
    throw e;
  }
}

/**
 * A logit bias (`logitBias`, or the server's `logit_bias`: `name` in the messages) as (id, bias)
 * pairs: an object of ≤ 300 token ids (its keys), each biased by −100..100.
 * @throws InvalidInputError naming `name` and what is wrong
 */
export function parseLogitBias(v: unknown, name = "logitBias"): [number, number][] {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new InvalidInputError(`${name} must be an object of token id → bias, got ${preview(v)}`);
  }
  const entries = Object.entries(v);
  if (entries.length > MAX_LOGIT_BIAS) {
    throw new InvalidInputError(
      `${name} has ${entries.length} tokens; at most ${MAX_LOGIT_BIAS} may be biased`,
    );
  }
  return entries.map(([key, b]) => {
    const id = Number(key);
    if (!/^\d+$/.test(key) || !Number.isSafeInteger(id)) {
      throw new InvalidInputError(`${name} keys must be token ids, got ${preview(key)}`);
    }
    if (typeof b !== "number" || !(b >= -100 && b <= 100)) {
      throw new InvalidInputError(
        `${name}[${key}] must be a number in [-100, 100], got ${preview(b)}`,
      );
    }
    return [id, b];
  });
}

function boolField(o: Record<string, unknown>, key: string): boolean {
  const v = o[key] ?? false;
  if (typeof v !== "boolean") {
    throw new InvalidInputError(`${key} must be true or false, got ${preview(v)}`);
  }
  return v;
}

function clampTopP(v: number): number {
  return v > 0 && v <= 1 ? v : 1;
}

function numField(
  o: Record<string, unknown>,
  key: string,
  dflt: number,
  ok: (v: number) => boolean,
  want: string,
): number {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) {
    throw new InvalidInputError(`${key} must be ${want}, got ${preview(v)}`);
  }
  return v;
}

function intField(
  o: Record<string, unknown>,
  key: string,
  dflt: number,
  min: number,
  max: number,
): number {
  return numField(
    o,
    key,
    dflt,
    (v) => Number.isInteger(v) && v >= min && v <= max,
    `an integer in [${min}, ${max}]`,
  );
}

function stopField(v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    throw new InvalidInputError(`stop must be an array of strings, got ${preview(v)}`);
  }
  if (v.length > MAX_STOP_STRINGS) {
    throw new InvalidInputError(
      `stop has ${v.length} strings; at most ${MAX_STOP_STRINGS} are allowed`,
    );
  }
  for (const [i, s] of v.entries()) {
    if (typeof s !== "string" || s.length === 0 || s.length > MAX_STOP_LENGTH) {
      throw new InvalidInputError(
        `stop[${i}] must be a non-empty string of at most ${MAX_STOP_LENGTH} characters, got ${
          preview(s)
        }`,
      );
    }
  }
  return [...new Set(v as string[])];
}

function stopIdsField(v: unknown): number[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > MAX_STOP_TOKEN_IDS || !v.every(isTokenId)) {
    throw new InvalidInputError(
      `stopTokenIds must be an array of at most ${MAX_STOP_TOKEN_IDS} token ids, got ${preview(v)}`,
    );
  }
  return v;
}

function randomSeed(): number {
  const [hi, lo] = crypto.getRandomValues(new Uint32Array(2));
  return (hi & 0x1fffff) * 2 ** 32 + lo;
}

function isTokenId(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 2 ** 31;
}
