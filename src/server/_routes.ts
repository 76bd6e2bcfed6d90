/**
 * What the app answers for a request no route of it serves: a 405 with `Allow` for a path it
 * serves with other methods (as vLLM's FastAPI does), else a 404 that names the method and path and
 * lists what the app serves — JSON in the API's own shape, not Hono's bare "404 Not Found" text.
 * @module
 */
import type { Context, Hono } from "hono";
import { basePath } from "hono/route";
import { HttpError } from "./_errors.ts";

/** The paths listed first in a 404, in this order; the rest follow, Ollama's /api last. */
const LISTED_FIRST = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/responses",
  "/v1/responses/:id",
  "/v1/responses/:id/input_items",
  "/v1/models",
  "/v1/models/:id{.+}",
  "/tokenize",
  "/detokenize",
  "/health",
  "/metrics",
];

/**
 * Each path `routes` serve with the methods that serve it, in the order of {@link LISTED_FIRST}:
 * middleware and catch-alls (method "ALL") serve none. GET brings HEAD, which Hono answers as GET.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { servedPaths } from "./_routes.ts";
 * const served = servedPaths([
 *   { method: "ALL", path: "*" },
 *   { method: "GET", path: "/health" },
 *   { method: "POST", path: "/v1/chat/completions" },
 * ]);
 * assert.deepEqual([...served], [["/v1/chat/completions", ["POST"]], ["/health", ["GET", "HEAD"]]]);
 * ```
 */
export function servedPaths(
  routes: readonly { method: string; path: string }[],
): Map<string, string[]> {
  const served = new Map<string, string[]>();
  for (const { method, path } of routes) {
    if (method === "ALL") continue;
    const methods = served.get(path) ?? [];
    for (const m of method === "GET" ? ["GET", "HEAD"] : [method]) {
      if (!methods.includes(m)) methods.push(m);
    }
    served.set(path, methods);
  }
  const rank = (path: string) => {
    const i = LISTED_FIRST.indexOf(path);
    return i >= 0 ? i : path.startsWith("/api/") ? LISTED_FIRST.length + 1 : LISTED_FIRST.length;
  };
  return new Map([...served].sort(([a], [b]) => rank(a) - rank(b)));
}

/**
 * A route's path under `prefix` as a reader writes it: `/v1/models/:id{.+}` → `/v1/models/{id}`;
 * `/` mounted at `/qvq` is `/qvq`, as Hono mounts it.
 */
function shown(path: string, prefix: string): string {
  if (path === "/") return prefix || "/";
  return prefix + path.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}");
}

/** "a, b and c". */
function listed(items: string[]): string {
  return items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/** The 405 for `method` on a path served with `allow` (sent as the `Allow` header). */
export function methodNotAllowed(method: string, path: string, allow: string[]): HttpError {
  const verbs = allow.filter((m) => m !== "HEAD");
  return new HttpError(
    405,
    `${method} is not allowed on ${path}; send a ${listed(verbs).replace(" and ", " or ")}.`,
    "invalid_request_error",
    null,
    "method_not_allowed",
    { allow: allow.join(", ") },
  );
}

/**
 * The 404 for `method` on `path`, a path of the app mounted at `prefix` ("" where it is not) that
 * none of its routes serves: what it serves — Ollama's routes for a path under /api/, every route
 * else (Ollama's summed up as /api/*) —, and where the path is a served one with a trailing slash
 * (an app mounted in a parent Hono that is `strict`), that one.
 */
export function routeNotFound(
  method: string,
  path: string,
  prefix: string,
  served: ReadonlyMap<string, string[]>,
): HttpError {
  const own = path.slice(prefix.length);
  const bare = own.replace(/(.)\/$/, "$1");
  const entries = [...served];
  const ollama = own.startsWith("/api/");
  const routes = entries
    .filter(([p]) => !ollama || p.startsWith("/api/"))
    .filter(([p]) => ollama || !p.startsWith("/api/"))
    .map(([p, methods]) => {
      const verbs = methods.filter((m) => m !== "HEAD").join("/");
      return `${verbs} ${shown(p, prefix)}${p === "/" ? " (the chat page)" : ""}`;
    });
  if (!ollama && entries.some(([p]) => p.startsWith("/api/"))) {
    routes.push(`Ollama's API at ${shown("/api/*", prefix)}`);
  }
  const slashed = bare !== own && served.has(bare)
    ? ` ${shown(bare, prefix)} (without the trailing slash) is served.`
    : "";
  return new HttpError(
    404,
    `No route for ${method} ${path}.${slashed} This server serves ${listed(routes)}.`,
    "invalid_request_error",
    null,
    "not_found",
  );
}

/**
 * Registers, after every route of `app`, the answers for a request none serves, written by
 * `respond` (the API's error shapes): a 405 for a served path's other methods; a 404
 * ({@link routeNotFound}) for any other path — through Hono's notFound where `app` runs as it is,
 * and through catch-alls for its own namespaces, /v1/* and /api/*, which stay in force where a
 * parent mounts it (`parent.route(prefix, app)`: the parent's notFound answers the rest, and routes
 * the parent adds outside them after mounting the app at its root still reach theirs).
 */
export function answerUnrouted(app: Hono, respond: (c: Context, error: HttpError) => Response) {
  const served = servedPaths(app.routes);
  for (const [path, allow] of served) {
    app.all(path, (c) => respond(c, methodNotAllowed(c.req.method, c.req.path, allow)));
  }
  const missing = (c: Context, prefix: string) =>
    respond(c, routeNotFound(c.req.method, c.req.path, prefix, served));
  for (const namespace of ["/v1/*", "/api/*"]) {
    app.all(namespace, (c) => missing(c, basePath(c).replace(/\/$/, "")));
  }
  app.notFound((c) => missing(c, ""));
}
