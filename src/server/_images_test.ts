import assert from "node:assert/strict";
import { HttpError } from "./_errors.ts";
import { decodeDataUrl, type ImagePolicy, isPublicAddress, loadImage } from "./_images.ts";

const PNG = await Deno.readFile(
  new URL("../../tests/fixtures/tiny-qwen2vl/reference/case1_0.png", import.meta.url),
);
const PARAM = "messages[0].content[0].image_url.url";

async function rejects(promise: Promise<unknown>, status: number, code: string, message?: RegExp) {
  const error = await promise.then(() => undefined, (e) => e);
  assert.ok(error instanceof HttpError, `expected an HttpError, got ${error}`);
  assert.equal(error.status, status);
  assert.equal(error.code, code);
  assert.equal(error.param, PARAM);
  if (message) assert.match(error.message, message);
}

Deno.test("loadImage() takes PNG, JPEG and WebP by their magic numbers, and names the format of other images it refuses", async () => {
  const data = (bytes: Uint8Array) => `data:image/png;base64,${bytes.toBase64()}`;
  const policy = { allowRemote: false, allowPrivate: false, maxBytes: 1 << 20, timeoutMs: 1000 };
  const load = (bytes: Uint8Array) => loadImage(data(bytes), PARAM, policy);
  const ascii = (text: string) => new TextEncoder().encode(text);
  // The format is checked here; whether the image decodes, later (checkDecodes).
  for (
    const ok of [
      PNG,
      new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0x10]),
      ascii("RIFF\x24\0\0\0WEBPVP8 "),
    ]
  ) assert.deepEqual(await load(ok), ok);
  const gif = await Deno.readFile(
    new URL("../../tests/fixtures/images/bad/gif_1x1.gif", import.meta.url),
  );
  const refused: [Uint8Array, string][] = [
    [gif, "a GIF image: qvq reads PNG, JPEG and WebP; convert it first"],
    [ascii("BM\x3a\0\0\0\0\0"), "a BMP image: qvq reads PNG, JPEG and WebP; convert it first"],
    [ascii("II*\0\x08\0\0\0"), "a TIFF image: qvq reads PNG, JPEG and WebP; convert it first"],
    [ascii("MM\0*\0\0\0\x08"), "a TIFF image: qvq reads PNG, JPEG and WebP; convert it first"],
    [
      ascii("\0\0\0\x18ftypheic\0\0\0\0"),
      "a HEIC image: qvq reads PNG, JPEG and WebP; convert it first",
    ],
    [
      ascii("\0\0\0\x1cftypavif\0\0\0\0"),
      "an AVIF image: qvq reads PNG, JPEG and WebP; convert it first",
    ],
    [
      ascii("\0\0\0\x20ftypisom\0\0\x02\0"),
      "a HEIF/HEIC or MP4 file: qvq reads PNG, JPEG and WebP; convert it first",
    ],
    [
      ascii("<svg xmlns="),
      "text (SVG or HTML?), not an image: qvq reads PNG, JPEG and WebP images",
    ],
    [new Uint8Array(), "empty: qvq reads PNG, JPEG and WebP images"],
    [
      new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]),
      "not a PNG, JPEG or WebP image (first bytes: 01 02 03 04 05 06 07 08)",
    ],
  ];
  for (const [bytes, found] of refused) {
    const error = await load(bytes).then(() => undefined, (e) => e);
    assert.ok(error instanceof HttpError, found);
    assert.deepEqual([error.status, error.code, error.param], [400, "invalid_image", PARAM]);
    assert.equal(error.message, `${PARAM}: the data URL is ${found}.`);
  }
});

