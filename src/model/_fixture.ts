/**
 * Test helpers: the fixture models' directories and their transformers reference outputs
 * (tests/fixtures/tiny-qwen2vl/reference/case*.safetensors, small files read whole).
 * @module
 */
import { readSafetensors } from "../safetensors.ts";
import { encodePng } from "../_png.ts";
import { MemoryModelSource } from "../model_files.ts";

/** The tiny random Qwen2-VL checkpoint the parity tests run. */
export const TINY_DIR: string =
  new URL("../../tests/fixtures/tiny-qwen2vl/", import.meta.url).pathname;

/** A synthetic Qwen2-VL of another shape (tests/fixtures/synthetic-qwen2vl/make.py). */
export const SYNTHETIC_DIR: string =
  new URL("../../tests/fixtures/synthetic-qwen2vl/", import.meta.url).pathname;

/**
 * The tiny checkpoint as a base model's dump: every file but its chat template (no
 * chat_template.json, no `chat_template` in tokenizer_config.json), in memory.
 */
export function tinyWithoutTemplate(): Promise<MemoryModelSource> {
  return tinyWithTemplate(undefined);
}

/**
 * The tiny checkpoint in memory with `template` as its chat template (chat_template.json's), or
 * none at all (undefined: see {@link tinyWithoutTemplate}).
 */
export async function tinyWithTemplate(
  template: string | undefined,
): Promise<MemoryModelSource> {
  const files: Record<string, Uint8Array> = {};
  for await (const e of Deno.readDir(TINY_DIR)) {
    if (e.isFile && e.name !== "chat_template.json") {
      files[e.name] = await Deno.readFile(`${TINY_DIR}${e.name}`);
    }
  }
  const { chat_template: _, ...tokenizerConfig } = JSON.parse(
    new TextDecoder().decode(files["tokenizer_config.json"]),
  );
  const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  files["tokenizer_config.json"] = json(tokenizerConfig);
  if (template !== undefined) files["chat_template.json"] = json({ chat_template: template });
  return new MemoryModelSource(files, template === undefined ? "tiny-without-template" : "tiny");
}

/**
 * QVQ-72B-Preview's chat template: Qwen2-VL's (the tiny fixture's) with its own default system
 * message, which asks for step-by-step thinking.
 */
export async function qvqTemplate(): Promise<string> {
  const { chat_template } = JSON.parse(await Deno.readTextFile(`${TINY_DIR}chat_template.json`));
  return chat_template.replace("You are a helpful assistant.", QVQ_SYSTEM);
}

/** QVQ-72B-Preview's default system message (its chat template's). */
export const QVQ_SYSTEM =
  "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You should " +
  "think step-by-step.";

/** One case's reference tensors, by name. */
export interface ReferenceCase {
  /** (seq) i32 prompt ids, image pads expanded */
  inputIds: Int32Array;
  /** (patches, 1176) f32 */
  pixelValues: Float32Array;
  /** (images, 3) */
  gridThw: [number, number, number][];
  /** (3, seq) i32 */
  positionIds: Int32Array;
  /** rope_deltas[0] */
  ropeDelta: number;
  /** (Σ image tokens, hidden) f32 */
  imageEmbeds: Float32Array;
  /** (vocab) f32 */
  logitsLast: Float32Array;
  /** (seq) i32 argmax of the logits at every prompt position */
  logitsArgmax: Int32Array;
  /** (seq) f32 max logit at every prompt position */
  logitsMax: Float32Array;
  /** (12) i32 greedy continuation */
  generatedIds: Int32Array;
  /** (12) f32 max processed score at each greedy step */
  generatedScoresMax: Float32Array;
}

/** Number of reference cases (cases.json). */
export const CASES: number = JSON.parse(
  Deno.readTextFileSync(`${TINY_DIR}reference/cases.json`),
).cases.length;

/** Reads reference case `i` (a safetensors file of F32 / I32 tensors). */
export async function readReferenceCase(i: number): Promise<ReferenceCase> {
  const r = await readReference(`${TINY_DIR}reference/case${i}.safetensors`);
  const grid = r.i32("image_grid_thw");
  const gridThw: [number, number, number][] = [];
  for (let k = 0; k < grid.length; k += 3) gridThw.push([grid[k], grid[k + 1], grid[k + 2]]);
  return {
    inputIds: r.i32("input_ids"),
    pixelValues: r.f32("pixel_values"),
    gridThw,
    positionIds: r.i32("position_ids"),
    ropeDelta: r.i32("rope_deltas")[0],
    imageEmbeds: r.f32("image_embeds"),
    logitsLast: r.f32("logits_last"),
    logitsArgmax: r.i32("logits_argmax"),
    logitsMax: r.f32("logits_max"),
    generatedIds: r.i32("generated_ids"),
    generatedScoresMax: r.f32("generated_scores_max"),
  };
}

