/**
 * Command-line options of bench/main.ts.
 * @module
 */
import { InvalidInputError } from "../src/errors.ts";
import type { PresetName } from "../src/model/presets.ts";
import { parseQuant, parseVisionQuant } from "../src/model/quantize.ts";
import type { QuantDType, WeightDType } from "../src/gpu/tensor.ts";
import { checkKvDType, type KvDType } from "../kernels/kv_cache.ts";
import { MAX_TOP_LOGPROBS } from "../kernels/logprobs.ts";

/** Short shape names and the configs they stand for ("tiny" is the test fixture's). */
export const SHAPES: Readonly<Record<string, PresetName | "tiny">> = {
  "tiny": "tiny",
  "qwen2-vl-2b": "Qwen2-VL-2B-Instruct",
  "qwen2-vl-7b": "Qwen2-VL-7B-Instruct",
  "qwen2-vl-72b": "Qwen2-VL-72B-Instruct",
  "qvq-72b": "QVQ-72B-Preview",
};

/** What one bench run measures. */
export interface BenchOptions {
  /** A key of {@link SHAPES}. */
  shape: string;
  /** Float dtype of unquantized weights. */
  dtype: WeightDType;
  /** q8/q4 decoder weights, or none. */
  quant?: QuantDType;
  /** q8 vision tower (int8 GEMMs: Qwen2VLModel.load's visionQuant), or none. */
  visionQuant?: QuantDType;
  /** The KV cache's element type (default: Qwen2VLModel.load's, f32). */
  kvCacheDtype?: KvDType;
  /** Prompt length in tokens, image tokens included. */
  promptTokens: number;
  /** Image size in pixels [width, height], or none. */
  image?: [number, number];
  /** The image as a video of this many frames of its size (two frames a temporal patch), or none. */
  videoFrames?: number;
  /** Most patches the vision tower runs in one pass (VisionTower.encode's maxPatches). */
  visionGroupPatches?: number;
  /** Tokens generated in the timed decode. */
  newTokens: number;
  /** Decode steps recorded per command buffer. */
  stepsPerSubmit: number;
  /** Timed repetitions (the last is reported; the first includes shader compilation). */
  repeat: number;
  /** Weights' seed. */
  seed: number;
  /** Load this checkpoint directory instead of generating weights on the GPU. */
  checkpoint?: string;
  /** First write a synthetic bf16 checkpoint of the shape into `checkpoint` (if not there yet). */
  writeCheckpoint: boolean;
  /** Longest session; default prompt + new tokens + 1. */
  maxContext?: number;
  /** Also time each dispatch of a decode step alone (timestamp queries) and report the split. */
  profile: boolean;
  /**
   * After the decode, time a next chat turn of this many new prompt tokens (0: none) — from the
   * session's KV cache (the prompt cache) and, for comparison, whole.
   */
  followup: number;
  /**
   * After the decode, time this many generations decoding at once (PipelineOptions.parallel), each
   * in a session of its own; 1: none.
   */
  parallel: number;
  /**
   * With parallel: each generation in a decode loop of its own, taking turns on the GPU, not one
   * loop stepping all of them as one batch (src/generate/decode_batcher.ts; to compare).
   */
  noBatch: boolean;
  /** Products of 2–16 rows on the tiled kernels, not the row GEMV over all rows (to compare). */
  noXRows: boolean;
  /** Products of 2–16 rows with their RMSNorm as a pass of its own, not fused (to compare). */
  noXRowsNorm: boolean;
  /** Products of 2–16 rows with their silu · mul as a pass of its own, not fused (to compare). */
  noXRowsSilu: boolean;
  /**
   * Batched decode with each session's rope + KV write as a dispatch of its own before its
   * attention, not folded into it (src/model/decoder.ts DECODER_FUSION.rowRopeKv; to compare).
   */
  noFusedRowAttend: boolean;
  /** Record each token's logprob and this many alternatives (the logprobs kernels), or none. */
  logprobs?: number;
  /**
   * Sample with every penalty on (repetition 1.05, presence 0.5, frequency 0.1) and a 300-token
   * logit bias, still greedy.
   */
  penalties: boolean;
  /** Prefill scoring every prompt token with this many alternatives (prompt logprobs), or not. */
  promptLogprobs?: number;
  /**
   * Decode in JSON mode (the grammar's mask and advance each step), over the tiny fixture's
   * tokenizer (Qwen2's vocabulary), inside a string: where the mask reads every token's bytes.
   */
  jsonMode: boolean;
  /** The same with a JSON schema's DFA (structured outputs) instead of JSON mode's automaton. */
  jsonSchema: boolean;
}

