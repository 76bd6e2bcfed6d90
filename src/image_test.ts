import assert from "node:assert/strict";
import { ContextLengthError, InvalidInputError, ModelFileError } from "./errors.ts";
import { encodePng, pngChunk } from "./_png.ts";
import {
  decodeImage,
  DEFAULT_IMAGE_PROCESSOR_CONFIG,
  DEFAULT_VIDEO_PROCESSOR_CONFIG,
  imageGrids,
  type ImageProcessorConfig,
  imageSize,
  imageTokenCount,
  MAX_IMAGE_PIXELS,
  parsePreprocessorConfig,
  patchCount,
  preprocessImages,
  smartResize,
} from "./image.ts";
import { readSafetensors } from "./safetensors.ts";
import { loadWasm, wasm } from "./_wasm.ts";
import { readVideoCases } from "./model/_fixture.ts";

const FIXTURES = new URL("../tests/fixtures/", import.meta.url);
const MODEL = new URL("tiny-qwen2vl/", FIXTURES);
const IMAGES = new URL("images/", FIXTURES);

const readJson = async (url: URL) => JSON.parse(await Deno.readTextFile(url));
const fixtureConfig = async () =>
  parsePreprocessorConfig(await readJson(new URL("preprocessor_config.json", MODEL)));

/** (height, width, 3) u8 hash noise, the same as `noise()` in tests/tools/make_image_refs.py. */
function noise(height: number, width: number, seed: number): Uint8Array {
  const out = new Uint8Array(height * width * 3);
  let i = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let v =
          (Math.imul(x, 73856093) ^ Math.imul(y, 19349663) ^ Math.imul(c + 3 * seed, 83492791)) >>>
          0;
        v = Math.imul(v ^ (v >>> 13), 0x5bd1e995) >>> 0;
        out[i++] = (v ^ (v >>> 15)) & 255;
      }
    }
  }
  return out;
}

async function referencePixelValues(i: number) {
  const path = new URL(`reference/case${i}.safetensors`, MODEL).pathname;
  const ref = await readSafetensors(await Deno.readFile(path), path);
  return {
    pixelValues: ref.get("pixel_values")!.data as Float32Array,
    gridThw: Array.from(ref.get("image_grid_thw")!.data as Int32Array),
  };
}

