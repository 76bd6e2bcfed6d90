import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { createStorage, readF32, readU32, writeArray } from "../src/gpu/buffers.ts";
import { InvalidInputError } from "../src/errors.ts";
import {
  argmax,
  drawInKernelOrder,
  NO_TOKEN,
  NOT_FINITE,
  nothingToDraw,
  processScores,
  samplingProbs,
  type SamplingRefOptions,
  uniform01,
} from "../src/ref/sample.ts";
import { randn, seeded } from "../src/ref/_random.ts";
import {
  createSamplingParams,
  sample,
  sampleWorkgroupSize,
  type SamplingSettings,
  writeSamplingParams,
} from "./sample.ts";
import { advance, createDecodeState, writeDecodeState } from "./state.ts";
import { type Dispatch, run } from "./_kernel.ts";

const VOCAB = 151936;
const GREEDY: SamplingSettings = {
  doSample: false,
  temperature: 1,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  seed: 0,
  promptLength: 0,
};

/** Buffers and the two samplers (after prefill, decode step) over one vocabulary. */
class Harness {
  readonly logits: GPUBuffer;
  readonly prompt: GPUBuffer;
  readonly params: GPUBuffer;
  readonly state: GPUBuffer;
  readonly tokens: GPUBuffer;
  readonly scores: GPUBuffer;
  readonly first: Dispatch;
  readonly next: Dispatch;
  readonly advance: Dispatch;

  constructor(
    readonly gpu: Gpu,
    readonly vocab: number,
    readonly capacity: number,
    candidates = true,
    maxPrompt = 4096,
  ) {
    this.logits = createStorage(gpu, vocab * 4);
    this.prompt = createStorage(gpu, maxPrompt * 4);
    this.params = createSamplingParams(gpu);
    this.state = createDecodeState(gpu);
    this.tokens = createStorage(gpu, capacity * 4);
    this.scores = createStorage(gpu, capacity * 4);
    this.first = sample(gpu, this, { vocab, capacity, afterPrefill: true, candidates });
    this.next = sample(gpu, this, { vocab, capacity, candidates });
    this.advance = advance(gpu, this.state);
  }

  /** Sets logits, prompt and settings, then samples after prefill and for `steps` decode steps. */
  async run(
    logits: Float32Array,
    s: SamplingSettings,
    prompt: Uint32Array = new Uint32Array(),
    steps = 0,
  ) {
    writeArray(this.gpu, this.logits, logits);
    if (prompt.length) writeArray(this.gpu, this.prompt, prompt);
    writeSamplingParams(this.gpu, this.params, { ...s, promptLength: prompt.length });
    writeDecodeState(this.gpu, this.state, { cacheLen: 0, position: 0, step: 0 });
    writeArray(this.gpu, this.tokens, new Uint32Array(this.capacity).fill(0xffffffff));
    const ds = [this.first];
    for (let i = 0; i < steps; i++) ds.push(this.next, this.advance);
    for (let i = 0; i < ds.length; i += 512) run(this.gpu, ds.slice(i, i + 512));
    return {
      tokens: await readU32(this.gpu, this.tokens, steps + 1),
      scores: await readF32(this.gpu, this.scores, steps + 1),
    };
  }

  destroy() {
    [this.logits, this.prompt, this.params, this.state, this.tokens, this.scores].forEach((b) =>
      b.destroy()
    );
    [this.first, this.next, this.advance].forEach((d) => d.destroy());
  }
}

function refOptions(s: SamplingSettings): SamplingRefOptions {
  return { ...s, doSample: s.doSample && s.temperature > 0 };
}

Deno.test("sample() greedy picks the lowest index among tied maxima and reports the max score", async () => {
  const gpu = await sharedGpu();
  const h = new Harness(gpu, VOCAB, 4);
  const logits = randn(seeded(40), VOCAB, 2);
  // Ties inside one thread's four tokens, across threads and across 1024-token slices.
  for (const tied of [[3001, 3000, 70000], [1030, 6, VOCAB - 1], [513, 700]]) {
    const x = logits.slice();
    for (const i of tied) x[i] = 15.5;
    const got = await h.run(x, GREEDY);
    assert.equal(got.tokens[0], Math.min(...tied), `ties at ${tied}`);
    assert.equal(got.scores[0], 15.5);
  }
  h.destroy();
});

