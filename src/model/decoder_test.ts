import { sharedGpu } from "../gpu/device.ts";
import { createStorage, readF32, uploadArray, writeArray } from "../gpu/buffers.ts";
import { createWeight, writeWeightRows } from "../gpu/tensor.ts";
import { assertClose, assertSameBits, randn, seeded } from "../ref/_random.ts";
import { linear as linearRef } from "../ref/linear.ts";
import { rmsNorm as rmsNormRef } from "../ref/norm.ts";
import { mropeTransformers } from "../ref/rope.ts";
import { attention as attentionRef } from "../ref/attention.ts";
import { siluMul as siluMulRef } from "../ref/elementwise.ts";
import {
  advance,
  createDecodeState,
  mropeTable,
  uploadRopeTable,
  writeDecodeState,
} from "../../kernels/mod.ts";
import type { TextConfig } from "./config.ts";
import {
  createDecoderBuffers,
  decodeAttend,
  DECODER_FUSION,
  type LayerCache,
  layerDispatches,
  prefillAttend,
  qkvWidth,
} from "./decoder.ts";
import { getRopeIndex } from "./rope_index.ts";
import { submit } from "./vision.ts";
import { GpuWeights } from "./weights.ts";
import { decodeAttentionScratchBytes } from "../../kernels/attention_decode.ts";
import { type KvDType, kvElementBytes } from "../../kernels/kv_cache.ts";
import { cacheValues } from "../ref/kv_cache.ts";
import assert from "node:assert/strict";
import { syntheticModel } from "./synthetic.ts";
import { TINY_DIR } from "./_fixture.ts";
import { Qwen2VLModel } from "./qwen2vl.ts";

// The released models' head size and M-RoPE split, with GQA, at a small width.
const T: TextConfig = {
  vocabSize: 16,
  hiddenSize: 256,
  intermediateSize: 192,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
  headDim: 128,
  rmsNormEps: 1e-6,
  ropeTheta: 1e6,
  mropeSection: [16, 24, 24],
  maxPositionEmbeddings: 64,
};

/** transformers' decoder layer in plain loops over the whole sequence (src/ref building blocks). */
function layerRef(
  x: Float32Array,
  pos: Int32Array, // (3, seq)
  w: Record<string, Float32Array>,
  seq: number,
  cache: KvDType,
): Float32Array {
  const H = T.hiddenSize, I = T.intermediateSize, kvd = T.numKvHeads * T.headDim, Q = qkvWidth(T);
  const h = rmsNormRef(x, w.inNorm, seq, H, T.rmsNormEps);
  const qkv = linearRef(h, w.qkv, w.qkvBias, seq, Q, H);
  const q = new Float32Array(seq * H),
    k = new Float32Array(seq * kvd),
    v = new Float32Array(seq * kvd);
  for (let i = 0; i < seq; i++) {
    q.set(qkv.subarray(i * Q, i * Q + H), i * H);
    k.set(qkv.subarray(i * Q + H, i * Q + H + kvd), i * kvd);
    v.set(qkv.subarray(i * Q + H + kvd, (i + 1) * Q), i * kvd);
  }
  const rot = { seq, headDim: T.headDim, theta: T.ropeTheta, mropeSection: T.mropeSection };
  const qr = mropeTransformers(q, pos, { ...rot, heads: T.numHeads });
  // The cache holds K and V in its dtype (transformers' cache, in the model's dtype, does the same).
  const kr = cacheValues(mropeTransformers(k, pos, { ...rot, heads: T.numKvHeads }), cache);
  const o = attentionRef(qr, kr, cacheValues(v, cache), {
    seq,
    heads: T.numHeads,
    kvHeads: T.numKvHeads,
    headDim: T.headDim,
  });
  const x1 = linearRef(o, w.o, null, seq, H, H, x);
  const h2 = rmsNormRef(x1, w.postNorm, seq, H, T.rmsNormEps);
  const act = siluMulRef(linearRef(h2, w.gateUp, null, seq, 2 * I, H), seq, I);
  return linearRef(act, w.down, null, seq, H, I, x1);
}

Deno.test("a decoder layer (head_dim 128, GQA, M-RoPE [16, 24, 24]) matches transformers' math over chunked prefill and decode steps", async () => {
  // f32 kernels vs f64-summing references: f32 rounding through ~7 ops of K ≤ 256 sums
  // (measured 5e-7 of the largest value).
  const { got, want, S } = await decoderLayerCase("f32");
  assertClose(got.subarray(0, S), want.subarray(0, S), 5e-6, "prefill rows");
  assertClose(got.subarray(S), want.subarray(S), 5e-6, "decode rows");
});

