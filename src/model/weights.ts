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
import { fmtBytes, type Gpu } from "../gpu/device.ts";
import { createStorage, writeArray } from "../gpu/buffers.ts";
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
import { writeQuantRows } from "../../kernels/linear_q.ts";
import { convertRows, type SourceDType } from "../../kernels/convert.ts";
import { run } from "../../kernels/_kernel.ts";
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
  /** K and V of every layer for maxContext tokens, f32. */
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
   * in `dtype`. A tied lm_head becomes its own quantized copy of the embedding.
   */
  quant?: QuantDType;
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
  /** A matrix from whole stored tensors stacked by rows; shapes are (rows_i, cols) except Conv3d. */
  const matrix = (key: string, parts: Expected[], cols: number, quant = false) => {
    const sources: RowSource[] = parts.map((e) => {
      check(e);
      return { name: e.name, rowStart: 0, rows: e.shape[0] };
    });
    addMatrix(key, sources, cols, quant);
  };
  const addMatrix = (key: string, sources: RowSource[], cols: number, quant = false) => {
    const rows = sources.reduce((a, s) => a + s.rows, 0);
    const dtype = quant && opts.quant && cols % 32 === 0 ? opts.quant : opts.dtype;
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
      true,
    );
    vector(k + "qkv_bias", [
      { name: `${l}self_attn.q_proj.bias`, shape: [H] },
      { name: `${l}self_attn.k_proj.bias`, shape: [kvd] },
      { name: `${l}self_attn.v_proj.bias`, shape: [kvd] },
    ]);
    matrix(k + "o", [{ name: `${l}self_attn.o_proj.weight`, shape: [H, H] }], H, true);
    // One (2I, H) matrix: a token's row is [gate | up], as siluMul expects.
    matrix(
      k + "gate_up",
      [
        { name: `${l}mlp.gate_proj.weight`, shape: [I, H] },
        { name: `${l}mlp.up_proj.weight`, shape: [I, H] },
      ],
      H,
      true,
    );
    matrix(k + "down", [{ name: `${l}mlp.down_proj.weight`, shape: [H, I] }], I, true);
  }
  vector("text.norm", [{ name: `${tp}norm.weight`, shape: [H] }]);
  if (!cfg.tieWordEmbeddings) {
    matrix("text.lm_head", [{ name: "lm_head.weight", shape: [V, H] }], H, true);
  } else if (opts.quant && H % 32 === 0) {
    matrix("text.lm_head", [{ name: `${tp}embed_tokens.weight`, shape: [V, H] }], H, true);
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
    matrix(k + "qkv", [{ name: `${b}attn.qkv.weight`, shape: [3 * E, E] }], E);
    vector(k + "qkv_bias", [{ name: `${b}attn.qkv.bias`, shape: [3 * E] }]);
    matrix(k + "proj", [{ name: `${b}attn.proj.weight`, shape: [E, E] }], E);
    vector(k + "proj_bias", [{ name: `${b}attn.proj.bias`, shape: [E] }]);
    matrix(k + "fc1", [{ name: `${b}mlp.fc1.weight`, shape: [M, E] }], E);
    vector(k + "fc1_bias", [{ name: `${b}mlp.fc1.bias`, shape: [M] }]);
    matrix(k + "fc2", [{ name: `${b}mlp.fc2.weight`, shape: [E, M] }], M);
    vector(k + "fc2_bias", [{ name: `${b}mlp.fc2.bias`, shape: [E] }]);
  }
  const mg = `${vp}merger.`;
  vector("vision.merger.ln_q.weight", [{ name: `${mg}ln_q.weight`, shape: [E] }]);
  vector("vision.merger.ln_q.bias", [{ name: `${mg}ln_q.bias`, shape: [E] }]);
  matrix("vision.merger.fc1", [{ name: `${mg}mlp.0.weight`, shape: [D, D] }], D);
  vector("vision.merger.fc1_bias", [{ name: `${mg}mlp.0.bias`, shape: [D] }]);
  matrix("vision.merger.fc2", [{ name: `${mg}mlp.2.weight`, shape: [H, D] }], D);
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
 */
