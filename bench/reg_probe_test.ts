import assert from "node:assert/strict";

// The probe's kernels are WGSL written by string templates that only the GPU machine runs: its
// --check mode validates every one (createShaderModule, no pipeline: lavapipe would compile the
// written-out loops for minutes), so a template broken by an edit fails here rather than there.
// (--no-config: the probe imports no packages, and the GPU machine, which runs this suite too,
// reaches no registry.)
Deno.test("bench/reg_probe.ts: every probe kernel is valid WGSL", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-config",
      "--no-check",
      new URL("./reg_probe.ts", import.meta.url).pathname,
      "--check",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  assert.equal(out.code, 0, text(out.stderr));
  const lines = text(out.stdout).trim().split("\n");
  for (const line of lines) assert.match(line, /^[\w .×()-]+: compiles$/);
  const families = new Set(lines.map((l) => l.split(" ")[0]));
  assert.deepEqual([...families].sort(), ["blocks", "chains", "pipe", "ratio", "shared"]);
  // pipe: 6 tilings × (products, 2 buffers, stores, loads) where 48 KiB allows, then the fn
  // family's 14; ratio: 9 ratios and 12 occupancy lines.
  assert.equal(lines.filter((l) => l.startsWith("pipe")).length, 21 + 14);
  assert.equal(lines.filter((l) => l.startsWith("ratio")).length, 9 + 12);
});
