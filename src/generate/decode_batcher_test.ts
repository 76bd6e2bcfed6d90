import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { sharedGpu } from "../gpu/device.ts";
import { Qwen2VLModel } from "../model/qwen2vl.ts";
import { TINY_DIR } from "../model/_fixture.ts";
import { seeded } from "../ref/_random.ts";
import { GREEDY } from "../../kernels/sample.ts";
import { logprobSide, type TokenLogprobRecord } from "../../kernels/logprobs.ts";
import { type BatchModel, type BatchRun, DecodeBatcher } from "./decode_batcher.ts";
import { pumpTokens } from "./token_pump.ts";
import { SessionRun } from "./session_run.ts";
import { decodeStream } from "./decode_stream.ts";
import { parseGenerationConfig, resolveOptions } from "./options.ts";

const gpu = await sharedGpu();
const CONTEXT = 48;
const model = await Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", maxContext: CONTEXT });
const rnd = seeded(11);
const PROMPTS = [4, 9, 2, 6].map((n) => Array.from({ length: n }, () => Math.floor(rnd() * 2000)));

/** A SessionRun over a session prefilled with prompt i (greedy; with logprobs where asked). */
async function runOf(i: number, top?: number): Promise<SessionRun> {
  const s = model.createSession(CONTEXT);
  await model.prefill(s, PROMPTS[i]);
  return new SessionRun(model, s, GREEDY, top);
}

function free(run: SessionRun): void {
  const s = run.session;
  run.dispose();
  s.dispose();
}

/** The ids (and logprob records) prompt i gives alone, through pumpTokens: the reference. */
async function alone(i: number, total: number, top?: number) {
  const run = await runOf(i, top);
  const ids: number[] = [], records: TokenLogprobRecord[] = [];
  const side = run.logprobs &&
    logprobSide(run.logprobs, (rs, first) => rs.forEach((r, j) => records[first + j] = r));
  for await (const got of pumpTokens(gpu, run.ring, run.record.bind(run), { total, side })) {
    ids.push(...got);
  }
  free(run);
  return { ids, records };
}

/**
 * The model, noting the batches made: "rows/sessions" (an empty row is a member's that left or
 * does not step), once for a run of cycles alike.
 */
function counting(made: string[]): BatchModel {
  return {
    gpu,
    batchesDecode: (n) => model.batchesDecode(n),
    createDecodeBatch: (rows) => {
      const note = `${rows.length}/${rows.filter((s) => s).length}`;
      if (made.at(-1) !== note) made.push(note);
      return model.createDecodeBatch(rows);
    },
    encodeDecodeStep: (pass, s) => model.encodeDecodeStep(pass, s),
  };
}

/** Drains a pump into ids, calling `each` after every batch (it may return true to stop). */
async function drain(
  pump: AsyncGenerator<Uint32Array, void, undefined>,
  each?: (ids: number[]) => boolean | void,
): Promise<number[]> {
  const ids: number[] = [];
  for await (const got of pump) {
    ids.push(...got);
    if (each?.(ids)) break;
  }
  return ids;
}

Deno.test("DecodeBatcher: generations decoding at once each get the ids they get alone, as one batch", async () => {
  const totals = [9, 5, 12];
  const want = await Promise.all(totals.map((t, i) => alone(i, t)));
  const made: string[] = [];
  const batcher = new DecodeBatcher(counting(made), { maxBatch: 4 });
  const runs = await Promise.all(totals.map((_, i) => runOf(i)));
  try {
    const got = await Promise.all(
      runs.map((run, i) => drain(batcher.pump(run, { total: totals[i] }))),
    );
    got.forEach((ids, i) => assert.deepEqual(ids, want[i].ids, `generation ${i}`));
    // All three stepped as one batch; once the shortest (row 1) ended, the other two in their
    // rows 0 and 2; then the last alone (its own step).
    assert.deepEqual(made, ["3/3", "3/2"]);
    assert.equal(batcher.members, 0);
  } finally {
    runs.forEach(free);
    batcher.dispose();
  }
});

Deno.test("DecodeBatcher: a generation joining one under way, and one leaving early, leave the others' ids as alone", async () => {
  const want = [await alone(0, 14), await alone(1, 6), await alone(3, 10)];
  const made: string[] = [];
  const batcher = new DecodeBatcher(counting(made), { maxBatch: 2 });
  const runs = [await runOf(0), await runOf(1), await runOf(3)];
  try {
    let joined: Promise<number[]> | undefined;
    const leaver = drain(batcher.pump(runs[2], { total: 10 }), (ids) => ids.length >= 3);
    const first = drain(batcher.pump(runs[0], { total: 14 }), (ids) => {
      // The second joins after the first has four tokens.
      if (ids.length >= 4) joined ??= drain(batcher.pump(runs[1], { total: 6 }));
    });
    const [a, c] = await Promise.all([first, leaver]);
    assert.deepEqual(a, want[0].ids);
    assert.ok(joined);
    assert.deepEqual(await joined, want[1].ids);
    // The one that left got the first ids of its own answer.
    assert.ok(c.length >= 3 && c.length < 10, `${c.length}`);
    assert.deepEqual(c, want[2].ids.slice(0, c.length));
    // The leaver (row 0) and the first (row 1) as one batch; the one joining later takes the
    // leaver's row.
    assert.ok(made.includes("2/2"), `batches ${made}`);
  } finally {
    runs.forEach(free);
    batcher.dispose();
  }
});

