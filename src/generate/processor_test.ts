import assert from "node:assert/strict";
import { InvalidInputError, ModelFileError, NoChatTemplateError } from "../errors.ts";
import { openModelSource } from "../model_files.ts";
import { readVideoCases, TINY_DIR, tinyWithoutTemplate } from "../model/_fixture.ts";
import { ChatTemplate } from "./chat_template.ts";
import type { FramePool } from "../image.ts";
import { FrameWorkers } from "../_frame_pool.ts";
import { ChatProcessor } from "./processor.ts";
import type { ChatMessage } from "./types.ts";

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

/** A video case's message: its image (if any), its frames, its question. */
function videoCaseMessages(c: Awaited<ReturnType<typeof readVideoCases>>[number]): ChatMessage[] {
  return [{
    role: "user",
    content: [
      ...(c.image ? [{ type: "image" as const, image: c.image }] : []),
      { type: "video", video: c.frames },
      { type: "text", text: c.prompt },
    ],
  }];
}

Deno.test("ChatProcessor.prepare() gives transformers' input_ids for videos, alone and after an image", async () => {
  for (const c of await readVideoCases()) {
    const p = await proc.prepare(videoCaseMessages(c));
    assert.deepEqual(Array.from(p.inputIds), Array.from(c.inputIds), c.name);
    assert.deepEqual(p.gridThw, [...c.imageGridThw, c.videoGridThw], c.name);
    assert.equal(p.imageTokens, count(p.inputIds, PAD) + count(p.inputIds, VIDEO_PAD), c.name);
  }
});

Deno.test("ChatProcessor.prepare() resizes a video's frames on the framePool it is given, to the serial path's pixel values", async () => {
  const workers = new FrameWorkers({ workers: 2 });
  try {
    const starts: number[] = [];
    const pool: FramePool = {
      size: workers.size,
      patch: (job) => (starts.push(job.run.start), workers.patch(job)),
      image: (job) => workers.image(job),
    };
    for (const c of await readVideoCases()) {
      const serial = await proc.prepare(videoCaseMessages(c), { framePool: null });
      const pooled = await proc.prepare(videoCaseMessages(c), { framePool: pool });
      assert.deepEqual(Array.from(pooled.inputIds), Array.from(c.inputIds), c.name);
      assert.deepEqual(pooled.gridThw, serial.gridThw, c.name);
      assert.deepEqual(
        new Uint32Array(pooled.pixelValues.buffer),
        new Uint32Array(serial.pixelValues.buffer),
        c.name,
      );
    }
    assert.deepEqual(starts, [0, 2, 4, 0]); // video0's 5 frames, video1's 2
  } finally {
    workers.close();
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

/**
 * The tiny model's processor files as transformers 5's `save_pretrained` writes them: the
 * template as chat_template.jinja, the image and video settings nested in processor_config.json
 * (`size` in edges), no chat_template.json, preprocessor_config.json or template in
 * tokenizer_config.json (`video` overrides the nested video settings).
 */
async function savedByTransformers5(video: Record<string, unknown> = {}): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const f of ["config.json", "tokenizer.json"]) {
    await Deno.copyFile(`${TINY_DIR}${f}`, `${dir}/${f}`);
  }
  const { chat_template: _, ...tokenizerConfig } = JSON.parse(
    await Deno.readTextFile(`${TINY_DIR}tokenizer_config.json`),
  );
  await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(tokenizerConfig));
  const { chat_template } = JSON.parse(await Deno.readTextFile(`${TINY_DIR}chat_template.json`));
  await Deno.writeTextFile(`${dir}/chat_template.jinja`, chat_template);
  const pre = JSON.parse(await Deno.readTextFile(`${TINY_DIR}preprocessor_config.json`));
  const settings = {
    image_mean: pre.image_mean,
    image_std: pre.image_std,
    merge_size: pre.merge_size,
    patch_size: pre.patch_size,
    temporal_patch_size: pre.temporal_patch_size,
    size: { shortest_edge: pre.min_pixels, longest_edge: pre.max_pixels },
  };
  await Deno.writeTextFile(
    `${dir}/processor_config.json`,
    JSON.stringify({
      image_processor: { ...settings, image_processor_type: "Qwen2VLImageProcessor" },
      processor_class: "Qwen2VLProcessor",
      video_processor: { ...settings, ...video, video_processor_type: "Qwen2VLVideoProcessor" },
    }),
  );
  return dir;
}

