import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { detokenizeCommand, tokenizeCommand } from "./_tokenize.ts";

const MODEL_DIR = decodeURIComponent(
  new URL("../../tests/fixtures/tiny-qwen2vl", import.meta.url).pathname,
);
const CASES: { text: string; ids: number[]; decoded: string }[] = JSON.parse(
  await Deno.readTextFile(new URL("../../tests/fixtures/tokenizer_cases.json", import.meta.url)),
).cases;

Deno.test("tokenizeCommand() gives HF ids for every reference case", async () => {
  const out = await tokenizeCommand(MODEL_DIR, JSON.stringify(CASES.map((c) => c.text)));
  assert.ok(out.endsWith("]\n"));
  assert.deepEqual(JSON.parse(out), CASES.map((c) => c.ids));
});

Deno.test("detokenizeCommand() gives the HF decoding for every reference case", async () => {
  const out = await detokenizeCommand(MODEL_DIR, JSON.stringify(CASES.map((c) => c.ids)));
  assert.deepEqual(JSON.parse(out), CASES.map((c) => c.decoded));
});

Deno.test("detokenizeCommand() skips special tokens when asked", async () => {
  const out = await detokenizeCommand(MODEL_DIR, "[[151644, 872, 198, 6023, 151645]]", {
    skipSpecialTokens: true,
  });
  assert.deepEqual(JSON.parse(out), ["user\nhi"]);
});

Deno.test("tokenizeCommand() and detokenizeCommand() reject malformed stdin", async () => {
  await assert.rejects(
    tokenizeCommand(MODEL_DIR, "not json"),
    (e) => e instanceof InvalidInputError && /not valid JSON/.test(e.message),
  );
  await assert.rejects(
    tokenizeCommand(MODEL_DIR, '"Hello"'),
    (e) => e instanceof InvalidInputError && /array of strings/.test(e.message),
  );
  await assert.rejects(
    detokenizeCommand(MODEL_DIR, "[1, 2]"),
    (e) => e instanceof InvalidInputError && /array of id arrays/.test(e.message),
  );
  await assert.rejects(detokenizeCommand(MODEL_DIR, "[[999999999]]"), InvalidInputError);
});
