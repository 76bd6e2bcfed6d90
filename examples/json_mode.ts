/**
 * qvq's JSON mode: a picture's contents as a JSON object your program can use — OpenAI's
 * `response_format: {"type": "json_object"}`, here as the module option `responseFormat`.
 *
 *   deno run -A examples/json_mode.ts [model] [image]
 *
 * `model` is a directory or a Hugging Face hub id; by default the bundled tiny model (random
 * weights: its "object" is whatever its syntax-bound draws make it, typically `{}`).
 */
import { Pipeline, resolveModel } from "@qvq/webgpu";

const here = (path: string) => new URL(path, import.meta.url).pathname;
const [
  model = here("../tests/fixtures/tiny-qwen2vl"),
  imagePath = here("../tests/fixtures/tiny-qwen2vl/reference/case0_0.png"),
] = Deno.args;

const qvq = await Pipeline.load(await resolveModel(model));
try {
  const result = await qvq.chat([{
    role: "user",
    content: [
      { type: "image", image: await Deno.readFile(imagePath) },
      {
        type: "text",
        // JSON mode holds the answer to JSON's syntax; the prompt says which fields to write.
        text: 'Describe the image as a JSON object: {"objects": [names], "colors": [names], ' +
          '"text": "any text in it, or empty"}.',
      },
    ],
  }], { responseFormat: "json_object", maxNewTokens: 512, temperature: 0 });
  if (result.finishReason !== "stop") {
    // Cut short (max tokens, a stop string, a loop): the start of an object, not a whole one.
    console.error(`the answer was cut short (${result.finishReason}): ${result.text}`);
    Deno.exit(1);
  }
  const described = JSON.parse(result.text);
  console.log(JSON.stringify(described, null, 2));
} finally {
  qvq.dispose();
}
