import assert from "node:assert/strict";
import { ModelFileError } from "../errors.ts";
import { parseConfig } from "./config.ts";
import { PRESETS } from "./presets.ts";
import { TINY_DIR } from "./_fixture.ts";

const tiny = () => JSON.parse(Deno.readTextFileSync(`${TINY_DIR}config.json`));

Deno.test("parseConfig() reads the fixture's legacy flat config.json", () => {
  const c = parseConfig(tiny());
  assert.deepEqual(c.text, {
    vocabSize: 151936,
    hiddenSize: 32,
    intermediateSize: 64,
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 1,
    headDim: 16,
    rmsNormEps: 1e-6,
    ropeTheta: 1e6,
    mropeSection: [2, 3, 3],
    maxPositionEmbeddings: 32768,
  });
  assert.deepEqual(c.vision, {
    depth: 2,
    embedDim: 32,
    numHeads: 2,
    headDim: 16,
    mlpHidden: 128,
    inChannels: 3,
    patchSize: 14,
    temporalPatchSize: 2,
    spatialMergeSize: 2,
    patchDim: 1176,
    mergedDim: 128,
    outHidden: 32,
    ropeTheta: 10000,
    layerNormEps: 1e-6,
  });
  assert.equal(c.tieWordEmbeddings, true);
  assert.equal(c.imageTokenId, 151655);
  assert.deepEqual(c.eosTokenIds, [151645]);
  assert.equal(c.torchDtype, "bfloat16");
});

Deno.test("parseConfig() reads the transformers-5 nested text_config format identically", () => {
  const flat = tiny();
  const textKeys = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "rms_norm_eps",
    "max_position_embeddings",
    "hidden_act",
    "eos_token_id",
  ];
  const text_config: Record<string, unknown> = { model_type: "qwen2_vl_text" };
  for (const k of textKeys) text_config[k] = flat[k];
  text_config.rope_parameters = { rope_type: "default", mrope_section: [2, 3, 3], rope_theta: 1e6 };
  text_config.tie_word_embeddings = true; // pre-v5 placement, forwarded like transformers does
  const v = flat.vision_config;
  const nested = {
    architectures: ["Qwen2VLForConditionalGeneration"],
    model_type: "qwen2_vl",
    image_token_id: 151655,
    dtype: "bfloat16",
    text_config,
    vision_config: {
      model_type: "qwen2_vl_vision",
      depth: v.depth,
      embed_dim: v.embed_dim,
      mlp_ratio: v.mlp_ratio,
      num_heads: v.num_heads,
      in_channels: 3,
      hidden_size: v.hidden_size,
      patch_size: 14,
      spatial_merge_size: 2,
      temporal_patch_size: 2,
      hidden_act: "quick_gelu",
      rope_parameters: { rope_type: "axial", rope_theta: 10000 },
    },
  };
  assert.deepEqual(parseConfig(nested), parseConfig(flat));
});

Deno.test("parseConfig() ties lm_head where either the top level or text_config says so, as transformers 5.24", () => {
  // [top-level, text_config's, Qwen2VLConfig(**config).tie_word_embeddings in transformers 5.24]
  const cases: [boolean | undefined, boolean | undefined, boolean][] = [
    [undefined, undefined, false],
    [undefined, true, true],
    [undefined, false, false],
    [true, undefined, true],
    [true, false, true],
    [false, undefined, false],
    [false, true, true], // a v5 save of a pre-v5 config: the nested true wins over the default
    [false, false, false],
  ];
  // The tiny config in transformers 5's layout: the LLM's fields in text_config.
  const nested = () => {
    const { architectures, model_type, vision_config, ...text_config } = tiny();
    delete text_config.tie_word_embeddings;
    return { architectures, model_type, vision_config, text_config };
  };
  for (const [top, text, want] of cases) {
    const c: any = nested();
    if (top !== undefined) c.tie_word_embeddings = top;
    if (text !== undefined) c.text_config.tie_word_embeddings = text;
    assert.equal(parseConfig(c).tieWordEmbeddings, want, `top ${top}, text_config ${text}`);
  }
  const c: any = nested();
  c.text_config.tie_word_embeddings = "yes";
  assert.throws(
    () => parseConfig(c),
    /text_config\.tie_word_embeddings must be true or false, got "yes"/,
  );
  // Checked beside a top-level true too (the true does not hide it).
  c.tie_word_embeddings = true;
  assert.throws(() => parseConfig(c), /text_config\.tie_word_embeddings must be true or false/);
});

