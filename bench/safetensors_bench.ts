/**
 * Safetensors loading speed.
 *
 * - "convert": the wasm conversions alone (StConverter.convert over 32 MiB of input in 256 KiB
 *   calls, as the loader makes them, including the copy into wasm memory that every call makes).
 *   F32→f32 is that copy alone, the baseline.
 * - "load": SafetensorsCheckpoint.readChunks over a synthetic bf16 tensor in a temp file (page
 *   cache warm after the first pass), the way a GPU loader drives it: 64 MiB slices, reused
 *   buffers. "raw" is the read alone.
 *
 * - "gpu" (when WebGPU has an adapter): the same, each slice written into a GPU buffer with
 *   queue.writeBuffer, until the queue is done — the whole path from file to GPU memory; and the
 *   loader's way (8 reads in flight, each written as it lands).
 *
 * MB/s = the input size in the bench's name ÷ its time per iteration.
 * Run: deno bench -A --unstable-webgpu bench/safetensors_bench.ts
 * (QVQ_BENCH_MIB sets the tensor size, default 512; the 72B model's embedding is 2376.)
 */
import { loadWasm, wasm } from "../src/_wasm.ts";
import { openModelSource } from "../src/model_files.ts";
import { SafetensorsCheckpoint, type Target, writeSafetensorsStream } from "../src/safetensors.ts";

const MiB = 1 << 20;
const CONVERT_BYTES = 32 * MiB;
const FILE_MIB = Number(Deno.env.get("QVQ_BENCH_MIB") ?? 512);
const ROW = 8192; // hidden size of the 72B model: one bf16 row is 16 KiB
const SLICE_BYTES = 64 * MiB;
const BLOCK = 256 << 10;

await loadWasm();

/**
 * bf16 bits of typical weights: roughly normal with σ = 0.02 (sum of 4 uniforms), so the share of
 * values that are f16 subnormals (|x| < 6.1e-5, about 0.2%) is like a real checkpoint's.
 */
function weightBits(out: Uint16Array, first: number) {
  let s = (first * 2654435761) >>> 0;
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < out.length; i++) {
    let sum = 0;
    for (let k = 0; k < 4; k++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      sum += s / 2 ** 32 - 0.5;
    }
    f[0] = sum * 0.02 * Math.sqrt(3);
    out[i] = u[0] >>> 16;
  }
}

const input = new Uint8Array(CONVERT_BYTES);
weightBits(new Uint16Array(input.buffer), 0);
const f32Input = new Float32Array(CONVERT_BYTES / 4);
const bf = new Uint16Array(input.buffer);
for (let i = 0; i < f32Input.length; i++) {
  f32Input[i] = new Float32Array(new Uint32Array([bf[i] << 16]).buffer)[0] * 1.001;
}
const f32Bytes = new Uint8Array(f32Input.buffer);
const converter = new wasm.StConverter();

for (
  const [from, to, bytes] of [
    ["F32", "f32", f32Bytes],
    ["BF16", "f16", input],
    ["BF16", "f32", input],
    ["F32", "f16", f32Bytes],
    ["F16", "f32", input],
  ] as const
) {
  Deno.bench({
    name: `convert ${from}→${to}, 32 MiB in`,
    group: "convert",
    baseline: from === "F32" && to === "f32",
    // In 256 KiB calls, as the loader makes them (the data then stay in cache).
    fn: () => {
      for (let at = 0; at < bytes.length; at += BLOCK) {
        converter.convert(from, to, bytes.subarray(at, at + BLOCK), 0);
      }
    },
  });
}

