/**
 * What the decode GEMVs' access pattern costs in reads alone: QVQ-72B's q4 weight codes (rows of
 * k / 2 bytes) read by kernels that only load and XOR them, (a) the rows' vec4 grid-strided
 * (bench/read_probe.ts's pattern: every warp's loads contiguous) and (b) as kernels/linear_q.wgsl's
 * GEMV walks them: TPR threads a row group of ROWS rows, thread t taking vec4 t, t + TPR, … of
 * each row, U of them a loop iteration. Each shape is a chain of distinct copies (nothing stays
 * in L2), times per call, TB/s of the codes. Against bench/_gemv.ts's GEMV times, this says how
 * much of a GEMV's time is its loads' pattern and how much the rest of it.
 *
 *   deno run -A --no-config --no-check bench/_read_pattern.ts [--shapes gate_up,down,o,qkv]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { fill } from "../kernels/fill.ts";
import { run } from "../kernels/_kernel.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { msPerRep } from "./_timing.ts";
import { probeLayout, STREAM_WG, streamKernel } from "./_stream.ts";

const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
// name: [rows, k]: q4 codes are k / 2 bytes a row.
const SHAPES: Record<string, [number, number]> = {
  gate_up: [59136, 8192],
  down: [8192, 29568],
  o: [8192, 8192],
  qkv: [10240, 8192],
};
// [tpr, rows, units an iteration]: the shipped tunings (kernels/linear_q.ts gemvQTuning) first.
const PATTERNS: Record<string, [number, number, number][]> = {
  gate_up: [[16, 1, 2], [8, 2, 2], [32, 1, 2], [16, 1, 4], [16, 2, 2], [64, 1, 2]],
  down: [[32, 1, 2], [32, 1, 4], [64, 1, 2], [16, 1, 2], [128, 1, 2]],
  o: [[32, 1, 2], [16, 1, 4], [32, 2, 2], [64, 1, 2], [16, 1, 2]],
  qkv: [[32, 2, 2], [32, 1, 2], [16, 1, 4], [64, 1, 2]],
};
const WG = STREAM_WG;
const gpu = await requestGpu();
const dev = gpu.device;
const out = createStorage(gpu, 4 * WG * 65535, "out");
const probe = probeLayout(dev);

/** (b): the GEMV's walk over `rows` rows of `units` vec4. */
function gemvKernel(units: number, rows: number, tpr: number, rpg: number, u: number): string {
  const loads: string[] = [];
  for (let r = 0; r < rpg; r++) {
    for (let i = 0; i < u; i++) {
      loads.push(
        `let v${r}_${i} = src[(row0 + ${r}u) * UNITS + min(j + ${i * tpr}u, UNITS - 1u)];`,
      );
    }
  }
  const names = loads.map((l) => l.split(" ")[1]);
  return `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
const UNITS: u32 = ${units}u;
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wid: vec3u,
    @builtin(local_invocation_index) lid: u32) {
  let t = lid % ${tpr}u;
  let row0 = (wid.x * ${WG / tpr}u + lid / ${tpr}u) * ${rpg}u;
  var acc = vec4<u32>(0u);
  if (row0 < ${rows}u) {
    for (var j = t; j < UNITS; j += ${tpr * u}u) {
      ${loads.join("\n      ")}
      acc ^= ${names.join(" ^ ")};
    }
  }
  o[wid.x * ${WG}u + lid] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}`;
}

for (const name of opt("--shapes", "gate_up,down,o,qkv").split(",")) {
  const [rows, k] = SHAPES[name];
  const bytes = rows * k / 2, units = k / 32;
  // Copies enough that a chain reads ≥ 512 MB (the L2 holds 50 MB).
  const copies = Math.max(2, Math.ceil(512e6 / bytes));
  const bufs = Array.from({ length: copies }, (_, i) => {
    const b = dev.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
    run(gpu, [fill(gpu, b, { count: bytes / 4, dtype: "f32", seed: 7 + i, scale: 1 })]);
    return b;
  });
  const groups = bufs.map((b) => probe.bindGroup(b, out));
  const time = async (pipe: GPUComputePipeline, wgs: number) => {
    const ms = await msPerRep(
      gpu,
      (rep, pass) => {
        pass.setPipeline(pipe);
        pass.setBindGroup(0, groups[rep % copies]);
        pass.dispatchWorkgroups(wgs);
      },
      out,
      { targetMs: 100 },
    );
    return `${(ms * 1e3).toFixed(1).padStart(6)} µs ${(bytes / ms / 1e9).toFixed(2)} TB/s`;
  };
  for (const [tpr, rpg, u] of PATTERNS[name]) {
    const wgs = Math.ceil(rows / (WG / tpr * rpg));
    const gemv = await time(probe.pipeline(gemvKernel(units, rows, tpr, rpg, u)), wgs);
    const flat = await time(probe.pipeline(streamKernel(rpg * u)), wgs);
    console.log(
      `${name.padEnd(8)} ${(bytes / 1e6).toFixed(1)} MB tpr ${tpr} rows ${rpg} units ${u} ` +
        `(${wgs} workgroups): gemv walk ${gemv} | flat ${flat}`,
    );
  }
  bufs.forEach((b) => b.destroy());
}
gpu.destroy();
