import assert from "node:assert/strict";
import { join } from "node:path";
import { ModelFileError } from "../errors.ts";
import { downloadModel, resolveModel } from "./download.ts";
import type { ProgressSink } from "./_progress.ts";
import {
  COMMIT,
  fakeHub,
  type Faults,
  FILES,
  FIXTURE,
  gitSha1,
  RENAMED,
  REPO,
  type Seen,
  sha256,
} from "./_fake_hub.ts";

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

Deno.test("downloadModel() checks config.json before the weights: a repo qvq cannot run is refused having fetched only that file", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(FIXTURE, "config.json")));
  const cases: [Record<string, unknown>, RegExp][] = [
    // As Qwen/Qwen2-VL-7B-Instruct-AWQ's: its shards hold q_proj.qweight, qzeros, scales.
    [
      { ...config, quantization_config: { bits: 4, quant_method: "awq", version: "gemm" } },
      /^config\.json of "qvq-test\/tiny-qwen2vl": quantization_config says the checkpoint is already quantized \(quant_method "awq", 4-bit\).* with quant: "q8" or "q4"/,
    ],
    [
      { ...config, model_type: "qwen2_5_vl" },
      /^config\.json of "qvq-test\/tiny-qwen2vl": model_type is "qwen2_5_vl", but qvq runs only "qwen2_vl"/,
    ],
  ];
  for (const [json, message] of cases) {
    const replace = { "config.json": new TextEncoder().encode(JSON.stringify(json)) };
    await using hub = await fakeHub({}, { replace });
    await using cache = await tempCache();
    await assert.rejects(
      downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` }),
      (e: Error) => e instanceof ModelFileError && message.test(e.message),
    );
    // One GET, of config.json: neither the other files nor a shard (nor their HEADs) asked for.
    assert.deepEqual(
      hub.seen.filter((s) => s.method === "GET").map((s) => s.path),
      [`/${REPO}/resolve/${COMMIT}/config.json`],
    );
    assert.ok(hub.seen.every((s) => s.path.endsWith("/config.json")), JSON.stringify(hub.seen));
    // Nothing names the commit as main's: the next call checks again.
    await assert.rejects(
      Deno.stat(join(`${cache}`, "models--qvq-test--tiny-qwen2vl", "refs", "main")),
      Deno.errors.NotFound,
    );
  }
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

Deno.test("a local write error (disk full) is final, names the file and what to do, and is not retried", async () => {
  const shard = "model-00001-of-00002.safetensors";
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const bytes = await Deno.readFile(join(FIXTURE, shard));
  const blobs = join(`${cache}`, "models--qvq-test--tiny-qwen2vl", "blobs");
  const partial = join(blobs, `${sha256(bytes)}.incomplete`);
  // A disk that fills up at once: every write to the shard's partial file fails as a full disk's
  // (/dev/full's) do. (A link to /dev/full planted there is no longer written through.)
  const open = Deno.open;
  const full = () =>
    Promise.reject(Object.assign(new Error("No space left on device (os error 28)"), {
      code: "ENOSPC",
    }));
  (Deno as { open: typeof Deno.open }).open = async (path, options) => {
    const file = await open(path, options);
    if (path === partial) file.write = full;
    return file;
  };
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}`, concurrency: 1 };
  try {
    await assert.rejects(
      downloadModel(REPO, options),
      (e) => {
        assert.ok(e instanceof ModelFileError, String(e));
        assert.ok(e.message.includes(partial), e.message);
        assert.match(e.message, /ENOSPC|No space left/);
        assert.match(e.message, /free disk space.*HF_HOME/);
        return true;
      },
    );
  } finally {
    (Deno as { open: typeof Deno.open }).open = open;
  }
  const gets = hub.seen.filter((s) => s.method === "GET" && s.path === `/cdn/${sha256(bytes)}`);
  assert.equal(gets.length, 1, "a full disk is not a dropped connection: no retry");
  // With room again, the next call downloads it whole and the sha256 matches.
  await assertSameFiles(await downloadModel(REPO, options));
});

Deno.test("a download that stalls is dropped after the timeout and resumed", async () => {
  const shard = "model-00001-of-00002.safetensors";
  await using hub = await fakeHub({ stall: { file: shard, after: 400_000, times: 1 } });
  await using cache = await tempCache();
  const dir = await downloadModel(REPO, {
    ...quiet,
    endpoint: hub.endpoint,
    cacheDir: `${cache}`,
    timeoutSeconds: 0.5,
  });
  const gets = hub.seen.filter((s) => s.method === "GET" && s.path.startsWith("/cdn/") && s.range);
  assert.deepEqual(gets.map((g) => g.range), ["bytes=400000-"]);
  await assertSameFiles(dir);
});

