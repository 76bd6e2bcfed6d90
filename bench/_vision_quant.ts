/**
 * How far the q8 vision tower (LoadOptions.visionQuant) moves image embeddings from the float tower
 * at a real model's shape: the same seeded synthetic weights (src/model/synthetic.ts quantizes the
 * very f16 values the float tower holds), one image of seeded N(0, 1) pixel values (the image
 * processor's normalized range), both towers; prints one JSON line. Random weights have none of a
 * trained tower's outliers, so this bounds the error of the int8 arithmetic at these widths, not a
 * checkpoint's. The text decoder is cut to one layer (unused).
 *
 *   deno run -A bench/_vision_quant.ts --shape qwen2-vl-7b --grid 64x80
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { readF32 } from "../src/gpu/buffers.ts";
import { PRESETS } from "../src/model/presets.ts";
import { parseConfig } from "../src/model/config.ts";
import { syntheticModel } from "../src/model/synthetic.ts";
import { randn, seeded } from "../src/ref/_random.ts";
import { SHAPES } from "./_args.ts";

const args = Object.fromEntries(
  Deno.args.join(" ").split("--").filter(Boolean).map((a) => a.trim().split(/\s+/)),
);
const shape = args.shape ?? "qwen2-vl-7b";
const name = SHAPES[shape];
if (!name) throw new Error(`unknown --shape ${shape}`);
const base = name === "tiny"
  ? JSON.parse(
    await Deno.readTextFile(new URL("../tests/fixtures/tiny-qwen2vl/config.json", import.meta.url)),
  )
  : PRESETS[name];
const json = { ...base, num_hidden_layers: 1 };
const cfg = parseConfig(json, shape);
const [gh, gw] = (args.grid ?? "64x80").split("x").map(Number);
const seed = Number(args.seed ?? 0);
const pixels = randn(seeded(seed + 1), gh * gw * cfg.vision.patchDim);

const gpu = await requestGpu();
const dtype = gpu.features.f16 ? "f16" : "f32";
const out: Float32Array[] = [];
const seconds: number[] = [];
for (const visionQuant of [undefined, "q8"] as const) {
  const model = await syntheticModel(json, { gpu, dtype, visionQuant, seed, maxContext: 64 });
  try {
    for (let rep = 0; rep < 2; rep++) { // the second run without shader compilation
      const t0 = performance.now();
      const emb = model.encodeImages(pixels, [[1, gh, gw]]);
      const got = await readF32(gpu, emb.buffer, emb.tokens * emb.hidden);
      if (rep === 1) seconds.push((performance.now() - t0) / 1e3);
      emb.destroy();
      if (rep === 1) out.push(got);
    }
  } finally {
    model.dispose();
  }
}
const [ref, q8] = out;
let maxAbs = 0, maxRef = 0, ss = 0, ssRef = 0, dot = 0, ssQ = 0;
for (let i = 0; i < ref.length; i++) {
  const d = q8[i] - ref[i];
  maxAbs = Math.max(maxAbs, Math.abs(d));
  maxRef = Math.max(maxRef, Math.abs(ref[i]));
  ss += d * d;
  ssRef += ref[i] * ref[i];
  ssQ += q8[i] * q8[i];
  dot += ref[i] * q8[i];
}
const r = (x: number) => Number(x.toPrecision(4));
console.log(JSON.stringify({
  shape,
  device: gpu.adapterInfo.description || gpu.adapterInfo.vendor,
  dtype,
  patches: gh * gw,
  values: ref.length,
  max_abs: r(maxAbs),
  max_ref: r(maxRef),
  max_rel: r(maxAbs / maxRef),
  rms: r(Math.sqrt(ss / ref.length)),
  rms_rel: r(Math.sqrt(ss / ssRef)),
  cosine: r(dot / Math.sqrt(ssRef * ssQ)),
  float_s: r(seconds[0]),
  q8_s: r(seconds[1]),
}));
gpu.destroy();
