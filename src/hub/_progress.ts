/**
 * A one-line progress bar for downloads on stderr: bytes done of the total, percentage, speed and
 * time left, redrawn in place (at most 10 times a second) on a terminal, or a plain line every 10%
 * when stderr is a file or a pipe.
 * @module
 */

/** Where the bar is drawn. */
export interface ProgressSink {
  /** Writes text (no newline added). */
  write(text: string): void;
  /** True: redraw in place with "\r"; false: print a new line now and then. */
  readonly terminal: boolean;
}

/** stderr, written synchronously so the bar never interleaves badly with other output. */
export function stderrSink(): ProgressSink {
  const encoder = new TextEncoder();
  return {
    write: (text) => {
      const bytes = encoder.encode(text);
      for (let at = 0; at < bytes.length;) at += Deno.stderr.writeSync(bytes.subarray(at));
    },
    terminal: Deno.stderr.isTerminal(),
  };
}

/** Bytes as "512 B", "1.5 MB", "3.94 GB" (decimal units, as the hub shows sizes). */
export function formatBytes(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0, x = bytes;
  while (x >= 1000 && i < units.length - 1) (x /= 1000, i++);
  return i === 0 ? `${x} B` : `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)} ${units[i]}`;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h > 0
    ? `${h}h${String(m).padStart(2, "0")}m`
    : m > 0
    ? `${m}m${String(sec).padStart(2, "0")}s`
    : `${sec}s`;
}

const BAR_WIDTH = 24;
const REDRAW_MS = 100;

/** Progress of `total` bytes; `add()` as bytes arrive, `finish()` once. */
export class ProgressBar {
  #done = 0;
  #start = performance.now();
  #lastDraw = -Infinity;
  #lastDecile = -1;

  constructor(
    readonly label: string,
    readonly total: number,
    readonly sink: ProgressSink,
    /** Bytes already there (a resumed download): counted as done, not in the speed. */
    readonly resumed = 0,
  ) {
    this.#done = resumed;
  }

  /** The line as it would be drawn now. */
  line(now = performance.now()): string {
    const fraction = this.total > 0 ? Math.min(1, this.#done / this.total) : 1;
    const filled = Math.round(fraction * BAR_WIDTH);
    const seconds = (now - this.#start) / 1000;
    const speed = seconds > 0 ? (this.#done - this.resumed) / seconds : 0;
    const left = speed > 0 ? (this.total - this.#done) / speed : Infinity;
    return `${this.label} [${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ` +
      `${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(this.#done)}/${
        formatBytes(this.total)
      } ` +
      `${formatBytes(speed)}/s ETA ${formatSeconds(left)}`;
  }

  /** Counts `bytes` more and redraws if it is time. */
  add(bytes: number): void {
    this.#done += bytes;
    const now = performance.now();
    if (this.sink.terminal) {
      if (now - this.#lastDraw >= REDRAW_MS) {
        this.#lastDraw = now;
        this.sink.write(`\r${this.line(now)}\x1b[K`);
      }
    } else {
      const decile = Math.floor((this.#done / Math.max(1, this.total)) * 10);
      if (decile > this.#lastDecile && decile < 10) {
        this.#lastDecile = decile;
        this.sink.write(`${this.line(now)}\n`);
      }
    }
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    this.sink.write(this.sink.terminal ? `\r${this.line()}\x1b[K\n` : `${this.line()}\n`);
  }
}
