import assert from "node:assert/strict";
import { sharedGpu } from "../gpu/device.ts";
import { createStorage, readU32, uploadArray } from "../gpu/buffers.ts";
import { type BatchRecorder, pumpTokens } from "./token_pump.ts";

/** A fake decode: "step i" copies script[i] into ring[i] on the GPU queue, as a sampler would. */
async function fakeDecode(n: number) {
  const gpu = await sharedGpu();
  const script = uploadArray(gpu, Uint32Array.from({ length: n }, (_, i) => 1000 + i * 7));
  const ring = createStorage(gpu, n * 4, "ring");
  const calls: [number, number][] = [];
  const record: BatchRecorder = (enc, first, count) => {
    calls.push([first, count]);
    enc.copyBufferToBuffer(script, first * 4, ring, first * 4, count * 4);
  };
  return { gpu, ring, calls, record, dispose: () => [script, ring].forEach((b) => b.destroy()) };
}

Deno.test("pumpTokens() yields every ring entry in order, in batches growing 1, 2, 4 … maxBatch", async () => {
  const f = await fakeDecode(100);
  const batches: number[][] = [];
  const options = { total: 100, maxBatch: 16, batchMs: Infinity };
  for await (const ids of pumpTokens(f.gpu, f.ring, f.record, options)) {
    batches.push([...ids]);
  }
  assert.deepEqual(batches.map((b) => b.length), [1, 2, 4, 8, 16, 16, 16, 16, 16, 5]);
  assert.deepEqual(batches.flat(), Array.from({ length: 100 }, (_, i) => 1000 + i * 7));
  assert.deepEqual(f.calls.map(([first]) => first), [0, 1, 3, 7, 15, 31, 47, 63, 79, 95]);
  f.dispose();
});

Deno.test("pumpTokens() hands over a side ring's entries with each batch, before its ids", async () => {
  const f = await fakeDecode(50);
  // Three words an entry: entry i holds (i, 2i, 3i), written by the recorder as the ring is.
  const words = 3;
  const script = uploadArray(
    f.gpu,
    Uint32Array.from({ length: 50 * words }, (_, j) => Math.floor(j / words) * (1 + (j % words))),
  );
  const sideRing = createStorage(f.gpu, 50 * words * 4, "side");
  const record: BatchRecorder = (enc, first, count) => {
    f.record(enc, first, count);
    enc.copyBufferToBuffer(
      script,
      first * words * 4,
      sideRing,
      first * words * 4,
      count * words * 4,
    );
  };
  const taken: [number, number[]][] = [];
  const side = {
    buffer: sideRing,
    entryBytes: words * 4,
    take: (w: Uint32Array, first: number, count: number) => {
      taken.push([first, [...w.subarray(0, count * words)]]);
    },
  };
  let entries = 0, batches = 0;
  for await (const ids of pumpTokens(f.gpu, f.ring, record, { total: 50, maxBatch: 16, side })) {
    assert.equal(taken.length, ++batches, "one take a batch, before its ids");
    const [first, w] = taken.at(-1)!;
    assert.equal(first, entries);
    assert.deepEqual(
      w,
      Array.from({ length: ids.length * words }, (_, j) => {
        const i = first + Math.floor(j / words);
        return i * (1 + (j % words));
      }),
    );
    assert.deepEqual(
      [...ids],
      Array.from({ length: ids.length }, (_, j) => 1000 + (first + j) * 7),
    );
    entries += ids.length;
  }
  assert.equal(entries, 50);
  await assert.rejects(
    pumpTokens(f.gpu, f.ring, record, { total: 1, side: { ...side, entryBytes: 6 } }).next(),
    /whole u32 words, got 6 bytes/,
  );
  await assert.rejects(
    pumpTokens(f.gpu, f.ring, record, { total: 50, side: { ...side, entryBytes: 16 } }).next(),
    /entries 0 \+ 50 do not fit the side ring of 37 entries/,
  );

  [script, sideRing].forEach((b) => b.destroy());
  f.dispose();
});

Deno.test("pumpTokens() has the next batch submitted when it hands a batch over, and records none further", async () => {
  const f = await fakeDecode(40);
  const seen: number[] = [];
  for await (
    const ids of pumpTokens(f.gpu, f.ring, f.record, { total: 40, maxBatch: 8, batchMs: Infinity })
  ) {
    // when batch k is handed over, batch k + 1 is submitted (if any is left); k + 2 is recorded
    // only after the consumer took k, so a consumer that stops leaves no batch recorded unsent
    seen.push(f.calls.length);
    assert.ok(ids.length > 0);
  }
  assert.deepEqual(seen, [2, 3, 4, 5, 6, 7, 8, 8]);
  f.dispose();
});

