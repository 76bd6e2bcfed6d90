/**
 * The Qwen2 decoder layer as GPU dispatches: one function builds a layer for any number of
 * tokens; only the attention part (rope, KV-cache write, attention) differs between prefill (a
 * chunk of prompt tokens at a known offset) and decode (one token, everything position-dependent
 * read from the GPU decode state).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Dispatch } from "../../kernels/_kernel.ts";
import {
  canEmitX,
  canFuseRopeKv,
  causalAttention,
  decodeAttention,
  decodeAttentionRopeKv,
  emitKeepsTuning,
  GEMV_EVERY,
  gemvResident,
  gemvResidentFits,
  type GpuRopeTable,
  isGemvDType,
  type KvDType,
  kvWrite,
  linear,
  type LinearShape,
  normLinear,
  preparedXBytes,
  rope,
  type RopeKvEpilogue,
  ropeKvWriteAt,
  siluMulLinear,
  takesPreparedX,
} from "../../kernels/mod.ts";
import type { Weight } from "../gpu/tensor.ts";
import type { TextConfig } from "./config.ts";
import type { GpuWeights } from "./weights.ts";

/** Activations of a decoder pass over up to `rows` tokens. */
export interface DecoderBuffers {
  /** Tokens the buffers hold. */
  rows: number;
  /** (rows, H) f32: the residual stream. */
  x: GPUBuffer;
  /** (rows, H) f32: RMS-normed x. */
  h: GPUBuffer;
  /** (rows, H + 2·kvd) f32: rows [q | k | v]. */
  qkv: GPUBuffer;
  /** (rows, H) f32: attention output (heads concatenated). */
  attn: GPUBuffer;
  /** (rows, 2I) f32: rows [gate | up]. */
  gateUp: GPUBuffer;
  /** (rows, I) f32: silu(gate) · up. */
  act: GPUBuffer;
  /**
   * (11 · H / 32) u32 ({@link preparedXBytes}), m = 1 only: x as the next norm-GEMV's prepared x (int8 blocks of
   * x ∘ norm weight, kernels/linear_q.wgsl PREPX layout), written by the GEMV that last updated x
   * (o_proj, down_proj: `emit`) where both weights allow it ({@link emitsPreparedX}).
   */
  xp: GPUBuffer;
  /**
   * (11 · I / 32) u32 ({@link preparedXBytes}), m = 1 only: silu(gate) · up prepared for
   * down_proj by gate_up (`emit.siluMul`) where both weights allow it.
   */
  xpAct: GPUBuffer;
  /** Frees the buffers. */
  destroy(): void;
}

/** Width of a fused qkv row: H + 2 · kvHeads · headDim. */
export function qkvWidth(t: TextConfig): number {
  return t.hiddenSize + 2 * t.numKvHeads * t.headDim;
}

/** Allocates the activations for `rows` tokens. */
export function createDecoderBuffers(
  gpu: Gpu,
  t: TextConfig,
  rows: number,
  label: string,
): DecoderBuffers {
  const H = t.hiddenSize, I = t.intermediateSize;
  const mk = (cols: number, name: string) =>
    createStorage(gpu, rows * cols * 4, `${label}.${name}`);
  const b = {
    rows,
    x: mk(H, "x"),
    h: mk(H, "h"),
    qkv: mk(qkvWidth(t), "qkv"),
    attn: mk(H, "attn"),
    gateUp: mk(2 * I, "gate_up"),
    act: mk(I, "act"),
    xp: createStorage(gpu, preparedXBytes(H), `${label}.xp`),
    xpAct: createStorage(gpu, preparedXBytes(I), `${label}.xp_act`),
  };
  const all = [b.x, b.h, b.qkv, b.attn, b.gateUp, b.act, b.xp, b.xpAct];
  return { ...b, destroy: () => all.forEach((x) => x.destroy()) };
}

/**
 * Whether the GEMV over `producer` that updates x (o_proj, down_proj) writes x prepared for the
 * next GEMV over `consumer` (gate_up, the next layer's qkv, lm_head) at m tokens, which then runs
 * no PREPX pass: m = 1 and q4 weights (kernels/linear.ts canEmitX / takesPreparedX).
 */
export function emitsPreparedX(producer: Weight, consumer: Weight, m: number): boolean {
  return DECODER_FUSION.preparedX && canEmitX(producer, m) && takesPreparedX(consumer, m);
}

