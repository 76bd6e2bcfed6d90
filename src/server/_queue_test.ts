import assert from "node:assert/strict";
import { GenerationQueue } from "./_queue.ts";

Deno.test("GenerationQueue grants turns one at a time in arrival order", async () => {
  const queue = new GenerationQueue(4);
  const order: string[] = [];
  const a = queue.enter()!, b = queue.enter()!, c = queue.enter()!;
  assert.deepEqual([a.position(), b.position(), c.position()], [0, 1, 2]);
  assert.equal(queue.running, 1);
  assert.equal(queue.waiting, 2);
  b.ready.then(() => order.push("b"));
  c.ready.then(() => order.push("c"));
  await a.ready;
  await Promise.resolve();
  assert.deepEqual(order, []);
  a.release();
  await b.ready;
  assert.deepEqual(order, ["b"]);
  assert.equal(c.position(), 1);
  a.release(); // a second release changes nothing
  assert.equal(queue.waiting, 1);
  b.release();
  await c.ready;
  c.release();
  assert.deepEqual(order, ["b", "c"]);
  assert.equal(queue.running, 0);
  assert.equal(queue.waiting, 0);
});

Deno.test("GenerationQueue refuses entry once maxWaiting requests wait", () => {
  const queue = new GenerationQueue(1);
  const running = queue.enter()!;
  const waiting = queue.enter()!;
  assert.equal(queue.enter(), undefined);
  waiting.release(); // leaving frees the place
  assert.ok(queue.enter());
  running.release();
});

Deno.test("GenerationQueue drops a waiter whose signal aborts and rejects its ready", async () => {
  const queue = new GenerationQueue(4);
  const first = queue.enter()!;
  const gone = new AbortController();
  const quitter = queue.enter(gone.signal)!;
  const last = queue.enter()!;
  gone.abort(new Error("client left"));
  await assert.rejects(quitter.ready, /client left/);
  assert.equal(queue.waiting, 1);
  assert.equal(last.position(), 1);
  first.release();
  await last.ready;
  quitter.release(); // harmless after abort
  assert.equal(queue.running, 1);
  last.release();
  assert.equal(queue.running, 0);
});

Deno.test("GenerationQueue rejects at once for an already aborted signal without taking the turn", async () => {
  const queue = new GenerationQueue(4);
  const ticket = queue.enter(AbortSignal.abort(new Error("gone")))!;
  await assert.rejects(ticket.ready, /gone/);
  assert.equal(queue.running, 0);
  const next = queue.enter()!;
  await next.ready;
  next.release();
});

Deno.test("GenerationQueue runs places() generations at once, and admits more when places() grows", async () => {
  let places = 1;
  const queue = new GenerationQueue(1, () => places);
  const a = queue.enter()!, b = queue.enter()!;
  assert.equal(queue.running, 1);
  assert.equal(queue.full, true);
  // The engine loaded and says it runs two at once: the waiting one goes now.
  places = 2;
  assert.equal(queue.full, false);
  queue.admit();
  await b.ready;
  assert.deepEqual([queue.running, queue.waiting, b.position()], [2, 0, 0]);
  assert.equal(queue.free, false);
  const c = queue.enter()!, d = queue.enter();
  assert.equal(d, undefined, "both places taken and one waiting: full");
  assert.equal(c.position(), 1);
  a.release();
  await c.ready;
  assert.equal(queue.running, 2);
  b.release();
  c.release();
  assert.equal(queue.running, 0);
  assert.equal(queue.free, true);
});
