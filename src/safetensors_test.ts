import assert from "node:assert/strict";
import { InvalidInputError, ModelFileError } from "./errors.ts";
import { MemoryModelSource, openModelSource } from "./model_files.ts";
import {
  readSafetensors,
  SafetensorsCheckpoint,
  type TensorSpec,
  writeSafetensors,
  writeSafetensorsStream,
  writeShardedSafetensors,
} from "./safetensors.ts";

const FIXTURE = decodeURIComponent(
  new URL("../tests/fixtures/tiny-qwen2vl/", import.meta.url).pathname,
);

/** Independent header reader for checks: JSON.parse of the bytes after the length prefix. */
function rawHeader(file: Uint8Array): { start: number; header: Record<string, any> } {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return { start: 8 + n, header: JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n))) };
}

/** The raw little-endian u16s of `name` in `file`, located by {@link rawHeader}. */
function rawU16(file: Uint8Array, name: string): Uint16Array {
  const { start, header } = rawHeader(file);
  const [b, e] = header[name].data_offsets;
  return new Uint16Array(file.slice(start + b, start + e).buffer);
}

/** bf16 bits → f32 by the definition: the top half of an f32. */
function bf16ToF32(bits: Uint16Array): Float32Array {
  return new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
}

/** f32 → f16 bits by the platform's Float16Array (round to nearest even in V8). */
function f16Reference(values: Float32Array | Float64Array): Uint16Array {
  return new Uint16Array(new Float16Array(values).buffer);
}

/** The bytes of a typed array: node:assert compares these with memcmp, floats element-wise. */
function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A single-file checkpoint in memory. */
function memoryCheckpoint(bytes: Uint8Array) {
  return SafetensorsCheckpoint.open(new MemoryModelSource({ "model.safetensors": bytes }));
}

/** Asserts f16 bit patterns equal, treating any two NaNs of the same sign as equal. */
function assertF16Equal(got: Uint16Array, want: Uint16Array, what: (i: number) => string) {
  assert.equal(got.length, want.length);
  const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
  for (let i = 0; i < got.length; i++) {
    if (isNaN16(want[i])) {
      assert.ok(isNaN16(got[i]) && (got[i] & 0x8000) === (want[i] & 0x8000), what(i));
    } else if (got[i] !== want[i]) {
      assert.fail(`${what(i)}: got ${got[i].toString(16)}, want ${want[i].toString(16)}`);
    }
  }
}

Deno.test("open() reads the sharded fixture's index and both shard headers", async () => {
  const ckpt = await SafetensorsCheckpoint.open(openModelSource(FIXTURE));
  try {
    const index = JSON.parse(await Deno.readTextFile(`${FIXTURE}model.safetensors.index.json`));
    const names = Object.keys(index.weight_map);
    assert.equal(ckpt.tensors().length, names.length);
    for (const name of names) assert.equal(ckpt.get(name).file, index.weight_map[name]);
    assert.deepEqual(ckpt.files(), [
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
    ]);
    assert.deepEqual(ckpt.metadata(), { format: "pt" });
    const shard1 = await Deno.readFile(`${FIXTURE}model-00001-of-00002.safetensors`);
    const { start, header } = rawHeader(shard1);
    assert.deepEqual(ckpt.get("model.embed_tokens.weight"), {
      name: "model.embed_tokens.weight",
      dtype: "BF16",
      shape: [151936, 32],
      file: "model-00001-of-00002.safetensors",
      byteOffset: start + header["model.embed_tokens.weight"].data_offsets[0],
      byteLength: 151936 * 32 * 2,
    });
    assert.throws(() => ckpt.get("lm_head.weight"), (e: Error) => {
      assert.ok(e instanceof ModelFileError);
      assert.ok(e.message.includes('"lm_head.weight" is not in the checkpoint'), e.message);
      assert.ok(e.message.includes(`${FIXTURE}model.safetensors.index.json`), e.message);
      return true;
    });
  } finally {
    ckpt.close();
  }
});

