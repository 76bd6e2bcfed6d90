/**
 * Attention kernels (kernels/attention.wgsl): causal prefill with grouped-query attention and the
 * vision tower's block-diagonal attention; decode over the KV cache is kernels/attention_decode.ts.
 * Reference: src/ref/attention.ts.
 *
 * Measured with bench/_attention.ts (t(2R) − t(R), median of three, f32 throughout), NVIDIA H200,
 * 2026-11-28, against the previous kernels (4 lanes per query row) in the same run:
 * - vision 16 heads × 80, one 5120-patch image: 51.8 → 10.7 ms (2.6 → 12.5 TFLOP/s); 1564
 *   patches: 4.66 → 1.28 ms (9.8 TFLOP/s). 32 layers at 5120: 1.66 → 0.34 s of attention.
 * - 7B causal prefill (28 / 4 heads × 128): 478 tokens 1306 → 241–268 µs, 1024 tokens 5345 →
 *   753–787 µs (≈ 10 TFLOP/s).
 * The Q-resident prefill tiling (fewer barriers, more workgroup memory) lost on the H100 and the
 * H200 (vision 5120: 14.2 vs 10.7 ms) and is opt-in.
 * A row-sliced prefill (query rows and output slices in per-thread arrays, K/V tiles
 * read as broadcasts, two barriers per tile) lost by 5–10× on the H100 (bench/_attention.ts,
 * 2026-11-28 08:32, vision 5120: best 53.3 ms {wg: 256} / 53.8 ms {pf, bk: 16} against 10.6 ms
 * tiled; 1564: 6.23 ms against 1.30 ms), and its time grows with the key tile and the rows per
 * thread — the signature of per-thread arrays left in local memory rather than registers (the
 * tiled kernel keeps its accumulators in named mat4x4 values for that reason). It was removed
 * (commit df12509 has it); a retry would need named, unrolled registers.
 * Narrower tiled shapes for short images (H100, 2026-11-28 08:48, bench/_attention.ts --sweep
 * small, two runs each): {cv: 1, ty: 8} (32 query rows per workgroup) beats the default only at
 * 1564 patches (1272 against 1325–1355 µs) and loses at 1024 (484 / 426), 2560 (3435 / 3190),
 * 3600 (6509 / 5972) and 5120 (13055 / 10702); {cv: 2, ty: 8} and {cv: 1, ty: 4} lose
 * everywhere. The default stays {cv: 2, ty: 16} at every length.
 * The flash prefill (`#if FLASH`: Q resident, K/V tiles prefetched into registers a phase ahead,
 * four barriers a 40-key tile against the tiled kernel's 21) is the default for both: H200, vision
 * 5120 patches 10.7 → 7.5–7.7 ms (12.5 → 17.5 TFLOP/s; 32 layers 0.34 → 0.25 s), 1564: 1.28 →
 * 0.75 ms; 7B causal prefill 242–247 → 176–178 µs at 478 tokens, 748–752 → 621 µs at 1024; see
 * {@link prefillDefault}. On this stack what decided its tilings was workgroups per SM (workgroup
 * memory): 64-thread tilings with more registers a thread ran 9.0–11.6 ms at 5120. With its hot
 * loops written out (naga's loop counter kept them loops) and its shared arrays indexed per
 * dimension: vision 5120 patches 7.5–7.7 → 5.95–6.03 ms (22.4 TFLOP/s; 32 layers 0.19 s), 1564
 * 0.74 → 0.59 ms (17 rows of threads, one wave: see prefillDefault); causal (loops kept at
 * head_dim 128, V loaded after S) 163 µs at 478 tokens, 571 at 1024.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  balancedTree,
  type BufferArg,
  bufferOf,
  ceilDiv,
  checkSize,
  Dispatch,
  variant,
} from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { grid2d } from "./_grid.ts";
import { kvDefines, type KvDType } from "./kv_cache.ts";
import { deviceScratch } from "../src/gpu/buffers.ts";

export { cuSeqlens } from "../src/ref/attention.ts";

/**
 * The params every attention kernel reads about its heads (attention_decode.ts too): counts, the
 * GQA group, and q / k / v row strides and column offsets in vec4 units (4 f32), then the score
 * scale 1 / √head_dim.
 */
export const HEAD_PARAMS = {
  heads: "u32",
  group: "u32",
  q_stride: "u32",
  q_off: "u32",
  k_stride: "u32",
  k_off: "u32",
  v_stride: "u32",
  v_off: "u32",
  scale: "f32",
} as const;

/** {@link HEAD_PARAMS}' values for resolved heads. */
export function headParams(r: ResolvedHeads): { [K in keyof typeof HEAD_PARAMS]: number } {
  return {
    heads: r.heads,
    group: r.group,
    q_stride: r.q[0],
    q_off: r.q[1],
    k_stride: r.k[0],
    k_off: r.k[1],
    v_stride: r.v[0],
    v_off: r.v[1],
    scale: 1 / Math.sqrt(r.headDim),
  };
}

const Params = defineParams({ ...HEAD_PARAMS, seq: "u32", offset: "u32", n_cu: "u32" });

/**
 * Rows of heads inside a wider buffer: head h of token t starts at element
 * `t · stride + offset + h · headDim`. A fused qkv projection output, or the KV cache.
 */
