/**
 * A local stand-in for huggingface.co serving the bundled tiny model, for tests of the downloader
 * and of everything that loads a model by hub id (there is no network in CI).
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The tiny model the fake hub serves. */
export const FIXTURE = fileURLToPath(
  new URL("../../tests/fixtures/tiny-qwen2vl/", import.meta.url),
);
/** Its repo id on the fake hub, and the commit `main` points to. */
export const REPO = "qvq-test/tiny-qwen2vl";
/** The repository's old name, which the hub redirects to REPO. */
export const RENAMED = "qvq-test/old-name";
export const COMMIT = "4f1c2a9be07d61c3a0b5e8d9f2c4a6b8d0e1f234";
/** The files of the repo. */
export const FILES = [
  "config.json",
  "generation_config.json",
  "preprocessor_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "chat_template.json",
  "model.safetensors.index.json",
  "model-00001-of-00002.safetensors",
  "model-00002-of-00002.safetensors",
];
/** Weights are LFS files (sha256 ETag, served from the CDN); the rest are git files. */
export const isLfs = (name: string) => name.endsWith(".safetensors");
export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
export const gitSha1 = (b: Uint8Array) =>
  createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

export interface Faults {
  /** Drop the connection after this many bytes, this many times, on GETs of this file. */
  interrupt?: { file: string; after: number; times: number };
  /** Announce a size off by `delta` for this file. */
  wrongSize?: { file: string; delta: number };
  /** Serve this file with one byte flipped (its announced sha256 stays). */
  corrupt?: string;
  /** Send this many bytes of this file, then nothing more (the connection stays open), this many times. */
  stall?: { file: string; after: number; times: number };
  /** Never answer a HEAD (a black-holing proxy). */
  stallHead?: boolean;
  /** Answer every /resolve/ request with this status and no X-Error-Code (503; 404: a plain web server). */
  status?: number;
  /** Answer with this status, X-Error-Code and X-Error-Message (a token the hub refuses: 401). */
  refuse?: { status: number; code?: string; message: string };
  /** A hostile hub: these headers, per file, replace the hub's in its answers about that file. */
  headers?: Record<string, Record<string, string>>;
  /** Answer every /resolve/ request with a 307 to this Location (a hostile hub's redirect). */
  redirect?: string;
  /** Answer a Range request for this file with its bytes from `from` (as Content-Range says). */
  rangeFrom?: { file: string; from: number };
}

/** Requests the fake hub saw: method, path, Range and Authorization. */
export interface Seen {
  method: string;
  path: string;
  range: string | null;
  auth: string | null;
  encoding: string | null;
}

/**
 * A local stand-in for huggingface.co: `/<repo>/resolve/<rev>/<file>` answers like the hub (commit,
 * ETag, X-Linked-* headers, 302 to `/cdn/<sha256>` for LFS files, X-Error-Code on errors), and the
 * CDN honours Range. Faults are injected per test.
 */