/** The model fixture cases that have an image: [case index, PNG bytes]. */
async function imageCases(): Promise<[number, Uint8Array][]> {
  const { cases } = await readJson(new URL("reference/cases.json", MODEL));
  const out: [number, Uint8Array][] = [];
  for (const [i, c] of cases.entries()) {
    if (c.images.length) {
      out.push([i, await Deno.readFile(new URL(`reference/${c.images[0]}`, MODEL))]);
    }
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

Deno.test("preprocessImages() gives transformers' pixel_values and image_grid_thw bit for bit for every reference case", async () => {
  const config = await fixtureConfig();
  const cases = await imageCases();
  assert.equal(cases.length, 3);
  for (const [i, png] of cases) {
    const ref = await referencePixelValues(i);
    const out = await preprocessImages([png], config);
    assert.deepEqual(out.gridThw, [ref.gridThw], `case ${i}`);
    // case0 and case2 need no resize, case1 (123x77 → 112x84) does: torchvision's integer
    // bicubic and torch's f32 normalisation are reproduced exactly, so 0 is the only tolerance.
    assert.equal(maxAbsDiff(out.pixelValues, ref.pixelValues), 0, `case ${i}`);
  }
});

Deno.test("preprocessImages() takes decoded pixels as it takes the file, and refuses malformed ones", async () => {
  const config = await fixtureConfig();
  const cases = await imageCases();
  const files = cases.map(([, png]) => png);
  const decoded = await Promise.all(files.map(decodeImage));
  const a = await preprocessImages(files, config);
  const b = await preprocessImages([decoded[0], files[1], decoded[2]], config);
  assert.deepEqual(b.gridThw, a.gridThw);
  assert.equal(maxAbsDiff(b.pixelValues, a.pixelValues), 0);
  const { width, height, data } = decoded[1];
  const bad: [unknown, RegExp][] = [
    [
      { width, height, data: data.subarray(1) },
      /Image 0: data has \d+ bytes, not width × height × 3/,
    ],
    [{ width, height }, /Image 0 must be encoded bytes .* or decoded pixels/],
    [{ width: 0, height: 0, data: new Uint8Array(0) }, /Image 0: RGB image has an empty side/],
    [{ width: 1.5, height, data }, /Image 0 must be encoded bytes/],
  ];
  for (const [image, message] of bad) {
    await assert.rejects(
      preprocessImages([image as Uint8Array], config),
      (e) => e instanceof InvalidInputError && message.test(e.message),
      message.source,
    );
  }
});

Deno.test("preprocessImages() concatenates several images' patches in order", async () => {
  const config = await fixtureConfig();
  const cases = await imageCases();
  const out = await preprocessImages(cases.map(([, png]) => png), config);
  const refs = await Promise.all(cases.map(([i]) => referencePixelValues(i)));
  assert.deepEqual(out.gridThw, refs.map((r) => r.gridThw));
  let offset = 0;
  for (const r of refs) {
    const part = out.pixelValues.subarray(offset, offset + r.pixelValues.length);
    assert.equal(maxAbsDiff(part, r.pixelValues), 0);
    offset += r.pixelValues.length;
  }
  assert.equal(offset, out.pixelValues.length);
  assert.deepEqual(await preprocessImages([], config), {
    pixelValues: new Float32Array(),
    gridThw: [],
  });
});

Deno.test("preprocessImages() gives transformers' pixel_values_videos and video_grid_thw bit for bit for a video's frames", async () => {
  const config = await fixtureConfig();
  const cases = await readVideoCases();
  assert.equal(cases.length, 2);
  for (const c of cases) {
    const video = { frames: c.frames };
    const images = c.image ? [c.image, video] : [video];
    const out = await preprocessImages(images, config);
    const grids = [...c.imageGridThw, c.videoGridThw];
    assert.deepEqual(out.gridThw, grids, c.name);
    // Qwen2VLProcessor returns images and videos apart; here they come in prompt order.
    const split = c.pixelValues.length;
    assert.equal(out.pixelValues.length, split + c.pixelValuesVideos.length, c.name);
    assert.equal(maxAbsDiff(out.pixelValues.subarray(0, split), c.pixelValues), 0, c.name);
    assert.equal(maxAbsDiff(out.pixelValues.subarray(split), c.pixelValuesVideos), 0, c.name);
    // Decoded frames are the same video.
    const decoded = await preprocessImages(
      [{ frames: await Promise.all(c.frames.map(decodeImage)) }],
      config,
    );
    assert.deepEqual(decoded.gridThw, [c.videoGridThw]);
    assert.equal(maxAbsDiff(decoded.pixelValues, c.pixelValuesVideos), 0, `${c.name} decoded`);
  }
});

Deno.test("preprocessImages() resizes a video by its videoConfig, and one frame as a still image", async () => {
  const config = await fixtureConfig();
  const [c] = await readVideoCases();
  // 84 x 56 frames: 4704 pixels, inside the fixture's bounds; a video config of at most 56 · 56
  // pixels shrinks them by √1.5 to 28 x 56 (2 × 4 patches), while the image stays 4 × 6.
  const videoConfig = { ...config, minPixels: 28 * 28, maxPixels: 56 * 56 };
  const out = await preprocessImages([c.frames[0], { frames: c.frames }], config, { videoConfig });
  assert.deepEqual(out.gridThw, [[1, 4, 6], [3, 2, 4]]);
  const one = await preprocessImages([{ frames: [c.frames[2]] }], config);
  const still = await preprocessImages([c.frames[2]], config);
  assert.deepEqual(one.gridThw, still.gridThw);
  assert.equal(maxAbsDiff(one.pixelValues, still.pixelValues), 0);
  // The video's own bounds do the same, in place of the settings.
  const own = await preprocessImages(
    [c.frames[0], { frames: c.frames, maxPixels: 56 * 56 }],
    config,
  );
  assert.deepEqual(own.gridThw, [[1, 4, 6], [3, 2, 4]]);
  assert.equal(maxAbsDiff(own.pixelValues, out.pixelValues), 0);
  // minPixels alone: 84 x 56 scaled by √(112² / 4704) and ceil-rounded to 28s → 140 x 112.
  const up = await preprocessImages([{ frames: c.frames, minPixels: 112 * 112 }], config);
  assert.deepEqual(up.gridThw, [[3, 8, 10]]);
  for (
    const [bounds, message] of [
      [{ maxPixels: 0 }, /maxPixels must be an integer of at least 1, got 0/],
      [{ minPixels: 1.5 }, /minPixels must be an integer of at least 0, got 1.5/],
      [{ minPixels: 5000, maxPixels: 4000 }, /minPixels 5000 must not exceed maxPixels 4000/],
    ] as const
  ) {
    await assert.rejects(
      preprocessImages([{ frames: c.frames, ...bounds }], config),
      (e) => e instanceof InvalidInputError && message.test(e.message),
      message.source,
    );
  }
  await assert.rejects(
    preprocessImages([{ frames: c.frames }], config, {
      videoConfig: { ...config, temporalPatchSize: 1 },
    }),
    /videoConfig.temporalPatchSize is 1 but the images' is 2/,
  );
  assert.deepEqual(
    [DEFAULT_VIDEO_PROCESSOR_CONFIG.minPixels, DEFAULT_VIDEO_PROCESSOR_CONFIG.maxPixels],
    [128 * 28 * 28, 768 * 28 * 28],
  );
});

Deno.test("preprocessImages() refuses a video past maxImageTokens from its first frame, and clamps its own bounds into the settings'", async () => {
  const config = await fixtureConfig();
  const [c] = await readVideoCases(); // 5 frames of 84 x 56: 3 temporal patches of 6 tokens
  // Frame 1 does not decode: the refusal comes first, from frame 0's size, before it is read.
  const frames = [c.frames[0], new Uint8Array([137, 80, 78, 71]), ...c.frames.slice(2)];
  await assert.rejects(
    preprocessImages([c.frames[0], { frames }], config, { maxImageTokens: 6 + 17 }),
    (e) =>
      e instanceof ContextLengthError &&
      /^Image 1: the images so far need 24 image tokens, more than the model's context of 23; .*or a lower max_pixels — maxPixels in a module\)/
        .test(e.message),
  );
  const fits = await preprocessImages([c.frames[0], { frames: c.frames }], config, {
    maxImageTokens: 24,
  });
  assert.deepEqual(fits.gridThw, [[1, 4, 6], [3, 4, 6]]);
  // A video's own bounds stay inside the settings': minPixels 2^26 is the settings' max here.
  const small = { ...config, minPixels: 28 * 28, maxPixels: 56 * 56 };
  const clamped = await preprocessImages([{ frames: c.frames, minPixels: 2 ** 26 }], small, {
    videoConfig: small,
  });
  assert.deepEqual(clamped.gridThw, [[3, 2, 4]]); // ≤ 56 · 56 pixels: 28 x 56
});

Deno.test("preprocessImages() refuses a video without frames, of mixed sizes or with a bad frame, naming the frame", async () => {
  const config = await fixtureConfig();
  const [a, b] = await readVideoCases();
  const bad: [unknown, RegExp][] = [
    [{ frames: [] }, /Image 0 \(a video\): frames must be an array of 1 to 768 images/],
    [{ frames: "x" }, /frames must be an array .* got string/],
    [
      { frames: [a.frames[0], b.frames[0]] },
      /Image 0 \(a video\), frame 1: video frame 1 is 40x70 pixels but frame 0 is 84x56/,
    ],
    [
      { frames: [a.frames[0], a.frames[1].subarray(0, 40)] },
      /Image 0 \(a video\), frame 1: cannot decode PNG image/,
    ],
    [{ frames: [a.frames[0], { width: 2, height: 2 }] }, /Image 0 \(a video\), frame 1 must be/],
  ];
  for (const [video, message] of bad) {
    await assert.rejects(
      preprocessImages([video as { frames: Uint8Array[] }], config),
      (e) => e instanceof InvalidInputError && message.test(e.message),
      message.source,
    );
  }
});

Deno.test("preprocessImages() lays out patches as transformers' reshape/permute for other patch, merge and temporal sizes", async () => {
  // 64x96 with patch 16, merge 2: sides are multiples of 32 and the area is in bounds, so no
  // resize; the layout is then checked against a direct transcription of transformers' patchify:
  // reshape(c, gh/m, m, p, gw/m, m, p).permute(gh/m, gw/m, m, m, c, [t], p, p).
  const [height, width, p, m] = [64, 96, 16, 2];
  for (const t of [1, 2, 3]) {
    const config: ImageProcessorConfig = {
      ...DEFAULT_IMAGE_PROCESSOR_CONFIG,
      patchSize: p,
      mergeSize: m,
      temporalPatchSize: t,
      minPixels: 1024,
      maxPixels: 16384 * 1024,
    };
    const rgb = noise(height, width, 5);
    const out = await preprocessImages([await encodePng(width, height, rgb)], config);
    const [gh, gw] = [height / p, width / p];
    assert.deepEqual(out.gridThw, [[1, gh, gw]]);
    const f = Math.fround;
    const norm = (v: number, c: number) =>
      f(f(v - f(f(config.imageMean[c]) * 255)) / f(f(config.imageStd[c]) * 255));
    const expected: number[] = [];
    for (let by = 0; by < gh / m; by++) {
      for (let bx = 0; bx < gw / m; bx++) {
        for (let iy = 0; iy < m; iy++) {
          for (let ix = 0; ix < m; ix++) {
            for (let c = 0; c < 3; c++) {
              for (let frame = 0; frame < t; frame++) {
                for (let py = 0; py < p; py++) {
                  for (let px = 0; px < p; px++) {
                    const y = (by * m + iy) * p + py;
                    const x = (bx * m + ix) * p + px;
                    expected.push(norm(rgb[(y * width + x) * 3 + c], c));
                  }
                }
              }
            }
          }
        }
      }
    }
    assert.equal(out.pixelValues.length, gh * gw * 3 * t * p * p);
    assert.equal(maxAbsDiff(out.pixelValues, expected), 0, `temporal ${t}`);
  }
});

Deno.test("decodeImage() gives transformers' convert_to_rgb pixels for every reference PNG, JPEG and WebP; imageSize() its size from the headers", async () => {
  const cases = await readJson(new URL("decode_cases.json", IMAGES));
  assert.ok(cases.length >= 25);
  for (const c of cases) {
    const bytes = await Deno.readFile(new URL(c.file, IMAGES));
    const img = await decodeImage(bytes);
    assert.deepEqual([img.width, img.height], [c.width, c.height], c.file);
    assert.deepEqual(await imageSize(bytes), { width: c.width, height: c.height }, c.file);
    const expected = await Deno.readFile(new URL(c.expected, IMAGES));
    // PNG (every colour type, bit depth, tRNS, interlacing), WebP (lossy too) and JPEG (every
    // layout: libjpeg-turbo's arithmetic) are all exact, natively and in wasm alike.
    assert.equal(maxAbsDiff(img.data, expected), 0, c.file);
  }
});

Deno.test("decodeImage() gives PIL's pixels byte for byte for every JPEG of the corpus and refuses the files PIL's libjpeg does not decode like it", async () => {
  // tests/tools/make_jpeg_refs.py: every sampling layout, odd sizes, progressive scans with
  // successive approximation, restart intervals, quality 1 and 100, gray, RGB, CMYK, EXIF.
  const cases = await readJson(new URL("jpeg_cases.json", IMAGES));
  assert.ok(cases.length >= 80);
  for (const c of cases) {
    const bytes = await Deno.readFile(new URL(c.file, IMAGES));
    if (c.error) {
      await assert.rejects(() => decodeImage(bytes), new RegExp(c.error), c.file);
      continue;
    }
    const img = await decodeImage(bytes);
    assert.deepEqual([img.width, img.height], [c.width, c.height], c.file);
    const expected = await Deno.readFile(new URL(c.expected, IMAGES));
    assert.equal(maxAbsDiff(img.data, expected), 0, c.file);
  }
});

/** Hex pairs → bytes. */
const fromHex = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));