Deno.test("a hub that does not answer, answers 503 or is a plain web server leaves the cache usable", async () => {
  await using cache = await tempCache();
  const options = { ...quiet, cacheDir: `${cache}`, timeoutSeconds: 0.5 };
  {
    await using hub = await fakeHub();
    await downloadModel(REPO, { ...options, endpoint: hub.endpoint });
  }
  const dir = join(`${cache}`, "models--qvq-test--tiny-qwen2vl", "snapshots", COMMIT);
  for (const faults of [{ stallHead: true }, { status: 503 }, { status: 404 }]) {
    await using hub = await fakeHub(faults);
    const t0 = performance.now();
    let said = "";
    const progress = { write: (t: string) => void (said += t), terminal: false };
    assert.equal(await downloadModel(REPO, { ...options, progress, endpoint: hub.endpoint }), dir);
    assert.ok(performance.now() - t0 < 5000, `${JSON.stringify(faults)}: within the timeout`);
    // The cache stands in, and says so: which snapshot, and that it may be older.
    assert.match(
      said,
      new RegExp(`Using the cached snapshot ${COMMIT} of "qvq-test/tiny-qwen2vl" .*may be older`),
    );
    // Not cached: the reason, named.
    await assert.rejects(
      downloadModel("qvq-test/other", { ...options, endpoint: hub.endpoint }),
      (e) =>
        e instanceof ModelFileError &&
        (faults.stallHead
          ? /no answer within 0.5 s.*not in the cache/.test(e.message)
          : faults.status === 503
          ? /HTTP 503/.test(e.message)
          : /no config.json on .*HF_ENDPOINT a Hugging Face hub or mirror/.test(e.message)),
      JSON.stringify(faults),
    );
  }
});

Deno.test("downloadModel() passes on what the hub says about a refused token or a forbidden file", async () => {
  await using cache = await tempCache();
  const options = { ...quiet, cacheDir: `${cache}` };
  const cases: [{ status: number; code?: string; message: string }, RegExp][] = [
    [
      { status: 401, message: "Invalid credentials in Authorization header" },
      /refused the token .*: Invalid credentials in Authorization header\. Set HF_TOKEN/,
    ],
    [
      { status: 403, message: "Fine-grained token lacks read access" },
      /forbids "config.json" .*: Fine-grained token lacks read access\. Make sure HF_TOKEN/,
    ],
  ];
  for (const [refuse, msg] of cases) {
    await using hub = await fakeHub({ refuse });
    await assert.rejects(
      downloadModel(REPO, { ...options, endpoint: hub.endpoint, token: "hf_expired" }),
      (e) => e instanceof ModelFileError && msg.test(e.message),
      String(refuse.status),
    );
  }
});

Deno.test("a cache directory that cannot be written is a ModelFileError saying so", async () => {
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const file = join(`${cache}`, "not-a-dir");
  await Deno.writeTextFile(file, "");
  await assert.rejects(
    downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: file }),
    (e) => e instanceof ModelFileError && /^Cannot write .*not-a-dir.*set HF_HOME/.test(e.message),
  );
});

/** Runs `f` with environment variables set, restoring them after. */
async function withEnv<T>(vars: Record<string, string>, f: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    return await f();
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
}

