/**
 * The issue-5 benchmark: a Qwen2-VL at a real shape with weights generated on the GPU from a seed
 * (or loaded from a checkpoint), timed end to end — load, vision tower, time to first token,
 * decode tokens/s — and printed as one JSON line.
 *
 *   deno task bench --shape qwen2-vl-7b --quant f16 --prompt-tokens 478 --image 644x476
 *   deno task bench --shape tiny --new-tokens 8        # runs on lavapipe (CI runs this)
 *
 * Timing: wall clock around submitted GPU work with ONE readback at the end of each measured
 * region (a readback costs ≥ 10 ms in Deno; it is counted once in TTFT, never per token).
 * Decode runs the product's loop (src/generate/token_pump.ts) in batches of `--steps-per-submit`
 * steps (model step + sampler + state advance), all with the same prebuilt dispatches, and counts
 * from the first batch's ids to the last's. The first repetition includes shader compilation; the
 * last one is reported.
 * @module
 */
import { type Gpu, requestGpu } from "../src/gpu/device.ts";
import { gpuIdle, readF32, readU32 } from "../src/gpu/buffers.ts";
import { InvalidInputError, QvqError } from "../src/errors.ts";
import { PRESETS } from "../src/model/presets.ts";
import { parseConfig, type Qwen2VLConfig } from "../src/model/config.ts";
import { Qwen2VLModel, type Session } from "../src/model/qwen2vl.ts";
import type { ImageEmbeds } from "../src/model/vision.ts";
import type { GridThw } from "../src/model/rope_index.ts";
import { syntheticModel } from "../src/model/synthetic.ts";
import type { WeightPlan } from "../src/model/weights.ts";
import { DECODER_FUSION } from "../src/model/decoder.ts";
import { DEFAULT_IMAGE_PROCESSOR_CONFIG, smartResize } from "../src/image.ts";
import {
  GREEDY,
  type KvDType,
  kvElementBytes,
  logprobSide,
  MAX_LOGIT_BIAS,
  type SamplingSettings,
} from "../kernels/mod.ts";
import { type RunGrammar, SessionRun } from "../src/generate/session_run.ts";
import { initialState, stateAfter, tokenTable } from "../src/generate/json_grammar.ts";
import { dfaWalk } from "../src/generate/_automaton.ts";
import { schemaDfa } from "../src/generate/json_schema.ts";
import { uploadTokenTable } from "../kernels/grammar.ts";
import { Tokenizer } from "../src/tokenizer.ts";
import { pumpTokens } from "../src/generate/token_pump.ts";
import { DecodeBatcher } from "../src/generate/decode_batcher.ts";
import { type BenchOptions, parseArgs, SHAPES } from "./_args.ts";
import { writeSyntheticCheckpoint } from "./_checkpoint.ts";
import { profileStep, profileSubmits, type StepProfile } from "./_profile.ts";
import { writeDecodeState } from "../kernels/state.ts";
import { GEMV_XROWS_MAX, LINEAR_CHOICE } from "../kernels/linear.ts";
import { maxAbsDiff } from "../src/ref/_random.ts";

/** H100 SXM HBM3 bandwidth: the issue's card, and the roofline of any card not named below. */
export const H100_BYTES_PER_S = 3.35e12;
/** H200 HBM3e bandwidth (vendor datasheet): the device tool lends H200s since 2026-11-28. */
export const H200_BYTES_PER_S = 4.8e12;

/** Memory bandwidth (B/s) the roofline fraction divides by, from the adapter's description. */
export function cardBytesPerS(device: string): number {
  return /H200/i.test(device) ? H200_BYTES_PER_S : H100_BYTES_PER_S;
}

