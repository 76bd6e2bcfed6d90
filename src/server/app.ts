/**
 * The OpenAI-compatible HTTP API as a Hono app: `POST /v1/chat/completions` (streaming or not,
 * text and images), `POST /v1/completions` (a raw prompt, as vLLM's), `POST /v1/responses`
 * (OpenAI's Responses API; the responses kept in memory, `GET`/`DELETE /v1/responses/{id}`,
 * `GET /v1/responses/{id}/input_items`),
 * `GET /v1/models`, vLLM's `POST /tokenize` and `/detokenize`, Ollama's API (`POST /api/chat`,
 * `/api/generate`, `GET /api/tags`, …: src/server/_ollama.ts), `GET /health`, and a chat web
 * page at `/`.
 *
 * @example Mount it in your own Hono app
 * ```ts ignore
 * import { Hono } from "hono";
 * import { createApp, Pipeline } from "@qvq/webgpu";
 *
 * const engine = await Pipeline.load("tests/fixtures/tiny-qwen2vl");
 * const app = new Hono();
 * app.route("/qvq", createApp(engine, { apiKey: "secret" }));
 * Deno.serve({ port: 8000 }, app.fetch);
 * ```
 * @module
 */
import { Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import type {
  ChatEngine,
  GenerateOptions,
  GenerationEvent,
  GenerationResult,
  PromptEcho,
} from "../generate/types.ts";
import { ContextLengthError, EngineClosedError, QvqError } from "../errors.ts";
import { MAX_STOP_STRINGS } from "../generate/options.ts";
import { badRequest, errorResponse, HttpError, toHttpError } from "./_errors.ts";
import type { ImagePolicy } from "./_images.ts";
import {
  chunkObject,
  combinedResult,
  type CompletionHeader,
  completionHeader,
  completionObject,
  deltaReader,
  type Echo,
  type Events,
  type Format,
  RunningUsage,
  shownResult,
  type StreamUsage,
  textChunkObject,
  textCompletionObject,
  textLogprobsObject,
  TextOffsets,
  toolFinish,
} from "./_openai.ts";
import { PAGE_HTML } from "./_page.ts";
import { GenerationQueue, type Ticket } from "./_queue.ts";
import { handOverImages } from "./worker_engine.ts";
import { within } from "../_async.ts";
import {
  type ChatRequest,
  imageSizes,
  loadMessages,
  parseChatRequest,
  parseCompletionRequest,
  parseDetokenizeRequest,
  parseTokenizeRequest,
  type RequestLimits,
  sizeMessages,
  type TextCompletionRequest,
} from "./_request.ts";
import {
  chatBodyOfResponses,
  inputItemsList,
  responsesError,
  responsesFormat,
  withItemIds,
} from "./_responses.ts";
import {
  loadedObject,
  modelEntry,
  namedModel,
  OLLAMA_API_VERSION,
  ollamaChat,
  ollamaChatFormat,
  ollamaError,
  ollamaErrorResponse,
  ollamaGenerate,
  ollamaGenerateFormat,
  type OllamaRequest,
  onceResponse,
  showObject,
  withoutOldest,
} from "./_ollama.ts";
import { sseResponse } from "./_sse.ts";
import { bodyReadError, CLIENT_CLOSED, readJson } from "./_json.ts";
import { Metrics } from "./_metrics.ts";
import { ResponseStore, type ResponseStoreLimits } from "./_response_store.ts";
import { ImageDecoder } from "./_decoder.ts";
import { answerUnrouted } from "./_routes.ts";
import { EngineHolder, type EngineSource, type Lease } from "./_engine_holder.ts";
import { type ToolRequest, toolSchemaError } from "./_tools.ts";

/** Limits and switches of the HTTP API; every field has a safe default. */
export interface ServerOptions {
  /**
   * Require `Authorization: Bearer <apiKey>` on /v1/*, /tokenize, /detokenize and Ollama's /api/*
   * (401 otherwise).
   * Default: no key.
   */
  apiKey?: string;
  /** Requests that may wait while one generates; more get 503 with Retry-After. Default 16. */
  maxQueue?: number;
  /**
   * `Retry-After` seconds sent with a 503 a client should send again: the queue full, or the server
   * shutting down (its successor, or another replica, answers the retry). Default 10.
   */
  retryAfterSeconds?: number;
  /** Largest request body in bytes (images travel base64 inside it); more is a 413. Default 32 MiB. */
  maxBodyBytes?: number;
  /** Largest image in bytes; more is a 413. Default 20 MiB. */
  maxImageBytes?: number;
  /**
   * Most images in one request — the whole conversation's, as a chat sends its history each turn.
   * Default 32.
   */
  maxImages?: number;
  /** Fetch http(s) `image_url`s. Default false: only `data:` URLs. */
  allowRemoteImages?: boolean;
  /** Let remote image fetches reach loopback/private/link-local addresses. Default false. */
  allowPrivateImageHosts?: boolean;
  /** Time limit for fetching one remote image, in ms. Default 10 000. */
  imageFetchTimeoutMs?: number;
  /** A streamed response idle this long (queued, or in a long prefill) gets an SSE comment. Default 15 000 ms. */
  keepAliveMs?: number;
  /** Default of the `stop_on_loop` request extension: end answers that repeat themselves. Default true. */
  stopOnLoop?: boolean;
  /** Serve the chat page at `/`. Default true. */
  webPage?: boolean;
  /**
   * Cross-origin access to every route (the API, /health, /metrics) for web apps served elsewhere
   * (CORS), `Retry-After` exposed to them: true lets any origin in, as llama.cpp's server and vLLM
   * do by default; a list, only those origins; false, none (no CORS headers). Default true.
   */
  cors?: boolean | string[];
  /**
   * Serve Prometheus metrics at `GET /metrics` (vLLM's names with the prefix `qvq:`; like vLLM's,
   * without the API key). Default true.
   */
  metrics?: boolean;
  /**
   * The name the model is served as (vLLM's `--served-model-name`): answers, `/v1/models`, Ollama's
   * `/api/tags` and the metrics give it; requests may name it or the engine's own `modelId`.
   * Default: the engine's `modelId`.
   */
  servedModelName?: string;
  /**
   * What `POST /v1/responses` keeps in memory of the responses it creates with `store` not false
   * (OpenAI's default), for `previous_response_id`, `item_reference` items and
   * `GET`/`DELETE /v1/responses/{id}`: the least recently used go first past `maxResponses`
   * (default 1000) or `maxBytes` of their JSON, images' data URLs included (default 64 MiB).
   * `{ maxResponses: 0 }` keeps none: such requests are refused, and answers say `store: false`.
   */
  responseStore?: ResponseStoreLimits;
}

type Settings =
  & Required<Omit<ServerOptions, "apiKey" | "servedModelName" | "responseStore">>
  & Pick<ServerOptions, "apiKey" | "servedModelName" | "responseStore">;
/**
 * What request parsing reads: the settings, what the engine's chat template writes, and (Ollama's
 * API) where images may be.
 */
type ParseSettings = Settings & Pick<RequestLimits, "defaultSystemPrompt" | "imagesInAnyRole">;

const DEFAULTS: Settings = {
  maxQueue: 16,
  retryAfterSeconds: 10,
  maxBodyBytes: 32 * 1024 * 1024,
  maxImageBytes: 20 * 1024 * 1024,
  maxImages: 32,
  allowRemoteImages: false,
  allowPrivateImageHosts: false,
  imageFetchTimeoutMs: 10_000,
  keepAliveMs: 15_000,
  stopOnLoop: true,
  webPage: true,
  cors: true,
  metrics: true,
};

/** Constant-time string comparison, so response timing does not reveal the key. */
function sameKey(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given), b = new TextEncoder().encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}

