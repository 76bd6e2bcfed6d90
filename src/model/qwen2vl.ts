/**
 * Qwen2-VL (and QVQ-72B-Preview) on WebGPU: load a checkpoint, encode images, prefill a prompt
 * into a session's KV cache, and record decode steps that run without any CPU work per token.
 *
 * @example
 * ```ts ignore
 * const model = await Qwen2VLModel.load("path/to/Qwen2-VL-2B-Instruct");
 * const images = model.encodeImages(pixelValues, [[1, 24, 32]]);
 * const session = model.createSession(4096);
 * await model.prefill(session, inputIds, images);
 * // sample tokens[0] from session.logits, then per step:
 * //   model.encodeDecodeStep(pass, session); sampler → tokens[step + 1]; advance(state)
 * ```
 * @module
 */
import { GpuError, InvalidInputError } from "../errors.ts";
import { fmtBytes, Gpu, requestGpu } from "../gpu/device.ts";
import { createStorage, readF32, readU32, uploadArray, writeArray } from "../gpu/buffers.ts";
import type { QuantDType, WeightDType } from "../gpu/tensor.ts";
import { type ModelSource, openModelSource } from "../model_files.ts";
import { SafetensorsCheckpoint } from "../safetensors.ts";
import { type Dispatch, withParamsArena } from "../../kernels/_kernel.ts";
import {
  checkLogprobs,
  logprobWords,
  parseLogprobRecords,
  promptLogprobs,
  type TokenLogprobRecord,
} from "../../kernels/logprobs.ts";
import {
  checkKvDType,
  copyRows,
  embedding,
  embeddingAt,
  type GpuRopeTable,
  type KvDType,
  mropeTable,
  uploadRopeTable,
  writeDecodeState,
} from "../../kernels/mod.ts";
import { parseConfig, type Qwen2VLConfig } from "./config.ts";
import {
  createDecoderBuffers,
  decodeAttend,
  type DecoderBuffers,
  headDispatches,
  layerDispatches,
  layerParts,
  prefillAttend,
  rowAttend,
} from "./decoder.ts";
import { getRopeIndex, type GridThw } from "./rope_index.ts";
import { imageTokenCount } from "../image.ts";
import { Session } from "./session.ts";
import { type BatchProducts, DecodeBatch, type RowParts } from "./decode_batch.ts";
import { GEMV_XROWS_MAX, LINEAR_CHOICE, xrowsBucket } from "../../kernels/linear.ts";
import { GEMV_XROWS } from "../../kernels/linear_q.ts";
import { isQuant } from "../gpu/tensor.ts";
import { type ImageEmbeds, submit, submitBefore, VisionTower } from "./vision.ts";
import {
  estimateMemory,
  type GpuWeights,
  loadOption,
  type MemoryEstimate,
  orList,
  planWeights,
  prefillChunkTokens,
  smallerWeights,
  uploadWeights,
  type WeightPlan,
} from "./weights.ts";

export type { ImageEmbeds } from "./vision.ts";
export { Session } from "./session.ts";
export { DecodeBatch } from "./decode_batch.ts";

