/**
 * `qvq tokenize` and `qvq detokenize`: JSON in on stdin, JSON out on stdout, with the model's
 * tokenizer.json (see {@link Tokenizer}).
 *
 * @example
 * ```ts ignore
 * await tokenizeCommand("tests/fixtures/tiny-qwen2vl", '["Hello world"]'); // '[[9707,1879]]\n'
 * await detokenizeCommand("tests/fixtures/tiny-qwen2vl", "[[9707,1879]]"); // '["Hello world"]\n'
 * ```
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import { type DecodeOptions, Tokenizer } from "../tokenizer.ts";

function parseStdin(stdinText: string, expected: string): unknown {
  try {
    return JSON.parse(stdinText);
  } catch (e) {
    throw new InvalidInputError(
      `stdin is not valid JSON (${(e as Error).message}): pass ${expected}.`,
      { cause: e },
    );
  }
}

async function withTokenizer<T>(modelDir: string, f: (t: Tokenizer) => T): Promise<T> {
  using tok = await Tokenizer.load(modelDir);
  return f(tok);
}

/**
 * Encodes a JSON array of strings (`stdinText`) with the tokenizer in `modelDir`; returns a JSON
 * array of id arrays and a newline. Special tokens in the text are recognised.
 */
export async function tokenizeCommand(modelDir: string, stdinText: string): Promise<string> {
  const expected = 'a JSON array of strings, e.g. ["Hello world"]';
  const texts = parseStdin(stdinText, expected);
  if (!Array.isArray(texts) || !texts.every((t) => typeof t === "string")) {
    throw new InvalidInputError(
      `stdin must be ${expected}, got ${JSON.stringify(texts)?.slice(0, 80)}.`,
    );
  }
  const ids = await withTokenizer(modelDir, (t) => t.encodeBatch(texts).map((a) => Array.from(a)));
  return JSON.stringify(ids) + "\n";
}

/**
 * Decodes a JSON array of id arrays (`stdinText`) with the tokenizer in `modelDir`; returns a
 * JSON array of strings and a newline.
 */
export async function detokenizeCommand(
  modelDir: string,
  stdinText: string,
  opts: DecodeOptions = {},
): Promise<string> {
  const expected = "a JSON array of id arrays, e.g. [[9707, 1879]]";
  const lists = parseStdin(stdinText, expected);
  const ok = Array.isArray(lists) &&
    lists.every((l) => Array.isArray(l) && l.every((id) => typeof id === "number"));
  if (!ok) {
    throw new InvalidInputError(
      `stdin must be ${expected}, got ${JSON.stringify(lists)?.slice(0, 80)}.`,
    );
  }
  const texts = await withTokenizer(
    modelDir,
    (t) => (lists as number[][]).map((ids) => t.decode(ids, opts)),
  );
  return JSON.stringify(texts) + "\n";
}
