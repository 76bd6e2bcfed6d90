import assert from "node:assert/strict";
import { readSafetensors } from "../safetensors.ts";
import { badImageFiles, readReferenceCase, TINY_DIR } from "../model/_fixture.ts";
import { maxAbsDiff } from "../ref/_random.ts";
import { type Io, UsageError, type Values } from "./_args.ts";
import { generateOptions, videoFramePaths } from "./_generate.ts";
import { main } from "./main.ts";
import { Tokenizer } from "../tokenizer.ts";

const PNG0 = `${TINY_DIR}reference/case0_0.png`;
const PROMPT0 = "What value should be filled in the blank space?";
/** The tiny model with f32 weights, for parity with transformers' fp32 references. */
const TINY_F32 = ["--model", TINY_DIR, "--dtype", "f32"];
/** Reference case 0's one user turn: its image, then its text. */
const CASE0 = ["--image", PNG0, "--prompt", PROMPT0];

/** Two greedy tokens. */
const GREEDY_2 = ["--temperature", "0", "--max-tokens", "2"];

/** Runs the CLI in-process; returns the exit code and what it wrote. */
async function cli(
  args: string[],
  stdin = "",
): Promise<{ code: number; out: string; err: string }> {
  let out = "", err = "";
  const io: Io = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    stdin: () => new Blob([stdin]).stream(),
  };
  const code = await main(args, io);
  return { code, out, err };
}

