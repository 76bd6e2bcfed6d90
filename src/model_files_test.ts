import assert from "node:assert/strict";
import { InvalidInputError, ModelFileError } from "./errors.ts";
import {
  checkFileName,
  DirModelSource,
  MemoryModelSource,
  type ModelSource,
  openModelSource,
  UrlModelSource,
} from "./model_files.ts";

const FIXTURE = new URL("../tests/fixtures/tiny-qwen2vl/", import.meta.url);
const FIXTURE_DIR = decodeURIComponent(FIXTURE.pathname);
const SHARD = "model-00002-of-00002.safetensors";

/**
 * A static file server over the fixture folder, with byte-range support unless `ranges` is off.
 * Logs each request's Range header so tests can check that reads stay ranged.
 */
function serveFixture(opts: { ranges?: boolean; status?: number } = {}) {
  const log: (string | null)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    log.push(req.headers.get("Range"));
    if (opts.status) return new Response("nope", { status: opts.status });
    const name = decodeURIComponent(new URL(req.url).pathname.replace(/^\/m\//, ""));
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(`${FIXTURE_DIR}${name}`);
    } catch {
      return new Response("not found", { status: 404 });
    }
    const m = req.headers.get("Range")?.match(/^bytes=(\d+)-(\d+)$/);
    if (!m || opts.ranges === false) return new Response(bytes as Uint8Array<ArrayBuffer>);
    const [start, end] = [Number(m[1]), Math.min(Number(m[2]), bytes.length - 1)];
    if (start >= bytes.length) {
      return new Response(null, {
        status: 416,
        headers: { "Content-Range": `bytes */${bytes.length}` },
      });
    }
    return new Response(bytes.slice(start, end + 1), {
      status: 206,
      headers: { "Content-Range": `bytes ${start}-${end}/${bytes.length}` },
    });
  });
  const base = `http://127.0.0.1:${server.addr.port}/m/`;
  return { server, base, log };
}

/** The checks every source must pass against the fixture folder. */
async function checkFixtureSource(src: ModelSource) {
  const whole = await Deno.readFile(`${FIXTURE_DIR}${SHARD}`);
  assert.equal(await src.size(SHARD), whole.length);
  assert.equal(await src.exists(SHARD), true);
  assert.equal(await src.exists("nope.json"), false);
  assert.deepEqual(await src.readRange(SHARD, 1000, 37), whole.subarray(1000, 1037));
  assert.deepEqual(await src.readRange(SHARD, whole.length - 5, 5), whole.subarray(-5));
  assert.deepEqual(await src.readRange(SHARD, 7, 0), new Uint8Array(0));
  const cfg = await src.readJson<{ vision_config: { depth: number }; model_type: string }>(
    "config.json",
  );
  assert.equal(cfg.model_type, "qwen2_vl");
  assert.equal(
    await src.readText("generation_config.json"),
    await Deno.readTextFile(`${FIXTURE_DIR}generation_config.json`),
  );
  assert.deepEqual(
    await src.readBytes("reference/case0_0.png"),
    await Deno.readFile(`${FIXTURE_DIR}reference/case0_0.png`),
  );
  // Many overlapping reads of one file at once must not interleave their seeks.
  const offsets = Array.from({ length: 40 }, (_, i) => (i * 4099) % (whole.length - 300));
  const parts = await Promise.all(offsets.map((o) => src.readRange(SHARD, o, 300)));
  parts.forEach((p, i) => assert.deepEqual(p, whole.subarray(offsets[i], offsets[i] + 300)));
  await assert.rejects(src.size("missing.safetensors"), (e: Error) => {
    assert.ok(e instanceof ModelFileError);
    assert.match(e.message, /"missing\.safetensors" not found in /);
    assert.ok(e.message.includes(src.location), e.message);
    assert.doesNotMatch(e.message, /Hugging Face model id/);
    return true;
  });
  // A hub id given as a path: the error says how to download it.
  await assert.rejects(
    openModelSource("Qwen/Qwen2-VL-2B-Instruct").readJson("config.json"),
    (e: Error) =>
      e instanceof ModelFileError &&
      e.message.includes('Pipeline.load(await resolveModel("Qwen/Qwen2-VL-2B-Instruct"))'),
  );
  await assert.rejects(src.readRange(SHARD, whole.length - 2, 10), (e: Error) => {
    assert.ok(e instanceof ModelFileError);
    assert.ok(e.message.includes(src.pathOf(SHARD)), e.message);
    assert.match(e.message, new RegExp(`bytes ${whole.length - 2}\\.\\.${whole.length + 8}`));
    return true;
  });
  src.close();
}

