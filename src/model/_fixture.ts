/**
 * Test helpers: the tiny fixture model's directory and its transformers reference outputs
 * (tests/fixtures/tiny-qwen2vl/reference/case*.safetensors, small files read whole).
 * @module
 */

/** The tiny random Qwen2-VL checkpoint the parity tests run. */
export const TINY_DIR: string =
  new URL("../../tests/fixtures/tiny-qwen2vl/", import.meta.url).pathname;

/** One case's reference tensors, by name. */
export interface ReferenceCase {
  inputIds: Int32Array;
  /** (patches, 1176) f32 */
  pixelValues: Float32Array;
  /** (images, 3) */
  gridThw: [number, number, number][];
  /** (3, seq) i32 */
  positionIds: Int32Array;
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
export function readReferenceCase(i: number): ReferenceCase {
  const bytes = Deno.readFileSync(`${TINY_DIR}reference/case${i}.safetensors`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const get = <T extends Float32Array | Int32Array>(
    name: string,
    ctor: new (b: ArrayBuffer) => T,
  ): T => {
    const h = header[name];
    if (!h) throw new Error(`case${i}.safetensors has no tensor "${name}"`);
    const [a, b] = h.data_offsets as [number, number];
    return new ctor(bytes.slice(8 + n + a, 8 + n + b).buffer);
  };
  const grid = get("image_grid_thw", Int32Array);
  const gridThw: [number, number, number][] = [];
  for (let k = 0; k < grid.length; k += 3) gridThw.push([grid[k], grid[k + 1], grid[k + 2]]);
  return {
    inputIds: get("input_ids", Int32Array),
    pixelValues: get("pixel_values", Float32Array),
    gridThw,
    positionIds: get("position_ids", Int32Array),
    ropeDelta: get("rope_deltas", Int32Array)[0],
    imageEmbeds: get("image_embeds", Float32Array),
    logitsLast: get("logits_last", Float32Array),
    logitsArgmax: get("logits_argmax", Int32Array),
    logitsMax: get("logits_max", Float32Array),
    generatedIds: get("generated_ids", Int32Array),
    generatedScoresMax: get("generated_scores_max", Float32Array),
  };
}
