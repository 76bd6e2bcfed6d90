/**
 * A server-sent-events response (or Ollama's JSON lines) fed by an async producer. Each event is
 * written as soon as it is sent (no batching), a comment line keeps idle SSE connections alive
 * (while queued, or during a long prefill) so proxies and clients do not time out, and a client
 * that goes away aborts the producer's signal.
 * @module
 */

/**
 * Sends one event's `data:` — a string as is (e.g. "[DONE]"), anything else as JSON — after an
 * `event:` line naming it where `event` is given (the Responses API's typed events).
 */
export type SendEvent = (data: unknown, event?: string) => void;

const encoder = new TextEncoder();

/**
 * A streaming Response that runs `produce` until it returns. `signal` given to `produce` aborts
 * when the client disconnects (stream cancelled or `requestSignal` aborted); after that, `send`
 * does nothing. Errors thrown by `produce` end the stream (report them with `send` first).
 */
export function sseResponse(
  produce: (send: SendEvent, signal: AbortSignal) => Promise<void>,
  options: {
    keepAliveMs: number;
    controller: AbortController;
    /**
     * Ollama's framing: each event one line of JSON (`event` ignored), and no keep-alive, since
     * its clients take every line for JSON (a blank one fails ollama-python).
     */
    ndjson?: boolean;
  },
): Response {
  const { keepAliveMs, controller: abort, ndjson = false } = options;
  let timer: ReturnType<typeof setInterval> | undefined;
  let open = true;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let idle = false;
      const write = (text: string) => {
        if (!open) return;
        idle = false;
        controller.enqueue(encoder.encode(text));
      };
      // Every tick: a comment if nothing was written since the last one.
      if (!ndjson) {
        timer = setInterval(() => {
          if (idle) write(": keep-alive\n\n");
          idle = true;
        }, keepAliveMs);
      }
      const send: SendEvent = (data, event) =>
        ndjson ? write(`${ndjsonLine(data)}\n`) : write(
          `${event === undefined ? "" : `event: ${event}\n`}data: ${
            typeof data === "string" ? data : JSON.stringify(data)
          }\n\n`,
        );
      produce(send, abort.signal)
        .catch((error) => {
          if (!abort.signal.aborted) console.error("qvq server: stream failed:", error);
        })
        .finally(() => {
          clearInterval(timer);
          if (open) {
            open = false;
            controller.close();
          }
        });
    },
    cancel(reason) {
      open = false;
      clearInterval(timer);
      abort.abort(reason ?? new DOMException("The client disconnected.", "AbortError"));
    },
  });
  return new Response(body, {
    headers: {
      "content-type": ndjson ? "application/x-ndjson" : "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      // Tells nginx-style proxies not to buffer the stream.
      "x-accel-buffering": "no",
    },
  });
}

/**
 * One line of JSON: U+2028, U+2029 and U+0085, which JSON.stringify leaves as they are, escaped
 * (as Go's encoding/json writes them): Python's line readers split on them, and ollama-python
 * failed on an answer holding one.
 */
export function ndjsonLine(data: unknown): string {
  return JSON.stringify(data).replace(
    /[\u0085\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
