import assert from "node:assert/strict";
import { ContextLengthError, EngineClosedError, GpuError, InvalidInputError } from "../errors.ts";
import { badRequest, errorResponse, HttpError, toHttpError } from "./_errors.ts";

Deno.test("errorResponse() sends OpenAI's error JSON with the status and extra headers", async () => {
  const error = new HttpError(503, "busy", "server_error", null, "queue_full", {
    "retry-after": "2",
  });
  const response = errorResponse(error);
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("retry-after"), "2");
  assert.deepEqual(await response.json(), {
    error: { message: "busy", type: "server_error", param: null, code: "queue_full" },
  });
});

Deno.test("toHttpError() makes input errors 400s, GPU errors 500s with their message, others opaque 500s", () => {
  assert.deepEqual(toHttpError(badRequest("seed", "bad seed")).toJSON().error.param, "seed");
  const input = toHttpError(new InvalidInputError("prompt of 40000 tokens exceeds the context"));
  assert.equal(input.status, 400);
  assert.match(input.message, /40000 tokens/);
  // A prompt over the context: OpenAI's code for it, on the messages.
  const long = toHttpError(new ContextLengthError("the prompt has 40000 tokens"));
  assert.deepEqual(long.toJSON().error, {
    message: "the prompt has 40000 tokens",
    type: "invalid_request_error",
    param: "messages",
    code: "context_length_exceeded",
  });
  const gpu = toHttpError(new GpuError("out of GPU memory allocating kv cache"));
  assert.equal(gpu.status, 500);
  assert.equal(gpu.code, "GpuError");
  assert.match(gpu.message, /kv cache/);
  // The engine disposed under a request (the server shutting down): retry elsewhere, not a bug.
  const closed = toHttpError(new EngineClosedError("the engine was disposed"));
  assert.equal(closed.status, 503);
  assert.equal(closed.code, "server_shutting_down");
  assert.match(closed.message, /shutting down.*Retry/);
  const other = toHttpError(new RangeError("index 7 out of range in secret.ts"));
  assert.equal(other.status, 500);
  assert.doesNotMatch(other.message, /secret/);
});
