/**
 * Decode GEMV bench: the 7B decoder's matrices (28 layers of qkv, o, gate_up, down + lm_head,
 * each its own weight so nothing stays in L2). Time per token = (t(2R) − t(R)) / R over R chained
 * repetitions in one compute pass, which drops the submit and readback overheads.
 *
 * 1. Sweep: every kind's chain (28 weights, or lm_head alone) under each GEMV tuning — q8/q4:
 *    kernels/linear_q.ts's, plain x (no fused norm/silu); f16: kernels/linear.ts's gemvWg ×
 *    gemvRows with the kind's fused decode variant; prints the best per kind.
 * 2. Decode chains (f16 / q8 / q4): the 169 GEMVs as a decode step runs them (f16 also with
 *    gate_up on the resident-x GEMV of kernels/gemv.ts, q8 also o, down, lm_head: as the decoder
 *    runs them) — norm fused into
 *    qkv, gate_up and lm_head, silu · mul into down, o and down accumulating — with the default
 *    tunings (and for q8/q4 with the sweep's best per kind).
 * 3. Prefill (--prefill M, default 478; 0 skips): one layer's four products at m = M (q8/q4:
 *    dequantize into the scratch + the f16 GEMM), and the dequantize passes alone.
 *
 * --sweep prep: only each kind's default and the prepared-x tunings (one PREPX pass + the GEMV);
 * --sweep emit (q4): o, gate_up, down as the decoder chains them (emit / prepared x) under the
 * emitting GEMV's tunings (workgroups grown to whole blocks), then the chains;
 * --sweep xpu (q4): every kind as the emit-x decoder chains it, its default tuning and prepared-x
 * tunings with the loop written out 2 / 4 / 8 units a step (LinearQTuning.xpUnroll), then the
 * emit-x chain under GEMV_WIDE settings (linear_q.ts), interleaved --chain-reps times (default
 * 2); --kinds o,down: only those kinds' sweeps (none: no sweep);
 * --tunings JSON: that list instead of the xpu sweep's; --chains 0: no chains;
 * --model 72b: QVQ-72B's shapes (hidden 8192, intermediate 29568) instead of 7B's.
 * 4. Few rows (--xrows 2,4,8,16): every kind at m rows of x (batched decode, short prompts) as
 *    linear() runs it — q8/q4 the few-row GEMV (kernels/linear_q.ts gemvQXRowsTuning), f16
 *    kernels/linear.ts's — against the old m > 1 path (LINEAR_CHOICE.xrows off, bench/main.ts
 *    --no-xrows), the dtype's few-row GEMV off (GEMV_XROWS: q8 dequantize + the f16 few-row GEMV,
 *    its default before the f32-x few-row GEMV; q4 the int8 GEMM) and m = 1;
 *    --xrows-tunings '[{"wg":64,"tpr":16,"rows":4,"xpUnroll":1}]' adds few-row tunings to time
 *    (q8: its f32-x tuning's fields; '[{"xq":true}]' times q8 on the int8-x few-row GEMV). With
 *    --sweep 0 --chains 0 --prefill 0: that alone, e.g. `deno run -A bench/_gemv.ts --dtypes q8
 *    --sweep 0 --chains 0 --prefill 0 --xrows 2,4,8,16`.
 *
 *   deno run -A bench/_gemv.ts [--layers 28] [--dtypes f16,q8,q4] [--sweep 1|0|prep] [--unroll 2,4]
 *     [--model 7b|72b] [--prefill 478] [--out file.jsonl]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { destroyWeight, type QuantDType, type Weight } from "../src/gpu/tensor.ts";
import { fill } from "../kernels/fill.ts";
import {
  dequantize,
  GEMV_WIDE,
  GEMV_XROWS,
  gemvQTuning,
  linearQ,
  type LinearQTuning,
  preparedXBytes,
} from "../kernels/linear_q.ts";
import { linear, LINEAR_CHOICE, type LinearShape, type LinearTuning } from "../kernels/linear.ts";
import { type Dispatch, run } from "../kernels/_kernel.ts";
import { gemvResident } from "../kernels/gemv.ts";
import { msPerRep, randomWeight } from "./_timing.ts";

const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const layers = Number(opt("--layers", "28"));
const out = opt("--out", "");
const dtypes = opt("--dtypes", "f16,q8,q4").split(",") as ("f16" | QuantDType)[];
const sweepMode = opt("--sweep", "1");
const sweep = sweepMode !== "0" && sweepMode !== "emit" && sweepMode !== "xpu";
const prefillM = Number(opt("--prefill", "478"));
const gpu = await requestGpu();
console.log(
  `${gpu.adapterInfo.description || gpu.adapterInfo.device} subgroups=${gpu.features.subgroups} ` +
    `sg=[${gpu.adapterInfo.subgroupMinSize}, ${gpu.adapterInfo.subgroupMaxSize}]`,
);
const big = opt("--model", "7b") === "72b";
const H = big ? 8192 : 3584, I = big ? 29568 : 18944, QKV = H + (big ? 2048 : 1024), V = 152064;
type Kind = "qkv" | "o" | "gate_up" | "down" | "lm_head";
const KINDS: [Kind, number, number][] = [
  ["qkv", QKV, H],
  ["o", H, H],
  ["gate_up", 2 * I, H],
  ["down", H, I],
  ["lm_head", V, H],
];
const BYTES = { f16: 2, q8: 1.0625, q4: 0.5625 };

// x holds [gate | up] for the silu variant; nw is the RMSNorm weight.
const x = createStorage(gpu, I * 4 * 2, "x"), y = createStorage(gpu, V * 4, "y");
const nw = createStorage(gpu, H * 4, "nw");
// Prepared x written by the o / down GEMVs (LinearShape.emit) for the next norm-GEMV (q4 "emit").
const xpOut = createStorage(gpu, preparedXBytes(H), "xp");
// silu(gate) · up written by gate_up for down (emit.siluMul: q4 "emit").
const xpAct = createStorage(gpu, preparedXBytes(I), "xp_act");
run(gpu, [
  fill(gpu, x, { count: I * 2, dtype: "f32", seed: 1, scale: 1 }),
  fill(gpu, nw, { count: H, dtype: "f32", seed: 2, scale: 1 }),
]);

/** ms per repetition of the dispatch chain (bench/_timing.ts; R ≈ 8 ms of GPU work). */
function time(ds: Dispatch[]): Promise<number> {
  return msPerRep(gpu, (_, pass) => ds.forEach((d) => d.encode(pass)), y, {
    targetMs: 8,
    maxReps: 200,
  });
}

