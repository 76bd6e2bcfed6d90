import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { sharedGpu } from "../gpu/device.ts";
import { readF32, writeArray } from "../gpu/buffers.ts";
import { advance, readDecodeState } from "../../kernels/state.ts";
import { run } from "../../kernels/_kernel.ts";
import { assertClose, seeded } from "../ref/_random.ts";
import { Qwen2VLModel, type Session } from "./qwen2vl.ts";
import { TINY_DIR } from "./_fixture.ts";

const gpu = await sharedGpu();
const CONTEXT = 40;

/** Text prompts of these lengths (random ids below 1000: plain tokens). */
function prompts(lengths: number[], seed: number): number[][] {
  const rnd = seeded(seed);
  return lengths.map((n) => Array.from({ length: n }, () => Math.floor(rnd() * 1000)));
}

/** Sessions prefilled with the prompts, ring entry 0 set to `first[i]`. */
async function prefilled(model: Qwen2VLModel, ps: number[][], first: number[]): Promise<Session[]> {
  const out: Session[] = [];
  for (const [i, p] of ps.entries()) {
    const s = model.createSession(CONTEXT);
    await model.prefill(s, p);
    writeArray(gpu, s.tokens, new Uint32Array([first[i]]));
    out.push(s);
  }
  return out;
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`createDecodeBatch() (${dtype}): each row's step gives the logits and state of that session's own step, twice (the second reading the K/V the first wrote)`, async () => {
    const model = await Qwen2VLModel.load(TINY_DIR, { gpu, dtype, maxContext: CONTEXT });
    try {
      assert.equal(model.batchesDecode(3), true);
      // Prompts of different lengths: each row rotates, writes and attends at its own position.
      const ps = prompts([5, 11, 2], 7), first = [17, 404, 9], second = [3, 250, 77];
      const alone = await prefilled(model, ps, first);
      const rows = await prefilled(model, ps, first);
      const batch = model.createDecodeBatch(rows);
      try {
        assert.deepEqual(batch.sessions, rows);
        for (const [step, ids] of [[1, second], [2, first]] as const) {
          const enc = gpu.device.createCommandEncoder();
          const pass = enc.beginComputePass();
          for (const s of alone) {
            model.encodeDecodeStep(pass, s);
            advance(gpu, s.state).encode(pass);
          }
          batch.encode(pass);
          for (const s of rows) advance(gpu, s.state).encode(pass);
          pass.end();
          gpu.device.queue.submit([enc.finish()]);
          for (let i = 0; i < 3; i++) {
            const want = await readF32(gpu, alone[i].logits);
            assertClose(await readF32(gpu, rows[i].logits), want, 1e-5, `step ${step} row ${i}`);
            assert.deepEqual(
              await readDecodeState(gpu, rows[i].state),
              await readDecodeState(gpu, alone[i].state),
            );
            // The next ring entry the step reads: a new token for each.
            writeArray(gpu, alone[i].tokens, new Uint32Array([ids[i]]), step * 4);
            writeArray(gpu, rows[i].tokens, new Uint32Array([ids[i]]), step * 4);
          }
        }
        // The rows' logits differ (each session its own history), so a row mix-up shows.
        const l0 = await readF32(gpu, rows[0].logits), l1 = await readF32(gpu, rows[1].logits);
        assert.ok(l0.some((v, i) => Math.abs(v - l1[i]) > 1e-3));
      } finally {
        batch.destroy();
        for (const s of [...alone, ...rows]) s.dispose();
      }
    } finally {
      model.dispose();
    }
  });
}

Deno.test("createDecodeBatch() refuses what it cannot batch: one session, 17, a session twice, a disposed or foreign one, q4 weights", async () => {
  const model = await Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", maxContext: CONTEXT });
  const other = await Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", maxContext: CONTEXT });
  const q4 = await Qwen2VLModel.load(TINY_DIR, {
    gpu,
    dtype: "f32",
    quant: "q4",
    maxContext: CONTEXT,
  });
  const made: Session[] = [];
  const mk = (m: Qwen2VLModel) => {
    const s = m.createSession(8);
    made.push(s);
    return s;
  };
  try {
    const [a, b] = [mk(model), mk(model)];
    assert.equal(model.batchesDecode(1), false);
    assert.equal(model.batchesDecode(16), true);
    assert.equal(model.batchesDecode(17), false);
    assert.equal(model.batchesDecode(2.5), false);
    assert.equal(q4.batchesDecode(2), false);
    assert.throws(() => model.createDecodeBatch([a]), InvalidInputError);
    const many = Array.from({ length: 17 }, () => mk(model));
    assert.throws(() => model.createDecodeBatch(many), /17 sessions cannot decode as one batch/);
    assert.throws(() => model.createDecodeBatch([a, a]), /given once/);
    assert.throws(() => model.createDecodeBatch([a, mk(other)]), /of this model/);
    assert.throws(() => q4.createDecodeBatch([mk(q4), mk(q4)]), /float weights/);
    const c = mk(model);
    c.dispose();
    assert.throws(() => model.createDecodeBatch([b, c]), /live session/);
    // A batch whose session is disposed afterwards refuses to record, as does a destroyed one.
    const d = mk(model);
    const batch = model.createDecodeBatch([b, d]);
    const pass = gpu.device.createCommandEncoder().beginComputePass();
    d.dispose();
    assert.throws(() => batch.encode(pass), /sessions was disposed/);
    batch.destroy();
    assert.equal(batch.destroyed, true);
    assert.throws(() => batch.encode(pass), /was destroyed/);
    pass.end();
    run(gpu, []);
  } finally {
    for (const s of made) s.dispose();
    for (const m of [model, other, q4]) m.dispose();
  }
});
