import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { sharedGpu } from "../gpu/device.ts";
import { readF32, writeArray } from "../gpu/buffers.ts";
import { advance, readDecodeState } from "../../kernels/state.ts";
import { run } from "../../kernels/_kernel.ts";
import { assertClose, seeded } from "../ref/_random.ts";
import { Qwen2VLModel, type Session } from "./qwen2vl.ts";
import { TINY_DIR } from "./_fixture.ts";
import { LINEAR_CHOICE } from "../../kernels/linear.ts";
import { GEMV_XROWS } from "../../kernels/linear_q.ts";

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

// Against each session's own step: the few-row products sum in another order than the one-row
// GEMVs (within f32 rounding; q4's at this width in the same order: the same bits; q8's single
// step runs kernels/gemv.ts's resident-x GEMV, its few rows linear_q's f32-x GEMV: rounding
// apart). q4 and q8 also against the same session stepped in a batch of two beside another: a
// quantized row's bits do not depend on its batch (kernels/linear_q.ts gemvQXRowsTuning: threads
// per row, workgroup and x tile by shape alone).
for (const [dtype, quant] of [["f32"], ["f16"], ["f16", "q4"], ["f16", "q8"]] as const) {
  Deno.test(`createDecodeBatch() (${quant ?? dtype}): each row's step gives the logits and state of that session's own step${quant ? " and, exactly, of its row in another batch" : ""}, twice (the second reading the K/V the first wrote)`, async () => {
    const model = await Qwen2VLModel.load(TINY_DIR, { gpu, dtype, quant, maxContext: CONTEXT });
    try {
      assert.equal(model.batchesDecode(3), true);
      // Prompts of different lengths: each row rotates, writes and attends at its own position.
      const ps = prompts([5, 11, 2], 7), first = [17, 404, 9], second = [3, 250, 77];
      const alone = await prefilled(model, ps, first);
      const rows = await prefilled(model, ps, first);
      // Row 1 empty (a session that left): its products run on whatever it holds.
      const layout = [rows[0], undefined, rows[1], rows[2]];
      const batch = model.createDecodeBatch(layout);
      // q4: the sessions again (twins), each in a batch of two beside one of another prompt.
      const twins = quant ? await prefilled(model, ps, first) : [];
      const pads = quant ? await prefilled(model, prompts([3, 3, 3], 9), [5, 6, 7]) : [];
      const pairs = pads.map((p, i) => model.createDecodeBatch([p, twins[i]]));
      try {
        assert.deepEqual(batch.sessions, rows);
        assert.deepEqual(batch.rows, layout);
        for (const [step, ids] of [[1, second], [2, first]] as const) {
          const enc = gpu.device.createCommandEncoder();
          const pass = enc.beginComputePass();
          for (const s of alone) model.encodeDecodeStep(pass, s);
          for (const b of pairs) b.encode(pass);
          for (const s of [...alone, ...twins, ...pads]) advance(gpu, s.state).encode(pass);
          batch.encode(pass);
          for (const s of rows) advance(gpu, s.state).encode(pass);
          pass.end();
          gpu.device.queue.submit([enc.finish()]);
          for (let i = 0; i < 3; i++) {
            const got = await readF32(gpu, rows[i].logits);
            assertClose(got, await readF32(gpu, alone[i].logits), 1e-5, `step ${step} row ${i}`);
            if (quant) assert.deepEqual(got, await readF32(gpu, twins[i].logits));
            assert.deepEqual(
              await readDecodeState(gpu, rows[i].state),
              await readDecodeState(gpu, alone[i].state),
            );
            // The next ring entry the step reads: a new token for each.
            writeArray(gpu, alone[i].tokens, new Uint32Array([ids[i]]), step * 4);
            writeArray(gpu, rows[i].tokens, new Uint32Array([ids[i]]), step * 4);
            for (const s of quant ? [twins[i], pads[i]] : []) {
              writeArray(gpu, s.tokens, new Uint32Array([ids[i]]), step * 4);
            }
          }
        }
        // A batch of the same rows again is made of what the first one built.
        const again = model.createDecodeBatch(layout);
        assert.ok(again.dispatches.every((d, i) => d === batch.dispatches[i]));
        assert.equal(rows[2].batchRows.size, 1);
        // Three rows run the products of four (the few-row GEMVs' bucket): nothing new to build.
        const three = new Set(model.createDecodeBatch(layout.slice(0, 3)).dispatches);
        const all = new Set(batch.dispatches);
        assert.ok([...three].every((d) => all.has(d)) && three.size < all.size);
        // The rows' logits differ (each session its own history), so a row mix-up shows.
        const l0 = await readF32(gpu, rows[0].logits), l1 = await readF32(gpu, rows[1].logits);
        assert.ok(l0.some((v, i) => Math.abs(v - l1[i]) > 1e-3));
      } finally {
        for (const b of [batch, ...pairs]) b.destroy();
        for (const s of [...alone, ...rows, ...twins, ...pads]) s.dispose();
      }
    } finally {
      model.dispose();
    }
  });
}

Deno.test("createDecodeBatch() refuses what it cannot batch: one session, 17, a session twice, a disposed or foreign one, q8 weights with q8's few-row GEMV off, the few-row GEMVs off", async () => {
  const model = await Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", maxContext: CONTEXT });
  const other = await Qwen2VLModel.load(TINY_DIR, { gpu, dtype: "f32", maxContext: CONTEXT });
  const q8 = await Qwen2VLModel.load(TINY_DIR, { gpu, quant: "q8", maxContext: CONTEXT });
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
    assert.throws(() => model.createDecodeBatch([a]), InvalidInputError);
    const many = Array.from({ length: 17 }, () => mk(model));
    assert.throws(() => model.createDecodeBatch(many), /17 sessions cannot decode as one batch/);
    assert.throws(() => model.createDecodeBatch([a, a]), /given once/);
    assert.throws(() => model.createDecodeBatch([undefined, undefined]), /at least one/);
    assert.throws(() => model.createDecodeBatch([a, mk(other)]), /of this model/);
    // q8 batches on its few-row GEMV; with it off (its products of a few rows dequantize) and
    // with products of a few rows on the tiled kernels they cost as much as many: no batching.
    assert.equal(q8.batchesDecode(2), true);
    GEMV_XROWS.q8 = false;
    try {
      assert.equal(q8.batchesDecode(2), false);
      assert.throws(
        () => q8.createDecodeBatch([mk(q8), mk(q8)]),
        /few-row GEMVs on for the weights/,
      );
    } finally {
      GEMV_XROWS.q8 = true;
    }
    LINEAR_CHOICE.xrows = false;
    try {
      assert.equal(model.batchesDecode(2), false);
      assert.throws(() => model.createDecodeBatch([a, b]), /with the few-row GEMVs on/);
    } finally {
      LINEAR_CHOICE.xrows = true;
    }
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
    for (const m of [model, other, q8]) m.dispose();
  }
});