Deno.test("decodeImage() turns every orientation of every format upright as PIL's exif_transpose does; imageSize() gives the upright size", async () => {
  // tests/tools/make_image_refs.py: exif_transpose(Image.open(f)) then convert("RGB"), for EXIF in
  // each place PIL reads it (and EXIF it reads past); the Rust tests read the same table.
  const cases = await readJson(new URL("orientation_cases.json", IMAGES));
  assert.ok(cases.length >= 35);
  for (const c of cases) {
    const bytes = await Deno.readFile(new URL(c.file, IMAGES));
    const img = await decodeImage(bytes);
    assert.deepEqual([img.width, img.height], [c.width, c.height], c.file);
    assert.deepEqual(await imageSize(bytes), { width: c.width, height: c.height }, c.file);
    // Every format exact, as the decode references above.
    assert.equal(maxAbsDiff(img.data, fromHex(c.expected)), 0, c.file);
  }
});

/** Little-endian EXIF (a TIFF stream) whose first IFD holds one SHORT Orientation `v`. */
function exifOrientation(v: number): Uint8Array {
  // "II", 42, IFD0 at 8; 1 entry: tag 0x0112, SHORT, 1 value, v; no next IFD
  return Uint8Array.of(
    73,
    73,
    42,
    0,
    8,
    0,
    0,
    0,
    1,
    0,
    0x12,
    1,
    3,
    0,
    1,
    0,
    0,
    0,
    v,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  );
}