/**
 * Aborts `abort` when the client's request signal does, until the returned function is called.
 * Detach once the response is complete: Deno also aborts a request's signal after a successful
 * response (its legacy behaviour), which is not a disconnect.
 */
function follow(clientSignal: AbortSignal, abort: AbortController): () => void {
  const onGone = () => abort.abort(clientSignal.reason);
  if (clientSignal.aborted) onGone();
  else clientSignal.addEventListener("abort", onGone, { once: true });
  return () => clientSignal.removeEventListener("abort", onGone);
}

/**
 * The engine's events of `n` choices once the ticket's turn comes, each tagged with its index;
 * the turns are given back however they end. Choice 0 runs first; once its first event has come
 * (its prompt prefilled), the others run beside it on the places `more` gives — a place taken only
 * while no other request waits (GenerationQueue.free), asked at each event while choices are left
 * to begin — and one after another on those and the request's own: where the
 * engine runs several generations at once they decode together (one batch where it batches), each
 * prefilling only its prompt's last tokens from the running choice's rows (PromptCache.share).
 * Events of one choice come in order, those of different choices interleaved. With a seed, choice
 * i samples with seed ± i (the same request, the same answers); without, each draws its own. An
 * aborted choice ends them; an error ends the others (aborted) and is thrown. `onEnd` is called
 * once they have ended (the request's hold on the engine given back).
 */
async function* turnEvents(
  ticket: Ticket,
  start: (options: GenerateOptions) => AsyncIterable<GenerationEvent>,
  options: GenerateOptions,
  n: number,
  onTurn: () => void = () => {},
  onEnd: () => void = () => {},
  more: () => Ticket | undefined = () => undefined,
): AsyncGenerator<{ index: number; event: GenerationEvent }> {
  const tickets = [ticket];
  // Ends the other choices when one fails or the consumer leaves.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  type Lane = AsyncGenerator<{ index: number; event: GenerationEvent }>;
  const lanes = new Set<Lane>();
  const pending = new Map<Lane, Promise<{ lane: Lane; r: IteratorResult<unknown> }>>();
  try {
    await ticket.ready;
    onTurn();
    // The first choice's prompt record (echo, prompt logprobs) serves the others: scoring the
    // prompt again would run all of it again, past the prompt cache.
    let prompt: PromptEcho | undefined;
    const { echo: _, promptLogprobs: __, ...unscored } = options;
    let next = 0;
    const choice = async function* (index: number) {
      const s = options.seed;
      const seed = s === undefined
        ? {}
        : { seed: s + index <= Number.MAX_SAFE_INTEGER ? s + index : s - index };
      const reuse = index > 0 ? prompt : undefined;
      if (reuse) yield { index, event: { type: "delta", text: "", prompt: reuse } as const };
      for await (const event of start({ ...(index > 0 ? unscored : options), ...seed, signal })) {
        if (index === 0) prompt ??= event.type === "done" ? event.result.prompt : event.prompt;
        if (event.type === "done" && reuse) event.result.prompt = reuse;
        yield { index, event };
      }
    };
    // Choices one after another on a place; `own` gives it back at the end (not the request's).
    const lane = async function* (own?: Ticket): Lane {
      try {
        for (let index = next++; index < n; index = next++) yield* choice(index);
      } finally {
        own?.release();
      }
    };
    const pull = (l: Lane) => {
      lanes.add(l);
      pending.set(l, l.next().then((r) => ({ lane: l, r })));
    };
    pull(lane());
    while (pending.size) {
      const { lane: l, r } = await Promise.race(pending.values());
      pending.delete(l);
      if (r.done) continue;
      const item = r.value as { index: number; event: GenerationEvent };
      // Once choice 0 has begun (its prompt's rows there to copy), the choices not begun take the
      // places free now, at each event: also those another request gives back meanwhile.
      for (let t; next < n && (t = more());) {
        tickets.push(t);
        pull(lane(t));
      }
      yield item;
      if (item.event.type === "done" && item.event.result.finishReason === "abort") return;
      pull(l);
    }
  } finally {
    // Whatever still runs (an abort, an error, the consumer gone) stops, and is closed (a lane
    // pulled now closes once its next event has come: soon, aborted).
    stop.abort();
    await Promise.allSettled([...lanes].map((l) => l.return(undefined)));
    for (const t of tickets) t.release(); // (the lanes' own are released already)
    onEnd();
  }
}

/**
 * /v1/chat/completions: the assistant's role first, then deltas as deltaReader() makes them for
 * the request's tool mode (none: content); the engine's refusals of a held mode's schemas named as
 * the tool's parameters (its other errors already name "messages").
 */
function chatFormat(tools?: ToolRequest): Format {
  const mode = tools?.mode;
  return {
    prefix: "chatcmpl-",
    inputError: (error) => (tools?.schema ? toolSchemaError(error, tools) : undefined),
    whole: (header, results) => completionObject(header, results, mode),
    chunks: (header, usage, index) => {
      const reader = deltaReader(mode);
      const open = { role: "assistant", content: "" };
      return {
        open: () => chunkObject(header, { delta: open, index }, usage),
        delta: (ev) => {
          const delta = reader.push(ev.text);
          if (!delta && !ev.logprobs?.length) return undefined;
          return chunkObject(header, { delta: delta ?? {}, logprobs: ev.logprobs, index }, usage);
        },
        finish: (result) => {
          const { delta, calls } = reader.end();
          const finish = toolFinish(result, mode, calls);
          const { tool_calls: whole, ...rest } = delta as { tool_calls?: object[] };
          if (!whole?.length) return chunkObject(header, { delta, result, index, finish }, usage);
          // Calls read whole at the end ("auto"): a chunk each, as OpenAI streams them (LlamaIndex
          // reads one call a chunk), then the finish.
          return [
            ...(Object.keys(rest).length
              ? [chunkObject(header, { delta: rest, index }, usage)]
              : []),
            ...whole.map((call) =>
              chunkObject(header, { delta: { tool_calls: [call] }, index }, usage)
            ),
            chunkObject(header, { delta: {}, result, index, finish }, usage),
          ];
        },
      };
    },
    usage: (header, results) =>
      chunkObject(header, null, { include: true, result: combinedResult(results) }),
  };
}

/**
 * /v1/completions: text chunks, the legacy logprobs' offsets running on across them; with `echo`
 * the prompt's text (and its scored tokens) first, in a chunk of its own, and with `echo.only`
 * nothing after it (see shownResult).
 */
function textFormat(echo?: Echo): Format {
  // An engine that ignored `echo` would answer with the prompt missing (with max_tokens 0, an
  // empty completion scored as certain): an error instead.
  const echoed = (shown: boolean, result: GenerationResult) => {
    if (echo && !shown && result.finishReason !== "abort") {
      throw new Error("the engine did not echo the prompt: its complete() ignored `echo`");
    }
  };
  return {
    prefix: "cmpl-",
    inputError: (error) => {
      const http = toHttpError(error);
      return http.status === 400 && (http.param === null || http.param === "messages")
        ? badRequest("prompt", http.message, http.code ?? undefined)
        : undefined;
    },
    whole: (header, results) => {
      results.forEach((r) => echoed(r.prompt !== undefined, r));
      return textCompletionObject(header, results, echo);
    },
    chunks: (header, running, index) => {
      const offsets = new TextOffsets();
      let prompted = false;
      // The usage so far as shownResult reports it: with echo.only no completion tokens.
      const shown = (): StreamUsage => {
        const r = running.result;
        return echo?.only && r
          ? { ...running, result: { usage: { ...r.usage, completionTokens: 0 } } }
          : running;
      };
      return {
        open: () => undefined,
        delta: (ev) => {
          const p = echo && ev.prompt;
          if (p) prompted = true;
          if (!p && echo?.only) return undefined; // the token run past the prompt alone
          // The prompt's scored tokens are there where the request asked for logprobs.
          const entries = p ? p.logprobs : ev.logprobs;
          const text = p ? p.text ?? "" : ev.text;
          return textChunkObject(
            header,
            { text, logprobs: textLogprobsObject(entries, offsets), index },
            shown(),
          );
        },
        finish: (result) => {
          echoed(prompted, result);
          return textChunkObject(
            header,
            { text: "", result: shownResult(result, echo), index },
            shown(),
          );
        },
      };
    },
    usage: (header, results) =>
      textChunkObject(header, null, {
        include: true,
        result: combinedResult(results.map((r) => shownResult(r, echo))),
      }),
  };
}

