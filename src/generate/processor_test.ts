import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { openModelSource } from "../model_files.ts";
import { readVideoCases, TINY_DIR } from "../model/_fixture.ts";
import { ChatTemplate } from "./chat_template.ts";
import { ChatProcessor } from "./processor.ts";

const proc = await ChatProcessor.load(openModelSource(TINY_DIR));
const png = (c: number) => Deno.readFile(`${TINY_DIR}reference/case${c}_0.png`);
const PAD = 151655;
const VIDEO_PAD = 151656;
const count = (ids: Int32Array, id: number) => ids.filter((x) => x === id).length;

Deno.test("ChatProcessor.prepare() expands several images of one message, in order", async () => {
  const p = await proc.prepare([{
    role: "user",
    content: [
      { type: "image", image: await png(1) },
      { type: "text", text: "and" },
      { type: "image", image: await png(0) },
    ],
  }]);
  assert.deepEqual(p.gridThw, [[1, 6, 8], [1, 4, 4]]);
  assert.equal(p.imageTokens, 16);
  assert.equal(count(p.inputIds, PAD), 16);
  // the 12-pad run of image 1 comes before the text, the 4-pad run of image 0 after it
  const text = proc.tokenizer.decode(p.inputIds);
  assert.match(
    text,
    /^<\|im_start\|>system\n.*<\|vision_start\|>(<\|image_pad\|>){12}<\|vision_end\|>and<\|vision_start\|>(<\|image_pad\|>){4}<\|vision_end\|><\|im_end\|>\n<\|im_start\|>assistant\n$/s,
  );
  assert.equal(p.pixelValues.length, (48 + 16) * 1176);
});

Deno.test("ChatProcessor.prepare() gives transformers' input_ids for videos, alone and after an image", async () => {
  for (const c of await readVideoCases()) {
    const p = await proc.prepare([{
      role: "user",
      content: [
        ...(c.image ? [{ type: "image" as const, image: c.image }] : []),
        { type: "video", video: c.frames },
        { type: "text", text: c.prompt },
      ],
    }]);
    assert.deepEqual(Array.from(p.inputIds), Array.from(c.inputIds), c.name);
    assert.deepEqual(p.gridThw, [...c.imageGridThw, c.videoGridThw], c.name);
    assert.equal(p.imageTokens, count(p.inputIds, PAD) + count(p.inputIds, VIDEO_PAD), c.name);
  }
});

Deno.test("ChatProcessor.prepare() refuses a template that writes an image's placeholder for a video", async () => {
  const [c] = await readVideoCases();
  const imageOnly = new ChatProcessor(
    ChatTemplate.fromConfigs({
      chat_template: "{% for m in messages %}{% for p in m.content %}" +
        "{% if p.type == 'text' %}{{ p.text }}{% else %}<|image_pad|>{% endif %}" +
        "{% endfor %}{% endfor %}",
    }, {}),
    proc.tokenizer,
    proc.imageConfig,
    PAD,
  );
  await assert.rejects(
    imageOnly.prepare([{ role: "user", content: [{ type: "video", video: c.frames }] }]),
    (e) =>
      e instanceof InvalidInputError &&
      /placeholder 0 of the prompt is token 151655 but its input needs token 151656/.test(
        e.message,
      ),
  );
});

Deno.test("ChatProcessor.prepare() of a text-only conversation has no pixel values", async () => {
  const p = await proc.prepare([
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi" },
  ]);
  assert.equal(
    proc.tokenizer.decode(p.inputIds),
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
  );
  assert.deepEqual([p.gridThw, p.imageTokens, p.pixelValues.length], [[], 0, 0]);
});

Deno.test("ChatProcessor.prepare() refuses an image placeholder typed in the text, and bad image bytes", async () => {
  await assert.rejects(
    () => proc.prepare([{ role: "user", content: "look: <|image_pad|>" }]),
    (e: Error) => e instanceof InvalidInputError && /1 image placeholder.*0 image/.test(e.message),
  );
  await assert.rejects(
    () =>
      proc.prepare([{
        role: "user",
        content: [{ type: "image", image: new Uint8Array([1, 2, 3, 4]) }],
      }]),
    InvalidInputError,
  );
});

addEventListener("unload", () => proc.tokenizer.dispose());
