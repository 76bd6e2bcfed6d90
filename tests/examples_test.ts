/**
 * Every example in examples/ runs and does what it says, against the bundled tiny model: as a
 * module, the `deno task serve` server (src/server/main.ts) driven by curl and by the openai
 * client, and the mounted app under `deno serve`.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Pipeline } from "../src/pipeline.ts";
import { TINY_DIR } from "../src/model/_fixture.ts";
import { logprobsRef } from "../src/ref/logprobs.ts";
import { dfaAccepts } from "../src/generate/_automaton.ts";
import { schemaDfa } from "../src/generate/json_schema.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CASES = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/tiny-qwen2vl/reference/cases.json", import.meta.url)),
);
/** transformers' greedy answer to the question every example asks (case 0: its image and prompt). */
const ANSWER: string = CASES.cases[0].generated_text;
// QVQ_MODEL empty: the examples run the tiny model whatever the shell has set.
const ENV = { XDG_RUNTIME_DIR: "/tmp", QVQ_MODEL: "" };

async function run(command: string, args: string[], env: Record<string, string> = {}) {
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args,
    cwd: ROOT,
    env: { ...ENV, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [out, err] = [stdout, stderr].map((b) => new TextDecoder().decode(b));
  assert.equal(code, 0, `${command} ${args.join(" ")} failed:\n${err}`);
  return { out, err };
}

/** `deno run -A` of an example that should fail: its exit code and stderr (no colours). */
async function failing(args: string[]) {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    env: { ...ENV, NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code, err: new TextDecoder().decode(stderr) };
}

/** Starts a server process and waits for the address it prints (http://…, no trailing slash). */
async function spawnServer(args: string[], listening: RegExp) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: ENV,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  let url: string | undefined;
  while (!url) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`server exited before listening:\n${log}`);
    log += value;
    url = log.match(listening)?.[1];
  }
  return { child, lines, log, url: url.replace(/\/$/, "").replace("0.0.0.0", "127.0.0.1") };
}

/**
 * Starts a server process and waits for the address it prints; the model is loaded once /health
 * says ok. Dispose to stop it.
 */
async function server(args: string[], listening: RegExp, health = "/health") {
  const { child, lines, log, url: base } = await spawnServer(args, listening);
  for (let i = 0;; i++) {
    const response = await fetch(base + health);
    const body = await response.text();
    if (response.ok) break;
    if (i === 300) throw new Error(`${health} never became ok: ${body}\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    async [Symbol.asyncDispose]() {
      // The server must exit on SIGTERM (a live model worker once kept deno serve waiting).
      child.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exited = await Promise.race([
        child.status.then(() => true),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 20_000)),
      ]);
      clearTimeout(timer);
      if (!exited) child.kill("SIGKILL");
      await child.status;
      await lines.cancel();
      assert.ok(exited, `${args.join(" ")}: still running 20 s after SIGTERM`);
    },
  };
}

Deno.test("examples/module.ts streams the tiny model's answer", async () => {
  const { out } = await run(Deno.execPath(), ["run", "-A", "examples/module.ts"]);
  assert.ok(out.startsWith(`${ANSWER}\n[length: 12 tokens, `), out);
});

Deno.test("the module examples load QVQ_MODEL where it is set, as the README says", async () => {
  for (const example of ["module", "score", "structured_output", "video"]) {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `examples/${example}.ts`],
      cwd: ROOT,
      env: { ...ENV, QVQ_MODEL: "/nonexistent/qvq-model" },
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.notEqual(code, 0, example);
    assert.match(new TextDecoder().decode(stderr), /\/nonexistent\/qvq-model/, example);
  }
});

Deno.test("examples/video.ts answers about the fixture's five frames as transformers does", async () => {
  const { out } = await run(Deno.execPath(), ["run", "-A", "examples/video.ts"]);
  const ref = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/video/cases.json", import.meta.url)),
  ).cases[0];
  // 5 frames of 84 x 56 (under 448² pixels): grid [3, 4, 6], 18 tokens.
  assert.equal(out, `${ref.generated_text}\n[length: 5 frames, 18 video tokens, 12 tokens]\n`);
});

Deno.test("examples/video.ts says so where its frames directory is a video file, missing or empty", async () => {
  // Given a video file, the first thing a user tries, it ended on an uncaught NotADirectory.
  const empty = await Deno.makeTempDir();
  try {
    const clip = fileURLToPath(new URL("./fixtures/video/clip.webm", import.meta.url));
    for (
      const [dir, message] of [
        [
          clip,
          // ffmpeg writes into no missing directory: the line to copy makes it first.
          `${clip} is not a directory of frames: extract a video's first, e.g. mkdir frames && ` +
          "ffmpeg -i clip.mp4 -vf fps=2 frames/%04d.jpg, then pass frames\n",
        ],
        ["/nonexistent/frames", "/nonexistent/frames is not a directory of frames: "],
        [empty, `${empty} holds no PNG, JPEG or WebP frames\n`],
      ]
    ) {
      const { code, err } = await failing(["examples/video.ts", TINY_DIR, dir]);
      assert.equal(code, 1, err);
      assert.ok(err.startsWith(message), err);
    }
  } finally {
    await Deno.remove(empty);
  }
});

