/**
 * Test helpers: the fixture models' directories and their transformers reference outputs
 * (tests/fixtures/tiny-qwen2vl/reference/case*.safetensors, small files read whole).
 * @module
 */
import { readSafetensors } from "../safetensors.ts";

/** The tiny random Qwen2-VL checkpoint the parity tests run. */
export const TINY_DIR: string =
  new URL("../../tests/fixtures/tiny-qwen2vl/", import.meta.url).pathname;

/** A synthetic Qwen2-VL of another shape (tests/fixtures/synthetic-qwen2vl/make.py). */
export const SYNTHETIC_DIR: string =
  new URL("../../tests/fixtures/synthetic-qwen2vl/", import.meta.url).pathname;

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
