/**
 * The server's warm-up: short generations right after loading, so that the GPU pipelines a first
 * request needs are compiled (shader translation, the driver's compile) before it comes, as
 * llama.cpp's and vLLM's servers warm up. On an H200 with an empty driver shader cache, a 7B
 * server's first image request took 7.9–8.2 s without it; with it a first 1024 × 768 photo took
 * 0.82 s, the same photo later 0.73 s (2026-11-29, BENCHMARKS.md).
 * @module
 */
import type { Pipeline } from "../pipeline.ts";
import type { ChatMessage, GenerateOptions, GenerationEvent } from "../generate/types.ts";
import { ContextLengthError } from "../errors.ts";
import { encodePng } from "../_png.ts";
import { GEMV_XROWS_MAX } from "../../kernels/linear.ts";

/**
 * The warm-up's image sizes: 644 × 476 (391 image tokens, the benchmark image) and 800 ×
 * 600 (609): the vision tower's attention tiling follows the number of patches, and these two take
 * the two tilings a photo can (kernels/attention.ts prefillDefault).
 */
export const WARMUP_SIZES: readonly (readonly [number, number])[] = [[644, 476], [800, 600]];

/** The row counts whose prefill pipelines the warm-up compiles (kernels/linear.ts xrowsBucket). */
export const XROWS_BUCKETS: readonly number[] = [2, 4, 8, GEMV_XROWS_MAX];

/**
 * Runs the paths a server's first requests take — the prefill pipelines of 2–16 rows compiled
 * ({@link XROWS_BUCKETS}), then generations of 2 new tokens each (greedy): one image and a
 * question (the vision tower, a prefill in one chunk), an image of each size (both attention
 * tilings, a prefill of two chunks), and that conversation's next turn (a short prefill after the
 * prompt cache's prefix), the last two with logprobs, and two short text answers in JSON mode and
 * held to a schema — for a model without a chat template, raw prompts of those kinds, without
 * images (no request can carry one) —, and where generations at once decode as one batch, two
 * raw prompts together; then clears the prompt cache, so the warm-up leaves nothing
 * a client could reuse. A model whose context cannot hold a warm-up prompt stops the warm-up
 * there (what is left compiles at first use).
 */
export async function warmUp(pipeline: Pipeline): Promise<void> {
  try {
    // Prompts (and follow-ups) of 2–16 new tokens: the few-row GEMV's pipelines, one set a bucket
    // (kernels/linear.ts xrowsBucket; 0.15–1.1 s each at first use on the H200).
    const model = pipeline.model;
    model.compilePrefill(XROWS_BUCKETS.filter((n) => n < model.maxContext));
    if (pipeline.processor.template) await warmUpChat(pipeline);
    else await warmUpRaw(pipeline);
    // Generations at once decoding as one batch (its attention with the rope + KV write folded in,
    // and the products of its rows' count): two raw prompts together.
    if (pipeline.batchDecode) {
      await Promise.all(
        ["Say yes.", "Say no."].map((p) => drain(pipeline.complete(p, greedy({})))),
      );
    }
  } catch (e) {
    if (!(e instanceof ContextLengthError)) throw e;
  } finally {
    await pipeline.clearPromptCache();
  }
}

/** A generation's text, its stream read to the end. */
async function drain(events: AsyncIterable<GenerationEvent>): Promise<string> {
  let text = "";
  for await (const ev of events) if (ev.type === "done") text = ev.result.text;
  return text;
}

/** The warm-up's options: 2 greedy tokens, and `more`. */
const greedy = (more: GenerateOptions): GenerateOptions => ({
  maxNewTokens: 2,
  temperature: 0,
  ...more,
});

/** {@link warmUp} through the chat template. */
async function warmUpChat(pipeline: Pipeline): Promise<void> {
  const [small, large] = await Promise.all(
    WARMUP_SIZES.map(async ([w, h]) => ({ type: "image" as const, image: await grayPng(w, h) })),
  );
  const run = (messages: ChatMessage[], more: GenerateOptions = {}) =>
    drain(pipeline.generate(messages, greedy(more)));
  await run([{ role: "user", content: [small, { type: "text", text: "Describe the image." }] }]);
  const two: ChatMessage[] = [{
    role: "user",
    content: [small, large, { type: "text", text: "Compare the images." }],
  }];
  // The logprobs kernels too (their two variants: alternatives or none), which add to the
  // dispatches of these runs without changing their text.
  const answer = await run(two, { logprobs: true });
  await run([...two, { role: "assistant", content: answer }, { role: "user", content: "Why?" }], {
    logprobs: true,
    topLogprobs: 1,
  });
  // JSON mode and a schema (their mask, advance and masked sampler; the vocabulary's byte table,
  // about 0.4 s to build, is made once here instead of in a first such request).
  const json = [{ role: "user" as const, content: "Answer in JSON." }];
  await run(json, { responseFormat: "json_object" });
  await run(json, { responseFormat: { jsonSchema: { type: "object", properties: {} } } });
}

/** {@link warmUp} for a model without a chat template: raw prompts (Pipeline.complete). */
async function warmUpRaw(pipeline: Pipeline): Promise<void> {
  const run = (prompt: string, more: GenerateOptions = {}) =>
    drain(pipeline.complete(prompt, greedy(more)));
  const prompt = "Describe the sea.";
  const answer = await run(prompt, { logprobs: true });
  // Its continuation: a short prefill after the prompt cache's prefix.
  await run(`${prompt}${answer} Why?`, { logprobs: true, topLogprobs: 1 });
  await run("Answer in JSON.", { responseFormat: "json_object" });
  await run("Answer in JSON.", {
    responseFormat: { jsonSchema: { type: "object", properties: {} } },
  });
}

/** A mid-gray RGB PNG of `width` × `height`, encoded here (no image files shipped). */
export function grayPng(width: number, height: number): Promise<Uint8Array> {
  return encodePng(width, height, new Uint8Array(width * height * 3).fill(128));
}