Deno.test("readF32() of bf16 weights equals the bits shifted into f32", async () => {
  const ckpt = await SafetensorsCheckpoint.open(openModelSource(FIXTURE));
  try {
    const shard1 = await Deno.readFile(`${FIXTURE}model-00001-of-00002.safetensors`);
    const shard2 = await Deno.readFile(`${FIXTURE}model-00002-of-00002.safetensors`);
    const embed = await ckpt.readF32("model.embed_tokens.weight"); // (151936, 32) f32
    assert.deepEqual(
      bytesOf(embed),
      bytesOf(bf16ToF32(rawU16(shard1, "model.embed_tokens.weight"))),
    );
    // Values read with Python's struct module from the fixture file.
    assert.deepEqual([...embed.subarray(0, 4)], [0.984375, -0.65234375, 0.25, -0.45703125]);
    assert.equal(embed[151935 * 32 + 31], 0.62890625);
    for (
      const name of [
        "model.norm.weight",
        "visual.merger.ln_q.bias",
        "visual.blocks.0.attn.qkv.weight",
      ]
    ) {
      assert.deepEqual(await ckpt.readF32(name), bf16ToF32(rawU16(shard2, name)), name);
    }
    assert.deepEqual(
      [...await ckpt.readBytes("model.norm.weight")].slice(0, 4),
      [0xc4, 0x3f, 0x5e, 0x3f], // 0x3fc4, 0x3f5e little-endian
    );
  } finally {
    ckpt.close();
  }
});

Deno.test("readChunks() yields row slices of at most maxBytes that rebuild the tensor", async () => {
  const ckpt = await SafetensorsCheckpoint.open(openModelSource(FIXTURE));
  try {
    const name = "model.embed_tokens.weight"; // (151936, 32) bf16
    const whole = await ckpt.readF16Bits(name);
    for (const maxBytes of [1 << 20, 64 * 1000 + 63]) {
      const rowsPer = Math.floor(maxBytes / 64);
      const out = new Uint16Array(whole.length);
      let next = 0;
      for await (const c of ckpt.readChunks(name, { to: "f16", maxBytes })) {
        assert.equal(c.rowStart, next);
        assert.equal(c.rows, Math.min(rowsPer, 151936 - next));
        assert.equal(c.data.length, c.rows * 32);
        assert.ok(c.data.byteLength <= maxBytes);
        out.set(c.data, c.rowStart * 32);
        next += c.rows;
      }
      assert.equal(next, 151936);
      assert.deepEqual(out, whole);
    }
    // reuse: slices come in the same buffers (one for converted data, two alternating for raw
    // bytes), and each is right when the caller looks at it.
    const f32 = await ckpt.readF32(name);
    const raw = await ckpt.readBytes(name);
    for (const [to, want, buffers] of [["f32", bytesOf(f32), 1], ["raw", raw, 2]] as const) {
      const seen = new Set<ArrayBufferLike>();
      let chunks = 0;
      for await (const c of ckpt.readChunks(name, { to, maxBytes: 1 << 20, reuse: true })) {
        seen.add(c.data.buffer);
        const rowBytes = want.length / 151936;
        assert.deepEqual(
          bytesOf(c.data),
          want.subarray(c.rowStart * rowBytes, (c.rowStart + c.rows) * rowBytes),
        );
        chunks++;
      }
      assert.ok(chunks > 2);
      assert.equal(seen.size, buffers, to);
    }
    // A caller that stops early leaves no read behind (the test sanitizer checks).
    for await (const c of ckpt.readChunks(name, { to: "f16", maxBytes: 1 << 16 })) {
      assert.equal(c.rowStart, 0);
      break;
    }
    // 1-d tensors are sliced by element.
    const norm = await ckpt.readF32("model.norm.weight");
    const parts = [];
    for await (const c of ckpt.readChunks("model.norm.weight", { to: "f32", maxBytes: 40 })) {
      parts.push([c.rowStart, c.rows]);
      assert.deepEqual(c.data, norm.subarray(c.rowStart, c.rowStart + c.rows));
    }
    assert.deepEqual(parts, [[0, 10], [10, 10], [20, 10], [30, 2]]);
    await assert.rejects(
      ckpt.readChunks(name, { to: "f32", maxBytes: 100 }).next(),
      (e: Error) => {
        assert.ok(e instanceof InvalidInputError);
        assert.equal(
          e.message,
          'maxBytes 100 is less than one row (128 bytes of f32) of tensor "model.embed_tokens.weight" ' +
            "with shape [151936,32]: pass at least 128.",
        );
        return true;
      },
    );
  } finally {
    ckpt.close();
  }
});

