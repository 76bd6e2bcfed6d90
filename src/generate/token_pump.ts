/**
 * The GPU-resident decode loop's CPU side. Decode steps run back to back on the GPU (the sampler
 * writes the token ring, the next step's embedding reads it), so the CPU only records batches of
 * steps and reads the ring back, in batches, while the next batch is already running:
 *
 *   submit B0 ─ submit B1 ─ await B0's tokens ─ submit B2 ─ await B1's tokens ─ …
 *
 * Each batch's command buffer ends with a copy of its new ring entries into its own staging
 * buffer, mapped as soon as it is submitted; a mapAsync costs a GPU→CPU round trip (≈ 11 ms on
 * both lavapipe and the H100), paid once per batch and hidden behind the next batch's work.
 * Batches grow 1, 2, 4, … up to `maxBatch` so the first tokens show fast and long answers pay few
 * round trips; tokens of a batch submitted before a stop was seen are simply discarded.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";

/** Records into `encoder` the GPU work that writes ring entries [first, first + count). */
export type BatchRecorder = (encoder: GPUCommandEncoder, first: number, count: number) => void;

/** Options of {@link pumpTokens}. */
export interface PumpOptions {
  /** Ring entries to produce in all (the token budget, ≤ the ring's capacity). */
  total: number;
  /** Size of the first batch (default 1: the token sampled from the prefill's logits alone). */
  firstBatch?: number;
  /** Largest batch (default 32). */
  maxBatch?: number;
  /**
   * Batches kept queued behind the one being awaited (default 1), so the GPU never idles during a
   * readback: while the consumer handles batch k, batches k + 1 … k + 1 + ahead are submitted.
   */
  ahead?: number;
}

/** Default largest batch: 32 steps amortise a readback to < 0.4 ms a token. */
export const DEFAULT_MAX_BATCH = 32;

interface InFlight {
  staging: GPUBuffer;
  count: number;
  mapped: Promise<boolean>;
}

/**
 * Runs the batches and yields each batch's token ids (u32, in ring order) as they arrive.
 * Stop consuming (break / return()) to stop: no more batches are submitted and the staging
 * buffers are freed; work already submitted finishes on the GPU and is ignored.
 *
 * @param ring the token ring, (capacity) u32, written by the recorded work
 */
export async function* pumpTokens(
  gpu: Gpu,
  ring: GPUBuffer,
  record: BatchRecorder,
  options: PumpOptions,
): AsyncGenerator<Uint32Array, void, undefined> {
  const total = options.total;
  const maxBatch = Math.max(1, options.maxBatch ?? DEFAULT_MAX_BATCH);
  const ahead = Math.max(0, options.ahead ?? 1);
  if (!Number.isInteger(total) || total < 0 || total * 4 > ring.size) {
    throw new RangeError(
      `pumpTokens: total ${total} does not fit the ring of ${ring.size / 4} tokens`,
    );
  }
  const free: GPUBuffer[] = [];
  const all: GPUBuffer[] = [];
  const queue: InFlight[] = [];
  let submitted = 0;
  let size = Math.max(1, Math.min(options.firstBatch ?? 1, maxBatch));

  const submit = () => {
    const count = Math.min(size, total - submitted);
    size = Math.min(maxBatch, size * 2);
    let staging = free.pop();
    if (!staging) {
      staging = gpu.device.createBuffer({
        label: "token_pump.staging",
        size: maxBatch * 4,
        usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
      });
      all.push(staging);
    }
    const enc = gpu.device.createCommandEncoder({ label: `decode[${submitted}+${count}]` });
    record(enc, submitted, count);
    enc.copyBufferToBuffer(ring, submitted * 4, staging, 0, count * 4);
    gpu.device.queue.submit([enc.finish()]);
    // A rejected map (staging destroyed on early exit) must not surface as an unhandled rejection.
    const mapped = staging.mapAsync(GPUMapMode.READ, 0, count * 4).then(() => true, () => false);
    queue.push({ staging, count, mapped });
    submitted += count;
  };

  // Keeps `ahead` batches queued behind the one read next.
  const fill = () => {
    while (submitted < total && queue.length < ahead + 1) submit();
  };

  try {
    fill();
    while (queue.length > 0) {
      const b = queue.shift()!;
      if (!(await b.mapped)) throw new Error("token ring readback failed (device lost?)");
      const ids = new Uint32Array(b.staging.getMappedRange(0, b.count * 4).slice(0));
      b.staging.unmap();
      free.push(b.staging);
      fill(); // before yielding: the GPU works while the consumer handles these ids
      yield ids;
    }
  } finally {
    for (const s of all) s.destroy();
  }
}
