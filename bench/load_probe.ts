/**
 * Where checkpoint loading spends its time: writes (once) a synthetic bf16 checkpoint of a
 * Qwen2-VL shape, then times each mechanism of the file → GPU path on its own — file reads (one or
 * several in flight), queue.writeBuffer in pieces each followed by a submit, the latency of
 * onSubmittedWorkDone / mapAsync and the cost of getMappedRange — and finally uploadWeights()
 * itself (f16 and q4, and variants of its options) with the time spent inside writeBuffer,
 * createBuffer and the awaits it makes. One JSON line per measurement.
 *
 * Measured (H200 host, Deno 2.9.6, 2026-11-28): getMappedRange() of a 64 MiB MAP_WRITE buffer takes
 * 3.1 s (Deno copies the range), so staging through mapped buffers is out; writeBuffer streams
 * 14.8 GB/s in 8 MiB calls each followed by queue.submit([]) but 4.8 GB/s in 32 MiB calls without.
 *
 * Run: deno run -A --no-config --no-check bench/load_probe.ts [--dir /tmp/ck2b]
 *   [--shape qwen2-vl-2b] [--mib 2048] [--only name,name] [--out file.jsonl]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { PRESETS } from "../src/model/presets.ts";
import { planModel } from "../src/model/qwen2vl.ts";
import { type UploadOptions, uploadWeights } from "../src/model/weights.ts";
import { SHAPES } from "./_args.ts";
import { writeSyntheticCheckpoint } from "./_checkpoint.ts";
import type { QuantDType } from "../src/gpu/tensor.ts";

const MiB = 1 << 20;
const args = new Map<string, string>();
for (let i = 0; i < Deno.args.length; i += 2) {
  args.set(Deno.args[i].replace(/^--/, ""), Deno.args[i + 1]);
}
const dir = args.get("dir") ?? "/tmp/ck2b";
const shape = args.get("shape") ?? "qwen2-vl-2b";
const testBytes = Number(args.get("mib") ?? 2048) * MiB;
const only = args.get("only")?.split(",");
const outFile = args.get("out");

const lines: string[] = [];
function report(o: Record<string, unknown>) {
  const s = JSON.stringify(o);
  console.log(s);
  lines.push(s);
  if (outFile) Deno.writeTextFileSync(outFile, lines.join("\n") + "\n");
}
const want = (name: string) => !only || only.includes(name);

const preset = SHAPES[shape];
if (!preset || preset === "tiny") throw new Error(`--shape ${shape}: use a real shape`);
let t = performance.now();
const written = await writeSyntheticCheckpoint(PRESETS[preset], dir, 1);
report({ phase: "write_checkpoint", bytes: written, s: (performance.now() - t) / 1000 });

const shards: { path: string; size: number }[] = [];
for await (const e of Deno.readDir(dir)) {
  if (e.name.endsWith(".safetensors")) {
    const path = `${dir}/${e.name}`;
    shards.push({ path, size: (await Deno.stat(path)).size });
  }
}
shards.sort((a, b) => a.path.localeCompare(b.path));
const fileBytes = shards.reduce((a, s) => a + s.size, 0);

/** Pieces of `piece` bytes covering the shards, up to `limit` bytes in all. */
function pieces(piece: number, limit = Infinity) {
  const out: { shard: number; offset: number; length: number }[] = [];
  let total = 0;
  shards.forEach((s, shard) => {
    for (let o = 0; o < s.size && total < limit; o += piece) {
      const length = Math.min(piece, s.size - o, limit - total);
      out.push({ shard, offset: o, length });
      total += length;
    }
  });
  return { list: out, total };
}

async function readFull(f: Deno.FsFile, offset: number, dest: Uint8Array) {
  await f.seek(offset, Deno.SeekMode.Start);
  for (let n = 0; n < dest.length;) {
    const r = await f.read(dest.subarray(n));
    if (r === null) throw new Error("short read");
    n += r;
  }
}

/** Handles: `ways` per shard, so reads in flight never share a file position. */
async function openHandles(ways: number) {
  return await Promise.all(
    shards.map(async (s) =>
      await Promise.all(Array.from({ length: ways }, () => Deno.open(s.path)))
    ),
  );
}

function gbs(bytes: number, ms: number) {
  return Math.round(bytes / 1e6 / ms * 100) / 100;
}

// Warm the page cache (the harness reads right after writing; a cold run would measure the disk).
if (want("read1")) {
  const { list, total } = pieces(32 * MiB);
  const h = await openHandles(1);
  const buf = new Uint8Array(32 * MiB);
  for (let pass = 0; pass < 1; pass++) {
    t = performance.now();
    for (const p of list) await readFull(h[p.shard][0], p.offset, buf.subarray(0, p.length));
    report({ phase: "read1_32MiB", pass, bytes: total, gb_s: gbs(total, performance.now() - t) });
  }
  h.flat().forEach((f) => f.close());
}