/**
 * How long a streamed request waits for its first event before committing to a 200 SSE response.
 * Errors found while preparing the prompt (an undecodable image, a prompt over the context) come
 * within it and still get a proper 4xx; a request waiting in the queue starts its stream (and its
 * keep-alives) after it.
 */
const STREAM_GRACE_MS = 1000;
/**
 * How long a non-streamed answer may take before its 200 is sent and held open (heldResponse): at
 * most WHOLE_GRACE_MS after it came, or WHOLE_AFTER_FIRST_MS after its first token (by then the
 * request has been checked — what fails later is the server, not the request); and how often the
 * held response writes a space (each capped by keepAliveMs, for tests).
 */
const WHOLE_GRACE_MS = 10_000;
const WHOLE_AFTER_FIRST_MS = 1000;
const HELD_HEARTBEAT_MS = 1000;

/**
 * Builds the HTTP app for `engine` (or for the promise of one still loading: requests wait for it,
 * `/health` says "loading"; or for a function that loads one, called at once — and again after an
 * unload: Ollama's `keep_alive: 0` unloads an engine that has `dispose()` (a WorkerEngine, whose
 * `closed` is then awaited), freeing the GPU, and the next request that needs it loads it again,
 * waiting for it). Use `app.fetch` as a fetch handler (`Deno.serve(app.fetch)`,
 * `export default app` for `deno serve`), or mount it with `parent.route(prefix, app)`. A path it
 * does not serve is a JSON 404 listing what it does (a served path's other methods: a 405 with
 * `Allow`); mounted, it answers so for `<prefix>/v1/*` and `<prefix>/api/*` (register the parent's
 * own routes there before mounting it), the parent's notFound for the rest. A trailing slash is
 * the route without it (mounted: where the parent is `new Hono({ strict: false })`).
 *
 * @example Answer one request without a listening server
 * ```ts ignore
 * const app = createApp(engine);
 * const response = await app.request("/v1/chat/completions", {
 *   method: "POST",
 *   body: JSON.stringify({ model: engine.modelId, messages: [{ role: "user", content: "Hi" }] }),
 * });
 * console.log((await response.json()).choices[0].message.content);
 * ```
 */