Deno.test("main() prints the overview: exit 2 without a command, 0 for help", async () => {
  const none = await cli([]);
  assert.equal(none.code, 2);
  assert.match(none.err, /usage: qvq <command>/);
  for (const c of ["tokenize", "detokenize", "preprocess", "generate", "logits", "chat"]) {
    assert.match(none.err, new RegExp(`\\n  ${c} `));
  }
  const help = await cli(["help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /commands:/);
});

Deno.test("main() answers bad usage with the command's usage and exit code 2", async () => {
  const bad: [string[], RegExp][] = [
    [["frobnicate"], /unknown command "frobnicate"/],
    [["generate", "--prompt", "hi"], /--model is required/],
    [["generate", "--model", TINY_DIR], /--prompt is required/],
    [
      ["generate", "--model", TINY_DIR, "--prompt", "hi", "--max-tokens", "ten"],
      /--max-tokens must be an integer, got "ten"/,
    ],
    [
      ["generate", "--model", TINY_DIR, "--prompt", "hi", "--seed", "1.5"],
      /--seed must be an integer/,
    ],
    [["generate", "--model", TINY_DIR, "--prompt", "hi", "--frob"], /frob/],
    [["generate", "--model", TINY_DIR, "--prompt", "hi", "stray"], /unexpected argument "stray"/],
    [
      ["generate", "--model", TINY_DIR, "--prompt", "hi", "--dtype", "f8"],
      /--dtype must be f16 or f32, got "f8"/,
    ],
    [
      ["generate", "--model", TINY_DIR, "--prompt", "hi", "--quant", "q3"],
      /--quant: quantization "q3" is not supported; use one of q8, q4 \(or f16\)/,
    ],
    [
      ["generate", "--model", TINY_DIR, "--prompt", "hi", "--vision-quant", "q4"],
      /--vision-quant: visionQuant "q4" is not supported/,
    ],
    [
      ["logits", "--model", TINY_DIR, "--prompt", "hi", "--out", "x.safetensors", "--quant=int4"],
      /--quant: quantization "int4" is not supported/,
    ],
    [["logits", "--model", TINY_DIR, "--prompt", "hi"], /--out is required/],
    // An output directory that is not there: refused before the model runs, not after.
    [
      ["logits", "--model", TINY_DIR, "--prompt", "hi", "--out", "/nonexistent-dir/x.safetensors"],
      /--out: cannot write "\/nonexistent-dir\/x\.safetensors": "\/nonexistent-dir" is not a directory/,
    ],
    [
      ["preprocess", "--model", TINY_DIR, "--image", "a.png", "--out", "/nonexistent-dir/p.st"],
      /--out: cannot write .*is not a directory/,
    ],
    // A directory as --out: refused before the model runs (it failed at the write, after it).
    [
      ["logits", "--model", TINY_DIR, "--prompt", "hi", "--out", "src/"],
      /--out: "src\/" is a directory; name the file to write \(e\.g\. src\/out\.safetensors\)/,
    ],
    [
      ["preprocess", "--model", TINY_DIR, "--image", "a.png", "--out", "."],
      /--out: "\." is a directory/,
    ],
    [["preprocess", "--model", TINY_DIR, "--out", "x.safetensors"], /at least one --image/],
    [["tokenize"], /--model is required/],
    // A model directory that is not there is said to be missing (not its first file).
    [
      ["preprocess", "--model", "/nonexistent/dir", "--image", "a.png", "--out", "p.st"],
      /--model \/nonexistent\/dir: no such directory/,
    ],
    [["tokenize", "--model", "/nonexistent/dir"], /--model \/nonexistent\/dir: no such directory/],
    [["detokenize", "--model", PNG0], /--model .*case0_0\.png: not a directory/],
    [["tokenize", "--model", TINY_DIR, "--skip-special-tokens"], /detokenize only/],
  ];
  for (const [args, msg] of bad) {
    const r = await cli(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.err, msg, args.join(" "));
    assert.match(r.err, /usage: qvq/, args.join(" "));
  }
});

Deno.test("main() follows a usage error with the command's synopsis, not its whole option list", async () => {
  // generate's option list is 50 lines: printed after the error, it scrolled the error itself off
  // a terminal, and a user who forgot --prompt saw only the last options.
  for (
    const [args, command] of [[["generate", "--model", TINY_DIR], "generate"], [
      ["chat"],
      "chat",
    ], [["detokenize"], "detokenize"]] as const
  ) {
    const r = await cli([...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(
      r.err,
      new RegExp(
        `^error: --(model|prompt) is required[^\\n]*\\n\\nusage: qvq [^\\n]*\\n(.+\\n)*` +
          `\\nRun "qvq ${command} --help" for its options\\.\\n$`,
      ),
    );
    assert.match(r.err, new RegExp(`qvq ${command} --model`));
    assert.ok(r.err.trimEnd().split("\n").length <= 6, r.err);
    assert.doesNotMatch(r.err, /options:|--max-tokens/);
  }
});

Deno.test("main() names the bundled tiny model where --model is missing", async () => {
  // The README's commands read `--model <dir>`; a newcomer has no model directory yet.
  for (const args of [["generate", "--prompt", "hi"], ["chat"], ["tokenize"]]) {
    const r = await cli(args);
    assert.equal(r.code, 2);
    const path = r.err.match(
      /^error: --model is required \(to try qvq without a model: --model (\S+), a tiny one with random weights\)\n/,
    )?.[1];
    assert.equal(path, "tests/fixtures/tiny-qwen2vl", r.err); // relative to the repository root
    assert.ok(Deno.statSync(`${path}/config.json`).isFile);
  }
});

Deno.test("main() --help on a command prints its usage and exits 0", async () => {
  for (const c of ["generate", "logits", "preprocess", "tokenize"]) {
    const r = await cli([c, "--help"]);
    assert.equal(r.code, 0, c);
    assert.match(r.out, new RegExp(`usage: qvq ${c}`));
  }
});

Deno.test("qvq generate --json prints one JSON record with text, finish reason, usage, timings", async () => {
  // Three greedy tokens of the tiny model, as one JSON record, with `more` options.
  const json3 = (...more: string[]) =>
    cli(["generate", ...TINY_F32, "--max-tokens", "3", "--temperature", "0", "--json", ...more]);
  const r = await json3(...CASE0);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split("\n");
  assert.equal(lines.length, 1);
  const j = JSON.parse(lines[0]);
  assert.equal(j.text, " retired retired retired");
  assert.equal(j.finishReason, "length");
  assert.deepEqual(j.usage, {
    promptTokens: 35,
    completionTokens: 3,
    imageTokens: 4,
    cachedTokens: 0,
  });
  assert.deepEqual(Object.keys(j.timings).sort(), [
    "decodeMs",
    "prefillMs",
    "tokensPerSecond",
    "visionMs",
  ]);
  assert.equal(j.logprobs, undefined);
  // --logprobs 2: each token's entry with two alternatives, greedy's choice the first.
  const lp = await json3(...CASE0, "--logprobs", "2");
  assert.equal(lp.code, 0, lp.err);
  const entries = JSON.parse(lp.out).logprobs;
  assert.deepEqual(entries.map((e: { token: string }) => e.token), [
    " retired",
    " retired",
    " retired",
  ]);
  for (const e of entries) {
    assert.equal(e.topLogprobs.length, 2);
    assert.equal(e.topLogprobs[0].id, e.id);
    assert.ok(e.logprob < 0);
  }
  // --raw: the templated prompt's text, given as it is, continues as the chat answer does.
  using tok = await Tokenizer.load(TINY_DIR);
  const ref = await readReferenceCase(3);
  const raw = await json3("--prompt", tok.decode(Array.from(ref.inputIds)), "--raw");
  assert.equal(raw.code, 0, raw.err);
  const rj = JSON.parse(raw.out);
  assert.equal(rj.text, " retired retired retired");
  assert.equal(rj.usage.promptTokens, ref.inputIds.length);
  // --prompt-logprobs and --echo: the prompt's record in the JSON; --echo alone prints it first.
  const scored = await json3("--prompt", "The sea is", "--raw", "--prompt-logprobs", "1", "--echo");
  assert.equal(scored.code, 0, scored.err);
  const prompt = JSON.parse(scored.out).prompt;
  assert.equal(prompt.text, "The sea is");
  assert.deepEqual(prompt.logprobs.map((e: { token: string }) => e.token), ["The", " sea", " is"]);
  assert.equal(prompt.logprobs[0].logprob, null);
  assert.ok(prompt.logprobs[2].logprob < 0 && prompt.logprobs[2].topLogprobs.length === 1);
  const two = ["generate", ...TINY_F32, ...GREEDY_2, "--prompt", "The sea is", "--raw"];
  const answer = JSON.parse((await cli([...two, "--json"])).out).text;
  const printed = await cli([...two, "--echo"]);
  assert.equal(printed.code, 0, printed.err);
  assert.equal(printed.out, `The sea is${answer}\n`);
  // A chat's echo shows an image's pads as one, counted.
  const chat = await cli(["generate", ...TINY_F32, ...GREEDY_2, ...CASE0, "--echo"]);
  assert.equal(chat.code, 0, chat.err);
  assert.match(chat.out, /<\|vision_start\|><\|image_pad\|>×4<\|vision_end\|>/);
  // Usage errors (exit 2) before any model loads: the model named does not even exist.
  const refused = [
    [["--raw", "--image", "x.png"], /--raw continues the prompt alone/],
    [["--logprobs", "21"], /--logprobs must be an integer in \[0, 20\], got 21/],
    [["--logprobs", "1"], /--logprobs needs --json/],
    [["--prompt-logprobs", "0"], /--prompt-logprobs needs --json/],
    [
      ["--prompt-logprobs", "21", "--json"],
      /--prompt-logprobs must be an integer in \[0, 20\], got 21/,
    ],
  ] as const;
  for (const [flags, msg] of refused) {
    const r = await cli(["generate", "--model", "/nonexistent-model", "--prompt", "hi", ...flags]);
    assert.equal(r.code, 2, flags.join(" "));
    assert.match(r.err, msg, flags.join(" "));
  }
});

Deno.test("deno task qvq generate --quant q4 runs end to end on the quantized model", async () => {
  const root = new URL("../../", import.meta.url);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "qvq",
      "generate",
      ...TINY_F32,
      ...CASE0,
      "--quant",
      "q4",
      ...GREEDY_2,
      "--json",
    ],
    cwd: root,
    env: { XDG_RUNTIME_DIR: "/tmp" },
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, err);
  const j = JSON.parse(new TextDecoder().decode(stdout));
  assert.equal(j.finishReason, "length");
  assert.deepEqual(j.usage, {
    promptTokens: 35,
    completionTokens: 2,
    imageTokens: 4,
    cachedTokens: 0,
  });
  // Not the float model's " retired retired": q4 moves this model's logits by up to ~8 (of ≈ 35;
  // BENCHMARKS.md) and its greedy answer, measured on lavapipe, is id 132614 (first step 22.81 vs
  // 22.59 for the runner-up).
  assert.equal(j.text, "セットセット");
});

Deno.test("qvq generate streams the answer to stdout and a summary to stderr", async () => {
  const r = await cli([
    "generate",
    ...TINY_F32,
    "--prompt",
    "Write one sentence about the sea.",
    "--max-tokens",
    "4",
    "--stop",
    "ed ret",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, " retir\n");
  assert.match(r.err, /^\[stop\] 26 prompt \+ 2 generated tokens/);
});

Deno.test("qvq generate and chat report an out-of-range option as bad usage (exit 2, its flag named), before loading the model", async () => {
  // A negative number is the option's value with or without "=".
  const cases: [string[], RegExp][] = [
    [["--temperature=-1"], /--temperature must be .* got -1/],
    [["--temperature", "-1"], /--temperature must be .* got -1/],
    [["--max-tokens", "0"], /--max-tokens must be an integer in \[1, 8192\], got 0/],
    [["--top-p", "2"], /--top-p must be/],
    [["--seed", "-3"], /--seed must be/],
    [["--presence-penalty", "2.5"], /--presence-penalty must be a number in \[-2, 2\]/],
    [["--frequency-penalty=-3"], /--frequency-penalty must be .* got -3/],
    [["--stop", ""], /--stop must be a non-empty string/],
  ];
  for (const [flag, msg] of cases) {
    const r = await cli(["generate", "--model", "/nonexistent-model", "--prompt", "hi", ...flag]);
    assert.equal(r.code, 2, `${flag.join(" ")}: ${r.err}`);
    assert.match(r.err, msg, flag.join(" "));
    assert.match(r.err, /usage: qvq generate/, flag.join(" "));
  }
  // chat checks them at start too (it went on to load the model, then failed every message).
  const r = await cli(["chat", "--model", "/nonexistent-model", "--max-tokens", "0"], "hello\n");
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--max-tokens must be an integer in \[1, 8192\], got 0/);
});

Deno.test("qvq generate stops quietly when its stdout is closed (piped into head)", async () => {
  let err = "", writes = 0;
  const io: Io = {
    out: () => {
      writes++;
      throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
    },
    err: (t) => void (err += t),
    stdin: () => new Blob([""]).stream(),
  };
  const code = await main(["generate", ...TINY_F32, "--prompt", "hi", ...GREEDY_2], io);
  assert.equal(code, 0);
  assert.equal(writes, 1, "nothing written after the pipe closed");
  assert.equal(err, "");
});

Deno.test("qvq says so in a line when stdout cannot be written (a full disk), exit 1", async () => {
  const main = new URL("./main.ts", import.meta.url).pathname;
  const { code, stderr } = await new Deno.Command("bash", {
    args: [
      "-c",
      `echo '["hi"]' | "${Deno.execPath()}" run -A "${main}" tokenize --model "${TINY_DIR}" > /dev/full`,
    ],
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 1, err);
  assert.match(err, /^error: cannot write the output to stdout: No space left on device/);
  assert.doesNotMatch(err, /\bat \S+:\d+:\d+/); // no stack trace
});

Deno.test("qvq logits writes the reference tensors, matching transformers on case 0", async () => {
  const out = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    const r = await cli([
      "logits",
      ...TINY_F32,
      ...CASE0,
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.err);
    const got = await readSafetensors(await Deno.readFile(out));
    const want = await readSafetensors(
      await Deno.readFile(`${TINY_DIR}reference/case0.safetensors`),
    );
    for (
      const name of ["input_ids", "image_grid_thw", "pixel_values", "image_embeds", "logits_last"]
    ) {
      const g = got.get(name)!, w = want.get(name)!;
      assert.ok(g, `${name} written`);
      assert.equal(g.dtype, w.dtype, `${name} dtype`);
      assert.deepEqual(g.shape, w.shape, `${name} shape`);
    }
    for (const name of ["input_ids", "image_grid_thw", "pixel_values"]) {
      assert.deepEqual(got.get(name)!.data, want.get(name)!.data, name);
    }
    const ref = await readReferenceCase(0);
    const maxAbs = (a: ArrayLike<number>) => maxAbsDiff(a, new Float32Array(a.length));
    // f32 weights: the model parity tests' tolerances (tests/parity_test.ts).
    assert.ok(
      maxAbsDiff(got.get("image_embeds")!.data, ref.imageEmbeds) <=
        1e-5 * Math.max(1, maxAbs(ref.imageEmbeds)),
    );
    assert.ok(
      maxAbsDiff(got.get("logits_last")!.data, ref.logitsLast) <= 1e-4 * maxAbs(ref.logitsLast),
    );
  } finally {
    await Deno.remove(out);
  }
});

Deno.test("deno task qvq reads and writes relative paths from the directory it was run in", async () => {
  const root = new URL("../../", import.meta.url).pathname;
  const dir = await Deno.makeTempDir({ dir: root, prefix: "_cli_cwd_" });
  try {
    await Deno.copyFile(PNG0, `${dir}/in.png`);
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "-q",
        "qvq",
        "preprocess",
        "--model",
        TINY_DIR,
        "--image",
        "in.png",
        "--out",
        "o.st",
      ],
      cwd: dir,
      // deno task keeps an INIT_CWD it finds (as npm does): under `deno task test` it would be the
      // repository root's.
      env: Object.fromEntries(
        Object.entries(Deno.env.toObject()).filter(([k]) => k !== "INIT_CWD"),
      ),
      clearEnv: true,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.deepEqual(
      (await readSafetensors(await Deno.readFile(`${dir}/o.st`))).get("image_grid_thw")!.shape,
      [1, 3],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qvq preprocess writes pixel_values and image_grid_thw equal to transformers'", async () => {
  const out = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    const png1 = `${TINY_DIR}reference/case1_0.png`;
    const r = await cli([
      "preprocess",
      "--model",
      TINY_DIR,
      "--image",
      PNG0,
      "--image",
      png1,
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.err);
    const got = await readSafetensors(await Deno.readFile(out));
    const [c0, c1] = [await readReferenceCase(0), await readReferenceCase(1)];
    assert.deepEqual(got.get("image_grid_thw")!.shape, [2, 3]);
    assert.deepEqual(Array.from(got.get("image_grid_thw")!.data), [
      ...c0.gridThw.flat(),
      ...c1.gridThw.flat(),
    ]);
    assert.deepEqual(got.get("pixel_values")!.shape, [16 + 48, 1176]);
    const pv = got.get("pixel_values")!.data as Float32Array;
    assert.deepEqual(pv.subarray(0, 16 * 1176), c0.pixelValues);
    assert.deepEqual(pv.subarray(16 * 1176), c1.pixelValues);
  } finally {
    await Deno.remove(out);
  }
});

Deno.test("qvq tokenize and detokenize read JSON on stdin", async () => {
  const t = await cli(["tokenize", "--model", TINY_DIR], '["Hello world"]');
  assert.equal(t.code, 0, t.err);
  assert.equal(t.out, "[[9707,1879]]\n");
  const d = await cli(
    ["detokenize", "--model", TINY_DIR, "--skip-special-tokens"],
    "[[151644, 9707, 1879]]",
  );
  assert.equal(d.code, 0, d.err);
  assert.equal(d.out, '["Hello world"]\n');
  const bad = await cli(["tokenize", "--model", TINY_DIR], "not json");
  assert.equal(bad.code, 1);
  assert.match(bad.err, /not valid JSON/);
});

Deno.test("qvq generate --video answers as transformers does, frames from a list or a directory", async () => {
  const dir = `${TINY_DIR}../video/`;
  const ref = JSON.parse(await Deno.readTextFile(`${dir}cases.json`)).cases[0]; // 5 frames
  const frames = ref.frames.map((f: string) => `${dir}${f}`);
  const tmp = await Deno.makeTempDir();
  try {
    // A directory's frames sorted by name; other files skipped.
    for (const [k, f] of frames.entries()) await Deno.copyFile(f, `${tmp}/frame_${k}.png`);
    await Deno.writeTextFile(`${tmp}/notes.txt`, "not a frame");
    for (const video of [frames.join(","), tmp]) {
      const r = await cli([
        "generate",
        ...TINY_F32,
        "--video",
        video,
        "--prompt",
        ref.prompt,
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--json",
      ]);
      assert.equal(r.code, 0, r.err);
      const j = JSON.parse(r.out);
      assert.equal(j.text, ref.generated_text);
      assert.equal(j.usage.promptTokens, ref.seq_len);
      assert.equal(j.usage.imageTokens, 18); // grid [3, 4, 6]: 72 patches, 18 tokens
    }
    const echo = await cli([
      "generate",
      ...TINY_F32,
      ...GREEDY_2,
      "--video",
      tmp,
      "--prompt",
      "hi",
      "--echo",
    ]);
    assert.match(echo.out, /<\|vision_start\|><\|video_pad\|>×18<\|vision_end\|>/);
    const empty = await Deno.makeTempDir();
    const none = await cli(["generate", "--model", TINY_DIR, "--video", empty, "--prompt", "hi"]);
    assert.equal(none.code, 1);
    assert.match(none.err, /--video .*: the directory has no PNG, JPEG or WebP frames/);
    await Deno.remove(empty);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("videoFramePaths() lists a directory's frames by name, numbers by value, or splits a list", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const n of ["f10.png", "f2.JPG", "f1.webp", "notes.txt", "f3.gif"]) {
      await Deno.writeFile(`${dir}/${n}`, new Uint8Array(1));
    }
    assert.deepEqual(await videoFramePaths(`${dir}/`), [
      `${dir}/f1.webp`,
      `${dir}/f2.JPG`,
      `${dir}/f10.png`,
    ]);
    assert.deepEqual(await videoFramePaths("a.png,b.png,"), ["a.png", "b.png"]);
    assert.deepEqual(await videoFramePaths(`${dir}/f10.png`), [`${dir}/f10.png`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qvq generate --video refuses a video file, saying how to extract its frames, and names a frame that is no image as a video frame", async () => {
  // A video file where its frames go, the first thing a user tries: it was refused as an image
  // ("unsupported image format (unknown signature) … convert other formats first").
  const clip = new URL("../../tests/fixtures/video/clip.webm", import.meta.url).pathname;
  const model = ["generate", "--model", "/nonexistent/model", "--prompt", "hi"];
  for (const video of [clip, "/nonexistent/holiday.MP4"]) {
    const r = await cli([...model, "--video", video]);
    assert.equal(r.code, 1, r.err);
    assert.equal(
      r.err,
      `error: --video ${video}: a video file, where qvq takes a video's frames (image files): ` +
        `extract them first, e.g. mkdir frames && ffmpeg -i "${video}" -vf fps=2 ` +
        `frames/%04d.jpg, then --video frames\n`,
    );
  }
  const dir = await Deno.makeTempDir();
  try {
    const { text } = await badImageFiles(dir);
    const frame = await cli([...model, "--video", `${PNG0},${text}`]);
    assert.equal(frame.code, 1, frame.err);
    assert.match(frame.err, /^error: video frame ".*notes\.png": /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qvq generate names an --image file that is missing or empty", async () => {
  const empty = await Deno.makeTempFile({ suffix: ".png" });
  try {
    for (
      const [path, msg] of [[empty, /image ".*\.png" is an empty file/], [
        "/nonexistent.png",
        /cannot read image "\/nonexistent\.png"/,
      ]] as const
    ) {
      const r = await cli(["generate", "--model", TINY_DIR, "--image", path, "--prompt", "hi"]);
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, msg);
    }
    // A --video frame is named as one.
    const frame = await cli([
      "generate",
      "--model",
      TINY_DIR,
      "--video",
      "/nonexistent.png",
      "--prompt",
      "hi",
    ]);
    assert.equal(frame.code, 1, frame.err);
    assert.match(frame.err, /cannot read video frame "\/nonexistent\.png"/);
  } finally {
    await Deno.remove(empty);
  }
});

Deno.test("qvq generate refuses a file that is no image, an image the processor would refuse, or a video of mixed sizes or too many frames, before it loads a model", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { text, wide, thin } = await badImageFiles(dir);
    // No model there: an error about the image shows the model was not loaded first.
    const model = ["generate", "--model", `${dir}/no-model`, "--prompt", "hi"];
    const image = await cli([...model, "--image", text]);
    assert.equal(image.code, 1, image.err);
    assert.match(image.err, /^error: image ".*notes\.png": /);
    const video = await cli([...model, "--video", `${PNG0},${wide}`]);
    assert.equal(video.code, 1, video.err);
    assert.match(video.err, /^error: video frame ".*wide\.png" is 8x4 pixels but frame /);
    const extreme = await cli([...model, "--image", thin]);
    assert.equal(extreme.code, 1, extreme.err);
    assert.match(extreme.err, /^error: image ".*thin\.png": .*aspect ratio/);
    const long = await cli([...model, "--video", Array(769).fill(PNG0).join(",")]);
    assert.equal(long.code, 1, long.err);
    assert.match(long.err, /^error: --video .*: 769 frames, more than a video's 768/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generateOptions() reads --format json as JSON mode, and refuses other formats", () => {
  const TO_CONTEXT = { maxNewTokens: Infinity }; // without --max-tokens: to the context's end
  assert.deepEqual(generateOptions({ format: "json" } as Values, "usage"), {
    ...TO_CONTEXT,
    responseFormat: "json_object",
  });
  // A text answer stops a loop by default (an answer held to a format does not).
  assert.deepEqual(generateOptions({ format: "text" } as Values, "usage"), {
    ...TO_CONTEXT,
    stopOnLoop: true,
  });
  assert.deepEqual(generateOptions({ "max-tokens": "7" } as Values, "usage"), {
    maxNewTokens: 7,
    stopOnLoop: true,
  });
  const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"] };
  assert.deepEqual(
    generateOptions({ "json-schema": JSON.stringify(schema) } as Values, "usage"),
    { ...TO_CONTEXT, responseFormat: { jsonSchema: schema } },
  );
  const file = Deno.makeTempFileSync({ suffix: ".json" });
  Deno.writeTextFileSync(file, JSON.stringify(schema));
  assert.deepEqual(
    generateOptions({ "json-schema": file } as Values, "usage").responseFormat,
    { jsonSchema: schema },
  );
  Deno.removeSync(file);
  assert.deepEqual(generateOptions({ regex: "\\d+" } as Values, "usage"), {
    ...TO_CONTEXT,
    responseFormat: { regex: "\\d+" },
  });
  for (
    const [v, message] of [
      [
        { "json-schema": '{"type": "string", "pattern": "(a)\\\\1"}' },
        /^--json-schema: schema\.pattern "\(a\)\\\\1" at 5: backreferences are not supported/,
      ],
      [{ "json-schema": "/no/such.json" }, /--json-schema \/no\/such\.json: cannot read it/],
      [{ "json-schema": "{type" }, /--json-schema: not JSON/],
      [{ "json-schema": "{}", format: "json" }, /give one of --format json, --json-schema and/],
      [{ regex: "a(?=b)" }, /^--regex: regex "a\(\?=b\)" at 2: lookarounds/],
    ] as const
  ) {
    assert.throws(
      () => generateOptions(v as unknown as Values, "usage"),
      (e) => e instanceof UsageError && message.test(e.message),
      JSON.stringify(v),
    );
  }
  assert.throws(
    () => generateOptions({ format: "yaml" } as Values, "usage"),
    (e) => e instanceof UsageError && /--format takes json or text, got "yaml"/.test(e.message),
  );
});

Deno.test("generateOptions() reads --stop-token-id and --logit-bias, naming a bad one", () => {
  const usage = "usage: test";
  assert.deepEqual(
    generateOptions({
      "stop-token-id": ["151645", " 7 "],
      "logit-bias": ["151645=-100", "9 = 2.5"],
    } as Values, usage),
    {
      maxNewTokens: Infinity,
      stopTokenIds: [151645, 7],
      logitBias: { 151645: -100, 9: 2.5 },
      stopOnLoop: true,
    },
  );
  for (
    const [v, msg] of [
      [{ "stop-token-id": ["x"] }, /--stop-token-id takes integer token ids, got "x"/],
      [{ "stop-token-id": ["-3"] }, /^--stop-token-id/],
      [{ "logit-bias": ["151645"] }, /--logit-bias takes <token id>=<bias>, e\.g\. 151645=-100/],
      [{ "logit-bias": ["1=abc"] }, /--logit-bias takes <token id>=<bias>/],
      [
        { "logit-bias": ["151643=-101"] },
        /^--logit-bias 151643=… must be a number in \[-100, 100\]/,
      ],
    ] as const
  ) {
    assert.throws(
      () => generateOptions(v as unknown as Values, usage),
      (e) => e instanceof UsageError && msg.test(e.message),
      JSON.stringify(v),
    );
  }
});

Deno.test({
  name: "qvq generate stopped by Ctrl+C prints the answer so far and exits 130, not 0",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "src/cli/main.ts",
        "generate",
        "--model",
        TINY_DIR,
        "--prompt",
        "Tell me a long story.",
        "--max-tokens",
        "8192",
        "--ignore-eos",
      ],
      cwd: new URL("../../", import.meta.url),
      env: { XDG_RUNTIME_DIR: "/tmp" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    let out = "";
    // Ctrl+C once its first text is out; should none come, the guard ends it within the minute.
    const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
    while (out === "") {
      const r = await reader.read();
      if (r.done) break;
      out += new TextDecoder().decode(r.value);
    }
    child.kill("SIGINT");
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      out += new TextDecoder().decode(r.value);
    }
    const [status, err] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
    ]);
    clearTimeout(guard);
    assert.equal(status.code, 130, err);
    assert.match(err, /^\[abort\] \d+ prompt \+ \d+ generated tokens/m);
    assert.ok(out.length > 0);
  },
});

Deno.test("generateOptions() reads --ignore-eos, --min-p and --stop-on-loop", () => {
  const v = { "ignore-eos": true, "min-p": "0.1", "stop-on-loop": true } as Values;
  assert.deepEqual(generateOptions(v, "usage"), {
    maxNewTokens: Infinity,
    ignoreEos: true,
    minP: 0.1,
    stopOnLoop: true,
  });
  assert.deepEqual(generateOptions({} as Values, "usage"), {
    maxNewTokens: Infinity,
    stopOnLoop: true,
  });
  // The loop stop is off where the answer is to run to --max-tokens, or where asked.
  for (const off of [{ "ignore-eos": true }, { "no-stop-on-loop": true }]) {
    assert.equal(
      generateOptions(off as Values, "usage").stopOnLoop,
      undefined,
      Object.keys(off)[0],
    );
  }
  assert.throws(
    () => generateOptions({ "stop-on-loop": true, "no-stop-on-loop": true } as Values, "usage"),
    (e) => e instanceof UsageError && /one of --stop-on-loop and --no-stop-on-loop/.test(e.message),
  );
});

Deno.test("qvq generate --prompt - reads the prompt from stdin, as --prompt gives it", async () => {
  const question = "What value should be filled in the blank space?\nThink step by step.";
  // The line end echo leaves is not part of the message.
  const piped = await cli(
    ["generate", ...TINY_F32, "--prompt", "-", ...GREEDY_2, "--json"],
    `${question}\n`,
  );
  const given = await cli(["generate", ...TINY_F32, "--prompt", question, ...GREEDY_2, "--json"]);
  assert.equal(piped.code, 0, piped.err);
  const [a, b] = [piped, given].map((r) => JSON.parse(r.out));
  assert.equal(a.text, b.text);
  assert.equal(a.usage.promptTokens, b.usage.promptTokens);
  assert.ok(a.usage.promptTokens > 20);
});

Deno.test("qvq tokenize and generate --prompt - say what they wait for when stdin is a terminal", async () => {
  // Without a pipe they read the terminal: once in silence, as if hung.
  const run = async (args: string[], terminal: boolean, stdin: string) => {
    let out = "", err = "";
    const code = await main(args, {
      out: (t) => void (out += t),
      err: (t) => void (err += t),
      stdin: () => new Blob([stdin]).stream(),
      stdinIsTerminal: () => terminal,
    });
    return { code, out, err };
  };
  const typed = await run(["tokenize", "--model", TINY_DIR], true, '["Hello"]');
  assert.equal(typed.code, 0, typed.err);
  assert.equal(typed.out.trim(), "[[9707]]");
  assert.match(typed.err, /^\(reading a JSON array of strings, .* end it with Ctrl\+[DZ]/);
  const ids = await run(["detokenize", "--model", TINY_DIR], true, "[[9707]]");
  assert.match(ids.err, /^\(reading a JSON array of id arrays, /);
  const piped = await run(["tokenize", "--model", TINY_DIR], false, '["Hello"]');
  assert.equal(piped.err, "");
  // --prompt -: read (and said) before the model loads; a missing --model is refused before both.
  const prompt = await run(["generate", "--prompt", "-"], true, "hi");
  assert.equal(prompt.code, 2);
  assert.match(prompt.err, /^error: --model is required/);
  const reading = await run(
    ["generate", "--model", "/nonexistent/dir", "--prompt", "-"],
    true,
    "hi",
  );
  assert.match(reading.err, /^\(reading the prompt from the terminal; end it with Ctrl\+[DZ]/);
});