/** One bench run's results (the printed JSON line). */
export interface BenchResult {
  shape: string;
  quant: string;
  /** The vision tower's matrices' quantization (--vision-quant), only when set. */
  vision_quant?: string;
  /** The KV cache's element type (absent from lines before the f16 cache: those ran f32). */
  kv_cache?: string;
  device: string;
  /** Seconds to get the weights onto the GPU (generated, or loaded from `checkpoint`). */
  load_s: number;
  /** "synthetic" or "checkpoint". */
  load_source: string;
  /** Checkpoint bytes read per second of load (checkpoint loads only). */
  load_gb_s?: number;
  /** Vision tower + merger for the image (0 without an image). */
  vision_s: number;
  /** Prefill of the prompt (image embeddings given). */
  prefill_s: number;
  /** Pixels and ids in → first token id on the CPU: vision + prefill + sampler + one readback. */
  ttft_s: number;
  /**
   * CPU time of the TTFT call until its GPU work was submitted: the vision tower's (encodeImages
   * returning) and all of it (after prefill and the first sampler step were recorded). The GPU
   * idles while the first batch is built; the rest overlaps the GPU running the earlier ones.
   */
  ttft_cpu_s?: { vision: number; all: number };
  /** Generated tokens per second over `new_tokens` decode steps. */
  decode_tok_s: number;
  /** Estimated GPU memory: weights + KV cache + activations (WebGPU cannot query it). */
  gpu_mem_gb: number;
  /** Weights in GB. */
  weights_gb: number;
  /** Bytes a decode step must read: decoder + lm_head weights, one embedding row, the KV cache at mean length. */
  bytes_per_token: number;
  /** bytes_per_token · tok/s ÷ card_bytes_per_s. */
  roofline_fraction: number;
  /** The card's memory bandwidth by `cardBytesPerS` (H200 4.8e12; H100 and unknown cards 3.35e12). */
  card_bytes_per_s: number;
  prompt_tokens: number;
  image_tokens: number;
  image_patches: number;
  /** The image as a video of this many frames (--video-frames), where the run set it. */
  video_frames?: number;
  new_tokens: number;
  dispatches_per_step: number;
  /** --logprobs N: the alternatives each token's record listed. */
  logprobs?: number;
  /** --penalties: repetition, presence and frequency penalties were on. */
  penalties?: boolean;
  /** --prompt-logprobs N: prefill (and TTFT) scored every prompt token, N alternatives. */
  prompt_logprobs?: number;
  /** --json-mode: decoded in JSON mode (mask and advance each step), inside a string. */
  json_mode?: boolean;
  /** --json-schema: decoded held to a JSON schema's DFA, inside a string. */
  json_schema?: boolean;
  /** With --profile: each dispatch of a decode step timed alone (GPU µs per step). */
  decode_profile?: StepProfile & { step_us: number };
  /** With --profile: each dispatch of the vision tower and of prefill timed alone (GPU µs). */
  ttft_profile?: Record<string, StepProfile>;
  /**
   * With --followup N: the next chat turn (this prompt, the generated tokens, N new ones). TTFT
   * from the KV cache the turn before left (`cached_tokens` of it reused: the prompt cache) and
   * whole (vision + prefill of every token, as without the cache).
   */
  /**
   * With --parallel N: N generations decoding at once, each with a session of its own — one
   * decode loop stepping them as one batch (`batched`: src/generate/decode_batcher.ts, where the
   * weights allow it), or with --no-batch their own token pumps' batches taking turns on the GPU,
   * each awaiting its own readbacks: each one's rate and all of them together.
   */
  parallel?: {
    streams: number;
    batched: boolean;
    each_tok_s: number[];
    total_tok_s: number;
    /** With --profile and batched: one batch step's dispatches (up to 16 rows) timed alone. */
    batch_profile?: StepProfile;
    /**
     * Batched: CPU ms to build the first DecodeBatch of the sessions (up to 16: the products of
     * that many rows and each session's dispatches at its row), before the streams.
     */
    batch_build_ms?: number;
  };
  /** With --no-xrows: products of 2–16 rows ran the tiled GEMMs (kernels/linear.ts LINEAR_CHOICE). */
  no_xrows?: boolean;
  /** With --no-xrows-norm / --no-xrows-silu: those products' norm / silu · mul ran as passes. */
  no_xrows_norm?: boolean;
  no_xrows_silu?: boolean;
  /** With --no-fused-row-attend: batched decode ran each session's rope + KV write as a dispatch. */
  no_fused_row_attend?: boolean;
  followup?: {
    tokens: number;
    cached_tokens: number;
    ttft_s: number;
    full_ttft_s: number;
    /** Both ways gave the same first token (greedy; a near tie may flip on summation order). */
    same_first_token: boolean;
    /**
     * max |Δ logit| between the two ways ÷ max |logit|: the generated tokens' K/V came from decode
     * steps (GEMVs) in one and from prefill (GEMMs) in the other.
     */
    logit_diff: number;
  };
}

