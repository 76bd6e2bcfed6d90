import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32 } from "../src/gpu/buffers.ts";
import { fill } from "../kernels/fill.ts";
import { msPerRep, timePass } from "./_timing.ts";

Deno.test("timePass() runs every repetition; msPerRep() gives a positive time per repetition", async () => {
  const gpu = await sharedGpu();
  const n = 1 << 16;
  const b = createStorage(gpu, n * 4, "bench.b");
  // Repetition r fills with seed r: after R repetitions the buffer holds the last one's values.
  const ds = [0, 1, 2, 3, 4].map((seed) =>
    fill(gpu, b, { count: n, dtype: "f32", seed, scale: 1 })
  );
  const seen: number[] = [];
  const ms = await timePass(gpu, 5, (r, pass) => {
    seen.push(r);
    ds[r].encode(pass);
  }, b);
  assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  assert.ok(ms > 0);
  const last = await readF32(gpu, b, 8);
  const one = createStorage(gpu, n * 4, "bench.one");
  const d4 = fill(gpu, one, { count: n, dtype: "f32", seed: 4, scale: 1 });
  await timePass(gpu, 1, (_, pass) => d4.encode(pass), one);
  assert.deepEqual(last, await readF32(gpu, one, 8));
  const per = await msPerRep(gpu, (r, pass) => ds[r % 5].encode(pass), b, { reps: 4 });
  // A difference of wall times: on a loaded software adapter it may even be negative, never NaN.
  assert.ok(Number.isFinite(per), `${per} ms`);
  [...ds, d4].forEach((d) => d.destroy());
  [b, one].forEach((x) => x.destroy());
});
