import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { ModelFileError } from "../errors.ts";
import { downloadModel, resolveModel } from "./download.ts";
import type { ProgressSink } from "./_progress.ts";

const FIXTURE = new URL("../../tests/fixtures/tiny-qwen2vl/", import.meta.url).pathname;
const REPO = "qvq-test/tiny-qwen2vl";
const COMMIT = "4f1c2a9be07d61c3a0b5e8d9f2c4a6b8d0e1f234";
const FILES = [
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
const isLfs = (name: string) => name.endsWith(".safetensors");
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const gitSha1 = (b: Uint8Array) =>
  createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

interface Faults {
  /** Drop the connection after this many bytes, this many times, on GETs of this file. */
  interrupt?: { file: string; after: number; times: number };
  /** Announce a size off by `delta` for this file. */
  wrongSize?: { file: string; delta: number };
  /** Serve this file with one byte flipped (its announced sha256 stays). */
  corrupt?: string;
}

/** Requests the fake hub saw: method, path, Range and Authorization. */
interface Seen {
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
async function fakeHub(faults: Faults = {}, options: { gated?: boolean } = {}) {
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const name of FILES) files.set(name, await Deno.readFile(join(FIXTURE, name)));
  const byHash = new Map([...files].filter(([n]) => isLfs(n)).map(([n, b]) => [sha256(b), n]));
  const seen: Seen[] = [];
  let interruptions = faults.interrupt?.times ?? 0;
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
    const [, repo, revision, name] = m;
    if (repo !== REPO) return error(401, "RepoNotFound");
    if (options.gated && request.headers.get("authorization") !== "Bearer hf_good") {
      return error(403, "GatedRepo");
    }
    if (revision !== "main" && revision !== COMMIT) return error(404, "RevisionNotFound");
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
      });
      return new Response(null, { status: 302, headers });
    }
    headers.etag = `"${gitSha1(bytes)}"`;
    if (request.method === "HEAD") {
      return new Response(null, { headers: { ...headers, "content-length": String(size) } });
    }
    return serveBytes(request, name, headers);
  });

  function serveBytes(request: Request, name: string, extra: Record<string, string> = {}) {
    let bytes = files.get(name)!;
    if (faults.corrupt === name) {
      bytes = bytes.slice();
      bytes[bytes.length - 1] ^= 0xff;
    }
    const range = request.headers.get("range")?.match(/^bytes=(\d+)-$/);
    const from = range ? Number(range[1]) : 0;
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
    if (faults.interrupt?.file === name && interruptions > 0) {
      interruptions--;
      const cut = faults.interrupt.after;
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(body.slice(0, cut));
        },
        pull(c) {
          c.close(); // short of Content-Length: the client sees the connection drop
        },
      });
      return new Response(stream, { status, headers });
    }
    return new Response(body, { status, headers });
  }

  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    seen,
    [Symbol.asyncDispose]: () => server.shutdown(),
    shutdown: () => server.shutdown(),
  };
}

async function tempCache(): Promise<string & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "qvq-hub-test-" });
  return Object.assign(dir, {
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  }) as unknown as string & AsyncDisposable;
}

const quiet = { progress: false } as const;

async function assertSameFiles(dir: string, names = FILES) {
  for (const name of names) {
    assert.deepEqual(
      await Deno.readFile(join(dir, name)),
      await Deno.readFile(join(FIXTURE, name)),
      name,
    );
  }
}

