/**
 * qvq as a module: load a model, ask about an image, stream the answer.
 *
 *   deno run -A examples/module.ts [model] [image] [question]
 *
 * `model` is a directory or a Hugging Face hub id (e.g. Qwen/Qwen2-VL-2B-Instruct, downloaded and
 * cached); by default QVQ_MODEL, else the bundled tiny model, whose weights are random: it proves
 * the pipeline, not the answers.
 */
import { fileURLToPath } from "node:url";
import { Pipeline, resolveModel } from "@qvq/webgpu";

// A path beside this file (as a path, not a URL: spaces stay spaces).
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const [
  model = Deno.env.get("QVQ_MODEL") || here("../tests/fixtures/tiny-qwen2vl"),
  image = here("../tests/fixtures/tiny-qwen2vl/reference/case0_0.png"),
  question = "What value should be filled in the blank space?",
] = Deno.args;

const qvq = await Pipeline.load(await resolveModel(model));
try {
  const stream = qvq.generate([{
    role: "user",
    content: [{ type: "image", image: await Deno.readFile(image) }, {
      type: "text",
      text: question,
    }],
  }], { maxNewTokens: 12, temperature: 0 });
  for await (const event of stream) {
    if (event.type === "delta") await Deno.stdout.write(new TextEncoder().encode(event.text));
    else {
      const { finishReason, usage, timings } = event.result;
      console.log(
        `\n[${finishReason}: ${usage.completionTokens} tokens, ${
          timings.tokensPerSecond.toFixed(1)
        } tokens/s]`,
      );
    }
  }
} finally {
  qvq.dispose();
}
