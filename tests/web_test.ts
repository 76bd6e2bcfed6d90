/**
 * The chat page at `/` in headless Chromium (Debian's `chromium`, driven by playwright-core):
 * type a question, attach an image, and watch the answer stream in.
 *
 * Needs `apt-get install -y chromium` (or CHROMIUM_PATH). Set QVQ_WEB_SCREENSHOT=<file.png> to
 * keep a screenshot of the finished conversation.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import type { Page } from "playwright-core";
import { launchChromium } from "../src/bundle/_chromium.ts";
import { createApp } from "../src/server/app.ts";
import { FakeEngine, gate, waitFor } from "../src/server/_fake_engine.ts";
import { type DecodedImage, decodeImage } from "../src/image.ts";

/** The page's document, inside functions that playwright runs in the browser. */
declare const document: any;
declare const HTMLElement: any;
declare const HTMLVideoElement: any;
declare const HTMLMediaElement: any;
declare const CanvasRenderingContext2D: any;
declare const VideoFrame: any;
declare const requestAnimationFrame: any;
declare const Navigator: any;
declare const DataTransfer: any;
declare const DragEvent: any;
declare const getComputedStyle: any;

const PNG_PATH = fileURLToPath(
  new URL("./fixtures/tiny-qwen2vl/reference/case2_0.png", import.meta.url),
);

const ANSWER =
  "Let me look at the image step by step. First, the shapes: a red square and a blue " +
  "circle. Second, their positions. So the answer is 42.";

/** `handler` listening on a free local port and a headless Chromium; disposing closes both. */
async function serveAndLaunch(handler: Deno.ServeHandler) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const url = `http://127.0.0.1:${server.addr.port}`;
  try {
    const browser = await launchChromium();
    return {
      browser,
      url,
      async [Symbol.asyncDispose]() {
        await browser.close();
        await server.shutdown();
      },
    };
  } catch (e) {
    await server.shutdown();
    throw e;
  }
}

/** Waits until the page has fetched the model list and shows `modelId`. */
async function waitForModel(page: Page, modelId: string): Promise<void> {
  await page.waitForFunction(
    (id) => document.getElementById("model")?.textContent === id,
    modelId,
  );
}

/** How {@link openPage} opens the chat page. */
interface OpenOptions {
  /** The model id the page shows once ready; by default any answer to its model list will do. */
  model?: string;
  viewport?: { width: number; height: number };
  /** A phone's touch screen (playwright's hasTouch and isMobile): no hover, a coarse pointer. */
  touch?: boolean;
  /** Its path on the server. Default "/". */
  path?: string;
  /** Runs on the page before it loads: init scripts, routes. */
  before?: (page: Page) => Promise<unknown>;
}

/**
 * A new page of `s`'s browser on the chat page, ready: its model list answered (with `model`'s id,
 * where given). `errors` holds what the page's scripts threw uncaught, from the start: a test
 * expects none.
 */
async function openPage(
  s: Awaited<ReturnType<typeof serveAndLaunch>>,
  options: OpenOptions = {},
): Promise<{ page: Page; errors: string[] }> {
  const page = await s.browser.newPage({
    viewport: options.viewport,
    hasTouch: options.touch,
    isMobile: options.touch,
  });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await options.before?.(page);
  await page.goto(`${s.url}${options.path ?? "/"}`);
  if (options.model !== undefined) await waitForModel(page, options.model);
  else {
    await page.waitForFunction(() =>
      document.getElementById("model")?.textContent !== "connecting…"
    );
  }
  return { page, errors };
}

/** Waits until the page's notice names `name` among the files it did not attach. */
async function waitForNotAttached(page: Page, name: string): Promise<void> {
  await page.waitForFunction((name) => {
    const said = document.getElementById("notice")?.textContent ?? "";
    return said.startsWith("Not attached ") && said.includes(name);
  }, name);
}

/** Attaches PNG_PATH through the file input and waits for its thumbnail. */
async function attachPng(page: Page): Promise<void> {
  await page.setInputFiles("#file", PNG_PATH);
  await page.waitForSelector("#attachments .thumb img");
}

/** Types `text` into the prompt and sends it with Enter. */
async function send(page: Page, text: string): Promise<void> {
  await page.fill("#prompt", text);
  await page.press("#prompt", "Enter");
}

/** Attaches the test clip, a 2-second 64 x 48 WebM (ffmpeg's testsrc: 4 frames at 2 a second). */
async function attachClip(page: Page): Promise<void> {
  await page.setInputFiles(
    "#file",
    fileURLToPath(new URL("./fixtures/video/clip.webm", import.meta.url)),
  );
  await page.waitForSelector("#attachments .thumb .frames");
}

/** Sends `text` and waits for the fake engine's answer to it ("… You said: <text>"). */
async function askAndAwait(page: Page, text: string): Promise<void> {
  await send(page, text);
  await page.waitForFunction(
    (said) =>
      (document.querySelector(".msg.assistant:last-child .text")?.textContent ?? "")
        .includes(`You said: ${said}`),
    text,
  );
}

