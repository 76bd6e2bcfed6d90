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