Deno.test("sample() greedy equals argmax; temperature 0, top_k 1 and a tiny top_p do too", async () => {
  const gpu = await sharedGpu();
  const h = new Harness(gpu, VOCAB, 4);
  const rng = seeded(41);
  for (let c = 0; c < 3; c++) {
    const x = randn(rng, VOCAB, 3);
    const want = argmax(x);
    const sampled = { ...GREEDY, doSample: true, seed: c };
    for (
      const s of [GREEDY, { ...sampled, temperature: 0 }, { ...sampled, topK: 1 }, {
        ...sampled,
        topP: 1e-6,
      }]
    ) {
      const got = await h.run(x, s, undefined, 2);
      assert.deepEqual([...got.tokens], [want, want, want], JSON.stringify(s));
    }
  }
  h.destroy();
});

Deno.test("sample() repetition penalty picks the same token as the CPU reference", async () => {
  const gpu = await sharedGpu();
  const h = new Harness(gpu, VOCAB, 2);
  // Penalised once, id 7 (10 → 8.33) still beats id 9 (8); penalised twice it would not. Negative
  // logits are multiplied: id 11 at -0.5 must not become the winner.
  const x = new Float32Array(VOCAB).fill(-1);
  x[7] = 10, x[9] = 8, x[11] = -0.5;
  const s = { ...GREEDY, repetitionPenalty: 1.2 };
  const got = await h.run(x, s, Uint32Array.from([7, 11, 7, 7]));
  assert.equal(got.tokens[0], 7);
  assert.equal(got.scores[0], Math.fround(10 / 1.2));
  const rng = seeded(42);
  for (let c = 0; c < 8; c++) {
    const y = randn(rng, VOCAB, 2);
    // History: the current top 20 (so the penalty decides the winner) and random ids, repeated.
    const top = Array.from(y.keys()).sort((a, b) => y[b] - y[a]).slice(0, 20);
    const hist = Uint32Array.from([
      ...top,
      ...top.slice(0, 5),
      ...Array.from({ length: 50 }, () => Math.floor(rng() * VOCAB)),
    ]);
    const sp = { ...GREEDY, repetitionPenalty: 1 + rng() };
    const want = processScores(y, hist, refOptions(sp));
    const r = await h.run(y, sp, hist);
    assert.equal(r.tokens[0], argmax(want), `case ${c}`);
    // The shader's f32 division may be off by an ulp or two (Vulkan allows 2.5 ulp).
    assert.ok(
      Math.abs(r.scores[0] - want[argmax(want)]) <= 1e-6 * Math.abs(want[argmax(want)]),
      `score ${c}`,
    );
  }
  h.destroy();
});

Deno.test("sample() counts generated tokens in the repetition history", async () => {
  const gpu = await sharedGpu();
  const h = new Harness(gpu, 64, 4);
  // Greedy with a strong penalty: the leader is generated, penalised, and the runner-up takes over.
  const x = new Float32Array(64).fill(0);
  x[5] = 4, x[6] = 3, x[7] = 2.5;
  const got = await h.run(x, { ...GREEDY, repetitionPenalty: 2 }, undefined, 3);
  assert.deepEqual([...got.tokens], [5, 6, 7, 5]);
});