/** The config object of a shape name. */
async function shapeConfig(shape: string): Promise<Record<string, unknown>> {
  const name = SHAPES[shape];
  if (name === "tiny") {
    const url = new URL("../tests/fixtures/tiny-qwen2vl/config.json", import.meta.url);
    return JSON.parse(await Deno.readTextFile(url));
  }
  return PRESETS[name];
}

/** Bytes one decode step reads at a KV length of `ctx` tokens. */
export function decodeBytes(
  cfg: Qwen2VLConfig,
  plan: WeightPlan,
  ctx: number,
  kv: KvDType = "f32",
): number {
  const t = cfg.text;
  let bytes = 0;
  for (const pt of plan.tensors.values()) {
    if (pt.key.startsWith("text.layers.") || pt.key === "text.norm" || pt.key === "text.lm_head") {
      bytes += pt.bytes;
    }
  }
  const embed = plan.tensors.get("text.embed")!;
  if (!plan.tensors.has("text.lm_head")) bytes += embed.bytes; // tied, unquantized: read whole
  else bytes += embed.bytes / embed.rows; // one row gathered
  return bytes + 2 * t.numLayers * ctx * t.numKvHeads * t.headDim * kvElementBytes(kv); // K, V
}

/** The frame of a chat's next user turn around filler text, `n` tokens in all (n ≥ 10). */
function followupIds(n: number): number[] {
  const head = [151645, 198, 151644, 872, 198]; // <|im_end|>\n<|im_start|>user\n
  const tail = [151645, 198, 151644, 77091, 198]; // <|im_end|>\n<|im_start|>assistant\n
  const text = Array.from({ length: n - 10 }, (_, i) => 2000 + (i * 104729) % 50000);
  return [...head, ...text, ...tail];
}

/** Prompt ids: chat-shaped text around one image's pads (or text only), `n` tokens in all. */
function promptIds(cfg: Qwen2VLConfig, n: number, imageTokens: number): number[] {
  const head = [151644, 872, 198]; // <|im_start|>user\n
  const tail = [151645, 198, 151644, 77091, 198]; // <|im_end|>\n<|im_start|>assistant\n
  const image = imageTokens ? [151652, ...Array(imageTokens).fill(cfg.imageTokenId), 151653] : [];
  const text = n - head.length - tail.length - image.length;
  if (text < 0) {
    throw new QvqError(
      `--prompt-tokens ${n} is too short for the ${imageTokens}-token image and the chat frame ` +
        `(${head.length + tail.length + image.length} tokens)`,
    );
  }
  return [
    ...head,
    ...image,
    ...Array.from({ length: text }, (_, i) => 1000 + (i * 7919) % 50000),
    ...tail,
  ];
}

/** Runs the benchmark described by `o`. */
export async function runBench(o: BenchOptions, gpuIn?: Gpu): Promise<BenchResult> {
  LINEAR_CHOICE.xrows = !o.noXRows;
  LINEAR_CHOICE.xrowsNorm = !o.noXRowsNorm;
  LINEAR_CHOICE.xrowsSiluMul = !o.noXRowsSilu;
  DECODER_FUSION.rowRopeKv = !o.noFusedRowAttend;
  try {
    const r = await benchShape(o, gpuIn);
    return {
      ...r,
      ...(o.noXRows ? { no_xrows: true } : {}),
      ...(o.noXRowsNorm ? { no_xrows_norm: true } : {}),
      ...(o.noXRowsSilu ? { no_xrows_silu: true } : {}),
      ...(o.noFusedRowAttend ? { no_fused_row_attend: true } : {}),
    };
  } finally {
    LINEAR_CHOICE.xrows = LINEAR_CHOICE.xrowsNorm = LINEAR_CHOICE.xrowsSiluMul = true;
    DECODER_FUSION.rowRopeKv = true;
  }
}