export interface HeadRows {
  buffer: BufferArg;
  /** Elements per row (default: heads · headDim of this tensor, i.e. a plain (rows, heads, headDim)). */
  stride?: number;
  /** Element column of head 0 (default 0). */
  offset?: number;
  /** Element type (default f32); f16 only for the K and V of a KV cache ({@link KvDType}). */
  dtype?: KvDType;
}

/** Heads of an attention call. */
export interface AttentionHeads {
  /** Query heads. */
  heads: number;
  /** Key/value heads; heads / kvHeads query heads share one (GQA). Default: heads. */
  kvHeads?: number;
  /** Multiple of 16 (16, 80, 128 in Qwen2-VL). */
  headDim: number;
}

/** An attention call's heads, checked, with q / k / v as [row stride, column offset] in vec4. */
export interface ResolvedHeads {
  heads: number;
  kvHeads: number;
  headDim: number;
  group: number;
  q: [number, number];
  k: [number, number];
  v: [number, number];
  /** Element type of k and v. */
  kv: KvDType;
}

/** Checks an attention call's heads and rows (errors name `what`). */
export function resolveHeads(
  what: string,
  s: AttentionHeads,
  q: HeadRows,
  k: HeadRows,
  v: HeadRows,
  cache = false,
): ResolvedHeads {
  const { heads, headDim } = s;
  const kv = k.dtype ?? "f32";
  if ((q.dtype ?? "f32") !== "f32" || (v.dtype ?? "f32") !== kv || (kv === "f16" && !cache)) {
    throw new InvalidInputError(
      `${what}: q, k, v rows are ${q.dtype ?? "f32"}, ${kv}, ${v.dtype ?? "f32"}; q must be f32 ` +
        `and k, v one type: f32, or f16 ${cache ? "" : "only "}for a KV cache`,
    );
  }
  const kvHeads = s.kvHeads ?? heads;
  if (!(headDim > 0 && headDim % 16 === 0 && headDim <= 512)) {
    throw new InvalidInputError(`${what}: head_dim ${headDim} must be a multiple of 16 up to 512`);
  }
  if (!(kvHeads > 0 && heads % kvHeads === 0)) {
    throw new InvalidInputError(
      `${what}: ${heads} query heads are not a multiple of ${kvHeads} KV heads`,
    );
  }
  const rows = (r: HeadRows, n: number, name: string): [number, number] => {
    const stride = r.stride ?? n * headDim, offset = r.offset ?? 0;
    if (stride % 4 || offset % 4 || offset + n * headDim > stride) {
      throw new InvalidInputError(
        `${what}: ${name} rows (stride ${stride}, offset ${offset}) must be multiples of 4 and hold ` +
          `${n} heads of ${headDim}`,
      );
    }
    return [stride / 4, offset / 4];
  };
  return {
    heads,
    kvHeads,
    headDim,
    group: heads / kvHeads,
    q: rows(q, heads, "q"),
    k: rows(k, kvHeads, "k"),
    v: rows(v, kvHeads, "v"),
    kv,
  };
}

function pack(
  r: ResolvedHeads,
  x: { seq: number; offset?: number; nCu?: number },
): ArrayBuffer {
  return Params.pack({ ...headParams(r), seq: x.seq, offset: x.offset ?? 0, n_cu: x.nCu ?? 0 });
}

/**
 * Prefill tiling (kernels/attention.wgsl `prefill`): cv vec4 output columns per thread (1 or 2;
 * threads along keys TX = headDim / 4 / cv, keys per tile BK = headDim / cv), ty threads along
 * queries (4 rows each: BQ = 4 · ty queries per workgroup), dc vec4 of each Q/K row per staged
 * chunk (divides headDim / 4), kc keys per staged V chunk (divides BK), and qres: the Q tile
 * stays in workgroup memory (else it is staged with each K chunk).
 */
export interface PrefillTuning {
  cv: 1 | 2;
  ty: number;
  dc: number;
  kc: number;
  qres: boolean;
}

/**
 * The flash prefill (kernels/attention.wgsl `#if FLASH`): Q tile resident, K/V tiles prefetched
 * into registers a phase ahead. tx threads along keys and vec4 output columns (cv = headDim / 4
 * / tx ≤ 5), ty threads along queries (4 rows each: BQ = 4 · ty), rk keys per thread and tile
 * (BK = rk · tx).
 */
