/**
 * Attention micro-benchmark: the vision tower's block-diagonal attention and the decoder's causal
 * prefill (decode: bench/_attention_decode.ts), at real shapes, with seeded inputs made on the
 * GPU. Time per call = (t(2R) − t(R)) / R over R chained calls in one compute pass (drops submit
 * and readback costs).
 * After timing, a few output rows of each case are checked against src/ref/attention.ts (f64), so
 * a fast wrong kernel cannot pass unnoticed. Prints a table and writes JSON lines (--out).
 *
 *   deno run -A bench/_attention.ts [--only vision,prefill] [--reps R]
 *     [--sweep 0|1|small|flash] [--tunings JSON] [--seqs 5120,1564] [--int8 | --int8-only]
 *     [--out file.jsonl]
 *
 * --tunings '[null, {"flash": {"ty": 16}}]' times the given prefill tunings in that order (null:
 * the default) instead of a sweep's. --int8 also times each vision tuning with S in int8
 * (visionAttentionInt8: its quantize pass included), checked against the reference on int8-rounded
 * q and k.
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage, readF32 } from "../src/gpu/buffers.ts";
import {
  causalAttention,
  type PrefillOptions,
  visionAttention,
  visionAttentionInt8,
} from "../kernels/attention.ts";
import type { Dispatch } from "../kernels/_kernel.ts";
import { attention as attentionRef, centered, fakeInt8 } from "../src/ref/attention.ts";
import { msPerCall, randomF32 } from "./_timing.ts";

const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const only = opt("--only", "vision,prefill").split(",");
const outFile = opt("--out", "");
/** Patches per image of the vision cases (5120: a 1280-token image, 1564: 391 tokens). */
const visionSeqs = opt("--seqs", "5120,1564").split(",").map(Number);
/** Overrides every case's R (1 for a quick correctness pass on a slow adapter). */
const repsOverride = Number(opt("--reps", "0"));
/** Also time the other prefill tilings (--sweep 0: the default only; small: narrower tiles). */
const sweepOpt = opt("--sweep", "1");
const sweep = sweepOpt !== "0";
const int8Opt = args.includes("--int8") || args.includes("--int8-only");
/** --int8-only: the int8 runs alone. */
const int8Only = args.includes("--int8-only");
/** --sweep small: the default against narrower tiles, interleaved twice (for short images). */
const SMALL_TUNINGS: (PrefillOptions | undefined)[] = [
  undefined,
  { cv: 1, ty: 8 },
  { cv: 2, ty: 8 },
  { cv: 1, ty: 4 },
  undefined,
  { cv: 1, ty: 8 },
];
/**
 * --sweep flash: the default kernel against the tiled one ({}) and the flash kernel's tilings,
 * interleaved twice (a tiling that does not divide a case's head_dim or fit is skipped).
 */
const FLASH_TUNINGS: (PrefillOptions | undefined)[] = [
  undefined,
  {},
  { flash: {} },
  { flash: { loops: true } },
  { flash: { ty: 12 } },
  { flash: { ty: 17, compact: true } },
  { flash: { ty: 18, compact: true } },
  { flash: { compact: true, loops: true, vlate: true } },
  { flash: { compact: true, loops: true } },
  { flash: { compact: true } },
  { flash: { outer: true } },
  undefined,
  { flash: {} },
  { flash: { ty: 17, compact: true } },
  { flash: { compact: true, loops: true, vlate: true } },
];
const tuningsOpt = opt("--tunings", "");
const TUNINGS: (PrefillOptions | undefined)[] = tuningsOpt
  ? (JSON.parse(tuningsOpt) as (PrefillOptions | null)[]).map((t) => t ?? undefined)
  : sweepOpt === "small"
  ? SMALL_TUNINGS
  : sweepOpt === "flash"
  ? FLASH_TUNINGS
  : sweep
  ? [
    undefined,
    { qres: true },
    { ty: 8 },
    { ty: 32 },
    { cv: 1 },
    { cv: 1, ty: 8 },
    { dc: 8 },
    { dc: 10 },
    { dc: 5 },
    { kc: 8 },
  ]
  : [undefined];
