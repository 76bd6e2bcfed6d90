/**
 * The chat page served at `/`: one self-contained HTML document (no build step, no external
 * assets) that talks to this server's `/v1/chat/completions` with fetch and reads the SSE stream
 * itself, so the answer appears as it is written. Kept as a string module so it ships inside the
 * package (JSR, bundles) with no file reads.
 * @module
 */

// String.raw keeps the page's backslashes ("\n" in its script) as written.
/** The page's HTML. */
export const PAGE_HTML: string = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>QVQ chat</title>
<link rel="icon" href="data:,">
<style>
  :root { --bg: #f6f7f9; --panel: #fff; --ink: #1d2430; --muted: #6b7280; --line: #e3e6eb;
          --accent: #4f46e5; --user: #eef0ff; --err: #b91c1c; --on-color: #fff; color-scheme: light dark; }
  @media (prefers-color-scheme: dark) {
    /* Dark text on the light accents: white on them read at about 3:1. */
    :root { --bg: #14161a; --panel: #1c1f25; --ink: #e6e8eb; --muted: #9aa1ab; --line: #2c313a;
            --accent: #8b85ff; --user: #262a3d; --err: #f87171; --on-color: #14161a; }
  }
  * { box-sizing: border-box; }
  /* 100dvh where known: a phone's 100vh is its screen with the address bar hidden, and the message
     box sat under the bar while it showed. */
  body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg);
         color: var(--ink); display: flex; flex-direction: column; height: 100vh; height: 100dvh; }
  header { display: flex; align-items: center; gap: .75rem; padding: .6rem 1rem; background: var(--panel);
           border-bottom: 1px solid var(--line); }
  header h1 { font-size: 1.05rem; margin: 0; }
  #model { color: var(--muted); font-size: .85rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  /* Why there is no model ("… enter the API key under Settings") is read whole, not cut off like
     a long model id (on a phone to "no model: This …"): on a narrow screen on a row of its own. */
  #model.problem { white-space: normal; }
  @media (max-width: 720px) {
    header:has(#model.problem) { flex-wrap: wrap; row-gap: .2rem; }
    #model.problem { order: 1; flex-basis: 100%; }
  }
  header details { font-size: .85rem; position: relative; }
  header summary { cursor: pointer; color: var(--muted); list-style: none; }
  #settings { position: absolute; right: 0; top: 1.8rem; z-index: 2; background: var(--panel); border: 1px solid var(--line);
              border-radius: 8px; padding: .75rem; display: grid; gap: .5rem; width: 18rem; max-width: calc(100vw - 2rem); box-shadow: 0 6px 24px #0002; }
  #settings label { display: grid; gap: .15rem; color: var(--muted); }
  #settings label.check { display: flex; align-items: center; gap: .4rem; }
  #settings input { font: inherit; padding: .3rem .4rem; border: 1px solid var(--line); border-radius: 6px;
                    background: var(--bg); color: var(--ink); }
  main { flex: 1; overflow-y: auto; padding: 1rem; }
  #messages { max-width: 52rem; margin: 0 auto; display: flex; flex-direction: column; gap: .8rem; }
  .empty { color: var(--muted); text-align: center; margin-top: 20vh; }
  .msg { padding: .7rem .9rem; border-radius: 12px; max-width: 100%; }
  .msg.user { background: var(--user); align-self: flex-end; max-width: 85%; }
  .msg.assistant { background: var(--panel); border: 1px solid var(--line); }
  .msg .text { white-space: pre-wrap; word-wrap: break-word; }
  .msg .text code { font: .88em/1.4 ui-monospace, "SFMono-Regular", Menlo, monospace; background: var(--bg);
                    border-radius: 4px; padding: 0 .2rem; }
  .msg .text .code { position: relative; margin: .4rem 0; }
  /* The copy button sits in a strip of its own above the code (padding-top), not over the end of
     its first line: a long line ran under it, hidden, at any horizontal scroll. */
  .msg .text pre { white-space: pre; overflow-x: auto; background: var(--bg); border: 1px solid var(--line);
                   border-radius: 8px; padding: 1.9rem .7rem .55rem; margin: 0; }
  .msg .text pre code { background: none; padding: 0; }
  .msg .text .copy { position: absolute; top: .3rem; right: .3rem; font: inherit; font-size: .72rem; cursor: pointer;
                     border: 1px solid var(--line); border-radius: 6px; background: var(--panel); color: var(--muted); }
  .msg .text .h { font-weight: 700; }
  .msg.assistant.streaming .text::after { content: "▍"; color: var(--accent); animation: blink 1s steps(1) infinite; }
  @keyframes blink { 50% { opacity: 0; } }
  /* Nothing moves for a reader whose system asks for less motion: the cursor stays, steady. */
  @media (prefers-reduced-motion: reduce) {
    *, *::before, *::after { animation: none !important; transition: none !important; scroll-behavior: auto !important; }
  }
  .msg img { max-width: 14rem; max-height: 14rem; border-radius: 8px; display: block; margin-bottom: .4rem; }
  .stats { color: var(--muted); font-size: .78rem; margin-top: .35rem; }
  .stats button.continue { margin-left: .5rem; font-size: .78rem; padding: .1rem .5rem; }
  .error { color: var(--err); }
  /* A turn not sent is struck out; the error under it, which says why, stays readable. */
  .msg.user.refused { opacity: 0.5; text-decoration: line-through; }
  footer { background: var(--panel); border-top: 1px solid var(--line); padding: .7rem 1rem; }
  form { max-width: 52rem; margin: 0 auto; display: grid; grid-template-columns: auto 1fr auto; gap: .5rem; align-items: end; }
  #attachments { grid-column: 1 / -1; display: flex; gap: .5rem; flex-wrap: wrap; }
  #attachments:empty { display: none; }
  .thumb { position: relative; }
  .thumb img { height: 3.5rem; max-width: 7rem; object-fit: cover; border-radius: 6px; border: 1px solid var(--line); display: block; }
  .thumb .frames, .msg .frames { position: absolute; left: .2rem; bottom: .2rem; font-size: .62rem; padding: 0 .25rem;
                                 border-radius: 4px; background: var(--ink); color: var(--panel); white-space: nowrap; opacity: .85; }
  .thumb .video img { min-width: 5.5rem; object-fit: cover; }
  .thumb .reading { height: 3.5rem; min-width: 3.5rem; padding: 0 .5rem; border-radius: 6px; border: 1px dashed var(--line);
                    display: flex; align-items: center; justify-content: center; color: var(--muted); font-size: .8rem; }
  .msg .video { position: relative; display: inline-block; }
  .msg .video img { height: 7rem; width: auto; }
  .msg .video .frames { bottom: .6rem; }
  /* An attachment's × is a dot of 1.2rem (19 px) on the thumbnail's corner; the button around it
     is 2rem (32 px) for a finger, the rest of it invisible (above the next thumbnail). */
  .thumb button { position: absolute; z-index: 1; top: -.8rem; right: -.8rem; width: 2rem; height: 2rem; border: 0;
                  padding: 0; background: none; cursor: pointer; display: flex; align-items: center; justify-content: center; }
  .thumb button span { width: 1.2rem; height: 1.2rem; border-radius: 50%; font-size: .75rem; line-height: 1; display: flex;
                       align-items: center; justify-content: center; background: var(--ink); color: var(--panel); }
  .thumb button:focus-visible { outline: none; }
  .thumb button:focus-visible span { outline: 2px solid var(--accent); outline-offset: 1px; }
  /* One line as tall as the buttons beside it (2.6rem) at any font size: the 16 px of a phone's
     stood 2 px above them. */
  textarea { font: inherit; resize: none; padding: calc((2.6rem - 1.5em - 2px) / 2) .7rem; border: 1px solid var(--line); border-radius: 10px;
             background: var(--bg); color: var(--ink); min-height: 2.6rem; max-height: 12rem; }
  textarea:focus { outline: 2px solid var(--accent); outline-offset: -1px; }
  /* iPhone Safari zooms the page in when a text field under 16 px gets the focus (and stays zoomed
     in): on a touch screen or a narrow window (the script's TOUCH, or a phone's width) the fields
     are 16 px. */
  @media (pointer: coarse), (hover: none), (max-width: 720px) {
    textarea, #settings input { font-size: 16px; }
  }
  .button { font: inherit; border: 1px solid var(--line); border-radius: 10px; height: 2.6rem; padding: 0 .9rem;
            background: var(--bg); color: var(--ink); cursor: pointer; display: inline-flex; align-items: center; }
  #send { background: var(--accent); border-color: var(--accent); color: var(--on-color); font-weight: 600; }
  #send.stop { background: var(--err); border-color: var(--err); }
  input[type=file] { display: none; }
  label.button:focus-visible, #new-chat:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }
  #new-chat { margin-left: auto; font: inherit; font-size: .85rem; border: 0; background: none; color: var(--muted); cursor: pointer; }
  /* On a phone the model's id gives way (its end cut off), not the header's buttons. */
  #new-chat, header summary { white-space: nowrap; }
  /* The small text buttons are a finger's size to tap (32 px and more), the rest of them invisible:
     they were 20 px tall. The Copy button's reaches less far down, short of the code's first line. */
  #new-chat, header summary, .stats button.continue { position: relative; }
  #new-chat::after, header summary::after, .stats button.continue::after, .msg .text .copy::after {
    content: ""; position: absolute; inset: -.5rem -.3rem; }
  .msg .text .copy::after { inset: -.6rem -.3rem -.15rem; }
  #notice { grid-column: 1 / -1; color: var(--err); font-size: .85rem; }
  #notice:empty { display: none; }
  #notice.news { color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1>QVQ</h1>
  <span id="model">connecting…</span>
  <button id="new-chat" type="button" title="Start over: forget this conversation">New chat</button>
  <details>
    <summary>Settings</summary>
    <div id="settings">
      <label>Max tokens <input id="max-tokens" type="number" min="1" max="8192" value="2048"></label>
      <label>Temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0"></label>
      <label title="Lowers every token the answer already used (against reasoning in circles; Qwen suggests 0 to 2)">Presence penalty <input id="presence-penalty" type="number" min="-2" max="2" step="0.1" value="0"></label>
      <label class="check" title="The answer is a JSON object (ask for one, and its fields, in your message)"><input id="json-mode" type="checkbox"> JSON answers</label>
      <label>API key <input id="api-key" type="password" placeholder="only if the server needs one"></label>
    </div>
  </details>