/** {@link runBench} with linear()'s kernel choices set. */
async function benchShape(o: BenchOptions, gpuIn?: Gpu): Promise<BenchResult> {
  const json = await shapeConfig(o.shape);
  const cfg = parseConfig(json, o.shape);
  const gpu = gpuIn ?? await requestGpu();
  const info = gpu.adapterInfo;
  const device = info.description || `${info.vendor} ${info.architecture} ${info.device}`.trim();
  const v = cfg.vision;
  let grid: [number, number, number] | undefined;
  if (o.image) {
    const [h, w] = smartResize(o.image[1], o.image[0], {
      ...DEFAULT_IMAGE_PROCESSOR_CONFIG,
      maxPixels: 12845056, // the released Qwen2-VL preprocessor_config.json
    });
    grid = [Math.ceil((o.videoFrames ?? 1) / 2), h / v.patchSize, w / v.patchSize];
  }
  const patches = grid ? grid[0] * grid[1] * grid[2] : 0;
  const imageTokens = patches / v.spatialMergeSize ** 2;
  const ids = promptIds(cfg, o.promptTokens, imageTokens);
  // Prompt, answer, the sampler's next token and a follow-up turn must fit the session.
  const needed = ids.length + o.newTokens + 1 + o.followup;
  if (o.maxContext !== undefined && o.maxContext < needed) {
    throw new InvalidInputError(
      `--max-context ${o.maxContext} is below the ${needed} tokens this run needs (a ${ids.length}-` +
        `token prompt, ${o.newTokens} new tokens${
          o.followup ? `, a ${o.followup}-token follow-up` : ""
        } and one more); raise it or shorten the run`,
    );
  }
  const maxTokens = o.maxContext ?? needed;

  let t0 = performance.now();
  let model: Qwen2VLModel;
  let loadGbS: number | undefined;
  if (o.checkpoint) {
    if (o.writeCheckpoint) await writeSyntheticCheckpoint(json, o.checkpoint, o.seed);
    t0 = performance.now();
    model = await Qwen2VLModel.load(o.checkpoint, {
      gpu,
      dtype: o.dtype,
      quant: o.quant,
      visionQuant: o.visionQuant,
      kvCacheDtype: o.kvCacheDtype,
      maxContext: maxTokens,
    });
  } else {
    model = await syntheticModel(json, {
      gpu,
      dtype: o.dtype,
      quant: o.quant,
      visionQuant: o.visionQuant,
      kvCacheDtype: o.kvCacheDtype,
      seed: o.seed,
      maxContext: maxTokens,
    });
  }
  await readF32(
    gpu,
    model.gpu.device.createBuffer({
      size: 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    }),
    1,
  );
  const loadS = (performance.now() - t0) / 1000;
  if (o.checkpoint) {
    let fileBytes = 0;
    for await (const e of Deno.readDir(o.checkpoint)) {
      if (e.name.endsWith(".safetensors")) {
        fileBytes += (await Deno.stat(`${o.checkpoint}/${e.name}`)).size;
      }
    }
    loadGbS = fileBytes / 1e9 / loadS;
  }

  // Pixel values: deterministic, image-like magnitudes (the vision cost does not depend on them).
  const pixels = grid
    ? new Float32Array(patches * v.patchDim).map((_, i) => Math.sin(i * 0.01))
    : undefined;
  // The image through the tower (in groups of --vision-group-patches), or none.
  const encode = () =>
    grid ? model.encodeImages(pixels!, [grid], { maxPatches: o.visionGroupPatches }) : undefined;
  let last!: Omit<
    BenchResult,
    | "shape"
    | "quant"
    | "vision_quant"
    | "kv_cache"
    | "device"
    | "load_s"
    | "load_source"
    | "load_gb_s"
  >;
  const grammar = o.jsonMode || o.jsonSchema ? await benchGrammar(model, o.jsonSchema) : undefined;
  try {
    for (let rep = 0; rep < o.repeat; rep++) {
      const s = model.createSession(maxTokens);
      await s.ready();
      // TTFT: vision → prefill → first token, one readback at the end. Vision and prefill are
      // also timed alone (each with its own readback) in a second pass below. The tower's work is
      // waited for before the prefill is queued, as the product's generate() does: queued
      // together, a long video's tower and a long prefill lost the device on the H200 (7B,
      // 15640 video tokens, 12.5 s of GPU work; 2026-11-29 22:07, whether or not the tower ran
      // in groups), while either alone, or both with the wait, ran.
      const t1 = performance.now();
      const img = encode();
      if (img) await gpuIdle(gpu);
      const tVision = performance.now();
      const scoring = { promptLogprobs: o.promptLogprobs };
      await model.prefill(s, ids, img, scoring);
      // The generation loop's own sampler + advance, as Pipeline builds it after prefill.
      const run = new SessionRun(model, s, sampling(o), o.logprobs, grammar);
      record(gpu, run, 0, 1);
      const tSubmitted = performance.now();
      await readU32(gpu, s.tokens, 1);
      const ttft = (performance.now() - t1) / 1000;
      img?.destroy();

      let visionS = 0;
      if (grid) {
        const t2 = performance.now();
        const im = encode()!;
        await readF32(gpu, im.buffer, 1);
        visionS = (performance.now() - t2) / 1000;
        im.destroy();
      }
      const s2 = model.createSession(maxTokens);
      await s2.ready();
      const im2 = encode();
      if (im2) await readF32(gpu, im2.buffer, 1);
      const t3 = performance.now();
      await model.prefill(s2, ids, im2, scoring);
      await readF32(gpu, s2.logits, 1);
      const prefillS = (performance.now() - t3) / 1000;
      im2?.destroy();
      s2.dispose();
      // --profile: the same vision + prefill again, every dispatch timed alone.
      const ttftProfile = o.profile
        ? await profileSubmits(gpu, async () => {
          const s3 = model.createSession(maxTokens);
          const im3 = encode();
          try {
            await s3.ready();
            await model.prefill(s3, ids, im3);
          } finally {
            im3?.destroy();
            s3.dispose();
          }
        })
        : undefined;

      // Decode: one warm-up batch, then newTokens steps in batches, one readback at the end.
      const steps = Math.min(o.newTokens, s.maxTokens - ids.length - 1);
      let recorded = 1; // ring entry 0 came from the prefill
      const batch = (n: number) => {
        record(gpu, run, recorded, n);
        recorded += n;
      };
      const warm = Math.min(2, steps - 1);
      if (warm > 0) {
        batch(warm);
        await readU32(gpu, s.tokens, 1);
      }
      // Through the product's decode loop (src/generate/token_pump.ts) in full batches: tokens
      // after the first batch over the time from its ids to the last batch's (both arrive one
      // readback after their batch), as decodeStream's tokensPerSecond counts; with one batch,
      // its tokens over the whole time, readback included.
      const timed = steps - warm;
      const t4 = performance.now();
      let firstAt = NaN, after = 0;
      const pumpOptions = {
        first: recorded,
        total: timed,
        firstBatch: o.stepsPerSubmit,
        maxBatch: o.stepsPerSubmit,
        // The records read back with the ids, as decodeStream takes them (parsed, not named).
        side: run.logprobs && logprobSide(run.logprobs, () => {}),
      };
      for await (const ids of pumpTokens(gpu, s.tokens, run.record.bind(run), pumpOptions)) {
        if (Number.isNaN(firstAt)) firstAt = performance.now();
        else after += ids.length;
      }
      recorded += timed;
      const end = performance.now();
      const tokS = after > 0 ? after / ((end - firstAt) / 1000) : timed / ((end - t4) / 1000);
      let profile: BenchResult["decode_profile"];
      if (o.profile) {
        // Back to the first decode step's state, so the profiled steps stay inside the cache.
        writeDecodeState(gpu, s.state, {
          cacheLen: ids.length,
          position: ids.length + s.ropeDelta,
          step: 0,
        });
        const p = await profileStep(gpu, run.stepDispatches(), Math.min(steps, 8));
        profile = { step_us: round(1e6 / tokS, 1), ...p };
      }
      const parallel = o.parallel > 1
        ? await timeParallel(model, ids, encode, o, maxTokens, timed)
        : undefined;
      const followup = o.followup > 0
        ? await timeFollowup(
          model,
          s,
          ids,
          recorded - 1,
          followupIds(o.followup),
          grid && { grid, encode: () => encode()! },
        )
        : undefined;
      const bytesPerToken = decodeBytes(
        cfg,
        model.plan,
        ids.length + steps / 2,
        model.kvCacheDtype,
      );
      last = {
        vision_s: round(visionS),
        prefill_s: round(prefillS),
        ttft_s: round(ttft),
        ttft_cpu_s: { vision: round((tVision - t1) / 1000), all: round((tSubmitted - t1) / 1000) },
        decode_tok_s: round(tokS, 2),
        gpu_mem_gb: round(
          (model.memory.weights + model.memory.activations + model.memory.kvCache) / 1e9,
          3,
        ),
        weights_gb: round(model.plan.weightBytes / 1e9, 3),
        bytes_per_token: Math.round(bytesPerToken),
        roofline_fraction: round((bytesPerToken * tokS) / cardBytesPerS(device)),
        card_bytes_per_s: cardBytesPerS(device),
        prompt_tokens: ids.length,
        image_tokens: imageTokens,
        image_patches: patches,
        ...(o.videoFrames !== undefined ? { video_frames: o.videoFrames } : {}),
        new_tokens: timed,
        // + sampler (2 kernels) + advance, + 2 logprobs kernels with --logprobs, + the grammar's
        // mask and advance with --json-mode
        dispatches_per_step: s.decodeDispatches.length + 3 + (o.logprobs !== undefined ? 2 : 0) +
          (grammar ? 2 : 0),
        ...(o.logprobs !== undefined ? { logprobs: o.logprobs } : {}),
        ...(o.penalties ? { penalties: true } : {}),
        ...(grammar ? { [grammar.dfa ? "json_schema" : "json_mode"]: true } : {}),
        ...(o.promptLogprobs !== undefined ? { prompt_logprobs: o.promptLogprobs } : {}),
        ...(profile ? { decode_profile: profile } : {}),
        ...(ttftProfile ? { ttft_profile: ttftProfile } : {}),
        ...(parallel ? { parallel } : {}),
        ...(followup ? { followup } : {}),
      };
      run.dispose();
      s.dispose();
    }
  } finally {
    grammar?.table.offsets.destroy();
    grammar?.table.bytes.destroy();
    model.dispose();
  }
  return {
    shape: o.shape,
    quant: o.quant ?? o.dtype,
    ...(o.visionQuant ? { vision_quant: o.visionQuant } : {}),
    kv_cache: model.kvCacheDtype,
    device,
    load_s: round(loadS),
    load_source: o.checkpoint ? "checkpoint" : "synthetic",
    ...(loadGbS !== undefined ? { load_gb_s: round(loadGbS, 3) } : {}),
    ...last,
  };
}

