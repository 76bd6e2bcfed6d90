/**
 * Resident-x GEMV probe (kernels/gemv.ts: x held in registers for the dispatch, batches of rows
 * over a strided grid) against the shipped GEMVs at the 7B / QVQ-72B decode shapes, m = 1, each
 * shape a chain of distinct weights (nothing stays in L2). f16 and q8 run kernels/gemv.ts under
 * swept tunings (units a thread, rows a batch, workgroups per SM); q4 runs a raw resident-x kernel
 * written here (int8 x quantized per thread, linear_q.wgsl's bits), which lost to the shipped
 * prepared-x GEMV everywhere it was measured (H200 2026-11-28: 7B gate_up 45.7 against 34.5 µs,
 * 72B gate_up 96.4 against 78.0) and so has no kernel of its own. Each probe's y is checked
 * against the shipped GEMV's.
 * --mlp L: the 7B f16 MLP of L layers as decode runs it (linear()'s norm-GEMV and silu-GEMV,
 * then a norm pass + plain GEMVs + a silu pass, then gate_up on gemvResident + a plain down),
 * interleaved.
 *
 *   deno run -A --no-config --no-check bench/gemv_probe.ts [--dtypes f16,q8,q4] [--model 7b|72b]
 *     [--shapes gate_up,down,o,qkv] [--rows 4,8] [--per-sm 2,4,8] [--mlp 28 [--hi 3584,18944]]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage, readF32 } from "../src/gpu/buffers.ts";
import { DTYPE_BYTES, quantLayout, type Weight } from "../src/gpu/tensor.ts";
import { fill } from "../kernels/fill.ts";
import { linear, type LinearTuning, normLinear, siluMulLinear } from "../kernels/linear.ts";
import { gemvResident } from "../kernels/gemv.ts";
import { rmsNorm } from "../kernels/norm.ts";
import { siluMul } from "../kernels/elementwise.ts";
import { type Dispatch, run } from "../kernels/_kernel.ts";
import { msPerCall, randomWeight } from "./_timing.ts";

const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const gpu = await requestGpu();
const dev = gpu.device;
const sgMin = gpu.adapterInfo.subgroupMinSize ?? 4;
const SMS = Number(opt("--sms", "132"));
type DType = "f16" | "q8" | "q4";
// name: [n, k, distinct weights in the chain]
const SHAPES: Record<string, [number, number, number]> = {
  gate_up: [37888, 3584, 2],
  down: [3584, 18944, 2],
  o: [3584, 3584, 12],
  qkv: [4608, 3584, 10],
};
const SHAPES_72B: Record<string, [number, number, number]> = {
  gate_up: [59136, 8192, 2],
  down: [8192, 29568, 2],
  o: [8192, 8192, 4],
  qkv: [10240, 8192, 4],
};
const big = opt("--model", "7b") === "72b";
const shapes = opt("--shapes", "gate_up,down,o,qkv").split(",");
const dtypes = opt("--dtypes", "f16,q8,q4").split(",") as DType[];
/** Rows a batch of the resident-x probes. */
const rowsList = opt("--rows", "4,8").split(",").map(Number);
/** Workgroups per SM of the resident-x probes. */
const perSm = opt("--per-sm", "2,4,8").split(",").map(Number);
/** Elements in a 16-byte unit of a row. */
const UNIT: Record<DType, number> = { f16: 8, q8: 16, q4: 32 };

