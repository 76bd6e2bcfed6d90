import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readU32, writeArray } from "../src/gpu/buffers.ts";
import { InvalidInputError } from "../src/errors.ts";
import { assertLogprobsClose, logprobsRef } from "../src/ref/logprobs.ts";
import { argmax } from "../src/ref/sample.ts";
import { randn, seeded } from "../src/ref/_random.ts";
import {
  checkLogprobs,
  logprobs,
  logprobWords,
  MAX_TOP_LOGPROBS,
  parseLogprobRecords,
  promptLogprobs,
} from "./logprobs.ts";
import { createSamplingParams, GREEDY, sample, writeSamplingParams } from "./sample.ts";
import { advance, createDecodeState, writeDecodeState } from "./state.ts";
import { type Dispatch, run } from "./_kernel.ts";

/**
 * Greedy-samples `logits` (the same every step) after prefill and for `steps` decode steps with
 * the logprobs dispatches after each sampler, and returns the records and the chosen ids, and the
 * words of a spare record past the ring's capacity (the kernels must leave it zero).
 */
async function records(
  logits: Float32Array,
  top: number,
  steps = 0,
  capacity = steps + 1,
  subgroups?: boolean,
) {
  const gpu = await sharedGpu();
  const vocab = logits.length;
  const b = {
    logits: createStorage(gpu, vocab * 4),
    prompt: createStorage(gpu, 4),
    params: createSamplingParams(gpu),
    state: createDecodeState(gpu),
    tokens: createStorage(gpu, capacity * 4),
    scores: createStorage(gpu, capacity * 4),
    out: createStorage(gpu, (capacity + 1) * logprobWords(top) * 4),
  };
  writeArray(gpu, b.logits, logits);
  // A large presence penalty makes each step choose another token: every record's chosen id differs.
  writeSamplingParams(gpu, b.params, { ...GREEDY, presencePenalty: 1000, promptLength: 0 });
  writeDecodeState(gpu, b.state, { cacheLen: 0, position: 0, step: 0 });
  const shape = { vocab, capacity };
  const ds = [
    sample(gpu, b, { ...shape, afterPrefill: true }),
    logprobs(gpu, b, { ...shape, top, afterPrefill: true, subgroups }),
  ];
  const next = [sample(gpu, b, shape), logprobs(gpu, b, { ...shape, top, subgroups })];
  const adv = advance(gpu, b.state);
  const all: Dispatch[] = [...ds];
  for (let i = 0; i < steps; i++) all.push(...next, adv);
  run(gpu, all);
  const kept = Math.min(steps + 1, capacity);
  const words = await readU32(gpu, b.out, (capacity + 1) * logprobWords(top));
  const ids = await readU32(gpu, b.tokens, kept);
  [...ds, ...next, adv].forEach((d) => d.destroy());
  Object.values(b).forEach((x) => x.destroy());
  return {
    recs: parseLogprobRecords(words, kept, top),
    ids: [...ids],
    spare: [...words.subarray(capacity * logprobWords(top))],
  };
}

function assertClose(got: number, want: number, what: string) {
  assert.ok(
    Math.abs(got - want) <= 2e-5 * Math.max(1, Math.abs(want)),
    `${what}: ${got} vs ${want}`,
  );
}

/** Both reductions where the device has subgroups (the default), else the barrier trees alone. */
async function variants(): Promise<boolean[]> {
  return (await sharedGpu()).features.subgroups ? [true, false] : [false];
}

Deno.test("logprobs() matches log_softmax and the top ids of the CPU reference, every step", async () => {
  const rng = seeded(50);
  // The real vocabulary (149 slices, the last partial), a partial single slice, and a tiny one.
  const cases = [[151936, 20, 3], [3000, 5, 2], [7, 7, 1], [151936, 0, 1]];
  for (const subgroups of await variants()) {
    for (const [vocab, top, steps] of cases) {
      const x = randn(rng, vocab, 3);
      const { recs, ids } = await records(x, top, steps, steps + 1, subgroups);
      assert.equal(ids[0], argmax(x));
      assert.equal(new Set(ids).size, ids.length, "the penalty moved the choice each step");
      for (const [w, rec] of recs.entries()) {
        assertLogprobsClose(rec, logprobsRef(x, ids[w], top), `vocab ${vocab} entry ${w}`);
      }
    }
  }
});