/** The decode step's options for a kind: fused norm / silu, residual accumulation. */
function decodeShape(kind: Kind): LinearShape {
  const norm = { weight: nw, eps: 1e-6 };
  switch (kind) {
    case "qkv":
    case "gate_up":
    case "lm_head":
      return { m: 1, norm };
    case "o":
      return { m: 1, accumulate: true };
    case "down":
      return { m: 1, accumulate: true, siluMul: true };
  }
}

/**
 * What the q4 decoder adds to kind's options when the GEMVs chain prepared x (LinearShape emit /
 * prepared): "x": o and down write x prepared for gate_up / the next qkv / lm_head; "act" also
 * gate_up writes silu(gate) · up prepared for down. Layer l's qkv reads it except in layer 0.
 */
function emitShape(kind: Kind, emit: "" | "x" | "act", l = 0): Partial<LinearShape> {
  const act = emit === "act";
  if (!emit) return {};
  if (kind === "o") return { emit: { weight: nw, out: xpOut } };
  if (kind === "down") {
    return { emit: { weight: nw, out: xpOut }, ...(act ? { prepared: xpAct } : {}) };
  }
  if (kind === "gate_up") {
    return { prepared: xpOut, ...(act ? { emit: { out: xpAct, siluMul: true } } : {}) };
  }
  return kind === "qkv" && l === 0 ? {} : { prepared: xpOut };
}

