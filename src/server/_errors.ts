/**
 * Errors in OpenAI's wire format: `{ error: { message, type, param, code } }` with the matching
 * HTTP status, so the official clients raise their usual typed errors (BadRequestError, ...).
 * @module
 */
import {
  ContextLengthError,
  EngineClosedError,
  GpuError,
  InvalidInputError,
  ModelFileError,
  NoChatTemplateError,
  QvqError,
} from "../errors.ts";

/** The `error` object OpenAI returns. */
export interface OpenAIErrorBody {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

/** An error that becomes one HTTP response; `param` names the offending request field. */
export class HttpError extends QvqError {
  constructor(
    readonly status: number,
    message: string,
    readonly type = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers, e.g. `Retry-After`. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  /** The JSON body OpenAI sends for this error. */
  toJSON(): { error: OpenAIErrorBody } {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}

/** 400 for a request field that is missing, of the wrong type or out of range. */
export function badRequest(
  param: string | null,
  message: string,
  code = "invalid_value",
): HttpError {
  return new HttpError(400, message, "invalid_request_error", param, code);
}

/**
 * Maps anything thrown while serving a request to an HttpError. Input errors the engine detects
 * (an image it cannot decode, a prompt longer than the context) are the client's fault: 400.
 * Everything else is a 500 whose message hides internals unless they are ours.
 */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof ContextLengthError) {
    return badRequest("messages", apiNamed(error.message).message, "context_length_exceeded");
  }
  if (error instanceof InvalidInputError) {
    const { field, message } = apiNamed(error.message);
    return badRequest(field, message);
  }
  if (error instanceof NoChatTemplateError) {
    // As vLLM answers a chat for a model without a template: the request can go raw instead.
    return badRequest("messages", error.message, "no_chat_template");
  }
  if (error instanceof EngineClosedError) {
    return new HttpError(
      503,
      "The server is shutting down: this request was not finished. Retry it.",
      "server_error",
      null,
      "server_shutting_down",
    );
  }
  if (error instanceof GpuError || error instanceof ModelFileError) {
    return new HttpError(500, error.message, "server_error", null, error.name);
  }
  if (error instanceof QvqError) return new HttpError(500, error.message, "server_error");
  return new HttpError(
    500,
    "The server had an error while processing your request; see the server log.",
    "server_error",
  );
}

/** The request field of each generation option the engine names in its errors. */
const API_NAMES: Readonly<Record<string, string>> = {
  maxNewTokens: "max_tokens",
  minTokens: "min_tokens",
  temperature: "temperature",
  topP: "top_p",
  topK: "top_k",
  minP: "min_p",
  repetitionPenalty: "repetition_penalty",
  presencePenalty: "presence_penalty",
  frequencyPenalty: "frequency_penalty",
  logitBias: "logit_bias",
  topLogprobs: "top_logprobs",
  promptLogprobs: "logprobs",
  stopTokenIds: "stop_token_ids",
  continueFinalMessage: "continue_final_message",
  logprobs: "logprobs",
  responseFormat: "response_format",
  ignoreEos: "ignore_eos",
};

/**
 * An engine error's message in the request's words: one that starts with a generation option's
 * module name (`logitBias names token …`) names the request field instead, which becomes the
 * error's `param`; others are as they are, with no field.
 */
function apiNamed(message: string): { field: string | null; message: string } {
  // A whole leading word ("topK must be …", "logprobs: …"), not the start of a longer one.
  const name = message.match(/^([a-zA-Z]+)(?=[\s:[]|$)/)?.[1] ?? "";
  const field = Object.hasOwn(API_NAMES, name) ? API_NAMES[name] : undefined;
  if (!field) return { field: null, message };
  // Every option named in it, in the request's words ("… (got topLogprobs 3 without it)").
  const words = new RegExp(`\\b(${Object.keys(API_NAMES).join("|")})\\b`, "g");
  return { field, message: message.replace(words, (w) => API_NAMES[w]) };
}

/** The Response for an HttpError. */
export function errorResponse(error: HttpError): Response {
  return Response.json(error.toJSON(), { status: error.status, headers: error.headers });
}