// q4 (kernels/linear_q.wgsl's format): a unit is one 32-element group, 16 bytes of codes and an
// f16 scale; each thread quantizes its own units of x to int8 once (linear_q.wgsl quant_vec's
// bits) and keeps them in registers.
function kernelQ4(k: number, sBase: number, u: number, r: number, t: number): string {
  const k32 = k / 32;
  const xs = Array.from({ length: u }, (_, j) =>
    `let ua${j} = min(lid + ${j * t}u, K32 - 1u);\n` +
    `  let x${j} = qx(ua${j}, lid + ${j * t}u < K32);`).join("\n  ");
  const loads = [], sums = [];
  for (let i = 0; i < r; i++) {
    loads.push(`let rw${i} = min(row0 + ${i}u, p_n - 1u) * K32;`);
    for (let j = 0; j < u; j++) {
      loads.push(`let q${i}_${j} = w[rw${i} + ua${j}];`);
      loads.push(`let sw${i}_${j} = S_BASE + ((rw${i} + ua${j}) >> 1u);`);
      loads.push(
        `let d${i}_${j} = unpack2x16float(w[sw${i}_${j} >> 2u][sw${i}_${j} & 3u])[(rw${i} + ua${j}) & 1u];`,
      );
    }
  }
  for (let i = 0; i < r; i++) {
    const terms = Array.from(
      { length: u },
      (_, j) => `d${i}_${j} * x${j}.s.x * bd(q${i}_${j}, x${j})`,
    )
      .join(" + ");
    sums.push(`let s${i} = subgroupAdd(${terms});`);
    sums.push(`if (lane == 0u) { red[par * NW + sg][${i}] = s${i}; }`);
  }
  return `
@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;   // codes (n, k / 32) vec4, then f16 scales
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // (k / 4) f32
@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // (n) f32
const K32: u32 = ${k32}u;
const S_BASE: u32 = ${sBase}u;
const T: u32 = ${t}u;
const R: u32 = ${r}u;
const NW: u32 = ${Math.ceil(t / sgMin)}u;
const p_n: u32 = {{N}}u;
var<workgroup> red: array<array<f32, R>, 2u * NW>;
struct QX { c0: vec4<u32>, c1: vec4<u32>, s: vec2<f32> }
fn qx(b: u32, ok: bool) -> QX {
  var v: array<vec4<f32>, 8>;
  var amax = 0.0;
  for (var i = 0u; i < 8u; i++) {
    v[i] = select(vec4<f32>(0.0), x[8u * b + i], ok);
    let a = abs(v[i]);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  let fe = frexp(amax);
  let e = max(select(fe.exp - 6, fe.exp - 7, fe.fract <= 0.9921875), -120);
  let inv = ldexp(1.0, -e);
  var words: array<u32, 8>;
  var sum = 0;
  for (var i = 0u; i < 8u; i++) {
    let c = vec4<i32>(round(v[i] * inv));
    sum += c.x + c.y + c.z + c.w;
    words[i] = pack4xI8(c);
  }
  return QX(vec4<u32>(words[0], words[1], words[2], words[3]),
    vec4<u32>(words[4], words[5], words[6], words[7]), vec2<f32>(ldexp(1.0, e), f32(sum)));
}
fn bd(q: vec4<u32>, xq: QX) -> f32 {
  let m = 0x0f0f0f0fu;
  let a = xq.c0;
  let b = xq.c1;
  let d = dot4I8Packed(q.x & m, a.x) + dot4I8Packed((q.x >> 4u) & m, a.y) +
    dot4I8Packed(q.y & m, a.z) + dot4I8Packed((q.y >> 4u) & m, a.w) +
    dot4I8Packed(q.z & m, b.x) + dot4I8Packed((q.z >> 4u) & m, b.y) +
    dot4I8Packed(q.w & m, b.z) + dot4I8Packed((q.w >> 4u) & m, b.w);
  return f32(d) - 8.0 * xq.s.y;
}
@compute @workgroup_size(T)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>,
    @builtin(local_invocation_index) lid: u32, @builtin(subgroup_size) sgs: u32,
    @builtin(subgroup_invocation_id) lane: u32) {
  ${xs}
  let sg = lid / sgs;
  let nw = (T + sgs - 1u) / sgs;
  var par = 0u;
  for (var b = wid.x; b * R < p_n; b += ng.x) {
    let row0 = b * R;
    ${loads.join("\n    ")}
    ${sums.join("\n    ")}
    workgroupBarrier();
    if (lid < R && row0 + lid < p_n) {
      var acc = 0.0;
      for (var i = 0u; i < nw; i++) { acc += red[par * NW + i][lid]; }
      y[row0 + lid] = acc;
    }
    par ^= 1u;
  }
}`;
}

