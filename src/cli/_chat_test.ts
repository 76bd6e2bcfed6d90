import assert from "node:assert/strict";
import { FakeEngine } from "../server/_fake_engine.ts";
import { ContextLengthError, DeviceLostError } from "../errors.ts";
import { badImageFiles } from "../model/_fixture.ts";
import { UsageError } from "./_args.ts";
import { chatCommand, type ChatIo, runChat } from "./_chat.ts";

const PNG_PATH =
  new URL("../../tests/fixtures/tiny-qwen2vl/reference/case0_0.png", import.meta.url).pathname;
const PNG = await Deno.readFile(PNG_PATH);

/** Piped stdin of `text`, and collectors for stdout and stderr. */
function pipe(text: string): ChatIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [], stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (t) => void stdout.push(t),
    err: (t) => void stderr.push(t),
    input: ReadableStream.from([new TextEncoder().encode(text)]),
    interactive: false,
    readFile: (path) => Deno.readFile(path),
  };
}

Deno.test("runChat() says how many prompt tokens the prompt cache served", async () => {
  // Every turn after the first repeats the conversation so far: the engine's cache serves it.
  const engine = new FakeEngine({ cachedTokens: (m) => (m.length > 1 ? 8 : 0) });
  const io = pipe("Hello\nAgain\n");
  await runChat(engine, io, {});
  assert.deepEqual(io.stderr, [
    "[7 tokens, 42.0 tokens/s]\n",
    "[7 tokens, 42.0 tokens/s, 8 of 10 prompt tokens cached]\n",
  ]);
});

Deno.test("runChat() answers each piped line, streaming deltas, and keeps the conversation", async () => {
  const engine = new FakeEngine();
  const io = pipe("Hello\nHow are you?\n");
  await runChat(engine, io, { system: "Be brief.", maxNewTokens: 50 });
  assert.equal(
    io.stdout.join(""),
    "I see 0 images. You said: Hello\nI see 0 images. You said: How are you?\n",
  );
  assert.ok(io.stdout.length > 4, "deltas are written one by one");
  assert.deepEqual(io.stderr, ["[7 tokens, 42.0 tokens/s]\n", "[9 tokens, 42.0 tokens/s]\n"]);
  assert.deepEqual(engine.calls[1].messages, [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hello" },
    { role: "assistant", content: "I see 0 images. You said: Hello" },
    { role: "user", content: "How are you?" },
  ]);
  assert.equal(engine.calls[1].options.maxNewTokens, 50);
});

Deno.test("runChat() attaches /image files to the next message only", async () => {
  const engine = new FakeEngine();
  const io = pipe(`/image ${PNG_PATH}\n/image "${PNG_PATH}"\nCompare them\nAnd now?\n`);
  await runChat(engine, io);
  assert.deepEqual(engine.calls[0].messages, [{
    role: "user",
    content: [{ type: "image", image: PNG }, { type: "image", image: PNG }, {
      type: "text",
      text: "Compare them",
    }],
  }]);
  assert.deepEqual(engine.calls[1].messages.at(-1), { role: "user", content: "And now?" });
  assert.match(io.stdout.join(""), /^I see 2 images\. You said: Compare them\n/);
});

