import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { expandImagePads, imageTokenCounts } from "./prompt.ts";

const PAD = 151655;

Deno.test("imageTokenCounts() is t·h·w / merge² per image", () => {
  // the fixture cases' grids: 4, 12 and 192 vision tokens
  assert.deepEqual(imageTokenCounts([[1, 4, 4], [1, 6, 8], [1, 24, 32]], 2), [4, 12, 192]);
  assert.deepEqual(imageTokenCounts([], 2), []);
  assert.throws(() => imageTokenCounts([[1, 3, 4]], 2), InvalidInputError);
});

Deno.test("expandImagePads() repeats the k-th pad counts[k] times and keeps the rest", () => {
  assert.deepEqual([...expandImagePads([1, PAD, 2, PAD, 3], PAD, [2, 3])], [
    1,
    PAD,
    PAD,
    2,
    PAD,
    PAD,
    PAD,
    3,
  ]);
  assert.deepEqual([...expandImagePads([1, 2], PAD, [])], [1, 2]);
});

Deno.test("expandImagePads() refuses a pad count that differs from the image count", () => {
  assert.throws(
    () => expandImagePads([PAD, PAD], PAD, [4]),
    (e: Error) => e instanceof InvalidInputError && /2 image placeholder.*1 image/.test(e.message),
  );
  assert.throws(() => expandImagePads([1], PAD, [4]), /0 image placeholder/);
});
