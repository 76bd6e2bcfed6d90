/**
 * Batched decode: several sessions' decode steps as the rows of one pass. Row r of the batch's
 * activations is session r's token; the products (qkv, o, gate_up, down, lm_head) run once over
 * all rows — each weight element read once for all of them (kernels/linear.wgsl XROWS), which is
 * what a decode step's time is made of — while the embedding, the rope + KV write and the
 * attention run a dispatch per session over its own token ring, decode state and KV cache, and
 * each session's logits row is copied into its own `logits` for its own sampler.
 *
 * Rows are computed independently: a session's logits do not depend on what the other rows hold,
 * though the few-row GEMV's tuning follows the batch's size, so they are not the bits of the
 * session's step alone (≈ 1e-7 of the largest logit apart).
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import type { Dispatch } from "../../kernels/_kernel.ts";
import type { Session } from "./session.ts";

/** Built by `Qwen2VLModel.createDecodeBatch(sessions)`; destroy it before its sessions' buffers go. */
export class DecodeBatch {
  /** The sessions, in row order. */
  readonly sessions: readonly Session[];
  readonly #dispatches: readonly Dispatch[];
  readonly #buffers: readonly { destroy(): void }[];
  #destroyed = false;

  /** @internal use Qwen2VLModel.createDecodeBatch */
  constructor(
    sessions: readonly Session[],
    dispatches: readonly Dispatch[],
    buffers: readonly { destroy(): void }[],
  ) {
    this.sessions = sessions;
    this.#dispatches = dispatches;
    this.#buffers = buffers;
  }

  /** Dispatches of one step (for profilers and tests). */
  get dispatches(): readonly Dispatch[] {
    return this.#dispatches;
  }

  /** Whether destroy() was called. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * Records one decode step of every session into `pass`: each reads `tokens[state.step]` and
   * ends with its logits in `session.logits`; its sampler and `advance` are the caller's, as
   * after `encodeDecodeStep`.
   */
  encode(pass: GPUComputePassEncoder): void {
    if (this.#destroyed) throw new InvalidInputError("DecodeBatch.encode: the batch was destroyed");
    if (this.sessions.some((s) => s.disposed)) {
      throw new InvalidInputError("DecodeBatch.encode: one of its sessions was disposed");
    }
    for (const d of this.#dispatches) d.encode(pass);
  }

  /** Frees the batch's activations and dispatches (the sessions are their owners'). */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const d of this.#dispatches) d.destroy();
    for (const b of this.#buffers) b.destroy();
  }
}
