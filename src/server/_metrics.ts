/**
 * The server's Prometheus metrics (`GET /metrics`, text format 0.0.4), named after vLLM's so its
 * dashboards read them with the prefix changed (`vllm:` → `qvq:`): requests running and waiting,
 * tokens (prompt, cached, image, generated), finished requests by reason, HTTP responses by route
 * and status (and those that failed after their 200 was sent), and histograms of time to first token, time per output token, end-to-end latency and
 * queue time. Every series carries `model_name`.
 * @module
 */
import type { GenerationResult } from "../generate/types.ts";

/** Upper bounds (seconds) of the latency histograms' buckets. */
const TTFT_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10, 20, 40, 80];
const TPOT_BUCKETS = [0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5];
const E2E_BUCKETS = [0.3, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, 600, 1200];

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }
  observe(x: number): void {
    this.bounds.forEach((b, i) => {
      if (x <= b) this.counts[i]++;
    });
    this.sum += x;
    this.count++;
  }
}

/** What a scrape reads besides the counters: the queue's state now. */
export interface QueueState {
  running: number;
  waiting: number;
}

/** The counters and histograms of one server. */
export class Metrics {
  #model = "";
  // name and labels but the model's ("name{labels}") → the counter, labelled as the model is named
  // when rendered: responses before the model loaded (/health's 503s) count under its name then,
  // not in a series of model_name="" of their own.
  readonly #counters = new Map<
    string,
    { name: string; labels: Record<string, string>; value: number }
  >();
  readonly #ttft = new Histogram(TTFT_BUCKETS);
  readonly #tpot = new Histogram(TPOT_BUCKETS);
  readonly #e2e = new Histogram(E2E_BUCKETS);
  readonly #queueTime = new Histogram(TTFT_BUCKETS);

  /** The served model's name, for the `model_name` label (set once it has loaded). */
  set model(name: string) {
    this.#model = name;
  }

  #add(name: string, labels: Record<string, string>, by: number): void {
    const key = `${name}${JSON.stringify(labels)}`;
    const counter = this.#counters.get(key) ?? { name, labels, value: 0 };
    counter.value += by;
    this.#counters.set(key, counter);
  }

  #labels(extra: Record<string, string> = {}): string {
    const all = { model_name: this.#model, ...extra };
    const text = Object.entries(all).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
    return `{${text}}`;
  }

  /** An HTTP response: its route's pattern (bounded, unlike paths) and status. */
  response(route: string, status: number): void {
    this.#add("qvq:http_responses_total", { route, status: String(status) }, 1);
  }

  /**
   * An HTTP response that failed after its 200 was sent (a held answer cut off, a stream ended on
   * an error event): its route and the status of its error.
   */
  failed(route: string, status: number): void {
    this.#add("qvq:http_responses_failed_total", { route, status: String(status) }, 1);
  }

  /** A request's turn came after `seconds` in the queue. */
  queued(seconds: number): void {
    this.#queueTime.observe(seconds);
  }

  /** A request's first token (text, or an echoed prompt) came `seconds` after it arrived. */
  firstToken(seconds: number): void {
    this.#ttft.observe(seconds);
  }

  /**
   * One generation (a choice) finished — also one its client left: the engine's record of it then
   * counts the tokens generated until it stopped ("abort").
   */
  finished(result: GenerationResult): void {
    const u = result.usage;
    this.#add("qvq:request_success_total", { finished_reason: result.finishReason }, 1);
    this.#add("qvq:prompt_tokens_total", {}, u.promptTokens);
    this.#add("qvq:prompt_tokens_cached_total", {}, u.cachedTokens);
    this.#add("qvq:prompt_image_tokens_total", {}, u.imageTokens);
    this.#add("qvq:generation_tokens_total", {}, u.completionTokens);
    const decoded = u.completionTokens - 1; // the first token comes with the prefill
    if (decoded > 0 && result.timings.decodeMs > 0) {
      this.#tpot.observe(result.timings.decodeMs / 1000 / decoded);
    }
  }

  /**
   * A request whose client left ended with no generation's record (it was still queued, or the
   * engine failed as it stopped): "abort", with no tokens.
   */
  aborted(): void {
    this.#add("qvq:request_success_total", { finished_reason: "abort" }, 1);
  }

  /** A request (all its choices) ended, `seconds` after it arrived. */
  ended(seconds: number): void {
    this.#e2e.observe(seconds);
  }

  /** The exposition text of every metric, the queue's gauges from `queue`. */
  render(queue: QueueState): string {
    const out: string[] = [];
    const help = (name: string, type: string, text: string) =>
      out.push(`# HELP ${name} ${text}`, `# TYPE ${name} ${type}`);
    help("qvq:num_requests_running", "gauge", "Requests generating now.");
    out.push(`qvq:num_requests_running${this.#labels()} ${queue.running}`);
    help(
      "qvq:num_requests_waiting",
      "gauge",
      "Requests waiting for their turn (in the queue, or for the model to load).",
    );
    out.push(`qvq:num_requests_waiting${this.#labels()} ${queue.waiting}`);
    // Counters with labels of their own have a series per value seen; the others one, from 0.
    const counters: [string, string, boolean][] = [
      ["qvq:request_success_total", "Generations finished, by finish reason.", true],
      ["qvq:prompt_tokens_total", "Prompt tokens of finished generations.", false],
      ["qvq:prompt_tokens_cached_total", "Prompt tokens the prompt cache served.", false],
      ["qvq:prompt_image_tokens_total", "Image tokens among the prompt tokens.", false],
      [
        "qvq:generation_tokens_total",
        "Tokens generated (an aborted request's too, up to its abort).",
        false,
      ],
      [
        "qvq:http_responses_total",
        "HTTP responses, by route and the status sent (an answer that failed after its 200 is a " +
        "200 here, and in qvq:http_responses_failed_total too).",
        true,
      ],
      [
        "qvq:http_responses_failed_total",
        "HTTP responses that failed after their 200 was sent (a held answer cut off, a stream " +
        "ended on an error event), by route and the status of their error.",
        true,
      ],
    ];
    for (const [name, text, labelled] of counters) {
      help(name, "counter", text);
      if (!labelled) {
        out.push(`${name}${this.#labels()} ${this.#counters.get(`${name}{}`)?.value ?? 0}`);
        continue;
      }
      for (const c of this.#counters.values()) {
        if (c.name === name) out.push(`${name}${this.#labels(c.labels)} ${c.value}`);
      }
    }
    const histograms: [string, Histogram, string][] = [
      [
        "qvq:time_to_first_token_seconds",
        this.#ttft,
        "From a request's arrival to its first token.",
      ],
      ["qvq:time_per_output_token_seconds", this.#tpot, "Decode time per token after the first."],
      ["qvq:e2e_request_latency_seconds", this.#e2e, "From a request's arrival to its end."],
      ["qvq:request_queue_time_seconds", this.#queueTime, "Time a request waited for its turn."],
    ];
    for (const [name, h, text] of histograms) {
      help(name, "histogram", text);
      h.bounds.forEach((b, i) => {
        out.push(`${name}_bucket${this.#labels({ le: String(b) })} ${h.counts[i]}`);
      });
      out.push(`${name}_bucket${this.#labels({ le: "+Inf" })} ${h.count}`);
      out.push(`${name}_sum${this.#labels()} ${h.sum}`);
      out.push(`${name}_count${this.#labels()} ${h.count}`);
    }
    return out.join("\n") + "\n";
  }
}

/** A label value as the text format quotes it. */
function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
