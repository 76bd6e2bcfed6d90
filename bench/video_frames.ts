/**
 * A video's (or still images') preprocessing on an engine's thread: preprocessImages() of one
 * video of synthetic 1280 × 720 frames — or, with `--images`, of that many still images — (PNG
 * files, or the same decoded, as a server hands them to its engine), run on a Web Worker's thread
 * as the server's engine runs it, resized one after another on that thread (`framePool: null`)
 * or on the shared frame pool (the default, src/_frame_pool.ts), alternating. Prints one JSON
 * line: the medians of each path's wall time and of that thread's longest stretch away from its
 * event loop (the largest gap of a setTimeout(0) chain: while it lasts, an engine answers no call
 * and its decode loop waits).
 *
 *     deno run -A bench/video_frames.ts --frames 8
 *     deno run -A bench/video_frames.ts --frames 16 --max-pixels 200704   # the chat page's bound
 *     deno run -A bench/video_frames.ts --images 1 --size 4032x3024       # a phone photo
 *     deno run -A bench/video_frames.ts --images 4 --size 1280x960
 * @module
 */
/// <reference lib="deno.worker" />
import { parseArgs } from "node:util";
import { encodePng } from "../src/_png.ts";
import { decodeImage, parsePreprocessorConfig, preprocessImages } from "../src/image.ts";
import { sharedFramePool } from "../src/_frame_pool.ts";

interface Job {
  /** Frames of the video; unused with `images`. */
  frames: number;
  /** Still images instead of a video (0: the video). */
  images: number;
  /** Each frame's or image's width and height. */
  size: [number, number];
  maxPixels: number;
  reps: number;
}

/** `n` frames of a moving gradient with noise, as PNG files. */
function syntheticFrames(n: number, width: number, height: number): Promise<Uint8Array[]> {
  let seed = 12345;
  return Promise.all(Array.from({ length: n }, (_, f) => {
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const [x, y, noise] = [i % width, Math.floor(i / width), seed >>> 28];
      rgb.set(
        [(x + f * 9 + noise) & 255, (y + f * 5 + noise) & 255, ((x ^ y) + noise) & 255],
        i * 3,
      );
    }
    return encodePng(width, height, rgb);
  }));
}

async function run({ frames: n, images, size: [width, height], maxPixels, reps }: Job) {
  const config = parsePreprocessorConfig({ min_pixels: 3136, max_pixels: 12845056 }); // tiny-qwen2vl's
  const files = await syntheticFrames(images || n, width, height);
  const decoded = await Promise.all(files.map((f) => decodeImage(f)));
  await sharedFramePool()?.warm();
  const gaps: number[] = [];
  let last = performance.now(), live = true;
  const tick = () => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
    if (live) setTimeout(tick, 0);
  };
  setTimeout(tick, 0);
  const samples: Record<string, number[]> = {};
  let grid;
  for (let rep = 0; rep < reps; rep++) {
    for (const [path, framePool] of [["serial", null], ["pool", undefined]] as const) {
      for (const [kind, frames] of [["png", files], ["decoded", decoded]] as const) {
        gaps.length = 0;
        const start = performance.now();
        const video = { frames, ...(maxPixels ? { maxPixels } : {}) };
        const inputs = images ? frames : [video];
        grid = (await preprocessImages(inputs, config, { framePool })).gridThw[0];
        const ms = performance.now() - start;
        await new Promise((resolve) => setTimeout(resolve, 0)); // the last gap closes
        (samples[`${kind} ${path} ms`] ??= []).push(ms);
        (samples[`${kind} ${path} blocked ms`] ??= []).push(Math.max(...gaps));
      }
    }
  }
  live = false;
  const median = (xs: number[]) => Math.round([...xs].sort((a, b) => a - b)[xs.length >> 1]);
  const medians = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  return {
    ...(images ? { images } : { frames: n }),
    size: `${width}x${height}`,
    maxPixels: maxPixels || null,
    grid,
    workers: sharedFramePool()?.size,
    medians,
  };
}

if (!("WorkerGlobalScope" in globalThis)) {
  const { values } = parseArgs({
    options: {
      frames: { type: "string", default: "8" },
      images: { type: "string", default: "0" },
      size: { type: "string", default: "1280x720" },
      "max-pixels": { type: "string", default: "0" },
      reps: { type: "string", default: "5" },
    },
  });
  const job: Job = {
    frames: Number(values.frames),
    images: Number(values.images),
    size: values.size.split("x").map(Number) as [number, number],
    maxPixels: Number(values["max-pixels"]),
    reps: Number(values.reps),
  };
  const worker = new Worker(import.meta.url, { type: "module" });
  worker.postMessage(job);
  const result = await new Promise((resolve) => worker.onmessage = (e) => resolve(e.data));
  worker.terminate();
  const at = { date: new Date().toISOString(), cores: navigator.hardwareConcurrency };
  console.log(JSON.stringify({ ...at, load: Deno.loadavg()[0], ...result as object }));
} else {
  self.onmessage = async (e: MessageEvent<Job>) => self.postMessage(await run(e.data));
}