Deno.test("parseConfig() refuses a checkpoint another tool quantized, naming its method and qvq's own quant option", () => {
  // quantization_config as Qwen/Qwen2-VL-7B-Instruct-AWQ, -GPTQ-Int4 and a bitsandbytes save have it.
  const cases: [Record<string, unknown>, string][] = [
    [
      { bits: 4, group_size: 128, quant_method: "awq", version: "gemm", zero_point: true },
      '"awq", 4-bit',
    ],
    [
      { bits: 4, group_size: 128, desc_act: false, quant_method: "gptq", sym: true },
      '"gptq", 4-bit',
    ],
    [
      { load_in_4bit: true, bnb_4bit_quant_type: "nf4", quant_method: "bitsandbytes" },
      '"bitsandbytes"',
    ],
  ];
  for (const [quantization_config, method] of cases) {
    assert.throws(
      () => parseConfig({ ...tiny(), quantization_config }, "awq/config.json"),
      (e: Error) => {
        assert.ok(e instanceof ModelFileError, String(e));
        assert.equal(
          e.message,
          `awq/config.json: quantization_config says the checkpoint is already quantized ` +
            `(quant_method ${method}), its weights stored in that method's packed form, which ` +
            `qvq cannot read. qvq loads bf16, f16 or f32 safetensors and quantizes them itself ` +
            `while loading: use the original unquantized checkpoint (e.g. ` +
            `Qwen/Qwen2-VL-7B-Instruct, not Qwen/Qwen2-VL-7B-Instruct-AWQ) with quant: "q8" or ` +
            `"q4" (Pipeline.load's option; CLI --quant q8|q4; server QVQ_QUANT=q8|q4)`,
        );
        return true;
      },
    );
  }
  // null (as some tools write it) means not quantized.
  assert.equal(parseConfig({ ...tiny(), quantization_config: null }).text.hiddenSize, 32);
});

Deno.test("parseConfig() gives the real shapes of the presets", () => {
  const q = parseConfig(PRESETS["QVQ-72B-Preview"]);
  assert.equal(q.text.hiddenSize, 8192);
  assert.equal(q.text.numLayers, 80);
  assert.equal(q.text.numHeads, 64);
  assert.equal(q.text.numKvHeads, 8);
  assert.equal(q.text.headDim, 128);
  assert.equal(q.text.vocabSize, 152064);
  assert.equal(q.vision.headDim, 80);
  assert.equal(q.vision.mergedDim, 5120);
  assert.equal(q.vision.outHidden, 8192);
  assert.equal(q.tieWordEmbeddings, false);
  assert.equal(parseConfig(PRESETS["Qwen2-VL-2B-Instruct"]).tieWordEmbeddings, true);
  assert.equal(parseConfig(PRESETS["Qwen2-VL-7B-Instruct"]).text.numKvHeads, 4);
});

Deno.test("parseConfig() names the file and the bad value", () => {
  const cases: [(c: any) => void, RegExp][] = [
    [(c) => (c.model_type = "qwen2_5_vl"), /my\/config\.json: model_type is "qwen2_5_vl"/],
    [(c) => (c.architectures = ["LlamaForCausalLM"]), /architectures is \["LlamaForCausalLM"\]/],
    [(c) => delete c.vision_config, /vision_config is missing/],
    [(c) => (c.hidden_size = 33), /hidden_size 33 is not divisible by num_attention_heads 2/],
    [
      (c) => (c.num_key_value_heads = 3),
      /num_attention_heads 2 is not divisible by num_key_value_heads 3/,
    ],
    [
      (c) => (c.rope_scaling.mrope_section = [2, 3, 4]),
      /mrope_section \[2,3,4\] sums to 9.*head_dim \/ 2 = 8/,
    ],
    [(c) => (c.num_hidden_layers = "2"), /num_hidden_layers must be a positive integer, got "2"/],
    [
      (c) => (c.vision_config.hidden_size = 64),
      /vision_config\.hidden_size 64 .* must equal the LLM hidden_size 32/,
    ],
    [
      (c) => (c.vision_config.num_heads = 3),
      /vision_config\.embed_dim 32 is not divisible by num_heads 3/,
    ],
    [(c) => (c.use_sliding_window = true), /use_sliding_window is true/],
    [(c) => (c.hidden_act = "gelu"), /hidden_act is "gelu"/],
  ];
  for (const [mutate, msg] of cases) {
    const c = tiny();
    mutate(c);
    assert.throws(() => parseConfig(c, "my/config.json"), (e: Error) => {
      assert.ok(e instanceof ModelFileError, `${e}`);
      assert.match(e.message, msg);
      assert.match(e.message, /^my\/config\.json: /);
      return true;
    });
  }
});
