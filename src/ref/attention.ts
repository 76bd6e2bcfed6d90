/**
 * Plain-loop reference for kernels/attention.wgsl: transformers' eager attention
 * (`softmax(q·kᵀ·scale + mask, dtype=f32) · v`, repeat_kv for grouped-query attention), in f64.
 * @module
 */
import { quantizeX } from "./gemm_q.ts";

/** Which keys each query sees. */
export interface AttentionMask {
  /** Causal: query i sits at position offset + i and sees keys 0..offset+i (keys = offset + seq). */
  offset?: number;
  /** Vision: block-diagonal; query i in [cu[b], cu[b+1]) sees exactly those keys (keys = seq). */
  cuSeqlens?: ArrayLike<number>;
}

/** Shape of an attention call. */
export interface AttentionRefShape extends AttentionMask {
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

/**
 * Attention over all heads.
 * @param q (seq, heads, headDim) f32
 * @param k (keys, kvHeads, headDim) f32
 * @param v (keys, kvHeads, headDim) f32
 * @returns (seq, heads, headDim) f32
 */
export function attention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  s: AttentionRefShape,
): Float32Array {
  const { seq, heads, kvHeads, headDim: hd } = s;
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float32Array(seq * heads * hd);
  for (let i = 0; i < seq; i++) {
    const [lo, hi] = keyRange(i, s);
    const w = new Float64Array(hi - lo);
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      let mx = -Infinity;
      for (let j = lo; j < hi; j++) {
        let d = 0;
        for (let c = 0; c < hd; c++) {
          d += q[(i * heads + h) * hd + c] * k[(j * kvHeads + kvh) * hd + c];
        }
        w[j - lo] = d * scale;
        mx = Math.max(mx, w[j - lo]);
      }
      let sum = 0;
      for (let j = 0; j < w.length; j++) sum += w[j] = Math.exp(w[j] - mx);
      for (let c = 0; c < hd; c++) {
        let acc = 0;
        for (let j = lo; j < hi; j++) acc += w[j - lo] * v[(j * kvHeads + kvh) * hd + c];
        out[(i * heads + h) * hd + c] = acc / sum;
      }
    }
  }
  return out;
}

/**
 * x with each row of `n` values replaced by its int8 quantization, dequantized (codes · d, d =
 * max|x| / 127 per row; src/ref/gemm_q.ts quantizeX): what kernels/attention.wgsl's int8 S sees
 * of q and k (visionAttentionInt8), so `attention(fakeInt8(q, hd), fakeInt8(k, hd), v, s)` is its
 * reference (the integer sums times d_q · d_k are these products, exactly).
 */
export function fakeInt8(x: Float32Array, n: number): Float32Array {
  const { codes, scales } = quantizeX(x, n);
  return Float32Array.from(codes, (c, i) => c * scales[Math.floor(i / n)]);
}

/**
 * The mean of k over each block's rows (cu_seqlens: block b is rows cu[b] .. cu[b + 1] − 1;
 * default one block of all), per column of a (rows, width) matrix: (blocks, width). Summed in f32
 * in kernels/attention.wgsl k_mean's order — row cu[b] + t into partial t % 256 in turn, then a
 * tree over the 256 partials — so the sums have the kernel's bits (its division may differ by an
 * ulp or two: a GPU may multiply by the reciprocal).
 */
export function blockMeans(
  k: Float32Array,
  width: number,
  cu: ArrayLike<number> = [0, k.length / width],
): Float32Array {
  const out = new Float32Array((cu.length - 1) * width), part = new Float32Array(256);
  for (let b = 0; b + 1 < cu.length; b++) {
    const lo = cu[b], hi = cu[b + 1];
    for (let c = 0; c < width; c++) {
      part.fill(0);
      for (let t = lo; t < hi; t++) part[(t - lo) % 256] += k[t * width + c];
      for (let n = 128; n > 0; n >>= 1) for (let i = 0; i < n; i++) part[i] += part[i + n];
      out[b * width + c] = part[0] / Math.max(hi - lo, 1);
    }
  }
  return out;
}

/**
 * k minus its block's mean ({@link blockMeans}, or `means` as given), per column: what the int8
 * attention quantizes (kernels/attention.wgsl k_mean), a shift softmax does not see within a block.
 */
export function centered(
  k: Float32Array,
  width: number,
  cu: ArrayLike<number> = [0, k.length / width],
  means: Float32Array = blockMeans(k, width, cu),
): Float32Array {
  const out = new Float32Array(k.length);
  for (let b = 0; b + 1 < cu.length; b++) {
    for (let t = cu[b]; t < cu[b + 1]; t++) {
      for (let c = 0; c < width; c++) out[t * width + c] = k[t * width + c] - means[b * width + c];
    }
  }
  return out;
}

function keyRange(i: number, m: AttentionMask): [number, number] {
  if (m.cuSeqlens) {
    const cu = m.cuSeqlens;
    for (let b = 0; b + 1 < cu.length; b++) if (i < cu[b + 1]) return [cu[b], cu[b + 1]];
    throw new RangeError(`query ${i} is past cu_seqlens' last entry ${cu[cu.length - 1]}`);
  }
  return [0, (m.offset ?? 0) + i + 1];
}

/**
 * Vision cu_seqlens as transformers builds them: one block per frame,
 * `repeat_interleave(h·w, t).cumsum()` with a leading 0.
 * @param gridThw per image/video: (t, h, w) in patches
 */
export function cuSeqlens(gridThw: readonly (readonly [number, number, number])[]): Uint32Array {
  const out = [0];
  for (const [t, h, w] of gridThw) {
    for (let f = 0; f < t; f++) out.push(out[out.length - 1] + h * w);
  }
  return Uint32Array.from(out);
}
