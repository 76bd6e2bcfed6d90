/**
 * qvq as a module, asking about a video: its frames, in order, as one video part.
 *
 *   deno run -A examples/video.ts [model] [frames directory] [question]
 *
 * qvq decodes no video files: extract the frames first, e.g. at the 2 a second Qwen samples,
 *   mkdir frames && ffmpeg -i clip.mp4 -vf fps=2 frames/%04d.jpg
 * By default QVQ_MODEL, else the bundled tiny model (random weights: it proves the pipeline, not the answers) and
 * the five frames of tests/fixtures/video.
 */
import { fileURLToPath } from "node:url";
import { Pipeline, resolveModel } from "@qvq/webgpu";

// A path beside this file (as a path, not a URL: spaces stay spaces).
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const [
  model = Deno.env.get("QVQ_MODEL") || here("../tests/fixtures/tiny-qwen2vl"),
  dir = here("../tests/fixtures/video"),
  question = "What happens in this video?",
] = Deno.args;

// A video file, or a path that is not there, where the frames' directory goes: said, not thrown.
if (!(await Deno.stat(dir).then((s) => s.isDirectory, () => false))) {
  console.error(
    `${dir} is not a directory of frames: extract a video's first, e.g. ` +
      `mkdir frames && ffmpeg -i clip.mp4 -vf fps=2 frames/%04d.jpg, then pass frames`,
  );
  Deno.exit(1);
}

// The directory's images, by name (numbers by value: f2 before f10); for the fixture, video0_f*.
const names: string[] = [];
for await (const e of Deno.readDir(dir)) {
  if (/\.(png|jpe?g|webp)$/i.test(e.name) && (Deno.args[1] || e.name.startsWith("video0_f"))) {
    names.push(e.name);
  }
}
if (!names.length) {
  console.error(`${dir} holds no PNG, JPEG or WebP frames`);
  Deno.exit(1);
}
names.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
const frames = await Promise.all(names.map((n) => Deno.readFile(`${dir}/${n}`)));

const qvq = await Pipeline.load(await resolveModel(model));
try {
  const stream = qvq.generate([{
    role: "user",
    // maxPixels bounds each frame's area: a video costs frames / 2 · area / 784 tokens.
    content: [{ type: "video", video: frames, maxPixels: 448 * 448 }, {
      type: "text",
      text: question,
    }],
  }], { maxNewTokens: 12, temperature: 0 });
  for await (const event of stream) {
    if (event.type === "delta") await Deno.stdout.write(new TextEncoder().encode(event.text));
    else {
      const { finishReason, usage } = event.result;
      console.log(
        `\n[${finishReason}: ${frames.length} frames, ${usage.imageTokens} video tokens, ` +
          `${usage.completionTokens} tokens]`,
      );
    }
  }
} finally {
  qvq.dispose();
}
