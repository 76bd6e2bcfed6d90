/**
 * A generation session: the GPU state of one conversation — KV cache, decode state, token ring,
 * logits and the decode step's activations with its prebuilt dispatches.
 * @module
 */
import { GpuError, InvalidInputError } from "../errors.ts";
import { fmtBytes, type Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Dispatch } from "../../kernels/_kernel.ts";
import {
  createDecodeState,
  decodeAttentionScratchBytes,
  type KvDType,
  kvElementBytes,
} from "../../kernels/mod.ts";
import type { TextConfig } from "./config.ts";
import { createDecoderBuffers, type DecoderBuffers, type LayerCache } from "./decoder.ts";
import type { RowParts } from "./decode_batch.ts";

/**
 * Created by `Qwen2VLModel.createSession(maxTokens)`. After `prefill`, the GPU holds the prompt's
 * K/V, `logits` holds the last prompt position's logits and `state` is
 * `{ cache_len: prompt length, position: next text position, step: 0 }` (kernels/state.wgsl).
 * Each decode step (`encodeDecodeStep`) reads its input token from `tokens[state.step]` and
 * writes `logits`; the caller's sampler writes `tokens[step + 1]` and `advance` moves the state.
 */
export class Session {
  /** Tokens the KV cache holds: prompt + generated. */
  readonly maxTokens: number;
  /** DecodeState {cache_len, position, step, reserved} u32 (kernels/state.wgsl). */
  readonly state: GPUBuffer;
  /** (maxTokens) u32 token ring: tokens[0] is the first generated token (sampled after prefill). */
  readonly tokens: GPUBuffer;
  /** (maxTokens) f32: the sampler's largest processed score per ring entry (parallel to tokens). */
  readonly scores: GPUBuffer;
  /** (maxTokens) u32: the prompt ids of the last prefill (the repetition penalty's history). */
  readonly prompt: GPUBuffer;
  /** (vocab) f32 logits of the last prefill position or of the last decode step. */
  readonly logits: GPUBuffer;
  /** Per layer K and V, (maxTokens, kvHeads · headDim) each, of kvCacheDtype. */
  readonly cache: readonly LayerCache[];
  /** Element type of the KV cache. */
  readonly kvCacheDtype: KvDType;
  /** Prompt tokens of the last prefill (0 before). */
  promptLength = 0;
  /** M-RoPE delta of the last prompt: a decode token at cache row c has position c + ropeDelta. */
  ropeDelta = 0;

  /** @internal one-token activations of the decode step */
  readonly decodeBuffers: DecoderBuffers;
  /** @internal decode attention partial sums, shared by all layers */
  readonly attnScratch: GPUBuffer;
  /**
   * @internal What builds the decode step's dispatches (set by the model's createSession). They
   * are built on first use, not with the session: building costs ≈ 0.1 ms of CPU a dispatch
   * (QVQ-72B: 487), which the GPU, idle between the vision tower and the prefill, used to wait
   * out; on first use (the first decode batch) the prefill is already running.
   */
  buildDecode: () => Dispatch[] = () => [];
  /**
   * @internal Batched decode: this session's dispatches at a row of its model's batch
   * activations, by row (src/model/decode_batch.ts), built on first use there and kept.
   */
  readonly batchRows: Map<number, RowParts> = new Map();
  #decode: Dispatch[] | undefined;
  readonly #allocError: Promise<GPUError | null>;
  readonly #gpu: Gpu;
  readonly #disposal = Promise.withResolvers<void>();
  /** Bytes of one token's K (or V) row in a layer: kvHeads · headDim · the KV element size. */
  readonly #rowBytes: number;
  #disposed = false;

