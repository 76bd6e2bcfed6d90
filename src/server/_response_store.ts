/**
 * The Responses API's store, in memory: what `POST /v1/responses` keeps of a response created
 * with `store` not false (OpenAI's default, which the Vercel AI SDK's `openai()` provider relies
 * on) — its answer, its conversation's input items and its output items — so that a later request
 * may name it (`previous_response_id`), name one of its items (`{"type": "item_reference"}`), or
 * read and delete it (`GET` / `DELETE /v1/responses/{id}`). vLLM keeps such a store in memory too
 * (opt-in, unbounded); this one is bounded: the least recently used responses go first, past a
 * count or a size (their JSON, images' data URLs included, kept as strings: 2 bytes a character;
 * an item with an id held and counted once, however many of its responses' parts have it).
 * Nothing survives a restart.
 * @module
 */

type Json = Record<string, unknown>;

/** One stored response, as put() takes it and get() gives it back (a copy: the store keeps JSON). */
export interface StoredResponse {
  /** The response object as it was answered (GET /v1/responses/{id}). */
  response: Json;
  /**
   * The whole conversation it answered, as input items: a `previous_response_id`'s conversation
   * expanded, then the request's `input` (item references expanded), each item with an id
   * (`GET /v1/responses/{id}/input_items` lists them). `instructions` are not among them: OpenAI
   * does not carry them over to a response that follows.
   */
  input: Json[];
  /** Its output items (messages, function calls), each with its `id`. */
  output: Json[];
}

/** How much the store holds: the most responses, and the most bytes of their JSON. */
export interface ResponseStoreLimits {
  /** Most responses kept; 0 keeps none (the server is stateless). Default 1000. */
  maxResponses?: number;
  /** Most bytes kept: the stored JSON strings' size in memory ({@link jsonBytes}). Default 64 MiB. */
  maxBytes?: number;
}

/** {@link ResponseStoreLimits}' defaults. */
export const RESPONSE_STORE_DEFAULTS: Required<ResponseStoreLimits> = {
  maxResponses: 1000,
  maxBytes: 64 * 1024 * 1024,
};

/**
 * Bytes a string takes in memory, at most: V8 keeps one of Latin-1 characters in one byte each,
 * any other in two (UTF-16 code units).
 */
const BYTES_PER_CHAR = 2;

/** The bytes `value`'s JSON takes in memory as one string (what the store counts it for). */
export function jsonBytes(value: unknown): number {
  return JSON.stringify(value).length * BYTES_PER_CHAR;
}

/**
 * A stored response as the store holds it: each part as ONE JSON string, parsed when used. The
 * client's objects themselves are not kept: thousands of small ones (an item's extra fields)
 * take many times their JSON's size on the heap, so the bound would not bound the memory.
 *
 * An item the store holds under its id (its own JSON, {@link HeldItem}) is not held again in a
 * part: the part's JSON has the item's id (a string: an item is an object) where the item was —
 * the input's items (each has an id), the output's, and the response object's `output` (the same
 * items again) — and get() puts the item back. An item that is not the one held under its id (a
 * second item of that id) stays in the part's JSON.
 */
interface Held {
  response: string;
  input: string;
  output: string;
  /** Whether `response`'s `output` is an array of items (objects), held as the parts are. */
  itemsOut: boolean;
  /** What it counts for: its strings' bytes (the items held apart counted there, once each). */
  bytes: number;
  /** The ids of its items, each once. */
  ids: Set<string>;
}

/**
 * One item id: its JSON — the first holder's; the responses that hold it carry the same item on
 * (previous_response_id, item references) — and those responses, in the order they were put.
 */
