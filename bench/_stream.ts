/**
 * What the read probes (bench/read_probe.ts, bench/_read_pattern.ts) share: a kernel that streams
 * its source buffer grid-strided, and the one-source-one-output pipeline layout their kernels use.
 * @module
 */

/** Threads a workgroup of every probe kernel. */
export const STREAM_WG = 256;

/**
 * WGSL that only reads `src` (vec4<u32>, grid-strided: consecutive lanes read consecutive vec4),
 * `per` independent loads in flight a thread, XOR-ed into one word a thread so the loads stay.
 * Loads past the end read the last vec4 again.
 */
export function streamKernel(per: number): string {
  const loads = Array.from(
    { length: per },
    (_, i) => `let v${i} = src[min(i + ${i}u * stride, n - 1u)];`,
  );
  return `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(${STREAM_WG}) fn main(@builtin(global_invocation_id) g: vec3u,
    @builtin(num_workgroups) nw: vec3u) {
  let stride = nw.x * ${STREAM_WG}u;
  let n = arrayLength(&src);
  var acc = vec4<u32>(0u);
  for (var i = g.x; i < n; i += ${per}u * stride) {
    ${loads.join("\n    ")}
    acc ^= ${Array.from({ length: per }, (_, i) => `v${i}`).join(" ^ ")};
  }
  o[g.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}`;
}

/** Pipelines and bind groups of probe kernels: binding 0 the read-only source, 1 the output. */
export function probeLayout(dev: GPUDevice): {
  pipeline(code: string): GPUComputePipeline;
  bindGroup(src: GPUBuffer, out: GPUBuffer): GPUBindGroup;
} {
  const layout = dev.createBindGroupLayout({
    entries: [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "read-only-storage" } },
      { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } },
    ],
  });
  const pipelineLayout = dev.createPipelineLayout({ bindGroupLayouts: [layout] });
  return {
    pipeline: (code) =>
      dev.createComputePipeline({
        layout: pipelineLayout,
        compute: { module: dev.createShaderModule({ code }), entryPoint: "main" },
      }),
    bindGroup: (src, out) =>
      dev.createBindGroup({
        layout,
        entries: [{ binding: 0, resource: { buffer: src } }, {
          binding: 1,
          resource: { buffer: out },
        }],
      }),
  };
}
