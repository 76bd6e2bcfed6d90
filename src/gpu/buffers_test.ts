import assert from "node:assert/strict";
import { sharedGpu } from "./device.ts";
import { deviceScratch } from "./buffers.ts";

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
