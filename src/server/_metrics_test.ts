import assert from "node:assert/strict";
import { Metrics } from "./_metrics.ts";
import type { GenerationResult } from "../generate/types.ts";

function result(reason: GenerationResult["finishReason"], tokens: number, decodeMs: number) {
  return {
    text: "",
    finishReason: reason,
    usage: { promptTokens: 30, completionTokens: tokens, imageTokens: 4, cachedTokens: 10 },
    timings: { visionMs: 1, prefillMs: 2, decodeMs, tokensPerSecond: 0 },
  } as unknown as GenerationResult;
}

/** The value of the series `key` (name and labels as written) in an exposition text. */
function value(text: string, key: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${key} `));
  assert.ok(line, `no series ${key} in\n${text}`);
  return Number(line.slice(key.length + 1));
}

Deno.test("Metrics renders vLLM-named counters, gauges and cumulative histograms in the text format", () => {
  const m = new Metrics();
  m.model = 'a"b';
  const empty = m.render({ running: 0, waiting: 0 });
  assert.equal(value(empty, 'qvq:generation_tokens_total{model_name="a\\"b"}'), 0);
  assert.ok(!empty.includes("qvq:request_success_total{")); // no reason seen yet
  m.finished(result("stop", 11, 100)); // 10 decoded tokens in 0.1 s: 0.01 s each
  m.finished(result("length", 1, 0)); // no decode step: no time per token
  m.firstToken(0.25);
  m.ended(3);
  m.queued(0.01);
  m.response("/v1/chat/completions", 200);
  m.response("/v1/chat/completions", 200);
  m.response("/v1/chat/completions", 400);
  const text = m.render({ running: 2, waiting: 3 });
  const l = 'model_name="a\\"b"';
  assert.equal(value(text, `qvq:num_requests_running{${l}}`), 2);
  assert.equal(value(text, `qvq:num_requests_waiting{${l}}`), 3);
  assert.equal(value(text, `qvq:request_success_total{${l},finished_reason="stop"}`), 1);
  assert.equal(value(text, `qvq:request_success_total{${l},finished_reason="length"}`), 1);
  assert.equal(value(text, `qvq:prompt_tokens_total{${l}}`), 60);
  assert.equal(value(text, `qvq:prompt_tokens_cached_total{${l}}`), 20);
  assert.equal(value(text, `qvq:prompt_image_tokens_total{${l}}`), 8);
  assert.equal(value(text, `qvq:generation_tokens_total{${l}}`), 12);
  assert.equal(
    value(text, `qvq:http_responses_total{${l},route="/v1/chat/completions",status="200"}`),
    2,
  );
  assert.equal(
    value(text, `qvq:http_responses_total{${l},route="/v1/chat/completions",status="400"}`),
    1,
  );
  // Buckets count every observation at or below their bound.
  assert.equal(value(text, `qvq:time_to_first_token_seconds_bucket{${l},le="0.2"}`), 0);
  assert.equal(value(text, `qvq:time_to_first_token_seconds_bucket{${l},le="0.3"}`), 1);
  assert.equal(value(text, `qvq:time_to_first_token_seconds_bucket{${l},le="+Inf"}`), 1);
  assert.equal(value(text, `qvq:time_to_first_token_seconds_sum{${l}}`), 0.25);
  assert.equal(value(text, `qvq:time_per_output_token_seconds_count{${l}}`), 1);
  assert.equal(value(text, `qvq:time_per_output_token_seconds_bucket{${l},le="0.01"}`), 1);
  assert.equal(value(text, `qvq:time_per_output_token_seconds_bucket{${l},le="0.005"}`), 0);
  assert.equal(value(text, `qvq:e2e_request_latency_seconds_bucket{${l},le="2.5"}`), 0);
  assert.equal(value(text, `qvq:e2e_request_latency_seconds_bucket{${l},le="5"}`), 1);
  assert.equal(value(text, `qvq:request_queue_time_seconds_count{${l}}`), 1);
  // Every series has its HELP and TYPE before it.
  for (const name of ["qvq:num_requests_running", "qvq:generation_tokens_total"]) {
    assert.match(
      text,
      new RegExp(`# HELP ${name} .+\\n# TYPE ${name} (gauge|counter)\\n${name}\\{`),
    );
  }
  assert.match(text, /# TYPE qvq:e2e_request_latency_seconds histogram\n/);
  assert.ok(text.endsWith("\n"));
});

Deno.test("Metrics counts responses from before the model loaded under its name, in one series", () => {
  const m = new Metrics();
  m.response("/health", 503); // while loading: no name yet
  m.model = "qwen";
  m.response("/health", 503);
  const text = m.render({ running: 0, waiting: 0 });
  assert.equal(
    value(text, 'qvq:http_responses_total{model_name="qwen",route="/health",status="503"}'),
    2,
  );
  assert.ok(!text.includes('model_name=""'), text);
});