/**
 * `o.parallel` generations at once, as Pipeline's `parallel` runs them: as many sessions
 * prefilled with the prompt, then their decode loops (the product's token pump, `steps` tokens in
 * batches of o.stepsPerSubmit) side by side, each awaiting its own readbacks while the others'
 * batches run. Each stream's rate counts its tokens after its first batch over the time from that
 * batch's ids to its last (as the single run's decode_tok_s; with one batch, all of them over the
 * whole time); all of them together, those tokens over the time from the earliest start to the
 * last stream's end.
 */
async function timeParallel(
  model: Qwen2VLModel,
  ids: number[],
  encode: () => ImageEmbeds | undefined,
  o: BenchOptions,
  maxTokens: number,
  steps: number,
): Promise<NonNullable<BenchResult["parallel"]>> {
  const gpu = model.gpu;
  // Sessions, and the runs over them once prefilled (each freed however the timing ends).
  const sessions: Session[] = [];
  const runs: { s: Session; run: SessionRun }[] = [];
  let batcher: DecodeBatcher | undefined;
  try {
    for (let i = 0; i < o.parallel; i++) {
      const s = model.createSession(maxTokens);
      sessions.push(s);
      await s.ready();
      const img = encode();
      if (img) await gpuIdle(gpu);
      await model.prefill(s, ids, img);
      img?.destroy();
      const run = new SessionRun(model, s, sampling(o));
      runs.push({ s, run });
      record(gpu, run, 0, 1); // ring entry 0, from the prefill's logits
    }
    await readU32(gpu, runs[0].s.tokens, 1); // (waits for all the work submitted)
    const pump = { first: 1, total: steps };
    const batched = !o.noBatch && model.batchesDecode(Math.min(o.parallel, GEMV_XROWS_MAX));
    batcher = batched
      ? new DecodeBatcher(model, { firstBatch: o.stepsPerSubmit, maxBatch: o.stepsPerSubmit })
      : undefined;
    // The batch the streams take (the batcher seats them in order: rows 0, 1, …), built here —
    // its products and each session's row — so that the rates are the steady ones; what building
    // it costs is reported apart.
    let profile: StepProfile | undefined, buildMs: number | undefined;
    if (batched) {
      const t0 = performance.now();
      const batch = model.createDecodeBatch(sessions.slice(0, GEMV_XROWS_MAX));
      buildMs = performance.now() - t0;
      // (no sampler or advance among them: each run times the same step again)
      if (o.profile) profile = await profileStep(gpu, batch.dispatches, 4);
      batch.destroy();
    }
    // With one batch a stream, its tokens over the whole time (readback included), as above.
    const streams = await Promise.all(runs.map(async ({ s, run }) => {
      const start = performance.now();
      let firstAt = NaN, after = 0, all = 0;
      const batches = batcher ? batcher.pump(run, pump) : pumpTokens(
        gpu,
        s.tokens,
        run.record.bind(run),
        { ...pump, firstBatch: o.stepsPerSubmit, maxBatch: o.stepsPerSubmit },
      );
      for await (const got of batches) {
        all += got.length;
        if (Number.isNaN(firstAt)) firstAt = performance.now();
        else after += got.length;
      }
      const end = performance.now();
      return after > 0 ? { from: firstAt, tokens: after, end } : { from: start, tokens: all, end };
    }));
    const from = Math.min(...streams.map((r) => r.from));
    const to = Math.max(...streams.map((r) => r.end));
    return {
      streams: o.parallel,
      batched,
      ...(profile ? { batch_profile: profile } : {}),
      ...(buildMs !== undefined ? { batch_build_ms: round(buildMs, 1) } : {}),
      each_tok_s: streams.map((r) => round(r.tokens / ((r.end - r.from) / 1000), 2)),
      total_tok_s: round(streams.reduce((a, r) => a + r.tokens, 0) / ((to - from) / 1000), 2),
    };
  } finally {
    batcher?.dispose();
    for (const { run } of runs) run.dispose();
    for (const s of sessions) s.dispose();
  }
}