/**
 * Whether the gate_up GEMV (its x `prepared` or not) writes silu(gate) · up prepared for the
 * down_proj GEMV at m tokens (`emit.siluMul`), which then runs no PREPX pass: m = 1, q4 weights,
 * and only where gate_up's GEMV already runs whole 64-row blocks per workgroup (7B, not 72B:
 * growing its workgroups cost more than the pass, kernels/linear_q.ts emitKeepsTuning).
 */
export function emitsPreparedAct(
  gateUp: Weight,
  down: Weight,
  m: number,
  prepared: boolean,
): boolean {
  return DECODER_FUSION.preparedAct && canEmitX(gateUp, m, true) && takesPreparedX(down, m) &&
    emitKeepsTuning(gateUp, true, prepared);
}

/**
 * Fusions of the layer builder that tests and benchmarks switch off to compare; read when the
 * dispatches are built ({@link layerDispatches}, Qwen2VLModel.createSession()).
 */
export const DECODER_FUSION = {
  /** o_proj / down_proj write x prepared for the next norm-GEMV ({@link emitsPreparedX}). */
  preparedX: true,
  /**
   * gate_up writes silu(gate) · up prepared for down_proj where its GEMV shape allows it
   * ({@link emitsPreparedAct}).
   */
  preparedAct: true,
  /**
   * GEMVs at m = 1 over f16 / q8 weights run kernels/gemv.ts's resident-x GEMV where it fits
   * ({@link gemvResidentFits}): gate_up with the norm and silu · up fused (down_proj then a plain
   * GEMV of its output), and where GEMV_EVERY says so (q8) qkv (norm, bias, rope + KV write
   * fused), o_proj, down_proj and lm_head too.
   */
  residentGemv: true,
  /**
   * Batched decode's attention ({@link rowAttend}) rotates q and k and writes the K/V itself
   * (kernels/attention_decode.ts decodeAttentionRopeKv): one dispatch a session and layer, where
   * off a ropeKvWriteAt dispatch runs before each (the same bits on lavapipe). Read when a session's
   * dispatches at a batch row are first built (Qwen2VLModel.createDecodeBatch keeps them).
   */
  rowRopeKv: true,
};

/** A layer's KV cache: K and V of (maxTokens, kvHeads · headDim) `dtype`. */
export interface LayerCache {
  /** (maxTokens, kvHeads · headDim) rotated keys. */
  k: GPUBuffer;
  /** (maxTokens, kvHeads · headDim) values. */
  v: GPUBuffer;
  /** Element type of k and v. */
  dtype: KvDType;
}

/**
 * One decoder layer over m tokens of `b`, with `attend` (rope + cache write + attention from
 * b.qkv into b.attn) in the middle. Residual adds are fused into o_proj and down_proj; at m = 1
 * (decode) the two RMSNorms are fused into qkv and gate_up ({@link normLinear}) and silu · mul
 * into down ({@link siluMulLinear}), or, over an f16 / q8 gate_up, into gate_up's resident-x GEMV
 * (kernels/gemv.ts, writing b.act; q8's qkv, o, down and lm_head run it too): b.h (and b.gateUp
 * there) are unused.
 *
 * transformers `Qwen2VLDecoderLayer.forward` / `Qwen2MLP.forward`:
 * ```python
 * residual = hidden_states
 * hidden_states = self.input_layernorm(hidden_states)
 * hidden_states, _ = self.self_attn(hidden_states=hidden_states, ...)   # q/k/v_proj (bias), rope, attn, o_proj
 * hidden_states = residual + hidden_states
 * residual = hidden_states
 * hidden_states = self.post_attention_layernorm(hidden_states)
 * hidden_states = self.mlp(hidden_states)        # down_proj(act_fn(gate_proj(x)) * up_proj(x))
 * hidden_states = residual + hidden_states
 * ```
 */
export function layerDispatches(
  gpu: Gpu,
  t: TextConfig,
  w: GpuWeights,
  layer: number,
  b: DecoderBuffers,
  m: number,
  attend: Dispatch[] | DecodeAttention,
): Dispatch[] {
  const p = layerParts(gpu, t, w, layer, b, m, attend);
  return [...p.qkv, ...p.attention, ...p.rest];
}

/**
 * {@link layerDispatches} in its three parts: the qkv projection (with the rope + KV write where
 * `attend` fuses it), the attention, and o_proj + the MLP. Batched decode runs one attention per
 * session between the other two (`attend`: []).
 */
