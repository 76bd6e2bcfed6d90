import assert from "node:assert/strict";
import { runScript } from "./_script.ts";
import { ContextLengthError, InvalidInputError } from "./errors.ts";
import { encodePng } from "./_png.ts";
import {
  type DecodedImage,
  decodeImage,
  type FrameAnswer,
  type FrameJob,
  type FramePool,
  type ImageJob,
  parsePreprocessorConfig,
  preprocessImages,
  type PreprocessOptions,
  type VideoInput,
} from "./image.ts";
import { FrameWorkers, sharedFramePool } from "./_frame_pool.ts";
import { readVideoCases } from "./model/_fixture.ts";

const MODEL = new URL("../tests/fixtures/tiny-qwen2vl/", import.meta.url);
const config = parsePreprocessorConfig(
  JSON.parse(await Deno.readTextFile(new URL("preprocessor_config.json", MODEL))),
);
const [a, b] = await readVideoCases(); // 5 frames of 84 x 56; 2 frames of 40 x 70

/** `n` PNG frames of `width` x `height` hash noise, each its own. */
function noiseFrames(n: number, width: number, height: number): Promise<Uint8Array[]> {
  return Promise.all(Array.from({ length: n }, (_, k) => {
    const rgb = new Uint8Array(width * height * 3).map((_, i) =>
      (Math.imul(i ^ (k * 0x9e3779b9), 0x5bd1e995) >>> 13) & 255
    );
    return encodePng(width, height, rgb);
  }));
}

/**
 * `pool` with its jobs counted: how many were asked for, and the most in flight at once (they
 * are asked for before any answers, so this does not depend on the workers' speed); a video's
 * jobs by their first frame, an image's by its name.
 */
function counted(pool: FramePool) {
  const seen = { jobs: 0, inFlight: 0, most: 0, starts: [] as number[], images: [] as string[] };
  const track = async (job: () => Promise<FrameAnswer>): Promise<FrameAnswer> => {
    seen.jobs++;
    seen.most = Math.max(seen.most, ++seen.inFlight);
    try {
      return await job();
    } finally {
      seen.inFlight--;
    }
  };
  const wrapped: FramePool = {
    size: pool.size,
    patch: (job: FrameJob) => (seen.starts.push(job.run.start), track(() => pool.patch(job))),
    image: (job: ImageJob) => (seen.images.push(job.what), track(() => pool.image(job))),
  };
  return { pool: wrapped, seen };
}

/** Whether two arrays of pixel values hold the same bytes (bit for bit, -0 and NaNs included). */
function sameBytes(x: Float32Array, y: Float32Array): boolean {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const v = new Uint32Array(y.buffer, y.byteOffset, y.length);
  return u.length === v.length && u.every((word, i) => word === v[i]);
}

/** preprocessImages()'s outcome: its output, or its error's class and message. */
async function outcome(
  images: Parameters<typeof preprocessImages>[0],
  options: PreprocessOptions,
) {
  try {
    return { out: await preprocessImages(images, config, options) };
  } catch (e) {
    return { error: [(e as Error).constructor.name, (e as Error).message] };
  }
}

Deno.test("preprocessImages() on a FramePool gives the serial path's pixel values and grids bit for bit, a job a temporal patch", async () => {
  const workers = new FrameWorkers({ workers: 2 });
  try {
    const decoded = await Promise.all(a.frames.map(decodeImage));
    const seven = await noiseFrames(7, 123, 77);
    const inputs: [string, (Uint8Array | VideoInput)[], number][] = [
      ["5 files", [{ frames: a.frames }], 3],
      ["5 decoded", [{ frames: decoded }], 3],
      ["own bounds", [{ frames: a.frames, maxPixels: 56 * 56 }], 3],
      ["image, videos", [a.frames[0], { frames: a.frames }, { frames: b.frames }], 1 + 3 + 1],
      ["7 noise frames", [{ frames: seven }], 4],
      ["1 frame", [{ frames: [seven[0]] }], 1],
    ];
    for (const [name, images, jobs] of inputs) {
      const { pool, seen } = counted(workers);
      const serial = await preprocessImages(images, config, { framePool: null });
      const pooled = await preprocessImages(images, config, { framePool: pool });
      assert.deepEqual(pooled.gridThw, serial.gridThw, name);
      assert.ok(sameBytes(pooled.pixelValues, serial.pixelValues), name);
      assert.equal(seen.jobs, jobs, name);
    }
    // The frames were copied to the workers, not moved: the caller's are as they were.
    assert.deepEqual(decoded, await Promise.all(a.frames.map(decodeImage)));
  } finally {
    workers.close();
  }
});

