/**
 * The GPU-resident decode loop's CPU side. Decode steps run back to back on the GPU (the sampler
 * writes the token ring, the next step's embedding reads it), so the CPU only records batches of
 * steps and reads the ring back, a batch at a time:
 *
 *   record B0 ─ submit B0 ─ record B1 ─ map B0 ─ submit B1 ─ B0's ids ─ record B2 ─ map B1 ─ …
 *
 * Each batch's command buffer ends with a copy of its new ring entries into its own staging
 * buffer. Batches grow 1, 2, 4, … so the first tokens show fast and long answers pay few round
 * trips, while a batch's GPU time is under `batchMs` and up to `maxBatch` steps: the consumer
 * gets text that often (and sees an abort that soon). A batch recorded but not yet submitted when
 * the consumer stops is dropped.
 *
 * Why this order: Deno's WebGPU (2.9.6; ext/webgpu buffer.rs) runs `mapAsync` as a blocking wait
 * for ALL submitted work when it is called. So the next batch is recorded while the GPU runs this
 * one, this one's staging is mapped (the thread waits there until the GPU is done), and the next
 * batch is submitted the moment the wait returns. The ids are read at once (src/gpu/buffers.ts
 * readMapped: the map's promise would resolve 10 ms later). The first pump (record and map at
 * submit, then record the next) left the GPU idle through every batch's recording and submit: on
 * the H200 (2026-11-29, BENCHMARKS.md) it decoded 7B f16 at 186–187 tok/s, this order at 213.
 *
 * After the consumer has taken a batch's ids, the pump lets the event loop run once (a 0 ms timer)
 * before the next wait: nothing else runs while the thread waits, so a server's writes of this
 * batch's text, and the events that abort a generation (a closed connection), would otherwise
 * wait out the next batch too.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createReadback, readMapped } from "../gpu/buffers.ts";

/** Records into `encoder` the GPU work that writes ring entries [first, first + count). */
export type BatchRecorder = (encoder: GPUCommandEncoder, first: number, count: number) => void;

/** Options of {@link pumpTokens}. */
export interface PumpOptions {
  /** Ring entries to produce in all (the token budget, ≤ the ring's capacity). */
  total: number;
  /** Ring entry to start from (default 0: the prefill's sample; benchmarks resume a run). */
  first?: number;
  /** Size of the first batch (default 1: the token sampled from the prefill's logits alone). */
  firstBatch?: number;
  /** Largest batch (default 32). */
  maxBatch?: number;
  /**
   * Batches double only while the last one ran under this many milliseconds of GPU time
   * (default {@link DEFAULT_BATCH_MS}; Infinity: up to maxBatch whatever they take).
   */
  batchMs?: number;
  /** The clock that times batches, in ms (default performance.now; tests pass their own). */
  now?: () => number;
  /**
   * Ends the pump, submitting nothing more, once aborted. A consumer that stops waiting for a
   * batch when its signal aborts (src/generate/decode_stream.ts) cannot return() the pump before
   * it next yields, and may free what the recorded batches use meanwhile: the pump checks the
   * signal after its event-loop turn, before the next submit.
   */
  signal?: AbortSignal;
  /**
   * A second ring read back with the tokens (the logprobs records): each batch's entries are
   * copied into the same staging buffer after its ids and handed to `take` just before the ids
   * are yielded.
   */
  side?: SideRing;
}

/** A ring of fixed-size entries, one per token-ring entry, read back beside the ids. */
export interface SideRing {
  /** (capacity, entryBytes) bytes. */
  buffer: GPUBuffer;
  /** Bytes per entry, a multiple of 4. */
  entryBytes: number;
  /** Receives entries [first, first + count) as u32 words. */
  take(words: Uint32Array, first: number, count: number): void;
}

/** Default largest batch: 32 steps amortise a readback to < 0.4 ms a token. */
export const DEFAULT_MAX_BATCH = 32;

/**
 * Default GPU time a batch grows to. Each batch costs some GPU idle (the wait's return and the next
 * submit), and when the answer ends (a stop token, a stop string, a loop) the batch already
 * submitted after the one holding the end still runs: the next request waits behind it.
 * H200, 2026-11-29 (bench/main.ts `--steps-per-submit`, 478-token prompt): 7B f16 213.0 / 215.0 /
 * 216.3 tok/s at 8 / 16 / 32 steps (37 / 74 / 147 ms), QVQ-72B q4 62.8 / 63.5 / 64.0 at 2 / 4 / 8
 * (32 / 63 / 126 ms), 2B f16 596.5 / 610.2 at 16 / 32 (27 / 52 ms); in another run QVQ-72B gave
 * 64.0 / 63.8 at 4 steps against 66.6 / 67.8 at 32 (0.5 s batches). So batches stop doubling at
 * 50 ms: 7B at 16 steps and QVQ-72B at 4, 2B still at 32, for 1–5 % of decode rate in those runs;
 * GPU timestamps put the idle between batches at 0.7–1.0 ms (H200, 2026-11-29 10:16: 1.6 % of
 * QVQ-72B's rate at 4 steps, 0.9 % of the 7B's at 16), and a step's GPU time the same at 4 and 32.
 * Text comes (and an abort is seen) every ≈ 50–75 ms, and an answer's end leaves at most that much
 * work behind it.
 */
export const DEFAULT_BATCH_MS = 50;