Deno.test("the chat page streams an answer to a typed question with an attached image", async () => {
  // The first answer is held after its third word until the page has been seen mid-answer.
  const seen = gate();
  const engine = new FakeEngine({
    tokenDelayMs: 40,
    answer: () => ANSWER,
    hold: (k, call) => call === 0 && k === 3 ? seen.promise : undefined,
  });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    viewport: { width: 900, height: 640 },
  });

  await attachPng(page);
  await send(page, "How many shapes are there?");

  // Part of the answer is on the page while the rest is still being written.
  const answer = page.locator(".msg.assistant .text");
  await page.waitForFunction(() => {
    const msg = document.querySelector(".msg.assistant");
    const text = msg?.querySelector(".text")?.textContent ?? "";
    return msg?.classList.contains("streaming") && text.split(" ").length >= 3;
  });
  const partial = await answer.textContent();
  assert.ok(
    partial && ANSWER.startsWith(partial) && partial.length < ANSWER.length,
    `partial: ${partial}`,
  );
  assert.equal(await page.textContent("#send"), "Stop");
  seen.open();

  await page.waitForSelector(".msg.assistant:not(.streaming) .stats", { timeout: 20_000 });
  assert.equal(await answer.textContent(), ANSWER);
  assert.match(
    (await page.textContent(".msg.assistant .stats"))!,
    /^27 tokens · 42\.0 tokens\/s$/,
  );
  assert.equal(await page.textContent("#send"), "Send");
  assert.equal(await page.locator(".msg.user img").count(), 1);
  assert.equal(await page.textContent(".msg.user .text"), "How many shapes are there?");
  assert.equal(await page.locator("#attachments .thumb").count(), 0);

  // What reached the engine: the image (its pixels, decoded once by the server), then the text.
  const [call] = engine.calls;
  const content = call.messages[0].content;
  assert.ok(Array.isArray(content));
  assert.equal(content[0].type, "image");
  const got = content[0].type === "image" ? content[0].image as DecodedImage : undefined;
  const want = await decodeImage(await Deno.readFile(PNG_PATH));
  // Compared field by field: a failing deepEqual of megabytes of pixels builds a diff for minutes.
  assert.deepEqual([got?.width, got?.height], [want.width, want.height]);
  assert.ok(got!.data.every((v, i) => v === want.data[i]), "the same pixels");
  assert.deepEqual(content[1], { type: "text", text: "How many shapes are there?" });

  // A follow-up carries the conversation, and the settings' presence penalty (0: not sent).
  assert.equal(engine.calls[0].options.presencePenalty, undefined);
  await page.click("summary");
  await page.fill("#presence-penalty", "1.5");
  await page.check("#json-mode");
  await page.fill("#prompt", "Are you sure?");
  await page.click("#send");
  await page.waitForFunction(
    () => document.querySelectorAll(".msg.assistant .stats").length === 2,
    null,
    {
      timeout: 20_000,
    },
  );
  assert.deepEqual(engine.calls[1].messages.map((m) => m.role), ["user", "assistant", "user"]);
  assert.equal(engine.calls[1].messages[1].content, ANSWER);
  assert.equal(engine.calls[1].options.presencePenalty, 1.5);
  // JSON answers: the request's response_format, the answer shown as a code block.
  assert.equal(engine.calls[0].options.responseFormat, undefined);
  assert.equal(engine.calls[1].options.responseFormat, "json_object");
  assert.equal(await page.locator(".msg.assistant").nth(1).locator("pre code").count(), 1);
  assert.equal(await page.locator(".msg.assistant").nth(0).locator("pre").count(), 0);

  const shot = Deno.env.get("QVQ_WEB_SCREENSHOT");
  if (shot) await page.screenshot({ path: shot });
  assert.deepEqual(errors, []);
});

Deno.test("the chat page's Stop button aborts the generation on the server", async () => {
  const engine = new FakeEngine({ tokenDelayMs: 30, answer: () => "thinking ".repeat(500) });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, { model: engine.modelId });
  await send(page, "Think hard");
  await page.waitForFunction(() =>
    (document.querySelector(".msg.assistant .text")?.textContent ?? "").length > 20
  );
  await page.click("#send");
  await page.waitForSelector(".msg.assistant:not(.streaming)");
  await waitFor(() => engine.calls[0].closed, "the generation to close");
  // The server may stop the engine either way: by the request's AbortSignal (the engine then ends
  // with "abort") or by closing the generator it was reading (no final record at all). Either way
  // the signal must have fired and the generation must be over, well before its 500 tokens.
  const call = engine.calls[0];
  assert.equal(call.options.signal?.aborted, true);
  assert.ok(call.closed, "the generation is still running");
  assert.ok(call.finishReason === undefined || call.finishReason === "abort", call.finishReason);
  assert.equal(await page.textContent("#send"), "Send");
  assert.deepEqual(errors, []);
});

Deno.test("the chat page shows the server's error message and leaves the refused turn out of the conversation", async () => {
  const engine = new FakeEngine({ answer: () => "fine" });
  await using s = await serveAndLaunch(createApp(engine, { maxImageBytes: 1000 }).fetch);
  const { page, errors } = await openPage(s, { model: engine.modelId });
  await attachPng(page);
  await send(page, "Too big?");
  await page.waitForSelector(".msg.assistant .error");
  assert.match(
    (await page.textContent(".msg.assistant .error"))!,
    /accepts images up to 1000 bytes/,
  );
  // The server's clause after the field it names ("messages[0]…url: the image is …") starts a
  // sentence here.
  assert.match((await page.textContent(".msg.assistant .error"))!, /^The image is \d+ bytes; /);
  assert.equal(engine.calls.length, 0);
  // The refused turn is back in the box (text and image) to fix, and marked as not sent.
  assert.equal(await page.inputValue("#prompt"), "Too big?");
  assert.equal(await page.locator("#attachments .thumb").count(), 1);
  // The error is not marked with it: it was struck through and faded, as the question. (Both
  // come from the element or a box around it.)
  const look = (selector: string) =>
    page.$eval(selector, (e: any) => {
      let opacity = 1, struck = false;
      for (let x = e; x; x = x.parentElement) {
        opacity *= Number(getComputedStyle(x).opacity);
        struck ||= getComputedStyle(x).textDecorationLine === "line-through";
      }
      return { opacity, struck };
    });
  assert.deepEqual(await look(".msg.assistant .error"), { opacity: 1, struck: false });
  assert.deepEqual(await look(".msg.user.refused"), { opacity: 0.5, struck: true });
  assert.equal(await page.locator(".msg.user.refused").count(), 1);
  // The next turn goes out alone: it used to carry the refused one (and fail the same way) forever.
  await page.click("#attachments .thumb button");
  await send(page, "Just text, then.");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
  assert.equal(engine.calls.length, 1);
  assert.deepEqual(engine.calls[0].messages, [{
    role: "user",
    content: [{ type: "text", text: "Just text, then." }],
  }]);
  assert.deepEqual(errors, []);
});

