/**
 * `qvq generate`: one answer to a prompt (with images), streamed to stdout, or one JSON object at
 * the end with `--json`. Also the model/prompt options `qvq logits` shares.
 * @module
 */
import type {
  ChatMessage,
  ContentPart,
  GenerateOptions,
  GenerationResult,
} from "../generate/types.ts";
import type { Pipeline } from "../pipeline.ts";
import { parseGenerationConfig, resolveOptions } from "../generate/options.ts";
import {
  checkFrameSizes,
  type Io,
  LOAD_OPTIONS,
  loadOptions,
  numberOption,
  onInterrupt,
  parseCommand,
  readImageFile,
  readStdin,
  requireString,
  stringList,
  UsageError,
  type Values,
} from "./_args.ts";
import { InvalidInputError } from "../errors.ts";
import { gpuIdle } from "../gpu/buffers.ts";
import { within } from "../_async.ts";
import { MAX_VIDEO_FRAMES } from "../image.ts";

const USAGE = `usage: qvq generate --model <dir|url|org/name> --prompt <text> [options]

Answers one user message (images first, then videos, then the text) with the model's chat
template and default system prompt; the answer streams to stdout.

options:
  --model <dir|url|id>      model directory, URL, or Hugging Face hub id (downloaded and cached)
  --prompt <text>           the user's text (-: read from stdin)
  --image <file>            an image (PNG, JPEG, WebP); repeat for several
  --video <frames>          a video as its frames, in order: image files of one size, comma-
                            separated, or a directory of them (sorted by name); repeat for
                            several (after the images). Extract an MP4's frames first, e.g.
                            mkdir frames && ffmpeg -i in.mp4 -vf fps=2 frames/%04d.jpg
  --system <text>           a system prompt instead of the template's default ("": none)
  --raw                     continue --prompt as it is, without the chat template (special
                            tokens in it recognised; no --image, --video or --system):
                            /v1/completions
  --max-tokens <n>          most tokens to generate (1..8192; default: as many as the
                            context holds, up to 8192, as llama-cli and ollama run — also
                            with --ignore-eos; generation_config.json's max_new_tokens is
                            not read)
  --temperature <t>         0 = greedy (default: generation_config.json)
  --top-p <p>  --top-k <k>  --min-p <m>  --repetition-penalty <r>
  --presence-penalty <p>  --frequency-penalty <f>
                            OpenAI's penalties on tokens the answer already has: once / per
                            occurrence, -2..2 (e.g. 1 against endless repetition; 0: none)
  --seed <n>                same seed, same options → same answer
  --format json             JSON mode: the answer is a JSON object (ask for one in --prompt)
  --json-schema <file|json> structured output: the answer is an instance of this JSON schema
  --regex <pattern>         the answer is a match of this regular expression, whole
  --stop <text>             stop before this text; repeat for several
  --stop-token-id <id>      also stop at this token id (vLLM's stop_token_ids); repeat for several
  --logit-bias <id>=<bias>  add -100..100 to a token's logit (OpenAI's logit_bias; -100 bans
                            it); repeat for several
  --stop-on-loop            stop when the answer keeps repeating itself (the default, except with
                            --ignore-eos or a format); --no-stop-on-loop: never
  --ignore-eos              run past the end-of-sequence ids to --max-tokens (benchmarks)
  --dtype <f16|f32>         weight dtype on the GPU (default f16 where supported)
  --quant <q8|q4|f16>       quantize the decoder's matrices while loading: 8.5 / 4.5 bits per
                            weight; q4 costs more accuracy (BENCHMARKS.md); f16: none (default)
  --vision-quant <q8|f16>   quantize the vision tower's matrices to q8 and run them as int8
                            GEMMs: faster image encoding, image embeddings ~2 % off; f16: none
  --kv-cache-dtype <f32|f16>  the KV cache's type: f32 (default), or f16 for half its memory
                            (long contexts on a small GPU; logits move ~1e-4)
  --json                    print one JSON object at the end: text, finish reason, usage, timings
  --logprobs <n>            with --json: each token's log probability and its n likeliest
                            alternatives (0..20) in the object's "logprobs"
  --prompt-logprobs <n>     with --json: every prompt token's log probability given those
                            before it, n alternatives (0..20), in "prompt"."logprobs"
  --echo                    print the prompt (as the model reads it) before the answer; with
                            --json in "prompt"."text"
`;

