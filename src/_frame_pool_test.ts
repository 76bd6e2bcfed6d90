import assert from "node:assert/strict";
import { runScript } from "./_script.ts";
import { ContextLengthError, InvalidInputError } from "./errors.ts";
import { encodePng } from "./_png.ts";
import {
  decodeImage,
  type FrameAnswer,
  type FrameJob,
  type FramePool,
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
 * are asked for before any answers, so this does not depend on the workers' speed).
 */
function counted(pool: FramePool) {
  const seen = { jobs: 0, inFlight: 0, most: 0, starts: [] as number[] };
  const wrapped: FramePool = {
    size: pool.size,
    async patch(job: FrameJob): Promise<FrameAnswer> {
      seen.jobs++;
      seen.starts.push(job.run.start);
      seen.most = Math.max(seen.most, ++seen.inFlight);
      try {
        return await pool.patch(job);
      } finally {
        seen.inFlight--;
      }
    },
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
      ["image, videos", [a.frames[0], { frames: a.frames }, { frames: b.frames }], 3 + 1],
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

Deno.test("a process that may not read the frame pool's module resizes a video's frames on its own thread", async () => {
  // Deno reads a worker's module with the program's permissions: with only the wasm's folder
  // readable there is no shared pool, and the video is resized here as before.
  const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  const script = `import { preprocessImages, parsePreprocessorConfig } from ${url("./image.ts")};
import { sharedFramePool } from ${url("./_frame_pool.ts")};
import { encodePng } from ${url("./_png.ts")};
const frame = await encodePng(64, 48, new Uint8Array(64 * 48 * 3).map((_, i) => i));
const out = await preprocessImages([{ frames: [frame, frame, frame] }], parsePreprocessorConfig({}));
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
      grid: [[2, 4, 4]],
      pool: null,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