const gpu = await requestGpu();
console.log(`adapter: ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.description}`);
const lines: string[] = [];
let failures = 0;

/** ms per call of `ds` (one call = all of ds): bench/_timing.ts, R ≥ minReps, ≈ 40 ms of work. */
function timeIt(ds: Dispatch[], probe: GPUBuffer, minReps: number): Promise<number> {
  return msPerCall(gpu, ds, probe, { minReps, reps: repsOverride || undefined });
}

const randomBuffer = (n: number, seed: number, label: string) => randomF32(gpu, n, seed, label);

/** Reads rows [r0, r0 + n) of heads at `offset` in a (rows, stride) buffer into (n, width). */
async function readRows(
  b: GPUBuffer,
  stride: number,
  offset: number,
  width: number,
  r0: number,
  n: number,
): Promise<Float32Array> {
  const all = await readF32(gpu, b, n * stride, r0 * stride);
  const out = new Float32Array(n * width);
  for (let r = 0; r < n; r++) {
    out.set(all.subarray(r * stride + offset, r * stride + offset + width), r * width);
  }
  return out;
}

/**
 * Checks output row `i` against the reference: the query sees keys [lo, hi), which is a causal
 * query at offset hi − lo − 1 over those keys.
 */
async function checkRow(
  what: string,
  out: GPUBuffer,
  outRow: number,
  q: { b: GPUBuffer; stride: number; off: number; row: number },
  kv: { k: GPUBuffer; v: GPUBuffer; stride: number; kOff: number; vOff: number },
  lo: number,
  hi: number,
  s: { heads: number; kvHeads: number; headDim: number },
  int8 = false,
) {
  const width = s.heads * s.headDim, kvWidth = s.kvHeads * s.headDim;
  // int8: the reference sees q and k as the int8 kernel does: k less its mean over the keys (the
  // kernel's mean is over the query's cu_seqlens block: the keys [lo, hi)), rounded per head row.
  const rounded = (x: Float32Array) => int8 ? fakeInt8(x, s.headDim) : x;
  const qr = rounded(await readRows(q.b, q.stride, q.off, width, q.row, 1));
  const k = await readRows(kv.k, kv.stride, kv.kOff, kvWidth, lo, hi - lo);
  const kr = rounded(int8 ? centered(k, kvWidth) : k);
  const vr = await readRows(kv.v, kv.stride, kv.vOff, kvWidth, lo, hi - lo);
  const want = attentionRef(qr, kr, vr, { ...s, seq: 1, offset: hi - lo - 1 });
  const got = await readF32(gpu, out, width, outRow * width);
  let err = 0;
  for (let i = 0; i < width; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  // Inputs are uniform in [-1, 1): outputs are O(0.1–1); f32 accumulation stays near 1e-6.
  if (!(err <= 1e-5)) {
    failures++;
    console.log(`  WRONG ${what} row ${outRow}: max |err| ${err}`);
  }
  return err;
}

function report(rec: Record<string, unknown>, ms: number, flop: number) {
  const r = { ...rec, us: +(ms * 1000).toFixed(2), tflop_s: +(flop / ms / 1e9).toFixed(3) };
  lines.push(JSON.stringify(r));
  console.log(
    `${String(rec.case).padEnd(52)} ${(ms * 1000).toFixed(1).padStart(10)} µs  ${
      (flop / ms / 1e9).toFixed(2).padStart(7)
    } TFLOP/s  err ${(rec.max_err as number).toExponential(1)}`,
  );
}

// Vision: one image of `seq` patches (one frame), 16 heads × 80, q/k/v in one fused qkv row.
if (only.includes("vision")) {
  for (const seq of visionSeqs) {
    const heads = 16, headDim = 80, E = heads * headDim;
    const qkv = randomBuffer(seq * 3 * E, 11, "qkv");
    const cu = createStorage(gpu, 8, "cu");
    gpu.device.queue.writeBuffer(cu, 0, new Uint32Array([0, seq]));
    const out = createStorage(gpu, seq * E * 4, "out");
    const rows = (part: number) => ({ buffer: qkv, stride: 3 * E, offset: part * E });
    for (
      const [tuning, int8] of TUNINGS.flatMap((t) =>
        int8Only ? [[t, true]] : int8Opt ? [[t, false], [t, true]] : [[t, false]]
      ) as [PrefillOptions | undefined, boolean][]
    ) {
      let ds: Dispatch[];
      const s = { seq, heads, headDim, nCu: 2 };
      try {
        ds = int8
          ? visionAttentionInt8(gpu, out, rows(0), rows(1), rows(2), cu, s, tuning)
          : [visionAttention(gpu, out, rows(0), rows(1), rows(2), cu, s, tuning)];
      } catch (e) {
        console.log(`vision ${seq} ${JSON.stringify(tuning)}: skipped (${(e as Error).message})`);
        continue;
      }
      const ms = await timeIt(ds, out, seq > 2000 ? 4 : 10);
      let err = 0;
      for (const i of [0, 1, seq >> 1, seq - 1]) {
        err = Math.max(
          err,
          await checkRow(
            `vision ${seq}`,
            out,
            i,
            { b: qkv, stride: 3 * E, off: 0, row: i },
            { k: qkv, v: qkv, stride: 3 * E, kOff: E, vOff: 2 * E },
            0,
            seq,
            { heads, kvHeads: heads, headDim },
            int8,
          ),
        );
      }
      report(
        {
          kind: "vision",
          case: `vision seq ${seq} 16×80 ${int8 ? "int8 " : ""}${
            JSON.stringify(tuning ?? "default")
          }`,
          seq,
          heads,
          head_dim: headDim,
          tuning,
          int8,
          max_err: err,
        },
        ms,
        4 * seq * seq * headDim * heads,
      );
      ds.forEach((d) => d.destroy());
    }
    [qkv, cu, out].forEach((b) => b.destroy());
  }
}

// Decoder (7B: 28 heads, 4 KV heads, head_dim 128): q in the fused qkv row, K/V in a cache.
const D7 = { heads: 28, kvHeads: 4, headDim: 128 };

if (only.includes("prefill")) {
  for (const seq of [478, 1024]) {
    const s = D7, stride = (s.heads + 2 * s.kvHeads) * s.headDim, kvWidth = s.kvHeads * s.headDim;
    const qkv = randomBuffer(seq * stride, 21, "qkv");
    const kc = randomBuffer(seq * kvWidth, 22, "k"), vc = randomBuffer(seq * kvWidth, 23, "v");
    const out = createStorage(gpu, seq * s.heads * s.headDim * 4, "out");
    for (const tuning of TUNINGS) {
      let d: Dispatch;
      try {
        d = causalAttention(gpu, out, { buffer: qkv, stride }, { buffer: kc }, { buffer: vc }, {
          ...s,
          seq,
        }, tuning);
      } catch (e) {
        console.log(`prefill ${seq} ${JSON.stringify(tuning)}: skipped (${(e as Error).message})`);
        continue;
      }
      const ms = await timeIt([d], out, 10);
      let err = 0;
      for (const i of [0, 1, seq >> 1, seq - 1]) {
        err = Math.max(
          err,
          await checkRow(
            `prefill ${seq}`,
            out,
            i,
            { b: qkv, stride, off: 0, row: i },
            { k: kc, v: vc, stride: kvWidth, kOff: 0, vOff: 0 },
            0,
            i + 1,
            s,
          ),
        );
      }
      // Causal: Σ_i (i + 1) keys ≈ seq² / 2.
      report(
        {
          kind: "prefill",
          case: `prefill 7B seq ${seq} ${JSON.stringify(tuning ?? "default")}`,
          seq,
          ...s,
          tuning,
          max_err: err,
        },
        ms,
        4 * (seq * (seq + 1) / 2) * s.headDim * s.heads,
      );
      d.destroy();
    }
    [qkv, kc, vc, out].forEach((b) => b.destroy());
  }
}

if (outFile) await Deno.writeTextFile(outFile, lines.join("\n") + "\n");
if (failures) {
  console.log(`${failures} checked rows WRONG`);
  Deno.exit(1);
}