/** The options every model command takes. */
export const MODEL_OPTIONS = {
  model: { type: "string" },
  prompt: { type: "string" },
  image: { type: "string", multiple: true },
  video: { type: "string", multiple: true },
  system: { type: "string" },
  ...LOAD_OPTIONS,
  help: { type: "boolean", short: "h" },
} as const;

/** The user turn (and optional system turn) of `--image… --prompt` as chat messages. */
export async function promptMessages(v: Values, usage: string): Promise<ChatMessage[]> {
  const text = requireString(v, "prompt", usage);
  const content: ContentPart[] = [];
  for (const path of stringList(v, "image")) {
    content.push({ type: "image", image: (await readImageFile(path)).bytes });
  }
  for (const frames of stringList(v, "video")) {
    const paths = await videoFramePaths(frames);
    const video = [];
    // One decoded at a time.
    for (const path of paths) video.push(await readImageFile(path, "video frame"));
    checkFrameSizes(video, paths);
    content.push({ type: "video", video: video.map((f) => f.bytes) });
  }
  content.push({ type: "text", text });
  const messages: ChatMessage[] = [];
  if (typeof v.system === "string") messages.push({ role: "system", content: v.system });
  messages.push({ role: "user", content });
  return messages;
}

/**
 * A video file's name (its container's extension; an animated GIF too), which `--video` is given
 * in place of its frames: refused by name, before its bytes (up to gigabytes) are read.
 */
const VIDEO_FILE = /\.(mp4|m4v|mov|webm|mkv|avi|wmv|flv|mpe?g|3gp|ogv|gif)$/i;

/**
 * The frame files of a `--video`: its comma-separated paths, or the PNG, JPEG and WebP files of
 * a directory sorted by name, numbers by value (f2.jpg before f10.jpg). A video file given alone
 * ({@link VIDEO_FILE}) is refused saying how to extract its frames. `name`: how the user gave it
 * (`--video`, or chat's `/video`), as the refusals name it.
 */
export async function videoFramePaths(arg: string, name = "--video"): Promise<string[]> {
  let dir = false;
  try {
    dir = (await Deno.stat(arg)).isDirectory;
  } catch {
    // not one path: a list of frames
  }
  if (!dir) {
    const paths = arg.split(",").filter((p) => p !== "");
    if (paths.length === 1 && VIDEO_FILE.test(paths[0])) {
      // ffmpeg writes no frames into a directory that is not there: it is made first.
      throw new InvalidInputError(
        `${name} ${arg}: a video file, where qvq takes a video's frames (image files): extract ` +
          `them first, e.g. mkdir frames && ffmpeg -i "${arg}" -vf fps=2 frames/%04d.jpg, then ` +
          `${name} frames`,
      );
    }
    return checkFrameCount(arg, paths, name);
  }
  const names: string[] = [];
  for await (const e of Deno.readDir(arg)) {
    if (e.isFile && /\.(png|jpe?g|webp)$/i.test(e.name)) names.push(e.name);
  }
  if (!names.length) {
    throw new InvalidInputError(`${name} ${arg}: the directory has no PNG, JPEG or WebP frames`);
  }
  // Numbers in names in numeric order: f2.png before f10.png (as zero-padded names sort anyway).
  names.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  return checkFrameCount(arg, names.map((n) => `${arg.replace(/\/$/, "")}/${n}`), name);
}

