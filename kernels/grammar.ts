/**
 * JSON mode and structured outputs on the GPU (kernels/grammar.wgsl): `grammarMask` marks the
 * vocabulary ids that may come next in (ceil(vocab / 32)) u32 bits that the sampler reads
 * (kernels/sample.ts `allowed`), and `grammarAdvance` moves the automaton past the id drawn. JSON
 * mode's automaton and its state words: src/generate/json_grammar.ts; with a `dfa` (a JSON schema
 * or a choice list, src/generate/json_schema.ts) its table instead. Reference: src/ref/grammar.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { createStorage, readU32, uploadArray } from "../src/gpu/buffers.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  GRAMMAR_STATE_WORDS,
  type GrammarState,
  MAX_JSON_DEPTH,
  MAX_JSON_WHITESPACE,
  type TokenTable,
} from "../src/generate/json_grammar.ts";
import type { Dfa } from "../src/generate/_automaton.ts";
import { type BufferArg, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { MAX_HELD_STOPS } from "./sample.ts";

const Params = defineParams({ vocab: "u32", ahead: "u32", states: "u32" });

/** Most end ids a grammar holds (the sampler's held stop ids: eos and stop_token_ids). */
export const MAX_GRAMMAR_ENDS = MAX_HELD_STOPS;

/** Byte size of a grammar buffer (struct Grammar): the state, the end count and padding, the ids. */
export const GRAMMAR_BYTES = 4 * (GRAMMAR_STATE_WORDS + 4 + MAX_GRAMMAR_ENDS);

/** Threads (ids) of a mask workgroup. */
const MASK_WG = 256;

const DEFINES = {
  MAX_ENDS: MAX_GRAMMAR_ENDS,
  MAX_DEPTH: MAX_JSON_DEPTH,
  MAX_WS: MAX_JSON_WHITESPACE,
};

/** A {@link TokenTable} on the GPU. */
export interface GpuTokenTable {
  /** (vocab + 1) u32 byte offsets. */
  offsets: GPUBuffer;
  /** (ceil(total bytes / 4)) u32. */
  bytes: GPUBuffer;
  vocab: number;
}

/** Uploads a token table (once per model: about 1.6 MB for Qwen2's vocabulary). */
export function uploadTokenTable(gpu: Gpu, t: TokenTable): GpuTokenTable {
  if (t.offsets.length !== t.vocab + 1) {
    throw new InvalidInputError(
      `token table: ${t.offsets.length} offsets for a ${t.vocab}-id vocabulary (need vocab + 1)`,
    );
  }
  return {
    offsets: uploadArray(gpu, t.offsets, "grammar.offsets"),
    bytes: uploadArray(gpu, t.bytes, "grammar.bytes"),
    vocab: t.vocab,
  };
}

/** Words of the allowed-ids bitmask of a `vocab`-id vocabulary. */
export function maskWords(vocab: number): number {
  return ceilDiv(vocab, 32);
}

/** Creates a grammar buffer ({@link GRAMMAR_BYTES}); write it with {@link writeGrammar}. */
export function createGrammar(gpu: Gpu, label = "grammar"): GPUBuffer {
  return createStorage(gpu, GRAMMAR_BYTES, label);
}

/**
 * Sets a grammar buffer's state and end ids (queued: applies to command buffers submitted after
 * this call).
 */
export function writeGrammar(
  gpu: Gpu,
  buffer: GPUBuffer,
  state: GrammarState,
  endIds: readonly number[],
): void {
  gpu.device.queue.writeBuffer(buffer, 0, packGrammar(state, endIds));
}

/** A new grammar buffer holding `state` and `endIds` (checked before anything is allocated). */
export function uploadGrammar(
  gpu: Gpu,
  state: GrammarState,
  endIds: readonly number[],
  label = "grammar",
): GPUBuffer {
  return uploadArray(gpu, packGrammar(state, endIds), label);
}

