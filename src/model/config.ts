/**
 * Qwen2-VL `config.json`: parsing (the legacy flat format of the hub checkpoints AND the
 * transformers-5 nested `text_config` / `vision_config` format) and validation with errors that
 * name the file, the field and the bad value.
 *
 * Ported from transformers' configuration_qwen2_vl.py:
 * ```python
 * class Qwen2VLVisionConfig(PreTrainedConfig):
 *     depth: int = 32; embed_dim: int = 1280; hidden_size: int = 3584; hidden_act: str = "quick_gelu"
 *     mlp_ratio: int = 4; num_heads: int = 16; in_channels: int = 3; patch_size = 14
 *     spatial_merge_size: int = 2; temporal_patch_size = 2
 * class Qwen2VLConfig(PreTrainedConfig):
 *     def __post_init__(self, **kwargs):
 *         # Hub configs are saved as flat dicts so we pop some of kwargs to init `TextConfig`
 *         if self.text_config is None:
 *             self.text_config = {key: kwargs.pop(key) for key in text_params if key in kwargs}
 *         ...
 *         if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
 *             self.tie_word_embeddings = True
 * ```
 * @module
 */
import { ModelFileError } from "../errors.ts";
import { QUANT_OPTION } from "./quantize.ts";

/** The vision tower (ViT + patch merger). */
export interface VisionConfig {
  /** Number of ViT blocks (32 for every released Qwen2-VL). */
  depth: number;
  /** ViT width (1280). */
  embedDim: number;
  /** Attention heads (16). */
  numHeads: number;
  /** embedDim / numHeads (80). */
  headDim: number;
  /** fc1 width: int(embedDim · mlp_ratio) (5120). */
  mlpHidden: number;
  /** Image channels (3). */
  inChannels: number;
  /** Patch side in pixels (14). */
  patchSize: number;
  /** Frames per patch (2; an image is repeated to fill them). */
  temporalPatchSize: number;
  /** Side of the patch block the merger fuses into one LLM token (2). */
  spatialMergeSize: number;
  /** One patch row of pixel_values: inChannels · temporalPatchSize · patchSize² (1176). */
  patchDim: number;
  /** The merger's input width: embedDim · spatialMergeSize² (5120). */
  mergedDim: number;
  /** The merger's output width = the LLM hidden size (vision_config.hidden_size). */
  outHidden: number;
  /** 2D rotary base (transformers' axial rope default). */
  ropeTheta: number;
  /** LayerNorm eps of norm1/norm2/ln_q (hard-coded 1e-6 in transformers). */
  layerNormEps: number;
}

/** The Qwen2 language model. */
export interface TextConfig {
  /** Rows of embed_tokens and lm_head (151936 for 2B, 152064 for 7B/72B). */
  vocabSize: number;
  /** Residual width (1536 / 3584 / 8192). */
  hiddenSize: number;
  /** MLP width per branch (gate, up). */
  intermediateSize: number;
  /** Decoder layers. */
  numLayers: number;
  /** Query heads. */
  numHeads: number;
  /** Key/value heads (grouped-query attention). */
  numKvHeads: number;
  /** hiddenSize / numHeads (128 for the released models). */
  headDim: number;
  /** RMSNorm epsilon. */
  rmsNormEps: number;
  /** Rotary base. */
  ropeTheta: number;
  /** Rotary indices per M-RoPE axis (t, h, w); sums to headDim / 2. */
  mropeSection: [number, number, number];
  /** The context the model was trained for (32768). */
  maxPositionEmbeddings: number;
}

/** A validated Qwen2-VL configuration. */
export interface Qwen2VLConfig {
  /** The language model. */
  text: TextConfig;
  /** The vision tower and merger. */
  vision: VisionConfig;
  /** lm_head shares embed_tokens' weight (2B and the tiny test model; not 7B / QVQ-72B). */
  tieWordEmbeddings: boolean;
  /** `<|image_pad|>`: the prompt positions image embeddings replace. */
  imageTokenId: number;
  /** `<|video_pad|>` (videos are not supported yet). */
  videoTokenId: number;
  /** `<|vision_start|>`. */
  visionStartTokenId: number;
  /** `<|vision_end|>`. */
  visionEndTokenId: number;
  /** From config.json (generation_config.json may add more stop ids). */
  eosTokenIds: number[];
  /** The checkpoint's storage dtype as declared ("bfloat16"), informational. */
  torchDtype?: string;
}

type Json = Record<string, unknown>;

