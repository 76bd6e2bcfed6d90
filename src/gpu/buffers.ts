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

/** Readback buffers whose first mapping is done (see {@link createReadback}). */
const primed = new WeakSet<GPUBuffer>();

/**
 * Whether this runtime's WebGPU is the one {@link readMapped}'s fast path was verified on: Deno
 * 2.9 (ext/webgpu buffer.rs as of 2.9.6). Another version could panic where this one throws (a
 * range taken while the map is pending), so elsewhere readMapped awaits the promise.
 */
const FAST_READ = /^2\.9\./.test(globalThis.Deno?.version?.deno ?? "");

/**
 * A MAP_READ | COPY_DST buffer of `byteSize` bytes (rounded up to 4) for {@link readMapped}. It is
 * created mapped and unmapped at once: Deno (2.9.6) panics — the process dies — when a buffer's
 * range is taken before any mapping of it has resolved, which readMapped's fast path would do.
 */
export function createReadback(gpu: Gpu, byteSize: number, label = "readback"): GPUBuffer {
  const buffer = gpu.device.createBuffer({
    label,
    size: Math.max(4, Math.ceil(byteSize / 4) * 4),
    usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
    mappedAtCreation: true,
  });
  buffer.unmap();
  primed.add(buffer);
  return buffer;
}

/**
 * Copies bytes [0, byteSize) of `buffer` (a {@link createReadback} buffer) out once `mapped`, the
 * promise of the `buffer.mapAsync(GPUMapMode.READ, 0, ≥ byteSize)` call just made, allows, and
 * unmaps it.
 *
 * Why not simply await `mapped`: Deno's WebGPU (2.9.6, ext/webgpu buffer.rs) waits for the GPU and
 * maps the buffer inside the mapAsync call, then resolves the promise only after a further fixed
 * 10 ms sleep. The mapped range can be read as soon as the call returns, so this reads it then
 * (measured: a readback 10–11 ms → 0.1 ms). Where the range is not mapped yet — a WebGPU whose
 * mapAsync completes later, as the spec allows — getMappedRange throws and this awaits `mapped`;
 * on runtimes other than Deno 2.9 it always awaits.
 * The promise itself still settles later; its rejection is handled here.
 */
export async function readMapped(
  buffer: GPUBuffer,
  mapped: Promise<void>,
  byteSize: number,
): Promise<ArrayBuffer> {
  // The range (rounded up to whole words, as mapped) copied out, then unmapped.
  const copyOut = () => {
    const bytes = buffer.getMappedRange(0, Math.ceil(byteSize / 4) * 4).slice(0, byteSize);
    buffer.unmap();
    return bytes;
  };
  if (FAST_READ && primed.has(buffer)) {
    try {
      const bytes = copyOut();
      mapped.catch(() => {});
      return bytes;
    } catch {
      // Not mapped yet: wait for the promise below.
    }
  }
  await mapped;
  return copyOut();
}

/** Copies `byteSize` bytes of `buffer` (from `byteOffset`) back to the CPU. One round trip. */
export function readBytes(
  gpu: Gpu,
  buffer: GPUBuffer,
  byteSize = buffer.size,
  byteOffset = 0,
): Promise<ArrayBuffer> {
  const size = Math.ceil(byteSize / 4) * 4;
  const staging = createReadback(gpu, size);
  const enc = gpu.device.createCommandEncoder({ label: "readback" });
  enc.copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
  gpu.device.queue.submit([enc.finish()]);
  return readMapped(staging, staging.mapAsync(GPUMapMode.READ), byteSize)
    .finally(() => staging.destroy());
}

/**
 * Waits until the GPU has run all work submitted so far, without the fixed 10 ms that Deno adds
 * to `queue.onSubmittedWorkDone()` (see {@link readMapped}: this maps a 4-byte buffer). In Deno
 * the thread waits inside the call; the returned promise is settled at once there, and no other
 * event (I/O, timers) runs in between.
 */
export function gpuIdle(gpu: Gpu): Promise<void> {
  const fence = createReadback(gpu, 4, "gpu_idle");
  return readMapped(fence, fence.mapAsync(GPUMapMode.READ), 4)
    .then(() => {}).finally(() => fence.destroy());
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
