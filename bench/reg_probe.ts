/**
 * How many accumulators a thread keeps in registers through this WebGPU, and in which form: the
 * question behind the taller GEMM tiles (BENCHMARKS.md "Measured and dropped: taller GEMM tiles")
 * that ran 2.5–4× slower even without global loads. Three families, each at growing sizes:
 * - `chains N`: N scalar f32 function-local accumulators, fma from registers only;
 * - `blocks N private|local`: N mat4x4 accumulators updated by outer products of two vec4 that
 *   change every step (registers only), declared module-scope `var<private>` (as linear.wgsl's
 *   PIPE) or function-local;
 * - `shared MB private|local`: PIPE's products (linear.wgsl mac) from workgroup memory: a k reads
 *   MB + 2 vec4 for 32·MB FMAs, 16 k a step and a barrier, no global loads (PIPE is MB = 2).
 * Each prints FMA throughput as TFLOP/s (2 FLOP an FMA).
 *
 *   deno run -A --no-config --no-check bench/reg_probe.ts [--only chains|blocks|shared|pipe|fn|ratio|occupancy] [--check]
 * @module
 */
import { requestGpu } from "../src/gpu/device.ts";
import { createStorage } from "../src/gpu/buffers.ts";
import { msPerDispatch } from "./_timing.ts";

const gpu = await requestGpu();
const dev = gpu.device;
const WG = 256, GROUPS = 132 * 16, ITERS = 256;
const out = createStorage(gpu, 4 * WG * GROUPS, "out");
// --check: only validate each kernel (lavapipe compiles the written-out loops for minutes).
const check = Deno.args.includes("--check");
const only = Deno.args.includes("--only") ? Deno.args[Deno.args.indexOf("--only") + 1] : "";

// The operand rows #ld reads: 5120 × 1280 f32 (x) and, aliased, 3840 × 1280 f16 (w) of them.
const src = createStorage(gpu, 5120 * 1280 * 4, "src");

async function measure(
  label: string,
  code: string,
  fmasPerIter: number,
  ld = false,
): Promise<void> {
  const module = dev.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  for (const m of info.messages) if (m.type === "error") throw new Error(`${label}: ${m.message}`);
  if (check) return console.log(`${label}: compiles`);
  const pipe = dev.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const bg = dev.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: out } },
      ...(ld ? [1, 2].map((binding) => ({ binding, resource: { buffer: src } })) : []),
    ],
  });
  const ms = await msPerDispatch(gpu, pipe, bg, GROUPS, out, { targetMs: 200 });
  const flop = 2 * GROUPS * WG * ITERS * fmasPerIter;
  console.log(`${label.padEnd(28)} ${(flop / ms / 1e9).toFixed(1).padStart(6)} TFLOP/s`);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function chains(n: number): string {
  return `
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) g: vec3u) {
  let b = 0.999 + f32(g.x & 1u) * 1e-6; let c = 1e-4;
  ${range(n).map((i) => `var a${i} = f32(g.x + ${i}u) * 1e-3;`).join(" ")}
  for (var i = 0u; i < ${ITERS}u; i++) { ${
    range(n).map((i) => `a${i} = fma(a${i}, b, c);`).join(" ")
  } }
  o[g.x] = ${range(n).map((i) => `a${i}`).join(" + ")};
}`;
}

const OUTER = `
fn outer_acc(c: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(vec4(a.x), b, c[0]), fma(vec4(a.y), b, c[1]), fma(vec4(a.z), b, c[2]),
    fma(vec4(a.w), b, c[3]));
}
fn msum(c: mat4x4<f32>) -> f32 { return dot(c[0] + c[1] + c[2] + c[3], vec4(1.0)); }`;

/** Declarations of the accumulators c0.. (module scope or in main). */
function accs(n: number, local: boolean): { mod: string; fn: string } {
  const decl = range(n).map((i) => `var c${i}: mat4x4<f32>;`).join(" ");
  return local ? { mod: "", fn: decl } : { mod: decl.replaceAll("var ", "var<private> "), fn: "" };
}