const ARCHITECTURE = "Qwen2VLForConditionalGeneration";

/**
 * Parses and validates a Qwen2-VL config.
 * @param json the parsed config.json
 * @param file the file name used in error messages
 * @throws ModelFileError naming `file`, the field and its value when anything is missing,
 *   inconsistent or not Qwen2-VL (e.g. Qwen2.5-VL, whose vision tower differs).
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 * import { PRESETS } from "./presets.ts";
 * const cfg = parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]);
 * cfg.text.headDim; // 128
 * ```
 */
export function parseConfig(json: unknown, file = "config.json"): Qwen2VLConfig {
  const bad = (msg: string) => new ModelFileError(`${file}: ${msg}`);
  if (!isObject(json)) throw bad(`expected a JSON object, got ${describe(json)}`);
  const modelType = json.model_type;
  if (modelType !== "qwen2_vl") {
    throw bad(
      `model_type is ${JSON.stringify(modelType)}, but qvq runs only "qwen2_vl" checkpoints ` +
        `(Qwen2-VL-2B/7B/72B-Instruct, QVQ-72B-Preview)`,
    );
  }
  const arch = json.architectures;
  if (arch !== undefined && (!Array.isArray(arch) || !arch.includes(ARCHITECTURE))) {
    throw bad(`architectures is ${JSON.stringify(arch)}, expected ["${ARCHITECTURE}"]`);
  }
  refuseQuantized(json, file);
  // transformers-5 nests the LLM fields in text_config; the hub's legacy files keep them flat.
  const nested = json.text_config;
  if (nested !== undefined && !isObject(nested)) {
    throw bad(`text_config must be an object, got ${describe(nested)}`);
  }
  const t: Json = nested ?? json;
  const tPath = nested ? "text_config." : "";
  const vj = json.vision_config;
  if (!isObject(vj)) throw bad(`vision_config is missing or not an object (${describe(vj)})`);
  const r = new Reader(file);

  const text = parseText(r, t, tPath);
  const vision = parseVision(r, vj, text.hiddenSize);
  // Top-level keys win; the legacy layout has them top-level, transformers 5 may also repeat them.
  const tokenId = (k: string, dflt: number) =>
    json[k] !== undefined ? r.int(json, k, "", dflt) : r.int(t, k, tPath, dflt);
  // transformers 5: the top-level value (default false), set true where text_config's says so
  // (pre-v5 saves put it there) — a top-level false does not override a nested true.
  const tieAt = (o: Json, path: string) => {
    const v = o.tie_word_embeddings ?? false;
    if (typeof v !== "boolean") {
      throw bad(`${path}tie_word_embeddings must be true or false, got ${describe(v)}`);
    }
    return v;
  };
  const [tieTop, tieText] = [tieAt(json, ""), tieAt(t, tPath)]; // both checked
  const tie = tieTop || tieText;
  const eosRaw = json.eos_token_id ?? t.eos_token_id;
  const eosTokenIds = eosRaw === undefined || eosRaw === null
    ? []
    : (Array.isArray(eosRaw) ? eosRaw : [eosRaw]).map((v, i) => {
      if (!Number.isInteger(v) || (v as number) < 0) {
        throw bad(`eos_token_id[${i}] must be a token id, got ${describe(v)}`);
      }
      return v as number;
    });
  const dt = json.torch_dtype ?? json.dtype ?? t.torch_dtype ?? t.dtype;
  return {
    text,
    vision,
    tieWordEmbeddings: tie,
    imageTokenId: tokenId("image_token_id", 151655),
    videoTokenId: tokenId("video_token_id", 151656),
    visionStartTokenId: tokenId("vision_start_token_id", 151652),
    visionEndTokenId: tokenId("vision_end_token_id", 151653),
    eosTokenIds,
    torchDtype: typeof dt === "string" ? dt : undefined,
  };
}

/**
 * Refuses a checkpoint quantized by another tool (AWQ, GPTQ, bitsandbytes, FP8, …): its
 * config.json has a `quantization_config`, and its matrices are stored in that tool's packed form
 * (AWQ / GPTQ: `q_proj.qweight` I32, `qzeros`, `scales`), not as the float tensors qvq reads.
 */
