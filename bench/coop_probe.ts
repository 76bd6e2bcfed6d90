/**
 * Cooperative matrices (tensor cores) through Deno's WebGPU: wgpu's experimental
 * `wgpu-cooperative-matrix` feature (WGSL `enable wgpu_cooperative_matrix;`, `coop_mat16x16<f16, A>`,
 * `coopLoad` / `coopLoadT` / `coopMultiplyAdd` / `coopStore` / `coopStoreT`; Vulkan
 * VK_KHR_cooperative_matrix underneath). Answers, on the card it runs on: is the feature granted,
 * which element types and sizes compile and compute, which load is row-major, and how many
 * TFLOP/s a plain tiled GEMM reaches with it.
 *
 * Answer on the H200, 2026-11-28 09:44 UTC (Deno 2.9.6): the adapter does not list the feature and
 * requestDevice refuses it — "Some experimental features, EXPERIMENTAL_COOPERATIVE_MATRIX, were
 * requested, but experimental features are not enabled": Deno's GPUAdapter.requestDevice creates
 * every device with wgpu's `ExperimentalFeatures::disabled()`, so no WebGPU program run by this Deno
 * reaches the tensor cores. Rerun after a Deno upgrade; the rest of the probe is ready for that day.
 *
 *   deno run -A --no-config --no-check bench/coop_probe.ts
 * @module
 */

const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("coop_probe: no WebGPU adapter");
console.log(
  `adapter: ${adapter.info.description} features: ${[...adapter.features].sort().join(",")}`,
);
const COOP = "wgpu-cooperative-matrix" as GPUFeatureName;
const base = (["shader-f16", "timestamp-query"] as GPUFeatureName[]).filter((f) =>
  adapter.features.has(f)
);
const requiredLimits = {
  maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  maxBufferSize: adapter.limits.maxBufferSize,
  maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
  maxComputeWorkgroupSizeX: adapter.limits.maxComputeWorkgroupSizeX,
};
let dev: GPUDevice;
try {
  dev = await adapter.requestDevice({
    requiredFeatures: [...base, COOP, "subgroups" as GPUFeatureName],
    requiredLimits,
  });
} catch (e) {
  console.log(`coop_probe: requestDevice with ${COOP} failed: ${(e as Error).message}`);
  Deno.exit(0);
}
console.log(`device features: ${[...dev.features].sort().join(",")}`);
if (!dev.features.has(COOP)) {
  console.log(`coop_probe: ${COOP} not granted`);
  Deno.exit(0);
}

function buffer(
  data: ArrayBufferView | number,
  usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
): GPUBuffer {
  const size = typeof data === "number" ? data : data.byteLength;
  const b = dev.createBuffer({ size: Math.ceil(size / 16) * 16, usage });
  if (typeof data !== "number") {
    dev.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  }
  return b;
}

async function read(b: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const r = dev.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = dev.createCommandEncoder();
  enc.copyBufferToBuffer(b, 0, r, 0, bytes);
  dev.queue.submit([enc.finish()]);
  await r.mapAsync(GPUMapMode.READ);
  const out = r.getMappedRange().slice(0);
  r.destroy();
  return out;
}

async function pipeline(code: string, label: string): Promise<GPUComputePipeline | null> {
  dev.pushErrorScope("validation");
  const module = dev.createShaderModule({ code, label });
  const info = await module.getCompilationInfo();
  const msgs = info.messages.filter((m) => m.type === "error").map((m) => m.message);
  const p = dev.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
    label,
  });
  const err = await dev.popErrorScope();
  if (msgs.length || err) {
    console.log(`  ${label}: ${(msgs.join("; ") || err?.message || "").slice(0, 400)}`);
    return null;
  }
  return p;
}

// ---- semantics: which load / store reads rows ----
function f16Bits(x: number): number {
  const f = new Float16Array([x]);
  return new Uint16Array(f.buffer)[0];
}
function typed(t: string, v: number[]): ArrayBufferView {
  if (t === "f16") return new Uint16Array(v.map(f16Bits));
  return new Float32Array(v);
}
function fromBytes(t: string, b: ArrayBuffer, n: number): number[] {
  return t === "f16" ? [...new Float16Array(b, 0, n)] : [...new Float32Array(b, 0, n)];
}

