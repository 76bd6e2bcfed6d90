import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** `deno args…` run in the repository root: its exit code and its output (stdout, stderr), plain. */
async function deno(...args: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

/** The files `deno publish --dry-run` would upload to JSR, relative to the repository root. */
async function publishedFiles(): Promise<string[]> {
  const { code, text } = await deno("publish", "--dry-run", "--allow-dirty");
  assert.equal(code, 0, `deno publish --dry-run failed:\n${text}`);
  return [...text.matchAll(/file:\/\/(\S+) \(/g)].map((m) => m[1].slice(ROOT.length));
}

Deno.test("the JSR package holds the module, its kernels and its WASM core, and no tests or fixtures", async () => {
  const files = await publishedFiles();
  for (
    const needed of [
      "mod.ts",
      "deno.json",
      "kernels/_wgsl.ts",
      "wasm/pkg/qvq_wasm.js",
      "wasm/pkg/qvq_wasm_bg.wasm",
      "src/server/_engine_worker.ts",
      "src/server/_warmup.ts",
    ]
  ) {
    assert.ok(files.includes(needed), `${needed} is published (files: ${files.length})`);
  }
  const unwanted = files.filter((f) =>
    f.endsWith("_test.ts") || f.startsWith("tests/") || f.startsWith("bench/") ||
    f.startsWith("wasm/target/") || f.includes("_fake_") || f.endsWith("_fixture.ts") ||
    // Reached by no import from mod.ts or its workers: the CLI, the browser bundler, the WGSL
    // sources (embedded in kernels/_wgsl.ts), the Rust build's files; and scratch folders, which
    // .git/info/exclude hides from git but not from deno publish.
    f.startsWith("src/cli/") || f.startsWith("src/bundle/") || f.endsWith(".wgsl") ||
    f.startsWith("wasm/Cargo.") || /^[._]scratch/.test(f)
  );
  assert.deepEqual(unwanted, []);
});

Deno.test("every symbol mod.ts exports is documented and names only exported types (deno doc --lint)", async () => {
  const { text } = await deno("doc", "--lint", "mod.ts");
  const errors = [...text.matchAll(/^error\[([\w-]+)\]: (.*)\n\s*--> (\S+)/gm)]
    .map(([, rule, message, at]) => `${rule}: ${message} (${at.replace(ROOT, "")})`)
    // createApp returns hono's Hono, a type of the `hono` package (its users mount the app with
    // it); re-exported here it would name hono's own unexported types in turn.
    .filter((e) =>
      !e.startsWith("private-type-ref: public type 'createApp' references private type 'Hono'")
    );
  assert.deepEqual(errors, []);
});
