import assert from "node:assert/strict";
import { GpuError, InvalidInputError } from "../errors.ts";
import { sharedGpu } from "../gpu/device.ts";
import { parseConfig } from "./config.ts";
import { PRESETS } from "./presets.ts";
import { Session } from "./session.ts";
import { TINY_DIR } from "./_fixture.ts";

Deno.test("Session allocates a KV cache per layer and frees it on dispose()", async () => {
  const gpu = await sharedGpu();
  const t = parseConfig(JSON.parse(await Deno.readTextFile(`${TINY_DIR}config.json`))).text;
  const s = new Session(gpu, t, 100);
  await s.ready();
  assert.equal(s.cache.length, 2);
  assert.equal(s.cache[0].k.size, 100 * 16 * 4); // (maxTokens, kvHeads · headDim) f32
  assert.equal(s.tokens.size, 400);
  assert.equal(s.logits.size, 151936 * 4);
  s.dispose();
  assert.equal(s.disposed, true);
  await assert.rejects(() => s.ready(), InvalidInputError);
  s.dispose(); // twice is harmless
});

Deno.test("Session refuses a KV cache over the binding limit, naming the largest maxTokens that fits", async () => {
  const gpu = await sharedGpu();
  const t = parseConfig(PRESETS["QVQ-72B-Preview"]).text; // 8 KV heads × 128: 4 KiB per token per layer
  const fits = Math.floor(gpu.maxBinding / 4096);
  assert.throws(() => new Session(gpu, t, fits + 1), (e: Error) => {
    assert.ok(e instanceof GpuError);
    assert.match(e.message, new RegExp(`use a smaller maxTokens \\(at most ${fits}\\)`));
    return true;
  });
  assert.throws(() => new Session(gpu, t, 1), /maxTokens must be an integer ≥ 2, got 1/);
});