// The reference rounds its K and V to f16 as the cache does; where the kernels' f32 K or V lies a
// few ulps from the reference's across an f16 rounding boundary, that element lands one f16 step
// away: measured 9.1e-6 (prefill) and 6.4e-6 (decode) of the largest value, against 1.8e-4 and
// 7.8e-5 from the f32 reference — which must see the f16 cache.
Deno.test("a decoder layer with an f16 KV cache matches transformers' math on f16-rounded K and V", async () => {
  const { got, want, want32, S } = await decoderLayerCase("f16");
  assertClose(got.subarray(0, S), want.subarray(0, S), 2e-5, "prefill rows");
  assertClose(got.subarray(S), want.subarray(S), 2e-5, "decode rows");
  assert.throws(() => assertClose(got, want32, 5e-6), /max \|err\|/, "the cache held f32");
});

/**
 * One decoder layer (head_dim 128 …) with a KV cache of `kvDtype` over a chunked prefill and three
 * decode steps, and the reference with its K and V rounded to that cache (want) and kept f32
 * (want32); S: elements of the prefill rows.
 */
async function decoderLayerCase(kvDtype: KvDType) {
  const gpu = await sharedGpu();
  const H = T.hiddenSize, I = T.intermediateSize, Q = qkvWidth(T), kvd = T.numKvHeads * T.headDim;
  const rng = seeded(7);
  const w: Record<string, Float32Array> = {
    inNorm: randn(rng, H, 0.2).map((v) => 1 + v),
    postNorm: randn(rng, H, 0.2).map((v) => 1 + v),
    qkv: randn(rng, Q * H, 1 / 16),
    qkvBias: randn(rng, Q, 0.1),
    o: randn(rng, H * H, 1 / 16),
    gateUp: randn(rng, 2 * I * H, 1 / 16),
    down: randn(rng, H * I, 1 / Math.sqrt(I)),
  };
  const gw = new GpuWeights();
  const matrix = (key: string, data: Float32Array, rows: number, cols: number) => {
    const m = createWeight(gpu, rows, cols, "f32", key);
    writeWeightRows(gpu, m, 0, data);
    gw.set(key, m);
  };
  gw.set("text.layers.0.input_norm", uploadArray(gpu, w.inNorm));
  gw.set("text.layers.0.post_norm", uploadArray(gpu, w.postNorm));
  gw.set("text.layers.0.qkv_bias", uploadArray(gpu, w.qkvBias));
  matrix("text.layers.0.qkv", w.qkv, Q, H);
  matrix("text.layers.0.o", w.o, H, H);
  matrix("text.layers.0.gate_up", w.gateUp, 2 * I, H);
  matrix("text.layers.0.down", w.down, H, I);

  // 8 text tokens, an 8×12-patch image (24 tokens), 8 text tokens; then 3 decode steps.
  const IMG = 9;
  const ids = [...Array(8).fill(1), ...Array(24).fill(IMG), ...Array(8).fill(2)];
  const S = ids.length, STEPS = 3, N = S + STEPS, maxTokens = 48;
  const { positions, ropeDelta } = getRopeIndex(ids, [[1, 8, 12]], IMG, 2);
  const posAll = new Int32Array(3 * N); // (3, N): decode tokens at c + delta on every axis
  for (let a = 0; a < 3; a++) {
    posAll.set(positions.subarray(a * S, (a + 1) * S), a * N);
    for (let c = S; c < N; c++) posAll[a * N + c] = c + ropeDelta;
  }
  const x = randn(rng, N * H);
  const want = layerRef(x, posAll, w, N, kvDtype);

  const table = uploadRopeTable(gpu, mropeTable(T.headDim, T.ropeTheta, T.mropeSection, 64));
  const cache: LayerCache = {
    k: createStorage(gpu, maxTokens * kvd * kvElementBytes(kvDtype), "k"),
    v: createStorage(gpu, maxTokens * kvd * kvElementBytes(kvDtype), "v"),
    dtype: kvDtype,
  };
  const b = createDecoderBuffers(gpu, T, 24, "prefill");
  const got = new Float32Array(N * H);
  // Prefill in chunks of 24 and 16 tokens: the second attends to the first's cached K/V.
  for (const [c, n] of [[0, 24], [24, 16]]) {
    const pos = new Uint32Array(n * 3);
    for (let i = 0; i < n; i++) {
      for (let a = 0; a < 3; a++) pos[i * 3 + a] = positions[a * S + c + i];
    }
    const posBuf = uploadArray(gpu, pos);
    writeArray(gpu, b.x, x.subarray(c * H, (c + n) * H));
    submit(
      gpu,
      layerDispatches(
        gpu,
        T,
        gw,
        0,
        b,
        n,
        prefillAttend(gpu, T, b, cache, maxTokens, table, posBuf, n, c),
      ),
      "t",
    );
    got.set(await readF32(gpu, b.x, n * H), c * H);
    posBuf.destroy();
  }
  // Decode: the same Dispatches every step, positions and cache row from the state buffer.
  const state = createDecodeState(gpu);
  writeDecodeState(gpu, state, { cacheLen: S, position: S + ropeDelta, step: 0 });
  const d = createDecoderBuffers(gpu, T, 1, "decode");
  const scratch = createStorage(
    gpu,
    decodeAttentionScratchBytes({
      heads: T.numHeads,
      kvHeads: T.numKvHeads,
      headDim: T.headDim,
      maxTokens,
    }),
  );
  const step = [
    ...layerDispatches(
      gpu,
      T,
      gw,
      0,
      d,
      1,
      decodeAttend(gpu, T, d, cache, maxTokens, table, state, scratch),
    ),
    advance(gpu, state),
  ];
  for (let c = S; c < N; c++) {
    writeArray(gpu, d.x, x.subarray(c * H, (c + 1) * H));
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const s of step) s.encode(pass);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
    got.set(await readF32(gpu, d.x, H), c * H);
  }
  for (const s of step) s.destroy();
  [cache.k, cache.v, state, scratch].forEach((x) => x.destroy());
  b.destroy();
  d.destroy();
  table.destroy();
  gw.destroy();
  return { got, want, want32: layerRef(x, posAll, w, N, "f32"), S: S * H };
}

