import assert from "node:assert/strict";
import { HttpError } from "./_errors.ts";
import { nestedDeeper, readJson } from "./_json.ts";

Deno.test("nestedDeeper() counts objects and arrays, not what they hold", () => {
  assert.equal(nestedDeeper(5, 0), false);
  assert.equal(nestedDeeper({}, 1), false);
  assert.equal(nestedDeeper({}, 0), true);
  assert.equal(nestedDeeper({ a: [1, "x", { b: null }] }, 3), false);
  assert.equal(nestedDeeper({ a: [1, "x", { b: [] }] }, 3), true);
  assert.equal(nestedDeeper(new Array(1_000_000).fill(7), 1), false);
});

Deno.test("readJson() refuses what is not JSON and what nests past 256 levels", async () => {
  const read = (body: string) => readJson(new Request("http://x/", { method: "POST", body }));
  assert.deepEqual(await read('{"a":[1]}'), { a: [1] });
  for (
    const [body, re] of [["{", /not valid JSON/], [
      "[".repeat(257) + "]".repeat(257),
      /256 levels/,
    ]] as const
  ) {
    await assert.rejects(
      read(body),
      (e) =>
        e instanceof HttpError && e.status === 400 && e.code === "invalid_json" &&
        re.test(e.message),
    );
  }
  assert.equal((await read("[".repeat(256) + "]".repeat(256)) as unknown[]).length, 1);
});

Deno.test("readJson() refuses a compressed body with a 415 saying so (not 'not valid JSON' and its bytes)", async () => {
  const gzipped = await new Response(
    new Blob(['{"a":1}']).stream().pipeThrough(new CompressionStream("gzip")),
  ).bytes();
  const request = (encoding: string) =>
    new Request("http://x/", {
      method: "POST",
      headers: { "content-encoding": encoding },
      body: encoding === "identity" ? '{"a":1}' : gzipped,
    });
  await assert.rejects(
    readJson(request("gzip")),
    (e) =>
      e instanceof HttpError && e.status === 415 && e.code === "unsupported_content_encoding" &&
      /compressed \(Content-Encoding: gzip\); send it uncompressed/.test(e.message),
  );
  assert.deepEqual(await readJson(request("identity")), { a: 1 });
  // Every coding of a list is one the body went through: one real coding among them is a 415.
  for (const encoding of ["identity, gzip", "BR", "zstd", "deflate"]) {
    await assert.rejects(
      readJson(request(encoding)),
      (e) => e instanceof HttpError && e.status === 415,
      encoding,
    );
  }
});

Deno.test("readJson() reads the body as it is under a Content-Encoding that names no coding (UTF-8: a charset in the wrong header)", async () => {
  // What vLLM's uvicorn/Starlette and Ollama's net/http/gin do with every request's Content-Encoding.
  for (const encoding of ["UTF-8", "utf8", "identity", "", "binary", "UTF-8, identity"]) {
    const request = new Request("http://x/", {
      method: "POST",
      headers: { "content-encoding": encoding },
      body: '{"a":1}',
    });
    assert.deepEqual(await readJson(request), { a: 1 }, encoding);
  }
  // A body that is not JSON under it is a 400 for that, not a 415.
  await assert.rejects(
    readJson(
      new Request("http://x/", {
        method: "POST",
        headers: { "content-encoding": "UTF-8" },
        body: "{",
      }),
    ),
    (e) => e instanceof HttpError && e.status === 400 && e.code === "invalid_json",
  );
});

// A client that leaves mid-body (the soak's clients leaving under load on the H200): Deno's read
// fails with BadResource, which is a 499 nobody reads, not an internal error; any other read
// failure (the body limit's) passes through as it is.
Deno.test("readJson() answers a body its client stopped sending with a 499, and passes other read failures through", async () => {
  const failing = (error: Error) =>
    new Request("http://x/", {
      method: "POST",
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"a":'));
          c.error(error);
        },
      }),
    });
  for (
    const error of [
      new Deno.errors.BadResource("Cannot read body as underlying resource unavailable"),
      new Deno.errors.ConnectionReset("reset"),
      new Deno.errors.UnexpectedEof("eof"),
    ]
  ) {
    await assert.rejects(
      readJson(failing(error)),
      (e) =>
        e instanceof HttpError && e.status === 499 && e.code === "client_closed_request" &&
        /closed the connection/.test(e.message),
    );
  }
  const other = new RangeError("over the body limit");
  await assert.rejects(readJson(failing(other)), (e) => e === other);
});
