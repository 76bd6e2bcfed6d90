/**
 * GEMM micro-benchmark (m > 1 linear): the vision tower's, the 7B prefill's and the 72B prefill's
 * matmul shapes, for each weight dtype in --dtypes (f16 / q8 / q4, seeded on the GPU) and each
 * kernel variant in --variants that applies to it. Each shape runs R and 2R times in one compute
 * pass (alternating between distinct weight copies so nothing stays in L2); time per call =
 * the median of three (t(2R) − t(R)) / R (bench/_timing.ts), which drops the submit and readback. Every variant's output is
 * checked against the first variant's on each shape (max |Δ| / max |y|: for gemmq against linear,
 * the cost of quantizing x to int8).
 *
 *   deno run -A bench/_gemm.ts [--dtypes f16,q8,q4] [--variants linear,gemmq,gemmq:8x2x2x2]
 *     [--shapes vision,7b,72b] [--labels qkv,fc1] [--ms 256,700 [--only-ms]] [--target-ms 60] [--out file.jsonl] [--small]
 * Variants: linear (linear() as callers get it: f16 the row GEMV over all rows of x at m ≤
 * GEMV_XROWS_MAX, else the pipelined tile, maybe split, by gemmKernel(); q8 linear_q's
 * dequantize + GEMM; q4 gemmQ, kernels/linear_q.ts PREFILL_INT8), tiled (f16: linear() with
 * gemvXRows false), xrows[-rN][-uN][-wN] (f16: the row GEMV over m rows with that many weight
 * rows a workgroup, units a step, threads),
 * tile4 / tile8 (f16: linear()'s tile override), pipe[-sN][-half][-noload] (f16: the pipelined
 * tile; sN: split k N ways; half: 64 × 128 tiles; noload: no global loads after the first k step
 * — wrong results, its err column shows by how much — to time the loop without memory), gemmq (q8/q4: kernels/gemm.ts
 * gemmQ() with its default tuning and split, kernels/gemm.ts gemmQChoice), gemmq1 (the default
 * tiling single-buffered), gemmq:TDxRMxRNxG or gemmq:RMxRNxG (that tuning; td 16), -sN after it:
 * k split N ways (e.g. gemmq:1x2x2-s4, the wide pipelined tiling in four), -narrow: q4's 32 × 256
 * tiles (gemmq:1x2x2-narrow-s2). --small shrinks every dimension 16×
 * (k to a multiple of 32; a smoke test for lavapipe).
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage, readF32 } from "../src/gpu/buffers.ts";
import { destroyWeight, type Weight } from "../src/gpu/tensor.ts";
import { fill } from "../kernels/fill.ts";
import { linear, type LinearTuning } from "../kernels/linear.ts";
import { gemmQ, type GemmQTuning } from "../kernels/gemm.ts";
import { type BufferArg, type Dispatch, run } from "../kernels/_kernel.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { msPerRep, randomWeight } from "./_timing.ts";

const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const small = args.includes("--small");
const targetMs = Number(opt("--target-ms", "60"));
const out = opt("--out", "");
const variantNames = opt("--variants", "linear,gemmq").split(",");
const dtypes = opt("--dtypes", "f16,q8,q4").split(",") as ("f16" | "q8" | "q4")[];
const groups = opt("--shapes", "vision,7b,72b").split(",");
// --labels qkv,fc1: only those layers of the chosen groups.
const labels = opt("--labels", "").split(",").filter((v) => v !== "");

type Make = (gpu: Gpu, y: BufferArg, x: BufferArg, w: Weight, m: number) => Dispatch[];
/** The variant `name` for weights of `dtype`, or null where it does not apply. */
function variantOf(name: string, dtype: string): Make | null {
  const q = dtype !== "f16";
  if (name === "linear") return (gpu, y, x, w, m) => linear(gpu, y, x, w, null, { m });
  if (name === "tiled") {
    // linear()'s tiled choice where a few rows would take the row GEMV (XROWS).
    return q ? null : (gpu, y, x, w, m) => linear(gpu, y, x, w, null, { m }, { gemvXRows: false });
  }
  if (name.startsWith("xrows")) {
    // xrows[-rN][-uN][-wN]: the row GEMV over m rows of x with N weight rows a workgroup, N units
    // a step written out, N threads.
    const t: Partial<LinearTuning> = {};
    for (const o of name.split("-").slice(1)) {
      const v = Number(o.slice(1));
      if (o[0] === "r") t.gemvRows = v;
      else if (o[0] === "u") t.gemvUnroll = v;
      else if (o[0] === "w") t.gemvWg = v;
      else throw new Error(`unknown xrows option ${o} in ${name}`);
    }
    return q ? null : (gpu, y, x, w, m) => linear(gpu, y, x, w, null, { m }, t);
  }
  if (name === "tile4" || name === "tile8") {
    const tile = name === "tile4" ? 4 : 8;
    return q ? null : (gpu, y, x, w, m) => linear(gpu, y, x, w, null, { m }, { tile });
  }
  if (name.startsWith("pipe")) {
    // pipe[-sN][-half][-noload]: the pipelined tile, split k N ways, 64 × 128, without global
    // loads.
    const o = name.split("-").slice(1);
    const split = o.find((s) => /^s\d+$/.test(s));
    if (o.some((s) => s !== "noload" && s !== "half" && s !== split)) {
      throw new Error(`unknown pipe option in ${name}`);
    }
    const tuning: Partial<LinearTuning> = {
      pipe: true,
      half: o.includes("half"),
      noLoad: o.includes("noload"),
      splitK: split ? Number(split.slice(1)) : 1,
    };
    return q ? null : (gpu, y, x, w, m) => linear(gpu, y, x, w, null, { m }, tuning);
  }
  if (name === "gemmq1") {
    return q ? (gpu, y, x, w, m) => gemmQ(gpu, y, x, w, null, { m }, { pipe: false }) : null;
  }
  if (name === "gemmq" || name.startsWith("gemmq:")) {
    // RMxRNxG (16² threads) or TDxRMxRNxG, then -sN: k split N ways (pipelined tilings), and
    // -narrow: q4's 32 × 256 tiles (at 1x2x2).
    const [shape, ...opts] = name.split("-");
    const n = shape.slice(6).split("x").map(Number);
    const [td, rm, rn, g] = n.length === 3 ? [16, ...n] : n;
    const t = (shape === "gemmq" ? {} : { td, rm, rn, g }) as Partial<GemmQTuning>;
    for (const o of opts) {
      if (/^s\d+$/.test(o)) t.splitK = Number(o.slice(1));
      else if (o === "narrow") t.narrow = true;
      else throw new Error(`unknown gemmq option ${o} in ${name}`);
    }
    if (t.narrow && dtype !== "q4") return null;
    return q ? (gpu, y, x, w, m) => gemmQ(gpu, y, x, w, null, { m }, t) : null;
  }
  throw new Error(
    `unknown variant ${name}; known: linear, tile4, tile8, pipe[-sN][-half][-noload], ` +
      "gemmq, gemmq1, gemmq:[TDx]RMxRNxG[-sN][-narrow]",
  );
}

