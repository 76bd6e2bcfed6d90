import assert from "node:assert/strict";
import { FormatCompiler } from "./_format_compiler.ts";
import { compileFormat, type FormatJob } from "../generate/options.ts";
import { SchemaError } from "../errors.ts";

Deno.test("FormatCompiler compiles on its own thread what compileFormat() compiles here, and passes refusals by name", async () => {
  const compiler = new FormatCompiler();
  try {
    const job: FormatJob = {
      kind: "schema",
      value: { type: "object", properties: { n: { type: "integer", minimum: 3 } } },
    };
    const [there, regex, refused] = await Promise.all([
      compiler.compile(job),
      compiler.compile({ kind: "regex", value: "(yes|no)[0-9]{2}" }),
      compiler.compile({ kind: "schema", value: { type: "string", pattern: "(q)\\1" } }),
    ]);
    const here = compileFormat(job);
    assert.ok("dfa" in there);
    assert.equal(there.dfa.states, here.states);
    assert.deepEqual(there.dfa.next, here.next);
    assert.deepEqual(there.dfa.accept, here.accept);
    assert.ok("dfa" in regex && regex.dfa.states > 1);
    let message = "";
    try {
      compileFormat({ kind: "schema", value: { type: "string", pattern: "(q)\\1" } });
    } catch (e) {
      assert.ok(e instanceof SchemaError);
      message = e.message;
    }
    assert.deepEqual(refused, { error: { name: "SchemaError", message } });
    assert.equal(compiler.pending, 0);
  } finally {
    compiler.close();
  }
});

Deno.test("FormatCompiler.close() ends its thread: a compile waiting ends as failed, a later one rejects", async () => {
  const compiler = new FormatCompiler();
  const waiting = compiler.compile({ kind: "choice", value: ["a", "b"] });
  compiler.close();
  const done = await waiting;
  assert.ok("error" in done && /closed/.test(done.error.message));
  await assert.rejects(compiler.compile({ kind: "choice", value: ["a"] }), /closed/);
  compiler.close(); // again: nothing
});

Deno.test("FormatCompiler.start() starts its thread before the first compile, which then runs on it", async () => {
  // A worker started from a worker's thread (the engine's) takes ~1 s to run in Deno 2.9.6: on
  // first use, the first request with a format after each load waited that long for a compile
  // that takes a millisecond.
  const started: string[] = [];
  const Original = globalThis.Worker;
  globalThis.Worker = class extends Original {
    constructor(url: string | URL, options?: WorkerOptions) {
      super(url, options);
      started.push(String(url));
    }
  };
  const compiler = new FormatCompiler();
  try {
    compiler.start();
    assert.equal(started.length, 1);
    assert.match(started[0], /_format_worker\.ts$/);
    compiler.start(); // again: the same thread
    const done = await compiler.compile({ kind: "choice", value: ["a", "b"] });
    assert.ok("dfa" in done);
    assert.equal(started.length, 1);
  } finally {
    globalThis.Worker = Original;
    compiler.close();
  }
  compiler.start(); // closed: nothing
  assert.equal(started.length, 1);
});
