/**
 * The OpenAI-compatible API inside your own Hono app, for `deno serve`:
 *
 *   QVQ_MODEL=Qwen/Qwen2-VL-2B-Instruct deno serve -A --host 127.0.0.1 --port 8000 examples/serve.ts
 *
 * (`deno serve` listens on every interface unless told `--host`: with no API key — QVQ_API_KEY —
 * keep it to this machine, as `deno task serve` does.)
 *
 * Your routes stay yours; the model's API lives under /qvq (http://localhost:8000/qvq/v1, and the
 * chat page at http://localhost:8000/qvq/). Without QVQ_MODEL it serves the bundled tiny model.
 */
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import { createApp, loadWorkerEngine } from "@qvq/webgpu";

const model = Deno.env.get("QVQ_MODEL") ||
  fileURLToPath(new URL("../tests/fixtures/tiny-qwen2vl", import.meta.url));
// The model on a worker thread (a hub id is downloaded first): this thread, which Deno's WebGPU
// would hold through every wait on the GPU, stays free for your routes. The warm-up compiles the
// GPU pipelines before the first request needs them.
const engine = await loadWorkerEngine(model, { warmUp: true });

const app = new Hono({ strict: false }); // /qvq and /qvq/ both reach the chat page
app.get(
  "/",
  (c) => c.text("My app. The model is at /qvq/ (chat page) and /qvq/v1 (OpenAI API).\n"),
);
app.route("/qvq", createApp(engine, { apiKey: Deno.env.get("QVQ_API_KEY"), maxQueue: 4 }));

export default app;
