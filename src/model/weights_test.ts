import assert from "node:assert/strict";
import { GpuError, InvalidInputError, ModelFileError } from "../errors.ts";
import { parseConfig } from "./config.ts";
import { PRESETS } from "./presets.ts";
import { gemmKernel } from "../../kernels/linear.ts";
import {
  estimateMemory,
  orList,
  planWeights,
  prefillChunkTokens,
  rowsPerChunk,
  smallerWeights,
  type StoredTensor,
  type TensorLookup,
  uploadWeights,
} from "./weights.ts";
import { Gpu, sharedGpu } from "../gpu/device.ts";
import { readBytes, uploadArray } from "../gpu/buffers.ts";
import { createWeight, destroyWeight } from "../gpu/tensor.ts";
import { DEQUANT_SCRATCH_BYTES, writeQuantRows } from "../../kernels/linear_q.ts";
import { syntheticPlan } from "./synthetic.ts";
import { checkVisionQuant, QUANT_OPTION } from "./quantize.ts";
import { MemoryModelSource, openModelSource } from "../model_files.ts";
import { SafetensorsCheckpoint, writeSafetensors } from "../safetensors.ts";
import { checkpointTensors, type HeaderTensor } from "./_sparse.ts";
import { TINY_DIR } from "./_fixture.ts";

const MiB = 1024 * 1024, GiB = 1024 * MiB;

function lookupOf(tensors: HeaderTensor[], file = "model.safetensors"): TensorLookup {
  const m = new Map<string, StoredTensor>(
    tensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, file }]),
  );
  return (name) => m.get(name);
}

Deno.test("planWeights() fuses q/k/v and gate/up and flattens the patch embedding (tiny model)", () => {
  const cfg = parseConfig(JSON.parse(Deno.readTextFileSync(`${TINY_DIR}config.json`)));
  const plan = planWeights(cfg, lookupOf(checkpointTensors(cfg, "legacy")), {
    dtype: "f32",
    maxBinding: 128 * MiB,
    where: "index",
  });
  assert.equal(plan.naming, "legacy");
  const qkv = plan.tensors.get("text.layers.1.qkv")!;
  assert.deepEqual([qkv.rows, qkv.cols], [32 + 2 * 16, 32]);
  assert.deepEqual(qkv.sources.map((s) => s.name), [
    "model.layers.1.self_attn.q_proj.weight",
    "model.layers.1.self_attn.k_proj.weight",
    "model.layers.1.self_attn.v_proj.weight",
  ]);
  assert.equal(plan.tensors.get("text.layers.0.qkv_bias")!.rows, 64);
  assert.deepEqual([
    plan.tensors.get("text.layers.0.gate_up")!.rows,
    plan.tensors.get("text.layers.0.gate_up")!.cols,
  ], [128, 32]);
  const pe = plan.tensors.get("vision.patch_embed")!;
  assert.deepEqual([pe.rows, pe.cols], [32, 1176]);
  // Tied: no lm_head tensor is planned, the embedding serves both.
  assert.equal(plan.tensors.has("text.lm_head"), false);
  // 57 stored tensors in the fixture's index, all read.
  assert.equal(plan.storedNames.length, 57);
  const embed = plan.tensors.get("text.embed")!;
  assert.equal(embed.chunks, 1);
  assert.equal(embed.bytes, 151936 * 32 * 4);
});