Deno.test("readInto() fills a caller's buffer, e.g. a mapped GPU range, slice by slice", async () => {
  const ckpt = await SafetensorsCheckpoint.open(openModelSource(FIXTURE));
  try {
    const name = "model.embed_tokens.weight"; // (151936, 32) bf16
    const want = await ckpt.readF16Bits(name);
    // A destination inside a larger buffer, in 1000-row slices.
    const big = new Uint8Array(want.byteLength + 64);
    await ckpt.readInto(name, "f16", big.subarray(64), { maxBytes: 64 * 1000 });
    assert.deepEqual(big.subarray(64), bytesOf(want));
    assert.deepEqual(big.subarray(0, 64), new Uint8Array(64));
    const raw = new Uint8Array(151936 * 64);
    await ckpt.readInto(name, "raw", raw);
    assert.deepEqual(raw, await ckpt.readBytes(name));
    await assert.rejects(ckpt.readInto(name, "f32", new Float32Array(10)), {
      name: "InvalidInputError",
      message: 'readInto() of tensor "model.embed_tokens.weight" (shape [151936,32]) as f32 ' +
        "needs 19447808 bytes, got a destination of 40.",
    });
  } finally {
    ckpt.close();
  }
});

Deno.test("readStored() reads stored bytes from any offset of a tensor, many at once", async () => {
  const ckpt = await SafetensorsCheckpoint.open(openModelSource(FIXTURE));
  try {
    const name = "model.embed_tokens.weight"; // (151936, 32) bf16: 9723904 bytes
    const whole = await ckpt.readBytes(name);
    // 37 pieces of an odd size, all in flight together, into one destination.
    const got = new Uint8Array(whole.length);
    const piece = 262_147;
    const reads = [];
    for (let o = 0; o < whole.length; o += piece) {
      reads.push(ckpt.readStored(name, o, got.subarray(o, Math.min(o + piece, whole.length))));
    }
    await Promise.all(reads);
    assert.ok(got.every((v, i) => v === whole[i]));
    const tail = new Uint8Array(3);
    await ckpt.readStored(name, whole.length - 3, tail);
    assert.deepEqual(tail, whole.subarray(whole.length - 3));
    assert.throws(() => ckpt.readStored(name, whole.length - 2, tail), {
      name: "InvalidInputError",
      message: "readStored(): bytes 9723902..9723905 are outside tensor " +
        '"model.embed_tokens.weight" (9723904 bytes).',
    });
  } finally {
    ckpt.close();
  }
});

Deno.test("readChunks() over HTTP reads only Range slices of the shard", async () => {
  const whole = await Deno.readFile(`${FIXTURE}model-00001-of-00002.safetensors`);
  const ranges: string[] = [];
  const fetchRange: typeof fetch = (input, init) => {
    const range = new Headers(init?.headers).get("Range");
    assert.ok(range, `every request is ranged (${input})`);
    ranges.push(range);
    const [, a, b] = range.match(/bytes=(\d+)-(\d+)/)!.map(Number);
    const name = new URL(String(input)).pathname.slice(1);
    if (name !== "model.safetensors") return Promise.resolve(new Response(null, { status: 404 }));
    const end = Math.min(b, whole.length - 1);
    return Promise.resolve(
      new Response(whole.slice(a, end + 1), {
        status: 206,
        headers: { "Content-Range": `bytes ${a}-${end}/${whole.length}` },
      }),
    );
  };
  const src = openModelSource("https://models.example/", { fetch: fetchRange });
  const ckpt = await SafetensorsCheckpoint.open(src);
  // the existence/size probe (1 byte), then the first 64 KiB, which holds the whole header
  assert.deepEqual(ranges, ["bytes=0-0", "bytes=0-65535"]);
  ranges.length = 0;
  let n = 0;
  for await (
    const c of ckpt.readChunks("model.embed_tokens.weight", { to: "f32", maxBytes: 4 << 20 })
  ) {
    n += c.rows;
  }
  assert.equal(n, 151936);
  const t = ckpt.get("model.embed_tokens.weight");
  const rowsPer = (4 << 20) / 128;
  assert.equal(ranges.length, Math.ceil(151936 / rowsPer));
  assert.equal(ranges[0], `bytes=${t.byteOffset}-${t.byteOffset + rowsPer * 64 - 1}`);
});