Deno.test("the chat page fits a phone: the placeholder on one line, the header one row", async () => {
  // A long model id: on a phone it gives way, not the header's buttons.
  const engine = new FakeEngine({ modelId: "Qwen/QVQ-72B-Preview-some-long-suffix" });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    viewport: { width: 1280, height: 700 },
  });
  const layout = () =>
    page.evaluate(() => {
      const prompt = document.getElementById("prompt");
      return {
        placeholder: prompt.placeholder,
        wraps: prompt.scrollHeight > prompt.clientHeight, // the placeholder's lines count
        header: document.querySelector("header").getBoundingClientRect().height,
        overflows: document.documentElement.scrollWidth > document.documentElement.clientWidth,
      };
    });
  const wide = await layout();
  for (const width of [360, 390, 768, 1280]) {
    await page.setViewportSize({ width, height: 700 });
    // The placeholder follows the box's width (a ResizeObserver's callback): two frames on.
    await page.evaluate(() =>
      new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))
    );
    const got = await layout();
    assert.equal(got.wraps, false, `the placeholder wraps at ${width} px: ${got.placeholder}`);
    assert.equal(got.header, wide.header, `the header is taller at ${width} px`);
    assert.equal(got.overflows, false, `the page is wider than ${width} px`);
    // The keyboard hint where it fits; on a phone (no Shift key to speak of) the plain placeholder.
    assert.equal(
      got.placeholder,
      width < 500 ? "Message QVQ" : "Message QVQ (Shift+Enter for a new line)",
    );
  }
  assert.deepEqual(errors, []);
});

Deno.test("the chat page's text fields are 16 px on a phone: iPhone Safari zooms in on smaller ones", async () => {
  const engine = new FakeEngine();
  await using s = await serveAndLaunch(createApp(engine).fetch);
  for (const touch of [true, false]) {
    const { page, errors } = await openPage(s, {
      model: engine.modelId,
      viewport: { width: 390, height: 740 },
      touch,
    });
    const fields = await page.$$eval(
      "textarea, input:not([type=checkbox]):not([type=file])",
      (all) => all.map((e: any) => [e.id, getComputedStyle(e).fontSize]),
    );
    assert.equal(fields.length, 5); // the message box and the settings' four
    for (const [id, size] of fields) assert.ok(parseFloat(size) >= 16, `#${id} is ${size}`);
    // The message box's line still as tall as the buttons beside it.
    const heights = await page.$$eval(
      "#prompt, #send",
      (all) => all.map((e: any) => e.getBoundingClientRect().height),
    );
    assert.equal(heights[0], heights[1]);
    await page.close();
    assert.deepEqual(errors, []);
  }
});

Deno.test("the chat page on a touch screen: Enter writes a new line, the Send button sends", async () => {
  const engine = new FakeEngine(); // answers with what it received
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    viewport: { width: 390, height: 740 },
    touch: true,
  });
  assert.match((await page.textContent(".empty"))!, /type a question, tap Send\.$/);
  await page.tap("#prompt");
  await page.keyboard.type("First line");
  await page.keyboard.press("Enter");
  await page.keyboard.type("second line");
  assert.equal(await page.inputValue("#prompt"), "First line\nsecond line");
  assert.equal(await page.locator(".msg").count(), 0);
  // The box grew by the line, whole: it was its border (2 px) short, its text scrolled.
  assert.ok(
    await page.$eval("#prompt", (e: any) => e.scrollHeight <= e.clientHeight),
    "the message box scrolls",
  );
  // No Shift+Enter hint, even where it would fit (a tablet's width).
  await page.setViewportSize({ width: 1024, height: 740 });
  await page.waitForFunction(() => document.getElementById("prompt").clientWidth > 600);
  await page.evaluate(() =>
    new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))
  );
  assert.equal(await page.getAttribute("#prompt", "placeholder"), "Message QVQ");
  await page.tap("#send");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
  assert.deepEqual(engine.calls[0].messages[0].content, [{
    type: "text",
    text: "First line\nsecond line",
  }]);
  assert.equal(await page.textContent(".msg.user .text"), "First line\nsecond line");
  await page.tap("#new-chat");
  assert.match((await page.textContent(".empty"))!, /^New chat: .*, tap Send\.$/);
  assert.deepEqual(errors, []);
});

Deno.test("the chat page finds the API when the app is mounted under a prefix", async () => {
  const engine = new FakeEngine({ answer: () => "mounted" });
  const parent = new Hono();
  parent.route("/qvq", createApp(engine));
  await using s = await serveAndLaunch(parent.fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    path: "/qvq", // no trailing slash
  });
  await send(page, "Hello");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
  assert.equal(await page.textContent(".msg.assistant .text"), "mounted");
  assert.deepEqual(errors, []);
});

Deno.test("the chat page: Enter while streaming does not stop the answer; Stop marks a partial answer as stopped", async () => {
  // Each answer is held after its third word: the first until Enter was pressed mid-answer, the
  // second until Stop.
  const gates = [gate(), gate()];
  const engine = new FakeEngine({
    tokenDelayMs: 20,
    answer: () => "thinking ".repeat(60),
    hold: (k, call) => k === 3 ? gates[call]?.promise : undefined,
  });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, { model: engine.modelId });
  await send(page, "First");
  await page.waitForFunction(() =>
    (document.querySelector(".msg.assistant .text")?.textContent ?? "").length > 20
  );
  // The next question typed and Enter pressed mid-answer: it stays in the box, the answer goes on.
  await send(page, "Second");
  assert.equal(await page.inputValue("#prompt"), "Second");
  gates[0].open();
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats", { timeout: 20_000 });
  assert.equal(engine.calls.length, 1);
  assert.equal(engine.calls[0].finishReason, "stop", "the first answer ran to its end");
  // Stopped mid-answer: marked as such.
  await page.press("#prompt", "Enter");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant").length === 2);
  await page.waitForFunction(() =>
    (document.querySelectorAll(".msg.assistant .text")[1]?.textContent ?? "").length > 20
  );
  await page.click("#send");
  await page.waitForFunction(() =>
    document.querySelectorAll(".msg.assistant")[1]?.querySelector(".stats")?.textContent ===
      "Stopped."
  );
  gates[1].open();
  assert.deepEqual(errors, []);
});

Deno.test("the chat page: Stop before the first token gives the turn back; New chat forgets the conversation", async () => {
  // The first answer is held before its first token (until Stop aborts it).
  const first = gate();
  const engine = new FakeEngine({
    answer: () => "late",
    hold: (k, call) => call === 0 && k === 0 ? first.promise : undefined,
  });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, { model: engine.modelId });
  await send(page, "Slow one");
  await page.waitForFunction(() => document.getElementById("send")?.textContent === "Stop");
  await page.click("#send");
  await page.waitForSelector(".msg.user.refused");
  assert.equal(await page.inputValue("#prompt"), "Slow one", "back in the box");
  // New chat: nothing of the conversation goes with the next message.
  await page.click("#new-chat");
  assert.equal(await page.locator(".msg").count(), 0);
  await send(page, "Fresh start");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats", { timeout: 20_000 });
  assert.deepEqual(engine.calls.at(-1)!.messages, [{
    role: "user",
    content: [{ type: "text", text: "Fresh start" }],
  }]);
  first.open();
  assert.deepEqual(errors, []);
});