Deno.test("logprobs() lists tied logits by id, across slices, and normalises over the whole vocabulary", async () => {
  // Eight ties at the top, spread over three slices and within one thread's four.
  const x = new Float32Array(5000).fill(-4);
  const tied = [4999, 2050, 3, 2049, 1024, 2, 777, 4096];
  for (const i of tied) x[i] = 2.5;
  x[10] = 2.75;
  for (const subgroups of await variants()) {
    const { recs } = await records(x, 10, 0, 1, subgroups);
    const [rec] = recs;
    assert.deepEqual(rec.top.map((t) => t.id), [10, ...tied.sort((a, b) => a - b), 0]);
    // log_softmax: 1 at 2.75, 8 at 2.5, the rest at -4.
    const z = Math.exp(2.75) + 8 * Math.exp(2.5) + (5000 - 9) * Math.exp(-4);
    assertClose(rec.logprob, 2.75 - Math.log(z), "chosen");
    assertClose(rec.top[1].logprob, 2.5 - Math.log(z), "tied");
    assertClose(rec.top[9].logprob, -4 - Math.log(z), "the rest");
  }
});

Deno.test("logprobs() ranks −∞ logits as real tokens, on both reductions", async () => {
  // A slice whose tail is −∞ (masked logits): they are still tokens, ranked by id, with −∞ logprobs.
  const x = new Float32Array(2000).fill(-Infinity);
  x[0] = 1, x[1] = 0.5, x[1500] = 0.25;
  for (const subgroups of await variants()) {
    const { recs } = await records(x, 5, 0, 1, subgroups);
    const [rec] = recs;
    assert.deepEqual(rec.top.map((t) => t.id), [0, 1, 1500, 2, 3], `subgroups ${subgroups}`);
    const lse = Math.log(Math.exp(1) + Math.exp(0.5) + Math.exp(0.25));
    assertClose(rec.logprob, 1 - lse, "chosen");
    assert.deepEqual(rec.top.slice(3).map((t) => t.logprob), [-Infinity, -Infinity]);
    // A whole slice of −∞ (ids 0..1023) adds nothing to Σ exp: the rest's logprobs stay finite.
    const y = randn(seeded(52), 3000, 2);
    y.fill(-Infinity, 0, 1024);
    const r = (await records(y, 3, 0, 1, subgroups)).recs[0];
    const want = logprobsRef(y, r.id, 3);
    assertClose(r.logprob, want.logprob, "beside a −∞ slice");
    assert.deepEqual(r.top.map((t) => t.id), want.top.map((t) => t.id));
  }
});

