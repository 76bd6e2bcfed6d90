/**
 * bench/_soak.ts at the tiny model's scale: three clients at once against a listening server (two
 * generations at once, batched), two rounds of a seeded mix of streams (some left mid-answer),
 * whole chats with `n`, JSON mode and logprobs, scoring, bursts of one image prompt, Ollama's
 * /api/chat, stored Responses read back, malformed requests. What a concurrency bug breaks: an
 * answer's shape or budget, an error the server logs, a generation left running, GPU buffers lost
 * round after round, the same greedy answer's bits.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("the server soaked by clients at once: every answer whole, nothing logged, left running or lost, the same greedy bits after", async () => {
  const fixture = "tests/fixtures/tiny-qwen2vl";
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      "bench/_soak.ts",
      "--model",
      fixture,
      "--image",
      `${fixture}/reference/case0_0.png`,
      "--image2",
      `${fixture}/reference/case1_0.png`,
      "--clients",
      "3",
      "--requests",
      "8",
      "--rounds",
      "2",
      "--max-tokens",
      "12",
      "--parallel",
      "2",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(300_000),
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  assert.equal(out.code, 0, text(out.stderr));
  const r = JSON.parse(text(out.stdout).trim().split("\n").at(-1)!);
  const tally = r.tally as Record<string, Record<string, number>>;
  const sent = Object.values(tally).reduce((n, t) => n + t.ok + t.left + t.refused + t.fail, 0);
  // 3 clients × 8 requests × 2 rounds (a burst is three), plus the warm-up's four; the seeds
  // (fixed) give every kind of request at least once.
  assert.ok(sent >= 52, JSON.stringify(tally));
  const kinds = ["stream", "whole", "score", "burst", "ollama", "responses", "bad"];
  assert.deepEqual(Object.keys(tally).sort(), kinds.sort());
  assert.ok(kinds.every((k) => tally[k].ok > 0), JSON.stringify(tally));
  assert.deepEqual(r.failures, []);
  assert.ok(Object.values(tally).every((t) => t.fail === 0), JSON.stringify(tally));
  assert.deepEqual(r.server_errors, []);
  assert.equal(r.idle, true);
  assert.equal(r.same_greedy_answer, true);
  assert.ok(r.completion_tokens > 0);
  const { rounds } = r.live_gpu_bytes as { baseline: number; rounds: number[] };
  assert.equal(rounds.length, 2);
  assert.equal(rounds[1], rounds[0], "GPU buffers not destroyed grew from one round to the next");
});