// Two operand vec4 a, b per block pair: blocks 2j, 2j + 1 share a_j (as PIPE's rows), b0 / b1.
function blocks(n: number, local: boolean): string {
  const d = accs(n, local);
  const na = Math.ceil(n / 2);
  const step = range(n).map((i) => `c${i} = outer_acc(c${i}, a${i >> 1}, b${i & 1});`).join(" ");
  return `${OUTER}
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
${d.mod}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) g: vec3u) {
  ${d.fn}
  let s = vec4(0.999); let t = vec4(1e-4);
  ${range(na).map((i) => `var a${i} = vec4(f32(g.x + ${i}u)) * 1e-3;`).join(" ")}
  var b0 = vec4(f32(g.x)) * 2e-3; var b1 = b0 + 1e-3;
  for (var i = 0u; i < ${ITERS}u; i++) {
    ${step}
    ${
    range(na).map((i) => `a${i} = fma(a${i}, s, t);`).join(" ")
  } b0 = fma(b0, s, t); b1 = fma(b1, s, t);
  }
  o[g.x] = ${range(n).map((i) => `msum(c${i})`).join(" + ")};
}`;
}

// PIPE's products from workgroup memory without global loads: 16 × 16 threads, thread (tx, ty)
// owns blocks at rows ib·64 + ty·4 (ib < MB), columns jb·64 + tx·4 (jb < 2).
function shared(mb: number, local: boolean): string {
  const d = accs(2 * mb, local);
  const bm = 64 * mb;
  const mac = (k: number) =>
    `{ let b0 = Bs[${k}u][tx]; let b1 = Bs[${k}u][16u + tx]; ` +
    range(mb).map((i) =>
      `let a${i} = As[${k}u][${16 * i}u + ty]; c${2 * i} = outer_acc(c${2 * i}, a${i}, b0); ` +
      `c${2 * i + 1} = outer_acc(c${2 * i + 1}, a${i}, b1);`
    ).join(" ") + " }";
  return `${OUTER}
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
var<workgroup> As: array<array<vec4<f32>, ${bm / 4 + 1}>, 16>;
var<workgroup> Bs: array<array<vec4<f32>, 33>, 16>;
${d.mod}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) g: vec3u,
    @builtin(local_invocation_index) lid: u32) {
  ${d.fn}
  let tx = lid % 16u; let ty = lid / 16u;
  for (var j = lid; j < 16u * ${bm / 4 + 1}u; j += ${WG}u) { As[j / ${bm / 4 + 1}u][j % ${
    bm / 4 + 1
  }u] = vec4(f32(j) * 1e-3); }
  for (var j = lid; j < 16u * 33u; j += ${WG}u) { Bs[j / 33u][j % 33u] = vec4(f32(j) * 2e-3); }
  workgroupBarrier();
  for (var i = 0u; i < ${ITERS}u; i++) {
    ${range(16).map(mac).join("\n    ")}
    workgroupBarrier();
  }
  o[g.x] = ${range(2 * mb).map((i) => `msum(c${i})`).join(" + ")};
}`;
}

