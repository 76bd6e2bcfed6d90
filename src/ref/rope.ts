/**
 * Rotary position embeddings: the cos/sin table builders the GPU kernel reads (kernels/rope.ts),
 * and plain-loop references for kernels/rope.wgsl.
 *
 * transformers computes `freqs = inv_freq · pos` in f32 and then `cos`/`sin` of that f32 angle.
 * The tables here do the same arithmetic (each step rounded to f32) but evaluate cos/sin in f64 and
 * round once, so the result does not depend on a GPU's cos/sin accuracy at large angles.
 * @module
 */

/** A rope table: per position and rotary index, the angle's cos and sin, plus each index's axis. */
export interface RopeTable {
  /** Rows of the table: positions 0..npos-1. */
  npos: number;
  /** Rotary indices per head: head_dim / 2 (index i rotates the pair (i, i + half)). */
  half: number;
  /** Position axes per token: 3 (t, h, w) for M-RoPE, 2 (h, w) for the vision tower. */
  naxes: number;
  /** (npos, half) f32: fround(cos(fround(invFreq[i] · pos))). */
  cos: Float32Array;
  /** (npos, half) f32. */
  sin: Float32Array;
  /** (half) u32: which position axis rotary index i takes its position from. */
  axis: Uint32Array;
}

/**
 * `1 / theta^(2j / dim)` for j < dim / 2, each step in f32 as torch does:
 * `1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))`.
 */
export function ropeInvFreq(dim: number, theta: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let j = 0; j < dim / 2; j++) {
    out[j] = 1 / Math.fround(Math.pow(theta, Math.fround((2 * j) / dim)));
  }
  return out;
}

/**
 * Builds a table from per-index inverse frequencies.
 * @param invFreq (half) f32: the inverse frequency rotary index i uses
 * @param axis (half): the position axis of rotary index i
 */
export function buildRopeTable(
  invFreq: Float32Array,
  axis: Uint32Array,
  naxes: number,
  npos: number,
): RopeTable {
  const half = invFreq.length;
  const cos = new Float32Array(npos * half), sin = new Float32Array(npos * half);
  for (let p = 0; p < npos; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(invFreq[i] * p);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { npos, half, naxes, cos, sin, axis };
}

/**
 * The decoder's M-RoPE table (Qwen2VLRotaryEmbedding + apply_multimodal_rotary_pos_emb): rotary
 * index i < head_dim/2 uses inv_freq[i] and the position of axis a(i), where mrope_section splits
 * the indices into t, h, w runs (e.g. [16, 24, 24] for head_dim 128).
 * @param npos positions 0..npos-1 the table covers (max context + the largest rope delta)
 */
export function mropeTable(
  headDim: number,
  theta: number,
  mropeSection: readonly number[],
  npos: number,
): RopeTable {
  const half = headDim / 2;
  const total = mropeSection.reduce((a, b) => a + b, 0);
  if (mropeSection.length !== 3 || total !== half) {
    throw new RangeError(
      `mrope_section ${
        JSON.stringify(mropeSection)
      } must have 3 entries summing to head_dim/2 = ${half}`,
    );
  }
  const axis = new Uint32Array(half);
  let i = 0;
  mropeSection.forEach((n, a) => {
    for (let k = 0; k < n; k++) axis[i++] = a;
  });
  return buildRopeTable(ropeInvFreq(headDim, theta), axis, 3, npos);
}

/**
 * The vision tower's 2D table (VisionRotaryEmbedding(head_dim/2) + rot_pos_emb): with q =
 * head_dim/4 frequencies inv_freq[j] = 1/10000^(2j/(head_dim/2)), rotary index i < q uses the h
 * position with inv_freq[i] and i ≥ q the w position with inv_freq[i - q].
 * @param npos positions 0..npos-1 (the largest grid height/width)
 */
export function visionRopeTable(headDim: number, npos: number, theta = 10000): RopeTable {
  const half = headDim / 2, q = headDim / 4;
  if (!Number.isInteger(q)) {
    throw new RangeError(`vision head_dim ${headDim} must be a multiple of 4`);
  }
  const f = ropeInvFreq(half, theta);
  const invFreq = new Float32Array(half), axis = new Uint32Array(half);
  for (let i = 0; i < half; i++) {
    invFreq[i] = f[i % q];
    axis[i] = i < q ? 0 : 1;
  }
  return buildRopeTable(invFreq, axis, 2, npos);
}

/**
 * Applies the table to x in place of a copy: for each token t, head h, index i < half,
 * `x[i] = x[i]·cos − x[i+half]·sin`, `x[i+half] = x[i+half]·cos + x[i]·sin` (rotate_half).
 * @param x (seq, stride) f32; heads start at column `offset`, each head_dim = 2·half wide
 * @param pos (seq, naxes) positions
 * @returns a rotated copy of x
 */
export function applyRope(
  x: Float32Array,
  pos: ArrayLike<number>,
  table: RopeTable,
  s: { seq: number; heads: number; stride: number; offset: number },
): Float32Array {
  const out = x.slice();
  const { half, naxes } = table;
  for (let t = 0; t < s.seq; t++) {
    for (let h = 0; h < s.heads; h++) {
      const base = t * s.stride + s.offset + h * 2 * half;
      for (let i = 0; i < half; i++) {
        const p = pos[t * naxes + table.axis[i]];
        const c = table.cos[p * half + i], sn = table.sin[p * half + i];
        const a = x[base + i], b = x[base + i + half];
        out[base + i] = Math.fround(a * c) - Math.fround(b * sn);
        out[base + i + half] = Math.fround(b * c) + Math.fround(a * sn);
      }
    }
  }
  return out;
}

/**
 * transformers' M-RoPE written as it is there, for cross-checking the table layout:
 * `cos = cat(emb.cos()) ; cos = cat([m[i % 3] for i, m in enumerate(cos.split(mrope_section * 2))])`
 * then `q * cos + rotate_half(q) * sin`.
 * @param x (seq, heads, headDim) f32
 * @param pos (3, seq) positions (transformers' position_ids layout)
 */
export function mropeTransformers(
  x: Float32Array,
  pos: ArrayLike<number>,
  s: {
    seq: number;
    heads: number;
    headDim: number;
    theta: number;
    mropeSection: readonly number[];
  },
): Float32Array {
  const { seq, heads, headDim } = s;
  const invFreq = ropeInvFreq(headDim, s.theta);
  const half = headDim / 2;
  // Section boundaries over the doubled list: chunk c of mrope_section*2 takes axis c % 3.
  const sections = [...s.mropeSection, ...s.mropeSection];
  const axisOf = new Array<number>(headDim);
  let j = 0;
  sections.forEach((n, c) => {
    for (let k = 0; k < n; k++) axisOf[j++] = c % 3;
  });
  const out = new Float32Array(x.length);
  for (let t = 0; t < seq; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * headDim;
      for (let d = 0; d < headDim; d++) {
        // emb = cat(freqs, freqs): dimension d uses frequency d % half.
        const angle = Math.fround(invFreq[d % half] * pos[axisOf[d] * seq + t]);
        const c = Math.fround(Math.cos(angle)), sn = Math.fround(Math.sin(angle));
        const rot = d < half ? -x[base + d + half] : x[base + d - half];
        out[base + d] = Math.fround(x[base + d] * c) + Math.fround(rot * sn);
      }
    }
  }
  return out;
}

