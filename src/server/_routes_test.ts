import assert from "node:assert/strict";
import { methodNotAllowed, routeNotFound, servedPaths } from "./_routes.ts";

const ROUTES = [
  { method: "ALL", path: "*" }, // middleware
  { method: "GET", path: "/health" },
  { method: "GET", path: "/" },
  { method: "POST", path: "/api/chat" },
  { method: "POST", path: "/v1/chat/completions" }, // a body limit, then the handler
  { method: "POST", path: "/v1/chat/completions" },
  { method: "GET", path: "/v1/models/:id{.+}" },
  { method: "ALL", path: "/api/embed" }, // a refusal for every method
];

Deno.test("servedPaths() lists each path's methods (GET with HEAD), /v1 first and /api last, without middleware", () => {
  assert.deepEqual([...servedPaths(ROUTES)], [
    ["/v1/chat/completions", ["POST"]],
    ["/v1/models/:id{.+}", ["GET", "HEAD"]],
    ["/health", ["GET", "HEAD"]],
    ["/", ["GET", "HEAD"]],
    ["/api/chat", ["POST"]],
  ]);
});

Deno.test("methodNotAllowed() is a 405 naming the method and what to send, with Allow", () => {
  const e = methodNotAllowed("POST", "/health", ["GET", "HEAD"]);
  assert.deepEqual([e.status, e.code, e.headers], [405, "method_not_allowed", {
    allow: "GET, HEAD",
  }]);
  assert.equal(e.message, "POST is not allowed on /health; send a GET.");
});

Deno.test("routeNotFound() names the method and path and lists what is served, under the prefix; Ollama's routes for /api/; a served path with a trailing slash", () => {
  const served = servedPaths(ROUTES);
  const e = routeNotFound("GET", "/nope", "", served);
  assert.deepEqual([e.status, e.type, e.param, e.code], [
    404,
    "invalid_request_error",
    null,
    "not_found",
  ]);
  assert.equal(
    e.message,
    "No route for GET /nope. This server serves POST /v1/chat/completions, GET /v1/models/{id}, " +
      "GET /health, GET / (the chat page) and Ollama's API at /api/*.",
  );
  assert.equal(
    routeNotFound("GET", "/qvq/api/tag", "/qvq", served).message,
    "No route for GET /qvq/api/tag. This server serves POST /qvq/api/chat.",
  );
  assert.match(
    routeNotFound("POST", "/qvq/v1/chat/completions/", "/qvq", served).message,
    /^No route for POST \/qvq\/v1\/chat\/completions\/\. \/qvq\/v1\/chat\/completions \(without the trailing slash\) is served\. This server serves POST \/qvq\/v1\/chat\/completions, GET \/qvq\/v1\/models\/\{id\}, GET \/qvq\/health, GET \/qvq \(the chat page\)/,
  );
});
