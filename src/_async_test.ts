import assert from "node:assert/strict";
import { within } from "./_async.ts";

Deno.test("within() gives a value that comes in time, undefined for one that does not, and passes a rejection on", async () => {
  assert.equal(await within(Promise.resolve(7), 1000), 7);
  const never = new Promise<number>(() => {});
  assert.equal(await within(never, 10), undefined);
  const late = new Promise<number>((resolve) => {
    const t = setTimeout(() => resolve(1), 200);
    Deno.unrefTimer(t);
  });
  assert.equal(await within(late, 10), undefined);
  await assert.rejects(within(Promise.reject(new Error("no")), 1000), /no/);
  // The test's sanitizer fails on a timer left behind: within() clears its own.
});