export interface FlashTuning {
  tx: number;
  ty: number;
  rk: 4 | 8;
  /** Q and K staged transposed: S as outer products (FMAs only) rather than dot products. */
  outer: boolean;
  /** The next K tile's loads issued before the barrier that ends the softmax, not after it. */
  early: boolean;
  /** This tile's V loads issued after S, not before (fewer registers live during S). */
  vlate: boolean;
  /** Unpadded Q and P rows, row partials in the P buffer: less memory, one more barrier a tile. */
  compact: boolean;
  /**
   * The hot loops as WGSL `for` loops instead of written out step by step (flashCode): true all
   * of them (S, P·V, the row reductions), "s" S only, "pv" P·V only. Written out is faster at
   * head_dim 80 (vision), loops at 128 (causal; see {@link prefillDefault}).
   */
  loops: boolean | "s" | "pv";
  /**
   * Warps take 8 (tx) × 4 (ty) blocks of the thread grid (needs tx ≥ 8 and ty % 4 = 0), so
   * their shared reads take one wavefront each, not two as with the row-major numbering at
   * tx 10 (kernels/attention.wgsl thread_xy). Default: wherever it applies (at tx 8 the two
   * numberings are the same). H200, 2026-11-29 00:56 (bench/_attention.ts, interleaved twice),
   * vision 5120 patches {ty: 16}: 5.99 / 5.99 → 5.73 / 5.68 ms; int8 S {ty: 24} 3.53 / 3.51 →
   * 3.12 / 3.25 ms. (The same numbering in kernels/linear.wgsl's PIPE GEMM was 0–9 % slower.)
   */
  blocked: boolean;
}

/**
 * A prefill tuning: `flash` (its fields, or {} for the defaults) runs the flash kernel, any other
 * object the tiled kernel with those fields ({} for its defaults); none runs the default kernel
 * ({@link prefillDefault}).
 */
export type PrefillOptions = Partial<PrefillTuning> & { flash?: Partial<FlashTuning> };

/**
 * The prefill tuning a call without one runs: the flash kernel, at its default tiling for the
 * vision tower ({tx: 10, ty: 16} at head_dim 80, its loops written out) and COMPACT with `for`
 * loops and V loaded after S for causal prefill ({tx: 8, ty: 12} at 128). H200, 2026-11-28,
 * bench/_attention.ts (--sweep flash or --tunings), each comparison interleaved in one run. With
 * the hot loops written out (device runs attn-1 / attn-2 12:25, attn-3 12:36, attn-4 12:42,
 * attn-5 12:45, attn-6 12:57):
 * - vision 5120 patches: {ty: 12} 7.67–7.68 ms with loops → 6.76–6.91 written out; {ty: 16}
 *   written out 5.95–6.03 ms (22.4 TFLOP/s; with loops 8.29, S alone a loop 6.77, P·V alone
 *   7.31; COMPACT 6.08–6.18; EARLY, VLATE within noise; ty 14 7.02, ty 10 8.40, ty 8 10.5,
 *   {tx: 5, rk: 8} 9.83–13.8); 1564: 737–740 → 721–741 µs at ty 12 or 16. Later (2026-12-01
 *   03:20, BENCHMARKS.md "Where the float tower's time goes, probed"): 128 threads, {tx: 8} with
 *   the last output block padded (commit 9c39949, reverted), 7.09 against 5.78 ms; S and P·V
 *   take ≈ 2.3 ms each of the 5.74, the rest 1.1.
 * - written out, {ty: 16} runs three workgroups an SM, bound by registers, not by its 48.5 KB:
 *   1536 patches (384 workgroups) 541–544 µs, 1600 (400, more than 3 · 132) 720–727 µs; so 1564
 *   patches (400) takes two waves, and 5120 (1280) 3.2. VLATE does not change that.
 * - 7B causal COMPACT: written out 193–196 µs at 478 tokens and 761–772 at 1024 against loops
 *   162–171 and 580–587 (head_dim 128: four vec4 columns a thread; S alone a loop 166 / 595, P·V
 *   alone 179 / 638); loops + VLATE 163.3 / 571.3 against 167.4–167.8 / 580.0–580.2.
 * Before (loops, flat shared arrays; device runs attn-2 10:30, attn-3 10:50, attn-4 11:03, attn-5
 * 11:16):
 * - vision 16 heads × 80, tiled → flash {tx: 10, ty: 16} (attn-3): 1024 patches 424.5 → 347–349
 *   µs, 1564: 1.28 → 1.05 ms, 2560: 3.18–3.21 → 2.17 ms, 3600: 5.98–6.11 → 4.09–4.23 ms, 5120:
 *   10.68–10.77 → 8.48–8.55 ms. {tx: 10, ty: 12} (39.8 KB: five workgroups an SM instead of
 *   four; attn-4 / attn-5): 5120 7.46–7.71 ms (17.4–18.0 TFLOP/s) against ty 16 8.49–8.51 and
 *   tiled 10.72–10.80; 1564 740–748 µs (16.8) against 1050 and 1272–1283; 2560 2114–2119 µs
 *   (15.9) against 2167 and 3210. Lost to it: COMPACT 7.87 / 767 / 2173, ty 16 COMPACT 8.66,
 *   ty 14 (COMPACT) 10.3, ty 10 8.93, {tx: 5, rk: 8} 9.02, {tx: 4, rk: 8} 11.6, ty 8 11.1, the
 *   transposed S (outer: true) 8.95–9.20; EARLY within noise.
 * - 7B causal (28 / 4 heads × 128, attn-5): tiled 242–247 µs at 478 tokens and 748–752 µs at
 *   1024; flash COMPACT ({tx: 8, ty: 12}, 47.6 KB) 176.0–177.8 and 621.4–621.5 µs (9.3 / 12.1
 *   TFLOP/s); flash {tx: 8, ty: 10} 195 / 708; flash {tx: 8, ty: 8} 233 / 857.
 */