/** Options of {@link Qwen2VLModel.load}. */
export interface LoadOptions {
  /** The device (default: a new one from requestGpu()). */
  gpu?: Gpu;
  /** Weight dtype on the GPU: default f16 where the adapter has shader-f16, else f32. */
  dtype?: WeightDType;
  /** Quantize the decoder's matrices and lm_head to q8/q4 while loading (kernels/linear_q.ts). */
  quant?: QuantDType;
  /**
   * Quantize the vision tower's matrices to q8 while loading and run them as int8 GEMMs with int8
   * activations (and its attention's Q·Kᵀ in int8): faster image encoding for a small error in
   * the image embeddings (weights.ts PlanOptions.visionQuant). Only "q8"; default: the tower in
   * `dtype`.
   */
  visionQuant?: QuantDType;
  /** Longest context (prompt + generated) a session may hold; default the config's max_position_embeddings. */
  maxContext?: number;
  /**
   * Element type of the sessions' KV cache: "f32" (default) or "f16" — half the cache's memory,
   * for long contexts on a small card, at 11 significant bits a value (3 more than transformers'
   * bf16 cache; tiny model: logits move ≤ 1.3e-4 of their largest). It does not speed decoding
   * up: decode attention waits on latency, not bytes (H200, BENCHMARKS.md), and prefill at long
   * context runs ≈ 3–4 % slower.
   */
  kvCacheDtype?: KvDType;
  /** Refuse to load when the estimated GPU memory exceeds this many bytes (WebGPU cannot tell the device's size). */
  memoryLimit?: number;
  /** Prompt tokens per prefill pass (default: as many as fit, up to 512). Tests force small chunks. */
  prefillChunk?: number;
  /** Called as weights stream to the GPU. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

/** Options of {@link Qwen2VLModel.prefill}. */
export interface PrefillOptions {
  /** Also read back the logits of every prompt position (tests, the `logits` CLI): (seq, vocab) f32. */
  allLogits?: boolean;
  /**
   * Stops the prefill between chunks: it rejects with the signal's reason (a DOMException
   * "AbortError" by default) and submits no further chunk. The session stays usable.
   */
  signal?: AbortSignal;
  /**
   * The session's KV cache already holds the first `tokens` prompt tokens — rows an earlier
   * prefill or decode of this session wrote for these same ids and images (the prompt cache,
   * src/generate/prompt_cache.ts) — so only the rest runs. `grids` are the images among those
   * tokens (M-RoPE positions need every image); the `images` argument then holds the embeddings
   * of the later images only. `tokens` must not fall inside an image. Default: none (row 0 on).
   */
  cached?: { tokens: number; grids: readonly GridThw[] };
  /**
   * Score the prompt itself (vLLM's prompt_logprobs): for every token after the first, its
   * log_softmax under the logits of the position before it, and this many most likely tokens
   * there (0..20) — the lm_head over every prompt row, scored on the GPU a chunk at a time.
   * Needs the whole prompt run (no `cached` tokens).
   */
  promptLogprobs?: number;
}

/** What {@link Qwen2VLModel.prefill} read back beside filling the session. */
export interface PrefillResult {
  /** With `allLogits`: (seq, vocab) f32. */
  logits?: Float32Array;
  /** With `promptLogprobs`: seq − 1 records, record i for prompt token i + 1. */
  promptLogprobs?: TokenLogprobRecord[];
}

/** Options of {@link planModel}. */
export interface PlanModelOptions {
  /** Matrix dtype on the GPU. */
  dtype: WeightDType;
  /** Quantize the decoder's matrices and lm_head (see weights.ts PlanOptions.quant). */
  quant?: QuantDType;
  /** Quantize the vision tower's matrices (see weights.ts PlanOptions.visionQuant). */
  visionQuant?: QuantDType;
  /** The adapter's maxStorageBufferBindingSize (128 MiB lavapipe, 2 GiB H100). */
  maxBinding: number;
  /** The adapter's maxBufferSize (default: maxBinding). */
  maxBufferSize?: number;
  /** Default: the config's max_position_embeddings. */
  maxContext?: number;
  /** The KV cache's element type (default f32). */
  kvCacheDtype?: KvDType;
}

/** What {@link planModel} finds: everything checked, nothing uploaded. */
export interface ModelPlan {
  /** The validated config.json. */
  config: Qwen2VLConfig;
  /** Every GPU tensor with its sources and chunking. */
  plan: WeightPlan;
  /** GPU memory at maxContext. */
  memory: MemoryEstimate;
  /** Longest context planned for. */
  maxContext: number;
  /** The KV cache's element type. */
  kvCacheDtype: KvDType;
  /** The open checkpoint (headers only); close() it when done. */
  checkpoint: SafetensorsCheckpoint;
}

/**
 * Reads config.json and the safetensors headers and checks that every tensor the model needs is
 * there with the right shape and dtype, plans chunking for the given binding limit and estimates
 * GPU memory — without a GPU and without reading any weight data.
 * @throws ModelFileError for a bad config or checkpoint
 */
export async function planModel(
  source: ModelSource | string,
  opts: PlanModelOptions,
): Promise<ModelPlan> {
  const src = typeof source === "string" ? openModelSource(source) : source;
  const config = parseConfig(await src.readJson("config.json"), src.pathOf("config.json"));
  const maxContext = checkMaxContext(config, opts.maxContext);
  const kvCacheDtype = checkKvDType(opts.kvCacheDtype) ?? "f32";
  const checkpoint = await SafetensorsCheckpoint.open(src);
  try {
    const plan = planWeights(config, (n) => (checkpoint.has(n) ? checkpoint.get(n) : undefined), {
      dtype: opts.dtype,
      quant: opts.quant,
      visionQuant: opts.visionQuant,
      maxBinding: opts.maxBinding,
      maxBufferSize: opts.maxBufferSize,
      where: checkpoint.origin,
    });
    return {
      config,
      plan,
      memory: estimateMemory(config, plan, maxContext, kvCacheDtype),
      maxContext,
      kvCacheDtype,
      checkpoint,
    };
  } catch (e) {
    checkpoint.close();
    throw e;
  }
}

/**
 * The context a model is loaded for: `maxContext`, or config.json's max_position_embeddings, which
 * is also its limit (vLLM refuses a longer max_model_len too): rotary positions past it are ones
 * the model never saw, and its rope table grows with the context.
 */
function checkMaxContext(config: Qwen2VLConfig, maxContext?: number): number {
  const limit = config.text.maxPositionEmbeddings, n = maxContext ?? limit;
  if (!Number.isInteger(n) || n < 2 || n > limit) {
    throw new InvalidInputError(
      `maxContext must be an integer from 2 to the model's max_position_embeddings ${limit} ` +
        `(config.json), got ${maxContext}`,
    );
  }
  return n;
}

/** A loaded Qwen2-VL. */
export class Qwen2VLModel {
  /** The validated config.json. */
  readonly config: Qwen2VLConfig;
  /** The device the weights live on. */
  readonly gpu: Gpu;
  /** How the checkpoint was mapped onto GPU tensors. */
  readonly plan: WeightPlan;
  /** The up-front GPU memory estimate at maxContext. */
  readonly memory: MemoryEstimate;
  /** Longest session (prompt + generated tokens) this model accepts; the rope table covers it. */
  readonly maxContext: number;
  /** Element type of its sessions' KV cache. */
  readonly kvCacheDtype: KvDType;
  readonly #w: GpuWeights;
  readonly #vision: VisionTower;
  readonly #rope: GpuRopeTable;
  readonly #chunk: number;
  readonly #ownsGpu: boolean;
  /** The decoder's matrices' element types (batchesDecode). */
  #textDtypes?: Set<WeightDType | QuantDType>;
  /** Sessions this model created (createDecodeBatch takes only those). */
  readonly #sessions = new WeakSet<Session>();
  /**
   * Batched decode's activations, (GEMV_XROWS_MAX, ·) each, and (GEMV_XROWS_MAX, vocab) f32
   * logits, with the products of a step over m of their rows, per bucket m (2, 4, 8, 16): made on
   * first use, kept.
   */
  #batch?: { buffers: DecoderBuffers; logits: GPUBuffer; products: Map<number, BatchProducts> };
  #disposed = false;