Deno.test("the chat page names files it cannot attach, and says where an API key goes", async () => {
  const engine = new FakeEngine();
  await using s = await serveAndLaunch(createApp(engine, { apiKey: "sk-test" }).fetch);
  const { page, errors } = await openPage(s);
  await page.waitForFunction(() =>
    /enter it under Settings/.test(document.getElementById("model")?.textContent ?? "")
  );
  // Read whole at any width: it was cut off like a long model id (on a phone to "no model: This …").
  for (const width of [360, 768, 1280]) {
    await page.setViewportSize({ width, height: 640 });
    const cut = await page.$eval("#model", (e: any) => e.scrollWidth > e.clientWidth);
    assert.equal(cut, false, `cut off at ${width} px`);
  }
  // Named in the notice and not attached: a text file; a file that claims to be a PNG but does
  // not open; a video the browser cannot play.
  const files = [
    { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("hello") },
    { name: "broken.png", mimeType: "image/png", buffer: Buffer.from("not a png at all") },
    { name: "broken.webm", mimeType: "video/webm", buffer: Buffer.from("not a video either") },
  ];
  for (const file of files) {
    await page.setInputFiles("#file", file);
    await waitForNotAttached(page, file.name);
    assert.equal(await page.locator("#attachments .thumb").count(), 0);
  }
  // A sentence, as the other notices: the names quoted, a full stop after them.
  assert.equal(
    await page.textContent("#notice"),
    "Not attached (only PNG, JPEG or WebP images and videos this browser plays): " +
      "“notes.txt”, “broken.png”, “broken.webm”.",
  );
  assert.deepEqual(errors, []);
});

Deno.test("the chat page attaches files dropped on it, and leaves a drop of text to the message box", async () => {
  const engine = new FakeEngine();
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, { model: engine.modelId });
  // A drag's dragover and drop on the message box, carrying `png` (base64) as a file or `text`;
  // whether the page took each (prevented the browser's own handling).
  const drop = (what: { png?: string; text?: string }) =>
    page.evaluate(({ png, text }) => {
      const data = new DataTransfer();
      if (png) {
        const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
        data.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
      }
      if (text) data.setData("text/plain", text);
      return ["dragover", "drop"].map((type) => {
        const event = new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true });
        document.getElementById("prompt").dispatchEvent(event);
        return event.defaultPrevented;
      });
    }, what);
  // Text (a quote dragged from the conversation) is the browser's to drop into the box: the page
  // refused every drop.
  assert.deepEqual(await drop({ text: "quoted" }), [false, false]);
  assert.equal(await page.locator("#attachments .thumb").count(), 0);
  assert.equal(await page.textContent("#notice"), "");
  const png = Buffer.from(await Deno.readFile(PNG_PATH)).toString("base64");
  assert.deepEqual(await drop({ png }), [true, true]);
  await page.waitForSelector("#attachments .thumb img");
  assert.deepEqual(errors, []);
});

Deno.test("the chat page: images go in the order chosen, a long answer shows whole, a cut-off says why, settings persist and close by keyboard too", async () => {
  const long = Array.from({ length: 3000 }, (_, i) => `w${i}`).join(" ");
  const engine = new FakeEngine({ answer: () => long });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    viewport: { width: 900, height: 640 },
  });
  // A large image then a small one: the large one's read finishes last, but it stays first.
  const png = await Deno.readFile(PNG_PATH);
  const large = new Uint8Array(4_000_000);
  large.set(png);
  await page.setInputFiles("#file", [
    { name: "large.png", mimeType: "image/png", buffer: Buffer.from(large) },
    { name: "small.png", mimeType: "image/png", buffer: Buffer.from(png) },
  ]);
  // Both hold their places at once; each shows its image once read.
  await page.waitForFunction(() =>
    document.querySelectorAll("#attachments .thumb img").length === 2
  );
  const sizes = await page.$$eval("#attachments img", (imgs) => imgs.map((i: any) => i.src.length));
  assert.ok(sizes[0] > sizes[1], `large first: ${sizes}`);
  // Max tokens 2500 of a 3000-word answer: the whole of what was written, and why it stopped.
  await page.click("summary");
  await page.fill("#max-tokens", "2500");
  await page.dispatchEvent("#max-tokens", "change");
  await page.locator("#attachments button").first().click();
  await page.locator("#attachments button").first().click();
  await send(page, "Go on.");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats", { timeout: 30_000 });
  const text = (await page.textContent(".msg.assistant .text"))!;
  assert.equal(text, long.split(" ").slice(0, 2500).join(" "));
  assert.match(
    (await page.textContent(".msg.assistant .stats"))!,
    /· Cut off at Max tokens \(2500\): raise it under Settings, or\s*Continue\.$/,
  );
  // Continue: the answer so far goes back as the last message (continue_final_message), and what
  // comes is written on after it, in the same message.
  await page.click(".msg.assistant .stats button.continue");
  await page.waitForFunction(() =>
    !document.querySelector(".msg.assistant.streaming") &&
    document.querySelectorAll(".msg.assistant .stats").length === 1 &&
    document.querySelector(".msg.assistant .text")!.textContent!.length > 20000
  );
  const [, more] = engine.calls;
  assert.equal(more.options.continueFinalMessage, true);
  assert.deepEqual(more.messages.at(-1), { role: "assistant", content: text });
  const continued = (await page.textContent(".msg.assistant .text"))!;
  assert.ok(continued.startsWith(text) && continued.length > text.length);
  assert.equal(await page.locator(".msg.assistant").count(), 1);
  // Settings survive a reload.
  await page.reload();
  await waitForModel(page, engine.modelId);
  assert.equal(await page.inputValue("#max-tokens"), "2500");
  assert.equal(await page.isChecked("#json-mode"), false);
  await page.click("summary");
  await page.check("#json-mode");
  await page.reload();
  await waitForModel(page, engine.modelId);
  assert.equal(await page.isChecked("#json-mode"), true);
  // Escape closes the settings; so does a click outside them.
  const open = () => page.$eval("header details", (d: any) => d.open);
  await page.click("summary");
  assert.equal(await open(), true);
  await page.keyboard.press("Escape");
  assert.equal(await open(), false);
  await page.click("summary");
  await page.click("main");
  assert.equal(await open(), false);
  // Closed with Escape from one of their fields, they give the focus back to their summary.
  await page.click("summary");
  await page.focus("#temperature");
  await page.keyboard.press("Escape");
  assert.equal(await open(), false);
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), "SUMMARY");
  assert.deepEqual(errors, []);
});

