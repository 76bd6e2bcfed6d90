import assert from "node:assert/strict";
import { sharedGpu } from "./device.ts";
import {
  createReadback,
  createStorage,
  deviceScratch,
  gpuIdle,
  readBytes,
  readMapped,
  uploadArray,
} from "./buffers.ts";

Deno.test("deviceScratch() keeps one buffer per device and replaces it only when a call needs more", async () => {
  const gpu = await sharedGpu();
  const scratch = deviceScratch("test.scratch");
  const a = scratch(gpu, 1000);
  assert.equal(a.size, 1000);
  assert.equal(a.label, "test.scratch");
  assert.equal(scratch(gpu, 1000), a);
  assert.equal(scratch(gpu, 8), a, "a smaller request reuses the buffer");
  const b = scratch(gpu, 1001);
  assert.notEqual(b, a);
  assert.equal(b.size, 1004, "rounded up to whole words");
  assert.equal(scratch(gpu, 1004), b);
  const c = deviceScratch("test.other")(gpu, 8);
  assert.notEqual(c, b, "each scratch holds its own buffer");
  [a, b, c].forEach((buf) => buf.destroy());
});

/** Copies `src` into a fresh readback buffer (primed or not) and starts mapping it. */
function copyAndMap(gpu: Awaited<ReturnType<typeof sharedGpu>>, src: GPUBuffer, primed: boolean) {
  const staging = primed
    ? createReadback(gpu, src.size, "test.readback")
    : gpu.device.createBuffer({
      size: src.size,
      usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
    });
  const enc = gpu.device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, src.size);
  gpu.device.queue.submit([enc.finish()]);
  const mapped = staging.mapAsync(GPUMapMode.READ);
  const state = { settled: false };
  mapped.then(() => state.settled = true, () => state.settled = true);
  return { staging, mapped, state };
}

Deno.test("readMapped() reads a readback buffer as soon as Deno's mapAsync call has waited, not 10 ms later", async () => {
  const gpu = await sharedGpu();
  const src = uploadArray(gpu, Uint32Array.from([7, 8, 9, 10, 11, 12]));
  for (let round = 0; round < 3; round++) {
    const m = copyAndMap(gpu, src, true);
    const bytes = await readMapped(m.staging, m.mapped, 10);
    assert.equal(bytes.byteLength, 10);
    assert.deepEqual([...new Uint8Array(bytes)], [7, 0, 0, 0, 8, 0, 0, 0, 9, 0]);
    // Deno 2.9.6 maps inside the call and resolves after a 10 ms sleep: the bytes came first.
    // (Only on Deno 2.9, as CI runs: readMapped awaits elsewhere. A Deno that resolved at once
    // would fail here too: then the fast path is moot.)
    assert.equal(m.state.settled, false, `round ${round}: read before the promise settled`);
    assert.equal(m.staging.mapState, "unmapped");
    await m.mapped;
    m.staging.destroy();
  }
  // A buffer not made by createReadback is read only once its promise settles (Deno panics on a
  // range taken before a buffer's first mapping resolved).
  const m = copyAndMap(gpu, src, false);
  const bytes = await readMapped(m.staging, m.mapped, 24);
  assert.equal(m.state.settled, true);
  assert.deepEqual([...new Uint32Array(bytes)], [7, 8, 9, 10, 11, 12]);
  m.staging.destroy();
  src.destroy();
});

Deno.test("readMapped() rejects when the map fails; readBytes() reads a range; gpuIdle() skips the 10 ms sleep", async () => {
  const gpu = await sharedGpu();
  const staging = createReadback(gpu, 16, "test.destroyed");
  staging.destroy();
  gpu.device.pushErrorScope("validation");
  await assert.rejects(readMapped(staging, staging.mapAsync(GPUMapMode.READ), 16));
  assert.match((await gpu.device.popErrorScope())?.message ?? "", /destroyed/);

  const src = uploadArray(gpu, Uint32Array.from({ length: 64 }, (_, i) => i * 3));
  assert.deepEqual([...new Uint32Array(await readBytes(gpu, src, 12, 40))], [30, 33, 36]);
  // gpuIdle() settles without Deno's 10 ms sleep: an onSubmittedWorkDone() asked for just before
  // it (which waited in its call, as gpuIdle's map does) is still pending when gpuIdle resolves.
  const dst = createStorage(gpu, 256, "test.dst");
  const enc = gpu.device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, dst, 0, 256);
  gpu.device.queue.submit([enc.finish()]);
  const done = { settled: false };
  const workDone = gpu.device.queue.onSubmittedWorkDone().then(() => done.settled = true);
  await gpuIdle(gpu);
  assert.equal(done.settled, false, "gpuIdle() waited out the 10 ms sleep");
  await workDone;
  assert.deepEqual([...new Uint32Array(await readBytes(gpu, dst, 16, 240))], [180, 183, 186, 189]);
  [src, dst].forEach((b) => b.destroy());
});
