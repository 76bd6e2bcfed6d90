import assert from "node:assert/strict";
import { sharedGpu } from "../gpu/device.ts";
import { readF32 } from "../gpu/buffers.ts";
import { MemoryModelSource } from "../model_files.ts";
import { writeSafetensors } from "../safetensors.ts";
import { fillValues } from "../ref/fill.ts";
import { assertClose } from "../ref/_random.ts";
import { Qwen2VLModel } from "./qwen2vl.ts";
import { PRESETS } from "./presets.ts";
import { syntheticModel, syntheticPlan } from "./synthetic.ts";
import { checkpointTensors } from "./_sparse.ts";
import { TINY_DIR } from "./_fixture.ts";

const tinyConfig = JSON.parse(await Deno.readTextFile(`${TINY_DIR}config.json`));
const PROMPT = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872];

/** Prefill logits of the last position. */
async function lastLogits(model: Qwen2VLModel): Promise<Float32Array> {
  const s = model.createSession(64);
  await model.prefill(s, PROMPT);
  const out = await readF32(model.gpu, s.logits, model.config.text.vocabSize);
  s.dispose();
  return out;
}

Deno.test("syntheticModel() equals loading a checkpoint that holds its seeded values", async () => {
  const gpu = await sharedGpu();
  const synth = await syntheticModel(tinyConfig, { gpu, dtype: "f32", seed: 42, maxContext: 64 });
  // The same values, computed on the CPU by src/ref/fill.ts, written as an f32 checkpoint: each
  // planned tensor's sources are consecutive row ranges of its seeded matrix.
  const tensors: Parameters<typeof writeSafetensors>[0] = {};
  const shapes = new Map(checkpointTensors(synth.config, "legacy").map((t) => [t.name, t.shape]));
  for (const pt of synth.plan.tensors.values()) {
    const seed = seedOf(pt.key, 42);
    const norm = /norm|ln_q/.test(pt.key) && !pt.key.endsWith(".bias");
    const vals = pt.kind === "vector"
      ? fillValues(pt.rows, seed, norm ? 0.1 : 0.02, norm ? 1 : 0)
      : fillValues(pt.rows * pt.cols, seed, 0.02 * Math.sqrt(3));
    let row = 0;
    for (const s of pt.sources) {
      const data = vals.slice(row * pt.cols, (row + s.rows) * pt.cols);
      tensors[s.name] = { dtype: "F32", shape: shapes.get(s.name)!, data };
      row += s.rows;
    }
  }
  const files = {
    "model.safetensors": writeSafetensors(tensors),
    "config.json": new TextEncoder().encode(JSON.stringify(tinyConfig)),
  };
  const loaded = await Qwen2VLModel.load(new MemoryModelSource(files), {
    gpu,
    dtype: "f32",
    maxContext: 64,
  });
  const [a, b] = [await lastLogits(synth), await lastLogits(loaded)];
  // fill.wgsl may fuse offset + scale·(2u − 1) into an FMA: weights equal to 1 ulp, logits to ~1e-6.
  assertClose(a, b, 1e-5, "synthetic vs loaded logits");
  assert.ok(a.some((v) => v !== 0) && a.every(Number.isFinite));
  synth.dispose();
  loaded.dispose();
});

/** synthetic.ts's per-tensor seed (FNV-1a of the key xor the seed), restated. */
function seedOf(key: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return h >>> 0;
}

Deno.test("syntheticModel() seeds: same seed same logits, another seed other logits; q4 runs", async () => {
  const gpu = await sharedGpu();
  const make = (seed: number, quant?: "q4") =>
    syntheticModel(tinyConfig, { gpu, dtype: "f32", seed, quant, maxContext: 64 });
  const [m1, m2, m3, q] = await Promise.all([make(1), make(1), make(2), make(1, "q4")]);
  const [a, b, c, d] = [
    await lastLogits(m1),
    await lastLogits(m2),
    await lastLogits(m3),
    await lastLogits(q),
  ];
  assert.deepEqual(a, b);
  assert.ok(a.some((v, i) => v !== c[i]));
  assert.equal(q.plan.tensors.get("text.layers.0.down")!.dtype, "q4");
  assert.equal(q.plan.tensors.get("text.lm_head")!.dtype, "q4"); // tied: its own quantized copy
  assert.equal(q.plan.tensors.get("text.embed")!.dtype, "f32");
  assert.ok(d.every(Number.isFinite));
  for (const m of [m1, m2, m3, q]) m.dispose();
});

Deno.test("syntheticPlan() at real shapes: bytes as counted from the architecture; 72B q4 fits a card", () => {
  const maxBinding = 2 ** 31 - 4;
  /** Matrix and vector parameter counts of a Qwen2-VL (decoder matrices apart), from its shapes. */
  const count = (H: number, I: number, L: number, kvd: number, V: number, tied: boolean) => {
    const E = 1280, M = 5120, D = 5120;
    const decoder = L * (H * (H + 2 * kvd) + H * H + 2 * I * H + H * I) + (tied ? 0 : V * H);
    const other = V * H + E * 1176 + 32 * (4 * E * E + 2 * M * E) + D * D + H * D;
    const vectors = L * (3 * H + 2 * kvd) + H + 32 * (9 * E + M) + 2 * E + D + H;
    return { decoder, other, vectors, tiedHead: tied ? V * H : 0 };
  };
  const c7 = count(3584, 18944, 28, 512, 152064, false);
  const b7 = syntheticPlan(PRESETS["Qwen2-VL-7B-Instruct"], { dtype: "f16", maxBinding });
  assert.equal(b7.weightBytes, 2 * (c7.decoder + c7.other) + 4 * c7.vectors); // 16.58 GB
  const c72 = count(8192, 29568, 80, 1024, 152064, false);
  const q72 = syntheticPlan(PRESETS["QVQ-72B-Preview"], { dtype: "f16", quant: "q4", maxBinding });
  assert.equal(q72.weightBytes, 0.5625 * c72.decoder + 2 * c72.other + 4 * c72.vectors);
  // 44.1 GB of weights (40.2 GB q4 decoder + lm_head, read per token; 2.5 GB f16 embedding, one
  // row read per token; 1.35 GB f16 vision) + an 8k-token f32 KV cache of 5.4 GB: fits 80 GB.
  assert.ok(q72.weightBytes < 44.2e9, `${q72.weightBytes}`);
  // 2B ties lm_head: quantized, it gets its own q4 copy beside the f16 embedding.
  const c2 = count(1536, 8960, 28, 256, 151936, true);
  const q2 = syntheticPlan(PRESETS["Qwen2-VL-2B-Instruct"], {
    dtype: "f16",
    quant: "q4",
    maxBinding,
  });
  assert.equal(q2.weightBytes, 0.5625 * (c2.decoder + c2.tiedHead) + 2 * c2.other + 4 * c2.vectors);
});
