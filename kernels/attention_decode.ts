/**
 * Decode attention (kernels/attention_decode.wgsl): one query per head against the KV cache, in
 * one dispatch (flash-decoding: splits of the keys over several workgroups, merged by the last to
 * finish), the split size following the context length on the GPU so one Dispatch serves every
 * step. Two kernels: "lanes" (the default with subgroups: key slots of a few lanes, K/V straight
 * to registers) and "tiled" (chunks of keys staged in workgroup memory; the fallback). Prefill and
 * vision attention are kernels/attention.ts. {@link decodeAttentionRopeKv}: either kernel with the
 * step's rope + KV-cache write folded in (batched decode, whose products have no rope epilogue).
 *
 * History (bench/_attention.ts, then bench/_attention_decode.ts; t(2R) − t(R) per call in a chain
 * of calls, so the chain's dispatch floor, 2.5–4.6 µs, is inside every number):
 * - H200, 2026-11-28: two dispatches a call (decode_part + decode_combine) → one: 7B (28 / 4
 *   heads × 128) 33.7 → 17.5 µs at 600 keys, 51.0 → 44.0 µs at 4096; 72B (64 / 8) 43.0 → 24.8 µs
 *   and 88.0 → 62.1 µs.
 * - H100, 08:30: v1 → v3 (a chunk's loads issued together, 4-wide chains) at the default splits:
 *   7B 23.3 → 14.6 µs at 600 keys, 42.8 → 25.6 µs at 4096 (32 splits); 72B 23.4 → 15.8 µs and
 *   63.1 → 41.9 µs (16 splits). A one-barrier-per-step variant reading K/V per thread from global
 *   memory ran 34–200 µs: loads inside a loop cost a memory latency per iteration there.
 * - H200, 12:21 and 12:24 (this file's kernel against v3 in the same call): the next chunk's loads
 *   prefetched and the inner loops written out: 7B 13.9 → 11.5–12.6 µs at 600 keys, 23.7 →
 *   20.1–22.1 at 4096; 72B 15.9 → 13.3–14.3 and 36.5 → 27.9–28.0. Writing the loops out did most
 *   of it (72B at 4096: 34.5 µs with neither, 28.5 unrolled alone, 32.0 prefetched alone).
 *   Merging 4 or 16 splits a batch instead of 8 moved nothing beyond the ±1 µs noise; more
 *   workgroups than SMs (72B 24 or 48 splits, 7B 64) cost 30–40 %, which says a workgroup holds
 *   an SM alone here, so the defaults stay at ≈ 128 workgroups.
 * - H200, 2026-11-29 (BENCHMARKS.md, "Decode attention in subgroup lanes"): the tiled kernel read
 *   each K/V element GROUP times from workgroup memory, four barriers a chunk — bound by that, not
 *   by bytes. The lanes kernel at 8192 keys: 72B 38 µs against 44–46 (f16 cache 28 against 46),
 *   7B 23 against 30; at 600 keys the same 13 µs. Its first version merged the slots head by head
 *   with WGSL loops (≈ 10 µs a call at any length); written-out loads and rounds of several heads
 *   removed that. 2 keys a step beat 1 and 4; 16 lanes a row beat 8 and 32; 16 splits beat 8, 32.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import { balancedTree, type BufferArg, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import type { Defines } from "./_preprocess.ts";
import { kvDefines, kvElementBytes } from "./kv_cache.ts";
import type { GpuRopeTable } from "./rope.ts";
import {
  type AttentionHeads,
  HEAD_PARAMS,
  headParams,
  type HeadRows,
  resolveHeads,
} from "./attention.ts";

// The heads' fields (kernels/attention.ts; q_off includes the query row's row · q_stride), the most
// splits a call may use, and the vec4 where the output row starts (row · heads · head_dim / 4).
// #if ROPE (decodeAttentionRopeKv) also the rope table's rows and the cache's rows (0 otherwise).
const Params = defineParams({
  ...HEAD_PARAMS,
  nsplit: "u32",
  out_off: "u32",
  npos: "u32",
  max_rows: "u32",
});

/** Workgroup size (WG in the shader). */
const WG = 256;

