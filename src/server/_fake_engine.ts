/**
 * A scripted ChatEngine for tests of the server, the web page and the CLI: it answers with words
 * derived from the request (so a test can check what reached the engine), one word per token,
 * honours maxNewTokens, stop strings and the abort signal, and records what it was asked and how
 * many generations overlapped.
 * @module
 */
import type {
  ChatEngine,
  ChatMessage,
  FinishReason,
  GenerateOptions,
  GenerationEvent,
  PromptEcho,
  TokenLogprob,
  WeightTypes,
} from "../generate/types.ts";
import { ContextLengthError, InvalidInputError } from "../errors.ts";
import type { ImageSize } from "../image.ts";

/** How the fake behaves. */
export interface FakeEngineOptions {
  modelId?: string;
  /** The answer; by default "I see N image(s). You said: <last user text>". */
  answer?: (messages: ChatMessage[]) => string;
  /** Wait between tokens, ms. Default 0: only yield to the event loop, as a GPU readback does. */
  tokenDelayMs?: number;
  /** Wait before the first token (vision + prefill), ms. */
  prefillDelayMs?: number;
  /** Reason reported when the whole answer was produced. Default "stop". */
  finishReason?: FinishReason;
  /** Thrown when generation starts (after the queue), e.g. an InvalidInputError. */
  error?: Error;
  /** Throw `error` after this many tokens instead of at the start. */
  failAfterTokens?: number;
  /** usage.cachedTokens of a request (default 0: no prompt cache). */
  cachedTokens?: (messages: ChatMessage[]) => number;
  /** Ignore `echo` and `promptLogprobs` (an engine older than them). */
  noEcho?: boolean;
  /** What the engine refuses of a request: checkChat rejects with it, generate throws it first. */
  refuse?: (messages: ChatMessage[]) => Error | undefined;
  /** Its chat template's default system message (ChatEngine.defaultSystemPrompt). Default none. */
  defaultSystemPrompt?: string;
  /** How its weights are held (ChatEngine.weightTypes). Default: not said. */
  weightTypes?: WeightTypes;
  /** Generations it says it runs at once (ChatEngine.parallel). Default: not said (1). */
  parallel?: number;
  /**
   * Holds generation `call` (its index in {@link FakeEngine.calls}) before it writes token `k`
   * (from 0, after the prefill) where it returns a promise: the engine waits for it, or for the
   * request's abort. A test holds a generation there to look at the server while it runs, where a
   * delay would have to outlast a loaded machine's slowest moment.
   */
  hold?: (k: number, call: number) => Promise<unknown> | undefined;
}

/** What one call of generate() received and how it ended. */
export interface FakeCall {
  messages: ChatMessage[];
  options: GenerateOptions;
  finishReason?: FinishReason;
  /** True once the generator was closed (finished, returned early or aborted). */
  closed: boolean;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const id = setTimeout(done, ms);
    function done() {
      clearTimeout(id);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

/** Resolves with `promise` settling, or at once on `signal`'s abort. */
const until = (promise: Promise<unknown>, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      signal?.removeEventListener("abort", done);
      resolve();
    };
    signal?.addEventListener("abort", done, { once: true });
    promise.then(done, done);
  });

/**
 * Resolves once `condition()` holds, checked every few milliseconds; rejects naming `what` once
 * `timeoutMs` have passed without it (generous: only a broken server takes that long, a loaded
 * machine merely a while). Tests wait on what they can see, not for a fixed time.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const start = performance.now();
  while (!(await condition())) {
    if (performance.now() - start > timeoutMs) {
      throw new Error(`waited ${timeoutMs} ms for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A gate for {@link FakeEngineOptions.hold}: the generations held on `promise` go on once `open()`
 * is called, or once `timeoutMs` have passed (generous) — a server that waits where it should not
 * then fails its test's assertions instead of hanging it.
 */
export function gate(timeoutMs = 30_000): { promise: Promise<void>; open(): void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  const timer = setTimeout(resolve, timeoutMs);
  return {
    promise,
    open() {
      clearTimeout(timer);
      resolve();
    },
  };
}

/** The default answer: describes what the engine received. */
export function describeRequest(messages: ChatMessage[]): string {
  const parts = messages.flatMap((m) => (typeof m.content === "string" ? [] : m.content));
  const images = parts.filter((p) => p.type === "image").length;
  const frames = parts.flatMap((p) => p.type === "video" ? [p.video.length] : []);
  const videos = frames.length
    ? ` and ${frames.length} video${frames.length === 1 ? "" : "s"} of ${frames.join(", ")} frames`
    : "";
  const lastUser = [...messages].reverse().find((m) => m.role === "user");
  const text = typeof lastUser?.content === "string"
    ? lastUser.content
    : (lastUser?.content ?? []).flatMap((p) => (p.type === "text" ? [p.text] : [])).join(" ");
  return `I see ${images} image${images === 1 ? "" : "s"}${videos}. You said: ${text}`;
}