export function prefillDefault(
  vision: boolean,
  seq?: number,
  heads?: number,
  int8 = false,
): PrefillOptions {
  if (!vision) return { flash: { compact: true, loops: true, vlate: true } };
  // int8 S (its Q tile 6 vec4 a row, not 21): 32 rows of threads, COMPACT. H200 14:45 / 14:52
  // (bench/_attention.ts --int8-only, 5120 patches, ms): {ty: 24} 3.56 / 3.79 / 3.57 against 16
  // rows 4.16–4.45, 20 rows 3.75, 28 rows 4.24–4.29, {ty: 32, compact} 3.65; f32 S 5.98–6.00.
  // With the warps in 8 × 4 blocks (2026-11-29 01:14): {ty: 32, compact} 3.08 against {ty: 24}
  // 3.14 / 3.14, 20 rows 3.37, 28 COMPACT 4.01, 16 rows 4.17; at 1564 patches 417 µs against 452.
  if (int8) return { flash: { ty: 32, compact: true } };
  // 17 rows of threads (COMPACT, 46 KB) where that grid fits one wave and 16 rows' does not: H200
  // 13:08 (attn-7), 1564 patches 590 µs, ty 18 COMPACT 604–609, default 723; at 5120 (several
  // waves either way) ty 18 COMPACT 6.15–6.22 ms, 17 6.32 against 6.00–6.02.
  const grid = (ty: number) => (heads ?? 0) * Math.ceil((seq ?? 0) / (4 * ty));
  if (grid(16) > FLASH_ONE_WAVE && grid(17) <= FLASH_ONE_WAVE) {
    return { flash: { ty: 17, compact: true } };
  }
  return { flash: {} };
}

/**
 * Vision flash workgroups that run at once on an H100 / H200: 132 SMs × three (written out,
 * {ty: 16} is bound by registers to three an SM; H200 12:44: 1536 patches, 384 workgroups, 541
 * µs; 1600 patches, 400 workgroups, 727 µs). WebGPU does not tell the SM count: on another card
 * this only chooses between two tilings that both run well.
 */
const FLASH_ONE_WAVE = 3 * 132;

/** Most prefetch groups of 4 vec4 per thread in the flash kernel (f0 .. f7). */
const FLASH_MAX_GROUPS = 8;

/** `f(0u); f(1u); …; f(n − 1u);`, four calls a line (lines joined with `indent`). */
function steps(f: string, n: number, indent: string): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i += 4) {
    lines.push(
      Array.from({ length: Math.min(4, n - i) }, (_, j) => `${f}(${i + j}u);`).join(" "),
    );
  }
  return lines.join("\n" + indent);
}

/**
 * The flash kernel's hot loops as WGSL text for its `{{…}}` placeholders: S over head_dim
 * (s_step per vec4 c < HD4, #if OUTER per d < HD), P·V over the tile's keys (pv_step per key j <
 * BK), and the two reductions over a row's TX partials (red_row) — written out with literal
 * step indices, or, with `loops`, as the `for` loops they replace (naga's loop-bound counter keeps
 * those loops loops on the driver; see kernels/attention.wgsl).
 */
function flashCode(headDim: number, t: FlashTuning, int8: boolean): Record<string, string> {
  const hd4 = headDim / 4, bk = t.rk * t.tx, sn = int8 ? headDim / 16 : t.outer ? headDim : hd4;
  const reds = Array.from({ length: t.tx }, (_, x) => `red_row(${x}u)`);
  const four = (f: string, i: string) => [0, 1, 2, 3].map((j) => `${f}(${i} + ${j}u);`).join(" ");
  const all = t.loops === true;
  return {
    // int8 S: head_dim / 16 steps (5 at 80), always written out.
    S_STEPS: !int8 && (all || t.loops === "s")
      ? `for (var c = 0u; c < ${sn}u; c += 4u) { ${four("s_step", "c")} }`
      : steps("s_step", sn, "    "),
    PV_STEPS: all || t.loops === "pv"
      ? `for (var j = 0u; j < BK; j += 4u) { ${four("pv_step", "j")} }`
      : steps("pv_step", bk, "    "),
    ROW_MAX: all
      ? "for (var x = 0u; x < TX; x++) { mx = max(mx, red_row(x)); }"
      : `mx = max(mx, ${balancedTree(reds, (a, b) => `max(${a}, ${b})`)});`,
    ROW_SUM: all
      ? "for (var x = 0u; x < TX; x++) { lt += red_row(x); }"
      : `lt = ${balancedTree(reds, (a, b) => `(${a} + ${b})`)};`,
  };
}

/**
 * Workgroup sizes and defines of a flash tiling, or why it cannot run. `int8`: S from int8 Q / K
 * rows (#if INT8S; {@link visionAttentionInt8}), at rk 4 without `outer`.
 */