/**
 * transformers' vision rope as written there: `freqs = rotary_pos_emb_full[pos_ids].flatten(1)`,
 * `emb = cat(freqs, freqs)`, `x * cos + rotate_half(x) * sin` in f32.
 * @param x (seq, heads, headDim) f32
 * @param pos (seq, 2) (h, w) positions per patch
 */
export function visionRopeTransformers(
  x: Float32Array,
  pos: ArrayLike<number>,
  s: { seq: number; heads: number; headDim: number },
): Float32Array {
  const { seq, heads, headDim } = s;
  const half = headDim / 2, q = headDim / 4;
  const invFreq = ropeInvFreq(half, 10000); // (q)
  const out = new Float32Array(x.length);
  for (let t = 0; t < seq; t++) {
    // freqs (half) = [h·inv_freq, w·inv_freq]
    const freqs = new Float32Array(half);
    for (let i = 0; i < q; i++) {
      freqs[i] = invFreq[i] * pos[t * 2];
      freqs[q + i] = invFreq[i] * pos[t * 2 + 1];
    }
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * headDim;
      for (let d = 0; d < headDim; d++) {
        const angle = freqs[d % half];
        const c = Math.fround(Math.cos(angle)), sn = Math.fround(Math.sin(angle));
        const rot = d < half ? -x[base + d + half] : x[base + d - half];
        out[base + d] = Math.fround(x[base + d] * c) + Math.fround(rot * sn);
      }
    }
  }
  return out;
}

/**
 * The decode rope + KV-cache write (kernels/rope.wgsl's KV variant): rotates one row of x by
 * `position` on every axis, and puts the rotated K heads (the last kvHeads rotated heads) and the V
 * heads after them at row `row` of the caches (nothing when row ≥ the cache's rows).
 * @param x (stride) f32: heads from column `offset`, then V
 * @param kCache (maxTokens, kvHeads · head_dim) f32, written in place
 * @param vCache (maxTokens, kvHeads · head_dim) f32, written in place
 * @returns the rotated copy of x
 */
export function ropeKvWrite(
  x: Float32Array,
  position: number,
  table: RopeTable,
  s: { heads: number; kvHeads: number; stride: number; offset: number },
  kCache: Float32Array,
  vCache: Float32Array,
  row: number,
): Float32Array {
  const pos = new Array(table.naxes).fill(position);
  const out = applyRope(x, pos, table, { seq: 1, ...s });
  const width = s.kvHeads * 2 * table.half,
    kOff = s.offset + (s.heads - s.kvHeads) * 2 * table.half;
  if ((row + 1) * width <= kCache.length) {
    kCache.set(out.subarray(kOff, kOff + width), row * width);
    vCache.set(out.subarray(kOff + width, kOff + 2 * width), row * width);
  }
  return out;
}