Deno.test("readSafetensors() reads the f32/i32 reference file exactly", async () => {
  const bytes = await Deno.readFile(`${FIXTURE}reference/case0.safetensors`);
  const ref = await readSafetensors(bytes);
  const { start, header } = rawHeader(bytes);
  const view = new DataView(bytes.buffer);
  assert.deepEqual(
    [...ref.keys()].sort(),
    Object.keys(header).filter((k) => k !== "__metadata__").sort(),
  );
  for (const [name, t] of ref) {
    const h = header[name];
    assert.equal(t.dtype, h.dtype);
    assert.deepEqual(t.shape, h.shape);
    const [b, e] = h.data_offsets;
    const want = Array.from(
      { length: (e - b) / 4 },
      (_, i) =>
        h.dtype === "F32"
          ? view.getFloat32(start + b + 4 * i, true)
          : view.getInt32(start + b + 4 * i, true),
    );
    assert.deepEqual([...t.data], want, name);
  }
  assert.deepEqual([...ref.get("image_grid_thw")!.data], [1, 4, 4]);
  assert.deepEqual(ref.get("position_ids")!.shape, [3, 35]);
  assert.equal(ref.get("input_ids")!.data[0], 151644); // <|im_start|>
});

Deno.test("open({ file }) opens one file of a folder, e.g. a reference case", async () => {
  const ckpt = await SafetensorsCheckpoint.open(openModelSource(FIXTURE), {
    file: "reference/case0.safetensors",
  });
  try {
    assert.equal(ckpt.origin, `${FIXTURE}reference/case0.safetensors`);
    assert.deepEqual([...await ckpt.readI32("image_grid_thw")], [1, 4, 4]);
    assert.equal((await ckpt.readF32("logits_last")).length, 151936);
    // f32 → f16 rounds like Float16Array
    const pv = await ckpt.readF32("pixel_values");
    assert.deepEqual(await ckpt.readF16Bits("pixel_values"), f16Reference(pv));
  } finally {
    ckpt.close();
  }
});

Deno.test("bf16 → f16 and bf16 → f32 are right for all 65536 bit patterns", async () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const ckpt = await memoryCheckpoint(
    writeSafetensors({ all: { dtype: "BF16", shape: [256, 256], data: all } }),
  );
  const f32 = await ckpt.readF32("all");
  assert.deepEqual(new Uint32Array(f32.buffer), Uint32Array.from(all, (b) => b << 16));
  const f16 = await ckpt.readF16Bits("all");
  const want = f16Reference(bf16ToF32(all));
  assertF16Equal(f16, want, (i) => `bf16 0x${i.toString(16)}`);
  // Slices of 13 rows × 256 = 3328 elements, and of 1 row: the wasm loops' 8-wide blocks and
  // their scalar tails, at every alignment the reads produce.
  for (const maxBytes of [13 * 512 + 1, 512]) {
    for await (const c of ckpt.readChunks("all", { to: "f16", maxBytes, reuse: true })) {
      const at = c.rowStart * 256;
      assertF16Equal(
        c.data,
        want.subarray(at, at + c.data.length),
        (i) => `bf16 0x${(at + i).toString(16)}`,
      );
    }
  }
  const flat = await memoryCheckpoint(
    writeSafetensors({ all: { dtype: "BF16", shape: [65536], data: all } }),
  );
  for await (const c of flat.readChunks("all", { to: "f16", maxBytes: 2 * 1001 })) {
    assertF16Equal(
      c.data,
      want.subarray(c.rowStart, c.rowStart + c.rows),
      (i) => `bf16 0x${(c.rowStart + i).toString(16)}`,
    );
  }
  // Spot checks with known answers: overflow to inf, smallest f16 subnormal, ties to even.
  const at = (b: number) => f16[b];
  assert.equal(at(0x4780), 0x7c00); // 65536 → inf
  assert.equal(at(0x477f), 0x7bf8); // 65280 exact
  assert.equal(at(0xc780), 0xfc00); // -65536 → -inf
  assert.equal(at(0x3380), 0x0001); // 2^-24 → smallest subnormal
  assert.equal(at(0x3300), 0x0000); // 2^-25, a tie between 0 and 2^-24 → even (0)
  assert.equal(at(0x3340), 0x0001); // 1.5 × 2^-25 → 2^-24
  assert.equal(at(0x33c0), 0x0002); // 3 × 2^-25, a tie between 1 and 2 → even (2)
  assert.equal(at(0x7fc1) & 0x7e00, 0x7e00); // NaN stays NaN
});

