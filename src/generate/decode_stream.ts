/**
 * From generated token ids to the events a caller sees: text deltas that never split a UTF-8
 * character nor show the beginning of a stop string, then one final record. Applies every stop
 * rule in the order transformers would see the tokens: stop ids, stop strings, loop detection,
 * the token budget; and the AbortSignal between (and during) batches.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { SamplingError } from "../errors.ts";
import { LoopDetector } from "./loop_detector.ts";
import type { ResolvedOptions } from "./options.ts";
import { StopStringFilter } from "./stop_strings.ts";
import { type BatchRecorder, type PumpOptions, pumpTokens } from "./token_pump.ts";
import type { BatchRun, DecodeBatcher } from "./decode_batcher.ts";
import type {
  FinishReason,
  GenerationEvent,
  GenerationResult,
  PromptEcho,
  TokenLogprob,
} from "./types.ts";
import { logprobSide, type TokenLogprobRecord } from "../../kernels/logprobs.ts";
import { NOT_FINITE } from "../../kernels/sample.ts";
import { tokenLogprob, type TokenText } from "./logprobs.ts";
import type { FormatTracker } from "./format_tracker.ts";

/** Incremental detokenizer: text that became complete with this id ("" while a character is pending). */
export interface TokenTextDecoder {
  push(id: number): string;
  /** Whatever is still pending at the end (e.g. an incomplete UTF-8 sequence as U+FFFD). */
  flush(): string;
}

/**
 * `decoder` for a model whose rows outnumber the tokenizer's ids (Qwen2-VL: 151936 embedding and
 * lm_head rows, 151657 ids): an id past the vocabulary — a padding row that sampling can pick —
 * adds no text, as Hugging Face's decode skips ids it does not know, instead of failing the answer.
 */
export function skipUnknownIds(decoder: TokenTextDecoder, vocabSize: number): TokenTextDecoder {
  return {
    push: (id) => id < vocabSize ? decoder.push(id) : "",
    flush: () => decoder.flush(),
  };
}

/**
 * The error for a sampled id past the vocabulary rows (see {@link DecodeRun.rows}): the sampler's
 * NOT_FINITE or NO_TOKEN (kernels/sample.ts), or another id no draw can give.
 */
function noToken(at: number, id: number): SamplingError {
  if (id === NOT_FINITE) {
    return new SamplingError(
      `the model's logits for answer token ${at} are not all finite numbers (NaN or +infinity), ` +
        "so no token can be drawn: the weights may hold NaN / infinity (a damaged or " +
        'f16-overflowing checkpoint: try dtype "f32"), or the GPU computed them wrong.',
    );
  }
  return new SamplingError(
    `the sampler found no token to draw for answer token ${at} (id ${id} is past the ` +
      "vocabulary): every token was masked — by the response format, or by min_tokens' stop " +
      "ids — or had a logit of −infinity.",
  );
}

/** The GPU side of one generation, after its prefill was submitted. */
export interface DecodeRun {
  gpu: Gpu;
  /** (capacity) u32 ring: entry i = the i-th generated token. */
  ring: GPUBuffer;
  /** Records the work writing ring entries [first, first + count): entry 0 is the prefill's sample. */
  record: BatchRecorder;
  /**
   * With logprobs: the records the recorded work writes beside the ring, (capacity,
   * logprobWords(top)) u32 (kernels/logprobs.ts).
   */
  logprobs?: { buffer: GPUBuffer; top: number };
  /**
   * The model's vocabulary rows: the sampler writes an id past them only where the logits were
   * not finite (NaN or +infinity: broken weights, an overflow) or every token was masked, and the
   * stream then fails with a SamplingError rather than feed that id back as a token.
   */
  rows?: number;
}

