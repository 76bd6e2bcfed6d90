import assert from "node:assert/strict";
import { sharedGpu } from "../gpu/device.ts";
import { createStorage, uploadArray } from "../gpu/buffers.ts";
import {
  type DecodeRun,
  decodeStream,
  skipUnknownIds,
  type TokenTextDecoder,
} from "./decode_stream.ts";
import { Tokenizer } from "../tokenizer.ts";
import { InvalidInputError } from "../errors.ts";
import { LoopDetector } from "./loop_detector.ts";
import { parseGenerationConfig, resolveOptions } from "./options.ts";
import type { GenerateOptions, GenerationEvent, GenerationResult } from "./types.ts";

const EOS = 99;
const CONFIG = parseGenerationConfig({ eos_token_id: [EOS, 98] });

/** Token i decodes to VOCAB[i]; id 7 and 8 are the two halves of "é" (nothing until the 2nd). */
const VOCAB: Record<number, string> = {
  1: "Hello",
  2: " world",
  3: " <",
  4: "/a",
  5: ">",
  6: " again",
  9: " ha",
};
function fakeDecoder(): TokenTextDecoder {
  let pending = false;
  return {
    push(id) {
      if (id === 7) {
        pending = true;
        return "";
      }
      if (id === 8 && pending) {
        pending = false;
        return "é";
      }
      return VOCAB[id] ?? `<${id}>`;
    },
    flush() {
      const t = pending ? "\uFFFD" : "";
      pending = false;
      return t;
    },
  };
}

/** A fake GPU decode: ring entry i is `script[i]`, copied on the GPU queue batch by batch. */
async function fakeRun(
  script: number[],
): Promise<DecodeRun & { batches: number; dispose(): void }> {
  const gpu = await sharedGpu();
  const src = uploadArray(gpu, Uint32Array.from(script));
  const ring = createStorage(gpu, script.length * 4);
  const run = {
    gpu,
    ring,
    batches: 0,
    record(enc: GPUCommandEncoder, first: number, count: number) {
      run.batches++;
      enc.copyBufferToBuffer(src, first * 4, ring, first * 4, count * 4);
    },
    dispose: () => [src, ring].forEach((b) => b.destroy()),
  };
  return run;
}

async function collect(
  script: number[],
  opts: GenerateOptions,
  onDelta?: (d: string, ac: AbortController) => void,
): Promise<{ deltas: string[]; result: GenerationResult; batches: number; ids: number[] }> {
  const run = await fakeRun(script);
  const ac = new AbortController();
  const options = resolveOptions(
    { maxNewTokens: script.length, signal: ac.signal, ...opts },
    CONFIG,
  );
  const deltas: string[] = [];
  const ids: number[] = [];
  let result: GenerationResult | undefined;
  const stats = {
    promptTokens: 10,
    imageTokens: 4,
    cachedTokens: 3,
    visionMs: 1.5,
    prefillStart: performance.now(),
  };
  for await (
    const ev of decodeStream(run, options, fakeDecoder(), stats, {
      loopDetector: () => new LoopDetector({ minTokens: 6 }),
      ids,
    }) as AsyncIterable<GenerationEvent>
  ) {
    if (ev.type === "delta") {
      deltas.push(ev.text);
      onDelta?.(ev.text, ac);
    } else result = ev.result;
  }
  run.dispose();
  assert.ok(result, "a done event ends the stream");
  assert.equal(result.text, deltas.join(""), "the final text is the concatenated deltas");
  return { deltas, result, batches: run.batches, ids };
}

Deno.test('decodeStream() streams every token up to the budget and ends with "length"', async () => {
  const { deltas, result, ids } = await collect([1, 2, 6, 6, 2, 1], {});
  // batches of 1, 2, 3 tokens: one delta per batch
  assert.deepEqual(deltas, ["Hello", " world again", " again worldHello"]);
  assert.equal(result.finishReason, "length");
  assert.deepEqual(result.usage, {
    promptTokens: 10,
    completionTokens: 6,
    imageTokens: 4,
    cachedTokens: 3,
  });
  assert.deepEqual(ids, [1, 2, 6, 6, 2, 1], "every id read, for the prompt cache");
  assert.equal(result.timings.visionMs, 1.5);
  assert.ok(result.timings.prefillMs >= 0 && result.timings.decodeMs >= 0);
});

