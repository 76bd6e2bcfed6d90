/**
 * A frame pool's thread (src/_frame_pool.ts): patchImage() of the image it is sent, or
 * patchFrames() of the run of a video's frames, answering the rows (their buffers transferred),
 * the grid, and the error that stopped it, if any; or, to a warm-up, nothing once its wasm is
 * loaded.
 * @module
 */
import { parentPort } from "node:worker_threads";
import { type DecodedImage, type GridThw, patchFrames, patchImage } from "./image.ts";
import { loadWasm } from "./_wasm.ts";
import { sendError, wasmMemoryBytes } from "./_worker_pool.ts";
import type {
  FrameReply,
  FrameRequest,
  ImageRequest,
  SentFrame,
  WarmRequest,
} from "./_frame_pool.ts";

function received(frame: SentFrame): Uint8Array | DecodedImage {
  if ("bytes" in frame) return new Uint8Array(frame.bytes);
  return { width: frame.width, height: frame.height, data: new Uint8Array(frame.rgb) };
}

/** The request's rows, telling `onGrid` the grid once it is known. */
function patches(
  request: FrameRequest | ImageRequest | WarmRequest,
  onGrid: (grid: GridThw) => void,
): Float32Array[] {
  if ("warm" in request) return [];
  if ("image" in request) {
    const { grid, values } = patchImage(received(request.image), request.config, request.what);
    onGrid(grid);
    return values;
  }
  const { frames, run, config, what } = request;
  return patchFrames(frames.map(received), run, config, what, onGrid).values;
}

parentPort!.on("message", async (request: FrameRequest | ImageRequest | WarmRequest) => {
  const id = request.id;
  let grid: GridThw | undefined;
  let reply: FrameReply;
  try {
    await loadWasm();
    const values = patches(request, (g) => grid = g);
    reply = { id, grid, values, memoryBytes: wasmMemoryBytes() };
  } catch (e) {
    reply = { id, grid, values: [], error: sendError(e), memoryBytes: wasmMemoryBytes() };
  }
  parentPort!.postMessage(reply, reply.values.map((v) => v.buffer as ArrayBuffer));
});
