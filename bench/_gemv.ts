/**
 * Decode GEMV sweep: the 7B decoder's matrices (28 layers of qkv, o, gate_up, down + lm_head, each
 * its own weight so nothing stays in L2) in f16 / q8 / q4, as one compute pass, for each GEMV
 * tuning. Time per token = (t(2R) − t(R)) / R over R chained tokens, which drops the submit and
 * readback overheads. Prints a table and writes JSON lines (to --out, default stdout only).
 *
 *   deno run -A bench/_gemv.ts [--layers 28] [--out file.jsonl]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage, readF32 } from "../src/gpu/buffers.ts";
import { createWeight, destroyWeight, type QuantDType, type Weight } from "../src/gpu/tensor.ts";
import { fill, fillWeight } from "../kernels/fill.ts";
import { fillQuantRows, linearQ, type LinearQTuning } from "../kernels/linear_q.ts";
import { linear } from "../kernels/linear.ts";
import { type Dispatch, run } from "../kernels/_kernel.ts";

const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const layers = Number(opt("--layers", "28"));
const out = opt("--out", "");
const gpu = await requestGpu();
const H = 3584, I = 18944, QKV = 3584 + 1024, V = 152064;
const shapes: [string, number, number][] = [["qkv", QKV, H], ["o", H, H], ["gate_up", 2 * I, H], [
  "down",
  H,
  I,
]];

function make(rows: number, cols: number, dtype: "f16" | QuantDType, seed: number): Weight {
  const w = createWeight(gpu, rows, cols, dtype, `w${seed}`);
  if (dtype === "f16") run(gpu, fillWeight(gpu, w, { seed, scale: 0.03 }));
  else {
    fillQuantRows(
      gpu,
      w,
      (buf, row, len) =>
        fill(gpu, buf, { count: len * cols, dtype: "f16", seed, scale: 0.03, base: row * cols }),
    );
  }
  return w;
}

const x = createStorage(gpu, I * 4 * 2, "x"), y = createStorage(gpu, V * 4, "y");
run(gpu, [fill(gpu, x, { count: I * 2, dtype: "f32", seed: 1, scale: 1 })]);
const lines: string[] = [];
for (const dtype of ["f16", "q8", "q4"] as const) {
  const ws: Weight[] = [];
  for (let l = 0; l < layers; l++) {
    for (const [, n, k] of shapes) ws.push(make(n, k, dtype, ws.length + 1));
  }
  ws.push(make(V, H, dtype, 999));
  const bytes = ws.reduce(
    (a, w) => a + w.rows * w.cols * (dtype === "f16" ? 2 : dtype === "q8" ? 1.0625 : 0.5625),
    0,
  );
  const tunings: (Partial<LinearQTuning> | null)[] = dtype === "f16"
    ? [null]
    : [32, 64, 128, 256].flatMap((wg) => [1, 2, 4, 8].map((rows) => ({ wg, rows })));
  for (const t of tunings) {
    const ds: Dispatch[] = ws.flatMap((w) =>
      t ? linearQ(gpu, y, x, w, null, { m: 1 }, t) : linear(gpu, y, x, w, null, { m: 1 })
    );
    const time = async (reps: number) => {
      const t0 = performance.now();
      const enc = gpu.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (let r = 0; r < reps; r++) for (const d of ds) d.encode(pass);
      pass.end();
      gpu.device.queue.submit([enc.finish()]);
      await readF32(gpu, y, 1);
      return performance.now() - t0;
    };
    await time(2); // compile + warm
    const R = 10;
    const ms = ((await time(2 * R)) - (await time(R))) / R;
    const rec = {
      dtype,
      tuning: t,
      layers,
      dispatches: ds.length,
      gb: bytes / 1e9,
      ms_per_token: ms,
      tb_s: bytes / ms / 1e9,
    };
    lines.push(JSON.stringify(rec));
    console.log(
      `${dtype} ${JSON.stringify(t)}: ${ms.toFixed(3)} ms/token, ${
        (bytes / ms / 1e9).toFixed(2)
      } TB/s, ${(1000 / ms).toFixed(0)} tok/s (GEMVs only)`,
    );
    ds.forEach((d) => d.destroy());
  }
  ws.forEach(destroyWeight);
}
if (out) await Deno.writeTextFile(out, lines.join("\n") + "\n");