/** `png` with `chunk` just before IEND: after the image data, where PIL still reads an eXIf. */
function withChunk(png: Uint8Array, chunk: Uint8Array): Uint8Array {
  const iend = png.length - 12;
  return Uint8Array.from([...png.subarray(0, iend), ...chunk, ...png.subarray(iend)]);
}

Deno.test("a photo with EXIF orientation 6 gets its upright grid from imageSize(), imageGrids(), preprocessImages() and as a video's frames", async () => {
  const config = await fixtureConfig();
  const stored = noise(56, 140, 9); // (56, 140, 3): as the camera wrote it, on its side
  const plain = await encodePng(140, 56, stored);
  const turned = withChunk(plain, pngChunk("eXIf", exifOrientation(6)));
  assert.deepEqual(await imageSize(plain), { width: 140, height: 56 });
  assert.deepEqual(await imageSize(turned), { width: 56, height: 140 });
  // transformers: [1, 10, 4] (load_image turns it upright first); before: [1, 4, 10].
  assert.deepEqual(await imageGrids([plain, turned], config), [[1, 4, 10], [1, 10, 4]]);
  // ROTATE_270, a quarter turn clockwise: upright (x, y) is stored (y, 55 - x).
  const upright = new Uint8Array(stored.length);
  for (let y = 0; y < 140; y++) {
    for (let x = 0; x < 56; x++) {
      upright.set(
        stored.subarray(((55 - x) * 140 + y) * 3, ((55 - x) * 140 + y) * 3 + 3),
        (y * 56 + x) * 3,
      );
    }
  }
  assert.deepEqual(await decodeImage(turned), { width: 56, height: 140, data: upright });
  const out = await preprocessImages([turned], config);
  assert.deepEqual(out.gridThw, [[1, 10, 4]]);
  const fromPixels = await preprocessImages([{ width: 56, height: 140, data: upright }], config);
  assert.equal(maxAbsDiff(out.pixelValues, fromPixels.pixelValues), 0);
  // A video of such frames (transformers loads frame files with load_image too).
  const video = await preprocessImages([{ frames: [turned, turned] }], config);
  assert.deepEqual(video.gridThw, [[1, 10, 4]]);
  assert.deepEqual(await imageGrids([{ frames: [turned, turned, turned] }], config), [[2, 10, 4]]);
  await assert.rejects(
    preprocessImages([{ frames: [turned, plain] }], config),
    (e) =>
      e instanceof InvalidInputError &&
      /frame 1 is 140x56 pixels but frame 0 is 56x140/.test(e.message),
  );
});

