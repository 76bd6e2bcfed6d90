import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32 } from "../src/gpu/buffers.ts";
import { fillValues } from "../src/ref/fill.ts";
import { assertClose } from "../src/ref/_random.ts";
import { submit } from "../src/model/vision.ts";
import { fill } from "./fill.ts";
import { type Dispatch, ParamsArena, run, withParamsArena } from "./_kernel.ts";

// Dispatches whose params sit in a ParamsArena: each its own seed and base (distinct params per
// slot), built in two batches with a submit between (the second batch's params written by the
// second submit's flush), more dispatches than the arena has slots (the rest take buffers of
// their own), and a nested withParamsArena (served by the outer arena). Every region must hold
// the reference fill of its own params: a slot read at the wrong offset, or before its flush,
// gives another seed's values or zeros.
// As kernels/fill_test.ts: the GPU's f32 arithmetic against the f64 reference.
const TOL = 3e-7;

Deno.test("withParamsArena(): dispatches read their own params from the arena, past its room too, across submits", async () => {
  const gpu = await sharedGpu();
  const n = 64, regions = 7;
  const y = createStorage(gpu, regions * n * 4, "y");
  // Region i (256 bytes: a storage offset alignment) filled with seed 100 + i, scale 1 + i.
  const region = (i: number) => ({ buffer: y, offset: i * n * 4, size: n * 4 });
  const make = (i: number): Dispatch =>
    fill(gpu, region(i), { count: n, dtype: "f32", seed: 100 + i, scale: 1 + i, base: i * n });
  const want = (i: number) => fillValues(n, 100 + i, 1 + i, 0, i * n);
  let arena: ParamsArena | undefined;
  withParamsArena(gpu, 4, () => {
    arena = gpu.paramsArena;
    assert.ok(arena instanceof ParamsArena);
    submit(gpu, [0, 1, 2].map(make), "first");
    const nested = withParamsArena(gpu, 100, () => gpu.paramsArena);
    assert.equal(nested, arena);
    submit(gpu, [3, 4, 5, 6].map(make), "second"); // slot 4 and on: past the arena's room
  });
  assert.equal(gpu.paramsArena, undefined);
  const got = await readF32(gpu, y, regions * n);
  for (let i = 0; i < regions; i++) {
    assertClose(got.subarray(i * n, (i + 1) * n), want(i), TOL, `region ${i}`);
  }
  // run() flushes too; a take() past the room answers undefined.
  const small = new ParamsArena(gpu, 1);
  assert.ok(small.take(new ArrayBuffer(16)));
  assert.equal(small.take(new ArrayBuffer(16)), undefined);
  small.destroy();
  run(gpu, [fill(gpu, region(1), { count: n, dtype: "f32", seed: 1, scale: 1 })]); // overwrite
  withParamsArena(gpu, 2, () => run(gpu, [make(1)]));
  assertClose((await readF32(gpu, y, 2 * n)).subarray(n), want(1), TOL, "run()");
  y.destroy();
});