Deno.test("pumpTokens() submits nothing more once the consumer stops", async () => {
  const f = await fakeDecode(64);
  let got = 0;
  for await (const ids of pumpTokens(f.gpu, f.ring, f.record, { total: 64, batchMs: Infinity })) {
    got += ids.length;
    if (got >= 3) break;
  }
  assert.equal(got, 3);
  // One batch past the stop, submitted as the stop's batch was read; none recorded and never
  // submitted (its command buffer's native memory stayed until a garbage collection: ≈ 0.3 MB
  // an answer ended by a stop, the loop stop or an abort).
  assert.deepEqual(f.calls, [[0, 1], [1, 2], [3, 4]], "recorded: one batch past the stop");
  // It ran; nothing after it did: those ring entries are still 0.
  const ring = await readU32(f.gpu, f.ring, 15);
  assert.deepEqual([...ring.subarray(3, 7)], [1021, 1028, 1035, 1042]);
  assert.deepEqual([...ring.subarray(7, 15)], Array(8).fill(0));
  f.dispose();
});

Deno.test("pumpTokens() honours firstBatch, first and an empty budget, and refuses a budget over the ring", async () => {
  const f = await fakeDecode(10);
  const sizes: number[] = [];
  for await (
    const ids of pumpTokens(f.gpu, f.ring, f.record, {
      total: 10,
      firstBatch: 4,
      batchMs: Infinity,
    })
  ) {
    sizes.push(ids.length);
  }
  assert.deepEqual(sizes, [4, 6]);
  for await (const _ of pumpTokens(f.gpu, f.ring, f.record, { total: 0 })) {
    assert.fail("no batch expected");
  }
  await assert.rejects(async () => {
    for await (const _ of pumpTokens(f.gpu, f.ring, f.record, { total: 11 }));
  }, RangeError);
  // Resuming at entry 6: batches record from there, and the ring's end still bounds the budget.
  f.calls.length = 0;
  const rest: number[] = [];
  const resume = { first: 6, total: 4, maxBatch: 2, batchMs: Infinity };
  for await (const ids of pumpTokens(f.gpu, f.ring, f.record, resume)) {
    rest.push(...ids);
  }
  assert.deepEqual(rest, [1042, 1049, 1056, 1063]);
  assert.deepEqual(f.calls, [[6, 1], [7, 2], [9, 1]]);
  await assert.rejects(async () => {
    for await (const _ of pumpTokens(f.gpu, f.ring, f.record, { first: 6, total: 5 }));
  }, RangeError);
  f.dispose();
});

Deno.test("pumpTokens() stops growing batches once one runs batchMs of GPU time", async () => {
  const f = await fakeDecode(40);
  // A clock where each step takes 15 ms: its k-th reading (at batch k's wait) is 15 ms × the
  // entries of batches 0 … k, plus a prefill's 500 ms that batch 0's wait also covers (untimed).
  let readings = 0;
  const now = () => 500 + 15 * f.calls.slice(0, ++readings).reduce((a, [, n]) => a + n, 0);
  const sizes: number[] = [];
  for await (const ids of pumpTokens(f.gpu, f.ring, f.record, { total: 40, batchMs: 100, now })) {
    sizes.push(ids.length);
  }
  // 4 steps (60 ms) are under 100 ms, so the next batch doubles; 8 (120 ms) are not.
  assert.deepEqual(sizes, [1, 2, 4, 8, 8, 8, 8, 1]);
  f.dispose();
});

Deno.test("pumpTokens() lets the event loop run between handing a batch over and the next wait", async () => {
  const f = await fakeDecode(15);
  // A 0 ms timer set when a batch is handed over has fired by the next batch: a server's writes
  // and a closed connection's abort are seen between batches, not a batch later.
  const fired: boolean[] = [];
  let flag: { fired: boolean } = { fired: true };
  for await (const _ of pumpTokens(f.gpu, f.ring, f.record, { total: 15, batchMs: Infinity })) {
    fired.push(flag.fired);
    const mine: { fired: boolean } = flag = { fired: false };
    setTimeout(() => mine.fired = true, 0);
  }
  assert.deepEqual(fired, [true, true, true, true]);
  f.dispose();
});

Deno.test("pumpTokens() ends without submitting more once its signal aborts", async () => {
  const f = await fakeDecode(40);
  const ac = new AbortController();
  const got: number[] = [];
  const options = { total: 40, batchMs: Infinity, signal: ac.signal };
  for await (const ids of pumpTokens(f.gpu, f.ring, f.record, options)) {
    got.push(...ids);
    ac.abort(); // the consumer keeps iterating: the pump itself must end
  }
  assert.deepEqual(got, [1000]);
  assert.deepEqual(f.calls, [[0, 1], [1, 2], [3, 4]]);
  // The batch submitted with the first one's wait ran; the one recorded after it never did.
  const ring = await readU32(f.gpu, f.ring, 7);
  assert.deepEqual([...ring], [1000, 1007, 1014, 0, 0, 0, 0]);
  f.dispose();
});
