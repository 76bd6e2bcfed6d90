/**
 * Decode attention (kernels/attention_decode.wgsl): one query per head against the KV cache, in
 * one dispatch (flash-decoding: splits of the keys over several workgroups, merged by the last to
 * finish), the split size following the context length on the GPU so one Dispatch serves every
 * step. Prefill and vision attention are kernels/attention.ts.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import { type BufferArg, ceilDiv, checkSize, Dispatch, variant } from "./_kernel.ts";
import { defineParams } from "./_params.ts";
import type { AttentionHeads, HeadRows } from "./attention.ts";

// Strides and offsets are in vec4 units (4 f32).
const Params = defineParams({
  heads: "u32",
  group: "u32",
  q_stride: "u32",
  q_off: "u32",
  k_stride: "u32",
  k_off: "u32",
  v_stride: "u32",
  v_off: "u32",
  nsplit: "u32",
  scale: "f32",
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
 * merge's batch of `mb` splits.
 */
function innerLoops(
  hd4: number,
  chunk: number,
  unroll: boolean,
  mb: number,
): Record<string, string | number> {
  const xs = Array.from({ length: mb }, (_, i) => i);
  const steps = (n: number, call: (i: string) => string, loopVar: string) =>
    unroll
      ? Array.from({ length: n / 4 }, (_, i) => call(`${4 * i}u`)).join(" ")
      : `for (var ${loopVar} = 0u; ${loopVar} < ${n}u; ${loopVar} += 4u) { ${call(loopVar)} }`;
  return {
    SCORE: steps(hd4, (c) => `score4(qa, ka, ${c});`, "c"),
    MAXR: steps(chunk, (x) => `mx = max4(rs, ${x}, mx);`, "x"),
    PV: steps(chunk, (x) => `pv4(r, d, ${x});`, "x"),
    MB: mb,
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
  const { heads, headDim } = s;
  const kvHeads = s.kvHeads ?? heads;
  if (!(headDim > 0 && headDim % 16 === 0 && headDim <= 512)) {
    throw new InvalidInputError(
      `decodeAttention: head_dim ${headDim} must be a multiple of 16 up to 512`,
    );
  }
  if (!(kvHeads > 0 && heads % kvHeads === 0)) {
    throw new InvalidInputError(
      `decodeAttention: ${heads} query heads are not a multiple of ${kvHeads} KV heads`,
    );
  }
  const rows = (x: HeadRows, n: number, name: string): [number, number] => {
    const stride = x.stride ?? n * headDim, offset = x.offset ?? 0;
    if (stride % 4 || offset % 4 || offset + n * headDim > stride) {
      throw new InvalidInputError(
        `decodeAttention: ${name} rows (stride ${stride}, offset ${offset}) must be multiples ` +
          `of 4 and hold ${n} heads of ${headDim}`,
      );
    }
    return [stride / 4, offset / 4];
  };
  const [qr, kr, vr] = [rows(q, heads, "q"), rows(k, kvHeads, "k"), rows(v, kvHeads, "v")];
  const nsplit = splitsOf(s);
  checkSize("decodeAttention scratch", scratch, decodeAttentionScratchBytes(s));
  const t = tiling(gpu, s, heads / kvHeads);
  const vt = variant(gpu, {
    family: "attention_decode",
    entry: "decode",
    bindings: ["read", "read", "read", "read", "read_write", "read_write"],
    params: Params,
    defines: {
      HD: headDim,
      GROUP: t.group,
      CHUNK: t.chunk,
      MAXS: MAX_SPLITS,
      PF: s.prefetch ?? true,
      ...innerLoops(headDim / 4, t.chunk, s.unroll ?? true, s.mergeBatch ?? 8),
    },
  });
  const params = Params.pack({
    heads,
    group: heads / kvHeads,
    q_stride: qr[0],
    q_off: qr[1],
    k_stride: kr[0],
    k_off: kr[1],
    v_stride: vr[0],
    v_off: vr[1],
    nsplit,
    scale: 1 / Math.sqrt(headDim),
  });
  return [
    new Dispatch(
      gpu,
      vt,
      [q.buffer, k.buffer, v.buffer, state, scratch, out],
      params,
      [nsplit, heads / t.group],
    ),
  ];
}