  /** @internal use Qwen2VLModel.createSession */
  constructor(gpu: Gpu, t: TextConfig, maxTokens: number, kvCacheDtype: KvDType) {
    if (!Number.isInteger(maxTokens) || maxTokens < 2) {
      throw new InvalidInputError(
        `createSession: maxTokens must be an integer ≥ 2, got ${maxTokens}`,
      );
    }
    const kvd = t.numKvHeads * t.headDim, elem = kvElementBytes(kvCacheDtype);
    const layerBytes = maxTokens * kvd * elem;
    if (layerBytes > gpu.maxBinding) {
      throw new GpuError(
        `createSession: a ${maxTokens}-token KV cache needs ${
          fmtBytes(layerBytes)
        } per layer for K ` +
          `(and as much for V), over this adapter's ${fmtBytes(gpu.maxBinding)} binding limit; ` +
          `use a smaller maxTokens (at most ${Math.floor(gpu.maxBinding / (kvd * elem))})`,
      );
    }
    this.maxTokens = maxTokens;
    this.kvCacheDtype = kvCacheDtype;
    this.#gpu = gpu;
    this.#rowBytes = kvd * elem;
    gpu.device.pushErrorScope("out-of-memory");
    this.state = createDecodeState(gpu, "session.state");
    this.tokens = createStorage(gpu, maxTokens * 4, "session.tokens");
    this.scores = createStorage(gpu, maxTokens * 4, "session.scores");
    this.prompt = createStorage(gpu, maxTokens * 4, "session.prompt");
    this.logits = createStorage(gpu, t.vocabSize * 4, "session.logits");
    this.cache = Array.from({ length: t.numLayers }, (_, i) => ({
      k: createStorage(gpu, layerBytes, `kv.${i}.k`),
      v: createStorage(gpu, layerBytes, `kv.${i}.v`),
      dtype: kvCacheDtype,
    }));
    this.decodeBuffers = createDecoderBuffers(gpu, t, 1, "decode");
    this.attnScratch = createStorage(
      gpu,
      decodeAttentionScratchBytes({
        heads: t.numHeads,
        kvHeads: t.numKvHeads,
        headDim: t.headDim,
        maxTokens,
      }),
      "decode.attn_scratch",
    );
    const totalKv = 2 * t.numLayers * layerBytes;
    this.#allocError = gpu.device.popErrorScope().then((e) =>
      e && new GpuError(
        `out of GPU memory creating a ${maxTokens}-token session (KV cache ${
          fmtBytes(totalKv)
        }): ` +
          `${e.message}. Use a smaller maxTokens`,
      )
    );
  }

  /** Throws the GpuError of a failed allocation (checked by prefill). */
  async ready(): Promise<void> {
    if (this.#disposed) throw new InvalidInputError("this session was disposed; create a new one");
    const e = await this.#allocError;
    if (e) throw e;
  }

  /** @internal the decode step's dispatches, built on first use */
  get decodeDispatches(): readonly Dispatch[] {
    if (this.#disposed) throw new InvalidInputError("this session was disposed; create a new one");
    this.#decode ??= this.buildDecode();
    return this.#decode;
  }

  /**
   * Copies K and V rows [0, rows) of every layer from `from`, a session of the same model, into
   * this one (GPU copies, queued now: after the work `from`'s rows came from, before any later).
   * A prompt's rows depend only on the tokens up to them, so a session given another's rows of a
   * shared prompt prefix prefills only the rest (the prompt cache's copy for a prompt that a
   * running generation has prefilled: OpenAI's `n` choices, the same question asked at once).
   * @throws InvalidInputError for a disposed session, one of another shape or KV dtype, or
   *   `rows` outside 0..min(maxTokens)
   */
  copyRows(from: Session, rows: number): void {
    if (this.#disposed || from.#disposed) {
      throw new InvalidInputError("copyRows: a session was disposed; create a new one");
    }
    if (
      from.cache.length !== this.cache.length || from.#rowBytes !== this.#rowBytes ||
      from.kvCacheDtype !== this.kvCacheDtype || from.#gpu !== this.#gpu
    ) {
      throw new InvalidInputError(
        "copyRows: the sessions are of different models (layers, KV row size or dtype, device)",
      );
    }
    const most = Math.min(this.maxTokens, from.maxTokens);
    if (!Number.isInteger(rows) || rows < 0 || rows > most) {
      throw new InvalidInputError(`copyRows: rows must be an integer in 0..${most}, got ${rows}`);
    }
    if (rows === 0 || from === this) return;
    const bytes = rows * this.#rowBytes;
    const enc = this.#gpu.device.createCommandEncoder({ label: "session.copy_rows" });
    this.cache.forEach((c, i) => {
      enc.copyBufferToBuffer(from.cache[i].k, 0, c.k, 0, bytes);
      enc.copyBufferToBuffer(from.cache[i].v, 0, c.v, 0, bytes);
    });
    this.#gpu.device.queue.submit([enc.finish()]);
  }

  /** Whether dispose() was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Resolves once dispose() is called (whoever calls it). */
  get whenDisposed(): Promise<void> {
    return this.#disposal.promise;
  }

  /** Frees the session's GPU memory. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#disposal.resolve();
    for (const d of this.#decode ?? []) d.destroy();
    this.#decode = undefined;
    for (const r of this.batchRows.values()) {
      for (const d of [...r.embed, ...r.attend.flat(), r.copy]) d.destroy();
    }
    this.batchRows.clear();
    for (const c of this.cache) {
      c.k.destroy();
      c.v.destroy();
    }
    this.decodeBuffers.destroy();
    for (
      const b of [this.state, this.tokens, this.scores, this.prompt, this.logits, this.attnScratch]
    ) b.destroy();
  }
}