function refuseQuantized(json: Json, file: string): void {
  const q = json.quantization_config;
  if (q === undefined || q === null) return;
  const method = isObject(q) ? q.quant_method : undefined;
  const bits = isObject(q) && typeof q.bits === "number" ? `, ${q.bits}-bit` : "";
  throw new ModelFileError(
    `${file}: quantization_config says the checkpoint is already quantized (quant_method ` +
      `${describe(method)}${bits}), its weights stored in that method's packed form, which qvq ` +
      `cannot read. qvq loads bf16, f16 or f32 safetensors and quantizes them itself while ` +
      `loading: use the original unquantized checkpoint (e.g. Qwen/Qwen2-VL-7B-Instruct, not ` +
      `Qwen/Qwen2-VL-7B-Instruct-AWQ) with ${QUANT_OPTION}`,
  );
}

/*
 * class Qwen2VLTextConfig: vocab_size 152064, hidden_size 8192, intermediate_size 29568,
 *   num_hidden_layers 80, num_attention_heads 64, num_key_value_heads 8, hidden_act "silu",
 *   rms_norm_eps 1e-05, use_sliding_window False, rope_parameters (rope_theta default 1e6)
 * def convert_rope_params_to_dict(self, **kwargs):
 *     rope_scaling = kwargs.pop("rope_scaling", None)
 *     self.rope_parameters = rope_scaling or self.rope_parameters
 *     self.rope_parameters.setdefault("rope_theta", kwargs.pop("rope_theta", self.default_theta))
 * Qwen2VLRotaryEmbedding: self.mrope_section = config.rope_parameters.get("mrope_section", [16, 24, 24])
 * Qwen2VLAttention: self.head_dim = self.hidden_size // self.num_heads
 */