Deno.test("planWeights() at QVQ-72B shapes: names, chunk counts at 2 GiB and 128 MiB, memory", () => {
  const cfg = parseConfig(PRESETS["QVQ-72B-Preview"]);
  for (const naming of ["legacy", "transformers5"] as const) {
    const tensors = checkpointTensors(cfg, naming);
    const lookup = lookupOf(tensors);
    const h100 = planWeights(cfg, lookup, {
      dtype: "f16",
      maxBinding: 2 * GiB,
      maxBufferSize: 4 * GiB,
      where: "x",
    });
    assert.equal(h100.naming, naming);
    assert.equal(h100.storedNames.length, tensors.length);
    // embed/lm_head: 152064 × 8192 f16 = 2.32 GiB → 2 chunks of 131072 rows at 2 GiB.
    const lm = h100.tensors.get("text.lm_head")!;
    assert.equal(lm.rowsPerChunk, 131072);
    assert.equal(lm.chunks, 2);
    // gate|up: 59136 × 8192 f16 = 0.9 GiB: one chunk.
    assert.equal(h100.tensors.get("text.layers.79.gate_up")!.chunks, 1);
    const lava = planWeights(cfg, lookup, {
      dtype: "f16",
      maxBinding: 128 * MiB,
      maxBufferSize: 2 * GiB,
      where: "x",
    });
    assert.equal(lava.tensors.get("text.embed")!.rowsPerChunk, 8192);
    assert.equal(lava.tensors.get("text.embed")!.chunks, Math.ceil(152064 / 8192)); // 19
    assert.equal(lava.tensors.get("text.layers.0.gate_up")!.chunks, Math.ceil(59136 / 8192)); // 8
    assert.equal(
      lava.tensors.get("text.layers.0.down")!.chunks,
      Math.ceil(8192 / Math.floor(128 * MiB / (29568 * 2))),
    );
    // 72B parameters + vision: ≈ 73.4 G parameters in f16.
    const params = tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    const vectors = [...h100.tensors.values()].filter((t) => t.kind === "vector").reduce(
      (a, t) => a + t.rows,
      0,
    );
    assert.equal(h100.weightBytes, (params - vectors) * 2 + vectors * 4);
    assert.ok(params > 73.0e9 && params < 73.6e9, `${params}`);
    const mem = estimateMemory(cfg, h100, 32768);
    // K and V: 80 layers × 32768 tokens × 8 heads × 128 × 4 bytes × 2 = 20 GiB.
    assert.equal(mem.kvCache, 20 * GiB);
    assert.equal(mem.largestBuffer, 131072 * 8192 * 2);
    assert.ok(mem.total > 155e9 && mem.total < 170e9, `${mem.total}`);
  }
});

Deno.test("planWeights() names tensor, file and expected vs found shape", () => {
  const cfg = parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]);
  const base = checkpointTensors(cfg, "legacy");
  const opts = {
    dtype: "f16" as const,
    maxBinding: 2 * GiB,
    where: "model.safetensors.index.json",
  };
  const edits: [(ts: HeaderTensor[]) => HeaderTensor[], RegExp][] = [
    [
      (ts) => ts.filter((t) => t.name !== "model.layers.27.mlp.up_proj.weight"),
      /model\.safetensors\.index\.json: tensor "model\.layers\.27\.mlp\.up_proj\.weight" is missing \(expected shape \[18944, 3584\]\)/,
    ],
    [
      (ts) =>
        ts.map((t) =>
          t.name === "model.layers.3.self_attn.k_proj.weight" ? { ...t, shape: [3584, 3584] } : t
        ),
      /shard\.safetensors: tensor "model\.layers\.3\.self_attn\.k_proj\.weight" has shape \[3584, 3584\], expected \[512, 3584\]/,
    ],
    [(ts) => ts.filter((t) => t.name !== "lm_head.weight"), /tensor "lm_head\.weight" is missing/],
    [
      (ts) =>
        ts.map((t) => t.name === "visual.blocks.0.norm1.bias" ? { ...t, dtype: "I8" as any } : t),
      /tensor "visual\.blocks\.0\.norm1\.bias" has dtype I8/,
    ],
    [(ts) => ts.filter((t) => !t.name.startsWith("model.embed")), /no embedding tensor/],
  ];
  for (const [edit, msg] of edits) {
    assert.throws(
      () => planWeights(cfg, lookupOf(edit(base), "shard.safetensors"), opts),
      (e: Error) => {
        assert.ok(e instanceof ModelFileError, String(e));
        assert.match(e.message, msg);
        return true;
      },
    );
  }
});

Deno.test("rowsPerChunk() keeps f16 chunks of odd width 4-byte aligned", () => {
  assert.equal(rowsPerChunk(100, 3, "f16", 30), 4); // 5 rows fit, 4 keep the next chunk aligned
  assert.equal(rowsPerChunk(5, 3, "f16", 30), 5); // the whole weight fits: one chunk
  assert.equal(rowsPerChunk(100, 3, "f32", 30), 2);
});