/** Most splits: the merge stages every split's statistics in workgroup memory (MAXS). */
const MAX_SPLITS = 64;

export interface DecodeAttentionShape extends AttentionHeads {
  /** Rows of the KV cache (the most keys a step can attend to). */
  maxTokens: number;
  /**
   * Most workgroups sharing one head block's keys (flash-decoding splits, ≤ 64). Default: about
   * 128 workgroups over all head blocks at a long context (H100: 7B 32 splits, 72B 16 — at
   * 4096 keys 25.6 µs against 32.2 µs with 64, and 41.9 against 46.8 µs with 32).
   */
  splits?: number;
  /** Keys a workgroup takes per step: 8, 16 or 32 (default: 32, less if memory says so). */
  chunk?: 8 | 16 | 32;
  /**
   * Issue the next chunk's K/V loads before this chunk's arithmetic (default true), so a split
   * of several chunks pays the memory latency about once.
   */
  prefetch?: boolean;
  /** Write the inner loops out (default true; false: WGSL `for` loops, for the benchmark). */
  unroll?: boolean;
  /** Splits the merge loads at once (default 8): 4 · mergeBatch loads in flight a thread. */
  mergeBatch?: 4 | 8 | 16;
  /**
   * "lanes" (the default where the adapter has subgroups and the shape fits): key slots of a few
   * subgroup lanes each, K/V straight to registers, no workgroup tiles. "tiled": chunks of keys
   * staged in workgroup memory (`chunk`, `prefetch` and `unroll` apply to it alone).
   */
  kernel?: "lanes" | "tiled";
  /** lanes: threads per key row, 4, 8, 16 or 32, at most the smallest subgroup (default ≤ 16). */
  lanes?: 4 | 8 | 16 | 32;
  /** lanes: keys a slot takes per step, their loads issued together (default 2). */
  keysPerStep?: 1 | 2 | 4;
  /**
   * Query heads per workgroup: a divisor of the GQA group, ≤ 8 (default: see
   * {@link AUTO_WORKGROUPS}). Each head block reads the K/V rows once; fewer heads a block means
   * more blocks, so fewer splits for the same number of workgroups.
   */
  headBlock?: number;
  /**
   * Row of q and of out (default 0): batched decode, where row r of q (q.stride elements a row)
   * is session r's token and its result goes to row r of out, (rows, heads · headDim); out's
   * other rows are left as they are.
   */
  row?: number;
}

/**
 * The default tiling aims at this many workgroups (about one an SM on an H100 / H200: more cost
 * 30–40 % there) with at most {@link AUTO_SPLITS} splits each: the head block is the largest
 * divisor of the GQA group (≤ 8, G · hd4 ≤ 256) whose blocks reach it within that many splits,
 * else the largest. Merging many splits is slow (the last workgroup reads them a batch at a
 * time): Qwen2-VL-2B (12 / 2 heads × 128) took 6 heads a block and 64 splits, and 12–22 µs a call
 * at 600–8192 keys (H200, 2026-11-29, bench/_attention_decode.ts); 3 heads and 32 splits 10–18.
 * 7B (7 heads, 32 splits) and 72B (8, 16) keep their tilings.
 */
const AUTO_WORKGROUPS = 128;
const AUTO_SPLITS = 32;

