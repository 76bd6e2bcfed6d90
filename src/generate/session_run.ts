/**
 * Binds a model session to the decode loop: the sampler that follows prefill, the decode step's
 * sampler and the state's `advance` (and, when logprobs are asked for, the logprobs kernels after
 * each sampler; with a responseFormat the grammar's mask before each sampler and its advance
 * after),
 * built once per generation and re-encoded for every step.
 * Ring entry 0 comes from the prefill's logits; entry i ≥ 1 from decode step i − 1, which reads
 * tokens[i − 1] (kernels/state.wgsl).
 * @module
 */
import type { Dispatch } from "../../kernels/_kernel.ts";
import { InvalidInputError } from "../errors.ts";
import {
  createSamplingParams,
  sample,
  type SamplingSettings,
  writeSamplingParams,
} from "../../kernels/sample.ts";
import { advance } from "../../kernels/state.ts";
import { logprobs, logprobWords } from "../../kernels/logprobs.ts";
import {
  type GpuTokenTable,
  grammarAdvance,
  grammarMask,
  maskWords,
  uploadDfa,
  uploadGrammar,
} from "../../kernels/grammar.ts";
import type { GrammarState } from "./json_grammar.ts";
import type { Dfa } from "./_automaton.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Qwen2VLModel, Session } from "../model/qwen2vl.ts";
import type { DecodeRun } from "./decode_stream.ts";

/**
 * The constraint's part of a run: JSON mode's automaton (src/generate/json_grammar.ts) or the DFA
 * of a schema, a choice list or a regex (src/generate/json_schema.ts).
 */
export interface RunGrammar {
  /** The vocabulary's bytes on the GPU (one per model). */
  table: GpuTokenTable;
  /** The DFA to hold the answer to; absent: JSON mode's automaton. */
  dfa?: Dfa;
  /**
   * The state before the first token (a continued answer's: after its start): the automaton's
   * words, or with a DFA its state in word 0.
   */
  start: GrammarState;
  /**
   * Ids that end the answer, allowed as ends once it is whole (before, one that is text is text
   * where its bytes go on: src/generate/format_tracker.ts).
   */
  endIds: readonly number[];
}

