import assert from "node:assert/strict";
import { TINY_DIR } from "../model/_fixture.ts";
import { loadEngine } from "./_engine.ts";
import { createApp } from "./app.ts";
import {
  describeWeights,
  type FromWorker,
  handOverImages,
  loadWorkerEngine,
  WorkerEngine,
} from "./worker_engine.ts";
import { decodeImage } from "../image.ts";
import { currentThread } from "./_thread.ts";
import {
  ContextLengthError,
  DeviceLostError,
  EngineClosedError,
  InvalidInputError,
  ModelFileError,
  QvqError,
  SchemaError,
} from "../errors.ts";
import type {
  ChatEngine,
  ChatMessage,
  GenerationEvent,
  GenerationResult,
} from "../generate/types.ts";

const TEXT: ChatMessage[] = [{ role: "user", content: "Write one sentence about the sea." }];

/** The deltas joined and the final record of one generation (a raw prompt's with a string). */
async function answer(engine: ChatEngine, messages: ChatMessage[] | string, options = {}) {
  let text = "";
  let result: GenerationResult | undefined;
  const events = typeof messages === "string"
    ? engine.complete!(messages, options)
    : engine.generate(messages, options);
  for await (const ev of events as AsyncIterable<GenerationEvent>) {
    if (ev.type === "delta") text += ev.text;
    else result = ev.result;
  }
  return { text, result: result! };
}

Deno.test("loadWorkerEngine() answers as the pipeline on this thread does, images included", async () => {
  const image = await Deno.readFile(`${TINY_DIR}reference/case0_0.png`);
  const withImage: ChatMessage[] = [{
    role: "user",
    content: [{ type: "image", image }, { type: "text", text: "What is in the image?" }],
  }];
  // Two generations at once, here and there (the option crosses: with one place there, its
  // prompt cache's one session would serve the image prompt's start, cachedTokens 14 not 0).
  const here = await loadEngine(TINY_DIR, { progress: false, parallel: 2 });
  const worker = await loadWorkerEngine(TINY_DIR, { progress: false, parallel: 2 });
  try {
    assert.equal(worker.modelId, here.modelId);
    for (const messages of [TEXT, withImage]) {
      const options = { maxNewTokens: 6, temperature: 0, logprobs: true, topLogprobs: 2 };
      const want = await answer(here, messages, options);
      const got = await answer(worker, messages, options);
      assert.equal(got.text, want.text);
      assert.equal(got.result.logprobs?.length, 6);
      assert.deepEqual(got.result.logprobs, want.result.logprobs);
      assert.equal(got.result.text, want.result.text);
      assert.deepEqual(got.result.usage, want.result.usage);
      assert.equal(got.result.finishReason, want.result.finishReason);
    }
    // A raw prompt crosses too (Pipeline.complete there).
    const raw = { maxNewTokens: 3, temperature: 0 };
    const rawWant = await answer(here, "The sea is", raw);
    const rawGot = await answer(worker, "The sea is", raw);
    assert.equal(rawGot.text, rawWant.text);
    assert.deepEqual(rawGot.result.usage, rawWant.result.usage);
    await assert.rejects(answer(worker, "", raw), InvalidInputError);
    // A schema compiled on the worker's compiling thread (src/server/_format_compiler.ts) holds
    // the answer as the one compiled here; a refused one is refused alike, before queueing too.
    const schema = {
      type: "object",
      properties: { a: { type: "integer", minimum: 1, maximum: 9 } },
      required: ["a"],
    };
    const held = { maxNewTokens: 12, temperature: 0, responseFormat: { jsonSchema: schema } };
    const heldWant = await answer(here, TEXT, held);
    const heldGot = await answer(worker, TEXT, held);
    assert.equal(heldGot.text, heldWant.text);
    assert.equal(heldGot.result.finishReason, heldWant.result.finishReason);
    const bad = { responseFormat: { jsonSchema: { type: "string", pattern: "(q)\\1" } } };
    const refusal = await here.checkChat(TEXT, bad).then(() => undefined, (e: Error) => e);
    assert.ok(refusal instanceof SchemaError);
    await assert.rejects(
      worker.checkChat(TEXT, bad),
      (e: Error) => e instanceof SchemaError && e.message === refusal.message,
    );
    await assert.rejects(answer(worker, TEXT, bad), SchemaError);
    // checkPrompt() asks the worker without queueing: the classes cross back.
    await worker.checkPrompt("The sea is", raw);
    await assert.rejects(worker.checkPrompt(""), /the prompt is empty/);
    // tokenize / detokenize and the context cross as the pipeline's here.
    assert.equal(worker.maxContext, here.maxContext);
    assert.equal(worker.parallel, 2);
    assert.equal(here.parallel, 2);
    assert.equal(worker.defaultSystemPrompt, "You are a helpful assistant.");
    assert.equal(worker.defaultSystemPrompt, here.defaultSystemPrompt);
    assert.deepEqual(worker.weightTypes, here.weightTypes);
    assert.match(here.weightTypes.dtype, /^f(16|32)$/);
    for (const input of [{ prompt: "Hello world" }, { messages: withImage }]) {
      assert.deepEqual(await worker.tokenize(input), await here.tokenize(input));
    }
    assert.equal(await worker.detokenize([9707, 1879]), "Hello world");
    await assert.rejects(worker.detokenize([-1]), InvalidInputError);
    await assert.rejects(worker.checkPrompt(Array(40000).fill(9707)), ContextLengthError);
    const image2 = await answer(worker, withImage, { maxNewTokens: 1 });
    assert.ok(image2.result.usage.imageTokens > 0, "the image crossed to the worker");
  } finally {
    here.dispose();
    worker.dispose();
    await worker.closed;
  }
});