  private constructor(
    cfg: Qwen2VLConfig,
    gpu: Gpu,
    plan: WeightPlan,
    memory: MemoryEstimate,
    maxContext: number,
    kvCacheDtype: KvDType,
    w: GpuWeights,
    chunk: number,
    ownsGpu: boolean,
  ) {
    this.#ownsGpu = ownsGpu;
    this.config = cfg;
    this.gpu = gpu;
    this.plan = plan;
    this.memory = memory;
    this.maxContext = maxContext;
    this.kvCacheDtype = kvCacheDtype;
    this.#w = w;
    this.#chunk = chunk;
    this.#vision = new VisionTower(gpu, cfg.vision, w);
    const t = cfg.text;
    this.#rope = uploadRopeTable(
      gpu,
      mropeTable(t.headDim, t.ropeTheta, t.mropeSection, maxContext),
      "text.rope",
    );
  }

  /**
   * Loads config.json and the safetensors weights from a directory, URL or ModelSource. The config
   * and every tensor's name, shape and dtype are checked, and the memory estimated, before any
   * GPU allocation; then weights stream to the GPU tensor by tensor.
   * @throws ModelFileError for a bad config or checkpoint, GpuError when it does not fit
   */
  static async load(source: ModelSource | string, opts: LoadOptions = {}): Promise<Qwen2VLModel> {
    const src = typeof source === "string" ? openModelSource(source) : source;
    if (opts.gpu !== undefined && !(opts.gpu instanceof Gpu)) {
      throw new InvalidInputError(
        "gpu must be a Gpu from requestGpu() (or left out for a new device), got " +
          Object.prototype.toString.call(opts.gpu),
      );
    }
    const gpu = opts.gpu ?? await requestGpu();
    let p: ModelPlan | undefined;
    try {
      const dtype = opts.dtype ?? (gpu.features.f16 ? "f16" : "f32");
      const adapter = gpu.adapterInfo.description || gpu.adapterInfo.vendor;
      if (dtype === "f16" && !gpu.features.f16) {
        throw new GpuError(
          `dtype "f16" needs shader-f16, which this adapter (${adapter}) lacks; use dtype "f32"`,
        );
      }
      if (opts.kvCacheDtype === "f16" && !gpu.features.f16) {
        throw new GpuError(
          `kvCacheDtype "f16" needs shader-f16, which this adapter (${adapter}) lacks; use "f32"`,
        );
      }
      p = await planModel(src, {
        dtype,
        quant: opts.quant,
        visionQuant: opts.visionQuant,
        maxBinding: gpu.maxBinding,
        maxBufferSize: gpu.limits.maxBufferSize,
        maxContext: opts.maxContext,
        kvCacheDtype: opts.kvCacheDtype,
      });
      const { config: cfg, plan, memory, maxContext, kvCacheDtype } = p;
      if (opts.memoryLimit !== undefined && memory.total > opts.memoryLimit) {
        throw new GpuError(
          `the model needs about ${fmtBytes(memory.total)} of GPU memory (weights ` +
            `${fmtBytes(memory.weights)} ${dtype}, KV cache ${fmtBytes(memory.kvCache)} ` +
            `${kvCacheDtype} for ${maxContext} tokens, activations ` +
            `${fmtBytes(memory.activations)}), over the ${fmtBytes(opts.memoryLimit)} limit; ` +
            `to fit, load with ${
              orList([
                ...smallerWeights(plan),
                ...(kvCacheDtype === "f32"
                  ? [loadOption("kvCacheDtype", "f16", "kv-cache-dtype", "QVQ_KV_CACHE_DTYPE")]
                  : []),
                "a shorter maxContext",
              ])
            }`,
        );
      }
      const chunk = opts.prefillChunk ?? prefillChunkTokens(cfg, gpu.maxBinding);
      if (!Number.isInteger(chunk) || chunk < 1) {
        throw new InvalidInputError(`prefillChunk must be a positive integer, got ${chunk}`);
      }
      const w = await uploadWeights(gpu, p.checkpoint, plan, opts.onProgress);
      return new Qwen2VLModel(
        cfg,
        gpu,
        plan,
        memory,
        maxContext,
        kvCacheDtype,
        w,
        chunk,
        !opts.gpu,
      );
    } catch (e) {
      if (!opts.gpu) gpu.destroy();
      throw e;
    } finally {
      p?.checkpoint.close();
    }
  }