/** The frames of a video, refused where they are more than the model takes (before any is read). */
function checkFrameCount(arg: string, paths: string[], name: string): string[] {
  if (paths.length > MAX_VIDEO_FRAMES) {
    throw new InvalidInputError(
      `${name} ${arg}: ${paths.length} frames, more than a video's ${MAX_VIDEO_FRAMES}; ` +
        `extract fewer (e.g. ffmpeg -vf fps=1)`,
    );
  }
  return paths;
}

/**
 * Loads the pipeline of `--model` (a directory, a URL, or a hub id) with `--dtype`, `--quant`,
 * `--vision-quant` and `--kv-cache-dtype`.
 */
export async function loadPipeline(v: Values, usage: string): Promise<Pipeline> {
  const model = requireString(v, "model", usage);
  const options = loadOptions(v, usage);
  const { loadEngine } = await import("../server/_engine.ts");
  return await loadEngine(model, options);
}

/** The sampling options `qvq generate` and `qvq chat` both take (read by {@link generateOptions}). */
export const SAMPLING_OPTIONS = {
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-p": { type: "string" },
  "min-p": { type: "string" },
  "top-k": { type: "string" },
  "repetition-penalty": { type: "string" },
  "presence-penalty": { type: "string" },
  "frequency-penalty": { type: "string" },
  seed: { type: "string" },
  format: { type: "string" },
  "json-schema": { type: "string" },
  regex: { type: "string" },
  "stop-token-id": { type: "string", multiple: true },
  "logit-bias": { type: "string", multiple: true },
} as const;

/** The flag of each generation option, for usage errors. */
const FLAGS: Record<string, string> = {
  maxNewTokens: "--max-tokens",
  temperature: "--temperature",
  topP: "--top-p",
  minP: "--min-p",
  topK: "--top-k",
  repetitionPenalty: "--repetition-penalty",
  presencePenalty: "--presence-penalty",
  frequencyPenalty: "--frequency-penalty",
  seed: "--seed",
  stop: "--stop",
  stopTokenIds: "--stop-token-id",
  logitBias: "--logit-bias",
  topLogprobs: "--logprobs",
  promptLogprobs: "--prompt-logprobs",
  responseFormat: "--format",
};

/**
 * Sampling options (and `--stop`/`--stop-on-loop` where the command takes them) from the command
 * line, absent ones left out. Their ranges do not depend on the model, so they are checked here,
 * before gigabytes of weights load: an out-of-range value is a UsageError naming its flag.
 */
export function generateOptions(v: Values, usage: string): GenerateOptions {
  const o = readGenerateOptions(v, usage);
  try {
    resolveOptions(o, parseGenerationConfig({}));
  } catch (e) {
    if (!(e instanceof InvalidInputError)) throw e;
    // resolveOptions names the option ("maxNewTokens must be …", "stop[0] must be …").
    const name = e.message.match(/^(\w+)/)?.[1] ?? "";
    const flag = name !== "responseFormat"
      ? FLAGS[name]
      : v["json-schema"] !== undefined
      ? "--json-schema"
      : v.regex !== undefined
      ? "--regex"
      : FLAGS[name];
    // "logitBias[151643] must be …": the flag and the token ("--logit-bias 151643=… must be …").
    const id = name === "logitBias" ? e.message.match(/^\w+\[(\d+)\]/)?.[1] : undefined;
    const said = id !== undefined ? `${flag} ${id}=…` : flag;
    throw new UsageError(said ? e.message.replace(/^\w+(\[\d+\])?/, said) : e.message, usage);
  }
  return o;
}

/** `text` as an integer (a token id), or a UsageError naming `flag`. */
function intText(text: string, flag: string, usage: string): number {
  const n = Number(text.trim());
  if (text.trim() === "" || !Number.isSafeInteger(n)) {
    throw new UsageError(`${flag} takes integer token ids, got ${JSON.stringify(text)}`, usage);
  }
  return n;
}

