/**
 * The WebGPU device: one place that asks the adapter for its real limits and the features the
 * kernels use, turns validation and out-of-memory errors into exceptions, and caches pipelines.
 * @module
 */
import { DeviceLostError, GpuError } from "../errors.ts";
import type { Dispatch, ParamsArena } from "../../kernels/_kernel.ts";

/** Features a kernel may branch on. */
export interface GpuFeatures {
  /** WGSL `f16` (`enable f16;`) is available. */
  f16: boolean;
  /** Subgroup built-ins (not listed by Deno's adapters but granted when requested). */
  subgroups: boolean;
  /** Timestamp queries for kernel timing. */
  timestampQuery: boolean;
}

/** A WebGPU device with the limits it was created with and a pipeline cache. */
export class Gpu {
  /** The WebGPU device. */
  readonly device: GPUDevice;
  /** Optional features the device was granted. */
  readonly features: GpuFeatures;
  /** The limits the device was created with. */
  readonly limits: GPUSupportedLimits;
  /** What the adapter says it is (vendor, architecture, subgroup sizes). */
  readonly adapterInfo: GPUAdapterInfo;
  readonly #pipelines = new Map<string, GPUComputePipeline>();
  readonly #layouts = new Map<string, GPUBindGroupLayout>();
  #lost = false;
  /** destroy() was called: the loss that follows is ours, not a failure. */
  #destroyed = false;
  #lostError: DeviceLostError | undefined;
  readonly #whenLost = Promise.withResolvers<DeviceLostError>();
  /**
   * When set, `submit()` (src/model/vision.ts: the vision tower's and prefill's batches) hands its
   * dispatches here instead of encoding them in one pass, so a profiler can time each one alone
   * (bench/_profile.ts). The dispatches are destroyed after the hook returns.
   * @internal
   */
  submitHook?: (label: string, dispatches: readonly Dispatch[]) => void;
  /**
   * While kernels/_kernel.ts withParamsArena() runs: the uniform buffer new Dispatches take their
   * params from (flushed by submit() before its batch is encoded).
   * @internal
   */
  paramsArena?: ParamsArena;

  /** Wraps a device made with `features` (requestGpu() makes one). */
  constructor(device: GPUDevice, adapterInfo: GPUAdapterInfo, features: GpuFeatures) {
    this.device = device;
    this.adapterInfo = adapterInfo;
    this.features = features;
    this.limits = device.limits;
    device.lost.then((info) => {
      this.#lost = true;
      // A loss reported as "unknown" is the driver's, even if destroy() ran before this handler.
      if (this.#destroyed && info.reason === "destroyed") return;
      const why = [info.reason, info.message].filter((s) => s).join(": ") || "no reason given";
      this.#lostError = new DeviceLostError(
        `the WebGPU device was lost (${why}): the model's weights and caches on it are gone; ` +
          "load the model again (restart the server or program)",
      );
      console.error(`qvq: ${this.#lostError.message}`);
      this.#whenLost.resolve(this.#lostError);
    });
  }

  /** Largest byte size one storage binding may have (128 MiB on lavapipe, 2 GiB on an H100). */
  get maxBinding(): number {
    return this.limits.maxStorageBufferBindingSize;
  }

  /** Whether the device was lost (driver reset, destroyed). */
  get lost(): boolean {
    return this.#lost;
  }

  /**
   * Why the device is gone where it was lost other than by {@link destroy} (a driver reset, a GPU
   * fault, `device.destroy()` called by someone else); undefined while it works.
   */
  get lostError(): DeviceLostError | undefined {
    return this.#lostError;
  }

  /** Settles with {@link lostError} once the device is lost other than by {@link destroy}. */
  get whenLost(): Promise<DeviceLostError> {
    return this.#whenLost.promise;
  }

  /** How many pipelines have been compiled on this device (the warm-up's test counts them). */
  get pipelineCount(): number {
    return this.#pipelines.size;
  }

  /** Returns the cached pipeline for `key`, creating it with `create` on first use. */
  pipeline(key: string, create: () => GPUComputePipeline): GPUComputePipeline {
    let p = this.#pipelines.get(key);
    if (!p) {
      p = create();
      this.#pipelines.set(key, p);
    }
    return p;
  }

