/**
 * `qvq chat`: an interactive chat in the terminal. Each line is a user message; the answer streams
 * as it is written. `/image <path>` attaches an image to the next message (`/video <frames>` a
 * video), `/reset` starts over, `/exit` (or end of input) quits; Ctrl+C stops the answer being
 * written. Works with piped stdin too (no prompt is printed then), which is how it is tested.
 * @module
 */
import type { ChatEngine, ChatMessage, ContentPart, GenerateOptions } from "../generate/types.ts";
import type { LoadEngineOptions } from "../server/_engine.ts";
import { ContextLengthError, DeviceLostError } from "../errors.ts";
import {
  checkFrameSizes,
  checkImageFile,
  type Io,
  LOAD_OPTIONS,
  loadOptions,
  onInterrupt,
  parseCommand,
  requireString,
  stdio,
} from "./_args.ts";
import { generateOptions, SAMPLING_OPTIONS, videoFramePaths } from "./_generate.ts";

const USAGE = `usage: qvq chat --model <dir|url|org/name> [options]

Chat with a Qwen2-VL / QVQ model in the terminal; the answer streams as it is written.

options:
  --model <dir|url|id>      model directory, URL, or Hugging Face hub id (downloaded and cached)
  --system <text>           a system prompt instead of the template's default ("": none)
  --max-tokens <n>          most tokens per answer (default: as many as the context holds,
                            up to 8192)
  --temperature <t>         0 = greedy
  --top-p <p>  --top-k <k>  --min-p <m>  --seed <n>  --repetition-penalty <r>
  --presence-penalty <p>  --frequency-penalty <f>
                            OpenAI's penalties on tokens the answer already has (-2..2)
  --format json             JSON mode: every answer is a JSON object (ask for one)
  --json-schema <file|json> structured output: every answer is an instance of this JSON schema
  --regex <pattern>         every answer is a match of this regular expression, whole
  --stop <text>             stop before this text; repeat for several
  --stop-token-id <id>      also stop at this token id; repeat for several
  --logit-bias <id>=<bias>  add -100..100 to a token's logit (-100 bans it); repeat for several
  --stop-on-loop            stop an answer that keeps repeating itself (QVQ can reason in
                            circles; the default, except with a format); --no-stop-on-loop: never
  --dtype <f16|f32>         weight dtype on the GPU (default f16 where supported)
  --quant <q8|q4|f16>       quantize the decoder's matrices while loading: 8.5 / 4.5 bits per
                            weight; q4 costs more accuracy (BENCHMARKS.md); f16: none (default)
  --vision-quant <q8|f16>   quantize the vision tower's matrices to q8 and run them as int8
                            GEMMs: faster image encoding, image embeddings ~2 % off; f16: none
  --kv-cache-dtype <f32|f16>  the KV cache's type: f32 (default), or f16 for half its memory
                            (long contexts on a small GPU; logits move ~1e-4)

in the chat:
  /image <path>   attach an image (PNG, JPEG, WebP) to your next message
  /video <frames> attach a video to your next message: a directory of its frames (sorted by
                  name) or the frame files, comma-separated (e.g. from mkdir frames &&
                  ffmpeg -i in.mp4 -vf fps=2 frames/%04d.jpg)
  /reset          forget the conversation
  /exit           quit (also Ctrl+D); Ctrl+C stops the current answer
`;

const HELP = "commands: /image <path>, /video <frames>, /reset, /exit\n";

/** Where the chat reads and writes; the CLI passes the terminal, tests pass streams. */
export interface ChatIo extends Io {
  /** Lines typed by the user. */
  input: ReadableStream<Uint8Array>;
  /** Print a prompt before each line (when input is a terminal). */
  interactive: boolean;
  /** Reads an attached image. */
  readFile(path: string): Promise<Uint8Array>;
}

/** Lines of `input`, without their line endings. */
async function* lines(input: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const text of input.pipeThrough(new TextDecoderStream())) {
    buffer += text;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
    }
  }
  if (buffer) yield buffer;
}

/**
 * Runs the chat loop over `io` with a loaded engine until `/exit` or the end of input.
 * Options apply to every answer.
 */
