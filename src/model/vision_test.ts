import assert from "node:assert/strict";
import { sharedGpu } from "../gpu/device.ts";
import { readF32 } from "../gpu/buffers.ts";
import { InvalidInputError } from "../errors.ts";
import { openModelSource } from "../model_files.ts";
import { SafetensorsCheckpoint } from "../safetensors.ts";
import { parseConfig } from "./config.ts";
import {
  checkEmbedsFit,
  checkImages,
  checkPatchesFit,
  submitBefore,
  visionGroups,
  VisionTower,
} from "./vision.ts";
import { PRESETS } from "./presets.ts";
import { planWeights, uploadWeights } from "./weights.ts";
import { CASES, readReferenceCase, readVideoCases, TINY_DIR } from "./_fixture.ts";
import { assertClose, randn, seeded } from "../ref/_random.ts";
import type { QuantDType, WeightDType } from "../gpu/tensor.ts";

/**
 * Loads the tiny model's vision tower (`opts` as planWeights takes them) and calls `use` with a
 * function that encodes pixel values to their embeddings (read back).
 */
async function withTower(
  opts: { dtype: WeightDType; visionQuant?: QuantDType },
  use: (
    encode: (pixels: Float32Array, grids: [number, number, number][]) => Promise<Float32Array>,
  ) => Promise<void>,
): Promise<void> {
  const gpu = await sharedGpu();
  const src = openModelSource(TINY_DIR);
  const cfg = parseConfig(await src.readJson("config.json"));
  const ckpt = await SafetensorsCheckpoint.open(src);
  const plan = planWeights(cfg, (n) => (ckpt.has(n) ? ckpt.get(n) : undefined), {
    ...opts,
    maxBinding: gpu.maxBinding,
    where: ckpt.origin,
  });
  const w = await uploadWeights(gpu, ckpt, plan);
  const tower = new VisionTower(gpu, cfg.vision, w);
  try {
    await use(async (pixels, grids) => {
      const emb = tower.encode(pixels, grids);
      const got = await readF32(gpu, emb.buffer, emb.tokens * emb.hidden);
      emb.destroy();
      return got;
    });
  } finally {
    tower.destroy();
    w.destroy();
    ckpt.close();
  }
}

/**
 * Loads the tiny model's vision tower (`opts` as planWeights takes them) and calls `check` with each
 * image case's embeddings and transformers' reference.
 */
async function forEachImageCase(
  opts: { dtype: WeightDType; visionQuant?: QuantDType },
  check: (c: number, got: Float32Array, want: Float32Array) => void,
): Promise<void> {
  await withTower(opts, async (encode) => {
    for (let c = 0; c < CASES; c++) {
      const ref = await readReferenceCase(c);
      if (!ref.gridThw.length) continue;
      check(c, await encode(ref.pixelValues, ref.gridThw), ref.imageEmbeds);
    }
  });
}

Deno.test("VisionTower.encode() gives transformers' image_embeds for every image case (tiny model, f32)", async () => {
  // f32 everywhere on the same bf16 weights: only summation order differs (K ≤ 1176), so errors
  // are a few f32 ulps of the largest value.
  await forEachImageCase({ dtype: "f32" }, (c, got, want) => {
    assertClose(got, want, 1e-5, `case ${c} image_embeds`);
  });
});

