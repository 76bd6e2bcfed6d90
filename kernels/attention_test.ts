import assert from "node:assert/strict";
import { type Gpu, sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  attention as attentionRef,
  blockMeans,
  centered,
  cuSeqlens,
} from "../src/ref/attention.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { quantizeX } from "../src/ref/gemm_q.ts";
import { cacheArray, cacheValues } from "../src/ref/kv_cache.ts";
import {
  causalAttention,
  type PrefillOptions,
  quantizeQk,
  visionAttention,
  visionAttentionInt8,
} from "./attention.ts";
import type { KvDType } from "./kv_cache.ts";
import { run } from "./_kernel.ts";

// f32 dot products and exp against an f64 reference: scores of N(0,1) inputs are O(1) and the
// output a convex mix of v, so errors stay at a few f32 ulps of |v| (≈ 4); an off-by-one key or
// a wrong head is O(0.1) or more.
const TOL = 2e-6;

/** Copies the (rows, n, hd) heads at `offset` of a (rows, stride) matrix into a dense array. */
function gather(
  x: Float32Array,
  rows: number,
  stride: number,
  offset: number,
  width: number,
): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    out.set(x.subarray(r * stride + offset, r * stride + offset + width), r * width);
  }
  return out;
}

interface Case {
  headDim: number;
  heads: number;
  kvHeads: number;
  seq: number;
  offset: number;
}

// head_dim 16 (tiny), 80 (vision), 128 (decoder); GQA ratios 1, 2, 7 (28/4), 8 (64/8); seq 1, 5,
// 37, 600 (> 512: many key tiles); cache offsets for a second turn.
const CASES: Case[] = [
  { headDim: 16, heads: 2, kvHeads: 1, seq: 1, offset: 0 },
  { headDim: 16, heads: 2, kvHeads: 1, seq: 5, offset: 3 },
  { headDim: 80, heads: 4, kvHeads: 2, seq: 37, offset: 0 },
  { headDim: 128, heads: 7, kvHeads: 1, seq: 37, offset: 11 },
  { headDim: 128, heads: 8, kvHeads: 1, seq: 5, offset: 40 },
  { headDim: 128, heads: 2, kvHeads: 2, seq: 600, offset: 0 },
  { headDim: 80, heads: 2, kvHeads: 1, seq: 77, offset: 530 },
];

/** Random queries inside a fused qkv-like row and a dense K/V cache of offset + seq rows. */
function makeInputs(rng: () => number, c: Case) {
  const qStride = (c.heads + 2 * c.kvHeads) * c.headDim;
  const keys = c.offset + c.seq;
  const kvWidth = c.kvHeads * c.headDim;
  return {
    qkv: randn(rng, c.seq * qStride),
    qStride,
    keys,
    kvWidth,
    kc: randn(rng, keys * kvWidth),
    vc: randn(rng, keys * kvWidth),
  };
}

/**
 * Runs causalAttention() (with `tuning`) on case c's inputs from {@link makeInputs}, its K/V cache
 * in `cache`; returns its output, the reference's on the values that cache holds, and the kernel
 * variant that ran.
 */
async function runCausal(
  gpu: Gpu,
  c: Case,
  x: ReturnType<typeof makeInputs>,
  tuning?: PrefillOptions,
  cache: KvDType = "f32",
): Promise<{ got: Float32Array; want: Float32Array; key: string }> {
  const bufs = [x.qkv, cacheArray(x.kc, cache), cacheArray(x.vc, cache)].map((a) =>
    uploadArray(gpu, a)
  );
  const out = createStorage(gpu, c.seq * c.heads * c.headDim * 4);
  const d = causalAttention(
    gpu,
    out,
    { buffer: bufs[0], stride: x.qStride },
    { buffer: bufs[1], dtype: cache },
    { buffer: bufs[2], dtype: cache },
    c,
    tuning,
  );
  run(gpu, [d]);
  const got = await readF32(gpu, out);
  [...bufs, out].forEach((b) => b.destroy());
  d.destroy();
  const q = gather(x.qkv, c.seq, x.qStride, 0, c.heads * c.headDim);
  const [kc, vc] = [x.kc, x.vc].map((a) => cacheValues(a, cache));
  return { got, want: attentionRef(q, kc, vc, c), key: d.variant.key };
}