function flashLayout(headDim: number, t: FlashTuning, int8 = false) {
  const hd4 = headDim / 4, cv = hd4 / t.tx, bq = 4 * t.ty, bk = t.rk * t.tx, wg = t.tx * t.ty;
  if (!Number.isInteger(cv) || cv > 5 || (t.rk !== 4 && t.rk !== 8) || hd4 % 4) {
    throw new InvalidInputError(
      `attention: flash tiling ${JSON.stringify(t)} does not divide head_dim ${headDim} ` +
        `(needs (head_dim/4) % tx = 0 with at most 5 vec4 columns a thread, rk 4 or 8)`,
    );
  }
  if (t.blocked && (t.tx < 8 || t.ty % 4)) {
    throw new InvalidInputError(
      `attention: flash tiling ${JSON.stringify(t)} cannot number its warps in 8 × 4 blocks ` +
        `(blocked needs tx ≥ 8 and ty a multiple of 4)`,
    );
  }
  if (int8 && (t.rk !== 4 || t.outer)) {
    throw new InvalidInputError(
      `attention: int8 Q·Kᵀ runs the flash tiling at rk 4 without outer, not ${JSON.stringify(t)}`,
    );
  }
  const sq = hd4 | 1, groups = Math.ceil(bk * hd4 / wg / 4);
  const qst = int8 ? qw4(headDim) : t.compact ? hd4 : sq, ps = t.compact ? t.ty : t.ty + 1;
  const defines: Record<string, boolean | number | string> = {
    FLASH: true,
    TX: t.tx,
    TY: t.ty,
    RK: t.rk,
    RK8: t.rk === 8,
    SQ: sq,
    OUTER: t.outer,
    EARLY: t.early,
    VLATE: t.vlate,
    COMPACT: t.compact,
    QST: qst,
    PS: ps,
    LOOPS: t.loops,
    INT8S: int8,
    BLOCKED: t.blocked,
  };
  defines.OCOLS = cv;
  defines.GROUPS = groups;
  const gs = Array.from({ length: groups }, (_, g) => g);
  const cs = Array.from({ length: cv }, (_, c) => c);
  return {
    wg,
    bq,
    groups,
    bytes: 16 * (bq * qst + bk * sq + bk * ps + (t.compact ? 0 : t.tx * ps)),
    defines,
    code: {
      ...flashCode(headDim, t, int8),
      // The tile's loads and stores, one named register block f_g a group (GROUPS keys them).
      LOAD_TILE: gs.map((g) => `f${g} = ld4(is_v, k0, hi, ${g}u);`).join(" "),
      STORE_TILE: gs.map((g) => `st4(is_v, ${g}u, f${g});`).join(" "),
      // The output register blocks o_c, c < cv (OCOLS keys them).
      PV_O: cs.map((c) => `o${c} = outer_acc(o${c}, pj, kv[j][tx_ + ${c}u * TX]);`).join(" "),
      SCALE_O: cs.map((c) => `o${c} = scale_cols(o${c}, a);`).join(" "),
      STORE_O: cs.map((c) => `store_row(i, col + ${c}u * TX, o${c}[r] * inv);`).join(" "),
    },
  };
}

/** The flash tilings tried in order (the first that fits wins). */
function flashCandidates(headDim: number, t: Partial<FlashTuning>): FlashTuning[] {
  const hd4 = headDim / 4;
  // Two vec4 columns a thread where that leaves ≤ 10 threads along keys (80: 10 × 2, the
  // fastest measured), else the fewest threads with at most 5 columns each (128: 8 × 4).
  const tx = t.tx ??
    (hd4 % 2 === 0 && hd4 / 2 <= 10
      ? hd4 / 2
      : [4, 8, 16, 32].find((x) => hd4 % x === 0 && hd4 / x <= 5) ?? 4);
  const rk = t.rk ?? (tx === 4 ? 8 : 4);
  const outer = t.outer ?? false, early = t.early ?? false, compact = t.compact ?? false;
  const loops = t.loops ?? false, vlate = t.vlate ?? false;
  // 16 rows of threads first (vision at 80: 160 threads, 48.5 KB, four workgroups an SM; written
  // out 5.99 against 6.76–6.91 ms for 12 rows at 5120 patches, 728 against 727–732 µs at 1564;
  // with loops 12 rows won), then 12 (causal COMPACT at 128: 16 rows do not fit 48 KB).
  return (t.ty ? [t.ty] : [16, 12, 8, 4]).map((ty) => ({
    tx,
    ty,
    rk,
    outer,
    early,
    compact,
    loops,
    vlate,
    blocked: t.blocked ?? (tx >= 8 && ty % 4 === 0),
  }));
}

/** The first flash tiling of the candidates that fits this adapter, or undefined. */
function flashFit(gpu: Gpu, headDim: number, t: Partial<FlashTuning>, int8 = false) {
  for (const c of flashCandidates(headDim, t)) {
    const l = flashLayout(headDim, c, int8);
    if (
      l.bytes <= gpu.limits.maxComputeWorkgroupStorageSize &&
      l.wg <= gpu.limits.maxComputeInvocationsPerWorkgroup && l.groups <= FLASH_MAX_GROUPS
    ) return l;
  }
}

function flashTuning(
  gpu: Gpu,
  what: string,
  headDim: number,
  t: Partial<FlashTuning>,
  int8 = false,
) {
  const l = flashFit(gpu, headDim, t, int8);
  if (l) return l;
  throw new InvalidInputError(
    `${what}: head_dim ${headDim} with flash ${JSON.stringify(t)} does not fit this adapter's ` +
      `workgroup memory (${gpu.limits.maxComputeWorkgroupStorageSize} bytes) or registers`,
  );
}