Deno.test("uploadWeights() gives every tensor the WASM converter's bits (bf16 fixture → f16 and f32, small chunks and slices)", async () => {
  const gpu = await sharedGpu();
  const src = openModelSource(TINY_DIR);
  const cfg = parseConfig(await src.readJson("config.json"));
  const ckpt = await SafetensorsCheckpoint.open(src);
  try {
    for (const dtype of ["f16", "f32"] as const) {
      // 1 MiB chunks split the embedding into 10-19 buffers; 300 kB slices cross chunk borders
      // mid-slice and make most tensors several slices.
      const plan = planWeights(cfg, (n) => (ckpt.has(n) ? ckpt.get(n) : undefined), {
        dtype,
        maxBinding: MiB,
        where: ckpt.origin,
      });
      assert.ok(plan.tensors.get("text.embed")!.chunks >= 10);
      // f32: 8 kB reads, so a piece is several reads landing in any order.
      const reads = dtype === "f32" ? 8002 : undefined;
      const w = await uploadWeights(gpu, ckpt, plan, undefined, {
        slotBytes: 300_000,
        readBytes: reads,
      });
      try {
        for (const pt of plan.tensors.values()) {
          const to = pt.kind === "vector" ? "f32" : dtype;
          const want: Uint8Array[] = [];
          for (const s of pt.sources) {
            for await (const c of ckpt.readChunks(s.name, { to, maxBytes: 64 * MiB })) {
              want.push(new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength));
            }
          }
          const buffers = pt.kind === "vector"
            ? [{ buffer: w.vector(pt.key), rows: pt.rows }]
            : w.matrix(pt.key).chunks;
          const got: Uint8Array[] = [];
          for (const c of buffers) {
            const bytes = c.rows * pt.cols * (to === "f16" ? 2 : 4);
            got.push(new Uint8Array(await readBytes(gpu, c.buffer, bytes)));
          }
          assert.ok(
            bytesEqual(concat(got).buffer, concat(want).buffer),
            `${pt.key} (${to})`,
          );
        }
      } finally {
        w.destroy();
      }
    }
  } finally {
    ckpt.close();
  }
});

Deno.test("uploadWeights() quantizes the stored bf16 exactly as writeQuantRows() does (q8, q4; pieces crossing slots and chunks)", async () => {
  const gpu = await sharedGpu();
  const src = openModelSource(TINY_DIR);
  const cfg = parseConfig(await src.readJson("config.json"));
  const ckpt = await SafetensorsCheckpoint.open(src);
  try {
    for (const quant of ["q8", "q4"] as const) {
      // 64 kB chunks: the quantized embedding copy (lm_head) spans many; 50 kB slots end pieces
      // mid-chunk on odd byte counts of rows.
      const plan = planWeights(cfg, (n) => (ckpt.has(n) ? ckpt.get(n) : undefined), {
        dtype: "f16",
        quant,
        maxBinding: 64 * 1024,
        where: ckpt.origin,
      });
      const w = await uploadWeights(gpu, ckpt, plan, undefined, {
        slotBytes: 50_000,
        readBytes: 4096,
      });
      try {
        let checked = 0;
        for (const pt of plan.tensors.values()) {
          if (pt.dtype !== quant) continue;
          const ref = createWeight(gpu, pt.rows, pt.cols, quant, pt.key, plan.maxBinding);
          let row = 0;
          for (const s of pt.sources) {
            const raw = await ckpt.readBytes(s.name);
            writeQuantRows(
              gpu,
              ref,
              row,
              new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2),
              "bf16",
            );
            row += s.rows;
          }
          const got = w.matrix(pt.key).chunks;
          assert.equal(got.length, ref.chunks.length);
          for (let i = 0; i < got.length; i++) {
            assert.ok(
              bytesEqual(
                await readBytes(gpu, got[i].buffer),
                await readBytes(gpu, ref.chunks[i].buffer),
              ),
              `${pt.key} chunk ${i} (${quant})`,
            );
          }
          destroyWeight(ref);
          checked++;
        }
        // 2 layers × qkv, o, gate_up, down, and the tied lm_head's own copy.
        assert.equal(checked, 9);
      } finally {
        w.destroy();
      }
    }
  } finally {
    ckpt.close();
  }
});

