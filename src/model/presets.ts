/**
 * The real shapes of the released Qwen2-VL checkpoints, as the `config.json` each ships (legacy
 * flat format). Used to plan and test loading at full size without the multi-GB weights, and by
 * benchmarks that build random-weight models.
 * @module
 */

/** Builds a legacy-format Qwen2-VL config.json object. */
function qwen2vl(
  hidden: number,
  intermediate: number,
  layers: number,
  heads: number,
  kvHeads: number,
  vocab: number,
  tie: boolean,
): Record<string, unknown> {
  return {
    architectures: ["Qwen2VLForConditionalGeneration"],
    model_type: "qwen2_vl",
    attention_dropout: 0.0,
    bos_token_id: 151643,
    eos_token_id: 151645,
    vision_start_token_id: 151652,
    vision_end_token_id: 151653,
    vision_token_id: 151654,
    image_token_id: 151655,
    video_token_id: 151656,
    hidden_act: "silu",
    hidden_size: hidden,
    initializer_range: 0.02,
    intermediate_size: intermediate,
    max_position_embeddings: 32768,
    max_window_layers: layers,
    num_attention_heads: heads,
    num_hidden_layers: layers,
    num_key_value_heads: kvHeads,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    sliding_window: 32768,
    tie_word_embeddings: tie,
    torch_dtype: "bfloat16",
    use_cache: true,
    use_sliding_window: false,
    vocab_size: vocab,
    rope_scaling: { type: "mrope", mrope_section: [16, 24, 24] },
    vision_config: {
      depth: 32,
      embed_dim: 1280,
      mlp_ratio: 4,
      num_heads: 16,
      in_chans: 3,
      hidden_size: hidden,
      patch_size: 14,
      spatial_merge_size: 2,
      spatial_patch_size: 14,
      temporal_patch_size: 2,
    },
  };
}

/**
 * config.json of each released model. Text heads are all 128 wide, vision heads 80 (1280 / 16);
 * 2B ties lm_head to the embedding, 7B and 72B do not.
 */
export const PRESETS: Readonly<Record<PresetName, Record<string, unknown>>> = {
  "Qwen2-VL-2B-Instruct": qwen2vl(1536, 8960, 28, 12, 2, 151936, true),
  "Qwen2-VL-7B-Instruct": qwen2vl(3584, 18944, 28, 28, 4, 152064, false),
  "Qwen2-VL-72B-Instruct": qwen2vl(8192, 29568, 80, 64, 8, 152064, false),
  // QVQ-72B-Preview is Qwen2-VL-72B's architecture with reasoning-tuned weights.
  "QVQ-72B-Preview": qwen2vl(8192, 29568, 80, 64, 8, 152064, false),
};

/** Names of the models in {@link PRESETS}. */
export type PresetName =
  | "Qwen2-VL-2B-Instruct"
  | "Qwen2-VL-7B-Instruct"
  | "Qwen2-VL-72B-Instruct"
  | "QVQ-72B-Preview";
