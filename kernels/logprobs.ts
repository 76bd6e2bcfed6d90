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
import { type BufferArg, ceilDiv, Dispatch, TwoPassDispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import type { SideRing } from "../src/generate/token_pump.ts";

const Params = defineParams({
  vocab: "u32",
  ahead: "u32",
  capacity: "u32",
  nslices: "u32",
  top: "u32",
});
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
 * Checks that `top` alternatives over a `vocab`-token vocabulary can be computed on this device
 * (before a prefill that would otherwise be wasted) and returns the merge's sizes: `room`, the
 * alternatives its variant has room for — all {@link MAX_TOP_LOGPROBS} where they fit the
 * device's workgroup memory (the count asked for is then a parameter, and a new top_logprobs
 * value no shader to compile at its first request), else just `top`; 0 for none.
 * @throws InvalidInputError naming what is out of range, or the workgroup memory it would take
 */
export function checkLogprobs(
  gpu: Gpu,
  vocab: number,
  top: number,
): { nslices: number; candidates: number; room: number } {
  if (!(Number.isInteger(vocab) && vocab > 0)) {
    throw new InvalidInputError(`logprobs: vocab must be a positive integer, got ${vocab}`);
  }
  if (!(Number.isInteger(top) && top >= 0 && top <= Math.min(MAX_TOP_LOGPROBS, vocab))) {
    throw new InvalidInputError(
      `logprobs: top must be an integer in [0, ${Math.min(MAX_TOP_LOGPROBS, vocab)}]` +
        `${vocab < MAX_TOP_LOGPROBS ? ` (the vocabulary has ${vocab} tokens)` : ""}, got ${top}`,
    );
  }
  const nslices = ceilDiv(vocab, SLICE);
  const limit = gpu.limits.maxComputeWorkgroupStorageSize;
  // The merge holds every slice's candidates (value and id) and its next one in workgroup memory,
  // beside its 2 KB of reductions and 1 KB of subgroup bests.
  const shared = (room: number) => Math.max(1, nslices * room) * 8 + nslices * 4 + 3072;
  const room = top === 0 ? 0 : shared(MAX_TOP_LOGPROBS) <= limit ? MAX_TOP_LOGPROBS : top;
  if (shared(room) > limit) {
    throw new InvalidInputError(
      `logprobs: ${top} alternatives over a ${vocab}-token vocabulary need ${shared(room)} bytes ` +
        `of workgroup memory; this adapter has ${limit}. Ask for fewer top logprobs.`,
    );
  }
  return { nslices, candidates: Math.max(1, nslices * room), room };
}

/** Whether the subgroup reductions run here: subgroups of 4 ..= 256 (the workgroup) lanes. */
function subgroupsUsable(gpu: Gpu): boolean {
  return gpu.features.subgroups && (gpu.adapterInfo.subgroupMinSize ?? 0) >= 4 &&
    (gpu.adapterInfo.subgroupMaxSize ?? Infinity) <= 256;
}

/**
 * The two variants of a logprobs pass pair (#if ROWS: over a block of prompt rows), and the
 * sizes checkLogprobs() gives them.
 */
function passVariants(
  gpu: Gpu,
  vocab: number,
  top: number,
  asked: boolean | undefined,
  rows: boolean,
) {
  const { nslices, candidates, room } = checkLogprobs(gpu, vocab, top);
  const usable = subgroupsUsable(gpu);
  const subgroups = asked ?? usable;
  if (subgroups && !usable) {
    throw new InvalidInputError(
      "logprobs: subgroups asked for, but this device has none of 4 to 256 lanes; " +
        "leave `subgroups` unset",
    );
  }
  const slices = variant(gpu, {
    family: "logprobs",
    entry: "slice_pass",
    bindings: ["read", "read_write"],
    params: Params,
    defines: { STAGE1: true, TOPN: room, SUBGROUPS: subgroups, ROWS: rows },
  });
  const merge = variant(gpu, {
    family: "logprobs",
    entry: "merge",
    bindings: rows
      ? ["read", "read", "read", "read_write"]
      : ["read", "read", "read", "read", "read_write"],
    params: Params,
    defines: {
      TOPN: room,
      CANDIDATES: candidates,
      SLICES: nslices,
      SUBGROUPS: subgroups,
      ROWS: rows,
    },
  });
  return { nslices, room, slices, merge };
}

/**
 * The two dispatches that write ring entry w's record (w = state.step, or + 1 in a decode step):
 * encode them right after the sampler of that entry, while its logits are still the buffer's.
 */
