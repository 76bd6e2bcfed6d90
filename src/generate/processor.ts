/**
 * Chat messages → model inputs, without the GPU: transformers'
 * `processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)` for
 * Qwen2-VL — the chat template, the image and video processors, and the tokenizer with each
 * image's (video's) placeholder expanded to its vision token count.
 * @module
 */
import {
  DEFAULT_VIDEO_PROCESSOR_CONFIG,
  imageGrids,
  type ImageProcessorConfig,
  type ImageSize,
  isVideo,
  parsePreprocessorConfig,
  preprocessImages,
  type PreprocessOptions,
} from "../image.ts";
import { ModelFileError } from "../errors.ts";
import { sharedFramePool } from "../_frame_pool.ts";
import type { ModelSource } from "../model_files.ts";
import { parseConfig, type Qwen2VLConfig } from "../model/config.ts";
import { Tokenizer } from "../tokenizer.ts";
import {
  ChatTemplate,
  collectImages,
  JINJA_FILE,
  noChatTemplate,
  type RenderOptions,
} from "./chat_template.ts";
import { expandImagePads, type GridThw, imageTokenCounts, type PreparedPrompt } from "./prompt.ts";
import type { ChatMessage } from "./types.ts";

const IMAGE_FILE = "preprocessor_config.json";
const VIDEO_FILE = "video_preprocessor_config.json";
/** transformers 5 saves a processor's image and video settings nested in this one file. */
const PROCESSOR_FILE = "processor_config.json";

/**
 * A model's image and video settings, found where transformers 5 looks: processor_config.json's
 * nested `image_processor` (what `save_pretrained` writes since v5), else preprocessor_config.json
 * (the hub's Qwen2-VL checkpoints); for videos its `video_processor`, else
 * video_preprocessor_config.json, else the image settings (what they leave out from the video
 * processor's defaults). Throws ModelFileError where neither image source exists.
 */
export async function loadProcessorConfigs(
  src: ModelSource,
): Promise<{ image: ImageProcessorConfig; video: ImageProcessorConfig }> {
  const optionalJson = async (name: string) =>
    (await src.exists(name)) ? await src.readJson(name) : undefined;
  const processor = await optionalJson(PROCESSOR_FILE);
  const nested = (key: string) => {
    const v = typeof processor === "object" && processor !== null
      ? (processor as Record<string, unknown>)[key]
      : undefined;
    return v === undefined ? undefined : { json: v, file: `${PROCESSOR_FILE}'s "${key}"` };
  };
  const imageSource = nested("image_processor") ??
    { json: await optionalJson(IMAGE_FILE), file: IMAGE_FILE };
  if (imageSource.json === undefined) {
    throw new ModelFileError(
      `the model has no image processor settings: neither ${src.pathOf(IMAGE_FILE)} nor an ` +
        `"image_processor" in ${src.pathOf(PROCESSOR_FILE)} exists; add the model's ` +
        `${IMAGE_FILE}`,
    );
  }
  const image = parsePreprocessorConfig(imageSource.json, undefined, imageSource.file);
  // Without video settings of its own a model's videos read the image settings, as in
  // transformers — where the video processor fills what they leave out with its own defaults
  // (fewer pixels a frame than an image's), not the image processor's.
  const videoSource = nested("video_processor") ??
    { json: await optionalJson(VIDEO_FILE), file: VIDEO_FILE };
  const { json: videoJson, file: videoFile } = videoSource.json === undefined
    ? imageSource
    : videoSource;
  const video = parsePreprocessorConfig(videoJson, DEFAULT_VIDEO_PROCESSOR_CONFIG, videoFile);
  return { image, video };
}

/** Options of {@link ChatProcessor.prepare}: the template's, plus the image token budget. */
export type PrepareOptions = RenderOptions & PreprocessOptions & {
  /**
   * The ids and grids alone, no pixel values (empty): each image's grid from its size
   * (imageGrids), nothing resized — to count or check a prompt. `sizes`: the images' sizes (a
   * video's frames'), in prompt order, where the caller knows them (their contents unread).
   */
  gridsOnly?: boolean | { sizes: readonly ImageSize[] };
};

/**
 * Turns chat messages into input ids and pixel values.
 *
 * @example
 * ```ts ignore
 * const proc = await ChatProcessor.load(openModelSource("tests/fixtures/tiny-qwen2vl"));
 * const png = await Deno.readFile("tests/fixtures/tiny-qwen2vl/reference/case0_0.png");
 * const p = await proc.prepare([{ role: "user", content: [
 *   { type: "image", image: png }, { type: "text", text: "What value should be filled in the blank space?" },
 * ] }]);
 * // p.inputIds: 35 ids with 4 <|image_pad|>; p.gridThw: [[1, 4, 4]]
 * ```
 */