for (
  const [name, tuning] of [
    ["tiled", {}],
    ["default (flash, compact)", undefined],
    ["flash", { flash: {} }],
    ["flash outer", { flash: { outer: true } }],
  ] as const
) {
  // Every other case reads an f16 cache: the reference then runs on the f16-rounded K and V.
  Deno.test(`causalAttention() (${name} kernel) matches the CPU reference over head dims, GQA ratios, lengths and offsets, f32 and f16 caches`, async () => {
    const gpu = await sharedGpu();
    const rng = seeded(20);
    for (const [i, c] of CASES.entries()) {
      const cache = i % 2 ? "f16" : "f32";
      const { got, want } = await runCausal(gpu, c, makeInputs(rng, c), tuning, cache);
      assertClose(got, want, TOL, `${name} ${cache} cache ${JSON.stringify(c)}`);
    }
  });
}

Deno.test("every prefill tiling that fits gives the reference result (causal and vision)", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(25);
  const grid: [number, number, number][] = [[1, 4, 6], [2, 3, 5], [1, 5, 7]];
  const cu = cuSeqlens(grid), bcu = uploadArray(gpu, cu);
  // Tilings other than the defaults (cv 2, ty 16 from head_dim 64; cv 1 below), where they fit.
  // Flash tilings: every vec4-column count (5, 4, 2; 1 at head_dim 16 in the other tests), 4 and
  // 8 keys a thread, one to eight prefetch groups, 32 to 160 threads, dot and outer-product S,
  // the hot loops written out and (loops) as `for` loops.
  const tilings: [number, PrefillOptions[]][] = [
    [80, [
      { cv: 1, ty: 16 },
      { cv: 1, ty: 8, qres: false },
      { cv: 2, ty: 8, qres: false },
      {
        cv: 2,
        ty: 8,
        qres: true,
      },
      { cv: 2, ty: 8, qres: true, dc: 4, kc: 8 },
      { flash: { tx: 4, ty: 8, rk: 8 } },
      {
        flash: { tx: 4, ty: 8, rk: 4 },
      },
      { flash: { tx: 5, ty: 8 } },
      { flash: { tx: 10, ty: 4 } },
      { flash: { tx: 10, ty: 16 } },
      { flash: { tx: 4, ty: 8, rk: 8, outer: true } },
      { flash: { tx: 4, ty: 8, rk: 4, outer: true } },
      { flash: { tx: 5, ty: 8, outer: true } },
      { flash: { tx: 10, ty: 4, outer: true } },
      { flash: { tx: 10, ty: 8, early: true, blocked: false } },
      { flash: { tx: 10, ty: 6 } },
      { flash: { tx: 10, ty: 6, compact: true } },
      { flash: { tx: 4, ty: 8, rk: 8, compact: true } },
      { flash: { tx: 10, ty: 8, loops: true } },
      { flash: { tx: 10, ty: 8, loops: "s" } },
      { flash: { tx: 10, ty: 8, vlate: true } },
      { flash: { tx: 4, ty: 8, rk: 8, compact: true, vlate: true, early: true } },
      { flash: { tx: 5, ty: 8, rk: 8, outer: true, loops: true } },
      { flash: { tx: 5, ty: 8, rk: 8, outer: true, loops: "pv" } },
      // Warps as 8 × 4 blocks (the default where tx ≥ 8 and ty % 4 = 0; row-major above at
      // ty 6 and with blocked: false): four of them, then the last two columns ty-major.
      { flash: { tx: 10, ty: 16, blocked: true } },
      { flash: { tx: 10, ty: 8, blocked: true, loops: true, compact: true } },
      { flash: { tx: 10, ty: 4, blocked: true, vlate: true } },
    ]],
    // 17 and 18 rows of threads (6 warps; at head_dim 80 only within 48 KB, COMPACT).
    [16, [{ flash: { ty: 18, compact: true } }, { flash: { ty: 17, compact: true, vlate: true } }]],
    [128, [
      { cv: 2, ty: 8, dc: 4 },
      { cv: 2, ty: 8, dc: 8 },
      { cv: 1, ty: 8 },
      {
        cv: 2,
        ty: 4,
        qres: true,
        dc: 4,
        kc: 16,
      },
      { flash: { tx: 8, ty: 4 } },
      { flash: { tx: 8, ty: 8 } },
      { flash: { tx: 16, ty: 4 } },
      { flash: { tx: 8, ty: 4, outer: true } },
      { flash: { tx: 8, ty: 4, compact: true } },
      { flash: { tx: 8, ty: 4, compact: true, loops: true } },
      { flash: { tx: 8, ty: 4, compact: true, loops: "pv" } },
      { flash: { tx: 8, ty: 4, compact: true, loops: true, vlate: true } },
      { flash: { tx: 8, ty: 4, rk: 8, compact: true } },
      { flash: { tx: 8, ty: 4, compact: true, loops: true, blocked: true } },
    ]],
    // Two 8 × 4 blocks of warps along tx.
    [64, [{ flash: { tx: 16, ty: 4, blocked: true } }]],
  ];
  for (const [headDim, tunings] of tilings) {
    const c: Case = { headDim, heads: 4, kvHeads: 2, seq: cu[cu.length - 1], offset: 9 };
    const x = makeInputs(rng, c);
    const bufs = [x.qkv, x.kc, x.vc].map((a) => uploadArray(gpu, a));
    const out = createStorage(gpu, c.seq * c.heads * c.headDim * 4);
    const q = gather(x.qkv, c.seq, x.qStride, 0, c.heads * c.headDim);
    const want = attentionRef(q, x.kc, x.vc, c);
    // Vision: the same q against (seq, heads, headDim) keys and values (no GQA there).
    const kvis = randn(rng, c.seq * c.heads * headDim),
      vvis = randn(rng, c.seq * c.heads * headDim);
    const [bkv, bvv] = [kvis, vvis].map((a) => uploadArray(gpu, a));
    const wantVision = attentionRef(q, kvis, vvis, { ...c, kvHeads: c.heads, cuSeqlens: cu });
    for (const tuning of tunings) {
      const what = JSON.stringify({ headDim, ...tuning });
      let d;
      try {
        d = causalAttention(
          gpu,
          out,
          { buffer: bufs[0], stride: x.qStride },
          {
            buffer: bufs[1],
          },
          { buffer: bufs[2] },
          c,
          tuning,
        );
      } catch (e) {
        // Only "does not fit this adapter" may refuse a tiling.
        assert.match((e as Error).message, /does not fit/, what);
        continue;
      }
      run(gpu, [d]);
      assertClose(await readF32(gpu, out), want, TOL, `causal ${what}`);
      d.destroy();
      const dv = visionAttention(
        gpu,
        out,
        { buffer: bufs[0], stride: x.qStride },
        { buffer: bkv },
        { buffer: bvv },
        bcu,
        { seq: c.seq, heads: c.heads, headDim, nCu: cu.length },
        tuning,
      );
      run(gpu, [dv]);
      assertClose(await readF32(gpu, out), wantVision, TOL, `vision ${what}`);
      dv.destroy();
    }
    [...bufs, bkv, bvv, out].forEach((b) => b.destroy());
  }
  bcu.destroy();
});

