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
 * Times every dispatch of `dispatches` (one step, in order) alone, `steps` times; the GPU must
 * have granted timestamp queries.
 */
export async function profileStep(
  gpu: Gpu,
  dispatches: readonly Dispatch[],
  steps: number,
): Promise<StepProfile> {
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
  const ns = new Float64Array(n); // summed over steps
  try {
    for (let s = 0; s < steps; s++) {
      const enc = gpu.device.createCommandEncoder({ label: "profile" });
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
      const t = new BigUint64Array(await readBytes(gpu, resolved));
      for (let i = 0; i < n; i++) ns[i] += Number(t[2 * i + 1] - t[2 * i]);
    }
  } finally {
    querySet.destroy();
    resolved.destroy();
  }
  const byKey = new Map<string, KernelShare>();
  dispatches.forEach((d, i) => {
    const k = d.variant.key;
    const e = byKey.get(k) ?? { key: k, count: 0, us: 0 };
    e.count++;
    e.us += ns[i] / steps / 1000;
    byKey.set(k, e);
  });
  const shares = [...byKey.values()].sort((a, b) => b.us - a.us)
    .map((e) => ({ ...e, us: Math.round(e.us * 10) / 10 }));
  const total = ns.reduce((a, b) => a + b, 0) / steps / 1000;
  return { kernels_us: Math.round(total * 10) / 10, shares };
}