/**
 * The fake's prompt record: the last user message's text (what complete() was given), its words
 * the tokens, word k scored −k / 100 with `promptLogprobs` alternatives "palt<j>" below it.
 */
function promptRecord(messages: ChatMessage[], o: GenerateOptions): PromptEcho | undefined {
  if (!o.echo && o.promptLogprobs === undefined) return undefined;
  const last = [...messages].reverse().find((m) => m.role === "user")?.content;
  const text = typeof last === "string" ? last : "";
  const one = (token: string, id: number, logprob: number) => ({
    token,
    id,
    logprob,
    bytes: [...new TextEncoder().encode(token)],
  });
  return {
    ...(o.echo ? { text } : {}),
    ...(o.promptLogprobs === undefined ? {} : {
      logprobs: (text.match(/\s*\S+/g) ?? []).map((w, k) => ({
        ...one(w, 500 + k, -k / 100),
        ...(k === 0 ? { logprob: null } : {}),
        topLogprobs: k === 0 ? [] : Array.from(
          { length: o.promptLogprobs! },
          (_, j) => one(`palt${j}`, 2000 + j, -k / 100 - j - 1),
        ),
      })),
    }),
  };
}

/** A ChatEngine that streams a scripted answer word by word. */
export class FakeEngine implements ChatEngine {
  readonly modelId: string;
  /** Every generate() call (complete()'s too), in order. */
  readonly calls: FakeCall[] = [];
  /** Every complete() call's prompt, in order. */
  readonly prompts: (string | number[])[] = [];
  /** Generations running right now, and the most that ever ran at once. */
  active = 0;
  maxActive = 0;
  /** Set by a test: the engine can answer no more (ChatEngine.failure). */
  failure: Error | undefined;
  /** Every checkChat() call: its messages and the image sizes given. */
  readonly checks: { messages: ChatMessage[]; sizes?: readonly ImageSize[] }[] = [];
  #options: FakeEngineOptions;

  constructor(options: FakeEngineOptions = {}) {
    this.modelId = options.modelId ?? "fake/qvq-test";
    this.#options = options;
  }

  /** The scripted weight types ({@link FakeEngineOptions.weightTypes}). */
  get weightTypes(): WeightTypes | undefined {
    return this.#options.weightTypes;
  }

  /** The scripted generations at once ({@link FakeEngineOptions.parallel}). */
  get parallel(): number | undefined {
    return this.#options.parallel;
  }

  /** The scripted default system message ({@link FakeEngineOptions.defaultSystemPrompt}). */
  get defaultSystemPrompt(): string | undefined {
    return this.#options.defaultSystemPrompt;
  }

  /**
   * A raw prompt (/v1/completions) as one user message: its text, or its ids joined by spaces.
   * Recorded in {@link prompts} beside the call.
   */
  complete(
    prompt: string | number[],
    options: GenerateOptions = {},
  ): AsyncGenerator<GenerationEvent> {
    this.prompts.push(prompt);
    const text = typeof prompt === "string" ? prompt : prompt.join(" ");
    return this.generate([{ role: "user", content: text }], options);
  }

  /** As Pipeline.checkPrompt, roughly: an empty prompt, or more than 4096 new tokens, refused. */
  checkPrompt(prompt: string | number[], options: GenerateOptions = {}): Promise<void> {
    if (prompt.length === 0) {
      return Promise.reject(new InvalidInputError("the prompt is empty: it has no tokens"));
    }
    const max = options.maxNewTokens ?? 0; // Infinity: as many as fit, as the pipeline reads it
    if (max !== Infinity && max > 4096) {
      return Promise.reject(new ContextLengthError("the prompt and its answer exceed the context"));
    }
    return Promise.resolve();
  }

  /** As Pipeline.checkChat: what `refuse` says of the messages. */
  checkChat(
    messages: ChatMessage[],
    _options: GenerateOptions = {},
    sizes?: readonly ImageSize[],
  ): Promise<void> {
    this.checks.push({ messages, sizes });
    const refused = this.#options.refuse?.(messages);
    return refused ? Promise.reject(refused) : Promise.resolve();
  }

