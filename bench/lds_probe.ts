/**
 * Workgroup-memory load throughput by access pattern: how many shared loads a warp issues per
 * clock of an SM when its 32 lanes read 32, 16, 8, 4 or 1 distinct vec4 rows (the flash
 * attention's K rows are 8 distinct rows a warp, its Q and P rows 4), and vec2 / scalar loads for
 * comparison. Decides whether the attention kernel is bound by shared-memory wavefronts.
 * Each load feeds one add per component, so a pattern bound by the adds (4 SMSPs × one warp
 * instruction a clock) reads ≈ 1 vec4 load per SM clock; a pattern at 0.25 takes 4 wavefronts.
 *
 *   deno run -A --no-config --no-check bench/lds_probe.ts [--sms 132] [--ghz 1.98]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { msPerDispatch } from "./_timing.ts";

const flag = (name: string, dflt: number) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(Deno.args[i + 1]);
};
const SMS = flag("sms", 132), GHZ = flag("ghz", 1.98);
const gpu = await requestGpu();
const dev = gpu.device;
const WG = 256, GROUPS = 132 * 16, ITERS = 256, LOADS = 8;
const out = createStorage(gpu, 16 * WG * GROUPS, "out");

/** Loads per SM clock of a kernel whose threads each issue ITERS · LOADS loads of `type`. */
async function measure(label: string, type: string, row: string): Promise<void> {
  const comps = type === "f32" ? 1 : Number(type[3]);
  const zero = `${type}(0.0)`;
  const steps = Array.from({ length: LOADS }, (_, k) => `a${k % 4} += s[r][${k}u];`).join(" ");
  const code = `
@group(0) @binding(0) var<storage, read_write> o: array<${type}>;
// Rows of 9 (odd): lanes reading distinct rows hit distinct banks.
var<workgroup> s: array<array<${type}, 9>, 256>;
@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_index) lid: u32,
    @builtin(global_invocation_id) g: vec3u) {
  for (var i = lid; i < 256u * 9u; i += ${WG}u) { s[i / 9u][i % 9u] = ${type}(f32(i) * 1e-3); }
  workgroupBarrier();
  let lane = lid % 32u;
  let warp = lid / 32u;
  var a0 = ${zero}; var a1 = ${zero}; var a2 = ${zero}; var a3 = ${zero};
  for (var i = 0u; i < ${ITERS}u; i++) {
    let r = ((${row}) + warp * 32u + i * 7u) & 255u;
    ${steps}
  }
  o[g.x] = a0 + a1 + a2 + a3;
}`;
  const module = dev.createShaderModule({ code });
  const pipe = dev.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const bg = dev.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: out } }],
  });
  const ms = await msPerDispatch(gpu, pipe, bg, GROUPS, out, { targetMs: 200 });
  const warpLoads = GROUPS * (WG / 32) * ITERS * LOADS;
  const perClock = warpLoads / (ms * 1e-3) / (SMS * GHZ * 1e9);
  console.log(
    `${label.padEnd(40)} ${ms.toFixed(3).padStart(8)} ms  ${perClock.toFixed(3)} warp loads / SM clock` +
      `  (${comps} adds each)`,
  );
}

const patterns: [string, string][] = [
  ["32 rows (lane)", "lane"],
  ["16 rows (lane % 16)", "lane % 16u"],
  ["8 rows (lane % 8: K rows, blocked)", "lane % 8u"],
  ["8 rows (lane / 4)", "lane / 4u"],
  ["4 rows (lane / 8: Q / P rows, blocked)", "lane / 8u"],
  ["4 rows (lane % 4)", "lane % 4u"],
  ["2 rows (lane / 16)", "lane / 16u"],
  ["1 row (uniform)", "0u"],
];
for (const [label, row] of patterns) await measure(`vec4<f32> ${label}`, "vec4<f32>", row);
for (const [label, row] of patterns.filter((_, i) => i % 2 === 0 || i === 7)) {
  await measure(`vec2<f32> ${label}`, "vec2<f32>", row);
  await measure(`f32 ${label}`, "f32", row);
}