Deno.test("preprocessImages() runs a video's temporal patches on a FramePool at once, up to its size", async () => {
  const workers = new FrameWorkers({ workers: 2 });
  try {
    const { pool, seen } = counted(workers);
    await preprocessImages([{ frames: a.frames }], config, { framePool: pool });
    assert.deepEqual([seen.jobs, seen.most], [3, 2]);
    assert.deepEqual(seen.starts, [0, 2, 4]); // handed out in frame order
  } finally {
    workers.close();
  }
});

Deno.test("preprocessImages() on a FramePool refuses a bad video with the serial path's error, and starts no job after it", async () => {
  const workers = new FrameWorkers({ workers: 1 });
  try {
    const png = a.frames;
    const rgb = await Promise.all(png.map(decodeImage));
    const other = await decodeImage(b.frames[0]); // 40 x 70
    const truncated = png[1].subarray(0, 40); // its header reads, its pixels do not
    const big = { maxImageTokens: 17 }; // under the video's 18 tokens
    const cases: [string, VideoInput["frames"], PreprocessOptions, string][] = [
      ["mixed sizes, a later job's first", [png[0], png[1], b.frames[0], png[3]], {}, "Invalid"],
      ["mixed sizes, inside a later job", [png[0], png[1], png[2], b.frames[0]], {}, "Invalid"],
      ["mixed sizes, decoded", [rgb[0], rgb[1], rgb[2], other], {}, "Invalid"],
      ["mixed sizes, in job 0", [png[0], b.frames[0], png[2]], {}, "Invalid"],
      ["a bad later frame", [...png.slice(0, 4), truncated], {}, "Invalid"],
      ["frame 0 unreadable", [new Uint8Array([1, 2, 3]), ...png], {}, "Invalid"],
      ["frame 0 truncated", [truncated, ...png], {}, "Invalid"],
      // Over the context from frame 0's grid: refused before frame 1 is read, as the serial path.
      ["over the context, bad frame 1", [png[0], truncated, ...png.slice(2)], big, "Context"],
      ["over the context, bad frame 0", [truncated, ...png.slice(1)], big, "Invalid"],
    ];
    for (const [name, frames, options, kind] of cases) {
      const { pool, seen } = counted(workers);
      const serial = await outcome([{ frames }], { ...options, framePool: null });
      const pooled = await outcome([{ frames }], { ...options, framePool: pool });
      assert.equal(
        serial.error?.[0],
        `${kind === "Invalid" ? "InvalidInput" : "ContextLength"}Error`,
        name,
      );
      assert.deepEqual(pooled.error, serial.error, name);
      assert.ok(seen.jobs >= 1, name);
      if (name.startsWith("over the context")) assert.equal(seen.jobs, 1, name);
    }
    // An error a worker sends is qvq's class, with its words.
    await assert.rejects(
      preprocessImages([{ frames: [png[0], png[1], truncated] }], config, { framePool: workers }),
      (e) => e instanceof InvalidInputError && /^Image 0 \(a video\), frame 2: /.test(e.message),
    );
    await assert.rejects(
      preprocessImages([{ frames: png }], config, { framePool: workers, maxImageTokens: 17 }),
      ContextLengthError,
    );
  } finally {
    workers.close();
  }
});

