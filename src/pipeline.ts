/**
 * The high-level API: a model directory (or URL) in, chat answers out. Loads the tokenizer, the
 * chat template, the image processor settings, generation_config.json and the model; turns chat
 * messages into input ids and pixel values exactly as transformers' Qwen2VLProcessor does, and
 * streams the answer from the GPU decode loop. One generation runs at a time (FIFO).
 *
 * @example
 * ```ts ignore
 * import { Pipeline } from "./pipeline.ts";
 * const qvq = await Pipeline.load("path/to/QVQ-72B-Preview");
 * const image = await Deno.readFile("chart.png");
 * for await (const ev of qvq.generate([{ role: "user", content: [
 *   { type: "image", image }, { type: "text", text: "What does the chart show?" },
 * ] }], { maxNewTokens: 512, stopOnLoop: true })) {
 *   if (ev.type === "delta") await Deno.stdout.write(new TextEncoder().encode(ev.text));
 *   else console.error(ev.result.finishReason, ev.result.usage);
 * }
 * qvq.dispose();
 * ```
 * @module
 */
import type { Gpu } from "./gpu/device.ts";
import { DeviceLostError, InvalidInputError, preview, QvqError } from "./errors.ts";
import { gpuIdle, readF32 } from "./gpu/buffers.ts";
import { within } from "./_async.ts";
import type { QuantDType, WeightDType } from "./gpu/tensor.ts";
import type { KvDType } from "../kernels/kv_cache.ts";
import { type ModelSource, openModelSource } from "./model_files.ts";
import { parseConfig } from "./model/config.ts";
import { type ImageEmbeds, Qwen2VLModel, type Session } from "./model/qwen2vl.ts";
import { checkPatchesFit } from "./model/vision.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { ChatProcessor } from "./generate/processor.ts";
import { FifoLock } from "./generate/fifo_lock.ts";
import { contextRoom, runGeneration, tokenBudget } from "./generate/generate.ts";
import { LoopDetector, type LoopDetectorOptions } from "./generate/loop_detector.ts";
import { PromptCache } from "./generate/prompt_cache.ts";
import { DecodeBatcher } from "./generate/decode_batcher.ts";
import {
  type GenerationConfig,
  parseGenerationConfig,
  refuseUnknownKeys,
  type ResolvedOptions,
  resolveOptions,
} from "./generate/options.ts";
import type { PreparedPrompt } from "./generate/prompt.ts";
import { checkLogprobs } from "../kernels/logprobs.ts";
import { type GpuTokenTable, uploadTokenTable } from "../kernels/grammar.ts";
import {
  type GrammarState,
  initialState,
  stateAfter,
  tokenTable,
} from "./generate/json_grammar.ts";
import { DFA_NONE, dfaWalk } from "./generate/_automaton.ts";
import type {
  ChatEngine,
  ChatMessage,
  GenerateOptions,
  GenerationEvent,
  GenerationResult,
  TokenizeInput,
  WeightTypes,
} from "./generate/types.ts";
import { MAX_PARALLEL } from "./generate/types.ts";
import type { ImageSize } from "./image.ts";

