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
 * @example Load a model from the Hugging Face hub
 * ```ts ignore
 * import { Pipeline, resolveModel } from "@qvq/webgpu";
 * // Pipeline.load takes a directory or a URL; resolveModel downloads a hub id into the Hugging
 * // Face cache first (HF_HOME, HF_TOKEN, HF_HUB_OFFLINE as huggingface_hub reads them).
 * const qvq = await Pipeline.load(await resolveModel("Qwen/Qwen2-VL-2B-Instruct"));
 * ```
 *
 * @example Serve it to OpenAI clients (`deno serve -A --host 127.0.0.1 main.ts`)
 * ```ts ignore
 * // deno serve listens on every interface unless told --host: there is no API key by default.
 * import { createApp, Pipeline } from "@qvq/webgpu";
 * export default createApp(await Pipeline.load("./Qwen2-VL-2B-Instruct"));
 * ```
 * @module
 */

// High level: a model directory in, chat answers out.
export { type ForwardResult, Pipeline, type PipelineOptions } from "./src/pipeline.ts";
export type { PreparedPrompt } from "./src/generate/prompt.ts";
export { ChatProcessor, type PrepareOptions } from "./src/generate/processor.ts";
export { ChatTemplate, type RenderOptions } from "./src/generate/chat_template.ts";
export type { GenerationConfig } from "./src/generate/options.ts";
export type { LoopDetectorOptions } from "./src/generate/loop_detector.ts";
export type {
  ChatEngine,
  ChatMessage,
  ContentPart,
  FinishReason,
  GenerateOptions,
  GenerationEvent,
  GenerationResult,
  PromptEcho,
  PromptTokenLogprob,
  TokenizeInput,
  TokenLogprob,
  ToolCall,
  TopLogprob,
  WeightTypes,
} from "./src/generate/types.ts";

// Serving: the OpenAI-compatible Hono app and the Hugging Face hub downloader.
export { createApp, type ServerOptions } from "./src/server/app.ts";
export type { EngineSource } from "./src/server/_engine_holder.ts";
export type { ResponseStoreLimits } from "./src/server/_response_store.ts";
export {
  loadWorkerEngine,
  type WorkerEngine,
  type WorkerLoadOptions,
} from "./src/server/worker_engine.ts";
export {
  downloadModel,
  type DownloadOptions,
  type ProgressSink,
  resolveModel,
} from "./src/hub/download.ts";

// The stages, for tests and custom pipelines.
export {
  type AddedTokenConfig,
  type DecodeOptions,
  StreamDecoder,
  Tokenizer,
  type TokenizerConfig,
} from "./src/tokenizer.ts";
export {
  type DecodedImage,
  decodeImage,
  DEFAULT_IMAGE_PROCESSOR_CONFIG,
  DEFAULT_VIDEO_PROCESSOR_CONFIG,
  type GridThw,
  imageGrids,
  type ImageProcessorConfig,
  type ImageSize,
  imageTokenCount,
  MAX_VIDEO_FRAMES,
  parsePreprocessorConfig,
  type PreprocessedImages,
  preprocessImages,
  type PreprocessOptions,
  smartResize,
  type VideoInput,
} from "./src/image.ts";
export {
  type DType,
  readSafetensors,
  type ReadSafetensorsResult,
  SafetensorsCheckpoint,
  type StoredDType,
  type Target,
  type TargetArray,
  type TensorChunk,
  type TensorData,
  type TensorInfo,
  type WritableDType,
  writeSafetensors,
} from "./src/safetensors.ts";
export {
  type ModelSource,
  openModelSource,
  type UrlModelSourceOptions,
} from "./src/model_files.ts";
export {
  type ImageEmbeds,
  type LoadOptions,
  type ModelPlan,
  planModel,
  type PlanModelOptions,
  type PrefillOptions,
  type PrefillResult,
  DecodeBatch,
  Qwen2VLModel,
  Session,
} from "./src/model/qwen2vl.ts";
export type { Qwen2VLConfig, TextConfig, VisionConfig } from "./src/model/config.ts";
export type {
  MemoryEstimate,
  Naming,
  PlannedTensor,
  RowSource,
  WeightPlan,
} from "./src/model/weights.ts";
export type { LayerCache } from "./src/model/decoder.ts";
export { Gpu, type GpuFeatures, requestGpu, type RequestGpuOptions } from "./src/gpu/device.ts";
export type { QuantDType, WeightDType } from "./src/gpu/tensor.ts";
export type { KvDType } from "./kernels/kv_cache.ts";
export type { TokenLogprobRecord } from "./kernels/logprobs.ts";

// Errors.
export {
  ContextLengthError,
  DeviceLostError,
  EngineClosedError,
  GpuError,
  InvalidInputError,
  ModelFileError,
  NoChatTemplateError,
  QvqError,
  SamplingError,
  SchemaError,
} from "./src/errors.ts";