  async *generate(
    messages: ChatMessage[],
    options: GenerateOptions = {},
  ): AsyncGenerator<GenerationEvent> {
    const call: FakeCall = { messages, options, closed: false };
    const index = this.calls.push(call) - 1;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    const o = this.#options;
    // Between tokens a real engine awaits the GPU, so the event loop turns (and the server flushes).
    // setTimeout(0) takes milliseconds here; a MessageChannel hop takes microseconds.
    const channel = new MessageChannel();
    const turn = () =>
      new Promise<void>((resolve) => {
        channel.port1.onmessage = () => resolve();
        channel.port2.postMessage(0);
      });
    try {
      if (o.error && !o.failAfterTokens) throw o.error;
      const refused = o.refuse?.(messages);
      if (refused) throw refused;
      await sleep(o.prefillDelayMs ?? 0, options.signal);
      // With echo / promptLogprobs: the last user text as the prompt, word k (from 0) scored −k / 100.
      const prompt = o.noEcho ? undefined : promptRecord(messages, options);
      if (prompt) yield { type: "delta", text: "", prompt };
      const answer = (o.answer ?? describeRequest)(messages);
      // Tokens: each word with the space before it.
      const tokens = answer.match(/\s*\S+/g) ?? [];
      const max = options.maxNewTokens ?? Infinity;
      let text = "";
      let reason: FinishReason = o.finishReason ?? "stop";
      let stopReason: string | undefined; // the stop string that ended it
      let count = 0;
      // With logprobs: token k (a word, from 1) has logprob −k / 10, its alternatives "alt<j>" below it.
      const logprobs: TokenLogprob[] = [];
      const entry = (token: string): TokenLogprob[] => {
        if (!options.logprobs) return [];
        const one = (t: string, id: number, logprob: number) => ({
          token: t,
          id,
          logprob,
          bytes: [...new TextEncoder().encode(t)],
        });
        const k = logprobs.length + 1;
        const e = {
          ...one(token, k, -k / 10),
          topLogprobs: Array.from(
            { length: options.topLogprobs ?? 0 },
            (_, j) => j === 0 ? one(token, k, -k / 10) : one(`alt${j}`, 1000 + j, -k / 10 - j),
          ),
        };
        logprobs.push(e);
        return [e];
      };
      const delta = (t: string, token: string): GenerationEvent => {
        const lp = entry(token);
        return options.logprobs
          ? { type: "delta", text: t, logprobs: lp }
          : { type: "delta", text: t };
      };
      for (const token of tokens) {
        const held = o.hold?.(count, index);
        if (held) await until(held, options.signal);
        if (options.signal?.aborted) {
          reason = "abort";
          break;
        }
        if (o.error && count === o.failAfterTokens) throw o.error;
        if (count === max) {
          reason = "length";
          break;
        }
        const next = text + token;
        const found = (options.stop ?? []).map((s) => [next.indexOf(s), s] as const)
          .filter(([i]) => i >= 0);
        const stopAt = Math.min(...found.map(([i]) => i));
        if (Number.isFinite(stopAt)) {
          stopReason = found.find(([i]) => i === stopAt)![1];
          // As the real engine: the token that completes a stop string has an entry, text or not.
          if (stopAt > text.length || options.logprobs) {
            yield delta(next.slice(text.length, stopAt), token);
          }
          text = next.slice(0, stopAt);
          count++;
          reason = "stop";
          break;
        }
        count++;
        text = next;
        yield delta(token, token);
        if (o.tokenDelayMs) await sleep(o.tokenDelayMs, options.signal);
        else await turn();
      }
      call.finishReason = reason;
      const images = messages.flatMap((m) => (typeof m.content === "string" ? [] : m.content))
        .filter((p) => p.type === "image").length;
      yield {
        type: "done",
        result: {
          finishReason: reason,
          ...(stopReason !== undefined ? { stopReason } : {}),
          text,
          usage: {
            promptTokens: 10 + 4 * images,
            completionTokens: count,
            imageTokens: 4 * images,
            cachedTokens: o.cachedTokens?.(messages) ?? 0,
          },
          timings: { visionMs: 1, prefillMs: 2, decodeMs: 3, tokensPerSecond: 42 },
          ...(options.logprobs ? { logprobs } : {}),
          ...(prompt ? { prompt } : {}),
        },
      };
    } finally {
      channel.port1.close();
      call.closed = true;
      this.active--;
    }
  }
}

/**
 * A FakeEngine that can be disposed, as a WorkerEngine (what an unload needs: EngineHolder's
 * canUnload): `disposed` once asked, `closed` settling when the test calls `free()` — or at once,
 * with `free` true (its GPU freed as soon as it is disposed).
 */
export class DisposableFake extends FakeEngine {
  disposed = false;
  readonly #closed = Promise.withResolvers<void>();
  constructor(options: FakeEngineOptions = {}, free = false) {
    super(options);
    if (free) this.#closed.resolve();
  }
  dispose(): void {
    this.disposed = true;
  }
  get closed(): Promise<void> {
    return this.#closed.promise;
  }
  free(): void {
    this.#closed.resolve();
  }
}