/** Options of {@link Pipeline.load}. */
export interface PipelineOptions {
  /** Weight dtype on the GPU (default f16 where the adapter supports it, else f32). */
  dtype?: WeightDType;
  /**
   * Quantize the decoder's matrices and lm_head while loading (default: none, they keep `dtype`):
   * groups of 32 weights share one f16 scale (src/model/quantize.ts). Memory: q8 stores 8.5 and q4
   * 4.5 bits per weight instead of f16's 16 (about 53% / 28% of those matrices' bytes; the
   * embedding and the vision tower stay `dtype`), and decode reads that much less per token. A tied
   * lm_head (tie_word_embeddings, e.g. Qwen2-VL-2B) becomes its own quantized copy beside the float
   * embedding, so a model dominated by its vocabulary can grow.
   * Accuracy, measured on the tiny fixture model against the f32 path (BENCHMARKS.md
   * "Quantization error"; hidden 32, every row a single group: a worst case): q8 moves logits by at
   * most 0.485 (of ≈ 35) and keeps every argmax (98/98 positions; all 12 greedy steps of case 0,
   * pipeline_test); q4 by up to 8.08, with the argmax agreeing at only 59/98 — measure a real
   * checkpoint before relying on q4.
   */
  quant?: QuantDType;
  /**
   * Quantize the vision tower's matrices to q8 while loading and run them as int8 GEMMs (int8
   * activations; its attention's Q·Kᵀ in int8 too): faster image encoding (Qwen2VLModel's
   * LoadOptions.visionQuant). Only "q8"; the tiny fixture's image embeddings move by up to 2.3 % of
   * their largest value (src/model/vision_test.ts). Default: the tower in `dtype`.
   */
  visionQuant?: QuantDType;
  /**
   * The KV cache's element type (Qwen2VLModel's LoadOptions.kvCacheDtype): "f32" (default), or
   * "f16" for half the cache's memory (no faster: see there).
   */
  kvCacheDtype?: KvDType;
  /** The WebGPU device (default: a new one). */
  gpu?: Gpu;
  /** The id clients use (default: the last segment of the model location). */
  modelId?: string;
  /** Longest prompt + answer in tokens (default: the model's max_position_embeddings). */
  maxContext?: number;
  /**
   * Thresholds of the `stopOnLoop` detector: a loop is a period of up to `maxPeriod` tokens (≥ 1,
   * default 256) repeated `minRepeats` times (≥ 2, default 3) and `minTokens` long (≥ 2, default 64).
   */
  loopDetection?: LoopDetectorOptions;
  /**
   * Keep the last generation's KV cache, so that a prompt starting the same way (the next turn of
   * a chat) prefills only its new tokens and encodes only its new images (default true; see
   * src/generate/prompt_cache.ts). It holds that session's GPU memory between generations;
   * {@link Pipeline.clearPromptCache} frees it. A number N ≥ 1 keeps the last N conversations'
   * (llama.cpp's slots: clients taking turns each continue their own), each a KV cache for the
   * whole context — memory load() does not plan for beyond the first (QVQ-72B at 8192 tokens: 5.4
   * GB each with the f32 cache); where the device refuses one more, it keeps as many as it holds.
   * false or 0: off.
   */
  promptCache?: boolean | number;
  /**
   * Generations that run at once (default 1): each with a KV cache of its own — with the prompt
   * cache on, a session of it for the whole context (the cache keeps at least this many), else one
   * of the request's size — their decode batches taking turns on the GPU: each runs at about 1 / N
   * of the speed one alone does, all of them together at about one generation's rate (a little
   * more: one's batch runs while another's tokens are read back), so a short answer is not kept
   * waiting behind a long one — and with f16 / f32, q4 or q8 weights their decode steps run
   * as one batch (see {@link batchDecode}): together several times one's rate. Those beyond wait their
   * turn, in call order.
   * Memory: load() plans for one KV cache (QVQ-72B at 8192 tokens: 5.4 GB each with the f32
   * cache), and one generation's vision tower may run beside the others' caches (alone, a
   * generation runs it before it allocates a new one); where the device refuses a whole-context
   * session, the prompt cache keeps fewer and a generation takes one of its request's size; one
   * the device cannot hold even so fails with a GpuError. vLLM's and llama.cpp's concurrent
   * requests, Ollama's OLLAMA_NUM_PARALLEL.
   */
  parallel?: number;
  /**
   * With {@link parallel} > 1, whether the generations running at once decode as one batch where
   * the model's weights allow it (default true): one decode loop steps all of them, their tokens
   * the rows of one pass, each weight read once for all (src/generate/decode_batcher.ts) — as
   * vLLM's and llama.cpp's servers batch their requests. f16 / f32, q4 and q8 weights (their
   * few-row GEMVs; q8's keeps x in f32, kernels/linear_q.ts GEMV_XROWS_F32); up to 16 rows a
   * batch. A generation's logits then differ from its run alone by float rounding (≈ 1e-7 of the
   * largest: the few-row products sum in another order; q4's rows at the tiny test model's width
   * are the single step's bits; q8's ≈ 9e-6 of 33 there). false: each generation decodes in a
   * loop of its own, taking turns on the GPU.
   */
  batchDecode?: boolean;
  /** Called as weights stream to the GPU. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

const LOAD_OPTION_KEYS: Record<keyof PipelineOptions, true> = {
  dtype: true,
  quant: true,
  visionQuant: true,
  kvCacheDtype: true,
  gpu: true,
  modelId: true,
  maxContext: true,
  loopDetection: true,
  promptCache: true,
  parallel: true,
  batchDecode: true,
  onProgress: true,
};

/** What {@link Pipeline.forward} returns: one forward pass over a prompt, all on the CPU. */
export interface ForwardResult {
  /** The prompt as the model saw it. */
  prompt: PreparedPrompt;
  /** (Σ image tokens, hidden) f32: the merger's output. */
  imageEmbeds: Float32Array;
  /** (vocab) f32 logits of the last prompt position. */
  logitsLast: Float32Array;
}

/** A loaded model ready to chat: tokenizer + image processor + chat template + GPU model. */
export class Pipeline implements ChatEngine {
  readonly modelId: string;
  /** The GPU model. */
  readonly model: Qwen2VLModel;
  /** Chat template + image processor + tokenizer. */
  readonly processor: ChatProcessor;
  /** The model's generation_config.json defaults. */
  readonly generationConfig: GenerationConfig;
  /** Places for generations running at once ({@link parallel}). */
  readonly #lock: FifoLock;
  readonly #loop: LoopDetectorOptions;
  readonly #cache: PromptCache | undefined;
  /** The decode loop the generations running at once share, where they batch (PipelineOptions.batchDecode). */
  readonly #batcher: DecodeBatcher | undefined;
  /** Aborted by dispose(): ends the generation in progress and those queued. */
  readonly #closing = new AbortController();
  /** The vocabulary's bytes on the GPU, made by the first request with a responseFormat. */
  #byteTable?: GpuTokenTable;
  /** Calls preparing a prompt (the template, the images): dispose() frees only after them. */
  #preparing = 0;
  /** dispose()'s freeing, waiting for the calls preparing a prompt. */
  #afterPreparing?: () => void;