Deno.test("logprobs() drops a record past the ring and refuses bad shapes by name", async () => {
  const gpu = await sharedGpu();
  // capacity 2, 3 steps: entries 2 and 3 are not written; the two kept are right.
  const x = randn(seeded(51), 2048, 1);
  const { recs, ids, spare } = await records(x, 2, 3, 2);
  assert.deepEqual(spare, Array(logprobWords(2)).fill(0));
  recs.forEach((r, w) => {
    const want = logprobsRef(x, ids[w], 2);
    assert.deepEqual([r.id, ...r.top.map((t) => t.id)], [want.id, ...want.top.map((t) => t.id)]);
    assertClose(r.logprob, want.logprob, `entry ${w}`);
  });
  const b = {
    logits: createStorage(gpu, 16),
    state: createDecodeState(gpu),
    tokens: createStorage(gpu, 16),
    out: createStorage(gpu, 16),
  };
  assert.throws(
    () => logprobs(gpu, b, { vocab: 4, capacity: 1, top: MAX_TOP_LOGPROBS + 1 }),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /top must be an integer in \[0, 4\] \(the vocabulary has 4 tokens\), got 21/.test(e.message),
  );
  // More alternatives than tokens: refused rather than listed as ids that do not exist.
  assert.throws(() => logprobs(gpu, b, { vocab: 3, capacity: 1, top: 5 }), /\[0, 3\].*got 5/);
  assert.throws(
    () => logprobs(gpu, b, { vocab: 151936, capacity: 1, top: 21 }),
    /top must be an integer in \[0, 20\], got 21/,
  );
  assert.throws(() => logprobs(gpu, b, { vocab: 0, capacity: 1, top: 1 }), /vocab/);
  // A device with the WebGPU default 16 KiB of workgroup memory: room for just the count asked
  // (its own shader), up to what fits; then a named error before any work.
  const small = { limits: { maxComputeWorkgroupStorageSize: 16384 } } as unknown as typeof gpu;
  assert.deepEqual(checkLogprobs(small, 151936, 5).room, 5);
  assert.deepEqual(checkLogprobs(small, 151936, 0).room, 0);
  assert.throws(
    () => checkLogprobs(small, 151936, 11),
    /11 alternatives over a 151936-token vocabulary need 16780 bytes .* this adapter has 16384/,
  );
  assert.equal(checkLogprobs(gpu, 151936, 3).room, 20);
  // Any count of alternatives from 1 to 20 is one shader (no compile at a new top_logprobs).
  const keys = [0, 1, 7, 20].map((top) => {
    const d = logprobs(gpu, b, { vocab: 151936, capacity: 1, top });
    const key = d.variant.key;
    d.destroy();
    return key;
  });
  assert.equal(new Set(keys.slice(1)).size, 1);
  assert.notEqual(keys[0], keys[1]);
  Object.values(b).forEach((x) => x.destroy());
});

Deno.test("promptLogprobs() scores each row of a block for its own id, as the CPU reference", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(53);
  // [vocab, rows, top, offset]: the real vocabulary over a few rows, a partial slice, one row.
  const cases = [[151936, 3, 20, 1], [3000, 9, 4, 5], [7, 2, 7, 0], [2048, 1, 0, 2]];
  for (const subgroups of await variants()) {
    for (const [vocab, rows, top, offset] of cases) {
      const x = randn(rng, rows * vocab, 3);
      // Each row's id: its argmax on even rows, a random other token on odd ones.
      const ids = new Uint32Array(offset + rows + 1).map((_, i) => (i * 7919) % vocab);
      for (let r = 0; r < rows; r += 2) {
        ids[offset + r] = argmax(x.subarray(r * vocab, (r + 1) * vocab));
      }
      const b = {
        logits: createStorage(gpu, x.byteLength),
        ids: createStorage(gpu, ids.byteLength),
        out: createStorage(gpu, (rows + 1) * logprobWords(top) * 4),
      };
      writeArray(gpu, b.logits, x);
      writeArray(gpu, b.ids, ids);
      const d = promptLogprobs(gpu, b, { vocab, rows, top, offset, subgroups });
      run(gpu, [d]);
      const words = await readU32(gpu, b.out, (rows + 1) * logprobWords(top));
      const recs = parseLogprobRecords(words, rows, top);
      for (const [r, rec] of recs.entries()) {
        const what = `vocab ${vocab} row ${r} subgroups ${subgroups}`;
        const want = logprobsRef(x.subarray(r * vocab, (r + 1) * vocab), ids[offset + r], top);
        assertLogprobsClose(rec, want, what);
      }
      // Nothing past the block's rows is written.
      assert.deepEqual(
        [...words.subarray(rows * logprobWords(top))],
        Array(logprobWords(top)).fill(0),
      );
      d.destroy();
      Object.values(b).forEach((x) => x.destroy());
    }
  }
  const none = createStorage(gpu, 16);
  const b = { logits: none, ids: none, out: none };
  assert.throws(
    () => promptLogprobs(gpu, b, { vocab: 4, rows: 0, top: 0, offset: 0 }),
    /rows must be an integer in \[1, 65535\], got 0/,
  );
  assert.throws(
    () => promptLogprobs(gpu, b, { vocab: 151936, rows: 4096, top: 0, offset: 0 }),
    /4096 rows of 151936 logits exceed this device's \d+-byte binding/,
  );
  none.destroy();
});