Deno.test("a WorkerEngine keeps qvq's error classes, aborts on the signal, and frees a generation left early", async () => {
  const engine = await loadWorkerEngine(TINY_DIR, { progress: false });
  try {
    await assert.rejects(
      () => answer(engine, TEXT, { topP: 2 }),
      (e: Error) => e instanceof InvalidInputError && /topP.*2/.test(e.message),
    );
    await assert.rejects(
      () => answer(engine, TEXT, { maxNewTokens: 10 ** 6 }),
      (e: Error) => e instanceof InvalidInputError,
    );
    const long = [{ role: "user" as const, content: "sea ".repeat(40_000) }];
    await assert.rejects(() => answer(engine, long), ContextLengthError);
    // checkChat and tokenize with sizes: the images stay here (a photo's pixels are tens of MB
    // to copy), their sizes speak for them there.
    const pixels = { width: 1000, height: 750, data: new Uint8Array(1000 * 750 * 3) };
    const photo: ChatMessage[] = [{
      role: "user",
      content: [{ type: "image", image: pixels }, { type: "text", text: "What is it?" }],
    }];
    const sizes = [{ width: 1000, height: 750 }];
    await engine.checkChat(photo, {}, sizes);
    await assert.rejects(() => engine.checkChat(long), ContextLengthError);
    // A callback cannot cross to the worker: named, not a DataCloneError.
    await assert.rejects(
      () => answer(engine, TEXT, { onToken: () => {} }),
      (e: Error) =>
        e instanceof InvalidInputError && /option onToken is a function/.test(e.message),
    );
    const here = await loadEngine(TINY_DIR, { progress: false });
    try {
      assert.deepEqual(
        await engine.tokenize({ messages: photo, imageSizes: sizes }),
        await here.tokenize({ messages: photo }),
      );
    } finally {
      here.dispose();
    }

    // Aborted before it starts, and while it runs: "abort" either way.
    const early = new AbortController();
    early.abort();
    const a = await answer(engine, TEXT, { signal: early.signal, maxNewTokens: 8 });
    assert.equal(a.result.finishReason, "abort");
    assert.equal(a.result.usage.completionTokens, 0);
    const late = new AbortController();
    let deltas = 0;
    let result: GenerationResult | undefined;
    const options = { signal: late.signal, maxNewTokens: 200, stopOnLoop: false };
    for await (const ev of engine.generate(TEXT, options)) {
      if (ev.type === "delta" && ++deltas === 1) late.abort();
      if (ev.type === "done") result = ev.result;
    }
    assert.equal(result?.finishReason, "abort");
    assert.ok(result!.usage.completionTokens < 200, `${result!.usage.completionTokens} tokens`);

    // Left after one event: the worker stops it, and the next generation runs in full.
    for await (const _ of engine.generate(TEXT, { maxNewTokens: 200, stopOnLoop: false })) break;
    const next = await answer(engine, TEXT, { maxNewTokens: 3, temperature: 0 });
    assert.equal(next.result.usage.completionTokens, 3);
  } finally {
    engine.dispose();
  }
  await engine.closed;
  await assert.rejects(() => answer(engine, TEXT), (e: Error) => e instanceof QvqError);
});

