/**
 * Server settings from environment variables, for `deno serve src/server/serve.ts`.
 * @module
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { InvalidInputError } from "../errors.ts";
import { parseQuant, parseVisionQuant } from "../model/quantize.ts";
import { checkKvDType } from "../../kernels/kv_cache.ts";
import type { ServerOptions } from "./app.ts";
import type { LoadEngineOptions } from "./_engine.ts";
import { MAX_PARALLEL } from "../generate/types.ts";

/** How a switch variable says on, and off (case-insensitive). */
const ON = /^(1|true|yes|on)$/i;
const OFF = /^(0|false|no|off)$/i;

/** A switch variable's value: true (on), false (off), or undefined when it is neither. */
function onOff(v: string): boolean | undefined {
  return ON.test(v) ? true : OFF.test(v) ? false : undefined;
}

/** Reads one environment variable (undefined when unset). */
export type Env = (name: string) => string | undefined;

function wholeNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new InvalidInputError(`${name} must be a whole number ≥ 0; got "${value}".`);
  }
  return n;
}

/**
 * `QVQ_MODEL`, or else the bundled tiny model (random weights: it proves the pipeline, not the
 * answers) when running from a checkout (`moduleUrl` is a file: URL).
 */
export function modelFromEnv(env: Env, moduleUrl: string): string {
  const model = env("QVQ_MODEL");
  if (model) return model;
  const tiny = new URL("../../tests/fixtures/tiny-qwen2vl", moduleUrl);
  if (tiny.protocol !== "file:") {
    throw new InvalidInputError(
      'Set QVQ_MODEL to a model directory or a hub id such as "Qwen/Qwen2-VL-2B-Instruct" ' +
        "(the bundled tiny model only ships with a checkout).",
    );
  }
  return fileURLToPath(tiny);
}

/**
 * How to load the model, from `QVQ_QUANT`: q8 or q4 quantize the decoder's matrices while
 * loading; f16 or unset/empty: no quantization. `QVQ_VISION_QUANT`: q8 quantizes the vision
 * tower's matrices (int8 GEMMs); f16 or unset/empty: none. `QVQ_KV_CACHE_DTYPE`: f16 or f32, the
 * KV cache's element type; unset/empty: the default (f32). `QVQ_PROMPT_CACHE`: 0 / false / no /
 * off turns the prompt cache off (PipelineOptions.promptCache; e.g. for a server whose users must
 * not learn, through `cached_tokens` or timing, how the previous request began); 1 / true / yes /
 * on or unset/empty: on, one conversation; a whole number N > 1: the last N conversations.
 * `QVQ_PARALLEL`: N generations run at once (PipelineOptions.parallel; 1 to 64, default 1), each
 * with a KV cache of its own, decoding as one batch (f16 / q4 weights) or taking turns on the
 * GPU. `QVQ_BATCH_DECODE`: 0 / false / no / off — they take turns (PipelineOptions.batchDecode
 * false); 1 / true / yes / on or unset/empty: nothing said (batched where the weights allow).
 * `QVQ_WARMUP`: 0 / false / no / off: `warmUp: false`, no warm-up generation after loading (a
 * faster start, a slower first request; the server warms up otherwise); 1 / true / yes / on or
 * unset/empty: nothing said.
 * @throws InvalidInputError for any other value, naming the variable and the accepted values
 */
export function loadOptionsFromEnv(
  env: Env,
): Pick<
  LoadEngineOptions,
  "quant" | "visionQuant" | "kvCacheDtype" | "promptCache" | "parallel" | "batchDecode" | "warmUp"