Deno.test("causalAttention() of a second turn at an offset equals one long prefill", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(21);
  const headDim = 128, heads = 4, kvHeads = 2, first = 45, second = 30;
  const c: Case = { headDim, heads, kvHeads, seq: first + second, offset: 0 };
  const x = makeInputs(rng, c);
  const [bq, bk, bv] = [x.qkv, x.kc, x.vc].map((a) => uploadArray(gpu, a));
  const width = heads * headDim;
  const whole = createStorage(gpu, c.seq * width * 4),
    turns = createStorage(gpu, c.seq * width * 4);
  const k = { buffer: bk }, v = { buffer: bv };
  const ds = [
    causalAttention(gpu, whole, { buffer: bq, stride: x.qStride }, k, v, c),
    causalAttention(gpu, turns, { buffer: bq, stride: x.qStride }, k, v, { ...c, seq: first }),
    causalAttention(
      gpu,
      { buffer: turns, offset: first * width * 4 },
      { buffer: { buffer: bq, offset: first * x.qStride * 4 }, stride: x.qStride },
      k,
      v,
      { ...c, seq: second, offset: first },
    ),
  ];
  run(gpu, ds);
  // Same key tiles in the same order for every query row: the results agree to rounding.
  assertClose(await readF32(gpu, turns), await readF32(gpu, whole), 1e-6, "two turns vs one");
  [bq, bk, bv, whole, turns].forEach((b) => b.destroy());
});

// Three images of different sizes, the second with 2 frames (blocks of 16, 6, 6 and 48 patches:
// several frames, partial tiles), then one 600-patch frame (15 key tiles of 40).
const FRAME_GRIDS: [number, number, number][][] = [
  [[1, 4, 4], [2, 2, 3], [1, 6, 8]],
  [[1, 20, 30]],
];

