/**
 * Memory read ceiling through this WebGPU: a kernel that only streams a buffer (vec4<u32> loads,
 * UNROLL independent loads in flight per thread, grid-strided, a sum per thread kept so the loads
 * stay) over 1 GiB, for several unroll depths and workgroup counts. The ceiling the decode GEMVs
 * (bench/_gemv.ts) are compared against.
 *
 *   deno run -A --no-config --no-check bench/read_probe.ts
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { fill } from "../kernels/fill.ts";
import { run } from "../kernels/_kernel.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { msPerDispatch } from "./_timing.ts";

const gpu = await requestGpu();
const dev = gpu.device;
const BYTES = 1 << 30, WG = 256;
const src = dev.createBuffer({ size: BYTES, usage: GPUBufferUsage.STORAGE });
// Random contents: an untouched (zero) buffer read back above the card's 4.8 TB/s on the H200
// (up to 6.4 at 17:11), the zeros presumably compressed.
run(gpu, [fill(gpu, src, { count: BYTES / 4, dtype: "f32", seed: 7, scale: 1 })]);
await dev.queue.onSubmittedWorkDone();
const out = createStorage(gpu, 4 * WG * 65535, "out");

function kernel(unroll: number): string {
  const loads = Array.from({ length: unroll }, (_, i) => `let v${i} = src[i + ${i}u * stride];`);
  const sum = Array.from({ length: unroll }, (_, i) => `v${i}`).join(" ^ ");
  return `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) g: vec3u,
    @builtin(num_workgroups) nw: vec3u) {
  let stride = nw.x * ${WG}u;
  let n = arrayLength(&src);
  var acc = vec4<u32>(0u);
  for (var i = g.x; i + ${unroll - 1}u * stride < n; i += ${unroll}u * stride) {
    ${loads.join("\n    ")}
    acc ^= ${sum};
  }
  o[g.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}`;
}

async function measure(unroll: number, groups: number): Promise<void> {
  const module = dev.createShaderModule({ code: kernel(unroll) });
  const layout = dev.createBindGroupLayout({
    entries: [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "read-only-storage" } },
      { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } },
    ],
  });
  const pipe = dev.createComputePipeline({
    layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: "main" },
  });
  const bg = dev.createBindGroup({
    layout,
    entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: out } }],
  });
  // Completion is only seen on Deno's ≈ 10 ms poll: ≈ 0.25 s of work a timed submit.
  const ms = await msPerDispatch(gpu, pipe, bg, groups, out, { targetMs: 250 });
  // The loop reads whole steps of unroll · stride vec4: the tail past the last one is left out.
  const step = unroll * groups * WG, read = Math.floor(BYTES / 16 / step) * step * 16;
  console.log(
    `unroll ${String(unroll).padStart(2)}, ${String(groups).padStart(6)} workgroups: ` +
      `${(read / ms / 1e9).toFixed(2)} TB/s (${(read / BYTES * 100).toFixed(0)} % read)`,
  );
}

for (const unroll of [1, 2, 4, 8]) {
  for (const groups of [132 * 4, 132 * 8, 132 * 16, 132 * 64]) await measure(unroll, groups);
}
