import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { fakeHub, REPO } from "../hub/_fake_hub.ts";
import type { ProgressSink } from "../hub/_progress.ts";
import { loadEngine } from "./_engine.ts";

const TINY = fileURLToPath(new URL("../../tests/fixtures/tiny-qwen2vl", import.meta.url));

Deno.test("loadEngine() passes quant to the model: its decoder matrices load as q4", async () => {
  const engine = await loadEngine(TINY, { quant: "q4", progress: false });
  try {
    const { plan } = engine.model;
    assert.equal(plan.quant, "q4");
    // What the server reports of it (Ollama's quantization_level, its "serving" line).
    assert.deepEqual(engine.weightTypes, { dtype: plan.dtype, quant: "q4" });
    assert.equal(plan.tensors.get("text.layers.0.qkv")!.dtype, "q4");
  } finally {
    engine.dispose();
  }
});

Deno.test("loadEngine() passes parallel to the pipeline", async () => {
  const engine = await loadEngine(TINY, { parallel: 3, progress: false });
  try {
    assert.equal(engine.parallel, 3);
  } finally {
    engine.dispose();
  }
});

Deno.test("loadEngine() logs the weight upload to stderr by default, a line every 10 % where it is no terminal", async () => {
  // stderr as a log file: its writes caught here (in this process: a deno of its own would fetch
  // the configuration's npm packages, which the GPU machine cannot).
  const written: string[] = [];
  const stderr = Deno.stderr as unknown as Record<string, unknown>;
  const [writeSync, isTerminal] = [stderr.writeSync, stderr.isTerminal];
  const set = (name: string, value: unknown) =>
    Object.defineProperty(Deno.stderr, name, { value, configurable: true, writable: true });
  set("writeSync", (bytes: Uint8Array) => {
    written.push(new TextDecoder().decode(bytes));
    return bytes.length;
  });
  set("isTerminal", () => false);
  try {
    (await loadEngine(TINY)).dispose();
  } finally {
    set("writeSync", writeSync);
    set("isTerminal", isTerminal);
  }
  assert.match(written.join(""), /^loading weights \[#{24}\] 100% /m);
  assert.ok(!written.join("").includes("\r"), "lines, not a bar redrawn in place");
});

Deno.test("loadEngine() names a directory's model by its folder and a hub model by its id", async () => {
  const fromDir = await loadEngine(TINY, { progress: false });
  try {
    assert.equal(fromDir.modelId, "tiny-qwen2vl");
  } finally {
    fromDir.dispose();
  }
  await using hub = await fakeHub();
  const cacheDir = await Deno.makeTempDir();
  const lines: string[] = [];
  const sink: ProgressSink = { write: (t) => lines.push(t), terminal: false };
  try {
    const download = { endpoint: hub.endpoint, cacheDir, progress: false };
    const fromHub = await loadEngine(`${REPO}@main`, { download, progress: sink });
    try {
      assert.equal(fromHub.modelId, REPO); // not the snapshot's commit hash
    } finally {
      fromHub.dispose();
    }
    assert.match(lines.at(-1)!, /^loading weights \[#{24}\] 100% /);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});