export function layerParts(
  gpu: Gpu,
  t: TextConfig,
  w: GpuWeights,
  layer: number,
  b: DecoderBuffers,
  m: number,
  attend: Dispatch[] | DecodeAttention,
): { qkv: Dispatch[]; attention: Dispatch[]; rest: Dispatch[] } {
  const k = `text.layers.${layer}.`;
  const nw = w.vector(k + "input_norm"),
    qkvW = w.matrix(k + "qkv"),
    qkvB = w.vector(k + "qkv_bias"),
    oW = w.matrix(k + "o"),
    postNw = w.vector(k + "post_norm"),
    gateUpW = w.matrix(k + "gate_up"),
    downW = w.matrix(k + "down");
  // x prepared for qkv by the previous layer's down_proj, for gate_up by o_proj; down_proj
  // prepares it for the next layer's qkv or, after the last layer, for lm_head (text.norm).
  const last = layer + 1 === t.numLayers;
  const next = last ? `text.` : `text.layers.${layer + 1}.`;
  const inPrepared = layer > 0 &&
    emitsPreparedX(w.matrix(`text.layers.${layer - 1}.down`), qkvW, m);
  const oEmits = emitsPreparedX(oW, gateUpW, m);
  // (the next weights are looked up only where down_proj could emit)
  const downEmits = canEmitX(downW, m) &&
    emitsPreparedX(downW, w.matrix(next + (last ? "lm_head" : "qkv")), m);
  const nextNw = downEmits ? w.vector(next + (last ? "norm" : "input_norm")) : undefined;
  const actEmits = emitsPreparedAct(gateUpW, downW, m, oEmits);
  const resident = m === 1 && !oEmits && DECODER_FUSION.residentGemv &&
    gemvResidentFits(gpu, gateUpW, true);
  const oEmit = oEmits ? { weight: postNw, out: b.xp } : undefined;
  const downEmit = nextNw ? { weight: nextNw, out: b.xp } : undefined;
  // y += x · wᵀ (o_proj, down_proj): at m = 1 on the resident-x GEMV where kernels/gemv.ts's
  // GEMV_EVERY says so and nothing is emitted.
  const accumulate = (y: GPUBuffer, x: GPUBuffer, wt: Weight, emit?: LinearShape["emit"]) =>
    m === 1 && !emit && residentEverywhere(gpu, wt)
      ? [gemvResident(gpu, y, x, wt, { accumulate: true })]
      : linear(gpu, y, x, wt, null, { m, accumulate: true, ...(emit ? { emit } : {}) });
  const norm = { m, eps: t.rmsNormEps, ...(inPrepared ? { prepared: b.xp } : {}) };
  let qkv: Dispatch[], attention: Dispatch[];
  if (Array.isArray(attend)) {
    qkv = normLinear(gpu, b.qkv, b.x, b.h, nw, qkvW, qkvB, norm);
    attention = attend;
  } else if (m === 1 && !inPrepared && residentEverywhere(gpu, qkvW)) {
    // The resident-x GEMV (q8) with the norm, bias and rope + KV write fused.
    const { ropeKv } = attend;
    qkv = [
      gemvResident(gpu, b.qkv, b.x, qkvW, {
        norm: { weight: nw, eps: norm.eps },
        bias: qkvB,
        ropeKv,
      }),
    ];
    attention = attend.attention;
  } else if (canFuseRopeKv(qkvW, m)) {
    const { ropeKv } = attend;
    qkv = linear(gpu, b.qkv, b.x, qkvW, qkvB, {
      m,
      norm: { weight: nw, eps: norm.eps },
      ropeKv,
      ...(inPrepared ? { prepared: b.xp } : {}),
    });
    attention = attend.attention;
  } else {
    // A qkv weight in several chunks: the rope + KV write as its own dispatch.
    const r = attend.ropeKv;
    qkv = [
      ...normLinear(gpu, b.qkv, b.x, b.h, nw, qkvW, qkvB, norm),
      ropeKvWriteAt(gpu, b.qkv, r.k, r.v, r.state, r.table, {
        heads: r.heads,
        kvHeads: r.kvHeads,
        stride: qkvWidth(t),
        offset: 0,
        maxTokens: r.maxTokens,
        dtype: r.dtype,
      }),
    ];
    attention = attend.attention;
  }
  const rest = [
    ...accumulate(b.x, b.attn, oW, oEmit),
    ...(resident
      ? [
        gemvResident(gpu, b.act, b.x, gateUpW, {
          norm: { weight: postNw, eps: t.rmsNormEps },
          siluMul: true,
        }),
        ...accumulate(b.x, b.act, downW, downEmit),
      ]
      : [
        ...normLinear(gpu, b.gateUp, b.x, b.h, postNw, gateUpW, null, {
          m,
          eps: t.rmsNormEps,
          ...(oEmits ? { prepared: b.xp } : {}),
          ...(actEmits ? { emit: { out: b.xpAct, siluMul: true } } : {}),
        }),
        ...siluMulLinear(gpu, b.x, b.gateUp, b.act, downW, null, {
          m,
          accumulate: true,
          ...(downEmit ? { emit: downEmit } : {}),
          ...(actEmits ? { prepared: b.xpAct } : {}),
        }),
      ]),
  ];
  return { qkv, attention, rest };
}