async function semantics(t: string, ct: string, n: number): Promise<void> {
  const a = Array.from({ length: n * n }, (_, i) => ((i * 7) % 11) - 5);
  const b = Array.from({ length: n * n }, (_, i) => ((i * 5) % 13) - 6);
  const at = (x: number[], i: number, j: number, rm: boolean) => rm ? x[i * n + j] : x[j * n + i];
  for (const la of ["coopLoad", "coopLoadT"]) {
    for (const lb of ["coopLoad", "coopLoadT"]) {
      for (const st of ["coopStore", "coopStoreT"]) {
        const mat = `coop_mat${n}x${n}`;
        const code = `enable f16;
enable wgpu_cooperative_matrix;
@group(0) @binding(0) var<storage, read> a: array<${t}>;
@group(0) @binding(1) var<storage, read> b: array<${t}>;
@group(0) @binding(2) var<storage, read_write> c: array<${ct}>;
@compute @workgroup_size(32)
fn main() {
  let ma = ${la}<${mat}<${t}, A>>(&a[0], ${n}u);
  let mb = ${lb}<${mat}<${t}, B>>(&b[0], ${n}u);
  var mc = ${mat}<${ct}, C>();
  mc = coopMultiplyAdd(ma, mb, mc);
  ${st}(mc, &c[0], ${n}u);
}`;
        const label = `${t}->${ct} ${n}x${n} ${la}/${lb}/${st}`;
        const p = await pipeline(code, label);
        if (!p) return;
        const ba = buffer(typed(t, a)), bb = buffer(typed(t, b));
        const bc = buffer(n * n * (ct === "f16" ? 2 : 4));
        const enc = dev.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(p);
        pass.setBindGroup(
          0,
          dev.createBindGroup({
            layout: p.getBindGroupLayout(0),
            entries: [ba, bb, bc].map((buffer, binding) => ({ binding, resource: { buffer } })),
          }),
        );
        pass.dispatchWorkgroups(1);
        pass.end();
        dev.queue.submit([enc.finish()]);
        const c = fromBytes(ct, await read(bc, n * n * (ct === "f16" ? 2 : 4)), n * n);
        const matches: string[] = [];
        for (const arm of [true, false]) {
          for (const brm of [true, false]) {
            for (const crm of [true, false]) {
              let err = 0;
              for (let i = 0; i < n; i++) {
                for (let j = 0; j < n; j++) {
                  let s = 0;
                  for (let k = 0; k < n; k++) s += at(a, i, k, arm) * at(b, k, j, brm);
                  err = Math.max(err, Math.abs(s - at(c, i, j, crm)));
                }
              }
              if (err === 0) {
                matches.push(
                  `A ${arm ? "rm" : "cm"} B ${brm ? "rm" : "cm"} C ${crm ? "rm" : "cm"}`,
                );
              }
            }
          }
        }
        console.log(
          `  ${label}: ${
            matches.length ? matches.join(" | ") : `no layout matches (c[0..4] = ${c.slice(0, 4)})`
          }`,
        );
        for (const x of [ba, bb, bc]) x.destroy();
      }
    }
  }
}

console.log("semantics (exact small-integer products; which layouts reproduce C = A·B):");
await semantics("f16", "f32", 16);
await semantics("f16", "f16", 16);
await semantics("f32", "f32", 8);
await semantics("f16", "f32", 8);

// ---- speed: Y (m, n) f32 = X (m, k) f16 · W (n, k)ᵀ f16, both row-major (a PyTorch linear) ----
// B = Wᵀ is W read column-major. LOAD_X / LOAD_W name the loads the semantics pass found.
const loadRow = Deno.env.get("COOP_ROW") ?? "coopLoadT";
const loadCol = Deno.env.get("COOP_COL") ?? "coopLoad";
const storeRow = Deno.env.get("COOP_STORE_ROW") ?? "coopStoreT";