Deno.test("preprocessImages() resizes a video's frames on the shared FramePool by default", async () => {
  const { out } = await outcome([{ frames: a.frames }], {});
  assert.ok(out);
  assert.ok((sharedFramePool()?.started ?? 0) >= 1);
});

Deno.test("FrameWorkers resize a video's frames off the calling thread, whose wasm memory does not grow; idle, they do not keep the process alive", async () => {
  // In a process of its own, whose wasm memory is fresh: 4 frames of 640 x 480 make 25 MB of
  // pixel values, which the calling thread's wasm memory would grow to hold had it made them.
  const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  const script = `import { preprocessImages, parsePreprocessorConfig } from ${url("./image.ts")};
import { FrameWorkers } from ${url("./_frame_pool.ts")};
import { encodePng } from ${url("./_png.ts")};
import { loadWasm, wasm } from ${url("./_wasm.ts")};
const config = parsePreprocessorConfig({ min_pixels: 3136, max_pixels: 12845056 });
const frames = await Promise.all([0, 1, 2, 3].map((k) =>
  encodePng(640, 480, new Uint8Array(640 * 480 * 3).map((_, i) => (i * 7 + k * 13) & 255))
));
await loadWasm();
const memory = () => wasm.stMemory().buffer.byteLength;
const before = memory();
const pooled = await preprocessImages([{ frames }], config, { framePool: new FrameWorkers() });
const afterPool = memory();
const serial = await preprocessImages([{ frames }], config, { framePool: null });
console.log(JSON.stringify({
  values: pooled.pixelValues.length,
  same: pooled.pixelValues.every((x, i) => Object.is(x, serial.pixelValues[i])),
  poolGrew: afterPool - before,
  serialGrew: memory() - afterPool,
}));`;
  // (A worker keeping it alive would hang it: the time limit fails the test.)
  const r = JSON.parse(await runScript(script, 60_000));
  assert.equal(r.values, 2 * 34 * 46 * 1176); // [2, 34, 46]: 476 x 644
  assert.ok(r.same);
  assert.equal(r.poolGrew, 0);
  assert.ok(r.serialGrew > 0, `the serial path grew it by ${r.serialGrew}`);
});

Deno.test("FrameWorkers.warm() starts every worker, each then ready for a job", async () => {
  const workers = new FrameWorkers({ workers: 3 });
  try {
    await workers.warm();
    assert.equal(workers.started, 3);
    const { pool, seen } = counted(workers);
    await preprocessImages([{ frames: a.frames }], config, { framePool: pool });
    assert.deepEqual([seen.jobs, workers.started], [3, 3]); // no worker started for them
  } finally {
    workers.close();
  }
});