export class ChatProcessor {
  /**
   * The model's chat template (chat_template.json, chat_template.jinja or tokenizer_config.json's
   * `chat_template`); undefined where the model has none, and {@link prepare} refuses messages.
   */
  readonly template: ChatTemplate | undefined;
  /** The model's tokenizer. */
  readonly tokenizer: Tokenizer;
  /** How images are resized and normalized (preprocessor_config.json). */
  readonly imageConfig: ImageProcessorConfig;
  /** The `<|image_pad|>` id (config.json's image_token_id). */
  readonly imageTokenId: number;
  /** How video frames are resized (video_preprocessor_config.json, else the image settings). */
  readonly videoConfig: ImageProcessorConfig;
  /** The `<|video_pad|>` id (config.json's video_token_id). */
  readonly videoTokenId: number;

  /**
   * A processor from its parts (Pipeline.load makes one from a model directory); videos take
   * the image settings and Qwen2-VL's `<|video_pad|>` (151656) unless given.
   */
  constructor(
    template: ChatTemplate | undefined,
    tokenizer: Tokenizer,
    imageConfig: ImageProcessorConfig,
    imageTokenId: number,
    video: { config?: ImageProcessorConfig; tokenId?: number } = {},
  ) {
    this.template = template;
    this.tokenizer = tokenizer;
    this.imageConfig = imageConfig;
    this.imageTokenId = imageTokenId;
    this.videoConfig = video.config ?? imageConfig;
    this.videoTokenId = video.tokenId ?? 151656;
  }

  /**
   * Reads config.json (unless given, already parsed), the chat template (chat_template.json,
   * chat_template.jinja or tokenizer_config.json; none is no error: the tokenizer still serves raw
   * prompts, and {@link prepare} says what is missing), the image and video settings
   * ({@link loadProcessorConfigs}) and the tokenizer (unless given) from a model location. With a
   * template, starts the shared frame pool's workers ({@link sharedFramePool}), which resize
   * images and a video's frames.
   */
  static async load(
    src: ModelSource,
    tokenizer?: Tokenizer,
    config?: Qwen2VLConfig,
  ): Promise<ChatProcessor> {
    const optionalJson = async (name: string) =>
      (await src.exists(name)) ? await src.readJson(name) : undefined;
    config ??= parseConfig(await src.readJson("config.json"), src.pathOf("config.json"));
    const template = ChatTemplate.findInConfigs(
      await optionalJson("chat_template.json"),
      await optionalJson("tokenizer_config.json"),
      (await src.exists(JINJA_FILE)) ? await src.readText(JINJA_FILE) : undefined,
      await optionalJson(PROCESSOR_FILE),
    );
    const { image: imageConfig, video: videoConfig } = await loadProcessorConfigs(src);
    // Images need a template: the frame pool's workers start now, beside the model's loading.
    if (template) sharedFramePool()?.warm().catch(() => {}); // a failure fails the first image
    return new ChatProcessor(
      template,
      tokenizer ?? await Tokenizer.load(src),
      imageConfig,
      config.imageTokenId,
      { config: videoConfig, tokenId: config.videoTokenId },
    );
  }

  /**
   * The model inputs for `messages`: the template's text (with its default system prompt when
   * the messages have none), tokenized, each image (video) pad repeated t·h·w / merge² times.
   * @throws InvalidInputError for malformed messages or images that do not decode;
   *   NoChatTemplateError where the model has no chat template
   */
  async prepare(
    messages: readonly ChatMessage[],
    options: PrepareOptions = {},
  ): Promise<PreparedPrompt> {
    if (!this.template) throw noChatTemplate();
    const text = this.template.render(messages, options);
    const images = collectImages(messages);
    const settings = {
      maxImageTokens: options.maxImageTokens,
      videoConfig: this.videoConfig,
      framePool: options.framePool,
    };
    const only = options.gridsOnly;
    const { pixelValues, gridThw } = !images.length
      ? { pixelValues: new Float32Array(0), gridThw: [] as GridThw[] }
      : only
      ? {
        pixelValues: new Float32Array(0),
        gridThw: await imageGrids(images, this.imageConfig, {
          ...settings,
          sizes: only === true ? undefined : only.sizes,
        }),
      }
      : await preprocessImages(images, this.imageConfig, settings);
    const counts = imageTokenCounts(gridThw, this.imageConfig.mergeSize);
    const kinds = images.map((x) => isVideo(x) ? this.videoTokenId : this.imageTokenId);
    return {
      inputIds: expandImagePads(
        this.tokenizer.encode(text),
        [this.imageTokenId, this.videoTokenId],
        counts,
        kinds,
      ),
      pixelValues,
      gridThw: gridThw.map(([t, h, w]) => [t, h, w] as const),
      imageTokens: counts.reduce((a, b) => a + b, 0),
    };
  }
}