/** Direct: each subgroup a (FM·16) × (FN·16) block, fragments loaded straight from storage. */
function directKernel(fm: number, fn: number, sgm: number, sgn: number): string {
  const acc = [], body = [], store = [];
  for (let i = 0; i < fm; i++) {
    body.push(
      `    let a${i} = ${loadRow}<coop_mat16x16<f16, A>>(&x[(m0 + ${i * 16}u) * p.k + kk], p.k);`,
    );
  }
  for (let j = 0; j < fn; j++) {
    body.push(
      `    let b${j} = ${loadCol}<coop_mat16x16<f16, B>>(&w[(n0 + ${j * 16}u) * p.k + kk], p.k);`,
    );
  }
  for (let i = 0; i < fm; i++) {
    for (let j = 0; j < fn; j++) {
      acc.push(`  var c${i}_${j} = coop_mat16x16<f32, C>();`);
      body.push(`    c${i}_${j} = coopMultiplyAdd(a${i}, b${j}, c${i}_${j});`);
      store.push(`  ${storeRow}(c${i}_${j}, &y[(m0 + ${i * 16}u) * p.n + n0 + ${j * 16}u], p.n);`);
    }
  }
  return `enable f16;
enable wgpu_cooperative_matrix;
struct P { m: u32, n: u32, k: u32 }
@group(0) @binding(0) var<storage, read> x: array<f16>;
@group(0) @binding(1) var<storage, read> w: array<f16>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${32 * sgm * sgn})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sg = lid / 32u;
  let m0 = wid.y * ${16 * fm * sgm}u + (sg / ${sgn}u) * ${16 * fm}u;
  let n0 = wid.x * ${16 * fn * sgn}u + (sg % ${sgn}u) * ${16 * fn}u;
${acc.join("\n")}
  for (var kk = 0u; kk < p.k; kk += 16u) {
${body.join("\n")}
  }
${store.join("\n")}
}`;
}

/** Staged: the workgroup copies its X and W panels (KS wide) into workgroup memory, then each subgroup multiplies from there. */
function stagedKernel(fm: number, fn: number, sgm: number, sgn: number, ks: number): string {
  const tm = 16 * fm * sgm, tn = 16 * fn * sgn, threads = 32 * sgm * sgn;
  const acc = [], body = [], store = [];
  for (let s = 0; s < ks / 16; s++) {
    for (let i = 0; i < fm; i++) {
      body.push(
        `    let a${i}_${s} = ${loadRow}<coop_mat16x16<f16, A>>(&xs[(am + ${i * 16}u) * ${
          ks + 8
        }u + ${s * 16}u], ${ks + 8}u);`,
      );
    }
    for (let j = 0; j < fn; j++) {
      body.push(
        `    let b${j}_${s} = ${loadCol}<coop_mat16x16<f16, B>>(&ws[(bn + ${j * 16}u) * ${
          ks + 8
        }u + ${s * 16}u], ${ks + 8}u);`,
      );
    }
    for (let i = 0; i < fm; i++) {
      for (let j = 0; j < fn; j++) {
        body.push(`    c${i}_${j} = coopMultiplyAdd(a${i}_${s}, b${j}_${s}, c${i}_${j});`);
      }
    }
  }
  for (let i = 0; i < fm; i++) {
    for (let j = 0; j < fn; j++) {
      acc.push(`  var c${i}_${j} = coop_mat16x16<f32, C>();`);
      store.push(
        `  ${storeRow}(c${i}_${j}, &y[(m0 + am + ${i * 16}u) * p.n + n0 + bn + ${j * 16}u], p.n);`,
      );
    }
  }
  // Copy: panels are (tm, ks) and (tn, ks) f16 = vec4<u32> of 8 halves; padded rows (ks + 8).
  const vx = tm * ks / 8, vw = tn * ks / 8;
  return `enable f16;
enable wgpu_cooperative_matrix;
struct P { m: u32, n: u32, k: u32 }
@group(0) @binding(0) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> xs: array<f16, ${tm * (ks + 8)}>;
var<workgroup> ws: array<f16, ${tn * (ks + 8)}>;
fn put(dst: u32, v: vec4<u32>, isx: bool) {
  let h = array<vec2<f32>, 4>(unpack2x16float(v.x), unpack2x16float(v.y), unpack2x16float(v.z), unpack2x16float(v.w));
  for (var i = 0u; i < 4u; i++) {
    if (isx) { xs[dst + 2u * i] = f16(h[i].x); xs[dst + 2u * i + 1u] = f16(h[i].y); }
    else { ws[dst + 2u * i] = f16(h[i].x); ws[dst + 2u * i + 1u] = f16(h[i].y); }
  }
}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sg = lid / 32u;
  let m0 = wid.y * ${tm}u;
  let n0 = wid.x * ${tn}u;
  let am = (sg / ${sgn}u) * ${16 * fm}u;
  let bn = (sg % ${sgn}u) * ${16 * fn}u;
  let kv = p.k / 8u;
${acc.join("\n")}
  for (var kk = 0u; kk < p.k; kk += ${ks}u) {
    for (var i = lid; i < ${vx}u; i += ${threads}u) {
      let r = i / ${ks / 8}u; let c = i % ${ks / 8}u;
      put(r * ${ks + 8}u + 8u * c, x[(m0 + r) * kv + kk / 8u + c], true);
    }
    for (var i = lid; i < ${vw}u; i += ${threads}u) {
      let r = i / ${ks / 8}u; let c = i % ${ks / 8}u;
      put(r * ${ks + 8}u + 8u * c, w[(n0 + r) * kv + kk / 8u + c], false);
    }
    workgroupBarrier();
${body.join("\n")}
    workgroupBarrier();
  }
${store.join("\n")}
}`;
}

