import assert from "node:assert/strict";
import type { BenchResult } from "./main.ts";
import { shortKey, summarize } from "./summary.ts";

const base: BenchResult = {
  shape: "qwen2-vl-7b",
  quant: "f16",
  device: "NVIDIA H100 80GB HBM3",
  load_s: 0.49,
  load_source: "synthetic",
  vision_s: 0.22,
  prefill_s: 0.44,
  ttft_s: 0.62,
  decode_tok_s: 136.03,
  gpu_mem_gb: 16.8,
  weights_gb: 16.585,
  bytes_per_token: 14200402944,
  roofline_fraction: 0.5766,
  card_bytes_per_s: 3.35e12,
  prompt_tokens: 478,
  image_tokens: 391,
  image_patches: 1564,
  new_tokens: 126,
  dispatches_per_step: 145,
};

Deno.test("shortKey() drops binding-slot defines from a variant key", () => {
  assert.equal(
    shortKey("linear.main[BIAS,GEMV,KC_BINDING=7,NORM,NW_BINDING=3,ROPE,Y_BINDING=4]"),
    "linear.main[BIAS,GEMV,NORM,ROPE]",
  );
  assert.equal(shortKey("state.advance[]"), "state.advance[]");
});

Deno.test("summarize() gives a row per run and the top kernels of profiled runs", () => {
  const md = summarize([
    { ...base, load_s: 1.28, load_gb_s: 3.454, load_source: "checkpoint" },
    {
      ...base,
      decode_profile: {
        step_us: 7351.3,
        kernels_us: 7300.2,
        shares: [{ key: "linear.main[GEMV,NORM,NW_BINDING=2]", count: 29, us: 3000.5 }],
      },
    },
  ]).split("\n");
  assert.equal(
    md[2],
    "| qwen2-vl-7b | f16 | 478 / 391 | 1.28 (3.454 GB/s) | 0.22 | 0.44 | 0.62 | 136.03 | 0.5766 | 145 |",
  );
  assert.equal(md[3].split("|")[4].trim(), "0.49");
  // A run with the int8 vision tower says so in its weights column.
  assert.equal(
    summarize([{ ...base, vision_quant: "q8" }]).split("\n")[2].split("|")[2].trim(),
    "f16, vision q8",
  );
  // So does an f16 KV cache (f32 is the default; older lines have no kv_cache: f32).
  const label = (r: Partial<BenchResult>) =>
    summarize([{ ...base, ...r }]).split("\n")[2].split("|")[2].trim();
  assert.equal(label({ quant: "q4", kv_cache: "f16" }), "q4, KV f16");
  assert.equal(label({ kv_cache: "f32" }), "f16");
  assert.equal(
    label({ quant: "q4", vision_quant: "q8", kv_cache: "f16" }),
    "q4, vision q8, KV f16",
  );
  assert.ok(
    md.includes("qwen2-vl-7b f16: decode step 7351.3 µs, its 145 dispatches alone 7300.2 µs:"),
  );
  assert.equal(md.at(-1), "| 3000.5 | 29 | `linear.main[GEMV,NORM]` |");
});

Deno.test("summarize() lists the top kernels of the vision tower and prefill of --profile runs", () => {
  const md = summarize([{
    ...base,
    ttft_profile: {
      vision: {
        kernels_us: 2000,
        shares: [
          { key: "attention.vision[HD=80]", count: 32, us: 1500 },
          { key: "linear.main[F16,Y_BINDING=3]", count: 128, us: 500 },
        ],
      },
    },
  }]).split("\n");
  const i = md.indexOf(
    "qwen2-vl-7b f16, 478 / 391 tokens: vision, its 160 dispatches alone 2000 µs:",
  );
  assert.ok(i > 0, md.join("\n"));
  assert.deepEqual(md.slice(i + 2), [
    "| µs | × | kernel variant |",
    "| -- | - | -------------- |",
    "| 1500 | 32 | `attention.vision[HD=80]` |",
    "| 500 | 128 | `linear.main[F16]` |",
  ]);
});