// PIPE's k loop without global loads, built up piece by piece: MB row blocks, BK k a step, one
// shared buffer (a barrier a step) or two (#db: steps alternate, a barrier a step), and #st: each
// step also stores a loader block held in registers (as loaded bits: f16 w unpacked, transposed,
// 4 vec4 into the other buffer), as linear.wgsl put_step. Loader blocks past 256 are dropped.
// #ld (with db, st): the stored blocks are loaded from global memory two steps ahead, as PIPE's
// (x rows of f32 as vec4<u32>, w rows of f16 as vec2<u32>; the workgroup's tile of a 5120 × 3840
// product over k = 1280, wrapping).
// #fn: the products of a k in a function mac(buf, k) called with literals, updating the
// module-scope accumulators (as linear.wgsl PIPE); #fn-split: one function a row block
// (mac_i(buf, k): its two outer products).
function pipe(mb: number, bk: number, db: boolean, st: boolean, ld = false, fn = ""): string {
  const d = accs(2 * mb, false);
  const bm = 64 * mb, aw = bm / 4 + 1, nb = db ? 2 : 1;
  const xblocks = (bm / 4) * (bk / 4);
  const mac = (buf: number, k: number) =>
    `{ let b0 = Bs[${buf}u][${k}u][tx]; let b1 = Bs[${buf}u][${k}u][16u + tx]; ` +
    range(mb).map((i) =>
      `let a${i} = As[${buf}u][${k}u][${16 * i}u + ty]; c${2 * i} = outer_acc(c${
        2 * i
      }, a${i}, b0); ` +
      `c${2 * i + 1} = outer_acc(c${2 * i + 1}, a${i}, b1);`
    ).join(" ") + " }";
  const macBody = (i: number) =>
    `let b0 = Bs[buf][k][tx_]; let b1 = Bs[buf][k][16u + tx_]; let a = As[buf][k][${
      16 * i
    }u + ty_]; ` +
    `c${2 * i} = outer_acc(c${2 * i}, a, b0); c${2 * i + 1} = outer_acc(c${2 * i + 1}, a, b1);`;
  const fns = fn === "fn"
    ? `fn mac(buf: u32, k: u32) { let b0 = Bs[buf][k][tx_]; let b1 = Bs[buf][k][16u + tx_]; ${
      range(mb).map((i) =>
        `let a${i} = As[buf][k][${16 * i}u + ty_]; c${2 * i} = outer_acc(c${2 * i}, a${i}, b0); ` +
        `c${2 * i + 1} = outer_acc(c${2 * i + 1}, a${i}, b1);`
      ).join(" ")
    } }`
    : fn === "split"
    ? range(mb).map((i) => `fn mac${i}(buf: u32, k: u32) { ${macBody(i)} }`).join("\n")
    : "";
  const call = (buf: number, k: number) =>
    fn === "fn"
      ? `mac(${buf}u, ${k}u);`
      : range(mb).map((i) => `mac${i}(${buf}u, ${k}u);`).join(" ");
  const products = (buf: number) =>
    range(bk).map((k) => fn ? call(buf, k) : mac(buf, k)).join("\n    ");
  const put = (buf: number, b = "blk") => st ? `put(${buf}u, ${b});` : "";
  const body = ld
    ? `blk_v = load(k0 + ${2 * bk}u); ${products(0)}\n    ${
      put(1, "blk_w")
    } workgroupBarrier();\n    ` +
      `blk_w = load(k0 + ${3 * bk}u); ${products(1)}\n    ${
        put(0, "blk_v")
      } workgroupBarrier(); k0 += ${2 * bk}u;`
    : db
    ? `${products(0)}\n    ${put(1)} workgroupBarrier();\n    ${products(1)}\n    ${
      put(0)
    } workgroupBarrier();`
    : `${products(0)}\n    workgroupBarrier(); ${put(0)} workgroupBarrier();`;
  const mt = Math.ceil(5120 / bm);
  return `${OUTER}
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
var<workgroup> As: array<array<array<vec4<f32>, ${aw}>, ${bk}>, ${nb}>;
var<workgroup> Bs: array<array<array<vec4<f32>, 33>, ${bk}>, ${nb}>;
${d.mod}
struct Raw { r0: vec4<u32>, r1: vec4<u32>, r2: vec4<u32>, r3: vec4<u32> }
var<private> blk: Raw;
var<private> blk_v: Raw;
var<private> blk_w: Raw;
var<private> rows4: vec4<u32>;
var<private> tx_: u32;
var<private> ty_: u32;
${fns}
${
    ld
      ? `@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> srch: array<vec2<u32>>;
fn ld1(row: u32, k: u32) -> vec4<u32> {
  let i = (row * 1280u + k % 1280u) / 4u;
  if (w_role) { return vec4(srch[i], 0u, 0u); }
  return src[i];
}
fn load(k0: u32) -> Raw {
  let k = k0 + pos.y;
  return Raw(ld1(rows4.x, k), ld1(rows4.y, k), ld1(rows4.z, k), ld1(rows4.w, k));
}`
      : ""
  }
var<private> pos: vec2<u32>;
var<private> w_role: bool;
var<private> loader: bool;
fn cvt(v: vec4<u32>) -> vec4<f32> {
  if (w_role) { return vec4(unpack2x16float(v.x), unpack2x16float(v.y)); }
  return bitcast<vec4<f32>>(v);
}
fn put(buf: u32, b: Raw) {
  if (!loader) { return; }
  let t = transpose(mat4x4(cvt(b.r0), cvt(b.r1), cvt(b.r2), cvt(b.r3)));
  let c = pos.x / 4u;
  if (w_role) {
    Bs[buf][pos.y][c] = t[0]; Bs[buf][pos.y + 1u][c] = t[1]; Bs[buf][pos.y + 2u][c] = t[2]; Bs[buf][pos.y + 3u][c] = t[3];
  } else {
    As[buf][pos.y][c] = t[0]; As[buf][pos.y + 1u][c] = t[1]; As[buf][pos.y + 2u][c] = t[2]; As[buf][pos.y + 3u][c] = t[3];
  }
}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) g: vec3u,
    @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let tx = lid % 16u; let ty = lid / 16u;
  tx_ = tx; ty_ = ty;
  w_role = lid >= ${xblocks}u;
  loader = lid < ${xblocks + 32 * (bk / 4)}u;
  let b = select(lid, lid - ${xblocks}u, w_role);
  let rows = select(${bm / 4}u, 32u, w_role);
  pos = vec2(4u * (b % rows), 4u * (b / rows) % ${bk}u);
  let h = pack2x16float(vec2(f32(lid) * 1e-3, 0.5));
  let f = bitcast<u32>(f32(lid) * 1e-3);
  let r = select(vec4(f), vec4(h, h, 0u, 0u), w_role);
  blk = Raw(r, r + 1u, r + 2u, r + 3u);
  let r0 = select((wid.x % ${mt}u) * ${bm}u, (wid.x / ${mt}u % 30u) * 128u, w_role) + pos.x;
  rows4 = min(vec4(r0) + vec4(0u, 1u, 2u, 3u), vec4(select(5119u, 3839u, w_role)));
  for (var j = lid; j < ${nb * bk * aw}u; j += ${WG}u) { As[j / ${
    bk * aw
  }u][(j / ${aw}u) % ${bk}u][j % ${aw}u] = vec4(f32(j) * 1e-3); }
  for (var j = lid; j < ${nb * bk * 33}u; j += ${WG}u) { Bs[j / ${
    bk * 33
  }u][(j / 33u) % ${bk}u][j % 33u] = vec4(f32(j) * 2e-3); }
  ${ld ? `blk_v = load(0u); blk_w = load(${bk}u); put(0u, blk_v);` : ""}
  workgroupBarrier();
  var k0 = 0u;
  for (var i = 0u; i < ${ITERS * 16 / bk / nb}u; i++) {
    ${body}
  }
  o[g.x] = ${range(2 * mb).map((i) => `msum(c${i})`).join(" + ")};
}`;
}

