/**
 * The chat page at `/` in headless Chromium (Debian's `chromium`, driven by playwright-core):
 * type a question, attach an image, and watch the answer stream in.
 *
 * Needs `apt-get install -y chromium` (or CHROMIUM_PATH). Set QVQ_WEB_SCREENSHOT=<file.png> to
 * keep a screenshot of the finished conversation.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import { launchChromium as launch } from "../src/bundle/_chromium.ts";
import { createApp } from "../src/server/app.ts";
import { FakeEngine } from "../src/server/_fake_engine.ts";

/** The page's document, inside functions that playwright runs in the browser. */
declare const document: any;

const PNG_PATH = fileURLToPath(
  new URL("./fixtures/tiny-qwen2vl/reference/case2_0.png", import.meta.url),
);

const ANSWER =
  "Let me look at the image step by step. First, the shapes: a red square and a blue " +
  "circle. Second, their positions. So the answer is 42.";

Deno.test("the chat page streams an answer to a typed question with an attached image", async () => {
  const engine = new FakeEngine({ tokenDelayMs: 40, answer: () => ANSWER });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createApp(engine).fetch,
  );
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${server.addr.port}/`);
    await page.waitForFunction(
      (id) => document.getElementById("model")?.textContent === id,
      engine.modelId,
    );

    await page.setInputFiles("#file", PNG_PATH);
    await page.waitForSelector("#attachments .thumb img");
    await page.fill("#prompt", "How many shapes are there?");
    await page.press("#prompt", "Enter");

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

    // What reached the engine: the image's bytes, then the text.
    const [call] = engine.calls;
    const content = call.messages[0].content;
    assert.ok(Array.isArray(content));
    assert.equal(content[0].type, "image");
    assert.deepEqual(
      content[0].type === "image" && content[0].image,
      await Deno.readFile(PNG_PATH),
    );
    assert.deepEqual(content[1], { type: "text", text: "How many shapes are there?" });

    // A follow-up carries the conversation.
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

    const shot = Deno.env.get("QVQ_WEB_SCREENSHOT");
    if (shot) await page.screenshot({ path: shot });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await server.shutdown();
  }
});

Deno.test("the chat page's Stop button aborts the generation on the server", async () => {
  const engine = new FakeEngine({ tokenDelayMs: 30, answer: () => "thinking ".repeat(500) });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createApp(engine).fetch,
  );
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.addr.port}/`);
    await page.fill("#prompt", "Think hard");
    await page.press("#prompt", "Enter");
    await page.waitForFunction(() =>
      (document.querySelector(".msg.assistant .text")?.textContent ?? "").length > 20
    );
    await page.click("#send");
    await page.waitForSelector(".msg.assistant:not(.streaming)");
    for (let i = 0; i < 100 && !engine.calls[0].closed; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(engine.calls[0].finishReason, "abort");
    assert.equal(await page.textContent("#send"), "Send");
  } finally {
    await browser.close();
    await server.shutdown();
  }
});

Deno.test("the chat page shows the server's error message", async () => {
  const engine = new FakeEngine();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createApp(engine, { maxImageBytes: 1000 }).fetch,
  );
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.addr.port}/`);
    await page.waitForFunction(
      (id) => document.getElementById("model")?.textContent === id,
      engine.modelId,
    );
    await page.setInputFiles("#file", PNG_PATH);
    await page.waitForSelector("#attachments .thumb img");
    await page.fill("#prompt", "Too big?");
    await page.press("#prompt", "Enter");
    await page.waitForSelector(".msg.assistant .error");
    assert.match(
      (await page.textContent(".msg.assistant .error"))!,
      /accepts images up to 1000 bytes/,
    );
    assert.equal(engine.calls.length, 0);
  } finally {
    await browser.close();
    await server.shutdown();
  }
});

Deno.test("the chat page finds the API when the app is mounted under a prefix", async () => {
  const engine = new FakeEngine({ answer: () => "mounted" });
  const parent = new Hono();
  parent.route("/qvq", createApp(engine));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, parent.fetch);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.addr.port}/qvq`); // no trailing slash
    await page.waitForFunction(
      (id) => document.getElementById("model")?.textContent === id,
      engine.modelId,
    );
    await page.fill("#prompt", "Hello");
    await page.press("#prompt", "Enter");
    await page.waitForSelector(".msg.assistant:not(.streaming) .stats");
    assert.equal(await page.textContent(".msg.assistant .text"), "mounted");
  } finally {
    await browser.close();
    await server.shutdown();
  }
});
