/**
 * The weight plan: which checkpoint tensors a Qwen2-VL needs, under either naming (the hub's
 * legacy `model.layers.N…` / `visual.…` or transformers 5's `model.language_model.…` /
 * `model.visual.…`), their expected shapes and dtypes, how they map onto GPU tensors (q/k/v fused
 * into one matrix, gate_proj and up_proj into one, the Conv3d patch embedding flattened to a
 * matrix), how each GPU matrix is split into chunks that fit one storage binding, and how much GPU
 * memory the whole model needs. Everything here is checked BEFORE any GPU allocation.
 * @module
 */
import { GpuError, ModelFileError } from "../errors.ts";
import { checkQuant, checkVisionQuant, checkWeightDType, QUANT_OPTION } from "./quantize.ts";
import { fmtBytes, type Gpu } from "../gpu/device.ts";
import { createStorage, gpuIdle } from "../gpu/buffers.ts";
import {
  chunkRows,
  createWeight,
  destroyWeight,
  DTYPE_BYTES,
  isQuant,
  type QuantDType,
  type Weight,
  type WeightDType,
} from "../gpu/tensor.ts";
import {
  DEQUANT_SCRATCH_BYTES,
  PREFILL_INT8,
  quantizeRows,
  writeQuantRows,
} from "../../kernels/linear_q.ts";
import { run } from "../../kernels/_kernel.ts";
import { gemmKernel } from "../../kernels/linear.ts";
import { type KvDType, kvElementBytes } from "../../kernels/kv_cache.ts";
import { convertRows, type SourceDType } from "../../kernels/convert.ts";
import type { SafetensorsCheckpoint } from "../safetensors.ts";
import type { Qwen2VLConfig } from "./config.ts";

/** What the plan needs to know about one stored tensor. */
export interface StoredTensor {
  /** safetensors dtype name: "BF16", "F16", "F32", ... */
  dtype: string;
  /** Dimensions, outermost first. */
  shape: readonly number[];
  /** The shard file holding it (for messages). */
  file: string;
}

/** Looks a tensor up by its checkpoint name. */
export type TensorLookup = (name: string) => StoredTensor | undefined;

/** Checkpoint naming schemes. */
export type Naming = "legacy" | "transformers5";

/** Rows [rowStart, rowStart + rows) of a stored tensor viewed as a (rows, cols) matrix. */
export interface RowSource {
  /** Checkpoint tensor name. */
  name: string;
  /** First row taken (always 0 today: whole tensors are stacked). */
  rowStart: number;
  /** Rows taken (the first dimension). */
  rows: number;
}

/** A GPU tensor the model uses, assembled from row ranges of stored tensors. */
export interface PlannedTensor {
  /** Logical name, e.g. `text.layers.3.qkv`, `vision.blocks.0.norm1.bias`. */
  key: string;
  /** Matrices are Weights (chunked, f32 or f16); vectors (biases, norms) are one f32 buffer. */
  kind: "matrix" | "vector";
  /** Output features (matrices) or length (vectors). */
  rows: number;
  /** Input features (1 for vectors). */
  cols: number;
  /** GPU dtype (vectors are always f32; quantized decoder matrices q8/q4). */
  dtype: WeightDType | QuantDType;
  /** Concatenated by rows, in order. */
  sources: RowSource[];
  /** Rows per chunk (matrices); one chunk holds ≤ maxBinding bytes. */
  rowsPerChunk: number;
  /** Buffers the matrix is split into. */
  chunks: number;
  /** Bytes on the GPU. */
  bytes: number;
}

/** GPU memory the model needs, in bytes. */
export interface MemoryEstimate {
  /** All planned tensors. */
  weights: number;
  /** K and V of every layer for maxContext tokens, in the cache's dtype. */
  kvCache: number;
  /** Prefill/vision scratch activations and logits (upper bound for the planned chunk sizes). */
  activations: number;
  /** Sum of the above. */
  total: number;
  /** The largest single buffer. */
  largestBuffer: number;
}

/** The checked plan for loading a checkpoint. */
export interface WeightPlan {
  /** Which naming the checkpoint uses. */
  naming: Naming;
  /** Matrix dtype on the GPU. */
  dtype: WeightDType;
  /** Decoder matrices and lm_head quantized to this (see {@link PlanOptions.quant}). */
  quant?: QuantDType;
  /** Vision tower matrices quantized to this (see {@link PlanOptions.visionQuant}). */
  visionQuant?: QuantDType;
  /** Binding limit the chunking used. */
  maxBinding: number;
  /** By logical key; a tied lm_head is absent (the model reuses `text.embed`). */
  tensors: Map<string, PlannedTensor>;
  /** Stored tensors the plan reads (each exactly once unless tied). */
  storedNames: string[];
  /** GPU bytes of all planned tensors. */
  weightBytes: number;
}