interface HeldItem {
  json: string;
  holders: Set<string>;
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
 * console.assert(store.item("msg_1")?.role === "assistant");
 * ```
 */
export class ResponseStore {
  readonly maxResponses: number;
  readonly maxBytes: number;
  // Insertion order is recency: a response read is moved to the end, the first goes first.
  readonly #responses = new Map<string, Held>();
  // An item id, its JSON, and the stored responses that hold it, in the order they were put: a
  // conversation's earlier items, carried on by previous_response_id, are in every response that
  // followed. The first holder's item is the one given, kept as its own string (an item reference
  // parses that, not a holder's whole conversation: up to maxBytes of it, every reference); it
  // stays while any holder does.
  readonly #items = new Map<string, HeldItem>();
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
    if (!this.enabled) return false;
    const jsonOf = new Map<Json, string>(); // each item object's JSON, made once
    const json = (item: Json) => {
      let made = jsonOf.get(item);
      if (made === undefined) jsonOf.set(item, made = JSON.stringify(item));
      return made;
    };
    // Each item with an id, as its JSON: the last of each id (an output item over an input item).
    const items = new Map<string, string>();
    for (const item of [...stored.input, ...stored.output]) {
      if (typeof item.id === "string") items.set(item.id, json(item));
    }
    // An item as a part holds it: its id where it is the item held under that id once this
    // response is kept (the first holder's where one is), else the item.
    const slot = (item: Json): Json | string =>
      typeof item.id === "string" &&
        (this.#items.get(item.id)?.json ?? items.get(item.id)) === json(item)
        ? item.id
        : item;
    const { response: object } = stored;
    const itemsOut = Array.isArray(object.output) &&
      object.output.every((item) => typeof item === "object" && item !== null);
    const [response, input, output] = [
      itemsOut ? { ...object, output: (object.output as Json[]).map(slot) } : object,
      stored.input.map(slot),
      stored.output.map(slot),
    ].map((part) => JSON.stringify(part));
    const bytes = (response.length + input.length + output.length) * BYTES_PER_CHAR;
    // What it holds alone (its items held already too: once the others go, it holds them) is
    // within maxBytes, so the others going makes room for it; what it adds is its new items.
    let itemBytes = 0;
    let newItemBytes = 0;
    for (const [item, json] of items) {
      const held = this.#items.get(item);
      itemBytes += (held?.json ?? json).length * BYTES_PER_CHAR;
      if (!held) newItemBytes += json.length * BYTES_PER_CHAR;
    }
    if (bytes + itemBytes > this.maxBytes) return false;
    this.#responses.set(id, {
      response,
      input,
      output,
      itemsOut,
      bytes,
      ids: new Set(items.keys()),
    });
    this.#bytes += bytes + newItemBytes;
    for (const [item, json] of items) {
      const held = this.#items.get(item);
      if (held) held.holders.add(id);
      else this.#items.set(item, { json, holders: new Set([id]) });
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
    // An id where an item was: the item held under it (held while this response is).
    const items = (part: unknown[]): Json[] =>
      part.map((item) => typeof item === "string" ? JSON.parse(this.#items.get(item)!.json) : item);
    const response = JSON.parse(entry.response);
    if (entry.itemsOut) response.output = items(response.output);
    return {
      response,
      input: items(JSON.parse(entry.input)),
      output: items(JSON.parse(entry.output)),
    };
  }

  /**
   * The item with `id` among the stored responses' items, or undefined: the first response put
   * that still holds it gives it (its last item of that id: an output item over an input item),
   * so a later response holding another item under that id does not replace it. The store trusts
   * its holders alike: /v1/responses gives it no ids but its own (a client's items lose theirs).
   */
  item(id: string): Json | undefined {
    const held = this.#items.get(id);
    return held && JSON.parse(held.json);
  }

  /** Forgets the response stored under `id` and its items; false where there was none. */
  delete(id: string): boolean {
    const entry = this.#responses.get(id);
    if (!entry) return false;
    this.#responses.delete(id);
    this.#bytes -= entry.bytes;
    for (const item of entry.ids) {
      const held = this.#items.get(item)!;
      held.holders.delete(id);
      if (held.holders.size) continue;
      this.#items.delete(item);
      this.#bytes -= held.json.length * BYTES_PER_CHAR;
    }
    return true;
  }
}