export class Logprobs extends TwoPassDispatch {
  constructor(gpu: Gpu, b: LogprobBuffers, s: LogprobShape) {
    const { nslices, room, slices, merge } = passVariants(gpu, s.vocab, s.top, s.subgroups, false);
    const scratch = createStorage(gpu, nslices * (1 + room) * 8, "logprobs.scratch");
    const params = Params.pack({
      vocab: s.vocab,
      ahead: s.afterPrefill ? 0 : 1,
      capacity: s.capacity,
      nslices,
      top: s.top,
    });
    const then = new Dispatch(gpu, merge, [b.logits, scratch, b.state, b.tokens, b.out], params, [
      1,
    ]);
    super(gpu, slices, [b.logits, scratch], params, [nslices], then, scratch);
  }
}

/** Creates the logprobs dispatches of one sampler (after prefill, or a decode step's). */
export function logprobs(gpu: Gpu, b: LogprobBuffers, s: LogprobShape): Logprobs {
  return new Logprobs(gpu, b, s);
}

/** Buffers of a prompt's logprobs over a block of its rows. */
export interface PromptLogprobBuffers {
  /** (rows, vocab) f32 logits: row r predicts the token ids[offset + r]. */
  logits: BufferArg;
  /** u32 prompt ids (at least offset + rows). */
  ids: BufferArg;
  /** (rows, {@link logprobWords}(top)) u32 records. */
  out: BufferArg;
}

/** Shape of a prompt-logprobs dispatch pair. */
export interface PromptLogprobShape {
  vocab: number;
  /** Rows of logits scored (1 ..= 65535). */
  rows: number;
  /** Alternatives a record lists (0 ..= {@link MAX_TOP_LOGPROBS}). */
  top: number;
  /** Index in `ids` of the token row 0 is scored for. */
  offset: number;
  /** As {@link LogprobShape}'s. */
  subgroups?: boolean;
}

/**
 * The two dispatches that score a block of prompt rows (vLLM's prompt_logprobs): record r holds
 * ids[offset + r] and its log_softmax under logits row r, then the `top` most likely tokens of
 * that row — the records the decode loop's {@link Logprobs} writes, for the prompt's own tokens.
 */
export class PromptLogprobs extends TwoPassDispatch {
  constructor(gpu: Gpu, b: PromptLogprobBuffers, s: PromptLogprobShape) {
    if (!(Number.isInteger(s.rows) && s.rows >= 1 && s.rows <= 65535)) {
      throw new InvalidInputError(
        `prompt logprobs: rows must be an integer in [1, 65535], got ${s.rows}`,
      );
    }
    if (!(Number.isInteger(s.offset) && s.offset >= 0)) {
      throw new InvalidInputError(
        `prompt logprobs: offset must be a non-negative integer, got ${s.offset}`,
      );
    }
    if (s.rows * s.vocab * 4 > gpu.maxBinding) {
      throw new InvalidInputError(
        `prompt logprobs: ${s.rows} rows of ${s.vocab} logits exceed this device's ` +
          `${gpu.maxBinding}-byte binding; score fewer rows at a time`,
      );
    }
    const { nslices, room, slices, merge } = passVariants(gpu, s.vocab, s.top, s.subgroups, true);
    const scratch = createStorage(
      gpu,
      s.rows * nslices * (1 + room) * 8,
      "prompt_logprobs.scratch",
    );
    const params = Params.pack({
      vocab: s.vocab,
      ahead: s.offset,
      capacity: s.rows,
      nslices,
      top: s.top,
    });
    const then = new Dispatch(gpu, merge, [b.logits, scratch, b.ids, b.out], params, [s.rows]);
    super(gpu, slices, [b.logits, scratch], params, [nslices, s.rows], then, scratch);
  }
}

/** Creates the dispatches that score a block of prompt rows ({@link PromptLogprobs}). */
export function promptLogprobs(
  gpu: Gpu,
  b: PromptLogprobBuffers,
  s: PromptLogprobShape,
): PromptLogprobs {
  return new PromptLogprobs(gpu, b, s);
}

/** One ring entry's record: the chosen token and the alternatives, most likely first. */
export interface TokenLogprobRecord {
  /** The chosen (or prompt) token. */
  id: number;
  /** Its log_softmax of the raw logits. */
  logprob: number;
  /** The most likely tokens and theirs, most likely first (the lower id on ties). */
  top: { id: number; logprob: number }[];
}

/**
 * A token pump's side ring (src/generate/token_pump.ts) for a run's records: each batch's are
 * parsed and handed to `take` with the ring index of the first.
 */
export function logprobSide(
  lp: { buffer: GPUBuffer; top: number },
  take: (records: TokenLogprobRecord[], first: number) => void,
): SideRing {
  return {
    buffer: lp.buffer,
    entryBytes: logprobWords(lp.top) * 4,
    take: (words, first, count) => take(parseLogprobRecords(words, count, lp.top), first),
  };
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
