/**
 * Log probabilities of the sampled tokens on the GPU (kernels/logprobs.wgsl): for each ring entry,
 * the chosen token's log_softmax of the raw logits and the `top` most likely tokens with theirs, in
 * two dispatches after the sampler and no readback of the logits. Reference:
 * src/ref/logprobs.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";

const Params = defineParams({ vocab: "u32", ahead: "u32", capacity: "u32", nslices: "u32" });
/** Logits per first-stage workgroup (SLICE in the shader). */
const SLICE = 1024;

/** Most alternatives a token may report (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20;

/**
 * u32 words one ring entry's record takes with `top` alternatives: (id, logprob as f32 bits) of
 * the chosen token, then `top` pairs, most likely first.
 */
export function logprobWords(top: number): number {
  return 2 * (1 + top);
}

/** Buffers the logprobs kernels read and write. */
export interface LogprobBuffers {
  /** (vocab) f32 logits of the position just sampled (the sampler's). */
  logits: BufferArg;
  /** Decode state (kernels/state.ts). */
  state: BufferArg;
  /** (capacity) u32 token ring, entry w already written by the sampler. */
  tokens: BufferArg;
  /** (capacity, {@link logprobWords}(top)) u32 records. */
  out: BufferArg;
}

/** Shape of a logprobs dispatch pair. */
export interface LogprobShape {
  vocab: number;
  /** Ring entries; a record at or past it is dropped. */
  capacity: number;
  /** Alternatives a record lists (0 ..= {@link MAX_TOP_LOGPROBS}). */
  top: number;
  /** As the sampler's: the entry after prefill (tokens[state.step]) rather than a decode step's. */
  afterPrefill?: boolean;
  /**
   * Reduce with subgroup operations (default: where the device has them) rather than barrier
   * trees; tests run both.
   */
  subgroups?: boolean;
}

/**
 * The two dispatches that write ring entry w's record (w = state.step, or + 1 in a decode step):
 * encode them right after the sampler of that entry, while its logits are still the buffer's.
 */
export class Logprobs extends Dispatch {
  readonly #merge: Dispatch;
  readonly #scratch: GPUBuffer;

  constructor(gpu: Gpu, b: LogprobBuffers, s: LogprobShape) {
    if (!(Number.isInteger(s.top) && s.top >= 0 && s.top <= MAX_TOP_LOGPROBS)) {
      throw new InvalidInputError(
        `logprobs: top must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${s.top}`,
      );
    }
    if (!(Number.isInteger(s.vocab) && s.vocab > 0)) {
      throw new InvalidInputError(`logprobs: vocab must be a positive integer, got ${s.vocab}`);
    }
    const nslices = ceilDiv(s.vocab, SLICE);
    const candidates = Math.max(1, nslices * s.top);
    // The merge holds every slice's candidates (value and id) and its next one in workgroup
    // memory, beside its 2 KB of reductions and 1 KB of subgroup bests.
    const shared = candidates * 8 + nslices * 4 + 3072;
    if (shared > gpu.limits.maxComputeWorkgroupStorageSize) {
      throw new InvalidInputError(
        `logprobs: ${s.top} alternatives over a ${s.vocab}-token vocabulary need ${shared} bytes ` +
          `of workgroup memory; this adapter has ${gpu.limits.maxComputeWorkgroupStorageSize}. ` +
          "Ask for fewer top logprobs.",
      );
    }
    const scratch = createStorage(gpu, nslices * (1 + s.top) * 8, "logprobs.scratch");
    const subgroups = s.subgroups ?? gpu.features.subgroups;
    if (subgroups && !gpu.features.subgroups) {
      throw new InvalidInputError("logprobs: subgroups asked for, but this device has none");
    }
    const params = Params.pack({
      vocab: s.vocab,
      ahead: s.afterPrefill ? 0 : 1,
      capacity: s.capacity,
      nslices,
    });
    const slices = variant(gpu, {
      family: "logprobs",
      entry: "slice_pass",
      bindings: ["read", "read_write"],
      params: Params,
      defines: { STAGE1: true, TOPN: s.top, SUBGROUPS: subgroups },
    });
    super(gpu, slices, [b.logits, scratch], params, [nslices]);
    const merge = variant(gpu, {
      family: "logprobs",
      entry: "merge",
      bindings: ["read", "read", "read", "read", "read_write"],
      params: Params,
      defines: { TOPN: s.top, CANDIDATES: candidates, SLICES: nslices, SUBGROUPS: subgroups },
    });
    this.#merge = new Dispatch(gpu, merge, [b.logits, scratch, b.state, b.tokens, b.out], params, [
      1,
    ]);
    this.#scratch = scratch;
  }

  override encode(pass: GPUComputePassEncoder): void {
    super.encode(pass);
    this.#merge.encode(pass);
  }

  override destroy(): void {
    super.destroy();
    this.#merge.destroy();
    this.#scratch.destroy();
  }
}

/** Creates the logprobs dispatches of one sampler (after prefill, or a decode step's). */
export function logprobs(gpu: Gpu, b: LogprobBuffers, s: LogprobShape): Logprobs {
  return new Logprobs(gpu, b, s);
}

/** One ring entry's record: the chosen token and the alternatives, most likely first. */
export interface TokenLogprobRecord {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

/**
 * Parses `count` records of `top` alternatives from their u32 words (a readback of the records
 * buffer).
 */
export function parseLogprobRecords(
  words: Uint32Array,
  count: number,
  top: number,
): TokenLogprobRecord[] {
  const f = new Float32Array(words.buffer, words.byteOffset, words.length);
  const stride = logprobWords(top);
  const out: TokenLogprobRecord[] = [];
  for (let r = 0; r < count; r++) {
    const o = r * stride;
    const alts = [];
    for (let j = 1; j <= top; j++) alts.push({ id: words[o + 2 * j], logprob: f[o + 2 * j + 1] });
    out.push({ id: words[o], logprob: f[o + 1], top: alts });
  }
  return out;
}
