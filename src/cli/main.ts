/**
 * The `qvq` command line: `deno task qvq <command> [options]`.
 *
 * Exit codes: 0 success, 1 a failure (bad model file, GPU error, bad input), 2 bad usage.
 * @module
 */
import { QvqError } from "../errors.ts";
import { type Io, parseCommand, readStdin, requireModelDir, stdio, UsageError } from "./_args.ts";

/** One subcommand: what it does (for the overview) and how to run it. */
interface Command {
  summary: string;
  run(args: string[], io: Io): Promise<number | void>;
}

// Imported on use: `qvq tokenize` should not load the GPU code, nor `qvq generate` the server.
const COMMANDS: Record<string, Command> = {
  tokenize: {
    summary: "text → ids: a JSON array of strings on stdin, id arrays on stdout",
    run: (a, io) => tokenizeLike(a, io, false),
  },
  detokenize: {
    summary: "ids → text: a JSON array of id arrays on stdin, strings on stdout",
    run: (a, io) => tokenizeLike(a, io, true),
  },
  preprocess: {
    summary: "images → pixel_values and image_grid_thw (safetensors)",
    run: async (a, io) => (await import("./_preprocess.ts")).preprocessCommand(a, io),
  },
  generate: {
    summary: "answer a prompt (with images, videos), streaming the text",
    run: async (a, io) => (await import("./_generate.ts")).generateCommand(a, io),
  },
  logits: {
    summary: "one forward pass: input ids, image embeddings and last logits (safetensors)",
    run: async (a, io) => (await import("./_logits.ts")).logitsCommand(a, io),
  },
  chat: {
    summary: "chat in the terminal (streaming; /image, /video, /reset, /exit)",
    run: async (a, io) => (await import("./_chat.ts")).chatCommand(a, io),
  },
};

const TOKENIZE_USAGE = `usage: qvq tokenize --model <dir|url> < texts.json
       qvq detokenize --model <dir|url> [--skip-special-tokens] < ids.json

tokenize reads a JSON array of strings on stdin and prints a JSON array of id arrays;
detokenize reads a JSON array of id arrays and prints a JSON array of strings.
`;

/** `qvq tokenize` / `qvq detokenize`: argument parsing around src/cli/_tokenize.ts. */
async function tokenizeLike(args: string[], io: Io, decode: boolean): Promise<number> {
  const v = parseCommand(args, {
    model: { type: "string" },
    "skip-special-tokens": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, TOKENIZE_USAGE);
  if (v.help) {
    await io.out(TOKENIZE_USAGE);
    return 0;
  }
  const model = await requireModelDir(v, TOKENIZE_USAGE);
  if (!decode && v["skip-special-tokens"]) {
    throw new UsageError("--skip-special-tokens applies to detokenize only", TOKENIZE_USAGE);
  }
  const stdin = await readStdin(
    io,
    decode
      ? "a JSON array of id arrays, e.g. [[9707]],"
      : 'a JSON array of strings, e.g. ["Hello"],',
  );
  const t = await import("./_tokenize.ts");
  await io.out(
    decode
      ? await t.detokenizeCommand(model, stdin, {
        skipSpecialTokens: v["skip-special-tokens"] === true,
      })
      : await t.tokenizeCommand(model, stdin),
  );
  return 0;
}

/** The overview printed by `qvq`, `qvq help` and on an unknown command. */
export function overview(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) =>
    `  ${name.padEnd(width)}  ${c.summary}`
  );
  return `usage: qvq <command> [options]\n\ncommands:\n${lines.join("\n")}\n\n` +
    `Run "qvq <command> --help" for a command's options.\n`;
}

/**
 * What follows a usage error: the command's synopsis (its usage text up to the first blank line)
 * and where its options are — not its whole option list, which (50 lines for generate) would
 * scroll the error itself off the terminal.
 */
function usageLines(usage: string, command: string): string {
  const synopsis = usage.split(/\n\s*\n/)[0].trimEnd();
  return `${synopsis}\n\nRun "qvq ${command} --help" for its options.\n`;
}

/**
 * Runs the CLI with `args` (without the program name) and returns the exit code.
 *
 * @example
 * ```ts ignore
 * const code = await main(["generate", "--model", "tests/fixtures/tiny-qwen2vl", "--prompt", "Hi"]);
 * ```
 */
export async function main(args: string[], io: Io = stdio): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    await (name === undefined ? io.err : io.out)(overview());
    return name === undefined ? 2 : 0;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    await io.err(`error: unknown command "${name}"\n\n${overview()}`);
    return 2;
  }
  try {
    return (await cmd.run(rest, io)) ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      await io.err(`error: ${e.message}\n\n${usageLines(e.usage, name)}`);
      return 2;
    }
    if (e instanceof QvqError) {
      await io.err(`error: ${e.message}\n`);
      return 1;
    }
    // stdout closed by its reader (`qvq generate … | head`): nothing left to write to.
    if (e instanceof Deno.errors.BrokenPipe) return 0;
    throw e;
  }
}

if (import.meta.main) {
  // `deno task qvq` runs this in the repository root; the paths a user types (--image, --out,
  // --model) are relative to where they ran it, which the task passes as QVQ_TASK_CWD (its
  // INIT_CWD). Not INIT_CWD itself: every process under a task inherits that one.
  const env = { name: "env", variable: "QVQ_TASK_CWD" } as const;
  const from = Deno.permissions.querySync(env).state === "granted"
    ? Deno.env.get("QVQ_TASK_CWD")
    : undefined;
  if (from) Deno.chdir(from);
  Deno.exit(await main(Deno.args));
}
