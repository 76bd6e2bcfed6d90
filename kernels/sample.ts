/**
 * Token sampling on the GPU (kernels/sample.wgsl): repetition penalty, frequency and presence
 * penalties (OpenAI's, over the generated tokens), greedy argmax or
 * temperature → top-k → top-p → seeded draw, in two dispatches with no readback. The chosen id
 * goes to the token ring and the largest processed score beside it. Reference: src/ref/sample.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { createStorage, STORAGE } from "../src/gpu/buffers.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  type BufferArg,
  ceilDiv,
  checkSize,
  Dispatch,
  TwoPassDispatch,
  variant,
} from "./_kernel.ts";
import { defineParams } from "./_params.ts";

const Params = defineParams({
  vocab: "u32",
  ahead: "u32",
  capacity: "u32",
  nvec: "u32",
  nslices: "u32",
});
/** Tokens per first-stage workgroup (SLICE in the shader). */
const SLICE = 1024;

/**
 * The id the sampler writes where no token can be drawn: every token masked (a grammar's
 * `allowed` bits, min_tokens' held stop ids) or of −∞ logit. Past any vocabulary, as
 * {@link NOT_FINITE} is: the host, reading the tokens back, tells them from drawn ids.
 */
export const NO_TOKEN = 0xffffffff;

/**
 * The id the sampler writes where a logit is NaN or +∞ (damaged weights, an f16 overflow): there
 * is no distribution to draw from, whether greedy or sampling.
 */
export const NOT_FINITE = 0xfffffffe;

/** Most logit_bias entries a request may set (OpenAI's limit). */
export const MAX_LOGIT_BIAS = 300;

/** Most stop ids min_tokens holds back (the eos ids and vLLM's ≤ 64 stop_token_ids). */
export const MAX_HELD_STOPS = 80;

/**
 * Byte size of the per-request sampling settings buffer (struct Sampling in the shader): ten
 * 4-byte fields, the bias count and min_p, the bias entries (8 bytes each), then min_tokens, the
 * stop count and the stop ids (4 bytes each).
 */
export const SAMPLING_BYTES = 48 + 8 * MAX_LOGIT_BIAS + 8 + 4 * MAX_HELD_STOPS;

/** Per-request sampling settings (transformers' names and meanings). */
export interface SamplingSettings {
  /** false or temperature 0: greedy argmax. */
  doSample: boolean;
  /** > 0 when sampling. */
  temperature: number;
  /** Keep the k most likely tokens (ties at the k-th all kept); 0: off. */
  topK: number;
  /** Keep the smallest most-likely set with probability ≥ topP; 1: off. In (0, 1]. */
  topP: number;
  /**
   * Keep the tokens at least this fraction as likely as the most likely (after top-k and top-p,
   * transformers' MinPLogitsWarper); 0 or absent: off. In [0, 1].
   */
  minP?: number;
  /** > 0; 1: off. Penalises every distinct prompt or generated id once. */
  repetitionPenalty: number;
  /**
   * OpenAI's frequency_penalty: subtracted from a token's score once for every time it was
   * generated (the prompt does not count; vLLM's semantics). 0: off.
   */
  frequencyPenalty: number;
  /** OpenAI's presence_penalty: subtracted once from every token generated so far. 0: off. */
  presencePenalty: number;
  /**
   * OpenAI's logit_bias: (token id, bias) pairs added to those logits before everything else
   * (≤ {@link MAX_LOGIT_BIAS}, ids distinct; −100 bans a token, 100 all but forces it). Default none.
   */
  logitBias?: readonly (readonly [number, number])[];
  /** Integer in [0, 2^53): the same seed gives the same tokens. */
  seed: number;
  /** Ids at the start of the prompt buffer the penalty looks at (the whole prompt). */
  promptLength: number;
  /**
   * vLLM's min_tokens: `stopIds` cannot be drawn for ring entries below it (the first minTokens
   * tokens). 0 or absent: off.
   */
  minTokens?: number;
  /** The ids minTokens holds back: the stop ids (≤ {@link MAX_HELD_STOPS}). */
  stopIds?: readonly number[];
}

/** Greedy argmax (transformers' do_sample=False) with no penalty; add the prompt length. */
export const GREEDY: Readonly<Omit<SamplingSettings, "promptLength">> = {
  doSample: false,
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  seed: 0,
};

/** Creates the sampling settings buffer ({@link SAMPLING_BYTES}). */
export function createSamplingParams(gpu: Gpu, label = "sampling"): GPUBuffer {
  return gpu.device.createBuffer({ label, size: SAMPLING_BYTES, usage: STORAGE });
}

