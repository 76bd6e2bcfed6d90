import assert from "node:assert/strict";
import { LoopDetector, type LoopFound } from "./loop_detector.ts";
import { seeded } from "../ref/_random.ts";

/** The rule written plainly: the smallest p whose periodic tail is long enough, over the whole history. */
function bruteForce(
  ids: number[],
  maxPeriod: number,
  minRepeats: number,
  minTokens: number,
): LoopFound | null {
  const n = ids.length;
  for (let p = 1; p <= maxPeriod && p < n; p++) {
    let span = p;
    while (span < n && ids[n - 1 - span] === ids[n - 1 - span + p]) span++;
    if (span > p && span >= minRepeats * p && span >= minTokens) return { period: p, span };
  }
  return null;
}

Deno.test("LoopDetector.push() flags one token repeated minTokens times, not before", () => {
  const d = new LoopDetector();
  const hits = Array.from({ length: 70 }, () => d.push(21583));
  assert.equal(hits.findIndex((h) => h !== null), 63, "the 64th copy completes the loop");
  assert.deepEqual(hits[63], { period: 1, span: 64 });
});

Deno.test("LoopDetector.push() needs minRepeats copies of a long block", () => {
  const block = Array.from({ length: 100 }, (_, i) => 1000 + i);
  const d = new LoopDetector();
  const ids = [5, 6, 7, ...block, ...block, ...block, ...block];
  const first = ids.map((id) => d.push(id)).findIndex((h) => h !== null);
  assert.equal(first, 3 + 300 - 1, "found when the third copy is complete");
});

Deno.test("LoopDetector.push() ignores short natural repetition", () => {
  const d = new LoopDetector();
  // "ha ha ha" ×10, a rule of 40 dashes, "0, " ×20: all below 64 repetitive tokens.
  const text = [
    ...Array(20).fill([1, 2]).flat(),
    9,
    ...Array(40).fill(3),
    9,
    ...Array(20).fill([4, 5]).flat(),
    9,
  ];
  assert.ok(text.every((id) => d.push(id) === null));
});

Deno.test("LoopDetector.push() agrees with the brute-force rule on random repetitive streams", () => {
  const rng = seeded(7);
  for (let trial = 0; trial < 30; trial++) {
    const [maxPeriod, minRepeats, minTokens] = [
      1 + Math.floor(rng() * 20),
      2 + Math.floor(rng() * 3),
      2 + Math.floor(rng() * 30),
    ];
    const d = new LoopDetector({ maxPeriod, minRepeats, minTokens });
    const ids: number[] = [];
    for (let i = 0; i < 300; i++) {
      // small vocabulary plus copying an earlier stretch: both give many periodic tails
      const id = rng() < 0.6 && ids.length > 8
        ? ids[ids.length - 1 - Math.floor(rng() * 8)]
        : Math.floor(rng() * 4);
      ids.push(id);
      assert.deepEqual(
        d.push(id),
        bruteForce(ids, maxPeriod, minRepeats, minTokens),
        `trial ${trial} token ${i}`,
      );
    }
  }
});

Deno.test("LoopDetector rejects nonsense options", () => {
  assert.throws(() => new LoopDetector({ maxPeriod: 0 }), RangeError);
  assert.throws(() => new LoopDetector({ minRepeats: 1 }), RangeError);
});
