/**
 * Turns an `image_url.url` into encoded image bytes: `data:` URLs always, http(s) URLs only when
 * the server allows it, within byte and time limits, and never to loopback, private or link-local
 * addresses unless that too is allowed (a server that fetches on a client's behalf must not become
 * a proxy into its own network). `file:` and every other scheme are refused.
 * @module
 */
import { badRequest, HttpError } from "./_errors.ts";
import { InvalidInputError } from "../errors.ts";
import {
  DECODED_FORMATS,
  type DecodedImage,
  decodeImage,
  DEFAULT_IMAGE_PROCESSOR_CONFIG,
  imageFormat,
  smartResize,
} from "../image.ts";

/** What the server may do to fetch an image. */
export interface ImagePolicy {
  /** Fetch http(s) image URLs at all. */
  allowRemote: boolean;
  /** Fetch from loopback/private/link-local addresses (and `localhost`). */
  allowPrivate: boolean;
  /** Largest image, in bytes (decoded, not base64). */
  maxBytes: number;
  /** Time limit for one remote fetch, redirects included, in ms. */
  timeoutMs: number;
  /**
   * How images are decoded to check them (default decodeImage on this thread; the server's app
   * decodes on a worker: src/server/_decoder.ts).
   */
  decode?: (bytes: Uint8Array) => Promise<DecodedImage>;
}

/** Redirects followed by a remote fetch; each hop's address is checked again. */
const MAX_REDIRECTS = 3;

/** The refusal of a data URL whose payload does not decode (after `<param>: `). */
export const DATA_URL_NOT_BASE64 = "the data URL's payload is not valid base64.";

function tooLarge(param: string, bytes: number, maxBytes: number): HttpError {
  return new HttpError(
    413,
    `${param}: the image is ${bytes} bytes; this server accepts images up to ${maxBytes} bytes. ` +
      "Send a smaller image.",
    "invalid_request_error",
    param,
    "image_too_large",
  );
}

/**
 * What bytes that are no image qvq reads are, for a refusal: "a GIF image", "empty", … (`format`:
 * {@link imageFormat}'s name for them).
 */
function formatFound(format: string, bytes: Uint8Array | undefined): string {
  const reads = `qvq reads ${DECODED_FORMATS.slice(0, -1).join(", ")} and ${
    DECODED_FORMATS.at(-1)
  }`;
  if (format === "empty input") return `empty: ${reads} images`;
  if (format === "unknown signature") {
    const head = bytes &&
      Array.from(bytes.subarray(0, 8), (x) => x.toString(16).padStart(2, "0")).join(" ");
    return `not a PNG, JPEG or WebP image${head ? ` (first bytes: ${head})` : ""}`;
  }
  if (format.startsWith("text")) return `${format}, not an image: ${reads} images`;
  const kind = format.includes(" or ") ? "file" : "image"; // "HEIF/HEIC or MP4"
  return `${/^[AEIOU]/.test(format) ? "an" : "a"} ${format} ${kind}: ${reads}; convert it first`;
}

/**
 * `bytes` where they are an image qvq decodes; else a 400 naming what they are — with their first
 * bytes where `quote` (the client's own bytes, not a fetched body's: a fetch that reached a host
 * it should not have must not hand its bytes back).
 */
async function checkImage(
  bytes: Uint8Array,
  param: string,
  what: string,
  quote = true,
): Promise<Uint8Array> {
  const format = await imageFormat(bytes);
  if (DECODED_FORMATS.includes(format)) return bytes;
  const found = formatFound(format, quote ? bytes : undefined);
  throw badRequest(param, `${param}: ${what} is ${found}.`, "invalid_image");
}

/**
 * Decodes a base64 `data:` URL of an image, checking its size before decoding and its format
 * after.
 */
