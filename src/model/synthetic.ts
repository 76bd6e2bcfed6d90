/**
 * A Qwen2VLModel at any config with weights generated on the GPU from a seed: no files, no weight
 * data through the CPU. Benchmarks build the real 2B / 7B / 72B shapes this way (a 72B in q4 is
 * 41 GB that would otherwise need a 146 GB checkpoint on disk); the numbers it produces are those
 * of the real model, since the kernels' work does not depend on the weights' values.
 *
 * Values: matrices uniform with the standard deviation of transformers' init (initializer_range
 * 0.02), norm weights 1 ± 0.1, biases ± 0.02 — activations stay finite through 80 layers.
 * @module
 */
import { GpuError, InvalidInputError } from "../errors.ts";
import { type Gpu, requestGpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { createWeight, isQuant, type QuantDType, type WeightDType } from "../gpu/tensor.ts";
import { fill, fillWeight } from "../../kernels/fill.ts";
import { fillQuantRows } from "../../kernels/linear_q.ts";
import { run } from "../../kernels/_kernel.ts";
import type { KvDType } from "../../kernels/kv_cache.ts";
import { parseConfig } from "./config.ts";
import { Qwen2VLModel } from "./qwen2vl.ts";
import { GpuWeights, type PlannedTensor, planWeights, type WeightPlan } from "./weights.ts";
import { checkpointTensors } from "./_sparse.ts";

/** Options of {@link syntheticModel}. */
export interface SyntheticOptions {
  /** The device (default: a new one, owned and destroyed by the model). */
  gpu?: Gpu;
  /** Float dtype of the matrices (default f16 where the adapter has shader-f16, else f32). */
  dtype?: WeightDType;
  /** Quantize the decoder's matrices and lm_head, as Qwen2VLModel.load's `quant`. */
  quant?: QuantDType;
  /** Quantize the vision tower's matrices, as Qwen2VLModel.load's `visionQuant` (only "q8"). */
  visionQuant?: QuantDType;
  /** The KV cache's element type, as Qwen2VLModel.load's `kvCacheDtype`. */
  kvCacheDtype?: KvDType;
  /** Longest session (default 4096). */
  maxContext?: number;
  /** Prompt tokens per prefill pass (default: as load()). */
  prefillChunk?: number;
  /** Seed of every tensor's values (default 0). */
  seed?: number;
  /** Called after each tensor with bytes generated so far and the total. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

/** Standard deviation of the matrices (transformers' initializer_range). */
const STD = 0.02;

/** FNV-1a of a tensor's key mixed with the seed: each tensor gets its own stream. */
function tensorSeed(key: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * Plans the model's tensors as a hub checkpoint of `config` would store them (every tensor
 * present, bf16), without a checkpoint.
 */
export function syntheticPlan(
  config: Record<string, unknown>,
  opts: {
    dtype: WeightDType;
    quant?: QuantDType;
    visionQuant?: QuantDType;
    maxBinding: number;
    maxBufferSize?: number;
  },
): WeightPlan {
  const cfg = parseConfig(config, "synthetic config");
  const stored = new Map(
    checkpointTensors(cfg, "legacy").map((t) => [t.name, { ...t, file: "synthetic" }]),
  );
  return planWeights(cfg, (n) => stored.get(n), { ...opts, where: "synthetic weights" });
}

/**
 * Builds a Qwen2VLModel for `config` (a config.json object, e.g. `PRESETS["Qwen2-VL-7B-Instruct"]`)
 * with seeded random weights generated on the GPU.
 * @throws GpuError when the weights do not fit (the message names the tensor and the total)
 */
export async function syntheticModel(
  config: Record<string, unknown>,
  opts: SyntheticOptions = {},
): Promise<Qwen2VLModel> {
  const cfg = parseConfig(config, "synthetic config");
  const gpu = opts.gpu ?? await requestGpu();
  const dtype = opts.dtype ?? (gpu.features.f16 ? "f16" : "f32");
  if (dtype !== "f32" && dtype !== "f16") {
    throw new InvalidInputError(`syntheticModel: dtype must be "f32" or "f16", got "${dtype}"`);
  }
  const weights = new GpuWeights();
  try {
    const plan = syntheticPlan(config, {
      dtype,
      quant: opts.quant,
      visionQuant: opts.visionQuant,
      maxBinding: gpu.maxBinding,
      maxBufferSize: gpu.limits.maxBufferSize,
    });
    let done = 0;
    for (const pt of plan.tensors.values()) {
      await generate(gpu, pt, plan.maxBinding, tensorSeed(pt.key, opts.seed ?? 0), weights);
      done += pt.bytes;
      opts.onProgress?.(done, plan.weightBytes);
    }
    return Qwen2VLModel.fromGpuWeights(gpu, cfg, plan, weights, {
      maxContext: opts.maxContext ?? 4096,
      prefillChunk: opts.prefillChunk,
      ownsGpu: !opts.gpu,
      kvCacheDtype: opts.kvCacheDtype,
    });
  } catch (e) {
    weights.destroy();
    if (!opts.gpu) gpu.destroy();
    throw e;
  }
}

/** Allocates one planned tensor and fills it; an out-of-memory becomes a thrown GpuError. */
async function generate(
  gpu: Gpu,
  pt: PlannedTensor,
  maxBinding: number,
  seed: number,
  out: GpuWeights,
) {
  gpu.device.pushErrorScope("out-of-memory");
  if (pt.kind === "vector") {
    const b = createStorage(gpu, pt.bytes, pt.key);
    out.set(pt.key, b);
    const norm = /norm|ln_q/.test(pt.key) && !pt.key.endsWith(".bias");
    const spec = norm ? { scale: 0.1, offset: 1 } : { scale: STD };
    run(gpu, [fill(gpu, b, { count: pt.rows, dtype: "f32", seed, ...spec })]);
  } else {
    const w = createWeight(gpu, pt.rows, pt.cols, pt.dtype, pt.key, maxBinding);
    out.set(pt.key, w);
    const scale = STD * Math.sqrt(3); // uniform ±a has standard deviation a / √3
    if (isQuant(pt.dtype)) {
      fillQuantRows(
        gpu,
        w,
        (buf, row, len) =>
          fill(gpu, buf, { count: len * pt.cols, dtype: "f16", seed, scale, base: row * pt.cols }),
      );
    } else {
      run(gpu, fillWeight(gpu, w, { seed, scale }));
    }
  }
  const err = await gpu.device.popErrorScope();
  if (err) {
    throw new GpuError(
      `out of GPU memory generating "${pt.key}" (${pt.bytes} bytes): ${err.message}`,
    );
  }
}
