/**
 * Reading model files (config.json, tokenizer.json, safetensors shards) from a local directory,
 * a `file:` URL or any fetch-able base URL, through one small interface. Only byte ranges are
 * read, so a 144 GB checkpoint is never held in memory.
 *
 * The URL implementation uses only web APIs (fetch, Range requests, streams), so it runs on edge
 * runtimes and in browsers; the directory implementation is a thin Deno adapter that touches the
 * `Deno` global only when used.
 *
 * @example
 * ```ts ignore
 * import { openModelSource } from "./model_files.ts";
 * const src = openModelSource("https://huggingface.co/Qwen/QVQ-72B-Preview/resolve/main");
 * const config = await src.readJson("config.json");
 * const magic = await src.readRange("model-00001-of-00038.safetensors", 0, 8);
 * ```
 * @module
 */
import { InvalidInputError, ModelFileError } from "./errors.ts";

/** Reads named files from one model location. Names are relative paths like `"config.json"`. */
export interface ModelSource {
  /** The directory path or base URL, for messages. */
  readonly location: string;
  /** The full path or URL of `name`, for messages. */
  pathOf(name: string): string;
  /** Whether `name` exists. */
  exists(name: string): Promise<boolean>;
  /** Byte size of `name`; throws ModelFileError naming the file and location when missing. */
  size(name: string): Promise<number>;
  /** Fills `dest` with the bytes of `name` starting at byte `offset`. */
  readInto(name: string, offset: number, dest: Uint8Array): Promise<void>;
  /** `length` bytes of `name` from byte `offset`, as a new array. */
  readRange(name: string, offset: number, length: number): Promise<Uint8Array>;
  /** The whole file. */
  readBytes(name: string): Promise<Uint8Array>;
  /** The whole file as UTF-8 text (invalid UTF-8 is a ModelFileError). */
  readText(name: string): Promise<string>;
  /** The whole file parsed as JSON (invalid JSON is a ModelFileError naming the file). */
  readJson<T = unknown>(name: string): Promise<T>;
  /** Releases open files; the source can still be used afterwards (files reopen on demand). */
  close(): void;
}

/**
 * Checks a file name from a caller or an index file: a relative path without `.`/`..` segments,
 * so a hostile `model.safetensors.index.json` cannot read outside the model location.
 */
export function checkFileName(name: string): string {
  const parts = name.split("/");
  if (
    name === "" || name.includes("\\") || name.includes("\0") ||
    parts.some((p) => p === "" || p === "." || p === "..")
  ) {
    throw new InvalidInputError(
      `Bad model file name ${JSON.stringify(name)}: use a relative path like "config.json" ` +
        `or "sub/file.safetensors", without "..", "." or empty segments.`,
    );
  }
  return name;
}

/** Errors made by `missing()`, so `exists()` tells "absent" from other failures. */
const missingErrors = new WeakSet<Error>();

/**
 * Shared parts of every source: argument checks and the whole-file readers. Subclasses provide
 * `location`, `size`, `readInto` and (when they can do better than a ranged read) `readBytes`.
 */
export abstract class BaseModelSource implements ModelSource {
  abstract readonly location: string;
  abstract size(name: string): Promise<number>;
  protected abstract readIntoChecked(name: string, offset: number, dest: Uint8Array): Promise<void>;

  pathOf(name: string): string {
    return this.location.endsWith("/") ? this.location + name : `${this.location}/${name}`;
  }

  /** The ModelFileError for a missing file. */
  protected missing(name: string, cause?: unknown): ModelFileError {
    // "Qwen/Qwen2-VL-2B-Instruct" read as a relative directory: say how to fetch a hub id.
    const hubId = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(this.location)
      ? ` If "${this.location}" is a Hugging Face model id, download it first (qvq generate, ` +
        `qvq chat and the server do; in code: Pipeline.load(await resolveModel("${this.location}"))) ` +
        `and pass its directory.`
      : "";
    const e = new ModelFileError(
      `Model file "${name}" not found in ${this.location}: check the path or URL, and that the ` +
        `model was downloaded completely.${hubId}`,
      { cause },
    );
    missingErrors.add(e);
    return e;
  }

  /** The ModelFileError for a read that ends past the end of the file. */
  protected truncated(name: string, offset: number, length: number, got: string): ModelFileError {
    return new ModelFileError(
      `Reading bytes ${offset}..${offset + length} of ${this.pathOf(name)} failed: ${got}. ` +
        `The file is truncated or changed while reading; download it again.`,
    );
  }