Deno.test("examples/structured_output.ts answers with a whole instance of its schema, within its bounds", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/structured_output.ts"],
    cwd: ROOT,
    env: ENV,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [out, err] = [stdout, stderr].map((b) => new TextDecoder().decode(b));
  // The tiny model's random weights ramble in the first object's string (greedy, the same every
  // run); the schema's maxLength ends it at 40 characters, and its other bounds hold the rest, so
  // even this model's answer is whole and parsed.
  assert.equal(code, 0, err);
  const answer = JSON.parse(out);
  assert.deepEqual(Object.keys(answer), ["objects", "count", "mood", "hasText"]);
  assert.ok(answer.objects.length >= 1 && answer.objects.length <= 8, out);
  for (const o of answer.objects) assert.ok([...o].length <= 40, o);
  assert.ok(answer.objects.some((o: string) => [...o].length === 40), out);
  assert.ok(Number.isInteger(answer.count) && answer.count >= 0 && answer.count <= 99, out);
  assert.ok(["calm", "busy", "tense", "cheerful"].includes(answer.mood), out);
  assert.equal(typeof answer.hasText, "boolean");
  const schema = JSON.parse(
    await Deno.readTextFile(new URL("../examples/structured_output.schema.json", import.meta.url)),
  );
  assert.ok(dfaAccepts(schemaDfa(schema), JSON.stringify(answer)), out);
});

