/**
 * The entry of the browser bundle (`deno task bundle` → dist/qvq.js, with qvq_wasm_bg.wasm beside
 * it): the parts of qvq that run on any WebGPU platform without Deno's module loader. Model files
 * are read over http(s) with Range requests, so point it at a hub URL or your own server.
 *
 * @example
 * ```js
 * import { Pipeline, Tokenizer } from "./qvq.js";
 * const qvq = await Pipeline.load("https://huggingface.co/Qwen/Qwen2-VL-2B-Instruct/resolve/main/");
 * const answer = await qvq.chat([{ role: "user", content: "Hello!" }], { maxNewTokens: 64 });
 * const tok = await Tokenizer.load("https://huggingface.co/Qwen/Qwen2-VL-2B-Instruct/resolve/main/");
 * console.log(tok.encode("Hello world")); // Int32Array [9707, 1879]
 * ```
 * @module
 */
export { Pipeline, type PipelineOptions } from "../pipeline.ts";
export { Tokenizer } from "../tokenizer.ts";
export { openModelSource } from "../model_files.ts";
export type { ModelSource } from "../model_files.ts";
export { GpuError, InvalidInputError, ModelFileError, QvqError } from "../errors.ts";
export type * from "../generate/types.ts";