function parseText(r: Reader, t: Json, p: string): TextConfig {
  const hiddenSize = r.int(t, "hidden_size", p, 8192);
  const numHeads = r.int(t, "num_attention_heads", p, 64);
  const numKvHeads = t.num_key_value_heads === null
    ? numHeads
    : r.int(t, "num_key_value_heads", p, 8);
  const act = t.hidden_act ?? "silu";
  if (act !== "silu") r.fail(`${p}hidden_act is ${describe(act)}; Qwen2's MLP uses "silu"`);
  if (t.use_sliding_window === true) {
    r.fail(
      `${p}use_sliding_window is true; qvq implements full attention only (every released ` +
        `Qwen2-VL sets it false)`,
    );
  }
  if (hiddenSize % numHeads) {
    r.fail(`${p}hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  }
  if (numHeads % numKvHeads) {
    r.fail(
      `${p}num_attention_heads ${numHeads} is not divisible by num_key_value_heads ${numKvHeads}`,
    );
  }
  const headDim = hiddenSize / numHeads;
  // transformers' attention ignores a head_dim field and uses hidden/heads; a different value
  // would mean a checkpoint made for another implementation.
  if (t.head_dim !== undefined && t.head_dim !== null && t.head_dim !== headDim) {
    r.fail(
      `${p}head_dim is ${describe(t.head_dim)} but hidden_size / num_attention_heads = ${headDim}`,
    );
  }
  if (headDim % 2) {
    r.fail(`head dim ${headDim} (hidden_size / num_attention_heads) must be even for RoPE`);
  }
  const rope = t.rope_scaling ?? t.rope_parameters;
  const ropePath = t.rope_scaling !== undefined ? `${p}rope_scaling` : `${p}rope_parameters`;
  if (rope !== undefined && rope !== null && !isObject(rope)) {
    r.fail(`${ropePath} must be an object, got ${describe(rope)}`);
  }
  const ro = (rope ?? {}) as Json;
  const ropeType = ro.rope_type ?? ro.type ?? "default";
  if (ropeType !== "mrope" && ropeType !== "default") {
    r.fail(
      `${ropePath}.type is ${describe(ropeType)}; Qwen2-VL uses "mrope" (plain M-RoPE, no scaling)`,
    );
  }
  const ropeTheta = ro.rope_theta !== undefined
    ? r.num(ro, "rope_theta", `${ropePath}.`, 1e6)
    : r.num(t, "rope_theta", p, 1e6);
  const sec = ro.mrope_section ?? [16, 24, 24];
  if (!Array.isArray(sec) || sec.length !== 3 || !sec.every((s) => Number.isInteger(s) && s >= 0)) {
    r.fail(
      `${ropePath}.mrope_section must be three non-negative integers (t, h, w), got ${
        describe(sec)
      }`,
    );
  }
  const mropeSection = sec as [number, number, number];
  if (mropeSection[0] + mropeSection[1] + mropeSection[2] !== headDim / 2) {
    r.fail(
      `${ropePath}.mrope_section ${JSON.stringify(sec)} sums to ` +
        `${mropeSection[0] + mropeSection[1] + mropeSection[2]}, but must cover head_dim / 2 = ${
          headDim / 2
        }`,
    );
  }
  return {
    vocabSize: r.int(t, "vocab_size", p, 152064),
    hiddenSize,
    intermediateSize: r.int(t, "intermediate_size", p, 29568),
    numLayers: r.int(t, "num_hidden_layers", p, 80),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: r.num(t, "rms_norm_eps", p, 1e-5),
    ropeTheta,
    mropeSection,
    maxPositionEmbeddings: r.int(t, "max_position_embeddings", p, 32768),
  };
}

/*
 * PatchMerger: self.hidden_size = context_dim * (spatial_merge_size**2)
 *   nn.Linear(self.hidden_size, self.hidden_size), nn.GELU(), nn.Linear(self.hidden_size, dim)
 * Qwen2VLVisionBlock: mlp_hidden_dim = int(config.embed_dim * config.mlp_ratio)
 * Qwen2VLVisionRotaryEmbedding: dim = embed_dim // num_attention_heads; spatial_dim = dim // 2
 *   inv_freq = 1.0 / (base ** (torch.arange(0, spatial_dim, 2, dtype=torch.float) / spatial_dim))
 */
function parseVision(r: Reader, v: Json, textHidden: number): VisionConfig {
  const p = "vision_config.";
  const embedDim = r.int(v, "embed_dim", p, 1280);
  const numHeads = r.int(v, "num_heads", p, 16);
  const act = v.hidden_act ?? "quick_gelu";
  if (act !== "quick_gelu") {
    r.fail(`${p}hidden_act is ${describe(act)}; Qwen2-VL's vision MLP uses "quick_gelu"`);
  }
  if (embedDim % numHeads) {
    r.fail(`${p}embed_dim ${embedDim} is not divisible by num_heads ${numHeads}`);
  }
  const headDim = embedDim / numHeads;
  // The 2D rope splits head_dim/2 rotary indices evenly between h and w.
  if (headDim % 4) {
    r.fail(`vision head dim ${headDim} (embed_dim / num_heads) must be a multiple of 4`);
  }
  const mlpRatio = r.num(v, "mlp_ratio", p, 4);
  const mlpHidden = Math.trunc(embedDim * mlpRatio);
  // Legacy files say in_chans / spatial_patch_size; transformers 5 says in_channels / patch_size.
  const inChannels = r.int(v, v.in_channels !== undefined ? "in_channels" : "in_chans", p, 3);
  const patchSize = r.int(
    v,
    v.patch_size !== undefined ? "patch_size" : "spatial_patch_size",
    p,
    14,
  );
  const temporalPatchSize = r.int(v, "temporal_patch_size", p, 2);
  const spatialMergeSize = r.int(v, "spatial_merge_size", p, 2);
  const outHidden = r.int(v, "hidden_size", p, textHidden);
  if (outHidden !== textHidden) {
    r.fail(
      `${p}hidden_size ${outHidden} (the merger's output) must equal the LLM hidden_size ${textHidden}`,
    );
  }
  const rp = isObject(v.rope_parameters) ? v.rope_parameters : {};
  return {
    depth: r.int(v, "depth", p, 32),
    embedDim,
    numHeads,
    headDim,
    mlpHidden,
    inChannels,
    patchSize,
    temporalPatchSize,
    spatialMergeSize,
    patchDim: inChannels * temporalPatchSize * patchSize * patchSize,
    mergedDim: embedDim * spatialMergeSize * spatialMergeSize,
    outHidden,
    ropeTheta: r.num(rp, "rope_theta", `${p}rope_parameters.`, 10000),
    layerNormEps: 1e-6,
  };
}

/** Reads typed fields, failing with the file, dotted path and value. */
class Reader {
  constructor(readonly file: string) {}
  fail(msg: string): never {
    throw new ModelFileError(`${this.file}: ${msg}`);
  }
  int(o: Json, key: string, path: string, dflt: number): number {
    const v = o[key] ?? dflt;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      this.fail(`${path}${key} must be a positive integer, got ${describe(v)}`);
    }
    return v;
  }
  num(o: Json, key: string, path: string, dflt: number): number {
    const v = o[key] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      this.fail(`${path}${key} must be a positive number, got ${describe(v)}`);
    }
    return v;
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}
