/**
 * input_ids parity with transformers' Qwen2VLProcessor: for every reference case (one user turn,
 * the template's default system prompt, images before the text) the chat template, image
 * processor and tokenizer must give the reference ids exactly.
 */
import assert from "node:assert/strict";
import { openModelSource } from "../src/model_files.ts";
import { ChatProcessor } from "../src/generate/processor.ts";
import type { ContentPart } from "../src/generate/types.ts";
import { readReferenceCase, TINY_DIR } from "../src/model/_fixture.ts";

const cases: { images: string[]; prompt: string }[] = JSON.parse(
  await Deno.readTextFile(`${TINY_DIR}reference/cases.json`),
).cases;

for (const [i, c] of cases.entries()) {
  Deno.test(`ChatProcessor.prepare() gives transformers' input_ids for case ${i} (${c.images.length} image(s))`, async () => {
    const proc = await ChatProcessor.load(openModelSource(TINY_DIR));
    try {
      const ref = await readReferenceCase(i);
      const content: ContentPart[] = [];
      for (const f of c.images) {
        content.push({ type: "image", image: await Deno.readFile(`${TINY_DIR}reference/${f}`) });
      }
      content.push({ type: "text", text: c.prompt });
      const p = await proc.prepare([{ role: "user", content }]);
      assert.deepEqual(Array.from(p.inputIds), Array.from(ref.inputIds));
      assert.deepEqual(p.gridThw, ref.gridThw);
      assert.equal(p.imageTokens, ref.gridThw.reduce((a, [t, h, w]) => a + t * h * w / 4, 0));
      // PNG decoding and the resize are bit-exact with PIL/torchvision (src/image.ts).
      assert.deepEqual(p.pixelValues, ref.pixelValues);
    } finally {
      proc.tokenizer.dispose();
    }
  });
}