Deno.test("DirModelSource reads sizes, ranges, text and JSON of the fixture folder", async () => {
  await checkFixtureSource(new DirModelSource(FIXTURE_DIR));
});

Deno.test("DirModelSource runs reads of one file in parallel, each getting its own range", async () => {
  const src = new DirModelSource(FIXTURE_DIR);
  const big = "model-00001-of-00002.safetensors"; // 9.7 MB
  try {
    const whole = await Deno.readFile(`${FIXTURE_DIR}${big}`);
    // More reads than handles, interleaved offsets: a shared file position would mix them up.
    const n = 24, len = 100_003;
    const got = Array.from({ length: n }, () => new Uint8Array(len));
    await Promise.all(got.map((d, i) => src.readInto(big, ((i * 7) % n) * len, d)));
    got.forEach((d, i) => {
      const o = ((i * 7) % n) * len;
      assert.ok(d.every((v, k) => v === whole[o + k]), `read ${i} at ${o}`);
    });
    // A read past the end fails alone; the others still succeed.
    const results = await Promise.allSettled([
      src.readInto(big, whole.length - 10, new Uint8Array(20)),
      src.readInto(big, 0, new Uint8Array(10)),
    ]);
    assert.equal(results[0].status, "rejected");
    assert.ok((results[0] as PromiseRejectedResult).reason instanceof ModelFileError);
    assert.equal(results[1].status, "fulfilled");
  } finally {
    src.close();
  }
});

Deno.test("DirModelSource keeps about 32 files open over many shards, reading each right", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qvq-handles-" });
  const src = new DirModelSource(dir);
  try {
    const files = Array.from({ length: 6 }, (_, f) => {
      const bytes = new Uint8Array(80_000).map((_, i) => (i * 31 + f * 7) & 0xff);
      Deno.writeFileSync(`${dir}/shard${f}.bin`, bytes);
      return bytes;
    });
    // 8 reads in flight on each of 6 files: 48 wanted handles, 32 allowed (+1 for a file with none).
    const reads = files.flatMap((_, f) =>
      Array.from({ length: 8 }, async (_, k) => {
        const d = new Uint8Array(10_000);
        await src.readInto(`shard${f}.bin`, k * 10_000, d);
        return d.every((v, i) => v === files[f][k * 10_000 + i]);
      })
    );
    assert.deepEqual(await Promise.all(reads), reads.map(() => true));
    if (Deno.build.os === "linux") {
      const open = [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
        try {
          return Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith(dir);
        } catch {
          return false;
        }
      });
      // Files 1-4 take 8 handles each; files 5 and 6 find none idle and open one each.
      assert.equal(open.length, 34);
    }
  } finally {
    src.close();
    await new Promise((r) => setTimeout(r, 10)); // close() lets queued reads finish first
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openModelSource() takes a path, a file: URL and an http URL", async () => {
  const byPath = openModelSource(FIXTURE_DIR);
  assert.ok(byPath instanceof DirModelSource);
  const byUrl = openModelSource(FIXTURE);
  assert.ok(byUrl instanceof DirModelSource);
  assert.equal(byUrl.location, FIXTURE_DIR.replace(/\/$/, ""));
  await checkFixtureSource(byUrl);
  assert.ok(
    openModelSource("https://example.com/org/model/resolve/main") instanceof UrlModelSource,
  );
  assert.throws(() => openModelSource("s3://bucket/model"), InvalidInputError);
  assert.throws(() => openModelSource(""), /model location is empty/);
  assert.throws(() => openModelSource("  "), /model location is empty/);
});