Deno.test("sample() frequency and presence penalties count generated tokens, not the prompt", async () => {
  const gpu = await sharedGpu();
  const h = new Harness(gpu, 64, 6);
  const x = new Float32Array(64).fill(0);
  x[5] = 4, x[6] = 3.6, x[7] = 3.2;
  // The prompt holds 6 and 7: penalised there, 5 would never lose its lead.
  const prompt = Uint32Array.from([6, 7, 6, 7]);
  // Presence: once per generated token, however often (5 stays at 3 and wins again).
  const pres = await h.run(x, { ...GREEDY, presencePenalty: 1 }, prompt, 5);
  assert.deepEqual([...pres.tokens], [5, 6, 7, 5, 5, 5]);
  // Frequency: per occurrence (4 − 0.5·n5, 3.6 − 0.5·n6, 3.2 − 0.5·n7): 5 at 3 after two loses
  // to 7 at 3.2, then 6 at 3.1 beats both.
  const freq = await h.run(x, { ...GREEDY, frequencyPenalty: 0.5 }, prompt, 5);
  assert.deepEqual([...freq.tokens], [5, 6, 5, 7, 6, 5]);
  assert.equal(freq.scores[1], Math.fround(3.6)); // step 1: 5 at 3.5 lost to 6 at 3.6
  // A negative penalty rewards what was generated (OpenAI allows -2 .. 2).
  const neg = await h.run(x, { ...GREEDY, presencePenalty: -1, frequencyPenalty: -0.5 }, prompt, 3);
  assert.deepEqual([...neg.tokens], [5, 5, 5, 5]);
  assert.equal(neg.scores[3], 4 + 3 * 0.5 + 1);
  h.destroy();
});

Deno.test("sample() with every penalty follows the CPU reference over many steps", async () => {
  const gpu = await sharedGpu();
  const steps = 24;
  const h = new Harness(gpu, VOCAB, steps + 1);
  const rng = seeded(44);
  for (let c = 0; c < 3; c++) {
    // A few leaders close together, so the penalties keep changing the winner.
    const x = randn(rng, VOCAB, 1);
    for (let i = 0; i < 8; i++) x[Math.floor(rng() * VOCAB)] = 6 + rng();
    const prompt = Uint32Array.from({ length: 40 }, () => Math.floor(rng() * VOCAB));
    // A logit bias on some leaders and on random ids (across slices), up or down.
    const biased = [
      ...new Set(
        Array.from(
          { length: 12 },
          (_, k) =>
            k < 4
              ? argmax(x.map((v, i) => (i % 7 === k ? v : -Infinity)))
              : Math.floor(rng() * VOCAB),
        ),
      ),
    ];
    const s: SamplingSettings = {
      ...GREEDY,
      repetitionPenalty: c === 0 ? 1 : 1 + 0.2 * rng(),
      frequencyPenalty: Math.fround(0.05 + 0.3 * rng()),
      presencePenalty: Math.fround(c === 2 ? -0.2 : 0.5 * rng()),
      logitBias: c === 1 ? [] : biased.map((id) => [id, Math.fround(4 * rng() - 2)] as const),
    };
    const got = await h.run(x, s, prompt, steps);
    const gen: number[] = [];
    for (let w = 0; w <= steps; w++) {
      const want = processScores(x, [...prompt, ...gen], refOptions(s), prompt.length);
      const id = argmax(want);
      assert.equal(got.tokens[w], id, `case ${c} step ${w}: ${JSON.stringify(s)}`);
      assert.ok(Math.abs(got.scores[w] - want[id]) <= 1e-5 * Math.abs(want[id]), `score ${c}/${w}`);
      gen.push(id);
    }
    assert.ok(new Set(gen).size > 2, `case ${c}: the penalties moved the winner (${gen})`);
  }
  h.destroy();
});

Deno.test("sample() logit bias: −100 bans a token, +100 forces one, before the penalties", async () => {
  const gpu = await sharedGpu();
  const h = new Harness(gpu, VOCAB, 4);
  const x = randn(seeded(45), VOCAB, 2);
  const top = argmax(x);
  const banned = await h.run(x, { ...GREEDY, logitBias: [[top, -100]] });
  const second = argmax(x.map((v, i) => (i === top ? -Infinity : v)));
  assert.equal(banned.tokens[0], second);
  const forced = await h.run(
    x,
    { ...GREEDY, logitBias: [[VOCAB - 1, 100], [7, -3]] },
    undefined,
    2,
  );
  assert.deepEqual([...forced.tokens], [VOCAB - 1, VOCAB - 1, VOCAB - 1]);
  assert.equal(forced.scores[0], Math.fround(x[VOCAB - 1] + 100));
  // Before the repetition penalty: a biased logit in the prompt is divided with its bias.
  const y = new Float32Array(64).fill(0);
  y[5] = 4, y[6] = 3;
  const small = new Harness(gpu, 64, 1);
  const r = await small.run(
    y,
    { ...GREEDY, logitBias: [[6, 5]], repetitionPenalty: 2 },
    Uint32Array.from([6]),
  );
  assert.deepEqual([r.tokens[0], r.scores[0]], [5, 4]); // (3 + 5) / 2 = 4 ties 5's 4: the lower id
  h.destroy();
  small.destroy();
});