Deno.test("decodeImage() decodes an image whose EXIF it cannot read as stored, without an error", async () => {
  const plain = await encodePng(5, 3, noise(3, 5, 2));
  const stored = await decodeImage(plain);
  const bad = [
    Uint8Array.of(88, 88, 42, 0, 8, 0, 0, 0), // no TIFF header
    exifOrientation(6).subarray(0, 12), // the IFD cut inside its one entry
    exifOrientation(9), // no such orientation
    exifOrientation(6).subarray(0, 6), // the header cut
    new Uint8Array(),
  ];
  for (const exif of bad) {
    const png = withChunk(plain, pngChunk("eXIf", exif));
    assert.deepEqual(await decodeImage(png), stored, `${exif}`);
    assert.deepEqual(await imageSize(png), { width: 5, height: 3 });
  }
});

Deno.test("smartResize() agrees with transformers' smart_resize on every reference case", async () => {
  const cases = await readJson(new URL("smart_resize_cases.json", IMAGES));
  assert.ok(cases.length > 100);
  for (const c of cases) {
    const config = {
      patchSize: c.factor / 2,
      mergeSize: 2,
      minPixels: c.min_pixels,
      maxPixels: c.max_pixels,
    };
    const label = JSON.stringify(c);
    if (c.error) {
      assert.throws(() => smartResize(c.height, c.width, config), InvalidInputError, label);
    } else if (c.expected.includes(0)) {
      // transformers returns 0x0 here (min_pixels 0) and fails later; we refuse up front.
      assert.throws(() => smartResize(c.height, c.width, config), /empty grid/, label);
    } else {
      assert.deepEqual(smartResize(c.height, c.width, config), c.expected, label);
    }
  }
});