</header>
<main><div id="messages" role="log" aria-live="polite" aria-label="Conversation"><p class="empty" data-start="Ask about an image or a video: attach one, type a question, ">Ask about an image or a video: attach one, type a question, press Enter.</p></div></main>
<footer>
  <form id="form">
    <div id="attachments"></div>
    <div id="notice" role="alert"></div>
    <label class="button" title="Attach an image or a video" tabindex="0" role="button" aria-label="Attach an image or a video"><svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round" aria-hidden="true"><rect x="3" y="4" width="18" height="16" rx="2"/><circle cx="9" cy="10" r="2"/><path d="M21 16l-5-5-9 9"/></svg><input id="file" type="file" accept="image/png,image/jpeg,image/webp,video/*" multiple></label>
    <textarea id="prompt" rows="1" aria-label="Message" placeholder="Message QVQ (Shift+Enter for a new line)"></textarea>
    <button id="send" class="button" type="submit">Send</button>
  </form>
</footer>
<script type="module">
const $ = (id) => document.getElementById(id);
const history = [];          // OpenAI messages of the conversation so far
let attached = [];           // going with the next message: { url } an image, { frames: [url…] } a video (data: URLs),
                             // { reading, video } a file still being read
let waiting = false;         // a message waiting for its attachments to be read
let model = null;
let running = null;          // AbortController of the answer being streamed
let epoch = 0;               // conversations started: a turn that outlives its conversation is dropped

const apiKey = $("api-key");
apiKey.value = localStorage.getItem("qvq-api-key") || "";
apiKey.addEventListener("change", () => { localStorage.setItem("qvq-api-key", apiKey.value); loadModel(); });
// The other settings are kept across reloads too.
for (const id of ["max-tokens", "temperature", "presence-penalty"]) {
  const input = $(id), saved = localStorage.getItem("qvq-" + id);
  if (saved !== null) input.value = saved;
  input.addEventListener("change", () => localStorage.setItem("qvq-" + id, input.value));
}
const jsonMode = $("json-mode");
jsonMode.checked = localStorage.getItem("qvq-json-mode") === "true";
jsonMode.addEventListener("change", () => localStorage.setItem("qvq-json-mode", String(jsonMode.checked)));

// API URLs relative to the page's folder, so the page also works when the app is mounted under a
// prefix and opened without the trailing slash ("/qvq" as well as "/qvq/").
const base = location.origin + location.pathname.replace(/\/?$/, "/");
const api = (path) => base + path;

function headers() {
  const h = { "content-type": "application/json" };
  if (apiKey.value) h.authorization = "Bearer " + apiKey.value;
  return h;
}

// The server's error message (its code kept), or the HTTP status.
async function failure(response) {
  const body = await response.json().catch(() => ({}));
  // OpenAI's {error: {message, code}}; a proxy's may be a string, or carry no message.
  const said = typeof body.error === "string" ? body.error
    : body.error && typeof body.error.message === "string" ? body.error.message : null;
  if (response.status === 401) {
    return new Error(apiKey.value
      ? "The server refused the API key (" + (said || "HTTP 401") + "): check it under Settings (top right)."
      : "This server needs an API key: enter it under Settings (top right).");
  }
  // The API names the field ("messages[2].content[0].image_url.url: the image is …"); the page's
  // user sent none. What is left starts a sentence: a first plain word capitalized (not a name
  // such as max_pixels).
  const message = said
    ? said.replace(/^messages\[\d+\][\w.\[\]]*: /, "").replace(/^[a-z](?=[a-z]* )/, (c) => c.toUpperCase())
    : null;
  const error = new Error(message || "The server answered HTTP " + response.status + ".");
  error.code = body.error && typeof body.error === "object" ? body.error.code : null;
  return error;
}

// What a failed fetch says, for people: the browser's own text is "Failed to fetch" and the like.
function unreachable(error) {
  return error instanceof TypeError ? new Error("Cannot reach the server (" + error.message + ").") : error;
}

async function loadModel() {
  try {
    const response = await fetch(api("v1/models"), { headers: headers() }).catch((e) => { throw unreachable(e); });
    if (!response.ok) throw await failure(response);
    model = (await response.json()).data[0].id;
    $("model").textContent = model;
    $("model").classList.remove("problem");
  } catch (error) {
    $("model").textContent = "no model: " + error.message;
    $("model").classList.add("problem");
  }
  $("model").title = $("model").textContent; // a long model id is cut off
}

// An answer's markdown as DOM nodes, built with textContent only (no HTML from the model reaches
// the page): fenced code blocks (with a copy button; an unclosed one, still being written, runs
// to the end), inline code, **bold** and # headings. Everything else stays text as written —
// single * and _ too, which reasoning uses for products and names.
function renderMarkdown(el, text) {
  const nodes = [];
  // Text and code in turns (odd parts code), split at fence lines: what follows an opening fence
  // on its line is the language (dropped), what follows a closing one is text. A line whose
  // language would hold a backtick opens nothing (CommonMark's rule): js f() between three
  // backticks each side, on one line, is inline code.
  const blocks = [[]];
  for (const line of text.split("\n")) {
    const closing = blocks.length % 2 === 0;
    const fence = line.startsWith("\x60\x60\x60") && (closing || !line.slice(3).includes("\x60"));
    if (!fence) { blocks[blocks.length - 1].push(line); continue; }
    blocks.push(closing && line.slice(3).trim() ? [line.slice(3)] : []);
  }
  const parts = blocks.map((lines) => lines.join("\n"));
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      const box = document.createElement("div");
      box.className = "code";
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = part.replace(/\n$/, "");
      pre.append(code);
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "copy";
      copy.textContent = "Copy";
      copy.onclick = async () => {
        copy.textContent = await copyText(code.textContent) ? "Copied" : "Copy failed";
        // Back to Copy after a while, so that the next copy says it copied too (it said nothing new).
        clearTimeout(copy.back);
        copy.back = setTimeout(() => { copy.textContent = "Copy"; }, COPIED_MS);
      };
      box.append(pre, copy);
      nodes.push(box);
    } else {
      nodes.push(...inline(part));
    }
  });
  el.replaceChildren(...nodes);
}

// How long a Copy button says Copied (or Copy failed).
const COPIED_MS = 2000;

// Puts text on the clipboard; whether it did. A page served over plain HTTP from another machine
// (opened on a phone, from the server's LAN address) has no navigator.clipboard, and a browser may
// refuse it: there the older copy command, from a selection of the text, still works.
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.readOnly = true; // no phone keyboard for it
    area.style.cssText = "position: fixed; top: 0; left: 0; opacity: 0;";
    const focused = document.activeElement;
    document.body.append(area);
    area.select();
    try { return document.execCommand("copy"); } catch { return false; } finally { area.remove(); focused?.focus(); }
  }
}

// Inline markdown of text outside code blocks: headings, inline code, bold.
function inline(text) {
  const out = [];
  for (const [j, line] of text.split("\n").entries()) {
    if (j > 0) out.push("\n");
    const heading = line.match(/^#{1,6} +(.*)$/);
    if (!heading) { out.push(...spans(line)); continue; }
    const holder = document.createElement("span");
    holder.className = "h";
    holder.append(...spans(heading[1]));
    out.push(holder);
  }
  return out;
}

// A code span as CommonMark reads one: a run of backticks up to the next run of as many (one,
// two, three: a model writes all of them inline); or **bold**; or a run of backticks never
// closed, which is text (matched whole, so that no span starts inside it).
const SPAN = /(\x60+)(?!\x60)([^\n]*?[^\x60\n])\1(?!\x60)|\*\*[^*\n]+\*\*|\x60+/g;

// A line's code spans and bold as nodes, the rest as text.
function spans(line) {
  const out = [];
  let at = 0;
  for (const m of line.matchAll(SPAN)) {
    if (!m[1] && m[0][0] === "\x60") continue; // stays in the text around it
    if (m.index > at) out.push(line.slice(at, m.index));
    at = m.index + m[0].length;
    if (m[1]) {
      // A space each side is padding, as in CommonMark (for code that starts or ends with a backtick).
      const padded = m[2].startsWith(" ") && m[2].endsWith(" ") && m[2].trim() !== "";
      const c = document.createElement("code");
      c.textContent = padded ? m[2].slice(1, -1) : m[2];
      out.push(c);
    } else {
      const b = document.createElement("strong");
      b.append(...spans(m[0].slice(2, -2)));
      out.push(b);
    }
  }
  if (at < line.length) out.push(line.slice(at));
  return out;
}

// Whether the view is at (or near) the bottom: only then does new text scroll it, so a reader who
// scrolled up to earlier messages is not pulled back down with every token.
const main = document.querySelector("main");
const atBottom = () => main.scrollHeight - main.scrollTop - main.clientHeight < 80;

function addMessage(role, text, images) {
  const empty = document.querySelector(".empty");
  if (empty) empty.remove();
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.setAttribute("role", "group");
  div.setAttribute("aria-label", role === "user" ? "You" : "QVQ");
  for (const item of images || []) div.append(preview(item, "attached"));
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  div.append(body);
  $("messages").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

// An attachment as shown: an image, or a video's first frame with its frame count.
function preview(item, what) {
  if (item.reading) {
    const box = document.createElement("div");
    box.className = "reading";
    box.textContent = item.video ? "video…" : "…";
    return box;
  }
  const img = document.createElement("img");
  img.src = item.frames ? item.frames[0] : item.url;
  img.alt = what + (item.frames ? " video" : " image");
  if (!item.frames) return img;
  const box = document.createElement("div");
  box.className = "video";
  const badge = document.createElement("span");
  badge.className = "frames";
  badge.textContent = "▶ " + item.frames.length + " frames";
  box.append(img, badge);
  return box;
}

function showAttachments() {
  $("attachments").replaceChildren(...attached.map((item, i) => {
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    const remove = document.createElement("button");
    remove.type = "button";
    const dot = document.createElement("span");
    dot.textContent = "×";
    remove.append(dot);
    remove.title = "Remove";
    remove.setAttribute("aria-label", "Remove " + (item.frames || item.video ? "video " : "image ") + (i + 1));
    remove.onclick = () => {
      attached.splice(i, 1);
      showAttachments();
      notice();
      // Focus stays in the row: the next attachment's ×, else the message box.
      const next = $("attachments").querySelectorAll("button")[Math.min(i, attached.length - 1)];
      next ? next.focus() : focusPrompt();
    };
    thumb.append(preview(item, "to send"), remove);
    return thumb;
  }));
}

// A video file's frames, as the server takes a video: sampled at 2 a second (Qwen's rate), at
// most VIDEO_FRAMES spread over it, each drawn at most VIDEO_PIXELS in area (sent as max_pixels
// too: a video costs frames / 2 · area / 784 tokens) and sent as JPEG. The browser decodes the
// file (MP4, WebM: whatever it plays); the server decodes no video files.
const VIDEO_FRAMES = 16, VIDEO_PIXELS = 448 * 448;

// The frame drawImage would draw from a video now, as WebCodecs sees it: { ts, dur } in µs (dur
// null where unknown), undefined while it has none, null where this browser has no VideoFrame.
function shownFrame(video) {
  if (typeof VideoFrame !== "function") return null;
  try {
    const frame = new VideoFrame(video);
    const shown = { ts: frame.timestamp, dur: frame.duration };
    frame.close();
    return shown;
  } catch { return undefined; }
}

// After a seek's seeked event, waits until the video shows the frame at "at" seconds. The frame a
// seek lands on reaches what drawImage reads by another thread than the event (Chromium posts it
// to its VideoFrameCompositor thread): on a busy machine drawImage drew the frame before the seek
// again, a video's frames sent with one twice and one missing. The frame is in place once its span
// holds "at" (or, its duration unknown, once it is not "before", the frame shown before the
// seek); one that never is (a seek past the last picture of a video whose sound runs on, frames
// with gaps) is taken after FRAME_WAIT_MS.
const FRAME_WAIT_MS = 2000;
async function frameAt(video, at, before) {
  const us = at * 1e6, slack = 1000; // 1 ms: WebM times are whole milliseconds
  const since = performance.now();
  for (;;) {
    const shown = shownFrame(video);
    if (shown === null) return;
    const holds = shown !== undefined && (shown.dur === null
      ? shown.ts !== before?.ts
      : shown.ts <= us + slack && us < shown.ts + shown.dur + slack);
    if (holds || performance.now() - since > FRAME_WAIT_MS) return;
    await new Promise((ok) => setTimeout(ok, 10));
  }
}

function videoFrames(file) {
  return new Promise((resolve, reject) => {
    const video = document.createElement("video");
    const src = URL.createObjectURL(file);
    let settled = false, timer;
    const done = (result, error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      URL.revokeObjectURL(src);
      video.removeAttribute("src");
      error ? reject(error) : resolve(result);
    };
    video.muted = true;
    video.preload = "auto";
    video.onerror = () => done(null, new Error("the browser cannot play it"));
    // A file that never shows a frame (no video track) or a seek that never ends is given up.
    timer = setTimeout(() => done(null, new Error("timed out")), 10000);
    const alive = () => { clearTimeout(timer); timer = setTimeout(() => done(null, new Error("timed out")), 10000); };
    video.onloadeddata = async () => {
      try {
        // An audio-only file (or a codec this browser plays the sound of only) has no picture.
        if (!video.videoWidth || !video.videoHeight) throw new Error("no picture");
        if (!Number.isFinite(video.duration)) {
          // A WebM without a duration (a MediaRecorder recording, a live stream): a seek past
          // the end makes the browser find it.
          await new Promise((ok) => { video.onseeked = ok; video.currentTime = 1e101; });
          alive();
        }
        const duration = Number.isFinite(video.duration) ? video.duration : 0;
        const n = Math.max(1, Math.min(VIDEO_FRAMES, Math.round(duration * 2)));
        const scale = Math.min(1, Math.sqrt(VIDEO_PIXELS / (video.videoWidth * video.videoHeight)));
        const canvas = document.createElement("canvas");
        canvas.width = Math.max(1, Math.round(video.videoWidth * scale));
        canvas.height = Math.max(1, Math.round(video.videoHeight * scale));
        const ctx = canvas.getContext("2d");
        const frames = [];
        for (let k = 0; k < n; k++) {
          // The middle of each of n equal spans.
          const at = duration * (k + 0.5) / n;
          if (Math.abs(video.currentTime - at) > 1e-3) {
            const before = shownFrame(video);
            await new Promise((ok) => { video.onseeked = ok; video.currentTime = at; });
            await frameAt(video, at, before);
          }
          alive();
          ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
          frames.push(canvas.toDataURL("image/jpeg", 0.9));
        }
        done({ frames });
      } catch (e) { done(null, e); }
    };
    video.src = src;
  });
}

const ACCEPTED = ["image/png", "image/jpeg", "image/webp"];
let skipped = [];            // files not attached since the last message went

// An image file as a data: URL, decoded by the browser first: a broken file is named now, not
// refused by the server.
function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const img = new Image();
      img.src = reader.result;
      img.decode().then(() => resolve({ url: reader.result }), reject);
    };
    reader.onerror = reject;
    reader.readAsDataURL(file);
  });
}

function notice() {
  $("notice").classList.toggle("news", !skipped.length); // "Reading …" is no warning
  $("notice").textContent = skipped.length
    ? "Not attached (only PNG, JPEG or WebP images and videos this browser plays): " + skipped.join(", ") + "."
    : attached.some((e) => e.reading && e.video) ? "Reading the video…"
    : attached.some((e) => e.reading) ? "Reading the image…" : "";
}

// Each file takes its place in attached at once — in the order chosen ("compare image 1 and
// image 2"), across picks too — and holds it while it is read (a video takes seconds).
function attach(files) {
  for (const file of files) {
    // Quoted, so that the notice's list (and its full stop) reads as such whatever the names hold.
    const name = file.name ? "“" + file.name + "”" : "a file" + (file.type ? " (" + file.type + ")" : "");
    const video = file.type.startsWith("video/");
    if (!video && !ACCEPTED.includes(file.type)) { skipped.push(name); continue; }
    const entry = { video };
    entry.reading = (video ? videoFrames(file) : readImage(file)).then(
      (item) => { const i = attached.indexOf(entry); if (i >= 0) attached[i] = item; },
      () => { const i = attached.indexOf(entry); if (i >= 0) { attached.splice(i, 1); skipped.push(name); } },
    ).finally(() => { showAttachments(); notice(); });
    attached.push(entry);
  }
  showAttachments();
  notice();
}

$("file").addEventListener("change", (e) => { attach(e.target.files); e.target.value = ""; });
document.querySelector("label.button").addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
});
document.addEventListener("paste", (e) => attach(e.clipboardData ? e.clipboardData.files : []));
// Files dropped anywhere are attached; other drags (text dragged into the message box) are the
// browser's: a drop of text was refused.
const carriesFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types).includes("Files");
document.addEventListener("dragover", (e) => { if (carriesFiles(e)) e.preventDefault(); });
document.addEventListener("drop", (e) => { if (carriesFiles(e)) { e.preventDefault(); attach(e.dataTransfer.files); } });

const prompt = $("prompt");
// On a touch screen Enter writes a new line and the Send button sends, as ChatGPT's and Claude's
// pages do on phones: a phone's keyboard has no Shift to hold with Enter, so Enter sending left no
// way to break a line. Touch is the primary pointer being coarse or unable to hover — either, as
// some Android browsers get one of the two wrong; the CSS's 16 px fields use the same query. A
// laptop with a touch screen has its touchpad or mouse as primary pointer: Enter sends there; an
// iPad stays touch with a keyboard attached.
const TOUCH = matchMedia("(pointer: coarse), (hover: none)");
// The focus back to the message box, where its keys go on — but not on a touch screen: there a
// focus given in a tap's handler (×, Continue, New chat) opens the keyboard, unasked, over half the
// page.
const focusPrompt = () => { if (!TOUCH.matches) prompt.focus(); };
// The box as tall as its lines: their height (scrollHeight, padding included) and its border.
const grow = () => {
  prompt.style.height = "auto";
  prompt.style.height = prompt.scrollHeight + prompt.offsetHeight - prompt.clientHeight + "px";
};
// The placeholder names Shift+Enter only where Enter sends and that fits on its line: in a narrow
// window's box it wrapped, its second line cut off.
const PLACEHOLDER = "Message QVQ", KEYS = " (Shift+Enter for a new line)";
const measure = document.createElement("canvas").getContext("2d");
function placeholder() {
  const style = getComputedStyle(prompt);
  measure.font = style.fontStyle + " " + style.fontWeight + " " + style.fontSize + " " + style.fontFamily;
  const room = prompt.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const keys = !TOUCH.matches && measure.measureText(PLACEHOLDER + KEYS).width <= room;
  prompt.placeholder = PLACEHOLDER + (keys ? KEYS : "");
}
new ResizeObserver(placeholder).observe(prompt);
// What the empty conversation says to do: its start, then how to send.
const howTo = (start) => start + (TOUCH.matches ? "tap Send." : "press Enter.");
TOUCH.addEventListener("change", () => {
  placeholder();
  const empty = document.querySelector(".empty");
  if (empty) empty.textContent = howTo(empty.dataset.start);
});
document.querySelector(".empty").textContent = howTo(document.querySelector(".empty").dataset.start);
prompt.addEventListener("input", grow);
prompt.addEventListener("keydown", (e) => {
  // While an answer streams, Enter does not send (nor stop it: that is the Stop button's job).
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !TOUCH.matches) {
    e.preventDefault();
    if (!running) $("form").requestSubmit();
  }
});

// Yields the JSON payload of each SSE "data:" event until "[DONE]"; comments (keep-alives) are skipped.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read().catch((e) => {
      throw e.name === "AbortError" ? e : new Error("The connection to the server was lost mid-answer (" + e.message + ").");
    });
    if (done) throw new Error("The connection closed before the answer ended.");
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

function setRunning(controller) {
  running = controller;
  $("send").textContent = controller ? "Stop" : "Send";
  $("send").classList.toggle("stop", !!controller);
}

// Streams the answer to the conversation into div; returns the text written, and refused: the
// server answered with an error before any text (the turn is then not part of the conversation).
// With prior (the answer so far, the conversation's last message), it continues that answer
// (continue_final_message) and the text written is the whole of it.
async function answer(div, signal, prior = "") {
  const out = div.querySelector(".text");
  let text = prior, usage = null, timings = null, reason = null, refused = false, stopped = false;
  // The text is written once a frame, not once a token: each write lays the growing answer out
  // again (8000 tokens took the page 50 s to show, for 0.3 s of streaming). A reader at the bottom
  // follows it; one who scrolled up stays.
  let frame = 0;
  // A JSON answer shows as a code block (with its copy button), as it is written.
  const json = jsonMode.checked;
  const paint = () => {
    frame = 0;
    const follow = atBottom();
    renderMarkdown(out, json ? "\x60\x60\x60json\n" + text + "\n\x60\x60\x60" : text);
    if (follow) div.scrollIntoView({ block: "end" });
  };
  try {
    const response = await fetch(api("v1/chat/completions"), {
      method: "POST",
      headers: headers(),
      signal,
      body: JSON.stringify({
        model, messages: history, stream: true, stream_options: { include_usage: true },
        max_tokens: Number($("max-tokens").value) || undefined,
        temperature: Number($("temperature").value),
        presence_penalty: Number($("presence-penalty").value) || undefined,
        response_format: json ? { type: "json_object" } : undefined,
        continue_final_message: prior ? true : undefined,
      }),
    }).catch((e) => { throw e.name === "AbortError" ? e : unreachable(e); });
    if (!response.ok) throw await failure(response);
    for await (const chunk of events(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices[0];
      if (choice && choice.delta.content) {
        text += choice.delta.content;
        if (!frame) frame = requestAnimationFrame(paint);
      }
      if (choice && choice.finish_reason) reason = choice.native_finish_reason || choice.finish_reason;
      if (chunk.timings) timings = chunk.timings;
      if (chunk.usage) usage = chunk.usage;
    }
    const parts = [];
    if (usage) parts.push(usage.completion_tokens + " tokens");
    if (timings) parts.push(timings.tokens_per_second.toFixed(1) + " tokens/s");
    const cached = usage && usage.prompt_tokens_details ? usage.prompt_tokens_details.cached_tokens : 0;
    if (cached) parts.push(cached + " of " + usage.prompt_tokens + " prompt tokens cached");
    // Figures, then why the answer ended as a sentence (Continue its last word).
    if (reason === "length") {
      parts.push("Cut off at Max tokens" + (usage ? " (" + usage.completion_tokens + ")" : "") +
        ": raise it under Settings, or");
    } else if (reason === "loop") {
      parts.push("Stopped: the answer kept repeating itself.");
    } else if (reason && reason !== "stop") {
      parts.push("Ended: " + reason + ".");
    }
    const stats = document.createElement("div");
    stats.className = "stats";
    stats.textContent = parts.join(" · ");
    if (reason === "length") {
      // Go on from where it was cut: the answer so far sent back as the last message.
      const more = document.createElement("button");
      more.type = "button";
      more.className = "continue";
      more.textContent = "Continue";
      more.addEventListener("click", () => continueAnswer(div, stats));
      stats.append(more, ".");
    }
    settle(stats);
  } catch (error) {
    const p = document.createElement("div");
    if (error.name === "AbortError") {
      stopped = true;
      p.className = "stats";
      p.textContent = "Stopped.";
    } else {
      p.className = "error";
      // A hint goes after the server's sentence, which may end without a full stop (or with a
      // bracket: "… (the context holds 4096)" still wants one).
      p.textContent = /[.!?…]["')\]]?$/.test(error.message) ? error.message : error.message + ".";
      if (error.code === "context_length_exceeded" && history.length > 1) {
        p.textContent += " The conversation so far counts too: start a New chat (top right) to drop it.";
      }
      if ((error.code === "request_too_large" || error.code === "too_many_images") && history.length > 1) {
        p.textContent += " Every image (and video frame) of the conversation is sent again each turn: start a New chat (top right).";
      }
      refused = text === "";
    }
    settle(p);
    // The server was restarted with another model: take its id for the next message.
    if (error.code === "model_not_found") await loadModel();
  }
  return { text, refused, stopped };

  // The last of the text, then line (the stats or the error) under it, in view.
  function settle(line) {
    if (frame) cancelAnimationFrame(frame);
    const follow = atBottom();
    paint();
    div.append(line);
    if (follow) div.scrollIntoView({ block: "end" });
  }
}

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (running) { running.abort(); return; }
  if (waiting) return;
  // Attachments still being read (a video takes seconds) go with this message: wait for them. One
  // that fails meanwhile keeps the message here, its name in the notice: sent without it, the
  // question would be answered as if it had been.
  const failedBefore = skipped.length;
  waiting = true;
  try {
    while (attached.some((e) => e.reading)) {
      notice();
      await Promise.all(attached.filter((e) => e.reading).map((e) => e.reading));
    }
    if (skipped.length > failedBefore) { notice(); return; }
    if (!prompt.value.trim() && attached.length === 0) return;
    if (!model) await loadModel(); // (a second Enter meanwhile is ignored: waiting)
  } finally {
    waiting = false;
  }
  const text = prompt.value.trim();
  const mine = epoch;
  const content = attached.map((item) => item.frames
    ? { type: "video", video: item.frames, max_pixels: VIDEO_PIXELS }
    : { type: "image_url", image_url: { url: item.url } });
  if (text) content.push({ type: "text", text });
  history.push({ role: "user", content });
  const sent = attached;
  skipped = [];
  $("notice").textContent = "";
  const asked = addMessage("user", text, attached);
  attached = [];
  showAttachments();
  prompt.value = "";
  prompt.style.height = "auto";

  // Only the last answer can be continued: earlier Continue buttons go once it is answered.
  const div = addMessage("assistant", "");
  div.classList.add("streaming");
  div.setAttribute("aria-busy", "true"); // screen readers read the answer once it is written
  const controller = new AbortController();
  setRunning(controller);
  const reply = await answer(div, controller.signal);
  div.classList.remove("streaming");
  div.removeAttribute("aria-busy");
  if (mine !== epoch) { setRunning(null); return; } // New chat while it ran
  if (reply.refused || (reply.stopped && reply.text === "")) {
    // Not part of the conversation: later turns must not resend it. Back in the box to fix.
    history.pop();
    asked.classList.add("refused");
    div.classList.add("refused");
    if (!prompt.value) { prompt.value = text; grow(); }
    attached = sent.concat(attached); // and any attached since
    showAttachments();
    div.scrollIntoView({ block: "end" }); // the error in view above the grown footer
  } else {
    history.push({ role: "assistant", content: reply.text });
    for (const old of document.querySelectorAll(".msg.assistant")) {
      if (old !== div) old.querySelector("button.continue")?.remove();
    }
  }
  setRunning(null);
  focusPrompt();
});

// Continues the conversation's last answer (cut off at Max tokens) in its own message.
async function continueAnswer(div, stats) {
  const last = history[history.length - 1];
  if (running || !last || last.role !== "assistant" || div !== lastAnswer()) return;
  const mine = epoch;
  // The button goes with its line: its focus (a click's too) to the message box, not the body.
  if (stats.contains(document.activeElement)) focusPrompt();
  stats.remove();
  div.classList.add("streaming");
  div.setAttribute("aria-busy", "true");
  const controller = new AbortController();
  setRunning(controller);
  const reply = await answer(div, controller.signal, last.content);
  div.classList.remove("streaming");
  div.removeAttribute("aria-busy");
  if (mine === epoch) last.content = reply.text;
  setRunning(null);
}

// The conversation's last answer on the page (an older one cannot be continued).
function lastAnswer() {
  const all = document.querySelectorAll(".msg.assistant:not(.refused)");
  return all[all.length - 1];
}

$("new-chat").addEventListener("click", () => {
  epoch++;
  if (running) running.abort();
  history.length = 0;
  const empty = document.createElement("p");
  empty.className = "empty";
  empty.dataset.start = "New chat: attach an image or a video, type a question, ";
  empty.textContent = howTo(empty.dataset.start);
  $("messages").replaceChildren(empty);
  skipped = [];
  $("notice").textContent = "";
  focusPrompt();
});

// Escape closes the settings, else stops the answer being written; a click outside them closes them.
const settings = document.querySelector("header details");
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  if (settings.open) {
    // A focus in them goes back to their summary: it fell to the page's body, the next Tab then
    // going on from wherever the browser chose.
    const inside = settings.contains(document.activeElement);
    settings.open = false;
    if (inside) settings.querySelector("summary").focus();
  } else if (running) running.abort();
});
document.addEventListener("click", (e) => { if (settings.open && !settings.contains(e.target)) settings.open = false; });
focusPrompt();
loadModel();
</script>
</body>
</html>
`;
