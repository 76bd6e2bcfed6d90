/**
 * A frame pool's thread (src/_frame_pool.ts): patchFrames() of the run of a video's frames it is
 * sent, answering the rows (their buffers transferred), the video's grid, and the error that
 * stopped it, if any; or, to a warm-up, nothing once its wasm is loaded.
 * @module
 */
import { parentPort } from "node:worker_threads";
import { type DecodedImage, type GridThw, patchFrames } from "./image.ts";
import { loadWasm } from "./_wasm.ts";
import { sendError, wasmMemoryBytes } from "./_worker_pool.ts";
import type { FrameReply, FrameRequest, SentFrame, WarmRequest } from "./_frame_pool.ts";

function received(frame: SentFrame): Uint8Array | DecodedImage {
  if ("bytes" in frame) return new Uint8Array(frame.bytes);
  return { width: frame.width, height: frame.height, data: new Uint8Array(frame.rgb) };
}

parentPort!.on("message", async (request: FrameRequest | WarmRequest) => {
  const id = request.id;
  let grid: GridThw | undefined;
  let reply: FrameReply;
  try {
    await loadWasm();
    const values = "warm" in request ? [] : patchFrames(
      request.frames.map(received),
      request.run,
      request.config,
      request.what,
      (g) => grid = g,
    ).values;
    reply = { id, grid, values, memoryBytes: wasmMemoryBytes() };
  } catch (e) {
    reply = { id, grid, values: [], error: sendError(e), memoryBytes: wasmMemoryBytes() };
  }
  parentPort!.postMessage(reply, reply.values.map((v) => v.buffer as ArrayBuffer));
});
