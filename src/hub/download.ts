/**
 * Downloads a Qwen2-VL / QVQ checkpoint from the Hugging Face hub into the standard hub cache
 * (shared with Python's huggingface_hub), resuming interrupted downloads and checking every file's
 * size and, for LFS files, its sha256.
 *
 * Protocol (as huggingface_hub's `hf_hub_download`): `HEAD <endpoint>/<repo>/resolve/<revision>/<file>`
 * without following the redirect to the CDN gives the commit (`X-Repo-Commit`), the blob name
 * (`X-Linked-Etag` or `ETag`) and the size (`X-Linked-Size` or `Content-Length`); the file is then
 * fetched (redirects followed) into `blobs/<etag>.incomplete`, with `Range` to resume.
 *
 * @example
 * ```ts ignore
 * import { downloadModel } from "./download.ts";
 * const dir = await downloadModel("Qwen/Qwen2-VL-2B-Instruct");
 * // dir: ~/.cache/huggingface/hub/models--Qwen--Qwen2-VL-2B-Instruct/snapshots/<commit>
 * ```
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { basename, join } from "node:path";
import { InvalidInputError, ModelFileError } from "../errors.ts";
import { checkFileName } from "../model_files.ts";
import { parseConfig } from "../model/config.ts";
import {
  checkRevision,
  COMMIT_HASH,
  defaultCacheDir,
  expandPath,
  fileSize,
  hfHome,
  pathSegment,
  RepoCache,
} from "./_cache.ts";
import { ProgressBar, type ProgressSink, stderrSink } from "./_progress.ts";

export type { ProgressSink } from "./_progress.ts";

/** How to reach the hub and where to cache; unset fields come from the environment. */
export interface DownloadOptions {
  /** Branch, tag or commit hash. Default "main". */
  revision?: string;
  /** The hub's base URL. Default `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /**
   * Access token for gated or private models. Default `HF_TOKEN`, else the token `hf auth login`
   * saved (`HF_TOKEN_PATH`, else `$HF_HOME/token`), as huggingface_hub reads it.
   */
  token?: string;
  /** Cache root. Default `HF_HUB_CACHE`, else `$HF_HOME/hub`, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Use only the cache (no network). Default: `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`). */
  offline?: boolean;
  /**
   * A progress bar on stderr (true), none (false), or your own sink. Default true: redrawn in place
   * on a terminal, a line every 10 % where stderr is a file or a pipe (`docker logs`).
   */
  progress?: boolean | ProgressSink;
  /**
   * Seconds to wait for the hub's answer to a file's metadata (default `HF_HUB_ETAG_TIMEOUT`, else
   * 10) and for the next bytes of a download before resuming it (default `HF_HUB_DOWNLOAD_TIMEOUT`,
   * else 10), as huggingface_hub: a stalled connection is retried, not waited on forever.
   */
  timeoutSeconds?: number;
  /** Times a dropped download is resumed before giving up. Default 5. */
  retries?: number;
  /** Files downloaded at once. Default 4. */
  concurrency?: number;
  /** Cancels the download; the partial file stays and is resumed next time. */
  signal?: AbortSignal;
}

/** The files a checkpoint needs besides its weights; `optional` ones may be absent from the repo. */
export const MODEL_FILES: readonly { name: string; optional: boolean }[] = [
  { name: "config.json", optional: false },
  { name: "generation_config.json", optional: true },
  // Image settings: preprocessor_config.json (the hub's Qwen2-VL repos) or, as transformers 5
  // saves them, nested in processor_config.json; ChatProcessor.load says when neither is there.
  { name: "preprocessor_config.json", optional: true },
  { name: "processor_config.json", optional: true },
  { name: "video_preprocessor_config.json", optional: true },
  { name: "tokenizer.json", optional: false },
  { name: "tokenizer_config.json", optional: false },
  { name: "chat_template.json", optional: true },
  { name: "chat_template.jinja", optional: true },
];
const INDEX = "model.safetensors.index.json";
const SINGLE = "model.safetensors";
const DEFAULT_ENDPOINT = "https://huggingface.co";
/**
 * A blob's name, the hub's ETag: the git blob sha1 of a plain file, the sha256 of an LFS one
 * (X-Linked-Etag). The hub sends nothing else, and the name becomes a file's in the cache.
 */
const BLOB_NAME = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;
/** The longest file name (one path segment) Linux, macOS and Windows all take, in UTF-8 bytes. */
const NAME_MAX = 255;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}

/** What HEAD says about one file. */
interface FileMeta {
  name: string;
  /**
   * Where to GET it: the resolve URL pinned to the commit. Each attempt follows its redirect anew,
   * because the CDN URLs it leads to are signed and expire (a 72B download outlasts them).
   */
  url: string;
  commit: string;
  etag: string;
  size: number;
}

