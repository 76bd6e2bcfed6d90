import assert from "node:assert/strict";
import { SERVE_USAGE } from "./_env.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** `deno run -A src/server/main.ts <args>`: its exit code and output (no server is left running). */
async function main(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { PORT: "not a port" }, // a server that started would fail: --help must not get there
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