Deno.test("smartResize() rounds halves to even like Python's round()", () => {
  const config = { patchSize: 14, mergeSize: 2, minPixels: 3136, maxPixels: 12845056 };
  assert.deepEqual(smartResize(42, 84, config), [56, 84]); // 1.5 → 2
  assert.deepEqual(smartResize(70, 84, config), [56, 84]); // 2.5 → 2
  assert.deepEqual(smartResize(98, 84, config), [112, 84]); // 3.5 → 4
  assert.throws(() => smartResize(0, 84, config), /positive integer/);
  assert.throws(() => smartResize(10, 2001, config), /at most 200:1/);
});

Deno.test("parsePreprocessorConfig() reads the fixture, size dicts of both generations and defaults", async () => {
  assert.deepEqual(await fixtureConfig(), {
    patchSize: 14,
    temporalPatchSize: 2,
    mergeSize: 2,
    minPixels: 3136,
    maxPixels: 12845056,
    imageMean: [0.48145466, 0.4578275, 0.40821073],
    imageStd: [0.26862954, 0.26130258, 0.27577711],
    rescaleFactor: 1 / 255,
  });
  assert.deepEqual(parsePreprocessorConfig({}), DEFAULT_IMAGE_PROCESSOR_CONFIG);
  const newer = parsePreprocessorConfig({
    size: { shortest_edge: 65536, longest_edge: 16777216 },
    patch_size: 16,
  });
  assert.deepEqual([newer.minPixels, newer.maxPixels, newer.patchSize], [65536, 16777216, 16]);
  const older = parsePreprocessorConfig({ size: { min_pixels: 3136, max_pixels: 1003520 } });
  assert.deepEqual([older.minPixels, older.maxPixels], [3136, 1003520]);
  // Top-level min_pixels / max_pixels win over size, as in transformers' __init__.
  const both = parsePreprocessorConfig({
    min_pixels: 100,
    max_pixels: 200,
    size: { shortest_edge: 1, longest_edge: 2 },
  });
  assert.deepEqual([both.minPixels, both.maxPixels], [100, 200]);
  assert.deepEqual(parsePreprocessorConfig({ image_mean: 0.5, image_std: 0.5 }).imageStd, [
    0.5,
    0.5,
    0.5,
  ]);
});

Deno.test("parsePreprocessorConfig() names the bad field", () => {
  const bad: [unknown, RegExp][] = [
    [[], /JSON object, got an array/],
    [null, /JSON object/],
    [{ patch_size: "14" }, /"patch_size" must be an integer/],
    [{ merge_size: 0 }, /"merge_size"/],
    [{ temporal_patch_size: 2.5 }, /"temporal_patch_size"/],
    [{ min_pixels: -1 }, /"min_pixels" must be a non-negative integer/],
    [{ size: { longest_edge: "big" } }, /"size.longest_edge"/],
    [{ size: 5 }, /"size" must be an object/],
    [{ min_pixels: 10, max_pixels: 5 }, /"min_pixels" must not exceed max_pixels/],
    [{ image_mean: [0.5, 0.5] }, /"image_mean" must be 3 finite numbers/],
    [{ image_std: [0.5, 0, 0.5] }, /"image_std" must be 3 finite positive numbers/],
    [{ rescale_factor: 0 }, /"rescale_factor"/],
    [{ do_resize: false }, /"do_resize" must be true/],
  ];
  for (const [json, message] of bad) {
    assert.throws(
      () => parsePreprocessorConfig(json),
      (e) => e instanceof ModelFileError && message.test(e.message),
      message.source,
    );
  }
});