/** What the caller measured before decoding, for the final record. */
export interface PromptStats {
  promptTokens: number;
  imageTokens: number;
  /** Prompt tokens the prompt cache served (their prefill was skipped). */
  cachedTokens: number;
  visionMs: number;
  /** performance.now() when the prefill started: the first token's arrival ends the prefill time. */
  prefillStart: number;
  /** The prompt echoed and scored, for the final record (GenerationResult.prompt). */
  prompt?: PromptEcho;
}

/** The usage a generation with `stats` has counted once `completionTokens` answer tokens are read. */
export function usageSoFar(
  stats: PromptStats,
  completionTokens: number,
): GenerationResult["usage"] {
  const { promptTokens, imageTokens, cachedTokens } = stats;
  return { promptTokens, completionTokens, imageTokens, cachedTokens };
}

/** Options of {@link decodeStream} beyond the generation options. */
export interface DecodeStreamOptions {
  /** Batch schedule (tests); the total comes from options.maxNewTokens, the side ring from the run. */
  pump?: Omit<PumpOptions, "total" | "side">;
  /** Loop detector factory (tests use small thresholds). */
  loopDetector?: () => LoopDetector;
  /** Receives every generated id the stream reads, in order (the prompt cache keeps them). */
  ids?: number[];
  /** A token's text and bytes, for logprobs entries (src/generate/logprobs.ts tokenTexts). */
  tokenText?: (id: number) => TokenText;
  /**
   * A response format's state (src/generate/format_tracker.ts), fed every id: a stop id ends the
   * answer only where it says so (where the answer may end); elsewhere it is text. Without one,
   * every stop id ends the answer.
   */
  format?: Pick<FormatTracker, "push">;
  /**
   * The decode loop the generations running at once share (src/generate/decode_batcher.ts): the
   * run (then a {@link BatchRun}: a SessionRun) decodes in it instead of a token pump of its own.
   */
  batcher?: DecodeBatcher;
}

function isBatchRun(run: DecodeRun): run is DecodeRun & BatchRun {
  const r = run as Partial<BatchRun>;
  return r.session !== undefined && typeof r.recordFirst === "function" &&
    typeof r.recordSampling === "function";
}

/**
 * Streams the generation: yields `{type: "delta"}` events, then `{type: "done"}`.
 * `prefillMs` runs until the first token is on the CPU (prefill + first sample + one readback);
 * `tokensPerSecond` counts the tokens after the first over the time after the first.
 */