async function gemm(
  label: string,
  code: string,
  tm: number,
  tn: number,
  m: number,
  n: number,
  k: number,
): Promise<void> {
  const p = await pipeline(code, label);
  if (!p) return;
  const x = new Uint16Array(m * k), w = new Uint16Array(n * k);
  for (let i = 0; i < x.length; i++) x[i] = f16Bits(((i * 7) % 17 - 8) / 16);
  for (let i = 0; i < w.length; i++) w[i] = f16Bits(((i * 5) % 19 - 9) / 32);
  const bx = buffer(x), bw = buffer(w), by = buffer(m * n * 4);
  const pu = buffer(
    new Uint32Array([m, n, k, 0]),
    GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  );
  const bg = dev.createBindGroup({
    layout: p.getBindGroupLayout(0),
    entries: [bx, bw, by, pu].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const run = async (reps: number) => {
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(p);
    pass.setBindGroup(0, bg);
    for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(n / tn, m / tm);
    pass.end();
    dev.queue.submit([enc.finish()]);
    await dev.queue.onSubmittedWorkDone();
  };
  await run(1);
  // Check a few outputs against the CPU.
  const y = new Float32Array(await read(by, m * n * 4));
  let err = 0;
  for (const [i, j] of [[0, 0], [1, 17], [m - 1, n - 1], [m >> 1, n >> 2], [37 % m, 101 % n]]) {
    let s = 0;
    for (let kk = 0; kk < k; kk++) {
      s += ((((i * k + kk) * 7) % 17 - 8) / 16) * ((((j * k + kk) * 5) % 19 - 9) / 32);
    }
    err = Math.max(err, Math.abs(s - y[i * n + j]));
  }
  const times: number[] = [];
  for (let t = 0; t < 3; t++) {
    const t0 = performance.now();
    await run(10);
    const t1 = performance.now();
    await run(20);
    const t2 = performance.now();
    times.push(((t2 - t1) - (t1 - t0)) / 10);
  }
  times.sort((a, b) => a - b);
  const ms = times[1];
  console.log(
    `  ${label} ${m}x${n}x${k}: ${ms.toFixed(3)} ms, ${
      (2 * m * n * k / ms / 1e9).toFixed(1)
    } TFLOP/s, max err ${err.toExponential(2)}`,
  );
  for (const b of [bx, bw, by, pu]) b.destroy();
}

console.log(`speed (loads: rows ${loadRow}, columns ${loadCol}, store ${storeRow}):`);
const shapes: [number, number, number][] = [[4096, 4096, 4096], [1536, 3584, 18944], [
  5120,
  3840,
  1280,
]];
for (const [m, n, k] of shapes) {
  for (const [fm, fn, sgm, sgn] of [[2, 2, 2, 2], [2, 4, 2, 2], [4, 2, 2, 2], [2, 2, 4, 2]]) {
    await gemm(
      `direct fm${fm} fn${fn} sg${sgm}x${sgn}`,
      directKernel(fm, fn, sgm, sgn),
      16 * fm * sgm,
      16 * fn * sgn,
      m,
      n,
      k,
    );
  }
  for (
    const [fm, fn, sgm, sgn, ks] of [[2, 2, 2, 2, 32], [4, 2, 2, 4, 32], [2, 4, 4, 2, 32], [
      4,
      4,
      2,
      2,
      32,
    ]]
  ) {
    await gemm(
      `staged fm${fm} fn${fn} sg${sgm}x${sgn} ks${ks}`,
      stagedKernel(fm, fn, sgm, sgn, ks),
      16 * fm * sgm,
      16 * fn * sgn,
      m,
      n,
      k,
    );
  }
}
dev.destroy();