/** A {@link DecodeRun} over a prefilled session. Dispose it before the session. */
export class SessionRun implements DecodeRun {
  readonly gpu;
  readonly ring: GPUBuffer;
  readonly rows: number;
  readonly #model: Qwen2VLModel;
  readonly #session: Session;
  readonly #params: GPUBuffer;
  readonly #first: Dispatch;
  readonly #next: Dispatch;
  readonly #advance: Dispatch;
  /** With logprobs: the records, (capacity, logprobWords(top)) u32, and their dispatches. */
  readonly logprobs?: { buffer: GPUBuffer; top: number };
  readonly #lp?: { first: Dispatch; next: Dispatch };
  /**
   * A responseFormat's mask before each sampler, the automaton's advance after it, and their
   * buffers: (GRAMMAR_BYTES) the automaton's state, (ceil(vocab / 32)) u32 the allowed ids, and
   * with a DFA its table.
   */
  readonly #grammar?: {
    mask: Dispatch;
    first: Dispatch;
    next: Dispatch;
    buffers: GPUBuffer[];
  };
  #disposed = false;

  /**
   * @param session prefilled (its promptLength is the repetition penalty's prompt history)
   * @param sampling how each token is chosen (e.g. GREEDY from kernels/sample.ts)
   * @param topLogprobs record each token's logprob and this many alternatives (undefined: none)
   * @param grammar what the answer is held to (undefined: nothing)
   */
  constructor(
    model: Qwen2VLModel,
    session: Session,
    sampling: Omit<SamplingSettings, "promptLength">,
    topLogprobs?: number,
    grammar?: RunGrammar,
  ) {
    const gpu = model.gpu;
    this.gpu = gpu;
    this.#model = model;
    this.#session = session;
    this.ring = session.tokens;
    this.rows = model.config.text.vocabSize;
    this.#params = createSamplingParams(gpu, "generate.sampling");
    writeSamplingParams(gpu, this.#params, { ...sampling, promptLength: session.promptLength });
    const shape = { vocab: model.config.text.vocabSize, capacity: session.maxTokens };
    let allowed: GPUBuffer | undefined;
    if (grammar) {
      if (grammar.table.vocab !== shape.vocab) {
        throw new InvalidInputError(
          `responseFormat: the token table covers ${grammar.table.vocab} ids, the model ${shape.vocab}`,
        );
      }
      const state = uploadGrammar(gpu, grammar.start, grammar.endIds, "generate.grammar");
      allowed = createStorage(gpu, maskWords(shape.vocab) * 4, "generate.allowed");
      const dfa = grammar.dfa && uploadDfa(gpu, grammar.dfa);
      const g = {
        table: grammar.table,
        grammar: state,
        state: session.state,
        tokens: session.tokens,
        dfa,
      };
      this.#grammar = {
        mask: grammarMask(gpu, { table: grammar.table, grammar: state, allowed, dfa }),
        first: grammarAdvance(gpu, g, { afterPrefill: true }),
        next: grammarAdvance(gpu, g),
        buffers: [state, allowed, ...(dfa ? [dfa.buffer] : [])],
      };
    }
    const bufs = {
      logits: session.logits,
      prompt: session.prompt,
      params: this.#params,
      state: session.state,
      tokens: session.tokens,
      scores: session.scores,
      allowed,
    };
    this.#first = sample(gpu, bufs, { ...shape, afterPrefill: true });
    this.#next = sample(gpu, bufs, shape);
    this.#advance = advance(gpu, session.state);
    if (topLogprobs !== undefined) {
      const top = topLogprobs;
      const buffer = createStorage(
        gpu,
        shape.capacity * logprobWords(top) * 4,
        "generate.logprobs",
      );
      const b = {
        logits: session.logits,
        state: session.state,
        tokens: session.tokens,
        out: buffer,
      };
      this.logprobs = { buffer, top };
      this.#lp = {
        first: logprobs(gpu, b, { ...shape, top, afterPrefill: true }),
        next: logprobs(gpu, b, { ...shape, top }),
      };
    }
  }

  /**
   * Records ring entries [first, first + count): one compute pass, no CPU work per step.
   * @throws InvalidInputError after dispose(): a token pump still waiting on a readback when its
   *   generation ended must not record into a session the prompt cache has handed on
   */
  record(encoder: GPUCommandEncoder, first: number, count: number): void {
    if (this.#disposed) throw new InvalidInputError("SessionRun.record: this run was disposed");
    const pass = encoder.beginComputePass({ label: `decode ${first}..${first + count}` });
    let i = first;
    if (i === 0 && count > 0) {
      this.recordFirst(pass);
      i++;
    }
    for (; i < first + count; i++) {
      this.#model.encodeDecodeStep(pass, this.#session);
      this.recordSampling(pass);
    }
    pass.end();
  }

  /** The session this run samples from. */
  get session(): Session {
    return this.#session;
  }

  /** Whether dispose() was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Records ring entry 0: the sampler (and its logprobs, and the format's mask and advance) over
   * the prefill's logits.
   */
  recordFirst(pass: GPUComputePassEncoder): void {
    if (this.#disposed) {
      throw new InvalidInputError("SessionRun.recordFirst: this run was disposed");
    }
    const g = this.#grammar;
    g?.mask.encode(pass);
    this.#first.encode(pass);
    this.#lp?.first.encode(pass);
    g?.first.encode(pass);
  }

  /**
   * Records what follows a decode step of the session (its own `encodeDecodeStep`, or its row of a
   * DecodeBatch, having written session.logits): the sampler writing the next ring entry, its
   * logprobs, the format's mask and advance, and the decode state's advance.
   */
  recordSampling(pass: GPUComputePassEncoder): void {
    if (this.#disposed) {
      throw new InvalidInputError("SessionRun.recordSampling: this run was disposed");
    }
    const g = this.#grammar;
    g?.mask.encode(pass);
    this.#next.encode(pass);
    this.#lp?.next.encode(pass);
    g?.next.encode(pass);
    this.#advance.encode(pass);
  }

  /**
   * One decode step's dispatches in recording order (model step, sampler, advance): what
   * {@link record} encodes per ring entry ≥ 1, for profilers that time each one alone.
   */
  stepDispatches(): readonly Dispatch[] {
    const lp = this.#lp ? [this.#lp.next] : [];
    const g = this.#grammar;
    return [
      ...this.#session.decodeDispatches,
      ...(g ? [g.mask] : []),
      this.#next,
      ...lp,
      ...(g ? [g.next] : []),
      this.#advance,
    ];
  }

  /** Frees the sampler's (and the logprobs') buffers (the session is the caller's). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const d of [this.#first, this.#next, this.#advance]) d.destroy();
    this.#lp?.first.destroy();
    this.#lp?.next.destroy();
    this.#params.destroy();
    this.logprobs?.buffer.destroy();
    const g = this.#grammar;
    if (g) {
      for (const d of [g.mask, g.first, g.next]) d.destroy();
      for (const b of g.buffers) b.destroy();
    }
  }
}
