import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { parseCommand, readImageFile, UsageError } from "./_args.ts";

const options = {
  prompt: { type: "string" },
  seed: { type: "string" },
  stop: { type: "string", multiple: true },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;
const parse = (...args: string[]) => ({ ...parseCommand(args, options, "usage: test") });

Deno.test("parseCommand() takes a value that starts with a dash when it cannot be an option", () => {
  assert.deepEqual(parse("--prompt", "- list the items"), { prompt: "- list the items" });
  assert.deepEqual(parse("--prompt", "-5 degrees outside?"), { prompt: "-5 degrees outside?" });
  assert.deepEqual(parse("--seed", "-3", "--json"), { seed: "-3", json: true });
  assert.deepEqual(parse("--seed", "-.5"), { seed: "-.5" });
  assert.deepEqual(parse("--stop", "-x", "--stop", "--- end"), { stop: ["-x", "--- end"] });
  // A word that starts with a short option's letter is not that option.
  assert.deepEqual(parse("--prompt", "-hello"), { prompt: "-hello" });
  // A lone dash is a value already (standard input).
  assert.deepEqual(parse("--prompt", "-"), { prompt: "-" });
});

Deno.test("parseCommand() still refuses a forgotten value followed by an option", () => {
  for (const args of [["--prompt", "--json"], ["--prompt", "-h"], ["--prompt", "--seed", "3"]]) {
    assert.throws(
      () => parse(...args),
      (e) => e instanceof UsageError && /ambiguous/.test(e.message),
    );
  }
  assert.throws(() => parse("--prompt", "hi", "there"), /unexpected argument "there"/);
});

Deno.test("readImageFile() refuses a video file by its name, before reading it, saying how to give its frames", async () => {
  // The file does not exist: a refusal that read it first would say it cannot be read.
  for (const what of ["image", "video frame"]) {
    await assert.rejects(
      readImageFile("/nonexistent/clip.MP4", what),
      (e: Error) =>
        e instanceof InvalidInputError &&
        e.message.startsWith(`${what} "/nonexistent/clip.MP4" is a video file, where an image`) &&
        e.message.includes("--video (chat: /video)") &&
        e.message.includes('mkdir frames && ffmpeg -i "/nonexistent/clip.MP4" -vf fps=2'),
    );
  }
  // Other names are read as before.
  await assert.rejects(readImageFile("/nonexistent/cat.png"), /cannot read image/);
});