/** Query heads per workgroup: `headBlock`, or the default of {@link AUTO_WORKGROUPS}. */
function headBlock(s: DecodeAttentionShape): number {
  const group = s.heads / (s.kvHeads ?? s.heads), hd4 = s.headDim / 4;
  if (s.headBlock !== undefined) {
    if (
      !Number.isInteger(s.headBlock) || s.headBlock < 1 || group % s.headBlock !== 0 ||
      s.headBlock > 8 || s.headBlock * hd4 > WG
    ) {
      throw new InvalidInputError(
        `decodeAttention: headBlock ${s.headBlock} must divide the GQA group (${group}), be at ` +
          `most 8 and hold at most ${WG} vec4 of queries (head_dim ${s.headDim})`,
      );
    }
    return s.headBlock;
  }
  const fits = range(Math.min(group, 8)).map((i) => i + 1).filter((g) =>
    group % g === 0 && g * hd4 <= WG
  ).reverse();
  return fits.find((g) => (s.heads / g) * AUTO_SPLITS >= AUTO_WORKGROUPS) ?? fits[0] ?? 1;
}

function splitsOf(s: DecodeAttentionShape): number {
  const want = s.splits ?? Math.ceil(AUTO_WORKGROUPS / (s.heads / headBlock(s)));
  return Math.max(1, Math.min(want, MAX_SPLITS, ceilDiv(s.maxTokens, s.chunk ?? 32)));
}

/**
 * Byte size of the scratch buffer {@link decodeAttention} needs (one may serve every layer, as
 * the calls run one after another). Create it zeroed (createStorage does): it holds arrival
 * counters that each call leaves at zero.
 */
export function decodeAttentionScratchBytes(s: DecodeAttentionShape): number {
  return (s.heads * splitsOf(s) * (s.headDim + 2) + s.heads) * 4;
}

/**
 * Query heads per workgroup and keys per step: the largest head block that fits beside the
 * largest chunk whose K/V tile is at most four vec4 per thread (the loads are written out four
 * deep) within the adapter's workgroup memory.
 */
function tiling(gpu: Gpu, s: DecodeAttentionShape, group: number) {
  const hd4 = s.headDim / 4;
  const bytes = (g: number, chunk: number) =>
    16 * (g * hd4 + chunk * (hd4 + 1) + chunk * hd4) + 4 * (2 * g * chunk + 2 * g) +
    8 * g * MAX_SPLITS + 4;
  for (const chunk of s.chunk ? [s.chunk] : [32, 16, 8]) {
    if (chunk * hd4 > 4 * WG) continue;
    for (let g = Math.min(group, 8); g >= 1; g--) {
      if (
        group % g === 0 && g * hd4 <= WG &&
        bytes(g, chunk) <= gpu.limits.maxComputeWorkgroupStorageSize
      ) return { group: g, chunk };
    }
  }
  throw new InvalidInputError(
    `decodeAttention: head_dim ${s.headDim} with chunk ${s.chunk ?? "8–32"} needs more ` +
      "workgroup memory or threads than the adapter has; use a smaller chunk",
  );
}

/** The lanes kernel's tiling: heads per workgroup, lanes per key row, keys per slot and step. */
interface LanesTiling {
  group: number;
  lanes: number;
  keys: number;
  /** Heads a round of the slot merge (as many as workgroup memory holds). */
  heads: number;
}

/**
 * The lanes kernel's tiling, or undefined where it does not apply (no subgroups, `kernel:
 * "tiled"`, or a shape whose slot merge does not fit the adapter's workgroup memory). Lanes per
 * row: the most that divide the row's vec4 count up to 16 and the smallest subgroup.
 */