  /**
   * Why this pipeline can run nothing more: its GPU device was lost (a driver reset, a GPU fault).
   * Every later generation throws this DeviceLostError, as does the one that was running; load the
   * model again. Undefined while the device works.
   */
  get failure(): DeviceLostError | undefined {
    return this.model.gpu.lostError;
  }

  private constructor(
    modelId: string,
    model: Qwen2VLModel,
    processor: ChatProcessor,
    generationConfig: GenerationConfig,
    loop: LoopDetectorOptions,
    promptCache: boolean | number,
    parallel: number,
    batchDecode: boolean,
  ) {
    this.modelId = modelId;
    this.model = model;
    this.processor = processor;
    this.generationConfig = generationConfig;
    this.#loop = loop;
    this.#lock = new FifoLock(parallel);
    this.#batcher = batchDecode && parallel > 1 && model.batchesDecode(2)
      ? new DecodeBatcher(model)
      : undefined;
    // A session for each generation running, kept afterwards for the conversations' next turns.
    this.#cache = promptCache === false || promptCache === 0 ? undefined : new PromptCache(model, {
      slots: Math.max(promptCache === true ? 1 : promptCache, parallel),
    });
  }

  /** Generations that run at once (load's `parallel`); those beyond wait their turn. */
  get parallel(): number {
    return this.#lock.places;
  }

  /** Whether the generations running at once decode as one batch (load's `batchDecode`). */
  get batchDecode(): boolean {
    return this.#batcher !== undefined;
  }

  /** The model's tokenizer. */
  get tokenizer(): Tokenizer {
    return this.processor.tokenizer;
  }

  /** The model's context in tokens: the prompt and its answer together (load's `maxContext`). */
  get maxContext(): number {
    return this.model.maxContext;
  }

  /**
   * How the weights are held on the GPU: load's `dtype` (as the adapter allowed it), `quant` and
   * `visionQuant`.
   */
  get weightTypes(): WeightTypes {
    const { dtype, quant, visionQuant } = this.model.plan;
    return { dtype, ...(quant ? { quant } : {}), ...(visionQuant ? { visionQuant } : {}) };
  }

  /**
   * The system message the chat template writes where a conversation has none (QVQ-72B-Preview's
   * "You are a helpful and harmless assistant. …"); undefined where it writes none, or the model
   * has no chat template.
   */
  get defaultSystemPrompt(): string | undefined {
    return this.processor.template?.defaultSystemPrompt;
  }

  /**
   * The token ids the model would read: a raw prompt's as {@link complete} encodes it (special
   * tokens recognised), or chat messages' as {@link generate} renders them, each image's
   * placeholder expanded to its tokens (counted from the image's size: decoded for it where it is
   * bytes and `imageSizes` does not give it; never resized or encoded).
   * @throws InvalidInputError for malformed messages or undecodable images
   */
  async tokenize(input: TokenizeInput): Promise<number[]> {
    this.#checkOpen();
    if (input === null || typeof input !== "object") {
      throw new InvalidInputError(
        `tokenize: input must be { prompt: <text> } or { messages: [...] }, got ${preview(input)}`,
      );
    }
    if ("messages" in input) {
      const { continueFinalMessage, addGenerationPrompt, chatTemplateKwargs, imageSizes } = input;
      // Counted from the images' sizes: nothing resized (a resize of a large image takes
      // hundreds of MB and most of a second for ids that do not depend on it).
      const gridsOnly = imageSizes ? { sizes: imageSizes } : true;
      const opts = { continueFinalMessage, addGenerationPrompt, chatTemplateKwargs, gridsOnly };
      return Array.from((await this.prepare(input.messages, opts)).inputIds);
    }
    if (typeof input.prompt !== "string") {
      throw new InvalidInputError(`tokenize: prompt must be a string, got ${typeof input.prompt}`);
    }
    return Array.from(this.tokenizer.encode(input.prompt));
  }

  /**
   * The text of token ids, special tokens included.
   * @throws InvalidInputError for ids outside the tokenizer's vocabulary
   */
  detokenize(ids: number[]): Promise<string> {
    try {
      this.#checkOpen();
      // A typed array (a prompt's inputIds) as well as an array.
      const list = ArrayBuffer.isView(ids) ? Array.from(ids as unknown as ArrayLike<number>) : ids;
      checkTokenIds(list, this.tokenizer.vocabSize, "tokens");
      return Promise.resolve(this.tokenizer.decode(list));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Loads everything from a model directory, a `file:`/`http(s):` URL or a ModelSource. Small
   * files are read and checked first, so a broken template or config fails before the weights
   * are uploaded.
   */
  static async load(
    location: string | URL | ModelSource,
    opts: PipelineOptions | null = {},
  ): Promise<Pipeline> {
    const source = typeof location === "string" || location instanceof URL ||
      (typeof location === "object" && location !== null && "readJson" in location &&
        "pathOf" in location);
    if (!source) {
      throw new InvalidInputError(
        `Pipeline.load takes a model directory, a file: or http(s): URL, or a ModelSource, got ` +
          `${preview(location)}`,
      );
    }
    opts ??= {}; // null: no options, as in most JavaScript APIs
    if (typeof opts !== "object" || Array.isArray(opts)) {
      throw new InvalidInputError(
        `Pipeline.load's options must be an object, got ${preview(opts)}`,
      );
    }
    // A misspelt option would otherwise be ignored ({ quantization: "q8" } loading f16 weights).
    refuseUnknownKeys(opts, LOAD_OPTION_KEYS, "load");
    const src = typeof location === "string" || location instanceof URL
      ? openModelSource(location)
      : location;
    // Parsed once for both: config.json's eos ids are the fallback when generation_config.json
    // has none, and the processor needs its image token id.
    const config = parseConfig(await src.readJson("config.json"), src.pathOf("config.json"));
    const generationConfig = parseGenerationConfig(
      (await src.exists("generation_config.json"))
        ? await src.readJson("generation_config.json")
        : {},
      src.pathOf("generation_config.json"),
      config.eosTokenIds,
    );
    const loop = opts.loopDetection;
    if (loop !== undefined && (typeof loop !== "object" || loop === null || Array.isArray(loop))) {
      throw new InvalidInputError(
        `loopDetection must be an object { maxPeriod, minRepeats, minTokens }, got ${
          preview(loop)
        }`,
      );
    }
    if (loop) {
      refuseUnknownKeys(
        loop,
        { maxPeriod: true, minRepeats: true, minTokens: true },
        "loopDetection",
      );
    }
    if (
      opts.modelId !== undefined && (typeof opts.modelId !== "string" || opts.modelId === "")
    ) {
      throw new InvalidInputError(
        `modelId must be a non-empty string (the id clients name), got ${preview(opts.modelId)}`,
      );
    }
    try {
      new LoopDetector(loop); // its thresholds, checked before anything loads
    } catch (e) {
      throw new InvalidInputError(
        `loopDetection ${JSON.stringify(opts.loopDetection)}: maxPeriod must be ≥ 1, minRepeats ` +
          `≥ 2 and minTokens ≥ 2 (${(e as Error).message})`,
      );
    }
    const promptCache = opts.promptCache ?? true;
    if (
      typeof promptCache !== "boolean" && !(Number.isInteger(promptCache) && promptCache >= 0)
    ) {
      throw new InvalidInputError(
        `promptCache must be true, false or a whole number of conversations to keep (0: off), ` +
          `got ${JSON.stringify(promptCache)}`,
      );
    }
    const parallel = opts.parallel ?? 1;
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > MAX_PARALLEL) {
      throw new InvalidInputError(
        `parallel must be a whole number of generations to run at once, 1 to ${MAX_PARALLEL}, ` +
          `got ${preview(parallel)}`,
      );
    }
    const batchDecode = opts.batchDecode ?? true;
    if (typeof batchDecode !== "boolean") {
      throw new InvalidInputError(`batchDecode must be true or false, got ${preview(batchDecode)}`);
    }
    if (opts.onProgress !== undefined && typeof opts.onProgress !== "function") {
      throw new InvalidInputError(
        `onProgress must be a function (doneBytes, totalBytes) => void, got ${typeof opts
          .onProgress}`,
      );
    }
    const processor = await ChatProcessor.load(src, undefined, config);
    let model: Qwen2VLModel | undefined;
    try {
      model = await Qwen2VLModel.load(src, {
        gpu: opts.gpu,
        dtype: opts.dtype,
        quant: opts.quant,
        visionQuant: opts.visionQuant,
        kvCacheDtype: opts.kvCacheDtype,
        maxContext: opts.maxContext,
        onProgress: opts.onProgress,
      });
      const modelId = opts.modelId ?? lastSegment(src.location);
      return new Pipeline(
        modelId,
        model,
        processor,
        generationConfig,
        opts.loopDetection ?? {},
        promptCache,
        parallel,
        batchDecode,
      );
    } catch (e) {
      model?.dispose(); // its GPU memory, were it loaded
      processor.tokenizer.dispose();
      throw e;
    }
  }

  /**
   * Chat messages → input ids (image pads expanded) and pixel values, as Qwen2VLProcessor with
   * `apply_chat_template(messages, add_generation_prompt=True)` — or, with the options, with
   * `continue_final_message`, without the generation prompt, or with more template variables
   * (`chat_template_kwargs`).
   * @throws InvalidInputError for malformed messages or undecodable images
   */
  prepare(
    messages: readonly ChatMessage[],
    options: {
      continueFinalMessage?: boolean;
      addGenerationPrompt?: boolean;
      chatTemplateKwargs?: Readonly<Record<string, unknown>>;
      /**
       * The ids and image grids alone (pixel values empty): each image's grid from its size,
       * nothing resized; `sizes`: the images' (a video's frames') in prompt order, where known.
       */
      gridsOnly?: boolean | { sizes: readonly ImageSize[] };
    } = {},
  ): Promise<PreparedPrompt> {
    this.#checkOpen();
    this.#preparing++;
    return this.processor.prepare(messages, {
      maxImageTokens: this.model.maxContext,
      continueFinalMessage: options.continueFinalMessage,
      addGenerationPrompt: options.addGenerationPrompt,
      templateKwargs: options.chatTemplateKwargs,
      gridsOnly: options.gridsOnly,
    }).finally(() => {
      if (--this.#preparing === 0) this.#afterPreparing?.();
    });
  }

  /**
   * What {@link generate} would refuse of `messages` and `options`, without waiting its turn and
   * without resizing an image (each image's token count follows from its size): malformed
   * messages or options, a response format that cannot hold, a prompt and budget over the
   * context. A server calls it before queueing a request, so such a request is a 400 at once,
   * not a stream that fails at its turn. `sizes`: the images' sizes (a video's frames'), in
   * prompt order, where the caller knows them — their contents are then not read.
   * @throws InvalidInputError (ContextLengthError for a prompt or budget over the context)
   */
  async checkChat(
    messages: readonly ChatMessage[],
    options: GenerateOptions = {},
    sizes?: readonly ImageSize[],
  ): Promise<void> {
    this.#checkOpen();
    const o = resolveOptions(options, this.generationConfig);
    const prompt = await this.prepare(messages, { ...o, gridsOnly: sizes ? { sizes } : true });
    this.#checkOpen(); // disposed meanwhile: say so, not what a freed tokenizer says
    this.#checkRun(prompt, o);
    this.#constraintStart(messages, prompt, o);
  }

  /**
   * Streams the answer to `messages`: text deltas (a decode batch each: 1, 2, 4, … up to 32
   * tokens), then one `done` record. Options are checked before waiting for the GPU; an abort
   * (also while queued, or by {@link dispose}) ends the stream with finishReason "abort". One
   * generation runs at a time (load's `parallel`: that many), in call order: run the stream to its
   * end, break out of it or abort it — one left half-read holds its place and the generations
   * after it wait. The KV cache stays in the prompt cache (see PipelineOptions.promptCache).
   */
  async *generate(
    messages: readonly ChatMessage[],
    options: GenerateOptions = {},
  ): AsyncGenerator<GenerationEvent, void, undefined> {
    this.#checkOpen();
    const o = resolveOptions(options, this.generationConfig);
    // Its place in line is taken now, before the images are decoded and resized: generations run
    // in call order, not in the order their prompts are ready (a text one overtook an image).
    const turn = this.#turn(o);
    let prompt: PreparedPrompt, start: GrammarState;
    try {
      prompt = await this.prepare(messages, o);
      // Disposed while it prepared: the tokenizer #constraintStart reads may be freed.
      if (this.#closing.signal.aborted) {
        giveUp(turn);
        yield { type: "done", result: abortedBeforeStart(prompt) };
        return;
      }
      start = this.#constraintStart(messages, prompt, o);
    } catch (e) {
      giveUp(turn);
      throw e;
    }
    yield* this.#run(prompt, o, start, turn);
  }

  /**
   * A place in line for the GPU (see {@link FifoLock}), aborted with `o.signal` or by
   * {@link dispose}, which it joins into `o.signal`; settled (a rejection is its abort) in its
   * time, so a caller that stops waiting must still release what it resolves to.
   */
  #turn(o: ResolvedOptions): Promise<() => void> {
    // dispose() ends this generation too (finishReason "abort"), before it frees the GPU memory.
    o.signal = o.signal ? AbortSignal.any([o.signal, this.#closing.signal]) : this.#closing.signal;
    const turn = this.#lock.acquire(o.signal);
    turn.catch(() => {}); // an abort while waiting: #run reports it
    return turn;
  }

  /**
   * The constraint's start state: a continued final message's text must itself begin an answer
   * it allows (the start of a JSON object, of the schema's instance, of a choice), and the answer
   * goes on from there.
   * @throws InvalidInputError when it does not
   */
  #constraintStart(
    messages: readonly ChatMessage[],
    prompt: PreparedPrompt,
    o: ResolvedOptions,
  ): GrammarState {
    const c = o.constraint;
    if (!c || !o.continueFinalMessage) return initialState();
    // The final message's text: its text parts after its last image, which the template writes
    // back to back at the prompt's end.
    const content = messages[messages.length - 1].content;
    const text = typeof content === "string" ? content : content
      .slice(content.findLastIndex((p) => p.type !== "text") + 1)
      .map((p) => (p.type === "text" ? p.text : "")).join("");
    // The template may have trimmed the text's trailing whitespace (chat_template.ts): the prompt
    // ends with what the answer continues.
    const shown = this.tokenizer.decode(prompt.inputIds).endsWith(text) ? text : text.trimEnd();
    let start: GrammarState | undefined;
    if (c === "json_object") {
      start = stateAfter(shown);
    } else {
      // From the last freeAfter marker on (the turn's last call and its results, then the
      // answer), where the format has one and the text holds it: the words and rounds of calls
      // before it are the turn's history.
      const at = o.constraintFrom ? shown.lastIndexOf(o.constraintFrom) : -1;
      const q = dfaWalk(c, 0, new TextEncoder().encode(at >= 0 ? shown.slice(at) : shown));
      if (q !== DFA_NONE) (start = initialState())[0] = q;
    }
    if (!start) {
      throw new InvalidInputError(
        "responseFormat with continueFinalMessage: the final message " +
          `${JSON.stringify(shown.slice(0, 80))} does not begin ${
            c === "json_object" ? "a JSON object" : "an answer it allows"
          }, so no continuation of it can be one`,
      );
    }
    return start;
  }

  /**
   * Streams the continuation of a raw prompt — text as it is (no chat template: special tokens
   * such as `<|im_start|>` in it are recognised), or token ids — as {@link generate} streams an
   * answer (OpenAI's and vLLM's `/v1/completions`). The prompt holds no images: image or video
   * placeholders in it are refused.
   * @throws InvalidInputError for an empty prompt, ids outside the vocabulary, or image pads;
   *   ContextLengthError for a prompt (and token budget) over the context
   */
  async *complete(
    prompt: string | ArrayLike<number>,
    options: GenerateOptions = {},
  ): AsyncGenerator<GenerationEvent, void, undefined> {
    this.#checkOpen();
    const o = resolveOptions(options, this.generationConfig);
    noFinalMessage(o);
    yield* this.#run(this.prepareText(prompt), o);
  }

  /**
   * What {@link complete} would refuse, without waiting: the options, the prompt, its fit in the
   * context.
   * @throws InvalidInputError (ContextLengthError for a prompt or budget over the context)
   */
  checkPrompt(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Promise<void> {
    try {
      const o = resolveOptions(options, this.generationConfig);
      noFinalMessage(o);
      this.#checkRun(this.prepareText(prompt), o);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error); // a rejection, as an async check's would be
    }
  }

  /**
   * A raw prompt's model inputs (see {@link complete}): its ids, no images.
   * @throws InvalidInputError for an empty prompt, ids outside the vocabulary, or image pads
   */
  prepareText(prompt: string | ArrayLike<number>): PreparedPrompt {
    this.#checkOpen();
    const c = this.model.config;
    let ids: Int32Array;
    const text = typeof prompt === "string" ? prompt : undefined;
    if (text !== undefined) {
      ids = this.tokenizer.encode(text);
    } else if (Array.isArray(prompt) || ArrayBuffer.isView(prompt)) {
      // The tokenizer's ids (the lm_head's padding rows past them are no tokens).
      const list = Array.from(prompt as ArrayLike<number>);
      checkTokenIds(list, this.tokenizer.vocabSize, "prompt");
      ids = Int32Array.from(list);
    } else {
      throw new InvalidInputError(
        `a prompt must be a string or an array of token ids, got ${typeof prompt}`,
      );
    }
    if (ids.length === 0) throw new InvalidInputError("the prompt is empty: it has no tokens");
    const pad = ids.findIndex((id) => id === c.imageTokenId || id === c.videoTokenId);
    if (pad >= 0) {
      throw new InvalidInputError(
        `the prompt's token ${pad} is an image or video placeholder, but a raw prompt takes no ` +
          "images: send images as chat messages (generate(), /v1/chat/completions)",
      );
    }
    return { inputIds: ids, pixelValues: new Float32Array(0), gridThw: [], imageTokens: 0, text };
  }

  /**
   * What this model refuses of a prepared prompt and its options, before it waits its turn: a
   * prompt or budget over the context, biases of tokens it lacks, logprobs this device cannot
   * compute.
   */
  #checkRun(prompt: PreparedPrompt, o: ResolvedOptions): void {
    const budget = tokenBudget(this.model.maxContext, prompt, o);
    if (o.minTokens > budget) {
      throw new InvalidInputError(
        `minTokens ${o.minTokens} is more than the ${budget} tokens the context leaves after this ` +
          "prompt: the answer could not end",
      );
    }
    // An image (a video's frame) past what this adapter's bindings hold (a 7B tower on a software
    // adapter: about 1.3 megapixels) fails however the prompt cache serves the rest: checked
    // here, frame by frame (the tower runs more frames in more passes: VisionTower.encode).
    for (const [, h, w] of prompt.gridThw) {
      checkPatchesFit(this.model.config.vision, h * w, this.model.gpu.maxBinding);
    }
    const rows = this.model.config.text.vocabSize;
    const past = (name: string, ids: number[]) => {
      const id = ids.find((id) => id >= rows);
      if (id !== undefined) {
        throw new InvalidInputError(
          `${name} names token ${id}, but the model's ids end at ${rows - 1}`,
        );
      }
    };
    past("logitBias", o.logitBias.map(([id]) => id));
    past("stopTokenIds", o.stopTokenIds);
    if (o.logprobs) checkLogprobs(this.model.gpu, rows, o.topLogprobs);
    if (o.promptLogprobs !== undefined) checkLogprobs(this.model.gpu, rows, o.promptLogprobs);
  }

  /**
   * A prepared prompt's generation, queued behind the one running (see {@link generate}) — at
   * `turn`, a place taken by {@link #turn}, or at one taken now.
   */
  async *#run(
    prompt: PreparedPrompt,
    o: ResolvedOptions,
    start: GrammarState = initialState(),
    turn?: Promise<() => void>,
  ): AsyncGenerator<GenerationEvent, void, undefined> {
    try {
      this.#checkDevice();
      this.#checkRun(prompt, o); // a prompt that cannot run fails before queueing
    } catch (e) {
      if (turn) giveUp(turn);
      throw e;
    }
    turn ??= this.#turn(o);
    let release: (() => void) | undefined;
    try {
      release = await turn;
    } catch (e) {
      if (!o.signal?.aborted) throw e;
      yield { type: "done", result: abortedBeforeStart(prompt) };
      return;
    }
    try {
      this.#checkDevice(); // lost while this one waited
      const loop = this.#loop;
      yield* runGeneration(this.model, this.tokenizer, prompt, o, {
        loopDetector: () => new LoopDetector(loop),
        promptCache: this.#cache,
        ...(this.#batcher ? { batcher: this.#batcher } : {}),
        ...(o.constraint ? { grammar: { table: this.#tokenTable(), start } } : {}),
      });
    } catch (e) {
      throw await this.#explained(e);
    } finally {
      release();
    }
  }

  /** Throws {@link failure}, where the device was lost. */
  #checkDevice(): void {
    if (this.failure) throw this.failure;
  }

  /**
   * `e`, or a DeviceLostError with `e` as its cause: what a lost device breaks first is some
   * readback or buffer ("Buffer with 'token_pump.staging' label is invalid"), and the device's
   * lost event may come a moment after that error (≈ 1 ms on lavapipe), so an error that is not
   * qvq's own waits for it up to {@link LOST_WAIT_MS}, holding the lock: such an error is rare
   * (a bug, a lost device), and the next generation should not start on a device about to be
   * known lost.
   */
  async #explained(e: unknown): Promise<unknown> {
    if (e instanceof DeviceLostError) return e;
    const lost = this.failure ??
      (e instanceof QvqError ? undefined : await within(this.model.gpu.whenLost, LOST_WAIT_MS));
    return lost ? new DeviceLostError(lost.message, { cause: e }) : e;
  }

  /** The vocabulary's bytes, uploaded once (about 0.4 s and 1.6 MB for Qwen2's vocabulary). */
  #tokenTable(): GpuTokenTable {
    this.#byteTable ??= uploadTokenTable(
      this.model.gpu,
      tokenTable(this.tokenizer, this.model.config.text.vocabSize),
    );
    return this.#byteTable;
  }

  /** {@link generate} collected: the final record (its `text` is the whole answer). */
  async chat(
    messages: readonly ChatMessage[],
    options: GenerateOptions = {},
  ): Promise<GenerationResult> {
    let result: GenerationResult | undefined;
    for await (const ev of this.generate(messages, options)) {
      if (ev.type === "done") result = ev.result;
    }
    return result!;
  }

  /**
   * One forward pass over the prompt of `messages` (no generation): the processed inputs, the
   * image embeddings and the last position's logits, read back to the CPU. The `logits` CLI.
   */
  async forward(messages: readonly ChatMessage[]): Promise<ForwardResult> {
    const prompt = await this.prepare(messages);
    const m = this.model, gpu = m.gpu;
    contextRoom(m.maxContext, prompt);
    const release = await this.#lock.acquire();
    let images: ImageEmbeds | undefined;
    let session: Session | undefined;
    try {
      this.#checkOpen(); // disposed while it waited: the model is freed
      this.#checkDevice();
      images = prompt.gridThw.length
        ? m.encodeImages(prompt.pixelValues, prompt.gridThw)
        : undefined;
      // As generate(): the tower's work done before the prefill is queued behind it (a long
      // video's tower and a long prefill queued together lost the device on the H200).
      if (images) await gpuIdle(gpu);
      session = m.createSession(prompt.inputIds.length + 1);
      const imageEmbeds = images
        ? await readF32(gpu, images.buffer, images.tokens * images.hidden)
        : new Float32Array(0);
      await m.prefill(session, prompt.inputIds, images);
      const logitsLast = await readF32(gpu, session.logits, m.config.text.vocabSize);
      return { prompt, imageEmbeds, logitsLast };
    } catch (e) {
      throw await this.#explained(e);
    } finally {
      session?.dispose();
      images?.destroy();
      release();
    }
  }

  /**
   * Frees the prompt cache's sessions (the next prompt then runs whole). Waits for the generations
   * in progress, if any (those called after it wait for it).
   */
  async clearPromptCache(): Promise<void> {
    this.#checkOpen();
    const release = await this.#lock.acquire(undefined, { all: true });
    try {
      this.#cache?.clear();
    } finally {
      release();
    }
  }

  /**
   * Frees the model's GPU memory (the prompt cache's too) and the tokenizer. A generation in
   * progress, and those queued or still preparing their prompt, end with finishReason "abort"; the
   * memory is freed as soon as the one in progress has stopped and the prompts being prepared are
   * (at once when none are). Later calls throw InvalidInputError.
   */
  dispose(): void {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    const free = () => {
      this.#cache?.close();
      this.#batcher?.dispose();
      this.#byteTable?.offsets.destroy();
      this.#byteTable?.bytes.destroy();
      this.model.dispose();
      this.tokenizer.dispose();
    };
    // After the generations running (the lock's holders and those queued end with "abort"), and
    // after the calls still preparing a prompt: their template and images need the tokenizer,
    // and a generation among them then ends with "abort" at the lock.
    const afterGenerations = () => {
      if (this.#lock.pending === 0) return free();
      this.#lock.acquire(undefined, { all: true }).then((release) => {
        free();
        release();
      });
    };
    if (this.#preparing === 0) return afterGenerations();
    this.#afterPreparing = () => {
      this.#afterPreparing = undefined;
      afterGenerations();
    };
  }

  /** {@link dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  #checkOpen(): void {
    if (this.#closing.signal.aborted) {
      throw new InvalidInputError(
        `pipeline "${this.modelId}" was disposed: load a new one (Pipeline.load) to generate again`,
      );
    }
  }
}

/** How long an unexpected GPU error waits for the device's lost event (Pipeline #explained). */
const LOST_WAIT_MS = 100;

