import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { layerNorm as layerNormRef, rmsNorm as rmsNormRef } from "../src/ref/norm.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { layerNorm, rmsNorm } from "./norm.ts";
import { run } from "./_kernel.ts";

// rows × cols: 1 row (decode), odd widths, vision (1280) and 7B (3584) hidden sizes.
const SHAPES = [[1, 32], [3, 37], [7, 80], [2, 1280], [5, 3584], [600, 32]];

Deno.test("rmsNorm() matches the CPU reference over random shapes", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(1);
  for (const [rows, cols] of SHAPES) {
    const x = randn(rng, rows * cols, 3), w = randn(rng, cols);
    const [bx, bw, by] = [uploadArray(gpu, x), uploadArray(gpu, w), createStorage(gpu, x.byteLength)];
    const d = rmsNorm(gpu, by, bx, bw, { rows, cols, eps: 1e-6 });
    run(gpu, [d]);
    // f32 sums in a different order than the reference: a few ulps of the row's scale.
    assertClose(await readF32(gpu, by), rmsNormRef(x, w, rows, cols, 1e-6), 1e-5, `rms ${rows}x${cols}`);
    [bx, bw, by].forEach((b) => b.destroy());
    d.destroy();
  }
});

Deno.test("layerNorm() matches the CPU reference over random shapes", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(2);
  for (const [rows, cols] of SHAPES) {
    const x = randn(rng, rows * cols, 2), w = randn(rng, cols), b = randn(rng, cols);
    const bufs = [x, w, b].map((a) => uploadArray(gpu, a));
    const by = createStorage(gpu, x.byteLength);
    const d = layerNorm(gpu, by, bufs[0], bufs[1], bufs[2], { rows, cols, eps: 1e-6 });
    run(gpu, [d]);
    assertClose(await readF32(gpu, by), layerNormRef(x, w, b, rows, cols, 1e-6), 1e-5, `ln ${rows}x${cols}`);
    [...bufs, by].forEach((q) => q.destroy());
    d.destroy();
  }
});

Deno.test("rmsNorm() handles more than 65535 rows through the 2D grid", async () => {
  const gpu = await sharedGpu();
  const rows = 65537, cols = 4;
  const x = randn(seeded(3), rows * cols), w = new Float32Array(cols).fill(1);
  const [bx, bw, by] = [uploadArray(gpu, x), uploadArray(gpu, w), createStorage(gpu, x.byteLength)];
  run(gpu, [rmsNorm(gpu, by, bx, bw, { rows, cols, eps: 1e-6 })]);
  const got = await readF32(gpu, by);
  const want = rmsNormRef(x, w, rows, cols, 1e-6);
  assertClose(got.subarray(-8), want.subarray(-8), 1e-5, "last rows");
});