const dir = await Deno.makeTempDir({ prefix: "qvq-st-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const rows = Math.floor(FILE_MIB * MiB / (ROW * 2));
{
  const file = await Deno.create(`${dir}/model.safetensors`);
  await writeSafetensorsStream(
    [{
      name: "embed",
      dtype: "BF16",
      shape: [rows, ROW],
      fill: (o, f) => weightBits(o as Uint16Array, f),
    }],
    file.writable,
    { chunkBytes: 16 * MiB },
  );
}
const ckpt = await SafetensorsCheckpoint.open(openModelSource(dir));

/** Largest resident set seen during loads: streaming keeps it near a few slices, not the file. */
let peakRss = 0;
globalThis.addEventListener("unload", () => {
  console.log(
    `peak RSS while loading: ${(peakRss / MiB).toFixed(0)} MiB (tensor: ${FILE_MIB} MiB)`,
  );
});

async function load(to: Target, reuse: boolean) {
  let n = 0;
  for await (const c of ckpt.readChunks("embed", { to, maxBytes: SLICE_BYTES, reuse })) {
    n += c.rows;
    peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
  }
  if (n !== rows) throw new Error(`read ${n} of ${rows} rows`);
}

for (
  const [to, reuse] of [["raw", true], ["f16", true], ["f16", false], ["f32", true]] as const
) {
  Deno.bench({
    name: `load ${FILE_MIB} MiB bf16 → ${to}${reuse ? "" : " (fresh arrays)"}`,
    group: "load",
    baseline: to === "raw",
    n: 5,
    warmup: 1,
    // async, or deno bench would not wait for the promise
    fn: async () => await load(to, reuse),
  });
}

const adapter = await navigator.gpu?.requestAdapter();
if (adapter) {
  const device = await adapter.requestDevice({
    requiredLimits: { maxBufferSize: adapter.limits.maxBufferSize },
  });
  // One GPU buffer of up to 1 GiB; slices wrap around in it (the copy cost is the same).
  const size = Math.min(adapter.limits.maxBufferSize, 1 << 30, rows * ROW * 4);
  const gpuBuffer = device.createBuffer({
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  const upload = async (to: Target) => {
    let offset = 0;
    for await (const c of ckpt.readChunks("embed", { to, maxBytes: SLICE_BYTES, reuse: true })) {
      if (offset + c.data.byteLength > size) offset = 0;
      device.queue.writeBuffer(gpuBuffer, offset, c.data as ArrayBufferView<ArrayBuffer>);
      offset += c.data.byteLength;
    }
    await device.queue.onSubmittedWorkDone();
  };
  // As the loader does (src/model/weights.ts): 8 reads of 8 MiB in flight, each written as it
  // lands, with a submit after each writeBuffer so wgpu's staging memory is recycled.
  const uploadParallel = async () => {
    const piece = 8 * MiB, total = rows * ROW * 2, ring = 8;
    const host = Array.from({ length: ring }, () => new Uint8Array(piece));
    let next = 0;
    await Promise.all(host.map(async (buf) => {
      for (let o = (next++) * piece; o < total; o = (next++) * piece) {
        const d = buf.subarray(0, Math.min(piece, total - o));
        await ckpt.readStored("embed", o, d);
        // Pieces wrap around in the GPU buffer (the copy cost is the same); sizes are whole rows.
        const at = ((o / piece) % Math.floor(size / piece)) * piece;
        device.queue.writeBuffer(gpuBuffer, at, d);
        device.queue.submit([]);
      }
    }));
    await device.queue.onSubmittedWorkDone();
  };
  Deno.bench({
    name: `gpu ${FILE_MIB} MiB bf16 raw, 8 reads in flight → writeBuffer 8 MiB + submit`,
    group: "gpu",
    n: 5,
    warmup: 1,
    fn: async () => await uploadParallel(),
  });
  for (const to of ["raw", "f16"] as const) {
    Deno.bench({
      name: `gpu ${FILE_MIB} MiB bf16 → ${to} → writeBuffer (${
        adapter.info.description || adapter.info.vendor
      })`,
      group: "gpu",
      baseline: to === "raw",
      n: 5,
      warmup: 1,
      fn: async () => await upload(to),
    });
  }
}
