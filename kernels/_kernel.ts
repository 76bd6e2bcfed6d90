/**
 * What every kernel builder shares: compile a WGSL family with defines into a cached pipeline with
 * an explicit bind group layout (never `layout: "auto"`, which drops unused bindings and then
 * silently skips dispatches), and bind buffers + params once into a reusable {@link Dispatch}.
 * @module
 */
import type { Gpu } from "../src/gpu/device.ts";
import { GpuError, InvalidInputError } from "../src/errors.ts";
import { type Defines, preprocess } from "./_preprocess.ts";
import type { ParamsLayout, ScalarType } from "./_params.ts";
import { WGSL } from "./_wgsl.ts";

/** How a kernel uses one storage binding, in binding order (the params uniform comes last). */
export type Access = "read" | "read_write";

/** A compiled kernel variant. */
export interface KernelVariant {
  /** Descriptive cache key and GPU label, e.g. `norm.rms_norm[F16]`. */
  readonly key: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly bindings: readonly Access[];
  readonly params?: ParamsLayout<Record<string, ScalarType>>;
}

/** What a builder asks for. */
export interface VariantSpec {
  /** `.wgsl` file name without extension. */
  family: string;
  /** Entry point in that file. */
  entry: string;
  /** Storage bindings @binding(0..n-1) in order; params (if any) is @binding(n) uniform. */
  bindings: readonly Access[];
  params?: ParamsLayout<Record<string, ScalarType>>;
  /** Preprocessor defines; `F16: true` or `KV16: true` also emits `enable f16;`. */
  defines?: Defines;
  /**
   * Generated WGSL text for `{{NAME}}` placeholders (e.g. loops written out step by step). It
   * must follow from `defines`: it is not part of the cache key.
   */
  code?: Record<string, string>;
}

/** Compiles (or fetches from the cache) the pipeline for `spec`. */
export function variant(gpu: Gpu, spec: VariantSpec): KernelVariant {
  const defs = spec.defines ?? {};
  const defKey = Object.keys(defs).sort().filter((k) => defs[k] !== false)
    .map((k) => (defs[k] === true ? k : `${k}=${defs[k]}`)).join(",");
  const key = `${spec.family}.${spec.entry}[${defKey}]`;
  const src = WGSL[spec.family];
  if (src === undefined) throw new Error(`no kernels/${spec.family}.wgsl (is _wgsl.ts stale?)`);
  const n = spec.bindings.length;
  const layoutKey = spec.bindings.join(",") + (spec.params ? ",uniform" : "");
  const layout = gpu.layout(layoutKey, () =>
    gpu.device.createBindGroupLayout({
      label: layoutKey,
      entries: [
        ...spec.bindings.map((a, i): GPUBindGroupLayoutEntry => ({
          binding: i,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: a === "read" ? "read-only-storage" : "storage" },
        })),
        ...(spec.params
          ? [{
            binding: n,
            visibility: GPUShaderStage.COMPUTE,
            buffer: { type: "uniform" as const },
          }]
          : []),
      ],
    }));
  const pipeline = gpu.pipeline(key, () => {
    // F16: f16 weights; KV16: an f16 KV cache (kernels/_kv_types.wgsl).
    const f16 = defs.F16 || defs.KV16;
    if (f16 && !gpu.features.f16) {
      throw new GpuError(
        `kernel ${key} needs shader-f16, which this adapter lacks; use f32 weights and an f32 KV cache`,
      );
    }
    const code = [
      f16 ? "enable f16;" : "",
      spec.params ? spec.params.wgsl("Params") : "",
      preprocess(src, { ...defs, ...spec.code, PARAMS_BINDING: n }),
    ].join("\n");
    const module = gpu.device.createShaderModule({ label: key, code });
    return gpu.device.createComputePipeline({
      label: key,
      layout: gpu.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: spec.entry },
    });
  });
  return { key, pipeline, layout, bindings: spec.bindings, params: spec.params };
}