Deno.test("a cache without symlinks (HF_HUB_DISABLE_SYMLINKS, or huggingface_hub's on Windows) holds the files and is reused as is", async () => {
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` };
  const dir = await withEnv({ HF_HUB_DISABLE_SYMLINKS: "1" }, () => downloadModel(REPO, options));
  await assertSameFiles(dir);
  for (const name of FILES) assert.ok((await Deno.lstat(join(dir, name))).isFile, name);
  // The blobs moved into the snapshot, as huggingface_hub moves them: no second copy.
  const blobs = join(`${cache}`, "models--qvq-test--tiny-qwen2vl", "blobs");
  assert.deepEqual([...Deno.readDirSync(blobs)].filter((e) => e.isFile), []);
  // The next call, symlinks or not, downloads nothing and leaves the files as they are.
  const inodes = await Promise.all(FILES.map(async (n) => (await Deno.stat(join(dir, n))).ino));
  hub.seen.length = 0;
  assert.equal(await downloadModel(REPO, options), dir);
  assert.deepEqual(hub.seen.filter((s) => s.method !== "HEAD"), []);
  assert.deepEqual(
    await Promise.all(FILES.map(async (n) => (await Deno.stat(join(dir, n))).ino)),
    inodes,
  );
});

Deno.test("tokens and switches as huggingface_hub reads them: HUGGING_FACE_HUB_TOKEN, cleaned; HF_HUB_DISABLE_IMPLICIT_TOKEN; TRANSFORMERS_OFFLINE", async () => {
  await using hub = await fakeHub({}, { gated: true });
  await using cache = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` };
  const none = { HF_TOKEN: "", HF_TOKEN_PATH: "/nonexistent/token" };
  const dir = await withEnv(
    { ...none, HUGGING_FACE_HUB_TOKEN: " hf_good\r\n" },
    () => downloadModel(REPO, options),
  );
  await assertSameFiles(dir);
  assert.ok(hub.seen.every((s) => s.auth === "Bearer hf_good"));
  // The saved token file, under a path with ~ in it, is read too.
  await Deno.writeTextFile(join(`${cache}`, "token"), "hf_good\n");
  hub.seen.length = 0;
  await withEnv(
    { ...none, HUGGING_FACE_HUB_TOKEN: "", HOME: `${cache}`, HF_TOKEN_PATH: "~/token" },
    () => downloadModel(REPO, options),
  );
  assert.ok(hub.seen.length > 0 && hub.seen.every((s) => s.auth === "Bearer hf_good"));
  // With implicit tokens off, HF_TOKEN is not sent (the cache stands in for the gated hub).
  hub.seen.length = 0;
  await withEnv({ HF_TOKEN: "hf_good", HF_HUB_DISABLE_IMPLICIT_TOKEN: "1" }, async () => {
    assert.equal(await downloadModel(REPO, options), dir);
  });
  assert.ok(hub.seen.length > 0 && hub.seen.every((s) => s.auth === null));
  hub.seen.length = 0;
  await withEnv({ TRANSFORMERS_OFFLINE: "1" }, async () => {
    assert.equal(await downloadModel(REPO, options), dir);
  });
  assert.deepEqual(hub.seen, []);
  // HF_HUB_OFFLINE, where set, decides (huggingface_hub's constants.py).
  await withEnv(
    { HF_HUB_OFFLINE: "0", TRANSFORMERS_OFFLINE: "1", HF_TOKEN: "hf_good" },
    async () => {
      assert.equal(await downloadModel(REPO, options), dir);
    },
  );
  assert.ok(hub.seen.length > 0);
});

Deno.test("a renamed repository's absolute redirect on the hub's own origin is followed", async () => {
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const dir = await downloadModel(RENAMED, {
    ...quiet,
    endpoint: hub.endpoint,
    cacheDir: `${cache}`,
  });
  await assertSameFiles(dir);
  assert.equal(dir, join(`${cache}`, "models--qvq-test--old-name", "snapshots", COMMIT));
});

Deno.test("HF_HUB_ETAG_TIMEOUT bounds the wait for metadata, apart from HF_HUB_DOWNLOAD_TIMEOUT", async () => {
  await using cache = await tempCache();
  const options = { ...quiet, cacheDir: `${cache}` };
  {
    await using hub = await fakeHub();
    await downloadModel(REPO, { ...options, endpoint: hub.endpoint });
  }
  await using hub = await fakeHub({ stallHead: true });
  const started = performance.now();
  await withEnv({ HF_HUB_ETAG_TIMEOUT: "0.3", HF_HUB_DOWNLOAD_TIMEOUT: "60" }, async () => {
    await assertSameFiles(await downloadModel(REPO, { ...options, endpoint: hub.endpoint }));
  });
  const waited = performance.now() - started;
  assert.ok(waited < 10_000, `fell back to the cache after ${waited} ms`);
});

