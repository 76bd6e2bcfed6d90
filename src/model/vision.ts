/**
 * The vision tower (ViT with 2D rotary attention) and the patch merger, on the GPU:
 * pixel_values (patches, 1176) → image embeddings (patches / 4, LLM hidden).
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import { fmtBytes, type Gpu } from "../gpu/device.ts";
import { createStorage, writeArray } from "../gpu/buffers.ts";
import { type Dispatch, withParamsArena } from "../../kernels/_kernel.ts";
import {
  gelu,
  type GpuRopeTable,
  layerNorm,
  linear,
  rope,
  uploadRopeTable,
  visionAttention,
  visionAttentionInt8,
  visionRopeTable,
} from "../../kernels/mod.ts";
import { isQuant } from "../gpu/tensor.ts";
import type { VisionConfig } from "./config.ts";
import { patchCount } from "../image.ts";
import { type GridThw, visionCuSeqlens, visionPositionIds } from "./rope_index.ts";
import type { GpuWeights } from "./weights.ts";

/** Image embeddings on the GPU, ready to be placed at a prompt's image-pad tokens. */
export interface ImageEmbeds {
  /** (tokens, hidden) f32: every image's merged patches, in image order. */
  readonly buffer: GPUBuffer;
  /** Σ t·h·w / merge² over the images. */
  readonly tokens: number;
  /** Columns: the LLM hidden size. */
  readonly hidden: number;
  /** The images' grids, for get_rope_index. */
  readonly grids: readonly GridThw[];
  /** Frees the buffer. */
  destroy(): void;
}

/** Checks grids and pixel_values against the config; returns the patch count. */
export function checkImages(
  v: VisionConfig,
  pixelValues: Float32Array,
  grids: readonly GridThw[],
): number {
  if (grids.length === 0) throw new InvalidInputError("encodeImages: no image grids given");
  grids.forEach(([t, h, w], i) => {
    if (
      ![t, h, w].every((d) => Number.isInteger(d) && d > 0) || h % v.spatialMergeSize ||
      w % v.spatialMergeSize
    ) {
      throw new InvalidInputError(
        `encodeImages: image ${i} grid [${t}, ${h}, ${w}] must be positive integers with h and w ` +
          `multiples of spatial_merge_size ${v.spatialMergeSize} (as the image processor makes them)`,
      );
    }
  });
  const patches = patchCount(grids);
  if (pixelValues.length !== patches * v.patchDim) {
    throw new InvalidInputError(
      `encodeImages: pixel_values has ${pixelValues.length} values, but the grids need ${patches} ` +
        `patches × ${v.patchDim} = ${patches * v.patchDim}`,
    );
  }
  return patches;
}

/** The vision tower bound to its weights; one per model. */
export class VisionTower {
  readonly #gpu: Gpu;
  readonly #cfg: VisionConfig;
  readonly #w: GpuWeights;
  /** Rotary table for grid rows/columns 0..npos-1, grown on demand. */
  #rope?: GpuRopeTable;

  /** Binds the tower to loaded weights (keys `vision.*` of the plan). */
  constructor(gpu: Gpu, cfg: VisionConfig, weights: GpuWeights) {
    this.#gpu = gpu;
    this.#cfg = cfg;
    this.#w = weights;
  }

