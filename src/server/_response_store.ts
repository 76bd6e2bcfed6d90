/**
 * The Responses API's store, in memory: what `POST /v1/responses` keeps of a response created
 * with `store` not false (OpenAI's default, which the Vercel AI SDK's `openai()` provider relies
 * on) — its answer, its conversation's input items and its output items — so that a later request
 * may name it (`previous_response_id`), name one of its items (`{"type": "item_reference"}`), or
 * read and delete it (`GET` / `DELETE /v1/responses/{id}`). vLLM keeps such a store in memory too
 * (opt-in, unbounded); this one is bounded: the least recently used responses go first, past a
 * count or a size (the items' JSON, images' data URLs included). Nothing survives a restart.
 * @module
 */

type Json = Record<string, unknown>;

/** One stored response. */
export interface StoredResponse {
  /** The response object as it was answered (GET /v1/responses/{id}). */
  response: Json;
  /**
   * The whole conversation it answered, as input items: a `previous_response_id`'s conversation
   * expanded, then the request's `input` (item references expanded). `instructions` are not
   * among them: OpenAI does not carry them over to a response that follows.
   */
  input: Json[];
  /** Its output items (messages, function calls), each with its `id`. */
  output: Json[];
}

/** How much the store holds: the most responses, and the most bytes of their JSON. */
export interface ResponseStoreLimits {
  /** Most responses kept; 0 keeps none (the server is stateless). Default 1000. */
  maxResponses?: number;
  /** Most bytes kept: the UTF-16 length of the stored items' JSON. Default 64 MiB. */
  maxBytes?: number;
}

/** {@link ResponseStoreLimits}' defaults. */
export const RESPONSE_STORE_DEFAULTS: Required<ResponseStoreLimits> = {
  maxResponses: 1000,
  maxBytes: 64 * 1024 * 1024,
};

/** The size a stored response counts for: its items' and its answer's JSON. */
function sizeOf(r: StoredResponse): number {
  return JSON.stringify(r.input).length + JSON.stringify(r.output).length +
    JSON.stringify(r.response).length;
}

/** The ids of a stored response's items, each once. */
function itemIds(r: StoredResponse): Set<string> {
  const ids = [...r.input, ...r.output].map((item) => item.id);
  return new Set(ids.filter((id): id is string => typeof id === "string"));
}

/** The item of `r` with `id` (its last: an output item over an input item of that id). */
function itemOf(r: StoredResponse, id: string): Json | undefined {
  return [...r.input, ...r.output].findLast((item) => item.id === id);
}

/**
 * An LRU of responses by id, with an index of their items by id.
 *
 * @example
 * ```ts
 * import { ResponseStore } from "./_response_store.ts";
 * const store = new ResponseStore({ maxResponses: 2 });
 * const output = [{ type: "message", id: "msg_1", role: "assistant", content: [] }];
 * store.put({ response: { id: "resp_1", output }, input: [], output });
 * console.assert(store.item("msg_1") === output[0]);
 * ```
 */
export class ResponseStore {
  readonly maxResponses: number;
  readonly maxBytes: number;
  // Insertion order is recency: a response read is moved to the end, the first goes first.
  readonly #responses = new Map<string, { stored: StoredResponse; bytes: number }>();
  // An item by id, and how many stored responses hold it: a conversation's earlier items, carried
  // on by previous_response_id, are in every response that followed.
  readonly #items = new Map<string, { item: Json; holders: number }>();
  #bytes = 0;

  constructor(limits: ResponseStoreLimits = {}) {
    const { maxResponses, maxBytes } = { ...RESPONSE_STORE_DEFAULTS, ...limits };
    for (const [name, v] of Object.entries({ maxResponses, maxBytes })) {
      if (!Number.isSafeInteger(v) || v < 0) {
        throw new TypeError(`responseStore.${name} must be an integer >= 0; got ${v}`);
      }
    }
    this.maxResponses = maxResponses;
    this.maxBytes = maxBytes;
  }

  /** Whether the store keeps anything at all. */
  get enabled(): boolean {
    return this.maxResponses > 0 && this.maxBytes > 0;
  }

  /** Responses held now, and the bytes they count for. */
  get size(): { responses: number; bytes: number } {
    return { responses: this.#responses.size, bytes: this.#bytes };
  }

  /**
   * Keeps `stored` (under its response's id) as the most recent, dropping the least recent ones
   * past the limits. False where it alone is over `maxBytes`: it is not kept.
   */
  put(stored: StoredResponse): boolean {
    const id = stored.response.id as string;
    this.delete(id);
    const bytes = sizeOf(stored);
    if (!this.enabled || bytes > this.maxBytes) return false;
    this.#responses.set(id, { stored, bytes });
    this.#bytes += bytes;
    for (const id of itemIds(stored)) {
      const held = this.#items.get(id);
      this.#items.set(id, { item: itemOf(stored, id)!, holders: (held?.holders ?? 0) + 1 });
    }
    for (const [oldest] of this.#responses) {
      if (this.#responses.size <= this.maxResponses && this.#bytes <= this.maxBytes) break;
      this.delete(oldest);
    }
    return true;
  }

  /** The response stored under `id` (now the most recent), or undefined. */
  get(id: string): StoredResponse | undefined {
    const entry = this.#responses.get(id);
    if (!entry) return undefined;
    this.#responses.delete(id);
    this.#responses.set(id, entry);
    return entry.stored;
  }

  /** The item with `id` among the stored responses' items, or undefined. */
  item(id: string): Json | undefined {
    return this.#items.get(id)?.item;
  }

  /** Forgets the response stored under `id` and its items; false where there was none. */
  delete(id: string): boolean {
    const entry = this.#responses.get(id);
    if (!entry) return false;
    this.#responses.delete(id);
    this.#bytes -= entry.bytes;
    for (const id of itemIds(entry.stored)) {
      const held = this.#items.get(id)!;
      if (--held.holders === 0) this.#items.delete(id);
    }
    return true;
  }
}
