import assert from "node:assert/strict";
import { sharedGpu } from "../gpu/device.ts";
import { createStorage, uploadArray } from "../gpu/buffers.ts";
import {
  type DecodeRun,
  decodeStream,
  type DecodeStreamOptions,
  skipUnknownIds,
  type TokenTextDecoder,
} from "./decode_stream.ts";
import { Tokenizer } from "../tokenizer.ts";
import { GpuError, InvalidInputError, SamplingError } from "../errors.ts";
import { NO_TOKEN, NOT_FINITE } from "../../kernels/sample.ts";
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
  format?: DecodeStreamOptions["format"],
): Promise<{
  deltas: string[];
  result: GenerationResult;
  batches: number;
  ids: number[];
  usages: (GenerationResult["usage"] | undefined)[];
}> {
  const run = await fakeRun(script);
  const ac = new AbortController();
  const options = resolveOptions(
    { maxNewTokens: script.length, signal: ac.signal, ...opts },
    CONFIG,
  );
  const deltas: string[] = [];
  const usages: (GenerationResult["usage"] | undefined)[] = [];
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
      ...(format ? { format } : {}),
    }) as AsyncIterable<GenerationEvent>
  ) {
    if (ev.type === "delta") {
      deltas.push(ev.text);
      usages.push(ev.usage);
      onDelta?.(ev.text, ac);
    } else result = ev.result;
  }
  run.dispose();
  assert.ok(result, "a done event ends the stream");
  assert.equal(result.text, deltas.join(""), "the final text is the concatenated deltas");
  return { deltas, result, batches: run.batches, ids, usages };
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

/**
 * A fake run with logprobs (top 1): record i is (script[i], −i − 0.5) with the alternative
 * (1000 + i, −i − 1.5), copied beside the ring entries batch by batch.
 */
async function fakeLogprobRun(script: number[]) {
  const run = await fakeRun(script);
  const words = new Uint32Array(script.length * 4);
  const f = new Float32Array(words.buffer);
  script.forEach((id, i) => {
    words[4 * i] = id,
      f[4 * i + 1] = -i - 0.5,
      words[4 * i + 2] = 1000 + i,
      f[4 * i + 3] = -i - 1.5;
  });
  const src = uploadArray(run.gpu, words);
  const buffer = createStorage(run.gpu, words.byteLength);
  const record = run.record;
  return Object.assign(run, {
    logprobs: { buffer, top: 1 },
    record(enc: GPUCommandEncoder, first: number, count: number) {
      record(enc, first, count);
      enc.copyBufferToBuffer(src, first * 16, buffer, first * 16, count * 16);
    },
    dispose() {
      [src, buffer].forEach((b) => b.destroy());
    },
  });
}

Deno.test("decodeStream() puts each token's logprobs on the delta that reads it, text or not", async () => {
  const texts = (id: number) => ({ token: VOCAB[id] ?? `<${id}>`, bytes: [id] });
  const events = async (script: number[], opts: GenerateOptions, first = 0) => {
    const run = await fakeLogprobRun(script);
    const options = resolveOptions({ maxNewTokens: script.length - first, ...opts }, CONFIG);
    const out: GenerationEvent[] = [];
    const stats = {
      promptTokens: 1,
      imageTokens: 0,
      cachedTokens: 0,
      visionMs: 0,
      prefillStart: 0,
    };
    const extra = { tokenText: texts, pump: { first } };
    for await (const ev of decodeStream(run, options, fakeDecoder(), stats, extra)) out.push(ev);
    run.dispose();
    return out;
  };
  const brief = (ev: GenerationEvent) =>
    ev.type === "delta"
      ? [ev.text, ev.logprobs?.map((t) => [t.id, t.logprob, t.topLogprobs[0].id, t.token])]
      : ["done", ev.result.logprobs?.length];
  // Batches of 1, 2 and 3: "é" takes two tokens; the stop id (98) has no entry, nor what follows.
  const a = await events([1, 7, 8, 2, 98, 6], { logprobs: true, topLogprobs: 1 });
  assert.deepEqual(a.map(brief), [
    ["Hello", [[1, -0.5, 1000, "Hello"]]],
    ["é", [[7, -1.5, 1001, "<7>"], [8, -2.5, 1002, "<8>"]]],
    [" world", [[2, -3.5, 1003, " world"]]],
    ["done", 4],
  ]);
  // " </a" may begin the stop string: held back, its tokens' logprobs come on an empty delta.
  const b = await events([1, 3, 4, 6], { logprobs: true, topLogprobs: 1, stop: [" </a>"] });
  assert.deepEqual(b.map(brief), [
    ["Hello", [[1, -0.5, 1000, "Hello"]]],
    ["", [[3, -1.5, 1001, " <"], [4, -2.5, 1002, "/a"]]],
    [" </a again", [[6, -3.5, 1003, " again"]]],
    ["done", 4],
  ]);
  const done = b.at(-1)!;
  assert.ok(done.type === "done");
  assert.deepEqual(done.result.logprobs!.map((t) => t.bytes), [[1], [3], [4], [6]]);
  // A stop string found: the tokens completing it keep their entries (they count as generated);
  // its text does not show.
  const c = await events([1, 3, 4, 5, 6], { logprobs: true, topLogprobs: 1, stop: [" </a>"] });
  assert.deepEqual(c.map(brief), [
    ["Hello", [[1, -0.5, 1000, "Hello"]]],
    ["", [[3, -1.5, 1001, " <"], [4, -2.5, 1002, "/a"]]],
    ["", [[5, -3.5, 1003, ">"]]],
    ["done", 4],
  ]);
  // Resumed at ring entry 2 (a pump's `first`): the records are those of entries 2 on.
  const d = await events([1, 2, 6, 9], { logprobs: true, topLogprobs: 1 }, 2);
  assert.deepEqual(d.map(brief), [
    [" again", [[6, -2.5, 1002, " again"]]],
    [" ha", [[9, -3.5, 1003, " ha"]]],
    ["done", 2],
  ]);
});