Deno.test("examples/score.ts ranks three answers by their log-likelihood", async () => {
  const { out } = await run(Deno.execPath(), ["run", "-A", "examples/score.ts"]);
  const rows = out.trim().split("\n").map((line) => {
    const m = line.match(/^ *(-\d+\.\d{3}) {2}("[^"]*") \((\d+) tokens\)$/);
    assert.ok(m, line);
    return { logprob: Number(m[1]), answer: JSON.parse(m[2]), tokens: Number(m[3]) };
  });
  // Qwen's tokenizer splits numbers into digits: an answer's tokens come after the template's.
  assert.deepEqual(Object.fromEntries(rows.map((r) => [r.answer, r.tokens])), {
    "9.11": 4,
    "9.9": 3,
    "They are equal.": 4,
  });
  // Each score is the answer's log-likelihood: its tokens' log_softmax under the logits of the
  // positions before them, here from every prompt row's logits read back whole (another path
  // than the example's prompt logprobs).
  using p = await Pipeline.load(TINY_DIR, { dtype: "f32", maxContext: 64 });
  const context = Array.from(
    (await p.prepare([{ role: "user", content: "Which is larger, 9.11 or 9.9?" }])).inputIds,
  );
  const V = p.model.config.text.vocabSize;
  for (const r of rows) {
    const ids = [...context, ...p.tokenizer.encode(r.answer)];
    const s = p.model.createSession(ids.length + 1);
    const all = (await p.model.prefill(s, ids, undefined, { allLogits: true })).logits!;
    s.dispose();
    let sum = 0;
    for (let i = context.length; i < ids.length; i++) {
      sum += logprobsRef(all.subarray((i - 1) * V, i * V), ids[i], 0).logprob;
    }
    assert.ok(Math.abs(sum - r.logprob) < 2e-3, `${r.answer}: ${r.logprob} printed, ${sum}`);
  }
});

Deno.test("the server of deno task serve answers examples/curl.sh and examples/openai_client.ts", async () => {
  // What `deno task serve --port 0` runs.
  await using s = await server(
    ["run", "-A", "src/server/main.ts", "--port", "0"],
    /listening on (http:\/\/\S+?)\/? /,
  );
  const curl = await run("bash", ["examples/curl.sh", s.base]);
  assert.match(curl.out, /== GET \/health\n\{"status":"ok","model":"tiny-qwen2vl"/);
  assert.match(curl.out, /"data":\[\{"id":"tiny-qwen2vl","object":"model"/);
  const completion = JSON.parse(curl.out.split("== POST /v1/chat/completions\n")[1].split("\n")[0]);
  assert.equal(completion.choices[0].message.content, ANSWER);
  const streamed = curl.out.split("streamed (-N: print each event as it arrives)\n")[1];
  const deltas = streamed.split("\n\n").filter((e) => e.startsWith("data: {"))
    .map((e) => JSON.parse(e.slice(6)).choices[0]?.delta.content ?? "");
  assert.equal(deltas.join(""), ANSWER);
  assert.match(streamed, /data: \[DONE\]\n\n$/);

  const client = await run(Deno.execPath(), [
    "run",
    "-A",
    "examples/openai_client.ts",
    `${s.base}/v1`,
  ]);
  // curl.sh asked the same question just before: all its prompt tokens but the last two come from
  // the prompt cache (those run through prefill, as an uncached prompt's would).
  assert.equal(
    client.out,
    `tiny-qwen2vl: ${JSON.stringify(ANSWER)}\n` +
      `usage: {"prompt_tokens":35,"completion_tokens":12,"total_tokens":47,` +
      `"prompt_tokens_details":{"cached_tokens":33,"image_tokens":4}}\n` +
      `${ANSWER}\nstreamed 12 tokens\n` +
      // 12 tokens, as max_output_tokens allows: "incomplete", as OpenAI says of a cut answer
      `responses: ${JSON.stringify(ANSWER)} (incomplete)\n`,
  );

  // The tool round trip: a call held to the tool's schema, its result, an answer after it.
  const tools = await run(Deno.execPath(), [
    "run",
    "-A",
    "examples/tool_calling.ts",
    `${s.base}/v1`,
  ]);
  const [call, result, answer] = tools.out.trimEnd().split("\n");
  const args = JSON.parse(call.match(/^call: sea_state (.*)$/)![1]);
  assert.deepEqual(Object.keys(args), ["harbour", "unit"]);
  assert.ok(
    ["Bergen", "Brest", "Cádiz"].includes(args.harbour) && ["metres", "feet"].includes(args.unit),
  );
  assert.equal(JSON.parse(result.match(/^result: (.*)$/)![1]).harbour, args.harbour);
  assert.equal(typeof JSON.parse(answer.match(/^answer: (.*)$/)![1]), "string");
});

Deno.test("examples/openai_client.ts and tool_calling.ts say so where no server answers", async () => {
  // Run before `deno task serve`, they ended on the openai client's "Connection error." and its
  // stack, the address refused three causes down.
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const base = `http://127.0.0.1:${free.addr.port}/v1`;
  free.close();
  for (const example of ["openai_client", "tool_calling"]) {
    const { code, err } = await failing([`examples/${example}.ts`, base]);
    assert.equal(code, 1, err);
    assert.equal(
      err,
      `cannot reach ${base}: is the server running? Start it with deno task serve\n`,
      example,
    );
  }
});

Deno.test("examples/serve.ts mounts the API in its own app under deno serve", async () => {
  await using s = await server(
    ["serve", "-A", "--port", "0", "examples/serve.ts"],
    /Listening on (http:\/\/\S+)/,
    "/qvq/health",
  );
  assert.match(await (await fetch(`${s.base}/`)).text(), /^My app\./);
  assert.match(await (await fetch(`${s.base}/qvq/`)).text(), /<title>QVQ chat<\/title>/);
  const response = await fetch(`${s.base}/qvq/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "tiny-qwen2vl",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 3,
    }),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.choices[0].finish_reason, "length");
  assert.equal(body.usage.completion_tokens, 3);
});

Deno.test("Ctrl+C through deno task (SIGINT twice) ends an open stream with server_shutting_down, then exit 130", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/server/main.ts", "--port", "0"],
    cwd: ROOT,
    env: { ...ENV, QVQ_WARMUP: "0" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "", base: string | undefined;
  while (!base) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`server exited before listening:\n${log}`);
    log += value;
    base = log.match(/listening on (http:\/\/\S+?)\/? /)?.[1]?.replace("0.0.0.0", "127.0.0.1");
  }
  try {
    while (!(await fetch(`${base}/health`).then((r) => r.text())).includes('"ok"')) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const response = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "tiny-qwen2vl",
        stream: true,
        stop_on_loop: false,
        max_tokens: 8000,
        messages: [{ role: "user", content: "Hi" }],
      }),
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let stream = "";
    while (!stream.includes('"content":" ')) stream += (await reader.read()).value ?? "";
    // The terminal signals the process group and `deno task` passes its own on: two SIGINTs, the
    // second once the first is being handled (the stream says so), while the server stops.
    child.kill("SIGINT");
    while (!stream.includes('"code":"server_shutting_down"')) {
      const r = await reader.read();
      if (r.done) break;
      stream += r.value;
    }
    assert.match(stream, /"code":"server_shutting_down"/);
    try {
      child.kill("SIGINT");
    } catch { /* exited already: it stopped before the second came */ }
    for (let r = await reader.read(); !r.done; r = await reader.read()) stream += r.value;
    const status = await child.status;
    assert.equal(status.signal, null, "exited by itself, not killed by the second signal");
    assert.equal(status.code, 130);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await lines.cancel();
  }
});

Deno.test("deno task serve on a port in use says so in a line and exits 1, loading no model", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/server/main.ts", "--port", String(taken.addr.port)],
    cwd: ROOT,
    env: ENV,
    stdout: "null",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 1, err);
  assert.match(err, new RegExp(`^error: 127\\.0\\.0\\.1:${taken.addr.port} is already in use`));
  assert.doesNotMatch(err, /serving|at Object|Uncaught/);
});

Deno.test("SIGTERM while the model loads answers the request waiting for it (503, retry) and exits 143", async () => {
  const { child, lines, url: base } = await spawnServer(
    ["run", "-A", "src/server/main.ts", "--port", "0"],
    /listening on (http:\/\/\S+?)\/? /,
  );
  // The model is still loading (and warming up): the request waits for it.
  const health = await fetch(`${base}/health`);
  assert.deepEqual([health.status, await health.json()], [503, { status: "loading", waiting: 0 }]);
  const waiting = fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }),
  });
  // Signalled once the server holds the request (on a loaded machine 100 ms was not always enough
  // for the connection to open: the signal closed the listener first).
  for (let health = await (await fetch(`${base}/health`)).json(); health.waiting !== 1;) {
    // Loaded before the request was seen (not here: the warm-up takes seconds), the test would
    // wait for nothing: it fails saying so.
    assert.equal(health.status, "loading", "the model loaded before the request reached it");
    await new Promise((r) => setTimeout(r, 20));
    health = await (await fetch(`${base}/health`)).json();
  }
  child.kill("SIGTERM");
  const answer = await waiting;
  assert.equal(answer.status, 503);
  assert.equal((await answer.json()).error.code, "server_shutting_down");
  assert.equal((await child.status).code, 143);
  await lines.cancel();
});