Deno.test("downloads of one model at once without symlinks all land (a blob moved into the snapshot by another)", async () => {
  await using hub = await fakeHub();
  for (let round = 0; round < 3; round++) {
    await using cache = await tempCache();
    const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` };
    const dirs = await withEnv(
      { HF_HUB_DISABLE_SYMLINKS: "1" },
      () => Promise.all([0, 1, 2].map(() => downloadModel(REPO, options))),
    );
    for (const dir of dirs) await assertSameFiles(dir);
  }
});

Deno.test("a complete cache is used online without writing to it (no lock taken, no ref rewritten)", async () => {
  await using hub = await fakeHub();
  await using cache = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` };
  const dir = await downloadModel(REPO, options);
  // Nothing under the cache can be made now: its lock directory is a file (a read-only volume
  // refuses the same writes; this test may run as root, whom permissions do not stop).
  await Deno.remove(join(`${cache}`, ".locks"), { recursive: true });
  await Deno.writeTextFile(join(`${cache}`, ".locks"), "");
  hub.seen.length = 0;
  assert.equal(await downloadModel(REPO, options), dir);
  assert.deepEqual(hub.seen.filter((s) => s.method !== "HEAD"), []);
});

/** What is in `dir` besides the cache folder `hub` the tests below download into. */
function outsideCache(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n !== "hub");
}

Deno.test("a hub's ETag or X-Repo-Commit that is no hash is refused, naming the file and the endpoint, before it names a path", async () => {
  const config = await Deno.readFile(join(FIXTURE, "config.json"));
  const shard = "model-00001-of-00002.safetensors";
  const cases: [Record<string, Record<string, string>>, RegExp][] = [
    [
      { "config.json": { etag: '"../../../victim.txt"' } },
      /answered ETag "\\"\.\.\/\.\.\/\.\.\/victim\.txt\\"" for "config\.json" of "qvq-test\/tiny-qwen2vl": not a git sha1 or an LFS sha256/,
    ],
    [{ "config.json": { etag: '""' } }, /answered ETag "\\"\\"" for "config\.json"/],
    [{ "config.json": { etag: "" } }, /answered ETag "" for "config\.json"/],
    [
      { [shard]: { "x-linked-etag": '"../../../victim.txt"' } },
      /answered X-Linked-Etag .* for "model-00001/,
    ],
    [
      { "config.json": { "x-repo-commit": "../../../SNAP" } },
      /answered X-Repo-Commit "\.\.\/\.\.\/\.\.\/SNAP" for "config\.json" .*: not a commit hash/,
    ],
  ];
  for (const [headers, message] of cases) {
    await using hub = await fakeHub({ headers });
    await using root = await tempCache();
    await assert.rejects(
      downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: join(`${root}`, "hub") }),
      (e) => {
        assert.ok(e instanceof ModelFileError, String(e));
        assert.match(e.message, message);
        assert.ok(e.message.includes(hub.endpoint), e.message);
        return true;
      },
    );
    // blobs/../../../victim.txt, its lock and snapshots/../../../SNAP would be beside hub/.
    assert.deepEqual(outsideCache(`${root}`), [], JSON.stringify(headers));
  }
  // A weak ETag of the right hash is the hash (huggingface_hub's _normalize_etag).
  await using hub = await fakeHub({
    headers: { "config.json": { etag: `W/"${gitSha1(config)}"` } },
  });
  await using cache = await tempCache();
  await assertSameFiles(
    await downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` }),
  );
});

Deno.test("a ref that holds no commit hash is refused offline, not followed out of the cache", async () => {
  await using root = await tempCache();
  const cacheDir = join(`${root}`, "hub");
  const repoDir = join(cacheDir, "models--qvq-test--tiny-qwen2vl");
  // snapshots/../../../SNAP: a complete model folder beside the cache.
  await Deno.mkdir(join(`${root}`, "SNAP"));
  for (const name of FILES) await Deno.copyFile(join(FIXTURE, name), join(`${root}`, "SNAP", name));
  await Deno.mkdir(join(repoDir, "refs"), { recursive: true });
  await Deno.writeTextFile(join(repoDir, "refs", "main"), "../../../SNAP");
  await assert.rejects(
    downloadModel(REPO, { ...quiet, offline: true, cacheDir }),
    (e) =>
      e instanceof ModelFileError &&
      /refs\/main holds "\.\.\/\.\.\/\.\.\/SNAP", not a commit hash .*delete it/.test(e.message),
  );
  // Online, the ref is written anew.
  await using hub = await fakeHub();
  await downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir });
  assert.equal(await Deno.readTextFile(join(repoDir, "refs", "main")), COMMIT);
});

Deno.test("a redirect to another origin is not followed with the token, however its Location is spelled", async () => {
  const thief: Seen[] = [];
  await using other = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (r) => {
    thief.push({
      method: r.method,
      path: new URL(r.url).pathname,
      range: null,
      auth: r.headers.get("authorization"),
      encoding: null,
    });
    return new Response(null, { status: 404 });
  });
  const host = `127.0.0.1:${other.addr.port}`;
  for (const location of [`//${host}/x`, `\\\\${host}/x`, `/\\${host}/x`, `h\tttp://${host}/x`]) {
    await using hub = await fakeHub({ redirect: location });
    await using cache = await tempCache();
    const options = { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}`, token: "hf_secret" };
    const error = await downloadModel(REPO, options).then(() => undefined, (e) => e);
    assert.deepEqual(thief, [], JSON.stringify(location));
    // The hub's answer is taken as it is: a redirect elsewhere, no file's metadata.
    assert.ok(error instanceof ModelFileError, String(error));
    assert.match(error.message, /did not answer like the Hugging Face hub/);
    assert.ok(error.message.includes(`(it redirected to http://${host})`), error.message);
  }
});

