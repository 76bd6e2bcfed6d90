import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { getRopeIndex, type GridThw, visionCuSeqlens, visionPositionIds } from "./rope_index.ts";
import { imageTokenCount } from "../image.ts";
import { CASES, readReferenceCase } from "./_fixture.ts";

const IMAGE = 151655;
const VIDEO = 151656;

Deno.test("getRopeIndex() gives transformers' position_ids and rope_deltas for every reference case", async () => {
  for (let c = 0; c < CASES; c++) {
    const ref = await readReferenceCase(c);
    const got = getRopeIndex(ref.inputIds, ref.gridThw, IMAGE, 2);
    assert.deepEqual(Array.from(got.positions), Array.from(ref.positionIds), `case ${c} positions`);
    assert.equal(got.ropeDelta, ref.ropeDelta, `case ${c} rope delta`);
  }
});

Deno.test("getRopeIndex() places two images and a video-like multi-frame grid", () => {
  // text(2) img[1,4,4] → 4 tokens, text(1), img[2,2,4] → 2·1·2 = 4 tokens, text(1)
  const ids = [1, 2, IMAGE, IMAGE, IMAGE, IMAGE, 3, IMAGE, IMAGE, IMAGE, IMAGE, 4];
  const { positions, ropeDelta } = getRopeIndex(ids, [[1, 4, 4], [2, 2, 4]], IMAGE, 2);
  const n = ids.length;
  const t = Array.from(positions.subarray(0, n));
  const h = Array.from(positions.subarray(n, 2 * n));
  const w = Array.from(positions.subarray(2 * n));
  // image 1 starts at 2, spans max(4,4)/2 = 2 positions; "3" sits at 4; image 2 starts at 5.
  assert.deepEqual(t, [0, 1, 2, 2, 2, 2, 4, 5, 5, 6, 6, 7]);
  assert.deepEqual(h, [0, 1, 2, 2, 3, 3, 4, 5, 5, 5, 5, 7]);
  assert.deepEqual(w, [0, 1, 2, 3, 2, 3, 4, 5, 6, 5, 6, 7]);
  assert.equal(ropeDelta, 8 - n);
});

Deno.test("getRopeIndex() starts the text after a long video one past its last temporal position, as Qwen2-VL and vLLM", () => {
  // text(1), video [5, 4, 4] (t = 5 > max(h, w) / 2 = 2: 5 · 2 · 2 = 20 tokens), text(2)
  const ids = [1, ...Array(20).fill(VIDEO), 2, 3];
  const { positions, ropeDelta } = getRopeIndex(ids, [[5, 4, 4]], [IMAGE, VIDEO], 2);
  const n = ids.length;
  const t = Array.from(positions.subarray(0, n));
  // The video starts at 1: temporal 1..5, h and w 1..2; the text after it at 1 + 5 = 6
  // (transformers 5.17: 1 + max(4, 4) / 2 = 3, inside the video's temporal positions 1..5).
  assert.deepEqual(t.slice(0, 5), [0, 1, 1, 1, 1]);
  assert.deepEqual(t.slice(17, 21), [5, 5, 5, 5]);
  assert.deepEqual(Array.from(positions.subarray(n + 1, n + 5)), [1, 1, 2, 2]); // h
  assert.deepEqual(Array.from(positions.subarray(2 * n + 1, 2 * n + 5)), [1, 2, 1, 2]); // w
  assert.deepEqual(t.slice(21), [6, 7]);
  assert.equal(ropeDelta, 8 - n);
  // A video no longer in time than in space places its text as transformers 5.17 does.
  const short = getRopeIndex([1, ...Array(8).fill(VIDEO), 2], [[2, 4, 4]], [IMAGE, VIDEO], 2);
  assert.equal(short.positions[9], 1 + 2);
});

Deno.test("getRopeIndex() rejects image-token runs that do not match the grids", () => {
  assert.throws(() => getRopeIndex([1, IMAGE, IMAGE, 2], [[1, 4, 4]], IMAGE, 2), InvalidInputError);
  assert.throws(() => getRopeIndex([1, IMAGE, 2], [], IMAGE, 2), InvalidInputError);
  assert.throws(() => getRopeIndex([1, 2], [[1, 2, 2]], IMAGE, 2), InvalidInputError);
});

Deno.test("visionPositionIds() walks 2×2 merge blocks row by row, repeated per frame", () => {
  const grids: GridThw[] = [[1, 2, 4], [2, 2, 2]];
  const got = Array.from(visionPositionIds(grids, 2));
  const pairs = [];
  for (let i = 0; i < got.length; i += 2) pairs.push([got[i], got[i + 1]]);
  assert.deepEqual(pairs, [
    // image 0 (h 2, w 4): block (0,0) then block (0,1)
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
    [0, 2],
    [0, 3],
    [1, 2],
    [1, 3],
    // image 1, two frames of one block
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ]);
  assert.equal(imageTokenCount([1, 24, 32], 2), 192);
});

Deno.test("visionCuSeqlens() gives one segment per frame", () => {
  assert.deepEqual(Array.from(visionCuSeqlens([[1, 4, 4], [2, 2, 6]])), [0, 16, 28, 40]);
  assert.deepEqual(Array.from(visionCuSeqlens([])), [0]);
});