/** Float dtypes a weight may be stored in, with their bytes per element. */
const STORED_BYTES = { BF16: 2, F16: 2, F32: 4 } as const;
const FLOAT_DTYPES = new Set(Object.keys(STORED_BYTES));

/** Prefixes of the two naming schemes. */
function prefixes(naming: Naming) {
  return naming === "legacy"
    ? { text: "model.", vision: "visual." }
    : { text: "model.language_model.", vision: "model.visual." };
}

/**
 * Which naming a checkpoint uses: transformers 5 saves `model.language_model.embed_tokens.weight`,
 * the hub's Qwen2-VL files `model.embed_tokens.weight`.
 */
export function detectNaming(lookup: TensorLookup, where: string): Naming {
  if (lookup("model.embed_tokens.weight")) return "legacy";
  if (lookup("model.language_model.embed_tokens.weight")) return "transformers5";
  throw new ModelFileError(
    `${where}: no embedding tensor ("model.embed_tokens.weight" or ` +
      `"model.language_model.embed_tokens.weight"); is this a Qwen2-VL checkpoint?`,
  );
}

/** One stored tensor the model reads, with the shape it must have. */
interface Expected {
  name: string;
  shape: number[];
}

/**
 * Rows per chunk, as src/gpu/tensor.ts `createWeight` splits: as many whole rows as fit the
 * binding (and the buffer size) limit; f16 with odd cols keeps an even count so chunks stay
 * 4-byte aligned.
 */
export function rowsPerChunk(
  rows: number,
  cols: number,
  dtype: WeightDType | QuantDType,
  limit: number,
): number {
  return chunkRows(rows, cols, dtype, limit);
}

/** Options of {@link planWeights}. */
export interface PlanOptions {
  /** Matrix dtype on the GPU. */
  dtype: WeightDType;
  /** Largest storage binding (gpu.maxBinding). */
  maxBinding: number;
  /** Largest buffer (gpu.limits.maxBufferSize); defaults to maxBinding. */
  maxBufferSize?: number;
  /** Where the tensors come from, for messages (e.g. the index file). */
  where: string;
  /**
   * Quantize the decoder layers' matrices and lm_head (group-wise, kernels/linear_q.ts) while
   * loading; the embedding (gathered one row per token) and the vision tower (compute-bound) stay
   * in `dtype` (the tower: unless {@link PlanOptions.visionQuant}). A tied lm_head becomes its own
   * quantized copy of the embedding.
   */
  quant?: QuantDType;
  /**
   * Quantize the vision tower's matrices (blocks' qkv, proj, fc1, fc2 and the merger's fc1, fc2;
   * patch_embed's k = 1176 is no multiple of 32 and stays in `dtype`) while loading, as `quant`
   * does the decoder's; they run kernels/gemm.ts's int8 GEMM (int8 activations:
   * LinearShape.int8x), and the tower's attention its int8 Q·Kᵀ. Only "q8" (see
   * {@link checkVisionQuant}).
   */
  visionQuant?: QuantDType;
}

/**
 * Plans and validates the load: every needed tensor exists with the right shape and a float
 * dtype; nothing is read and nothing is allocated.
 * @throws ModelFileError naming the tensor, its file and expected vs found shape/dtype
 */