Deno.test("sample() with a seed replays the CPU reference draw and is reproducible", async () => {
  const gpu = await sharedGpu();
  const wg = sampleWorkgroupSize(gpu);
  // A smaller vocabulary keeps the CPU replay quick; the 151936 one runs in the greedy tests.
  const vocab = 32000;
  // Both paths: compacted candidates where they fit, and whole-vocabulary passes only.
  const hs = [new Harness(gpu, vocab, 8), new Harness(gpu, vocab, 8, false)];
  const rng = seeded(43);
  const flat = randn(rng, vocab, 2.5);
  // Peaked like a language model's: 30 tokens well above the rest, so top-p keeps few tokens
  // and runs on the compacted candidates; the flat logits exercise the whole-vocabulary passes.
  const peaked = flat.slice();
  for (let i = 0; i < 30; i++) peaked[Math.floor(rng() * vocab)] += 12;
  const prompt = Uint32Array.from({ length: 30 }, () => Math.floor(rng() * vocab));
  const base = {
    doSample: true,
    temperature: 1,
    topK: 0,
    topP: 1,
    repetitionPenalty: 1,
    frequencyPenalty: 0,
    presencePenalty: 0,
    seed: 1,
    promptLength: 0,
  };
  const settings: [Float32Array, SamplingSettings][] = [
    [flat, base],
    [flat, { ...base, temperature: 0.7, topK: 50, topP: 0.9, seed: 2 ** 40 + 5 }],
    [flat, { ...base, temperature: 1.3, topP: 0.8, seed: 77 }],
    [flat, { ...base, temperature: 0.9, topK: 20, repetitionPenalty: 1.1, seed: 123456789 }],
    [peaked, { ...base, temperature: 0.8, topP: 0.95, repetitionPenalty: 1.3, seed: 9 }],
    [peaked, { ...base, seed: 10 }],
    [peaked, { ...base, temperature: 0.7, presencePenalty: 1.5, frequencyPenalty: 0.25, seed: 11 }],
    [flat, { ...base, temperature: 0.8, minP: 0.05, seed: 12 }],
    [flat, { ...base, temperature: 1.2, topK: 40, topP: 0.9, minP: 0.2, seed: 13 }],
    [peaked, { ...base, minP: 0.1, seed: 14 }],
  ];
  for (const [x, s] of settings) {
    for (const h of hs) {
      const steps = 5;
      const got = await h.run(x, s, prompt, steps);
      // Replay step by step: each draw's history is the prompt plus the tokens before it.
      for (let w = 0; w <= steps; w++) {
        const hist = [...prompt, ...got.tokens.subarray(0, w)];
        const scores = processScores(x, hist, refOptions(s), prompt.length);
        const probs = samplingProbs(scores, refOptions(s));
        const want = drawInKernelOrder(probs, uniform01(s.seed, w), wg);
        assert.equal(got.tokens[w], want, `${JSON.stringify(s)} step ${w}`);
      }
      const again = await h.run(x, s, prompt, steps);
      assert.deepEqual(again.tokens, got.tokens, "same seed, same tokens");
      const other = await h.run(x, { ...s, seed: s.seed + 1 }, prompt, steps);
      assert.notDeepEqual(other.tokens, got.tokens, "another seed, other tokens");
    }
  }
  hs.forEach((h) => h.destroy());
});