Deno.test("uploadWeights() from F16 and F32 stored tensors: float and q8 weights as the CPU path makes them", async () => {
  const gpu = await sharedGpu();
  const fixture = await SafetensorsCheckpoint.open(openModelSource(TINY_DIR));
  // The tiny model rewritten with every tensor F16 or F32 (alternating), as an in-memory checkpoint.
  const tensors: Parameters<typeof writeSafetensors>[0] = {};
  fixture.tensors().forEach((t, i) => {
    tensors[t.name] = i % 2
      ? { dtype: "F32", shape: t.shape, data: new Float32Array(0) }
      : { dtype: "F16", shape: t.shape, data: new Uint16Array(0) };
  });
  for (const [name, t] of Object.entries(tensors)) {
    t.data = t.dtype === "F32" ? await fixture.readF32(name) : await fixture.readF16Bits(name);
  }
  fixture.close();
  const files = {
    "model.safetensors": writeSafetensors(tensors),
    "config.json": await Deno.readFile(`${TINY_DIR}config.json`),
  };
  const ckpt = await SafetensorsCheckpoint.open(new MemoryModelSource(files));
  const cfg = parseConfig(JSON.parse(new TextDecoder().decode(files["config.json"])));
  try {
    const plan = planWeights(cfg, (n) => (ckpt.has(n) ? ckpt.get(n) : undefined), {
      dtype: "f16",
      quant: "q8",
      maxBinding: 256 * 1024,
      where: ckpt.origin,
    });
    const w = await uploadWeights(gpu, ckpt, plan, undefined, { slotBytes: 70_000 });
    try {
      const kinds = new Set<string>();
      for (const pt of plan.tensors.values()) {
        const got = pt.kind === "vector"
          ? [w.vector(pt.key)]
          : w.matrix(pt.key).chunks.map((c) => c.buffer);
        let want: GPUBuffer[];
        let ref: ReturnType<typeof createWeight> | undefined;
        if (pt.dtype === "q8") {
          // The CPU path: the WASM converter's f16, quantized by writeQuantRows.
          ref = createWeight(gpu, pt.rows, pt.cols, "q8", pt.key, plan.maxBinding);
          let row = 0;
          for (const s of pt.sources) {
            writeQuantRows(gpu, ref, row, await ckpt.readF16Bits(s.name));
            row += s.rows;
          }
          want = ref.chunks.map((c) => c.buffer);
        } else {
          const to = pt.kind === "vector" ? "f32" : "f16";
          const parts = [];
          for (const s of pt.sources) {
            parts.push(new Uint8Array((await ckpt.read(s.name, to)).buffer));
          }
          const all = concat(parts);
          want = [];
          let at = 0;
          for (const b of got) {
            const n = Math.min(b.size, all.length - at);
            want.push(uploadArray(gpu, all.subarray(at, at + n)));
            at += n;
          }
        }
        for (let i = 0; i < got.length; i++) {
          const a = await readBytes(gpu, got[i]), b = await readBytes(gpu, want[i]);
          assert.ok(bytesEqual(a.slice(0, b.byteLength), b), `${pt.key} chunk ${i} (${pt.dtype})`);
        }
        if (ref) destroyWeight(ref);
        else want.forEach((b) => b.destroy());
        for (const s of pt.sources) kinds.add(`${ckpt.get(s.name).dtype}→${pt.dtype}`);
      }
      // Every path was taken: F16/F32 into f16, f32 vectors and q8 (F32 through the CPU's f16).
      assert.deepEqual([...kinds].sort(), [
        "F16→f16",
        "F16→f32",
        "F16→q8",
        "F32→f16",
        "F32→f32",
        "F32→q8",
      ]);
    } finally {
      w.destroy();
    }
  } finally {
    ckpt.close();
  }
});