  /**
   * Wraps weights already on the GPU, planned by {@link planWeights} for `config` (used by
   * src/model/synthetic.ts, which fills them from a seed instead of reading files). The model
   * takes ownership of `weights` (and of `gpu` when `ownsGpu`).
   */
  static fromGpuWeights(
    gpu: Gpu,
    config: Qwen2VLConfig,
    plan: WeightPlan,
    weights: GpuWeights,
    opts: {
      maxContext?: number;
      prefillChunk?: number;
      ownsGpu?: boolean;
      kvCacheDtype?: KvDType;
    } = {},
  ): Qwen2VLModel {
    const maxContext = checkMaxContext(config, opts.maxContext);
    const chunk = opts.prefillChunk ?? prefillChunkTokens(config, gpu.maxBinding);
    const kv = checkKvDType(opts.kvCacheDtype) ?? "f32";
    const memory = estimateMemory(config, plan, maxContext, kv);
    return new Qwen2VLModel(
      config,
      gpu,
      plan,
      memory,
      maxContext,
      kv,
      weights,
      chunk,
      !!opts.ownsGpu,
    );
  }

  /**
   * Vision tower + merger on all images of a prompt.
   * @param pixelValues (Σ t·h·w, 1176) f32 from the image processor
   * @param gridThw one (t, h, w) per image, in prompt order
   * @param opts.maxPatches most patches the tower runs in one pass (VisionTower.encode)
   * @returns (Σ t·h·w / 4, hidden) f32 on the GPU; destroy() it when the prompt is prefilled
   */
  encodeImages(
    pixelValues: Float32Array,
    gridThw: readonly GridThw[],
    opts: { maxPatches?: number } = {},
  ): ImageEmbeds {
    this.#alive();
    return this.#vision.encode(pixelValues, gridThw, opts);
  }

