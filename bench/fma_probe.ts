/**
 * Arithmetic ceilings through this WebGPU: FMA throughput of f32 / f16 scalars and vectors with
 * CHAINS independent accumulators per thread, and dot4I8Packed. Decides whether packed f16 math
 * (2 FMAs per instruction on NVIDIA) or int8 dot products can lift the matmuls above f32 FMA.
 *
 *   deno run -A --no-config --no-check bench/fma_probe.ts
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { msPerDispatch } from "./_timing.ts";

const gpu = await requestGpu();
const dev = gpu.device;
const WG = 256, GROUPS = 132 * 64, ITERS = 512;
const out = createStorage(gpu, 4 * WG * GROUPS, "out");

/** FLOP/s (or OP/s) of a kernel whose loop body does `perIter` operations per thread. */
async function measure(label: string, body: string, perIter: number): Promise<void> {
  const module = dev.createShaderModule({ code: body });
  const pipe = dev.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const bg = dev.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: out } }],
  });
  const ms = await msPerDispatch(gpu, pipe, bg, GROUPS, out, { targetMs: 250 });
  const ops = GROUPS * WG * ITERS * perIter;
  console.log(`${label.padEnd(34)} ${(ops / ms / 1e9).toFixed(1)} T/s`);
}

function fmaKernel(type: string, lanes: number, chains: number, f16: boolean): string {
  const t = lanes === 1 ? type : `vec${lanes}<${type}>`;
  // Distinct lanes, all summed into the output: when only s.x was stored the compiler dropped the
  // other lanes (vec4 read up to 4× the card's f32 peak on the H200, 2026-11-28 10:29).
  const lane = lanes === 1
    ? ""
    : ` + ${t}(${
      [0, 1, 2, 3].slice(0, lanes).map((l) => `${type}(${l}.0)`).join(", ")
    }) * ${type}(0.01)`;
  const decl = Array.from(
    { length: chains },
    (_, i) => `var a${i} = ${t}(${type}(g.x + ${i}u) * ${type}(0.001))${lane};`,
  ).join("\n  ");
  const step = Array.from({ length: chains }, (_, i) => `a${i} = fma(a${i}, b, c);`).join(" ");
  const sum = Array.from({ length: chains }, (_, i) => `a${i}`).join(" + ");
  const red = lanes === 1 ? "f32(s)" : `dot(vec${lanes}<f32>(s), vec${lanes}<f32>(1.0))`;
  return `${f16 ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) g: vec3u) {
  let b = ${t}(${type}(0.999)); let c = ${t}(${type}(0.0001));
  ${decl}
  for (var i = 0u; i < ${ITERS}u; i++) { ${step} }
  let s = ${sum};
  o[g.x] = ${red};
}`;
}

for (const chains of [32, 64]) {
  await measure(`f32 scalar, ${chains} chains`, fmaKernel("f32", 1, chains, false), 2 * chains);
}
for (const chains of [4, 8, 16]) {
  await measure(`f32 scalar, ${chains} chains`, fmaKernel("f32", 1, chains, false), 2 * chains);
  await measure(`vec4<f32>, ${chains} chains`, fmaKernel("f32", 4, chains, false), 8 * chains);
  if (gpu.features.f16) {
    await measure(`vec2<f16>, ${chains} chains`, fmaKernel("f16", 2, chains, true), 4 * chains);
    await measure(`vec4<f16>, ${chains} chains`, fmaKernel("f16", 4, chains, true), 8 * chains);
  }
}
if (gpu.features.f16) {
  for (const chains of [32, 64]) {
    await measure(`vec2<f16>, ${chains} chains`, fmaKernel("f16", 2, chains, true), 4 * chains);
  }
}
for (const chains of [4, 8]) {
  const decl = Array.from({ length: chains }, (_, i) => `var a${i} = i32(g.x + ${i}u);`).join(
    "\n  ",
  );
  const step = Array.from({ length: chains }, (_, i) => `a${i} += dot4I8Packed(u32(a${i}) ^ k, k);`)
    .join(" ");
  const sum = Array.from({ length: chains }, (_, i) => `a${i}`).join(" + ");
  await measure(
    `dot4I8Packed, ${chains} chains (ops)`,
    `
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) g: vec3u) {
  let k = 0x01020304u * (g.x | 1u);
  ${decl}
  for (var i = 0u; i < ${ITERS}u; i++) { ${step} }
  o[g.x] = f32(${sum});
}`,
    8 * chains,
  );
}
