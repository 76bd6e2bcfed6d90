/**
 * Seeded random inputs and closeness checks shared by kernel tests.
 * @module
 */
import assert from "node:assert/strict";

/** A seeded uniform [0, 1) generator (mulberry32): the same seed gives the same inputs. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` normal samples (Box–Muller) times `scale`, as f32. */
export function randn(rng: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng(), 1e-12), v = rng();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** Largest |a - b| over the arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Asserts equal length and |got − want| ≤ tol · max(1, max|want|) everywhere; the message names
 * the worst index so a failure says where to look.
 */
export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  what = "",
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let worst = -1, err = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= err)) {
      err = e;
      worst = i;
    }
  }
  assert.ok(
    err <= tol * scale,
    `${what}: max |err| ${err} at [${worst}] (got ${got[worst]}, want ${
      want[worst]
    }) > ${tol} × ${scale}`,
  );
}

/**
 * Asserts that got and want hold the same f32 bits everywhere (f16 values widened included),
 * naming the first index that differs and how many do (a deepEqual of large arrays spends its
 * time and memory on the diff instead).
 */
export function assertSameBits(got: Float32Array, want: Float32Array, what = ""): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length),
    b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let first = -1, n = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      if (first < 0) first = i;
      n++;
    }
  }
  assert.ok(
    n === 0,
    `${what}: ${n} of ${a.length} values differ in their bits, the first at [${first}] (got ${
      got[first]
    }, want ${want[first]})`,
  );
}