const USAGE = `deno task bench [options]
  --shape tiny|qwen2-vl-2b|qwen2-vl-7b|qwen2-vl-72b|qvq-72b   (default qwen2-vl-7b)
  --quant f16|q8|q4           decoder weights (default f16)
  --vision-quant q8|f16       vision tower matrices q8, int8 GEMMs (default f16: as --dtype)
  --kv-cache-dtype f32|f16    KV cache type (default f32)
  --dtype f16|f32             float weights (default f16; tiny on lavapipe: f32 works too)
  --prompt-tokens N           prompt length incl. image tokens (default 478)
  --image WxH                 an image of W×H pixels (e.g. 644x476 = 391 tokens)
  --video-frames N            with --image: a video of N frames of that size instead (⌈N/2⌉
                              temporal patches; attention within each, as Qwen2-VL's tower)
  --vision-group-patches N    most patches the vision tower runs in one pass (default 32768)
  --new-tokens N              decode steps timed (default 128)
  --steps-per-submit N        decode steps per command buffer (default 32)
  --repeat N                  runs; the last is reported (default 2)
  --seed N                    weights' seed (default 0)
  --max-context N             session length (default prompt + new + 1)
  --checkpoint DIR            load a safetensors checkpoint instead of synthetic weights
  --write-checkpoint          write a synthetic bf16 checkpoint of the shape to DIR first
  --profile                   time each decode-step dispatch alone (GPU timestamps); adds
                              "decode_profile" (µs per step by kernel variant) to the line
  --followup N                then time the next chat turn, N new prompt tokens (≥ 10), from
                              the KV cache the turn before left and whole; adds "followup"
  --no-xrows                  products of 2..16 rows (short prompts, follow-ups) on the tiled
                              GEMMs, not the row GEMV over all rows (kernels/linear.ts; to compare)
  --no-xrows-norm             their RMSNorm as a pass of its own, not fused into them (to compare)
  --no-xrows-silu             their silu · mul as a pass of its own, not fused (to compare)
  --no-fused-row-attend       with --parallel, batched: each session's rope + KV write as a
                              dispatch of its own before its attention, not folded in (to compare)
  --parallel N                then time N generations decoding at once, each in its own session
                              (Pipeline's parallel; 2..64); adds "parallel"
  --no-batch                  with --parallel: each generation's own decode loop, taking turns,
                              not one loop stepping them as one batch (to compare)
  --logprobs N                decode with each token's logprob and N alternatives (0..20)
  --penalties                 decode with repetition, presence, frequency penalties and a
                              300-token logit bias on
  --prompt-logprobs N         prefill scoring every prompt token, N alternatives (0..20)
  --json-mode                 decode in JSON mode (response_format json_object), inside a
                              string value: the grammar's mask and advance each step
  --json-schema               the same held to a JSON schema (its DFA: structured outputs)
Prints one JSON line.`;