/** Typed getters over a reference safetensors file. */
export interface Reference {
  /** An F32 tensor's data. */
  f32(name: string): Float32Array;
  /** An I32 tensor's data. */
  i32(name: string): Int32Array;
  /** A tensor's shape. */
  shape(name: string): number[];
}

/** Reads a whole reference file (F32 and I32 tensors). */
export async function readReference(path: string): Promise<Reference> {
  const m = await readSafetensors(await Deno.readFile(path), path);
  const get = (name: string) => {
    const t = m.get(name);
    if (!t) throw new Error(`${path} has no tensor "${name}"`);
    return t;
  };
  return {
    f32: (name) => get(name).data as Float32Array,
    i32: (name) => get(name).data as Int32Array,
    shape: (name) => get(name).shape,
  };
}

/** transformers' video references on the tiny model (tests/tools/make_video_refs.py). */
export const VIDEO_DIR: string = new URL("../../tests/fixtures/video/", import.meta.url).pathname;

/** One video reference case: its files, and transformers' tensors for them. */
export interface VideoCase {
  name: string;
  /** The user's text after the image (if any) and the video. */
  prompt: string;
  /** The video's frames, PNG bytes in order. */
  frames: Uint8Array[];
  /** An image before the video in the same message, PNG bytes. */
  image?: Uint8Array;
  /** (seq) i32 prompt ids, pads expanded */
  inputIds: Int32Array;
  /** (3, seq) i32 */
  positionIds: Int32Array;
  ropeDelta: number;
  /** (video patches, 1176) f32 */
  pixelValuesVideos: Float32Array;
  videoGridThw: [number, number, number];
  /** (image patches, 1176) f32, empty without an image */
  pixelValues: Float32Array;
  imageGridThw: [number, number, number][];
  /** The last prompt row's 256 largest logits and their ids (torch.topk order). */
  logitsLastTopValues: Float32Array;
  logitsLastTopIds: Int32Array;
  /** max |logit| of the last prompt row */
  logitsLastAbsMax: number;
  /** (seq) i32 / f32: argmax and max of the logits at every prompt position */
  logitsArgmax: Int32Array;
  logitsMax: Float32Array;
  /** (12) i32 greedy continuation */
  generatedIds: Int32Array;
}

/** Reads every video reference case. */
export async function readVideoCases(): Promise<VideoCase[]> {
  const meta = JSON.parse(await Deno.readTextFile(`${VIDEO_DIR}cases.json`));
  const out: VideoCase[] = [];
  for (
    const c of meta.cases as {
      name: string;
      prompt: string;
      frames: string[];
      image: string | null;
    }[]
  ) {
    const r = await readReference(`${VIDEO_DIR}${c.name}.safetensors`);
    const grid = (name: string) => {
      const g = r.shape(name).length ? r.i32(name) : new Int32Array(0);
      const grids: [number, number, number][] = [];
      for (let k = 0; k < g.length; k += 3) grids.push([g[k], g[k + 1], g[k + 2]]);
      return grids;
    };
    const hasImage = c.image !== null;
    out.push({
      name: c.name,
      prompt: c.prompt,
      frames: await Promise.all(c.frames.map((f) => Deno.readFile(`${VIDEO_DIR}${f}`))),
      image: hasImage ? await Deno.readFile(`${VIDEO_DIR}${c.image}`) : undefined,
      inputIds: r.i32("input_ids"),
      positionIds: r.i32("position_ids"),
      ropeDelta: r.i32("rope_deltas")[0],
      pixelValuesVideos: r.f32("pixel_values_videos"),
      videoGridThw: grid("video_grid_thw")[0],
      pixelValues: hasImage ? r.f32("pixel_values") : new Float32Array(0),
      imageGridThw: hasImage ? grid("image_grid_thw") : [],
      logitsLastTopValues: r.f32("logits_last_top_values"),
      logitsLastTopIds: r.i32("logits_last_top_ids"),
      logitsLastAbsMax: r.f32("logits_last_absmax")[0],
      logitsArgmax: r.i32("logits_argmax"),
      logitsMax: r.f32("logits_max"),
      generatedIds: r.i32("generated_ids"),
    });
  }
  return out;
}

/**
 * Two files in `dir` a caller must refuse as images: `text`, a text file named .png, and `wide`,
 * an 8 × 4 PNG (a video frame of another size than the reference images').
 */
export async function badImageFiles(
  dir: string,
): Promise<{ text: string; wide: string; thin: string }> {
  const text = `${dir}/notes.png`;
  await Deno.writeTextFile(text, "not an image");
  const wide = `${dir}/wide.png`;
  await Deno.writeFile(wide, await encodePng(8, 4, new Uint8Array(8 * 4 * 3)));
  const thin = `${dir}/thin.png`; // 1000 × 4: an aspect ratio of 250, over the processor's 200
  await Deno.writeFile(thin, await encodePng(1000, 4, new Uint8Array(1000 * 4 * 3)));
  return { text, wide, thin };
}