/** A buffer or a byte range of one, as bound to a storage binding. */
export type BufferArg = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** The GPUBuffer behind a BufferArg. */
export function bufferOf(b: BufferArg): GPUBuffer {
  return b instanceof GPUBuffer ? b : b.buffer;
}

/** Byte size a BufferArg binds. */
export function bindSize(b: BufferArg): number {
  if (b instanceof GPUBuffer) return b.size;
  return b.size ?? b.buffer.size - (b.offset ?? 0);
}

/** Throws if `b` binds fewer than `bytes` bytes. */
export function checkSize(name: string, b: BufferArg, bytes: number): void {
  const have = bindSize(b);
  if (have < bytes) {
    throw new InvalidInputError(
      `${name} buffer "${bufferOf(b).label}" holds ${have} bytes but the shape needs ${bytes}`,
    );
  }
}

/**
 * One bound kernel call: the bind group and params are made once, so a decode step can be
 * encoded again and again without allocations.
 */
export class Dispatch {
  readonly variant: KernelVariant;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
  readonly #paramsBuffer?: GPUBuffer;

  constructor(
    gpu: Gpu,
    v: KernelVariant,
    buffers: readonly BufferArg[],
    params: ArrayBuffer | undefined,
    workgroups: readonly [number, number?, number?],
  ) {
    if (buffers.length !== v.bindings.length) {
      throw new Error(`${v.key}: expected ${v.bindings.length} buffers, got ${buffers.length}`);
    }
    const max = gpu.limits.maxComputeWorkgroupsPerDimension;
    const wg = [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1] as const;
    if (wg.some((x) => x > max || !Number.isInteger(x) || x < 0)) {
      throw new Error(`${v.key}: workgroup grid ${wg.join("×")} exceeds ${max} per dimension`);
    }
    this.variant = v;
    this.workgroups = wg;
    const entries: GPUBindGroupEntry[] = buffers.map((b, i) => ({
      binding: i,
      resource: b instanceof GPUBuffer ? { buffer: b } : b,
    }));
    if (v.params) {
      if (!params) throw new Error(`${v.key}: params missing`);
      const slot = gpu.paramsArena?.take(params);
      if (slot) {
        entries.push({ binding: buffers.length, resource: slot });
      } else {
        this.#paramsBuffer = gpu.device.createBuffer({
          label: `${v.key}.params`,
          size: params.byteLength,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        });
        gpu.device.queue.writeBuffer(this.#paramsBuffer, 0, params);
        entries.push({ binding: buffers.length, resource: { buffer: this.#paramsBuffer } });
      }
    }
    this.bindGroup = gpu.device.createBindGroup({ label: v.key, layout: v.layout, entries });
  }

  /** Records the dispatch into an open compute pass. Skips empty grids. */
  encode(pass: GPUComputePassEncoder): void {
    if (this.workgroups.some((x) => x === 0)) return;
    pass.setPipeline(this.variant.pipeline);
    pass.setBindGroup(0, this.bindGroup);
    pass.dispatchWorkgroups(...this.workgroups);
  }

  /** Frees the params buffer (bound buffers belong to the caller). */
  destroy(): void {
    this.#paramsBuffer?.destroy();
  }
}

/**
 * A dispatch and the one that finishes its work from a scratch buffer they share (a pass over
 * slices, then one workgroup merging them: the sampler, the logprobs): one `encode` records both,
 * `destroy` frees both and the scratch. A decode loop treats it like any other {@link Dispatch}.
 */
export class TwoPassDispatch extends Dispatch {
  readonly #then: Dispatch;
  readonly #scratch: GPUBuffer;

  /** The first pass as {@link Dispatch}'s arguments, then the second and the scratch it owns. */
  constructor(
    gpu: Gpu,
    v: KernelVariant,
    buffers: readonly BufferArg[],
    params: ArrayBuffer | undefined,
    workgroups: readonly [number, number?, number?],
    then: Dispatch,
    scratch: GPUBuffer,
  ) {
    super(gpu, v, buffers, params, workgroups);
    this.#then = then;
    this.#scratch = scratch;
  }

  override encode(pass: GPUComputePassEncoder): void {
    super.encode(pass);
    this.#then.encode(pass);
  }

  override destroy(): void {
    super.destroy();
    this.#then.destroy();
    this.#scratch.destroy();
  }
}

/**
 * Many dispatches' params in one uniform buffer, each at its own offset (a multiple of
 * minUniformBufferOffsetAlignment), written by one writeBuffer per {@link ParamsArena.flush}.
 * Why: a buffer and a writeBuffer of its own cost a Dispatch ≈ 25 µs of CPU on the H200 machine
 * (of ≈ 95 µs in all, with its bind group; 2026-11-28 23:10, the tiny model's prefill), and a short
 * prompt's prefill (≈ 14 dispatches a layer) waits on the CPU that builds it. Dispatches built
 * while {@link withParamsArena} runs take their params from it.
 */
export class ParamsArena {
  readonly buffer: GPUBuffer;
  readonly #gpu: Gpu;
  readonly #bytes: Uint8Array<ArrayBuffer>;
  readonly #align: number;
  #used = 0;
  #flushed = 0;

  /** Room for `slots` params of up to one alignment unit (256 bytes) each. */
  constructor(gpu: Gpu, slots: number) {
    this.#gpu = gpu;
    this.#align = gpu.limits.minUniformBufferOffsetAlignment;
    this.#bytes = new Uint8Array(Math.max(1, slots) * this.#align);
    this.buffer = gpu.device.createBuffer({
      label: "params.arena",
      size: this.#bytes.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }

  /** A binding of `params` copied into the arena, or undefined when it is full. */
  take(params: ArrayBuffer): GPUBufferBinding | undefined {
    const size = params.byteLength;
    if (this.#used + size > this.#bytes.byteLength) return undefined;
    const offset = this.#used;
    this.#bytes.set(new Uint8Array(params), offset);
    this.#used += Math.ceil(size / this.#align) * this.#align;
    return { buffer: this.buffer, offset, size };
  }

  /** Writes the params taken since the last flush to the GPU (before submitting their dispatches). */
  flush(): void {
    if (this.#used === this.#flushed) return;
    this.#gpu.device.queue.writeBuffer(
      this.buffer,
      this.#flushed,
      this.#bytes,
      this.#flushed,
      this.#used - this.#flushed,
    );
    this.#flushed = this.#used;
  }

  /** Frees the buffer (work already submitted keeps it until done). */
  destroy(): void {
    this.buffer.destroy();
  }
}

/**
 * Runs `build` (synchronous: it builds dispatches and submits them with src/model/vision.ts
 * submit(), which flushes the arena first) with a {@link ParamsArena} of `slots` active on `gpu`;
 * dispatches past its room get buffers of their own. Everything built inside must be submitted
 * inside: the arena is freed on return.
 */
export function withParamsArena<T>(gpu: Gpu, slots: number, build: () => T): T {
  if (gpu.paramsArena) return build(); // nested: the outer arena serves
  const arena = new ParamsArena(gpu, slots);
  gpu.paramsArena = arena;
  try {
    return build();
  } finally {
    gpu.paramsArena = undefined;
    arena.destroy();
  }
}

/** Encodes dispatches in one compute pass and submits them. */
export function run(gpu: Gpu, dispatches: readonly Dispatch[], label = "qvq"): void {
  gpu.paramsArena?.flush();
  const enc = gpu.device.createCommandEncoder({ label });
  const pass = enc.beginComputePass({ label });
  for (const d of dispatches) d.encode(pass);
  pass.end();
  gpu.device.queue.submit([enc.finish()]);
}

/** Ceil division, for workgroup counts. */
export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

/**
 * WGSL text of `terms` combined pairwise as a balanced tree (`max(a, b)` or `(a + b)`: `op` writes
 * its own parentheses): independent operations, short dependency chains, for written-out
 * reductions.
 */
export function balancedTree(terms: string[], op: (a: string, b: string) => string): string {
  if (terms.length === 1) return terms[0];
  const half = Math.ceil(terms.length / 2);
  return op(balancedTree(terms.slice(0, half), op), balancedTree(terms.slice(half), op));
}
