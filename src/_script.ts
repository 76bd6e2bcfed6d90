/**
 * Tests' one-off processes: a module's source run by `deno run -A --no-check` in a process of its
 * own — a fresh wasm memory, or to see that the process ends (a worker left alive would hang it).
 * @module
 */

/**
 * Runs `source` as a module in a process of its own and returns its stdout.
 * @throws Error with its stderr where it exits other than 0, or where it runs past `timeoutMs`
 */
export async function runScript(source: string, timeoutMs: number): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/use.ts`, source);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", `${dir}/use.ts`],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    if (out.code !== 0) throw new Error(`the script exited ${out.code}: ${text(out.stderr)}`);
    return text(out.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
