import assert from "node:assert/strict";
import { encodePng, pngChunk } from "./_png.ts";
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

Deno.test("pngChunk() frames data with its length, type and zlib's CRC-32 of type and data", () => {
  // zlib.crc32(b"eXIfII*\0") == 0x250a62ff (Python)
  const chunk = pngChunk("eXIf", new TextEncoder().encode("II*\0"));
  assert.deepEqual(
    chunk,
    Uint8Array.of(0, 0, 0, 4, 0x65, 0x58, 0x49, 0x66, 0x49, 0x49, 0x2a, 0, 0x25, 0x0a, 0x62, 0xff),
  );
});