/** The raw q4 kernel's dispatch over each weight (chained; a validation error throws). */
async function q4Dispatches(
  ws: Weight[],
  x: GPUBuffer,
  y: GPUBuffer,
  u: number,
  r: number,
  groups: number,
): Promise<Dispatch[]> {
  const { rows: n, cols: k } = ws[0];
  const t = Math.ceil(k / 32 / u / 32) * 32;
  const code = kernelQ4(k, quantLayout(n, k, "q4").scalesOffset / 4, u, r, t)
    .replace("{{N}}", String(n));
  const module = dev.createShaderModule({ code });
  dev.pushErrorScope("validation");
  const pipe = dev.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const err = await dev.popErrorScope();
  if (err) throw new Error(err.message);
  return ws.map((wt) => {
    const bg = dev.createBindGroup({
      layout: pipe.getBindGroupLayout(0),
      entries: [wt.chunks[0].buffer, x, y].map((buffer, binding) => ({
        binding,
        resource: { buffer },
      })),
    });
    return {
      encode(pass: GPUComputePassEncoder) {
        pass.setPipeline(pipe);
        pass.setBindGroup(0, bg);
        pass.dispatchWorkgroups(Math.min(groups, Math.ceil(n / r)));
      },
    } as unknown as Dispatch;
  });
}

function time(ds: Dispatch[], y: GPUBuffer): Promise<number> {
  return msPerCall(gpu, ds, y, { targetMs: 30, maxReps: 400 });
}

/** --mlp: the 7B (--hi H,I) f16 MLP of `layers` layers, three ways, interleaved twice. */
async function mlp(layers: number): Promise<void> {
  const [H, I] = opt("--hi", "3584,18944").split(",").map(Number);
  const gu = Array.from(
    { length: layers },
    (_, i) => randomWeight(gpu, 2 * I, H, "f16", 100 + i, 0.03),
  );
  const dn = Array.from(
    { length: layers },
    (_, i) => randomWeight(gpu, H, I, "f16", 200 + i, 0.03),
  );
  const x = createStorage(gpu, H * 4, "x"), h = createStorage(gpu, H * 4, "h");
  const nw = createStorage(gpu, H * 4, "nw"), g = createStorage(gpu, 2 * I * 4, "gu");
  const act = createStorage(gpu, I * 4, "act");
  run(gpu, [
    fill(gpu, x, { count: H, dtype: "f32", seed: 3, scale: 1 }),
    fill(gpu, nw, { count: H, dtype: "f32", seed: 4, scale: 1 }),
  ]);
  const norm = { weight: nw, eps: 1e-6 };
  const fused = gu.flatMap((w, l) => [
    ...normLinear(gpu, g, x, h, nw, w, null, { m: 1, eps: 1e-6 }),
    ...siluMulLinear(gpu, x, g, act, dn[l], null, { m: 1, accumulate: true }),
  ]);
  const split = gu.flatMap((w, l) => [
    rmsNorm(gpu, h, x, nw, { rows: 1, cols: H, eps: 1e-6 }),
    ...linear(gpu, g, h, w, null, { m: 1 }),
    siluMul(gpu, act, g, { rows: 1, cols: I }),
    ...linear(gpu, x, act, dn[l], null, { m: 1, accumulate: true }),
  ]);
  const resident = gu.flatMap((w, l) => [
    gemvResident(gpu, act, x, w, { norm, siluMul: true }),
    ...linear(gpu, x, act, dn[l], null, { m: 1, accumulate: true }),
  ]);
  const bytes = layers * 3 * I * H * 2;
  for (let rep = 0; rep < 2; rep++) {
    for (
      const [label, ds] of [
        ["fused (linear())", fused],
        ["norm pass + plain + silu pass", split],
        ["gemvResident gate_up + plain down", resident],
      ] as const
    ) {
      const ms = await time(ds, x);
      console.log(
        `mlp ${label.padEnd(34)} ${(ms * 1000 / layers).toFixed(1)} µs a layer ` +
          `${(bytes / ms / 1e9).toFixed(2)} TB/s (${ds.length / layers} dispatches a layer)`,
      );
    }
  }
}