export function createApp(engine: EngineSource, options: ServerOptions = {}): Hono {
  // Fields given as undefined keep their defaults (a spread would overwrite them).
  const given = Object.entries(options).filter(([, v]) => v !== undefined);
  const settings: Settings = { ...DEFAULTS, ...Object.fromEntries(given) };
  const alias = settings.servedModelName;
  if (alias !== undefined && (typeof alias !== "string" || !alias.trim())) {
    throw new TypeError(`servedModelName must be a non-empty string; got ${JSON.stringify(alias)}`);
  }
  /** The name `e` is served as. */
  const nameOf = (e: ChatEngine) => alias ?? e.modelId;
  /** The names a request may give `e`: the one it is served as first, then its own id. */
  const namesOf = (e: ChatEngine): string[] =>
    alias ? [...new Set([alias, e.modelId])] : [e.modelId];
  // As many run at once as the engine runs (its `parallel`), known once it has loaded.
  const queue = new GenerationQueue(settings.maxQueue, () => holder.known?.parallel ?? 1);
  const responses = new ResponseStore(settings.responseStore);
  const metrics = new Metrics();
  if (alias) metrics.model = alias; // known before the model loads
  // Images are decoded (to check them) on a worker: a photo held this thread for ≈ 0.3 s.
  const decoder = new ImageDecoder();
  const policy: ImagePolicy = {
    allowRemote: settings.allowRemoteImages,
    allowPrivate: settings.allowPrivateImageHosts,
    maxBytes: settings.maxImageBytes,
    timeoutMs: settings.imageFetchTimeoutMs,
    decode: (bytes) => decoder.decode(bytes),
  };
  // The engine, loaded — and unloaded and loaded again, where it can be — as asked; requests hold
  // it while they use it (src/server/_engine_holder.ts).
  const holder = new EngineHolder(engine);
  // Reported by /health and by each request where it fails.
  holder.first.then((e) => {
    metrics.model = nameOf(e);
    queue.admit(); // those that queued while it loaded, as many as it runs at once
  }, () => {});
  /**
   * The engine as last loaded, for what it says of itself (its names, context, weights): loaded or
   * not, once it has loaded once (not counted among the requests waiting for the model).
   */
  const described = async (): Promise<ChatEngine> => holder.known ?? await holder.first;
  /**
   * The settings request parsing reads, with the engine's chat template's default system message
   * (tools are described after it where a conversation has none) once the engine has loaded.
   */
  const limits = (): ParseSettings => ({
    ...settings,
    defaultSystemPrompt: holder.known?.defaultSystemPrompt,
  });
  /**
   * A request parsed with {@link limits}: at once, so a bad one is a 400 while the model still
   * loads (minutes for QVQ-72B), and again once it has loaded where it had not yet, with the
   * engine's default system message (where the load failed, the request fails on that).
   */
  const parsedWithEngine = async <T>(
    parse: (limits: ParseSettings) => T,
    signal: AbortSignal,
  ): Promise<T> => {
    const early = parse(limits());
    if (holder.known) return early;
    await holder.untilKnown(signal).catch(() => {});
    return holder.known ? parse(limits()) : early;
  };

  // Not strict: a path with a trailing slash (`/v1/chat/completions/`) is the route without it, for
  // the middleware (the API key's check) as for the handlers. (FastAPI, vLLM's, redirects with
  // 307; the route itself is the simpler answer, and clients that don't follow redirects with a
  // body are served.) A parent Hono the app is mounted in decides for its own paths.
  const app = new Hono({ strict: false });
  if (settings.metrics) {
    app.use("*", async (c, next) => {
      await next();
      metrics.response(routeOf(c.req.path), c.res.status);
    });
  }

  // CORS on every route — /health and /metrics too, as vLLM's and llama.cpp's servers have it (a
  // web dashboard polls them) — and on the 404s and 405s; before the API key check: a browser's
  // preflight carries no Authorization header.
  if (settings.cors !== false) {
    app.use(
      "*",
      cors({
        origin: settings.cors === true ? "*" : settings.cors,
        // DELETE: /v1/responses/{id} (the openai client's responses.delete() from a browser).
        allowMethods: ["GET", "POST", "DELETE", "OPTIONS"],
        // No allowHeaders: the preflight allows the headers the browser asks for, as vLLM's
        // ["*"] and llama.cpp's "*" do. A fixed list blocked the openai npm client in a browser,
        // which sends X-Stainless-* headers with every request.
        // Retry-After (a 429's or 503's) readable by a browser's client, to wait that long.
        exposeHeaders: ["Retry-After"],
        maxAge: 600,
      }),
    );
  }

  if (settings.metrics) {
    app.get(
      "/metrics",
      (c) =>
        c.body(
          metrics.render({ running: queue.running, waiting: queue.waiting + holder.waiting }),
          200,
          {
            "content-type": "text/plain; version=0.0.4; charset=utf-8",
          },
        ),
    );
  }

  // Requests to Ollama's API (/api/*), whose errors are written as Ollama writes them: marked by
  // their context (the one object a request keeps throughout — bodyLimit replaces c.req.raw of a
  // chunked body).
  const ollama = new WeakSet<object>();
  const errorOf = (c: object, error: HttpError) => {
    const http = withRetryAfter(error);
    return ollama.has(c) ? ollamaErrorResponse(http) : errorResponse(http);
  };
  /**
   * A 503 for a server shutting down with `Retry-After`, as the queue-full 503 has it: the openai
   * clients retry a 503 twice by default, within a couple of seconds — at a server still going
   * away — unless told how long to wait (they honour up to 60 s). (The model still loading is no
   * 503 to a request, which waits for it; /health's 503 "loading" is a state polled on the
   * poller's own schedule, and how long a load takes — seconds, or minutes for QVQ-72B — is not
   * known to say.)
   */
  const withRetryAfter = (http: HttpError) =>
    http.code !== "server_shutting_down" || http.headers["retry-after"] !== undefined
      ? http
      : new HttpError(http.status, http.message, http.type, http.param, http.code, {
        ...http.headers,
        "retry-after": String(settings.retryAfterSeconds),
      });
  app.onError((error, c) => {
    const http = toHttpError(error);
    // The engine's failure was logged where it happened; each request it refuses is not news.
    if (http.status === 500 && error !== holder.engine?.failure) {
      console.error("qvq server:", error);
    }
    return errorOf(c, http);
  });
  app.use("/api/*", async (c, next) => {
    ollama.add(c);
    await next();
  });

  app.get("/health", (c) => {
    const loadError = holder.loadError;
    if (loadError instanceof EngineClosedError) return c.json({ status: "shutting_down" }, 503);
    if (loadError) return c.json({ status: "error", error: String(loadError) }, 500);
    const known = holder.known;
    if (!known) return c.json({ status: "loading", waiting: holder.waiting }, 503);
    const loaded = holder.engine;
    if (!loaded) {
      // Unloaded (Ollama's keep_alive 0), still unloading, or loading again for the requests
      // waiting: the server serves (a request loads the model, and waits for it), so a 200 — a
      // supervisor must not restart it, nor a balancer drop it, for that.
      const state = holder.state === "loading" ? "reloading" : holder.state;
      return c.json({ status: state, model: nameOf(known), waiting: holder.waiting });
    }
    // An engine that can answer no more (its GPU device lost) is no longer healthy: a supervisor
    // polling /health restarts the server, as with vLLM's dead engine.
    const failure = loaded.failure;
    if (failure) {
      const http = toHttpError(failure); // EngineClosedError: 503, the rest 500
      return http.status === 503
        ? c.json({ status: "shutting_down" }, 503)
        : c.json({ status: "error", error: http.message }, 500);
    }
    return c.json({
      status: "ok",
      model: nameOf(loaded),
      queue: {
        running: queue.running,
        parallel: queue.places(),
        waiting: queue.waiting,
        max: queue.maxWaiting,
      },
    });
  });

  if (settings.webPage) {
    app.get("/", (c) => c.html(PAGE_HTML));
  }

  // The API: /v1, vLLM's /tokenize and /detokenize beside it, and Ollama's /api.
  const API = ["/v1/*", "/tokenize", "/detokenize", "/api/*"];

  if (settings.apiKey !== undefined) {
    const key = settings.apiKey;
    const check: MiddlewareHandler = async (c, next) => {
      const header = c.req.header("authorization") ?? "";
      const given = header.match(/^Bearer\s+(.+)$/i)?.[1]?.trim();
      if (given === undefined || !sameKey(given, key)) {
        throw new HttpError(
          401,
          given === undefined
            ? "Missing API key: send it as 'Authorization: Bearer <key>'."
            : "Incorrect API key provided.",
          "invalid_request_error",
          null,
          "invalid_api_key",
          { "www-authenticate": 'Bearer realm="qvq"' },
        );
      }
      await next();
    };
    for (const path of API) app.use(path, check);
  }

  const created = Math.floor(Date.now() / 1000); // when this server started serving it
  const modelObject = (e: ChatEngine) => ({
    id: nameOf(e),
    object: "model",
    created,
    owned_by: "qvq",
    ...(e.maxContext ? { max_model_len: e.maxContext } : {}), // vLLM's: the context in tokens
  });

  app.get("/v1/models", async (c) => {
    return c.json({ object: "list", data: [modelObject(await described())] });
  });

  app.get("/v1/models/:id{.+}", async (c) => {
    const e = await described();
    // A trailing slash is the route's own, as on every other path (under a strict parent it
    // reaches here as part of the id).
    const id = c.req.param("id").replace(/\/$/, "");
    if (!namesOf(e).includes(id)) throw modelNotFound(id, nameOf(e));
    return c.json(modelObject(e));
  });

  const bodyLimited = bodyLimit({
    maxSize: settings.maxBodyBytes,
    onError: () => {
      throw new HttpError(
        413,
        `The request body is larger than ${settings.maxBodyBytes} bytes; send smaller or fewer images.`,
        "invalid_request_error",
        null,
        "request_too_large",
      );
    },
  });
  // A body without a length is read here, by the limit: its client leaving midway is a 499 as in
  // readJson (and what the handler throws passes through as it is: readJson's are answered).
  const limitBody: MiddlewareHandler = async (c, next) => {
    try {
      return await bodyLimited(c, next);
    } catch (error) {
      throw bodyReadError(c.req.raw, error);
    }
  };

  /**
   * What a chat request does before its turn: its images fetched and decoded (a bad image is a
   * 400, not a stream that fails once the request's turn comes), the request checked (unless
   * `checked`: the caller did, with the same request).
   */
  const prepareChat = (request: ChatRequest, checked = false) =>
  async (
    e: ChatEngine,
    signal: AbortSignal,
  ): Promise<(options: GenerateOptions) => AsyncIterable<GenerationEvent>> => {
    // Decoded pixels go to the engine where the request will run at once (no second decode).
    const idle = () => queue.free;
    // A request that will wait is checked first — a bad format, a prompt over the context: a
    // 400 now, not a 200 whose stream fails (or a 400 that waits out the queue) at its turn.
    // So is one with images, from their sizes as their headers give them, before any is decoded
    // (images over the context cost neither the decoding nor the copy to the engine). A text one
    // that runs at once meets those errors before its stream begins, without the round trip.
    const messages = await loadMessages(
      request.messages,
      policy,
      signal,
      idle,
      async (m, sizes) => {
        if (!checked && (!idle() || sizes.length)) await e.checkChat?.(m, request.options, sizes);
      },
    );
    // One answer: its decoded pixels move to a worker engine's thread rather than being copied.
    const sent = request.n === 1 ? handOverImages(messages) : messages;
    return (options) => e.generate(sent, options);
  };

  app.post("/v1/chat/completions", limitBody, async (c) => {
    const body = await readJson(c.req.raw);
    const request = await parsedWithEngine(
      (limits) => parseChatRequest(body, limits),
      c.req.raw.signal,
    );
    return await answer(c.req.raw, request, chatFormat(request.tools), prepareChat(request));
  });

  // OpenAI's Responses API: the request as a chat request (a stored conversation it continues
  // expanded), the answer as a response, kept unless it asks not to be.
  app.post("/v1/responses", limitBody, async (c) => {
    const { chat, echo, sources, conversation } = chatBodyOfResponses(
      await readJson(c.req.raw),
      responses,
    );
    let request: ChatRequest;
    try {
      request = await parsedWithEngine(
        (limits) => parseChatRequest(chat, limits),
        c.req.raw.signal,
      );
    } catch (error) {
      throw responsesError(error, sources);
    }
    const truncated = { truncate: echo.truncation === "auto", body: chat, sources };
    const parse = (body: Record<string, unknown>) => parseChatRequest(body, limits());
    const keep = echo.store
      ? (response: Record<string, unknown>) =>
        responses.put({
          response,
          input: withItemIds(conversation, response.id as string),
          output: response.output as [],
        })
      : undefined;
    const format = responsesFormat(request.tools, echo, sources, keep);
    // truncation "auto": the conversation's oldest items go until it fits (as Ollama's).
    return await answer(c.req.raw, request, format, prepareFitted(truncated, parse, request));
  });

  /** OpenAI's 404 for a response id the store does not hold. */
  const responseNotFound = (id: string) =>
    new HttpError(
      404,
      `Response with id '${id}' not found: this server keeps the last ` +
        `${responses.maxResponses} responses created with store not false, in memory.`,
      "invalid_request_error",
      "response_id",
      "not_found",
    );
  app.get("/v1/responses/:id", (c) => {
    const id = c.req.param("id");
    const stored = responses.get(id);
    if (!stored) throw responseNotFound(id);
    return c.json(stored.response);
  });
  // OpenAI's list of a stored response's input items (the openai client's
  // responses.inputItems.list(id)), a page of them as limit, order and after ask.
  app.get("/v1/responses/:id/input_items", (c) => {
    const id = c.req.param("id");
    const stored = responses.get(id);
    if (!stored) throw responseNotFound(id);
    return c.json(inputItemsList(stored.input, c.req.query()));
  });
  // delete() says whether it held the id: nothing is read back (parsed) to find out.
  app.delete("/v1/responses/:id", (c) => {
    const id = c.req.param("id");
    if (!responses.delete(id)) throw responseNotFound(id);
    return c.json({ id, object: "response", deleted: true });
  });

  /** What a raw prompt's request does before its turn: the prompt checked. */
  const prepareCompletion =
    (request: TextCompletionRequest, path: string, hint: string) => async (e: ChatEngine) => {
      const complete = e.complete?.bind(e);
      if (!complete) throw notServed(path, hint);
      // What the engine would refuse of the prompt, a 400 now rather than at its turn.
      // (answer() names "prompt" in its refusals: the format's inputError.)
      await e.checkPrompt?.(request.prompt, request.options);
      return (options: GenerateOptions) => complete(request.prompt, options);
    };

  app.post("/v1/completions", limitBody, async (c) => {
    const request = parseCompletionRequest(await readJson(c.req.raw), settings);
    const prepare = prepareCompletion(request, "/v1/completions", "; use /v1/chat/completions");
    return await answer(c.req.raw, request, textFormat(request.echo), prepare);
  });

  // Ollama's API: chat and generate translated into the requests above, answered as Ollama.
  const since = new Date().toISOString(); // when this server began serving its model
  /**
   * A translated request (`body`: o.body, or a truncation of it) parsed, its refusals named as the
   * Ollama request's fields, with what the translation kept aside: Ollama's length default, its
   * stop strings (any number).
   */
  function ollamaParsed<T extends { options: GenerateOptions }>(
    parse: (body: Record<string, unknown>, limits: ParseSettings) => T,
    o: OllamaRequest,
    body = o.body,
  ): T {
    let request: T;
    try {
      // Once the engine is known: with its default system message. Images in any message, as
      // Ollama takes them.
      request = parse(body, { ...limits(), imagesInAnyRole: true });
    } catch (error) {
      throw ollamaError(error, o.sources);
    }
    if (o.toContext) request.options.maxNewTokens = Infinity;
    if (o.stop) {
      // The engine takes 16, the tool calls' own stops among them.
      const own = request.options.stop ?? [], room = MAX_STOP_STRINGS - own.length;
      if (o.stop.length > room) {
        throw badRequest(
          "options.stop",
          `options.stop takes at most ${room} strings${
            own.length ? ` beside tools (${own.length} of the ${MAX_STOP_STRINGS} end a call)` : ""
          }; got ${o.stop.length}.`,
        );
      }
      request.options.stop = [...o.stop, ...own];
    }
    return request;
  }

  /**
   * Truncation — Ollama's (its `truncate`, on by default) and the Responses API's
   * (`truncation: "auto"`): a chat request body (`o.body`) over the context loses its oldest
   * messages, never a system message nor the last one, until it fits with its answer's budget
   * (withoutOldest), the fewest found by bisection, each try counted by the engine from its
   * images' headers (`checked`: the request returned was, so the check before its turn need not
   * run again); `o.sources` (where each message came from, for errors) are cut alike. Nothing
   * fits, or the engine cannot count: as it is (the engine's refusal then says why).
   */
  async function fitted(
    e: ChatEngine,
    o: { truncate: boolean; body: Record<string, unknown>; sources: unknown[] },
    parse: (body: Record<string, unknown>) => ChatRequest,
    full: ChatRequest,
    signal: AbortSignal,
  ): Promise<{ request: ChatRequest; checked: boolean }> {
    const check = e.checkChat?.bind(e);
    if (!o.truncate || !check) return { request: full, checked: false };
    const fits = async (r: ChatRequest) => {
      try {
        const m = await sizeMessages(r.messages, policy, signal);
        await check(m, r.options, imageSizes(m) ?? []);
        return true;
      } catch (error) {
        if (error instanceof ContextLengthError) return false;
        throw error;
      }
    };
    if (await fits(full)) return { request: full, checked: true };
    const tryDrop = async (drop: number) => {
      const cut = withoutOldest(o.body, drop);
      if (!cut) return undefined;
      let r: ChatRequest;
      try {
        r = parse(cut.body);
      } catch {
        return null; // a turn cut where the request no longer parses: drop more
      }
      return (await fits(r)) ? { r, kept: cut.kept } : null;
    };
    let lo = 1, hi = (o.body.messages as unknown[]).length;
    let best: { r: ChatRequest; kept: number[] } | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const found = await tryDrop(mid);
      if (found === undefined) hi = mid - 1; // fewer messages to drop than that
      else if (found) [best, hi] = [found, mid - 1];
      else lo = mid + 1;
    }
    if (!best) return { request: full, checked: false };
    // Errors from here on name the messages kept by their place in the request sent.
    o.sources.splice(0, o.sources.length, ...best.kept.map((i) => o.sources[i]));
    return { request: best.r, checked: true };
  }

  /** prepareChat() of what {@link fitted} keeps of `full` (truncated before its turn). */
  function prepareFitted(
    o: Parameters<typeof fitted>[1],
    parse: (body: Record<string, unknown>) => ChatRequest,
    full: ChatRequest,
  ): ReturnType<typeof prepareChat> {
    return async (e, signal) => {
      const kept = await fitted(e, o, parse, full, signal);
      return await prepareChat(kept.request, kept.checked)(e, signal);
    };
  }

  /**
   * Ollama's request without messages (no prompt): the model loaded (again, where it was
   * unloaded) — or, with keep_alive 0, unloaded, freeing the GPU: at once where no request holds
   * it (answered once it is), else once they are done (answered at once), as Ollama's.
   */
  async function loadOrUnload(
    o: OllamaRequest,
    kind: "chat" | "generate",
    signal: AbortSignal,
  ): Promise<Response> {
    if (o.keepAlive !== 0) {
      (await servedEngine(undefined, signal, false)).release();
      return onceResponse(o.stream, loadedObject(o.model, kind));
    }
    if (!holder.canUnload) {
      throw new HttpError(
        501,
        "This server keeps its model loaded: it was given the model loaded, not a way to load " +
          "it again, so it cannot unload it (keep_alive 0). Stop the server to free the GPU.",
        "invalid_request_error",
        "keep_alive",
        "not_implemented",
      );
    }
    await holder.unload();
    return onceResponse(o.stream, loadedObject(o.model, kind, "unload"));
  }

  app.post("/api/chat", limitBody, async (c) => {
    const e = await holder.untilKnown(c.req.raw.signal);
    const o = ollamaChat(await readJson(c.req.raw), namesOf(e));
    if (o.load) return await loadOrUnload(o, "chat", c.req.raw.signal);
    const parse = (body: Record<string, unknown>) => ollamaParsed(parseChatRequest, o, body);
    const request = parse(o.body);
    const format = ollamaChatFormat(o.model, request.tools?.mode, o.sources);
    return await answer(
      c.req.raw,
      request,
      format,
      prepareFitted(o, parse, request),
      o.keepAlive === 0,
    );
  });

  app.post("/api/generate", limitBody, async (c) => {
    const e = await holder.untilKnown(c.req.raw.signal);
    const o = ollamaGenerate(await readJson(c.req.raw), namesOf(e));
    if (o.load) return await loadOrUnload(o, "generate", c.req.raw.signal);
    const format = ollamaGenerateFormat(o.model, o.sources, o.raw);
    const unloadAfter = o.keepAlive === 0;
    if (!o.raw) {
      const request = ollamaParsed(parseChatRequest, o);
      return await answer(c.req.raw, request, format, prepareChat(request), unloadAfter);
    }
    // Ollama's "until the context is full" (not /v1/completions' 16), set by ollamaParsed.
    const request = ollamaParsed(parseCompletionRequest, o);
    const prepare = prepareCompletion(request, "/api/generate with raw", "; send it without raw");
    return await answer(c.req.raw, request, format, prepare, unloadAfter);
  });

  app.get("/api/tags", async (c) => {
    const e = await described();
    return c.json({ models: [await modelEntry(nameOf(e), since, e.weightTypes)] });
  });

  // The model in memory: none while it is unloaded (or unloading, or loading again).
  app.get("/api/ps", async (c) => {
    await described();
    const e = holder.engine;
    if (!e) return c.json({ models: [] });
    const running = {
      ...await modelEntry(nameOf(e), since, e.weightTypes),
      // Never unloaded on a timer: Ollama's date for keep_alive -1; now where it unloads once the
      // requests holding it are done (the last one's keep_alive was 0).
      expires_at: holder.unloadsWhenIdle ? new Date().toISOString() : "2318-01-01T00:00:00Z",
      size_vram: 0,
      ...(e.maxContext ? { context_length: e.maxContext } : {}),
    };
    return c.json({ models: [running] });
  });

  app.post("/api/show", limitBody, async (c) => {
    const e = await described();
    namedModel(await readJson(c.req.raw), namesOf(e), true);
    return c.json(showObject(e.maxContext, since, e.weightTypes, e.defaultSystemPrompt));
  });

  app.get("/api/version", (c) => c.json({ version: OLLAMA_API_VERSION }));

  // A pull of the model served succeeds (clients pull before they chat); nothing else is pulled.
  app.post("/api/pull", limitBody, async (c) => {
    const e = await described();
    const json = await readJson(c.req.raw);
    namedModel(json, namesOf(e), true);
    return onceResponse((json as { stream?: unknown }).stream !== false, { status: "success" });
  });

  for (
    const path of [
      "/api/embed",
      "/api/embeddings",
      "/api/create",
      "/api/copy",
      "/api/delete",
      "/api/push",
      "/api/blobs/*",
    ]
  ) {
    app.all(path, (c) => {
      throw new HttpError(
        501,
        `${c.req.path} is not served: this server generates with the one model it loaded ` +
          `(${
            holder.known ? nameOf(holder.known) : "loading"
          }); it does not embed, create, copy, delete or push models.`,
        "invalid_request_error",
        null,
        "not_implemented",
      );
    });
  }

  /**
   * `use` with the engine, for a request that may name its model (a 404 where the engine lacks
   * `method`), held until it is done. A model found unloaded (Ollama's keep_alive 0) is loaded for
   * it and unloaded again after: a tokenizer request (a monitor's, a client's count) does not undo
   * an unload.
   */
  const withEngine = async <T>(
    model: string | undefined,
    method: "tokenize" | "detokenize",
    signal: AbortSignal,
    use: (e: ChatEngine) => Promise<T>,
  ): Promise<T> => {
    const lease = await servedEngine(model, signal, undefined, true);
    try {
      if (!lease.engine[method]) throw notServed(`/${method}`);
      return await use(lease.engine);
    } finally {
      lease.release();
    }
  };

  /**
   * The engine, held for a request (release the lease when done), where `model` (if given) names
   * it — else the 404 for `model`: once loaded (again, where it was unloaded). `unloadAfter`,
   * `transient`: as EngineHolder.acquire() takes them (the request's keep_alive is 0, or not;
   * unset: it says nothing; a tokenizer request leaves the model as loaded as it found it).
   */
  async function servedEngine(
    model: string | undefined,
    signal?: AbortSignal,
    unloadAfter?: boolean,
    transient?: boolean,
  ): Promise<Lease> {
    const known = await holder.untilKnown(signal);
    if (model !== undefined && !namesOf(known).includes(model)) {
      throw modelNotFound(model, nameOf(known));
    }
    const lease = await holder.acquire({ signal, unloadAfter, transient });
    const failure = lease.engine.failure;
    if (failure) {
      lease.release();
      throw failure; // before its images are decoded, or its turn waited for
    }
    return lease;
  }

  // vLLM's tokenizer endpoints: the ids the model would read, and the text of ids.
  app.post("/tokenize", limitBody, async (c) => {
    const body = await readJson(c.req.raw);
    const request = await parsedWithEngine(
      (limits) => parseTokenizeRequest(body, limits),
      c.req.raw.signal,
    );
    return await withEngine(request.model, "tokenize", c.req.raw.signal, async (e) => {
      const field = "prompt" in request ? "prompt" : "messages";
      // The images' sizes go in their place: an image's token count follows from its size, read
      // from its headers (none is decoded: 32 photos of 8000 x 8000 took 7 GB to count).
      const messages = "prompt" in request
        ? []
        : await sizeMessages(request.messages, policy, c.req.raw.signal);
      const input = "prompt" in request ? { prompt: request.prompt } : {
        messages,
        continueFinalMessage: request.continueFinalMessage,
        addGenerationPrompt: request.addGenerationPrompt,
        chatTemplateKwargs: request.chatTemplateKwargs,
        imageSizes: imageSizes(messages),
      };
      const tokens = await e.tokenize!(input).catch((error) => {
        throw fieldError(error, field);
      });
      return c.json({
        count: tokens.length,
        ...(e.maxContext ? { max_model_len: e.maxContext } : {}),
        tokens,
      });
    });
  });

  app.post("/detokenize", limitBody, async (c) => {
    const request = parseDetokenizeRequest(await readJson(c.req.raw));
    const prompt = await withEngine(
      request.model,
      "detokenize",
      c.req.raw.signal,
      (e) =>
        e.detokenize!(request.tokens).catch((error) => {
          throw fieldError(error, "tokens");
        }),
    );
    return c.json({ prompt });
  });

  /**
   * Serves one generation request of either endpoint: the model checked, `prepare` (fetching
   * images) before queueing, then the events once its turn comes — one response, or a stream. The
   * engine is held for it until its events end; `unloadAfter`: its keep_alive is 0 (Ollama's).
   */
  async function answer(
    raw: Request,
    request: Pick<
      ChatRequest,
      "model" | "options" | "stream" | "includeUsage" | "continuousUsage" | "n" | "formatField"
    >,
    endpoint: Format,
    prepare: (
      engine: ChatEngine,
      signal: AbortSignal,
    ) => Promise<(options: GenerateOptions) => AsyncIterable<GenerationEvent>>,
    unloadAfter = false,
  ): Promise<Response> {
    const lease = await servedEngine(request.model, raw.signal, unloadAfter);
    const e = lease.engine;
    // The events give the engine back once they have begun (turnEvents); before, this does.
    let handedOver = false;
    // The engine names its refusals of a format "response_format": where vLLM's guided_* field
    // set it, that field.
    const field = request.formatField;
    const format: Format = field && field !== "response_format" && field !== "tools"
      ? {
        ...endpoint,
        inputError: (error) =>
          endpoint.inputError(error) ?? renamedField(error, "response_format", field),
      }
      : endpoint;
    // One signal for everything this request starts: aborted when its client disconnects.
    const abort = new AbortController();
    const detach = follow(raw.signal, abort);
    const arrived = performance.now();
    const since = () => (performance.now() - arrived) / 1000;
    let streaming = false;
    const busy = () =>
      new HttpError(
        503,
        `The server is busy: ${queue.waiting} request${queue.waiting === 1 ? " is" : "s are"} ` +
          `already waiting for the model. ` +
          `Retry in ${settings.retryAfterSeconds} s.`,
        "server_error",
        null,
        "queue_full",
        { "retry-after": String(settings.retryAfterSeconds) },
      );
    try {
      // A full queue turns the request away before its preparation (images fetched and decoded,
      // a prompt tokenized) costs anything; the place is taken after it.
      if (queue.full) throw busy();
      const start = await prepare(e, abort.signal).catch((error) => {
        throw format.inputError(error) ?? error;
      });
      const ticket = queue.enter(abort.signal);
      if (!ticket) throw busy();
      const events = observed(
        turnEvents(
          ticket,
          start,
          { ...request.options, signal: abort.signal },
          request.n,
          () => metrics.queued(since()),
          lease.release,
          () => (queue.free ? queue.enter(abort.signal) : undefined),
        ),
        metrics,
        since,
        abort.signal,
      );
      const header = completionHeader(nameOf(e), format.prefix);
      if (request.stream) {
        const first = events.next();
        handedOver = true;
        first.catch(() => {}); // awaited below or in the stream
        await within(first, Math.min(STREAM_GRACE_MS, settings.keepAliveMs));
        streaming = true;
        const failed = failure(raw, format, "the stream ended on an error event");
        const usage = { include: request.includeUsage, continuous: !!request.continuousUsage };
        return streamCompletion(header, format, events, first, usage, abort, { detach, failed });
      }
      const firstToken = Promise.withResolvers<void>();
      const whole = (async () => {
        // By index: choices running at once end in any order.
        const byIndex: GenerationResult[] = [];
        for await (const { index, event } of events) {
          if (event.type === "delta") firstToken.resolve();
          if (event.type === "done") byIndex[index] = event.result;
        }
        if (abort.signal.aborted) return undefined;
        // Fewer than n only where a choice was aborted (the engine closing): the choices so far.
        const results = byIndex.filter((r) => r !== undefined);
        if (!results.length) throw new Error("the engine's stream ended without a result");
        return format.whole(header, results);
      })();
      handedOver = true;
      whole.catch(() => {}); // awaited below or in the held response
      // Most answers come within the grace, with their own status. A longer one is answered 200 at
      // once and held open with a space a second until its JSON: Deno's request.signal misses a
      // client that went away after sending its body in a separate TCP segment (curl with a few KB,
      // httpx — the Python openai and ollama clients — on their timeout), so without writes the
      // answer would run on for nobody, holding the queue; a write to the closed connection
      // cancels the body, and that aborts it. So the grace ends a second after the first token:
      // a client gone mid-answer costs ≈ 2 s of generation, not 10. (Proxies with a read timeout
      // see a live connection too; JSON allows the leading whitespace.) A failure after the 200
      // cuts the connection (heldResponse).
      const settled = whole.then((body) => ({ body }));
      const afterFirst = Math.min(WHOLE_AFTER_FIRST_MS, settings.keepAliveMs);
      const ready = await within(
        Promise.race([settled, firstToken.promise.then(() => within(settled, afterFirst))]),
        Math.min(WHOLE_GRACE_MS, settings.keepAliveMs),
      );
      if (ready) {
        if (ready.body === undefined) return new Response(null, { status: CLIENT_CLOSED });
        return Response.json(ready.body);
      }
      streaming = true;
      return heldResponse(
        whole,
        abort,
        detach,
        failure(raw, format, "the held answer was cut off"),
      );
    } catch (error) {
      if (abort.signal.aborted) return new Response(null, { status: CLIENT_CLOSED });
      throw format.inputError(error) ?? error;
    } finally {
      if (!streaming) detach();
      if (!handedOver) lease.release();
    }
  }

  /**
   * What an answer to `raw` that fails after its 200 went out (`how`: a held answer cut off, a
   * stream ended on an error event) does with its error: counts it in the metrics
   * (qvq:http_responses_failed_total, by its error's status) and gives its error as `format`
   * answers it, with the one line the log has of it — the request, how it ended, the error's
   * status, code and message; an error none of qvq's (a bug) with its stack after the line.
   */
  function failure(
    raw: Request,
    format: Format,
    how: string,
  ): (error: unknown) => { http: HttpError; line: string } {
    const path = new URL(raw.url).pathname;
    return (error) => {
      const http = format.inputError(error) ?? toHttpError(error);
      metrics.failed(routeOf(path), http.status);
      const line = `qvq server: ${raw.method} ${path} failed after its 200 was sent (${how}): ` +
        `${http.status} ${http.code ?? http.type}: ${http.message}`;
      if (error instanceof QvqError) return { http, line };
      return { http, line: `${line}\n${error instanceof Error ? error.stack : String(error)}` };
    };
  }

  /**
   * A non-streamed answer's 200 sent before its body: a space every heartbeat (so a client gone is
   * found by a failed write, which cancels the body and aborts the answer), then the JSON. An
   * answer that fails now — the server shutting down, the engine failing — cuts the connection
   * instead: an error object under the 200 already sent reads as success to OpenAI's clients,
   * while a cut connection is an error (the openai npm client throws; it does not retry it).
   * The body ends with an error Deno.serve logs (its default onError) as the one line `failed`
   * gives, not as a stack trace.
   */
  function heldResponse(
    whole: Promise<object | undefined>,
    abort: AbortController,
    detach: () => void,
    failed: (error: unknown) => { line: string },
  ): Response {
    const encoder = new TextEncoder();
    let timer: ReturnType<typeof setInterval> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const heartbeat = Math.min(HELD_HEARTBEAT_MS, settings.keepAliveMs);
        controller.enqueue(encoder.encode(" "));
        timer = setInterval(() => controller.enqueue(encoder.encode(" ")), heartbeat);
        whole.then(
          (answer) => {
            if (abort.signal.aborted) return;
            if (answer) controller.enqueue(encoder.encode(JSON.stringify(answer)));
            controller.close();
          },
          (error) => abort.signal.aborted || controller.error(loggedAs(failed(error).line, error)),
        ).finally(() => {
          clearInterval(timer);
          detach();
        });
      },
      cancel(reason) {
        clearInterval(timer);
        abort.abort(reason ?? new DOMException("The client disconnected.", "AbortError"));
      },
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  }

  /**
   * The SSE response of a streamed request whose first event is `first`; one that fails ends on an
   * error event, and `failed` gives its error and the line logged of it.
   */
  function streamCompletion(
    header: CompletionHeader,
    format: Format,
    events: AsyncGenerator<{ index: number; event: GenerationEvent }>,
    first: Promise<IteratorResult<{ index: number; event: GenerationEvent }>>,
    asked: { include: boolean; continuous: boolean },
    abort: AbortController,
    ends: {
      detach: () => void;
      failed: (error: unknown) => { http: HttpError; line: string };
    },
  ): Response {
    // Shared by every chunk; with continuous_usage_stats its result is the usage so far.
    const usage: StreamUsage = { include: asked.include };
    const running = asked.include && asked.continuous ? new RunningUsage() : undefined;
    // Each choice's chunks, made (and opened) at its first event; every finished one's result.
    const choices: ReturnType<Format["chunks"]>[] = [];
    const results: GenerationResult[] = [];
    return sseResponse(async (send, signal) => {
      // Typed events (the Responses API) go out as SSE events named by their type.
      const emit = (events: Events) => {
        for (const e of events === undefined ? [] : Array.isArray(events) ? events : [events]) {
          send(e, format.typed ? (e as { type: string }).type : undefined);
        }
      };
      const open = (index: number) => {
        const chunks = choices[index] = format.chunks(header, usage, index);
        emit(chunks.open());
        return chunks;
      };
      try {
        open(0); // at once: a client waiting in the queue sees its stream begin
        for (let next = await first; !next.done && !signal.aborted; next = await events.next()) {
          const { index, event } = next.value;
          // Opened with the usage before its event (a role chunk carries no tokens).
          const chunks = choices[index] ?? open(index);
          if (running) {
            running.push(index, event);
            usage.result = running.current;
          }
          if (event.type === "delta") {
            // With logprobs a delta may carry tokens but no text yet (held for a stop string);
            // an echoed prompt comes on a delta of its own.
            if (event.text || event.logprobs?.length || event.prompt) emit(chunks.delta(event));
          } else {
            emit(chunks.finish(event.result));
            results[index] = event.result; // by index: choices at once end in any order
          }
        }
        const ended = results.filter((r) => r !== undefined);
        if (format.usage && usage.include && ended.length) send(format.usage(header, ended));
        if (!format.typed && !format.ndjson) send("[DONE]");
      } catch (error) {
        if (signal.aborted) return;
        const { http, line } = ends.failed(error);
        console.error(line);
        // OpenAI's clients raise an APIError for a data event carrying `error` (or, typed, for
        // an `error` event).
        if (format.typed) send(format.streamError?.(http) ?? http.toJSON(), "error");
        else send(format.streamError?.(http) ?? http.toJSON());
      } finally {
        await events.return(undefined); // closes the engine's generator if we left early
        ends.detach();
      }
    }, { keepAliveMs: settings.keepAliveMs, controller: abort, ndjson: format.ndjson });
  }

  // Last, after every route: a served path's other methods are 405s, other paths 404s, as JSON.
  answerUnrouted(app, errorOf);
  return app;
}