/** Parses argv; throws InvalidInputError with the usage on a bad option. */
export function parseArgs(argv: readonly string[]): BenchOptions {
  const o: BenchOptions = {
    shape: "qwen2-vl-7b",
    dtype: "f16",
    promptTokens: 478,
    newTokens: 128,
    stepsPerSubmit: 32,
    repeat: 2,
    seed: 0,
    writeCheckpoint: false,
    profile: false,
    followup: 0,
    parallel: 1,
    noBatch: false,
    noXRows: false,
    noXRowsNorm: false,
    noXRowsSilu: false,
    noFusedRowAttend: false,
    penalties: false,
    jsonMode: false,
    jsonSchema: false,
  };
  const bad = (msg: string): never => {
    throw new InvalidInputError(`${msg}\n${USAGE}`);
  };
  const int = (name: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) bad(`${name} must be an integer ≥ ${min}, got ${v}`);
    return n;
  };
  // A count of alternatives (--logprobs, --prompt-logprobs): 0 ..= MAX_TOP_LOGPROBS.
  const alternatives = (name: string, v: string | undefined) => {
    const n = int(name, v, 0);
    if (n > MAX_TOP_LOGPROBS) bad(`${name} must be at most ${MAX_TOP_LOGPROBS}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes("=") ? a.split("=", 2) : [a, undefined];
    const val = () => inline ?? argv[++i];
    switch (flag) {
      case "--shape": {
        const v = val();
        if (!(v in SHAPES)) bad(`unknown --shape "${v}"`);
        o.shape = v;
        break;
      }
      case "--quant": {
        const v = val();
        o.quant = parseQuant(v);
        if (v === "f32") o.dtype = "f32";
        break;
      }
      case "--vision-quant":
        o.visionQuant = parseVisionQuant(val());
        break;
      case "--kv-cache-dtype":
        o.kvCacheDtype = checkKvDType(val(), "--kv-cache-dtype");
        break;
      case "--dtype": {
        const v = val();
        if (v !== "f16" && v !== "f32") bad(`--dtype must be f16 or f32, got ${v}`);
        o.dtype = v as WeightDType;
        break;
      }
      case "--prompt-tokens":
        o.promptTokens = int(flag, val(), 1);
        break;
      case "--image": {
        const m = /^(\d+)x(\d+)$/.exec(val() ?? "");
        if (!m) bad(`--image must be WxH, e.g. 644x476`);
        o.image = [Number(m![1]), Number(m![2])];
        break;
      }
      case "--video-frames":
        o.videoFrames = int(flag, val(), 1);
        break;
      case "--vision-group-patches":
        o.visionGroupPatches = int(flag, val(), 1);
        break;
      case "--new-tokens":
        o.newTokens = int(flag, val(), 1);
        break;
      case "--steps-per-submit":
        o.stepsPerSubmit = int(flag, val(), 1);
        break;
      case "--repeat":
        o.repeat = int(flag, val(), 1);
        break;
      case "--followup":
        o.followup = int(flag, val(), 10);
        break;
      case "--no-xrows":
        o.noXRows = true;
        break;
      case "--no-xrows-norm":
        o.noXRowsNorm = true;
        break;
      case "--no-xrows-silu":
        o.noXRowsSilu = true;
        break;
      case "--no-fused-row-attend":
        o.noFusedRowAttend = true;
        break;
      case "--no-batch":
        o.noBatch = true;
        break;
      case "--parallel":
        o.parallel = int(flag, val(), 2);
        if (o.parallel > 64) bad(`--parallel must be 2 to 64, got ${o.parallel}`);
        break;
      case "--seed":
        o.seed = int(flag, val(), 0);
        break;
      case "--max-context":
        o.maxContext = int(flag, val(), 2);
        break;
      case "--checkpoint":
        o.checkpoint = val();
        break;
      case "--write-checkpoint":
        o.writeCheckpoint = true;
        break;
      case "--profile":
        o.profile = true;
        break;
      case "--logprobs":
        o.logprobs = alternatives(flag, val());
        break;
      case "--penalties":
        o.penalties = true;
        break;
      case "--json-mode":
        o.jsonMode = true;
        break;
      case "--json-schema":
        o.jsonSchema = true;
        break;
      case "--prompt-logprobs":
        o.promptLogprobs = alternatives(flag, val());
        break;
      case "--help":
      case "-h":
        bad("usage:");
        break;
      default:
        bad(`unknown option "${a}"`);
    }
  }
  if (o.writeCheckpoint && !o.checkpoint) bad("--write-checkpoint needs --checkpoint DIR");
  if (o.videoFrames !== undefined && !o.image) {
    bad("--video-frames needs --image WxH (the frame size)");
  }
  return o;
}

/**
 * The `--name value` reader of the smaller bench scripts (bench/_e2e.ts, _choices.ts, _soak.ts):
 * `opt(name, def)` is the value after `name` in `args`, else `def`; with neither, an error naming
 * the script and the option.
 */
export function optionReader(
  script: string,
  args: readonly string[] = Deno.args,
): (name: string, def?: string) => string {
  return (name, def) => {
    const i = args.indexOf(name);
    const v = i >= 0 ? args[i + 1] : def;
    if (v === undefined) throw new InvalidInputError(`${script}: ${name} is required`);
    return v;
  };
}
