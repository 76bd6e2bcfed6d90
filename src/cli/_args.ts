/**
 * Command-line parsing shared by the qvq subcommands: node:util's strict parseArgs, with every
 * mistake turned into a {@link UsageError} that carries the command's usage text (exit code 2).
 * @module
 */
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { InvalidInputError, QvqError } from "../errors.ts";
import {
  decodeImage,
  DEFAULT_IMAGE_PROCESSOR_CONFIG,
  otherSizedFrame,
  smartResize,
} from "../image.ts";
import type { QuantDType, WeightDType } from "../gpu/tensor.ts";
import { parseQuant, parseVisionQuant } from "../model/quantize.ts";
import { checkKvDType, type KvDType } from "../../kernels/kv_cache.ts";
import type { LoadEngineOptions } from "../server/_engine.ts";

/** Bad command-line usage: printed with the usage text, exit code 2. */
export class UsageError extends Error {
  readonly usage: string;
  constructor(message: string, usage: string) {
    super(message);
    this.name = "UsageError";
    this.usage = usage;
  }
}

/** Where a command writes. Tests pass collectors; the CLI passes stdout/stderr. */
export interface Io {
  /** Writes to stdout (no newline added). */
  out(text: string): void | Promise<void>;
  /** Writes to stderr (no newline added). */
  err(text: string): void | Promise<void>;
  /** Standard input (default: the process's stdin). */
  stdin?(): ReadableStream<Uint8Array>;
  /** Whether standard input is a terminal (default: whether the process's is, without `stdin`). */
  stdinIsTerminal?(): boolean;
}

/**
 * Standard input as text. On a terminal a line on stderr first says what to type and how to end
 * it: `qvq tokenize` without a pipe (or `--prompt -`) would otherwise wait in silence.
 */
export async function readStdin(io: Io, what: string): Promise<string> {
  if (io.stdinIsTerminal?.() ?? (!io.stdin && Deno.stdin.isTerminal())) {
    const end = Deno.build.os === "windows" ? "Ctrl+Z, then Enter" : "Ctrl+D";
    await io.err(`(reading ${what} from the terminal; end it with ${end})\n`);
  }
  return await new Response(io.stdin?.() ?? Deno.stdin.readable).text();
}

/** stdout could not be written (a full disk, a closed file): said in a line, exit 1. */
export class OutputError extends QvqError {
  override name = "OutputError";
}

/**
 * The process's stdout and stderr. A failed write to stdout is an {@link OutputError} (a closed
 * pipe stays a BrokenPipe: `qvq … | head` ends quietly).
 */
export const stdio: Io = {
  out: async (t) => {
    try {
      await writeAll(Deno.stdout, t);
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) throw e;
      throw new OutputError(`cannot write the output to stdout: ${(e as Error).message}`);
    }
  },
  err: (t) => writeAll(Deno.stderr, t),
};

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, text: string): Promise<void> {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(await w.write(bytes));
}

type OptionSpec = { type: "string" | "boolean"; multiple?: boolean; short?: string };

/** Parsed option values: strings, string lists (multiple) or booleans. */
export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** Parses `args` strictly against `options`; unknown options and stray arguments are UsageErrors. */
export function parseCommand(
  args: string[],
  options: Record<string, OptionSpec>,
  usage: string,
): Values {
  try {
    const { values, positionals } = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 0) {
      throw new UsageError(`unexpected argument "${positionals[0]}"`, usage);
    }
    return values as Values;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message, usage);
  }
}

/**
 * `--seed -3` as `--seed=-3`, `--prompt "- list the items"` as `--prompt=- list …`: node's
 * parseArgs refuses any value that starts with "-" as ambiguous (it could be a forgotten value
 * followed by an option). After an option that takes a value, an argument that cannot be an
 * option is that option's value: a negative number, text with a space in it, or a dash and a
 * letter that names no short option (`--stop -x`). `--prompt --seed 3` (a forgotten value before
 * an option) and a lone `-` (standard input) are left to parseArgs.
 */
