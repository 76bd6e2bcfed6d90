/**
 * Kernel timing for the micro-benchmarks (bench/_gemv.ts, _gemm.ts, _attention*.ts): R repetitions
 * recorded into one compute pass, submitted, and one value read back; the time per repetition is
 * (t(2R) − t(R)) / R, which cancels the submit and readback (~11 ms on the H100), as the median of
 * three such differences.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { createStorage, readF32 } from "../src/gpu/buffers.ts";
import { type Dispatch, run } from "../kernels/_kernel.ts";
import { fill, fillWeight } from "../kernels/fill.ts";
import { fillQuantRows } from "../kernels/linear_q.ts";
import { createWeight, isQuant, type Weight } from "../src/gpu/tensor.ts";

/** Records repetition `rep` (0-based) into the open pass. */
export type EncodeRep = (rep: number, pass: GPUComputePassEncoder) => void;

/** Wall milliseconds for `reps` repetitions in one pass, up to one value of `probe` on the CPU. */
export async function timePass(
  gpu: Gpu,
  reps: number,
  encode: EncodeRep,
  probe: GPUBuffer,
): Promise<number> {
  const t0 = performance.now();
  const enc = gpu.device.createCommandEncoder({ label: "bench" });
  const pass = enc.beginComputePass({ label: "bench" });
  for (let r = 0; r < reps; r++) encode(r, pass);
  pass.end();
  gpu.device.queue.submit([enc.finish()]);
  await readF32(gpu, probe, 1);
  return performance.now() - t0;
}

/** How {@link msPerRep} picks R. */
export interface RepOptions {
  /** R such that t(R) is about this much GPU work (default 40 ms: readback jitter of ~1 ms stays small). */
  targetMs?: number;
  /** A fixed R instead. */
  reps?: number;
  /** Bounds on the chosen R (default 2 and 4000). */
  minReps?: number;
  maxReps?: number;
}

/**
 * Milliseconds per repetition: after one warm-up (shader compilation), the median of three
 * (t(2R) − t(R)) / R.
 */
export async function msPerRep(
  gpu: Gpu,
  encode: EncodeRep,
  probe: GPUBuffer,
  o: RepOptions = {},
): Promise<number> {
  const t = (reps: number) => timePass(gpu, reps, encode, probe);
  await t(1);
  let R = o.reps;
  if (R === undefined) {
    const per = Math.max(((await t(9)) - (await t(1))) / 8, 0.002);
    R = Math.min(o.maxReps ?? 4000, Math.max(o.minReps ?? 2, Math.ceil((o.targetMs ?? 40) / per)));
  }
  const diffs: number[] = [];
  for (let i = 0; i < 3; i++) diffs.push((await t(2 * R)) - (await t(R)));
  return diffs.sort((a, b) => a - b)[1] / R;
}

/** Milliseconds per call of `ds` (one call = all of ds, chained in one pass): {@link msPerRep}. */
export function msPerCall(
  gpu: Gpu,
  ds: readonly Dispatch[],
  probe: GPUBuffer,
  o: RepOptions = {},
): Promise<number> {
  return msPerRep(gpu, (_, pass) => ds.forEach((d) => d.encode(pass)), probe, o);
}

/**
 * Milliseconds per dispatch of a raw pipeline (the probes' hand-written kernels): {@link msPerRep}
 * over `groups` workgroups with bind group 0 = `bg`.
 */
export function msPerDispatch(
  gpu: Gpu,
  pipe: GPUComputePipeline,
  bg: GPUBindGroup,
  groups: number,
  probe: GPUBuffer,
  o: RepOptions = {},
): Promise<number> {
  return msPerRep(
    gpu,
    (_, pass) => {
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(groups);
    },
    probe,
    o,
  );
}

/** A seeded uniform [-1, 1) f32 buffer of n elements, filled on the GPU (kernels/fill.ts). */
export function randomF32(gpu: Gpu, n: number, seed: number, label: string): GPUBuffer {
  const b = createStorage(gpu, n * 4, label);
  run(gpu, [fill(gpu, b, { count: n, dtype: "f32", seed, scale: 1 })]);
  return b;
}

/**
 * A seeded (rows, cols) weight of `dtype`, made on the GPU: f16 values uniform in ±scale (for q8 /
 * q4, quantized from them on the GPU, kernels/linear_q.ts fillQuantRows).
 */
export function randomWeight(
  gpu: Gpu,
  rows: number,
  cols: number,
  dtype: Weight["dtype"],
  seed: number,
  scale: number,
): Weight {
  const w = createWeight(gpu, rows, cols, dtype, `w${seed}`);
  if (!isQuant(dtype)) run(gpu, fillWeight(gpu, w, { seed, scale }));
  else {
    fillQuantRows(
      gpu,
      w,
      (buf, row, len) =>
        fill(gpu, buf, { count: len * cols, dtype: "f16", seed, scale, base: row * cols }),
    );
  }
  return w;
}