Deno.test("WorkerEngine.dispose() during a generation ends its stream, then the worker exits", async () => {
  // The dispose fallback terminates a worker still there DISPOSE_TIMEOUT_MS (10 s) after it.
  const terminated: Worker[] = [];
  const terminate = Worker.prototype.terminate;
  Worker.prototype.terminate = function (this: Worker) {
    terminated.push(this);
    return terminate.call(this);
  };
  try {
    const engine = await loadWorkerEngine(TINY_DIR, { progress: false });
    const events: string[] = [];
    const run = (async () => {
      for await (const ev of engine.generate(TEXT, { maxNewTokens: 200, stopOnLoop: false })) {
        events.push(ev.type);
        if (events.length === 1) engine.dispose();
      }
    })();
    await assert.rejects(
      run,
      (e: Error) => e instanceof EngineClosedError && /disposed/.test(e.message),
    );
    assert.deepEqual(events, ["delta"], "no event after the dispose");
    // The worker freed the GPU and exited on its own: not killed by the fallback.
    await engine.closed;
    assert.deepEqual(terminated, [], "the fallback terminated the worker");
    engine.dispose(); // again: nothing
  } finally {
    Worker.prototype.terminate = terminate;
  }
});

Deno.test({
  name: "WorkerEngine.closed settles once the worker's thread is gone, not at its last message",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // A stand-in worker whose thread lives on 300 ms after its "closed" (a GPU teardown's place).
    const source = `self.postMessage({ type: "thread", entry: (${currentThread})() });
      self.onmessage = (e) => {
        if (e.data.type !== "dispose") return;
        self.postMessage({ type: "closed" });
        const t = Date.now();
        while (Date.now() - t < 300);
        self.close();
      };`;
    const worker = new Worker(URL.createObjectURL(new Blob([source])), { type: "module" });
    const entry = await new Promise<string>((resolve) => {
      worker.onmessage = (e) => resolve(e.data.entry);
    });
    assert.ok(Deno.statSync(entry), "its thread is there");
    const engine = new WorkerEngine(worker, "stand-in", entry);
    const t = performance.now();
    engine.dispose();
    await engine.closed;
    assert.throws(() => Deno.statSync(entry), "its thread is gone when closed settles");
    assert.ok(performance.now() - t >= 300, `closed settled after ${performance.now() - t} ms`);
  },
});

Deno.test("a WorkerEngine whose worker lost its device fails the stream open, and every call after, with it; the worker exits", async () => {
  // A stand-in worker: one delta, then the word _engine_worker.ts sends when its device is lost.
  const source = `self.onmessage = (e) => {
      const m = e.data;
      if (m.type === "generate") {
        self.postMessage({ type: "event", id: m.id, event: { type: "delta", text: "The" } });
        self.postMessage({
          type: "failed",
          error: { name: "DeviceLostError", message: "the WebGPU device was lost (unknown: a test)" },
        });
      } else if (m.type === "dispose") {
        self.postMessage({ type: "closed" });
        self.close();
      }
    };`;
  const worker = new Worker(URL.createObjectURL(new Blob([source])), { type: "module" });
  const engine = new WorkerEngine(worker, "stand-in");
  assert.equal(engine.failure, undefined);
  const texts: string[] = [];
  await assert.rejects(
    async () => {
      for await (const ev of engine.generate(TEXT)) if (ev.type === "delta") texts.push(ev.text);
    },
    (e: Error) =>
      e instanceof DeviceLostError && /device was lost \(unknown: a test\)/.test(e.message),
  );
  assert.deepEqual(texts, ["The"]);
  const failure = await engine.failed;
  assert.ok(failure instanceof DeviceLostError);
  assert.equal(engine.failure, failure);
  await assert.rejects(() => answer(engine, TEXT), (e) => e === failure);
  await assert.rejects(() => engine.tokenize({ prompt: "x" }), (e) => e === failure);
  await engine.closed; // the engine told the worker to go, and it did
  engine.dispose(); // nothing more: the failure stays what the engine says
  assert.equal(engine.failure, failure);
});