Deno.test("sample() at temperature 1 follows the softmax (chi-square, fixed seed)", async () => {
  const gpu = await sharedGpu();
  const n = 2000, vocab = 8;
  const h = new Harness(gpu, vocab, n + 1);
  const x = Float32Array.from([0.5, -1, 2, 0, 1.2, -0.3, 0.9, 1.5]);
  const probs = samplingProbs(x, {
    doSample: true,
    temperature: 1,
    topK: 0,
    topP: 1,
    repetitionPenalty: 1,
  });
  const got = await h.run(x, { ...GREEDY, doSample: true, seed: 2024 }, undefined, n);
  const counts = new Array(vocab).fill(0);
  for (const t of got.tokens) counts[t]++;
  const total = n + 1;
  const chi2 = counts.reduce((a, c, i) => a + (c - total * probs[i]) ** 2 / (total * probs[i]), 0);
  // 7 degrees of freedom: P(χ² > 24.3) = 0.001 for a correct sampler.
  assert.ok(
    chi2 < 24.3,
    `χ² = ${chi2.toFixed(2)}, counts ${counts}, expected ${
      [...probs].map((p) => (p * total).toFixed(0))
    }`,
  );
  h.destroy();
});

Deno.test("sample() draws exactly from transformers' top-k / top-p token sets", async () => {
  const gpu = await sharedGpu();
  const n = 100, vocab = 100;
  // Probabilities 0.5, 0.3, 0.15, 0.05 on tokens 40, 7, 93, 2 (the rest ~0): top_p 0.75 keeps
  // {40, 7} (ascending cumsum 0.05, 0.2 ≤ 0.25 removed), 0.85 keeps {40, 7, 93}; top_k 3 keeps
  // the three best whatever top_p allows.
  const x = new Float32Array(vocab).fill(-100);
  [[40, 0.5], [7, 0.3], [93, 0.15], [2, 0.05]].forEach(([i, p]) => (x[i] = Math.log(p)));
  const cases: [Partial<SamplingSettings>, number[]][] = [
    [{ topP: 0.75 }, [40, 7]],
    [{ topP: 0.85 }, [40, 7, 93]],
    [{ topK: 3 }, [40, 7, 93]],
    [{ topK: 3, topP: 0.7 }, [40, 7]],
    [{ topK: 1 }, [40]],
    // min_p: p ≥ 0.2 · 0.5 keeps {40, 7, 93}; 0.4 · 0.5 {40, 7}; after top-p 0.75, 0.7 · 0.5 {40}.
    [{ minP: 0.2 }, [40, 7, 93]],
    [{ minP: 0.4 }, [40, 7]],
    [{ topP: 0.75, minP: 0.7 }, [40]],
  ];
  // A heavy tail: 0.3 and 0.25 on tokens 0 and 1, 0.45 spread over the other 98. top_p 0.5
  // removes the tail (cumsum 0.45 ≤ 0.5) and keeps both heads (0.70 > 0.5): the tail's mass, under
  // the candidates' cut, still counts toward 1 − top_p (it was left out, and only token 0 kept).
  const tail = new Float32Array(vocab);
  for (let i = 2; i < vocab; i++) tail[i] = Math.log(0.45 / (vocab - 2));
  [tail[0], tail[1]] = [Math.log(0.3), Math.log(0.25)];
  for (const candidates of [true, false]) {
    const h = new Harness(gpu, vocab, n + 1, candidates);
    for (
      const [logits, c, want] of [
        ...cases.map(([c, w]) => [x, c, w] as const),
        [tail, { topP: 0.5 }, [0, 1]] as const,
      ]
    ) {
      const got = await h.run(logits, { ...GREEDY, doSample: true, seed: 5, ...c }, undefined, n);
      assert.deepEqual(
        [...new Set(got.tokens)].sort(),
        [...want].sort(),
        `${JSON.stringify(c)} candidates ${candidates}`,
      );
    }
    h.destroy();
  }
});

