/**
 * Test helpers: the tensor list of a Qwen2-VL checkpoint written out independently of
 * weights.ts (from the hub's layout), and sparse safetensors shards at real shapes (real
 * headers, data regions made by extending the file: zeros that take no disk).
 * @module
 */
import type { Qwen2VLConfig } from "./config.ts";
import type { Naming } from "./weights.ts";

/** A tensor of a checkpoint's header. */
export interface HeaderTensor {
  /** Checkpoint name. */
  name: string;
  /** Stored dtype. */
  dtype: "BF16" | "F16" | "F32";
  /** Dimensions. */
  shape: number[];
}

/** Every tensor a Qwen2-VL checkpoint stores, in the given naming, all BF16 like the hub's. */
export function checkpointTensors(
  cfg: Qwen2VLConfig,
  naming: Naming,
  withLmHead = !cfg.tieWordEmbeddings,
): HeaderTensor[] {
  const t = cfg.text, v = cfg.vision;
  const lm = naming === "legacy" ? "model." : "model.language_model.";
  const vis = naming === "legacy" ? "visual." : "model.visual.";
  const kv = t.numKvHeads * t.headDim;
  const out: HeaderTensor[] = [];
  const add = (name: string, ...shape: number[]) => out.push({ name, dtype: "BF16", shape });
  add(`${lm}embed_tokens.weight`, t.vocabSize, t.hiddenSize);
  for (let i = 0; i < t.numLayers; i++) {
    const l = `${lm}layers.${i}.`;
    add(`${l}self_attn.q_proj.weight`, t.hiddenSize, t.hiddenSize);
    add(`${l}self_attn.q_proj.bias`, t.hiddenSize);
    add(`${l}self_attn.k_proj.weight`, kv, t.hiddenSize);
    add(`${l}self_attn.k_proj.bias`, kv);
    add(`${l}self_attn.v_proj.weight`, kv, t.hiddenSize);
    add(`${l}self_attn.v_proj.bias`, kv);
    add(`${l}self_attn.o_proj.weight`, t.hiddenSize, t.hiddenSize);
    add(`${l}mlp.gate_proj.weight`, t.intermediateSize, t.hiddenSize);
    add(`${l}mlp.up_proj.weight`, t.intermediateSize, t.hiddenSize);
    add(`${l}mlp.down_proj.weight`, t.hiddenSize, t.intermediateSize);
    add(`${l}input_layernorm.weight`, t.hiddenSize);
    add(`${l}post_attention_layernorm.weight`, t.hiddenSize);
  }
  add(`${lm}norm.weight`, t.hiddenSize);
  if (withLmHead) add("lm_head.weight", t.vocabSize, t.hiddenSize);
  add(
    `${vis}patch_embed.proj.weight`,
    v.embedDim,
    v.inChannels,
    v.temporalPatchSize,
    v.patchSize,
    v.patchSize,
  );
  for (let i = 0; i < v.depth; i++) {
    const b = `${vis}blocks.${i}.`;
    for (const n of ["norm1", "norm2"]) {
      add(`${b}${n}.weight`, v.embedDim);
      add(`${b}${n}.bias`, v.embedDim);
    }
    add(`${b}attn.qkv.weight`, 3 * v.embedDim, v.embedDim);
    add(`${b}attn.qkv.bias`, 3 * v.embedDim);
    add(`${b}attn.proj.weight`, v.embedDim, v.embedDim);
    add(`${b}attn.proj.bias`, v.embedDim);
    add(`${b}mlp.fc1.weight`, v.mlpHidden, v.embedDim);
    add(`${b}mlp.fc1.bias`, v.mlpHidden);
    add(`${b}mlp.fc2.weight`, v.embedDim, v.mlpHidden);
    add(`${b}mlp.fc2.bias`, v.embedDim);
  }
  add(`${vis}merger.ln_q.weight`, v.embedDim);
  add(`${vis}merger.ln_q.bias`, v.embedDim);
  add(`${vis}merger.mlp.0.weight`, v.mergedDim, v.mergedDim);
  add(`${vis}merger.mlp.0.bias`, v.mergedDim);
  add(`${vis}merger.mlp.2.weight`, t.hiddenSize, v.mergedDim);
  add(`${vis}merger.mlp.2.bias`, t.hiddenSize);
  return out;
}

const DTYPE_SIZE = { BF16: 2, F16: 2, F32: 4 } as const;

/**
 * Writes `tensors` as sharded safetensors + model.safetensors.index.json in `dir`, each shard at
 * most `shardBytes` of data. The data is never written: the file is extended to its size, so a
 * 145 GB checkpoint costs a few MB of headers.
 */
export async function writeSparseCheckpoint(
  dir: string,
  tensors: HeaderTensor[],
  shardBytes: number,
): Promise<void> {
  const shards: HeaderTensor[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[t.dtype];
    if (size + n > shardBytes && shards[shards.length - 1].length) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(t);
    size += n;
  }
  const names = shards.map((_, i) =>
    `model-${String(i + 1).padStart(5, "0")}-of-${
      String(shards.length).padStart(5, "0")
    }.safetensors`
  );
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < shards.length; s++) {
    const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
    let off = 0;
    for (const t of shards[s]) {
      const n = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[t.dtype];
      header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
      weightMap[t.name] = names[s];
      off += n;
    }
    total += off;
    let json = new TextEncoder().encode(JSON.stringify(header));
    const padded = Math.ceil(json.length / 8) * 8; // the format pads the header with spaces to 8
    json = new TextEncoder().encode(JSON.stringify(header).padEnd(padded, " "));
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(json.length), true);
    const path = `${dir}/${names[s]}`;
    const f = await Deno.open(path, { write: true, create: true, truncate: true });
    await f.write(prefix);
    await f.write(json);
    await f.truncate(8 + json.length + off);
    f.close();
  }
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }),
  );
}
