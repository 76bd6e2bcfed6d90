import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { sharedGpu } from "../gpu/device.ts";
import { Qwen2VLModel, type Session } from "../model/qwen2vl.ts";
import { readReferenceCase, TINY_DIR } from "../model/_fixture.ts";
import { Tokenizer } from "../tokenizer.ts";
import { runGeneration } from "./generate.ts";
import { parseGenerationConfig, resolveOptions } from "./options.ts";
import type { PreparedPrompt } from "./prompt.ts";
import type { GenerateOptions, GenerationEvent, GenerationResult } from "./types.ts";

const CONFIG = parseGenerationConfig(
  JSON.parse(await Deno.readTextFile(`${TINY_DIR}generation_config.json`)),
);
// The full path (PNG → pipeline → 12 greedy ids) is tests/generate_test.ts; these check what
// runGeneration adds around the decode loop. A 30-token context leaves case 3's 26-token prompt
// room for 4 new tokens, which keeps the test fast on the software adapter.
const CONTEXT = 30;
const model = sharedGpu().then((gpu) =>
  Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", maxContext: CONTEXT })
);
const tokenizer = Tokenizer.load(TINY_DIR);

async function promptOf(c: number): Promise<PreparedPrompt> {
  const ref = await readReferenceCase(c);
  return {
    inputIds: ref.inputIds,
    pixelValues: ref.pixelValues,
    gridThw: ref.gridThw,
    imageTokens: ref.gridThw.reduce((a, [t, h, w]) => a + t * h * w / 4, 0),
  };
}

async function generate(
  c: number,
  opts: GenerateOptions,
  onSession?: (s: Session) => void,
  onEvent?: (e: GenerationEvent) => void,
): Promise<GenerationResult> {
  let result: GenerationResult | undefined;
  const events = runGeneration(
    await model,
    await tokenizer,
    await promptOf(c),
    resolveOptions(opts, CONFIG),
    {
      onSession,
    },
  );
  for await (const e of events) {
    onEvent?.(e);
    if (e.type === "done") result = e.result;
  }
  assert.ok(result);
  return result;
}

Deno.test("runGeneration() lowers the default budget to the context left after the prompt", async () => {
  const ref = await readReferenceCase(3);
  let session: Session | undefined;
  // No maxNewTokens: generation_config's (or the 2048 default) is a cap, not a request.
  const r = await generate(3, {}, (s) => (session = s));
  assert.equal(r.finishReason, "length");
  assert.equal(r.usage.completionTokens, CONTEXT - ref.inputIds.length);
  assert.equal(r.text, " retired".repeat(CONTEXT - ref.inputIds.length));
  assert.equal(session?.maxTokens, CONTEXT);
  assert.ok(session?.disposed, "the KV cache is freed at the end");
});

Deno.test("runGeneration() refuses an explicit maxNewTokens over the context left, naming what fits", async () => {
  // Case 3's 26-token prompt leaves 4 of the 30; asking for 5 is the caller's error (OpenAI: 400).
  let session: Session | undefined;
  await assert.rejects(
    () => generate(3, { maxNewTokens: 5 }, (s) => (session = s)),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /maxNewTokens 5.*26 tokens.*holds 30.*at most 4/.test(e.message),
  );
  assert.equal(session, undefined, "no session is created");
  const r = await generate(3, { maxNewTokens: 4 });
  assert.equal(r.usage.completionTokens, 4);
});

Deno.test("runGeneration() refuses a prompt that fills the whole context", async () => {
  await assert.rejects(
    () => generate(0, {}),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /35 tokens \(4 of them image tokens\).*holds 30/.test(e.message),
  );
});

Deno.test("runGeneration() frees the session when the consumer walks away mid-stream", async () => {
  let session: Session | undefined;
  const events = runGeneration(
    await model,
    await tokenizer,
    await promptOf(3),
    resolveOptions({ maxNewTokens: 4 }, CONFIG),
    { onSession: (s) => (session = s) },
  );
  for await (const e of events) if (e.type === "delta") break;
  assert.ok(session?.disposed);
});

addEventListener("unload", () => model.then((m) => m.dispose()));
