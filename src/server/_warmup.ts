/**
 * The server's warm-up: short generations right after loading, so that the GPU pipelines a first
 * request needs are compiled (shader translation, the driver's compile) before it comes, as
 * llama.cpp's and vLLM's servers warm up. On an H200 with an empty driver shader cache, a 7B
 * server's first image request took 7.9–8.2 s without it; with it a first 1024 × 768 photo took
 * 0.82 s, the same photo later 0.73 s (2026-11-29, BENCHMARKS.md).
 * @module
 */
import type { Pipeline } from "../pipeline.ts";
import type { ChatMessage } from "../generate/types.ts";
import { ContextLengthError } from "../errors.ts";

/**
 * The warm-up's image sizes: 644 × 476 (391 image tokens, the benchmark image) and 800 ×
 * 600 (609): the vision tower's attention tiling follows the number of patches, and these two take
 * the two tilings a photo can (kernels/attention.ts prefillDefault).
 */
export const WARMUP_SIZES: readonly (readonly [number, number])[] = [[644, 476], [800, 600]];

/**
 * Runs the paths a server's first requests take, 2 new tokens each (greedy): one image and a
 * question (the vision tower, a prefill in one chunk), an image of each size (both attention
 * tilings, a prefill of two chunks), and that conversation's next turn (a short prefill after the
 * prompt cache's prefix); then clears the prompt cache, so the warm-up leaves nothing a client
 * could reuse. A model whose context cannot hold a warm-up prompt stops the warm-up there (what is
 * left compiles at first use).
 */
export async function warmUp(pipeline: Pipeline): Promise<void> {
  const [small, large] = await Promise.all(
    WARMUP_SIZES.map(async ([w, h]) => ({ type: "image" as const, image: await grayPng(w, h) })),
  );
  const run = async (messages: ChatMessage[]) => {
    let text = "";
    for await (const ev of pipeline.generate(messages, { maxNewTokens: 2, temperature: 0 })) {
      if (ev.type === "done") text = ev.result.text;
    }
    return text;
  };
  try {
    await run([{ role: "user", content: [small, { type: "text", text: "Describe the image." }] }]);
    const two: ChatMessage[] = [{
      role: "user",
      content: [small, large, { type: "text", text: "Compare the images." }],
    }];
    const answer = await run(two);
    await run([...two, { role: "assistant", content: answer }, { role: "user", content: "Why?" }]);
  } catch (e) {
    if (!(e instanceof ContextLengthError)) throw e;
  } finally {
    await pipeline.clearPromptCache();
  }
}

/** A mid-gray RGB PNG of `width` × `height`, encoded here (a few kB; no image files shipped). */
export async function grayPng(width: number, height: number): Promise<Uint8Array> {
  const row = new Uint8Array(1 + 3 * width).fill(128);
  row[0] = 0; // filter: none
  const raw = new Uint8Array(row.length * height);
  for (let y = 0; y < height; y++) raw.set(row, y * row.length);
  const zlib = new Uint8Array(
    await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate")))
      .arrayBuffer(),
  );
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, filter method 0, no interlace
  const parts = [
    new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib),
    chunk("IEND", new Uint8Array()),
  ];
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    png.set(p, at);
    at += p.length;
  }
  return png;
}

/** A PNG chunk: length, type, data, CRC-32 of type and data. */
function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (c ^ 0xffffffff) >>> 0;
}
