import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { InvalidInputError } from "../src/errors.ts";
import { PRESETS } from "../src/model/presets.ts";
import { parseConfig } from "../src/model/config.ts";
import { syntheticPlan } from "../src/model/synthetic.ts";
import {
  cardBytesPerS,
  decodeBytes,
  H100_BYTES_PER_S,
  H200_BYTES_PER_S,
  runBench,
} from "./main.ts";
import { optionReader, parseArgs } from "./_args.ts";

Deno.test("parseArgs() reads the issue's options and refuses bad ones", () => {
  const o = parseArgs([
    "--shape",
    "qvq-72b",
    "--quant=q4",
    "--prompt-tokens",
    "478",
    "--image",
    "644x476",
    "--new-tokens",
    "64",
  ]);
  assert.deepEqual([o.shape, o.quant, o.promptTokens, o.image, o.newTokens], [
    "qvq-72b",
    "q4",
    478,
    [644, 476],
    64,
  ]);
  assert.equal(parseArgs([]).shape, "qwen2-vl-7b");
  assert.equal(parseArgs([]).visionQuant, undefined);
  assert.equal(parseArgs(["--vision-quant", "q8"]).visionQuant, "q8");
  assert.equal(parseArgs(["--vision-quant=f16"]).visionQuant, undefined);
  assert.equal(parseArgs([]).kvCacheDtype, undefined);
  assert.equal(parseArgs(["--kv-cache-dtype", "f32"]).kvCacheDtype, "f32");
  assert.deepEqual([parseArgs([]).logprobs, parseArgs([]).penalties], [undefined, false]);
  const lp = parseArgs(["--logprobs", "20", "--penalties", "--json-mode"]);
  assert.deepEqual([lp.logprobs, lp.penalties, lp.jsonMode], [20, true, true]);
  assert.equal(parseArgs([]).jsonMode, false);
  assert.deepEqual([parseArgs([]).jsonSchema, parseArgs(["--json-schema"]).jsonSchema], [
    false,
    true,
  ]);
  assert.equal(parseArgs([]).promptLogprobs, undefined);
  assert.equal(parseArgs(["--prompt-logprobs", "1"]).promptLogprobs, 1);
  assert.equal(parseArgs(["--image", "56x56", "--video-frames", "3"]).videoFrames, 3);
  assert.equal(parseArgs(["--parallel", "4"]).parallel, 4);
  assert.equal(parseArgs(["--no-xrows"]).noXRows, true);
  assert.equal(parseArgs([]).noXRows, false);
  assert.equal(parseArgs(["--no-fused-row-attend"]).noFusedRowAttend, true);
  assert.equal(parseArgs([]).noFusedRowAttend, false);
  assert.equal(parseArgs([]).parallel, 1);
  for (
    const bad of [
      ["--shape", "gpt"],
      ["--quant", "q3"],
      ["--vision-quant", "q4"],
      ["--kv-cache-dtype", "bf16"],
      ["--image", "644"],
      ["--video-frames", "4"],
      ["--image", "56x56", "--video-frames", "0"],
      ["--new-tokens", "0"],
      ["--logprobs", "21"],
      ["--parallel", "1"],
      ["--parallel", "65"],
      ["--prompt-logprobs", "21"],
      ["--frobnicate"],
    ]
  ) {
    assert.throws(() => parseArgs(bad), InvalidInputError, bad.join(" "));
  }
});

Deno.test("runBench() with --video-frames runs the tower on ⌈frames / 2⌉ temporal patches of the image's size", async () => {
  const gpu = await sharedGpu();
  const r = await runBench({
    ...parseArgs([
      "--shape",
      "tiny",
      "--prompt-tokens",
      "24",
      "--image",
      "56x56",
      "--video-frames",
      "3",
      "--new-tokens",
      "3",
      "--repeat",
      "1",
    ]),
    dtype: gpu.features.f16 ? "f16" : "f32",
  }, gpu);
  assert.equal(r.video_frames, 3);
  assert.equal(r.image_patches, 32); // 2 temporal patches of 4 × 4
  assert.equal(r.image_tokens, 8);
  assert.ok(r.vision_s > 0 && r.ttft_s > r.vision_s, `${r.vision_s} ${r.ttft_s}`);
});

