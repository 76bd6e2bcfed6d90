/**
 * How the server holds its engine: loaded once, or — where it was given a way to load it
 * (a function) and the engine can be disposed — unloaded when asked (Ollama's `keep_alive: 0`),
 * freeing the GPU, and loaded again by the next request that needs it. Requests hold the engine
 * while they use it (a lease), so an unload waits for them, and a request that comes while it
 * unloads or loads again waits for the load: none is lost.
 * @module
 */
import type { ChatEngine } from "../generate/types.ts";

/**
 * What the server is given to serve: an engine, the promise of one (still loading), or a function
 * that loads one — called at once, and again after each unload.
 */
export type EngineSource = ChatEngine | Promise<ChatEngine> | (() => Promise<ChatEngine>);

/** An engine that frees what it holds (a WorkerEngine: its worker and GPU device). */
interface Disposable {
  dispose(): void;
  /** Settles once all it held is freed (WorkerEngine.closed: its thread has ended). */
  readonly closed?: Promise<void>;
}

/** The engine held for one request, until it calls `release` (once; later calls do nothing). */
export interface Lease {
  readonly engine: ChatEngine;
  release(): void;
}

/**
 * Where the engine is: loading (the first load, or again after an unload), loaded, unloading
 * (freeing the GPU), unloaded, or failed (its first load did: for good).
 */
export type EngineState = "loading" | "loaded" | "unloading" | "unloaded" | "failed";

/** One request waiting for the engine to load. */
interface Waiter {
  grant(lease: Lease): void;
  refuse(error: unknown): void;
  /** Counted among {@link EngineHolder.waiting} (until its client leaves). */
  counted: boolean;
}

/** The engine a server serves, loaded, unloaded and loaded again as asked. */
export class EngineHolder {
  readonly #load: (() => Promise<ChatEngine>) | undefined;
  #engine: ChatEngine | undefined;
  #known: ChatEngine | undefined;
  #loading = false;
  #unloading: Promise<void> | undefined;
  #failed = false;
  #loadError: unknown;
  #users = 0;
  readonly #waiters: Waiter[] = [];
  /** Requests waiting for the first load to say what the engine is (untilKnown), still there. */
  #awaitingFirst = 0;
  /** The last request's keep_alive was 0: unload once no request holds the engine. */
  #unloadWhenIdle = false;
  /**
   * A request other than a transient one (see {@link acquire}) has asked for the engine since it
   * was last unloaded (true from the start: the server loads its model to serve it). Once
   * unloaded, a load that only transient requests asked for is undone when they are done.
   */
  #demanded = true;
  /** The first load: the engine, or why it failed. */
  readonly first: Promise<ChatEngine>;

  constructor(source: EngineSource) {
    this.#load = typeof source === "function" ? source : undefined;
    if (typeof source === "function") this.first = this.#loadWith(source);
    else if (source instanceof Promise) this.first = this.#loadWith(() => source);
    else {
      this.#loaded(source);
      this.first = Promise.resolve(source);
    }
    this.first.catch(() => {}); // reported by whoever waits on it
  }

  /** The engine loaded now; undefined while it loads, unloads or is unloaded, or failed to load. */
  get engine(): ChatEngine | undefined {
    return this.#engine;
  }

  /**
   * The engine last loaded, also while it is unloaded: what it says of itself (its id, context,
   * default system message, weights) holds for the next load, which loads the same model.
   */
  get known(): ChatEngine | undefined {
    return this.#known;
  }

  /** Why the first load failed (the server then serves nothing), or undefined. */
  get loadError(): unknown {
    return this.#loadError;
  }