/**
 * Validates `s` and writes it (queued: applies to command buffers submitted after this call).
 * @example
 * ```ts ignore
 * writeSamplingParams(gpu, buf, { doSample: true, temperature: 0.7, topK: 50, topP: 0.9,
 *   repetitionPenalty: 1.05, frequencyPenalty: 0, presencePenalty: 0.5, seed: 42,
 *   promptLength: ids.length });
 * ```
 */
export function writeSamplingParams(gpu: Gpu, buffer: GPUBuffer, s: SamplingSettings): void {
  const bad = (name: string, v: unknown, want: string) => {
    throw new InvalidInputError(`sampling ${name} must be ${want}, got ${v}`);
  };
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) {
    bad("temperature", s.temperature, "≥ 0");
  }
  if (!(Number.isInteger(s.topK) && s.topK >= 0 && s.topK < 2 ** 32)) {
    bad("topK", s.topK, "an integer ≥ 0");
  }
  if (!(s.topP > 0 && s.topP <= 1)) bad("topP", s.topP, "in (0, 1]");
  const minP = s.minP ?? 0;
  if (!(minP >= 0 && minP <= 1)) bad("minP", minP, "in [0, 1]");
  if (!(s.repetitionPenalty > 0) || !Number.isFinite(s.repetitionPenalty)) {
    bad("repetitionPenalty", s.repetitionPenalty, "> 0");
  }
  for (const name of ["frequencyPenalty", "presencePenalty"] as const) {
    if (!Number.isFinite(s[name])) bad(name, s[name], "a finite number");
  }
  const bias = s.logitBias ?? [];
  if (bias.length > MAX_LOGIT_BIAS) {
    bad("logitBias", `${bias.length} entries`, `≤ ${MAX_LOGIT_BIAS} entries`);
  }
  const ids = new Set<number>();
  for (const [id, b] of bias) {
    if (!(Number.isInteger(id) && id >= 0 && id < 2 ** 32) || ids.has(id)) {
      bad("logitBias", `token ${id}`, "distinct token ids");
    }
    if (!Number.isFinite(b)) bad("logitBias", `bias ${b} of token ${id}`, "a finite number");
    ids.add(id);
  }
  if (!(Number.isSafeInteger(s.seed) && s.seed >= 0)) {
    bad("seed", s.seed, "an integer in [0, 2^53)");
  }
  if (!(Number.isInteger(s.promptLength) && s.promptLength >= 0)) {
    bad("promptLength", s.promptLength, "≥ 0");
  }
  const minTokens = s.minTokens ?? 0, stops = s.stopIds ?? [];
  if (!(Number.isInteger(minTokens) && minTokens >= 0 && minTokens < 2 ** 32)) {
    bad("minTokens", minTokens, "an integer ≥ 0");
  }
  if (stops.length > MAX_HELD_STOPS) bad("stopIds", `${stops.length} ids`, `≤ ${MAX_HELD_STOPS}`);
  if (!stops.every((id) => Number.isInteger(id) && id >= 0 && id < 2 ** 32)) {
    bad("stopIds", `[${stops}]`, "token ids");
  }
  const greedy = !s.doSample || s.temperature === 0;
  const buf = new ArrayBuffer(SAMPLING_BYTES);
  const v = new DataView(buf);
  v.setFloat32(0, greedy ? 1 : s.temperature, true);
  v.setUint32(4, s.topK, true);
  v.setFloat32(8, s.topP, true);
  v.setFloat32(12, s.repetitionPenalty, true);
  v.setUint32(16, s.seed >>> 0, true);
  v.setUint32(20, Math.floor(s.seed / 2 ** 32), true);
  v.setUint32(24, greedy ? 1 : 0, true);
  v.setUint32(28, s.promptLength, true);
  v.setFloat32(32, s.frequencyPenalty, true);
  v.setFloat32(36, s.presencePenalty, true);
  v.setUint32(40, bias.length, true);
  v.setFloat32(44, minP, true);
  bias.forEach(([id, b], i) => {
    v.setUint32(48 + 8 * i, id, true);
    v.setFloat32(52 + 8 * i, b, true);
  });
  const held = 48 + 8 * MAX_LOGIT_BIAS;
  v.setUint32(held, minTokens, true);
  v.setUint32(held + 4, stops.length, true);
  stops.forEach((id, i) => v.setUint32(held + 8 + 4 * i, id, true));
  gpu.device.queue.writeBuffer(buffer, 0, buf);
}

