/**
 * Reference for kernels/sample.wgsl: transformers' logits processing (RepetitionPenaltyLogitsProcessor,
 * TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper) written as it is there, greedy
 * argmax, and the kernel's RNG and draw order, so a seeded GPU draw can be replayed on the CPU.
 * @module
 */

/** Sampling settings, as transformers' generation config names them. */
export interface SamplingRefOptions {
  /** false: greedy argmax (temperature and the filters are ignored, as transformers does). */
  doSample: boolean;
  temperature: number;
  /** 0: off. */
  topK: number;
  /** ≥ 1: off. */
  topP: number;
  /** 0 or absent: off. */
  minP?: number;
  /** 1: off. */
  repetitionPenalty: number;
  /** OpenAI's frequency_penalty over the generated ids; 0 or absent: off. */
  frequencyPenalty?: number;
  /** OpenAI's presence_penalty over the generated ids; 0 or absent: off. */
  presencePenalty?: number;
  /** OpenAI's logit_bias: (id, bias) added to the logits first; absent: none. */
  logitBias?: readonly (readonly [number, number])[];
  /** vLLM's min_tokens: `stopIds` held back while fewer were generated; absent: off. */
  minTokens?: number;
  stopIds?: readonly number[];
  /** A responseFormat: (ceil(vocab / 32)) u32 bits, only tokens whose bit is set drawable; absent: all. */
  allowed?: Uint32Array;
}

/**
 * Scores after the logit bias (added in f32), the repetition penalty (each distinct history id
 * once: `where(x < 0, x·p, x/p)`),
 * then the frequency and presence penalties over the generated ids (vLLM's `logits -= f · counts;
 * logits -= pr · (counts > 0)`) and, when sampling, the temperature, in f32 like transformers.
 * @param logits (vocab) f32
 * @param history prompt ids followed by the generated ids
 * @param promptLength ids of `history` that are the prompt (default: all of it)
 */
export function processScores(
  logits: Float32Array,
  history: ArrayLike<number>,
  o: SamplingRefOptions,
  promptLength = history.length,
): Float32Array {
  const out = logits.slice();
  for (const [id, b] of o.logitBias ?? []) if (id < out.length) out[id] = Math.fround(out[id] + b);
  const p = o.repetitionPenalty;
  if (p !== 1) {
    for (const id of new Set(Array.from(history))) {
      if (id < out.length) {
        out[id] = out[id] < 0 ? Math.fround(out[id] * p) : Math.fround(out[id] / p);
      }
    }
  }
  const f = o.frequencyPenalty ?? 0, pr = o.presencePenalty ?? 0;
  if (f !== 0 || pr !== 0) {
    const counts = new Map<number, number>();
    for (let i = promptLength; i < history.length; i++) {
      counts.set(history[i], (counts.get(history[i]) ?? 0) + 1);
    }
    for (const [id, n] of counts) {
      if (id >= logits.length) continue;
      out[id] = Math.fround(out[id] - Math.fround(f * n));
      out[id] = Math.fround(out[id] - pr);
    }
  }
  if (o.doSample) { for (let i = 0; i < out.length; i++) out[i] = out[i] / o.temperature; }
  // min_tokens: the stop ids score as the kernel's padding (the lowest f32), never drawn.
  if (history.length - promptLength < (o.minTokens ?? 0)) {
    for (const id of o.stopIds ?? []) if (id < out.length) out[id] = -3.4028234663852886e38;
  }
  // A responseFormat: the same for every token its grammar does not allow.
  if (o.allowed) {
    for (let i = 0; i < out.length; i++) {
      if (((o.allowed[i >> 5] >>> (i & 31)) & 1) === 0) out[i] = -3.4028234663852886e38;
    }
  }
  return out;
}

/** torch.argmax: the first index of the maximum (of finite scores: see {@link nothingToDraw}). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** The kernel's ids for an entry with nothing to draw (kernels/sample.ts). */
export const NO_TOKEN = 0xffffffff, NOT_FINITE = 0xfffffffe;