function lanesTiling(gpu: Gpu, s: DecodeAttentionShape, group: number): LanesTiling | undefined {
  const sgMin = gpu.adapterInfo.subgroupMinSize ?? 0;
  const asked = s.kernel === "lanes";
  const no = (why: string) => {
    if (asked) throw new InvalidInputError(`decodeAttention: kernel "lanes" ${why}`);
    return undefined;
  };
  if (s.kernel === "tiled") return undefined;
  if (!gpu.features.subgroups || sgMin < 4) return no(`needs subgroups; use "tiled"`);
  const hd4 = s.headDim / 4;
  let lanes = s.lanes ?? 0;
  if (lanes === 0) {
    for (let l = Math.min(16, sgMin); l >= 4 && lanes === 0; l /= 2) if (hd4 % l === 0) lanes = l;
  }
  if (lanes < 4 || hd4 % lanes !== 0 || lanes > sgMin || (lanes & (lanes - 1)) !== 0) {
    return no(
      `takes ${s.lanes ?? "a power of two of"} lanes per key row: it must divide head_dim / 4 = ` +
        `${hd4} and be at most the adapter's smallest subgroup, ${sgMin}`,
    );
  }
  const slots = WG / lanes, round = 16 * slots * hd4; // bytes of one head's slots in the merge
  const left = (g: number) =>
    gpu.limits.maxComputeWorkgroupStorageSize - (8 * slots * g + 8 * g * MAX_SPLITS + 8 * g + 4);
  for (let g = Math.min(group, 8); g >= 1; g--) {
    const heads = Math.min(g, Math.floor(left(g) / round));
    if (group % g === 0 && g * hd4 <= WG && heads >= 1) {
      return { group: g, lanes, keys: s.keysPerStep ?? 2, heads };
    }
  }
  return no(`needs more workgroup memory than the adapter has at head_dim ${s.headDim}`);
}

/**
 * The lanes kernel's written-out code (kernels/attention_decode.wgsl, #if LANES): per-thread
 * registers for GROUP heads × vl vec4 columns of queries and Σ p·v, `keys` K/V rows of vl vec4
 * in flight, and the steps over them.
 */
