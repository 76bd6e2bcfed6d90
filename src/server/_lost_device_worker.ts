/**
 * A test's engine worker (src/server/worker_engine_test.ts): src/server/_engine_worker.ts itself,
 * whose WebGPU device the test can lose, as a driver reset would, by posting
 * `{ type: "test-lose-device" }`.
 * @module
 */
/// <reference lib="deno.worker" />
let device: GPUDevice | undefined;
const requestDevice = GPUAdapter.prototype.requestDevice;
GPUAdapter.prototype.requestDevice = async function (
  this: GPUAdapter,
  ...args: Parameters<GPUAdapter["requestDevice"]>
) {
  device = await requestDevice.apply(this, args);
  return device;
};
self.addEventListener("message", (e: MessageEvent) => {
  if (e.data?.type === "test-lose-device") device?.destroy();
});
await import("./_engine_worker.ts");