export async function runChat(
  engine: ChatEngine,
  io: ChatIo,
  options: Omit<GenerateOptions, "signal"> & { system?: string } = {},
): Promise<void> {
  const { system, ...generateOptions } = options;
  // An empty --system is an empty system turn (no default prompt), as `qvq generate` takes it.
  const start: ChatMessage[] = system !== undefined ? [{ role: "system", content: system }] : [];
  let history = [...start];
  let attached: ContentPart[] = []; // images and videos for the next message, in order
  const prompt = () => (io.interactive ? io.out("\n> ") : undefined);

  if (io.interactive) await io.err(`qvq chat with ${engine.modelId}. ${HELP}`);
  await prompt();
  let exited = false;
  for await (const raw of lines(io.input)) {
    const line = raw.trim();
    if (line === "/exit" || line === "/quit") {
      exited = true;
      break;
    }
    if (line === "" || line === "/help") {
      if (line === "/help") await io.err(HELP);
      await prompt();
      continue;
    }
    if (line === "/reset") {
      history = [...start];
      attached = [];
      await io.err("(conversation cleared)\n");
      await prompt();
      continue;
    }
    const media = line.match(/^\/(image|video)\s+(.+)$/);
    if (media) {
      const path = media[2].trim().replace(/^(["'])(.*)\1$/, "$2");
      try {
        // Checked now: a file that is no image is refused here, not with the next message.
        const read = async (f: string, what?: string) =>
          checkImageFile(await io.readFile(f), f, what);
        if (media[1] === "image") {
          attached.push({ type: "image", image: (await read(path)).bytes });
          await io.err(`(attached ${path}; it goes with your next message)\n`);
        } else {
          const frames = await videoFramePaths(path, "/video");
          const video = [];
          for (const f of frames) video.push(await read(f, "video frame")); // one decoded at a time
          checkFrameSizes(video, frames);
          attached.push({ type: "video", video: video.map((f) => f.bytes) });
          await io.err(
            `(attached a video of ${frames.length} frames; it goes with your next message)\n`,
          );
        }
      } catch (error) {
        await io.err(`error: cannot read ${media[1]} "${path}": ${(error as Error).message}\n`);
      }
      await prompt();
      continue;
    }
    if (line === "/image" || line === "/video") {
      await io.err(
        `error: ${line} needs a path: ${line} ${line === "/image" ? "<path>" : "<frames>"}\n`,
      );
      await prompt();
      continue;
    }
    if (line.startsWith("/")) {
      await io.err(`error: unknown command "${line.split(/\s/)[0]}". ${HELP}`);
      await prompt();
      continue;
    }

    const content: ContentPart[] = [...attached, { type: "text", text: line }];
    const turn: ChatMessage = { role: "user", content: attached.length ? content : line };
    attached = [];
    const abort = new AbortController();
    const stopListening = io.interactive ? onInterrupt(abort) : () => {};
    let answer = "";
    try {
      for await (
        const event of engine.generate([...history, turn], {
          ...generateOptions,
          signal: abort.signal,
        })
      ) {
        if (event.type === "delta") {
          answer += event.text;
          await io.out(event.text);
        } else {
          const { usage, timings, finishReason } = event.result;
          answer = event.result.text;
          const ended = finishReason === "stop" ? "" : `, ended: ${finishReason}`;
          // The prompt cache served the conversation so far: say so, as llama.cpp reports it.
          const cached = usage.cachedTokens > 0
            ? `, ${usage.cachedTokens} of ${usage.promptTokens} prompt tokens cached`
            : "";
          await io.out("\n");
          await io.err(
            `[${usage.completionTokens} tokens, ${
              timings.tokensPerSecond.toFixed(1)
            } tokens/s${cached}${ended}]\n`,
          );
        }
      }
      history.push(turn, { role: "assistant", content: answer });
    } catch (error) {
      await io.out("\n");
      // Nothing more can run on a lost device: the chat ends with its error.
      if (error instanceof DeviceLostError || engine.failure) throw engine.failure ?? error;
      // The turn is dropped: the user can fix the image or message and try again — or, where
      // the conversation itself has filled the context, start over.
      const full = error instanceof ContextLengthError && history.length > 0;
      await io.err(
        `error: ${(error as Error).message}${
          full ? "\n(the conversation fills the model's context: /reset starts a new one)" : ""
        }\n`,
      );
    } finally {
      stopListening();
    }
    await prompt();
  }
  // Ctrl+D at the prompt: the shell's prompt on a line of its own.
  if (io.interactive && !exited) await io.out("\n");
}

/** Loads a chat engine from a model directory, URL or hub id. */
export type EngineLoader = (
  model: string,
  options: Pick<LoadEngineOptions, "dtype" | "quant" | "visionQuant" | "kvCacheDtype">,
) => Promise<ChatEngine>;

/**
 * `qvq chat`: parses `args`, loads the model and chats on stdin/stdout until `/exit` or Ctrl+D.
 * `load` and `input` are for tests; the CLI passes neither.
 *
 * @example
 * ```ts ignore
 * await chatCommand(["--model", "tests/fixtures/tiny-qwen2vl"]);
 * ```
 */
export async function chatCommand(
  args: string[],
  io: Io = stdio,
  load?: EngineLoader,
  input: ReadableStream<Uint8Array> = Deno.stdin.readable,
): Promise<number> {
  const v = parseCommand(args, {
    model: { type: "string" },
    system: { type: "string" },
    ...SAMPLING_OPTIONS,
    ...LOAD_OPTIONS,
    stop: { type: "string", multiple: true },
    "stop-on-loop": { type: "boolean" },
    "no-stop-on-loop": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, USAGE);
  if (v.help) {
    await io.out(USAGE);
    return 0;
  }
  const model = requireString(v, "model", USAGE);
  const options = generateOptions(v, USAGE);
  const loadOpts = loadOptions(v, USAGE);
  const loader = load ?? (await import("../server/_engine.ts")).loadEngine;
  const engine = await loader(model, loadOpts);
  await runChat(engine, {
    ...io,
    input,
    interactive: input === Deno.stdin.readable && Deno.stdin.isTerminal(),
    readFile: (path) => Deno.readFile(path),
  }, { ...options, system: typeof v.system === "string" ? v.system : undefined });
  return 0;
}
