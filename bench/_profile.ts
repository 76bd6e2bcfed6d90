/**
 * Where a decode step's GPU time goes: each dispatch runs alone in its own compute pass between two
 * timestamp queries, for `steps` consecutive steps (the decode state advances, as in generation),
 * and the times are summed by kernel variant. The sum is the kernels' own time; the gap between it
 * and the step time measured with every dispatch in one pass is launch cost and idle GPU (a pass
 * each also adds a barrier per dispatch, so small kernels look slightly slower here than they are).
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { readBytes } from "../src/gpu/buffers.ts";
import type { Dispatch } from "../kernels/_kernel.ts";
import { GpuError } from "../src/errors.ts";

/** One kernel variant's share of a decode step. */
export interface KernelShare {
  /** The variant key (kernels/_kernel.ts), e.g. `linear.main[ACC,GEMV,PACK8,...]`. */
  key: string;
  /** Dispatches of this variant per step. */
  count: number;
  /** GPU microseconds per step, summed over its dispatches. */
  us: number;
}

/** A decode step's dispatches timed one by one. */
export interface StepProfile {
  /** Σ of every dispatch's GPU time, µs per step. */
  kernels_us: number;
  /** By variant, largest first. */
  shares: KernelShare[];
}

/**
 * Encodes each dispatch alone in a compute pass between two timestamp queries and submits them;
 * resolves to each one's GPU nanoseconds. The GPU must have granted timestamp queries.
 */
function timeAlone(
  gpu: Gpu,
  dispatches: readonly Dispatch[],
  label: string,
): Promise<Float64Array> {
  if (!gpu.features.timestampQuery) {
    throw new GpuError("--profile needs the timestamp-query feature, which this adapter lacks");
  }
  const n = dispatches.length;
  const querySet = gpu.device.createQuerySet({ type: "timestamp", count: 2 * n });
  const resolved = gpu.device.createBuffer({
    label: "profile.timestamps",
    size: 16 * n, // (n, 2) u64 ns
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const enc = gpu.device.createCommandEncoder({ label });
  dispatches.forEach((d, i) => {
    const pass = enc.beginComputePass({
      label: d.variant.key,
      timestampWrites: {
        querySet,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    });
    d.encode(pass);
    pass.end();
  });
  enc.resolveQuerySet(querySet, 0, 2 * n, resolved, 0);
  gpu.device.queue.submit([enc.finish()]);
  return readBytes(gpu, resolved).then((b) => {
    const t = new BigUint64Array(b);
    return Float64Array.from({ length: n }, (_, i) => Number(t[2 * i + 1] - t[2 * i]));
  }).finally(() => {
    querySet.destroy();
    resolved.destroy();
  });
}

/** Sums `ns[i]` (the time of dispatch `keys[i]`, summed over `per` runs of them) by variant key: µs per run, largest first. */
function byVariant(keys: readonly string[], ns: ArrayLike<number>, per: number): StepProfile {
  const byKey = new Map<string, KernelShare>();
  keys.forEach((k, i) => {
    const e = byKey.get(k) ?? { key: k, count: 0, us: 0 };
    e.count++;
    e.us += ns[i] / per / 1000;
    byKey.set(k, e);
  });
  const shares = [...byKey.values()].sort((a, b) => b.us - a.us)
    .map((e) => ({ ...e, us: Math.round(e.us * 10) / 10 }));
  const total = Array.from(ns).reduce((a, b) => a + b, 0) / per / 1000;
  return { kernels_us: Math.round(total * 10) / 10, shares };
}

/**
 * Times every dispatch of `dispatches` (one step, in order) alone, `steps` times; the GPU must
 * have granted timestamp queries.
 */
export async function profileStep(
  gpu: Gpu,
  dispatches: readonly Dispatch[],
  steps: number,
): Promise<StepProfile> {
  const ns = new Float64Array(dispatches.length); // summed over steps
  for (let s = 0; s < steps; s++) {
    const t = await timeAlone(gpu, dispatches, "profile");
    t.forEach((v, i) => ns[i] += v);
  }
  return byVariant(dispatches.map((d) => d.variant.key), ns, steps);
}

/**
 * Runs `work` with every batch that src/model/vision.ts `submit()`s (the vision tower's, prefill's)
 * timed dispatch by dispatch, and returns the times by submit label ("vision", "prefill"), each
 * summed by kernel variant. Dispatches run one pass each, so the sums run a little over the real
 * (one-pass) time.
 */
export async function profileSubmits(
  gpu: Gpu,
  work: () => Promise<void>,
): Promise<Record<string, StepProfile>> {
  const timed: { label: string; keys: string[]; ns: Promise<Float64Array> }[] = [];
  gpu.submitHook = (label, ds) => {
    const ns = timeAlone(gpu, ds, label);
    ns.catch(() => {}); // awaited below; an early rejection must not go unhandled
    timed.push({ label, keys: ds.map((d) => d.variant.key), ns });
  };
  try {
    await work();
  } finally {
    gpu.submitHook = undefined;
  }
  const out: Record<string, StepProfile> = {};
  for (const label of new Set(timed.map((t) => t.label))) {
    const mine = timed.filter((t) => t.label === label);
    const ns = (await Promise.all(mine.map((t) => t.ns))).flatMap((a) => [...a]);
    out[label] = byVariant(mine.flatMap((t) => t.keys), ns, 1);
  }
  return out;
}