export function estimateMemory(
  cfg: Qwen2VLConfig,
  plan: WeightPlan,
  maxContext: number,
): MemoryEstimate {
  const t = cfg.text;
  const kvd = t.numKvHeads * t.headDim;
  const kvCache = 2 * t.numLayers * maxContext * kvd * 4;
  const chunk = prefillChunkTokens(cfg, plan.maxBinding);
  const qkv = t.hiddenSize + 2 * kvd;
  // x, normed x, qkv, attention out, gate|up, mlp act; and the logits of one row.
  const perToken = 4 * (3 * t.hiddenSize + qkv + 3 * t.intermediateSize);
  const activations = chunk * perToken + t.vocabSize * 4;
  let largest = 0;
  for (const pt of plan.tensors.values()) {
    const bytes = pt.kind === "matrix"
      ? pt.rowsPerChunk * pt.cols * DTYPE_BYTES[pt.dtype]
      : pt.bytes;
    largest = Math.max(largest, bytes);
  }
  largest = Math.max(largest, maxContext * kvd * 4);
  return {
    weights: plan.weightBytes,
    kvCache,
    activations,
    total: plan.weightBytes + kvCache + activations,
    largestBuffer: largest,
  };
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

/** Stored bytes per slice while streaming a tensor to the GPU. */
const UPLOAD_SLICE_BYTES = 32 << 20;

/**
 * Two GPU staging buffers for a checkpoint's stored bytes, filled in turn: slices (and runs of
 * small tensors, packed one after another) are written into one buffer and converted on the GPU
 * into their weights while the checkpoint reads the next slice from disk. Before a buffer is
 * filled again, the conversions that read it must have finished: at most two buffers' worth is in
 * flight, so CPU memory stays at a few slices however fast the disk is, and small tensors cost no
 * wait each.
 */
class Staging {
  readonly #gpu: Gpu;
  readonly #size: number;
  readonly #buffers: GPUBuffer[] = [];
  readonly #done: Promise<unknown>[] = [];
  #k = 0;
  #at = 0;

  constructor(gpu: Gpu, size: number) {
    this.#gpu = gpu;
    this.#size = size;
  }

  /**
   * Converts `rows` rows of stored bytes into rows [rowStart, rowStart + rows) of `w`.
   * @param bytes (rows, w.cols) elements of `from`, as stored (little-endian)
   */
  async write(w: Weight, rowStart: number, rows: number, bytes: Uint8Array, from: SourceDType) {
    const gpu = this.#gpu, len = Math.ceil(bytes.length / 4) * 4;
    let buf = this.#buffers[this.#k];
    if (!buf || this.#at + len > buf.size) {
      if (buf) {
        this.#done[this.#k] = gpu.device.queue.onSubmittedWorkDone();
        this.#k ^= 1;
        this.#at = 0;
      }
      await this.#done[this.#k];
      buf = this.#buffers[this.#k];
      if (!buf || buf.size < len) {
        buf?.destroy();
        buf = this.#buffers[this.#k] = createStorage(
          gpu,
          Math.max(this.#size, len),
          `upload.staging${this.#k}`,
        );
      }
    }
    writeArray(gpu, buf, bytes, this.#at);
    const src = { buffer: buf, offset: this.#at, size: len };
    const ds = convertRows(gpu, w, rowStart, src, from, rows);
    run(gpu, ds, "upload");
    ds.forEach((d) => d.destroy());
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    this.#at += Math.ceil(len / align) * align;
  }

  /** Waits for the conversions in flight, then frees the buffers. */
  async destroy(): Promise<void> {
    await this.#gpu.device.queue.onSubmittedWorkDone();
    for (const b of this.#buffers) b.destroy();
  }
}

/**
 * Streams every planned tensor from the checkpoint to the GPU, slice by slice (never a whole
 * shard, nor a whole 2 GB tensor, in memory). The stored bytes (BF16, F16 or F32) are uploaded as
 * they are and converted on the GPU (kernels/convert.ts; quantized matrices: kernels/linear_q.ts),
 * so no element passes through a CPU conversion. Allocation failures become a GpuError that says
 * how much the model needs.
 * @param onProgress called after each tensor with bytes uploaded so far and the total
 * @param sliceBytes stored bytes per slice (tests pass small ones to cross slice borders)
 */
export async function uploadWeights(
  gpu: Gpu,
  ckpt: SafetensorsCheckpoint,
  plan: WeightPlan,
  onProgress?: (done: number, total: number) => void,
  sliceBytes: number = UPLOAD_SLICE_BYTES,
): Promise<GpuWeights> {
  const out = new GpuWeights();
  const staging = new Staging(gpu, sliceBytes);
  let done = 0;
  try {
    for (const pt of plan.tensors.values()) {
      // A vector is an f32 (n, 1) matrix in one buffer, written by the same path.
      const w = await allocChecked(
        gpu,
        pt.bytes,
        pt.key,
        plan,
        () =>
          pt.kind === "vector"
            ? createWeight(gpu, pt.rows, 1, "f32", pt.key, plan.maxBinding)
            : createWeight(gpu, pt.rows, pt.cols, pt.dtype, pt.key, plan.maxBinding),
      );
      out.set(pt.key, pt.kind === "vector" ? w.chunks[0].buffer : w);
      let dst = 0;
      for (const s of pt.sources) {
        const stored = ckpt.get(s.name).dtype as keyof typeof STORED_BYTES;
        // Bytes of a row as read (quantized weights are read as 16-bit and quantized on the GPU).
        const rowBytes = pt.cols * (isQuant(pt.dtype) ? 2 : STORED_BYTES[stored]);
        // Whole rows per slice; an even count keeps odd-group quantized writes 4-byte aligned.
        const maxBytes = Math.max(2, Math.floor(sliceBytes / rowBytes) & ~1) * rowBytes;
        if (!isQuant(pt.dtype)) {
          const from = stored.toLowerCase() as SourceDType;
          for await (const c of ckpt.readChunks(s.name, { to: "raw", maxBytes, reuse: true })) {
            await staging.write(w, dst + c.rowStart, c.rows, c.data, from);
          }
        } else if (stored === "BF16") {
          // The stored bytes go to the GPU unconverted; the quantize kernel reads bf16.
          for await (const c of ckpt.readChunks(s.name, { to: "raw", maxBytes })) {
            const bits = new Uint16Array(c.data.buffer, c.data.byteOffset, c.data.length / 2);
            writeQuantRows(gpu, w, dst + c.rowStart, bits, "bf16");
          }
        } else {
          for await (const c of ckpt.readChunks(s.name, { to: "f16", maxBytes })) {
            writeQuantRows(gpu, w, dst + c.rowStart, c.data);
          }
        }
        dst += s.rows;
      }
      done += pt.bytes;
      onProgress?.(done, plan.weightBytes);
    }
  } catch (e) {
    await staging.destroy().catch(() => {});
    out.destroy();
    throw e;
  }
  await staging.destroy();
  return out;
}

/** Runs an allocation inside an out-of-memory error scope. */
async function allocChecked<T>(
  gpu: Gpu,
  bytes: number,
  key: string,
  plan: WeightPlan,
  alloc: () => T,
): Promise<T> {
  gpu.device.pushErrorScope("out-of-memory");
  const t = alloc();
  const err = await gpu.device.popErrorScope();
  if (err) {
    if (t instanceof GPUBuffer) t.destroy();
    else destroyWeight(t as Weight);
    throw new GpuError(
      `out of GPU memory allocating "${key}" (${fmtBytes(bytes)}); the model's weights need ` +
        `${fmtBytes(plan.weightBytes)} in ${plan.dtype}. Use f16 weights, a smaller model, or a ` +
        `quantized one`,
    );
  }
  return t;
}