Deno.test("f16 → f32 is exact for all 65536 bit patterns, and f16 → f16 keeps the bits", async () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const ckpt = await memoryCheckpoint(
    writeSafetensors({ all: { dtype: "F16", shape: [65536], data: all } }),
  );
  const f32 = await ckpt.readF32("all");
  const ref = new Float16Array(all.buffer);
  for (let i = 0; i < 65536; i++) {
    if (Number.isNaN(ref[i])) assert.ok(Number.isNaN(f32[i]), `f16 0x${i.toString(16)}`);
    else assert.ok(Object.is(f32[i], ref[i]), `f16 0x${i.toString(16)}: ${f32[i]} vs ${ref[i]}`);
  }
  assert.deepEqual(await ckpt.readF16Bits("all"), all);
});

Deno.test("f32 → f16 rounds like Float16Array for random and edge values", async () => {
  // Random bit patterns (all exponents), then values near f16's range, then ties.
  let s = 12345;
  const rand = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  const bits = new Uint32Array(300_000);
  for (let i = 0; i < 100_000; i++) bits[i] = rand();
  for (let i = 100_000; i < 200_000; i++) {
    bits[i] = (rand() & 0x8000_0000) | ((100 + (rand() % 46)) << 23) | (rand() & 0x7f_ffff);
  }
  for (let i = 200_000; i < 300_000; i++) {
    bits[i] = (((100 + (rand() % 46)) << 23) | (rand() & 0x7f_e000) | 0x1000) + (rand() % 3) - 1;
  }
  const f32 = new Float32Array(bits.buffer);
  const ckpt = await memoryCheckpoint(
    writeSafetensors({ x: { dtype: "F32", shape: [f32.length], data: f32 } }),
  );
  const got = await ckpt.readF16Bits("x");
  assertF16Equal(got, f16Reference(f32), (i) => `f32 0x${bits[i].toString(16)} = ${f32[i]}`);
  const edge = new Float32Array([65504, 65519.99, 65520, -65520, 1e-8, 2 ** -25, 6.1e-5, -0]);
  const e = await (await memoryCheckpoint(
    writeSafetensors({ e: { dtype: "F32", shape: [edge.length], data: edge } }),
  )).readF16Bits("e");
  assert.deepEqual([...e], [0x7bff, 0x7bff, 0x7c00, 0xfc00, 0x0000, 0x0000, 0x03ff, 0x8000]);
});

Deno.test("I64 tensors read as i32 when they fit, and name the element that does not", async () => {
  const file = (values: bigint[]) => {
    const json = JSON.stringify({
      grid: { dtype: "I64", shape: [values.length], data_offsets: [0, values.length * 8] },
    });
    const head = new TextEncoder().encode(json);
    const out = new Uint8Array(8 + head.length + values.length * 8);
    const v = new DataView(out.buffer);
    v.setBigUint64(0, BigInt(head.length), true);
    out.set(head, 8);
    values.forEach((x, i) => v.setBigInt64(8 + head.length + 8 * i, x, true));
    return out;
  };
  const ok = await readSafetensors(file([1n, 36n, 52n, -2n, 2147483647n, -2147483648n]));
  assert.deepEqual([...ok.get("grid")!.data], [1, 36, 52, -2, 2147483647, -2147483648]);
  const big = await memoryCheckpoint(file([1n, 2n, 3n, 2147483648n]));
  await assert.rejects(big.readI32("grid"), (e: Error) => {
    assert.ok(e instanceof ModelFileError);
    assert.equal(
      e.message,
      'Cannot read tensor "grid" (I64, shape [4]) of memory/model.safetensors as i32: element 3 ' +
        "is 2147483648, which does not fit in int32.",
    );
    return true;
  });
});