Deno.test("sample() keeps every token tied at the top-k and top-p boundaries, as the reference does", async () => {
  const gpu = await sharedGpu();
  const vocab = 100, n = 64;
  // Probabilities 0.5, 0.25, 0.25 on tokens 60, 9, 31 (the rest ~0). top_k 2: the 2nd largest
  // is tied, both kept. top_p 0.6: 0.5 falls short, the first 0.25 reaches it — and the other
  // 0.25, tied with it, stays too (transformers' unstable sort keeps one, in no set order).
  const x = new Float32Array(vocab).fill(-100);
  [[60, 0.5], [9, 0.25], [31, 0.25]].forEach(([i, p]) => (x[i] = Math.log(p)));
  for (const candidates of [true, false]) {
    const h = new Harness(gpu, vocab, n + 1, candidates);
    for (const c of [{ topK: 2 }, { topP: 0.6 }, { topK: 2, topP: 0.6 }]) {
      const s = { ...GREEDY, doSample: true, seed: 8, ...c };
      const got = await h.run(x, s, undefined, n);
      assert.deepEqual([...new Set(got.tokens)].sort(), [31, 60, 9], JSON.stringify(c));
      const probs = samplingProbs(processScores(x, [], refOptions(s)), refOptions(s));
      assert.deepEqual([9, 31, 60].map((i) => probs[i] > 0), [true, true, true], "the reference");
    }
    h.destroy();
  }
});

Deno.test("sample() writes NOT_FINITE where a logit is NaN or +∞, greedy or drawn, masked or not", async () => {
  const gpu = await sharedGpu();
  const vocab = 3000;
  const base = Float32Array.from({ length: vocab }, (_, i) => Math.sin(i));
  const drawn = { ...GREEDY, doSample: true, seed: 3 };
  for (const candidates of [true, false]) {
    const h = new Harness(gpu, vocab, 2, candidates);
    for (const [at, v] of [[0, NaN], [2047, NaN], [vocab - 1, Infinity], [5, Infinity]]) {
      const x = base.slice();
      x[at] = v;
      x[100] = -Infinity; // a −∞ logit alone is a token never drawn, not an error
      for (
        const s of [GREEDY, drawn, { ...drawn, topK: 5 }, { ...drawn, topP: 0.5 }, {
          ...drawn,
          minP: 0.1,
        }, { ...GREEDY, minTokens: 1, stopIds: [at] }]
      ) {
        // The ring's entries hold something else first: a stale id must not stay.
        writeArray(gpu, h.tokens, Uint32Array.from([7, 7]));
        const got = await h.run(x, s, undefined, 1);
        assert.deepEqual(
          [...got.tokens],
          [NOT_FINITE, NOT_FINITE],
          `${v} at ${at}, ${JSON.stringify(s)}`,
        );
        assert.equal(nothingToDraw(x, processScores(x, [], refOptions(s))), NOT_FINITE);
      }
    }
    h.destroy();
  }
});

Deno.test("sample() writes NO_TOKEN where every token is masked or −∞, greedy or drawn", async () => {
  const gpu = await sharedGpu();
  const vocab = 16;
  const all = Array.from({ length: vocab }, (_, i) => i);
  const x = Float32Array.from(all, (i) => i / 4);
  const drawn = { ...GREEDY, doSample: true, seed: 4 };
  for (const candidates of [true, false]) {
    const h = new Harness(gpu, vocab, 4, candidates);
    for (const s of [GREEDY, drawn, { ...drawn, topK: 3, topP: 0.9 }]) {
      // Every id held back (min_tokens: the same mask a grammar's bits apply) for two entries.
      const held = { ...s, minTokens: 2, stopIds: all };
      const got = await h.run(x, held, undefined, 3);
      assert.deepEqual([...got.tokens.subarray(0, 2)], [NO_TOKEN, NO_TOKEN], JSON.stringify(s));
      assert.equal(nothingToDraw(x, processScores(x, [], refOptions(held), 0)), NO_TOKEN);
      // Every logit −∞.
      const none = new Float32Array(vocab).fill(-Infinity);
      const inf = await h.run(none, s, undefined, 1);
      assert.deepEqual([...inf.tokens], [NO_TOKEN, NO_TOKEN], `−∞ ${JSON.stringify(s)}`);
      // One finite logit among −∞: that token, whatever the settings.
      none[11] = -50;
      assert.deepEqual([...(await h.run(none, s, undefined, 1)).tokens], [11, 11]);
    }
    h.destroy();
  }
});