Deno.test("DecodeBatcher: logprob records come with the ids as through pumpTokens, and an aborted one ends alone", async () => {
  const want = await alone(2, 7, 2);
  const batcher = new DecodeBatcher(counting([]), { maxBatch: 4 });
  const runs = [await runOf(2, 2), await runOf(1)];
  try {
    const records: TokenLogprobRecord[] = [];
    const side = logprobSide(
      runs[0].logprobs!,
      (rs, first) => rs.forEach((r, j) => records[first + j] = r),
    );
    const abort = new AbortController();
    const [ids, other] = await Promise.all([
      drain(batcher.pump(runs[0], { total: 7, side })),
      drain(batcher.pump(runs[1], { total: 30, signal: abort.signal }), (got) => {
        if (got.length >= 2) abort.abort();
      }),
    ]);
    assert.deepEqual(ids, want.ids);
    assert.equal(records.length, 7);
    records.forEach((r, i) => {
      assert.equal(r.id, want.records[i].id);
      assert.ok(Math.abs(r.logprob - want.records[i].logprob) < 1e-5, `record ${i}`);
      assert.deepEqual(r.top.map((t) => t.id), want.records[i].top.map((t) => t.id));
    });
    // The aborted one stopped long before its 30 (its batches after the abort were not read).
    assert.ok(other.length >= 2 && other.length < 30, `${other.length}`);
  } finally {
    runs.forEach(free);
    batcher.dispose();
  }
});

Deno.test("DecodeBatcher: a run disposed while its consumer waits leaves; bad budgets, a session twice and a disposed batcher are refused", async () => {
  const batcher = new DecodeBatcher(counting([]));
  const runs = [await runOf(0), await runOf(1)];
  try {
    await assert.rejects(() => drain(batcher.pump(runs[0], { total: CONTEXT + 1 })), RangeError);
    const pump = batcher.pump(runs[0], { total: 20 });
    assert.equal((await pump.next()).value?.length, 1); // ring entry 0 alone: the first cycle
    const twice = batcher.pump(runs[0], { total: 3 });
    await assert.rejects(() => twice.next(), /already decodes/);
    // Disposing the run ends its generation at the loop's next cycle: the wait returns.
    const waiting = pump.next();
    runs[0].dispose();
    for (let r = await waiting; !r.done; r = await pump.next()) { /* batches in flight */ }
    assert.equal(batcher.members, 0);
    // An empty budget yields nothing and never joins.
    assert.deepEqual(await drain(batcher.pump(runs[1], { total: 0 })), []);
    batcher.dispose();
    await assert.rejects(() => batcher.pump(runs[1], { total: 2 }).next(), InvalidInputError);
  } finally {
    runs[0].session.dispose();
    free(runs[1]);
  }
});

Deno.test("decodeStream() through a batcher leaves the loop when its answer ends, before its consumer takes the last text", async () => {
  const batcher = new DecodeBatcher(counting([]), { maxBatch: 2 });
  const runs = [await runOf(0), await runOf(1)];
  try {
    const config = parseGenerationConfig({ eos_token_id: [] });
    const stats = {
      promptTokens: 4,
      imageTokens: 0,
      cachedTokens: 0,
      visionMs: 0,
      prefillStart: 0,
    };
    const decoder = { push: (id: number) => `<${id}>`, flush: () => "" };
    const stream = (i: number, maxNewTokens: number) =>
      decodeStream(runs[i], resolveOptions({ maxNewTokens }, config), decoder, stats, { batcher });
    const long = (async () => {
      let text = "";
      for await (const e of stream(1, 16)) if (e.type === "delta") text += e.text;
      return text;
    })();
    const short = stream(0, 5);
    let text = "";
    for (let r = await short.next(); !r.done; r = await short.next()) {
      if (r.value.type !== "delta") continue;
      text += r.value.text;
      if (text.split("<").length - 1 === 5) break; // the last text, its "done" not taken
    }
    // The short one left (its 5 tokens read) though its consumer holds its stream: only the
    // long one steps on.
    assert.equal(batcher.members, 1);
    const want = await alone(0, 5);
    assert.equal(text, want.ids.map((id) => `<${id}>`).join(""));
    assert.equal((await long).split("<").length - 1, 16);
    const last = await short.next();
    assert.ok(!last.done && last.value.type === "done");
    assert.equal(last.value.result.usage.completionTokens, 5);
  } finally {
    runs.forEach(free);
    batcher.dispose();
  }
});

