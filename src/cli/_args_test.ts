import assert from "node:assert/strict";
import { parseCommand, UsageError } from "./_args.ts";

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