export async function decodeDataUrl(
  url: string,
  param: string,
  maxBytes: number,
): Promise<Uint8Array> {
  const comma = url.indexOf(",");
  const header = comma < 0 ? "" : url.slice(5, comma).toLowerCase();
  if (comma < 0 || !header.endsWith(";base64")) {
    throw badRequest(
      param,
      `${param}: a data URL must look like "data:image/png;base64,<data>"; got "${
        url.slice(0, 40)
      }".`,
      "invalid_image_url",
    );
  }
  const mediaType = header.slice(0, -";base64".length);
  if (mediaType !== "" && !mediaType.startsWith("image/")) {
    throw badRequest(
      param,
      `${param}: the data URL's media type is "${mediaType}"; send a PNG, JPEG or WebP image.`,
      "invalid_image",
    );
  }
  const payload = url.slice(comma + 1);
  // Every 4 base64 characters carry 3 bytes, less the "=" padding: refuse oversized images before
  // allocating them (exact unless the payload holds whitespace, which data URLs in JSON do not).
  const padding = payload.endsWith("==") ? 2 : payload.endsWith("=") ? 1 : 0;
  const size = Math.floor(((payload.length - padding) * 3) / 4);
  if (size > maxBytes) throw tooLarge(param, size, maxBytes);
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(payload);
  } catch {
    throw badRequest(param, `${param}: ${DATA_URL_NOT_BASE64}`, "invalid_image_url");
  }
  if (bytes.length > maxBytes) throw tooLarge(param, bytes.length, maxBytes);
  return await checkImage(bytes, param, "the data URL");
}

function parseIPv4(host: string): number[] | undefined {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) < 256)) return;
  return parts.map(Number);
}