/** A recorded batch: its command buffer (submitted or not yet), staging buffer, entries. */
interface Batch {
  commands: GPUCommandBuffer;
  staging: GPUBuffer;
  first: number;
  count: number;
}

/**
 * Runs the batches and yields each batch's token ids (u32, in ring order) as they arrive.
 * Stop consuming (break / return()) to stop: the batch submitted after the one handed over
 * finishes on the GPU and is ignored, nothing more is submitted, and the staging buffers are freed.
 *
 * @param ring the token ring, (capacity) u32, written by the recorded work
 */
export async function* pumpTokens(
  gpu: Gpu,
  ring: GPUBuffer,
  record: BatchRecorder,
  options: PumpOptions,
): AsyncGenerator<Uint32Array, void, undefined> {
  const total = options.total, start = options.first ?? 0;
  const maxBatch = Math.max(1, options.maxBatch ?? DEFAULT_MAX_BATCH);
  const batchMs = options.batchMs ?? DEFAULT_BATCH_MS,
    now = options.now ?? (() => performance.now());
  checkPump("pumpTokens", ring, start, total, options.side);
  const side = options.side;
  // Staging: the batch's ids, then (from maxBatch · 4) its side entries.
  const sideAt = maxBatch * 4;
  const free: GPUBuffer[] = [];
  const all: GPUBuffer[] = [];
  let recorded = start;
  let size = Math.max(1, Math.min(options.firstBatch ?? 1, maxBatch));
  let stepMs = NaN; // GPU time a step, from the last batch mapped

  // The next batch's commands, not submitted; undefined once the budget is recorded.
  const prepare = (): Batch | undefined => {
    if (recorded >= start + total) return undefined;
    const count = Math.min(size, start + total - recorded);
    if (!(size * stepMs >= batchMs)) size = Math.min(maxBatch, size * 2);
    let staging = free.pop();
    if (!staging) {
      staging = createReadback(
        gpu,
        sideAt + (side ? maxBatch * side.entryBytes : 0),
        "token_pump.staging",
      );
      all.push(staging);
    }
    const enc = gpu.device.createCommandEncoder({ label: `decode[${recorded}+${count}]` });
    record(enc, recorded, count);
    enc.copyBufferToBuffer(ring, recorded * 4, staging, 0, count * 4);
    if (side) {
      const n = side.entryBytes;
      enc.copyBufferToBuffer(side.buffer, recorded * n, staging, sideAt, count * n);
    }
    const first = recorded;
    recorded += count;
    return { commands: enc.finish(), staging, first, count };
  };

  try {
    let running = prepare();
    if (running) gpu.device.queue.submit([running.commands]);
    // When the last wait returned (the first batch is not timed: its wait covers whatever was
    // submitted before it, the prefill).
    let since = NaN;
    let next = prepare();
    while (running) {
      // Deno waits for the GPU inside this call (see the module doc).
      const bytes = side ? sideAt + running.count * side.entryBytes : running.count * 4;
      const mapped = running.staging.mapAsync(GPUMapMode.READ, 0, bytes);
      if (next) gpu.device.queue.submit([next.commands]);
      // The batch ran from the last wait's return to this one's (where mapAsync does not wait,
      // this is ~0 and batches grow to maxBatch).
      const t = now();
      if (!Number.isNaN(since)) stepMs = (t - since) / running.count;
      since = t;
      const data = await readMapped(running.staging, mapped, bytes).catch((cause) => {
        throw new Error("token ring readback failed (device lost?)", { cause });
      });
      const ids = new Uint32Array(data, 0, running.count);
      side?.take(new Uint32Array(data, sideAt), running.first, running.count);
      free.push(running.staging);
      running = next;
      yield ids;
      // Encoded after the consumer took these ids (the GPU still runs `running`): a batch
      // encoded before and never submitted, where the consumer stops (a stop id or string, the
      // loop stop, an abort), held its command buffer's native memory until a garbage
      // collection V8 had no reason to run (≈ 0.3 MB an answer on the tiny model).
      next = running ? prepare() : undefined;
      if (running) await turnEventLoop();
      if (options.signal?.aborted) return;
    }
  } finally {
    for (const s of all) s.destroy();
  }
}

/**
 * Throws a RangeError unless ring entries [start, start + total) fit the ring (and the side ring).
 * @param what the caller, for the message
 */
export function checkPump(
  what: string,
  ring: GPUBuffer,
  start: number,
  total: number,
  side?: SideRing,
): void {
  if (
    !Number.isInteger(total) || total < 0 || !Number.isInteger(start) || start < 0 ||
    (start + total) * 4 > ring.size
  ) {
    throw new RangeError(
      `${what}: entries ${start} + ${total} do not fit the ring of ${ring.size / 4} tokens`,
    );
  }
  if (side && !(side.entryBytes > 0 && side.entryBytes % 4 === 0)) {
    throw new RangeError(
      `${what}: side entries must be whole u32 words, got ${side.entryBytes} bytes`,
    );
  }
  if (side && (start + total) * side.entryBytes > side.buffer.size) {
    throw new RangeError(
      `${what}: entries ${start} + ${total} do not fit the side ring of ` +
        `${Math.floor(side.buffer.size / side.entryBytes)} entries`,
    );
  }
}

/** Resolves after one turn of the event loop (I/O and timers run): a 0 ms timer. */
export function turnEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
