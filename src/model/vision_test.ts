import assert from "node:assert/strict";
import { sharedGpu } from "../gpu/device.ts";
import { readF32 } from "../gpu/buffers.ts";
import { InvalidInputError } from "../errors.ts";
import { openModelSource } from "../model_files.ts";
import { SafetensorsCheckpoint } from "../safetensors.ts";
import { parseConfig } from "./config.ts";
import { checkImages, VisionTower } from "./vision.ts";
import { planWeights, uploadWeights } from "./weights.ts";
import { CASES, readReferenceCase, TINY_DIR } from "./_fixture.ts";
import { assertClose } from "../ref/_random.ts";

Deno.test("VisionTower.encode() gives transformers' image_embeds for every image case (tiny model, f32)", async () => {
  const gpu = await sharedGpu();
  const src = openModelSource(TINY_DIR);
  const cfg = parseConfig(await src.readJson("config.json"));
  const ckpt = await SafetensorsCheckpoint.open(src);
  const plan = planWeights(cfg, (n) => (ckpt.has(n) ? ckpt.get(n) : undefined), {
    dtype: "f32",
    maxBinding: gpu.maxBinding,
    where: ckpt.origin,
  });
  const w = await uploadWeights(gpu, ckpt, plan);
  const tower = new VisionTower(gpu, cfg.vision, w);
  try {
    for (let c = 0; c < CASES; c++) {
      const ref = await readReferenceCase(c);
      if (!ref.gridThw.length) continue;
      const emb = tower.encode(ref.pixelValues, ref.gridThw);
      const got = await readF32(gpu, emb.buffer, emb.tokens * emb.hidden);
      // f32 everywhere on the same bf16 weights: only summation order differs (K ≤ 1176),
      // so errors are a few f32 ulps of the largest value.
      assertClose(got, ref.imageEmbeds, 1e-5, `case ${c} image_embeds`);
      emb.destroy();
    }
  } finally {
    tower.destroy();
    w.destroy();
  }
});

Deno.test("checkImages() rejects grids that do not match pixel_values", () => {
  const v = parseConfig(JSON.parse(Deno.readTextFileSync(`${TINY_DIR}config.json`))).vision;
  assert.throws(() => checkImages(v, new Float32Array(16 * 1176), [[1, 4, 3]]), InvalidInputError);
  assert.throws(
    () => checkImages(v, new Float32Array(15 * 1176), [[1, 4, 4]]),
    /needs? 16 patches|grids need 16/,
  );
  assert.equal(checkImages(v, new Float32Array(16 * 1176), [[1, 4, 4]]), 16);
});