Deno.test("imageTokenCount() is t·h·w / merge_size² per image", () => {
  assert.equal(imageTokenCount([1, 4, 4], 2), 4);
  assert.equal(imageTokenCount([1, 6, 8], 2), 12);
  assert.equal(imageTokenCount([1, 24, 32], 2), 192);
  assert.equal(imageTokenCount([2, 6, 6], 3), 8);
  assert.throws(() => imageTokenCount([1, 3, 4], 2), InvalidInputError);
});

Deno.test("patchCount() is Σ t·h·w over the grids", () => {
  assert.equal(patchCount([]), 0);
  assert.equal(patchCount([[1, 4, 4], [2, 6, 8]]), 16 + 96);
});

Deno.test("preprocessImages() refuses unsupported, truncated, empty and oversized images with InvalidInputError", async () => {
  const config = await fixtureConfig();
  const [[, png]] = await imageCases();
  const bad = async (file: string) => await Deno.readFile(new URL(`bad/${file}`, IMAGES));
  const cases: [Uint8Array, RegExp][] = [
    [
      await bad("gif_1x1.gif"),
      /^Image 1: unsupported image format \(GIF\): pass PNG, JPEG or WebP/,
    ],
    [
      png.subarray(0, png.length / 2),
      /^Image 1: cannot decode PNG image: .*truncated, corrupt or uses a feature/,
    ],
    [new Uint8Array(), /empty input/],
    [await bad("png_zero_width.png"), /PNG/],
    [
      await bad("png_bomb.png"),
      new RegExp(`100000x100000 = 10000000000 pixels, more than the limit of ${MAX_IMAGE_PIXELS}`),
    ],
    [await bad("jpeg_bomb.jpg"), /JPEG image is 65000x65000/],
    [await bad("webp_bomb.webp"), /WebP image is 16383x16383/],
    [
      await encodePng(300, 1, noise(1, 300, 1)),
      /aspect ratio is too extreme \(300x1 pixels, ratio 300.0\)/,
    ],
  ];
  for (const [bytes, message] of cases) {
    await assert.rejects(
      preprocessImages([png, bytes], config),
      (e) => e instanceof InvalidInputError && message.test(e.message),
      message.source,
    );
  }
  await assert.rejects(decodeImage(await bad("gif_1x1.gif")), InvalidInputError);
  // imageSize() refuses the bombs from their headers, as decodeImage() does.
  for (
    const [file, message] of [
      ["png_bomb.png", /PNG image is 100000x100000/],
      ["jpeg_bomb.jpg", /JPEG image is 65000x65000/],
      ["webp_bomb.webp", /WebP image is 16383x16383/],
      ["gif_1x1.gif", /unsupported image format \(GIF\)/],
      ["png_zero_width.png", /PNG/],
    ] as const
  ) {
    await assert.rejects(
      imageSize(await bad(file)),
      (e) => e instanceof InvalidInputError && message.test(e.message),
      file,
    );
  }
  // Not bytes at all.
  await assert.rejects(
    preprocessImages(["x" as unknown as Uint8Array], config),
    /Image 0 must be encoded bytes \(a Uint8Array of PNG, JPEG or WebP\) or decoded pixels/,
  );
  await assert.rejects(preprocessImages([png], { ...config, patchSize: 14.5 }), /config.patchSize/);
  // Ranges the TypeScript types allow but the processor cannot use are the model file's fault.
  await assert.rejects(preprocessImages([png], { ...config, imageStd: [1, 0, 1] }), ModelFileError);
});

Deno.test("preprocessImages() stops at the first image past maxImageTokens, naming it", async () => {
  const config = await fixtureConfig();
  // case0_0.png is 56×56: grid [1, 4, 4] = 4 image tokens (merge 2×2).
  const png = await Deno.readFile(new URL("reference/case0_0.png", MODEL));
  const both = await preprocessImages([png, png], config, { maxImageTokens: 8 });
  assert.deepEqual(both.gridThw, [[1, 4, 4], [1, 4, 4]]);
  await assert.rejects(
    () => preprocessImages([png, png, png], config, { maxImageTokens: 8 }),
    (e: Error) =>
      e instanceof ContextLengthError &&
      /^Image 2: .*need 12 image tokens.*context of 8/.test(e.message),
  );
});

