/**
 * The server's warm-up: one short generation right after loading, so that the GPU pipelines a first
 * request needs are compiled (shader translation, the driver's compile) before it comes, as
 * llama.cpp's and vLLM's servers warm up. On a fresh H200 (no driver shader cache) the first
 * image's vision step took 1.47 s against 0.05–0.08 s after (2026-11-29, BENCHMARKS.md).
 * @module
 */
import type { Pipeline } from "../pipeline.ts";

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
 * Runs one generation on {@link WARMUP_PNG} and a short question (2 new tokens, greedy) and
 * clears the prompt cache after it, so the warm-up leaves nothing a client could reuse.
 */
export async function warmUp(pipeline: Pipeline): Promise<void> {
  const image = warmUpImage();
  const stream = pipeline.generate([{
    role: "user",
    content: [{ type: "image", image }, { type: "text", text: "Describe the image." }],
  }], { maxNewTokens: 2, temperature: 0 });
  for await (const _ of stream) {
    // compiled as it runs
  }
  await pipeline.clearPromptCache();
}

/** {@link WARMUP_PNG}'s bytes. */
export function warmUpImage(): Uint8Array {
  return Uint8Array.from(atob(WARMUP_PNG), (c) => c.charCodeAt(0));
}