/** Buffers a sampler reads and writes. */
export interface SampleBuffers {
  /** (vocab) f32 logits of the position being sampled. */
  logits: BufferArg;
  /** (≥ promptLength) u32 prompt ids, for the repetition penalty. */
  prompt: BufferArg;
  /** {@link createSamplingParams} buffer. */
  params: BufferArg;
  /** Decode state (kernels/state.ts). */
  state: BufferArg;
  /** (capacity) u32 token ring. */
  tokens: BufferArg;
  /** (capacity) f32: the largest processed score of each sampled position (transformers' `scores` max). */
  scores: BufferArg;
  /**
   * A responseFormat: (ceil(vocab / 32)) u32 bits, token i drawable only where bit i is set
   * (kernels/grammar.ts grammarMask). Absent: every token.
   */
  allowed?: BufferArg;
}

/** Shape of a sampler. */
export interface SampleShape {
  vocab: number;
  /** Entries of the token ring; a write at or past it is dropped. */
  capacity: number;
  /**
   * true for the sampler that follows prefill: it writes tokens[state.step] (= tokens[0]); the
   * decode step's sampler writes tokens[state.step + 1] (see kernels/state.wgsl).
   */
  afterPrefill?: boolean;
  /**
   * false: thresholds and the draw always pass over the whole vocabulary instead of over the
   * compacted candidates (same tokens, slower; tests compare the two paths). Default true.
   */
  candidates?: boolean;
}

/** Threads of the sampler's second-stage workgroup on this device (the draw order depends on it). */
export function sampleWorkgroupSize(gpu: Gpu): number {
  return Math.min(1024, 2 ** Math.floor(Math.log2(gpu.limits.maxComputeInvocationsPerWorkgroup)));
}

/**
 * A bound sampler: records its two kernels (per-slice scores, then the pick) with one `encode`,
 * and owns its scratch buffer. It is a {@link Dispatch}, so a decode loop treats it like any other.
 */
export class Sampler extends TwoPassDispatch {
  constructor(gpu: Gpu, b: SampleBuffers, s: SampleShape) {
    const wg = sampleWorkgroupSize(gpu);
    const nslices = ceilDiv(s.vocab, SLICE), nvec = (nslices * SLICE) / 4; // proc padded to whole slices
    if (nslices > wg) {
      throw new InvalidInputError(
        `sample: a ${s.vocab}-token vocabulary is over the ${wg * SLICE} this adapter handles`,
      );
    }
    // Workgroup memory of the pick: reduction array, digit histogram, a few scalars; the rest (up
    // to 1024 slots of 8 bytes) holds the compacted candidates.
    const fixed = wg * 4 + 256 * 4 + 16;
    const cap = Math.min(1024, Math.floor((gpu.limits.maxComputeWorkgroupStorageSize - fixed) / 8));
    const scratch = createStorage(gpu, (4 * nvec + 4 * nslices) * 4, "sample.scratch");
    const params = Params.pack({
      vocab: s.vocab,
      ahead: s.afterPrefill ? 0 : 1,
      capacity: s.capacity,
      nvec,
      nslices,
    });
    if (b.allowed) checkSize("allowed", b.allowed, ceilDiv(s.vocab, 32) * 4);
    const scores = variant(gpu, {
      family: "sample",
      entry: "scores_pass",
      bindings: [
        "read",
        "read",
        "read",
        "read",
        "read",
        "read_write",
        ...(b.allowed ? ["read" as const] : []),
      ],
      params: Params,
      defines: {
        STAGE1: true,
        MAX_BIAS: MAX_LOGIT_BIAS,
        MAX_STOPS: MAX_HELD_STOPS,
        MASK: b.allowed !== undefined,
      },
    });
    const pick = variant(gpu, {
      family: "sample",
      entry: "pick",
      bindings: ["read", "read", "read_write", "read_write", "read"],
      params: Params,
      defines: {
        WG: wg,
        CAP: cap,
        NO_CANDIDATES: s.candidates === false,
        MAX_BIAS: MAX_LOGIT_BIAS,
        MAX_STOPS: MAX_HELD_STOPS,
      },
    });
    const then = new Dispatch(gpu, pick, [b.params, b.state, b.tokens, b.scores, scratch], params, [
      1,
    ]);
    const first = [b.logits, b.prompt, b.params, b.state, b.tokens, scratch];
    if (b.allowed) first.push(b.allowed);
    super(gpu, scores, first, params, [nslices], then, scratch);
  }
}

/**
 * Builds a sampler writing tokens[w] and scores[w], w = state.step + (afterPrefill ? 0 : 1) —
 * tokens[w] is {@link NOT_FINITE} or {@link NO_TOKEN} where nothing can be drawn. The settings
 * come from the params buffer, so one sampler serves every request.
 */
export function sample(gpu: Gpu, b: SampleBuffers, s: SampleShape): Sampler {
  return new Sampler(gpu, b, s);
}
