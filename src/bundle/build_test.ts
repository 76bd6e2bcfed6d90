import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildBundle } from "./build.ts";
import { launchChromium } from "./_chromium.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("buildBundle() writes one self-contained ES module with the wasm beside it", async () => {
  const out = await Deno.makeTempDir({ prefix: "qvq-dist-" });
  try {
    const result = await buildBundle(out);
    assert.equal(result.js, join(out, "qvq.js"));
    const js = await Deno.readTextFile(result.js);
    assert.equal(result.bytes, new TextEncoder().encode(js).length);
    // Everything is inlined: no import statements, no npm: or bare specifiers, no checkout paths.
    assert.doesNotMatch(js, /^\s*import\s/m);
    assert.doesNotMatch(js, /["']npm:/);
    assert.doesNotMatch(js, /wasm\/pkg\/qvq_wasm_bg\.wasm/);
    assert.match(js, /new URL\("\.\/qvq_wasm_bg\.wasm", import\.meta\.url\)/);
    assert.match(js, /^export \{/m);
    assert.deepEqual(
      await Deno.readFile(result.wasm),
      await Deno.readFile(join(ROOT, "wasm/pkg/qvq_wasm_bg.wasm")),
    );
    await Deno.stat(join(out, "qvq.js.map"));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("the bundle runs in Chromium: it loads its wasm and tokenizes with a model fetched over http", async () => {
  const out = await Deno.makeTempDir({ prefix: "qvq-dist-" });
  const fixture = join(ROOT, "tests/fixtures/tiny-qwen2vl");
  const cases = JSON.parse(
    await Deno.readTextFile(join(ROOT, "tests/fixtures/tokenizer_cases.json")),
  );
  // Serves the bundle at /dist/ and the model at /model/ (with Range, as model_files reads it).
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = new URL(request.url).pathname;
    const file = path.startsWith("/dist/")
      ? join(out, path.slice(6))
      : path.startsWith("/model/")
      ? join(fixture, path.slice(7))
      : undefined;
    if (path === "/") {
      return new Response("<!doctype html><title>bundle</title>", {
        headers: { "content-type": "text/html" },
      });
    }
    if (!file || file.includes("..")) return new Response("no", { status: 404 });
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = await Deno.readFile(file);
    } catch {
      return new Response("no", { status: 404 });
    }
    const type = file.endsWith(".js")
      ? "text/javascript"
      : file.endsWith(".wasm")
      ? "application/wasm"
      : "application/octet-stream";
    const range = request.headers.get("range")?.match(/^bytes=(\d+)-(\d*)$/);
    if (range) {
      const from = Number(range[1]), to = range[2] ? Number(range[2]) : bytes.length - 1;
      return new Response(bytes.slice(from, to + 1), {
        status: 206,
        headers: { "content-type": type, "content-range": `bytes ${from}-${to}/${bytes.length}` },
      });
    }
    return new Response(request.method === "HEAD" ? null : bytes, {
      headers: { "content-type": type, "content-length": String(bytes.length) },
    });
  });
  const browser = await launchChromium();

  try {
    await buildBundle(out);
    const base = `http://127.0.0.1:${server.addr.port}`;
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${base}/`);
    const texts = cases.cases.slice(0, 8).map((c: { text: string }) => c.text);
    const got = await page.evaluate(async ([url, texts]) => {
      const qvq = await import(`${url}/dist/qvq.js`);
      const tok = await qvq.Tokenizer.load(`${url}/model/`);
      return {
        exports: Object.keys(qvq).sort(),
        ids: (texts as string[]).map((t) => Array.from(tok.encode(t))),
        isQvqError: new qvq.InvalidInputError("x") instanceof qvq.QvqError,
      };
    }, [base, texts]);
    assert.deepEqual(got.exports, [
      "GpuError",
      "InvalidInputError",
      "ModelFileError",
      "Pipeline",
      "QvqError",
      "Tokenizer",
      "openModelSource",
    ]);
    assert.deepEqual(got.ids, cases.cases.slice(0, 8).map((c: { ids: number[] }) => c.ids));
    assert.equal(got.isQvqError, true);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await server.shutdown();
    await Deno.remove(out, { recursive: true });
  }
});