/**
 * What the kernel writes instead of a token, if anything: {@link NOT_FINITE} where a logit is NaN
 * or +∞ (greedy or not: there is no distribution — torch.argmax would take the NaN, torch's
 * multinomial would refuse), {@link NO_TOKEN} where every processed score is masked (the lowest
 * f32) or −∞; undefined where a token can be drawn.
 * @param logits (vocab) raw logits
 * @param scores (vocab) the same after {@link processScores}
 */
export function nothingToDraw(logits: Float32Array, scores: Float32Array): number | undefined {
  if (logits.some((x) => Number.isNaN(x) || x === Infinity)) return NOT_FINITE;
  return scores.some((x) => x > -3.4028234663852886e38) ? undefined : NO_TOKEN;
}

/**
 * The probabilities a seeded draw follows: top-k, then top-p, then min-p, then softmax over what is left,
 * transcribed from transformers (`scores < topk(scores, k)[0][-1]` removed; top-p sorts ascending,
 * removes `softmax(sorted).cumsum() <= 1 - top_p` and keeps the last token — and the kernel keeps
 * the tokens tied with it too). f64.
 * @param scores (vocab) processed scores (after {@link processScores})
 * @returns (vocab) probabilities, 0 for removed tokens
 */
export function samplingProbs(scores: Float32Array, o: SamplingRefOptions): Float64Array {
  const n = scores.length;
  const s = Float64Array.from(scores);
  if (o.topK > 0 && o.topK < n) {
    const kth = Float64Array.from(s).sort().reverse()[o.topK - 1];
    for (let i = 0; i < n; i++) if (s[i] < kth) s[i] = -Infinity;
  }
  if (o.topP < 1) {
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => s[a] - s[b] || a - b);
    const probs = softmax(order.map((i) => s[i]));
    let cum = 0;
    const remove: number[] = [];
    for (let r = 0; r < n - 1; r++) { // the last (largest) is always kept
      cum += probs[r];
      if (cum <= 1 - o.topP) remove.push(order[r]);
    }
    // Tokens tied with the smallest kept one stay too, as top-k keeps its ties (the kernel's
    // rule; transformers' unstable sort keeps some of them, in no set order).
    const kept = remove.length < n ? s[order[remove.length]] : Infinity;
    for (const i of remove) if (s[i] !== kept) s[i] = -Infinity;
  }
  if (o.minP) {
    // MinPLogitsWarper: probs < min_p · max(probs) removed (the most likely always stays).
    const probs = softmax(Array.from(s));
    const floor = o.minP * probs.reduce((a, b) => Math.max(a, b)); // no spread: 151936 args
    for (let i = 0; i < n; i++) if (probs[i] < floor) s[i] = -Infinity;
  }
  return Float64Array.from(softmax(Array.from(s)));
}

function softmax(x: number[]): number[] {
  let mx = -Infinity;
  for (const v of x) mx = Math.max(mx, v);
  const e = x.map((v) => (v === -Infinity ? 0 : Math.exp(v - mx)));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

function mix(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** The kernel's counter-based uniform in [0, 1) for a 64-bit seed and a token-ring index. */
export function uniform01(seed: number, index: number): number {
  const lo = seed >>> 0, hi = Math.floor(seed / 2 ** 32) >>> 0;
  const h = mix((lo ^ mix((hi ^ mix((index ^ 0x9e3779b9) >>> 0)) >>> 0)) >>> 0);
  return (h >>> 8) / 16777216;
}

/**
 * Replays the kernel's draw: tokens with probability > 0 in the kernel's order (thread l of `wg`
 * owns tokens 4j..4j+3 for j = l, l + wg, ...; threads in turn), the first whose running sum
 * passes u · total.
 * @param probs (vocab) from {@link samplingProbs}
 */
export function drawInKernelOrder(probs: Float64Array, u: number, wg: number): number {
  let total = 0;
  for (const x of probs) total += x;
  const goal = u * total;
  let acc = 0, last = -1;
  for (let l = 0; l < wg; l++) {
    for (let j = l; 4 * j < probs.length; j += wg) {
      for (let i = 4 * j; i < Math.min(4 * j + 4, probs.length); i++) {
        if (probs[i] > 0) {
          last = i;
          acc += probs[i];
          if (acc > goal) return i;
        }
      }
    }
  }
  return last;
}
