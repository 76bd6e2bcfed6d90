import assert from "node:assert/strict";
import { type Gpu, sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readF32, uploadArray } from "../src/gpu/buffers.ts";
import { createWeight, destroyWeight, f32ToF16Bits } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { linear as linearRef, normLinear as normLinearRef } from "../src/ref/linear.ts";
import { siluMul as siluMulRef } from "../src/ref/elementwise.ts";
import { assertClose, randn, seeded } from "../src/ref/_random.ts";
import { type GemvDType, gemvResident, gemvResidentFits, type GemvTuning } from "./gemv.ts";
import { readQuantWeight, writeQuantRows } from "./linear_q.ts";
import { dequantize } from "../src/ref/linear_q.ts";
import { run } from "./_kernel.ts";
import { ropeKvCase, uploadWeight } from "./_test_utils.ts";
import { mropeTable, uploadRopeTable } from "./rope.ts";
import type { KvDType } from "./kv_cache.ts";

// f32 sums in another order than the f64 reference (kernels/linear_test.ts's bound: 1e-5 of
// max|y| holds k = 3584; one dropped or doubled term fails by orders of magnitude).
const TOL = 1e-5;

// [n outputs, k, tuning]: k of one unit (8 elements f16, 32 = two units q8), a unit count one
// short of a subgroup multiple (f16 104 = 13 units, q8 96 = 6), the 2B and 7B hidden sizes; few
// workgroups (many batches each) and several units a thread (maxThreads below the units a row);
// odd n (a last batch past the rows).
const CASES: Record<GemvDType, [number, number, Partial<GemvTuning>][]> = {
  f16: [
    [5, 8, {}],
    [37, 104, {}],
    [37, 104, { groups: 3, rows: 2 }],
    [130, 1536, { maxThreads: 64, groups: 7 }],
    [64, 3584, { rows: 6, groups: 5 }],
    [19, 3584, { maxThreads: 96 }],
  ],
  q8: [
    [5, 32, {}],
    [37, 96, {}],
    [37, 160, { groups: 3, rows: 2 }],
    [130, 1536, { maxThreads: 64, groups: 7 }],
    [64, 3584, { rows: 6, groups: 5 }],
    [19, 3584, { maxThreads: 96 }],
  ],
};

/** A (rows, k) weight of dtype from random values, and the values the GPU holds. */
async function makeWeight(gpu: Gpu, rows: number, k: number, dtype: GemvDType, rng: () => number) {
  const data = randn(rng, rows * k, 1 / Math.sqrt(k));
  if (dtype === "f16") return uploadWeight(gpu, data, rows, k, "f16", "w");
  const w = createWeight(gpu, rows, k, "q8", "wq");
  writeQuantRows(gpu, w, 0, f32ToF16Bits(data.map(Math.f16round)));
  return { w, held: dequantize(await readQuantWeight(gpu, w)) };
}

for (const dtype of ["f16", "q8"] as const) {
  for (const norm of [false, true]) {
    for (const silu of [false, true]) {
      Deno.test(`gemvResident() matches the CPU reference, ${dtype}, norm ${norm}, siluMul ${silu}`, async () => {
        const gpu = await sharedGpu();
        const rng = seeded(41 + 2 * Number(norm) + Number(silu) + (dtype === "q8" ? 10 : 0));
        for (const [idx, [n, k, tuning]] of CASES[dtype].entries()) {
          if (silu && (tuning.rows ?? 4) % 2) continue;
          const rows = silu ? 2 * n : n;
          // Every other case without silu adds to y (accumulate: the fused residual).
          const acc = !silu && idx % 2 === 1;
          const x = randn(rng, k, 2), nwData = randn(rng, k), y0 = randn(rng, n, 3);
          const { w, held } = await makeWeight(gpu, rows, k, dtype, rng);
          const [bx, bnw] = [x, nwData].map((a) => uploadArray(gpu, a));
          const by = acc ? uploadArray(gpu, y0, "y") : createStorage(gpu, n * 4, "y");
          const d = gemvResident(gpu, by, bx, w, {
            ...(norm ? { norm: { weight: bnw, eps: 1e-6 } } : {}),
            siluMul: silu,
            accumulate: acc,
          }, tuning);
          run(gpu, [d]);
          const y = norm
            ? normLinearRef(x, nwData, 1e-6, held, null, 1, rows, k, acc ? y0 : undefined)
            : linearRef(x, held, null, 1, rows, k, acc ? y0 : undefined);
          const what = `${n}x${k} ${JSON.stringify(tuning)} accumulate ${acc}`;
          assertClose(await readF32(gpu, by, n), silu ? siluMulRef(y, 1, n) : y, TOL, what);
          [bx, bnw, by].forEach((b) => b.destroy());
          d.destroy();
          destroyWeight(w);
        }
      });
    }
  }
}