Deno.test("sample() min_tokens holds the stop ids back for the first entries, greedy and drawn", async () => {
  const gpu = await sharedGpu();
  for (const candidates of [true, false]) {
    const h = new Harness(gpu, VOCAB, 8, candidates);
    const x = randn(seeded(44), VOCAB, 2);
    const stop = argmax(x), second = argmax(x.map((v, i) => (i === stop ? -Infinity : v)));
    const far = 151643; // a stop id in another slice, also held
    x[far] = x[stop] - 0.5;
    const s = { ...GREEDY, minTokens: 3, stopIds: [far, stop] };
    const got = await h.run(x, s, undefined, 5);
    // Entries 0..2 (the first three tokens): the stop ids held back, the next best instead.
    assert.deepEqual(
      [...got.tokens],
      [second, second, second, stop, stop, stop],
      `candidates ${candidates}`,
    );
    // Drawn: the CPU reference's draw, step by step.
    const drawn = { ...s, doSample: true, temperature: 0.05, seed: 21 };
    const d = await h.run(x, drawn, undefined, 5);
    for (let w = 0; w <= 5; w++) {
      const scores = processScores(x, [...d.tokens.subarray(0, w)], refOptions(drawn), 0);
      const want = drawInKernelOrder(
        samplingProbs(scores, refOptions(drawn)),
        uniform01(21, w),
        sampleWorkgroupSize(gpu),
      );
      assert.equal(d.tokens[w], want, `drawn step ${w}`);
      if (w < 3) {
        assert.ok(d.tokens[w] !== stop && d.tokens[w] !== far, `drawn step ${w} held back`);
      }
    }
    h.destroy();
  }
});

Deno.test("sample() drops a write past the token ring", async () => {
  const gpu = await sharedGpu();
  const h = new Harness(gpu, 16, 2);
  const x = new Float32Array(16);
  x[3] = 1;
  writeArray(gpu, h.logits, x);
  writeSamplingParams(gpu, h.params, GREEDY);
  writeDecodeState(gpu, h.state, { cacheLen: 0, position: 0, step: 1 }); // decode writes tokens[2]
  writeArray(gpu, h.tokens, Uint32Array.from([9, 9]));
  run(gpu, [h.next]);
  assert.deepEqual([...(await readU32(gpu, h.tokens))], [9, 9]);
  h.destroy();
});

Deno.test("writeSamplingParams() rejects out-of-range settings naming the field", async () => {
  const gpu = await sharedGpu();
  const b = createSamplingParams(gpu);
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, topP: 0 }),
    /topP must be in \(0, 1\], got 0/,
  );
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, temperature: -1 }),
    InvalidInputError,
  );
  assert.throws(() => writeSamplingParams(gpu, b, { ...GREEDY, seed: 1.5 }), /seed/);
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, minP: 1.5 }),
    /minP must be in \[0, 1\], got 1.5/,
  );
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, minTokens: 1, stopIds: Array(81).fill(1) }),
    /stopIds must be ≤ 80, got 81 ids/,
  );
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, repetitionPenalty: 0 }),
    /repetitionPenalty/,
  );
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, presencePenalty: NaN }),
    /presencePenalty must be a finite number/,
  );
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, frequencyPenalty: Infinity }),
    /frequencyPenalty/,
  );
  const many = Array.from({ length: 301 }, (_, i) => [i, 1] as const);
  assert.throws(() => writeSamplingParams(gpu, b, { ...GREEDY, logitBias: many }), /301 entries/);
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, logitBias: [[3, 1], [3, 2]] }),
    /logitBias must be distinct token ids, got token 3/,
  );
  assert.throws(
    () => writeSamplingParams(gpu, b, { ...GREEDY, logitBias: [[3, NaN]] }),
    /logitBias must be a finite number/,
  );
  b.destroy();
});

Deno.test("uniform01() is uniform enough: mean and spread over 10^5 indices", () => {
  let sum = 0, sq = 0;
  const n = 100000;
  for (let i = 0; i < n; i++) {
    const u = uniform01(99, i);
    assert.ok(u >= 0 && u < 1);
    sum += u;
    sq += u * u;
  }
  // Mean 1/2 ± 5σ (σ = 1/sqrt(12n) ≈ 0.0009); variance 1/12.
  assert.ok(Math.abs(sum / n - 0.5) < 0.005, `mean ${sum / n}`);
  assert.ok(Math.abs(sq / n - (sum / n) ** 2 - 1 / 12) < 0.003, "variance");
});