/**
 * A vision attention case on the GPU: the qkv rows `makeQkv` gives ((seq, 3, heads, headDim) as
 * the vision qkv Linear writes them), the grids' cu_seqlens, an output buffer; q, k, v gathered
 * on the CPU for the reference.
 */
function visionCase(
  gpu: Gpu,
  grid: readonly [number, number, number][],
  heads: number,
  headDim: number,
  makeQkv: (seq: number, embed: number) => Float32Array,
) {
  const cu = cuSeqlens(grid);
  const seq = cu[cu.length - 1], embed = heads * headDim;
  const qkv = makeQkv(seq, embed);
  const [bqkv, bcu] = [uploadArray(gpu, qkv), uploadArray(gpu, cu)];
  const out = createStorage(gpu, seq * embed * 4);
  const [q, k, v] = [0, 1, 2].map((p) => gather(qkv, seq, 3 * embed, p * embed, embed));
  const rows = (part: number) => ({ buffer: bqkv, stride: 3 * embed, offset: part * embed });
  return {
    cu,
    out,
    q,
    k,
    v,
    embed,
    // out, q, k, v, cu, shape: the arguments of visionAttention() / visionAttentionInt8().
    args: [out, rows(0), rows(1), rows(2), bcu, { seq, heads, headDim, nCu: cu.length }] as const,
    ref: { seq, heads, kvHeads: heads, headDim, cuSeqlens: cu },
    destroy: () => [bqkv, bcu, out].forEach((b) => b.destroy()),
  };
}

Deno.test("visionAttention() keeps each frame of each image to itself", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(24);
  for (
    const [headDim, heads, grid] of [[80, 2, FRAME_GRIDS[0]], [16, 2, FRAME_GRIDS[0]], [
      80,
      1,
      FRAME_GRIDS[1],
    ]] as const
  ) {
    const c = visionCase(gpu, grid, heads, headDim, (seq, embed) => randn(rng, seq * 3 * embed));
    const want = attentionRef(c.q, c.k, c.v, c.ref);
    // {} is the tiled kernel, no tuning the default (flash).
    for (const tuning of [{}, undefined, { flash: { outer: true } }]) {
      const d = visionAttention(gpu, ...c.args, tuning);
      run(gpu, [d]);
      const what = `vision hd=${headDim} cu=${c.cu} ${JSON.stringify(tuning ?? "tiled")}`;
      assertClose(await readF32(gpu, c.out), want, TOL, what);
      d.destroy();
    }
    c.destroy();
  }
});

/**
 * q and k as the int8 prefill reads them from quantizeQk()'s rows (codes · d), run on the GPU, and
 * how many codes differ from the CPU's rounding (src/ref quantizeX of k − centered mean): by one
 * step at most, and only where x / d sits within 1e-4 of half a step — Vulkan lets a shader's
 * division be 2.5 ulp off, and round() of a value that near a tie may go either way. (Against a
 * CPU-rounded reference an H200 gave one output 4e-4 off, at be68fbf and after, 2026-11-29: what
 * one code on the other side of a tie does; this test was not rerun there.)
 */