Deno.test("reading an unsupported dtype or conversion names the tensor and the file", async () => {
  const json = JSON.stringify({
    mask: { dtype: "U8", shape: [4], data_offsets: [0, 4] },
    w: { dtype: "BF16", shape: [2], data_offsets: [4, 8] },
  });
  const head = new TextEncoder().encode(json);
  const bytes = new Uint8Array(8 + head.length + 8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(head.length), true);
  bytes.set(head, 8);
  const ckpt = await memoryCheckpoint(bytes);
  assert.equal(ckpt.get("mask").dtype, "U8"); // the file itself is valid
  await assert.rejects(ckpt.readF32("mask"), (e: Error) => {
    assert.ok(e instanceof ModelFileError);
    assert.match(
      e.message,
      /^Cannot read tensor "mask" \(U8, shape \[4\]\) of memory\/model\.safetensors as f32: cannot convert U8 to f32/,
    );
    return true;
  });
  await assert.rejects(
    ckpt.readI32("w"),
    /Cannot read tensor "w" \(BF16, shape \[2\]\).*cannot convert BF16 to i32/,
  );
});

Deno.test("writeSafetensors() aligns the data and round-trips every writable dtype", async () => {
  const tensors = {
    "b.bf16": { dtype: "BF16", shape: [3], data: new Uint16Array([0x3f80, 0xc000, 0x7f80]) },
    "a.f32": { dtype: "F32", shape: [2, 2], data: new Float32Array([1.5, -2, 3e-8, 1e30]) },
    "c.i32": { dtype: "I32", shape: [1, 3], data: new Int32Array([1, -4, 151655]) },
    "d.f16": { dtype: "F16", shape: [], data: new Uint16Array([0x3c00]) },
    "e.empty": { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
  } as const;
  const bytes = writeSafetensors(tensors, { format: "pt" });
  const { start, header } = rawHeader(bytes);
  assert.equal(start % 8, 0);
  assert.deepEqual(header.__metadata__, { format: "pt" });
  // Largest elements first, then by name: every tensor starts at a multiple of its size.
  const order = Object.entries(header).filter(([k]) => k !== "__metadata__")
    .sort((x: any, y: any) => x[1].data_offsets[0] - y[1].data_offsets[0]).map(([k]) => k);
  assert.deepEqual(order, ["a.f32", "c.i32", "e.empty", "b.bf16", "d.f16"]);
  assert.deepEqual(header["c.i32"], { dtype: "I32", shape: [1, 3], data_offsets: [16, 28] });
  const back = await readSafetensors(bytes);
  for (const [name, t] of Object.entries(tensors)) {
    assert.deepEqual(back.get(name), { dtype: t.dtype, shape: t.shape, data: t.data }, name);
  }
});

Deno.test("readSafetensors() reads a tensor with a zero dimension as empty, whatever its other dimensions", async () => {
  // Valid safetensors (the reference reads them): no bytes, so no row has to fit a slice.
  for (const shape of ["[0,18446744073709551615]", "[18446744073709551615,0]", "[0,4]"]) {
    const header = new TextEncoder().encode(
      `{"z":{"dtype":"F32","shape":${shape},"data_offsets":[0,0]}}`,
    );
    const file = new Uint8Array(8 + header.length);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
    file.set(header, 8);
    assert.equal((await readSafetensors(file)).get("z")?.data.length, 0, shape);
  }
});

Deno.test("writeSafetensors() rejects data that does not match dtype or shape", () => {
  assert.throws(
    () => writeSafetensors({ x: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
    {
      name: "InvalidInputError",
      message: 'Tensor "x" has shape [3] (3 elements) but 2 data elements.',
    },
  );
  assert.throws(
    () => writeSafetensors({ x: { dtype: "I32", shape: [2], data: new Float32Array(2) } }),
    {
      name: "InvalidInputError",
      message: 'Tensor "x" (I32) needs its data in a Int32Array, got Float32Array.',
    },
  );
  assert.throws(
    () => writeSafetensors({ x: { dtype: "F32", shape: [-1], data: new Float32Array(0) } }),
    /Tensor "x" has shape \[-1\]: use an array of integers >= 0/,
  );
  assert.throws(
    () =>
      writeSafetensors({ __metadata__: { dtype: "F32", shape: [0], data: new Float32Array(0) } }),
    /Bad tensor name "__metadata__"/,
  );
});

/** A deterministic bf16 fill: element k of tensor `seed` has bits derived from both. */
function bf16Fill(seed: number): TensorSpec["fill"] {
  return (out, first) => {
    for (let i = 0; i < out.length; i++) {
      out[i] = (Math.imul(first + i, 2654435761) ^ seed) & 0x3fff;
    }
  };
}

Deno.test("writeShardedSafetensors() streams a sharded bf16 checkpoint that open() reads back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qvq-st-" });
  try {
    const specs: TensorSpec[] = [
      { name: "embed", dtype: "BF16", shape: [1000, 24], fill: bf16Fill(1) },
      { name: "layer.0.w", dtype: "BF16", shape: [24, 100], fill: bf16Fill(2) },
      {
        name: "layer.0.b",
        dtype: "F32",
        shape: [100],
        fill: (o, f) => o.forEach((_, i) => (o[i] = f + i)),
      },
      { name: "layer.1.w", dtype: "BF16", shape: [24, 100], fill: bf16Fill(3) },
      { name: "grid", dtype: "I32", shape: [1, 3], fill: (o) => o.set([1, 2, 3]) },
    ];
    const { files, index } = await writeShardedSafetensors(specs, {
      maxShardBytes: 10_000, // embed alone (48000 > max), 10000 bytes, then grid
      chunkBytes: 1000, // many small fills, to exercise slicing
      open: async (f) => (await Deno.create(`${dir}/${f}`)).writable,
    });
    assert.deepEqual(files, [
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    assert.deepEqual(index.weight_map, {
      embed: files[0],
      "layer.0.w": files[1],
      "layer.0.b": files[1],
      "layer.1.w": files[1],
      grid: files[2],
    });
    assert.equal(index.metadata.total_size, 48000 + 4800 + 400 + 4800 + 12);
    const ckpt = await SafetensorsCheckpoint.open(openModelSource(dir));
    try {
      for (const s of specs.filter((s) => s.dtype === "BF16")) {
        const want = new Uint16Array(s.shape[0] * s.shape[1]);
        s.fill(want, 0);
        assert.deepEqual(new Uint16Array((await ckpt.readBytes(s.name)).buffer), want, s.name);
        assert.deepEqual(await ckpt.readF32(s.name), bf16ToF32(want), s.name);
      }
      assert.deepEqual(
        await ckpt.readF32("layer.0.b"),
        Float32Array.from({ length: 100 }, (_, i) => i),
      );
      assert.deepEqual([...await ckpt.readI32("grid")], [1, 2, 3]);
    } finally {
      ckpt.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeSafetensorsStream() writes the same bytes as writeSafetensors()", async () => {
  const data = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
  const ids = Int32Array.from({ length: 7 }, (_, i) => i * 1000);
  const chunks: Uint8Array[] = [];
  const size = await writeSafetensorsStream(
    [
      {
        name: "x",
        dtype: "F32",
        shape: [10, 100],
        fill: (o, f) => o.set(data.subarray(f, f + o.length)),
      },
      {
        name: "ids",
        dtype: "I32",
        shape: [7],
        fill: (o, f) => o.set(ids.subarray(f, f + o.length)),
      },
    ],
    new WritableStream({ write: (c) => void chunks.push(c) }),
    { metadata: { format: "pt" }, chunkBytes: 300 },
  );
  const streamed = new Uint8Array(await new Blob(chunks as BlobPart[]).arrayBuffer());
  const whole = writeSafetensors({
    x: { dtype: "F32", shape: [10, 100], data },
    ids: { dtype: "I32", shape: [7], data: ids },
  }, { format: "pt" });
  assert.equal(size, whole.length);
  assert.deepEqual(streamed, whole);
});

Deno.test("readSafetensors() names the path it is given in errors", async () => {
  const good = writeSafetensors({ a: { dtype: "F32", shape: [2], data: new Float32Array(2) } });
  await assert.rejects(
    readSafetensors(good.subarray(0, good.length - 1), "out/case0.safetensors"),
    (e: Error) => {
      assert.ok(e instanceof ModelFileError);
      assert.match(
        e.message,
        /^Malformed safetensors file out\/case0\.safetensors: tensor 'a' has data_offsets \[0, 8\] past the end of the 7-byte data buffer/,
      );
      return true;
    },
  );
});