/** The 8 16-bit groups of an IPv6 address (brackets allowed), or undefined when it is not one. */
function parseIPv6(host: string): number[] | undefined {
  let s = host.replace(/^\[|\]$/g, "").split("%")[0];
  if (!s.includes(":")) return;
  const v4 = s.match(/:(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const b = parseIPv4(v4[1]);
    if (!b) return;
    s = s.slice(0, -v4[1].length) + ((b[0] << 8) | b[1]).toString(16) + ":" +
      ((b[2] << 8) | b[3]).toString(16);
  }
  const halves = s.split("::");
  if (halves.length > 2) return;
  const groups = (h: string) => (h === "" ? [] : h.split(":"));
  const head = groups(halves[0]), tail = halves.length === 2 ? groups(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return;
  const all = [...head, ...Array(fill).fill("0"), ...tail];
  if (!all.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return;
  return all.map((g) => parseInt(g, 16));
}

/**
 * True when `ip` (IPv4 or IPv6 text) is a public unicast address: not loopback, private (RFC 1918,
 * fc00::/7), link-local, CGNAT, "this network", multicast or reserved.
 */
export function isPublicAddress(ip: string): boolean {
  const v4 = parseIPv4(ip);
  if (v4) {
    const [a, b] = v4;
    return !(a === 0 || a === 10 || a === 127 || a >= 224 ||
      (a === 100 && b >= 64 && b < 128) || (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) ||
      (a === 192 && b === 0 && v4[2] === 0) || (a === 198 && (b === 18 || b === 19)));
  }
  const g = parseIPv6(ip);
  if (!g) return false;
  if (g.slice(0, 5).every((x) => x === 0) && (g[5] === 0xffff || g[5] === 0)) {
    // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible form: judge the IPv4 inside.
    if (g[5] === 0 && g[6] === 0) return false; // ::, ::1 and friends
    return isPublicAddress(`${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`);
  }
  const first = g[0];
  return !((first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 ||
    (first & 0xff00) === 0xff00 ||
    first === 0x64 && g[1] === 0xff9b || first === 0x2001 && g[1] === 0x0db8);
}

/**
 * Throws unless every address `hostname` resolves to is public. The lookup ends with `signal` (the
 * fetch's timeout and the client's leaving): a DNS server that never answers would otherwise hold
 * the request past its timeout.
 */
async function checkHost(hostname: string, param: string, signal: AbortSignal): Promise<void> {
  const host = hostname.replace(/^\[|\]$/g, "");
  let addresses: string[];
  if (parseIPv4(host) || parseIPv6(host)) addresses = [host];
  else if (host === "localhost" || host.endsWith(".localhost")) addresses = ["127.0.0.1"];
  else {
    const lookups = await Promise.allSettled([
      Deno.resolveDns(host, "A", { signal }),
      Deno.resolveDns(host, "AAAA", { signal }),
    ]);
    signal.throwIfAborted();
    addresses = lookups.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
    if (addresses.length === 0) {
      throw badRequest(param, `${param}: cannot resolve the host "${host}".`, "invalid_image_url");
    }
  }
  const blocked = addresses.find((a) => !isPublicAddress(a));
  if (blocked !== undefined) {
    throw badRequest(
      param,
      `${param}: "${host}" is a private or local address (${blocked}); this server does not fetch ` +
        "images from its own network. Send the image as a data: URL.",
      "image_url_forbidden",
    );
  }
}

/** Reads a response body, refusing it once it grows past `maxBytes`. */
async function readLimited(
  response: Response,
  param: string,
  maxBytes: number,
): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw tooLarge(param, declared, maxBytes);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge(param, size, maxBytes);
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) bytes.set(c, (at += c.length) - c.length);
  return bytes;
}

async function fetchImage(
  url: URL,
  param: string,
  policy: ImagePolicy,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const timeout = AbortSignal.timeout(policy.timeoutMs);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  try {
    for (let hop = 0;; hop++) {
      if (!policy.allowPrivate) await checkHost(url.hostname, param, combined);
      const response = await fetch(url, { redirect: "manual", signal: combined });
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        if (hop === MAX_REDIRECTS) {
          throw badRequest(
            param,
            `${param}: more than ${MAX_REDIRECTS} redirects.`,
            "invalid_image_url",
          );
        }
        url = new URL(location, url);
        if (url.protocol !== "http:" && url.protocol !== "https:") {
          throw badRequest(
            param,
            `${param}: redirected to "${url.protocol}", not http(s).`,
            "invalid_image_url",
          );
        }
        continue;
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw badRequest(
          param,
          `${param}: fetching "${url}" gave HTTP ${response.status}.`,
          "invalid_image_url",
        );
      }
      return await checkImage(
        await readLimited(response, param, policy.maxBytes),
        param,
        `"${url}"`,
        false,
      );
    }
  } catch (error) {
    if (error instanceof HttpError) throw error;
    if (timeout.aborted) {
      throw badRequest(
        param,
        `${param}: fetching "${url}" took longer than ${policy.timeoutMs} ms.`,
        "image_url_timeout",
      );
    }
    if (signal?.aborted) throw error;
    throw badRequest(param, `${param}: fetching "${url}" failed (${error}).`, "invalid_image_url");
  }
}

/**
 * The image bytes an `image_url.url` names. `param` is the request field, for error messages
 * (e.g. "messages[0].content[1].image_url.url").
 */
export async function loadImage(
  url: string,
  param: string,
  policy: ImagePolicy,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  if (/^data:/i.test(url)) return await decodeDataUrl(url, param, policy.maxBytes);
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch { /* reported below */ }
  if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
    throw badRequest(
      param,
      `${param}: "${url.slice(0, 60)}" is neither a data: URL nor an http(s) URL.`,
      "invalid_image_url",
    );
  }
  if (!policy.allowRemote) {
    throw badRequest(
      param,
      `${param}: this server does not fetch image URLs; send the image inline as ` +
        `"data:image/png;base64,...".`,
      "image_url_forbidden",
    );
  }
  return await fetchImage(parsed, param, policy, signal);
}

/**
 * Decodes an image before its request is queued: a corrupt, truncated, oversized or too
 * elongated image is then a 400 naming its field, not an error the engine finds after the request
 * has waited its turn — on a stream already answered 200. Returns the pixels, which the engine
 * takes instead of the bytes where the request runs at once (a second decode would delay its
 * first token: a 12-megapixel JPEG decodes in ≈ 0.19 s on the 2-core development VM, a
 * 1024 × 768 one in ≈ 10 ms, 2026-11-29).
 */
export async function checkDecodes(
  bytes: Uint8Array,
  param: string,
  decode: (bytes: Uint8Array) => Promise<DecodedImage> = decodeImage,
): Promise<DecodedImage> {
  try {
    const image = await decode(bytes);
    smartResize(image.height, image.width, DEFAULT_IMAGE_PROCESSOR_CONFIG); // size, aspect checks
    return image;
  } catch (e) {
    if (!(e instanceof InvalidInputError)) throw e;
    throw badRequest(param, `${param}: ${e.message}`, "invalid_image");
  }
}