Deno.test("the engine's worker tells the engine its device was lost: the stream open fails with DeviceLostError, the worker exits", async () => {
  // The real worker (src/server/_engine_worker.ts) behind a wrapper that can lose its device.
  const worker = new Worker(new URL("./_lost_device_worker.ts", import.meta.url).href, {
    type: "module",
  });
  const next = () =>
    new Promise<FromWorker>((resolve) => worker.onmessage = (e) => resolve(e.data));
  const first = await next();
  assert.equal(first.type, "thread");
  worker.postMessage({ type: "load", model: TINY_DIR, options: { progress: false } });
  const loaded = await next();
  assert.equal(loaded.type, "loaded", JSON.stringify(loaded));
  const engine = new WorkerEngine(
    worker,
    loaded.type === "loaded" ? loaded.modelId : "",
    first.type === "thread" ? first.entry : null,
  );
  let deltas = 0;
  await assert.rejects(async () => {
    for await (const ev of engine.generate(TEXT, { maxNewTokens: 200, stopOnLoop: false })) {
      if (ev.type === "delta" && ++deltas === 1) worker.postMessage({ type: "test-lose-device" });
    }
  }, DeviceLostError);
  // The worker said so itself (not only through the failed stream): the engine knows at once.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise((resolve) => timer = setTimeout(() => resolve("not told"), 5000));
  const failed = await Promise.race([engine.failed, late]);
  clearTimeout(timer);
  assert.ok(failed instanceof DeviceLostError, String(failed));
  await assert.rejects(() => answer(engine, TEXT), DeviceLostError);
  await engine.closed; // the worker freed what it held and exited
});

Deno.test("loadWorkerEngine() rejects with the load's own error: its class and message", async () => {
  const missing = `${TINY_DIR}does-not-exist/`;
  const here = await loadEngine(missing, { progress: false }).then(() => null, (e: Error) => e);
  assert.ok(here instanceof ModelFileError, String(here));
  await assert.rejects(
    () => loadWorkerEngine(missing, { progress: false }),
    (e: Error) => e instanceof ModelFileError && e.message === here.message,
  );
});

Deno.test("a WorkerEngine moves handed-over pixels to its worker (their buffers detached) and copies the rest, answering the same", async () => {
  const engine = await loadWorkerEngine(TINY_DIR, { progress: false });
  try {
    const png = await Deno.readFile(`${TINY_DIR}reference/case0_0.png`);
    const ask = (image: Uint8Array | { width: number; height: number; data: Uint8Array }) =>
      [{
        role: "user",
        content: [{ type: "image", image }, { type: "text", text: "What is it?" }],
      }] as ChatMessage[];
    const options = { maxNewTokens: 3, temperature: 0 };
    const kept = await decodeImage(png);
    const want = await answer(engine, ask(kept), options);
    assert.equal(kept.data.byteLength, 56 * 56 * 3, "copied: still here");
    const moved = await decodeImage(png);
    const got = await answer(engine, handOverImages(ask(moved)), options);
    assert.equal(moved.data.byteLength, 0, "transferred: detached here");
    assert.equal(got.text, want.text);
    assert.equal(got.result.usage.promptTokens, want.result.usage.promptTokens);
    // The prompt cache knew the image: the worker had the same pixels, moved.
    assert.ok(got.result.usage.cachedTokens > 0, JSON.stringify(got.result.usage));
  } finally {
    engine.dispose();
    await engine.closed;
  }
});

Deno.test("a WorkerEngine disposes with `await using`, and gives SIGINT back to the program once closed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/main.ts`;
    await Deno.writeTextFile(
      script,
      `import { loadWorkerEngine } from "${new URL("./worker_engine.ts", import.meta.url).href}";
      {
        await using engine = await loadWorkerEngine(${
        JSON.stringify(TINY_DIR)
      }, { progress: false });
        console.log(engine.modelId);
      }
      // The program's own Ctrl+C handling: the engine's listener (exit 130) is gone.
      Deno.addSignalListener("SIGINT", () => console.log("mine"));
      Deno.kill(Deno.pid, "SIGINT");
      await new Promise((r) => setTimeout(r, 1000));
      console.log("still here");
      Deno.exit(0);`,
    );
    // deno.json's imports alone (no lockfile to install from): it runs offline where this test's
    // own packages are cached, as on the GPU machine (bench/device_tests.sh). Without the method,
    // `await using` throws at run time.
    const { imports } = JSON.parse(
      await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
    );
    await Deno.writeTextFile(`${dir}/import_map.json`, JSON.stringify({ imports }));
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-config",
        "--no-lock",
        "--import-map",
        `${dir}/import_map.json`,
        script,
      ],
      env: { XDG_RUNTIME_DIR: "/tmp" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.equal(out, "tiny-qwen2vl\nmine\nstill here\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("describeWeights() says the float type, or what is quantized", () => {
  assert.equal(describeWeights({ dtype: "f16" }), "f16 weights");
  assert.equal(describeWeights({ dtype: "f16", quant: "q4" }), "decoder q4, vision tower f16");
  assert.equal(
    describeWeights({ dtype: "f32", quant: "q8", visionQuant: "q8" }),
    "decoder q8, vision tower q8",
  );
  assert.equal(
    describeWeights({ dtype: "f16", visionQuant: "q8" }),
    "decoder f16, vision tower q8",
  );
});