// visionQuant q8 (LoadOptions): the tower's qkv, proj, fc1, fc2 and the merger's fc1, fc2 as q8
// weights run through the int8 GEMM (int8 activations), the attention's Q·Kᵀ in int8 (q and
// k − mean(k) rows). Measured on lavapipe against transformers (f16 or f32 elsewhere: the same
// numbers), cases 0 / 1 / 2: max |Δ| 0.0248 / 0.0380 / 0.0518 = 1.41 / 1.80 / 2.27 % of max |ref|,
// rms 0.0090 / 0.0108 / 0.0109. Of that, q8 weights alone (dequantized, f32 x) give 0.80 / 1.47 /
// 1.33 %, rms ≤ 0.0076. Quantizing k itself rather than k − mean(k) measured 1.30 / 1.68 / 1.93 %
// here (this random model's keys share no offset; with an offset of 10 per dim the kernel test in
// kernels/attention_test.ts shows what the mean saves). The float tower stays at f32 rounding.
Deno.test("VisionTower.encode() with visionQuant q8 stays within 2.5 % of transformers' image_embeds; the float tower is unchanged", async () => {
  const dtype = (await sharedGpu()).features.f16 ? "f16" : "f32";
  for (const visionQuant of [undefined, "q8"] as const) {
    await forEachImageCase({ dtype, visionQuant }, (c, got, want) => {
      const what = `${dtype} visionQuant ${visionQuant} case ${c} image_embeds`;
      if (!visionQuant) {
        assertClose(got, want, 1e-5, what); // measured ≤ 1.2e-6 of max |ref|
        return;
      }
      assertClose(got, want, 0.025, what);
      let ss = 0, worst = 0;
      for (let i = 0; i < got.length; i++) {
        const d = Math.abs(got[i] - want[i]);
        ss += d * d;
        worst = Math.max(worst, d);
      }
      assert.ok(Math.sqrt(ss / got.length) <= 0.012, `${what}: rms ${Math.sqrt(ss / got.length)}`);
      // The q8 path did run: int8 rounding is far above the float tower's.
      assert.ok(worst > 1e-3, `${what}: max |Δ| ${worst}`);
    });
  }
});

Deno.test("visionGroups() cuts grids into whole frames, at most `most` patches a group, in order", () => {
  const g = (grids: [number, number, number][], most: number) =>
    visionGroups(grids, most).map((x) => [x.grids, x.patches]);
  // Everything fits: one group as given.
  assert.deepEqual(g([[1, 4, 4], [3, 2, 4]], 100), [[[[1, 4, 4], [3, 2, 4]], 40]]);
  // A video of 5 frames of 8 patches, 20 a group: 2 frames, 2 frames, 1 frame.
  assert.deepEqual(g([[5, 2, 4]], 20), [
    [[[2, 2, 4]], 16],
    [[[2, 2, 4]], 16],
    [[[1, 2, 4]], 8],
  ]);
  // An image then a video: the video's first frame joins the image's group where it fits.
  assert.deepEqual(g([[1, 2, 2], [3, 2, 4]], 12), [
    [[[1, 2, 2], [1, 2, 4]], 12],
    [[[1, 2, 4]], 8],
    [[[1, 2, 4]], 8],
  ]);
  // A frame larger than `most` is a group of its own.
  assert.deepEqual(g([[1, 2, 2], [1, 6, 6], [1, 2, 2]], 10), [
    [[[1, 2, 2]], 4],
    [[[1, 6, 6]], 36],
    [[[1, 2, 2]], 4],
  ]);
});

Deno.test("VisionTower.encode() in groups of frames gives the embeddings of one pass (a video and an image)", async () => {
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
    const [c] = await readVideoCases(); // a video of 3 temporal patches of 4 × 6
    const ref = await readReferenceCase(1); // and an image of 6 × 8
    const pixels = new Float32Array(c.pixelValuesVideos.length + ref.pixelValues.length);
    pixels.set(c.pixelValuesVideos);
    pixels.set(ref.pixelValues, c.pixelValuesVideos.length);
    const grids = [c.videoGridThw, ...ref.gridThw];
    const read = async (maxPatches?: number) => {
      const e = tower.encode(pixels, grids, { maxPatches });
      const got = await readF32(gpu, e.buffer, e.tokens * e.hidden);
      assert.equal(e.tokens, (72 + 48) / 4);
      e.destroy();
      return got;
    };
    const whole = await read();
    // The image's rows are transformers' (one pass, as encoded alone in the case test above).
    assertClose(whole.subarray(18 * cfg.vision.outHidden), ref.imageEmbeds, 1e-5, "image rows");
    // Groups of 30 patches: frame by frame (24 each), the image alone (48 > 30): four passes.
    assert.equal(visionGroups(grids, 30).length, 4);
    assertClose(await read(30), whole, 1e-5, "groups of 30 patches");
    assertClose(await read(50), whole, 1e-5, "groups of 50 patches");
    // A frame past the bindings in a later group is refused before any group's work is built
    // (no GPU validation error from bindings sized for it).
    const v = cfg.vision;
    const most = Math.floor(
      gpu.maxBinding / (4 * Math.max(v.patchDim, v.mlpHidden, 3 * v.embedDim)),
    );
    const big = Math.ceil(Math.sqrt(most + 1) / 2) * 2; // an even side: one frame of > most patches
    const bigGrids: [number, number, number][] = [[1, 4, 4], [1, big, big]];
    const bigPixels = new Float32Array((16 + big * big) * cfg.vision.patchDim);
    gpu.device.pushErrorScope("validation");
    assert.throws(
      () => tower.encode(bigPixels, bigGrids, { maxPatches: 16 }),
      (e: Error) => e instanceof InvalidInputError && /this GPU adapter/.test(e.message),
    );
    assert.equal(await gpu.device.popErrorScope(), null);
  } finally {
    tower.destroy();
    w.destroy();
    ckpt.close();
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

Deno.test("submitBefore(): the first layer goes to the GPU alone, then every SUBMIT_LAYERS", () => {
  const at = Array.from({ length: 14 }, (_, l) => l).filter(submitBefore);
  assert.deepEqual(at, [1, 4, 8, 12]);
});

Deno.test("checkEmbedsFit() refuses vision tokens whose embeddings pass one binding (frames checked one by one each fit)", () => {
  const v = parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]).vision;
  const mib128 = 128 * 2 ** 20; // 3584 f32 a token: 9362 tokens
  checkEmbedsFit(v, 9362, mib128);
  assert.throws(
    () => checkEmbedsFit(v, 9384, mib128), // a 48-frame 644 × 476 video
    (e: Error) =>
      e instanceof InvalidInputError &&
      /make 9384 vision tokens, 128\.30 MiB of embeddings; this GPU adapter \(storage bindings of at most 128\.00 MiB\) holds 9362: send fewer frames or smaller images/
        .test(e.message),
  );
});