/** The tilings tried in order (the first that fits wins), unless a tuning is given. */
function prefillCandidates(headDim: number, t?: Partial<PrefillTuning>): PrefillTuning[] {
  const hd4 = headDim / 4;
  const cv = t?.cv ?? (headDim >= 64 ? 2 : 1);
  const bk = headDim / cv;
  const kcDefault = bk % 16 === 0 ? 16 : bk % 8 === 0 ? 8 : 4;
  const out: PrefillTuning[] = [];
  for (const ty of t?.ty ? [t.ty] : [16, 8, 4]) {
    // Q resident only when asked: on the H100 its larger workgroup memory costs more occupancy
    // than the saved barriers win (vision 5120: 14.2 against 10.4 ms).
    for (const qres of t?.qres !== undefined ? [t.qres] : [false]) {
      // Q resident: whole K rows and V tiles when they fit (the fewest barriers), else chunks.
      const kc = t?.kc ?? (qres ? bk : kcDefault);
      // 32 dims per staged chunk where head_dim allows (7B prefill on an H200: 241 vs 268 µs at
      // 478 tokens, 753 vs 787 µs at 1024), else 16.
      const dcs = t?.dc ? [t.dc] : qres ? [hd4] : hd4 % 8 === 0 ? [8, 4] : [4];
      for (const dc of dcs) out.push({ cv, ty, dc, kc, qres });
      if (qres && t?.dc === undefined) out.push({ cv, ty, dc: 4, kc: t?.kc ?? kcDefault, qres });
    }
  }
  return out;
}

function prefillTuning(
  gpu: Gpu,
  what: string,
  headDim: number,
  t?: Partial<PrefillTuning>,
): PrefillTuning {
  for (const c of prefillCandidates(headDim, t)) {
    const l = prefillLayout(headDim, c);
    if (
      l.bytes <= gpu.limits.maxComputeWorkgroupStorageSize &&
      l.wg <= gpu.limits.maxComputeInvocationsPerWorkgroup
    ) return c;
  }
  throw new InvalidInputError(
    `${what}: head_dim ${headDim} with ${JSON.stringify(t ?? {})} does not fit this adapter's ` +
      `workgroup memory (${gpu.limits.maxComputeWorkgroupStorageSize} bytes)`,
  );
}

/** Workgroup sizes and defines of a prefill tiling (mirrors the shader's constants). */
function prefillLayout(headDim: number, t: PrefillTuning) {
  const hd4 = headDim / 4, tx = hd4 / t.cv, bq = 4 * t.ty, bk = 4 * tx;
  if (!Number.isInteger(tx) || hd4 % t.dc || bk % t.kc) {
    throw new InvalidInputError(
      `attention: tiling ${JSON.stringify(t)} does not divide head_dim ${headDim} ` +
        `(needs (head_dim/4) % cv = 0, (head_dim/4) % dc = 0, (head_dim/cv) % kc = 0)`,
    );
  }
  const odd = (n: number) => n | 1;
  const sp = odd(t.dc), sq = odd(hd4);
  const stage = Math.max(((t.qres ? 0 : bq) + bk) * sp, t.kc * hd4);
  return {
    wg: tx * t.ty,
    bq,
    bytes: 16 * (stage + bk * (t.ty + 1) + tx * t.ty + (t.qres ? bq * sq : 0)),
    defines: {
      TX: tx,
      TY: t.ty,
      DC: t.dc,
      SP: sp,
      SQ: sq,
      KC: t.kc,
      STAGE: stage,
      CV2: t.cv === 2,
      QRES: t.qres,
    },
    code: {},
  };
}

function prefillDispatch(
  gpu: Gpu,
  what: string,
  r: ResolvedHeads,
  vision: boolean,
  buffers: BufferArg[],
  params: ArrayBuffer,
  seq: number,
  tuning?: PrefillOptions,
  int8 = false,
): Dispatch {
  // Without a tuning, the default flash tiling for this shape where it fits, else the one for any
  // shape, else (an adapter with less workgroup memory) the tiled kernel's default (int8: the
  // flash kernel only).
  const fit = tuning ? undefined : [
    prefillDefault(vision, seq, r.heads, int8),
    prefillDefault(vision, undefined, undefined, int8),
    prefillDefault(vision),
  ].map((d) => d.flash && flashFit(gpu, r.headDim, d.flash, int8)).find((l) => l);
  if (int8 && tuning && !tuning.flash) {
    throw new InvalidInputError(`${what}: int8 Q·Kᵀ runs the flash kernel; give a flash tuning`);
  }
  const { bq, defines, code } = fit ??
    (tuning?.flash || int8
      ? flashTuning(gpu, what, r.headDim, tuning?.flash ?? {}, int8)
      : prefillLayout(r.headDim, prefillTuning(gpu, what, r.headDim, tuning)));
  const vt = variant(gpu, {
    family: "attention",
    entry: "prefill",
    bindings: vision
      ? ["read", "read", "read", "read_write", "read"]
      : ["read", "read", "read", "read_write"],
    params: Params,
    defines: { HD: r.headDim, VISION: vision, ...kvDefines(r.kv), ...defines },
    code,
  });
  return new Dispatch(gpu, vt, buffers, params, [ceilDiv(seq, bq), r.heads]);
}

