import assert from "node:assert/strict";
import { currentThread, THREAD_EXIT_GRACE_MS, threadExited } from "./_thread.ts";

const LINUX = Deno.build.os === "linux";

Deno.test({
  name: "threadExited() resolves once a closed worker's thread is gone",
  ignore: !LINUX,
  fn: async () => {
    const here = currentThread();
    assert.match(here ?? "", new RegExp(`^/proc/${Deno.pid}/task/\\d+$`));
    const source = `self.postMessage(${currentThread.toString()}()); self.close();`;
    const worker = new Worker(URL.createObjectURL(new Blob([source])), { type: "module" });
    const entry = await new Promise<string>((resolve) => worker.onmessage = (e) => resolve(e.data));
    assert.notEqual(entry, here, "the worker runs on a thread of its own");
    assert.match(entry, new RegExp(`^/proc/${Deno.pid}/task/\\d+$`));
    assert.equal(await threadExited(entry), true);
    assert.throws(() => Deno.statSync(entry), "the thread's entry is gone");
  },
});

Deno.test({
  name: "threadExited() gives up on a live thread after its timeout, and waits a grace without one",
  ignore: !LINUX,
  fn: async () => {
    let t = performance.now();
    assert.equal(await threadExited(currentThread(), 30), false, "this thread lives");
    assert.ok(performance.now() - t >= 30);
    t = performance.now();
    assert.equal(await threadExited(null), false);
    assert.ok(performance.now() - t >= THREAD_EXIT_GRACE_MS - 1);
  },
});