  #ropeTable(npos: number): GpuRopeTable {
    if (!this.#rope || this.#rope.npos < npos) {
      this.#rope?.destroy();
      this.#rope = uploadRopeTable(
        this.#gpu,
        visionRopeTable(this.#cfg.headDim, npos, this.#cfg.ropeTheta),
        "vision.rope",
      );
    }
    return this.#rope;
  }

  /**
   * Runs the tower on all images at once (attention stays within each frame).
   *
   * transformers `Qwen2VisionTransformerPretrainedModel.forward` and the modules it calls:
   * ```python
   * hidden_states = self.patch_embed(hidden_states)           # Conv3d ≡ Linear(1176 → embed_dim)
   * for blk in self.blocks:
   *     hidden_states = hidden_states + self.attn(self.norm1(hidden_states), cu_seqlens, position_embeddings)
   *     hidden_states = hidden_states + self.mlp(self.norm2(hidden_states))   # fc2(quick_gelu(fc1(x)))
   * merged_hidden_states = self.merger(hidden_states)  # mlp(ln_q(x).view(-1, hidden_size)): Linear, GELU, Linear
   * # VisionAttention: q, k, v = self.qkv(x).reshape(seq, 3, heads, -1).permute(1, 0, 2, 3).unbind(0)
   * #   q, k = apply_rotary_pos_emb_vision(q, k, cos, sin); softmax(q kᵀ · head_dim**-0.5) v per cu_seqlens block
   * ```
   * Images (and a video's temporal patches) go through the tower in groups of at most
   * `maxPatches` patches (default {@link VISION_GROUP_PATCHES}, and what the adapter's bindings
   * hold): a frame's patches attend only to each other, so the groups' rows are the rows of one
   * pass, while the activations stay bounded (≈ 56 KB a patch at Qwen2-VL's towers) and a long
   * video fits where one pass would not.
   * @param pixelValues (patches, 1176) f32 from the image processor
   * @param grids one (t, h, w) per image
   */
  encode(
    pixelValues: Float32Array,
    grids: readonly GridThw[],
    opts: { maxPatches?: number } = {},
  ): ImageEmbeds {
    const gpu = this.#gpu, v = this.#cfg;
    const P = checkImages(v, pixelValues, grids);
    const most = Math.min(
      opts.maxPatches ?? VISION_GROUP_PATCHES,
      bindingPatches(v, gpu.maxBinding),
    );
    // Every layer's params in one uniform buffer a group (kernels/_kernel.ts ParamsArena).
    const slots = v.depth * 24 + 64;
    const pass = (pv: Float32Array, gs: readonly GridThw[], scratch?: VisionScratch) =>
      withParamsArena(gpu, slots, () => this.#encode(pv, gs, scratch));
    const groups = visionGroups(grids, Math.max(1, most));
    const largest = Math.max(...groups.map((g) => g.patches));
    const merge = v.spatialMergeSize * v.spatialMergeSize, H = v.outHidden;
    // A frame past the bindings is refused before any group's work is built.
    checkPatchesFit(v, largest, gpu.maxBinding);
    checkEmbedsFit(v, P / merge, gpu.maxBinding);
    if (groups.length === 1) return pass(pixelValues, grids);
    const out = createStorage(gpu, (P / merge) * H * 4, "image_embeds"); // (P/4, H) f32
    // One set of activations for every group, sized for the largest: each group's uploads and
    // dispatches follow the last group's on the queue, and nothing is freed until all are in.
    const scratch = visionScratch(
      gpu,
      v,
      largest,
      Math.max(...groups.map((g) => g.grids.reduce((n, [t]) => n + t, 0))) + 1,
    );
    try {
      let row = 0; // patches done
      for (const g of groups) {
        const part = pass(
          pixelValues.subarray(row * v.patchDim, (row + g.patches) * v.patchDim),
          g.grids,
          scratch,
        );
        const enc = gpu.device.createCommandEncoder({ label: "vision.group" });
        enc.copyBufferToBuffer(part.buffer, 0, out, (row / merge) * H * 4, part.tokens * H * 4);
        gpu.device.queue.submit([enc.finish()]);
        row += g.patches;
      }
    } catch (e) {
      out.destroy();
      throw e;
    } finally {
      for (const b of Object.values(scratch)) b.destroy(); // after the last group's submit
    }
    return {
      buffer: out,
      tokens: P / merge,
      hidden: H,
      grids: grids.map((g) => [...g] as unknown as GridThw),
      destroy: () => out.destroy(),
    };
  }

  /**
   * One pass of the tower over `grids` (checked by encode() to fit the bindings), in buffers of
   * its own (freed once submitted, but `out`), or in `scratch` (see {@link VisionScratch}: the
   * groups of one encode() share them).
   */
  #encode(
    pixelValues: Float32Array,
    grids: readonly GridThw[],
    scratch?: VisionScratch,
  ): ImageEmbeds {
    const gpu = this.#gpu, v = this.#cfg, w = this.#w;
    const P = patchCount(grids);
    const E = v.embedDim, D = v.mergedDim, H = v.outHidden;
    const merged = P / (v.spatialMergeSize * v.spatialMergeSize);
    const cuHost = visionCuSeqlens(grids);
    const own = scratch ?? visionScratch(gpu, v, P, cuHost.length);
    const { pv, pos, cu, x, h, qkv, o, f, m1, out } = own;
    writeArray(gpu, pv, pixelValues);
    writeArray(gpu, pos, visionPositionIds(grids, v.spatialMergeSize));
    writeArray(gpu, cu, cuHost);
    let maxSide = 1;
    for (const [, gh, gw] of grids) maxSide = Math.max(maxSide, gh, gw);
    const table = this.#ropeTable(maxSide);
    const ln = { rows: P, cols: E, eps: v.layerNormEps };
    // An int8 tower (its matrices loaded as q8: LoadOptions.visionQuant) runs them through the int8
    // GEMM (int8 activations: LinearShape.int8x, kernels/gemm.ts) and also takes its attention
    // scores from int8 q / k rows (kernels/attention.ts visionAttentionInt8).
    const int8 = (key: string) => isQuant(w.matrix(key).dtype);
    const attention = int8("vision.blocks.0.qkv")
      ? visionAttentionInt8
      : (...a: Parameters<typeof visionAttention>) => [visionAttention(...a)];

    // The patch embedding's k (1176) is never split: the split the time model picks follows P, all
    // the images' patches, so an image's rows would be summed otherwise alone than beside others,
    // and an int8 tower's layers magnify that (1 % of the embeddings); the prompt cache encodes
    // only the images it has not seen. (P's tiles fill the GPU wherever the time matters.) The
    // blocks' own GEMMs (k ≥ 1024 at the real widths) still split by P, for speed: there an
    // image's rows alone and beside others agree to f32 rounding (a review: proj 6.4e-6), and
    // the int8 tower's GEMM tiles small passes (≤ 64 patches) otherwise. Nor do a few patches
    // (an image of 16 alone, its merger's 4 rows) take the row GEMV that products of up to 16 rows
    // run elsewhere (kernels/linear.ts GEMV_XROWS_MAX): it sums in another order than the tiled
    // kernel the same image beside others takes.
    const tiled = { gemvXRows: false };
    const ds: Dispatch[] = [
      ...linear(gpu, x, pv, w.matrix("vision.patch_embed"), null, { m: P }, {
        splitK: 1,
        ...tiled,
      }),
    ];
    for (let i = 0; i < v.depth; i++) {
      // The GPU starts on the first blocks while the CPU builds the rest.
      if (submitBefore(i)) submit(gpu, ds.splice(0), "vision");
      const k = `vision.blocks.${i}.`;
      ds.push(
        layerNorm(gpu, h, x, w.vector(k + "norm1.weight"), w.vector(k + "norm1.bias"), ln),
        ...linear(gpu, qkv, h, w.matrix(k + "qkv"), w.vector(k + "qkv_bias"), {
          m: P,
          int8x: int8(k + "qkv"),
        }, tiled),
        // q heads then k heads are contiguous at the row's start: one call rotates both.
        rope(gpu, qkv, pos, table, { seq: P, heads: 2 * v.numHeads, stride: 3 * E, offset: 0 }),
        ...attention(
          gpu,
          o,
          { buffer: qkv, stride: 3 * E, offset: 0 },
          { buffer: qkv, stride: 3 * E, offset: E },
          { buffer: qkv, stride: 3 * E, offset: 2 * E },
          cu,
          { seq: P, heads: v.numHeads, headDim: v.headDim, nCu: cuHost.length },
        ),
        ...linear(gpu, x, o, w.matrix(k + "proj"), w.vector(k + "proj_bias"), {
          m: P,
          accumulate: true,
          int8x: int8(k + "proj"),
        }, tiled),
        layerNorm(gpu, h, x, w.vector(k + "norm2.weight"), w.vector(k + "norm2.bias"), ln),
        // quick_gelu in fc1's epilogue: one pass over the (P, M) activations fewer.
        ...linear(gpu, f, h, w.matrix(k + "fc1"), w.vector(k + "fc1_bias"), {
          m: P,
          activation: "quick_gelu",
          int8x: int8(k + "fc1"),
        }, tiled),
        ...linear(gpu, x, f, w.matrix(k + "fc2"), w.vector(k + "fc2_bias"), {
          m: P,
          accumulate: true,
          int8x: int8(k + "fc2"),
        }, tiled),
      );
    }
    // Patches come in 2×2 merge-block order, so 4 consecutive rows of h are one merged token.
    ds.push(
      layerNorm(
        gpu,
        h,
        x,
        w.vector("vision.merger.ln_q.weight"),
        w.vector("vision.merger.ln_q.bias"),
        ln,
      ),
      ...linear(gpu, m1, h, w.matrix("vision.merger.fc1"), w.vector("vision.merger.fc1_bias"), {
        m: merged,
        int8x: int8("vision.merger.fc1"),
      }, tiled),
      gelu(gpu, m1, m1, merged * D),
      ...linear(gpu, out, m1, w.matrix("vision.merger.fc2"), w.vector("vision.merger.fc2_bias"), {
        m: merged,
        int8x: int8("vision.merger.fc2"),
      }, tiled),
    );
    submit(gpu, ds, "vision");
    if (!scratch) { for (const b of [pv, pos, cu, x, h, qkv, o, f, m1]) b.destroy(); }
    return {
      buffer: out,
      tokens: merged,
      hidden: H,
      grids: grids.map((g) => [...g] as unknown as GridThw),
      destroy: () => out.destroy(),
    };
  }

  /** Frees the rope table (the weights belong to the model). */
  destroy(): void {
    this.#rope?.destroy();
  }
}