Deno.test("isPublicAddress() refuses loopback, private, link-local and reserved IPv4 and IPv6", () => {
  const cases: [string, boolean][] = [
    ["8.8.8.8", true],
    ["1.1.1.1", true],
    ["172.32.0.1", true],
    ["100.128.0.1", true],
    ["2606:4700:4700::1111", true],
    ["[2a00:1450:4001:81d::200e]", true],
    ["::ffff:8.8.8.8", true],
    ["127.0.0.1", false],
    ["127.255.1.2", false],
    ["10.1.2.3", false],
    ["172.16.0.1", false],
    ["172.31.255.255", false],
    ["192.168.1.1", false],
    ["169.254.169.254", false], // cloud metadata
    ["100.64.0.1", false],
    ["0.0.0.0", false],
    ["224.0.0.1", false],
    ["255.255.255.255", false],
    ["::1", false],
    ["[::1]", false],
    ["::", false],
    ["::ffff:127.0.0.1", false],
    ["::ffff:7f00:1", false],
    ["::ffff:192.168.0.1", false],
    ["fc00::1", false],
    ["fd12:3456::1", false],
    ["fe80::1%eth0", false],
    ["ff02::1", false],
    ["not-an-ip", false],
    ["1.2.3", false],
    ["1:2:3", false],
  ];
  for (const [ip, expected] of cases) assert.equal(isPublicAddress(ip), expected, ip);
});

Deno.test("decodeDataUrl() returns the image bytes of a base64 data URL", async () => {
  const decode = (url: string) => decodeDataUrl(url, PARAM, 1 << 20);
  assert.deepEqual(await decode(`data:image/png;base64,${PNG.toBase64()}`), PNG);
  // Media type is optional and case-insensitive; the bytes decide the format.
  assert.deepEqual(await decode(`data:;BASE64,${PNG.toBase64()}`), PNG);
  assert.deepEqual(await decode(`data:image/jpeg;base64,${PNG.toBase64()}`), PNG);
});

Deno.test("decodeDataUrl() refuses oversized, non-base64, non-image and undecodable payloads", async () => {
  const url = `data:image/png;base64,${PNG.toBase64()}`;
  const check = (u: string, max: number, status: number, code: string, message?: RegExp) =>
    rejects(Promise.resolve().then(() => decodeDataUrl(u, PARAM, max)), status, code, message);
  await check(url, 100, 413, "image_too_large", new RegExp(`${PNG.length} bytes.*100 bytes`));
  await check("data:image/png,raw", 1000, 400, "invalid_image_url", /base64/);
  await check("data:image/png;base64", 1000, 400, "invalid_image_url");
  await check("data:image/png;base64,@@@@", 1000, 400, "invalid_image_url", /base64/);
  await check(
    `data:application/pdf;base64,${btoa("%PDF-1.4")}`,
    1000,
    400,
    "invalid_image",
    /application\/pdf/,
  );
  await check(
    `data:image/png;base64,${btoa("GIF89a0000")}`,
    1000,
    400,
    "invalid_image",
    /the data URL is a GIF image: qvq reads PNG, JPEG and WebP; convert it first\.$/,
  );
});

const POLICY: ImagePolicy = {
  allowRemote: true,
  allowPrivate: true,
  maxBytes: 1 << 20,
  timeoutMs: 2000,
};

/** A local server: /cat.png, /big (no Content-Length), /slow, /text, /missing, /hop → /cat.png. */
function imageServer() {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/cat.png") return new Response(PNG, { headers: { "content-type": "image/png" } });
    if (path === "/hop") return Response.redirect(new URL("/cat.png", request.url), 302);
    if (path === "/loop") return Response.redirect(new URL("/loop", request.url), 302);
    if (path === "/file") {
      return new Response(null, { status: 302, headers: { location: "file:///etc/passwd" } });
    }
    if (path === "/text") return new Response("hello, not an image");
    if (path === "/binary") return new Response(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    if (path === "/big") return new Response(ReadableStream.from([PNG, new Uint8Array(1 << 20)]));
    if (path === "/slow") {
      await new Promise((r) => setTimeout(r, 300));
      return new Response(PNG);
    }
    return new Response("no", { status: 404 });
  });
  return { server, url: (path: string) => `http://127.0.0.1:${server.addr.port}${path}` };
}