Deno.test("gemvResident() leaves the outputs past n alone and fits only f16 / q8 weights in one chunk", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(47);
  const k = 64, n = 9;
  const { w, held } = uploadWeight(gpu, randn(rng, n * k), n, k, "f16", "w");
  const x = randn(rng, k);
  const bx = uploadArray(gpu, x);
  const by = uploadArray(gpu, new Float32Array(n + 3).fill(7));
  run(gpu, [gemvResident(gpu, by, bx, w, {}, { rows: 4 })]);
  const got = await readF32(gpu, by, n + 3);
  assertClose(got.subarray(0, n), linearRef(x, held, null, 1, n, k), TOL, "y");
  assert.deepEqual([...got.subarray(n)], [7, 7, 7]);
  assert.equal(gemvResidentFits(gpu, w, true), false, "odd rows cannot pair gate and up");
  const f32 = uploadWeight(gpu, randn(rng, n * k), n, k, "f32", "w32").w;
  const odd = uploadWeight(gpu, randn(rng, 4 * 12), 4, 12, "f16", "odd").w;
  const q4 = createWeight(gpu, 4, k, "q4", "q4");
  const split = uploadWeight(gpu, randn(rng, 8 * k), 8, k, "f16", "split", 4 * k * 2).w;
  for (const bad of [f32, odd, split, q4]) {
    assert.equal(gemvResidentFits(gpu, bad), false, bad.chunks[0].buffer.label);
    assert.throws(() => gemvResident(gpu, by, bx, bad), InvalidInputError);
  }
  assert.throws(() => gemvResident(gpu, by, bx, w, {}, { rows: 0 }), InvalidInputError);
  assert.throws(() => gemvResident(gpu, by, bx, w, {}, { maxThreads: 0 }), InvalidInputError);
  assert.throws(
    () => gemvResident(gpu, by, bx, w, { siluMul: true, accumulate: true }, { rows: 2 }),
    InvalidInputError,
  );
  [bx, by].forEach((b) => b.destroy());
  [w, f32, odd, split, q4].forEach(destroyWeight);
});

// The decode q/k/v projection with rope + KV write as the epilogue (and the bias) against the CPU
// composition (normLinear, then ropeKvWrite; kernels/_test_utils.ts ropeKvCase): 7B's head layout
// (28 q + 4 kv heads of 128, M-RoPE) at k = 3584 and the tiny model's (4 + 2 heads of 16) at
// k = 32, f16 and q8, with and without norm, into an f16 cache (with norm) and an f32 one; a few
// workgroups and 2 or 6 rows a batch too (pairs split over batches and workgroups).
Deno.test("gemvResident() with ropeKv rotates q and k and writes K, V like normLinear + ropeKvWrite", async () => {
  const gpu = await sharedGpu();
  const rng = seeded(53);
  const maxTokens = 6, eps = 1e-6;
  const cases = [
    { t: mropeTable(128, 1e6, [16, 24, 24], 4096), q: 28, kv: 4, k: 3584, row: 3 },
    { t: mropeTable(16, 1e6, [2, 3, 3], 64), q: 4, kv: 2, k: 32, row: 5 },
  ];
  const tunings: Partial<GemvTuning>[] = [{}, { rows: 2, groups: 3 }, { rows: 6, groups: 5 }];
  for (const dtype of ["f16", "q8"] as const) {
    for (const { t, q, kv, k, row } of cases) {
      const hd = 2 * t.half, n = (q + 2 * kv) * hd;
      const gt = uploadRopeTable(gpu, t);
      const { w, held } = await makeWeight(gpu, n, k, dtype, rng);
      for (const [i, tuning] of tunings.entries()) {
        const norm = i % 2 === 0;
        const cache: KvDType = norm ? "f16" : "f32";
        const c = ropeKvCase(gpu, rng, { table: t, gpuTable: gt, q, kv, k, row, maxTokens, cache });
        const d = gemvResident(gpu, c.by, c.bx, w, {
          ...(norm ? { norm: { weight: c.bnw, eps } } : {}),
          bias: c.bb,
          ropeKv: c.ropeKv,
        }, tuning);
        run(gpu, [d]);
        const lin = norm
          ? normLinearRef(c.x, c.nw, eps, held, c.bias, 1, n, k)
          : linearRef(c.x, held, c.bias, 1, n, k);
        await c.check(
          lin,
          TOL,
          `${dtype} ${q}+${kv} heads of ${hd}, k=${k}, ${JSON.stringify(tuning)}, norm=${norm}`,
        );
        c.destroy();
        d.destroy();
      }
      destroyWeight(w);
      gt.destroy();
    }
  }
});