/** Shape of a causal prefill. */
export interface CausalAttentionShape extends AttentionHeads {
  /** New tokens (query rows). */
  seq: number;
  /** Tokens already in the cache before these: query i sits at position offset + i. Default 0. */
  offset?: number;
}

/**
 * Causal prefill attention: query i (at cache row offset + i) attends to cache rows 0..offset+i.
 * Write the new tokens' K/V into the cache first (kernels/kv_cache.ts).
 * @param out (seq, heads · headDim) f32
 * @param q (seq, ·) queries, e.g. the q part of a fused qkv row after rope
 * @param k (offset + seq, ·) the layer's K cache
 * @param v (offset + seq, ·) the layer's V cache
 * @param tuning prefill kernel and tiling (default: {@link prefillDefault}, its tiling chosen
 *   from head_dim and the adapter's limits)
 */
export function causalAttention(
  gpu: Gpu,
  out: BufferArg,
  q: HeadRows,
  k: HeadRows,
  v: HeadRows,
  s: CausalAttentionShape,
  tuning?: PrefillOptions,
): Dispatch {
  const r = resolveHeads("causalAttention", s, q, k, v, true);
  return prefillDispatch(
    gpu,
    "causalAttention",
    r,
    false,
    [q.buffer, k.buffer, v.buffer, out],
    pack(r, { seq: s.seq, offset: s.offset }),
    s.seq,
    tuning,
  );
}

/** Shape of a vision attention call. */
export interface VisionAttentionShape {
  /** Patches of all images (query rows = key rows). */
  seq: number;
  heads: number;
  headDim: number;
  /** Entries of cu_seqlens: frames + 1. */
  nCu: number;
}

/** A vision attention call's heads ({@link resolveHeads}) and cu_seqlens count, checked. */
function visionHeads(
  what: string,
  s: VisionAttentionShape,
  q: HeadRows,
  k: HeadRows,
  v: HeadRows,
): ResolvedHeads {
  if (!(s.nCu >= 2)) {
    throw new InvalidInputError(`${what}: cu_seqlens needs ≥ 2 entries, got ${s.nCu}`);
  }
  return resolveHeads(what, s, q, k, v);
}

/**
 * The vision tower's attention: non-causal, block-diagonal by cu_seqlens (each frame of each image
 * attends only to itself; see {@link cuSeqlens}).
 * @param out (seq, heads · headDim) f32
 * @param q (seq, ·) e.g. `{ buffer: qkv, stride: 3 · embed, offset: 0 }`
 * @param k (seq, ·) e.g. `{ buffer: qkv, stride: 3 · embed, offset: embed }`
 * @param v (seq, ·) e.g. `{ buffer: qkv, stride: 3 · embed, offset: 2 · embed }`
 * @param cu (nCu) u32 cu_seqlens, first 0 and last seq
 * @param tuning prefill kernel and tiling (default: {@link prefillDefault}, its tiling chosen
 *   from head_dim and the adapter's limits)
 */
export function visionAttention(
  gpu: Gpu,
  out: BufferArg,
  q: HeadRows,
  k: HeadRows,
  v: HeadRows,
  cu: BufferArg,
  s: VisionAttentionShape,
  tuning?: PrefillOptions,
): Dispatch {
  const r = visionHeads("visionAttention", s, q, k, v);
  return prefillDispatch(
    gpu,
    "visionAttention",
    r,
    true,
    [q.buffer, k.buffer, v.buffer, out, cu],
    pack(r, { seq: s.seq, nCu: s.nCu }),
    s.seq,
    tuning,
  );
}

/** vec4 per int8 row of head_dim values: head_dim / 16 of codes, then one holding the f32 scale. */
function qw4(headDim: number): number {
  return headDim / 16 + 1;
}

/** quantize_qk's row, written out for head_dim: loads x0 .., their max |x|, the code stores. */
function quantizeCode(headDim: number): Record<string, string> {
  const n = headDim / 4, xs = Array.from({ length: n }, (_, i) => `x${i}`);
  return {
    QK_LOAD: xs.map((x, i) => `let ${x} = qk_at(t, r, ${i}u);`).join(" "),
    QK_AMAX: balancedTree(xs.map((x) => `amax4(${x})`), (a, b) => `max(${a}, ${b})`),
    QK_STORE: Array.from(
      { length: n / 4 },
      (_, c) =>
        `qk[f * QW4 + ${c}u] = vec4<u32>(${
          [0, 1, 2, 3].map((j) => `codes4(${xs[4 * c + j]}, inv)`).join(", ")
        });`,
    ).join("\n  "),
  };
}

/** The int8 Q / K rows of {@link visionAttentionInt8} and the mean of k: per-device scratches. */
const qkScratch = deviceScratch("attention.qk8"), meanScratch = deviceScratch("attention.kmean");