> {
  const parse = <T>(name: string, parser: (text: string) => T): T | undefined => {
    const text = env(name);
    if (text === undefined || text === "") return undefined;
    try {
      return parser(text);
    } catch (e) {
      throw e instanceof InvalidInputError ? new InvalidInputError(`${name}: ${e.message}`) : e;
    }
  };
  const quant = parse("QVQ_QUANT", parseQuant);
  const visionQuant = parse("QVQ_VISION_QUANT", parseVisionQuant);
  const kvCacheDtype = parse("QVQ_KV_CACHE_DTYPE", (v) => checkKvDType(v, "the KV cache dtype"));
  const promptCache = parse("QVQ_PROMPT_CACHE", (v): boolean | number => {
    const on = onOff(v);
    if (on !== undefined) return on;
    if (/^[0-9]+$/.test(v) && Number(v) <= 1024) return Number(v);
    throw new InvalidInputError(
      `"${v}" is neither on (1, true, yes, on), off (0, false, no, off) nor a number of ` +
        "conversations to keep (2 to 1024)",
    );
  });
  const parallel = parse("QVQ_PARALLEL", (v): number => {
    if (/^[0-9]+$/.test(v) && Number(v) >= 1 && Number(v) <= MAX_PARALLEL) return Number(v);
    throw new InvalidInputError(
      `"${v}" is not a number of generations to run at once (1 to ${MAX_PARALLEL})`,
    );
  });
  const onOrOff = (v: string): boolean => {
    const on = onOff(v);
    if (on !== undefined) return on;
    throw new InvalidInputError(
      `"${v}" is neither on (1, true, yes, on) nor off (0, false, no, off)`,
    );
  };
  const warmUp = parse("QVQ_WARMUP", onOrOff);
  const batchDecode = parse("QVQ_BATCH_DECODE", onOrOff);
  return {
    ...(warmUp === false ? { warmUp } : {}),
    ...(quant ? { quant } : {}),
    ...(visionQuant ? { visionQuant } : {}),
    ...(kvCacheDtype ? { kvCacheDtype } : {}),
    ...(promptCache !== undefined && promptCache !== true ? { promptCache } : {}),
    ...(parallel !== undefined && parallel !== 1 ? { parallel } : {}),
    ...(batchDecode === false ? { batchDecode } : {}),
  };
}

/** An on/off variable: true, false, or undefined where unset or empty. */
function switchOf(env: Env, name: string): boolean | undefined {
  const v = env(name)?.trim();
  if (!v) return undefined;
  const on = onOff(v);
  if (on === undefined) {
    throw new InvalidInputError(
      `${name}: "${v}" is neither on (1, true, yes, on) nor off (0, false, no, off)`,
    );
  }
  return on;
}

/**
 * Server options from `QVQ_API_KEY`, `QVQ_MAX_QUEUE`, `QVQ_ALLOW_REMOTE_IMAGES`, `QVQ_METRICS`
 * (off: no `/metrics`), `QVQ_CORS` (0 / false / no / off: no cross-origin access; unset, `*`,
 * 1 / true: any origin; else a comma-separated list of origins), `QVQ_SERVED_MODEL_NAME` (the
 * name the model is served as, vLLM's `--served-model-name`; unset or blank: its id) and
 * `QVQ_RESPONSE_STORE` (how many /v1/responses answers are kept in memory for
 * `previous_response_id`; 0 / off: none, where a server must keep no conversations).
 */
export function optionsFromEnv(env: Env): ServerOptions {
  const options: ServerOptions = {};
  const key = env("QVQ_API_KEY");
  if (key) options.apiKey = key;
  const name = env("QVQ_SERVED_MODEL_NAME")?.trim();
  if (name) options.servedModelName = name;
  const maxQueue = wholeNumber("QVQ_MAX_QUEUE", env("QVQ_MAX_QUEUE"));
  if (maxQueue !== undefined) options.maxQueue = maxQueue;
  if (switchOf(env, "QVQ_ALLOW_REMOTE_IMAGES")) options.allowRemoteImages = true;
  if (switchOf(env, "QVQ_METRICS") === false) options.metrics = false;
  // A number is a count (1 keeps one response), so only the on / off words are switches here.
  const store = env("QVQ_RESPONSE_STORE")?.trim();
  if (store && !/^(true|yes|on)$/i.test(store)) {
    options.responseStore = {
      maxResponses: /^(false|no|off)$/i.test(store) ? 0 : wholeNumber("QVQ_RESPONSE_STORE", store)!,
    };
  }
  const cors = (env("QVQ_CORS") ?? "").trim();
  if (OFF.test(cors)) options.cors = false;
  else if (cors && cors !== "*" && !ON.test(cors)) {
    options.cors = cors.split(",").map((o) => o.trim()).filter((o) => o);
  }
  return options;
}