Deno.test("imageGrids() gives preprocessImages()'s grids from sizes alone, and its refusals", async () => {
  // Random sizes and settings, images and videos (odd frame counts, bounds of their own), as
  // pixels, as sizes, and one as a file: every grid as preprocessing makes it.
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const png = await Deno.readFile(new URL("reference/case0_0.png", MODEL)); // 56 × 56
  const pixels = (width: number, height: number) => ({
    width,
    height,
    data: new Uint8Array(width * height * 3),
  });
  for (let trial = 0; trial < 12; trial++) {
    const config = {
      ...DEFAULT_IMAGE_PROCESSOR_CONFIG,
      minPixels: 3136,
      maxPixels: 40000 + rand(200000),
    };
    const videoConfig = {
      ...DEFAULT_VIDEO_PROCESSOR_CONFIG,
      minPixels: 3136,
      maxPixels: 30000 + rand(90000),
    };
    const images = Array.from({ length: 1 + rand(3) }, (_, k) => {
      const size = () => pixels(20 + rand(600), 20 + rand(600));
      if (k === 0 && trial % 4 === 0) return png;
      if (rand(2)) return size();
      const frame = size();
      const bounds = rand(2) ? { maxPixels: 4000 + rand(60000) } : {};
      return { frames: Array.from({ length: 1 + rand(5) }, () => frame), ...bounds };
    });
    const want = await preprocessImages(images, config, { videoConfig });
    assert.deepEqual(
      await imageGrids(images, config, { videoConfig }),
      want.gridThw,
      `trial ${trial}`,
    );
    const sizes = images.map((x) => {
      const first = x instanceof Uint8Array
        ? { width: 56, height: 56 }
        : "frames" in x
        ? x.frames[0]
        : x;
      return { width: first.width, height: first.height };
    });
    const stripped = images.map((x) =>
      "frames" in x ? { ...x, frames: x.frames.map(() => png) } : png
    );
    assert.deepEqual(
      await imageGrids(stripped, config, { videoConfig, sizes }),
      want.gridThw,
      `trial ${trial}, sizes`,
    );
  }
  const config = await fixtureConfig();
  await assert.rejects(
    () => imageGrids([png, png, png], config, { maxImageTokens: 8 }),
    (e: Error) =>
      e instanceof ContextLengthError &&
      /^Image 2: .*need 12 image tokens.*context of 8/.test(e.message),
  );
  await assert.rejects(
    () => imageGrids([png], config, { sizes: [{ width: 5000, height: 20 }] }),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /^Image 0: Image aspect ratio is too extreme/.test(e.message),
  );
  // Over the decoded-pixel limit: refused as preprocessImages() refuses it (not a grid).
  const over = { width: 8193, height: 8192, data: new Uint8Array(0) };
  await assert.rejects(
    () => imageGrids([png], config, { sizes: [over] }),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /^Image 0: RGB image is 8193x8192 = 67117056 pixels, more than the limit/.test(e.message),
  );
  await assert.doesNotReject(() =>
    imageGrids([png], config, { sizes: [{ width: 8192, height: 8192 }] })
  );
});

Deno.test("preprocessImages() refuses decoded pixels past maxImageTokens before resizing them", async () => {
  const config = await fixtureConfig();
  // Resizing copies the pixels into wasm's memory, which never shrinks: a check after the resize
  // would have grown it by their 48 MB (more than any earlier test of this file needed).
  const big = { width: 4000, height: 4000, data: new Uint8Array(4000 * 4000 * 3) };
  await loadWasm();
  const memory = () => (wasm.stMemory() as WebAssembly.Memory).buffer.byteLength;
  const before = memory();
  await assert.rejects(
    () => preprocessImages([big], config, { maxImageTokens: 8 }),
    (e: Error) => e instanceof ContextLengthError && /^Image 0: /.test(e.message),
  );
  assert.ok(memory() - before < big.data.length, `wasm memory ${before} → ${memory()} bytes`);
});