export async function* decodeStream(
  run: DecodeRun,
  options: ResolvedOptions,
  decoder: TokenTextDecoder,
  stats: PromptStats,
  extra: DecodeStreamOptions = {},
): AsyncGenerator<GenerationEvent, GenerationResult, undefined> {
  const stopIds = new Set(options.stopTokenIds);
  const filter = new StopStringFilter(options.stop);
  const loop = options.stopOnLoop ? (extra.loopDetector?.() ?? new LoopDetector()) : null;
  const signal = options.signal;
  let text = "";
  let completion = 0;
  let firstAt = NaN;
  let finish: FinishReason | null = null;
  let stopReason: string | number | undefined; // what ended it, where the caller asked for it
  const asked = new Set(options.askedStopIds);
  // Logprobs: the records read back (by ring index), the entries not yet on a delta, and all.
  const lp = run.logprobs;
  const records: TokenLogprobRecord[] = [];
  const start = extra.pump?.first ?? 0; // ring index of the first token read
  let pending: TokenLogprob[] = [];
  const allLogprobs: TokenLogprob[] = [];
  const text_ = extra.tokenText ?? ((id: number) => ({ token: String(id), bytes: [] }));
  // A delta of text `t`, with the logprobs read since the last one and the counts so far.
  const withLogprobs = (t: string): GenerationEvent => {
    const ev: GenerationEvent = { type: "delta", text: t, usage: usageSoFar(stats, completion) };
    if (lp) [ev.logprobs, pending] = [pending, []];
    return ev;
  };

  const side = lp &&
    logprobSide(lp, (rs, first) => rs.forEach((r, j) => records[first + j] = r));
  const total = options.maxNewTokens;
  let batches: AsyncGenerator<Uint32Array, void, undefined>;
  if (extra.batcher) {
    if (!isBatchRun(run)) {
      throw new TypeError(
        "decodeStream: a batcher decodes SessionRuns only (the run has no session)",
      );
    }
    batches = extra.batcher.pump(run, { total, first: start, signal, side });
  } else {
    batches = pumpTokens(
      run.gpu,
      run.ring,
      (enc, first, count) => run.record(enc, first, count),
      { ...extra.pump, total, signal, side },
    );
  }
  // Resolves when the signal aborts, so a long batch does not delay the cancellation.
  let onAbort = () => {};
  const aborted = new Promise<"abort">((resolve) => {
    onAbort = () => resolve("abort");
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  // Set while a batch is awaited; return() on the pump then waits for it, so on abort we do not.
  let waiting = false, closed = false;
  // Stops the pump as soon as the answer ends (a consumer slow to take the last text must not
  // keep a shared decode loop stepping this generation).
  const close = async () => {
    if (closed) return;
    closed = true;
    const closing = batches.return(undefined).catch(() => {});
    if (!waiting) await closing;
  };
  try {
    while (finish === null) {
      if (signal?.aborted) {
        finish = "abort";
        break;
      }
      waiting = true;
      const next = await Promise.race([batches.next(), aborted]);
      if (next === "abort") {
        finish = "abort";
        break;
      }
      waiting = false;
      if (next.done) {
        finish = "length"; // budget used up (the loop below normally says so first)
        break;
      }
      if (Number.isNaN(firstAt)) firstAt = performance.now();
      let delta = "";
      for (const id of next.value) {
        if (run.rows !== undefined && id >= run.rows) throw noToken(completion, id);
        completion++;
        extra.ids?.push(id);
        const ends = extra.format ? extra.format.push(id) : stopIds.has(id);
        if (ends) {
          finish = "stop";
          if (asked.has(id)) stopReason = id;
          break;
        }
        if (lp) {
          const entry = tokenLogprob(records[start + completion - 1], text_);
          pending.push(entry);
          allLogprobs.push(entry);
        }
        // min_tokens: a stop string or the loop stop ends the answer from the token after the
        // minTokens-th on (the GPU holds the stop ids back as long), as vLLM (v1) checks them; a
        // stop string begun before still counts there.
        const armed = completion > options.minTokens;
        const r = filter.push(decoder.push(id), armed);
        delta += r.text;
        if (r.stopped) [finish, stopReason] = ["stop", filter.matched];
        else if (loop?.push(id) && armed) finish = "loop";
        else if (completion >= options.maxNewTokens) finish = "length";
        if (finish !== null) break;
      }
      if (finish !== null) await close(); // before the consumer takes the answer's last text
      if (delta || pending.length) {
        text += delta;
        yield withLogprobs(delta);
      }
    }
    await close();
    // The decoder's pending bytes and the text held back for a possible stop string belong to
    // the answer unless a stop string was found.
    let tail = filter.push(decoder.flush()).text;
    tail += filter.flush();
    if (tail) {
      text += tail;
      yield withLogprobs(tail); // pending is empty: every batch's delta took its entries
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await close();
  }
  const end = performance.now();
  const first = Number.isNaN(firstAt) ? end : firstAt;
  const decodeMs = end - first;
  const result: GenerationResult = {
    finishReason: finish ?? "abort",
    ...(stopReason !== undefined ? { stopReason } : {}),
    text,
    usage: usageSoFar(stats, completion),
    timings: {
      visionMs: stats.visionMs,
      prefillMs: first - stats.prefillStart,
      decodeMs,
      tokensPerSecond: completion > 1 && decodeMs > 0 ? (completion - 1) / (decodeMs / 1000) : 0,
    },
    ...(lp ? { logprobs: allLogprobs } : {}),
    ...(stats.prompt ? { prompt: stats.prompt } : {}),
  };
  yield { type: "done", result };
  return result;
}
