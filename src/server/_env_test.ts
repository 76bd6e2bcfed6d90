import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { InvalidInputError } from "../errors.ts";
import {
  loadOptionsFromEnv,
  modelFromEnv,
  optionsFromEnv,
  SERVE_USAGE,
  serveArgs,
} from "./_env.ts";

const vars = (v: Record<string, string>) => (name: string) => v[name];

Deno.test("modelFromEnv() takes QVQ_MODEL, else the bundled tiny model of a checkout", () => {
  const here = new URL("./serve.ts", import.meta.url).href;
  assert.equal(
    modelFromEnv(vars({ QVQ_MODEL: "Qwen/QVQ-72B-Preview" }), here),
    "Qwen/QVQ-72B-Preview",
  );
  const tiny = modelFromEnv(vars({}), here);
  assert.equal(tiny, fileURLToPath(new URL("../../tests/fixtures/tiny-qwen2vl", import.meta.url)));
  assert.ok(Deno.statSync(`${tiny}/config.json`).isFile);
  assert.throws(
    () => modelFromEnv(vars({}), "https://jsr.io/@qvq/webgpu/0.1.0/src/server/serve.ts"),
    /Set QVQ_MODEL/,
  );
});

Deno.test("optionsFromEnv() reads the API key, the queue length and the remote-image switch", () => {
  assert.deepEqual(optionsFromEnv(vars({})), {});
  assert.deepEqual(
    optionsFromEnv(vars({ QVQ_API_KEY: "k", QVQ_MAX_QUEUE: "0", QVQ_ALLOW_REMOTE_IMAGES: "true" })),
    { apiKey: "k", maxQueue: 0, allowRemoteImages: true },
  );
  assert.throws(
    () => optionsFromEnv(vars({ QVQ_MAX_QUEUE: "lots" })),
    /QVQ_MAX_QUEUE must be a whole number.*"lots"/,
  );
  assert.deepEqual(optionsFromEnv(vars({ QVQ_ALLOW_REMOTE_IMAGES: "off" })), {});
  assert.deepEqual(optionsFromEnv(vars({ QVQ_METRICS: "off" })), { metrics: false });
  assert.deepEqual(optionsFromEnv(vars({ QVQ_METRICS: "1" })), {});
  assert.deepEqual(optionsFromEnv(vars({ QVQ_SERVED_MODEL_NAME: " qvq " })), {
    servedModelName: "qvq",
  });
  assert.deepEqual(optionsFromEnv(vars({ QVQ_SERVED_MODEL_NAME: " " })), {});
  assert.throws(
    () => optionsFromEnv(vars({ QVQ_METRICS: "later" })),
    /QVQ_METRICS: "later" is neither on .* nor off/,
  );
  assert.deepEqual(optionsFromEnv(vars({ QVQ_ALLOW_REMOTE_IMAGES: " 1 " })), {
    allowRemoteImages: true,
  });
  assert.throws(
    () => optionsFromEnv(vars({ QVQ_ALLOW_REMOTE_IMAGES: "maybe" })),
    /QVQ_ALLOW_REMOTE_IMAGES: "maybe" is neither on .* nor off/,
  );
  // QVQ_CORS: any origin unless turned off or narrowed to a list.
  for (const on of ["*", "1", "true", ""]) {
    assert.deepEqual(optionsFromEnv(vars({ QVQ_CORS: on })), {});
  }
  assert.deepEqual(optionsFromEnv(vars({ QVQ_CORS: "off" })), { cors: false });
  assert.deepEqual(
    optionsFromEnv(vars({ QVQ_CORS: "http://a.test, https://b.test" })),
    { cors: ["http://a.test", "https://b.test"] },
  );
});

Deno.test("loadOptionsFromEnv() reads QVQ_QUANT: q8/q4 quantize, f16/empty/unset do not, others fail", () => {
  assert.deepEqual(loadOptionsFromEnv(vars({})), {});
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_QUANT: "" })), {});
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_QUANT: "f16" })), {});
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_QUANT: "q8" })), { quant: "q8" });
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_QUANT: "q4" })), { quant: "q4" });
  for (const bad of ["q3", "Q4", "int8", " q8"]) {
    assert.throws(
      () => loadOptionsFromEnv(vars({ QVQ_QUANT: bad })),
      (e: Error) =>
        e instanceof InvalidInputError &&
        e.message.includes(`QVQ_QUANT: quantization "${bad}" is not supported`) &&
        /use one of q8, q4 \(or f16\)/.test(e.message),
      bad,
    );
  }
});