export async function fakeHub(
  faults: Faults = {},
  options: {
    gated?: boolean;
    /**
     * Files served with these bytes instead of the fixture's (another repo's config.json), or
     * besides them (a shard another index names).
     */
    replace?: Record<string, Uint8Array<ArrayBuffer>>;
  } = {},
) {
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const name of FILES) files.set(name, await Deno.readFile(join(FIXTURE, name)));
  for (const [name, bytes] of Object.entries(options.replace ?? {})) files.set(name, bytes);
  const byHash = new Map([...files].filter(([n]) => isLfs(n)).map(([n, b]) => [sha256(b), n]));
  const seen: Seen[] = [];
  let interruptions = faults.interrupt?.times ?? 0;
  let stalls = faults.stall?.times ?? 0;
  // Streams and HEADs left hanging, ended at shutdown.
  const hanging: (() => void)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    seen.push({
      method: request.method,
      path: url.pathname,
      range: request.headers.get("range"),
      auth: request.headers.get("authorization"),
      encoding: request.headers.get("accept-encoding"),
    });
    const error = (status: number, code: string) =>
      new Response(code, { status, headers: { "x-error-code": code } });
    const cdn = url.pathname.match(/^\/cdn\/([0-9a-f]{64})$/);
    if (cdn) return serveBytes(request, byHash.get(cdn[1])!);
    const m = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    if (!m) return error(404, "NotFound");
    // The revision is one encoded segment ("refs%2Fpr%2F1"), the file's parts each encoded.
    const [repo, revision, name] = [m[1], decodeURIComponent(m[2]), decodePath(m[3])];
    if (faults.stallHead && request.method === "HEAD") {
      return new Promise<Response>((resolve) =>
        hanging.push(() => resolve(new Response(null, { status: 503 })))
      );
    }
    if (faults.redirect !== undefined) {
      return new Response(null, { status: 307, headers: { location: faults.redirect } });
    }
    if (faults.status) return new Response("nope", { status: faults.status });
    if (faults.refuse) {
      const { status, code, message } = faults.refuse;
      return new Response(message, {
        status,
        headers: { ...(code ? { "x-error-code": code } : {}), "x-error-message": message },
      });
    }
    if (repo === RENAMED) {
      // A renamed repository: the hub sends its requests on, with an absolute URL.
      const to = `${url.origin}/${REPO}/resolve/${revision}/${name}`;
      return new Response(null, { status: 307, headers: { location: to } });
    }
    if (repo !== REPO) return error(401, "RepoNotFound");
    if (options.gated && request.headers.get("authorization") !== "Bearer hf_good") {
      return error(403, "GatedRepo");
    }
    if (!["main", "refs/pr/1", COMMIT].includes(revision)) return error(404, "RevisionNotFound");
    const bytes = files.get(name);
    if (!bytes) return error(404, "EntryNotFound");
    const size = bytes.length + (faults.wrongSize?.file === name ? faults.wrongSize.delta : 0);
    const headers: Record<string, string> = { "x-repo-commit": COMMIT };
    if (isLfs(name)) {
      const hash = sha256(bytes);
      Object.assign(headers, {
        "x-linked-etag": `"${hash}"`,
        "x-linked-size": String(size),
        etag: `"${gitSha1(bytes)}"`,
        location: `${url.origin}/cdn/${hash}`,
      }, faults.headers?.[name]);
      return new Response(null, { status: 302, headers });
    }
    headers.etag = `"${gitSha1(bytes)}"`;
    if (request.method === "HEAD") {
      return new Response(null, {
        headers: { ...headers, "content-length": String(size), ...faults.headers?.[name] },
      });
    }
    return serveBytes(request, name, headers);
  });

  /** A path's encoded parts decoded ("a%3Fb/c" → "a?b/c"). */
  function decodePath(path: string): string {
    return path.split("/").map(decodeURIComponent).join("/");
  }

  function serveBytes(request: Request, name: string, extra: Record<string, string> = {}) {
    let bytes = files.get(name)!;
    if (faults.corrupt === name) {
      bytes = bytes.slice();
      bytes[bytes.length - 1] ^= 0xff;
    }
    const range = request.headers.get("range")?.match(/^bytes=(\d+)-$/);
    const from = !range
      ? 0
      : faults.rangeFrom?.file === name
      ? faults.rangeFrom.from
      : Number(range[1]);
    if (from >= bytes.length && range) {
      return new Response(null, {
        status: 416,
        headers: { "content-range": `bytes */${bytes.length}` },
      });
    }
    const body = bytes.slice(from);
    const headers: Record<string, string> = { ...extra, "content-length": String(body.length) };
    if (range) headers["content-range"] = `bytes ${from}-${bytes.length - 1}/${bytes.length}`;
    const status = range ? 206 : 200;
    if (request.method === "HEAD") return new Response(null, { status, headers });
    const cut = faults.stall?.file === name && stalls > 0
      ? (stalls--, { after: faults.stall.after, stall: true })
      : faults.interrupt?.file === name && interruptions > 0
      ? (interruptions--, { after: faults.interrupt.after, stall: false })
      : undefined;
    if (cut) return new Response(cutBody(body, cut.after, cut.stall), { status, headers });
    return new Response(body, { status, headers });
  }

  /**
   * The first `after` bytes of `body`, then the connection drops (short of Content-Length: the
   * client sees it) or, with `stall`, stays open sending nothing until shutdown.
   */
  function cutBody(body: Uint8Array, after: number, stall: boolean): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(body.slice(0, after));
        if (!stall) return;
        hanging.push(() => {
          try {
            c.close();
          } catch { /* the client cancelled it already */ }
        });
      },
      pull(c) {
        if (!stall) c.close();
      },
    });
  }

  const shutdown = () => {
    hanging.splice(0).forEach((end) => end());
    return server.shutdown();
  };
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    seen,
    [Symbol.asyncDispose]: shutdown,
    shutdown,
  };
}
