import assert from "node:assert/strict";
import { ndjsonLine, sseResponse } from "./_sse.ts";

Deno.test("sseResponse() writes each event as a data line as soon as it is sent", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const response = sseResponse(async (send) => {
    send({ a: 1 });
    await gate;
    send("[DONE]");
  }, { keepAliveMs: 10_000, controller: new AbortController() });
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  assert.equal(response.headers.get("cache-control"), "no-cache");
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  assert.equal((await reader.read()).value, 'data: {"a":1}\n\n'); // before the producer finished
  release();
  assert.equal((await reader.read()).value, "data: [DONE]\n\n");
  assert.equal((await reader.read()).done, true);
});

Deno.test("sseResponse() sends keep-alive comments only while nothing else is written", async () => {
  // Idle until the client has had two comments (a tick marks the stream idle, the next writes one:
  // not before 40 ms), then busy with an event every 5 ms. (Should the comments never come, the
  // producer goes on after 30 s, and the test fails rather than hangs.)
  const twoComments = Promise.withResolvers<void>();
  const guard = setTimeout(twoComments.resolve, 30_000);
  const start = performance.now();
  const response = sseResponse(async (send) => {
    await twoComments.promise;
    for (let i = 0; i < 5; i++) {
      send(i);
      await new Promise((r) => setTimeout(r, 5));
    }
  }, { keepAliveMs: 20, controller: new AbortController() });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    text += r.value;
    if (text === ": keep-alive\n\n: keep-alive\n\n") {
      assert.ok(
        performance.now() - start >= 30,
        `two comments after ${performance.now() - start} ms`,
      );
      twoComments.resolve();
    }
  }
  clearTimeout(guard);
  const [idle, busy] = [text.slice(0, text.indexOf("data:")), text.slice(text.indexOf("data:"))];
  assert.equal(idle, ": keep-alive\n\n: keep-alive\n\n");
  assert.equal(busy, "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n");
});

Deno.test("sseResponse() aborts the producer's signal when the client cancels the stream", async () => {
  const controller = new AbortController();
  let seen: AbortSignal | undefined;
  let sentAfterCancel = 0;
  const finished = Promise.withResolvers<void>();
  const response = sseResponse(async (send, signal) => {
    seen = signal;
    send("first");
    await new Promise((r) => signal.addEventListener("abort", r));
    send("ignored"); // must not throw on a cancelled stream
    sentAfterCancel++;
    finished.resolve();
  }, { keepAliveMs: 10_000, controller });
  const reader = response.body!.getReader();
  await reader.read();
  await reader.cancel();
  await finished.promise;
  assert.equal(seen, controller.signal);
  assert.equal(controller.signal.aborted, true);
  assert.equal(sentAfterCancel, 1);
});

Deno.test("ndjsonLine() escapes the line separators JSON leaves raw, as Go's encoding/json does", () => {
  const line = ndjsonLine({ content: "one\u2028two\u2029three\u0085four\n" });
  assert.equal(line, '{"content":"one\\u2028two\\u2029three\\u0085four\\n"}');
  assert.deepEqual(JSON.parse(line), { content: "one\u2028two\u2029three\u0085four\n" });
  assert.equal(/[\u0085\u2028\u2029\n]/.test(line), false);
});