/** Every dtype × shape: the shipped GEMV, then the resident-x probes, each checked against it. */
async function shapesProbe(): Promise<void> {
  for (const dtype of dtypes) {
    for (const name of shapes) {
      const [n, k, copies] = (big ? SHAPES_72B : SHAPES)[name];
      const ws = Array.from(
        { length: copies },
        (_, i) => randomWeight(gpu, n, k, dtype, 11 + i, 0.03),
      );
      const x = createStorage(gpu, k * 4, "x"), y = createStorage(gpu, n * 4, "y");
      const yRef = createStorage(gpu, n * 4, "y_ref");
      run(gpu, [fill(gpu, x, { count: k, dtype: "f32", seed: 3, scale: 1 })]);
      const bytes = copies * n * k * DTYPE_BYTES[dtype];
      const report = (label: string, ms: number, err = "") =>
        console.log(
          `${dtype} ${name.padEnd(8)} ${label.padEnd(30)} ` +
            `${(ms * 1000 / copies).toFixed(1).padStart(7)} µs ${
              (bytes / ms / 1e9).toFixed(2)
            } TB/s ${err}`,
        );
      const tunings: [string, Partial<LinearTuning>][] = dtype === "f16"
        ? [["shipped plain", {}], ["shipped {64, 4, unroll 4}", {
          gemvWg: 64,
          gemvRows: 4,
          gemvUnroll: 4,
        }]]
        : [["shipped", {}]];
      for (const [label, tu] of tunings) {
        const per = ws.map((w) => linear(gpu, y, x, w, null, { m: 1 }, tu));
        report(`${label} (${per[0].length} pass)`, await time(per.flat(), y));
        // With a PREPX pass (q4): the GEMV alone too (the prepared x stays in its scratch), as the
        // decoder runs it with x emitted by the previous GEMV.
        if (per[0].length > 1) {
          report(
            `${label} GEMV alone`,
            await time(per.map((d) => d.at(-1)!), y),
          );
        }
      }
      run(gpu, linear(gpu, yRef, x, ws[copies - 1], null, { m: 1 }));
      const ref = await readF32(gpu, yRef, n);
      const units = k / UNIT[dtype];
      for (const u of units >= 1024 ? [2, 4, 8] : units >= 512 ? [1, 2, 4] : [1, 2]) {
        for (const r of rowsList) {
          for (const per of perSm) {
            let ms: number;
            try {
              const ds = dtype === "q4"
                ? await q4Dispatches(ws, x, y, u, r, SMS * per)
                : ws.map((w) =>
                  gemvResident(gpu, y, x, w, {}, {
                    maxThreads: Math.ceil(units / u / 32) * 32,
                    rows: r,
                    groups: SMS * per,
                  })
                );
              ms = await time(ds, y);
            } catch (e) {
              console.log(`${name} u${u} r${r} ${per}/SM: ${(e as Error).message.split("\n")[0]}`);
              continue;
            }
            const got = await readF32(gpu, y, n);
            let worst = 0, scale = 0;
            for (let i = 0; i < n; i++) {
              worst = Math.max(worst, Math.abs(got[i] - ref[i]));
              scale = Math.max(scale, Math.abs(ref[i]));
            }
            report(
              `resident-x u${u} r${r} ${per}/SM`,
              ms,
              `max|Δ| ${(worst / scale).toExponential(1)} of max|y|`,
            );
          }
        }
      }
      ws.forEach((w) => w.chunks.forEach((c) => c.buffer.destroy()));
      [x, y, yRef].forEach((b) => b.destroy());
    }
  }
}

if (args.includes("--mlp")) await mlp(Number(opt("--mlp", "28")));
else await shapesProbe();