Deno.test("loadOptionsFromEnv() reads QVQ_WARMUP: off turns the warm-up off, on/empty/unset say nothing, others fail", () => {
  for (const off of ["0", "false", "no", "OFF"]) {
    assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_WARMUP: off })), { warmUp: false });
  }
  for (const on of ["", "1", "true", "on"]) {
    assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_WARMUP: on })), {});
  }
  assert.throws(
    () => loadOptionsFromEnv(vars({ QVQ_WARMUP: "later" })),
    (e: Error) => e instanceof InvalidInputError && /QVQ_WARMUP.*"later"/.test(e.message),
  );
});

Deno.test("loadOptionsFromEnv() reads QVQ_VISION_QUANT: q8 quantizes the vision tower, f16/empty/unset do not, q4 and others fail", () => {
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_VISION_QUANT: "" })), {});
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_VISION_QUANT: "f16" })), {});
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_VISION_QUANT: "q8" })), { visionQuant: "q8" });
  assert.deepEqual(
    loadOptionsFromEnv(vars({ QVQ_QUANT: "q4", QVQ_VISION_QUANT: "q8" })),
    { quant: "q4", visionQuant: "q8" },
  );
  assert.throws(
    () => loadOptionsFromEnv(vars({ QVQ_VISION_QUANT: "q4" })),
    /^InvalidInputError: QVQ_VISION_QUANT: visionQuant "q4" is not supported: .*never measured/,
  );
  assert.throws(
    () => loadOptionsFromEnv(vars({ QVQ_VISION_QUANT: "int8" })),
    (e: Error) =>
      e instanceof InvalidInputError && /QVQ_VISION_QUANT: .*must be "q8" or unset/.test(e.message),
  );
});

Deno.test("loadOptionsFromEnv() reads QVQ_KV_CACHE_DTYPE: f16 or f32, empty/unset the default, others fail", () => {
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_KV_CACHE_DTYPE: "" })), {});
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_KV_CACHE_DTYPE: "f32" })), {
    kvCacheDtype: "f32",
  });
  assert.deepEqual(
    loadOptionsFromEnv(vars({ QVQ_QUANT: "q4", QVQ_KV_CACHE_DTYPE: "f16" })),
    { quant: "q4", kvCacheDtype: "f16" },
  );
  assert.throws(
    () => loadOptionsFromEnv(vars({ QVQ_KV_CACHE_DTYPE: "fp8" })),
    (e: Error) =>
      e instanceof InvalidInputError &&
      /^QVQ_KV_CACHE_DTYPE: the KV cache dtype must be "f16" or "f32".*got "fp8"/.test(e.message),
  );
});

Deno.test("serveArgs() takes --port, else PORT, else 8000, and --host", () => {
  const listen = (args: string[], env: Record<string, string>) => {
    const a = serveArgs(args, vars(env));
    assert.ok(!a.help);
    return { port: a.port, hostname: a.hostname };
  };
  // This machine only unless --host says otherwise.
  assert.deepEqual(listen([], {}), { port: 8000, hostname: "127.0.0.1" });
  assert.deepEqual(listen([], { PORT: "9001" }), { port: 9001, hostname: "127.0.0.1" });
  assert.deepEqual(listen(["--port", "0", "--host", "0.0.0.0"], { PORT: "9001" }), {
    port: 0,
    hostname: "0.0.0.0",
  });
  assert.throws(() => serveArgs(["--port", "http"], vars({})), /0\.\.65535; got "http"/);
  assert.throws(() => serveArgs([], vars({ PORT: "70000" })), /got "70000"/);
  assert.throws(() => serveArgs(["--verbose"], vars({})), /--verbose/);
  assert.throws(() => serveArgs(["--host", ""], vars({})), /The host must be an address/);
  assert.deepEqual(listen(["--host", "::"], {}).hostname, "::");
});

Deno.test("serveArgs() takes --help and -h, beside other options (an unknown one too) and a bad PORT", () => {
  for (const args of [["--help"], ["-h"], ["--port", "9000", "--help"], ["--verbose", "-h"]]) {
    assert.deepEqual(serveArgs(args, vars({ PORT: "http" })), { help: true }, args.join(" "));
  }
});