async function int8Rows(
  gpu: Gpu,
  c: ReturnType<typeof visionCase>,
  heads: number,
  headDim: number,
) {
  const { seq } = c.args[5], w = headDim / 16 + 1, rows = seq * 2 * heads;
  const { nCu } = c.args[5];
  const qk = createStorage(gpu, rows * w * 16);
  const kmean = createStorage(gpu, (nCu - 1) * heads * headDim * 4);
  run(
    gpu,
    quantizeQk(gpu, qk, kmean, c.args[1], c.args[2], c.args[4], { seq, heads, headDim, nCu }),
  );
  const words = new Uint32Array((await readF32(gpu, qk)).buffer);
  // The means, each block's: the CPU's sums, the GPU's division (it may be an ulp or two off —
  // a shift like any other to softmax — and a mean of 20 an ulp off moves k − mean by 2e-6).
  const means = await readF32(gpu, kmean);
  [qk, kmean].forEach((b) => b.destroy());
  const want = blockMeans(c.k, c.embed, c.cu);
  means.forEach((m, i) =>
    assert.ok(Math.abs(m - want[i]) <= 3e-7 * Math.abs(want[i]), `mean ${i}`)
  );
  const x = [c.q, centered(c.k, c.embed, c.cu, means)];
  const cpu = x.map((a) => quantizeX(a, headDim));
  const out = [new Float32Array(seq * c.embed), new Float32Array(seq * c.embed)];
  let flips = 0;
  for (let t = 0; t < seq; t++) {
    for (let row = 0; row < 2 * heads; row++) {
      const part = row < heads ? 0 : 1, h = row % heads, base = ((t * 2 * heads + row) * w) * 4;
      const d = new Float32Array(words.buffer, (base + (w - 1) * 4) * 4, 1)[0];
      const at = (t * heads + h) * headDim, want = cpu[part];
      assert.ok(Math.abs(d - want.scales[at / headDim]) <= 4e-7 * d, `d of ${t}/${row}`);
      for (let e = 0; e < headDim; e++) {
        const code = ((words[base + (e >> 2)] >>> (8 * (e & 3))) << 24) >> 24;
        const ref = want.codes[at + e];
        if (code !== ref) {
          flips++;
          const tie = Math.abs(Math.abs(x[part][at + e] / d) % 1 - 0.5);
          assert.ok(
            Math.abs(code - ref) === 1 && tie < 1e-4,
            `code ${code} vs ${ref} at ${t}/${row}/${e}`,
          );
        }
        out[part][at + e] = code * d;
      }
    }
  }
  return { q: out[0], k: out[1], flips };
}

Deno.test("visionAttentionInt8() is the reference on its int8 q and k rows, near the f32 result", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(25);
  let worst = 0, flips = 0;
  // head_dim 16, 80 (vision) and 128; the last case's keys share a large offset per dim (a bias):
  // k_mean takes it out before quantizing, so it costs no precision.
  for (
    const [headDim, heads, grid, bias] of [
      [80, 2, FRAME_GRIDS[0], 0],
      [16, 3, FRAME_GRIDS[0], 0],
      [128, 1, FRAME_GRIDS[0], 0],
      [80, 2, FRAME_GRIDS[1], 0],
      [80, 2, FRAME_GRIDS[0], 10],
    ] as const
  ) {
    const c = visionCase(gpu, grid, heads, headDim, (seq, embed) => {
      const qkv = randn(rng, seq * 3 * embed);
      const offset = randn(rng, embed);
      for (let t = 0; t < seq; t++) {
        for (let i = 0; i < embed; i++) qkv[t * 3 * embed + embed + i] += bias * offset[i];
      }
      return qkv;
    });
    const rows = await int8Rows(gpu, c, heads, headDim);
    flips += rows.flips;
    const want = attentionRef(rows.q, rows.k, c.v, c.ref);
    const exact = attentionRef(c.q, c.k, c.v, c.ref);
    for (
      const tuning of [undefined, { flash: { compact: true } }, { flash: { ty: 4, loops: true } }]
    ) {
      const ds = visionAttentionInt8(gpu, ...c.args, tuning);
      assert.match(ds.at(-1)!.variant.key, /INT8S/);
      // Its default: 32 rows of threads, COMPACT (46.2 KB at head_dim 80) where they fit.
      if (!tuning && headDim === 80 && gpu.limits.maxComputeWorkgroupStorageSize >= 46208) {
        assert.match(ds.at(-1)!.variant.key, /COMPACT,.*TY=32/);
      }
      run(gpu, ds);
      const got = await readF32(gpu, c.out);
      const what = `int8 hd=${headDim} seq=${c.args[5].seq} ${JSON.stringify(tuning ?? "default")}`;
      assertClose(got, want, TOL, what);
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - exact[i]));
      ds.forEach((d) => d.destroy());
    }
    c.destroy();
  }
  // Near-tie codes are rare: none on lavapipe.
  assert.ok(flips <= 4, `${flips} codes differ from the CPU's rounding`);
  // What int8 scores cost here against f32 ones (N(0, 1) inputs, |out| ≲ 3): measured 0.0185 max
  // (lavapipe, 2026-11-28); a wrong scale or code layout is O(0.1) or more.
  assert.ok(worst > 0 && worst < 0.025, `int8 vs f32 max |Δ| ${worst}`);
});

