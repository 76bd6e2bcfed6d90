/**
 * The server for `deno serve` (`deno task serve`): the model named by `QVQ_MODEL` (a directory or
 * a Hugging Face hub id; default: the bundled tiny model, which has random weights and proves the
 * pipeline, not the answers) behind the OpenAI-compatible API and the chat page.
 *
 * The port comes from `deno serve --port` (`PORT` in `deno task serve`). The server listens at
 * once; `/health` says "loading" until the model is ready, and requests wait for it. Ollama's
 * `keep_alive: 0` unloads the model (its worker frees the GPU); the next request loads it again.
 *
 * Environment:
 * - `QVQ_MODEL`: model directory or hub id (e.g. `Qwen/QVQ-72B-Preview`, `Qwen/Qwen2-VL-2B-Instruct`)
 * - `QVQ_QUANT`: `q8` or `q4` quantize the decoder's matrices while loading (default `f16`: none)
 * - `QVQ_VISION_QUANT`: `q8` quantizes the vision tower's matrices and runs them as int8 GEMMs
 *   (faster image encoding, image embeddings ~2 % off; default `f16`: none)
 * - `QVQ_KV_CACHE_DTYPE`: `f16` or `f32`, the KV cache's type (default f32; f16 halves its memory)
 * - `QVQ_WARMUP=0`: skip the warm-up generations after loading (a faster start, a slower first
 *   request)
 * - `QVQ_PROMPT_CACHE`: conversations whose KV cache is kept (default 1; `0` / `off`: none)
 * - `QVQ_API_KEY`: require `Authorization: Bearer <key>` on /v1, /tokenize, /detokenize and /api
 * - `QVQ_MAX_QUEUE`: requests that may wait for the model (default 16)
 * - `QVQ_ALLOW_REMOTE_IMAGES=1`: fetch http(s) image URLs (public addresses only)
 * - `QVQ_METRICS=0`: no Prometheus metrics at `/metrics` (served by default, without the key)
 * - `QVQ_CORS`: cross-origin access to every route (the API, /health, /metrics) — any origin by
 *   default; `off`, or a comma-separated list of origins
 * - `QVQ_SERVED_MODEL_NAME`: the name the model is served as (vLLM's `--served-model-name`);
 *   requests may give it or the model's id
 * - `QVQ_RESPONSE_STORE`: /v1/responses answers kept in memory for `previous_response_id`
 *   (default 1000, up to 64 MiB; `0` / `off`: none)
 * - `HF_TOKEN`, `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_OFFLINE`: as for huggingface_hub
 *
 * `deno task serve --help` prints them with their defaults (`SERVE_USAGE` in src/server/_env.ts).
 *
 * @example
 * ```sh
 * QVQ_MODEL=Qwen/Qwen2-VL-2B-Instruct deno serve -A --port 8000 src/server/serve.ts
 * ```
 * @module
 */
import { createApp } from "./app.ts";
import { EngineClosedError, QvqError } from "../errors.ts";
import { describeWeights, loadWorkerEngine, type WorkerEngine } from "./worker_engine.ts";
import { loadOptionsFromEnv, modelFromEnv, optionsFromEnv } from "./_env.ts";

const env = (name: string) => Deno.env.get(name);

/** How long the server lets its last responses go out before it exits on a failed engine. */
const EXIT_GRACE_MS = 500;

/** A setting from the environment; a bad one is one line (which variable, why) and exit 2. */
function setting<T>(read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (!(e instanceof QvqError)) throw e;
    console.error(`qvq: ${e.message}`);
    Deno.exit(2);
  }
}

const model = setting(() => modelFromEnv(env, import.meta.url));
const options = setting(() => optionsFromEnv(env));
const loadOptions = setting(() => loadOptionsFromEnv(env));
let loads = 0;

/**
 * Loads the model — at once, and again for the first request after an unload (Ollama's
 * `keep_alive: 0`) — and watches the engine. It runs in a worker: its thread waits for the GPU,
 * this one keeps answering HTTP. It warms up (src/server/_warmup.ts) unless QVQ_WARMUP=0: the
 * first request finds its GPU pipelines compiled.
 */
function load(): Promise<WorkerEngine> {
  const again = loads++ > 0;
  if (again) console.error(`qvq: loading ${model} again (it was unloaded: keep_alive 0)`);
  const engine = loadWorkerEngine(model, { warmUp: true, ...loadOptions });
  engine.then(
    (e) => {
      const name = options.servedModelName;
      const as = name && name !== e.modelId ? ` as "${name}"` : "";
      console.error(
        `qvq: serving ${e.modelId}${as} (from ${model}; ${describeWeights(e.weightTypes)}` +
          `${(e.parallel ?? 1) > 1 ? `; ${e.parallel} requests at once` : ""})`,
      );
      // A model that can answer no more (its GPU device lost) ends the server, as vLLM's dead
      // engine does, so a supervisor (systemd, a container's restart policy) starts a new one. The
      // answers in progress have their error by then; a moment lets their last bytes go out.
      e.failed.then(async (error) => {
        console.error(`qvq: the model can answer no more: ${error.message}; exiting`);
        await e.closed;
        setTimeout(() => Deno.exit(1), EXIT_GRACE_MS);
      });
    },
    (error) => {
      // Stopped by a signal while loading: that stop answers the waiting requests and exits.
      if (error instanceof EngineClosedError) return;
      const why = error instanceof Error ? error.message : error;
      // Loading again failed (the GPU's memory taken meanwhile?): the requests that waited have
      // the error; the next one tries again.
      if (again) {
        console.error(`qvq: cannot load the model "${model}" again: ${why}`);
        return;
      }
      // A server without its model is of no use: say why and stop.
      console.error(`qvq: cannot load the model "${model}": ${why}`);
      Deno.exit(1);
    },
  );
  return engine;
}

/** The fetch handler `deno serve` runs. */
export default createApp(load, options) satisfies Deno.ServeDefaultExport;