/**
 * `deno task serve --help`: the command line and the environment variables the server reads
 * (src/server/serve.ts, {@link loadOptionsFromEnv}, {@link optionsFromEnv}), with their defaults.
 */
export const SERVE_USAGE = `usage: deno task serve [--port <n>] [--host <address>]

Serves a Qwen2-VL or QVQ model: a chat page at /, OpenAI's API at /v1 (chat/completions,
completions, responses, models), vLLM's /tokenize and /detokenize, Ollama's API at /api,
/health and /metrics.

options:
  --port <n>         the port to listen on (default: PORT, else 8000; 0: any free port)
  --host <address>   the address to listen on (default 127.0.0.1: this machine only;
                     0.0.0.0: every network interface — set QVQ_API_KEY then)
  -h, --help         print this and exit

environment:
  QVQ_MODEL                model directory or Hugging Face hub id, e.g. Qwen/Qwen2-VL-2B-Instruct
                           (default: the bundled tiny model, random weights)
  QVQ_QUANT                q8 or q4: quantize the decoder's weights while loading (default f16:
                           as loaded)
  QVQ_VISION_QUANT         q8: quantize the vision tower's weights (default f16: none)
  QVQ_KV_CACHE_DTYPE       f32 (default) or f16 (half the KV cache's memory)
  QVQ_PROMPT_CACHE         on (default: one conversation), N (the last N conversations) or off
  QVQ_PARALLEL             N: requests that generate at once, each with a KV cache of its own,
                           decoding as one batch (default 1: one at a time, others queue)
  QVQ_BATCH_DECODE         off: those take turns on the GPU, not one batch (default on)
  QVQ_WARMUP               off: no warm-up generations after loading (default on)
  QVQ_API_KEY              require "Authorization: Bearer <key>" on /v1, /tokenize, /detokenize
                           and /api (default: no key)
  QVQ_MAX_QUEUE            requests that may wait for the model; more get 503 (default 16)
  QVQ_ALLOW_REMOTE_IMAGES  on: fetch http(s) image URLs, public addresses only (default off)
  QVQ_CORS                 off, or the origins allowed, comma-separated (default: any origin)
  QVQ_METRICS              off: no Prometheus metrics at /metrics (default on)
  QVQ_SERVED_MODEL_NAME    the name the model is served as in answers, /v1/models and /api/tags
                           (requests may give it or the model's id; default: the model's id)
  QVQ_RESPONSE_STORE       /v1/responses answers kept in memory for previous_response_id
                           (default 1000, ≤ 64 MiB; 0 / off: none)
  PORT                     the port where --port is not given
  HF_TOKEN, HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE, HF_HUB_DOWNLOAD_TIMEOUT
                           as huggingface_hub reads them
  (on: 1, true, yes or on; off: 0, false, no or off)`;

/** `deno task serve`'s command line: `--help` asked for, or where to listen. */
export type ServeArgs = { help: true } | { help: false; port: number; hostname: string };

/**
 * `deno task serve`'s command line: `--help` / `-h` (beside any other option), else where it
 * listens: `--port`, else `PORT`, else 8000; `--host`, else 127.0.0.1 — this machine only, as
 * Ollama and llama.cpp's server: with no API key a network would get the model (`--host 0.0.0.0`
 * serves it; set QVQ_API_KEY then).
 * @throws InvalidInputError for an unknown option or a bad port or host
 */
export function serveArgs(args: string[], env: Env): ServeArgs {
  // Help first: asked beside an option misspelt, the usage is what helps.
  if (args.includes("--help") || args.includes("-h")) return { help: true };
  const { values } = parseArgs({
    args,
    options: { port: { type: "string" }, host: { type: "string" } },
    strict: true,
  });
  const text = values.port ?? env("PORT") ?? "8000";
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) {
    throw new InvalidInputError(`The port must be 0..65535; got "${text}".`);
  }
  const hostname = values.host ?? "127.0.0.1";
  if (!/^[\w.:-]+$/.test(hostname)) {
    throw new InvalidInputError(
      `The host must be an address or a name like 127.0.0.1, 0.0.0.0 or ::; got "${hostname}".`,
    );
  }
  return { help: false, port, hostname };
}
