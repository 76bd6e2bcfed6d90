import assert from "node:assert/strict";
import { embedWgsl } from "./_embed.ts";

Deno.test("kernels/_wgsl.ts is up to date with kernels/*.wgsl", async () => {
  const dir = new URL("./", import.meta.url);
  const want = await embedWgsl(dir);
  const have = await Deno.readTextFile(new URL("_wgsl.ts", dir));
  assert.ok(have === want, "kernels/_wgsl.ts is stale: run `deno task build:kernels`");
});
