import assert from "node:assert/strict";
import {
  ContextLengthError,
  EngineClosedError,
  GpuError,
  InvalidInputError,
  NoChatTemplateError,
} from "../errors.ts";
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
  // Chat messages for a model without a chat template: vLLM's 400; the request could go raw.
  const bare = toHttpError(new NoChatTemplateError("the model has no chat template"));
  assert.deepEqual(bare.toJSON().error, {
    message: "the model has no chat template",
    type: "invalid_request_error",
    param: "messages",
    code: "no_chat_template",
  });
  assert.equal(bare.status, 400);
  // The engine disposed under a request (the server shutting down): retry elsewhere, not a bug.
  const closed = toHttpError(new EngineClosedError("the engine was disposed"));
  assert.equal(closed.status, 503);
  assert.equal(closed.code, "server_shutting_down");
  assert.match(closed.message, /shutting down.*Retry/);
  const other = toHttpError(new RangeError("index 7 out of range in secret.ts"));
  assert.equal(other.status, 500);
  assert.doesNotMatch(other.message, /secret/);
});

Deno.test("toHttpError() words an engine's option errors with the request's field names", () => {
  const bias = toHttpError(
    new InvalidInputError("logitBias names token 200000, but the model's ids end at 151935"),
  );
  assert.deepEqual([bias.status, bias.param, bias.message], [
    400,
    "logit_bias",
    "logit_bias names token 200000, but the model's ids end at 151935",
  ]);
  assert.equal(
    toHttpError(new InvalidInputError("stopTokenIds names token 9")).param,
    "stop_token_ids",
  );
  // The context's error keeps its field and code, in the request's words.
  const context = toHttpError(new ContextLengthError("maxNewTokens 8192 does not fit: …"));
  assert.deepEqual([context.param, context.code, context.message], [
    "messages",
    "context_length_exceeded",
    "max_tokens 8192 does not fit: …",
  ]);
  // Every option it names; a leading word that only starts like an option is not one.
  const top = toHttpError(
    new InvalidInputError("topLogprobs needs logprobs: true (got topLogprobs 3 without it)"),
  );
  assert.deepEqual([top.param, top.message], [
    "top_logprobs",
    "top_logprobs needs logprobs: true (got top_logprobs 3 without it)",
  ]);
  assert.equal(toHttpError(new InvalidInputError("temperature_scaled is off")).param, null);
  assert.equal(
    toHttpError(new InvalidInputError("logprobs: 11 alternatives need…")).param,
    "logprobs",
  );
  // Anything else as it is, with no field.
  const other = toHttpError(new InvalidInputError("the prompt is empty: it has no tokens"));
  assert.deepEqual([other.param, other.message], [null, "the prompt is empty: it has no tokens"]);
});