for (const [ways, piece] of [[4, 8], [8, 8], [8, 4], [16, 4]]) {
  if (!want("readN")) break;
  const { list, total } = pieces(piece * MiB);
  const h = await openHandles(ways);
  const bufs = Array.from({ length: ways }, () => new Uint8Array(piece * MiB));
  t = performance.now();
  let next = 0;
  await Promise.all(bufs.map(async (buf, k) => {
    while (next < list.length) {
      const p = list[next++];
      await readFull(h[p.shard][k], p.offset, buf.subarray(0, p.length));
    }
  }));
  report({
    phase: `read${ways}x${piece}MiB`,
    bytes: total,
    gb_s: gbs(total, performance.now() - t),
  });
  h.flat().forEach((f) => f.close());
}

const gpu = await requestGpu();
const device = gpu.device;
report({ phase: "gpu", device: gpu.adapterInfo.description || gpu.adapterInfo.vendor });
const dst = device.createBuffer({
  size: 1 << 30,
  usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
});

if (want("latency")) {
  await device.queue.onSubmittedWorkDone();
  let sum = 0;
  for (let i = 0; i < 20; i++) {
    device.queue.submit([]);
    const t0 = performance.now();
    await device.queue.onSubmittedWorkDone();
    sum += performance.now() - t0;
  }
  report({ phase: "onSubmittedWorkDone_idle_ms", mean: sum / 20 });
  const b = device.createBuffer({
    size: MiB,
    usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
  });
  sum = 0;
  let gm = 0;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await b.mapAsync(GPUMapMode.WRITE);
    sum += performance.now() - t0;
    const t1 = performance.now();
    const r = b.getMappedRange();
    new Uint8Array(r)[12345] = i;
    gm += performance.now() - t1;
    b.unmap();
  }
  b.destroy();
  report({ phase: "mapAsync_write_idle_ms", mean: sum / 5, getMappedRange_1MiB_ms: gm / 5 });
}

const src = new Uint8Array(128 * MiB);
for (let i = 0; i < src.length; i += 4096) src[i] = i & 0xff;

for (const [piece, flush] of [[8, true], [4, true], [16, true], [2, true]] as const) {
  if (!want("wb")) break;
  const bytes = piece * MiB;
  const n = Math.floor(testBytes / bytes);
  await device.queue.onSubmittedWorkDone();
  t = performance.now();
  let sync = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    device.queue.writeBuffer(dst, (i * bytes) % dst.size, src, 0, bytes);
    if (flush) device.queue.submit([]);
    sync += performance.now() - t0;
  }
  const t1 = performance.now();
  await device.queue.onSubmittedWorkDone();
  report({
    phase: `writeBuffer_${piece}MiB${flush ? "_submit" : ""}`,
    bytes: n * bytes,
    gb_s: gbs(n * bytes, performance.now() - t),
    sync_ms: Math.round(sync),
    drain_ms: Math.round(performance.now() - t1),
  });
}

dst.destroy();

/** uploadWeights() with the time spent in (and awaiting) the WebGPU calls it makes. */
async function profiledUpload(quant: QuantDType | undefined, opts: UploadOptions = {}) {
  const acc: Record<string, number> = {};
  const count: Record<string, number> = {};
  const restore: (() => void)[] = [];
  const wrap = (proto: any, name: string, isAsync: boolean) => {
    const orig = proto[name];
    proto[name] = function (this: unknown, ...a: unknown[]) {
      const t0 = performance.now();
      const r = orig.apply(this, a);
      const add = () => {
        acc[name] = (acc[name] ?? 0) + performance.now() - t0;
        count[name] = (count[name] ?? 0) + 1;
      };
      if (isAsync) (r as Promise<unknown>).then(add, add);
      else add();
      return r;
    };
    restore.push(() => (proto[name] = orig));
  };
  wrap(GPUQueue.prototype, "writeBuffer", false);
  wrap(GPUQueue.prototype, "submit", false);
  wrap(GPUQueue.prototype, "onSubmittedWorkDone", true);
  wrap(GPUDevice.prototype, "createBuffer", false);
  wrap(GPUDevice.prototype, "createBindGroup", false);
  wrap(GPUDevice.prototype, "popErrorScope", true);
  wrap(GPUBuffer.prototype, "mapAsync", true);
  wrap(Deno.FsFile.prototype, "read", true);
  try {
    const p = await planModel(dir, {
      dtype: "f16",
      quant,
      maxBinding: gpu.maxBinding,
      maxBufferSize: gpu.limits.maxBufferSize,
      maxContext: 1024,
    });
    const t0 = performance.now();
    const w = await uploadWeights(gpu, p.checkpoint, p.plan, undefined, opts);
    await device.queue.onSubmittedWorkDone();
    const ms = performance.now() - t0;
    p.checkpoint.close();
    w.destroy();
    const round = (o: Record<string, number>) =>
      Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v)]));
    report({
      phase: `uploadWeights_${quant ?? "f16"}`,
      opts,
      bytes: fileBytes,
      s: Math.round(ms) / 1000,
      gb_s: gbs(fileBytes, ms),
      ms_in: round(acc),
      calls: count,
    });
  } finally {
    restore.forEach((r) => r());
  }
}

if (want("upload")) {
  await profiledUpload(undefined);
  await profiledUpload("q4");
  await profiledUpload(undefined, { readBytes: 4 << 20 });
  await profiledUpload(undefined, { readBytes: 2 << 20, readsInFlight: 16 });
  await profiledUpload(undefined);
  await profiledUpload("q4");
}
gpu.destroy();