Deno.test("runChat() attaches a /video of frames (a list or a directory) beside /image, in order", async () => {
  const engine = new FakeEngine();
  const dir = await Deno.makeTempDir();
  try {
    for (const k of [1, 2, 10]) await Deno.writeFile(`${dir}/f${k}.png`, PNG);
    const io = pipe(
      `/video ${PNG_PATH},${PNG_PATH}\n/image ${PNG_PATH}\n/video ${dir}\nWhat changed?\n` +
        `/video ${dir}/none\n/video ${dir}/clip.webm\n`,
    );
    await runChat(engine, io);
    assert.deepEqual(engine.calls[0].messages, [{
      role: "user",
      content: [
        { type: "video", video: [PNG, PNG] },
        { type: "image", image: PNG },
        { type: "video", video: [PNG, PNG, PNG] },
        { type: "text", text: "What changed?" },
      ],
    }]);
    assert.match(
      io.stdout.join(""),
      /^I see 1 image and 2 videos of 2, 3 frames\. You said: What changed\?\n/,
    );
    const err = io.stderr.join("");
    assert.match(err, /attached a video of 3 frames/);
    assert.match(err, /error: cannot read video ".*\/none"/);
    // A video file where its frames go: said to be one, with how to extract its frames.
    assert.match(err, /clip\.webm: a video file, where qvq takes a video's frames .*ffmpeg -i /);
    // Named as the chat's command, not generate's flag; ffmpeg writes into no missing directory,
    // so the line to copy makes it first.
    assert.match(
      err,
      /error: cannot read video ".*clip\.webm": \/video .*clip\.webm: .* e\.g\. mkdir frames && ffmpeg -i ".*clip\.webm" -vf fps=2 frames\/%04d\.jpg, then \/video frames\n/,
    );
    assert.doesNotMatch(err, /--video/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runChat() refuses a file that is no image, or a video of mixed sizes, when attached: the next message goes without it", async () => {
  const engine = new FakeEngine();
  const dir = await Deno.makeTempDir();
  try {
    const { text, wide, thin } = await badImageFiles(dir);
    const io = pipe(`/image ${text}\n/video ${PNG_PATH},${wide}\n/image ${thin}\nStill there?\n`);
    await runChat(engine, io);
    const err = io.stderr.join("");
    assert.match(err, /error: cannot read image ".*notes\.png": image ".*notes\.png": /);
    assert.match(err, /error: cannot read image ".*thin\.png": .*aspect ratio/);
    assert.match(err, /frame ".*wide\.png" is 8x4 pixels but frame ".*case0_0\.png" is 56x56/);
    assert.doesNotMatch(err, /attached/);
    assert.deepEqual(engine.calls[0].messages, [{ role: "user", content: "Still there?" }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runChat() reports unreadable images and unknown commands, /reset forgets, /exit stops", async () => {
  const engine = new FakeEngine();
  const io = pipe("/image /no/such.png\n/frobnicate\nOne\n/reset\nTwo\n/exit\nThree\n");
  await runChat(engine, io);
  const err = io.stderr.join("");
  assert.match(err, /error: cannot read image "\/no\/such\.png"/);
  assert.match(err, /error: unknown command "\/frobnicate"/);
  assert.match(err, /conversation cleared/);
  assert.equal(engine.calls.length, 2);
  assert.deepEqual(engine.calls[1].messages, [{ role: "user", content: "Two" }]);
});

Deno.test("runChat() prints an engine error and carries on with the next line", async () => {
  let first = true;
  const engine = new FakeEngine({
    answer: () => {
      if (first) {
        first = false;
        throw new Error("image 0 is 1x1 pixels; the smallest is 28x28");
      }
      return "fine";
    },
  });
  const io = pipe("bad\ngood\n");
  await runChat(engine, io);
  assert.match(io.stderr.join(""), /error: image 0 is 1x1 pixels/);
  assert.equal(io.stdout.join("").trim(), "fine");
  assert.deepEqual(engine.calls[1].messages, [{ role: "user", content: "good" }]);
});

Deno.test("runChat() ends with the error where the GPU device was lost: no later line can run", async () => {
  const lost = new DeviceLostError("the WebGPU device was lost (unknown: a test)");
  const engine = new FakeEngine({ error: lost, failAfterTokens: 2 });
  const io = pipe("first\nsecond\n");
  await assert.rejects(runChat(engine, io), (e) => e === lost);
  assert.equal(engine.calls.length, 1, "the second line was not sent");
});

Deno.test("chatCommand() parses its options and chats over the given input", async () => {
  const engine = new FakeEngine();
  const out: string[] = [];
  const io = { out: (t: string) => void out.push(t), err: () => {} };
  let loaded = "";
  const code = await chatCommand(
    [
      "--model",
      "org/name",
      "--temperature",
      "0.5",
      "--seed",
      "3",
      "--presence-penalty",
      "-0.5",
      "--frequency-penalty=0.25",
      "--min-p",
      "0.05",
      "--stop",
      "END",
      "--stop-on-loop",
      "--system",
      "S",
      "--dtype",
      "f32",
      "--quant",
      "q8",
    ],
    io,
    (model, { dtype, quant }) => {
      loaded = `${model} ${dtype} ${quant}`;
      return Promise.resolve(engine);
    },
    ReadableStream.from([new TextEncoder().encode("Hi\n")]),
  );
  assert.equal(code, 0);
  assert.equal(loaded, "org/name f32 q8");
  assert.equal(out.join(""), "I see 0 images. You said: Hi\n");
  const { signal: _, ...options } = engine.calls[0].options;
  assert.deepEqual(options, {
    maxNewTokens: Infinity, // no --max-tokens: to the context's end
    temperature: 0.5,
    seed: 3,
    presencePenalty: -0.5,
    frequencyPenalty: 0.25,
    minP: 0.05,
    stop: ["END"],
    stopOnLoop: true,
  });
  assert.deepEqual(engine.calls[0].messages[0], { role: "system", content: "S" });
  await assert.rejects(
    chatCommand(["--model", "m", "--seed", "x"], io),
    /--seed must be an integer/,
  );
  await assert.rejects(chatCommand([], io), /--model is required/);
  await assert.rejects(
    chatCommand(["--model", "m", "--dtype", "f8"], io),
    /--dtype must be f16 or f32/,
  );
  await chatCommand(["--model", "m", "--quant", "f16"], io, (model, { dtype, quant }) => {
    loaded = `${model} ${dtype} ${quant}`;
    return Promise.resolve(engine);
  }, ReadableStream.from([]));
  assert.equal(loaded, "m undefined undefined", "--quant f16: no quantization");
  await assert.rejects(
    chatCommand(["--model", "m", "--quant", "q2"], io),
    (e: Error) =>
      e instanceof UsageError && /--quant: quantization "q2" is not supported/.test(e.message),
  );
  let vq: unknown;
  await chatCommand(["--model", "m", "--vision-quant", "q8"], io, (_, o) => {
    vq = o.visionQuant;
    return Promise.resolve(engine);
  }, ReadableStream.from([]));
  assert.equal(vq, "q8");
  await chatCommand(["--model", "m", "--vision-quant", "f16"], io, (_, o) => {
    vq = "visionQuant" in o ? o.visionQuant : "absent";
    return Promise.resolve(engine);
  }, ReadableStream.from([]));
  assert.equal(vq, "absent", "--vision-quant f16: none");
  let kv: unknown = "unset";
  await chatCommand(["--model", "m", "--kv-cache-dtype", "f32"], io, (_, o) => {
    kv = o.kvCacheDtype;
    return Promise.resolve(engine);
  }, ReadableStream.from([]));
  assert.equal(kv, "f32");
  await assert.rejects(
    chatCommand(["--model", "m", "--kv-cache-dtype", "q8"], io),
    (e: Error) =>
      e instanceof UsageError &&
      /--kv-cache-dtype: the KV cache dtype must be "f16" or "f32".*got "q8"/.test(e.message),
  );
  await assert.rejects(
    chatCommand(["--model", "m", "--vision-quant", "q4"], io),
    (e: Error) =>
      e instanceof UsageError && /--vision-quant: .*"q4".*never measured/.test(e.message),
  );
});

Deno.test("qvq chat with piped stdin answers with the tiny model as transformers does", async () => {
  const root = new URL("../../", import.meta.url);
  const cases = JSON.parse(
    await Deno.readTextFile(new URL("tests/fixtures/tiny-qwen2vl/reference/cases.json", root)),
  );
  const ref = cases.cases[0]; // one image, one question, the template's default system prompt
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "src/cli/main.ts",
      "chat",
      "--model",
      "tests/fixtures/tiny-qwen2vl",
      "--max-tokens",
      String(ref.generated_ids.length),
      "--temperature",
      "0",
    ],
    cwd: root,
    env: { XDG_RUNTIME_DIR: "/tmp" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(
    `/image tests/fixtures/tiny-qwen2vl/reference/${ref.images[0]}\n${ref.prompt}\n/exit\n`,
  ));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, err);
  assert.equal(new TextDecoder().decode(stdout), `${ref.generated_text}\n`);
  assert.match(err, /attached .*case0_0\.png/);
  assert.match(err, /\[12 tokens, [\d.]+ tokens\/s, ended: length\]/);
});

Deno.test("runChat() takes an empty system prompt as an empty system turn, not the template's default", async () => {
  const engine = new FakeEngine();
  await runChat(engine, pipe("Hi\n"), { system: "" });
  assert.deepEqual(engine.calls[0].messages, [
    { role: "system", content: "" },
    { role: "user", content: "Hi" },
  ]);
  const none = new FakeEngine();
  await runChat(none, pipe("Hi\n"), {});
  assert.deepEqual(none.calls[0].messages, [{ role: "user", content: "Hi" }]);
});

Deno.test("runChat(): a conversation that fills the context says /reset starts a new one (a first message over it does not)", async () => {
  const full = new ContextLengthError("the prompt has 92 tokens but the model's context holds 80");
  const engine = new FakeEngine({
    refuse: (m) => (m.length > 1 || m[0].content === "Long" ? full : undefined),
  });
  const io = pipe("Long\nOne\nTwo\n/reset\nThree\n");
  await runChat(engine, io);
  const errors = io.stderr.join("").split("\n").filter((l) =>
    l.startsWith("error:") || l.startsWith("(")
  );
  const hint = "(the conversation fills the model's context: /reset starts a new one)";
  // "Long" alone is over it: no hint. "Two" follows "One": the conversation is full.
  assert.equal(errors.filter((l) => l === hint).length, 1, errors.join("\n"));
  assert.deepEqual(engine.calls.at(-1)?.messages, [{ role: "user", content: "Three" }]);
});

Deno.test("runChat(): /image or /video without a path says what it needs; Ctrl+D ends the chat on a line of its own", async () => {
  const engine = new FakeEngine();
  const io = { ...pipe("/image\n/video \nHi\n"), interactive: true };
  await runChat(engine, io);
  const err = io.stderr.join("");
  assert.match(err, /error: \/image needs a path: \/image <path>/);
  assert.match(err, /error: \/video needs a path: \/video <frames>/);
  assert.doesNotMatch(err, /unknown command/);
  assert.ok(io.stdout.join("").endsWith("\n> \n"), JSON.stringify(io.stdout.join("")));
  // /exit: the newline was the user's.
  const exited = { ...pipe("/exit\n"), interactive: true };
  await runChat(engine, exited);
  assert.equal(exited.stdout.join(""), "\n> ");
});
