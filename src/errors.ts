/**
 * Named error classes. Every message says what was wrong (quoting the bad value, file or tensor)
 * and what to do about it.
 * @module
 */

/** Base class of every error qvq throws on purpose. */
export class QvqError extends Error {
  /** An error with a message saying what was wrong and what to do; `options.cause` keeps the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A model file (config, safetensors, tokenizer, image) is missing, malformed or inconsistent. */
export class ModelFileError extends QvqError {}

/**
 * The model has no chat template (no chat_template.json, chat_template.jinja or
 * tokenizer_config.json `chat_template`), and chat messages were given: it loads, and raw prompts
 * run, but messages cannot become a prompt. The server answers it with a 400 `no_chat_template`.
 */
export class NoChatTemplateError extends ModelFileError {}

/** A caller passed a bad argument or request (bad parameter, bad message, bad image). */
export class InvalidInputError extends QvqError {}

/**
 * A prompt (with the answer asked for) longer than the model's context: an InvalidInputError the
 * server answers with OpenAI's `context_length_exceeded`.
 */
export class ContextLengthError extends InvalidInputError {}

/**
 * A JSON schema (or choice list) that structured outputs cannot hold an answer to: an
 * InvalidInputError whose message names the part of the schema and why.
 */
export class SchemaError extends InvalidInputError {}

/** No usable WebGPU adapter, a device lost, or a GPU limit exceeded (e.g. out of memory). */
export class GpuError extends QvqError {}

/**
 * The sampler had no token to draw, and the answer ends with this error rather than a token no
 * distribution chose: the model's logits held NaN or +∞ (damaged weights, an f16 overflow — the
 * message says which), or every token was masked (a response format, min_tokens) or of −∞ logit.
 */
export class SamplingError extends GpuError {}

/**
 * The WebGPU device was lost (a driver reset, a GPU fault, the device destroyed by someone else):
 * everything on it — the weights, the caches — is gone, and every later call fails with this
 * error. Load the model again (a new Pipeline), or restart the server.
 */
export class DeviceLostError extends GpuError {}

/**
 * The engine was disposed while a generation ran, or before one was asked for (a server shutting
 * down: the server answers 503 `server_shutting_down`). Retry against an engine that is loaded.
 */
export class EngineClosedError extends QvqError {}

/**
 * qvq's error classes by name: what rebuilds an error that crossed from a worker
 * (src/server/worker_engine.ts) as its own class, which the server maps to an HTTP status.
 */
export const ERROR_CLASSES: Readonly<Record<string, new (message: string) => QvqError>> = {
  QvqError,
  ModelFileError,
  NoChatTemplateError,
  InvalidInputError,
  ContextLengthError,
  SchemaError,
  GpuError,
  SamplingError,
  DeviceLostError,
  EngineClosedError,
};

/** A short printable form of a bad value for error messages. */
export function preview(v: unknown): string {
  let s: string;
  try {
    s = typeof v === "string"
      ? JSON.stringify(v)
      : v === undefined
      ? "undefined"
      : JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  if (typeof v === "number" && !Number.isFinite(v)) s = String(v);
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}