Deno.test("ChatProcessor.load() loads a model without a chat template; prepare() refuses messages, saying what to add or send instead", async () => {
  const bare = await ChatProcessor.load(await tinyWithoutTemplate());
  try {
    assert.equal(bare.template, undefined);
    // The tokenizer and image settings are the model's all the same.
    assert.deepEqual(
      bare.tokenizer.encode("Hello <|im_start|>"),
      proc.tokenizer.encode("Hello <|im_start|>"),
    );
    assert.deepEqual(bare.imageConfig, proc.imageConfig);
    await assert.rejects(
      bare.prepare([{ role: "user", content: "Hi" }]),
      (e: Error) => {
        assert.ok(e instanceof NoChatTemplateError && e instanceof ModelFileError, String(e));
        assert.equal(
          e.message,
          "the model has no chat template (none of chat_template.json, chat_template.jinja or " +
            'tokenizer_config.json\'s "chat_template" exists), so chat messages cannot be made ' +
            "into a prompt: add one of them to the model directory, or send a raw prompt, which " +
            "needs none (Pipeline.complete, POST /v1/completions, qvq generate --raw)",
        );
        return true;
      },
    );
  } finally {
    bare.tokenizer.dispose();
  }
});

Deno.test("ChatProcessor.load() reads a model saved by transformers 5: chat_template.jinja and processor_config.json", async () => {
  const dir = await savedByTransformers5();
  try {
    const saved = await ChatProcessor.load(openModelSource(dir));
    assert.equal(saved.template?.source, proc.template?.source);
    assert.deepEqual(saved.imageConfig, proc.imageConfig);
    assert.deepEqual(saved.videoConfig, proc.videoConfig);
    // transformers' ids for images and videos, as from the hub's file layout
    for (const c of await readVideoCases()) {
      const p = await saved.prepare(videoCaseMessages(c));
      assert.deepEqual(Array.from(p.inputIds), Array.from(c.inputIds), c.name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ChatProcessor.load() takes the video settings nested in processor_config.json, and names what is missing", async () => {
  const dir = await savedByTransformers5({ size: { shortest_edge: 3136, longest_edge: 50176 } });
  try {
    const saved = await ChatProcessor.load(openModelSource(dir));
    assert.deepEqual([saved.videoConfig.minPixels, saved.videoConfig.maxPixels], [3136, 50176]);
    assert.equal(saved.imageConfig.maxPixels, proc.imageConfig.maxPixels);
    // A legacy chat_template.json wins over chat_template.jinja, as in transformers' processor.
    await Deno.writeTextFile(`${dir}/chat_template.json`, JSON.stringify({ chat_template: "J" }));
    assert.equal((await ChatProcessor.load(openModelSource(dir))).template?.source, "J");
    await Deno.remove(`${dir}/processor_config.json`);
    await assert.rejects(
      ChatProcessor.load(openModelSource(dir)),
      (e) =>
        e instanceof ModelFileError &&
        /no image processor settings: neither .*preprocessor_config\.json nor an "image_processor" in .*processor_config\.json/
          .test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ChatProcessor.load(): a model without video settings gives its videos the image settings, the video processor's defaults filling the gaps (transformers 5.17 / 5.24)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.json"]
    ) {
      await Deno.copyFile(`${TINY_DIR}${f}`, `${dir}/${f}`);
    }
    const { min_pixels: _, max_pixels: __, ...pre } = JSON.parse(
      await Deno.readTextFile(`${TINY_DIR}preprocessor_config.json`),
    );
    // Three 56 × 84 frames (a pair and the last repeated): transformers' video_grid_thw.
    const frame = { width: 84, height: 56, data: new Uint8Array(84 * 56 * 3).fill(128) };
    const grid = async (settings: Record<string, unknown>) => {
      await Deno.writeTextFile(
        `${dir}/preprocessor_config.json`,
        JSON.stringify({ ...pre, ...settings }),
      );
      const p = await ChatProcessor.load(openModelSource(dir));
      const prepared = await p.prepare([{
        role: "user",
        content: [{ type: "video", video: [frame, frame, frame] }],
      }]);
      p.tokenizer.dispose();
      return [prepared.gridThw, p.imageConfig, p.videoConfig] as const;
    };
    // No bounds: the video processor's 100352 – 602112 pixels a frame (the images' 3136 – 1003520
    // gave [2, 4, 6]).
    const [none, image, video] = await grid({});
    assert.deepEqual(none, [[2, 20, 28]]);
    assert.deepEqual([video.minPixels, video.maxPixels], [100352, 602112]);
    assert.deepEqual([image.minPixels, image.maxPixels], [3136, 1003520]);
    // One bound given: the other still the video processor's.
    const [maxOnly, , v2] = await grid({ max_pixels: 200704 });
    assert.deepEqual(maxOnly, [[2, 20, 28]]);
    assert.deepEqual([v2.minPixels, v2.maxPixels], [100352, 200704]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
