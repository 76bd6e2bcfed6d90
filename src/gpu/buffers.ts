/**
 * Moving arrays between the CPU and GPU buffers.
 * @module
 */
import type { Gpu } from "./device.ts";

/** Usage for tensors the kernels read and write, and that can be copied in and out. */
export const STORAGE: GPUBufferUsageFlags = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST |
  GPUBufferUsage.COPY_SRC;

/** Creates a storage buffer of `byteSize` bytes (rounded up to 4), zero-filled. */
export function createStorage(gpu: Gpu, byteSize: number, label = "tensor"): GPUBuffer {
  return gpu.device.createBuffer({
    label,
    size: Math.max(4, Math.ceil(byteSize / 4) * 4),
    usage: STORAGE,
  });
}

/**
 * A per-device scratch buffer: the returned function gives one storage buffer of at least `bytes`
 * per device, replaced by a larger one when a call needs more. A replaced buffer is not destroyed:
 * dispatches built earlier may still bind it.
 */
export function deviceScratch(label: string): (gpu: Gpu, bytes: number) => GPUBuffer {
  const held = new WeakMap<Gpu, GPUBuffer>();
  return (gpu, bytes) => {
    let b = held.get(gpu);
    if (!b || b.size < bytes) {
      b = createStorage(gpu, bytes, label);
      held.set(gpu, b);
    }
    return b;
  };
}

/** Creates a storage buffer holding `data` (its bytes, padded to a multiple of 4). */
export function uploadArray(gpu: Gpu, data: ArrayBufferView, label = "tensor"): GPUBuffer {
  const buf = createStorage(gpu, data.byteLength, label);
  writeArray(gpu, buf, data);
  return buf;
}

/** Writes `data` into `buffer` at `byteOffset`, padding the tail so the size is a multiple of 4. */
export function writeArray(
  gpu: Gpu,
  buffer: GPUBuffer,
  data: ArrayBufferView,
  byteOffset = 0,
): void {
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  const whole = bytes.byteLength & ~3;
  if (whole) gpu.device.queue.writeBuffer(buffer, byteOffset, bytes, 0, whole);
  if (whole !== bytes.byteLength) {
    const tail = new Uint8Array(4);
    tail.set(bytes.subarray(whole));
    gpu.device.queue.writeBuffer(buffer, byteOffset + whole, tail);
  }
}

/** Copies `byteSize` bytes of `buffer` (from `byteOffset`) back to the CPU. One round trip. */
export async function readBytes(
  gpu: Gpu,
  buffer: GPUBuffer,
  byteSize = buffer.size,
  byteOffset = 0,
): Promise<ArrayBuffer> {
  const size = Math.ceil(byteSize / 4) * 4;
  const staging = gpu.device.createBuffer({
    label: "readback",
    size,
    usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
  });
  const enc = gpu.device.createCommandEncoder({ label: "readback" });
  enc.copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
  gpu.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, byteSize);
  staging.unmap();
  staging.destroy();
  return out;
}

/** The bytes of `count` elements of `size` bytes (default: the whole buffer) from element `offset`. */
function readElements(
  gpu: Gpu,
  buffer: GPUBuffer,
  size: number,
  count = buffer.size / size,
  offset = 0,
): Promise<ArrayBuffer> {
  return readBytes(gpu, buffer, count * size, offset * size);
}

/** Reads `count` f32 values (default: the whole buffer). */
export async function readF32(
  gpu: Gpu,
  buffer: GPUBuffer,
  count?: number,
  offset = 0,
): Promise<Float32Array> {
  return new Float32Array(await readElements(gpu, buffer, 4, count, offset));
}

/** Reads `count` u32 values (default: the whole buffer). */
export async function readU32(
  gpu: Gpu,
  buffer: GPUBuffer,
  count?: number,
  offset = 0,
): Promise<Uint32Array> {
  return new Uint32Array(await readElements(gpu, buffer, 4, count, offset));
}

/** Reads `count` f16 values (default: the whole buffer) widened to f32, e.g. an f16 KV cache. */
export async function readF16(
  gpu: Gpu,
  buffer: GPUBuffer,
  count?: number,
  offset = 0,
): Promise<Float32Array> {
  return Float32Array.from(new Float16Array(await readElements(gpu, buffer, 2, count, offset)));
}