/**
 * The next chat turn after a decode on `s`: `prompt`, the `fed` generated tokens the decode steps
 * wrote into the cache (ring entries 0 .. fed − 1), then `more`. Its TTFT (prefill + first sample
 * + readback) from the rows `s` holds (the second of two runs: the first compiles what only short
 * prefills use), then whole on a fresh session with the image encoded again.
 */
async function timeFollowup(
  model: Qwen2VLModel,
  s: Session,
  prompt: number[],
  fed: number,
  more: number[],
  img: { grid: GridThw; encode: () => ImageEmbeds } | undefined,
): Promise<NonNullable<BenchResult["followup"]>> {
  const gpu = model.gpu;
  const gen = fed > 0 ? Array.from(await readU32(gpu, s.tokens, fed)) : [];
  const next = [...prompt, ...gen, ...more];
  const first = async (session: Session, cached?: { tokens: number; grids: GridThw[] }) => {
    const t = performance.now();
    const embeds = img && !cached ? img.encode() : undefined;
    if (embeds) await gpuIdle(gpu); // as the product's generate() (see the TTFT pass)
    await model.prefill(session, next, embeds, { cached });
    const run = new SessionRun(model, session, GREEDY);
    record(gpu, run, 0, 1);
    const id = (await readU32(gpu, session.tokens, 1))[0];
    const seconds = (performance.now() - t) / 1000;
    run.dispose();
    embeds?.destroy();
    return { id, seconds, logits: await readF32(gpu, session.logits) };
  };
  const cachedTokens = prompt.length + fed;
  const cached = { tokens: cachedTokens, grids: img ? [img.grid] : [] };
  // Untimed first: the kernel variants only short prefills use (kernels/gemm.ts gemmQChoice) compile
  // on first use, once a process; the rerun writes the same rows again.
  await first(s, cached);
  const warm = await first(s, cached);
  const full = model.createSession(s.maxTokens);
  try {
    await full.ready();
    const whole = await first(full);
    return {
      tokens: more.length,
      cached_tokens: cachedTokens,
      ttft_s: round(warm.seconds),
      full_ttft_s: round(whole.seconds),
      same_first_token: whole.id === warm.id,
      logit_diff: round(
        maxAbsDiff(warm.logits, whole.logits) /
          maxAbsDiff(whole.logits, new Float32Array(whole.logits.length)),
        6,
      ),
    };
  } finally {
    full.dispose();
  }
}