Deno.test("decodeBytes() counts 7B f16: 14.1 GB of decoder + lm_head weights, one embedding row, the KV cache", () => {
  const cfg = parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]);
  const plan = syntheticPlan(PRESETS["Qwen2-VL-7B-Instruct"], {
    dtype: "f16",
    maxBinding: 2 ** 31 - 4,
  });
  const H = 3584, I = 18944, kvd = 512, L = 28, V = 152064;
  const weights = 2 * (L * (H * (H + 2 * kvd) + H * H + 3 * I * H) + V * H) +
    4 * (L * (3 * H + 2 * kvd) + H);
  assert.equal(decodeBytes(cfg, plan, 0), weights + 2 * H);
  assert.equal(decodeBytes(cfg, plan, 1000) - decodeBytes(cfg, plan, 0), 2 * L * 1000 * kvd * 4);
  assert.equal( // an f16 cache: half the bytes a token
    decodeBytes(cfg, plan, 1000, "f16") - decodeBytes(cfg, plan, 0, "f16"),
    2 * L * 1000 * kvd * 2,
  );
  assert.ok(Math.abs(weights / 1e9 - 14.1) < 0.1, `${weights}`);
});

Deno.test("runBench() at the tiny shape: every number measured and plausible (f16, and q4 with a q8 vision tower, with an image)", async () => {
  const gpu = await sharedGpu();
  const dtype = gpu.features.f16 ? "f16" : "f32";
  for (const quant of [undefined, "q4"] as const) {
    const r = await runBench({
      ...parseArgs([
        "--shape",
        "tiny",
        "--prompt-tokens",
        "24",
        "--image",
        "56x56",
        "--new-tokens",
        "6",
        "--repeat",
        "1",
        "--followup",
        "12",
        // q4 also decodes with the logprobs kernels, every penalty on and in JSON mode; f16 times
        // three generations at once too, in batches of 2 steps.
        ...(quant
          ? ["--logprobs", "5", "--penalties", "--json-mode"]
          : ["--parallel", "3", "--steps-per-submit", "2"]),
      ]),
      dtype,
      quant,
      visionQuant: quant ? "q8" : undefined,
    }, gpu);
    // The next turn: the prompt and the tokens the 6 decode steps fed (ring entries 0..5; entry
    // 6, sampled by the last step, was never read), then 12 new ones; the same first token from
    // the cache as whole.
    assert.equal(r.followup?.tokens, 12);
    assert.equal(r.followup?.cached_tokens, 24 + 6);
    assert.ok(r.followup!.ttft_s > 0 && r.followup!.full_ttft_s > 0);
    assert.equal(r.followup?.same_first_token, true);
    // The generated tokens' K/V from decode GEMVs against prefill GEMMs: f16 rounding apart (q4:
    // int8 activations quantized per row either way).
    assert.ok(
      r.followup!.logit_diff < (quant ? 2e-2 : 2e-3),
      `logit_diff ${r.followup!.logit_diff}`,
    );
    if (quant) {
      assert.equal(r.parallel, undefined);
    } else {
      assert.equal(r.parallel?.streams, 3);
      assert.equal(r.parallel?.each_tok_s.length, 3);
      for (const v of [...r.parallel!.each_tok_s, r.parallel!.total_tok_s]) {
        assert.ok(Number.isFinite(v) && v > 0, `parallel ${JSON.stringify(r.parallel)}`);
      }
    }
    assert.equal(r.quant, quant ?? dtype);
    // vision_quant only in a line whose run set it.
    assert.equal(r.vision_quant, quant ? "q8" : undefined);
    assert.equal("vision_quant" in r, quant !== undefined);
    assert.equal(r.prompt_tokens, 24);
    assert.equal(r.image_patches, 16);
    assert.equal(r.image_tokens, 4);
    assert.equal(r.new_tokens, 4); // 6 steps, 2 of them warm-up
    assert.deepEqual(
      [r.logprobs, r.penalties, r.json_mode],
      quant ? [5, true, true] : [undefined, undefined, undefined],
    );
    for (
      const k of [
        "load_s",
        "vision_s",
        "prefill_s",
        "ttft_s",
        "decode_tok_s",
        "gpu_mem_gb",
        "bytes_per_token",
      ] as const
    ) {
      assert.ok(Number.isFinite(r[k]) && r[k] > 0, `${k} = ${r[k]}`);
    }
    assert.ok(r.ttft_s >= r.prefill_s * 0.5, "ttft includes a prefill");
    assert.equal(
      r.roofline_fraction,
      Math.round(r.bytes_per_token * r.decode_tok_s / r.card_bytes_per_s * 1e4) / 1e4,
    );
    // lavapipe (CI) divides by the H100's bandwidth; the device tool's H200 by its own.
    const card = /H200/i.test(r.device) ? H200_BYTES_PER_S : H100_BYTES_PER_S;
    assert.equal(r.card_bytes_per_s, card, `the roofline of ${r.device}`);
    assert.ok(r.dispatches_per_step > 10);
  }
});

