/**
 * Where checkpoint loading spends its time: writes (once) a synthetic bf16 checkpoint of a
 * Qwen2-VL shape, then times each mechanism of the file → GPU path on its own — file reads (one or
 * several in flight), queue.writeBuffer, MAP_WRITE staging rings (filled by copy or by reading the
 * file straight into the mapped range), mappedAtCreation buffers, the latency of
 * onSubmittedWorkDone / mapAsync — and finally uploadWeights() itself (f16 and q4) with the time
 * spent inside writeBuffer, createBuffer and the awaits it makes. One JSON line per measurement.
 *
 * Run: deno run -A --no-config --no-check bench/load_probe.ts [--dir /tmp/ck2b]
 *   [--shape qwen2-vl-2b] [--mib 2048] [--only name,name] [--out file.jsonl]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { PRESETS } from "../src/model/presets.ts";
import { planModel } from "../src/model/qwen2vl.ts";
import { type StagingMode, uploadWeights } from "../src/model/weights.ts";
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
  for (let pass = 0; pass < 2; pass++) {
    t = performance.now();
    for (const p of list) await readFull(h[p.shard][0], p.offset, buf.subarray(0, p.length));
    report({ phase: "read1_32MiB", pass, bytes: total, gb_s: gbs(total, performance.now() - t) });
  }
  h.flat().forEach((f) => f.close());
}

for (const [ways, piece] of [[2, 16], [4, 8], [4, 16], [8, 8]]) {
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
    size: 64 * MiB,
    usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
  });
  sum = 0;
  let gm = 0;
  for (let i = 0; i < 20; i++) {
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
  report({ phase: "mapAsync_write_idle_ms", mean: sum / 20, getMappedRange_64MiB_ms: gm / 20 });
}

const src = new Uint8Array(128 * MiB);
for (let i = 0; i < src.length; i += 4096) src[i] = i & 0xff;

for (const [piece, flush] of [[32, false], [32, true], [8, true], [128, false]] as const) {
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

/** A ring of MAP_WRITE staging buffers: fill(k) fills one mapped range, then it is copied to dst. */
async function ring(
  name: string,
  count: number,
  size: number,
  total: number,
  fill: (mapped: Uint8Array, i: number) => Promise<void> | void,
) {
  const bufs = Array.from(
    { length: count },
    () =>
      device.createBuffer({
        size,
        usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
      }),
  );
  const ready: Promise<void>[] = bufs.map(() => Promise.resolve());
  const n = Math.ceil(total / size);
  let waits = 0, fills = 0, maps = 0;
  await device.queue.onSubmittedWorkDone();
  t = performance.now();
  for (let i = 0; i < n; i++) {
    const k = i % count, b = bufs[k];
    let t0 = performance.now();
    await ready[k];
    waits += performance.now() - t0;
    t0 = performance.now();
    const mapped = new Uint8Array(b.getMappedRange());
    maps += performance.now() - t0;
    t0 = performance.now();
    await fill(mapped, i);
    fills += performance.now() - t0;
    b.unmap();
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(b, 0, dst, (i * size) % dst.size, size);
    device.queue.submit([enc.finish()]);
    ready[k] = b.mapAsync(GPUMapMode.WRITE);
  }
  await device.queue.onSubmittedWorkDone();
  await Promise.all(ready);
  report({
    phase: name,
    bytes: n * size,
    gb_s: gbs(n * size, performance.now() - t),
    wait_ms: Math.round(waits),
    fill_ms: Math.round(fills),
    getMappedRange_ms: Math.round(maps),
  });
  bufs.forEach((b) => b.destroy());
}

if (want("ring")) {
  for (const [count, mib] of [[4, 64], [3, 32], [8, 16]]) {
    await ring(
      `ring${count}x${mib}MiB_set`,
      count,
      mib * MiB,
      testBytes,
      (m) => m.set(src.subarray(0, m.length)),
    );
  }
}

if (want("ringread")) {
  for (const [count, mib, ways] of [[4, 64, 4], [4, 64, 8], [6, 32, 4]]) {
    const { list } = pieces(mib * MiB);
    const h = await openHandles(ways);
    const total = Math.min(fileBytes, 4 * testBytes);
    await ring(`ring${count}x${mib}MiB_read${ways}`, count, mib * MiB, total, async (m, i) => {
      const p = list[i % list.length];
      const part = Math.ceil(p.length / ways / 4096) * 4096;
      const jobs: Promise<void>[] = [];
      for (let k = 0; k * part < p.length; k++) {
        const len = Math.min(part, p.length - k * part);
        jobs.push(
          readFull(h[p.shard][k], p.offset + k * part, m.subarray(k * part, k * part + len)),
        );
      }
      await Promise.all(jobs);
    });
    h.flat().forEach((f) => f.close());
  }
}

if (want("mac")) {
  const size = 64 * MiB, n = Math.floor(testBytes / size);
  await device.queue.onSubmittedWorkDone();
  t = performance.now();
  for (let i = 0; i < n; i++) {
    const b = device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
      mappedAtCreation: true,
    });
    new Uint8Array(b.getMappedRange()).set(src.subarray(0, size));
    b.unmap();
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(b, 0, dst, (i * size) % dst.size, size);
    device.queue.submit([enc.finish()]);
    b.destroy();
  }
  await device.queue.onSubmittedWorkDone();
  report({
    phase: "mappedAtCreation_64MiB_fresh",
    bytes: n * size,
    gb_s: gbs(n * size, performance.now() - t),
  });
}
dst.destroy();

/** uploadWeights() with the time spent in (and awaiting) the WebGPU calls it makes. */
async function profiledUpload(
  quant: QuantDType | undefined,
  staging: StagingMode = "map",
  readsInFlight = 4,
) {
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
    const w = await uploadWeights(gpu, p.checkpoint, p.plan, undefined, { staging, readsInFlight });
    await device.queue.onSubmittedWorkDone();
    const ms = performance.now() - t0;
    p.checkpoint.close();
    w.destroy();
    const round = (o: Record<string, number>) =>
      Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v)]));
    report({
      phase: `uploadWeights_${quant ?? "f16"}_${staging}_reads${readsInFlight}`,
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
  await profiledUpload(undefined, "write");
  await profiledUpload("q4", "write");
  await profiledUpload(undefined, "map", 8);
}
gpu.device.destroy();