Deno.test("SERVE_USAGE names every option and every variable the server reads", async () => {
  assert.match(SERVE_USAGE, /^usage: deno task serve \[--port <n>\] \[--host <address>\]\n/);
  for (const option of ["--port", "--host", "-h, --help"]) assert.ok(SERVE_USAGE.includes(option));
  // The names read: the QVQ_ variables of this module and of serve.ts, PORT, huggingface_hub's.
  const sources = await Promise.all(
    ["./_env.ts", "./serve.ts"].map((f) => Deno.readTextFile(new URL(f, import.meta.url))),
  );
  const code = sources.join("\n").replace(SERVE_USAGE, "");
  const names = new Set(code.match(/\bQVQ_[A-Z_]+\b/g));
  assert.ok(names.size >= 11, [...names].join(" "));
  for (const name of [...names, "PORT", "HF_TOKEN", "HF_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE"]) {
    assert.match(SERVE_USAGE, new RegExp(`\\n  (.*, )?${name}\\b`), name);
  }
});

Deno.test("loadOptionsFromEnv() reads QVQ_PROMPT_CACHE: 0/false/no/off turn the prompt cache off, on-words and unset leave it on, a number keeps that many conversations", () => {
  for (const off of ["0", "false", "No", "OFF"]) {
    assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_PROMPT_CACHE: off })), { promptCache: false });
  }
  for (const on of ["", "1", "true", "yes", "On"]) {
    assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_PROMPT_CACHE: on })), {});
  }
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_PROMPT_CACHE: "4" })), { promptCache: 4 });
  for (const bad of ["maybe", "2.5", "-3", "5000"]) {
    assert.throws(
      () => loadOptionsFromEnv(vars({ QVQ_PROMPT_CACHE: bad })),
      (e: Error) =>
        e instanceof InvalidInputError &&
        e.message.startsWith(`QVQ_PROMPT_CACHE: "${bad}" is neither on (1, true, yes, on), off`) &&
        e.message.includes("a number of conversations to keep (2 to 1024)"),
    );
  }
});

Deno.test("loadOptionsFromEnv() reads QVQ_PARALLEL: generations at once, 1 (the default) to 64", () => {
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_PARALLEL: "4" })), { parallel: 4 });
  assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_PARALLEL: "64" })), { parallel: 64 });
  for (const none of ["", "1"]) {
    assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_PARALLEL: none })), {});
  }
  for (const bad of ["0", "65", "2.5", "-1", "two", "on"]) {
    assert.throws(
      () => loadOptionsFromEnv(vars({ QVQ_PARALLEL: bad })),
      (e: Error) =>
        e instanceof InvalidInputError &&
        e.message ===
          `QVQ_PARALLEL: "${bad}" is not a number of generations to run at once (1 to 64)`,
    );
  }
});

Deno.test("loadOptionsFromEnv() reads QVQ_BATCH_DECODE: off takes turns, on/empty/unset say nothing, others fail", () => {
  for (const off of ["0", "off", "false", "NO"]) {
    assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_BATCH_DECODE: off })), { batchDecode: false });
  }
  for (const on of ["1", "on", "yes", ""]) {
    assert.deepEqual(loadOptionsFromEnv(vars({ QVQ_BATCH_DECODE: on })), {});
  }
  assert.throws(
    () => loadOptionsFromEnv(vars({ QVQ_BATCH_DECODE: "batched" })),
    (e: Error) =>
      e instanceof InvalidInputError &&
      e.message ===
        'QVQ_BATCH_DECODE: "batched" is neither on (1, true, yes, on) nor off (0, false, no, off)',
  );
});

Deno.test("optionsFromEnv() reads QVQ_RESPONSE_STORE: a count of responses kept, 0 / off none, on or unset the default", () => {
  assert.deepEqual(optionsFromEnv(vars({ QVQ_RESPONSE_STORE: "50" })), {
    responseStore: { maxResponses: 50 },
  });
  for (const off of ["0", "off", "false"]) {
    assert.deepEqual(optionsFromEnv(vars({ QVQ_RESPONSE_STORE: off })), {
      responseStore: { maxResponses: 0 },
    });
  }
  assert.deepEqual(optionsFromEnv(vars({ QVQ_RESPONSE_STORE: "1" })), {
    responseStore: { maxResponses: 1 },
  });
  for (const on of ["", " ", "on", "true"]) {
    assert.deepEqual(optionsFromEnv(vars({ QVQ_RESPONSE_STORE: on })), {}, JSON.stringify(on));
  }
  assert.throws(
    () => optionsFromEnv(vars({ QVQ_RESPONSE_STORE: "many" })),
    /QVQ_RESPONSE_STORE must be a whole number ≥ 0; got "many"/,
  );
});