// The q4 tiny model prefilled one token at a time (every layer at m = 1, as decode runs it), with
// x chained as prepared int8 blocks from o_proj / down_proj into gate_up / the next qkv, and
// silu(gate) · up from gate_up into down_proj, against the same model with each GEMV preparing
// its own x: the blocks are the same bits (kernels/linear_q_test.ts), only Σ x² may be summed in
// another order (the tiny model's one block per row: the same order, and lavapipe gives the same
// bits), so 1e-5 of the largest logit.
Deno.test("layerDispatches() chains prepared x through o / down / gate_up at m = 1 (q4) with the unchained logits and fewer dispatches", async () => {
  const gpu = await sharedGpu();
  const cfg = JSON.parse(await Deno.readTextFile(`${TINY_DIR}config.json`));
  const model = await syntheticModel(cfg, {
    gpu,
    dtype: "f32",
    seed: 5,
    quant: "q4",
    maxContext: 64,
    prefillChunk: 1,
  });
  const prompt = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872];
  const saved = { ...DECODER_FUSION };
  const pass = async (preparedX: boolean, preparedAct: boolean) => {
    Object.assign(DECODER_FUSION, { preparedX, preparedAct });
    try {
      const s = model.createSession(32);
      const all = (await model.prefill(s, prompt, undefined, { allLogits: true })).logits;
      const n = s.decodeDispatches.length;
      s.dispose();
      return { all: all!, n };
    } finally {
      Object.assign(DECODER_FUSION, saved);
    }
  };
  const off = await pass(false, false);
  for (const [x, act] of [[true, false], [false, true], [true, true]]) {
    const on = await pass(x, act);
    const what = `preparedX ${x}, preparedAct ${act}`;
    // (the tiny model's down_proj stages its x anyway: no PREPX pass for preparedAct to save)
    assert.ok(x ? on.n < off.n : on.n <= off.n, `${what}: decode dispatches ${on.n} vs ${off.n}`);
    assertClose(on.all, off.all, 1e-5, `${what}: logits of every prompt position`);
  }
  model.dispose();
});