// Products at other ratios: RA × RB mat4x4 accumulators, a k reading RA + RB vec4 for 16·RA·RB
// FMAs (4·RA·RB / (RA + RB) FMAs a float read): the curve of FMA rate against that ratio.
// `pad` KiB of extra workgroup memory (touched, so it stays) and `wg` threads (16 × wg / 16) set
// how many workgroups, so warps, an SM holds.
function ratio(ra: number, rb: number, pad = 0, wg = WG): string {
  const d = accs(ra * rb, false);
  const mac = (k: number) =>
    `{ ${range(rb).map((j) => `let b${j} = Bs[${k}u][${16 * j}u + tx];`).join(" ")} ` +
    range(ra).map((i) =>
      `let a${i} = As[${k}u][${16 * i}u + ty]; ` +
      range(rb).map((j) => `c${i * rb + j} = outer_acc(c${i * rb + j}, a${i}, b${j});`).join(" ")
    ).join(" ") + " }";
  const aw = 16 * ra + 1, bw = 16 * rb + 1;
  return `${OUTER}
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
var<workgroup> As: array<array<vec4<f32>, ${aw}>, 16>;
var<workgroup> Bs: array<array<vec4<f32>, ${bw}>, 16>;
${pad ? `var<workgroup> pad: array<vec4<f32>, ${pad * 64}>;` : ""}
${d.mod}
@compute @workgroup_size(${wg}) fn main(@builtin(global_invocation_id) g: vec3u,
    @builtin(local_invocation_index) lid: u32) {
  let tx = lid % 16u; let ty = lid / 16u;
  for (var j = lid; j < ${
    16 * aw
  }u; j += ${wg}u) { As[j / ${aw}u][j % ${aw}u] = vec4(f32(j) * 1e-3); }
  for (var j = lid; j < ${
    16 * bw
  }u; j += ${wg}u) { Bs[j / ${bw}u][j % ${bw}u] = vec4(f32(j) * 2e-3); }
  ${pad ? `pad[lid] = As[0][lid % ${aw}u];` : ""}
  workgroupBarrier();
  for (var i = 0u; i < ${ITERS}u; i++) {
    ${range(16).map(mac).join("\n    ")}
    workgroupBarrier();
  }
  o[g.x] = ${range(ra * rb).map((i) => `msum(c${i})`).join(" + ")}${
    pad ? " + pad[(lid + 1u) % 64u].x" : ""
  };
}`;
}