function joinNegativeValues(args: string[], options: Record<string, OptionSpec>): string[] {
  const shorts = new Set(Object.values(options).map((o) => o.short).filter(Boolean));
  // `-h` or a group of short options (`-hv`) could be options; `-hello` could not.
  const optionLike = (a: string) =>
    !/\s/.test(a) && (a.startsWith("--") || [...a.slice(1)].every((c) => shorts.has(c)));
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : undefined;
    const next = args[i + 1];
    if (
      name && options[name]?.type === "string" && next !== undefined && next.length > 1 &&
      next.startsWith("-") && (/^-(\d|\.\d)/.test(next) || !optionLike(next))
    ) {
      out.push(`${args[i]}=${next}`);
      i++;
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

/** The value of required string option `--name` (a missing `--model` names the bundled one). */
export function requireString(v: Values, name: string, usage: string): string {
  const s = v[name];
  if (typeof s !== "string" || s === "") {
    throw new UsageError(`--${name} is required${name === "model" ? tinyModelHint() : ""}`, usage);
  }
  return s;
}

/**
 * Where this is a checkout, the bundled tiny model as a `--model` to try (a newcomer has no model
 * directory yet, and the server's default is not the CLI's); else nothing.
 */
function tinyModelHint(): string {
  const url = new URL("../../tests/fixtures/tiny-qwen2vl", import.meta.url);
  try {
    if (url.protocol !== "file:" || !Deno.statSync(url).isDirectory) return "";
  } catch {
    return "";
  }
  const absolute = fileURLToPath(url);
  const fromHere = relative(Deno.cwd(), absolute);
  const path = fromHere.length < absolute.length ? fromHere : absolute;
  return ` (to try qvq without a model: --model ${path}, a tiny one with random weights)`;
}

/**
 * The required `--model` of a command that reads a model's files without loading it (a directory
 * or an http(s) URL; no hub download): a directory that does not exist is said to be missing,
 * not reported as its first file missing.
 */
export async function requireModelDir(v: Values, usage: string): Promise<string> {
  const model = requireString(v, "model", usage);
  if (/^[a-z][a-z0-9+.-]+:/i.test(model)) return model; // a URL
  const info = await Deno.stat(model).catch(() => undefined);
  if (!info?.isDirectory) {
    throw new UsageError(
      `--model ${model}: ${info ? "not a directory" : "no such directory"} (this command reads ` +
        `a model directory or an http(s) URL; qvq generate downloads a hub model id)`,
      usage,
    );
  }
  return model;
}

/**
 * The required `--name` output path, checked before any work — its directory there, the path no
 * directory itself (either would otherwise fail only after the model has run).
 */
export async function requireOutPath(v: Values, name: string, usage: string): Promise<string> {
  const path = requireString(v, name, usage);
  if (await Deno.stat(path).then((s) => s.isDirectory, () => false)) {
    throw new UsageError(
      `--${name}: "${path}" is a directory; name the file to write (e.g. ${
        path.replace(/\/+$/, "")
      }/out.safetensors)`,
      usage,
    );
  }
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  const isDir = await Deno.stat(dir).then((s) => s.isDirectory, () => false);
  if (!isDir) {
    throw new UsageError(`--${name}: cannot write "${path}": "${dir}" is not a directory`, usage);
  }
  return path;
}

/** Writes an output file; a failure is an InvalidInputError naming the path. */
export async function writeOutFile(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await Deno.writeFile(path, bytes);
  } catch (e) {
    throw new InvalidInputError(`cannot write "${path}": ${(e as Error).message}`);
  }
}

/** The values of a repeatable string option (empty when absent). */
export function stringList(v: Values, name: string): string[] {
  const s = v[name];
  return s === undefined ? [] : (Array.isArray(s) ? s : [s]).map(String);
}

/** A numeric option, or undefined when absent; `integer` rejects fractions. */
export function numberOption(
  v: Values,
  name: string,
  usage: string,
  integer = false,
): number | undefined {
  const s = v[name];
  if (s === undefined) return undefined;
  const n = typeof s === "string" && s.trim() !== "" ? Number(s) : NaN;
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(
      `--${name} must be ${integer ? "an integer" : "a number"}, got "${s}"`,
      usage,
    );
  }
  return n;
}

/** `--dtype`: f16, f32, or undefined when absent (the loader picks). */
export function dtypeOption(v: Values, usage: string): WeightDType | undefined {
  const dtype = v.dtype;
  if (dtype !== undefined && dtype !== "f16" && dtype !== "f32") {
    throw new UsageError(`--dtype must be f16 or f32, got "${dtype}"`, usage);
  }
  return dtype;
}

/**
 * `--quant`: q8, q4, or undefined when absent or "f16" (no quantization; the weights keep
 * `--dtype`). Parsed by quantize.ts `parseQuant`, which names the accepted values.
 */
export function quantOption(v: Values, usage: string): QuantDType | undefined {
  return parsedOption(v, "quant", parseQuant, usage);
}

/**
 * `--vision-quant`: q8, or undefined when absent or "f16" (the vision tower keeps `--dtype`).
 * Parsed by quantize.ts `parseVisionQuant`.
 */
export function visionQuantOption(v: Values, usage: string): QuantDType | undefined {
  return parsedOption(v, "vision-quant", parseVisionQuant, usage);
}

/** `--kv-cache-dtype`: f16, f32, or undefined when absent (the loader's f32). */
export function kvCacheDtypeOption(v: Values, usage: string): KvDType | undefined {
  return parsedOption(v, "kv-cache-dtype", (x) => checkKvDType(x, "the KV cache dtype"), usage);
}

