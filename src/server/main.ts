/**
 * `deno task serve`: the server of src/server/serve.ts on `--port` (or `PORT`, default 8000) and
 * `--host` (default 127.0.0.1: this machine only; 0.0.0.0 serves the network); `--help` prints
 * the usage with the environment variables the server reads. `deno serve
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
import { loadOptionsFromEnv, optionsFromEnv, SERVE_USAGE, serveArgs } from "./_env.ts";

/** The usage's first line, after an error. */
const USAGE = `${SERVE_USAGE.split("\n")[0]}   (deno task serve --help for more)`;

let args;
try {
  const env = (name: string) => Deno.env.get(name);
  args = serveArgs(Deno.args, env);
  // The environment's settings too, before listening: a bad one is an error line and exit 2, not a
  // "listening" line and then the error (src/server/serve.ts reads them again, the same way).
  if (!args.help) {
    optionsFromEnv(env);
    loadOptionsFromEnv(env);
  }
} catch (error) {
  console.error(`error: ${(error as Error).message}\n${USAGE}`);
  Deno.exit(2);
}
if (args.help) {
  console.log(SERVE_USAGE);
  Deno.exit(0);
}
const { help: _, ...listen } = args;
// The app (and the model's loading) starts once the address is ours: a port in use is a one-line
// error, with no model loaded for nothing.
let app: Promise<typeof import("./serve.ts")> | undefined;
try {
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
  }, async (request, info) => (await (app ??= import("./serve.ts"))).default.fetch(request, info));
} catch (error) {
  if (!(error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.PermissionDenied)) {
    throw error;
  }
  const where = `${listen.hostname}:${listen.port}`;
  console.error(
    error instanceof Deno.errors.AddrInUse
      ? `error: ${where} is already in use (another server?): choose another with --port\n${USAGE}`
      : `error: not allowed to listen on ${where} (${error.message})\n${USAGE}`,
  );
  Deno.exit(1);
}
app ??= import("./serve.ts");