function readGenerateOptions(v: Values, usage: string): GenerateOptions {
  const o: GenerateOptions = {};
  const set = <K extends keyof GenerateOptions>(key: K, val: GenerateOptions[K] | undefined) => {
    if (val !== undefined) o[key] = val;
  };
  // Without --max-tokens, an answer runs to its end or the context's (≤ 8192 tokens), as llama-cli
  // and `ollama run` do: the module's 2048 cut QVQ's longer reasoning off.
  set("maxNewTokens", numberOption(v, "max-tokens", usage, true) ?? Infinity);
  set("temperature", numberOption(v, "temperature", usage));
  set("topP", numberOption(v, "top-p", usage));
  set("minP", numberOption(v, "min-p", usage));
  set("topK", numberOption(v, "top-k", usage, true));
  set("repetitionPenalty", numberOption(v, "repetition-penalty", usage));
  set("presencePenalty", numberOption(v, "presence-penalty", usage));
  set("frequencyPenalty", numberOption(v, "frequency-penalty", usage));
  set("seed", numberOption(v, "seed", usage, true));
  const format = v.format;
  if (format === "json") o.responseFormat = "json_object";
  else if (format !== undefined && format !== "text") {
    throw new UsageError(`--format takes json or text, got ${JSON.stringify(format)}`, usage);
  }
  const schema = v["json-schema"], regex = v.regex;
  const formats = [format === "json", typeof schema === "string", typeof regex === "string"];
  if (formats.filter((x) => x).length > 1) {
    throw new UsageError("give one of --format json, --json-schema and --regex", usage);
  }
  if (typeof schema === "string") o.responseFormat = { jsonSchema: readSchema(schema, usage) };
  if (typeof regex === "string") o.responseFormat = { regex };
  const stop = stringList(v, "stop");
  if (stop.length) o.stop = stop;
  const ids = stringList(v, "stop-token-id");
  if (ids.length) o.stopTokenIds = ids.map((x) => intText(x, "--stop-token-id", usage));
  const biases = stringList(v, "logit-bias");
  if (biases.length) {
    const bias: Record<number, number> = {};
    for (const pair of biases) {
      const m = pair.match(/^\s*(-?\d+)\s*=\s*(\S+)\s*$/);
      const value = m ? Number(m[2]) : NaN;
      if (!m || !Number.isFinite(value)) {
        throw new UsageError(
          `--logit-bias takes <token id>=<bias>, e.g. 151645=-100, got ${JSON.stringify(pair)}`,
          usage,
        );
      }
      bias[intText(m[1], "--logit-bias", usage)] = value;
    }
    o.logitBias = bias;
  }
  if (v["stop-on-loop"] && v["no-stop-on-loop"]) {
    throw new UsageError("give one of --stop-on-loop and --no-stop-on-loop", usage);
  }
  if (v["ignore-eos"]) o.ignoreEos = true;
  // As the server's: an answer that keeps repeating itself ends (QVQ can reason in circles, and
  // without --max-tokens it would run on to the context's end) — unless it is to run to
  // --max-tokens (--ignore-eos) or is held to a format, which the stop would end unfinished.
  if (v["stop-on-loop"] || (!v["no-stop-on-loop"] && !o.ignoreEos && !o.responseFormat)) {
    o.stopOnLoop = true;
  }
  const top = numberOption(v, "logprobs", usage, true);
  if (top !== undefined) [o.logprobs, o.topLogprobs] = [true, top];
  set("promptLogprobs", numberOption(v, "prompt-logprobs", usage, true));
  if (v.echo) o.echo = true;
  return o;
}

