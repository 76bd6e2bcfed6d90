/**
 * A synthetic bf16 checkpoint of a Qwen2-VL shape on disk (the hub's layout and names, 4 GiB
 * shards), written with src/safetensors.ts's streaming writer: what bench/main.ts --checkpoint
 * --write-checkpoint loads to measure real load throughput (file → conversion → GPU).
 * @module
 */
import { writeShardedSafetensors } from "../src/safetensors.ts";
import { parseConfig } from "../src/model/config.ts";
import { checkpointTensors } from "../src/model/_sparse.ts";

/**
 * Writes config.json and bf16 shards of random N(0, ~0.01)-sized values into `dir`, unless an
 * index is already there. Returns the bytes written (0 if it existed).
 */
export async function writeSyntheticCheckpoint(
  config: Record<string, unknown>,
  dir: string,
  seed: number,
): Promise<number> {
  const cfg = parseConfig(config, `${dir}/config.json`);
  if (await Deno.stat(`${dir}/model.safetensors.index.json`).catch(() => null)) return 0;
  await Deno.mkdir(dir, { recursive: true });
  let s = (seed ^ 0x9e3779b9) | 1;
  const specs = checkpointTensors(cfg, "legacy").map((t) => ({
    ...t,
    // bf16 bits: random sign and mantissa, exponent 2^-6..2^-9 (|v| ≈ 0.002..0.03), from xorshift.
    fill(out: Float32Array | Int32Array | Uint16Array) {
      const o = out as Uint16Array;
      for (let i = 0; i < o.length; i++) {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        o[i] = (s & 0x807f) | ((0x3c + ((s >>> 8) & 3)) << 7);
      }
    },
  }));
  let bytes = 0;
  await writeShardedSafetensors(specs, {
    maxShardBytes: 4 << 30,
    open: async (f) => {
      const file = await Deno.create(`${dir}/${f}`);
      return new WritableStream<Uint8Array>({
        async write(chunk) {
          bytes += chunk.length;
          for (let o = 0; o < chunk.length;) o += await file.write(chunk.subarray(o));
        },
        close() {
          file.close();
        },
      });
    },
  });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  return bytes;
}