Deno.test("shard names from the index are encoded in the URL: ?, # and %2e%2e stay in the name", async () => {
  const [one, two] = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
  const [odd1, odd2] = ["odd?name#1.safetensors", "%2e%2e/%2e%2e/%2e%2e/%2e%2e/2.safetensors"];
  const index = (await Deno.readTextFile(join(FIXTURE, "model.safetensors.index.json")))
    .replaceAll(one, odd1).replaceAll(two, odd2);
  await using hub = await fakeHub({}, {
    replace: {
      "model.safetensors.index.json": new TextEncoder().encode(index),
      [odd1]: await Deno.readFile(join(FIXTURE, one)),
      [odd2]: await Deno.readFile(join(FIXTURE, two)),
    },
  });
  await using cache = await tempCache();
  const dir = await downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` });
  assert.deepEqual(await Deno.readFile(join(dir, odd1)), await Deno.readFile(join(FIXTURE, one)));
  assert.deepEqual(await Deno.readFile(join(dir, odd2)), await Deno.readFile(join(FIXTURE, two)));
  const paths = hub.seen.map((s) => s.path);
  assert.ok(
    paths.every((p) => p.startsWith(`/${REPO}/resolve/`) || p.startsWith("/cdn/")),
    `${paths}`,
  );
  assert.ok(paths.includes(`/${REPO}/resolve/${COMMIT}/odd%3Fname%231.safetensors`), `${paths}`);
});

Deno.test("a revision with empty, . or .. segments is refused before any request; refs/pr/N works", async () => {
  await using hub = await fakeHub();
  await using root = await tempCache();
  const options = { ...quiet, endpoint: hub.endpoint, cacheDir: join(`${root}`, "hub") };
  for (const revision of ["../../../x", "a/../b", "a//b", ".", "", "a\\..\\b"]) {
    for (const offline of [false, true]) {
      await assert.rejects(
        downloadModel(REPO, { ...options, revision, offline }),
        (e) =>
          e instanceof ModelFileError &&
          e.message.startsWith(`Bad revision ${JSON.stringify(revision)}: use a branch, tag`),
        JSON.stringify(revision),
      );
    }
  }
  await assert.rejects(
    resolveModel(`${REPO}@../../../x`, options),
    /^ModelFileError: Bad revision/,
  );
  assert.deepEqual(hub.seen, []);
  assert.deepEqual(outsideCache(`${root}`), []);
  const dir = await resolveModel(`${REPO}@refs/pr/1`, options);
  await assertSameFiles(dir);
  const ref = join(`${root}`, "hub", "models--qvq-test--tiny-qwen2vl", "refs", "refs", "pr", "1");
  assert.equal(await Deno.readTextFile(ref), COMMIT);
  assert.equal(await resolveModel(`${REPO}@refs/pr/1`, { ...options, offline: true }), dir);
});

Deno.test("a resumed download whose 206 starts elsewhere than the bytes already had starts over", async () => {
  const shard = "model-00001-of-00002.safetensors";
  await using hub = await fakeHub({
    interrupt: { file: shard, after: 300_000, times: 1 },
    rangeFrom: { file: shard, from: 0 },
  });
  await using cache = await tempCache();
  const dir = await downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` });
  const hash = sha256(await Deno.readFile(join(FIXTURE, shard)));
  const gets = hub.seen.filter((s) => s.method === "GET" && s.path === `/cdn/${hash}`);
  assert.deepEqual(gets.map((g) => g.range), [null, "bytes=300000-", null]);
  await assertSameFiles(dir);
});