  /** A session for up to `maxTokens` tokens (prompt + generated). Allocation failures surface in prefill. */
  createSession(maxTokens: number): Session {
    this.#alive();
    if (maxTokens > this.maxContext) {
      throw new InvalidInputError(
        `createSession: maxTokens ${maxTokens} exceeds the model's maxContext ${this.maxContext} (set at load)`,
      );
    }
    const gpu = this.gpu, t = this.config.text;
    const s = new Session(gpu, t, maxTokens, this.kvCacheDtype);
    this.#sessions.add(s);
    s.buildDecode = () => {
      this.#alive();
      const b = s.decodeBuffers;
      const ds: Dispatch[] = [
        ...embeddingAt(gpu, b.x, s.tokens, s.state, this.#w.matrix("text.embed")),
      ];
      for (let i = 0; i < t.numLayers; i++) {
        const attend = decodeAttend(
          gpu,
          t,
          b,
          s.cache[i],
          maxTokens,
          this.#rope,
          s.state,
          s.attnScratch,
        );
        ds.push(...layerDispatches(gpu, t, this.#w, i, b, 1, attend));
      }
      ds.push(...headDispatches(gpu, t, this.#w, s.logits, b.h, b.x, 1, b.xp));
      return ds;
    };
    return s;
  }

  /**
   * Whether `n` sessions' decode steps can run as the rows of one pass
   * ({@link createDecodeBatch}) faster than one after another: 2 ≤ n ≤ GEMV_XROWS_MAX
   * (kernels/linear.ts), where the products of a few rows take the few-row GEMVs
   * (LINEAR_CHOICE.xrows; H200, 7B f16: 1.1× one row's time at 2 rows, 2.1× at 8): f16 / f32, q4
   * (int8 x) and q8 (f32 x) weights (kernels/linear_q.ts GEMV_XROWS, GEMV_XROWS_F32). Without
   * them — the tiled GEMMs, q4's int8 GEMM (4.4× one GEMV at 2 rows), q8's dequantization — no.
   */
  batchesDecode(n: number): boolean {
    if (!(Number.isInteger(n) && n >= 2 && n <= GEMV_XROWS_MAX && LINEAR_CHOICE.xrows)) {
      return false;
    }
    // (the decoder's matrix dtypes, looked up once: the batcher asks every cycle)
    const dtypes = this.#textDtypes ??= (() => {
      const t = this.config.text, names = ["text.lm_head"];
      for (let i = 0; i < t.numLayers; i++) {
        for (const m of ["qkv", "o", "gate_up", "down"]) names.push(`text.layers.${i}.${m}`);
      }
      return new Set(names.map((name) => this.#w.matrix(name).dtype));
    })();
    return [...dtypes].every((d) => !isQuant(d) || GEMV_XROWS[d]);
  }

  /**
   * The decode step of several sessions as one batch ({@link DecodeBatch}): a step of each,
   * recorded by `batch.encode(pass)`, session `rows[r]`'s token in row r of one set of products
   * (undefined: an empty row, whose products nothing reads). What it runs is built on first use
   * and kept — the products per bucket of rows (2, 4, 8, 16), each session's dispatches per row (≈ 0.1 ms of CPU a
   * dispatch: a session's embedding, an attention a layer and its logits copy) — so keep a session at its row while it stays.
   * @throws InvalidInputError unless {@link batchesDecode} says yes for the row count, or where
   *   a session is disposed, of another model, or given twice, or no row holds one
   */
  createDecodeBatch(rows: readonly (Session | undefined)[]): DecodeBatch {
    this.#alive();
    const n = rows.length;
    const sessions = rows.filter((s) => s !== undefined);
    if (!this.batchesDecode(n)) {
      throw new InvalidInputError(
        `createDecodeBatch: ${n} sessions cannot decode as one batch (2 to ${GEMV_XROWS_MAX} ` +
          "sessions, with the few-row GEMVs on for the weights' dtypes: check batchesDecode())",
      );
    }
    if (
      sessions.length === 0 || new Set(sessions).size !== sessions.length ||
      sessions.some((s) => s.disposed || !this.#sessions.has(s))
    ) {
      throw new InvalidInputError(
        "createDecodeBatch: each session must be a live session of this model, given once " +
          "(and at least one)",
      );
    }
    const gpu = this.gpu, t = this.config.text;
    const st = this.#batch ??= {
      buffers: createDecoderBuffers(gpu, t, GEMV_XROWS_MAX, "batch"),
      logits: createStorage(gpu, GEMV_XROWS_MAX * t.vocabSize * 4, "batch.logits"),
      products: new Map(),
    };
    // The products run over n's bucket of rows (kernels/linear.ts xrowsBucket: the few-row
    // GEMVs compute that many anyway), so a model builds at most four sets of them.
    const m = xrowsBucket(n);
    let products = st.products.get(m);
    if (!products) {
      const qkv: Dispatch[][] = [], rest: Dispatch[][] = [];
      for (let i = 0; i < t.numLayers; i++) {
        const p = layerParts(gpu, t, this.#w, i, st.buffers, m, []);
        qkv.push(p.qkv);
        rest.push(p.rest);
      }
      const head = headDispatches(gpu, t, this.#w, st.logits, st.buffers.h, st.buffers.x, m);
      st.products.set(m, products = { qkv, rest, head });
    }
    const parts = rows.map((s, row) => {
      if (!s) return undefined;
      let p = s.batchRows.get(row);
      if (!p) s.batchRows.set(row, p = this.#rowParts(s, row));
      return p;
    });
    return new DecodeBatch(rows, products, parts);
  }

  /** A session's dispatches at a row of the batch activations ({@link createDecodeBatch}). */
  #rowParts(s: Session, row: number): RowParts {
    const gpu = this.gpu, t = this.config.text, st = this.#batch!, b = st.buffers;
    return {
      embed: embeddingAt(gpu, b.x, s.tokens, s.state, this.#w.matrix("text.embed"), { row }),
      attend: Array.from(
        { length: t.numLayers },
        (_, i) => rowAttend(gpu, t, b, s, i, this.#rope, row),
      ),
      copy: copyRows(gpu, s.logits, st.logits, { n: 1, cols: t.vocabSize, srcRow: row }),
    };
  }

  /**
   * Runs the prompt through the model, filling the session's KV cache from row 0 (a new
   * conversation; from row `opts.cached.tokens` when the session already holds the prompt's start),
   * leaving the last position's logits in `session.logits` and the decode state at
   * `{ cache_len: seq, position: seq + ropeDelta, step: 0 }`. Image embeddings replace the
   * `<|image_pad|>` tokens' embeddings (transformers: `inputs_embeds.masked_scatter(image_mask,
   * image_embeds)`), positions come from {@link getRopeIndex}. Long prompts run in chunks;
   * `opts.signal` is checked before each one.
   * @param inputIds (seq) token ids, image pads already expanded to each image's token count
   * @param images embeddings of the prompt's images (after `opts.cached.tokens`, when given)
   * @returns the logits of every position (`opts.allLogits`) and the prompt's logprobs
   *   (`opts.promptLogprobs`) where asked for
   */
  async prefill(
    session: Session,
    inputIds: ArrayLike<number>,
    images?: ImageEmbeds,
    opts: PrefillOptions = {},
  ): Promise<PrefillResult> {
    this.#alive();
    await session.ready();
    const gpu = this.gpu, cfg = this.config, t = cfg.text, H = t.hiddenSize, V = t.vocabSize;
    const S = inputIds.length;
    if (S < 1 || S >= session.maxTokens) {
      throw new InvalidInputError(
        `prefill: the prompt has ${S} tokens; it needs 1 to ${
          session.maxTokens - 1
        } for this session ` +
          `(maxTokens ${session.maxTokens}, one left to generate)`,
      );
    }
    const start = opts.cached?.tokens ?? 0, cachedGrids = opts.cached?.grids ?? [];
    if (!Number.isInteger(start) || start < 0 || start >= S) {
      throw new InvalidInputError(
        `prefill: cached.tokens must be an integer in 0..${S - 1} (one prompt token at least ` +
          `runs), got ${start}`,
      );
    }
    const top = opts.promptLogprobs;
    // Every row through the lm_head: all logits read back, or the prompt scored on the GPU.
    const scoring = opts.allLogits || top !== undefined;
    if (start > 0 && scoring) {
      throw new InvalidInputError(
        `prefill: ${
          opts.allLogits ? "allLogits" : "promptLogprobs"
        } needs the whole prompt run (no cached.tokens)`,
      );
    }
    if (top !== undefined) checkLogprobs(gpu, V, top);
    const ids = new Uint32Array(S);
    // Image-pad runs from `start` on, in prompt order (those before it are in the cache).
    const runs: { start: number; len: number }[] = [];
    let cachedPads = 0;
    for (let i = 0; i < S; i++) {
      const id = inputIds[i];
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new InvalidInputError(
          `prefill: token ${i} is ${id}, outside the vocabulary 0..${V - 1}`,
        );
      }
      ids[i] = id;
      if (id !== cfg.imageTokenId && id !== cfg.videoTokenId) continue;
      if (i < start) {
        cachedPads++;
        continue;
      }
      const last = runs[runs.length - 1];
      if (last && last.start + last.len === i) last.len++;
      else runs.push({ start: i, len: 1 });
    }
    const merge = cfg.vision.spatialMergeSize;
    const cachedImageTokens = cachedGrids.reduce((a, g) => a + imageTokenCount(g, merge), 0);
    if (cachedPads !== cachedImageTokens) {
      throw new InvalidInputError(
        `prefill: the first ${start} (cached) prompt tokens hold ${cachedPads} image tokens but ` +
          `cached.grids make ${cachedImageTokens}; the cached part must end between images`,
      );
    }
    const nImage = runs.reduce((a, r) => a + r.len, 0);
    if (nImage !== (images?.tokens ?? 0)) {
      throw new InvalidInputError(
        `prefill: the prompt has ${nImage} image and video tokens (ids ${cfg.imageTokenId}, ${cfg.videoTokenId})${
          start > 0 ? ` after its ${start} cached ones` : ""
        } but ${images?.tokens ?? 0} ` +
          `image embeddings were given; expand each image placeholder to its grid's token count`,
      );
    }
    const { positions, ropeDelta } = getRopeIndex(
      ids,
      [...cachedGrids, ...(images?.grids ?? [])],
      [cfg.imageTokenId, cfg.videoTokenId],
      merge,
    );
    const pos = new Uint32Array(S * 3); // (S, 3) u32, the rope kernel's layout
    for (let i = 0; i < S; i++) {
      for (let a = 0; a < 3; a++) pos[i * 3 + a] = positions[a * S + i];
    }

    let chunk = this.#chunk;
    if (scoring) chunk = Math.max(1, Math.min(chunk, Math.floor(gpu.maxBinding / (V * 4))));
    chunk = Math.min(chunk, S - start);
    const b = createDecoderBuffers(gpu, t, chunk, "prefill");
    const last = createStorage(gpu, H * 4, "prefill.last_x"); // (1, H) f32
    const lastH = createStorage(gpu, H * 4, "prefill.last_h");
    const logitsAll = scoring // (chunk, vocab) f32
      ? createStorage(gpu, chunk * V * 4, "prefill.logits")
      : undefined;
    const out = opts.allLogits ? new Float32Array(S * V) : undefined;
    // With promptLogprobs: the prompt's ids (S) u32, what a chunk's rows are scored for, and the
    // chunk's records, (chunk, logprobWords(top)) u32.
    const scored = top === undefined ? undefined : {
      top,
      ids: uploadArray(gpu, ids, "prefill.prompt_ids"),
      out: createStorage(gpu, chunk * logprobWords(top) * 4, "prefill.prompt_logprobs"),
      records: [] as TokenLogprobRecord[],
    };
    const embed = this.#w.matrix("text.embed");
    // Image embedding rows used so far: runs consume images.buffer rows in order.
    const runRow = runs.map((_, i) => runs.slice(0, i).reduce((a, r) => a + r.len, 0));
    // With a signal, at most two chunks are queued at once (the GPU runs one while the next is
    // recorded), so an abort is seen between chunks and leaves little GPU work behind it. (Deno's
    // onSubmittedWorkDone() waits inside the call for all submitted work, this chunk's included
    // (src/gpu/buffers.ts readMapped): the GPU idles while the next chunk's first layer is built.)
    let queued: Promise<void> | undefined; // the GPU finishing the chunk before the last one
    try {
      for (let c = start, n = 0; c < S; c += n) {
        opts.signal?.throwIfAborted();
        // No last chunk of one row where there are more: a one-row chunk runs the decode's GEMVs
        // (m = 1), whose q8 / q4 int8 activations round otherwise than the prefill GEMMs' — a
        // prompt of 512k + 1 tokens answered differently uncached and from the prompt cache (which
        // prefills the last two rows again). So 513 rows go as 511 + 2, as the cache's rerun does.
        n = chunk > 2 && S - c === chunk + 1 ? chunk - 1 : Math.min(chunk, S - c);
        const idsBuf = uploadArray(gpu, ids.subarray(c, c + n), "prefill.ids");
        const posBuf = uploadArray(gpu, pos.subarray(c * 3, (c + n) * 3), "prefill.pos");
        // The chunk's rows that predict a prompt token (the last prompt row predicts none).
        const rows = scored ? Math.min(n, S - 1 - c) : 0;
        let scorer: Dispatch | undefined;
        // The chunk's params in one uniform buffer (kernels/_kernel.ts ParamsArena): built and
        // submitted without an await between.
        withParamsArena(gpu, t.numLayers * 32 + 64, () => {
          const ds: Dispatch[] = [...embedding(gpu, b.x, idsBuf, embed, { n })];
          runs.forEach((r, i) => {
            const lo = Math.max(r.start, c), hi = Math.min(r.start + r.len, c + n);
            if (lo < hi) {
              ds.push(copyRows(gpu, b.x, images!.buffer, {
                n: hi - lo,
                cols: H,
                srcRow: runRow[i] + lo - r.start,
                dstRow: lo - c,
              }));
            }
          });
          for (let l = 0; l < t.numLayers; l++) {
            if (submitBefore(l)) submit(gpu, ds.splice(0), "prefill");
            const attend = prefillAttend(
              gpu,
              t,
              b,
              session.cache[l],
              session.maxTokens,
              this.#rope,
              posBuf,
              n,
              c,
            );
            ds.push(...layerDispatches(gpu, t, this.#w, l, b, n, attend));
          }
          if (c + n === S) {
            ds.push(copyRows(gpu, last, b.x, { n: 1, cols: H, srcRow: n - 1 }));
            ds.push(...headDispatches(gpu, t, this.#w, session.logits, lastH, last, 1));
          }
          if (logitsAll) ds.push(...headDispatches(gpu, t, this.#w, logitsAll, b.h, b.x, n));
          if (scored && rows > 0) {
            scorer = promptLogprobs(
              gpu,
              { logits: logitsAll!, ids: scored.ids, out: scored.out },
              { vocab: V, rows, top: scored.top, offset: c + 1 },
            );
            ds.push(scorer);
          }
          submit(gpu, ds, "prefill");
        });
        idsBuf.destroy();
        posBuf.destroy();
        if (out) out.set(await readF32(gpu, logitsAll!, n * V), c * V);
        if (scorer) { // (submit() destroyed its dispatches: their buffers go once the work is done)
          const words = await readU32(gpu, scored!.out, rows * logprobWords(scored!.top));
          scored!.records.push(...parseLogprobRecords(words, rows, scored!.top));
        }
        if (opts.signal && c + n < S) {
          await queued;
          queued = gpu.device.queue.onSubmittedWorkDone();
        }
      }
    } finally {
      b.destroy();
      last.destroy();
      lastH.destroy();
      logitsAll?.destroy();
      scored?.ids.destroy();
      scored?.out.destroy();
    }
    writeArray(gpu, session.prompt, ids);
    writeDecodeState(gpu, session.state, { cacheLen: S, position: S + ropeDelta, step: 0 });
    session.promptLength = S;
    session.ropeDelta = ropeDelta;
    return { logits: out, promptLogprobs: scored?.records };
  }

  /**
   * Compiles the GPU pipelines a prefill chunk of each row count in `rows` takes — one layer's
   * dispatches built and dropped (every layer takes the same pipelines), nothing run — so that a
   * first prompt of that size does not wait for them: the few-row GEMV's buckets
   * (kernels/linear.ts xrowsBucket), compiled by the server's warm-up (0.15–1.1 s each on the H200).
   */
  compilePrefill(rows: readonly number[]): void {
    this.#alive();
    if (rows.length === 0) return; // (a context too short for any: the warm-up asks for none)
    const gpu = this.gpu, t = this.config.text;
    const most = Math.max(...rows);
    if (!rows.every((n) => Number.isInteger(n) && n >= 1) || most + 1 > this.maxContext) {
      throw new InvalidInputError(
        `compilePrefill: row counts must be whole numbers from 1 to ${this.maxContext - 1}, got ${
          JSON.stringify(rows)
        }`,
      );
    }
    const session = this.createSession(most + 1);
    try {
      for (const n of rows) {
        const b = createDecoderBuffers(gpu, t, n, "compile");
        const pos = createStorage(gpu, n * 3 * 4, "compile.pos"); // (n, 3) u32
        try {
          const attend = prefillAttend(
            gpu,
            t,
            b,
            session.cache[0],
            most + 1,
            this.#rope,
            pos,
            n,
            0,
          );
          for (const d of layerDispatches(gpu, t, this.#w, 0, b, n, attend)) d.destroy();
        } finally {
          b.destroy();
          pos.destroy();
        }
      }
    } finally {
      session.dispose();
    }
  }

  /**
   * Records one decode step into `pass`: embedding of `tokens[state.step]` → all layers (K/V at
   * row state.cache_len, rope at state.position) → `session.logits`. The same prebuilt dispatches
   * every step; no CPU work beyond encoding. The caller then records its sampler (writing
   * `tokens[step + 1]`) and `advance(state)`.
   */
  encodeDecodeStep(pass: GPUComputePassEncoder, session: Session): void {
    if (session.disposed) throw new InvalidInputError("encodeDecodeStep: the session was disposed");
    for (const d of session.decodeDispatches) d.encode(pass);
  }

  /**
   * Frees every GPU buffer of the model (sessions are disposed separately), and the device when
   * load() created it.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const b = this.#batch;
    if (b) {
      for (const p of b.products.values()) {
        for (const d of [...p.qkv.flat(), ...p.rest.flat(), ...p.head]) d.destroy();
      }
      b.buffers.destroy();
      b.logits.destroy();
    }
    this.#vision.destroy();
    this.#rope.destroy();
    this.#w.destroy();
    if (this.#ownsGpu) this.gpu.destroy();
  }

  #alive(): void {
    if (this.#disposed) throw new InvalidInputError("this model was disposed; load it again");
  }
}
