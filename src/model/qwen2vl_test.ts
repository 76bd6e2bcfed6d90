import assert from "node:assert/strict";
import { GpuError, InvalidInputError, ModelFileError } from "../errors.ts";
import { Gpu, sharedGpu } from "../gpu/device.ts";
import { readF32 } from "../gpu/buffers.ts";
import { readDecodeState } from "../../kernels/state.ts";
import { assertClose } from "../ref/_random.ts";
import { parseConfig } from "./config.ts";
import { PRESETS } from "./presets.ts";
import { planModel, Qwen2VLModel } from "./qwen2vl.ts";
import { checkpointTensors, writeSparseCheckpoint } from "./_sparse.ts";
import { readReference, SYNTHETIC_DIR, TINY_DIR } from "./_fixture.ts";
import { assertLogprobsClose, logprobsRef } from "../ref/logprobs.ts";

const MiB = 1024 * 1024, GiB = 1024 * MiB;

Deno.test("planModel() checks a sparse QVQ-72B checkpoint (real headers, no data) at 2 GiB and 128 MiB bindings", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qvq72b-" });
  try {
    const cfg = parseConfig(PRESETS["QVQ-72B-Preview"]);
    const tensors = checkpointTensors(cfg, "legacy");
    await writeSparseCheckpoint(dir, tensors, 4 * GiB);
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(PRESETS["QVQ-72B-Preview"]));
    const h100 = await planModel(dir, {
      dtype: "f16",
      maxBinding: 2 * GiB,
      maxBufferSize: 4 * GiB,
      maxContext: 32768,
      kvCacheDtype: "f16",
    });
    h100.checkpoint.close();
    assert.equal(h100.checkpoint.files().length, 36); // 4 GiB shards (the hub uses 38 of ≈ 4 GB)
    assert.equal(h100.plan.storedNames.length, tensors.length);
    assert.equal(h100.plan.tensors.get("text.embed")!.chunks, 2);
    assert.equal(h100.plan.tensors.get("text.lm_head")!.chunks, 2);
    // 80 layers × K, V × 32768 tokens × 1024 (8 KV heads × 128) × 2 bytes (f16)
    assert.equal(h100.kvCacheDtype, "f16");
    assert.equal(h100.memory.kvCache, 10 * GiB);
    assert.ok(
      h100.memory.weights > 146e9 && h100.memory.weights < 147.5e9,
      `${h100.memory.weights}`,
    );
    const lava = await planModel(dir, {
      dtype: "f16",
      maxBinding: 128 * MiB,
      maxBufferSize: 2 * GiB,
      maxContext: 4096,
    });
    assert.equal(lava.kvCacheDtype, "f32"); // the default
    lava.checkpoint.close();
    assert.equal(lava.plan.tensors.get("text.embed")!.chunks, 19);
    assert.equal(lava.plan.tensors.get("text.layers.40.gate_up")!.chunks, 8);
    assert.equal(lava.plan.tensors.get("vision.merger.fc1")!.chunks, 1); // 5120² f16 = 50 MiB
    assert.equal(lava.memory.weights, h100.memory.weights);
    assert.equal(lava.memory.kvCache, 80 * 2 * 4096 * 1024 * 4);
    // The data regions were never written: the 147 GB set takes a few MB of disk.
    let used = 0;
    for await (const e of Deno.readDir(dir)) {
      used += (await Deno.stat(`${dir}/${e.name}`)).blocks ?? 0;
    }
    assert.ok(used * 512 < 64 * MiB, `${used * 512} bytes on disk`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A copy of the tiny fixture whose files can be edited. */
async function tinyCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "qvq-tiny-" });
  for await (const e of Deno.readDir(TINY_DIR)) {
    if (e.isFile) await Deno.copyFile(`${TINY_DIR}${e.name}`, `${dir}/${e.name}`);
  }
  return dir;
}