/** How long an aborted request's events are read for their record (see {@link observed}). */
const ABORT_DRAIN_MS = 2000;

/**
 * The events of a request passed on, its first token, finished generations and end recorded in
 * `metrics` (`since`: seconds since it arrived).
 *
 * A request whose client leaves (`signal` aborted) is closed by its consumer — a stream stops at
 * its next event — while the engine, told by the same signal, is still stopping: deltas it had
 * sent (a worker's, in flight) come before its record of the generation. Closing the engine's
 * events then would lose that record, and with it the tokens generated, which a non-streamed
 * answer (that reads to the end) counts. So the rest of an aborted request's events are read, only
 * for the record: streamed or not, an abort counts the tokens generated until the engine stopped,
 * as vLLM counts tokens as they are produced.
 */
async function* observed(
  events: AsyncGenerator<{ index: number; event: GenerationEvent }>,
  metrics: Metrics,
  since: () => number,
  signal: AbortSignal,
): AsyncGenerator<{ index: number; event: GenerationEvent }> {
  let first = true;
  let done = false;
  const record = ({ event }: { event: GenerationEvent }) => {
    if (first && event.type === "delta") {
      first = false;
      metrics.firstToken(since());
    }
    if (event.type === "done") {
      done = true;
      metrics.finished(event.result);
    }
  };
  try {
    // next() by hand, not for-await: leaving a for-await would close `events` at once.
    for (let next = await events.next(); !next.done; next = await events.next()) {
      record(next.value);
      yield next.value;
    }
  } finally {
    try {
      // The engine stops promptly at the abort (ChatEngine.generate's contract); a request still
      // queued ends at once (its ticket refused). One that does not (a module user's engine that
      // ignores the signal) is read for ABORT_DRAIN_MS at most, then closed at its next event,
      // rather than left to run to max_tokens holding the queue.
      if (signal.aborted) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), ABORT_DRAIN_MS);
        });
        try {
          for (;;) {
            const next = await Promise.race([events.next(), late]);
            if (next === "late" || next.done) break;
            record(next.value);
          }
        } finally {
          clearTimeout(timer);
        }
      }
    } catch {
      // An engine failing as it stops: the request ended with its client anyway.
    } finally {
      await events.return(undefined);
    }
    // A client gone mid-answer whose generation left no record (still queued, or the engine
    // failed as it stopped): counted as aborted (a request the engine refused is no finished
    // generation at all).
    if (!done && signal.aborted) metrics.aborted();
    metrics.ended(since());
  }
}

