/**
 * qvq imported from an http(s) URL — as JSR serves a package — rather than from files: the WASM core
 * is fetched beside the module and the engine's worker starts from its URL. The repository is
 * served over HTTP here, and a script importing `@qvq/webgpu` from there answers with the bundled
 * tiny model both on its own thread and from the worker.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const TYPES: Record<string, string> = {
  ts: "application/typescript",
  js: "application/javascript",
  wasm: "application/wasm",
  json: "application/json",
};

Deno.test("qvq imported over HTTP loads its WASM core and worker from there and answers", async () => {
  const served: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    served.push(path);
    try {
      const body = await Deno.readFile(ROOT + path.slice(1));
      const type = TYPES[path.split(".").pop()!] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const dir = await Deno.makeTempDir();
  try {
    const { imports } = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
    imports["@qvq/webgpu"] = `http://127.0.0.1:${server.addr.port}/mod.ts`;
    await Deno.writeTextFile(`${dir}/im.json`, JSON.stringify({ imports }));
    const tiny = `${ROOT}tests/fixtures/tiny-qwen2vl`;
    await Deno.writeTextFile(
      `${dir}/use.ts`,
      `import { createApp, loadWorkerEngine, Pipeline } from "@qvq/webgpu";
const image = await Deno.readFile(${JSON.stringify(`${tiny}/reference/case0_0.png`)});
const messages = [{ role: "user" as const, content: [{ type: "image" as const, image },
  { type: "text" as const, text: "What is in the image?" }] }];
const answer = async (engine: Pipeline | Awaited<ReturnType<typeof loadWorkerEngine>>) => {
  let text = "";
  for await (const ev of engine.generate(messages, { maxNewTokens: 6, temperature: 0 })) {
    if (ev.type === "delta") text += ev.text;
  }
  return text;
};
const here = await Pipeline.load(${JSON.stringify(tiny)});
const a = await answer(here);
here.dispose();
const worker = await loadWorkerEngine(${JSON.stringify(tiny)}, { progress: false });
const b = await answer(worker);
// The server's app decodes a request's images on its decoder's worker, also loaded from there.
const response = await createApp(worker).request("/v1/chat/completions", {
  method: "POST",
  body: JSON.stringify({ model: worker.modelId, max_tokens: 6, temperature: 0, messages: [{
    role: "user", content: [
      { type: "image_url", image_url: { url: "data:image/png;base64," + image.toBase64() } },
      { type: "text", text: "What is in the image?" },
    ],
  }] }),
});
const c = (await response.json()).choices[0].message.content;
worker.dispose();
await worker.closed;
console.log(JSON.stringify({ a, b, c }));
`,
    );
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", "--no-config", "--import-map", `${dir}/im.json`, "use.ts"],
      cwd: dir,
      env: { XDG_RUNTIME_DIR: "/tmp" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(stderr);
    assert.equal(code, 0, err);
    const { a, b, c } = JSON.parse(new TextDecoder().decode(stdout));
    assert.ok(a.length > 0, "an answer on the script's thread");
    assert.equal(b, a, "the worker's answer is the same");
    assert.equal(c, a, "the server's answer is the same");
    for (
      const path of [
        "/mod.ts",
        "/wasm/pkg/qvq_wasm_bg.wasm",
        "/src/server/_engine_worker.ts",
        "/src/server/_decode_worker.ts",
      ]
    ) {
      assert.ok(served.includes(path), `${path} came over HTTP`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await server.shutdown();
  }
});