Deno.test("decodeStream() stops at a stop id and discards the tokens after it", async () => {
  const { result, ids } = await collect([1, 2, 6, 98, 1, 2, 6], {});
  assert.equal(result.finishReason, "stop");
  assert.equal(result.text, "Hello world again");
  assert.equal(result.usage.completionTokens, 4, "the stop id is a generated token");
  assert.deepEqual(ids, [1, 2, 6, 98], "ids stop at the stop id");
});

Deno.test("decodeStream() with a format: a stop id is text where the format says the answer goes on", async () => {
  // The format (src/generate/format_tracker.ts) says the first " ha" is text, the second an end.
  const fed: number[] = [];
  let seen = 0;
  const format = { push: (id: number) => (fed.push(id), id === 9 && ++seen === 2) };
  const { result, ids } = await collect([1, 9, 2, 9, 6], { stopTokenIds: [9] }, undefined, format);
  assert.equal(result.text, "Hello ha world");
  assert.equal(result.finishReason, "stop");
  assert.equal(result.stopReason, 9);
  assert.deepEqual(ids, [1, 9, 2, 9]);
  assert.deepEqual(fed, [1, 9, 2, 9], "every id is fed to the format, in order");
});

Deno.test("decodeStream() fails on the sampler's ids past the vocabulary rows, naming why", async () => {
  const options = resolveOptions({ maxNewTokens: 4 }, CONFIG);
  const stats = { promptTokens: 1, imageTokens: 0, cachedTokens: 0, visionMs: 0, prefillStart: 0 };
  for (
    const [id, why] of [
      [NOT_FINITE, /logits for answer token 2 are not all finite numbers \(NaN or \+infinity\)/],
      [
        NO_TOKEN,
        /no token to draw for answer token 2 \(id 4294967295 .*\): every token was masked/,
      ],
    ] as const
  ) {
    const run = Object.assign(await fakeRun([1, 2, id, 6]), { rows: 100 });
    const texts: string[] = [];
    await assert.rejects(
      async () => {
        for await (const ev of decodeStream(run, options, fakeDecoder(), stats)) {
          if (ev.type === "delta") texts.push(ev.text);
        }
      },
      (e: Error) => e instanceof SamplingError && e instanceof GpuError && why.test(e.message),
    );
    assert.ok(!texts.join("").includes("again"), "nothing after it is streamed");
    run.dispose();
  }
  // A padding row inside the vocabulary is a token: no error.
  const pad = Object.assign(await fakeRun([1, 99]), { rows: 100 });
  const r = decodeStream(pad, resolveOptions({ maxNewTokens: 2 }, CONFIG), fakeDecoder(), stats);
  let last;
  for await (const ev of r) if (ev.type === "done") last = ev.result;
  assert.equal(last?.finishReason, "stop");
  pad.dispose();
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

Deno.test("decodeStream() names what the caller asked for that stopped it (stopReason), not an eos id", async () => {
  const eos = await collect([1, 2, 6, 98, 1], { stopTokenIds: [98] }); // 98 is also the eos id
  assert.equal(eos.result.finishReason, "stop");
  assert.equal(eos.result.stopReason, undefined);
  const asked = await collect([1, 2, 7, 1], { stopTokenIds: [7] });
  assert.equal(asked.result.finishReason, "stop");
  assert.equal(asked.result.stopReason, 7);
  const text = await collect([1, 2, 3, 4, 5, 6], { stop: ["nope", "</a>", "o w"] });
  assert.equal(text.result.stopReason, "o w"); // the earliest in the text
  assert.equal((await collect([1, 2], {})).result.stopReason, undefined); // length
});

Deno.test("decodeStream() puts the counts so far on every delta, the last the result's", async () => {
  const prompt = { promptTokens: 10, imageTokens: 4, cachedTokens: 3 };
  // Batches of 1, 2, 3 tokens: a delta each.
  const a = await collect([1, 2, 6, 6, 2, 1], {});
  assert.deepEqual(
    a.usages,
    [1, 3, 6].map((completionTokens) => ({ ...prompt, completionTokens })),
  );
  assert.deepEqual(a.usages.at(-1), a.result.usage);
  // A stop id counts where it ends the answer (as in the result), on the delta of its batch.
  const b = await collect([1, 2, EOS, 6], {});
  assert.deepEqual(b.deltas, ["Hello", " world"]);
  assert.deepEqual(b.usages.map((u) => u?.completionTokens), [1, 3]);
  assert.deepEqual(b.usages.at(-1), b.result.usage);
  // Text held back for a stop string: the tokens read count before their text is out.
  const c = await collect([1, 3, 4, 6, 2, 1], { stop: [" </b>"] });
  assert.deepEqual(c.usages.at(-1), c.result.usage);
  assert.equal(c.result.usage.completionTokens, 6);
  for (let i = 1; i < c.usages.length; i++) {
    assert.ok(c.usages[i]!.completionTokens >= c.usages[i - 1]!.completionTokens);
  }
});