/**
 * Most patches {@link VisionTower.encode} runs through the tower at once by default: 32768 (a
 * 64-frame 448 × 448 video, 8192 tokens), whose activations take ≈ 1.9 GB at Qwen2-VL's towers
 * (x, h, o: 1280 f32 a patch each, qkv 3840, the MLP 5120, the pixel values 1176) — beside
 * QVQ-72B's 41 GB of q4 weights on an 80 GB card. More patches run as more passes (measured on
 * the H200: 44–51 µs a patch either way, BENCHMARKS.md "Long videos").
 */
export const VISION_GROUP_PATCHES = 32768;

/** The tower's buffers for a pass of up to `patches` patches in `cuLength − 1` frames. */
export interface VisionScratch {
  pv: GPUBuffer; // (patches, 1176) f32 pixel values
  pos: GPUBuffer; // (patches, 2) u32 (h, w) positions
  cu: GPUBuffer; // (frames + 1) u32 cu_seqlens
  x: GPUBuffer; // (patches, E) f32 residual stream
  h: GPUBuffer; // (patches, E) f32 normed; after ln_q viewed as (patches/4, 4E)
  qkv: GPUBuffer; // (patches, 3E) f32 rows [q | k | v]
  o: GPUBuffer; // (patches, E) f32 attention output
  f: GPUBuffer; // (patches, M) f32 MLP hidden
  m1: GPUBuffer; // (patches/4, D) f32 merger hidden
  out: GPUBuffer; // (patches/4, H) f32 image embeddings
}