/**
 * Whether a GEMV over `w` other than gate_up (qkv, o_proj, down_proj, lm_head) at m = 1 takes the
 * resident-x kernel: {@link DECODER_FUSION}.residentGemv and kernels/gemv.ts's GEMV_EVERY for its
 * dtype, where it fits.
 */
function residentEverywhere(gpu: Gpu, w: Weight): boolean {
  return DECODER_FUSION.residentGemv && isGemvDType(w.dtype) && GEMV_EVERY[w.dtype] &&
    gemvResidentFits(gpu, w);
}

/** Where q, k, v sit in a fused qkv row, and the cache-write shape. */
function qkvLayout(t: TextConfig) {
  const H = t.hiddenSize, kvd = t.numKvHeads * t.headDim, stride = qkvWidth(t);
  return {
    stride,
    // q heads then k heads are contiguous from column 0: one rope call rotates both.
    ropeHeads: t.numHeads + t.numKvHeads,
    kv: { width: kvd, srcStride: stride, kOffset: H, vOffset: H + kvd },
    heads: { heads: t.numHeads, kvHeads: t.numKvHeads, headDim: t.headDim },
  };
}

/**
 * Prefill attention for n tokens at cache rows offset..offset+n-1.
 *
 * transformers `Qwen2VLAttention.forward` (M-RoPE via Qwen2VLRotaryEmbedding, causal mask, GQA):
 * ```python
 * query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
 * key_states, value_states = cache.update(key_states, value_states, self.layer_idx)
 * attn_output = softmax(q @ repeat_kv(k).T * self.scaling + causal_mask) @ repeat_kv(v)
 * ```
 * @param pos (n, 3) u32 M-RoPE positions (t, h, w) of the n tokens
 */
export function prefillAttend(
  gpu: Gpu,
  t: TextConfig,
  b: DecoderBuffers,
  cache: LayerCache,
  maxTokens: number,
  table: GpuRopeTable,
  pos: GPUBuffer,
  n: number,
  offset: number,
): Dispatch[] {
  const l = qkvLayout(t);
  return [
    rope(gpu, b.qkv, pos, table, { seq: n, heads: l.ropeHeads, stride: l.stride, offset: 0 }),
    kvWrite(gpu, cache.k, cache.v, b.qkv, {
      ...l.kv,
      seq: n,
      maxTokens,
      offset,
      dtype: cache.dtype,
    }),
    causalAttention(
      gpu,
      b.attn,
      { buffer: b.qkv, stride: l.stride },
      { buffer: cache.k, dtype: cache.dtype },
      { buffer: cache.v, dtype: cache.dtype },
      { ...l.heads, seq: n, offset },
    ),
  ];
}

/**
 * The decode step's attention around the qkv projection: rope of q and k at state.position and
 * the K/V write at row state.cache_len, to run as the projection's epilogue (or right after it),
 * then the attention over the cache into b.attn.
 */
export interface DecodeAttention {
  ropeKv: RopeKvEpilogue;
  attention: Dispatch[];
}

/**
 * Decode attention for the token at cache row state.cache_len, rotated by state.position on all
 * three M-RoPE axes (text tokens after the prompt: transformers adds rope_deltas to
 * `cache_position`, the same on every axis).
 * @param scratch {@link decodeAttentionScratchBytes} bytes, shared by all layers
 */