/** --json-schema's schema: JSON text (starting with "{"), or a file holding it. */
function readSchema(arg: string, usage: string): unknown {
  let text = arg;
  if (!arg.trimStart().startsWith("{")) {
    try {
      text = Deno.readTextFileSync(arg);
    } catch (e) {
      throw new UsageError(`--json-schema ${arg}: cannot read it (${(e as Error).message})`, usage);
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--json-schema: not JSON (${(e as Error).message})`, usage);
  }
}

/**
 * An echoed prompt for the terminal: an image's (video's) run of `<|image_pad|>`
 * (`<|video_pad|>`) tokens — hundreds to thousands — as one, with its count.
 */
function shownPrompt(text = ""): string {
  return text.replace(
    /(<\|(?:image|video)_pad\|>)\1*/g,
    (run, pad: string) => `${pad}×${run.length / pad.length}`,
  );
}

/** `qvq generate …`: returns the exit code. */
export async function generateCommand(args: string[], io: Io): Promise<number> {
  const v = parseCommand(args, {
    ...MODEL_OPTIONS,
    ...SAMPLING_OPTIONS,
    stop: { type: "string", multiple: true },
    "stop-on-loop": { type: "boolean" },
    "no-stop-on-loop": { type: "boolean" },
    "ignore-eos": { type: "boolean" },
    json: { type: "boolean" },
    logprobs: { type: "string" },
    "prompt-logprobs": { type: "string" },
    echo: { type: "boolean" },
    raw: { type: "boolean" },
  }, USAGE);
  if (v.help) {
    await io.out(USAGE);
    return 0;
  }
  requireString(v, "model", USAGE);
  const options = generateOptions(v, USAGE);
  for (
    const [set, flag] of [[options.logprobs, "--logprobs"], [
      options.promptLogprobs !== undefined,
      "--prompt-logprobs",
    ]] as const
  ) {
    if (set && !v.json) {
      throw new UsageError(`${flag} needs --json: the logprobs are in the JSON record`, USAGE);
    }
  }
  if (
    v.raw &&
    (stringList(v, "image").length || stringList(v, "video").length || v.system !== undefined)
  ) {
    throw new UsageError(
      "--raw continues the prompt alone: it takes no --image, --video or --system",
      USAGE,
    );
  }
  // --prompt -: the text read from stdin (a file, a pipe), as llama.cpp's -f reads a file; a chat
  // message without the one line end `echo` or an editor leaves (a raw prompt is kept as it is).
  if (v.prompt === "-") {
    const text = await readStdin(io, "the prompt");
    v.prompt = v.raw ? text : text.replace(/\r?\n$/, "");
  }
  // The raw prompt, or the chat messages (their images read before the model loads).
  const raw = v.raw ? requireString(v, "prompt", USAGE) : undefined;
  const messages = raw === undefined ? await promptMessages(v, USAGE) : [];
  const pipeline = await loadPipeline(v, USAGE);
  const abort = new AbortController();
  const stopOnCtrlC = onInterrupt(abort);
  try {
    let result: GenerationResult | undefined;
    const o = { ...options, signal: abort.signal };
    const events = raw !== undefined ? pipeline.complete(raw, o) : pipeline.generate(messages, o);
    for await (const ev of events) {
      if (ev.type === "done") result = ev.result;
      else if (!v.json) await io.out(shownPrompt(ev.prompt?.text) + ev.text);
    }
    if (!result) throw new Error("generation ended without a result");
    if (v.json) {
      await io.out(JSON.stringify(result) + "\n");
    } else {
      const t = result.timings;
      await io.out("\n");
      await io.err(
        `[${result.finishReason}] ${result.usage.promptTokens} prompt + ${result.usage.completionTokens} ` +
          `generated tokens; vision ${t.visionMs.toFixed(0)} ms, prefill ${
            t.prefillMs.toFixed(0)
          } ms, ` +
          `${t.tokensPerSecond.toFixed(1)} tokens/s\n`,
      );
    }
    // Stopped by Ctrl+C: the answer so far is out, but the command did not finish (a shell's
    // `qvq generate … && next` must not go on), as a process ended by SIGINT exits 130.
    return abort.signal.aborted ? 130 : 0;
  } finally {
    stopOnCtrlC();
    // What an abort leaves on the GPU (the batch submitted after the last one read) runs out before
    // the device is destroyed and the process exits: once in CI, under load, the process crashed
    // there after Ctrl+C (exit 139, not 130) — lavapipe's threads still running, we suppose.
    await within(gpuIdle(pipeline.model.gpu), 10_000).catch(() => {});
    pipeline.dispose();
  }
}
