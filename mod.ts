/**
 * qvq: Qwen's QVQ-72B-Preview visual-reasoning model — and the Qwen2-VL family it is built on —
 * on WebGPU. TypeScript orchestrates WGSL kernels; Rust compiled to WebAssembly does the byte-level
 * work (tokenizer, safetensors, image decoding and preprocessing).
 *
 * @example Chat with a local model directory
 * ```ts ignore
 * import { Pipeline } from "@qvq/webgpu";
 * const qvq = await Pipeline.load("./Qwen2-VL-2B-Instruct");
 * const image = await Deno.readFile("chart.png");
 * const answer = await qvq.chat([{ role: "user", content: [
 *   { type: "image", image }, { type: "text", text: "What does the chart show?" },
 * ] }], { maxNewTokens: 256 });
 * console.log(answer.text);
 * qvq.dispose();
 * ```
 *
 * @example Serve it to OpenAI clients (`deno serve main.ts`)
 * ```ts ignore
 * import { createApp, Pipeline } from "@qvq/webgpu";
 * export default createApp(await Pipeline.load("./Qwen2-VL-2B-Instruct"));
 * ```
 * @module
 */

// High level: a model directory in, chat answers out.
export { type ForwardResult, Pipeline, type PipelineOptions } from "./src/pipeline.ts";
export type {
  ChatEngine,
  ChatMessage,
  ContentPart,
  FinishReason,
  GenerateOptions,
  GenerationEvent,
  GenerationResult,
} from "./src/generate/types.ts";

// Serving: the OpenAI-compatible Hono app and the Hugging Face hub downloader.
export { createApp, type ServerOptions } from "./src/server/app.ts";
export {
  type DownloadOptions,
  downloadModel,
  type ProgressSink,
  resolveModel,
} from "./src/hub/download.ts";

// The stages, for tests and custom pipelines.
export {
  type DecodeOptions,
  StreamDecoder,
  Tokenizer,
  type TokenizerConfig,
} from "./src/tokenizer.ts";
export {
  type GridThw,
  type ImageProcessorConfig,
  imageTokenCount,
  parsePreprocessorConfig,
  type PreprocessedImages,
  preprocessImages,
  smartResize,
} from "./src/image.ts";
export {
  readSafetensors,
  SafetensorsCheckpoint,
  type TensorInfo,
  writeSafetensors,
} from "./src/safetensors.ts";
export { type ModelSource, openModelSource } from "./src/model_files.ts";
export {
  type ImageEmbeds,
  type LoadOptions,
  planModel,
  type PrefillOptions,
  Qwen2VLModel,
  Session,
} from "./src/model/qwen2vl.ts";
export { type Qwen2VLConfig } from "./src/model/config.ts";
export { Gpu, type GpuFeatures, requestGpu, type RequestGpuOptions } from "./src/gpu/device.ts";
export type { QuantDType, WeightDType } from "./src/gpu/tensor.ts";
export type { KvDType } from "./kernels/kv_cache.ts";

// Errors.
export { GpuError, InvalidInputError, ModelFileError, QvqError } from "./src/errors.ts";
