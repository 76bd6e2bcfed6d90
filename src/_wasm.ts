/**
 * Loads the WebAssembly core (wasm/pkg, built by `deno task build:wasm`) once.
 * The module is fetched relative to this file, so it works from a checkout, from JSR (https) and
 * from a browser bundle that ships `qvq_wasm_bg.wasm` beside it.
 * @module
 */
import init from "../wasm/pkg/qvq_wasm.js";
export * as wasm from "../wasm/pkg/qvq_wasm.js";

let ready: Promise<unknown> | undefined;

/** Instantiates the wasm module on first call; later calls return the same promise. */
export function loadWasm(): Promise<unknown> {
  ready ??= init({ module_or_path: new URL("../wasm/pkg/qvq_wasm_bg.wasm", import.meta.url) });
  return ready;
}