  async exists(name: string): Promise<boolean> {
    try {
      await this.size(name);
      return true;
    } catch (e) {
      if (e instanceof Error && missingErrors.has(e)) return false;
      throw e;
    }
  }

  readInto(name: string, offset: number, dest: Uint8Array): Promise<void> {
    checkFileName(name);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidInputError(`Bad offset ${offset} reading ${name}: use an integer >= 0.`);
    }
    if (dest.length === 0) return Promise.resolve();
    return this.readIntoChecked(name, offset, dest);
  }

  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new InvalidInputError(`Bad length ${length} reading ${name}: use an integer >= 0.`);
    }
    const dest = new Uint8Array(length);
    await this.readInto(name, offset, dest);
    return dest;
  }

  async readBytes(name: string): Promise<Uint8Array> {
    return await this.readRange(name, 0, await this.size(checkFileName(name)));
  }

  async readText(name: string): Promise<string> {
    const bytes = await this.readBytes(name);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (e) {
      throw new ModelFileError(`${this.pathOf(name)} is not valid UTF-8 text.`, { cause: e });
    }
  }

  async readJson<T = unknown>(name: string): Promise<T> {
    const text = await this.readText(name);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new ModelFileError(
        `${this.pathOf(name)} is not valid JSON (${(e as Error).message}): download it again.`,
        { cause: e },
      );
    }
  }

  close(): void {}
}

/** Options of {@link UrlModelSource}. */
export interface UrlModelSourceOptions {
  /** The fetch to use (default: global fetch), e.g. one that adds caching or serves tests. */
  fetch?: typeof fetch;
  /** Headers sent with every request, e.g. `{ Authorization: "Bearer hf_..." }`. */
  headers?: HeadersInit;
}

/**
 * Files under a base URL (`http:`, `https:`, or any scheme the given fetch serves), read with
 * HTTP Range requests. Servers that ignore Range still work (the body is skipped up to the
 * offset), only slower.
 */
export class UrlModelSource extends BaseModelSource {
  readonly location: string;
  readonly #base: URL;
  readonly #fetch: typeof fetch;
  readonly #headers: HeadersInit | undefined;
  readonly #sizes = new Map<string, Promise<number>>();

  constructor(base: string | URL, options: UrlModelSourceOptions = {}) {
    super();
    const url = new URL(base);
    if (!url.pathname.endsWith("/")) url.pathname += "/";
    this.#base = url;
    this.location = url.href;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#headers = options.headers;
  }

  #url(name: string): URL {
    return new URL(checkFileName(name).split("/").map(encodeURIComponent).join("/"), this.#base);
  }

  override pathOf(name: string): string {
    return this.#url(name).href;
  }

  async #get(name: string, range?: [number, number]): Promise<Response> {
    const headers = new Headers(this.#headers);
    if (range) headers.set("Range", `bytes=${range[0]}-${range[1]}`);
    let res: Response;
    try {
      res = await this.#fetch(this.#url(name), { headers });
    } catch (e) {
      throw new ModelFileError(
        `Could not fetch ${this.pathOf(name)}: ${
          (e as Error).message
        }. Check the URL and the network.`,
        { cause: e },
      );
    }
    if (res.status === 404 || res.status === 410) {
      await res.body?.cancel();
      throw this.missing(name);
    }
    if (!res.ok && res.status !== 416) {
      await res.body?.cancel();
      throw new ModelFileError(
        `Fetching ${this.pathOf(name)} gave HTTP ${res.status} ${res.statusText}: check the URL ` +
          `(and the Authorization header for gated models).`,
      );
    }
    return res;
  }

  size(name: string): Promise<number> {
    let p = this.#sizes.get(name);
    if (!p) {
      p = this.#fetchSize(name);
      this.#sizes.set(name, p);
      p.catch(() => this.#sizes.delete(name));
    }
    return p;
  }

  async #fetchSize(name: string): Promise<number> {
    // A one-byte Range request answers with the total in Content-Range ("bytes 0-0/1234", or
    // "bytes */0" with 416 for an empty file); a server without Range support answers 200 with
    // the whole body, whose Content-Length is the size.
    const res = await this.#get(name, [0, 0]);
    await res.body?.cancel();
    const total = res.headers.get("Content-Range")?.match(/\/(\d+)\s*$/)?.[1];
    const n = Number(total ?? (res.status === 200 ? res.headers.get("Content-Length") : NaN));
    if (!Number.isSafeInteger(n)) {
      throw new ModelFileError(
        `${this.pathOf(name)} did not say its size (HTTP ${res.status}, no usable Content-Range ` +
          `or Content-Length): serve the model from a server that supports Range requests.`,
      );
    }
    return n;
  }