const lines: string[] = [];
function record(rec: Record<string, unknown>, text: string) {
  lines.push(JSON.stringify(rec));
  console.log(text);
}

const SWEEP: Partial<LinearQTuning>[] = [
  ...[4, 8, 16, 32].flatMap((tpr) =>
    [1, 2, 4].flatMap((rows) => [64, 256].map((wg) => ({ wg, tpr, rows, xq: true })))
  ),
  ...[64, 256].flatMap((wg) => [1, 2].map((rows) => ({ wg, tpr: wg, rows, xq: true }))),
  { wg: 256, tpr: 8, rows: 1, xq: true, tile: 32 },
  { wg: 256, tpr: 8, rows: 1, xq: true, tile: 512 },
  { wg: 256, tpr: 8, rows: 1, xq: false },
  { wg: 256, tpr: 32, rows: 1, xq: false },
  // Long rows (down_proj): all of x in one tile (no re-staging rounds), int8 and f32.
  { wg: 256, tpr: 32, rows: 1, xq: true, tile: 1024 },
  { wg: 256, tpr: 32, rows: 2, xq: true, tile: 1024 },
  { wg: 256, tpr: 32, rows: 1, xq: false, tile: 256 },
];
// Prepared x: the PREPX pass + a GEMV that reads its blocks (no staging, no barriers).
const SWEEP_PREP: Partial<LinearQTuning>[] = [4, 8, 16, 32].flatMap((tpr) =>
  [1, 2, 4].map((rows) => ({ wg: 256, tpr, rows, xq: true, prep: true }))
);
const sweepQ = sweepMode === "prep" ? [{}, ...SWEEP_PREP] : [...SWEEP, ...SWEEP_PREP];
// f16 tunings, swept with each kind's fused decode variant (norm / silu / accumulate).
/** --unroll 2,4: f16 tunings with the gemvRows loop written out that many units a step too. */
const UNROLLS = opt("--unroll", "").split(",").filter((u) => u).map(Number);
const SWEEP_F16: Partial<LinearTuning>[] = [64, 128, 256].flatMap((gemvWg) =>
  [1, 2, 4, 8].flatMap((gemvRows) => [
    { gemvWg, gemvRows },
    ...UNROLLS.map((gemvUnroll) => ({ gemvWg, gemvRows, gemvUnroll })),
  ])
);
type AnyTuning = Partial<LinearQTuning> | Partial<LinearTuning>;
// Emitting GEMVs (o, down: 32-row blocks; gate_up: 64 rows): prepared x, and for o staged x too.
const SWEEP_EMIT: Partial<LinearQTuning>[] = [
  {},
  // [wg, tpr, rows], prepared x
  ...[[1024, 32, 1], [512, 16, 1], [256, 8, 1], [256, 32, 4], [256, 16, 2], [512, 32, 2]]
    .concat([[256, 8, 2], [256, 16, 4], [1024, 16, 1], [512, 16, 2], [256, 4, 2]])
    .map(([wg, tpr, rows]) => ({ wg, tpr, rows, xq: true, prep: true })),
  { wg: 512, tpr: 16, rows: 1, xq: true },
  { wg: 256, tpr: 8, rows: 1, xq: true },
  { wg: 256, tpr: 16, rows: 2, xq: true },
];