function round(x: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Greedy, with --penalties every penalty and a 300-token logit bias on (they change which token
 * wins, not the work).
 */
function sampling(o: BenchOptions): SamplingSettingsNoPrompt {
  if (!o.penalties) return GREEDY;
  const logitBias = Array.from({ length: MAX_LOGIT_BIAS }, (_, i) => [i * 97, 0.5] as const);
  return {
    ...GREEDY,
    repetitionPenalty: 1.05,
    presencePenalty: 0.5,
    frequencyPenalty: 0.1,
    logitBias,
  };
}

type SamplingSettingsNoPrompt = Omit<SamplingSettings, "promptLength">;

/**
 * --json-mode's (or with `schema`, --json-schema's) grammar: Qwen2's vocabulary (the tiny
 * fixture's tokenizer) over the shape's lm_head, starting inside a string value, where every
 * token's bytes are read each step.
 */
async function benchGrammar(model: Qwen2VLModel, schema: boolean): Promise<RunGrammar> {
  const tokenizer = await Tokenizer.load(
    new URL("../tests/fixtures/tiny-qwen2vl/", import.meta.url),
  );
  try {
    const table = uploadTokenTable(model.gpu, tokenTable(tokenizer, model.config.text.vocabSize));
    const endIds = [151645, 151643];
    if (!schema) return { table, start: stateAfter('{"answer": "')!, endIds };
    // examples/structured_output.ts's schema, in its first string.
    const dfa = schemaDfa(JSON.parse(
      await Deno.readTextFile(
        new URL("../examples/structured_output.schema.json", import.meta.url),
      ),
    ));
    const start = initialState();
    start[0] = dfaWalk(dfa, 0, new TextEncoder().encode('{"objects": ["'));
    return { table, dfa, start, endIds };
  } finally {
    tokenizer.dispose();
  }
}

/** Records work into one compute pass and submits it. */
function record(gpu: Gpu, run: SessionRun, first: number, count: number): void {
  const enc = gpu.device.createCommandEncoder({ label: "bench" });
  run.record(enc, first, count);
  gpu.device.queue.submit([enc.finish()]);
}

if (import.meta.main) {
  try {
    const r = await runBench(parseArgs(Deno.args));
    console.log(JSON.stringify(r));
  } catch (e) {
    if (e instanceof QvqError) {
      console.error(e.message);
      Deno.exit(2);
    }
    throw e;
  }
}