function lanesCode(t: LanesTiling, hd4: number, rope: boolean): Record<string, string> {
  const vl = hd4 / t.lanes, slots = WG / t.lanes;
  const R = range(t.group), C = range(vl), U = range(t.keys), S = range(slots);
  const grid = (f: (r: number, c: number) => string, rs = R) =>
    rs.flatMap((r) => C.map((c) => f(r, c))).join(" ");
  const widen = (x: string) => `vec4<f32>(${x})`;
  const shuffles: string[] = [];
  for (let o = t.lanes / 2; o >= 1; o /= 2) {
    for (const u of U) {
      for (const r of R) shuffles.push(`s${u}_${r} += subgroupShuffleXor(s${u}_${r}, ${o}u);`);
    }
  }
  return {
    L_DECL: [
      grid((r, c) =>
        rope
          ? `let q${r}_${c} = rope_col(p.q_off + (h0 + ${r}u) * HD4, ln + ${
            c * t.lanes
          }u) * p.scale;`
          : `let q${r}_${c} = q[p.q_off + (h0 + ${r}u) * HD4 + ln + ${c * t.lanes}u] * p.scale;`
      ),
      grid((r, c) => `var a${r}_${c} = vec4<f32>(0.0);`),
      R.map((r) => `var m${r} = NEG; var l${r} = 0.0;`).join(" "),
      grid((u, c) => `var kk${u}_${c}: KV4; var vv${u}_${c}: KV4;`, U),
    ].join("\n  "),
    // (rope: key `last` is this token's, from q's row)
    L_FETCH: U.map((u) => {
      const loads = C.map((c) =>
        `kk${u}_${c} = k[row${u} * p.k_stride + kb + ${c * t.lanes}u]; ` +
        `vv${u}_${c} = v[row${u} * p.v_stride + vb + ${c * t.lanes}u];`
      ).join(" ");
      const fresh = C.map((c) =>
        `kk${u}_${c} = fresh_k(kvh, ln + ${c * t.lanes}u); ` +
        `vv${u}_${c} = fresh_v(kvh, ln + ${c * t.lanes}u);`
      ).join(" ");
      return `let row${u} = min(jf + ${u * slots}u, end - 1u); ` +
        (rope ? `if (row${u} == last) { ${fresh} } else { ${loads} }` : loads);
    }).join(" "),
    L_TAKE: grid((u, c) => `let ck${u}_${c} = kk${u}_${c}; let cv${u}_${c} = vv${u}_${c};`, U),
    L_STEP: [
      U.map((u) => `let ok${u} = j + ${u * slots}u < end;`).join(" "),
      ...U.flatMap((u) =>
        R.map((r) =>
          `var s${u}_${r} = ${
            C.map((c) => `dot(q${r}_${c}, ${widen(`ck${u}_${c}`)})`).join(" + ")
          };`
        )
      ),
      ...shuffles,
      ...U.flatMap((u) => R.map((r) => `s${u}_${r} = select(NEG, s${u}_${r}, ok${u});`)),
      ...R.flatMap((r) => [
        `let mn${r} = max(m${r}, ${
          U.map((u) => `s${u}_${r}`).reduce((a, b) => `max(${a}, ${b})`)
        });`,
        `let al${r} = exp(m${r} - mn${r});`,
        ...U.map((u) => `let p${u}_${r} = select(0.0, exp(s${u}_${r} - mn${r}), ok${u});`),
        `l${r} = l${r} * al${r} + ${U.map((u) => `p${u}_${r}`).join(" + ")};`,
        ...C.map((c) =>
          `a${r}_${c} = ` +
          U.reduce(
            (acc, u) => `fma(vec4<f32>(p${u}_${r}), ${widen(`cv${u}_${c}`)}, ${acc})`,
            `a${r}_${c} * al${r}`,
          ) + ";"
        ),
        `m${r} = mn${r};`,
      ]),
    ].join("\n    "),
    L_STATS: R.map((r) =>
      `ms_sl[slot * GROUP + ${r}u] = m${r}; ls_sl[slot * GROUP + ${r}u] = l${r};`
    )
      .join(" "),
    L_BIG: [
      S.map((sl) => `let m_${sl} = ms_sl[${sl * t.group}u + lid];`).join(" "),
      `let big = ${balancedTree(S.map((sl) => `m_${sl}`), (a, b) => `max(${a}, ${b})`)};`,
      `let lt = ${
        balancedTree(S.map((sl) => `exp(m_${sl} - big) * ls_sl[${sl * t.group}u + lid]`), sum)
      };`,
    ].join("\n    "),
    L_SUM: balancedTree(S.map((sl) => `red[b + ${sl * hd4}u]`), sum),
    L_MERGE: range(Math.ceil(t.group / t.heads)).map((k) => {
      const r0 = k * t.heads, rs = R.slice(r0, r0 + t.heads);
      return rs.map((r) =>
        `let w${r} = exp(m${r} - big_sm[${r}u]); ` +
        C.map((c) =>
          `red[(${(r - r0) * slots}u + slot) * HD4 + ln + ${c * t.lanes}u] = a${r}_${c} * w${r};`
        ).join(" ")
      ).join("\n  ") +
        `\n  workgroupBarrier();\n  take_heads(lid, ${r0}u);` +
        (r0 + t.heads < t.group ? "\n  workgroupBarrier();" : "");
    }).join("\n  "),
  };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sum = (a: string, b: string) => `(${a} + ${b})`;

/**
 * The shader's written-out inner loops (or, unroll false, the same steps as WGSL loops), and the
 * merge's batch of `mb` splits: WGSL text for its `{{…}}` placeholders, following from the
 * variant's defines (HD, CHUNK, LOOPS, MB).
 */
function innerLoops(
  hd4: number,
  chunk: number,
  unroll: boolean,
  mb: number,
): Record<string, string> {
  const xs = Array.from({ length: mb }, (_, i) => i);
  const steps = (n: number, call: (i: string) => string, loopVar: string) =>
    unroll
      ? Array.from({ length: n / 4 }, (_, i) => call(`${4 * i}u`)).join(" ")
      : `for (var ${loopVar} = 0u; ${loopVar} < ${n}u; ${loopVar} += 4u) { ${call(loopVar)} }`;
  return {
    SCORE: steps(hd4, (c) => `score4(qa, ka, ${c});`, "c"),
    MAXR: steps(chunk, (x) => `mx = max4(rs, ${x}, mx);`, "x"),
    PV: steps(chunk, (x) => `pv4(r, d, ${x});`, "x"),
    MERGE: [
      ...xs.map((i) => `let x${i} = split_acc(h0 + r, sp + ${i}u, ns, d);`),
      ...xs.map((i) => `a += merge_w(r * ns, sp + ${i}u, ns, big) * x${i};`),
    ].join(" "),
  };
}

/**
 * The kernel a shape runs (lanes where it applies, else tiled): its entry point, heads per
 * workgroup, and the defines and written-out code of its variant.
 */
function kernelOf(
  gpu: Gpu,
  s: DecodeAttentionShape,
  group: number,
  hd4: number,
  mb: number,
  rope: boolean,
): { entry: string; group: number; defines: Defines; code: Record<string, string> } {
  const lt = lanesTiling(gpu, s, group);
  if (lt) {
    return {
      entry: "decode_lanes",
      group: lt.group,
      defines: { LANES: true, L: lt.lanes, U: lt.keys, HR: lt.heads },
      // The tiled kernel's placeholders too: the preprocessor fills every {{…}} of the file.
      code: { ...lanesCode(lt, hd4, rope), ...innerLoops(hd4, 32, true, mb) },
    };
  }
  const t = tiling(gpu, s, group), unroll = s.unroll ?? true;
  return {
    entry: "decode",
    group: t.group,
    defines: { CHUNK: t.chunk, PF: s.prefetch ?? true, LOOPS: !unroll },
    code: innerLoops(hd4, t.chunk, unroll, mb),
  };
}

/**
 * Decode attention: the single query (this step's token, its K/V already written at cache row
 * state.cache_len) attends to cache rows 0..state.cache_len. One dispatch (flash-decoding): the
 * keys are split over several workgroups per head block, each writing partial softmax sums, and
 * the last to finish merges them. The split size follows the context length read from the
 * state, so the same Dispatch serves every step.
 * @param out (rows, heads · headDim) f32, rows > `s.row`; the call writes row `s.row` (default 0)
 * @param q (rows, q.stride) this step's queries after rope, read from row `s.row`
 * @param k (maxTokens, ·) the layer's K cache
 * @param v (maxTokens, ·) the layer's V cache
 * @param state decode state (kernels/state.ts)
 * @param scratch {@link decodeAttentionScratchBytes} bytes, zeroed once at creation
 * @returns the dispatches of one call (one)
 */
export function decodeAttention(
  gpu: Gpu,
  out: BufferArg,
  q: HeadRows,
  k: HeadRows,
  v: HeadRows,
  state: BufferArg,
  scratch: BufferArg,
  s: DecodeAttentionShape,
): Dispatch[] {
  return build("decodeAttention", gpu, out, q, k, v, state, scratch, s);
}

/**
 * {@link decodeAttention} with the step's rope + KV-cache write (kernels/rope.ts ropeKvWriteAt)
 * folded in, for batched decode, whose qkv products have no rope epilogue: row `s.row` of `qkv`
 * holds this token's query heads, key heads and value heads, unrotated, one after another from
 * qkv.offset (a fused qkv row). The dispatch rotates the query and the key by state.position —
 * the bits ropeKvWriteAt would compute — attends with this token's key and value as key
 * state.cache_len (not read from the cache), and writes them, as ropeKvWriteAt does, to cache row
 * state.cache_len (not at or past `s.maxTokens`). qkv itself is left as it is (unrotated). The
 * result is ropeKvWriteAt then decodeAttention's, in one dispatch instead of two: bit for bit on
 * lavapipe (kernels/attention_decode_test.ts), as the rotation is the same expression on the same
 * values; a compiler that contracted a·cos − b·sin into an FMA in one kernel and not the other
 * would move the rotated values by an ulp.
 * @param out (rows, heads · headDim) f32, rows > `s.row`; the call writes row `s.row` (default 0)
 * @param qkv (rows, qkv.stride) f32: [q heads | k heads | v heads] from qkv.offset in row `s.row`
 * @param k (maxTokens, ·) the layer's K cache; row state.cache_len is written
 * @param v (maxTokens, ·) the layer's V cache; row state.cache_len is written
 * @param table the rope table (kernels/rope.ts uploadRopeTable), half = headDim / 2
 * @returns the dispatches of one call (one)
 */
export function decodeAttentionRopeKv(
  gpu: Gpu,
  out: BufferArg,
  qkv: HeadRows,
  k: HeadRows,
  v: HeadRows,
  state: BufferArg,
  scratch: BufferArg,
  table: GpuRopeTable,
  s: DecodeAttentionShape,
): Dispatch[] {
  return build("decodeAttentionRopeKv", gpu, out, qkv, k, v, state, scratch, s, table);
}

function build(
  what: string,
  gpu: Gpu,
  out: BufferArg,
  q: HeadRows,
  k: HeadRows,
  v: HeadRows,
  state: BufferArg,
  scratch: BufferArg,
  s: DecodeAttentionShape,
  table?: GpuRopeTable,
): Dispatch[] {
  const r = resolveHeads(what, s, q, k, v, true);
  const nsplit = splitsOf(s);
  checkSize(`${what} scratch`, scratch, decodeAttentionScratchBytes(s));
  const mb = s.mergeBatch ?? 8, hd4 = r.headDim / 4;
  // kernelOf takes the largest head block ≤ this that fits the adapter's workgroup memory.
  const kern = kernelOf(gpu, s, headBlock(s), hd4, mb, table !== undefined);
  const row = s.row ?? 0, [qStride4, qOff4] = r.q, width = r.heads * r.headDim;
  if (!Number.isInteger(row) || row < 0) {
    throw new InvalidInputError(`${what}: row must be a non-negative integer, got ${row}`);
  }
  // With the rope: the row's k and v heads follow its q heads.
  const rowWidth = table ? width + 2 * r.kvHeads * r.headDim : width;
  if (table) {
    if (2 * table.half !== r.headDim) {
      throw new InvalidInputError(
        `${what}: the rope table rotates heads of ${2 * table.half}, not head_dim ${r.headDim}`,
      );
    }
    if (4 * qOff4 + rowWidth > 4 * qStride4) {
      throw new InvalidInputError(
        `${what}: ${r.heads} q, ${r.kvHeads} k and ${r.kvHeads} v heads of ${r.headDim} from ` +
          `column ${4 * qOff4} overrun the qkv row stride ${4 * qStride4}`,
      );
    }
    // The cache rows written: row maxTokens − 1 at most.
    const bytes = kvElementBytes(r.kv);
    checkSize(`${what} k cache`, k.buffer, s.maxTokens * 4 * r.k[0] * bytes);
    checkSize(`${what} v cache`, v.buffer, s.maxTokens * 4 * r.v[0] * bytes);
  }
  checkSize(`${what} out`, out, (row + 1) * width * 4);
  checkSize(`${what} q`, q.buffer, 16 * (row * qStride4 + qOff4) + rowWidth * 4);
  const access = table ? "read_write" : "read";
  const vt = variant(gpu, {
    family: "attention_decode",
    entry: kern.entry,
    bindings: [
      "read",
      access,
      access,
      "read",
      "read_write",
      "read_write",
      ...(table ? ["read"] as const : []),
    ],
    params: Params,
    defines: {
      HD: r.headDim,
      GROUP: kern.group,
      MAXS: MAX_SPLITS,
      MB: mb,
      ...kvDefines(r.kv),
      ...kern.defines,
      ROPE: table !== undefined,
    },
    code: kern.code,
  });
  const params = Params.pack({
    ...headParams(r),
    q_off: qOff4 + row * qStride4,
    nsplit,
    out_off: row * width / 4,
    npos: table?.npos ?? 0,
    max_rows: table ? s.maxTokens : 0,
  });
  return [
    new Dispatch(
      gpu,
      vt,
      [q.buffer, k.buffer, v.buffer, state, scratch, out, ...(table ? [table.table] : [])],
      params,
      [nsplit, r.heads / kern.group],
    ),
  ];
}
