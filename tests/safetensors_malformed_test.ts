/**
 * Every kind of malformed checkpoint, built on disk, must give a ModelFileError that names the
 * file and the tensor at fault — never a crash or a silently wrong tensor.
 */
import assert from "node:assert/strict";
import { ModelFileError } from "../src/errors.ts";
import { openModelSource } from "../src/model_files.ts";
import { SafetensorsCheckpoint, writeSafetensors } from "../src/safetensors.ts";

/** Bytes of a safetensors file: length prefix, `header` (an object, or raw text/bytes), data. */
function rawFile(header: object | string | Uint8Array, dataBytes: number, lengthOverride?: bigint) {
  const json = header instanceof Uint8Array
    ? header
    : new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

/** An F32 tensor entry. */
const f32 = (shape: number[], begin: number, end: number) => ({
  dtype: "F32",
  shape,
  data_offsets: [begin, end],
});

/** Writes `files` into a fresh temp dir, runs `body` with it, removes it. */
async function inDir(
  files: Record<string, Uint8Array | string>,
  body: (dir: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "qvq-bad-st-" });
  try {
    for (const [name, data] of Object.entries(files)) {
      await Deno.writeFile(
        `${dir}/${name}`,
        typeof data === "string" ? new TextEncoder().encode(data) : data,
      );
    }
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts that opening the checkpoint in a dir holding `files` fails naming each of `parts`. */
async function assertOpenFails(
  files: Record<string, Uint8Array | string>,
  parts: (dir: string) => string[],
) {
  await inDir(files, async (dir) => {
    const src = openModelSource(dir);
    await assert.rejects(SafetensorsCheckpoint.open(src), (e: Error) => {
      assert.ok(e instanceof ModelFileError, `${e.name}: ${e.message}`);
      for (const p of parts(dir)) assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
      return true;
    });
    src.close();
  });
}

const single = (bytes: Uint8Array) => ({ "model.safetensors": bytes });
const FILE = (dir: string) => `Malformed safetensors file ${dir}/model.safetensors: `;

Deno.test("a header length past the end of the file is a ModelFileError naming the file", async () => {
  await assertOpenFails(
    single(rawFile({ w: f32([1], 0, 4) }, 4, 5000n)),
    (d) => [FILE(d), "header length 5000 bytes runs past the end of the file", "truncated"],
  );
});

Deno.test("a file shorter than 8 bytes is a ModelFileError", async () => {
  await assertOpenFails(single(new Uint8Array(5)), (d) => [FILE(d), "5 bytes long, too short"]);
});

Deno.test("a header over 100 MB is a ModelFileError", async () => {
  await assertOpenFails(
    single(rawFile("{}", 0, 100_000_001n)),
    (d) => [FILE(d), "header length 100000001 bytes exceeds the 100000000-byte limit"],
  );
});

Deno.test("invalid JSON or UTF-8 in the header is a ModelFileError", async () => {
  await assertOpenFails(
    single(rawFile('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]', 4)),
    (d) => [FILE(d), "the header is not valid JSON", "expected ',' or '}'"],
  );
  const bad = new TextEncoder().encode(JSON.stringify({ "wé": f32([1], 0, 4) }));
  bad[3] = 0xff; // the second byte of "é"
  await assertOpenFails(single(rawFile(bad, 4)), (d) => [FILE(d), "not valid UTF-8 (byte 3)"]);
});

Deno.test("an unknown dtype names the tensor", async () => {
  await assertOpenFails(
    single(rawFile({ "layers.0.w": { dtype: "Q4", shape: [2], data_offsets: [0, 1] } }, 1)),
    (d) => [FILE(d), `tensor 'layers.0.w' has unknown dtype "Q4"`],
  );
});

Deno.test("shape × dtype size different from the byte range names the tensor", async () => {
  await assertOpenFails(
    single(rawFile({ a: f32([2], 0, 8), "layers.0.w": f32([3, 4], 8, 40) }, 40)),
    (
      d,
    ) => [
      FILE(d),
      "tensor 'layers.0.w' has shape [3, 4] of F32 (48 bytes) but data_offsets [8, 40] hold 32 bytes",
    ],
  );
});

Deno.test("offsets past the data, overlapping, or leaving gaps name the tensors", async () => {
  await assertOpenFails(
    single(rawFile({ a: f32([2], 0, 8), b: f32([2], 8, 16) }, 12)),
    (d) => [FILE(d), "tensor 'b' has data_offsets [8, 16] past the end of the 12-byte data buffer"],
  );
  await assertOpenFails(
    single(rawFile({ a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12)),
    (d) => [FILE(d), "tensor 'b' (bytes 4..12) overlaps tensor 'a' (bytes 0..8)"],
  );
  await assertOpenFails(
    single(rawFile({ a: f32([1], 0, 4), b: f32([1], 8, 12) }, 12)),
    (d) => [FILE(d), "4 unused bytes (4..8) between tensor 'a' and tensor 'b'"],
  );
  await assertOpenFails(
    single(rawFile({ a: f32([1], 0, 4) }, 9)),
    (d) => [FILE(d), "5 bytes follow the last tensor 'a' at the end of the file"],
  );
});

Deno.test("a truncated copy of a valid file names the tensor cut off", async () => {
  const good = writeSafetensors({
    a: { dtype: "F32", shape: [4], data: new Float32Array(4) },
    b: { dtype: "BF16", shape: [8], data: new Uint16Array(8) },
  });
  await assertOpenFails(
    single(good.subarray(0, good.length - 3)),
    (
      d,
    ) => [FILE(d), "tensor 'b' has data_offsets [16, 32] past the end of the 29-byte data buffer"],
  );
});

/** A valid two-shard checkpoint, as files for {@link inDir}, with its index editable. */
function sharded(edit?: (weightMap: Record<string, string>) => void) {
  const s1 = writeSafetensors({
    "embed.weight": { dtype: "BF16", shape: [4, 2], data: new Uint16Array(8) },
  });
  const s2 = writeSafetensors({
    "norm.weight": { dtype: "BF16", shape: [2], data: new Uint16Array(2) },
    "lm_head.weight": { dtype: "BF16", shape: [4, 2], data: new Uint16Array(8) },
  });
  const weightMap: Record<string, string> = {
    "embed.weight": "model-00001-of-00002.safetensors",
    "norm.weight": "model-00002-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors",
  };
  edit?.(weightMap);
  return {
    "model-00001-of-00002.safetensors": s1,
    "model-00002-of-00002.safetensors": s2,
    "model.safetensors.index.json": JSON.stringify({
      metadata: { total_size: 36 },
      weight_map: weightMap,
    }),
  };
}

Deno.test("the valid sharded checkpoint of these tests opens", async () => {
  await inDir(sharded(), async (dir) => {
    const ckpt = await SafetensorsCheckpoint.open(openModelSource(dir));
    assert.deepEqual(ckpt.tensors().map((t) => t.name), [
      "embed.weight",
      "lm_head.weight",
      "norm.weight",
    ]);
    ckpt.close();
  });
});

Deno.test("a shard named in the index but missing names the shard and the index", async () => {
  const files: Record<string, Uint8Array | string> = sharded();
  delete files["model-00002-of-00002.safetensors"];
  await assertOpenFails(files, (d) => [
    `Shard "model-00002-of-00002.safetensors" named in ${d}/model.safetensors.index.json is missing from ${d}`,
  ]);
});

Deno.test("a tensor missing from the index, or from its shard, is named", async () => {
  await assertOpenFails(sharded((m) => delete m["norm.weight"]), (d) => [
    `Tensor "norm.weight" is in shard ${d}/model-00002-of-00002.safetensors but ${d}/model.safetensors.index.json does not list it`,
  ]);
  await assertOpenFails(
    sharded((m) => (m["norm.weight"] = "model-00001-of-00002.safetensors")),
    (d) => [
      `Tensor "norm.weight" is in shard ${d}/model-00002-of-00002.safetensors but ${d}/model.safetensors.index.json lists it in "model-00001-of-00002.safetensors"`,
    ],
  );
  await assertOpenFails(
    sharded((m) => (m["visual.merger.weight"] = "model-00002-of-00002.safetensors")),
    (d) => [
      `Tensor "visual.merger.weight" is listed in ${d}/model.safetensors.index.json under "model-00002-of-00002.safetensors", but that shard has no such tensor`,
    ],
  );
  // And a tensor the model asks for that no file has:
  await inDir(sharded(), async (dir) => {
    const ckpt = await SafetensorsCheckpoint.open(openModelSource(dir));
    assert.throws(() => ckpt.get("model.layers.0.mlp.up_proj.weight"), {
      name: "ModelFileError",
      message:
        `Tensor "model.layers.0.mlp.up_proj.weight" is not in the checkpoint ${dir}/model.safetensors.index.json (3 tensors): the checkpoint is incomplete or for a different model.`,
    });
    ckpt.close();
  });
});

Deno.test("a malformed shard of a sharded checkpoint names that shard", async () => {
  const files: Record<string, Uint8Array | string> = sharded();
  files["model-00002-of-00002.safetensors"] = rawFile({ "norm.weight": f32([2], 0, 8) }, 4);
  await assertOpenFails(files, (d) => [
    `Malformed safetensors file ${d}/model-00002-of-00002.safetensors: tensor 'norm.weight' has data_offsets [0, 8] past the end`,
  ]);
});

Deno.test("a broken index names the index", async () => {
  await assertOpenFails(
    { "model.safetensors.index.json": '{"weight_map": ' },
    (d) => [`${d}/model.safetensors.index.json is not valid JSON`],
  );
  await assertOpenFails(
    { "model.safetensors.index.json": '{"metadata": {}}' },
    (
      d,
    ) => [
      `${d}/model.safetensors.index.json is not a safetensors index: it has no "weight_map" object`,
    ],
  );
  await assertOpenFails(
    { "model.safetensors.index.json": '{"weight_map": {"w": "../../etc/passwd"}}' },
    (
      d,
    ) => [
      `${d}/model.safetensors.index.json is not a safetensors index: tensor "w" maps to the unsafe file name "../../etc/passwd"`,
    ],
  );
});

Deno.test("a folder without a checkpoint says which files it looked for", async () => {
  await assertOpenFails(
    { "config.json": "{}" },
    (
      d,
    ) => [
      `No checkpoint in ${d}: neither model.safetensors nor model.safetensors.index.json is there`,
    ],
  );
});
