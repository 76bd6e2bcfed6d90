import assert from "node:assert/strict";
import { encodePng } from "./_png.ts";
import { decodeImage } from "./image.ts";

Deno.test("encodePng() round-trips through qvq's decoder, pixel for pixel", async () => {
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (const [w, h] of [[1, 1], [3, 2], [61, 17]]) {
    const rgb = Uint8Array.from({ length: w * h * 3 }, next);
    const image = await decodeImage(await encodePng(w, h, rgb));
    assert.equal(image.width, w);
    assert.equal(image.height, h);
    assert.deepEqual(image.data, rgb);
  }
});