Deno.test("decodeStream() stops at a stop id and discards the tokens after it", async () => {
  const { result, ids } = await collect([1, 2, 6, 98, 1, 2, 6], {});
  assert.equal(result.finishReason, "stop");
  assert.equal(result.text, "Hello world again");
  assert.equal(result.usage.completionTokens, 4, "the stop id is a generated token");
  assert.deepEqual(ids, [1, 2, 6, 98], "ids stop at the stop id");
});

Deno.test("decodeStream() stops at a stop string split across tokens, never showing its beginning", async () => {
  const { deltas, result } = await collect([1, 2, 3, 4, 5, 6, 6], { stop: ["</a>"] });
  assert.equal(result.finishReason, "stop");
  assert.equal(result.text, "Hello world ");
  assert.ok(deltas.every((d) => !d.includes("<")), `deltas ${JSON.stringify(deltas)}`);
  assert.equal(result.usage.completionTokens, 5);
});

Deno.test("decodeStream() releases a held-back partial stop string at the end", async () => {
  const { result } = await collect([1, 3, 4], { stop: ["</a>"] });
  assert.equal(result.finishReason, "length");
  assert.equal(result.text, "Hello </a");
});

Deno.test("decodeStream() never splits a character the decoder holds, and flushes it at the end", async () => {
  const { deltas, result } = await collect([1, 7, 8, 7], {});
  assert.deepEqual(deltas, ["Hello", "é", "\uFFFD"]);
  assert.equal(result.finishReason, "length");
});

Deno.test('decodeStream() stops with "loop" only when stopOnLoop is set', async () => {
  const script = [1, ...Array(20).fill(9)];
  const looped = await collect(script, { stopOnLoop: true });
  assert.equal(looped.result.finishReason, "loop");
  assert.equal(looped.result.usage.completionTokens, 7, "6 repeated tokens after the first");
  const plain = await collect(script, {});
  assert.equal(plain.result.finishReason, "length");
});

Deno.test('decodeStream() ends with "abort" when the signal fires mid-stream, and submits no more', async () => {
  const script = Array.from({ length: 200 }, (_, i) => 1 + (i % 2));
  const { result, batches } = await collect(script, {}, (_, ac) => ac.abort());
  assert.equal(result.finishReason, "abort");
  assert.equal(result.text, "Hello");
  assert.ok(batches <= 3, `${batches} batches recorded after an abort on the first`);
});

Deno.test("decodeStream() with an already aborted signal yields only the done record", async () => {
  const ac = new AbortController();
  ac.abort();
  const { deltas, result } = await collect([1, 2], { signal: ac.signal });
  assert.deepEqual(deltas, []);
  assert.equal(result.finishReason, "abort");
  assert.equal(result.usage.completionTokens, 0);
});

Deno.test("skipUnknownIds(): a padding id past the tokenizer's vocabulary adds no text, the rest decode as before", async () => {
  const tok = await Tokenizer.fromJson(
    await Deno.readFile(
      new URL("../../tests/fixtures/tiny-qwen2vl/tokenizer.json", import.meta.url),
    ),
  );
  const ids = tok.encode("Hello, world! ❤️");
  const pad = tok.vocabSize + 100; // Qwen2-VL's lm_head has 151936 rows, its tokenizer fewer ids
  using raw = tok.createStreamDecoder({ skipSpecialTokens: true });
  assert.throws(() => raw.push(pad), InvalidInputError); // what the answer failed with before
  using inner = tok.createStreamDecoder({ skipSpecialTokens: true });
  const d = skipUnknownIds(inner, tok.vocabSize);
  let text = "";
  for (const [i, id] of ids.entries()) {
    text += d.push(id);
    if (i === 2) assert.equal(d.push(pad), "");
  }
  text += d.flush();
  assert.equal(text, "Hello, world! ❤️");
  tok.dispose();
});