export function planWeights(
  cfg: Qwen2VLConfig,
  lookup: TensorLookup,
  opts: PlanOptions,
): WeightPlan {
  const naming = detectNaming(lookup, opts.where);
  const p = prefixes(naming);
  const t = cfg.text, v = cfg.vision;
  const H = t.hiddenSize, I = t.intermediateSize, V = t.vocabSize;
  const kvd = t.numKvHeads * t.headDim;
  const E = v.embedDim, M = v.mlpHidden, D = v.mergedDim;
  const limit = Math.min(opts.maxBinding, opts.maxBufferSize ?? opts.maxBinding);
  checkWeightDType(opts.dtype);
  const dq = checkQuant(opts.quant), vq = checkVisionQuant(opts.visionQuant);
  const tensors = new Map<string, PlannedTensor>();
  const stored = new Set<string>();

  const check = (e: Expected): StoredTensor => {
    const s = lookup(e.name);
    if (!s) {
      throw new ModelFileError(
        `${opts.where}: tensor "${e.name}" is missing (expected shape [${e.shape.join(", ")}]); ` +
          `the checkpoint is incomplete or not a Qwen2-VL matching its config.json`,
      );
    }
    if (s.shape.length !== e.shape.length || s.shape.some((d, i) => d !== e.shape[i])) {
      throw new ModelFileError(
        `${s.file}: tensor "${e.name}" has shape [${s.shape.join(", ")}], expected ` +
          `[${e.shape.join(", ")}] from config.json`,
      );
    }
    if (!FLOAT_DTYPES.has(s.dtype)) {
      throw new ModelFileError(
        `${s.file}: tensor "${e.name}" has dtype ${s.dtype}; weights must be BF16, F16 or F32`,
      );
    }
    stored.add(e.name);
    return s;
  };
  /**
   * A matrix from whole stored tensors stacked by rows; shapes are (rows_i, cols) except Conv3d.
   * `quant`: quantize to this where cols is a multiple of 32 (else `opts.dtype`).
   */
  const matrix = (key: string, parts: Expected[], cols: number, quant?: QuantDType) => {
    const sources: RowSource[] = parts.map((e) => {
      check(e);
      return { name: e.name, rowStart: 0, rows: e.shape[0] };
    });
    addMatrix(key, sources, cols, quant);
  };
  const addMatrix = (key: string, sources: RowSource[], cols: number, quant?: QuantDType) => {
    const rows = sources.reduce((a, s) => a + s.rows, 0);
    const dtype = quant && cols % 32 === 0 ? quant : opts.dtype;
    const per = rowsPerChunk(rows, cols, dtype, limit);
    if (per < 1) {
      throw new GpuError(
        `one row of "${key}" (${cols} ${dtype} values) exceeds this adapter's ` +
          `${fmtBytes(limit)} storage binding limit`,
      );
    }
    tensors.set(key, {
      key,
      kind: "matrix",
      rows,
      cols,
      dtype,
      sources,
      rowsPerChunk: per,
      chunks: Math.ceil(rows / per),
      bytes: rows * cols * DTYPE_BYTES[dtype],
    });
  };
  const vector = (key: string, parts: Expected[]) => {
    const sources = parts.map((e) => {
      check(e);
      return { name: e.name, rowStart: 0, rows: e.shape[0] };
    });
    const n = sources.reduce((a, s) => a + s.rows, 0);
    tensors.set(key, {
      key,
      kind: "vector",
      rows: n,
      cols: 1,
      dtype: "f32",
      sources,
      rowsPerChunk: n,
      chunks: 1,
      bytes: n * 4,
    });
  };

  // --- language model ---
  const tp = p.text;
  matrix("text.embed", [{ name: `${tp}embed_tokens.weight`, shape: [V, H] }], H);
  for (let i = 0; i < t.numLayers; i++) {
    const l = `${tp}layers.${i}.`, k = `text.layers.${i}.`;
    vector(k + "input_norm", [{ name: `${l}input_layernorm.weight`, shape: [H] }]);
    vector(k + "post_norm", [{ name: `${l}post_attention_layernorm.weight`, shape: [H] }]);
    // One (H + 2·kvd, H) matrix: a token's row of the product is [q | k | v].
    matrix(
      k + "qkv",
      [
        { name: `${l}self_attn.q_proj.weight`, shape: [H, H] },
        { name: `${l}self_attn.k_proj.weight`, shape: [kvd, H] },
        { name: `${l}self_attn.v_proj.weight`, shape: [kvd, H] },
      ],
      H,
      dq,
    );
    vector(k + "qkv_bias", [
      { name: `${l}self_attn.q_proj.bias`, shape: [H] },
      { name: `${l}self_attn.k_proj.bias`, shape: [kvd] },
      { name: `${l}self_attn.v_proj.bias`, shape: [kvd] },
    ]);
    matrix(k + "o", [{ name: `${l}self_attn.o_proj.weight`, shape: [H, H] }], H, dq);
    // One (2I, H) matrix: a token's row is [gate | up], as siluMul expects.
    matrix(
      k + "gate_up",
      [
        { name: `${l}mlp.gate_proj.weight`, shape: [I, H] },
        { name: `${l}mlp.up_proj.weight`, shape: [I, H] },
      ],
      H,
      dq,
    );
    matrix(k + "down", [{ name: `${l}mlp.down_proj.weight`, shape: [H, I] }], I, dq);
  }
  vector("text.norm", [{ name: `${tp}norm.weight`, shape: [H] }]);
  if (!cfg.tieWordEmbeddings) {
    matrix("text.lm_head", [{ name: "lm_head.weight", shape: [V, H] }], H, dq);
  } else if (opts.quant && H % 32 === 0) {
    matrix("text.lm_head", [{ name: `${tp}embed_tokens.weight`, shape: [V, H] }], H, dq);
  }

  // --- vision tower ---
  const vp = p.vision;
  const pe = `${vp}patch_embed.proj.weight`;
  // Conv3d (E, C, T, P, P) with kernel = stride ≡ Linear over the flattened patch (C·T·P·P).
  check({ name: pe, shape: [E, v.inChannels, v.temporalPatchSize, v.patchSize, v.patchSize] });
  addMatrix("vision.patch_embed", [{ name: pe, rowStart: 0, rows: E }], v.patchDim);
  for (let i = 0; i < v.depth; i++) {
    const b = `${vp}blocks.${i}.`, k = `vision.blocks.${i}.`;
    for (const n of ["norm1", "norm2"]) {
      vector(`${k}${n}.weight`, [{ name: `${b}${n}.weight`, shape: [E] }]);
      vector(`${k}${n}.bias`, [{ name: `${b}${n}.bias`, shape: [E] }]);
    }
    matrix(k + "qkv", [{ name: `${b}attn.qkv.weight`, shape: [3 * E, E] }], E, vq);
    vector(k + "qkv_bias", [{ name: `${b}attn.qkv.bias`, shape: [3 * E] }]);
    matrix(k + "proj", [{ name: `${b}attn.proj.weight`, shape: [E, E] }], E, vq);
    vector(k + "proj_bias", [{ name: `${b}attn.proj.bias`, shape: [E] }]);
    matrix(k + "fc1", [{ name: `${b}mlp.fc1.weight`, shape: [M, E] }], E, vq);
    vector(k + "fc1_bias", [{ name: `${b}mlp.fc1.bias`, shape: [M] }]);
    matrix(k + "fc2", [{ name: `${b}mlp.fc2.weight`, shape: [E, M] }], M, vq);
    vector(k + "fc2_bias", [{ name: `${b}mlp.fc2.bias`, shape: [E] }]);
  }
  const mg = `${vp}merger.`;
  vector("vision.merger.ln_q.weight", [{ name: `${mg}ln_q.weight`, shape: [E] }]);
  vector("vision.merger.ln_q.bias", [{ name: `${mg}ln_q.bias`, shape: [E] }]);
  matrix("vision.merger.fc1", [{ name: `${mg}mlp.0.weight`, shape: [D, D] }], D, vq);
  vector("vision.merger.fc1_bias", [{ name: `${mg}mlp.0.bias`, shape: [D] }]);
  matrix("vision.merger.fc2", [{ name: `${mg}mlp.2.weight`, shape: [H, D] }], D, vq);
  vector("vision.merger.fc2_bias", [{ name: `${mg}mlp.2.bias`, shape: [H] }]);

  for (const pt of tensors.values()) {
    if (pt.kind === "vector" && pt.bytes > limit) {
      throw new ModelFileError(
        `${opts.where}: vector "${pt.key}" (${pt.bytes} bytes) exceeds the binding limit`,
      );
    }
  }
  let weightBytes = 0;
  for (const pt of tensors.values()) weightBytes += pt.bytes;
  return {
    naming,
    dtype: opts.dtype,
    quant: opts.quant,
    ...(vq ? { visionQuant: vq } : {}),
    maxBinding: limit,
    tensors,
    storedNames: [...stored],
    weightBytes,
  };
}