// [group, label, m, k, n]
const SHAPES: [string, string, number, number, number][] = [];
// --ms adds prompt / patch counts to the vision, 7B and 72B shapes (wave-quantization checks).
// --only-ms: those alone.
const extraMs = opt("--ms", "").split(",").filter((v) => v !== "").map(Number);
const onlyMs = args.includes("--only-ms");
for (const m of onlyMs ? extraMs : [5120, 1564, ...extraMs]) {
  SHAPES.push(
    ["vision", "qkv", m, 1280, 3840],
    ["vision", "proj", m, 1280, 1280],
    ["vision", "fc1", m, 1280, 5120],
    ["vision", "fc2", m, 5120, 1280],
  );
}
for (const m of onlyMs ? extraMs : [478, 1024, ...extraMs]) {
  SHAPES.push(
    ["7b", "qkv", m, 3584, 4608],
    ["7b", "o", m, 3584, 3584],
    ["7b", "gate_up", m, 3584, 37888],
    ["7b", "down", m, 18944, 3584],
  );
}
for (const m of onlyMs ? extraMs : [478, ...extraMs]) {
  SHAPES.push(
    ["72b", "qkv", m, 8192, 10240],
    ["72b", "o", m, 8192, 8192],
    ["72b", "gate_up", m, 8192, 59136],
    ["72b", "down", m, 29568, 8192],
  );
}

const gpu = await requestGpu();
console.log(`${gpu.adapterInfo.vendor} ${gpu.adapterInfo.architecture} ${gpu.adapterInfo.device}`);
const lines: string[] = [];
const div = small ? 16 : 1;
for (const dtype of dtypes) {
  for (const [group, label, m0, k0, n0] of SHAPES) {
    if (!groups.includes(group) || (labels.length && !labels.includes(label))) continue;
    const [m, k, n] = [Math.ceil(m0 / div), Math.ceil(k0 / div / 32) * 32, Math.ceil(n0 / div)];
    const names = variantNames.filter((v) => variantOf(v, dtype));
    const flop = 2 * m * n * k;
    // Distinct weight copies (≥ 128 MB in all, at most 4) so successive calls miss L2.
    const copies = Math.min(4, Math.max(1, Math.ceil(128e6 / (n * k * 2))));
    const ws: Weight[] = [];
    for (let c = 0; c < copies; c++) {
      ws.push(randomWeight(gpu, n, k, dtype as Weight["dtype"], 10 + c, 1 / Math.sqrt(k)));
    }
    const x = createStorage(gpu, m * k * 4, "x"), y = createStorage(gpu, m * n * 4, "y");
    run(gpu, [fill(gpu, x, { count: m * k, dtype: "f32", seed: 1, scale: 1 })]);
    const reps = small ? 2 : Math.min(200, Math.max(2, Math.round(targetMs * 1e-3 * 20e12 / flop)));
    let ref: Float32Array | undefined;
    for (const name of names) {
      const ds = ws.map((w) => variantOf(name, dtype)!(gpu, y, x, w, m));
      // Correctness: one call on copy 0, compared with the first variant's output.
      run(gpu, ds[0]);
      const got = await readF32(gpu, y);
      let err = 0;
      if (ref) {
        let maxY = 0, maxD = 0;
        for (let i = 0; i < got.length; i++) {
          maxY = Math.max(maxY, Math.abs(ref[i]));
          maxD = Math.max(maxD, Math.abs(got[i] - ref[i]));
        }
        err = maxD / maxY;
      } else ref = got;
      // Call i uses weight copy i % copies, so successive calls read from memory, not L2.
      const ms = await msPerRep(
        gpu,
        (i, pass) => ds[i % copies].forEach((d) => d.encode(pass)),
        y,
        {
          reps,
        },
      );
      const rec = { dtype, group, label, m, k, n, variant: name, ms, tflops: flop / ms / 1e9, err };
      lines.push(JSON.stringify(rec));
      console.log(
        `${dtype} ${group} ${label} m=${m} k=${k} n=${n} ${name}: ${ms.toFixed(3)} ms ${
          (flop / ms / 1e9).toFixed(1)
        } TFLOP/s err ${err.toExponential(1)}`,
      );
      ds.flat().forEach((d) => d.destroy());
    }
    ws.forEach(destroyWeight);
    x.destroy();
    y.destroy();
  }
}
if (out) await Deno.writeTextFile(out, lines.join("\n") + "\n");