Deno.test("Qwen2VLModel.load() rejects a config that does not match the weights, before any GPU allocation", async () => {
  const dir = await tinyCopy();
  try {
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    cfg.intermediate_size = 96;
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg));
    const gpu = await sharedGpu();
    await assert.rejects(
      () => Qwen2VLModel.load(dir, { gpu, dtype: "f32" }),
      (e: Error) => {
        assert.ok(e instanceof ModelFileError, String(e));
        assert.match(
          e.message,
          /model-00002-of-00002\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[64, 32\], expected \[96, 32\]/,
        );
        return true;
      },
    );
    cfg.intermediate_size = 64;
    cfg.model_type = "llava";
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg));
    await assert.rejects(
      () => Qwen2VLModel.load(dir, { gpu, dtype: "f32" }),
      /config\.json: model_type is "llava"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("planModel() refuses a maxContext past max_position_embeddings or below 2, naming the limit", async () => {
  for (const maxContext of [32769, 3_000_000, 1, 2.5]) {
    await assert.rejects(
      () => planModel(TINY_DIR, { dtype: "f32", maxBinding: 128 * MiB, maxContext }),
      (e: Error) =>
        e instanceof InvalidInputError &&
        e.message.includes(`max_position_embeddings 32768 (config.json), got ${maxContext}`),
    );
  }
  const ok = await planModel(TINY_DIR, { dtype: "f32", maxBinding: 128 * MiB, maxContext: 32768 });
  ok.checkpoint.close();
  assert.equal(ok.maxContext, 32768);
});

Deno.test("Qwen2VLModel.load() refuses a gpu option that is not a Gpu, before anything loads", async () => {
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    () => Qwen2VLModel.load(TINY_DIR, { gpu: {} as any }),
    (e: Error) =>
      e instanceof InvalidInputError && /gpu must be a Gpu from requestGpu\(\)/.test(e.message),
  );
});