/**
 * Prefill processes the prompt in chunks of at most this many tokens, so activations stay
 * bounded (and within one binding) whatever the prompt length.
 */
export function prefillChunkTokens(cfg: Qwen2VLConfig, maxBinding: number): number {
  const t = cfg.text;
  // Widest per-token activation: the (chunk, 2I) gate|up product, f32.
  const widest = Math.max(2 * t.intermediateSize, t.hiddenSize + 2 * t.numKvHeads * t.headDim);
  return Math.max(1, Math.min(512, Math.floor(maxBinding / (widest * 4))));
}

/**
 * GPU memory for weights, KV cache for `maxContext` tokens and prefill activations.
 * @param maxContext tokens the KV cache holds (prompt + generated)
 * @param kv the KV cache's element type (default f32)
 */
export function estimateMemory(
  cfg: Qwen2VLConfig,
  plan: WeightPlan,
  maxContext: number,
  kv: KvDType = "f32",
): MemoryEstimate {
  const t = cfg.text;
  const kvd = t.numKvHeads * t.headDim;
  const layerCache = maxContext * kvd * kvElementBytes(kv);
  const kvCache = 2 * t.numLayers * layerCache;
  const chunk = prefillChunkTokens(cfg, plan.maxBinding);
  const qkv = t.hiddenSize + 2 * kvd;
  // x, normed x, qkv, attention out, gate|up, mlp act; and the logits of one row.
  const perToken = 4 * (3 * t.hiddenSize + qkv + 3 * t.intermediateSize);
  let activations = chunk * perToken + t.vocabSize * 4;
  // Quantized prefill's per-device scratch (kernels/linear_q.ts): dtypes that dequantize take the
  // f16 slice scratch; those with int8 products (gemmQ) hold a chunk's x as int8 codes + f32 scales
  // per 32 (kernels/gemm.ts), at most the widest k. The vision tower's (visionQuant) int8 GEMM
  // scratch, patches × the widest k (fc2's mlp_hidden) × 1.125 bytes, grows with the image, like
  // the tower's other activations, which this estimate leaves out (it is the decoder's).
  const quant = [...plan.tensors.values()].filter((pt) =>
    isQuant(pt.dtype) && pt.key.startsWith("text.")
  );
  if (quant.some((pt) => !PREFILL_INT8[pt.dtype as QuantDType])) {
    activations += Math.min(DEQUANT_SCRATCH_BYTES, plan.maxBinding);
  }
  const int8K = Math.max(
    0,
    ...quant.filter((pt) => PREFILL_INT8[pt.dtype as QuantDType]).map((pt) => pt.cols),
  );
  activations += chunk * int8K * (1 + 4 / 32);
  activations += splitKScratchBytes(plan, chunk);
  let largest = 0;
  for (const pt of plan.tensors.values()) {
    const bytes = pt.kind === "matrix"
      ? pt.rowsPerChunk * pt.cols * DTYPE_BYTES[pt.dtype]
      : pt.bytes;
    largest = Math.max(largest, bytes);
  }
  largest = Math.max(largest, layerCache);
  return {
    weights: plan.weightBytes,
    kvCache,
    activations,
    total: plan.weightBytes + kvCache + activations,
    largestBuffer: largest,
  };
}