Deno.test("checkPatchesFit() refuses images past the adapter's bindings, naming the most it takes", () => {
  const v = parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]).vision;
  // Its largest row: the MLP's 5120 f32 a patch, 20480 bytes; 128 MiB hold 6553 patches.
  const mib128 = 128 * 2 ** 20;
  checkPatchesFit(v, 6553, mib128);
  assert.throws(
    () => checkPatchesFit(v, 6554, mib128),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /make 6554 patches of 14 × 14 pixels; this GPU adapter \(storage bindings of at most 128\.00 MiB\) encodes at most 6553 at once \(about 1\.3 megapixels in all\): send smaller or fewer images/
        .test(e.message),
  );
  // A 3000 × 2000 photo (30388 patches) on an H200's 2 GiB bindings.
  checkPatchesFit(v, 30388, 2 ** 31 - 4);
});

Deno.test("VisionTower.encode(): an image's embeddings do not depend on the images encoded with it, float or int8 tower", async () => {
  // The prompt cache encodes only the images it has not seen, so an image's rows must be the same
  // alone or beside others (the int8 tower's k mean was over all of them: 1 % apart).
  const refs = [];
  for (let c = 0; c < CASES && refs.length < 2; c++) {
    const ref = await readReferenceCase(c);
    if (ref.gridThw.length === 1 && ref.gridThw[0][0] === 1) refs.push(ref);
  }
  assert.equal(refs.length, 2);
  // And two videos of 16 and 17 frames of 8 × 8 patches (1024 and 1088: attention per frame keeps
  // them cheap here): alone and together the patch embedding's GEMM (k 1176) would split k in 8
  // and in 7 — another sum, which the int8 layers after it magnified (with two 644 × 476 photos, 1
  // % of the embeddings on the tiny model; for the prompt cache's next turn, 6e-3 in logprob).
  const rng = seeded(5);
  const frames = (t: number) => ({
    pixelValues: randn(rng, t * 64 * 1176),
    gridThw: [[t, 8, 8]] as [number, number, number][],
  });
  const pairs = [refs, [frames(16), frames(17)]];
  for (const visionQuant of [undefined, "q8"] as const) {
    await withTower({ dtype: "f32", visionQuant }, async (encode) => {
      for (const [a, b] of pairs) {
        const alone = [
          await encode(a.pixelValues, a.gridThw),
          await encode(b.pixelValues, b.gridThw),
        ];
        const pixels = new Float32Array(a.pixelValues.length + b.pixelValues.length);
        pixels.set(a.pixelValues);
        pixels.set(b.pixelValues, a.pixelValues.length);
        const both = await encode(pixels, [...a.gridThw, ...b.gridThw]);
        assert.deepEqual(
          both,
          Float32Array.from([...alone[0], ...alone[1]]),
          `visionQuant ${visionQuant}, ${a.gridThw[0]}`,
        );
      }
    });
  }
});
