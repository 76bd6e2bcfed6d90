/**
 * Decode attention (kernels/attention_decode.wgsl): one query per head against the KV cache, in
 * one dispatch (flash-decoding: splits of the keys over several workgroups, merged by the last to
 * finish), the split size following the context length on the GPU so one Dispatch serves every
 * step. Prefill and vision attention are kernels/attention.ts.
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
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import { kvDefines } from "./kv_cache.ts";
import {
  type AttentionHeads,
  HEAD_PARAMS,
  headParams,
  type HeadRows,
  resolveHeads,
} from "./attention.ts";

// The heads' fields (kernels/attention.ts), then the most splits a call may use.
const Params = defineParams({ ...HEAD_PARAMS, nsplit: "u32" });

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
}

/** Query heads per workgroup: the largest divisor of the GQA group ≤ 8 with G · hd4 ≤ 256. */
function headBlock(s: DecodeAttentionShape): number {
  const group = s.heads / (s.kvHeads ?? s.heads), hd4 = s.headDim / 4;
  for (let g = Math.min(group, 8); g > 1; g--) {
    if (group % g === 0 && g * hd4 <= WG) return g;
  }
  return 1;
}

function splitsOf(s: DecodeAttentionShape): number {
  const want = s.splits ?? Math.ceil(128 / (s.heads / headBlock(s)));
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
 * Decode attention: the single query (this step's token, its K/V already written at cache row
 * state.cache_len) attends to cache rows 0..state.cache_len. One dispatch (flash-decoding): the
 * keys are split over several workgroups per head block, each writing partial softmax sums, and
 * the last to finish merges them. The split size follows the context length read from the
 * state, so the same Dispatch serves every step.
 * @param out (1, heads · headDim) f32
 * @param q (1, ·) this step's queries after rope
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
  const r = resolveHeads("decodeAttention", s, q, k, v, true);
  const nsplit = splitsOf(s);
  checkSize("decodeAttention scratch", scratch, decodeAttentionScratchBytes(s));
  const t = tiling(gpu, s, r.group);
  const vt = variant(gpu, {
    family: "attention_decode",
    entry: "decode",
    bindings: ["read", "read", "read", "read", "read_write", "read_write"],
    params: Params,
    defines: {
      HD: r.headDim,
      GROUP: t.group,
      CHUNK: t.chunk,
      MAXS: MAX_SPLITS,
      PF: s.prefetch ?? true,
      LOOPS: !(s.unroll ?? true),
      MB: s.mergeBatch ?? 8,
      ...kvDefines(r.kv),
    },
    code: innerLoops(r.headDim / 4, t.chunk, s.unroll ?? true, s.mergeBatch ?? 8),
  });
  const params = Params.pack({ ...headParams(r), nsplit });
  return [
    new Dispatch(
      gpu,
      vt,
      [q.buffer, k.buffer, v.buffer, state, scratch, out],
      params,
      [nsplit, r.heads / t.group],
    ),
  ];
}
