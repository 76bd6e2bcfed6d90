import assert from "node:assert/strict";
import { GpuError, InvalidInputError } from "../errors.ts";
import { sharedGpu } from "../gpu/device.ts";
import { readF32, writeArray } from "../gpu/buffers.ts";
import { parseConfig } from "./config.ts";
import { PRESETS } from "./presets.ts";
import { Session } from "./session.ts";
import { TINY_DIR } from "./_fixture.ts";
import type { Dispatch } from "../../kernels/_kernel.ts";

Deno.test("Session allocates a KV cache per layer and frees it on dispose()", async () => {
  const gpu = await sharedGpu();
  const t = parseConfig(JSON.parse(await Deno.readTextFile(`${TINY_DIR}config.json`))).text;
  const s = new Session(gpu, t, 100, "f32");
  await s.ready();
  assert.equal(s.cache.length, 2);
  assert.equal(s.cache[0].k.size, 100 * 16 * 4); // (maxTokens, kvHeads · headDim) f32
  const h = new Session(gpu, t, 100, "f16");
  assert.equal(h.cache[1].v.size, 100 * 16 * 2);
  assert.equal(h.cache[1].dtype, "f16");
  h.dispose();
  assert.equal(s.tokens.size, 400);
  assert.equal(s.logits.size, 151936 * 4);
  let told = false;
  s.whenDisposed.then(() => told = true);
  s.dispose();
  assert.equal(s.disposed, true);
  await s.whenDisposed;
  assert.ok(told);
  await assert.rejects(() => s.ready(), InvalidInputError);
  s.dispose(); // twice is harmless
});

Deno.test("Session refuses a KV cache over the binding limit, naming the largest maxTokens that fits", async () => {
  const gpu = await sharedGpu();
  // 8 KV heads × 128: 4 KiB (f32) or 2 KiB (f16) per token per layer
  const t = parseConfig(PRESETS["QVQ-72B-Preview"]).text;
  for (const [kv, perToken] of [["f32", 4096], ["f16", 2048]] as const) {
    const fits = Math.floor(gpu.maxBinding / perToken);
    assert.throws(() => new Session(gpu, t, fits + 1, kv), (e: Error) => {
      assert.ok(e instanceof GpuError);
      assert.match(e.message, new RegExp(`use a smaller maxTokens \\(at most ${fits}\\)`));
      return true;
    });
  }
  assert.throws(() => new Session(gpu, t, 1, "f16"), /maxTokens must be an integer ≥ 2, got 1/);
});

Deno.test("Session builds its decode step on first use, once, and dispose() frees what was built", async () => {
  const gpu = await sharedGpu();
  const t = parseConfig(JSON.parse(await Deno.readTextFile(`${TINY_DIR}config.json`))).text;
  const s = new Session(gpu, t, 16, "f32");
  let built = 0;
  const destroyed: number[] = [];
  s.buildDecode = () => {
    built++;
    return [{ destroy: () => destroyed.push(built) }] as unknown as Dispatch[];
  };
  assert.equal(built, 0, "nothing built with the session");
  assert.equal(s.decodeDispatches.length, 1);
  assert.equal(s.decodeDispatches.length, 1);
  assert.equal(built, 1, "built once");
  s.dispose();
  assert.deepEqual(destroyed, [1]);
  assert.throws(() => s.decodeDispatches, InvalidInputError);
  // A session that never decoded builds nothing, not even to free it.
  const u = new Session(gpu, t, 16, "f32");
  u.buildDecode = () => {
    throw new Error("built");
  };
  u.dispose();
});

Deno.test("Session.copyRows() copies K and V rows [0, rows) of every layer, and nothing past them", async () => {
  const gpu = await sharedGpu();
  const t = parseConfig(JSON.parse(await Deno.readTextFile(`${TINY_DIR}config.json`))).text;
  const row = t.numKvHeads * t.headDim; // f32 values a row
  const from = new Session(gpu, t, 12, "f32"), to = new Session(gpu, t, 20, "f32");
  // Every value of the source distinct; the destination's all −1.
  from.cache.forEach((c, i) => {
    for (const [j, b] of [c.k, c.v].entries()) {
      writeArray(gpu, b, Float32Array.from({ length: 12 * row }, (_, x) => i * 1e4 + j * 5e3 + x));
    }
  });
  for (const c of to.cache) {
    for (const b of [c.k, c.v]) writeArray(gpu, b, new Float32Array(20 * row).fill(-1));
  }
  to.copyRows(from, 5);
  for (const [i, c] of to.cache.entries()) {
    for (const [j, b] of [c.k, c.v].entries()) {
      const got = await readF32(gpu, b);
      for (let x = 0; x < 20 * row; x++) {
        assert.equal(
          got[x],
          x < 5 * row ? i * 1e4 + j * 5e3 + x : -1,
          `layer ${i} ${j ? "v" : "k"} [${x}]`,
        );
      }
    }
  }
  assert.throws(() => to.copyRows(from, 13), /rows must be an integer in 0\.\.12, got 13/);
  assert.throws(() => to.copyRows(from, 1.5), InvalidInputError);
  const half = new Session(gpu, t, 12, "f16");
  assert.throws(() => half.copyRows(from, 2), /different models/);
  half.dispose();
  from.dispose();
  assert.throws(() => to.copyRows(from, 2), /disposed/);
  to.dispose();
});
