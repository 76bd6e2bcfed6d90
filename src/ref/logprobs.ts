/**
 * Reference for kernels/logprobs.wgsl: log_softmax of raw logits (f64) for a chosen id, and the
 * `top` most likely ids (larger logit first, the lower id on ties), as plain loops.
 * @module
 */

/** The chosen token's logprob and the `top` alternatives. */
export interface LogprobsRef {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** log Σ exp(x) in f64, from the max. */
export function logSumExp(x: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]);
  let z = 0;
  for (let i = 0; i < x.length; i++) z += Math.exp(x[i] - m);
  return m + Math.log(z);
}

/** The record the kernel writes for `id` over `logits`, with `top` alternatives. */
export function logprobsRef(logits: ArrayLike<number>, id: number, top: number): LogprobsRef {
  const lse = logSumExp(logits);
  const order = Array.from({ length: logits.length }, (_, i) => i)
    .sort((a, b) => logits[b] - logits[a] || a - b)
    .slice(0, top);
  return {
    id,
    logprob: logits[id] - lse,
    top: order.map((i) => ({ id: i, logprob: logits[i] - lse })),
  };
}