Deno.test("a file given as the model directory is named as such", async () => {
  const file = FIXTURE_DIR + "config.json";
  await assert.rejects(
    () => openModelSource(file).readJson("config.json"),
    (e: Error) =>
      e instanceof ModelFileError &&
      e.message.startsWith(`${file} is a file, not a model directory`),
  );
});

Deno.test("UrlModelSource reads the fixture over HTTP with Range requests", async () => {
  const { server, base, log } = serveFixture();
  try {
    await checkFixtureSource(new UrlModelSource(base));
    assert.ok(log.some((r) => r === "bytes=1000-1036"), "ranged reads send a Range header");
  } finally {
    await server.shutdown();
  }
});

Deno.test("UrlModelSource still reads correctly from a server that ignores Range", async () => {
  const { server, base } = serveFixture({ ranges: false });
  try {
    await checkFixtureSource(new UrlModelSource(base));
  } finally {
    await server.shutdown();
  }
});

Deno.test("UrlModelSource reports HTTP errors and network failures as ModelFileError", async () => {
  const { server, base } = serveFixture({ status: 401 });
  try {
    const src = new UrlModelSource(base, { headers: { Authorization: "Bearer x" } });
    await assert.rejects(src.readJson("config.json"), (e: Error) => {
      assert.ok(e instanceof ModelFileError);
      assert.ok(e.message.includes(`${base}config.json gave HTTP 401`), e.message);
      assert.match(e.message, /Authorization/);
      return true;
    });
    await assert.rejects(src.exists("config.json"), ModelFileError); // not "absent": unknown
  } finally {
    await server.shutdown();
  }
  const failing = new UrlModelSource("http://model.invalid/", {
    fetch: () => Promise.reject(new TypeError("connection refused")),
  });
  await assert.rejects(failing.size("config.json"), (e: Error) => {
    assert.ok(e instanceof ModelFileError);
    assert.equal(
      e.message,
      "Could not fetch http://model.invalid/config.json: connection refused. Check the URL and the network.",
    );
    return true;
  });
});

Deno.test("MemoryModelSource serves byte arrays under names", async () => {
  const src = new MemoryModelSource({ "a.json": new TextEncoder().encode('{"x": [1, 2]}') }, "mem");
  assert.deepEqual(await src.readJson("a.json"), { x: [1, 2] });
  assert.deepEqual(await src.readRange("a.json", 1, 3), new TextEncoder().encode('"x"'));
  assert.equal(await src.exists("b.json"), false);
  assert.equal(src.pathOf("a.json"), "mem/a.json");
});

Deno.test("readJson() and readText() name the file when it is not JSON or not UTF-8", async () => {
  const src = new MemoryModelSource({
    "bad.json": new TextEncoder().encode("{nope"),
    "bad.txt": new Uint8Array([0x61, 0xff]),
  }, "/models/x");
  await assert.rejects(src.readJson("bad.json"), (e: Error) => {
    assert.ok(e instanceof ModelFileError);
    assert.match(e.message, /^\/models\/x\/bad\.json is not valid JSON \(/);
    return true;
  });
  await assert.rejects(src.readText("bad.txt"), {
    name: "ModelFileError",
    message: "/models/x/bad.txt is not valid UTF-8 text.",
  });
});

Deno.test("checkFileName() refuses names that leave the model location", () => {
  for (const ok of ["config.json", "reference/case0.safetensors", "a..b"]) {
    assert.equal(checkFileName(ok), ok);
  }
  for (const bad of ["", "/etc/passwd", "../x", "a/../../b", "./a", "a//b", "a\\b", "a/"]) {
    assert.throws(() => checkFileName(bad), (e: Error) => {
      assert.ok(e instanceof InvalidInputError);
      assert.ok(e.message.includes(JSON.stringify(bad)), e.message);
      return true;
    });
  }
});

Deno.test("a missing file of a hub-id-like path says how to download the model first", async () => {
  const src = await openModelSource("Qwen/Not-Downloaded");
  await assert.rejects(src.size("config.json"), (e: Error) => {
    assert.ok(e instanceof ModelFileError);
    assert.match(e.message, /"Qwen\/Not-Downloaded" is a Hugging Face model id, download it first/);
    assert.match(e.message, /qvq generate, qvq chat and the server do/);
    return true;
  });
});