Deno.test("Qwen2VLModel.load() refuses a model over memoryLimit, saying how much it needs", async () => {
  const gpu = await sharedGpu();
  await assert.rejects(
    () =>
      Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", maxContext: 1024, memoryLimit: 8 * MiB }),
    (e: Error) => {
      assert.ok(e instanceof GpuError, String(e));
      assert.match(
        e.message,
        /needs about 20\.45 MiB of GPU memory \(weights 18\.94 MiB f32, KV cache 256\.00 KiB f32 for 1024 tokens/,
      );
      assert.match(
        e.message,
        /kvCacheDtype: "f16" \(Pipeline\.load's option; CLI --kv-cache-dtype f16; server QVQ_KV_CACHE_DTYPE=f16\) or a shorter maxContext/,
      );
      return true;
    },
  );
  // What it already uses is not offered again: q8 is, so q4 is what is left.
  await assert.rejects(
    () =>
      Qwen2VLModel.load(TINY_DIR, {
        gpu,
        dtype: "f32",
        quant: "q8",
        visionQuant: "q8",
        maxContext: 1024,
        memoryLimit: MiB,
      }),
    (e: Error) => {
      assert.match(
        e.message,
        /; to fit, load with dtype: "f16" \(Pipeline\.load's option; CLI --dtype f16\) where the adapter has shader-f16, quant: "q4" \(Pipeline\.load's option; CLI --quant q4; server QVQ_QUANT=q4\), kvCacheDtype: "f16" \(.*\) or a shorter maxContext$/,
      );
      return true;
    },
  );
});

Deno.test("Qwen2VLModel.load() refuses an f16 KV cache without shader-f16, and an unknown kvCacheDtype", async () => {
  const gpu = await sharedGpu();
  const noF16 = new Gpu(gpu.device, gpu.adapterInfo, { ...gpu.features, f16: false });
  await assert.rejects(
    () => Qwen2VLModel.load(TINY_DIR, { gpu: noF16, dtype: "f32", kvCacheDtype: "f16" }),
    (e: Error) => e instanceof GpuError && /kvCacheDtype "f16" needs shader-f16/.test(e.message),
  );
  await assert.rejects(
    // @ts-expect-error: a value from outside TypeScript
    () => Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", kvCacheDtype: "bf16" }),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /kvCacheDtype must be "f16" or "f32" .*got "bf16"/.test(e.message),
  );
});

Deno.test("prefill() in chunks gives the same logits, prompt logprobs and decode state as in one pass", async () => {
  const gpu = await sharedGpu();
  const r = await readReference(`${SYNTHETIC_DIR}reference.safetensors`);
  const ids = r.i32("text_input_ids"); // 21 tokens
  const results = [];
  for (const prefillChunk of [512, 4, 7]) {
    const model = await Qwen2VLModel.load(SYNTHETIC_DIR, {
      gpu,
      dtype: "f32",
      maxContext: 64,
      prefillChunk,
    });
    const s = model.createSession(32);
    const { logits: all, promptLogprobs: lp } = await model.prefill(s, ids, undefined, {
      allLogits: true,
      promptLogprobs: 3,
    });
    const last = await readF32(gpu, s.logits);
    // Prompt token i + 1 scored under row i's logits (chunks of 4 end on a 0-row chunk of one token).
    assert.equal(lp!.length, 20, `chunk ${prefillChunk}`);
    lp!.forEach((rec, i) => {
      const want = logprobsRef(all!.subarray(i * 1000, (i + 1) * 1000), ids[i + 1], 3);
      assertLogprobsClose(rec, want, `chunk ${prefillChunk} token ${i + 1}`);
    });
    assert.deepEqual(await readDecodeState(gpu, s.state), { cacheLen: 21, position: 21, step: 0 });
    // session.logits comes from the m = 1 GEMV, the rows from the tiled GEMM: same sums, other order.
    assertClose(last, all!.subarray(20 * 1000), 1e-6, "session.logits = last row");
    results.push(all!);
    s.dispose();
    model.dispose();
  }
  // A chunk changes only summation order (21 = 5·4 + 1: the last 1-token chunk takes the GEMV
  // path): f32 ulps of the largest logit.
  assertClose(results[1], results[0], 1e-6, "chunks of 4");
  assertClose(results[2], results[0], 1e-6, "chunks of 7");
});

Deno.test("prefill() sets the decode position from the rope delta and rejects bad prompts", async () => {
  const gpu = await sharedGpu();
  const model = await Qwen2VLModel.load(SYNTHETIC_DIR, { gpu, dtype: "f32", maxContext: 64 });
  const r = await readReference(`${SYNTHETIC_DIR}reference.safetensors`);
  const ids = r.i32("input_ids"), g = r.i32("image_grid_thw");
  const s = model.createSession(48);
  try {
    const images = model.encodeImages(r.f32("pixel_values"), [[g[0], g[1], g[2]], [
      g[3],
      g[4],
      g[5],
    ]]);
    await assert.rejects(
      () => model.prefill(s, ids),
      /has 9 image and video tokens \(ids 900, 901\) but 0 image embeddings/,
    );
    await assert.rejects(
      () => model.prefill(s, [1, 2, 1000], images),
      /token 2 is 1000, outside the vocabulary 0\.\.999/,
    );
    await assert.rejects(
      () => model.prefill(s, new Int32Array(48)),
      /the prompt has 48 tokens; it needs 1 to 47/,
    );
    await model.prefill(s, ids, images);
    images.destroy();
    const delta = r.i32("rope_deltas")[0];
    assert.equal(s.ropeDelta, delta);
    assert.deepEqual(await readDecodeState(gpu, s.state), {
      cacheLen: 40,
      position: 40 + delta,
      step: 0,
    });
    assert.throws(() => model.createSession(65), InvalidInputError);
  } finally {
    s.dispose();
    model.dispose();
  }
  assert.throws(() => model.createSession(8), /disposed/);
});

Deno.test("prefill() stops between chunks when its signal aborts, and the session stays usable", async () => {
  const gpu = await sharedGpu();
  const model = await Qwen2VLModel.load(TINY_DIR, {
    gpu,
    dtype: "f32",
    maxContext: 64,
    prefillChunk: 4,
  });
  const ids = Array.from({ length: 22 }, (_, i) => 1000 + 37 * i); // 6 chunks of ≤ 4 tokens
  const s = model.createSession(32);
  const queue = gpu.device.queue;
  const submit = queue.submit;
  let submits = 0;
  const controller = new AbortController();
  queue.submit = (buffers) => {
    submit.call(queue, buffers);
    if (++submits === 2) controller.abort(); // while the second chunk is queued
  };
  const isAbort = (e: Error) => e.name === "AbortError";
  gpu.device.pushErrorScope("validation");
  try {
    await assert.rejects(
      model.prefill(s, ids, undefined, { signal: AbortSignal.abort() }),
      isAbort,
    );
    assert.equal(submits, 0, "an aborted signal submits nothing");
    await assert.rejects(model.prefill(s, ids, undefined, { signal: controller.signal }), isAbort);
    assert.equal(submits, 2, "the chunks after the abort never reach the GPU");
    queue.submit = submit;
    // The half-filled cache is simply overwritten: the same logits as on a fresh session.
    await model.prefill(s, ids);
    const fresh = model.createSession(32);
    await model.prefill(fresh, ids);
    assert.deepEqual(await readF32(gpu, s.logits), await readF32(gpu, fresh.logits));
    fresh.dispose();
  } finally {
    queue.submit = submit;
    s.dispose();
    model.dispose();
  }
  assert.equal(await gpu.device.popErrorScope(), null);
});

Deno.test("prefill() from cached.tokens continues a session's prompt: the logits and state of a whole prefill", async () => {
  const gpu = await sharedGpu();
  const model = await Qwen2VLModel.load(SYNTHETIC_DIR, { gpu, dtype: "f32", maxContext: 64 });
  const r = await readReference(`${SYNTHETIC_DIR}reference.safetensors`);
  const ids = r.i32("input_ids"), g = r.i32("image_grid_thw"), pixels = r.f32("pixel_values");
  const grids = [[g[0], g[1], g[2]], [g[3], g[4], g[5]]] as const;
  const rows0 = g[0] * g[1] * g[2], cols = pixels.length / (rows0 + g[3] * g[4] * g[5]);
  const first = ids.indexOf(900), firstEnd = first + rows0 / 4; // image 0's tokens
  const whole = model.createSession(48);
  const all = model.encodeImages(pixels, grids);
  await model.prefill(whole, ids, all);
  all.destroy();
  const want = await readF32(gpu, whole.logits);
  const wantState = await readDecodeState(gpu, whole.state);
  whole.dispose();
  try {
    // Cut before image 0, just after it, and before the last token (both images cached).
    for (const [cut, nCached] of [[first, 0], [firstEnd + 1, 1], [ids.length - 1, 2]] as const) {
      const s = model.createSession(48);
      const early = nCached > 0
        ? model.encodeImages(
          pixels.subarray(0, (nCached === 1 ? rows0 : pixels.length / cols) * cols),
          grids.slice(0, nCached),
        )
        : undefined;
      await model.prefill(s, ids.subarray(0, cut), early);
      early?.destroy();
      const late = nCached < 2
        ? model.encodeImages(pixels.subarray(nCached * rows0 * cols), grids.slice(nCached))
        : undefined;
      await model.prefill(s, ids, late, {
        cached: { tokens: cut, grids: grids.slice(0, nCached) },
      });
      late?.destroy();
      assertClose(await readF32(gpu, s.logits), want, 1e-6, `cut at ${cut}`);
      assert.deepEqual(await readDecodeState(gpu, s.state), wantState);
      assert.equal(s.promptLength, ids.length);
      if (nCached === 1) {
        await assert.rejects(
          () =>
            model.prefill(s, ids, late, {
              cached: { tokens: first + 2, grids: grids.slice(0, 1) },
            }),
          /the first \d+ \(cached\) prompt tokens hold 2 image tokens but cached\.grids make 6/,
        );
        await assert.rejects(
          () => model.prefill(s, ids, undefined, { cached: { tokens: ids.length, grids } }),
          /cached\.tokens must be an integer in 0\.\.39/,
        );
        await assert.rejects(
          () => model.prefill(s, ids, late, { cached: { tokens: cut, grids }, promptLogprobs: 0 }),
          /promptLogprobs needs the whole prompt run \(no cached\.tokens\)/,
        );
      }
      s.dispose();
    }
  } finally {
    model.dispose();
  }
});

Deno.test("compilePrefill() compiles what a prefill of those rows takes, runs nothing, and refuses bad row counts", async () => {
  const gpu = await sharedGpu();
  const model = await Qwen2VLModel.load(SYNTHETIC_DIR, { gpu, dtype: "f32", maxContext: 32 });
  try {
    // A 20-row prefill first (the tiled kernels; the embedding, the last row's head): then only
    // what a few rows take differently is left.
    const first = model.createSession(21);
    await model.prefill(first, Array.from({ length: 20 }, (_, i) => 100 + i));
    first.dispose();
    model.compilePrefill([3, 13]);
    const compiled = gpu.pipelineCount;
    // A prefill of 3 rows, then of 13: nothing left to compile (a bucket each).
    for (const n of [3, 13]) {
      const s = model.createSession(n + 1);
      try {
        await model.prefill(s, Array.from({ length: n }, (_, i) => 100 + i));
        assert.equal(gpu.pipelineCount, compiled, `a ${n}-row prefill`);
      } finally {
        s.dispose();
      }
    }
    model.compilePrefill([]); // nothing to compile: no error
    assert.equal(gpu.pipelineCount, compiled);
    for (const rows of [[0], [2.5], [32]]) {
      assert.throws(
        () => model.compilePrefill(rows),
        (e: Error) =>
          e instanceof InvalidInputError && /row counts must be whole numbers/.test(e.message),
      );
    }
  } finally {
    model.dispose();
  }
});