  /** Returns the cached bind group layout for `key`. */
  layout(key: string, create: () => GPUBindGroupLayout): GPUBindGroupLayout {
    let l = this.#layouts.get(key);
    if (!l) {
      l = create();
      this.#layouts.set(key, l);
    }
    return l;
  }

  /** Creates a buffer, turning an out-of-memory into a GpuError that says how much was asked. */
  async createBufferChecked(desc: GPUBufferDescriptor): Promise<GPUBuffer> {
    if (desc.size > this.limits.maxBufferSize) {
      throw new GpuError(
        `buffer "${desc.label ?? "?"}" needs ${fmtBytes(desc.size)}, over this adapter's ` +
          `maxBufferSize of ${fmtBytes(this.limits.maxBufferSize)}; split it into smaller buffers`,
      );
    }
    this.device.pushErrorScope("out-of-memory");
    const buffer = this.device.createBuffer(desc);
    const err = await this.device.popErrorScope();
    if (err) {
      buffer.destroy();
      throw new GpuError(
        `out of GPU memory allocating "${desc.label ?? "?"}" (${
          fmtBytes(desc.size)
        }): ${err.message}. ` +
          `Use a smaller model, a quantized one (q8/q4), or a shorter maximum context`,
      );
    }
    return buffer;
  }

  /** Runs `fn` and throws a GpuError if it produced a WebGPU validation error. */
  async checked<T>(what: string, fn: () => T): Promise<T> {
    this.device.pushErrorScope("validation");
    const result = fn();
    const err = await this.device.popErrorScope();
    if (err) throw new GpuError(`WebGPU validation error in ${what}: ${err.message}`);
    return result;
  }

  /** Destroys the device and everything on it (not a loss: {@link lostError} stays unset). */
  destroy(): void {
    this.#destroyed = true;
    this.device.destroy();
  }
}

/** Options for {@link requestGpu}. */
export interface RequestGpuOptions {
  /** Which adapter to ask for (default: the browser's / Deno's choice). */
  powerPreference?: GPUPowerPreference;
  /** Throw on any uncaptured WebGPU error instead of printing it (tests set this). */
  strict?: boolean;
}

/**
 * Requests an adapter and a device with the adapter's full limits (the defaults are far lower:
 * 128 MiB bindings, 16 KiB workgroup memory, 256 threads) and the features qvq uses.
 */