interface Context {
  repoId: string;
  /** The hub's base URL; it may hold credentials, which downloadModel hides from its errors. */
  endpoint: string;
  headers: Record<string, string>;
  /** Whether a token is sent (for what a 401 means). */
  token: boolean;
  cache: RepoCache;
  retries: number;
  /** Whether the snapshot links its blobs (else holds them: HF_HUB_DISABLE_SYMLINKS). */
  symlinks: boolean;
  /** Longest wait for a HEAD's answer, in ms. */
  headTimeoutMs: number;
  /** Longest wait between two chunks of a download, in ms. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * The hub could not be reached, or did not answer in time: the download falls back to a complete
 * cached snapshot where there is one.
 */
class HubUnreachable extends ModelFileError {}

/** An HTTP error from the hub, with its X-Error-Code (RevisionNotFound, GatedRepo, …). */
class HubHttpError extends ModelFileError {
  constructor(message: string, readonly status: number, readonly code: string | null) {
    super(message);
  }
}

/** `other`, also aborted with the caller's `signal` where there is one. */
function joined(signal: AbortSignal | undefined, other: AbortSignal): AbortSignal {
  return signal ? AbortSignal.any([signal, other]) : other;
}

/** huggingface_hub's token file: HF_TOKEN_PATH, else $HF_HOME/token (~/.cache/huggingface/token). */
function savedToken(): string | undefined {
  const path = env("HF_TOKEN_PATH");
  try {
    return cleanToken(
      Deno.readTextFileSync(path ? expandPath(path, env) : join(hfHome(env), "token")),
    );
  } catch {
    return undefined; // none saved, or not readable
  }
}

/** huggingface_hub's `_clean_token`: no line breaks, no surrounding blanks; empty is none. */
function cleanToken(token: string | undefined): string | undefined {
  return token?.replace(/[\r\n]/g, "").trim() || undefined;
}

/**
 * The token a request sends unless given one: HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), else
 * the saved one — none with HF_HUB_DISABLE_IMPLICIT_TOKEN, as huggingface_hub.
 */
function implicitToken(): string | undefined {
  if (isTrue(env("HF_HUB_DISABLE_IMPLICIT_TOKEN"))) return undefined;
  return cleanToken(env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN")) ?? savedToken();
}

/** huggingface_hub's `_is_true` of a variable. */
function isTrue(value: string | undefined): boolean {
  return ["1", "ON", "YES", "TRUE"].includes(value?.toUpperCase() ?? "");
}

/** Seconds from variable `name` (a positive number), else 10: huggingface_hub's timeouts. */
function seconds(name: string): number {
  const s = Number(env(name));
  return Number.isFinite(s) && s > 0 ? s : 10;
}

/** huggingface_hub's `_normalize_etag`: drop a weak `W/` prefix and the quotes. */
function normalizeEtag(etag: string): string {
  return etag.replace(/^W\//, "").replace(/^"|"$/g, "");
}

/** The hub's reason for a failed request, from its X-Error-Code and X-Error-Message headers. */
function hubError(
  ctx: Context,
  file: string,
  revision: string,
  response: Response,
): HubHttpError {
  const code = response.headers.get("x-error-code");
  const said = response.headers.get("x-error-message");
  const where = `${ctx.endpoint}/${ctx.repoId}`;
  const error = (message: string) => new HubHttpError(message, response.status, code);
  if (code === "GatedRepo") {
    return error(
      `"${ctx.repoId}" is gated: accept its license on ${where} and set HF_TOKEN to a token of ` +
        `that account${said ? ` (the hub said: ${said})` : ""}.`,
    );
  }
  if (code === "RevisionNotFound") {
    return error(
      `"${ctx.repoId}" has no revision "${revision}"; use a branch, tag or commit hash.`,
    );
  }
  if (response.status === 401 && ctx.token && code !== "RepoNotFound") {
    return error(
      `${ctx.endpoint} refused the token (HF_TOKEN or the saved one)${said ? `: ${said}` : ""}. ` +
        `Set HF_TOKEN to a valid token.`,
    );
  }
  if (code === "RepoNotFound" || response.status === 401) {
    return error(
      `No model "${ctx.repoId}" on ${ctx.endpoint} (or it is private: set HF_TOKEN). ` +
        `Check the id, e.g. "Qwen/Qwen2-VL-2B-Instruct", or pass a local model directory.`,
    );
  }
  if (response.status === 403) {
    return error(
      `${ctx.endpoint} forbids "${file}" of "${ctx.repoId}"${said ? `: ${said}` : ""}. Make sure ` +
        `HF_TOKEN is set to a token with read access to it.`,
    );
  }
  return error(
    `Downloading "${file}" of "${ctx.repoId}" failed: HTTP ${response.status} from ${where} ` +
      `(${said ?? code ?? response.statusText}).`,
  );
}

/** The file's URL; each segment of its name encoded, so `?`, `#` or `%2e%2e` stay in the name. */
function resolveUrl(ctx: Context, revision: string, file: string): string {
  const path = file.split("/").map(encodeURIComponent).join("/");
  return `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/**
 * HEAD of one file; undefined when the repo has no such file. Relative redirects (a renamed repo)
 * are followed; an absolute one leads to the CDN, and its headers describe the file.
 */
async function headFile(
  ctx: Context,
  revision: string,
  name: string,
): Promise<FileMeta | undefined> {
  let url = resolveUrl(ctx, revision, name);
  for (let hop = 0; hop < 5; hop++) {
    let response: Response;
    try {
      response = await fetch(url, {
        method: "HEAD",
        redirect: "manual",
        headers: ctx.headers,
        signal: joined(ctx.signal, AbortSignal.timeout(ctx.headTimeoutMs)),
      });
    } catch (error) {
      if (ctx.signal?.aborted) throw error;
      const why = error instanceof DOMException && error.name === "TimeoutError"
        ? `no answer within ${ctx.headTimeoutMs / 1000} s`
        : (error as Error).message;
      throw new HubUnreachable(
        `Cannot reach ${ctx.endpoint} for "${name}" of "${ctx.repoId}" (${why}).`,
        {
          cause: error,
        },
      );
    }
    await response.body?.cancel();
    const location = response.headers.get("location");
    const isRedirect = response.status >= 300 && response.status < 400 && location;
    // The hub's own redirects (a renamed repo; a mirror sending on to the hub) are followed, with
    // the token: one that resolves to a hub origin and is no LFS file's (those carry X-Linked-Etag
    // and point at the CDN, which the download follows). The origin is decided on the resolved
    // URL, as fetch will read it: "//host/x", "\\host/x" or "h\ttp://host/x" are other hosts.
    const next = isRedirect ? URL.parse(location, url) : null;
    if (
      next && !response.headers.get("x-linked-etag") && hubOrigins(ctx, url).includes(next.origin)
    ) {
      url = next.href;
      continue;
    }
    if (!isRedirect && !response.ok) {
      if (response.status === 404 && response.headers.get("x-error-code") === "EntryNotFound") {
        return;
      }
      if (response.status === 404 && !response.headers.get("x-error-code")) return; // a plain file server
      throw hubError(ctx, name, revision, response);
    }
    const h = response.headers;
    const commit = h.get("x-repo-commit");
    const etagHeader = h.has("x-linked-etag") ? "X-Linked-Etag" : "ETag";
    const etag = h.get(etagHeader);
    const sizeHeader = h.has("x-linked-size") ? "X-Linked-Size" : "Content-Length";
    const size = h.get(sizeHeader);
    if (!commit || etag === null || size === null) {
      const elsewhere = next ? ` (it redirected to ${next.origin})` : "";
      throw new ModelFileError(
        `${url} did not answer like the Hugging Face hub (missing X-Repo-Commit, ETag or size)` +
          `${elsewhere}. Check HF_ENDPOINT ("${ctx.endpoint}").`,
      );
    }
    // The commit and the ETag name a folder and a file in the cache: only the shapes the hub
    // sends are taken ("../../x" would write outside it), and the size must be one.
    const refuse = (header: string, value: string, want: string) =>
      new ModelFileError(
        `${url} answered ${header} ${JSON.stringify(value)} for "${name}" of "${ctx.repoId}": ` +
          `not ${want}, as the Hugging Face hub sends. Check HF_ENDPOINT ("${ctx.endpoint}").`,
      );
    if (!COMMIT_HASH.test(commit)) throw refuse("X-Repo-Commit", commit, "a commit hash");
    if (!BLOB_NAME.test(normalizeEtag(etag))) {
      throw refuse(etagHeader, etag, "a git sha1 or an LFS sha256 (40 or 64 hex digits)");
    }
    if (!/^\d+$/.test(size) || !Number.isSafeInteger(Number(size))) {
      throw refuse(sizeHeader, size, "a size in bytes");
    }
    return {
      name,
      url: resolveUrl(ctx, commit, name),
      commit,
      etag: normalizeEtag(etag),
      size: Number(size),
    };
  }
  throw new ModelFileError(`Too many redirects for "${name}" of "${ctx.repoId}" (${url}).`);
}

/** Origins whose redirects are the hub's own: the request's, HF_ENDPOINT's, huggingface.co's. */
function hubOrigins(ctx: Context, url: string): string[] {
  return [new URL(url).origin, new URL(ctx.endpoint).origin, DEFAULT_ENDPOINT, "https://hf.co"];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** sha256 fed chunk by chunk (a multi-GB shard never sits in memory); `clear()` starts over. */
class Sha256 {
  #hash: Hash = createHash("sha256");
  update(bytes: Uint8Array): void {
    this.#hash.update(bytes);
  }
  clear(): void {
    this.#hash = createHash("sha256");
  }
  hex(): string {
    return this.#hash.digest("hex");
  }
}

/** Feeds the first `length` bytes of `path` to `hash` (the part a resumed download already has). */
async function hashPrefix(hash: Sha256, path: string, length: number): Promise<void> {
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(1 << 20);
  for (let left = length; left > 0;) {
    const n = await file.read(buffer.subarray(0, Math.min(left, buffer.length)));
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
    left -= n;
  }
}

/**
 * Appends `bytes` to `file` and feeds `hash` exactly what was written, so that after a failed write
 * the hash still describes the bytes on disk. A failed write is a {@link localWriteError}.
 */
async function writeAll(
  file: Deno.FsFile,
  path: string,
  bytes: Uint8Array,
  hash: Sha256 | undefined,
): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    let n: number;
    try {
      n = await file.write(bytes.subarray(at));
    } catch (error) {
      throw localWriteError(path, error);
    }
    hash?.update(bytes.subarray(at, at + n));
    at += n;
  }
}

/** A disk that is full or not writable: final (retrying cannot help), unlike a dropped connection. */
function localWriteError(path: string, error: unknown): ModelFileError {
  return new ModelFileError(
    `Cannot write ${path} (${error instanceof Error ? error.message : error}): make it ` +
      `writable, free disk space, or set HF_HOME (or HF_HUB_CACHE) to a writable directory with ` +
      `room for the model.`,
    { cause: error },
  );
}

/**
 * An error of the file system (a cache that is not writable, or a file where a directory should
 * be): Deno's error classes, which fetch's network failures (TypeError) are not.
 */
function isFsError(error: unknown): boolean {
  return Object.values(Deno.errors).some((C) => error instanceof C) &&
    !(error instanceof Deno.errors.Interrupted);
}

/** A dropped connection or server hiccup worth resuming after (not a wrong file or a 4xx). */
class Transient extends Error {}

/**
 * One attempt: appends to `partial` from its current length. Returns when the server has sent
 * everything; throws Transient for a dropped connection or a 5xx, ModelFileError for a wrong size
 * or a local write error (a full or read-only disk: retrying would not help).
 */
async function fetchInto(
  ctx: Context,
  meta: FileMeta,
  partial: string,
  hash: Sha256 | undefined,
  progress: ProgressBar | undefined,
): Promise<void> {
  let have = (await fileSize(partial)) ?? 0;
  const headers = { ...ctx.headers, ...(have > 0 ? { range: `bytes=${have}-` } : {}) };
  // A connection that stalls (half-open, a black-holing proxy) is dropped after ctx.timeoutMs
  // without bytes and resumed, as huggingface_hub's read timeout does, instead of hanging.
  const stall = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const kick = () => {
    clearTimeout(timer);
    timer = setTimeout(() => stall.abort(), ctx.timeoutMs);
  };
  const why = (error: unknown) =>
    stall.signal.aborted ? `no data for ${ctx.timeoutMs / 1000} s` : String(error);
  kick();
  try {
    let response: Response;
    try {
      response = await fetch(meta.url, { headers, signal: joined(ctx.signal, stall.signal) });
    } catch (error) {
      if (ctx.signal?.aborted) throw error;
      throw new Transient(`request failed: ${why(error)}`);
    }
    if (response.status === 416 && have === meta.size) return; // already complete
    if (response.status >= 500) {
      await response.body?.cancel();
      throw new Transient(`HTTP ${response.status}`);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw hubError(ctx, meta.name, meta.commit, response);
    }
    if (response.status === 200 && have > 0) {
      // The server ignored Range: start over.
      await Deno.truncate(partial, 0);
      have = 0;
      hash?.clear();
    }
    if (response.status === 206) {
      // The part must start where the partial file ends, or appending it would shift the rest.
      const start = response.headers.get("content-range")?.match(/^bytes (\d+)-/)?.[1];
      if (start === undefined || Number(start) !== have) {
        await response.body?.cancel();
        await Deno.truncate(partial, 0);
        hash?.clear();
        throw new Transient(
          `asked for bytes from ${have}, the server sent ` +
            `${start === undefined ? "a part without Content-Range" : `bytes from ${start}`}; ` +
            `starting over`,
        );
      }
    }
    const total = response.status === 206
      ? Number(response.headers.get("content-range")?.match(/\/(\d+)$/)?.[1] ?? NaN)
      : Number(response.headers.get("content-length") ?? NaN);
    if (Number.isFinite(total) && total !== meta.size) {
      await response.body?.cancel();
      throw new ModelFileError(
        `"${meta.name}" of "${ctx.repoId}": the hub announced ${meta.size} bytes but the download is ` +
          `${total} bytes (${meta.url}). The file changed or the server is misconfigured; try again later.`,
      );
    }
    using file = await Deno.open(partial, { write: true, create: true, append: true }).catch(
      async (error) => {
        await response.body?.cancel();
        throw localWriteError(partial, error);
      },
    );
    try {
      for await (const chunk of response.body ?? []) {
        kick();
        have += chunk.length;
        if (have > meta.size) {
          throw new ModelFileError(
            `"${meta.name}" of "${ctx.repoId}": received more than the announced ${meta.size} bytes.`,
          );
        }
        await writeAll(file, partial, chunk, hash);
        progress?.add(chunk.length);
      }
    } catch (error) {
      if (error instanceof ModelFileError || ctx.signal?.aborted) throw error;
      throw new Transient(`connection dropped after ${have} bytes: ${why(error)}`);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `f` holding blob `etag`'s lock: the lock file huggingface_hub uses, so Python and qvq (and
 * two downloads here) never write one blob, or move it into a snapshot, at once.
 */
async function withBlobLock<T>(
  ctx: Context,
  cacheDir: string,
  etag: string,
  f: () => Promise<T>,
): Promise<T> {
  const lockDir = join(cacheDir, ".locks", ctx.cache.dir.split(/[\\/]/).at(-1)!);
  const lockFile = join(lockDir, `${pathSegment(etag, "The blob name (ETag)")}.lock`);
  await Deno.mkdir(lockDir, { recursive: true });
  using lock = await Deno.open(lockFile, { write: true, create: true });
  await lock.lock(true);
  try {
    return await f();
  } finally {
    await lock.unlock();
  }
}

/**
 * Downloads one blob into the cache (resuming its .incomplete file), verifying size and sha256 —
 * unless, once its lock is held, it is there, or `present()` says the snapshot holds its file (a
 * cache without symlinks, whose blob another download moved there meanwhile).
 */
function downloadBlob(
  ctx: Context,
  cacheDir: string,
  meta: FileMeta,
  progress?: ProgressBar,
  present: () => Promise<boolean> = () => Promise.resolve(false),
): Promise<void> {
  return withBlobLock(ctx, cacheDir, meta.etag, () => fetchBlob(ctx, meta, progress, present));
}

async function fetchBlob(
  ctx: Context,
  meta: FileMeta,
  progress: ProgressBar | undefined,
  present: () => Promise<boolean>,
): Promise<void> {
  const blob = ctx.cache.blob(meta.etag);
  await Deno.mkdir(join(blob, ".."), { recursive: true });
  if ((await fileSize(blob)) === meta.size || await present()) return progress?.add(meta.size);
  const partial = `${blob}.incomplete`;
  // Appending follows a link (or writes a device) planted at the partial's name: only a file of
  // our own is resumed; anything else is removed (a link, not what it points at) and started over.
  const kind = await Deno.lstat(partial).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  });
  if (kind && !kind.isFile) await Deno.remove(partial);
  const have = (await fileSize(partial)) ?? 0;
  if (have > meta.size) await Deno.truncate(partial, 0);
  // Only LFS files can be verified: their ETag is their sha256.
  const hash = /^[0-9a-f]{64}$/.test(meta.etag) ? new Sha256() : undefined;
  if (hash && have > 0 && have <= meta.size) await hashPrefix(hash, partial, have);
  progress?.add(have <= meta.size ? have : 0);
  for (let attempt = 0;; attempt++) {
    try {
      await fetchInto(ctx, meta, partial, hash, progress);
      break;
    } catch (error) {
      if (!(error instanceof Transient) || attempt >= ctx.retries) {
        if (error instanceof Transient) {
          throw new ModelFileError(
            `Downloading "${meta.name}" of "${ctx.repoId}" failed ${
              attempt + 1
            } times (${error.message}). ` +
              `Run again to resume from ${(await fileSize(partial)) ?? 0} bytes.`,
          );
        }
        throw error;
      }
      await sleep(attempt === 0 ? 0 : 1000 * 2 ** (attempt - 1));
    }
  }
  const got = (await fileSize(partial)) ?? 0;
  if (got !== meta.size) {
    throw new ModelFileError(
      `"${meta.name}" of "${ctx.repoId}": downloaded ${got} bytes, the hub announced ${meta.size}. ` +
        `Delete ${partial} and try again.`,
    );
  }
  if (hash) {
    const digest = hash.hex();
    if (digest !== meta.etag) {
      await Deno.remove(partial);
      throw new ModelFileError(
        `"${meta.name}" of "${ctx.repoId}" is corrupt: sha256 ${digest}, expected ${meta.etag}. ` +
          `The partial file was deleted; run again to download it afresh.`,
      );
    }
  }
  await Deno.rename(partial, blob);
}

/**
 * Runs `work` on every item, at most `limit` at once. After a failure no new item starts, and the
 * first error is thrown once the running ones have ended (so no download is left writing).
 */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length && errors.length === 0) {
      await work(items[next++]).catch((e) => errors.push(e));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
}

/**
 * Shard names listed by an index file's weight_map, each checked to stay inside the repo and to be
 * a name the snapshot can hold: no part longer than a file system takes, none under another file.
 */
async function shardNames(path: string, repoId: string): Promise<string[]> {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new ModelFileError(`${INDEX} of "${repoId}" is not valid JSON (${path}): ${error}`);
  }
  if (typeof index.weight_map !== "object" || index.weight_map === null) {
    throw new ModelFileError(`${INDEX} of "${repoId}" has no "weight_map" object (${path}).`);
  }
  const names: unknown[] = [...new Set(Object.values(index.weight_map))];
  const files = new Set<unknown>([...MODEL_FILES.map((f) => f.name), INDEX, SINGLE, ...names]);
  const encoder = new TextEncoder();
  return names.map((name) => {
    const bad = (why: string) =>
      new ModelFileError(
        `${INDEX} of "${repoId}" (${path}) names a bad shard file ${JSON.stringify(name)}: ${why}.`,
      );
    if (typeof name !== "string") throw bad("not a string");
    try {
      checkFileName(name);
    } catch (error) {
      if (!(error instanceof InvalidInputError)) throw error;
      throw bad(`a relative path without "..", "." or empty parts is needed`);
    }
    const parts = name.split("/");
    const long = parts.find((p) => encoder.encode(p).length > NAME_MAX);
    if (long !== undefined) throw bad(`a part of it is longer than ${NAME_MAX} bytes`);
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (files.has(dir)) throw bad(`"${dir}" is a file of the repository, not a folder`);
    }
    return name;
  });
}

/**
 * Parses a downloaded config.json as Pipeline.load does (src/model/config.ts parseConfig).
 * @throws ModelFileError naming the repository's config.json and what qvq cannot run
 */
async function checkConfig(path: string, repoId: string): Promise<void> {
  const file = `config.json of "${repoId}"`;
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    throw new ModelFileError(`${file} is not valid JSON (${path}): ${error.message}`);
  }
  parseConfig(json, file);
}

/** The snapshot of `revision` if the cache holds every file it needs, else undefined. */
async function cachedSnapshot(cache: RepoCache, revision: string): Promise<string | undefined> {
  const commit = await cache.readRef(revision);
  if (!commit) return;
  const dir = cache.snapshot(commit);
  const has = async (name: string) => (await fileSize(join(dir, name))) !== undefined;
  for (const f of MODEL_FILES) if (!f.optional && !(await has(f.name))) return;
  if (await has(INDEX)) {
    for (const shard of await shardNames(join(dir, INDEX), cache.repoId)) {
      if (!(await has(shard))) return;
    }
    return dir;
  }
  return (await has(SINGLE)) ? dir : undefined;
}

/**
 * Downloads the files of hub model `repoId` that are not cached yet and returns the local snapshot
 * directory (`<cache>/models--Org--Name/snapshots/<commit>`), ready for `Pipeline.load`.
 * Offline, or when the hub cannot be reached, a complete cached snapshot is used instead.
 *
 * @example
 * ```ts ignore
 * const dir = await downloadModel("Qwen/QVQ-72B-Preview", { revision: "main" });
 * ```
 */
export async function downloadModel(
  repoId: string,
  options: DownloadOptions = {},
): Promise<string> {
  try {
    return await downloadOrCached(repoId, options);
  } catch (error) {
    throw withoutCredentials(error);
  }
}

/**
 * `text` with the user name and password left out of every URL in it: HF_ENDPOINT may hold them
 * (`https://user:password@mirror`), and messages end in logs.
 */
function hideCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z\d+.-]*:\/\/)[^\s/?#]*@/gi, "$1");
}

/** `error` with {@link hideCredentials} applied to its message, stack and causes. */
function withoutCredentials(error: unknown): unknown {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    for (const key of ["message", "stack"] as const) {
      const text = e[key];
      // Only where it changes: a DOMException's message cannot be set.
      if (text !== undefined && hideCredentials(text) !== text) e[key] = hideCredentials(text);
    }
  }
  return error;
}

/** {@link downloadModel}, whose errors may still hold HF_ENDPOINT's credentials. */
async function downloadOrCached(repoId: string, options: DownloadOptions): Promise<string> {
  if (
    !/^[\w.-]+\/[\w.-]+$/.test(repoId) || repoId.split("/").some((p) => p === "." || p === "..")
  ) {
    throw new ModelFileError(
      `"${repoId}" is not a hub model id; use "org/name", e.g. "Qwen/QVQ-72B-Preview".`,
    );
  }
  // It names refs/<revision> in the cache: "../x" would lead out of it.
  const revision = checkRevision(options.revision ?? "main");
  const cacheDir = options.cacheDir ?? defaultCacheDir(env);
  const cache = new RepoCache(cacheDir, repoId);
  // huggingface_hub: HF_HUB_OFFLINE where set (also to 0), else TRANSFORMERS_OFFLINE.
  const offline = options.offline ?? isTrue(env("HF_HUB_OFFLINE") ?? env("TRANSFORMERS_OFFLINE"));
  if (offline) {
    const dir = await cachedSnapshot(cache, revision).catch((error) => {
      throw isFsError(error) ? localWriteError(cache.dir, error) : error;
    });
    if (dir) return dir;
    throw new ModelFileError(
      `Offline (HF_HUB_OFFLINE), and the cache ${cache.dir} has no complete snapshot of "${repoId}" ` +
        `at "${revision}". Download it once online.`,
    );
  }
  const token = options.token ?? implicitToken();
  const given = options.timeoutSeconds;
  const timeout = (s: number) => 1000 * (given !== undefined && given > 0 ? given : s);
  const ctx: Context = {
    repoId,
    endpoint: (options.endpoint ?? env("HF_ENDPOINT") ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    // identity: sizes must be the file's bytes, not a compressed transfer's.
    headers: {
      "accept-encoding": "identity",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    token: token !== undefined,
    cache,
    retries: options.retries ?? 5,
    headTimeoutMs: timeout(seconds("HF_HUB_ETAG_TIMEOUT")),
    timeoutMs: timeout(seconds("HF_HUB_DOWNLOAD_TIMEOUT")),
    symlinks: !isTrue(env("HF_HUB_DISABLE_SYMLINKS")),
    signal: options.signal,
  };
  try {
    return await download(ctx, revision, options, cacheDir);
  } catch (error) {
    if (isFsError(error)) throw localWriteError(cache.dir, error);
    // As huggingface_hub: a hub that cannot be reached, or answers with an error other than "no
    // such revision", leaves a complete cached snapshot usable. Not a local (disk) error.
    const remote = error instanceof HubUnreachable ||
      error instanceof HubHttpError && error.code !== "RevisionNotFound";
    if (!remote || options.signal?.aborted) throw error;
    const dir = await cachedSnapshot(cache, revision).catch(() => undefined);
    if (dir) {
      // It may be older than the revision on the hub: say which one this is, and why.
      progressSink(options)?.write(
        `${hideCredentials(error instanceof Error ? error.message : String(error))} ` +
          `Using the cached snapshot ` +
          `${basename(dir)} of "${repoId}" (${cache.dir}); it may be older than "${revision}" ` +
          `on the hub.\n`,
      );
      return dir;
    }
    throw error instanceof HubUnreachable
      ? new ModelFileError(
        `${error.message} "${repoId}" is not in the cache ${cache.dir} either: check the network ` +
          `and HF_ENDPOINT, or pass a local model directory.`,
        { cause: error },
      )
      : error;
  }
}

/** Where progress (and the note that a cached snapshot stands in) goes: stderr by default. */
function progressSink(options: DownloadOptions): ProgressSink | undefined {
  return options.progress === undefined || options.progress === true
    ? stderrSink()
    : options.progress || undefined;
}

/** The online part of {@link downloadModel}. */
async function download(
  ctx: Context,
  revision: string,
  options: DownloadOptions,
  cacheDir: string,
): Promise<string> {
  const { repoId, cache } = ctx;
  // The first answer pins the commit, so a push during the download cannot mix two versions.
  const first = await headFile(ctx, revision, MODEL_FILES[0].name);
  if (!first) {
    throw new HubHttpError(
      `"${repoId}" at "${revision}" has no config.json on ${ctx.endpoint}: is it a model ` +
        `repository, and HF_ENDPOINT a Hugging Face hub or mirror?`,
      404,
      null,
    );
  }
  const commit = first.commit;
  const heads = async (names: string[]) =>
    await Promise.all(names.map((n) => headFile(ctx, commit, n)));

  const sink = progressSink(options);
  const fetchAll = async (files: FileMeta[], showProgress = true) => {
    // A file is there as its blob, or as the snapshot's file itself (a cache without symlinks:
    // huggingface_hub moves the blob there).
    const inSnapshot = async (m: FileMeta) =>
      (await fileSize(join(cache.snapshot(commit), m.name))) === m.size;
    const has = async (m: FileMeta) =>
      (await fileSize(cache.blob(m.etag))) === m.size || await inSnapshot(m);
    const missing: FileMeta[] = [];
    for (const m of files) if (!await has(m)) missing.push(m);
    const total = missing.reduce((n, m) => n + m.size, 0);
    const bar = sink && showProgress && total > 0
      ? new ProgressBar(`${repoId}`, total, sink)
      : undefined;
    await pool(
      missing,
      options.concurrency ?? 4,
      (m) => downloadBlob(ctx, cacheDir, m, bar, () => inSnapshot(m)),
    );
    bar?.finish();
    // A blob downloaded for one file alone may move into the snapshot (without symlinks), under
    // its lock: another download of it then finds the file there, not a blob gone.
    const uses = (etag: string) => files.filter((f) => f.etag === etag).length;
    for (const m of files) {
      // Already linked: nothing to write, no lock to take (a read-only cache stays usable).
      if (await cache.linked(commit, m.name, m)) continue;
      const fresh = missing.includes(m) && uses(m.etag) === 1;
      await withBlobLock(
        ctx,
        cacheDir,
        m.etag,
        () => cache.link(commit, m.name, { etag: m.etag, size: m.size, fresh }, ctx.symlinks),
      );
    }
  };

  // config.json first, checked as loading checks it: a repository qvq cannot run (another
  // architecture, a checkpoint another tool quantized) is refused before its weights are fetched.
  await fetchAll([first], false);
  await checkConfig(join(cache.snapshot(commit), first.name), repoId);
  const metas: FileMeta[] = [];
  const rest = await heads([...MODEL_FILES.slice(1).map((f) => f.name), INDEX]);
  MODEL_FILES.slice(1).forEach((f, i) => {
    if (rest[i]) metas.push(rest[i]!);
    else if (!f.optional) throw new ModelFileError(`"${repoId}" at ${commit} has no ${f.name}.`);
  });
  const index = rest.at(-1);

  if (index) {
    await fetchAll([...metas, index]);
    const shards = await heads(await shardNames(join(cache.snapshot(commit), INDEX), repoId));
    const absent = shards.findIndex((s) => !s);
    if (absent >= 0) {
      throw new ModelFileError(`"${repoId}" at ${commit}: ${INDEX} names a shard the repo lacks.`);
    }
    await fetchAll(shards as FileMeta[]);
  } else {
    const single = (await heads([SINGLE]))[0];
    if (!single) {
      throw new ModelFileError(`"${repoId}" at ${commit} has neither ${INDEX} nor ${SINGLE}.`);
    }
    await fetchAll([...metas, single]);
  }
  await cache.writeRef(revision, commit);
  return cache.snapshot(commit);
}

/**
 * A model directory for `model`: the directory itself when it exists, else the snapshot of the hub
 * model id it names (`org/name` or `org/name@revision`), downloaded if needed.
 *
 * @example
 * ```ts ignore
 * await resolveModel("tests/fixtures/tiny-qwen2vl"); // → "tests/fixtures/tiny-qwen2vl"
 * await resolveModel("Qwen/Qwen2-VL-2B-Instruct"); // → ~/.cache/huggingface/hub/.../snapshots/<commit>
 * ```
 */
export async function resolveModel(model: string, options: DownloadOptions = {}): Promise<string> {
  try {
    if ((await Deno.stat(model)).isDirectory) return model;
    throw new ModelFileError(
      `"${model}" is a file; pass a model directory or a hub id like "Qwen/QVQ-72B-Preview".`,
    );
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const match = model.match(/^([\w.-]+\/[\w.-]+)(?:@([\w./-]+))?$/);
  if (!match) {
    throw new ModelFileError(
      `"${model}" is neither a model directory nor a hub model id like "Qwen/QVQ-72B-Preview".`,
    );
  }
  return await downloadModel(match[1], { ...options, revision: match[2] ?? options.revision });
}
