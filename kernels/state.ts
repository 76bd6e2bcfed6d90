/**
 * The decode state buffer (layout and token-ring convention: kernels/state.wgsl) and the
 * `advance` kernel that ends each decode step on the GPU.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { readU32, STORAGE } from "../src/gpu/buffers.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, Dispatch, variant } from "./_kernel.ts";

/** Byte size of the decode state struct. */
export const DECODE_STATE_BYTES = 16;

/** CPU view of the decode state. */
export interface DecodeState {
  /** Tokens already in the KV cache (this step writes its K/V at this row). */
  cacheLen: number;
  /** Text rope position of the token being decoded. */
  position: number;
  /** Ring index of the token being fed in (tokens[step]). */
  step: number;
}

/** Creates a zeroed decode state buffer (16 bytes). */
export function createDecodeState(gpu: Gpu, label = "decode_state"): GPUBuffer {
  return gpu.device.createBuffer({ label, size: DECODE_STATE_BYTES, usage: STORAGE });
}

function packState(s: DecodeState): Uint32Array<ArrayBuffer> {
  for (const [k, v] of Object.entries(s)) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new InvalidInputError(`decode state ${k} must be a u32, got ${v}`);
    }
  }
  return new Uint32Array([s.cacheLen, s.position, s.step, 0]);
}

/**
 * Sets the state (queued: takes effect before the next submitted command buffer). After a prefill
 * of n prompt tokens whose next text position is `p`: `{ cacheLen: n, position: p, step: 0 }`.
 */
export function writeDecodeState(gpu: Gpu, buffer: GPUBuffer, s: DecodeState): void {
  gpu.device.queue.writeBuffer(buffer, 0, packState(s));
}

/** Reads the state back (one GPU round trip: for tests and debugging, not per token). */
export async function readDecodeState(gpu: Gpu, buffer: GPUBuffer): Promise<DecodeState> {
  const [cacheLen, position, step] = await readU32(gpu, buffer, 3);
  return { cacheLen, position, step };
}

/** The last dispatch of a decode step: cache_len, position and step each + 1. */
export function advance(gpu: Gpu, state: BufferArg): Dispatch {
  const v = variant(gpu, { family: "state", entry: "advance", bindings: ["read_write"] });
  return new Dispatch(gpu, v, [state], undefined, [1]);
}
