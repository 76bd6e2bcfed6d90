import assert from "node:assert/strict";
import { sharedGpu } from "../src/gpu/device.ts";
import { createStorage, readBytes, uploadArray } from "../src/gpu/buffers.ts";
import { createWeight, destroyWeight } from "../src/gpu/tensor.ts";
import { InvalidInputError } from "../src/errors.ts";
import { loadWasm, wasm } from "../src/_wasm.ts";
import { convertBits } from "../src/ref/convert.ts";
import { seeded } from "../src/ref/_random.ts";
import { convert, convertRows, type SourceDType } from "./convert.ts";
import { run } from "./_kernel.ts";

const STORED = { bf16: "BF16", f16: "F16", f32: "F32" } as const;

/** The WASM converter's output (what loading produced before the GPU path), as bits. */
async function wasmConvert(from: SourceDType, to: "f16" | "f32", src: Uint16Array | Uint32Array) {
  await loadWasm();
  const c = new wasm.StConverter();
  const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  const n = c.convert(STORED[from], to, bytes, 0);
  const mem = (wasm.stMemory() as WebAssembly.Memory).buffer;
  const out = new Uint8Array(mem, c.outputPtr(), n).slice().buffer;
  c.free();
  return to === "f16" ? new Uint16Array(out) : new Uint32Array(out);
}

/** Runs convert() over all of `src` on the GPU; returns the output bits. */
async function gpuConvert(from: SourceDType, to: "f16" | "f32", src: Uint16Array | Uint32Array) {
  const gpu = await sharedGpu();
  const s = uploadArray(gpu, src);
  const n = src.length, outBytes = n * (to === "f16" ? 2 : 4);
  const d = createStorage(gpu, outBytes);
  const k = convert(gpu, d, s, { from, to, n });
  run(gpu, [k]);
  const got = await readBytes(gpu, d, outBytes);
  k.destroy();
  s.destroy();
  d.destroy();
  return to === "f16" ? new Uint16Array(got) : new Uint32Array(got);
}

/** First mismatching index, as a readable message (deepEqual on 65536 elements is unreadable). */
function assertBits(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  src: ArrayLike<number>,
  what: string,
) {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) {
      const hex = (x: number) => "0x" + (x >>> 0).toString(16);
      assert.fail(
        `${what}: element ${i} (source ${hex(src[i])}) gave ${hex(got[i])}, want ${hex(want[i])}`,
      );
    }
  }
}

const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);

for (
  const [from, to] of [["bf16", "f16"], ["bf16", "f32"], ["f16", "f32"], ["f16", "f16"]] as const
) {
  Deno.test(`convert() ${from} → ${to} gives the WASM converter's bits for all 65536 patterns`, async () => {
    const want = await wasmConvert(from, to, ALL16);
    assertBits(convertBits(from, to, ALL16), want, ALL16, `ref ${from}→${to}`);
    assertBits(await gpuConvert(from, to, ALL16), want, ALL16, `gpu ${from}→${to}`);
  });
}

Deno.test("convert() f32 → f16 gives the WASM converter's bits on random, tie, subnormal and overflow values", async () => {
  const rng = seeded(5);
  const bits: number[] = [];
  // Every f16 value widened (exact round trips), random bit patterns, and random values near f16's
  // range (exponents 100..145) where rounding, subnormals and overflow happen.
  for (let h = 0; h < 65536; h++) bits.push(convertBits("f16", "f32", new Uint16Array([h]))[0]);
  for (let i = 0; i < 100_000; i++) bits.push((rng() * 2 ** 32) >>> 0);
  for (let i = 0; i < 100_000; i++) {
    const e = 100 + Math.floor(rng() * 46);
    bits.push(((rng() < 0.5 ? 0x80000000 : 0) | (e << 23) | Math.floor(rng() * 2 ** 23)) >>> 0);
  }
  // Exact ties and neighbours around the grid of one binade, the subnormal range, overflow edge.
  for (const base of [0x3f800000, 0x33800000, 0x33000000, 0x38800000, 0x477fe000]) {
    for (let k = 0; k < 64; k++) {
      const t = base + (k << 13) + 0x1000;
      bits.push(t - 1, t, t + 1);
    }
  }
  bits.push(0x477fefff, 0x477ff000, 0x477ff001, 0x7f800000, 0xff800000, 0x7fc00000, 0xffa00001);
  bits.push(0x00000001, 0x80000000, 0x33000000, 0x33000001, 0xb3800000, 0x387fe000);
  const src = Uint32Array.from(bits);
  const want = await wasmConvert("f32", "f16", src);
  assertBits(convertBits("f32", "f16", src), want, src, "ref f32→f16");
  assertBits(await gpuConvert("f32", "f16", src), want, src, "gpu f32→f16");
  const f32 = await gpuConvert("f32", "f32", src);
  assertBits(f32, src, src, "gpu f32→f32 copy");
});

Deno.test("convertRows() writes odd-width f16 rows from any row, across chunks, keeping neighbours", async () => {
  const gpu = await sharedGpu();
  const rows = 23, cols = 7, rng = seeded(11);
  const src = Uint16Array.from({ length: rows * cols }, () => Math.floor(rng() * 65536));
  for (const to of ["f16", "f32"] as const) {
    // 4 rows per chunk (f16: even, as createWeight keeps them for odd cols): borders at 4, 8, ...
    const w = createWeight(gpu, rows, cols, to, "w", 4 * cols * (to === "f16" ? 2 : 4));
    assert.ok(w.chunks.length > 4);
    // Pieces of odd length starting at odd rows, in an order that writes both neighbours of a
    // shared f16 word before and after it.
    const pieces = [[5, 3], [0, 5], [13, 10], [8, 5]];
    for (const [r, n] of pieces) {
      const part = uploadArray(gpu, src.slice(r * cols, (r + n) * cols));
      const ds = convertRows(gpu, w, r, part, "bf16", n);
      run(gpu, ds);
      ds.forEach((d) => d.destroy());
      part.destroy();
    }
    const got: number[] = [];
    for (const c of w.chunks) {
      const b = await readBytes(gpu, c.buffer, c.rows * cols * (to === "f16" ? 2 : 4));
      got.push(...(to === "f16" ? new Uint16Array(b) : new Uint32Array(b)));
    }
    assertBits(got, convertBits("bf16", to, src), src, `bf16→${to}`);
    destroyWeight(w);
  }
});

Deno.test("convert() and convertRows() refuse short buffers, bad counts and quantized weights", async () => {
  const gpu = await sharedGpu();
  const b = createStorage(gpu, 16);
  assert.throws(() => convert(gpu, b, b, { from: "bf16", to: "f32", n: 5 }), InvalidInputError);
  assert.throws(
    () => convert(gpu, b, b, { from: "f32", to: "f16", n: 4, srcOffset: 1 }),
    /src buffer/,
  );
  assert.throws(() => convert(gpu, b, b, { from: "f16", to: "f16", n: 0 }), /positive integer/);
  assert.throws(
    () => convert(gpu, b, b, { from: "i32" as SourceDType, to: "f16", n: 1 }),
    /not supported/,
  );
  const q = createWeight(gpu, 2, 32, "q8", "q");
  assert.throws(() => convertRows(gpu, q, 0, b, "bf16", 1), /quantizeRows/);
  const w = createWeight(gpu, 2, 2, "f32", "w");
  assert.throws(() => convertRows(gpu, w, 1, b, "bf16", 2), /outside/);
  destroyWeight(q);
  destroyWeight(w);
  b.destroy();
});
