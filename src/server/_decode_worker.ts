/**
 * The image decoder's thread (src/server/_decoder.ts): decodes the bytes it is sent with
 * decodeImage() and sends the pixels back (their buffer transferred), or the error's class name
 * and message.
 * @module
 */
import { parentPort } from "node:worker_threads";
import { decodeImage } from "../image.ts";
import { wasm } from "../_wasm.ts";

/**
 * A request: decode the file in `bytes`, answer under `id`. Shared memory, not a Uint8Array:
 * node:worker_threads took 0.6–0.9 s to deliver a 2.6 MB Uint8Array to this thread in Deno 2.9.6
 * (copied or transferred), a SharedArrayBuffer 5–7 ms (2026-11-29).
 */
export interface DecodeRequest {
  id: number;
  bytes: SharedArrayBuffer;
}

/**
 * An answer: the pixels, or why they could not be had; and the worker's wasm memory in bytes,
 * which never shrinks (the pool retires a worker that a large image grew).
 */
export type DecodeAnswer =
  & { id: number; memoryBytes: number }
  & (
    | { width: number; height: number; data: Uint8Array }
    | { error: { name: string; message: string } }
  );

/** The wasm instance's memory now (0 before a first decode loaded it). */
function memoryBytes(): number {
  try {
    return (wasm.stMemory() as WebAssembly.Memory).buffer.byteLength;
  } catch {
    return 0;
  }
}

parentPort!.on("message", async ({ id, bytes }: DecodeRequest) => {
  try {
    const { width, height, data } = await decodeImage(new Uint8Array(bytes));
    const answer: DecodeAnswer = { id, width, height, data, memoryBytes: memoryBytes() };
    parentPort!.postMessage(answer, [data.buffer as ArrayBuffer]);
  } catch (e) {
    const error = e instanceof Error ? e : new Error(String(e));
    const answer: DecodeAnswer = {
      id,
      error: { name: error.name, message: error.message },
      memoryBytes: memoryBytes(),
    };
    parentPort!.postMessage(answer);
  }
});