Deno.test("a process that may not read the frame pool's module resizes images and a video's frames on its own thread", async () => {
  // Deno reads a worker's module with the program's permissions: with only the wasm's folder
  // readable there is no shared pool, and the image and the video are resized here as before.
  const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  const script = `import { preprocessImages, parsePreprocessorConfig } from ${url("./image.ts")};
import { sharedFramePool } from ${url("./_frame_pool.ts")};
import { encodePng } from ${url("./_png.ts")};
const frame = await encodePng(64, 48, new Uint8Array(64 * 48 * 3).map((_, i) => i));
const config = parsePreprocessorConfig({});
const out = await preprocessImages([frame, { frames: [frame, frame, frame] }], config);
console.log(JSON.stringify({ grid: out.gridThw, pool: sharedFramePool() ?? null }));`;
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/use.ts`, script);
    const wasmDir = new URL("../wasm/pkg/", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", `--allow-read=${wasmDir}`, "--no-check", `${dir}/use.ts`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
      grid: [[1, 4, 4], [2, 4, 4]],
      pool: null,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Image files of every format the pool takes: PNG, JPEG (one turned by its EXIF), WebP. */
async function imageFiles(): Promise<Uint8Array[]> {
  const images = new URL("../tests/fixtures/images/", import.meta.url);
  return await Promise.all(
    [
      "decode/png_rgb16.png",
      "decode/jpeg_420.jpg",
      "orientation/jpeg_6.jpg",
      "decode/webp_lossy_alpha.webp",
      "decode/webp_lossless.webp",
    ].map((f) => Deno.readFile(new URL(f, images))),
  );
}

Deno.test("preprocessImages() on a FramePool resizes still images a job each, to the serial path's pixel values and grids bit for bit", async () => {
  const workers = new FrameWorkers({ workers: 2 });
  try {
    const files = [...await imageFiles(), ...await noiseFrames(2, 300, 200)];
    const decoded = await Promise.all(files.map(decodeImage));
    const mixed = [files[0], decoded[1], { frames: a.frames }, files[3], decoded[4], files[2]];
    const large = {
      width: 1500,
      height: 1000,
      data: new Uint8Array(1500 * 1000 * 3).map((_, i) => (Math.imul(i, 0x5bd1e995) >>> 13) & 255),
    };
    const inputs: [string, (Uint8Array | DecodedImage | VideoInput)[], PreprocessOptions][] = [
      ["files", files, {}],
      ["decoded", decoded, {}],
      ["one", [files[1]], {}],
      ["images and a video", mixed, {}],
      ["video first", [{ frames: b.frames }, ...files.slice(0, 3)], {}],
      // Pixels and rows past a slice of a copy (4 MiB): copied a slice at a time.
      ["large", [large, files[0], large], {}],
      ["within maxImageTokens", mixed, { maxImageTokens: 1_000_000 }],
      ["videoConfig", mixed, { videoConfig: { ...config, maxPixels: 56 * 56 } }],
    ];
    for (const [name, images, options] of inputs) {
      const { pool, seen } = counted(workers);
      const serial = await preprocessImages(images, config, { ...options, framePool: null });
      const pooled = await preprocessImages(images, config, { ...options, framePool: pool });
      assert.deepEqual(pooled.gridThw, serial.gridThw, name);
      assert.ok(sameBytes(pooled.pixelValues, serial.pixelValues), name);
      const stills = images.flatMap((x, i) => "frames" in x ? [] : [`Image ${i}`]);
      assert.deepEqual(seen.images, stills, name); // a job each, in order
    }
    // Settings with more in them than the processor reads, one a function the structured clone
    // refuses: the workers get what the processor reads.
    const odd = { ...config, describe: () => "tiny" };
    const serial = await preprocessImages(mixed, odd, { framePool: null });
    const pooled = await preprocessImages(mixed, odd, { framePool: workers });
    assert.ok(sameBytes(pooled.pixelValues, serial.pixelValues));
    // The images were copied to the workers, not moved: the caller's are as they were.
    assert.deepEqual(decoded, await Promise.all(files.map(decodeImage)));
  } finally {
    workers.close();
  }
});

Deno.test("preprocessImages() runs a request's still images on a FramePool at once, up to its size, while the calling thread goes on", async () => {
  // A pool whose answers wait for the test: what is in flight is seen with no worker's timing.
  const workers = new FrameWorkers({ workers: 3 });
  try {
    const files = await noiseFrames(5, 64, 48);
    const held: (() => void)[] = [];
    let hold = true;
    const { pool, seen } = counted({
      size: workers.size,
      patch: (job) => workers.patch(job),
      image: async (job) => {
        const answer = await workers.image(job);
        if (hold) await new Promise<void>((resolve) => held.push(resolve));
        return answer;
      },
    });
    let settled = false;
    const out = preprocessImages(files, config, { framePool: pool }).finally(() => settled = true);
    while (held.length < 3 && !settled) await new Promise((resolve) => setTimeout(resolve, 0));
    // The calling thread ran this loop while three jobs were resized on the workers, answered.
    assert.deepEqual([seen.inFlight, seen.images], [3, ["Image 0", "Image 1", "Image 2"]]);
    hold = false;
    held.forEach((release) => release());
    const serial = await preprocessImages(files, config, { framePool: null });
    assert.ok(sameBytes((await out).pixelValues, serial.pixelValues));
    assert.deepEqual([seen.jobs, seen.most], [5, 3]);
  } finally {
    workers.close();
  }
});

Deno.test("preprocessImages() on a FramePool refuses a bad image with the serial path's error, and starts no job after it", async () => {
  const one = new FrameWorkers({ workers: 1 }), two = new FrameWorkers({ workers: 2 });
  try {
    const bad = (file: string) =>
      Deno.readFile(new URL(`../tests/fixtures/images/bad/${file}`, import.meta.url));
    const [png, jpeg] = await imageFiles();
    const small = a.frames[0]; // 84 x 56: [1, 4, 6], 6 image tokens
    const rgb = await decodeImage(jpeg); // 37 x 23: [1, 4, 6], 6 image tokens
    const truncated = png.subarray(0, png.length / 2); // its header reads, its pixels do not
    const huge = { width: 4000, height: 4000, data: new Uint8Array(4000 * 4000 * 3) };
    const flat = { width: 300, height: 1, data: new Uint8Array(900) };
    const empty = { width: 0, height: 0, data: new Uint8Array(0) };
    const video = { frames: a.frames }; // 18 image tokens
    // name, images, maxImageTokens, the jobs started one at a time: none after the failing one
    const cases: [
      string,
      (Uint8Array | DecodedImage | VideoInput)[],
      number | undefined,
      number,
    ][] = [
      ["truncated PNG", [small, truncated, small, small], undefined, 2],
      ["truncated JPEG first", [jpeg.subarray(0, 400), small, small], undefined, 1],
      ["GIF", [small, await bad("gif_1x1.gif"), small], undefined, 2],
      ["empty", [new Uint8Array(0), small], undefined, 1],
      ["zero width", [small, await bad("png_zero_width.png")], undefined, 2],
      ["PNG bomb", [await bad("png_bomb.png"), small], undefined, 1],
      ["JPEG bomb", [small, await bad("jpeg_bomb.jpg")], undefined, 2],
      ["WebP bomb", [small, await bad("webp_bomb.webp"), small], undefined, 2],
      ["elongated", [small, await encodePng(300, 1, new Uint8Array(900)), small], undefined, 2],
      ["elongated, decoded", [small, flat, small], undefined, 2],
      ["empty, decoded", [empty, small], undefined, 1],
      ["a video's bad frame", [small, { frames: [small, truncated] }, small], undefined, 2],
      // Over the context at the third image; decoded pixels are refused before any job of theirs.
      ["over the context", [small, small, small, small], 12, 3],
      ["over, decoded", [small, small, huge, small], 12, 2],
      ["over, decoded first", [huge, small], 12, 0],
      ["over, after decoded", [rgb, rgb, rgb], 12, 2],
      // A file over the context whose pixels do not decode: the serial path's InvalidInputError.
      ["over, truncated", [small, truncated], 6, 2],
      ["over, then bad", [small, small, png.subarray(0, 60)], 6, 2],
      ["bad, then over", [small, png.subarray(0, 60), huge], 6, 2],
      ["over, by a video", [small, video, small], 20, 2],
      ["over, after a video", [video, small, huge], 24, 3 + 1],
    ];
    for (const [name, images, maxImageTokens, jobs] of cases) {
      const serial = await outcome(images, { maxImageTokens, framePool: null });
      assert.ok(serial.error, name);
      for (const workers of [one, two]) {
        const { pool, seen } = counted(workers);
        const pooled = await outcome(images, { maxImageTokens, framePool: pool });
        assert.deepEqual(pooled.error, serial.error, `${name}, ${workers.size} at once`);
        if (workers === one) assert.equal(seen.jobs, jobs, name);
      }
    }
    // Errors a worker sends are qvq's classes, in its words.
    await assert.rejects(
      preprocessImages([small, await bad("gif_1x1.gif")], config, { framePool: two }),
      (e) => e instanceof InvalidInputError && /^Image 1: unsupported image format/.test(e.message),
    );
    await assert.rejects(
      preprocessImages([small, small], config, { framePool: two, maxImageTokens: 6 }),
      (e) => e instanceof ContextLengthError && /^Image 1: /.test(e.message),
    );
  } finally {
    one.close();
    two.close();
  }
});

Deno.test("preprocessImages() resizes still images on the shared FramePool by default, and on the calling thread with framePool null", async () => {
  // In processes of their own: the shared pool starts its first worker for the image, or none.
  const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  const script = (framePool: string) =>
    `import { preprocessImages, parsePreprocessorConfig } from ${url("./image.ts")};
import { sharedFramePool } from ${url("./_frame_pool.ts")};
import { encodePng } from ${url("./_png.ts")};
const png = await encodePng(64, 48, new Uint8Array(64 * 48 * 3).map((_, i) => i));
const out = await preprocessImages([png], parsePreprocessorConfig({}), { framePool: ${framePool} });
console.log(JSON.stringify({ grid: out.gridThw, started: sharedFramePool()?.started }));`;
  assert.deepEqual(JSON.parse(await runScript(script("undefined"), 60_000)), {
    grid: [[1, 4, 4]],
    started: 1,
  });
  assert.deepEqual(JSON.parse(await runScript(script("null"), 60_000)), {
    grid: [[1, 4, 4]],
    started: 0,
  });
});

Deno.test("FrameWorkers resize still images off the calling thread, whose wasm memory does not grow", async () => {
  const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  const script = `import { preprocessImages, parsePreprocessorConfig } from ${url("./image.ts")};
import { FrameWorkers } from ${url("./_frame_pool.ts")};
import { encodePng } from ${url("./_png.ts")};
import { loadWasm, wasm } from ${url("./_wasm.ts")};
const config = parsePreprocessorConfig({ min_pixels: 3136, max_pixels: 12845056 });
const rgb = (k) => new Uint8Array(640 * 480 * 3).map((_, i) => (i * 7 + k * 13) & 255);
const images = [await encodePng(640, 480, rgb(0)), { width: 640, height: 480, data: rgb(1) }];
await loadWasm();
const memory = () => wasm.stMemory().buffer.byteLength;
const before = memory();
const pooled = await preprocessImages(images, config, { framePool: new FrameWorkers() });
const afterPool = memory();
const serial = await preprocessImages(images, config, { framePool: null });
console.log(JSON.stringify({
  grids: pooled.gridThw,
  same: pooled.pixelValues.every((x, i) => Object.is(x, serial.pixelValues[i])),
  poolGrew: afterPool - before,
  serialGrew: memory() - afterPool,
}));`;
  const r = JSON.parse(await runScript(script, 60_000));
  assert.deepEqual(r.grids, [[1, 34, 46], [1, 34, 46]]);
  assert.ok(r.same);
  assert.equal(r.poolGrew, 0);
  assert.ok(r.serialGrew > 0, `the serial path grew it by ${r.serialGrew}`);
});

Deno.test("WorkerPool fails a job whose message cannot cross to a worker, and keeps neither it nor the process for it", async () => {
  // A message the structured clone refuses (a function in it): the job fails at once, and the
  // pool holds no entry for it, whose time limit (a minute) would keep the process alive, then
  // end the worker and every job on it.
  const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  const script = `import { WorkerPool } from ${url("./_worker_pool.ts")};
const pool = new WorkerPool({
  module: new URL(${url("./_frame_worker.ts")}),
  name: "a pool",
  workers: 1,
  timeoutMs: 60_000,
  retireBytes: 2 ** 30,
});
const error = await pool.run({ warm: true, f: () => 0 }, "a job").then(() => "none", (e) => e.name);
const warm = await pool.run({ warm: true }, "a job");
console.log(JSON.stringify({ error, values: warm.values, started: pool.started }));`;
  // (The entry left behind would hold the process for a minute: the time limit fails the test.)
  assert.deepEqual(JSON.parse(await runScript(script, 30_000)), {
    error: "DataCloneError",
    values: [],
    started: 1,
  });
});