/** The routes metrics count responses by (a bounded set, unlike paths), matched by their end. */
const ROUTES = [
  "/v1/chat/completions",
  "/api/chat",
  "/api/generate",
  "/api/tags",
  "/api/show",
  "/api/ps",
  "/api/version",
  "/api/pull",
  "/v1/completions",
  "/v1/responses",
  "/v1/models",
  "/tokenize",
  "/detokenize",
  "/health",
  "/metrics",
];

/** The route of `path` (under any prefix the app is mounted at), for metrics. */
function routeOf(path: string): string {
  if (/\/v1\/models\/./.test(path)) return "/v1/models/:model";
  if (/\/v1\/responses\/[^/]+\/input_items\/?$/.test(path)) return "/v1/responses/:id/input_items";
  if (/\/v1\/responses\/./.test(path)) return "/v1/responses/:id";
  return ROUTES.find((r) => path.endsWith(r)) ?? (path.endsWith("/") ? "/" : "other");
}

/**
 * An error that Deno.serve's default onError (console.error) writes as `line` — not as `cause`'s
 * stack trace, which it would write for the error itself.
 */
function loggedAs(line: string, cause: unknown): Error {
  const error = new Error(line, { cause });
  Object.defineProperty(error, Symbol.for("Deno.customInspect"), { value: () => line });
  return error;
}

/** The 404 for a route the engine lacks (`hint`: what to use instead). */
function notServed(path: string, hint = ""): HttpError {
  return new HttpError(
    404,
    `This server's engine does not serve ${path}${hint}.`,
    "invalid_request_error",
    null,
    "not_found",
  );
}

/** An engine's refusal naming field `from` (a 400) as the fault of field `to`; else undefined. */
function renamedField(error: unknown, from: string, to: string): HttpError | undefined {
  const http = toHttpError(error);
  if (http.status !== 400 || http.param !== from) return undefined;
  return badRequest(
    to,
    http.message.replace(new RegExp(`^${from}\\b`), to),
    http.code ?? undefined,
  );
}

/** An engine's refusal (a 400 naming no field) as the fault of the request's `field`. */
function fieldError(error: unknown, field: string): unknown {
  const http = toHttpError(error);
  return http.status === 400 && http.param === null ? badRequest(field, http.message) : error;
}

/** The 404 for a request naming `model`, where the server serves `served`. */
function modelNotFound(model: string, served: string): HttpError {
  return new HttpError(
    404,
    `The model "${model}" does not exist on this server; it serves "${served}".`,
    "invalid_request_error",
    "model",
    "model_not_found",
  );
}
