/**
 * Turns bench/main.ts JSON lines into the Markdown tables BENCHMARKS.md records: one row per run,
 * then, for runs made with --profile, the kernels that take most of a decode step, of the vision
 * tower and of prefill.
 *
 *   deno run -A bench/summary.ts suite.jsonl
 * @module
 */
import type { BenchResult } from "./main.ts";
import type { StepProfile } from "./_profile.ts";

/** Decode-step kernels listed per profiled run. */
const TOP_KERNELS = 6;

/** A variant key without its binding-slot defines (`linear.main[GEMV,NORM,…]`). */
export function shortKey(key: string): string {
  return key.replace(/[A-Z_]*BINDING=\d+,?/g, "").replace(/,\]/, "]");
}

/**
 * The weights column: the decoder's weights, then what differs from the default — a q8 vision
 * tower, an f16 KV cache.
 */
function weightsLabel(r: BenchResult): string {
  return [
    r.quant,
    ...(r.vision_quant ? [`vision ${r.vision_quant}`] : []),
    ...(r.kv_cache === "f16" ? ["KV f16"] : []),
  ].join(", ");
}

/** The Markdown tables for `results`. */
export function summarize(results: readonly BenchResult[]): string {
  const rows = results.map((r) =>
    [
      r.shape,
      weightsLabel(r),
      `${r.prompt_tokens} / ${r.image_tokens}`,
      r.load_gb_s !== undefined ? `${r.load_s} (${r.load_gb_s} GB/s)` : `${r.load_s}`,
      r.vision_s,
      r.prefill_s,
      r.ttft_s,
      r.decode_tok_s,
      r.roofline_fraction,
      r.dispatches_per_step,
    ].join(" | ")
  );
  const out = [
    "| shape | weights | prompt / image tokens | load_s | vision_s | prefill_s | ttft_s | decode tok/s | roofline | dispatches/step |",
    "| ----- | ------- | --------------------- | ------ | -------- | --------- | ------ | ------------ | -------- | --------------- |",
    ...rows.map((r) => `| ${r} |`),
  ];
  for (const r of results) {
    const p = r.decode_profile;
    if (p) {
      out.push(...kernelTable(
        `${r.shape} ${r.quant}: decode step ${p.step_us} µs, its ${r.dispatches_per_step} ` +
          `dispatches alone ${p.kernels_us} µs:`,
        "µs / step",
        p,
      ));
    }
    for (const [label, q] of Object.entries(r.ttft_profile ?? {})) {
      const count = q.shares.reduce((a, e) => a + e.count, 0);
      out.push(...kernelTable(
        `${r.shape} ${r.quant}, ${r.prompt_tokens} / ${r.image_tokens} tokens: ${label}, its ` +
          `${count} dispatches alone ${q.kernels_us} µs:`,
        "µs",
        q,
      ));
    }
  }
  return out.join("\n");
}

/** A titled table of a profile's largest kernel variants. */
function kernelTable(title: string, unit: string, p: StepProfile): string[] {
  return [
    "",
    title,
    "",
    `| ${unit} | × | kernel variant |`,
    `| ${"-".repeat(unit.length)} | - | -------------- |`,
    ...p.shares.slice(0, TOP_KERNELS).map((e) =>
      `| ${e.us} | ${e.count} | \`${shortKey(e.key)}\` |`
    ),
  ];
}

if (import.meta.main) {
  const file = Deno.args[0];
  if (!file) {
    console.error("usage: deno run -A bench/summary.ts suite.jsonl");
    Deno.exit(2);
  }
  const lines = Deno.readTextFileSync(file).split("\n").filter((l) => l.trim());
  console.log(summarize(lines.map((l) => JSON.parse(l) as BenchResult)));
}
