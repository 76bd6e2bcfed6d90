import assert from "node:assert/strict";
import { FifoLock } from "./fifo_lock.ts";

const tick = () => new Promise((r) => setTimeout(r, 1));

Deno.test("FifoLock.acquire() serves callers one at a time, in call order", async () => {
  const lock = new FifoLock();
  const log: string[] = [];
  const job = async (name: string, ms: number) => {
    const release = await lock.acquire();
    log.push(`${name}+`);
    await new Promise((r) => setTimeout(r, ms));
    log.push(`${name}-`);
    release();
  };
  await Promise.all([job("a", 5), job("b", 1), job("c", 1)]);
  assert.deepEqual(log, ["a+", "a-", "b+", "b-", "c+", "c-"]);
  assert.equal(lock.pending, 0);
});

Deno.test("FifoLock.acquire() with a signal that aborts while queued rejects and lets the next one in", async () => {
  const lock = new FifoLock();
  const first = await lock.acquire();
  const ac = new AbortController();
  const second = lock.acquire(ac.signal);
  let thirdGot = false;
  const third = lock.acquire().then((r) => {
    thirdGot = true;
    return r;
  });
  ac.abort(new Error("gone"));
  await assert.rejects(second, /gone/);
  await tick();
  assert.equal(thirdGot, false, "still behind the first holder");
  first();
  (await third)();
  assert.equal(lock.pending, 0);
});

Deno.test("FifoLock release is idempotent", async () => {
  const lock = new FifoLock();
  const r = await lock.acquire();
  r();
  r();
  assert.equal(lock.pending, 0);
  (await lock.acquire())();
});

Deno.test("FifoLock with 2 places lets two callers in at once, the third when one leaves", async () => {
  const lock = new FifoLock(2);
  const a = await lock.acquire(), b = await lock.acquire();
  let letIn = false;
  const c = lock.acquire().finally(() => (letIn = true));
  await tick();
  assert.equal(letIn, false, "both places are held");
  assert.equal(lock.holders, 2);
  assert.equal(lock.pending, 3);
  b();
  const got = await c;
  assert.equal(letIn, true);
  assert.equal(lock.holders, 2);
  a();
  got();
  assert.equal(lock.pending, 0);
});

Deno.test("FifoLock.acquire({ all }) waits for every place to empty, and those behind it wait for it", async () => {
  const lock = new FifoLock(3);
  const log: string[] = [];
  const a = await lock.acquire();
  const all = lock.acquire(undefined, { all: true }).then((r) => (log.push("all"), r));
  // Behind the caller that needs every place: in line, though two places are free.
  const later = lock.acquire().then((r) => (log.push("later"), r));
  await tick();
  assert.deepEqual(log, []);
  a();
  const releaseAll = await all;
  await tick();
  assert.deepEqual(log, ["all"]);
  assert.equal(lock.holders, 1);
  releaseAll();
  (await later)();
  assert.deepEqual(log, ["all", "later"]);
  assert.equal(lock.pending, 0);
});

Deno.test("FifoLock: a caller that aborts at the head of the line lets the one behind it in", async () => {
  const lock = new FifoLock(2);
  const a = await lock.acquire();
  const ac = new AbortController();
  const all = lock.acquire(ac.signal, { all: true });
  let letIn = false;
  const behind = lock.acquire().finally(() => (letIn = true));
  await tick();
  assert.equal(letIn, false, "waits behind the caller needing both places");
  ac.abort(new Error("gone"));
  await assert.rejects(all, /gone/);
  const got = await behind;
  assert.equal(letIn, true, "one place was free all along");
  a();
  got();
  assert.equal(lock.pending, 0);
});

Deno.test("FifoLock refuses a number of places that is not a whole number ≥ 1", () => {
  for (const bad of [0, -1, 1.5, NaN]) {
    assert.throws(() => new FifoLock(bad), /places must be a whole number ≥ 1/);
  }
});

Deno.test("FifoLock.acquire() with an aborted signal rejects at once and takes no place", async () => {
  const lock = new FifoLock();
  const ac = new AbortController();
  ac.abort(new Error("before"));
  await assert.rejects(lock.acquire(ac.signal), /before/);
  assert.equal(lock.pending, 0);
  (await lock.acquire())();
});