  get state(): EngineState {
    if (this.#failed) return "failed";
    if (this.#engine) return "loaded";
    if (this.#unloading) return "unloading";
    return this.#loading ? "loading" : "unloaded";
  }

  /** Requests waiting for the engine to load (again) whose clients have not left. */
  get waiting(): number {
    return this.#awaitingFirst + this.#waiters.filter((w) => w.counted).length;
  }

  /**
   * Whether the engine can be unloaded: it came from a loading function (to load it again) and
   * can be disposed.
   */
  get canUnload(): boolean {
    const e = this.#engine ?? this.#known;
    return this.#load !== undefined && typeof (e as Partial<Disposable>)?.dispose === "function";
  }

  /** Whether the engine unloads once no request holds it (the last request's keep_alive was 0). */
  get unloadsWhenIdle(): boolean {
    return this.#unloadWhenIdle && this.canUnload;
  }

  /**
   * Resolves once the engine has been loaded once (its id and the rest are known), at once after
   * that; rejects with the first load's error. A request waiting here is counted in
   * {@link waiting} until its `signal` aborts.
   */
  async untilKnown(signal?: AbortSignal): Promise<ChatEngine> {
    if (this.#known) return this.#known;
    this.#awaitingFirst++;
    let counted = true;
    const leave = () => {
      if (counted) this.#awaitingFirst--;
      counted = false;
    };
    signal?.addEventListener("abort", leave, { once: true });
    try {
      if (signal?.aborted) leave();
      return await this.first;
    } finally {
      signal?.removeEventListener("abort", leave);
      leave();
    }
  }

  /**
   * The engine for one request, loaded (again) first where it is not; `unloadAfter`: whether the
   * request's keep_alive is 0 — the engine then unloads once no request holds it, unless a later
   * request says otherwise (Ollama's rule: the last request's keep_alive counts); unset, the
   * request does not say (a /tokenize). Release the lease when the request is done with the
   * engine. Rejects with the load's error where it fails; `signal`: the request's client left (it
   * is no longer counted as waiting). `transient`: the request does not change whether the model
   * stays loaded (a /tokenize): it loads an unloaded model for its call, which unloads again after
   * unless another request came for it meanwhile.
   */
  acquire(
    options: { signal?: AbortSignal; unloadAfter?: boolean; transient?: boolean } = {},
  ): Promise<Lease> {
    if (!options.transient) this.#demanded = true;
    if (options.unloadAfter !== undefined) this.#unloadWhenIdle = options.unloadAfter;
    if (this.#engine) return Promise.resolve(this.#lease(this.#engine));
    return this.#wait(options.signal);
  }

  /**
   * Ollama's unload (a request without messages with keep_alive 0): the engine unloads now where no
   * request holds it — resolving once it has — or, where some do, once they are done (resolving at
   * once), unless a later request says otherwise. Loaded nowhere: nothing to do.
   */
  unload(): Promise<void> {
    // Already unloaded (or going): nothing to do — no flag left behind for the next load to meet.
    if (!this.#engine && !this.#loading) return this.#unloading ?? Promise.resolve();
    this.#unloadWhenIdle = true;
    this.#idle();
    return this.#unloading ?? Promise.resolve();
  }

  /** Waits for the engine to load (again), starting the load where none is under way. */
  #wait(signal?: AbortSignal): Promise<Lease> {
    if (this.#failed) return Promise.reject(this.#loadError);
    const { promise, resolve, reject } = Promise.withResolvers<Lease>();
    const waiter: Waiter = { grant: resolve, refuse: reject, counted: true };
    const leave = () => (waiter.counted = false);
    if (signal?.aborted) leave();
    else signal?.addEventListener("abort", leave, { once: true });
    this.#waiters.push(waiter);
    this.#advance();
    return promise.finally(() => signal?.removeEventListener("abort", leave));
  }

  /** Starts the load where requests wait and nothing is loaded, loading or unloading. */
  #advance(): void {
    if (this.#engine || this.#loading || this.#unloading || !this.#waiters.length) return;
    if (!this.#load) {
      // Unloaded with no way to load again: cannot happen (canUnload), but never wait for ever.
      this.#refuseAll(new Error("the engine was unloaded and cannot be loaded again"));
      return;
    }
    this.#loadWith(this.#load).catch(() => {});
  }

  /** Loads the engine with `load`, then grants it to every request waiting. */
  #loadWith(load: () => Promise<ChatEngine>): Promise<ChatEngine> {
    this.#loading = true;
    const first = !this.#known;
    // A load that throws at once fails as one that rejects.
    return new Promise<ChatEngine>((resolve) => resolve(load())).then(
      (engine) => {
        this.#loading = false;
        this.#loaded(engine);
        return engine;
      },
      (error) => {
        this.#loading = false;
        // The first load failing fails the server; a later one, the requests that waited for it
        // (the next one tries again).
        if (first) [this.#failed, this.#loadError] = [true, error];
        this.#refuseAll(error);
        throw error;
      },
    );
  }

  /** The engine has loaded: every request waiting gets it; none: it may unload again. */
  #loaded(engine: ChatEngine): void {
    this.#engine = this.#known = engine;
    for (const waiter of this.#waiters.splice(0)) waiter.grant(this.#lease(engine));
    this.#idle();
  }

  #refuseAll(error: unknown): void {
    for (const waiter of this.#waiters.splice(0)) waiter.refuse(error);
  }

  #lease(engine: ChatEngine): Lease {
    this.#users++;
    let held = true;
    return {
      engine,
      release: () => {
        if (!held) return;
        held = false;
        this.#users--;
        this.#idle();
      },
    };
  }

  /**
   * Unloads the engine where none holds it now and the last request asked it, or only transient
   * requests loaded it again.
   */
  #idle(): void {
    const engine = this.#engine;
    if (!engine || this.#users > 0 || !this.canUnload) return;
    if (!this.#unloadWhenIdle && this.#demanded) return;
    this.#unloadWhenIdle = false;
    this.#demanded = false;
    this.#engine = undefined;
    this.#unloading = (async () => {
      try {
        const e = engine as ChatEngine & Disposable;
        e.dispose();
        await e.closed;
      } catch {
        // Freed as far as it could be: the next load starts afresh all the same.
      } finally {
        this.#unloading = undefined;
        this.#advance(); // requests that came meanwhile load it again
      }
    })();
  }
}
