/**
 * A request for `n` answers (OpenAI's `n`) through the server's handler (createApp, in process),
 * timed whole: with `--parallel P` > 1 the choices after the first run beside it (copying its
 * prompt rows, decoding with it as one batch where the weights batch); with 1, one after another
 * (the prompt cache serving the prompt after the first). The prompt cache is cleared before each
 * run, so every run encodes the image and prefills once. Prints one JSON line a run.
 *
 *   deno run -A bench/_choices.ts --model DIR --image FILE [--n 4] [--parallel 4] [--quant q4]
 *     [--max-tokens 256] [--runs 2] [--no-batch]
 *
 * Random-weight checkpoints need the tiny model's tokenizer files beside them (bench/_e2e.ts).
 * @module
 */
import { Pipeline } from "../src/pipeline.ts";
import { createApp } from "../src/server/app.ts";
import { optionReader } from "./_args.ts";

const args = Deno.args;
const opt = optionReader("bench/_choices.ts", args);
const image = await Deno.readFile(opt("--image"));
const quant = opt("--quant", "f16") as "f16" | "q8" | "q4";
const n = Number(opt("--n", "4"));
const parallel = Number(opt("--parallel", "4"));
const maxTokens = Number(opt("--max-tokens", "256"));
const runs = Number(opt("--runs", "2"));
const mime = image[0] === 0x89 ? "image/png" : "image/jpeg";
const round = (x: number, d = 1000) => Math.round(x * d) / d;

const t = performance.now();
const p = await Pipeline.load(opt("--model"), {
  parallel,
  batchDecode: !args.includes("--no-batch"),
  ...(quant === "f16" ? {} : { quant }),
});
const loadS = (performance.now() - t) / 1000;
const app = createApp(p);
const ask = async (choices: number, tokens: number) => {
  const r = await app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: p.modelId,
      messages: [{
        role: "user",
        content: [
          { type: "image_url", image_url: { url: `data:${mime};base64,${image.toBase64()}` } },
          { type: "text", text: "Describe the image." },
        ],
      }],
      n: choices,
      max_tokens: tokens,
      temperature: 0.7,
      seed: 1,
      ignore_eos: true,
      stop_on_loop: false,
    }),
  });
  if (r.status !== 200) throw new Error(`${r.status}: ${await r.text()}`);
  return await r.json();
};
// Warm-up: the shaders of one answer, and of n at once.
await ask(1, 4);
await ask(n, 4);
for (let run = 0; run < runs; run++) {
  await p.clearPromptCache();
  const t0 = performance.now();
  const json = await ask(n, maxTokens);
  const wallS = (performance.now() - t0) / 1000;
  const tokens = json.usage.completion_tokens;
  console.log(JSON.stringify({
    n,
    parallel,
    batch: p.batchDecode,
    quant,
    load_s: round(loadS),
    wall_s: round(wallS),
    completion_tokens: tokens,
    tok_s_all: round(tokens / wallS, 10),
    choices: json.choices.length,
  }));
}
p.dispose();
