/**
 * The image decoder's thread (src/server/_decoder.ts): decodes the bytes it is sent with
 * decodeImage() and sends the pixels back (their buffer transferred), or the error's class name
 * and message.
 * @module
 */
import { parentPort } from "node:worker_threads";
import { decodeImage } from "../image.ts";
import { sendError, type SentError, wasmMemoryBytes, type WorkerAnswer } from "../_worker_pool.ts";

/** A request: decode the file in `bytes` (shared memory: see WorkerPool.run), answer under `id`. */
export interface DecodeRequest {
  id: number;
  bytes: SharedArrayBuffer;
}

/**
 * An answer: the pixels, or why they could not be had; and the worker's wasm memory in bytes,
 * which never shrinks (the pool retires a worker that a large image grew).
 */
export type DecodeAnswer =
  & WorkerAnswer
  & ({ width: number; height: number; data: Uint8Array } | { error: SentError });

parentPort!.on("message", async ({ id, bytes }: DecodeRequest) => {
  try {
    const { width, height, data } = await decodeImage(new Uint8Array(bytes));
    const answer: DecodeAnswer = { id, width, height, data, memoryBytes: wasmMemoryBytes() };
    parentPort!.postMessage(answer, [data.buffer as ArrayBuffer]);
  } catch (e) {
    const answer: DecodeAnswer = { id, error: sendError(e), memoryBytes: wasmMemoryBytes() };
    parentPort!.postMessage(answer);
  }
});