Deno.test("downloadModel() fills the hub cache layout and returns the snapshot", async () => {
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const dir = await downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` });
  const repoDir = join(`${cache}`, "models--qvq-test--tiny-qwen2vl");
  assert.equal(dir, join(repoDir, "snapshots", COMMIT));
  await assertSameFiles(dir);
  assert.equal(await Deno.readTextFile(join(repoDir, "refs", "main")), COMMIT);
  const shard = await Deno.readFile(join(FIXTURE, "model-00001-of-00002.safetensors"));
  // Snapshot entries are relative links to blobs named by ETag (sha256 for LFS, git sha1 otherwise).
  assert.equal(
    await Deno.readLink(join(dir, "model-00001-of-00002.safetensors")),
    `../../blobs/${sha256(shard)}`,
  );
  const config = await Deno.readFile(join(FIXTURE, "config.json"));
  assert.equal(await Deno.readLink(join(dir, "config.json")), `../../blobs/${gitSha1(config)}`);
  const blobs = [...Deno.readDirSync(join(repoDir, "blobs"))].map((e) => e.name);
  assert.equal(blobs.length, FILES.length);
  assert.ok(blobs.every((b) => !b.endsWith(".incomplete")));
  // Sizes are only comparable uncompressed; the shards came from the CDN the hub redirected to.
  assert.ok(hub.seen.every((s) => s.encoding === "identity"));
  assert.deepEqual(
    hub.seen.filter((s) => s.method === "GET" && s.path.startsWith("/cdn/")).length,
    2,
  );
});

Deno.test("downloadModel() reuses the cache: a second call only asks for metadata", async () => {
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` };
  const first = await downloadModel(REPO, options);
  hub.seen.length = 0;
  assert.equal(await downloadModel(REPO, options), first);
  assert.ok(hub.seen.length > 0);
  assert.deepEqual(hub.seen.filter((s) => s.method !== "HEAD"), []);
});

Deno.test("downloadModel() uses a complete cache offline or when the hub is unreachable", async () => {
  const hub = await fakeHub();
  await using cache = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` };
  const dir = await downloadModel(REPO, options);
  await hub.shutdown();
  assert.equal(await downloadModel(REPO, { ...options, offline: true }), dir);
  assert.equal(await downloadModel(REPO, options), dir); // connection refused → cache
  await assert.rejects(
    downloadModel("qvq-test/other", { ...options, offline: true }),
    (e) =>
      e instanceof ModelFileError &&
      /Offline.*no complete snapshot of "qvq-test\/other"/.test(e.message),
  );
  await assert.rejects(
    downloadModel("qvq-test/other", options),
    (e) => e instanceof ModelFileError && /Cannot reach/.test(e.message),
  );
});

Deno.test("an interrupted download leaves a partial file that the next call resumes with Range", async () => {
  const shard = "model-00001-of-00002.safetensors";
  await using hub = await fakeHub({ interrupt: { file: shard, after: 1_000_000, times: 1 } });
  await using cache = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}`, retries: 0 };
  await assert.rejects(
    downloadModel(REPO, options),
    (e) =>
      e instanceof ModelFileError && /failed 1 times.*resume from 1000000 bytes/.test(e.message),
  );
  const bytes = await Deno.readFile(join(FIXTURE, shard));
  const partial = join(
    `${cache}`,
    "models--qvq-test--tiny-qwen2vl",
    "blobs",
    `${sha256(bytes)}.incomplete`,
  );
  assert.equal((await Deno.stat(partial)).size, 1_000_000);
  hub.seen.length = 0;
  const dir = await downloadModel(REPO, options);
  const gets = hub.seen.filter((s) => s.method === "GET" && s.path === `/cdn/${sha256(bytes)}`);
  assert.deepEqual(gets.map((g) => g.range), ["bytes=1000000-"]);
  await assertSameFiles(dir);
});