// The f16 and q8 tiny models prefilled one token at a time (every layer at m = 1, as decode runs
// it) with gate_up (norm and silu · up fused) on kernels/gemv.ts's resident-x GEMV — and for q8
// (GEMV_EVERY) qkv (norm, bias, rope + KV write fused), o_proj, down_proj and lm_head too —
// against linear()'s GEMVs: the same products summed in another order, so 1e-5 of the largest
// logit, and as many dispatches.
for (const quant of [undefined, "q8"] as const) {
  Deno.test(`layerDispatches() runs ${quant ?? "f16"} GEMVs at m = 1 on the resident-x GEMV with linear()'s logits`, async () => {
    const gpu = await sharedGpu();
    const cfg = JSON.parse(await Deno.readTextFile(`${TINY_DIR}config.json`));
    const model = await syntheticModel(cfg, {
      gpu,
      dtype: "f16",
      seed: 6,
      maxContext: 64,
      prefillChunk: 1,
      ...(quant ? { quant } : {}),
    });
    const prompt = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872];
    const saved = { ...DECODER_FUSION };
    const pass = async (residentGemv: boolean) => {
      Object.assign(DECODER_FUSION, { residentGemv });
      try {
        const s = model.createSession(32);
        const all = (await model.prefill(s, prompt, undefined, { allLogits: true })).logits;
        const keys = s.decodeDispatches.map((d) => d.variant.key);
        s.dispose();
        return { all: all!, keys };
      } finally {
        Object.assign(DECODER_FUSION, saved);
      }
    };
    const off = await pass(false), on = await pass(true);
    const gemv = (keys: string[]) => keys.filter((k) => k.startsWith("gemv.")).length;
    // gate_up a layer; q8 also qkv, o and down, and lm_head.
    const want = quant ? 4 * cfg.num_hidden_layers + 1 : cfg.num_hidden_layers;
    assert.equal(gemv(on.keys), want, "resident-x GEMVs a step");
    assert.equal(gemv(off.keys), 0);
    assert.equal(on.keys.length, off.keys.length, "decode dispatches");
    assertClose(on.all, off.all, 1e-5, "logits of every prompt position");
    model.dispose();
  });
}

// Batched decode with each session's rope + KV write folded into its attention
// (DECODER_FUSION.rowRopeKv, kernels/attention_decode.ts decodeAttentionRopeKv) against the
// ropeKvWriteAt + decodeAttention pair it replaces: one dispatch fewer a session and layer, and the
// same logits bit for bit (the kernel computes the pair's bits), at rows of different positions,
// over two steps (the second attends over the K/V the first wrote), f32 and f16 KV caches.
for (const kvCacheDtype of ["f32", "f16"] as const) {
  Deno.test(`rowAttend() with DECODER_FUSION.rowRopeKv gives the two-dispatch batch's logits bit for bit in one dispatch a session and layer (${kvCacheDtype} KV cache)`, async () => {
    const gpu = await sharedGpu();
    const model = await Qwen2VLModel.load(TINY_DIR, {
      gpu,
      dtype: "f32",
      maxContext: 40,
      kvCacheDtype,
    });
    const prompts = [[5, 17, 300, 9, 11], [42, 8], [7, 7, 7, 7, 7, 7, 7, 7, 7, 1]];
    const saved = { ...DECODER_FUSION };
    const pass = async (rowRopeKv: boolean) => {
      Object.assign(DECODER_FUSION, { rowRopeKv });
      const sessions = [];
      try {
        for (const [i, p] of prompts.entries()) {
          const s = model.createSession(40);
          await model.prefill(s, p);
          writeArray(gpu, s.tokens, new Uint32Array([100 + i, 200 + i, 300 + i]));
          sessions.push(s);
        }
        // (rowAttend runs as the batch is made: the switch is read then)
        const batch = model.createDecodeBatch([sessions[0], undefined, sessions[1], sessions[2]]);
        const n = batch.dispatches.length, logits: Float32Array[] = [];
        for (let step = 0; step < 2; step++) {
          const enc = gpu.device.createCommandEncoder(), cp = enc.beginComputePass();
          batch.encode(cp);
          for (const s of sessions) advance(gpu, s.state).encode(cp);
          cp.end();
          gpu.device.queue.submit([enc.finish()]);
          for (const s of sessions) logits.push(await readF32(gpu, s.logits));
        }
        batch.destroy();
        return { n, logits };
      } finally {
        Object.assign(DECODER_FUSION, saved);
        sessions.forEach((s) => s.dispose());
      }
    };
    try {
      const on = await pass(true), off = await pass(false);
      assert.equal(on.n, off.n - prompts.length * model.config.text.numLayers, "dispatches");
      for (const [i, l] of on.logits.entries()) {
        const what = `step ${i / prompts.length | 0} session ${i % prompts.length}`;
        assertSameBits(l, off.logits[i], `${what}: logits`);
      }
      // The sessions' logits differ, so a mixed-up row would show.
      assert.ok(on.logits[0].some((v, i) => Math.abs(v - on.logits[1][i]) > 1e-3));
    } finally {
      model.dispose();
    }
  });
}
