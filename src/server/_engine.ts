/**
 * Loads the real engine for a `--model` / `QVQ_MODEL` value: a model directory, an http(s)/file
 * URL, or a Hugging Face hub id (downloaded into the hub cache first). The one place the server
 * and the terminal chat turn a model name into a Pipeline.
 * @module
 */
import type { QuantDType, WeightDType } from "../gpu/tensor.ts";
import type { KvDType } from "../../kernels/kv_cache.ts";
import { type DownloadOptions, resolveModel } from "../hub/download.ts";
import { warmUp } from "./_warmup.ts";
import { ProgressBar, type ProgressSink, stderrSink } from "../hub/_progress.ts";
import { Pipeline } from "../pipeline.ts";

/** How to load. */
export interface LoadEngineOptions {
  /** Weight dtype on the GPU (default: the pipeline's choice). */
  dtype?: WeightDType;
  /** Quantize the decoder's matrices and lm_head (default: none; see PipelineOptions.quant). */
  quant?: QuantDType;
  /** Quantize the vision tower's matrices: "q8" (default: none; see PipelineOptions.visionQuant). */
  visionQuant?: QuantDType;
  /** The KV cache's element type (default: see PipelineOptions.kvCacheDtype). */
  kvCacheDtype?: KvDType;
  /**
   * Keep the last generation's KV cache for the next prompt, or the last N conversations' (default
   * true: one; see PipelineOptions.promptCache).
   */
  promptCache?: boolean | number;
  /** Generations that run at once (default 1; see PipelineOptions.parallel). */
  parallel?: number;
  /** Whether those decode as one batch (default true; see PipelineOptions.batchDecode). */
  batchDecode?: boolean;
  /** Hub download settings (default: from HF_* environment variables). */
  download?: DownloadOptions;
  /**
   * Progress of the weight upload: true (stderr: a bar on a terminal, a line every 10 % in a log,
   * as a download's), false, or a sink. Default: stderr — QVQ-72B's upload takes minutes, and a
   * server's log showed nothing between "listening" and "serving".
   */
  progress?: boolean | ProgressSink;
  /**
   * Run a few short generations after loading (images, 2 tokens each; src/server/_warmup.ts), so
   * the first request does not wait for the GPU pipelines to compile (default false; the
   * server's true). A warm-up that fails fails the load.
   */
  warmUp?: boolean;
}

/**
 * A Pipeline for `model`. Clients see a hub id as the model id (not the snapshot's commit hash);
 * a directory is known by its last path segment (e.g. "tiny-qwen2vl").
 *
 * @example
 * ```ts ignore
 * const engine = await loadEngine("Qwen/Qwen2-VL-2B-Instruct");
 * engine.modelId; // "Qwen/Qwen2-VL-2B-Instruct"
 * ```
 */
export async function loadEngine(
  model: string,
  options: LoadEngineOptions = {},
): Promise<Pipeline> {
  const isUrl = /^(https?|file):/i.test(model);
  const location = isUrl ? model : await resolveModel(model, options.download);
  const fromHub = !isUrl && location !== model;
  const sink = options.progress === true || options.progress === undefined
    ? stderrSink()
    : options.progress || undefined;
  let bar: ProgressBar | undefined;
  let shown = 0;
  const pipeline = await Pipeline.load(location, {
    dtype: options.dtype,
    quant: options.quant,
    visionQuant: options.visionQuant,
    kvCacheDtype: options.kvCacheDtype,
    promptCache: options.promptCache,
    parallel: options.parallel,
    batchDecode: options.batchDecode,
    modelId: fromHub ? model.replace(/@.*$/, "") : undefined,
    onProgress: sink
      ? (done, total) => {
        bar ??= new ProgressBar("loading weights", total, sink);
        bar.add(done - shown);
        shown = done;
      }
      : undefined,
  });
  bar?.finish();
  if (options.warmUp) {
    try {
      await warmUp(pipeline);
    } catch (e) {
      pipeline.dispose();
      throw e;
    }
  }
  return pipeline;
}
