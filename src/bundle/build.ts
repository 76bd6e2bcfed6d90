/**
 * `deno task bundle`: builds dist/qvq.js (one ES module, for browsers and other runtimes without
 * Deno's module loader) from src/bundle/browser.ts with esbuild, and copies the wasm file beside
 * it, where the bundle fetches it from (`new URL("./qvq_wasm_bg.wasm", import.meta.url)`).
 *
 * esbuild does not know Deno's import map or `npm:` specifiers: the npm packages the entry uses
 * (found with `deno info --json`) are linked from Deno's npm cache into a temporary node_modules
 * that esbuild searches, and `npm:` specifiers are rewritten to plain package names.
 *
 * @example
 * ```sh
 * deno task bundle            # → dist/qvq.js, dist/qvq.js.map, dist/qvq_wasm_bg.wasm
 * deno run -A src/bundle/build.ts --out-dir public/qvq --minify
 * ```
 * @module
 */
import * as esbuild from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ENTRY = join(ROOT, "src/bundle/browser.ts");
const WASM = join(ROOT, "wasm/pkg/qvq_wasm_bg.wasm");
/** How src/_wasm.ts names the wasm file, and what the bundle must name instead. */
const WASM_URL_IN_SOURCE = '"../wasm/pkg/qvq_wasm_bg.wasm"';
const WASM_URL_IN_BUNDLE = '"./qvq_wasm_bg.wasm"';

/** What a build produced. */
export interface BundleResult {
  /** Path of the bundle. */
  js: string;
  /** Path of the wasm file beside it. */
  wasm: string;
  /** Size of the bundle in bytes. */
  bytes: number;
}

/** The npm packages (name → folder in Deno's cache) that `entry` imports, per `deno info`. */
async function npmPackages(entry: string): Promise<Map<string, string>> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`deno info ${entry} failed:\n${new TextDecoder().decode(stderr)}`);
  }
  const info = JSON.parse(new TextDecoder().decode(stdout));
  const packages = new Map<string, string>();
  for (const p of Object.values(info.npmPackages ?? {}) as { name: string; localPath?: string }[]) {
    if (!p.localPath) throw new Error(`deno info gave no local path for npm package ${p.name}`);
    packages.set(p.name, p.localPath);
  }
  return packages;
}

/** `npm:/name@1.2.3/sub` or `npm:name@1.2.3/sub` → `name/sub`. */
function bareName(specifier: string): string {
  const rest = specifier.replace(/^npm:\/?/, "");
  const m = rest.match(/^((?:@[^/]+\/)?[^@/]+)(?:@[^/]+)?(\/.*)?$/);
  if (!m) throw new Error(`cannot read the npm specifier "${specifier}"`);
  return m[1] + (m[2] ?? "");
}

function denoPlugin(nodeModules: string): esbuild.Plugin {
  return {
    name: "deno",
    setup(build) {
      build.onResolve(
        { filter: /^npm:/ },
        (args) => build.resolve(bareName(args.path), { kind: args.kind, resolveDir: nodeModules }),
      );
      // The bundle ships the wasm beside itself, not at the checkout's wasm/pkg.
      build.onLoad({ filter: /[\\/]src[\\/]_wasm\.ts$/ }, async (args) => {
        const source = await Deno.readTextFile(args.path);
        if (!source.includes(WASM_URL_IN_SOURCE)) {
          throw new Error(
            `${args.path} no longer names ${WASM_URL_IN_SOURCE}; update src/bundle/build.ts`,
          );
        }
        return {
          contents: source.replaceAll(WASM_URL_IN_SOURCE, WASM_URL_IN_BUNDLE),
          loader: "ts",
        };
      });
    },
  };
}

/** Builds the bundle into `outDir`; see the module doc. */
export async function buildBundle(
  outDir: string = join(ROOT, "dist"),
  options: { minify?: boolean } = {},
): Promise<BundleResult> {
  const temp = await Deno.makeTempDir({ prefix: "qvq-bundle-" });
  try {
    const nodeModules = join(temp, "node_modules");
    for (const [name, path] of await npmPackages(ENTRY)) {
      await Deno.mkdir(dirname(join(nodeModules, name)), { recursive: true });
      await Deno.symlink(path, join(nodeModules, name));
    }
    const js = join(outDir, "qvq.js");
    await esbuild.build({
      entryPoints: [ENTRY],
      outfile: js,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      sourcemap: "linked",
      minify: options.minify ?? false,
      nodePaths: [nodeModules],
      plugins: [denoPlugin(nodeModules)],
      logLevel: "silent",
    });
    const wasm = join(outDir, "qvq_wasm_bg.wasm");
    await Deno.copyFile(WASM, wasm);
    return { js, wasm, bytes: (await Deno.stat(js)).size };
  } finally {
    await esbuild.stop();
    await Deno.remove(temp, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { "out-dir": { type: "string" }, minify: { type: "boolean" } },
    strict: true,
  });
  const result = await buildBundle(values["out-dir"], { minify: values.minify });
  console.error(`${result.js} (${(result.bytes / 1024).toFixed(0)} KiB) and ${result.wasm}`);
}
