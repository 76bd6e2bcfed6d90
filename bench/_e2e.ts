/**
 * The product end to end: `Pipeline.load` of a model directory, then `generate()` of one user
 * message (an image, then a question), timed from the call — JPEG/PNG decoding, preprocessing,
 * the chat template and tokens, vision tower, prefill and the streamed answer — as a user of the
 * module, the CLI or the server meets it. Prints one JSON line a run: the first text's arrival
 * (`first_text_ms`), the whole call, and the generation's own usage and timings. The first run
 * compiles shaders. The prompt cache is off, so every run encodes the image and prefills.
 *
 *   deno run -A bench/_e2e.ts --model DIR --image FILE [--quant q4|q8] [--max-tokens 256]
 *     [--runs 3] [--prompt TEXT]
 *
 * Random-weight checkpoints (bench/main.ts --checkpoint DIR --write-checkpoint) have no tokenizer:
 * copy tests/fixtures/tiny-qwen2vl's tokenizer.json, tokenizer_config.json,
 * preprocessor_config.json, chat_template.json and generation_config.json into DIR.
 * @module
 */
import { Pipeline } from "../src/pipeline.ts";
import type { GenerationResult } from "../src/generate/types.ts";

const args = Deno.args;
const opt = (name: string, def?: string): string => {
  const i = args.indexOf(name);
  const v = i >= 0 ? args[i + 1] : def;
  if (v === undefined) throw new Error(`bench/_e2e.ts: ${name} is required`);
  return v;
};
const model = opt("--model");
const image = await Deno.readFile(opt("--image"));
const quant = opt("--quant", "f16") as "f16" | "q8" | "q4";
const maxNewTokens = Number(opt("--max-tokens", "256"));
const runs = Number(opt("--runs", "3"));
const text = opt("--prompt", "Describe the image.");

const t = performance.now();
const p = await Pipeline.load(model, {
  promptCache: false,
  ...(quant === "f16" ? {} : { quant }),
});
const loadS = (performance.now() - t) / 1000;
try {
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    let first = NaN;
    let result: GenerationResult | undefined;
    const messages = [{
      role: "user" as const,
      content: [{ type: "image" as const, image }, { type: "text" as const, text }],
    }];
    for await (const ev of p.generate(messages, { maxNewTokens, temperature: 0 })) {
      if (ev.type === "delta") {
        if (Number.isNaN(first)) first = performance.now() - t0;
      } else result = ev.result;
    }
    const round = (x: number) => Math.round(x * 10) / 10;
    console.log(JSON.stringify({
      model,
      quant,
      run: r,
      load_s: Math.round(loadS * 100) / 100,
      first_text_ms: round(first),
      total_ms: round(performance.now() - t0),
      ...result!.usage,
      ...Object.fromEntries(Object.entries(result!.timings).map(([k, v]) => [k, round(v)])),
    }));
  }
} finally {
  p.dispose();
}
