/**
 * Reference for kernels/logprobs.wgsl: log_softmax of raw logits (f64) for a chosen id, and the
 * `top` most likely ids (larger logit first, the lower id on ties), as plain loops.
 * @module
 */

import assert from "node:assert/strict";

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

/**
 * Throws an AssertionError unless `got` (a kernel's record, or a generation's entry: `topLogprobs`
 * for `top`) is `want`: the same ids in the same order, each logprob within `tol` of it relative
 * to max(1, |logprob|) (f32 sums in another order).
 */
export function assertLogprobsClose(
  got: {
    id: number;
    logprob: number | null;
    top?: readonly { id: number; logprob: number }[];
    topLogprobs?: readonly { id: number; logprob: number }[];
  },
  want: LogprobsRef,
  what: string,
  tol = 2e-5,
): void {
  const top = got.top ?? got.topLogprobs ?? [];
  assert.deepEqual(
    [got.id, ...top.map((t) => t.id)],
    [want.id, ...want.top.map((t) => t.id)],
    what,
  );
  const pairs = [
    [got.logprob, want.logprob],
    ...top.map((t, j) => [t.logprob, want.top[j].logprob]),
  ];
  for (const [g, w] of pairs as [number, number][]) {
    assert.ok(Math.abs(g - w) <= tol * Math.max(1, Math.abs(w)), `${what}: ${g} vs ${w}`);
  }
}
