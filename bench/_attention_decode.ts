/**
 * Decode-attention micro-benchmark (kernels/attention_decode.ts) at the decoder shapes (2B, 7B, 72B)
 * over context lengths, with seeded inputs made on the GPU. Time per call = (t(2R) − t(R)) / R
 * over R chained calls in one compute pass (bench/_timing.ts: no submit or readback in it), so a
 * call's time includes the dispatch floor printed last. Each case's output is then checked
 * against src/ref/attention.ts (f64): a fast wrong kernel cannot pass unnoticed.
 *
 *   deno run -A bench/_attention_decode.ts [--ctx 600,4096] [--sweep 0|1] [--tunings JSON] [--reps R]
 *     [--kv f32,f16] [--shapes 2B,7B,72B] [--out file.jsonl]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { checkKvDType, kvElementBytes } from "../kernels/kv_cache.ts";
import { cacheArray, cacheValues } from "../src/ref/kv_cache.ts";
import { fill } from "../kernels/fill.ts";
import {
  decodeAttention,
  decodeAttentionScratchBytes,
  type DecodeAttentionShape,
} from "../kernels/attention_decode.ts";
import { createDecodeState, writeDecodeState } from "../kernels/state.ts";
import type { Dispatch } from "../kernels/_kernel.ts";
import { attention as attentionRef } from "../src/ref/attention.ts";
import { msPerCall, randomF32 } from "./_timing.ts";

const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const contexts = opt("--ctx", "600,4096").split(",").map(Number);
const outFile = opt("--out", "");
const repsOverride = Number(opt("--reps", "0"));
/** The KV cache types to run (each case against the reference on what that cache holds). */
const kvTypes = opt("--kv", "f32").split(",").map((x) => checkKvDType(x, "--kv") ?? "f32");
/**
 * --sweep 1: the default against other merge batches, split counts and chunks; --tunings JSON
 * (a list of DecodeAttentionShape fields, {} the default) times those instead, in that order.
 */
const tuningsOpt = opt("--tunings", "");
const TUNINGS: Partial<DecodeAttentionShape>[] = tuningsOpt
  ? JSON.parse(tuningsOpt)
  : opt("--sweep", "1") !== "0"
  ? [
    {},
    { mergeBatch: 16 },
    { mergeBatch: 16, splits: 64 },
    { mergeBatch: 4 },
    { splits: 4 },
    { splits: 8 },
    { splits: 16 },
    { splits: 24 },
    { splits: 48 },
    { chunk: 16 },
    {},
  ]
  : [{}];
const ALL_SHAPES = [
  ["2B", { heads: 12, kvHeads: 2, headDim: 128 }],
  ["7B", { heads: 28, kvHeads: 4, headDim: 128 }],
  ["72B", { heads: 64, kvHeads: 8, headDim: 128 }],
] as const;
/** --shapes 2B,7B,72B: the decoder shapes to time (default 7B and 72B). */
const shapeNames = opt("--shapes", "7B,72B").split(",");
const SHAPES = ALL_SHAPES.filter(([name]) => shapeNames.includes(name));
if (SHAPES.length !== shapeNames.length) {
  throw new Error(`--shapes: ${shapeNames} names one not in ${ALL_SHAPES.map(([n]) => n)}`);
}

const gpu = await requestGpu();
console.log(`adapter: ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.description}`);
const lines: string[] = [];
let failures = 0;

function timeIt(ds: Dispatch[], probe: GPUBuffer): Promise<number> {
  return msPerCall(gpu, ds, probe, { minReps: 200, reps: repsOverride || undefined });
}

const randomBuffer = (n: number, seed: number, label: string) => randomF32(gpu, n, seed, label);

