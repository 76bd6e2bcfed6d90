import assert from "node:assert/strict";
import { defaultBackend, fmtBytes, quietRuntimeDir, requestGpu, sharedGpu } from "./device.ts";
import { DeviceLostError } from "../errors.ts";

Deno.test("defaultBackend() asks for Vulkan on Linux unless the user chose, and leaves other systems alone", () => {
  assert.equal(defaultBackend("linux", undefined), "vulkan");
  assert.equal(defaultBackend("linux", "gl"), undefined);
  assert.equal(defaultBackend("linux", "vulkan"), undefined);
  assert.equal(defaultBackend("darwin", undefined), undefined);
  assert.equal(defaultBackend("windows", undefined), undefined);
});

// The GL backend's EGL stack is what aborted test runs at exit (defaultBackend()): requesting the
// device must leave it unloaded. Every GPU test goes through requestGpu(), so nothing in this
// process loaded it before.
Deno.test({
  name: "requestGpu() on Linux starts no GL backend (libEGL stays unloaded)",
  ignore: Deno.build.os !== "linux" || Deno.env.get("DENO_WEBGPU_BACKEND") !== undefined &&
      Deno.env.get("DENO_WEBGPU_BACKEND") !== "vulkan",
  fn: async () => {
    await sharedGpu();
    assert.equal(Deno.env.get("DENO_WEBGPU_BACKEND"), "vulkan");
    const maps = await Deno.readTextFile("/proc/self/maps");
    // NVIDIA's Vulkan driver loads glvnd's libEGL itself (its ICD, libGLX_nvidia, dlopens it:
    // LD_DEBUG on the H200, 2026-11-29): there, Mesa's EGL is what the GL backend would add.
    const egl = /libGLX_nvidia/.test(maps) ? /libEGL_mesa/ : /libEGL/;
    assert.ok(!egl.test(maps), `${egl.source} is mapped: the GL backend was started`);
  },
});

Deno.test("requestGpu() grants the features and limits qvq relies on", async () => {
  const gpu = await requestGpu({ strict: true });
  try {
    assert.ok(gpu.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024);
    assert.ok(gpu.limits.maxComputeWorkgroupStorageSize >= 16 * 1024);
    assert.equal(gpu.features.f16, gpu.device.features.has("shader-f16"));
  } finally {
    gpu.destroy();
  }
});

Deno.test("Gpu.lostError names a device lost other than by destroy(); its own destroy() is no loss", async () => {
  const own = await requestGpu();
  own.destroy();
  await own.device.lost;
  await new Promise((resolve) => setTimeout(resolve, 0)); // the Gpu's own lost handler ran
  assert.ok(own.lost);
  assert.equal(own.lostError, undefined);

  const gpu = await requestGpu();
  assert.equal(gpu.lostError, undefined);
  gpu.device.destroy(); // as a driver reset would, from outside qvq's code
  const error = await gpu.whenLost;
  assert.ok(error instanceof DeviceLostError);
  assert.equal(gpu.lostError, error);
  assert.match(error.message, /^the WebGPU device was lost \(destroyed/);
  assert.match(error.message, /load the model again/);
});

Deno.test("fmtBytes() picks the unit", () => {
  assert.equal(fmtBytes(512), "512 B");
  assert.equal(fmtBytes(1536), "1.50 KiB");
  assert.equal(fmtBytes(3 * 1024 ** 3), "3.00 GiB");
});

Deno.test("quietRuntimeDir() lends a directory only on Linux with none set", () => {
  assert.equal(quietRuntimeDir("linux", undefined), "/nonexistent/qvq-no-wayland");
  assert.equal(quietRuntimeDir("linux", "/run/user/1000"), undefined);
  assert.equal(quietRuntimeDir("linux", ""), undefined);
  assert.equal(quietRuntimeDir("darwin", undefined), undefined);
});

// libwayland's complaint came on every qvq start on a headless Linux machine; the lent variable
// must not outlive the adapter request.
Deno.test({
  name:
    "requestGpu() without XDG_RUNTIME_DIR prints nothing to stderr and leaves the variable unset",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const script = `
      import { requestGpu } from ${JSON.stringify(new URL("./device.ts", import.meta.url).href)};
      const gpu = await requestGpu();
      gpu.destroy();
      console.log(JSON.stringify(Deno.env.get("XDG_RUNTIME_DIR") ?? null));`;
    const env = { ...Deno.env.toObject() };
    delete env.XDG_RUNTIME_DIR;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-config", script],
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.equal(stderr, "");
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "null");
  },
});
