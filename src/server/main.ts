/**
 * `deno task serve`: the server of src/server/serve.ts on `--port` (or `PORT`, default 8000) and
 * `--host` (default 127.0.0.1: this machine only; 0.0.0.0 serves the network). `deno serve
 * src/server/serve.ts` runs the same app with deno serve's own flags — and its default host,
 * 0.0.0.0: every network interface (`--host 127.0.0.1` keeps it to this machine). This entry
 * exists because a task cannot default an environment variable portably.
 *
 * @example
 * ```sh
 * deno task serve --port 9000
 * PORT=9000 QVQ_MODEL=Qwen/Qwen2-VL-2B-Instruct deno task serve
 * ```
 * @module
 */
import app from "./serve.ts";
import { listenOptions } from "./_env.ts";

const USAGE = "usage: deno task serve [--port <n>] [--host <address>]   (model: QVQ_MODEL)";

let listen;
try {
  listen = listenOptions(Deno.args, (name) => Deno.env.get(name));
} catch (error) {
  console.error(`error: ${(error as Error).message}\n${USAGE}`);
  Deno.exit(2);
}
Deno.serve({
  ...listen,
  onListen: ({ hostname, port }) => {
    const everywhere = hostname === "0.0.0.0" || hostname === "::";
    const host = everywhere ? "localhost" : hostname.includes(":") ? `[${hostname}]` : hostname;
    console.error(
      `qvq: listening on http://${host}:${port}/ (chat page; OpenAI API at /v1)` +
        (everywhere ? `, on every network interface (${hostname})` : ""),
    );
  },
}, app.fetch);