Deno.test("a dropped connection is resumed within the same call", async () => {
  const shard = "model-00001-of-00002.safetensors";
  await using hub = await fakeHub({ interrupt: { file: shard, after: 300_000, times: 2 } });
  await using cache = await tempCache();
  const dir = await downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` });
  const gets = hub.seen.filter((s) => s.method === "GET" && s.path.startsWith("/cdn/") && s.range);
  assert.deepEqual(gets.map((g) => g.range), ["bytes=300000-", "bytes=600000-"]);
  await assertSameFiles(dir);
});

Deno.test("a size that does not match the hub's announcement is detected and nothing is linked", async () => {
  for (const delta of [+5, -5]) {
    const shard = "model-00002-of-00002.safetensors";
    await using hub = await fakeHub({ wrongSize: { file: shard, delta } });
    await using cache = await tempCache();
    await assert.rejects(
      downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` }),
      (e) =>
        e instanceof ModelFileError &&
        /announced \d+ bytes but the download is \d+ bytes/.test(e.message),
    );
    const repoDir = join(`${cache}`, "models--qvq-test--tiny-qwen2vl");
    const bytes = await Deno.readFile(join(FIXTURE, shard));
    await assert.rejects(Deno.stat(join(repoDir, "blobs", sha256(bytes))), Deno.errors.NotFound);
    await assert.rejects(
      Deno.lstat(join(repoDir, "snapshots", COMMIT, shard)),
      Deno.errors.NotFound,
    );
    await assert.rejects(Deno.stat(join(repoDir, "refs", "main")), Deno.errors.NotFound);
  }
});

Deno.test("a file whose sha256 differs from its LFS ETag is rejected and its partial deleted", async () => {
  const shard = "model-00002-of-00002.safetensors";
  await using hub = await fakeHub({ corrupt: shard });
  await using cache = await tempCache();
  await assert.rejects(
    downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` }),
    (e) =>
      e instanceof ModelFileError && /is corrupt: sha256 [0-9a-f]{64}, expected/.test(e.message),
  );
  const blobs = [...Deno.readDirSync(join(`${cache}`, "models--qvq-test--tiny-qwen2vl", "blobs"))];
  assert.ok(blobs.every((b) => !b.name.endsWith(".incomplete")));
});

Deno.test("downloadModel() sends HF_TOKEN as a bearer token and explains gated and unknown repos", async () => {
  await using hub = await fakeHub({}, { gated: true });
  await using cache = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` };
  await assert.rejects(
    downloadModel(REPO, options),
    (e) => e instanceof ModelFileError && /gated: accept its license.*HF_TOKEN/.test(e.message),
  );
  await assertSameFiles(await downloadModel(REPO, { ...options, token: "hf_good" }));
  assert.ok(hub.seen.filter((s) => s.auth === "Bearer hf_good").length >= FILES.length);
  await assert.rejects(
    downloadModel("nobody/nothing", options),
    (e) => e instanceof ModelFileError && /No model "nobody\/nothing"/.test(e.message),
  );
  await assert.rejects(
    downloadModel(REPO, { ...options, token: "hf_good", revision: "v9" }),
    (e) => e instanceof ModelFileError && /no revision "v9"/.test(e.message),
  );
  await assert.rejects(downloadModel("../etc", options), /not a hub model id/);
});

Deno.test("resolveModel() returns a directory as is and downloads org/name@revision", async () => {
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` };
  assert.equal(await resolveModel(FIXTURE, options), FIXTURE);
  const dir = await resolveModel(`${REPO}@${COMMIT}`, options);
  assert.ok(dir.endsWith(join("snapshots", COMMIT)));
  // A commit hash needs no ref.
  await assert.rejects(
    Deno.stat(join(`${cache}`, "models--qvq-test--tiny-qwen2vl", "refs")),
    Deno.errors.NotFound,
  );
  await assert.rejects(
    resolveModel("no such dir", options),
    /neither a model directory nor a hub model id/,
  );
  await assert.rejects(resolveModel(join(FIXTURE, "config.json"), options), /is a file/);
});

Deno.test("downloadModel() draws progress to the sink it is given", async () => {
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const lines: string[] = [];
  const sink: ProgressSink = { write: (t) => lines.push(t), terminal: false };
  await downloadModel(REPO, { progress: sink, endpoint: hub.endpoint, cacheDir: `${cache}` });
  assert.ok(lines.length >= 2);
  assert.match(lines.at(-1)!, /^qvq-test\/tiny-qwen2vl \[#{24}\] 100% 9\.\d+ MB\/9\.\d+ MB .*\n$/);
});