/**
 * Quantizes q and k − mean(k) rows to int8 for the flash prefill's int8 S (kernels/attention.wgsl
 * `k_mean`, then `quantize_qk`): per (token, head) row of head_dim values, d = max|x| / 127 (f32)
 * and codes round(x / d), half to even. The mean over each cu_seqlens block's tokens (an image, a
 * video's frame), per KV head and dim, leaves every query's softmax as it was, keeps a bias the
 * keys share from setting their int8 step, and keeps a block's codes its own: the same whatever
 * else is encoded with it (see the shader).
 * @param qk (seq, heads + kvHeads, head_dim / 16 + 1) vec4: each row's codes, then d
 * @param kmean (nCu − 1, kvHeads · head_dim) f32, written by the first dispatch
 * @param cu (nCu) u32 cu_seqlens: block b is tokens cu[b] .. cu[b + 1] − 1
 * @returns [mean of k, quantize]
 */
export function quantizeQk(
  gpu: Gpu,
  qk: BufferArg,
  kmean: BufferArg,
  q: HeadRows,
  k: HeadRows,
  cu: BufferArg,
  s: AttentionHeads & { seq: number; nCu: number },
): Dispatch[] {
  const r = resolveHeads("quantizeQk", s, q, k, k);
  if (!(Number.isInteger(s.nCu) && s.nCu >= 2 && s.nCu <= 65536)) {
    throw new InvalidInputError(
      `quantizeQk: nCu must be 2 ..= 65536 cu_seqlens entries; got ${s.nCu}`,
    );
  }
  checkSize("cu", cu, s.nCu * 4);
  checkSize("kmean", kmean, (s.nCu - 1) * r.kvHeads * r.headDim * 4);
  const rows = s.seq * (r.heads + r.kvHeads);
  const params = pack(r, { seq: s.seq, nCu: s.nCu });
  const mean = variant(gpu, {
    family: "attention",
    entry: "k_mean",
    bindings: ["read_write", "read", "read"],
    params: Params,
    defines: { HD: r.headDim, QUANT_QK: true, KMEAN: true },
  });
  const quant = variant(gpu, {
    family: "attention",
    entry: "quantize_qk",
    bindings: ["read", "read", "read", "read", "read_write"],
    params: Params,
    defines: { HD: r.headDim, QUANT_QK: true },
    code: quantizeCode(r.headDim),
  });
  const blocks = [r.kvHeads * r.headDim / 4, s.nCu - 1] as const;
  return [
    new Dispatch(gpu, mean, [kmean, k.buffer, cu], params, blocks),
    new Dispatch(
      gpu,
      quant,
      [q.buffer, k.buffer, cu, kmean, qk],
      params,
      grid2d(ceilDiv(rows, 256)),
    ),
  ];
}

/**
 * {@link visionAttention} with S = Q·Kᵀ in int8 (opt-in, the int8 vision tower): every q and
 * k − mean(k) row (token, head) is quantized to int8 with one f32 scale (d = max|x| / 127) by two
 * first dispatches into a per-device scratch ({@link quantizeQk}), and the flash kernel takes its
 * scores as dot4I8Packed integer sums × d_q × d_k; softmax and P·V stay f32. Each score (of k −
 * mean(k), which softmax cannot tell from k) is off by at most
 * (|q|₁ · d_k + |k|₁ · d_q) / 2 + head_dim · d_q · d_k / 4 (half a step of each
 * code).
 * Run the dispatches in order, with no other visionAttentionInt8() between them.
 * @returns [mean of k, quantize q / k, attention]
 */
export function visionAttentionInt8(
  gpu: Gpu,
  out: BufferArg,
  q: HeadRows,
  k: HeadRows,
  v: HeadRows,
  cu: BufferArg,
  s: VisionAttentionShape,
  tuning?: PrefillOptions,
): Dispatch[] {
  const r = visionHeads("visionAttentionInt8", s, q, k, v);
  const w = qw4(r.headDim), rows = r.heads + r.kvHeads, bytes = s.seq * rows * w * 16;
  const meanBytes = (s.nCu - 1) * r.kvHeads * r.headDim * 4;
  if (bytes > gpu.maxBinding) {
    throw new InvalidInputError(
      `visionAttentionInt8: ${s.seq} patches need ${bytes} bytes of int8 q / k rows, over this ` +
        `adapter's ${gpu.maxBinding}-byte binding limit; use smaller images`,
    );
  }
  const qk = { buffer: qkScratch(gpu, bytes), offset: 0, size: bytes };
  const kmean = { buffer: meanScratch(gpu, meanBytes), offset: 0, size: meanBytes };
  if ([q, k, v].some((x) => [qk.buffer, kmean.buffer].includes(bufferOf(x.buffer)))) {
    throw new InvalidInputError("visionAttentionInt8: q, k, v must not be its own scratch");
  }
  // The prefill reads q and k from the scratch: rows of (heads + kvHeads) · w vec4, k after q.
  const rq: ResolvedHeads = { ...r, q: [rows * w, 0], k: [rows * w, r.heads * w] };
  return [
    ...quantizeQk(gpu, qk, kmean, q, k, cu, { ...s, kvHeads: r.kvHeads }),
    prefillDispatch(
      gpu,
      "visionAttentionInt8",
      rq,
      true,
      [qk, qk, v.buffer, out, cu],
      pack(rq, { seq: s.seq, nCu: s.nCu }),
      s.seq,
      tuning,
      true,
    ),
  ];
}