Deno.test("loadImage() fetches http URLs when allowed, following redirects", async () => {
  const { server, url } = imageServer();
  try {
    assert.deepEqual(await loadImage(url("/cat.png"), PARAM, POLICY), PNG);
    assert.deepEqual(await loadImage(url("/hop"), PARAM, POLICY), PNG);
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadImage() refuses remote URLs when off, private hosts unless allowed, and schemes other than http(s)", async () => {
  const { server, url } = imageServer();
  try {
    await rejects(
      loadImage(url("/cat.png"), PARAM, { ...POLICY, allowRemote: false }),
      400,
      "image_url_forbidden",
    );
    const closed = { ...POLICY, allowPrivate: false };
    await rejects(
      loadImage(url("/cat.png"), PARAM, closed),
      400,
      "image_url_forbidden",
      /127\.0\.0\.1/,
    );
    await rejects(
      loadImage("http://localhost:1/cat.png", PARAM, closed),
      400,
      "image_url_forbidden",
    );
    await rejects(loadImage("http://[::1]:1/cat.png", PARAM, closed), 400, "image_url_forbidden");
    await rejects(
      loadImage("http://169.254.169.254/latest", PARAM, closed),
      400,
      "image_url_forbidden",
    );
    await rejects(loadImage("file:///etc/passwd", PARAM, POLICY), 400, "invalid_image_url");
    await rejects(loadImage("ftp://example.com/a.png", PARAM, POLICY), 400, "invalid_image_url");
    await rejects(loadImage(url("/file"), PARAM, POLICY), 400, "invalid_image_url", /file:/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadImage(): the host's DNS lookup ends with the fetch's timeout (a resolver that never answers)", async () => {
  const resolveDns = Deno.resolveDns;
  let endedByTimeout = 0;
  // A lookup that answers a public address only after 5 s, unless its signal ends it first.
  Deno.resolveDns =
    ((_query: string, _type: string, options?: { signal?: AbortSignal }) =>
      new Promise((resolve, reject) => {
        const late = setTimeout(() => resolve(["93.184.216.34"]), 5000);
        options?.signal?.addEventListener("abort", () => {
          clearTimeout(late);
          endedByTimeout++;
          reject(options.signal!.reason);
        });
      })) as typeof Deno.resolveDns;
  try {
    await rejects(
      loadImage("http://slow-dns.example/cat.png", PARAM, {
        ...POLICY,
        allowPrivate: false,
        timeoutMs: 50,
      }),
      400,
      "image_url_timeout",
      /50 ms/,
    );
    assert.equal(endedByTimeout, 2, "both lookups (A, AAAA) ended by the timeout");
  } finally {
    Deno.resolveDns = resolveDns;
  }
});

Deno.test("loadImage() enforces the size and time limits and reports bad responses as 400s", async () => {
  const { server, url } = imageServer();
  try {
    await rejects(
      loadImage(url("/cat.png"), PARAM, { ...POLICY, maxBytes: 100 }),
      413,
      "image_too_large",
    );
    await rejects(
      loadImage(url("/big"), PARAM, { ...POLICY, maxBytes: 100_000 }),
      413,
      "image_too_large",
    );
    await rejects(
      loadImage(url("/slow"), PARAM, { ...POLICY, timeoutMs: 50 }),
      400,
      "image_url_timeout",
      /50 ms/,
    );
    await rejects(loadImage(url("/text"), PARAM, POLICY), 400, "invalid_image");
    // A fetched body's bytes are not quoted back (a data URL's, the client's own, are).
    const binary = await loadImage(url("/binary"), PARAM, POLICY).catch((e) => e);
    assert.equal(binary.code, "invalid_image");
    assert.match(binary.message, /is not a PNG, JPEG or WebP image\.$/);
    await rejects(loadImage(url("/missing"), PARAM, POLICY), 400, "invalid_image_url", /HTTP 404/);
    await rejects(loadImage(url("/loop"), PARAM, POLICY), 400, "invalid_image_url", /redirects/);
    await rejects(
      loadImage("http://127.0.0.1:1/x.png", PARAM, POLICY),
      400,
      "invalid_image_url",
      /failed/,
    );
  } finally {
    await server.shutdown();
  }
});