Deno.test("runBench() --profile times every dispatch of a decode step, the vision tower and prefill, grouped by kernel variant", async () => {
  const gpu = await sharedGpu();
  if (!gpu.features.timestampQuery) return; // lavapipe grants it; an adapter without it cannot profile
  const r = await runBench({
    ...parseArgs([
      "--shape",
      "tiny",
      "--prompt-tokens",
      "24",
      "--image",
      "56x56",
      "--new-tokens",
      "4",
      "--repeat",
      "1",
    ]),
    dtype: gpu.features.f16 ? "f16" : "f32",
    profile: true,
  }, gpu);
  const p = r.decode_profile!;
  // The sampler is one Dispatch of two kernels: counted once here, twice in dispatches_per_step.
  assert.equal(p.shares.reduce((a, e) => a + e.count, 0), r.dispatches_per_step - 1);
  assert.ok(p.shares.some((e) => e.key.startsWith("attention_decode.decode")), JSON.stringify(p));
  assert.ok(p.shares.every((e) => e.us >= 0) && p.kernels_us > 0);
  assert.ok(p.shares.every((e, i) => i === 0 || p.shares[i - 1].us >= e.us), "largest first");
  // step_us comes from the unrounded tok/s; decode_tok_s is rounded to 0.01.
  assert.ok(Math.abs(p.step_us * r.decode_tok_s / 1e6 - 1) < 1e-3, `${p.step_us} µs`);
  // TTFT: the vision tower's and prefill's batches, by their submit labels.
  const t = r.ttft_profile!;
  assert.deepEqual(Object.keys(t).sort(), ["prefill", "vision"]);
  assert.ok(t.vision.shares.some((e) => e.key.startsWith("attention.")), JSON.stringify(t.vision));
  const layers = t.prefill.shares.find((e) => e.key.startsWith("attention."))!;
  assert.equal(layers.count, 2, "one prefill attention per layer of the tiny model, one chunk");
  for (const q of [t.vision, t.prefill]) {
    const sum = q.shares.reduce((a, e) => a + e.us, 0);
    assert.ok(q.kernels_us > 0 && Math.abs(sum - q.kernels_us) < 0.1 * q.shares.length + 0.1);
  }
});

Deno.test("cardBytesPerS() divides by the H200's 4.8 TB/s on an H200 and by the H100's 3.35 TB/s otherwise", () => {
  assert.equal(cardBytesPerS("NVIDIA H200"), 4.8e12);
  assert.equal(cardBytesPerS("NVIDIA H100 80GB HBM3"), 3.35e12);
  assert.equal(cardBytesPerS("llvmpipe (LLVM 15.0.6, 256 bits)"), 3.35e12);
});

Deno.test("runBench() refuses a --max-context the prompt, answer and follow-up do not fit, before loading", async () => {
  const o = parseArgs([
    "--shape",
    "tiny",
    "--prompt-tokens",
    "8",
    "--new-tokens",
    "4",
    "--followup",
    "10",
    "--max-context",
    "16",
  ]);
  await assert.rejects(
    async () => runBench(o, await sharedGpu()),
    (e: Error) =>
      e instanceof InvalidInputError &&
      e.message.startsWith("--max-context 16 is below the 23 tokens this run needs") &&
      e.message.includes("a 10-token follow-up"),
  );
});

Deno.test("optionReader() gives the value after a name, the default without it, and names a missing one", () => {
  const opt = optionReader("bench/x.ts", ["--a", "1", "--b", "two"]);
  assert.equal(opt("--a"), "1");
  assert.equal(opt("--b", "3"), "two");
  assert.equal(opt("--c", "3"), "3");
  assert.throws(
    () => opt("--c"),
    (e) => e instanceof InvalidInputError && /bench\/x.ts: --c is required/.test(e.message),
  );
});