if (!only || only === "chains") {
  for (const n of [64, 96, 128, 160]) await measure(`chains ${n}`, chains(n), n);
}
if (!only || only === "blocks") {
  for (const local of [false, true]) {
    for (const n of [4, 6, 8]) {
      await measure(`blocks ${n} ${local ? "local" : "private"}`, blocks(n, local), 16 * n);
    }
  }
}
if (!only || only === "shared") {
  for (const local of [false, true]) {
    for (const mb of [2, 3, 4]) {
      await measure(`shared ${mb} ${local ? "local" : "private"}`, shared(mb, local), 16 * 32 * mb);
    }
  }
}
if (!only || only === "pipe") {
  for (const [mb, bk] of [[2, 16], [3, 16], [4, 16], [2, 8], [3, 8], [4, 8]]) {
    for (const [db, st, ld] of [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]) {
      // 48 KiB of workgroup memory at most.
      if ((db ? 2 : 1) * bk * (16 * mb + 1 + 33) * 16 > 49152) continue;
      const label = `pipe ${mb} bk${bk}${db ? " db" : ""}${st ? " st" : ""}${ld ? " ld" : ""}`;
      await measure(label, pipe(mb, bk, !!db, !!st, !!ld), 16 * 32 * mb, !!ld);
    }
  }
}
if (!only || only === "fn") {
  for (const [mb, bk] of [[2, 16], [3, 16], [4, 16], [4, 8]]) {
    for (const fn of ["fn", "split"]) {
      const db = mb < 4 || bk === 8;
      await measure(
        `pipe ${mb} bk${bk}${db ? " db" : ""} ${fn}`,
        pipe(mb, bk, db, false, false, fn),
        16 * 32 * mb,
      );
      if (db) {
        await measure(
          `pipe ${mb} bk${bk} db st ld ${fn}`,
          pipe(mb, bk, true, true, true, fn),
          16 * 32 * mb,
          true,
        );
      }
    }
  }
}
if (!only || only === "ratio") {
  for (const [ra, rb] of [[1, 1], [1, 2], [1, 3], [1, 4], [1, 5], [2, 2], [2, 3], [2, 4], [2, 5]]) {
    const r = (4 * ra * rb) / (ra + rb);
    await measure(`ratio ${ra}x${rb} (${r.toFixed(2)})`, ratio(ra, rb), 16 * 16 * ra * rb);
  }
}
if (!only || only === "occupancy") {
  // At 1 × 1 and 1 × 2 (the flash attention's S and P·V ratios), warps an SM set by the threads of
  // a workgroup when workgroup memory (228 KiB an SM) allows five.
  for (const [ra, rb] of [[1, 1], [1, 2]]) {
    // pad to ≈ 44 KiB a workgroup: five an SM, so 5 · wg / 32 warps.
    const pad = 44 - Math.ceil((16 * (16 * ra + 1) + 16 * (16 * rb + 1)) / 64);
    for (const [pad_, wg] of [[0, 256], [pad, 256], [pad, 160], [pad, 128], [pad, 96], [pad, 64]]) {
      const pad = pad_, groups = wg === 256 ? "" : ` wg ${wg}`;
      // fmas a thread a loop step as before; the dispatch has GROUPS · 256 threads either way.
      await measure(
        `ratio ${ra}x${rb} pad ${pad} KiB${groups}`,
        ratio(ra, rb, pad, wg),
        (16 * 16 * ra * rb * wg) / WG,
      );
    }
  }
}