  protected override async readIntoChecked(
    name: string,
    offset: number,
    dest: Uint8Array,
  ): Promise<void> {
    const res = await this.#get(name, [offset, offset + dest.length - 1]);
    if (res.status === 416) {
      await res.body?.cancel();
      throw this.truncated(name, offset, dest.length, "the server says the range is past the end");
    }
    let skip = 0;
    if (res.status === 206) {
      const start = res.headers.get("Content-Range")?.match(/^bytes (\d+)-/)?.[1];
      if (start !== undefined && Number(start) !== offset) {
        await res.body?.cancel();
        throw new ModelFileError(
          `${this.pathOf(name)}: asked for bytes from ${offset} but the server sent bytes from ` +
            `${start}; use a server with standard Range support.`,
        );
      }
    } else {
      skip = offset; // 200: the server ignored Range and sends the whole file
    }
    const got = await readStreamInto(res.body, skip, dest);
    if (got < dest.length) {
      throw this.truncated(name, offset, dest.length, `the server sent only ${got} bytes`);
    }
  }

  override async readBytes(name: string): Promise<Uint8Array> {
    const res = await this.#get(name);
    return new Uint8Array(await res.arrayBuffer());
  }
}

/**
 * Copies a byte stream into `dest` after skipping `skip` bytes; cancels the rest of the stream.
 * Returns how many bytes of `dest` were filled.
 */