/**
 * The largest per-device split-k scratch (kernels/linear.ts) prefill's f16 / f32 decoder matrices
 * ask for at any chunk length up to `chunk`: splits · m · chunk rows f32 partial products.
 */
function splitKScratchBytes(plan: WeightPlan, chunk: number): number {
  let bytes = 0;
  for (const pt of plan.tensors.values()) {
    if (pt.kind !== "matrix" || isQuant(pt.dtype) || !pt.key.startsWith("text.layers.")) continue;
    for (let m = 2; m <= chunk; m++) {
      const { splitK } = gemmKernel(m, pt.rowsPerChunk, pt.cols);
      if (splitK > 1) bytes = Math.max(bytes, splitK * m * pt.rowsPerChunk * 4);
    }
  }
  return bytes;
}

/** The model's tensors on the GPU, by the plan's logical keys. */
export class GpuWeights {
  readonly #matrices = new Map<string, Weight>();
  readonly #vectors = new Map<string, GPUBuffer>();

  /** A matrix by key; `text.lm_head` falls back to `text.embed` when tied. */
  matrix(key: string): Weight {
    const w = this.#matrices.get(key) ??
      (key === "text.lm_head" ? this.#matrices.get("text.embed") : undefined);
    if (!w) throw new Error(`no matrix "${key}" was loaded`);
    return w;
  }

  /** A vector (bias, norm weight) by key: one f32 buffer. */
  vector(key: string): GPUBuffer {
    const b = this.#vectors.get(key);
    if (!b) throw new Error(`no vector "${key}" was loaded`);
    return b;
  }

  /** @internal */
  set(key: string, t: Weight | GPUBuffer): void {
    if (t instanceof GPUBuffer) this.#vectors.set(key, t);
    else this.#matrices.set(key, t);
  }

  /** Frees every buffer. */
  destroy(): void {
    for (const w of this.#matrices.values()) destroyWeight(w);
    for (const b of this.#vectors.values()) b.destroy();
    this.#matrices.clear();
    this.#vectors.clear();
  }
}

/** Stored bytes per staging slot: the most that one submission converts. */
const SLOT_BYTES = 64 << 20;
/** Staging slots: while the GPU converts one, the next ones are being read into. */
const SLOTS = 4;
/**
 * Largest single file read, and `queue.writeBuffer`: a bigger piece of a tensor is read in several,
 * concurrently. Measured on an H200 host (Deno 2.9.6): writeBuffer streams 14.8 GB/s in 8 MiB calls
 * each followed by a submit (which hands wgpu's staging copy to the GPU so its memory is reused),
 * 4.8 GB/s in 32 MiB calls without; page-cache reads reach 6 GB/s one at a time, 41 GB/s 8 at once.
 */
const READ_BYTES = 8 << 20;
/** File reads in flight. */
const READS_IN_FLIGHT = 8;

/** Options of {@link uploadWeights}. */
export interface UploadOptions {
  /** Stored bytes per staging slot (tests pass small ones so tensors cross slots); 64 MiB. */
  slotBytes?: number;
  /** File reads in flight; default 8. */
  readsInFlight?: number;
  /** Largest single read (and writeBuffer), rounded up to 4 bytes; default 8 MiB. */
  readBytes?: number;
}

/** Runs at most `n` of the functions given to run() at once, the others in FIFO order. */
class Limiter {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(n: number) {
    this.#free = n;
  }

  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((go) => this.#waiting.push(go));
    try {
      return await f();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/** Rows of one stored tensor, placed in a staging slot, that become rows of a GPU tensor. */
interface Job {
  w: Weight;
  /** First destination row. */
  row: number;
  rows: number;
  from: SourceDType;
  /** Byte offset in the slot. */
  at: number;
  /** Stored bytes. */
  bytes: number;
}

/** One staging slot of the ring: CPU bytes and the storage buffer the kernels read them from. */
interface Slot {
  /** (size) stored bytes, as read. */
  host: Uint8Array<ArrayBuffer>;
  /** (size) bytes on the GPU: each read is written here as soon as it lands. */
  gpu: GPUBuffer;
  /** Settles when the slot may be filled again (its conversions have run). */
  ready: Promise<unknown>;
  /** Bytes placed so far. */
  at: number;
  /** Reads, each followed by its writeBuffer. */
  reads: Promise<void>[];
  jobs: Job[];
}

const round4 = (n: number) => Math.ceil(n / 4) * 4;

/**
 * A ring of staging slots between the checkpoint and the weights. Pieces of tensors are placed
 * one after another in the slot being filled and read into it from the file, several reads at
 * once (across tensors and slots); each read is written to the slot's GPU buffer as it lands, and
 * once all of a slot's reads are in, its pieces are converted or quantized into the weights in one
 * submission while the next slots fill. A slot is refilled only once its conversions have run, so
 * memory stays at the ring's few slots however fast the disk is.
 */
class StagingRing {
  readonly size: number;
  readonly #gpu: Gpu;
  readonly #align: number;
  readonly #slots: Slot[] = [];
  readonly #reads: Limiter;
  readonly #readBytes: number;
  readonly #pending = new Set<Promise<unknown>>();
  #cur: Slot | null = null;
  #next = 0;
  #error: unknown = null;
  #closed = false;
  /** What a submission waits for before converting: the allocation checks of its weights. */
  gate: Promise<unknown> = Promise.resolve();

  constructor(gpu: Gpu, size: number, readsInFlight: number, readBytes: number) {
    this.#gpu = gpu;
    this.#readBytes = round4(readBytes);
    this.#align = gpu.limits.minStorageBufferOffsetAlignment;
    this.size = round4(size);
    this.#reads = new Limiter(readsInFlight);
  }

  /** Bytes still free in the slot being filled. */
  get room(): number {
    const c = this.#cur;
    return c ? this.size - Math.ceil(c.at / this.#align) * this.#align : 0;
  }

  /**
   * Places `bytes` stored bytes of `name` from byte `srcByte` (≤ {@link room}) in the slot being
   * filled and starts reading them; they become rows [row, row + rows) of `w`.
   */
  place(
    ckpt: SafetensorsCheckpoint,
    name: string,
    srcByte: number,
    bytes: number,
    job: Omit<Job, "at" | "bytes">,
  ): void {
    const c = this.#cur!;
    const at = Math.ceil(c.at / this.#align) * this.#align;
    c.at = at + bytes;
    c.jobs.push({ ...job, at, bytes });
    const queue = this.#gpu.device.queue;
    for (let o = at; o < at + bytes; o += this.#readBytes) {
      const n = Math.min(this.#readBytes, at + bytes - o);
      c.reads.push(
        this.#reads.run(() => ckpt.readStored(name, srcByte + o - at, c.host.subarray(o, o + n)))
          .then(() => {
            if (this.#closed) return;
            // The tail past the piece (≤ 3 bytes) is the slot's padding before the next piece.
            queue.writeBuffer(c.gpu, o, c.host, o, round4(n));
            queue.submit([]);
          }),
      );
    }
  }

  /** Hands the slot being filled to the GPU (if any) and makes the next one current. */
  async advance(): Promise<void> {
    if (this.#error) throw this.#error;
    this.#handOver();
    const s = this.#slots[this.#next] ??= {
      host: new Uint8Array(this.size),
      gpu: createStorage(this.#gpu, this.size, `upload.staging${this.#next}`),
      ready: Promise.resolve(),
      at: 0,
      reads: [],
      jobs: [],
    };
    this.#next = (this.#next + 1) % SLOTS;
    await s.ready;
    if (this.#error) throw this.#error;
    s.at = 0;
    s.reads = [];
    s.jobs = [];
    this.#cur = s;
  }

  /** Hands the last slot to the GPU and waits until every conversion is done. */
  async finish(): Promise<void> {
    this.#handOver();
    while (this.#pending.size) await Promise.all(this.#pending);
    if (this.#error) throw this.#error;
    await this.gate;
    await gpuIdle(this.#gpu);
  }

  /** Waits for reads and submissions in flight, then frees the staging buffers. */
  async destroy(): Promise<void> {
    this.#closed = true;
    while (this.#pending.size) await Promise.allSettled(this.#pending);
    await Promise.allSettled(this.#slots.flatMap((s) => s.reads));
    await gpuIdle(this.#gpu).catch(() => {}); // a lost device has no work left to wait for
    for (const s of this.#slots) s.gpu.destroy();
  }

  /** Submits the slot being filled once its reads are in; it is refilled only after that. */
  #handOver(): void {
    const s = this.#cur;
    this.#cur = null;
    if (!s?.jobs.length) return;
    const t: Promise<unknown> = this.#submit(s, this.gate).catch((e) => {
      this.#error ??= e;
    }).finally(() => this.#pending.delete(t));
    this.#pending.add(t);
    s.ready = t;
  }

  /**
   * Converts the slot's pieces once all are on the GPU and `gate` (their weights' allocation) has
   * passed; resolves when that work is done.
   */
  async #submit(s: Slot, gate: Promise<unknown>): Promise<void> {
    await Promise.all(s.reads);
    await gate;
    if (this.#closed) return;
    const gpu = this.#gpu;
    const ds = s.jobs.flatMap((j) => {
      const src = { buffer: s.gpu, offset: j.at, size: round4(j.bytes) };
      return isQuant(j.w.dtype)
        ? [quantizeRows(gpu, j.w, j.row, src, j.rows, j.from as "bf16" | "f16")]
        : convertRows(gpu, j.w, j.row, src, j.from, j.rows);
    });
    run(gpu, ds, "upload");
    ds.forEach((d) => d.destroy());
    await gpuIdle(gpu);
  }
}

/**
 * Streams every planned tensor from the checkpoint to the GPU in pieces of whole rows (never a
 * whole shard, nor a whole 2 GB tensor, in memory). The stored bytes (BF16, F16 or F32) are read
 * into a ring of staging slots, several reads at once, written to the GPU as they land and
 * converted there (kernels/convert.ts; quantized matrices: kernels/linear_q.ts `quantizeRows`), so
 * no element passes through a CPU conversion. An allocation failure is a GpuError, naming the
 * tensor, that says how much the model needs.
 * @param onProgress called after each tensor's reads are queued, with its bytes so far and the total
 */
export async function uploadWeights(
  gpu: Gpu,
  ckpt: SafetensorsCheckpoint,
  plan: WeightPlan,
  onProgress?: (done: number, total: number) => void,
  opts: UploadOptions = {},
): Promise<GpuWeights> {
  let maxRow = 0;
  for (const pt of plan.tensors.values()) {
    for (const s of pt.sources) maxRow = Math.max(maxRow, ckpt.get(s.name).byteLength / s.rows);
  }
  // Two rows at least: quantized pieces keep even row counts.
  const size = Math.max(opts.slotBytes ?? SLOT_BYTES, 2 * maxRow + 256);
  const ring = new StagingRing(
    gpu,
    size,
    opts.readsInFlight ?? READS_IN_FLIGHT,
    opts.readBytes ?? READ_BYTES,
  );
  const out = new GpuWeights();
  let done = 0;
  try {
    for (const pt of plan.tensors.values()) {
      // Reads start at once; conversions wait for the allocation checks (one poll, ~11 ms).
      const [w, checked] = allocChecked(gpu, out, pt, plan);
      ring.gate = Promise.all([ring.gate, checked]);
      ring.gate.catch(() => {}); // seen by the next submission or finish()
      let dst = 0;
      for (const s of pt.sources) {
        const stored = ckpt.get(s.name).dtype as keyof typeof STORED_BYTES;
        if (isQuant(pt.dtype) && stored === "F32") {
          await checked;
          await quantizeFromF32(gpu, ckpt, s.name, w, dst, pt.cols);
        } else {
          await placeRows(ring, ckpt, s.name, w, dst, s.rows, stored);
        }
        dst += s.rows;
      }
      done += pt.bytes;
      onProgress?.(done, plan.weightBytes);
    }
    await ring.finish();
  } catch (e) {
    await ring.destroy().catch(() => {});
    out.destroy();
    throw e;
  }
  await ring.destroy();
  return out;
}

/**
 * Allocates a planned tensor (zero-filled) into `out` inside an out-of-memory error scope, without
 * waiting for the scope: returns the tensor (a vector as an f32 (n, 1) weight of its one buffer)
 * and a promise that rejects with a GpuError, naming it and what the model needs, if it did not fit.
 */
function allocChecked(
  gpu: Gpu,
  out: GpuWeights,
  pt: PlannedTensor,
  plan: WeightPlan,
): [Weight, Promise<void>] {
  gpu.device.pushErrorScope("out-of-memory");
  let w: Weight;
  if (pt.kind === "vector") {
    const buffer = createStorage(gpu, pt.bytes, pt.key);
    out.set(pt.key, buffer);
    w = { dtype: "f32", rows: pt.rows, cols: 1, chunks: [{ buffer, rowStart: 0, rows: pt.rows }] };
  } else {
    w = createWeight(gpu, pt.rows, pt.cols, pt.dtype, pt.key, plan.maxBinding);
    out.set(pt.key, w);
  }
  const checked = gpu.device.popErrorScope().then((err) => {
    if (err) {
      throw new GpuError(
        `out of GPU memory allocating "${pt.key}" (${fmtBytes(pt.bytes)}); the model's weights ` +
          `need ${fmtBytes(plan.weightBytes)} (${describeWeights(plan)}); to fit, load with ${
            orList([...smallerWeights(plan), "a smaller model"])
          }`,
      );
    }
  });
  return [w, checked];
}

/** How a plan stores its matrices, for messages: "f16", "f16, decoder q4, vision q8". */
function describeWeights(plan: Pick<WeightPlan, "dtype" | "quant" | "visionQuant">): string {
  return [
    plan.dtype,
    ...(plan.quant ? [`decoder ${plan.quant}`] : []),
    ...(plan.visionQuant ? [`vision ${plan.visionQuant}`] : []),
  ].join(", ");
}

/**
 * The load options that would make `plan`'s weights smaller, most effective first, none the plan
 * already uses: f16 matrices where they are f32, qvq's own quantization of the decoder (q4 where
 * it is q8 already), the int8 vision tower. Empty where everything is as small as qvq makes it.
 */
export function smallerWeights(
  plan: Pick<WeightPlan, "dtype" | "quant" | "visionQuant">,
): string[] {
  const out: string[] = [];
  if (plan.dtype === "f32") {
    out.push(`${loadOption("dtype", "f16", "dtype")} where the adapter has shader-f16`);
  }
  if (!plan.quant) out.push(QUANT_OPTION);
  else if (plan.quant === "q8") out.push(loadOption("quant", "q4", "quant", "QVQ_QUANT"));
  if (!plan.visionQuant) {
    out.push(
      `${loadOption("visionQuant", "q8", "vision-quant", "QVQ_VISION_QUANT")} for the vision tower`,
    );
  }
  return out;
}

/**
 * A load option as each front end spells it: `name: "value" (Pipeline.load's option; CLI --flag
 * value; server ENV=value)`, the CLI and server parts where they have one.
 */
export function loadOption(name: string, value: string, flag?: string, env?: string): string {
  const where = [
    "Pipeline.load's option",
    ...(flag ? [`CLI --${flag} ${value}`] : []),
    ...(env ? [`server ${env}=${value}`] : []),
  ];
  return `${name}: "${value}" (${where.join("; ")})`;
}

/** "a", "a or b", "a, b or c". */
export function orList(items: readonly string[]): string {
  return items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} or ${items.at(-1)}`;
}

/**
 * Places all `rows` rows of stored tensor `name` in the ring, as rows [dst, dst + rows) of `w`: in
 * pieces that fill each slot, never cross a chunk of `w`, and (quantized) keep even row counts
 * except at the end of a source or chunk.
 */
async function placeRows(
  ring: StagingRing,
  ckpt: SafetensorsCheckpoint,
  name: string,
  w: Weight,
  dst: number,
  rows: number,
  stored: keyof typeof STORED_BYTES,
): Promise<void> {
  const rowBytes = w.cols * STORED_BYTES[stored];
  const from = stored.toLowerCase() as SourceDType;
  for (let r = 0; r < rows;) {
    const chunk = w.chunks.find((c) => dst + r < c.rowStart + c.rows)!;
    const left = Math.min(rows - r, chunk.rowStart + chunk.rows - (dst + r));
    let n = Math.min(left, Math.floor(ring.room / rowBytes));
    if (n < left && isQuant(w.dtype)) n &= ~1;
    if (n < 1) {
      await ring.advance();
      continue;
    }
    ring.place(ckpt, name, r * rowBytes, n * rowBytes, { w, row: dst + r, rows: n, from });
    r += n;
  }
}

/** Quantizes an F32-stored tensor (rare: checkpoints are bf16) through f16 on the CPU. */
async function quantizeFromF32(
  gpu: Gpu,
  ckpt: SafetensorsCheckpoint,
  name: string,
  w: Weight,
  dst: number,
  cols: number,
): Promise<void> {
  const maxBytes = Math.max(2, Math.floor(SLOT_BYTES / (cols * 2)) & ~1) * cols * 2;
  for await (const c of ckpt.readChunks(name, { to: "f16", maxBytes })) {
    writeQuantRows(gpu, w, dst + c.rowStart, c.data);
  }
}