Deno.test("a link planted at a partial file's name is removed, not written through", async () => {
  const shard = "model-00001-of-00002.safetensors";
  await using hub = await fakeHub();
  await using root = await tempCache();
  const cacheDir = join(`${root}`, "hub");
  const blobs = join(cacheDir, "models--qvq-test--tiny-qwen2vl", "blobs");
  const partial = join(blobs, `${sha256(await Deno.readFile(join(FIXTURE, shard)))}.incomplete`);
  const victim = join(`${root}`, "victim.txt");
  await Deno.writeTextFile(victim, "keep me");
  await Deno.mkdir(blobs, { recursive: true });
  await Deno.symlink(victim, partial);
  await assertSameFiles(
    await downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir }),
  );
  assert.equal(await Deno.readTextFile(victim), "keep me");
});

Deno.test("credentials in HF_ENDPOINT are used but never shown in an error or a note", async () => {
  await using cache = await tempCache();
  const withCredentials = (endpoint: string) => endpoint.replace("http://", "http://user:s3cret@");
  const shown: string[] = [];
  const progress = { write: (t: string) => void shown.push(t), terminal: false };
  const options = { progress, cacheDir: `${cache}`, timeoutSeconds: 0.5 };
  const failing: Faults[] = [
    { refuse: { status: 403, message: "no" } },
    { status: 503 },
    { status: 404 },
    { headers: { "config.json": { etag: "bad" } } },
    { redirect: "//127.0.0.1:1/x" },
  ];
  const collect = (e: unknown) => {
    for (let c = e; c instanceof Error; c = c.cause) shown.push(c.message, c.stack ?? "");
    return true;
  };
  for (const faults of failing) {
    await using hub = await fakeHub(faults);
    await assert.rejects(
      downloadModel(REPO, { ...options, endpoint: withCredentials(hub.endpoint) }),
      collect,
    );
  }
  // The hub is used with them (Basic auth); then, gone, the cache stands in with a note.
  const hub = await fakeHub();
  const endpoint = withCredentials(hub.endpoint);
  await assertSameFiles(await downloadModel(REPO, { ...options, endpoint }));
  const resolves = hub.seen.filter((s) => s.path.includes("/resolve/"));
  assert.ok(resolves.every((s) => s.auth === `Basic ${btoa("user:s3cret")}`));
  await hub.shutdown();
  await downloadModel(REPO, { ...options, endpoint });
  await assert.rejects(downloadModel("qvq-test/other", { ...options, endpoint }), collect);
  assert.ok(shown.some((t) => t.includes("Using the cached snapshot")));
  const leaks = shown.filter((t) => t.includes("s3cret"));
  assert.deepEqual(leaks, []);
  assert.ok(shown.some((t) => t.includes(hub.endpoint)), "the endpoint is still named");
});

Deno.test("an index's shard name no file system can hold, or one under a file, is a bad name in the index, and a negative size is the hub's", async () => {
  const bytes = await Deno.readFile(join(FIXTURE, "model-00002-of-00002.safetensors"));
  const cases: [string, RegExp][] = [
    [
      `${"a".repeat(300)}.safetensors`,
      /names a bad shard file "a{300}\.safetensors": a part of it is longer than 255 bytes/,
    ],
    [
      "config.json/x.safetensors",
      /names a bad shard file "config\.json\/x\.safetensors": "config\.json" is a file of the repository, not a folder/,
    ],
  ];
  for (const [name, message] of cases) {
    const index = (await Deno.readTextFile(join(FIXTURE, "model.safetensors.index.json")))
      .replaceAll("model-00002-of-00002.safetensors", name);
    await using hub = await fakeHub({}, {
      replace: { "model.safetensors.index.json": new TextEncoder().encode(index), [name]: bytes },
    });
    await using cache = await tempCache();
    await assert.rejects(
      downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` }),
      (e) => e instanceof ModelFileError && message.test(e.message) && !/disk/.test(e.message),
      name,
    );
  }
  const shard = "model-00001-of-00002.safetensors";
  await using hub = await fakeHub({ headers: { [shard]: { "x-linked-size": "-1" } } });
  await using cache = await tempCache();
  await assert.rejects(
    downloadModel(REPO, { ...quiet, endpoint: hub.endpoint, cacheDir: `${cache}` }),
    (e) =>
      e instanceof ModelFileError &&
      /answered X-Linked-Size "-1" for "model-00001-of-00002\.safetensors" .*: not a size in bytes/
        .test(e.message) &&
      !/disk/.test(e.message),
  );
});