/** A grammar buffer's words (struct Grammar), checked. */
function packGrammar(state: GrammarState, endIds: readonly number[]): Uint32Array<ArrayBuffer> {
  if (state.length !== GRAMMAR_STATE_WORDS) {
    throw new InvalidInputError(
      `grammar state must be ${GRAMMAR_STATE_WORDS} words, got ${state.length}`,
    );
  }
  if (endIds.length > MAX_GRAMMAR_ENDS) {
    throw new InvalidInputError(`grammar: ${endIds.length} end ids, at most ${MAX_GRAMMAR_ENDS}`);
  }
  const words = new Uint32Array(GRAMMAR_BYTES / 4);
  words.set(state);
  words[GRAMMAR_STATE_WORDS] = endIds.length;
  words.set(endIds, GRAMMAR_STATE_WORDS + 4);
  return words;
}

/** A {@link Dfa} on the GPU: its transitions, then its accepting flags, as one u32 array. */
export interface GpuDfa {
  /** (states · 256 + states) u32 */
  buffer: GPUBuffer;
  states: number;
}

/** Uploads a DFA's table (1 KiB a state). */
export function uploadDfa(gpu: Gpu, dfa: Dfa): GpuDfa {
  const words = new Uint32Array(dfa.states * 257);
  words.set(dfa.next);
  words.set(dfa.accept, dfa.states * 256);
  return { buffer: uploadArray(gpu, words, "grammar.dfa"), states: dfa.states };
}

/** Reads a grammar buffer's state back (for tests). */
export async function readGrammarState(gpu: Gpu, buffer: GPUBuffer): Promise<GrammarState> {
  return await readU32(gpu, buffer, GRAMMAR_STATE_WORDS);
}

/**
 * The mask dispatch: bit i of `allowed` (ceil(vocab / 32) u32) set when id i may come next from
 * the grammar buffer's state.
 */
export function grammarMask(
  gpu: Gpu,
  b: { table: GpuTokenTable; grammar: BufferArg; allowed: BufferArg; dfa?: GpuDfa },
): Dispatch {
  const vocab = b.table.vocab;
  checkSize("grammar", b.grammar, GRAMMAR_BYTES);
  checkSize("allowed", b.allowed, maskWords(vocab) * 4);
  const v = variant(gpu, {
    family: "grammar",
    entry: "mask",
    bindings: ["read", "read", "read", "read_write", ...(b.dfa ? ["read" as const] : [])],
    params: Params,
    defines: { ...DEFINES, MASK: true, DFA: b.dfa !== undefined },
  });
  return new Dispatch(
    gpu,
    v,
    [b.table.offsets, b.table.bytes, b.grammar, b.allowed, ...(b.dfa ? [b.dfa.buffer] : [])],
    Params.pack({ vocab, ahead: 0, states: b.dfa?.states ?? 0 }),
    [ceilDiv(vocab, MASK_WG)],
  );
}

/**
 * The advance dispatch: feeds tokens[state.step + ahead] (ahead 0 #if afterPrefill, else 1: the
 * sampler's ring convention, kernels/sample.ts) to the grammar's state.
 */
export function grammarAdvance(
  gpu: Gpu,
  b: {
    table: GpuTokenTable;
    grammar: BufferArg;
    state: BufferArg;
    tokens: BufferArg;
    dfa?: GpuDfa;
  },
  { afterPrefill = false } = {},
): Dispatch {
  checkSize("grammar", b.grammar, GRAMMAR_BYTES);
  const v = variant(gpu, {
    family: "grammar",
    entry: "advance",
    bindings: ["read", "read", "read_write", "read", "read", ...(b.dfa ? ["read" as const] : [])],
    params: Params,
    defines: { ...DEFINES, DFA: b.dfa !== undefined },
  });
  return new Dispatch(
    gpu,
    v,
    [
      b.table.offsets,
      b.table.bytes,
      b.grammar,
      b.state,
      b.tokens,
      ...(b.dfa ? [b.dfa.buffer] : []),
    ],
    Params.pack({
      vocab: b.table.vocab,
      ahead: afterPrefill ? 0 : 1,
      states: b.dfa?.states ?? 0,
    }),
    [1],
  );
}
