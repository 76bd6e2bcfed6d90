import assert from "node:assert/strict";
import { EngineHolder } from "./_engine_holder.ts";
import { DisposableFake, FakeEngine, waitFor } from "./_fake_engine.ts";

/** A loading function that counts its loads and keeps the engines it made. */
function loader(options: { fail?: (n: number) => Error | undefined } = {}) {
  const engines: DisposableFake[] = [];
  const load = () => {
    const error = options.fail?.(engines.length + 1);
    if (error) {
      engines.push(undefined as unknown as DisposableFake);
      return Promise.reject(error);
    }
    const e = new DisposableFake();
    engines.push(e);
    return Promise.resolve(e);
  };
  return { load, engines };
}

Deno.test("an engine given as it is, or as a promise, is held for good: it cannot be unloaded", async () => {
  const engine = new DisposableFake();
  for (const holder of [new EngineHolder(engine), new EngineHolder(Promise.resolve(engine))]) {
    await holder.first;
    assert.equal(holder.state, "loaded");
    assert.equal(holder.canUnload, false); // no way to load it again
    await holder.unload();
    assert.equal(holder.state, "loaded");
    assert.equal(engine.disposed, false);
    const lease = await holder.acquire({ unloadAfter: true });
    lease.release();
    assert.equal(holder.state, "loaded");
  }
});

Deno.test("unload() frees an idle engine (once closed) and the next request loads it again; requests that come meanwhile wait for it", async () => {
  const { load, engines } = loader();
  const holder = new EngineHolder(load);
  assert.equal(holder.state, "loading");
  const first = await holder.first;
  assert.equal(holder.canUnload, true);
  const unloading = holder.unload();
  assert.equal(holder.state, "unloading");
  assert.equal(holder.engine, undefined);
  assert.equal(holder.known, first); // what it is, still known
  assert.equal(engines[0].disposed, true);
  // A request now waits for the unload to end, then for the load again.
  const next = holder.acquire();
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(holder.waiting, 1);
  assert.equal(engines.length, 1); // not loaded again while the first still frees the GPU
  engines[0].free();
  await unloading;
  const lease = await next;
  assert.equal(engines.length, 2);
  assert.equal(lease.engine, engines[1]);
  assert.equal(holder.state, "loaded");
  assert.equal(holder.waiting, 0);
  lease.release();
  assert.equal(holder.state, "loaded"); // the unload asked for was done: loaded again, it stays
});

Deno.test("unload() while requests hold the engine waits for them; a later request's keep_alive undoes it (the last one counts)", async () => {
  const { load, engines } = loader();
  const holder = new EngineHolder(load);
  await holder.first;
  const a = await holder.acquire();
  await holder.unload(); // at once: the engine goes when a is done
  assert.equal(holder.state, "loaded");
  assert.equal(holder.unloadsWhenIdle, true);
  a.release();
  assert.equal(holder.state, "unloading");
  engines[0].free();
  // A request with keep_alive 0 unloads it after itself; one after it keeps it.
  const b = await holder.acquire({ unloadAfter: true });
  assert.equal(engines.length, 2);
  b.release();
  assert.equal(holder.state, "unloading");
  engines[1].free();
  await waitFor(() => holder.state === "unloaded", "the unload");
  const c = await holder.acquire({ unloadAfter: true });
  const d = await holder.acquire({ unloadAfter: false });
  c.release();
  d.release();
  assert.equal(holder.state, "loaded");
  assert.equal(engines.length, 3);
  // One that does not say (a /tokenize) leaves it as the last one said.
  const g = await holder.acquire({ unloadAfter: true });
  (await holder.acquire()).release();
  g.release();
  assert.equal(holder.state, "unloading");
  engines[2].free();
  await waitFor(() => holder.state === "unloaded", "the unload");
  // A lease released twice counts once.
  const e = await holder.acquire({ unloadAfter: false });
  assert.equal(engines.length, 4);
  const f = await holder.acquire();
  holder.unload();
  e.release();
  e.release();
  assert.equal(holder.state, "loaded");
  f.release();
  assert.equal(holder.state, "unloading");
});

Deno.test("a load again that fails refuses the requests that waited for it; the next request tries again; a first load that fails fails for good", async () => {
  const { load, engines } = loader({
    fail: (n) => n === 2 ? new Error("out of GPU memory") : undefined,
  });
  const holder = new EngineHolder(load);
  await holder.first;
  holder.unload();
  engines[0].free();
  await waitFor(() => holder.state === "unloaded", "the unload");
  await assert.rejects(holder.acquire(), /out of GPU memory/);
  assert.equal(holder.state, "unloaded");
  const lease = await holder.acquire();
  assert.equal(lease.engine, engines[2]);

  const broken = new EngineHolder(() => Promise.reject(new Error("no such model")));
  await assert.rejects(broken.first, /no such model/);
  assert.equal(broken.state, "failed");
  assert.match(String(broken.loadError), /no such model/);
  await assert.rejects(broken.acquire(), /no such model/);
  await assert.rejects(broken.untilKnown(), /no such model/);
  const thrown = new EngineHolder(() => {
    throw new Error("thrown at once");
  });
  await assert.rejects(thrown.first, /thrown at once/);
});

Deno.test("untilKnown() waits for the first load, counted as waiting until its client leaves", async () => {
  const { promise, resolve } = Promise.withResolvers<FakeEngine>();
  const holder = new EngineHolder(promise);
  const gone = new AbortController();
  const a = holder.untilKnown();
  const b = holder.untilKnown(gone.signal);
  assert.equal(holder.waiting, 2);
  gone.abort();
  assert.equal(holder.waiting, 1);
  const engine = new FakeEngine();
  resolve(engine);
  assert.equal(await a, engine);
  assert.equal(await b, engine);
  assert.equal(holder.waiting, 0);
  assert.equal(await holder.untilKnown(), engine);
});

Deno.test("a transient request (a /tokenize) loads an unloaded engine for its call only, unless another request comes for it meanwhile; loaded, it changes nothing", async () => {
  const { load, engines } = loader();
  const holder = new EngineHolder(load);
  await holder.first;
  // Loaded: a transient lease leaves it loaded.
  (await holder.acquire({ transient: true })).release();
  assert.equal(holder.state, "loaded");
  // Unloaded: loaded for the transient lease, unloaded again after it.
  const unloading = holder.unload();
  engines[0].free();
  await unloading;
  const t = await holder.acquire({ transient: true });
  assert.equal(engines.length, 2);
  t.release();
  assert.equal(holder.state, "unloading");
  engines[1].free();
  await waitFor(() => holder.state === "unloaded", "the unload after the transient lease");
  // The review's race: a request waits while the engine unloads, a transient one comes after it;
  // the load both waited for stays (the waiting request asked for the model).
  const again = holder.unload(); // nothing loaded: nothing to do
  await again;
  const chat = holder.acquire();
  const tokenize = holder.acquire({ transient: true });
  const [c, k] = await Promise.all([chat, tokenize]);
  assert.equal(engines.length, 3);
  k.release();
  c.release();
  assert.equal(holder.state, "loaded");
  assert.equal(engines[2].disposed, false);
  // And with the unload still freeing the GPU when they come.
  const u = holder.unload();
  assert.equal(holder.state, "unloading");
  const chat2 = holder.acquire();
  const tokenize2 = holder.acquire({ transient: true });
  engines[2].free();
  await u;
  const [c2, k2] = await Promise.all([chat2, tokenize2]);
  c2.release();
  k2.release();
  assert.equal(holder.state, "loaded");
  assert.equal(engines.length, 4);
  assert.equal(engines[3].disposed, false);
});