/** `run` as a BatchRun whose recordSampling throws once `fail.now` is set. */
function failing(run: SessionRun, fail: { now: boolean }): BatchRun {
  return {
    get session() {
      return run.session;
    },
    ring: run.ring,
    get disposed() {
      return run.disposed;
    },
    recordFirst: (pass) => run.recordFirst(pass),
    recordSampling: (pass) => {
      if (fail.now) throw new Error("recording failed");
      run.recordSampling(pass);
    },
  };
}

Deno.test("DecodeBatcher: a generation whose ids were all read ends whole when a later cycle fails", async () => {
  const want = await alone(0, 2);
  const batcher = new DecodeBatcher(counting([]), { maxBatch: 4 });
  const runs = [await runOf(0), await runOf(1)];
  try {
    const fail = { now: false };
    const short = batcher.pump(runs[0], { total: 2 });
    const ids = [...(await short.next()).value ?? []]; // joined; its last ids not taken yet
    const long = drain(batcher.pump(failing(runs[1], fail), { total: 30 }), (got) => {
      // By the long one's third id the short one's two were read back (one step each).
      if (got.length >= 3) fail.now = true;
    });
    await assert.rejects(long, /recording failed/);
    for await (const got of short) ids.push(...got);
    assert.deepEqual(ids, want.ids);
    assert.equal(batcher.members, 0);
  } finally {
    runs.forEach(free);
    batcher.dispose();
  }
});

Deno.test("DecodeBatcher: a side ring's take() that throws fails its own generation only, when its ids are taken", async () => {
  const want = await alone(1, 9);
  const batcher = new DecodeBatcher(counting([]), { maxBatch: 4 });
  const runs = [await runOf(2, 2), await runOf(1)];
  try {
    let taken = 0;
    const side = logprobSide(runs[0].logprobs!, () => {
      if (++taken === 2) throw new Error("take failed");
    });
    const [bad, other] = await Promise.allSettled([
      drain(batcher.pump(runs[0], { total: 9, side })),
      drain(batcher.pump(runs[1], { total: 9 })),
    ]);
    assert.equal(bad.status, "rejected");
    assert.match(String((bad as PromiseRejectedResult).reason), /take failed/);
    assert.equal(other.status, "fulfilled");
    assert.deepEqual((other as PromiseFulfilledResult<number[]>).value, want.ids);
    assert.equal(batcher.members, 0);
  } finally {
    runs.forEach(free);
    batcher.dispose();
  }
});

Deno.test("DecodeBatcher: a generation whose recording throws fails alone; the others decode on", async () => {
  const want = await alone(1, 12);
  const batcher = new DecodeBatcher(counting([]), { maxBatch: 4 });
  const runs = [await runOf(0), await runOf(1)];
  try {
    const fail = { now: false };
    const [bad, other] = await Promise.allSettled([
      drain(batcher.pump(failing(runs[0], fail), { total: 12 }), (got) => {
        if (got.length >= 2) fail.now = true;
      }),
      drain(batcher.pump(runs[1], { total: 12 })),
    ]);
    assert.equal(bad.status, "rejected");
    assert.match(String((bad as PromiseRejectedResult).reason), /recording failed/);
    assert.equal(other.status, "fulfilled");
    assert.deepEqual((other as PromiseFulfilledResult<number[]>).value, want.ids);
    assert.equal(batcher.members, 0);
  } finally {
    runs.forEach(free);
    batcher.dispose();
  }
});

Deno.test("DecodeBatcher: a generation whose consumer holds a batch steps no further until it takes it; the others go on, and it then ends whole", async () => {
  const want = [await alone(0, 40), await alone(1, 40)];
  const batcher = new DecodeBatcher(counting([]), { maxBatch: 2 });
  const runs = [await runOf(0), await runOf(1)];
  try {
    // Counts the steps recorded for the held generation.
    const steps = { n: 0 };
    const counted: BatchRun = {
      get session() {
        return runs[0].session;
      },
      ring: runs[0].ring,
      get disposed() {
        return runs[0].disposed;
      },
      recordFirst: (pass) => runs[0].recordFirst(pass),
      recordSampling: (pass) => {
        steps.n++;
        runs[0].recordSampling(pass);
      },
    };
    const held = batcher.pump(counted, { total: 40 });
    const first = (await held.next()).value!;
    // The other decodes all of its answer while the first one's consumer holds on.
    assert.deepEqual(await drain(batcher.pump(runs[1], { total: 40 })), want[1].ids);
    // Held: one batch read back and waiting, one more in flight at the most (maxBatch 2 each).
    assert.ok(steps.n <= first.length + 4, `${steps.n} steps recorded while held`);
    // Taken again (the loop had ended meanwhile: it starts again), it ends with its own answer
    // (a loop that did not start again would leave it waiting: failed after 30 s, not hung).
    const ids = [...first];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("the held generation never resumed")), 30_000);
    });
    try {
      await Promise.race([
        (async () => {
          for await (const got of held) ids.push(...got);
        })(),
        stuck,
      ]);
    } finally {
      clearTimeout(timer);
    }
    assert.deepEqual(ids, want[0].ids);
    assert.equal(steps.n, 39);
  } finally {
    runs.forEach(free);
    batcher.dispose();
  }
});
