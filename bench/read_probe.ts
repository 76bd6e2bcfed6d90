/**
 * Memory read ceiling through this WebGPU: a kernel that only streams a buffer (bench/_stream.ts:
 * vec4<u32> loads, UNROLL independent loads in flight per thread, grid-strided, a sum per thread
 * kept so the loads stay) over 1 GiB, for several unroll depths and workgroup counts. The ceiling
 * the decode GEMVs (bench/_gemv.ts) are compared against.
 *
 *   deno run -A --no-config --no-check bench/read_probe.ts
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { fill } from "../kernels/fill.ts";
import { run } from "../kernels/_kernel.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { msPerDispatch } from "./_timing.ts";
import { probeLayout, STREAM_WG, streamKernel } from "./_stream.ts";

const gpu = await requestGpu();
const dev = gpu.device;
const BYTES = 1 << 30;
const src = dev.createBuffer({ size: BYTES, usage: GPUBufferUsage.STORAGE });
// Random contents: an untouched (zero) buffer read back above the card's 4.8 TB/s on the H200
// (up to 6.4 at 17:11), the zeros presumably compressed.
run(gpu, [fill(gpu, src, { count: BYTES / 4, dtype: "f32", seed: 7, scale: 1 })]);
await dev.queue.onSubmittedWorkDone();
const out = createStorage(gpu, 4 * STREAM_WG * 65535, "out");

const probe = probeLayout(dev);
const bg = probe.bindGroup(src, out);

async function measure(unroll: number, groups: number): Promise<void> {
  // Completion is only seen on Deno's ≈ 10 ms poll: ≈ 0.25 s of work a timed submit.
  const ms = await msPerDispatch(gpu, probe.pipeline(streamKernel(unroll)), bg, groups, out, {
    targetMs: 250,
  });
  console.log(
    `unroll ${String(unroll).padStart(2)}, ${String(groups).padStart(6)} workgroups: ` +
      `${(BYTES / ms / 1e9).toFixed(2)} TB/s`,
  );
}

for (const unroll of [1, 2, 4, 8]) {
  for (const groups of [132 * 4, 132 * 8, 132 * 16, 132 * 64]) await measure(unroll, groups);
}