const maxTokens = Math.max(...contexts);
const state = createDecodeState(gpu);
for (const [name, s] of SHAPES) {
  const stride = (s.heads + 2 * s.kvHeads) * s.headDim, kvWidth = s.kvHeads * s.headDim;
  const width = s.heads * s.headDim;
  const qkv = randomBuffer(stride, 31, "qkv");
  const kc32 = randomBuffer(maxTokens * kvWidth, 32, "k");
  const vc32 = randomBuffer(maxTokens * kvWidth, 33, "v");
  const out = createStorage(gpu, width * 4, "out");
  const [q, k32, v32] = await Promise.all([
    readF32(gpu, qkv, width),
    readF32(gpu, kc32),
    readF32(gpu, vc32),
  ]);
  for (const kv of kvTypes) {
    const [k, v] = [k32, v32].map((a) => cacheValues(a, kv));
    const kc = kv === "f16" ? uploadArray(gpu, cacheArray(k, kv), "k16") : kc32;
    const vc = kv === "f16" ? uploadArray(gpu, cacheArray(v, kv), "v16") : vc32;
    for (const tuning of TUNINGS) {
      const shape: DecodeAttentionShape = { ...s, maxTokens, ...tuning };
      const scratch = createStorage(gpu, decodeAttentionScratchBytes(shape), "scratch");
      const ds = decodeAttention(
        gpu,
        out,
        { buffer: qkv, stride },
        { buffer: kc, dtype: kv },
        { buffer: vc, dtype: kv },
        state,
        scratch,
        shape,
      );
      for (const ctx of contexts) {
        writeDecodeState(gpu, state, { cacheLen: ctx - 1, position: ctx - 1, step: 0 });
        const ms = await timeIt(ds, out);
        const want = attentionRef(q, k.subarray(0, ctx * kvWidth), v.subarray(0, ctx * kvWidth), {
          ...s,
          seq: 1,
          offset: ctx - 1,
        });
        const got = await readF32(gpu, out);
        let err = 0;
        for (let i = 0; i < width; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
        // Inputs are uniform in [-1, 1): outputs are O(0.1–1); f32 accumulation stays near 1e-6.
        if (!(err <= 1e-5)) failures++;
        const bytes = 2 * ctx * kvWidth * kvElementBytes(kv);
        const rec = {
          kind: "decode",
          case: `${name} ${kv} ctx ${ctx} ${JSON.stringify(tuning)}`,
          kv,
          ctx,
          ...s,
          tuning,
          us: +(ms * 1000).toFixed(2),
          kv_tb_s: +(bytes / ms / 1e9).toFixed(3),
          max_err: err,
        };
        lines.push(JSON.stringify(rec));
        console.log(
          `${rec.case.padEnd(44)} ${rec.us.toFixed(1).padStart(8)} µs  K/V ${
            rec.kv_tb_s.toFixed(2).padStart(5)
          } TB/s  err ${err.toExponential(1)}${err <= 1e-5 ? "" : "  WRONG"}`,
        );
      }
      scratch.destroy();
      ds.forEach((d) => d.destroy());
    }
    if (kv === "f16") [kc, vc].forEach((b) => b.destroy());
  }
  [qkv, kc32, vc32, out].forEach((b) => b.destroy());
}
// The floor any decode kernel pays in such a chain: a one-workgroup dispatch writing 16 bytes.
const tiny = createStorage(gpu, 16, "tiny");
const floorMs = await timeIt(
  [fill(gpu, tiny, { count: 4, dtype: "f32", seed: 1, scale: 1 })],
  tiny,
);
console.log(
  `${"dispatch floor (fill of 4 f32)".padEnd(44)} ${(floorMs * 1000).toFixed(1).padStart(8)} µs`,
);
lines.push(JSON.stringify({ kind: "floor", us: +(floorMs * 1000).toFixed(2) }));
tiny.destroy();
state.destroy();

if (outFile) await Deno.writeTextFile(outFile, lines.join("\n") + "\n");
if (failures) {
  console.log(`${failures} cases WRONG`);
  Deno.exit(1);
}
