/**
 * A request body as JSON, read with the checks every JSON endpoint shares, and the nesting walk
 * the tools' parameters are checked with too (src/server/_tools.ts).
 * @module
 */
import { HttpError } from "./_errors.ts";

/**
 * The content codings of HTTP's registry (IANA's) that change a body's bytes: a body sent in one
 * of them is not the JSON it holds until decoded, which this server does not do.
 */
const CODINGS = new Set([
  "gzip",
  "x-gzip",
  "deflate",
  "br",
  "zstd",
  "compress",
  "x-compress",
  "aes128gcm",
  "dcb",
  "dcz",
  "exi",
  "pack200-gzip",
]);

/** Status for a request whose client left before it was answered (nginx's convention). */
export const CLIENT_CLOSED = 499;

/**
 * What a failure to read `request`'s body is answered with: a 499 where its client went away
 * (nothing logged), else the failure as it is (the body limit's 413).
 */
export function bodyReadError(request: Request, error: unknown): unknown {
  return connectionGone(request, error) ? clientClosed() : error;
}

/**
 * Whether reading `request`'s body failed because its client went away (the connection closed
 * mid-body: Deno's BadResource, a reset, an early end), not because the body broke a rule (the
 * body limit's error passes through as it is).
 */
function connectionGone(request: Request, error: unknown): boolean {
  const e = Deno.errors;
  return request.signal.aborted || error instanceof e.BadResource ||
    error instanceof e.ConnectionReset || error instanceof e.ConnectionAborted ||
    error instanceof e.UnexpectedEof || error instanceof e.Interrupted || error instanceof e.Http;
}

/**
 * A request whose client left while its body was read: answered with nginx's 499, which nobody
 * reads — and not a 500 the server logs as its own failure (a soak with clients leaving under load
 * logged `BadResource: Cannot read body as underlying resource unavailable` stacks).
 */
function clientClosed(): HttpError {
  return new HttpError(
    CLIENT_CLOSED,
    "The client closed the connection before its request body arrived.",
    "invalid_request_error",
    null,
    "client_closed_request",
  );
}

/**
 * The body of `request` parsed as JSON: a 400 where it is not JSON or nests too deeply, a 415
 * where it is compressed (the server reads bodies as they come; a gzipped one was refused as
 * "not valid JSON", its binary quoted). A Content-Encoding that names no coding — `identity`, or
 * a charset put in the wrong header (`UTF-8`, which some clients send) — changes nothing: the body
 * is read as it is, as vLLM's server (uvicorn, Starlette) and Ollama's (Go's net/http, gin) read
 * every body, whatever the header says.
 */
export async function readJson(request: Request): Promise<unknown> {
  const header = request.headers.get("content-encoding") ?? "";
  const coded = header.split(",").map((c) => c.trim().toLowerCase()).filter((c) => CODINGS.has(c));
  if (coded.length) {
    throw new HttpError(
      415,
      `The request body is compressed (Content-Encoding: ${coded.join(", ")}); send it ` +
        "uncompressed.",
      "invalid_request_error",
      null,
      "unsupported_content_encoding",
    );
  }
  let text: string;
  try {
    text = await request.text();
  } catch (error) {
    throw bodyReadError(request, error);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new HttpError(
      400,
      `The request body is not valid JSON (${(error as Error).message}).`,
      "invalid_request_error",
      null,
      "invalid_json",
    );
  }
  if (nestedDeeper(body, MAX_BODY_DEPTH)) {
    throw new HttpError(
      400,
      `The request body nests objects and arrays deeper than ${MAX_BODY_DEPTH} levels.`,
      "invalid_request_error",
      null,
      "invalid_json",
    );
  }
  return body;
}

/**
 * Deepest a request body may nest. Deno's postMessage silently dropped a request nested ≈ 3000
 * levels on its way to the engine's worker (the request then waited forever, holding the queue),
 * and deeper ones overflowed the stack in the validators; nothing a client sends needs more than
 * a schema's 64 levels (src/generate/json_schema.ts: two JSON levels each, an object and its
 * `properties`) and a few around it.
 */
const MAX_BODY_DEPTH = 256;

/**
 * Whether `value` nests objects and arrays deeper than `max`, walked level by level without
 * recursion and without visiting numbers or strings (a 32 MB array of numbers: 0.4 s, not 5).
 */
export function nestedDeeper(value: unknown, max: number): boolean {
  let level: object[] = value !== null && typeof value === "object" ? [value] : [];
  for (let depth = 1; level.length; depth++) {
    if (depth > max) return true;
    const next: object[] = [];
    for (const v of level) {
      for (const x of Array.isArray(v) ? v : Object.values(v)) {
        if (x !== null && typeof x === "object") next.push(x);
      }
    }
    level = next;
  }
  return false;
}