/** Throws InvalidInputError naming `name[i]`, the first of `ids` not a token id below `n`. */
function checkTokenIds(ids: readonly number[], n: number, name: string): void {
  if (!Array.isArray(ids)) {
    throw new InvalidInputError(`${name} must be an array of token ids, got ${preview(ids)}`);
  }
  const bad = ids.findIndex((id) => !(Number.isInteger(id) && id >= 0 && id < n));
  if (bad >= 0) {
    throw new InvalidInputError(`${name}[${bad}] must be a token id in [0, ${n}), got ${ids[bad]}`);
  }
}

/** A raw prompt has no messages: continueFinalMessage is refused there, not ignored. */
function noFinalMessage(o: ResolvedOptions): void {
  if (o.continueFinalMessage) {
    throw new InvalidInputError(
      "continueFinalMessage continues a chat's last message; a raw prompt already ends where " +
        "the answer begins",
    );
  }
}

function lastSegment(location: string): string {
  const parts = location.replace(/[/\\]+$/, "").split(/[/\\]/);
  return parts[parts.length - 1] || location;
}

/** A place in line (Pipeline #turn) given up unused: released once it comes (nothing if aborted). */
function giveUp(turn: Promise<() => void>): void {
  turn.then((release) => release(), () => {});
}

function abortedBeforeStart(prompt: PreparedPrompt): GenerationResult {
  return {
    finishReason: "abort",
    text: "",
    usage: {
      promptTokens: prompt.inputIds.length,
      completionTokens: 0,
      imageTokens: prompt.imageTokens,
      cachedTokens: 0,
    },
    timings: { visionMs: 0, prefillMs: 0, decodeMs: 0, tokensPerSecond: 0 },
  };
}