function visionScratch(gpu: Gpu, v: VisionConfig, P: number, cuLength: number): VisionScratch {
  const E = v.embedDim, M = v.mlpHidden, D = v.mergedDim, H = v.outHidden;
  const merged = P / (v.spatialMergeSize * v.spatialMergeSize);
  const buf = (bytes: number, label: string) => createStorage(gpu, bytes, label);
  return {
    pv: buf(P * v.patchDim * 4, "vision.pixel_values"),
    pos: buf(P * 2 * 4, "vision.pos"),
    cu: buf(cuLength * 4, "vision.cu_seqlens"),
    x: buf(P * E * 4, "vision.x"),
    h: buf(P * E * 4, "vision.h"),
    qkv: buf(P * 3 * E * 4, "vision.qkv"),
    o: buf(P * E * 4, "vision.attn"),
    f: buf(P * M * 4, "vision.mlp"),
    m1: buf(merged * D * 4, "vision.merger"),
    out: buf(merged * H * 4, "image_embeds"),
  };
}

/**
 * Throws InvalidInputError where the image embeddings of `tokens` vision tokens ((tokens, LLM
 * hidden) f32, which the prefill binds whole) are more than one storage binding holds (128 MiB on
 * software adapters: 9362 tokens at 7B; an H100 / H200's 2 GiB hold more than a context).
 */
export function checkEmbedsFit(v: VisionConfig, tokens: number, maxBinding: number): void {
  const bytes = tokens * v.outHidden * 4;
  if (bytes <= maxBinding) return;
  throw new InvalidInputError(
    `the images and videos to encode make ${tokens} vision tokens, ${fmtBytes(bytes)} of ` +
      `embeddings; this GPU adapter (storage bindings of at most ${fmtBytes(maxBinding)}) holds ` +
      `${Math.floor(maxBinding / (v.outHidden * 4))}: send fewer frames or smaller images`,
  );
}