export async function requestGpu(options: RequestGpuOptions = {}): Promise<Gpu> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new GpuError(noAdapterHelp("this runtime has no navigator.gpu"));
  }
  chooseBackend();
  const adapter = await requestAdapterQuietly({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (!adapter) throw new GpuError(noAdapterHelp("navigator.gpu.requestAdapter() returned null"));
  const wanted: GPUFeatureName[] = ["shader-f16", "timestamp-query"];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  // `subgroups` is absent from Deno's adapter.features but granted when requested: try it first.
  let device: GPUDevice | undefined;
  let subgroups = false;
  const requiredLimits = pickLimits(adapter.limits);
  try {
    device = await adapter.requestDevice({
      requiredFeatures: [...requiredFeatures, "subgroups" as GPUFeatureName],
      requiredLimits,
    });
    subgroups = device.features.has("subgroups");
  } catch {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  }
  if (options.strict) {
    device.addEventListener("uncapturederror", (e) => {
      throw new GpuError(
        `uncaptured WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`,
      );
    });
  }
  return new Gpu(device, adapter.info, {
    f16: device.features.has("shader-f16"),
    subgroups,
    timestampQuery: device.features.has("timestamp-query"),
  });
}

function pickLimits(l: GPUSupportedLimits): Record<string, number> {
  const names = [
    "maxStorageBufferBindingSize",
    "maxBufferSize",
    "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX",
    "maxComputeWorkgroupSizeY",
    "maxComputeWorkgroupsPerDimension",
    "maxStorageBuffersPerShaderStage",
    "maxBindGroups",
    "maxUniformBufferBindingSize",
  ] as const;
  const out: Record<string, number> = {};
  for (const n of names) out[n] = l[n];
  return out;
}

function noAdapterHelp(why: string): string {
  return `no WebGPU adapter (${why}). qvq needs WebGPU: on a machine with a GPU install its ` +
    `Vulkan driver; without one, install Mesa's software adapter (Debian/Ubuntu: ` +
    `apt-get install mesa-vulkan-drivers) — slow, but enough for the tiny test model. On Linux ` +
    `qvq asks Deno for Vulkan only unless DENO_WEBGPU_BACKEND says otherwise`;
}

/**
 * The WebGPU backend to ask Deno for (DENO_WEBGPU_BACKEND) when the user has not chosen one: on
 * Linux, Vulkan only. Deno's wgpu otherwise also starts its GL backend there, which loads Mesa's
 * EGL / GL stack (five more threads, thread-local state) that qvq never uses — its kernels need
 * Vulkan's shader-f16 and subgroups — and whose teardown races the process exit: on the lavapipe
 * CI machine 1 in 4–56 `deno test` runs of passing tests ended in a glibc heap abort ("double free
 * or corruption") inside a GL thread's TSD destructor during exit(); 0 in 250 with Vulkan only
 * (2026-11-28). Elsewhere (macOS: Metal, Windows: D3D12 / Vulkan) wgpu's default stands.
 */
export function defaultBackend(os: string, chosen: string | undefined): string | undefined {
  return os === "linux" && chosen === undefined ? "vulkan" : undefined;
}

/** Applies {@link defaultBackend}; Deno reads the variable when it creates its WebGPU instance. */
function chooseBackend(): void {
  if (!envGranted("DENO_WEBGPU_BACKEND")) return; // not Deno: the runtime's default backends
  const b = defaultBackend(Deno.build.os, Deno.env.get("DENO_WEBGPU_BACKEND"));
  if (b) Deno.env.set("DENO_WEBGPU_BACKEND", b);
}

/**
 * Whether access to environment variable `variable` is already granted — asking would prompt a
 * user who runs without it; false outside Deno.
 */
function envGranted(variable: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * The XDG_RUNTIME_DIR to lend the adapter request, or undefined to leave the environment alone:
 * on Linux with none set (a server, a container, a CI job), wgpu probes for a Wayland display
 * while it creates its instance, and libwayland then prints "error: XDG_RUNTIME_DIR is invalid or
 * not set in the environment." twice to stderr — every qvq command and server start looked like it
 * failed. With any directory named, the probe fails quietly (no display there: none is used); a
 * path that cannot exist, so nothing is ever connected to or created in it.
 */
export function quietRuntimeDir(os: string, current: string | undefined): string | undefined {
  return os === "linux" && current === undefined ? "/nonexistent/qvq-no-wayland" : undefined;
}

/**
 * navigator.gpu.requestAdapter() with {@link quietRuntimeDir} set only while the request is made
 * (each request enumerates the adapters again, and the instance reads the variable then, within
 * the call): the variable is gone again before anything else of the process can read it.
 */
function requestAdapterQuietly(options: GPURequestAdapterOptions): Promise<GPUAdapter | null> {
  const lent = envGranted("XDG_RUNTIME_DIR")
    ? quietRuntimeDir(Deno.build.os, Deno.env.get("XDG_RUNTIME_DIR"))
    : undefined;
  if (lent === undefined) return navigator.gpu.requestAdapter(options);
  Deno.env.set("XDG_RUNTIME_DIR", lent);
  try {
    return navigator.gpu.requestAdapter(options);
  } finally {
    Deno.env.delete("XDG_RUNTIME_DIR");
  }
}

/** Formats a byte count for messages: `1.50 GiB`. */
export function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 2 : 0)} ${units[i]}`;
}

let shared: Promise<Gpu> | undefined;

/** A process-wide device for tests and simple uses (strict: validation errors throw). */
export function sharedGpu(): Promise<Gpu> {
  shared ??= requestGpu({ strict: true }).then((gpu) => {
    // Each test module runs in an isolate of its own: its device is freed when the module ends
    // rather than with every other module's at process exit. (The glibc abort at the exit of
    // passing test runs came from wgpu's GL backend: see defaultBackend().)
    globalThis.addEventListener("unload", () => gpu.destroy());
    return gpu;
  });
  return shared;
}