// Prepared-x GEMVs with the loop written out (--sweep xpu): the default shape, then [wg, tpr, rows].
const XPUS = [2, 4, 8];
const onlyKinds = opt("--kinds", "").split(",").filter((k) => k);
const chains = opt("--chains", "1") !== "0";
// --xrows 2,4,8,16: products of that many rows of x (section 4); --xrows-tunings JSON: few-row
// tunings (LinearQTuning: wg, tpr, rows, xpUnroll) to time beside the default.
const xrowsMs = opt("--xrows", "").split(",").filter((v) => v).map(Number);
const xrowsTunings: Partial<LinearQTuning>[] = JSON.parse(opt("--xrows-tunings", "[]"));
const SWEEP_XPU: Partial<LinearQTuning>[] = args.includes("--tunings")
  ? JSON.parse(opt("--tunings", "[]"))
  : [
    {},
    ...XPUS.map((xpUnroll) => ({ xq: true, prep: true, xpUnroll })),
    ...[[256, 32, 1], [1024, 32, 1], [256, 16, 2], [256, 32, 2], [512, 32, 1]].map((
      [wg, tpr, rows],
    ) => ({ wg, tpr, rows, xq: true, prep: true, xpUnroll: 4 })),
  ];

for (const dtype of dtypes) {
  const ws = new Map<Kind, Weight[]>();
  for (const [kind, n, k] of KINDS) {
    const count = kind === "lm_head" ? 1 : layers;
    ws.set(
      kind,
      Array.from({ length: count }, (_, i) => randomWeight(gpu, n, k, dtype, 1000 * n + i, 0.03)),
    );
  }
  const gb = (kind: Kind) =>
    ws.get(kind)!.reduce((a, w) => a + w.rows * w.cols * BYTES[dtype], 0) / 1e9;
  /**
   * Times kind's chain of weights under tuning t (build makes one weight's dispatches) and records
   * it as `part`; undefined where the tuning does not apply to the shape.
   */
  const timeTuning = async (
    part: string,
    kind: Kind,
    t: unknown,
    build: (w: Weight) => Dispatch[],
  ): Promise<number | undefined> => {
    let ds: Dispatch[];
    try {
      ds = ws.get(kind)!.flatMap(build);
    } catch (e) {
      console.log(`skip ${JSON.stringify(t)}: ${(e as Error).message}`);
      return undefined;
    }
    const ms = await time(ds);
    ds.forEach((d) => d.destroy());
    record(
      { part, dtype, kind, tuning: t, layers, ms, tb_s: gb(kind) / ms },
      `${part.replace("sweep-", "")} ${dtype} ${kind} ${JSON.stringify(t)}: ${ds.length} ` +
        `dispatches, ${ms.toFixed(3)} ms, ${(gb(kind) / ms).toFixed(2)} TB/s`,
    );
    return ms;
  };
  const best = new Map<Kind, { t: AnyTuning; ms: number }>();
  if (sweep) {
    for (const [kind] of KINDS) {
      for (const t of dtype === "f16" ? SWEEP_F16 : sweepQ) {
        const ms = await timeTuning(
          "sweep",
          kind,
          t,
          (w) =>
            dtype === "f16"
              ? linear(gpu, y, x, w, null, decodeShape(kind), t as Partial<LinearTuning>)
              : linearQ(gpu, y, x, w, null, { m: 1 }, t as Partial<LinearQTuning>),
        );
        if (ms !== undefined && (!best.has(kind) || ms < best.get(kind)!.ms)) {
          best.set(kind, { t, ms });
        }
      }
      const b = best.get(kind)!;
      console.log(
        `BEST ${dtype} ${kind}: ${JSON.stringify(b.t)} ${b.ms.toFixed(3)} ms ` +
          `${(gb(kind) / b.ms).toFixed(2)} TB/s (default ${
            dtype === "f16"
              ? "LINEAR_TUNING"
              : JSON.stringify(gemvQTuning(dtype, ws.get(kind)![0].rows, ws.get(kind)![0].cols))
          })`,
      );
    }
  }
  if (sweepMode === "emit" && dtype === "q4") {
    // The emitting GEMVs (o, gate_up, down) as the decoder chains them with "act".
    const shape = (kind: Kind): LinearShape | undefined =>
      kind === "o" || kind === "down" || kind === "gate_up"
        ? { ...decodeShape(kind), ...emitShape(kind, "act", 1) }
        : undefined;
    for (const [kind] of KINDS) {
      const s = shape(kind);
      if (!s) continue;
      for (const t of SWEEP_EMIT) {
        if (kind !== "o" && t.prep !== true && Object.keys(t).length) continue;
        await timeTuning("sweep-emit", kind, t, (w) => linearQ(gpu, y, x, w, null, s, t));
      }
    }
  }
  if (sweepMode === "xpu" && dtype === "q4") {
    for (const [kind] of KINDS) {
      if (onlyKinds.length && !onlyKinds.includes(kind)) continue;
      const s = { ...decodeShape(kind), ...emitShape(kind, "x", 1) };
      for (const t of SWEEP_XPU) {
        await timeTuning("sweep-xpu", kind, t, (w) => linearQ(gpu, y, x, w, null, s, t));
      }
    }
  }
  if (xrowsMs.length) {
    // --xrows: each kind's chain at m rows of x, as linear() runs it (1 < m ≤ 16: the few-row
    // GEMV), the old m > 1 path (LINEAR_CHOICE.xrows off, as bench/main.ts --no-xrows: q4 the int8
    // GEMM, q8 dequantize + the f16 GEMM, f16 the tiled GEMM), --xrows-tunings' few-row tunings
    // (q8 / q4), and m = 1 (the default GEMV, plain x) for scale.
    const xm = Math.max(...xrowsMs);
    const px = createStorage(gpu, xm * I * 4, "px"), py = createStorage(gpu, xm * V * 4, "py");
    run(gpu, [fill(gpu, px, { count: xm * I, dtype: "f32", seed: 4, scale: 1 })]);
    const old = (f: () => Dispatch[]) => {
      LINEAR_CHOICE.xrows = false;
      try {
        return f();
      } finally {
        LINEAR_CHOICE.xrows = true;
      }
    };
    for (const [kind] of KINDS) {
      if (onlyKinds.length && !onlyKinds.includes(kind)) continue;
      const one = await timeTuning(
        "xrows",
        kind,
        { m: 1 },
        (w) => linear(gpu, py, px, w, null, { m: 1 }),
      );
      for (const m of xrowsMs) {
        const few = await timeTuning(
          "xrows",
          kind,
          { m, path: "xrows" },
          (w) => linear(gpu, py, px, w, null, { m }),
        );
        const was = await timeTuning(
          "xrows",
          kind,
          { m, path: "old" },
          (w) => old(() => linear(gpu, py, px, w, null, { m })),
        );
        // The dtype's few-row GEMV off (GEMV_XROWS), the rest as linear() runs it.
        const off = dtype === "f16" ? undefined : await timeTuning(
          "xrows",
          kind,
          { m, path: "dtype-off" },
          (w) => {
            const q = dtype as QuantDType, was = GEMV_XROWS[q];
            GEMV_XROWS[q] = false;
            try {
              return linear(gpu, py, px, w, null, { m });
            } finally {
              GEMV_XROWS[q] = was;
            }
          },
        );
        for (const t of dtype === "f16" ? [] : xrowsTunings) {
          await timeTuning(
            "xrows",
            kind,
            { m, ...t },
            (w) => linearQ(gpu, py, px, w, null, { m }, t),
          );
        }
        if (one && few && was) {
          console.log(
            `XROWS ${dtype} ${kind} m=${m}: ${few.toFixed(3)} ms (${
              (few / one).toFixed(2)
            }× m = 1), ` +
              `old path ${was.toFixed(3)} ms (${(was / one).toFixed(2)}×)` +
              (off
                ? `, ${dtype}'s few-row GEMV off ${off.toFixed(3)} ms (${(off / one).toFixed(2)}×)`
                : ""),
          );
        }
      }
    }
    [px, py].forEach((b) => b.destroy());
  }
  // The decode step's GEMV chain, in layer order; emit: as emitShape().
  const chain = (
    pick: (kind: Kind) => AnyTuning | undefined,
    plain = false,
    emit: "" | "x" | "act" | "resident" = "",
  ) => {
    const ds: Dispatch[] = [];
    const one = (kind: Kind, w: Weight, l = 0) => {
      // "resident" (f16, q8): the decoder's gate_up on kernels/gemv.ts, down_proj then plain;
      // for q8 (GEMV_EVERY) also o_proj, down_proj and lm_head there (qkv: its rope epilogue is
      // not chained here).
      if (emit === "resident" && kind === "gate_up") {
        ds.push(gemvResident(gpu, y, x, w, { norm: { weight: nw, eps: 1e-6 }, siluMul: true }));
        return;
      }
      if (emit === "resident" && dtype === "q8" && kind !== "qkv") {
        const norm = kind === "lm_head" ? { norm: { weight: nw, eps: 1e-6 } } : {};
        ds.push(gemvResident(gpu, y, x, w, { ...norm, accumulate: kind !== "lm_head" }));
        return;
      }
      const s = plain
        ? { m: 1 }
        : emit === "resident"
        ? { ...decodeShape(kind), siluMul: false }
        : { ...decodeShape(kind), ...emitShape(kind, emit, l) };
      ds.push(
        ...(dtype === "f16"
          ? linear(gpu, y, x, w, null, s, pick(kind) as Partial<LinearTuning>)
          : linearQ(gpu, y, x, w, null, s, pick(kind) as Partial<LinearQTuning>)),
      );
    };
    for (let l = 0; l < ws.get("qkv")!.length; l++) {
      for (const kind of ["qkv", "o", "gate_up", "down"] as const) one(kind, ws.get(kind)![l], l);
    }
    one("lm_head", ws.get("lm_head")![0]);
    return ds;
  };
  const total = KINDS.reduce((a, [kind]) => a + gb(kind), 0);
  type Wide = typeof GEMV_WIDE;
  const variants: [
    string,
    (kind: Kind) => AnyTuning | undefined,
    boolean,
    ("x" | "act" | "resident")?,
    Wide?,
  ][] = sweepMode === "xpu" ? [] : [
    ["default fused", () => undefined, false],
    ["default plain", () => undefined, true],
  ];
  if (dtype !== "q4" && sweepMode !== "xpu") {
    variants.push(["default fused, resident-x GEMVs", () => undefined, false, "resident"]);
  }
  if (dtype === "q4" && sweepMode !== "xpu") {
    variants.push(["default emit-x", () => undefined, false, "x"]);
    variants.push(["default emit-x+act", () => undefined, false, "act"]);
  }
  if (dtype === "q4" && sweepMode === "xpu") {
    // The decoder's chain under GEMV_WIDE settings, interleaved --chain-reps times (run-to-run noise).
    const wides: Wide[] = [
      { ...GEMV_WIDE },
      { xpUnroll: 1, stagedSquare: false },
      { xpUnroll: 2, stagedSquare: true },
      { xpUnroll: 4, stagedSquare: false },
    ];
    // gate_up on 64-row workgroups emitting silu · up for down (no PREPX pass before down).
    const gateUps: Partial<LinearQTuning>[] = [[512, 16, 2], [256, 16, 4]].map((
      [wg, tpr, rows],
    ) => ({ wg, tpr, rows, xq: true, prep: true, xpUnroll: 4 }));
    for (let rep = 0; rep < Number(opt("--chain-reps", "2")); rep++) {
      for (const w of wides) {
        variants.push([`emit-x GEMV_WIDE ${JSON.stringify(w)}`, () => undefined, false, "x", w]);
      }
      for (const g of gateUps) {
        variants.push([
          `emit-x+act gate_up ${JSON.stringify(g)}`,
          (kind) => kind === "gate_up" ? g : undefined,
          false,
          "act",
        ]);
      }
    }
  }
  if (dtype !== "f16" && sweepMode !== "xpu") {
    variants.push(["f32-x fused", () => ({ xq: false }), false]);
    variants.push(["int8-x fused", () => ({ xq: true }), false]);
    variants.push(["prep fused", () => ({ xq: true, prep: true }), false]);
    variants.push(["prep plain", () => ({ xq: true, prep: true }), true]);
    variants.push(["prep-down fused", (k) => k === "down" ? { xq: true, prep: true } : {}, false]);
  }
  if (best.size) {
    variants.push(["best fused", (kind) => best.get(kind)!.t, false]);
    variants.push(["best plain", (kind) => best.get(kind)!.t, true]);
    if (dtype !== "f16") {
      // The best prepared-x tuning per kind: what the decoder would run with prep everywhere.
      const bp = new Map<Kind, { t: AnyTuning; ms: number }>();
      for (const l of lines.map((l) => JSON.parse(l))) {
        if (l.part !== "sweep" || l.dtype !== dtype || !l.tuning.prep) continue;
        if (!bp.has(l.kind) || l.ms < bp.get(l.kind)!.ms) bp.set(l.kind, { t: l.tuning, ms: l.ms });
      }
      if (bp.size === KINDS.length) {
        for (const [kind] of KINDS) {
          console.log(
            `BEST-PREP ${dtype} ${kind}: ${JSON.stringify(bp.get(kind)!.t)} ${
              bp.get(kind)!.ms.toFixed(3)
            } ms`,
          );
        }
        variants.push(["best-prep fused", (kind) => bp.get(kind)!.t, false]);
      }
    }
  }
  for (const [name, pick, plain, emit, wide] of chains ? variants : []) {
    let ds: Dispatch[];
    const saved = { ...GEMV_WIDE };
    try {
      Object.assign(GEMV_WIDE, wide ?? {});
      ds = chain(pick, plain, emit);
    } catch (e) {
      console.log(`CHAIN ${dtype} ${name}: failed: ${(e as Error).message}`);
      continue;
    } finally {
      Object.assign(GEMV_WIDE, saved);
    }
    const ms = await time(ds);
    record(
      {
        part: "chain",
        dtype,
        variant: name,
        layers,
        dispatches: ds.length,
        gb: total,
        ms,
        tb_s: total / ms,
      },
      `CHAIN ${dtype} ${name}: ${ds.length} dispatches, ${ms.toFixed(3)} ms/token, ${
        (total / ms).toFixed(2)
      } TB/s`,
    );
    ds.forEach((d) => d.destroy());
  }
  if (prefillM > 0) {
    const px = createStorage(gpu, prefillM * I * 4, "px"),
      py = createStorage(gpu, prefillM * 2 * I * 4, "py");
    const scratch = createStorage(gpu, Math.min(gpu.maxBinding, 2 * I * H * 2), "deq");
    run(gpu, [fill(gpu, px, { count: prefillM * I, dtype: "f32", seed: 3, scale: 1 })]);
    for (const [kind, n, k] of KINDS.slice(0, 4)) {
      const w = ws.get(kind)![0];
      const ds = linear(gpu, py, px, w, null, { m: prefillM });
      const ms = await time(ds);
      const tflops = (2 * prefillM * n * k) / ms / 1e9;
      let deq = "";
      if (dtype !== "f16") {
        const fit = Math.floor(scratch.size / (2 * k));
        const dq = w.chunks.map((c) => dequantize(gpu, scratch, w, c, 0, Math.min(c.rows, fit)));
        deq = `, dequantize alone ${(await time(dq)).toFixed(3)} ms`;
        dq.forEach((d) => d.destroy());
      }
      record(
        { part: "prefill", dtype, kind, m: prefillM, dispatches: ds.length, ms, tflops },
        `PREFILL ${dtype} ${kind} m=${prefillM}: ${ds.length} dispatches, ${ms.toFixed(3)} ms, ` +
          `${tflops.toFixed(1)} TFLOP/s${deq}`,
      );
      ds.forEach((d) => d.destroy());
    }
    [px, py, scratch].forEach((b) => b.destroy());
  }
  for (const list of ws.values()) list.forEach(destroyWeight);
}
if (out) await Deno.writeTextFile(out, lines.join("\n") + "\n");
