import assert from "node:assert/strict";
import { runScript } from "../_script.ts";
import { InvalidInputError } from "../errors.ts";
import { decodeImage } from "../image.ts";
import { encodePng } from "../_png.ts";
import { ImageDecoder } from "./_decoder.ts";

const PNG = await Deno.readFile(
  new URL("../../tests/fixtures/tiny-qwen2vl/reference/case0_0.png", import.meta.url),
);

Deno.test("ImageDecoder decodes on its workers as decodeImage() does, several at once each to its own", async () => {
  const decoder = new ImageDecoder({ workers: 2 });
  try {
    const other = await encodePng(4, 2, new Uint8Array(24).map((_, i) => i * 9));
    const [a, b, c] = await Promise.all([
      decoder.decode(PNG),
      decoder.decode(other),
      decoder.decode(PNG),
    ]);
    assert.deepEqual(a, await decodeImage(PNG));
    assert.deepEqual(b, await decodeImage(other));
    assert.deepEqual(c, a);
    // Its errors are qvq's classes, with decodeImage's words.
    await assert.rejects(
      decoder.decode(PNG.subarray(0, 40)),
      (e) => e instanceof InvalidInputError && /PNG/.test(e.message),
    );
    assert.deepEqual(await decoder.decode(PNG), a); // still working after a failure
  } finally {
    decoder.close();
  }
});

Deno.test("ImageDecoder.close() fails the decodes in flight; the next decode starts a new worker", async () => {
  const decoder = new ImageDecoder();
  const inFlight = decoder.decode(PNG);
  decoder.close();
  await assert.rejects(inFlight, /the image decoder was closed/);
  assert.equal((await decoder.decode(PNG)).width, 56);
  decoder.close();
});

Deno.test("ImageDecoder ends a worker whose wasm memory grew past retireBytes once idle; the next image starts another", async () => {
  const kept = new ImageDecoder({ workers: 1 });
  const retiring = new ImageDecoder({ workers: 1, retireBytes: 1 }); // any memory is too much
  try {
    for (let i = 0; i < 3; i++) {
      assert.equal((await kept.decode(PNG)).width, 56);
      assert.equal((await retiring.decode(PNG)).width, 56);
    }
    assert.equal(kept.started, 1);
    assert.equal(retiring.started, 3);
  } finally {
    kept.close();
    retiring.close();
  }
});

Deno.test("an idle ImageDecoder does not keep the process alive", async () => {
  const script = `import { ImageDecoder } from ${
    JSON.stringify(new URL("./_decoder.ts", import.meta.url).href)
  };
const d = new ImageDecoder({ workers: 2 });
const bytes = await Deno.readFile(${
    JSON.stringify(
      new URL("../../tests/fixtures/tiny-qwen2vl/reference/case0_0.png", import.meta.url).pathname,
    )
  });
const [a, b] = await Promise.all([d.decode(bytes), d.decode(bytes)]);
console.log(a.width + b.width);`;
  // (A worker keeping it alive would hang it: the time limit fails the test.)
  assert.equal(await runScript(script, 30_000), "112\n");
});

Deno.test("ImageDecoder: a decode past its time limit fails, and its worker is replaced", async () => {
  const hasty = new ImageDecoder({ timeoutMs: 1 }); // a worker's start alone takes longer
  try {
    await assert.rejects(hasty.decode(PNG), /decoding an image took more than 1 ms/);
  } finally {
    hasty.close();
  }
  const decoder = new ImageDecoder();
  try {
    const first = decoder.decode(PNG);
    decoder.close(); // fails the first; its worker's end must not fail what comes after
    await assert.rejects(first, /closed/);
    assert.equal((await decoder.decode(PNG)).width, 56);
    assert.equal((await decoder.decode(PNG)).width, 56);
  } finally {
    decoder.close();
  }
});