/** Byte equality without assert.deepEqual's diff of megabyte arrays when they differ. */
function bytesEqual(a: ArrayBufferLike, b: ArrayBufferLike): boolean {
  const x = new Uint8Array(a), y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("uploadWeights() out of GPU memory names qvq's own q8/q4 option, not the f16 the weights already are", async () => {
  const gpu = await sharedGpu();
  // The shared device, reporting every out-of-memory error scope as failed (its real scopes still
  // pushed and popped in pairs).
  const filters: GPUErrorFilter[] = [];
  const device = new Proxy(gpu.device, {
    get(target, prop) {
      if (prop === "pushErrorScope") {
        return (filter: GPUErrorFilter) => (filters.push(filter), target.pushErrorScope(filter));
      }
      if (prop === "popErrorScope") {
        return async () => {
          const real = await target.popErrorScope();
          return filters.pop() === "out-of-memory" ? { message: "test: no memory" } : real;
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  const full = new Gpu(device, gpu.adapterInfo, gpu.features);
  const src = openModelSource(TINY_DIR);
  const cfg = parseConfig(await src.readJson("config.json"));
  const ckpt = await SafetensorsCheckpoint.open(src);
  const lookup = (n: string) => (ckpt.has(n) ? ckpt.get(n) : undefined);
  const oom = (opts: { quant?: "q8" | "q4"; visionQuant?: "q8" }) =>
    uploadWeights(
      full,
      ckpt,
      planWeights(cfg, lookup, { dtype: "f16", maxBinding: MiB, where: ckpt.origin, ...opts }),
    ).then(() => assert.fail("the upload succeeded"), (e: Error) => e);
  try {
    const f16 = await oom({});
    assert.ok(f16 instanceof GpuError, String(f16));
    assert.match(
      f16.message,
      /^out of GPU memory allocating "[\w.]+" \([\d.]+ [KM]iB\); the model's weights need [\d.]+ MiB \(f16\); to fit, load with quant: "q8" or "q4" \(Pipeline\.load's option; CLI --quant q8\|q4; server QVQ_QUANT=q8\|q4\), visionQuant: "q8" .* or a smaller model$/,
    );
    assert.doesNotMatch(f16.message, /dtype: "f16"|f16 weights/);
    const q8 = await oom({ quant: "q8" });
    assert.match(
      q8.message,
      /\(f16, decoder q8\); to fit, load with quant: "q4" \(.*QVQ_QUANT=q4\), visionQuant/,
    );
    const smallest = await oom({ quant: "q4", visionQuant: "q8" });
    assert.match(
      smallest.message,
      /\(f16, decoder q4, vision q8\); to fit, load with a smaller model$/,
    );
  } finally {
    ckpt.close();
  }
});

Deno.test("smallerWeights() offers only what the plan does not use yet", () => {
  assert.deepEqual(smallerWeights({ dtype: "f32", quant: "q4", visionQuant: "q8" }), [
    `dtype: "f16" (Pipeline.load's option; CLI --dtype f16) where the adapter has shader-f16`,
  ]);
  assert.deepEqual(smallerWeights({ dtype: "f16" }), [
    QUANT_OPTION,
    `visionQuant: "q8" (Pipeline.load's option; CLI --vision-quant q8; server QVQ_VISION_QUANT=q8) ` +
    "for the vision tower",
  ]);
  assert.deepEqual(smallerWeights({ dtype: "f16", quant: "q4", visionQuant: "q8" }), []);
  assert.equal(orList(["a", "b", "c"]), "a, b or c");
  assert.equal(orList(["a"]), "a");
});

Deno.test("estimateMemory() counts quantized prefill's scratch: q8's dequantize slices, q4's int8 x", () => {
  const cfg = parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]);
  const maxBinding = 2 * GiB;
  const act = (quant?: "q8" | "q4") =>
    estimateMemory(
      cfg,
      syntheticPlan(PRESETS["Qwen2-VL-7B-Instruct"], { dtype: "f16", quant, maxBinding }),
      1024,
    )
      .activations;
  const chunk = prefillChunkTokens(cfg, maxBinding);
  // f16 decoder matrices take the tiled GEMM's split-k scratch instead (next test).
  const splitK = 2 * 256 * 37888 * 4;
  assert.equal(act("q8") - act() + splitK, DEQUANT_SCRATCH_BYTES);
  // The widest quantized k is down_proj's 18944: int8 codes + one f32 scale per 32.
  assert.equal(act("q4") - act() + splitK, chunk * 18944 * (1 + 4 / 32));
});

Deno.test("planWeights() with visionQuant q8 plans the vision tower's matrices but patch_embed as q8, and only those", () => {
  const cfg = parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]);
  const plan = (quant?: "q4", visionQuant?: "q8") =>
    syntheticPlan(PRESETS["Qwen2-VL-7B-Instruct"], {
      dtype: "f16",
      quant,
      visionQuant,
      maxBinding: 2 * GiB,
    });
  const f16 = plan(), q8 = plan(undefined, "q8"), both = plan("q4", "q8");
  const vq = [...q8.tensors.values()].filter((t) => t.dtype === "q8").map((t) => t.key);
  const blocks = Array.from(
    { length: cfg.vision.depth },
    (_, i) => ["qkv", "proj", "fc1", "fc2"].map((n) => `vision.blocks.${i}.${n}`),
  ).flat();
  assert.deepEqual(vq.sort(), [...blocks, "vision.merger.fc1", "vision.merger.fc2"].sort());
  assert.equal(q8.tensors.get("vision.patch_embed")!.dtype, "f16"); // k = 1176: no multiple of 32
  assert.equal(q8.visionQuant, "q8");
  assert.equal(f16.visionQuant, undefined);
  assert.equal("visionQuant" in f16, false);
  assert.ok([...f16.tensors.values()].every((t) => t.dtype === "f16" || t.dtype === "f32"));
  // Decoder and tower quantized independently: q4 decoder, q8 tower; same keys and sources.
  for (const [key, t] of both.tensors) {
    const want = key.startsWith("vision.") ? q8.tensors.get(key)!.dtype : t.dtype;
    assert.equal(t.dtype, want, key);
    if (key.startsWith("text.layers.")) assert.equal(t.dtype, t.kind === "matrix" ? "q4" : "f32");
  }
  assert.deepEqual([...q8.tensors.keys()], [...f16.tensors.keys()]);
  // q8: 1.0625 bytes per weight against f16's 2.
  const fc2 = q8.tensors.get("vision.blocks.0.fc2")!;
  assert.equal(fc2.bytes, 1280 * 5120 * 1.0625);
  assert.ok(q8.weightBytes < f16.weightBytes);
  // The tower's int8 GEMM needs no decoder scratch: the estimate's activations are unchanged.
  assert.equal(
    estimateMemory(cfg, q8, 1024).activations,
    estimateMemory(cfg, f16, 1024).activations,
  );
  assert.equal(
    estimateMemory(cfg, both, 1024).activations,
    estimateMemory(cfg, plan("q4"), 1024).activations,
  );
});

Deno.test("checkVisionQuant() takes q8 or nothing and says why q4 is refused", () => {
  assert.equal(checkVisionQuant(undefined), undefined);
  assert.equal(checkVisionQuant("q8"), "q8");
  assert.throws(
    () => checkVisionQuant("q4"),
    (e) => e instanceof InvalidInputError && /never measured/.test(e.message),
  );
  for (const v of ["f16", "int8", "", 8]) {
    assert.throws(() => checkVisionQuant(v), /must be "q8" or unset/);
  }
  const cfg = parseConfig(JSON.parse(Deno.readTextFileSync(`${TINY_DIR}config.json`)));
  assert.throws(
    () =>
      planWeights(cfg, lookupOf(checkpointTensors(cfg, "legacy")), {
        dtype: "f32",
        visionQuant: "q4",
        maxBinding: 128 * MiB,
        where: "index",
      }),
    InvalidInputError,
  );
});

Deno.test("estimateMemory() counts the f16 GEMM's split-k scratch at its largest prefill chunk", () => {
  const cfg = parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]);
  const plan = (dtype: "f16" | "f32") =>
    syntheticPlan(PRESETS["Qwen2-VL-7B-Instruct"], { dtype, maxBinding: 2 * GiB });
  const f16 = estimateMemory(cfg, plan("f16"), 1024);
  // 7B gate_up at a 256-token chunk: the time model (kernels/linear.ts gemmKernel) splits its 592
  // tiles of 128 × 128 in two, 2 · 256 · 37888 f32 partials — the largest of the four matrices at
  // any chunk length ≤ 512 within GEMM_SPLIT_MAX_BYTES.
  assert.deepEqual(gemmKernel(256, 37888, 3584), { kernel: "pipe", splitK: 2 });
  const q8 = estimateMemory(
    cfg,
    syntheticPlan(PRESETS["Qwen2-VL-7B-Instruct"], {
      dtype: "f16",
      quant: "q8",
      maxBinding: 2 * GiB,
    }),
    1024,
  );
  assert.equal(f16.activations - (q8.activations - DEQUANT_SCRATCH_BYTES), 2 * 256 * 37888 * 4);
});
