import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import { advance, createDecodeState, readDecodeState, writeDecodeState } from "./state.ts";
import { run } from "./_kernel.ts";

Deno.test("advance() increments cache_len, position and step once per encode", async () => {
  const gpu = await sharedGpu();
  const state = createDecodeState(gpu);
  writeDecodeState(gpu, state, { cacheLen: 35, position: 20, step: 0 });
  const d = advance(gpu, state);
  // Three steps recorded into one pass with the same Dispatch, as the decode loop does.
  run(gpu, [d, d, d]);
  assert.deepEqual(await readDecodeState(gpu, state), { cacheLen: 38, position: 23, step: 3 });
  state.destroy();
});

Deno.test("writeDecodeState() rejects values that are not u32", async () => {
  const gpu = await sharedGpu();
  const state = createDecodeState(gpu);
  assert.throws(
    () => writeDecodeState(gpu, state, { cacheLen: -1, position: 0, step: 0 }),
    InvalidInputError,
  );
  assert.throws(
    () => writeDecodeState(gpu, state, { cacheLen: 0, position: 1.5, step: 0 }),
    InvalidInputError,
  );
  state.destroy();
});