async function readStreamInto(
  body: ReadableStream<Uint8Array> | null,
  skip: number,
  dest: Uint8Array,
): Promise<number> {
  if (!body) return 0;
  const reader = body.getReader();
  let filled = 0;
  try {
    while (filled < dest.length) {
      const { done, value } = await reader.read();
      if (done) break;
      let chunk = value;
      if (skip > 0) {
        const s = Math.min(skip, chunk.length);
        skip -= s;
        chunk = chunk.subarray(s);
      }
      const n = Math.min(chunk.length, dest.length - filled);
      dest.set(chunk.subarray(0, n), filled);
      filled += n;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return filled;
}

/** Files held in memory, keyed by name (tests, and files that arrived as bytes). */
export class MemoryModelSource extends BaseModelSource {
  readonly location: string;
  readonly #files: Map<string, Uint8Array>;

  constructor(files: Record<string, Uint8Array>, location = "memory") {
    super();
    this.#files = new Map(Object.entries(files));
    this.location = location;
  }

  #file(name: string): Uint8Array {
    const f = this.#files.get(checkFileName(name));
    if (!f) throw this.missing(name);
    return f;
  }

  size(name: string): Promise<number> {
    return Promise.resolve().then(() => this.#file(name).length);
  }

  protected override readIntoChecked(name: string, offset: number, dest: Uint8Array) {
    return Promise.resolve().then(() => {
      const f = this.#file(name);
      if (offset + dest.length > f.length) {
        throw this.truncated(name, offset, dest.length, `the file has ${f.length} bytes`);
      }
      dest.set(f.subarray(offset, offset + dest.length));
    });
  }
}

// ---- Deno adapter: local directories ----

/**
 * Open handles of one file, each with the tail of its queue: seek+read pairs on one handle must
 * not interleave, so reads in parallel use different handles (up to {@link HANDLES_PER_FILE}).
 */
interface OpenFile {
  handles: { file: Promise<Deno.FsFile>; queue: Promise<unknown>; pending: number }[];
}

/**
 * Handles a file may have open at once: reads of a few MB each from the page cache run about
 * 7× faster with 8 in flight than one after another (H200 host: 41 vs 6 GB/s).
 */
const HANDLES_PER_FILE = 8;

/** Handles open at once over all files of a source (macOS allows a process 256 by default). */
const MAX_OPEN_FILES = 32;

/** Files under a local directory (a path, or a `file:` URL). */
export class DirModelSource extends BaseModelSource {
  readonly location: string;
  readonly #open = new Map<string, OpenFile>();

  constructor(dir: string | URL) {
    super();
    const path = dir instanceof URL ? decodeURIComponent(dir.pathname) : dir;
    // "/C:/models" from a Windows file: URL is "C:/models".
    this.location = (/^\/[A-Za-z]:\//.test(path) ? path.slice(1) : path).replace(/\/+$/, "") ||
      "/";
  }

  #path(name: string): string {
    return this.pathOf(checkFileName(name));
  }

  /** Runs a Deno file call, turning NotFound into the ModelFileError naming file and dir. */
  async #fs<T>(name: string, f: (path: string) => Promise<T>): Promise<T> {
    try {
      return await f(this.#path(name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw this.missing(name, e);
      if (e instanceof ModelFileError) throw e;
      if (e instanceof Deno.errors.NotADirectory) {
        throw new ModelFileError(
          `${this.location} is a file, not a model directory: pass the directory that holds ` +
            `config.json, the *.safetensors files and tokenizer.json.`,
          { cause: e },
        );
      }
      throw new ModelFileError(
        `Could not read ${this.pathOf(name)}: ${(e as Error).message}.`,
        { cause: e },
      );
    }
  }

  async size(name: string): Promise<number> {
    const info = await this.#fs(name, (p) => Deno.stat(p));
    if (!info.isFile) {
      throw new ModelFileError(`${this.pathOf(name)} is not a file.`);
    }
    return info.size;
  }

  override readBytes(name: string): Promise<Uint8Array> {
    return this.#fs(name, (p) => Deno.readFile(p));
  }

  /**
   * The handle for the next read of `name`: an idle one, a new one, or the least busy. Past
   * {@link MAX_OPEN_FILES} handles in all (a 72B checkpoint has ~40 shards), an idle handle of
   * another file is closed first, or this file's busy ones are shared (a file with none still
   * opens one).
   */
  #handle(name: string) {
    let open = this.#open.get(name);
    if (!open) this.#open.set(name, open = { handles: [] });
    const hs = open.handles;
    const idle = hs.find((h) => h.pending === 0);
    if (idle) return idle;
    if (hs.length < HANDLES_PER_FILE && (this.#closeIdle(open) || hs.length === 0)) {
      const file = this.#fs(name, (p) => Deno.open(p));
      const h = { file, queue: Promise.resolve(), pending: 0 };
      hs.push(h);
      // A failed open is not kept: the next read tries again (and reports its own error).
      file.catch(() => open.handles = open.handles.filter((x) => x !== h));
      return h;
    }
    return hs.reduce((a, b) => (b.pending < a.pending ? b : a));
  }

  /** Whether another handle may be opened: under the cap, or after closing an idle one elsewhere. */
  #closeIdle(except: OpenFile): boolean {
    let total = 0;
    for (const o of this.#open.values()) total += o.handles.length;
    if (total < MAX_OPEN_FILES) return true;
    for (const o of this.#open.values()) {
      const i = o === except ? -1 : o.handles.findIndex((h) => h.pending === 0);
      if (i >= 0) {
        const [h] = o.handles.splice(i, 1);
        h.queue.then(() => h.file).then((f) => f.close()).catch(() => {});
        return true;
      }
    }
    return false;
  }

  protected override async readIntoChecked(
    name: string,
    offset: number,
    dest: Uint8Array,
  ): Promise<void> {
    const h = this.#handle(name);
    h.pending++;
    const read = h.queue.then(async () => {
      const file = await h.file;
      await file.seek(offset, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < dest.length) {
        const n = await file.read(dest.subarray(filled));
        if (n === null) {
          throw this.truncated(name, offset, dest.length, `the file ends after ${filled} bytes`);
        }
        filled += n;
      }
    });
    h.queue = read.catch(() => {});
    try {
      await read;
    } finally {
      h.pending--;
    }
  }

  override close(): void {
    for (const open of this.#open.values()) {
      for (const h of open.handles) {
        h.queue.then(() => h.file).then((f) => f.close()).catch(() => {});
      }
    }
    this.#open.clear();
  }
}

/**
 * The source for a location: `http:`/`https:` URLs read with fetch; a `file:` URL or a plain
 * path reads a local directory (Deno).
 *
 * @example
 * ```ts ignore
 * const src = openModelSource("tests/fixtures/tiny-qwen2vl");
 * const cfg = await src.readJson<{ model_type: string }>("config.json");
 * ```
 */
export function openModelSource(
  location: string | URL,
  options: UrlModelSourceOptions = {},
): ModelSource {
  const s = String(location);
  if (/^https?:\/\//i.test(s)) return new UrlModelSource(s, options);
  if (location instanceof URL || /^file:/i.test(s)) return new DirModelSource(new URL(s));
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(s)) {
    if (options.fetch) return new UrlModelSource(s, options);
    throw new InvalidInputError(
      `Unsupported model location ${JSON.stringify(s)}: use a directory path, a file: URL, ` +
        `or an http(s) URL (or pass options.fetch for other schemes).`,
    );
  }
  if (!s.trim()) {
    throw new InvalidInputError(
      "The model location is empty: pass a model directory, a file: URL or an http(s) URL.",
    );
  }
  return new DirModelSource(s);
}