Deno.test("a server given loadWorkerEngine() unloads it on Ollama's keep_alive 0 (its worker gone, the GPU freed) and loads it again for the next request, answering the same", async () => {
  const engines: WorkerEngine[] = [];
  const app = createApp(async () => {
    const e = await loadWorkerEngine(TINY_DIR, { progress: false });
    engines.push(e);
    return e;
  });
  const generate = async (body: Record<string, unknown>) =>
    await (await app.request("/api/generate", {
      method: "POST",
      body: JSON.stringify({ stream: false, ...body }),
    })).json();
  const ask = { prompt: "The sea", options: { temperature: 0, num_predict: 5 } };
  try {
    const before = await generate(ask);
    assert.equal(before.eval_count, 5);
    const unload = await generate({ keep_alive: 0 });
    assert.equal(unload.done_reason, "unload");
    // Answered once unloaded: the worker's thread has ended.
    let closed = false;
    engines[0].closed.then(() => (closed = true));
    await Promise.resolve();
    assert.ok(closed, "the first worker still runs");
    assert.deepEqual(await (await app.request("/api/ps")).json(), { models: [] });
    const after = await generate(ask);
    assert.equal(engines.length, 2);
    assert.equal(after.response, before.response);
  } finally {
    for (const e of engines) {
      e.dispose();
      await e.closed;
    }
  }
});

Deno.test("the engine's worker, disposed while formats wait for its compiling thread, does not compile them itself: their generation and check end as closed", async () => {
  // The real worker, spoken to directly: what it answers once the host has stopped listening.
  const worker = new Worker(new URL("./_engine_worker.ts", import.meta.url).href, {
    type: "module",
  });
  const got: FromWorker[] = [];
  let wake = () => {};
  worker.onmessage = (e: MessageEvent<FromWorker>) => {
    got.push(e.data);
    wake();
  };
  const until = async (type: FromWorker["type"]) => {
    while (!got.some((m) => m.type === type)) await new Promise<void>((r) => wake = r);
  };
  worker.postMessage({ type: "load", model: TINY_DIR, options: { progress: false } });
  await until("loaded");
  // A pattern that takes most of a second to compile. The dispose comes before its compile has
  // ended (the thread it runs on is not even ready): the compile fails, and the engine's thread
  // compiled it in its place —
  // seconds more before the GPU is freed, several such requests each in turn, for answers that
  // no one reads (the host has ended their streams).
  const responseFormat = {
    jsonSchema: { type: "string", pattern: "[a-z0-9 ]{0,60}(,[a-z0-9 ]{0,60}){0,8}" },
  };
  worker.postMessage({
    type: "generate",
    id: 1,
    input: { messages: TEXT },
    options: { responseFormat, maxNewTokens: 4 },
  });
  worker.postMessage({
    type: "call",
    id: 2,
    method: "checkChat",
    args: [TEXT, { responseFormat }, undefined],
  });
  worker.postMessage({ type: "dispose" });
  await until("closed");
  // The generation's error; the check's (not awaited by the close) may come after "closed", or
  // not at all — never a compiled check's value, nor an aborted answer's events.
  const answers = got.filter((m) => "id" in m);
  assert.deepEqual(
    answers.filter((m) => m.type !== "error" || m.id !== 2).map((m) => [
      m.type,
      "id" in m && m.id,
      m.type === "error" && m.error.name,
    ]),
    [["error", 1, "EngineClosedError"]],
    JSON.stringify(answers),
  );
});
