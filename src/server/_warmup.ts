/**
 * The server's warm-up: short generations right after loading, so that the GPU pipelines a first
 * request needs are compiled (shader translation, the driver's compile) before it comes, as
 * llama.cpp's and vLLM's servers warm up. On an H200 with an empty driver shader cache, a 7B
 * server's first image request took 7.9–8.2 s without it, 1.2–1.3 s with it (2026-11-29,
 * BENCHMARKS.md).
 * @module
 */
import type { Pipeline } from "../pipeline.ts";
import type { ChatMessage } from "../generate/types.ts";

/**
 * A 644 × 476 gray PNG: the benchmark image size (391 image tokens), so the warm-up
 * compiles the kernel variants (tilings chosen by the number of patches and rows) a typical
 * photo's request takes.
 */
const WARMUP_PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAoQAAAHcCAIAAADA4CwfAAAF7UlEQVR42u3VQQ0AAAjEMED5SUcGCWkl7LNOUgDAnZEAAMwY" +
  "AMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMG" +
  "AMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMG" +
  "ADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAMwYAzBgAzBgAMGMAMGMAwIwB" +
  "wIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgAzBgAMGMAMGMA" +
  "wIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgAzBgAMGMA" +
  "MGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgA" +
  "zBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYA" +
  "zBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYA" +
  "MwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHA" +
  "jAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDA" +
  "jAHAjAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAw" +
  "YwDAjAHAjAHAjCUAADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgA" +
  "zBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYA" +
  "zBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHAjAHAjAEA" +
  "MwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDAjAHA" +
  "jAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADMGAAwYwAwYwDA" +
  "jAHAjAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAcCMAQAzBgAzBgDMGADMGAAw" +
  "YwAwYwDAjAHAjAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDMGADM" +
  "GAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAzBgAzBgDM" +
  "GADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgAzBgAMGMAMGMAwIwBwIwBwIwBADMGADMGAMwYAMwYADBjADBjAMCMAcCMAQAz" +
  "BgAzBgDMGADMGAAwYwAwYwDAjAHAjAEAMwYAMwYAzBgAzBgAMGMA+GcB92IFOMWD7EMAAAAASUVORK5CYII=";

/**
 * Runs the paths a server's first requests take, 2 new tokens each (greedy): one image and a
 * question (the vision tower, a prefill in one chunk), two images (a prefill of two chunks), and
 * that conversation's next turn (a short prefill after the prompt cache's prefix); then clears the
 * prompt cache, so the warm-up leaves nothing a client could reuse.
 */
export async function warmUp(pipeline: Pipeline): Promise<void> {
  const image = { type: "image" as const, image: warmUpImage() };
  const run = async (messages: ChatMessage[]) => {
    let text = "";
    for await (const ev of pipeline.generate(messages, { maxNewTokens: 2, temperature: 0 })) {
      if (ev.type === "done") text = ev.result.text;
    }
    return text;
  };
  await run([{ role: "user", content: [image, { type: "text", text: "Describe the image." }] }]);
  const two: ChatMessage[] = [{
    role: "user",
    content: [image, image, { type: "text", text: "Compare the images." }],
  }];
  const answer = await run(two);
  await run([...two, { role: "assistant", content: answer }, { role: "user", content: "Why?" }]);
  await pipeline.clearPromptCache();
}

/** {@link WARMUP_PNG}'s bytes. */
export function warmUpImage(): Uint8Array {
  return Uint8Array.from(atob(WARMUP_PNG), (c) => c.charCodeAt(0));
}