export function decodeAttend(
  gpu: Gpu,
  t: TextConfig,
  b: DecoderBuffers,
  cache: LayerCache,
  maxTokens: number,
  table: GpuRopeTable,
  state: GPUBuffer,
  scratch: GPUBuffer,
): DecodeAttention {
  const l = qkvLayout(t);
  const ropeKv = {
    table,
    state,
    k: cache.k,
    v: cache.v,
    heads: l.ropeHeads,
    kvHeads: t.numKvHeads,
    maxTokens,
    dtype: cache.dtype,
  };
  const attention = decodeAttention(
    gpu,
    b.attn,
    { buffer: b.qkv, stride: l.stride },
    { buffer: cache.k, dtype: cache.dtype },
    { buffer: cache.v, dtype: cache.dtype },
    state,
    scratch,
    { ...l.heads, maxTokens },
  );
  return { ropeKv, attention };
}

/** What {@link rowAttend} reads of a session: its KV cache, decode state and attention scratch. */
export interface BatchRowSession {
  /** Per layer K and V, (maxTokens, kvHeads · headDim). */
  readonly cache: readonly LayerCache[];
  /** Rows of its KV cache. */
  readonly maxTokens: number;
  /** Its DecodeState (kernels/state.wgsl). */
  readonly state: GPUBuffer;
  /** {@link decodeAttentionScratchBytes} bytes, shared by its layers. */
  readonly attnScratch: GPUBuffer;
}

/**
 * Batched decode's attention for layer `layer` of the session at row `row`: row `row` of b.qkv is
 * its token, rotated by its own state.position, its K/V written at its own state.cache_len, its
 * query attending over its own cache into row `row` of b.attn — one dispatch a session
 * (decodeAttentionRopeKv, the rope + KV write folded into the attention; b.qkv stays unrotated:
 * nothing after the attention reads it) or, {@link DECODER_FUSION}.rowRopeKv off, a ropeKvWriteAt
 * dispatch (rotating b.qkv's row in place) then the attention. The products around them run once
 * over all rows.
 */
export function rowAttend(
  gpu: Gpu,
  t: TextConfig,
  b: DecoderBuffers,
  s: BatchRowSession,
  layer: number,
  table: GpuRopeTable,
  row: number,
): Dispatch[] {
  const l = qkvLayout(t), c = s.cache[layer];
  const q = { buffer: b.qkv, stride: l.stride };
  const k = { buffer: c.k, dtype: c.dtype }, v = { buffer: c.v, dtype: c.dtype };
  const shape = { ...l.heads, maxTokens: s.maxTokens, row };
  if (DECODER_FUSION.rowRopeKv) {
    return decodeAttentionRopeKv(gpu, b.attn, q, k, v, s.state, s.attnScratch, table, shape);
  }
  return [
    ropeKvWriteAt(gpu, b.qkv, c.k, c.v, s.state, table, {
      heads: l.ropeHeads,
      kvHeads: t.numKvHeads,
      stride: l.stride,
      maxTokens: s.maxTokens,
      dtype: c.dtype,
      row,
    }),
    ...decodeAttention(gpu, b.attn, q, k, v, s.state, s.attnScratch, shape),
  ];
}

/**
 * Final norm and lm_head over m rows of `x` (already the rows to score).
 *
 * transformers: `hidden_states = self.norm(hidden_states)` then `logits = self.lm_head(hidden_states)`.
 * At m = 1 the norm is fused into lm_head ({@link normLinear}, or q8's resident-x GEMV; h is unused).
 * @param logits (m, vocab) f32
 * @param xp the decoder buffers' prepared x ({@link DecoderBuffers.xp}) when `x` is their x right
 * after {@link layerDispatches} of the last layer at m = 1: lm_head reads it where the last
 * down_proj wrote it ({@link emitsPreparedX})
 */
export function headDispatches(
  gpu: Gpu,
  t: TextConfig,
  w: GpuWeights,
  logits: GPUBuffer,
  h: GPUBuffer,
  x: GPUBuffer,
  m: number,
  xp?: GPUBuffer,
): Dispatch[] {
  const lmHead = w.matrix("text.lm_head");
  const down = w.matrix(`text.layers.${t.numLayers - 1}.down`);
  const prepared = xp && emitsPreparedX(down, lmHead, m) ? { prepared: xp } : {};
  if (m === 1 && !prepared.prepared && residentEverywhere(gpu, lmHead)) {
    return [
      gemvResident(gpu, logits, x, lmHead, {
        norm: { weight: w.vector("text.norm"), eps: t.rmsNormEps },
      }),
    ];
  }
  return normLinear(gpu, logits, x, h, w.vector("text.norm"), lmHead, null, {
    m,
    eps: t.rmsNormEps,
    ...prepared,
  });
}