/** Patches one pass may hold on an adapter of `maxBinding`-byte storage bindings. */
function bindingPatches(v: VisionConfig, maxBinding: number): number {
  return Math.floor(maxBinding / (4 * Math.max(v.patchDim, v.mlpHidden, 3 * v.embedDim)));
}

/**
 * `grids` cut into the groups the tower runs one after another: whole temporal patches (t = 1
 * slices of a grid: a frame's patches attend only to each other) in order, at most `most` patches
 * a group, a video split between groups where it must ([t1, h, w] then [t2, h, w]). A frame larger
 * than `most` is a group of its own.
 */
export function visionGroups(
  grids: readonly GridThw[],
  most: number,
): { grids: GridThw[]; patches: number }[] {
  const groups: { grids: GridThw[]; patches: number }[] = [];
  let cur: { grids: GridThw[]; patches: number } = { grids: [], patches: 0 };
  for (const [t, h, w] of grids) {
    let left = t;
    while (left > 0) {
      if (cur.patches > 0 && cur.patches + h * w > most) {
        groups.push(cur);
        cur = { grids: [], patches: 0 };
      }
      const frames = Math.max(1, Math.min(left, Math.floor((most - cur.patches) / (h * w))));
      cur.grids.push([frames, h, w]);
      cur.patches += frames * h * w;
      left -= frames;
    }
  }
  if (cur.patches > 0) groups.push(cur);
  return groups;
}

/**
 * Layers per submitted batch (vision tower and prefill). Building a Dispatch costs CPU time (a
 * params buffer, a bind group: ≈ 0.1 ms each in Deno on the H200 machine, 25–33 ms for the 7B
 * vision tower's ~290), and one batch for the whole tower kept the GPU idle until all of them were
 * built; batches of 4 layers let it start on the first while the CPU builds the rest. H200,
 * 2026-11-28 12:41, bench/main.ts 7B f16, 478 tokens with a 644×476 image, one batch → 4 layers:
 * vision 0.134 / 0.129 → 0.106 / 0.104 s, prefill 0.255 / 0.251 → 0.230 / 0.228 s, TTFT 0.345 /
 * 0.340 → 0.319 / 0.317 s (text only: 0.256 / 0.241 → 0.231 / 0.231 s).
 */
export const SUBMIT_LAYERS = 4;

/**
 * Whether the layers before `layer` go to the GPU before it is built: after the first layer alone
 * (the GPU starts one layer's build in, not four: ≈ 4 ms sooner at 7B), then every
 * {@link SUBMIT_LAYERS}.
 */
export function submitBefore(layer: number): boolean {
  return layer === 1 || (layer > 0 && layer % SUBMIT_LAYERS === 0);
}

/**
 * Encodes dispatches in one compute pass, submits, and frees their params buffers (params in an
 * active kernels/_kernel.ts ParamsArena are written to the GPU first).
 */
export function submit(gpu: Gpu, ds: readonly Dispatch[], label: string): void {
  gpu.paramsArena?.flush();
  if (gpu.submitHook) {
    gpu.submitHook(label, ds);
  } else {
    const enc = gpu.device.createCommandEncoder({ label });
    const pass = enc.beginComputePass({ label });
    for (const d of ds) d.encode(pass);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
  }
  for (const d of ds) d.destroy();
}

/**
 * Throws InvalidInputError where images encoded together, `patches` in all, are more than this
 * adapter can encode at once: its largest activations ((patches, mlp hidden) f32, the pixel
 * values, qkv) must each fit one storage binding (128 MiB on software adapters: about 1.3
 * megapixels for Qwen2-VL's towers, whose MLP is 5120 wide; 2 GiB on an H100 / H200: 21
 * megapixels). The message names the most it takes.
 */
export function checkPatchesFit(v: VisionConfig, patches: number, maxBinding: number): void {
  const perPatch = 4 * Math.max(v.patchDim, v.mlpHidden, 3 * v.embedDim); // bytes, the largest row
  if (patches * perPatch <= maxBinding) return;
  const most = Math.floor(maxBinding / perPatch);
  const px = (most * v.patchSize * v.patchSize / 1e6).toFixed(1);
  throw new InvalidInputError(
    `the images to encode make ${patches} patches of ${v.patchSize} × ${v.patchSize} pixels; ` +
      `this GPU adapter (storage bindings of at most ${fmtBytes(maxBinding)}) encodes at most ` +
      `${most} at once (about ${px} megapixels in all): send smaller or fewer images`,
  );
}
