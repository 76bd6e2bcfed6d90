/**
 * Tokenizer speed: qvq's WebAssembly tokenizer against the pure-JavaScript
 * `@huggingface/tokenizers` on ../shared/bench/tokenizer_corpus.txt (1.6 MB of prose and code),
 * plus the time to load Qwen2's tokenizer.json.
 *
 *     deno bench -A bench/tokenizer_bench.ts
 *
 * Besides deno bench's per-iteration table it prints a summary in MB/s (UTF-8 bytes of the corpus
 * per second, encoding the whole corpus as one string, single-threaded, median of a few runs; the
 * cold figure is a fresh tokenizer's first encode, before its word cache holds anything).
 * @module
 */
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers";
import { loadWasm } from "../src/_wasm.ts";
import { Tokenizer } from "../src/tokenizer.ts";

const CORPUS_URL = new URL("../../shared/bench/tokenizer_corpus.txt", import.meta.url);
const MODEL_DIR = new URL("../tests/fixtures/tiny-qwen2vl/", import.meta.url);

async function readCorpus(): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(CORPUS_URL);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Median wall time of `runs` calls of `f`, in ms. */
async function medianMs(runs: number, f: () => unknown): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)];
}

const corpus = await readCorpus();
if (corpus === undefined) {
  console.log(`tokenizer bench skipped: ${CORPUS_URL.pathname} not found (it lives in ../shared).`);
} else {
  const jsonBytes = await Deno.readFile(new URL("tokenizer.json", MODEL_DIR));
  const jsonObj = JSON.parse(new TextDecoder().decode(jsonBytes));
  const configObj = JSON.parse(
    await Deno.readTextFile(new URL("tokenizer_config.json", MODEL_DIR)),
  );
  const mb = new TextEncoder().encode(corpus).length / 1e6;

  await loadWasm();
  // The first load in a process runs mostly unoptimized wasm (the engine optimizes hot functions
  // in the background): it is what a CLI run pays.
  const firstLoadMs = await medianMs(
    1,
    () => Tokenizer.fromJson(jsonBytes).then((t) => t.dispose()),
  );
  const wasmTok = await Tokenizer.fromJson(jsonBytes);
  const jsTok = new JsTokenizer(jsonObj, configObj);
  const encodeWasm = () => wasmTok.encode(corpus);
  const encodeJs = () => jsTok.encode(corpus, { add_special_tokens: false }).ids;

  // Warm up (JIT, wasm tier-up, the word cache), then check both give the same ids.
  const ours = encodeWasm();
  const theirs = encodeJs();
  const same = ours.length === theirs.length && ours.every((id, i) => id === theirs[i]);

  const loadMs = await medianMs(5, async () => (await Tokenizer.fromJson(jsonBytes)).dispose());
  const wasmMs = await medianMs(5, encodeWasm);
  // The first encode with a fresh tokenizer: every distinct word merged once (an empty cache).
  let coldMs = 0;
  for (let i = 0; i < 3; i++) {
    using fresh = await Tokenizer.fromJson(jsonBytes);
    coldMs = Math.max(coldMs, await medianMs(1, () => fresh.encode(corpus)));
  }
  const jsMs = await medianMs(3, encodeJs);
  const decodeMs = await medianMs(5, () => wasmTok.decode(ours));
  console.log(
    [
      `tokenizer bench: ${mb.toFixed(2)} MB corpus, ${ours.length} tokens`,
      `  load tokenizer.json (wasm)     ${loadMs.toFixed(0)} ms (first in this process: ${
        firstLoadMs.toFixed(0)
      } ms)`,
      `  encode, qvq wasm               ${(mb / (wasmMs / 1000)).toFixed(1)} MB/s (${
        wasmMs.toFixed(0)
      } ms)`,
      `  encode, qvq wasm, cold cache   ${(mb / (coldMs / 1000)).toFixed(1)} MB/s (${
        coldMs.toFixed(0)
      } ms, worst of 3)`,
      `  encode, @huggingface/tokenizers ${(mb / (jsMs / 1000)).toFixed(1)} MB/s (${
        jsMs.toFixed(0)
      } ms)`,
      `  speed-up                       ${(jsMs / wasmMs).toFixed(1)}x`,
      `  decode, qvq wasm               ${(mb / (decodeMs / 1000)).toFixed(1)} MB/s (${
        decodeMs.toFixed(0)
      } ms)`,
      `  same ids as the JS tokenizer   ${same}`,
    ].join("\n"),
  );

  Deno.bench({ name: "load tokenizer.json (qvq wasm)", n: 10, warmup: 1 }, async () => {
    (await Tokenizer.fromJson(jsonBytes)).dispose();
  });
  Deno.bench({
    name: "encode corpus (qvq wasm)",
    group: "encode",
    baseline: true,
    n: 10,
    warmup: 1,
  }, () => {
    encodeWasm();
  });
  Deno.bench(
    { name: "encode corpus (@huggingface/tokenizers)", group: "encode", n: 3, warmup: 1 },
    () => {
      encodeJs();
    },
  );
  Deno.bench({ name: "decode corpus ids (qvq wasm)", n: 10, warmup: 1 }, () => {
    wasmTok.decode(ours);
  });
}
