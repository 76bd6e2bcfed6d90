import assert from "node:assert/strict";
import { formatBytes, ProgressBar, type ProgressSink } from "./_progress.ts";

function collector(terminal: boolean): ProgressSink & { text: string[] } {
  const text: string[] = [];
  return { text, terminal, write: (t) => text.push(t) };
}

Deno.test("formatBytes() uses decimal units with three significant digits", () => {
  assert.deepEqual(
    [0, 999, 1000, 1536, 12_345_678, 3_940_000_000, 144e12].map(formatBytes),
    ["0 B", "999 B", "1.00 kB", "1.54 kB", "12.3 MB", "3.94 GB", "144 TB"],
  );
});

Deno.test("ProgressBar on a terminal redraws one line in place and ends it on finish()", () => {
  const sink = collector(true);
  const bar = new ProgressBar("org/model", 4_000_000_000, sink);
  bar.add(1_000_000_000);
  bar.add(1); // within 100 ms of the last draw: not drawn
  assert.equal(sink.text.length, 1);
  assert.match(
    sink.text[0],
    /^\rorg\/model \[#{6}-{18}\] {2}25% 1\.00 GB\/4\.00 GB .*\/s ETA .*\[K$/,
  );
  bar.add(3_000_000_000 - 1);
  bar.finish();
  assert.match(sink.text.at(-1)!, /^\rorg\/model \[#{24}\] 100% 4\.00 GB\/4\.00 GB .*\n$/);
});

Deno.test("ProgressBar elsewhere prints a line per 10% and counts resumed bytes as done", () => {
  const sink = collector(false);
  const bar = new ProgressBar("m", 100, sink, 50);
  for (let i = 0; i < 50; i++) bar.add(1);
  bar.finish();
  assert.deepEqual(sink.text.map((l) => l.match(/(\d+)%/)![1]), [
    "51",
    "60",
    "70",
    "80",
    "90",
    "100",
  ]);
  assert.ok(sink.text.every((l) => l.endsWith("\n") && !l.includes("\r")));
});