/**
 * How to load the model, from `--dtype`, `--quant`, `--vision-quant` and `--kv-cache-dtype`:
 * only the options given (the loader picks the rest).
 */
export function loadOptions(
  v: Values,
  usage: string,
): Pick<LoadEngineOptions, "dtype" | "quant" | "visionQuant" | "kvCacheDtype"> {
  const dtype = dtypeOption(v, usage);
  const quant = quantOption(v, usage);
  const visionQuant = visionQuantOption(v, usage);
  const kvCacheDtype = kvCacheDtypeOption(v, usage);
  return {
    dtype,
    quant,
    ...(visionQuant ? { visionQuant } : {}),
    ...(kvCacheDtype ? { kvCacheDtype } : {}),
  };
}

/** The `--…` options {@link loadOptions} reads, for parseCommand. */
export const LOAD_OPTIONS = {
  dtype: { type: "string" },
  quant: { type: "string" },
  "vision-quant": { type: "string" },
  "kv-cache-dtype": { type: "string" },
} as const;

/** `--name` through `parse`; its InvalidInputError becomes a UsageError naming the option. */
function parsedOption<T>(
  v: Values,
  name: string,
  parse: (text: string) => T,
  usage: string,
): T | undefined {
  const value = v[name];
  if (value === undefined) return undefined;
  try {
    return parse(String(value));
  } catch (e) {
    if (e instanceof InvalidInputError) throw new UsageError(`--${name}: ${e.message}`, usage);
    throw e;
  }
}

/** An image file's bytes, checked to decode, and its size. */
export interface CheckedImage {
  bytes: Uint8Array;
  width: number;
  height: number;
}

/**
 * An `--image` file's bytes (or a `--video` frame's: `what`), checked to decode; an unreadable or
 * undecodable one is an InvalidInputError naming the path.
 */
export async function readImageFile(path: string, what = "image"): Promise<CheckedImage> {
  // A video file given as an image: refused by name, before its bytes (gigabytes) are read.
  if (VIDEO_CONTAINER.test(path)) {
    throw new InvalidInputError(
      `${what} "${path}" is a video file, where an image (PNG, JPEG, WebP) goes: give a video's ` +
        `frames with --video (chat: /video), extracted first, e.g. mkdir frames && ffmpeg -i ` +
        `"${path}" -vf fps=2 frames/%04d.jpg`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new InvalidInputError(`cannot read ${what} "${path}": ${(e as Error).message}`);
  }
  if (!bytes.length) throw new InvalidInputError(`${what} "${path}" is an empty file`);
  return await checkImageFile(bytes, path, what);
}

/** A video container's file name (an animated GIF is refused as an image format instead). */
const VIDEO_CONTAINER = /\.(mp4|m4v|mov|webm|mkv|avi|wmv|flv|mpe?g|3gp|ogv)$/i;

/**
 * An image file's bytes, decoded once to check them — the CLI checks every image before the model
 * loads (a GIF found after QVQ-72B's tens of GB had loaded cost minutes) — its path named, as
 * `what` (an image, a video frame), where they do not decode or the processor would refuse its
 * size. The pixels are dropped: the pipeline decodes again when it runs, and a long video's frames
 * held decoded (or a chat's images, in its history) would take gigabytes.
 */
export async function checkImageFile(
  bytes: Uint8Array,
  path: string,
  what = "image",
): Promise<CheckedImage> {
  try {
    const { width, height } = await decodeImage(bytes);
    // What the processor would refuse of its size (an aspect ratio over 200), as the server checks.
    smartResize(height, width, DEFAULT_IMAGE_PROCESSOR_CONFIG);
    return { bytes, width, height };
  } catch (e) {
    if (!(e instanceof InvalidInputError)) throw e;
    throw new InvalidInputError(`${what} "${path}": ${e.message}`);
  }
}

/** Refuses a video whose frames (read from `paths`) are not all of frame 0's size. */
export function checkFrameSizes(
  frames: readonly { width: number; height: number }[],
  paths: readonly string[],
): void {
  const [{ width, height }] = frames;
  const k = otherSizedFrame(frames);
  if (k > 0) {
    throw new InvalidInputError(
      `video frame "${paths[k]}" is ${frames[k].width}x${frames[k].height} pixels but frame ` +
        `"${paths[0]}" is ${width}x${height}: every frame of a video must have the same size`,
    );
  }
}

/**
 * Ctrl+C stops the current answer (finish reason "abort") instead of killing the process
 * mid-write; returns the function that stops listening.
 */
export function onInterrupt(abort: AbortController): () => void {
  const handler = () => abort.abort(new DOMException("Stopped with Ctrl+C.", "AbortError"));
  try {
    Deno.addSignalListener("SIGINT", handler);
  } catch {
    return () => {}; // no signals here (Windows without a console, or no permission)
  }
  return () => Deno.removeSignalListener("SIGINT", handler);
}