Deno.test("visionAttention() and causalAttention() run the flash prefill by default (causal: compact)", async () => {
  const gpu = await sharedGpu();
  const b = createStorage(gpu, 4096);
  const r = { buffer: b };
  const dv = visionAttention(gpu, b, r, r, r, b, { seq: 4, heads: 1, headDim: 80, nCu: 2 });
  const dc = causalAttention(gpu, b, r, r, r, { seq: 4, heads: 1, headDim: 80 });
  assert.match(dv.variant.key, /BLOCKED,FLASH/);
  assert.doesNotMatch(dv.variant.key, /COMPACT/);
  assert.match(dc.variant.key, /COMPACT,FLASH/);
  [dv, dc].forEach((d) => d.destroy());
  b.destroy();
});

Deno.test("visionAttention() runs 17 rows of threads (COMPACT) where only that grid fits one H200 wave", async () => {
  const gpu = await sharedGpu();
  const b = createStorage(gpu, 4096);
  const r = { buffer: b };
  const key = (seq: number, headDim: number) => {
    const d = visionAttention(gpu, b, r, r, r, b, { seq, heads: 16, headDim, nCu: 2 });
    d.destroy();
    return d.variant.key;
  };
  // 1564 patches: 25 blocks of 64 queries × 16 heads = 400 workgroups > 396; 23 of 68: 368.
  assert.match(key(1564, 16), /COMPACT,FLASH.*TY=17/);
  assert.doesNotMatch(key(1536, 16), /TY=17/);
  assert.doesNotMatch(key(5120, 16), /TY=17/);
  // Where 17 rows do not fit (46 KB at head_dim 80 on a 32 KB adapter), the default tiling runs.
  if (gpu.limits.maxComputeWorkgroupStorageSize < 46080) {
    assert.match(key(1564, 80), /FLASH/);
    assert.doesNotMatch(key(1564, 80), /TY=17/);
  }
  b.destroy();
});

Deno.test("causalAttention() falls back to the tiled kernel where the default flash tiling does not fit", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(26);
  // head_dim 256: the flash kernel's 128-key tiles need ≥ 133 KB; the tiled kernel fits in 32 KB.
  const c: Case = { headDim: 256, heads: 2, kvHeads: 1, seq: 19, offset: 4 };
  const { got, want, key } = await runCausal(gpu, c, makeInputs(rng, c));
  assert.doesNotMatch(key, /FLASH/);
  assertClose(got, want, TOL, "head_dim 256");
});

Deno.test("cuSeqlens() makes one block per frame, as repeat_interleave(h·w, t).cumsum()", () => {
  assert.deepEqual([...cuSeqlens([[1, 4, 4], [2, 2, 3]])], [0, 16, 22, 28]);
});

Deno.test("attention builders reject bad head shapes with the values in the message", async () => {
  const gpu = await sharedGpu();
  const b = createStorage(gpu, 4096);
  const r = { buffer: b };
  assert.throws(
    () => causalAttention(gpu, b, r, r, r, { seq: 1, heads: 2, headDim: 72 }),
    /head_dim 72/,
  );
  assert.throws(
    () => causalAttention(gpu, b, r, r, r, { seq: 1, heads: 7, kvHeads: 2, headDim: 16 }),
    InvalidInputError,
  );
  assert.throws(
    () =>
      causalAttention(gpu, b, { buffer: b, stride: 30 }, r, r, { seq: 1, heads: 2, headDim: 16 }),
    /stride 30/,
  );
  // f16 rows are for a KV cache: K and V of one type, q f32, no f16 in the vision tower.
  const h = { buffer: b, dtype: "f16" } as const, sh = { seq: 1, heads: 2, headDim: 16 };
  assert.throws(() => causalAttention(gpu, b, r, h, r, sh), /q, k, v rows are f32, f16, f32/);
  assert.throws(() => causalAttention(gpu, b, h, h, h, sh), /q must be f32/);
  assert.throws(
    () => visionAttention(gpu, b, r, h, h, b, { ...sh, nCu: 2 }),
    /f16 only for a KV cache/,
  );
  // Warps in 8 × 4 blocks need 8 threads along keys and rows of threads in fours.
  const v80 = { seq: 4, heads: 1, headDim: 80, nCu: 2 };
  for (
    const [flash, why] of [[{ tx: 5 }, /tx ≥ 8/], [{ tx: 10, ty: 6 }, /multiple of 4/]] as const
  ) {
    assert.throws(
      () => visionAttention(gpu, b, r, r, r, b, v80, { flash: { ...flash, blocked: true } }),
      why,
    );
  }
  b.destroy();
});
