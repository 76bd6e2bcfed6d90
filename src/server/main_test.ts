import assert from "node:assert/strict";
import { SERVE_USAGE } from "./_env.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** `deno run -A src/server/main.ts <args>`: its exit code and output (no server is left running). */
function main(...args: string[]) {
  return mainWith({}, ...args);
}

/** {@link main} with more environment variables. */
async function mainWith(env: Record<string, string>, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    // a server that started would fail: --help must not get there
    env: { PORT: "not a port", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("deno task serve --help / -h prints the usage with the environment and exits 0", async () => {
  for (const flag of ["--help", "-h"]) {
    const { code, stdout, stderr } = await main(flag);
    assert.equal(code, 0, stderr);
    assert.equal(stdout, `${SERVE_USAGE}\n`);
    assert.match(stdout, /QVQ_MODEL/);
    assert.equal(stderr, "");
  }
});

Deno.test("deno task serve with an unknown option says so and exits 2", async () => {
  const { code, stdout, stderr } = await main("--verbose");
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.match(stderr, /^error: Unknown option '--verbose'.*\nusage: deno task serve /s);
});

Deno.test("deno task serve with a bad environment variable says which and why before listening, exit 2", async () => {
  // Port 0: were it to start, it would listen (and print so) before loading the model.
  const { code, stdout, stderr } = await mainWith({ QVQ_QUANT: "q5" }, "--port", "0");
  assert.equal(code, 2, stderr);
  assert.equal(stdout, "");
  assert.doesNotMatch(stderr, /listening/);
  assert.match(stderr, /^error: QVQ_QUANT: .*q5.*\nusage: deno task serve /s);
});