Deno.test("the chat page renders an answer's markdown with DOM nodes only: code blocks, inline code, bold, headings", async () => {
  const md =
    "## Step 1\nThere are **two** shapes: `a < b`, 2*3*4.\n```js\nconst x = '<b>1</b>';\n```\nDone <i>.\n" +
    // Inline code between runs of two or three backticks, as models write it (on a line of its
    // own too: no code block); a run never closed stays text.
    "```py print(1)``` runs it, as does ```js f()```; `` a`b `` is code, **bold `x`** holds code, a lone `` stays.";
  const engine = new FakeEngine({ answer: () => md });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, { model: engine.modelId });
  await send(page, "Show me.");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
  const text = page.locator(".msg.assistant .text");
  assert.equal(await text.locator(".h").textContent(), "Step 1");
  assert.deepEqual(await text.locator("strong").allTextContents(), ["two", "bold x"]);
  assert.deepEqual(await text.locator(":scope > code").allTextContents(), [
    "a < b",
    "py print(1)",
    "js f()",
    "a`b",
  ]);
  assert.equal(await text.locator("strong code").textContent(), "x");
  assert.equal(await text.locator("pre code").textContent(), "const x = '<b>1</b>';");
  assert.equal(await text.locator(".copy").count(), 1);
  // The model's "HTML" stays text, and a single * is not emphasis.
  assert.equal(await text.locator("b, i").count(), 0);
  assert.match((await text.textContent())!, /2\*3\*4\.[\s\S]*Done <i>\./);
  assert.match((await text.textContent())!, /holds code, a lone `` stays\.$/);
  assert.doesNotMatch((await text.textContent())!, /```/);
  assert.deepEqual(errors, []);
});

Deno.test("the chat page's Copy button copies a code block where the page has no navigator.clipboard", async () => {
  const engine = new FakeEngine({ answer: () => "Run:\n```sh\nqvq serve --host 0.0.0.0\n```" });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  // Served over plain HTTP on the LAN (a phone opening http://192.168.…): no navigator.clipboard.
  // What a copy puts on the clipboard is kept in `copied`.
  const insecure = () => {
    Object.defineProperty(Navigator.prototype, "clipboard", { get: () => undefined });
    document.addEventListener("copy", (e: any) => {
      const { value, selectionStart, selectionEnd } = e.target;
      (globalThis as any).copied = value?.slice(selectionStart, selectionEnd);
    });
  };
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    before: (page) => page.addInitScript(insecure),
  });
  await send(page, "How do I serve it?");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
  await page.click(".msg.assistant .copy");
  await page.waitForFunction(() => document.querySelector(".copy")?.textContent !== "Copy");
  assert.equal(await page.textContent(".msg.assistant .copy"), "Copied");
  assert.equal(await page.evaluate(() => (globalThis as any).copied), "qvq serve --host 0.0.0.0");
  // The focus is back where it was; the helper's box is gone.
  assert.equal(await page.evaluate(() => document.activeElement?.className), "copy");
  assert.equal(await page.locator("body > textarea").count(), 0);
  // It says Copy again after a while: a second copy says Copied anew.
  await page.waitForFunction(() => document.querySelector(".copy")?.textContent === "Copy");
  await page.click(".msg.assistant .copy");
  await page.waitForFunction(() => document.querySelector(".copy")?.textContent === "Copied");
  assert.deepEqual(errors, []);
});

Deno.test("the chat page's Copy button hides no code: a long line scrolls under it nowhere", async () => {
  const line = "const answer = compute(" + "argument, ".repeat(20) + "last); // the end";
  const engine = new FakeEngine({ answer: () => "```js\n" + line + "\nshort\n```" });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    viewport: { width: 390, height: 740 },
    touch: true,
  });
  await page.fill("#prompt", "Code?");
  await page.tap("#send");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
  // Where the button and the code's lines are, at either end of the block's horizontal scroll.
  const where = (scroll: "start" | "end") =>
    page.$eval(".msg.assistant pre", (pre: any, scroll) => {
      pre.scrollLeft = scroll === "end" ? pre.scrollWidth : 0;
      const copy = pre.parentElement.querySelector(".copy").getBoundingClientRect();
      const code = pre.querySelector("code").getBoundingClientRect();
      return {
        scrolls: pre.scrollWidth > pre.clientWidth,
        copyBottom: copy.bottom,
        codeTop: code.top,
      };
    }, scroll);
  for (const scroll of ["start", "end"] as const) {
    const got = await where(scroll);
    assert.ok(got.scrolls, "the line is longer than the block");
    assert.ok(
      got.copyBottom <= got.codeTop,
      `the button covers code (${scroll}): ${JSON.stringify(got)}`,
    );
  }
  assert.deepEqual(errors, []);
});

Deno.test("the chat page's × on an attachment is a finger's size to tap, and looks as it did", async () => {
  const engine = new FakeEngine();
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    viewport: { width: 390, height: 740 },
    touch: true,
  });
  await page.setInputFiles("#file", [PNG_PATH, PNG_PATH]);
  await page.waitForFunction(() =>
    document.querySelectorAll("#attachments .thumb img").length === 2
  );
  const boxes = await page.$$eval("#attachments .thumb", (thumbs) =>
    thumbs.map((thumb: any) => {
      const rect = (e: any) => {
        const { left, top, right, bottom, width, height } = e.getBoundingClientRect();
        return { left, top, right, bottom, width, height };
      };
      const button = thumb.querySelector("button");
      const target = rect(button);
      // What a tap 1 px inside each corner of the button reaches.
      const corners = [[target.left, target.top], [target.right, target.top], [
        target.left,
        target.bottom,
      ], [target.right, target.bottom]].map(([x, y], k) =>
        button.contains(
          document.elementFromPoint(x + (k % 2 ? -1 : 1), y + (k < 2 ? 1 : -1)),
        )
      );
      return { thumb: rect(thumb), target, dot: rect(button.querySelector("span")), corners };
    }));
  for (const { thumb, target, dot, corners } of boxes) {
    assert.ok(target.width >= 32 && target.height >= 32, `${target.width} x ${target.height}`);
    assert.deepEqual(corners, [true, true, true, true]);
    // The dot as the button was: 1.2rem, on the thumbnail's corner, .4rem beyond it (to layout's
    // 1/64 px).
    const near = (got: number, want: number) => assert.ok(Math.abs(got - want) < 0.05, `${got}`);
    near(dot.width, 19.2);
    near(dot.height, 19.2);
    near(dot.right - thumb.right, 6.4);
    near(thumb.top - dot.top, 6.4);
  }
  // A tap at the edge of the first's target, off its dot, removes it.
  const { target } = boxes[0];
  await page.touchscreen.tap(target.left + 2, target.top + 2);
  await page.waitForFunction(() => document.querySelectorAll("#attachments .thumb").length === 1);
  assert.deepEqual(errors, []);
});

Deno.test("the chat page's cursor blinks only for a reader who did not ask for reduced motion", async () => {
  // Each answer is held after its second word, until the test has seen its cursor.
  const held = [gate(), gate()];
  const engine = new FakeEngine({
    answer: () => "one two three",
    hold: (k, call) => k === 2 ? held[call]?.promise : undefined,
  });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, { model: engine.modelId });
  // The streaming answer's cursor: what it shows and its animation.
  const cursor = async () => {
    await page.waitForSelector(".msg.assistant.streaming");
    return await page.$eval(".msg.assistant.streaming .text", (e: any) => {
      const after = getComputedStyle(e, "::after");
      return [after.content, after.animationName];
    });
  };
  for (const [k, motion] of (["no-preference", "reduce"] as const).entries()) {
    await page.emulateMedia({ reducedMotion: motion });
    await send(page, `Answer ${k}`);
    assert.deepEqual(await cursor(), ['"▍"', motion === "reduce" ? "none" : "blink"]);
    held[k].open();
    await page.waitForFunction(
      (n) => document.querySelectorAll(".msg.assistant:not(.streaming) .stats").length === n,
      k + 1,
    );
  }
  assert.deepEqual(errors, []);
});

Deno.test("the chat page's buttons are a finger's size to tap on a phone", async () => {
  // A code block (its Copy button), then an answer cut off at 3 tokens (its Continue button).
  const engine = new FakeEngine({ answer: () => "```sh\nls\n``` one two three four" });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    viewport: { width: 360, height: 740 },
    touch: true,
    before: (page) => page.addInitScript(() => localStorage.setItem("qvq-max-tokens", "3")),
  });
  await page.fill("#prompt", "List.");
  await page.tap("#send");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats button.continue");
  // How far a tap through the middle of each control reaches it, across and down (a px a step).
  const reach = await page.evaluate(() =>
    [
      "#new-chat",
      "header summary",
      "label.button",
      "#send",
      ".msg .copy",
      ".stats button.continue",
    ].map((selector) => {
      const e = document.querySelector(selector);
      const r = e.getBoundingClientRect();
      const [x, y] = [r.left + r.width / 2, r.top + r.height / 2];
      const span = (at: (d: number) => [number, number]) => {
        let n = 0;
        for (let d = -40; d <= 40; d++) {
          n += e.contains(document.elementFromPoint(...at(d))) ? 1 : 0;
        }
        return n;
      };
      return [selector, span((d) => [x + d, y]), span((d) => [x, y + d])] as const;
    })
  );
  for (const [selector, across, down] of reach) {
    assert.ok(across >= 32 && down >= 32, `${selector}: ${across} x ${down} px`);
  }
  // The Copy button's reach stops short of the code.
  const [copyBottom, codeTop] = await page.$eval(".msg pre code", (code: any) => {
    const copy = code.closest(".code").querySelector(".copy").getBoundingClientRect();
    const x = copy.left + copy.width / 2;
    let y = copy.bottom;
    while (document.elementFromPoint(x, y)?.className === "copy") y++;
    return [y, code.getBoundingClientRect().top];
  });
  assert.ok(copyBottom <= codeTop, `${copyBottom} > ${codeTop}`);
  assert.deepEqual(errors, []);
});

Deno.test("the chat page on a touch screen gives the message box no focus unasked: that opens the keyboard", async () => {
  const engine = new FakeEngine();
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    viewport: { width: 360, height: 740 },
    touch: true,
  });
  const focused = () => page.evaluate(() => document.activeElement?.id ?? "");
  assert.notEqual(await focused(), "prompt", "on load");
  await attachPng(page);
  await page.tap("#attachments .thumb button");
  await page.waitForFunction(() => !document.querySelector("#attachments .thumb"));
  assert.notEqual(await focused(), "prompt", "after the × of the last attachment");
  await page.fill("#prompt", "Hi");
  await page.tap("#send");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
  assert.notEqual(await focused(), "prompt", "after the answer");
  await page.tap("#new-chat");
  assert.notEqual(await focused(), "prompt", "after New chat");
  assert.deepEqual(errors, []);
});

/** A chat request's video part, as the page sends it. */
interface VideoPart {
  video: string[];
  max_pixels: number;
}

/** `app`'s handler, keeping the video part of each chat request's last message in `videos`. */
function keepingVideos(app: { fetch: Deno.ServeHandler }, videos: VideoPart[]): Deno.ServeHandler {
  return async (req, info) => {
    if (req.method === "POST" && new URL(req.url).pathname === "/v1/chat/completions") {
      const body = await req.clone().json();
      videos.push(body.messages.at(-1).content.find((p: { type: string }) => p.type === "video"));
    }
    return app.fetch(req, info);
  };
}

Deno.test("the chat page sends a video file as its frames: sampled at 2 a second, JPEG, with max_pixels", async () => {
  const engine = new FakeEngine(); // answers with what it received
  const videos: VideoPart[] = [];
  await using s = await serveAndLaunch(keepingVideos(createApp(engine), videos));
  const { page, errors } = await openPage(s, { model: engine.modelId });
  await attachClip(page);
  assert.equal(await page.textContent("#attachments .thumb .frames"), "▶ 4 frames");
  await askAndAwait(page, "What moves?");
  assert.equal(
    await page.textContent(".msg.assistant:last-child .text"),
    "I see 0 images and 1 video of 4 frames. You said: What moves?",
  );
  assert.equal(videos.length, 1);
  const [sent] = videos;
  assert.equal(sent.video.length, 4);
  assert.equal(sent.max_pixels, 448 * 448);
  for (const url of sent.video) assert.match(url, /^data:image\/jpeg;base64,/);
  // The frames differ (testsrc moves) and keep the video's size (under 448² pixels).
  assert.equal(new Set(sent.video).size, 4);
  const frame = await decodeImage(Buffer.from(sent.video[0].split(",")[1], "base64"));
  assert.deepEqual([frame.width, frame.height], [64, 48]);
  // The sent message shows the video's first frame and its count.
  assert.equal(await page.textContent(".msg.user .frames"), "▶ 4 frames");
  assert.deepEqual(errors, []);
});

Deno.test("the chat page draws a video's frame once the seek's frame is shown, not when seeked fires", async () => {
  const engine = new FakeEngine();
  const videos: VideoPart[] = [];
  await using s = await serveAndLaunch(keepingVideos(createApp(engine), videos));
  // Chromium on a busy machine: the frame a seek lands on reaches what drawImage reads (by another
  // thread) after the seeked event. Here the second seek's frame comes late: the first three
  // reads after it (drawImage's or VideoFrame's) still get the frame before it, which the page
  // drew already.
  const lateFrame = () => {
    const proto = HTMLMediaElement.prototype;
    const time = Object.getOwnPropertyDescriptor(proto, "currentTime")!;
    const late = new WeakMap<object, { frame: any; reads: number }>(); // a video → what it shows
    const seeks = new WeakMap<object, number>();
    (globalThis as any).staleReads = 0;
    Object.defineProperty(proto, "currentTime", {
      get() {
        return time.get!.call(this);
      },
      set(t: number) {
        const n = (seeks.get(this) ?? 0) + 1;
        seeks.set(this, n);
        if (n === 2) late.set(this, { frame: new VideoFrame(this), reads: 0 });
        time.set!.call(this, t);
      },
    });
    const stale = (image: unknown) => {
      const lag = late.get(image as object);
      if (!lag) return undefined;
      if (++lag.reads > 3) {
        late.delete(image as object);
        lag.frame.close();
        return undefined;
      }
      (globalThis as any).staleReads++;
      return lag.frame;
    };
    const draw = CanvasRenderingContext2D.prototype.drawImage;
    CanvasRenderingContext2D.prototype.drawImage = function (image: unknown, ...rest: unknown[]) {
      return draw.call(this, stale(image) ?? image, ...rest);
    };
    const Frame = VideoFrame;
    (globalThis as any).VideoFrame = class extends Frame {
      constructor(image: unknown, init?: unknown) {
        const frame = stale(image);
        super(
          frame ?? image,
          frame ? { timestamp: frame.timestamp, duration: frame.duration } : init,
        );
      }
    };
  };
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    before: (page) => page.addInitScript(lateFrame),
  });
  await attachClip(page);
  await askAndAwait(page, "What moves?");
  assert.ok(
    await page.evaluate(() => (globalThis as any).staleReads) > 0,
    "the late frame was seen",
  );
  assert.equal(videos.at(-1)?.video.length, 4);
  assert.equal(new Set(videos.at(-1)!.video).size, 4); // no frame twice
  assert.deepEqual(errors, []);
});

Deno.test("the chat page: a video still being read goes with a message sent at once, in the order picked; no-picture and no-duration files", async () => {
  const engine = new FakeEngine();
  const sent: { type: string; video?: string[] }[][] = [];
  const app = createApp(engine);
  await using s = await serveAndLaunch(async (req) => {
    if (req.method === "POST" && new URL(req.url).pathname === "/v1/chat/completions") {
      sent.push((await req.clone().json()).messages.at(-1).content);
    }
    return app.fetch(req);
  });
  // Seeks that end only when the test says (a long video's are slow): the message is sent while
  // the video is read.
  const heldSeeks = () => {
    const test = globalThis as any;
    test.seeksMayEnd = new Promise((resolve) => test.endSeeks = resolve);
    const own = Object.getOwnPropertyDescriptor(HTMLElement.prototype, "onseeked")!;
    Object.defineProperty(HTMLVideoElement.prototype, "onseeked", {
      get() {
        return own.get!.call(this);
      },
      set(fn: ((e: unknown) => void) | null) {
        own.set!.call(this, fn && ((e: unknown) => test.seeksMayEnd.then(() => fn(e))));
      },
    });
  };
  const { page, errors } = await openPage(s, {
    model: engine.modelId,
    before: (page) => page.addInitScript(heldSeeks),
  });
  const fixture = (name: string) =>
    fileURLToPath(new URL(`./fixtures/video/${name}`, import.meta.url));
  // A video, then (a separate pick) an image, then Enter at once: the message waits for the
  // video and sends both, in the order picked.
  await page.setInputFiles("#file", fixture("clip.webm"));
  await page.setInputFiles("#file", PNG_PATH);
  await send(page, "Both?");
  assert.equal(await page.textContent("#notice"), "Reading the video…");
  await page.evaluate(() => (globalThis as any).endSeeks());
  await page.waitForFunction(() =>
    /You said: Both\?/.test(
      document.querySelector(".msg.assistant:last-child .text")?.textContent ?? "",
    )
  );
  assert.deepEqual(sent[0].map((p) => p.type), ["video", "image_url", "text"]);
  assert.equal(sent[0][0].video?.length, 4);
  // An audio-only file has no picture: named, not attached; a WebM without a duration (a live
  // stream's, as MediaRecorder writes too) is sampled over its whole length.
  await page.setInputFiles("#file", [fixture("audio.webm"), fixture("live.webm")]);
  await page.waitForFunction(() =>
    /Not attached .*audio\.webm/.test(document.getElementById("notice")?.textContent ?? "") &&
    document.querySelector("#attachments .thumb .frames") !== null
  );
  assert.equal(await page.textContent("#attachments .thumb .frames"), "▶ 4 frames");
  assert.equal(await page.locator("#attachments .thumb").count(), 1);
  assert.deepEqual(errors, []);
});

Deno.test("the chat page keeps a message whose file fails while it waits, sends once on a double Enter, says a key was refused", async () => {
  const engine = new FakeEngine({ answer: () => "ok" });
  await using s = await serveAndLaunch(createApp(engine, { apiKey: "sk-right" }).fetch);
  // File reads that end only when the test says.
  const heldReads = () => {
    const test = globalThis as any;
    test.readsMayEnd = new Promise((resolve) => test.endReads = resolve);
    const read = FileReader.prototype.readAsDataURL;
    FileReader.prototype.readAsDataURL = function (this: FileReader, file: Blob) {
      test.readsMayEnd.then(() => read.call(this, file));
    };
  };
  // The model list: unreachable at first (no model id yet), then (after the reload below) held
  // until the test lets it come.
  let lists = 0;
  const listing: { gate?: ReturnType<typeof gate> } = {};
  const { page, errors } = await openPage(s, {
    async before(page) {
      await page.addInitScript(heldReads);
      await page.route("**/v1/models", async (route) => {
        if (lists++ === 0) return await route.abort();
        await listing.gate?.promise;
        await route.continue();
      });
    },
  });
  await page.waitForFunction(() =>
    /Cannot reach the server/.test(document.getElementById("model")?.textContent ?? "")
  );
  // A wrong key is not "no key" (its change reloads the model list).
  await page.click("summary");
  await page.fill("#api-key", "sk-typo");
  await page.press("#api-key", "Enter");
  await page.waitForFunction(() =>
    /refused the API key \(Incorrect API key provided/.test(
      document.getElementById("model")?.textContent ?? "",
    )
  );
  await page.evaluate(() => localStorage.setItem("qvq-api-key", "sk-right"));
  listing.gate = gate();
  await page.reload();
  await page.waitForFunction(() =>
    /no model|Cannot reach/.test(document.getElementById("model")?.textContent ?? "") ||
    (document.getElementById("model")?.textContent ?? "") !== ""
  );
  // A double Enter while the model id is still being fetched sends one message.
  await page.fill("#prompt", "Once, please.");
  await page.press("#prompt", "Enter");
  await new Promise((r) => setTimeout(r, 100));
  await page.press("#prompt", "Enter");
  listing.gate.open();
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(engine.calls.length, 1);
  assert.equal(await page.locator(".msg.user").count(), 1);
  // A file that fails to be read while the message waits for it: the message stays, the file
  // named (a "PNG" that is noise, refused by the browser's decoder once read; read here only
  // after Enter).
  await page.setInputFiles("#file", {
    name: "noise.png",
    mimeType: "image/png",
    buffer: Buffer.alloc(4096, 7),
  });
  await send(page, "What is in it?");
  assert.equal(await page.textContent("#notice"), "Reading the image…"); // was "… the video…"
  // In the muted grey of other news (as the model's id), not the red of the warning below.
  const colors = () =>
    page.evaluate(() =>
      ["notice", "model"].map((id) => getComputedStyle(document.getElementById(id)).color)
    );
  const [reading, muted] = await colors();
  assert.equal(reading, muted);
  await page.evaluate(() => (globalThis as any).endReads());
  await waitForNotAttached(page, "noise.png");
  const [warning] = await colors();
  assert.notEqual(warning, muted);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await page.inputValue("#prompt"), "What is in it?");
  assert.equal(engine.calls.length, 1);
  // New chat forgets the names; the next attachment's notice is its own.
  await page.click("#new-chat");
  await attachPng(page);
  assert.equal(await page.textContent("#notice"), "");
  assert.deepEqual(errors, []);
});

Deno.test("the chat page: Continue after a refused turn (the focus kept), text after a closing fence, an error without a message, a hint after a bracket", async () => {
  const long = "one two three four five six seven eight nine ten";
  const engine = new FakeEngine({
    answer: () => long + "\n```html\n<b>x</b>\n``` after the fence\nend",
  });
  await using s = await serveAndLaunch(createApp(engine).fetch);
  const { page, errors } = await openPage(s, { model: engine.modelId });
  await page.click("summary");
  await page.fill("#max-tokens", "3");
  await page.keyboard.press("Escape");
  await send(page, "Count.");
  await page.waitForSelector(".msg.assistant:not(.streaming) .stats button.continue");
  // A refused turn (temperature over 2: a 400), then Continue on the cut answer still works.
  await page.click("summary");
  await page.fill("#temperature", "5");
  await page.keyboard.press("Escape");
  await send(page, "Again?");
  await page.waitForSelector(".msg.assistant .error");
  await page.click("summary");
  await page.fill("#temperature", "0");
  await page.fill("#max-tokens", "2048");
  await page.keyboard.press("Escape");
  await page.click("button.continue");
  // The button is gone: its focus went to the message box (it fell to the page's body).
  assert.equal(await page.evaluate(() => document.activeElement?.id), "prompt");
  await page.waitForFunction(() =>
    /after the fence/.test(document.querySelector(".msg.assistant .text")?.textContent ?? "")
  );
  assert.equal(engine.calls.length, 2);
  const first = page.locator(".msg.assistant").first().locator(".text");
  assert.equal(await first.locator("pre code").textContent(), "<b>x</b>");
  assert.match((await first.textContent())!, / after the fence\nend/);
  // The chat endpoint answering `status` with `error`, as a server or a proxy may: the line the
  // page writes under the question `text`.
  const refused = async (text: string, status: number, error: object) => {
    await page.unroute("**/v1/chat/completions");
    await page.route(
      "**/v1/chat/completions",
      (route) =>
        route.fulfill({ status, contentType: "application/json", body: JSON.stringify({ error }) }),
    );
    const n = await page.locator(".msg.assistant .error").count();
    await send(page, text);
    await page.waitForSelector(`.msg.assistant .error >> nth=${n}`);
    return await page.locator(".msg.assistant .error").nth(n).textContent();
  };
  // A server (or proxy) error without a message says its status, not a TypeError.
  assert.equal(await refused("And now?", 500, { code: "x" }), "The server answered HTTP 500.");
  // The server's sentence ends in a bracket: its full stop comes before the hint.
  const said = "The prompt has 5000 tokens (the context holds 4096)";
  assert.equal(
    await refused("Longer?", 400, { message: said, code: "context_length_exceeded" }),
    said + ". The conversation so far counts too: start a New chat (top right) to drop it.",
  );
  assert.deepEqual(errors, []);
});
