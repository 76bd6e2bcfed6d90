/**
 * Batched decode: several sessions' decode steps as the rows of one pass. Row r of the batch's
 * activations is session r's token; the products (qkv, o, gate_up, down, lm_head) run once over
 * all rows — each weight element read once for all of them (kernels/linear.wgsl XROWS,
 * kernels/linear_q.wgsl's few-row GEMV), which is what a decode step's time is made of — while the
 * embedding and the attention (the rope + KV write folded in: kernels/attention_decode.ts
 * decodeAttentionRopeKv; DECODER_FUSION.rowRopeKv off: a dispatch of its own) run a dispatch per
 * session over its own token ring, decode state and KV cache, and each session's logits row is
 * copied into its own `logits` for its own sampler.
 *
 * What a batch runs is built once and kept: the model's activations for up to GEMV_XROWS_MAX rows
 * with the products over n rows (per bucket of n: 2, 4, 8, 16 — the few-row GEMVs compute a
 * bucket's rows anyway), and each session's dispatches at a row (per row, on the session). A batch only puts them in order, so making one for another set of sessions costs
 * nothing once its sessions have been at those rows (building a 7B batch of eight whole took
 * 91 ms of CPU on the H200's host, 2026-11-30: a session joining or leaving stalled every stream
 * that long). A row may be left empty (a session that left, or one not stepping now): its
 * products run on whatever the row holds, and nothing reads them.
 *
 * Rows are computed independently: a session's logits do not depend on what the other rows hold,
 * though the float few-row GEMV's tuning follows the bucket, so they are not the bits of the
 * session's step alone (≈ 1e-7 of the largest logit apart). q4's and q8's rows are the same bits
 * in any batch (threads per row by shape: kernels/linear_q.ts gemvQXRowsTuning); q4's the single
 * step's where those threads per row are its own (the tiny test model: every product; QVQ-72B's
 * widths sum some products in another order: f32 rounding apart); q8's (f32 x) are the m = 1
 * f32-x GEMV's bits, while q8's single step runs kernels/gemv.ts's resident-x GEMV: f32 rounding
 * apart.
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import type { Dispatch } from "../../kernels/_kernel.ts";
import type { Session } from "./session.ts";

/** @internal The products of a step over n rows of the model's batch activations. */
export interface BatchProducts {
  /** Per layer, the qkv projection (its norm fused or before it). */
  qkv: Dispatch[][];
  /** Per layer, o_proj and the MLP. */
  rest: Dispatch[][];
  /** The final norm and lm_head. */
  head: Dispatch[];
}

/** @internal A session's dispatches at one row of the model's batch activations. */
export interface RowParts {
  /** Its token's embedding into the row. */
  embed: Dispatch[];
  /** Per layer, its attention with the rope + KV write (or the two: DECODER_FUSION.rowRopeKv). */
  attend: Dispatch[][];
  /** The row's logits into session.logits. */
  copy: Dispatch;
}

/**
 * One step of several sessions, made by `Qwen2VLModel.createDecodeBatch(rows)`: cheap to make, as
 * its parts are the model's and its sessions' (see the module doc).
 */
export class DecodeBatch {
  /** The sessions by row; undefined: an empty row. */
  readonly rows: readonly (Session | undefined)[];
  readonly #products: BatchProducts;
  readonly #parts: readonly (RowParts | undefined)[];
  #list?: Dispatch[];
  #destroyed = false;

  /** @internal use Qwen2VLModel.createDecodeBatch */
  constructor(
    rows: readonly (Session | undefined)[],
    products: BatchProducts,
    parts: readonly (RowParts | undefined)[],
  ) {
    this.rows = rows;
    this.#products = products;
    this.#parts = parts;
  }

  /** The sessions, in row order. */
  get sessions(): Session[] {
    return this.rows.filter((s) => s !== undefined);
  }

  /** @internal Dispatches of one step, in recording order (for profilers and tests). */
  get dispatches(): Dispatch[] {
    const p = this.#products, parts = this.#parts.filter((r) => r !== undefined);
    return this.#list ??= [
      ...parts.flatMap((r) => r.embed),
      ...p.qkv.flatMap((qkv, i) => [...qkv, ...parts.flatMap((r) => r.attend[i]), ...p.rest[i]]),
      ...p.head,
      ...parts.map((r) => r.copy),
    ];
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
    if (this.rows.some((s) => s?.disposed)) {
      throw new InvalidInputError("DecodeBatch.encode: one of its sessions was disposed");
    }
    for (const d of this.dispatches) d.encode(pass);
  }

  /** Ends the batch: it records nothing more (what it ran is the model's and the sessions'). */
  destroy(): void {
    this.#destroyed = true;
  }
}
