/**
 * Structured outputs: a picture's contents as an instance of a JSON schema your program can use —
 * OpenAI's `response_format: {"type": "json_schema", …}`, here as the module option
 * `responseFormat: { jsonSchema }` (`"json_object"` holds an answer to any object instead).
 *
 *   deno run -A examples/structured_output.ts [model] [image]
 *
 * `model` is a directory or a Hugging Face hub id; by default QVQ_MODEL, else the bundled tiny model (random
 * weights: it fills the form with whatever its draws make — the schema's bounds, at most 8 objects
 * of at most 40 characters and a count up to 99, hold even its answer to a whole instance).
 */
import { fileURLToPath } from "node:url";
import { Pipeline, resolveModel } from "@qvq/webgpu";

// A path beside this file (as a path, not a URL: spaces stay spaces).
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const [
  model = Deno.env.get("QVQ_MODEL") || here("../tests/fixtures/tiny-qwen2vl"),
  imagePath = here("../tests/fixtures/tiny-qwen2vl/reference/case0_0.png"),
] = Deno.args;

/**
 * What the program wants to know, as a schema (objects, their count, a mood, whether it shows
 * text): the answer is an instance, its properties in the schema's order. Bounds (maxItems,
 * maxLength, minimum / maximum) keep it short: a model that rambles inside a string is cut off by
 * the schema, not by max tokens.
 */
const schema = JSON.parse(await Deno.readTextFile(here("structured_output.schema.json")));

const qvq = await Pipeline.load(await resolveModel(model));
try {
  const result = await qvq.chat([{
    role: "user",
    content: [
      { type: "image", image: await Deno.readFile(imagePath) },
      // The schema holds the answer to its form; the prompt says what goes in it.
      {
        type: "text",
        text:
          "List the objects in the image, count them, name its mood, and say whether it shows text. Answer in JSON.",
      },
    ],
  }], { responseFormat: { jsonSchema: schema }, maxNewTokens: 512, temperature: 0 });
  if (result.finishReason !== "stop") {
    // Cut short (max tokens, a stop string, a loop): the start of an instance, not a whole one.
    console.error(`the answer was cut short (${result.finishReason}): ${result.text}`);
    Deno.exit(1);
  }
  const { objects, count, mood, hasText } = JSON.parse(result.text);
  console.log(JSON.stringify({ objects, count, mood, hasText }, null, 2));
} finally {
  qvq.dispose();
}
