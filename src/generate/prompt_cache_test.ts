import assert from "node:assert/strict";
import { GpuError, InvalidInputError } from "../errors.ts";
import type { Qwen2VLModel } from "../model/qwen2vl.ts";
import { imageKeys, PromptCache, reusablePrefix, type TokenHistory } from "./prompt_cache.ts";
import type { GridThw, PreparedPrompt } from "./prompt.ts";

const PAD = 9;

/** A history of ids where each image is `img` (its key) repeated as pads of `tokens`. */
function history(parts: (number | { key: string; tokens: number })[]): TokenHistory {
  const ids: number[] = [], images = [];
  for (const p of parts) {
    if (typeof p === "number") {
      ids.push(p);
    } else {
      for (let i = 0; i < p.tokens; i++) ids.push(PAD);
      images.push({ key: p.key, grid: [1, 2, 2 * p.tokens] as GridThw, tokens: p.tokens });
    }
  }
  return { ids, images };
}

const A = { key: "a", tokens: 3 }, B = { key: "b", tokens: 3 }, C = { key: "c", tokens: 2 };

Deno.test("reusablePrefix() is the common prefix of the ids, short of the last two prompt tokens", () => {
  const held = history([1, 2, 3, 4, 5]);
  assert.deepEqual(reusablePrefix(held, history([1, 2, 3, 7, 8]), PAD), { tokens: 3, images: 0 });
  assert.deepEqual(reusablePrefix(held, history([1, 2, 3, 4, 5, 6, 7]), PAD), {
    tokens: 5,
    images: 0,
  });
  // The same prompt again: its last two tokens run — the last to give the logits, both through
  // the prefill's GEMMs as an uncached prompt's (a one-token chunk would take the decode GEMV).
  assert.deepEqual(reusablePrefix(held, history([1, 2, 3, 4, 5]), PAD), { tokens: 3, images: 0 });
  assert.deepEqual(reusablePrefix(held, history([6, 2]), PAD), { tokens: 0, images: 0 });
  assert.deepEqual(reusablePrefix(history([]), history([1, 2]), PAD), { tokens: 0, images: 0 });
});

Deno.test("reusablePrefix() keeps the images whose pixels match and cuts before the first that differs", () => {
  const held = history([1, A, 2, B, 3, 4]);
  // Same images, a new question after them.
  assert.deepEqual(reusablePrefix(held, history([1, A, 2, B, 3, 5, 6]), PAD), {
    tokens: 9,
    images: 2,
  });
  // Another second image of the same size: same ids, but the cache stops at its first pad.
  assert.deepEqual(
    reusablePrefix(held, history([1, A, 2, { key: "x", tokens: 3 }, 3, 4, 5]), PAD),
    {
      tokens: 5,
      images: 1,
    },
  );
  // Another first image: nothing after its start is reused.
  assert.deepEqual(reusablePrefix(held, history([1, { key: "y", tokens: 3 }, 2, B, 3]), PAD), {
    tokens: 1,
    images: 0,
  });
  // Two images that touch (no separator), the second differing.
  assert.deepEqual(reusablePrefix(history([1, A, C, 2]), history([1, A, B, 2]), PAD), {
    tokens: 4,
    images: 1,
  });
  // The held rows end inside an image (the ids match that far): cut to the image's start.
  assert.deepEqual(reusablePrefix(history([1, 2, PAD, PAD]), history([1, 2, A, 5]), PAD), {
    tokens: 2,
    images: 0,
  });
  // The prompt ends right after an image: the last token (a pad) runs, so the image does too.
  assert.deepEqual(reusablePrefix(history([1, A, 2]), history([1, A]), PAD), {
    tokens: 1,
    images: 0,
  });
});

Deno.test("imageKeys() tells images apart by their pixels and grid", () => {
  const cols = 4;
  const prompt = (px: number[], grids: GridThw[]): PreparedPrompt => ({
    inputIds: new Int32Array(0),
    pixelValues: Float32Array.from(px),
    gridThw: grids,
    imageTokens: 0,
  });
  const px = Array.from({ length: 12 * cols }, (_, i) => i / 7);
  const keys = imageKeys(prompt(px, [[1, 2, 2], [1, 2, 4]]), 2);
  assert.deepEqual(keys.map((k) => k.tokens), [1, 2]);
  assert.deepEqual(keys.map((k) => k.grid), [[1, 2, 2], [1, 2, 4]]);
  assert.notEqual(keys[0].key, keys[1].key);
  // The same pixels give the same keys; one value changed in image 1 changes its key only.
  assert.deepEqual(imageKeys(prompt(px, [[1, 2, 2], [1, 2, 4]]), 2), keys);
  const changed = [...px];
  changed[4 * cols + 3] += 1e-6;
  const k2 = imageKeys(prompt(changed, [[1, 2, 2], [1, 2, 4]]), 2);
  assert.equal(k2[0].key, keys[0].key);
  assert.notEqual(k2[1].key, keys[1].key);
  // The same values under another grid are another image.
  assert.notEqual(imageKeys(prompt(px.slice(0, 4 * cols), [[1, 4, 1]]), 1)[0].key, keys[0].key);
  assert.deepEqual(imageKeys(prompt([], []), 2), []);
});

/**
 * A model stand-in: sessions that fail to allocate above `fits` tokens, or beyond `live` sessions
 * not yet disposed, as a full device does.
 */
function fakeModel(maxContext: number, fits: number, live = Infinity) {
  const made: { maxTokens: number; disposed: boolean }[] = [];
  /** Session.copyRows() calls: [to, from, rows]. */
  const copies: [unknown, unknown, number][] = [];
  const model = {
    maxContext,
    config: { imageTokenId: PAD },
    createSession(maxTokens: number) {
      const gone = Promise.withResolvers<void>();
      const s = {
        maxTokens,
        disposed: false,
        whenDisposed: gone.promise,
        copyRows(from: unknown, rows: number) {
          copies.push([s, from, rows]);
        },
        ready: () =>
          maxTokens > fits || made.filter((m) => !m.disposed).length > live
            ? Promise.reject(new GpuError("out of memory"))
            : Promise.resolve(),
        dispose() {
          s.disposed = true;
          gone.resolve();
        },
      };
      made.push(s);
      return s;
    },
  };
  return { model: model as unknown as Qwen2VLModel, made, copies };
}

Deno.test("PromptCache.take() makes one session for the whole context and reuses it in place", async () => {
  const { model, made } = fakeModel(100, 1000);
  const cache = new PromptCache(model);
  const first = await cache.take(history([1, 2, 3]), 10);
  assert.equal(first.session.maxTokens, 100);
  assert.deepEqual(first.cached, { tokens: 0, images: 0 });
  cache.keep(first.session, history([1, 2, 3, 4]));
  assert.equal(cache.heldTokens, 4);
  const next = await cache.take(history([1, 2, 3, 4, 5, 6]), 50);
  assert.equal(next.session, first.session, "the same session, no copy");
  assert.deepEqual(next.cached, { tokens: 4, images: 0 });
  assert.equal(cache.heldTokens, 0, "taken: the caller owns it");
  // An error path: the caller disposes instead of keeping; nothing is left held.
  next.session.dispose();
  const after = await cache.take(history([1, 2]), 10);
  assert.deepEqual(after.cached, { tokens: 0, images: 0 });
  assert.equal(made.length, 2);
  cache.keep(after.session, history([1]));
  cache.clear();
  assert.ok(after.session.disposed);
  assert.equal(cache.heldTokens, 0);
});

Deno.test("PromptCache.take() falls back to the request's size where the whole context does not fit", async () => {
  const { model, made } = fakeModel(100, 60);
  const cache = new PromptCache(model);
  const hit = await cache.take(history([1, 2, 3]), 40);
  assert.deepEqual(made.map((s) => [s.maxTokens, s.disposed]), [[100, true], [40, false]]);
  assert.equal(hit.session.maxTokens, 40);
  cache.keep(hit.session, history([1, 2, 3, 4]));
  // A longer request than the kept session holds: the old one is freed before the new one is made.
  const longer = await cache.take(history([1, 2, 3, 4, 5]), 50);
  assert.deepEqual(longer.cached, { tokens: 0, images: 0 });
  assert.ok(hit.session.disposed);
  assert.equal(longer.session.maxTokens, 50);
});

Deno.test("PromptCache remembers a whole-context allocation failed, and keeps nothing once closed", async () => {
  const { model, made } = fakeModel(100, 60);
  const cache = new PromptCache(model);
  const a = await cache.take(history([1]), 40);
  cache.keep(a.session, history([1]));
  assert.deepEqual(cache.peek(history([1, 2, 3]), 40), { tokens: 1, images: 0 });
  assert.deepEqual(cache.peek(history([1, 2, 3]), 50), { tokens: 0, images: 0 }, "too small");
  await cache.take(history([1, 2]), 50);
  // The 100-token attempt ran once: the second longer request went straight to its own size.
  assert.deepEqual(made.map((s) => s.maxTokens), [100, 40, 50]);
  // A generation still holding its session when the pipeline closes the cache frees it itself.
  const running = await cache.take(history([5]), 10);
  cache.close();
  cache.keep(running.session, history([5, 6]));
  assert.ok(running.session.disposed);
  assert.equal(cache.heldTokens, 0);
});

// Two conversations interleaved, as a server with two clients sees them: each continues from its
// own session; a third takes the least recently kept one's memory (no third allocation). (No id 9
// here: PAD, an image token.)
Deno.test("PromptCache with 2 slots continues each of two conversations from its own session", async () => {
  const { model, made } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 2 });
  const a = await cache.take(history([1, 2, 3]), 10);
  cache.keep(a.session, history([1, 2, 3, 4]));
  const b = await cache.take(history([17, 18, 19]), 10);
  assert.deepEqual(b.cached, { tokens: 0, images: 0 });
  assert.notEqual(b.session, a.session, "a second session while a slot is free");
  cache.keep(b.session, history([17, 18, 19, 10]));
  assert.equal(cache.heldSessions, 2);
  const a2 = await cache.take(history([1, 2, 3, 4, 5]), 10);
  assert.equal(a2.session, a.session);
  assert.deepEqual(a2.cached, { tokens: 3, images: 0 });
  cache.keep(a2.session, history([1, 2, 3, 4, 5, 6]));
  assert.deepEqual(cache.peek(history([17, 18, 19, 10, 11]), 10), { tokens: 3, images: 0 });
  const b2 = await cache.take(history([17, 18, 19, 10, 11]), 10);
  assert.equal(b2.session, b.session);
  cache.keep(b2.session, history([17, 18, 19, 10, 11, 12]));
  // A third conversation: the least recently kept session (a's) serves it, from row 0.
  const c = await cache.take(history([20, 21]), 10);
  assert.equal(c.session, a.session);
  assert.deepEqual(c.cached, { tokens: 0, images: 0 });
  assert.equal(made.length, 2);
  cache.keep(c.session, history([20, 21, 22]));
  assert.deepEqual(cache.peek(history([1, 2, 3, 4, 5, 6, 7]), 10), { tokens: 0, images: 0 });
  assert.deepEqual(cache.peek(history([17, 18, 19, 10, 11, 12, 13]), 10), { tokens: 5, images: 0 });
  // Of two sessions holding the same prefix, the most recently kept serves.
  const d = await cache.take(history([20, 21, 22, 23]), 10);
  cache.keep(d.session, history([17, 18, 19, 10]));
  assert.equal((await cache.take(history([17, 18, 19, 10, 11]), 10)).session, d.session);
  cache.clear();
  assert.equal(cache.heldSessions, 0);
  assert.ok(b.session.disposed);
});

Deno.test("PromptCache keeps no more sessions than the device holds, and refuses a bad slot count", async () => {
  const { model, made } = fakeModel(100, 1000, 2);
  const cache = new PromptCache(model, { slots: 3 });
  for (const first of [1, 2]) {
    const hit = await cache.take(history([first]), 10);
    cache.keep(hit.session, history([first, 0]));
  }
  // The third whole-context session fails: the least recently kept one serves instead.
  const third = await cache.take(history([3]), 10);
  assert.equal(third.session, made[0]);
  assert.deepEqual(made.map((s) => s.disposed), [false, false, true]);
  cache.keep(third.session, history([3, 0]));
  // From now on two at most: a fourth conversation reuses without trying to allocate.
  const fourth = await cache.take(history([4]), 10);
  assert.equal(made.length, 3);
  assert.equal(fourth.session, made[1]);
  for (const slots of [0, 1.5, -1]) {
    assert.throws(() => new PromptCache(model, { slots }), InvalidInputError);
  }
});

// A new conversation that shares only a system prompt with a kept one (2 of its 6 rows) gets a
// session of its own while a slot is free, and the kept one's rows survive; at capacity the least
// recently kept session serves it, reusing the shared rows.
Deno.test("PromptCache takes a kept session only for a prompt that continues it, while a slot is free", async () => {
  const { model } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 2 });
  const a = await cache.take(history([1, 2, 3, 4]), 10);
  cache.keep(a.session, history([1, 2, 3, 4, 5, 6]));
  assert.deepEqual(cache.peek(history([1, 2, 30]), 10), { tokens: 0, images: 0 });
  const b = await cache.take(history([1, 2, 30]), 10);
  assert.notEqual(b.session, a.session);
  cache.keep(b.session, history([1, 2, 30, 31, 32]));
  // Half of what a session holds is enough: a's 6 rows, 3 shared.
  assert.deepEqual(cache.peek(history([1, 2, 3, 40, 41]), 10), { tokens: 3, images: 0 });
  assert.deepEqual(cache.peek(history([1, 2, 3, 4, 5, 6, 7, 8]), 10), { tokens: 6, images: 0 });
  // Full, and a third conversation: a (the least recently kept) serves it with the rows it shares.
  const c = await cache.take(history([1, 2, 50, 51]), 10);
  assert.equal(c.session, a.session);
  assert.deepEqual(c.cached, { tokens: 2, images: 0 });
});

Deno.test("PromptCache with several slots serves the same question again after an answer longer than it", async () => {
  const { model } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 4 });
  const q = [1, 2, 3, 4, 5];
  const a = await cache.take(history(q), 10);
  // Its answer: 20 tokens, four times the question (under half of the held rows are shared).
  cache.keep(a.session, history([...q, ...Array.from({ length: 20 }, (_, i) => 50 + i)]));
  const again = await cache.take(history(q), 10);
  assert.equal(again.session, a.session, "the conversation's own session, not a new one");
  assert.deepEqual(again.cached, { tokens: 3, images: 0 });
  // A prompt that only starts the same (another question after the same opening) still does not
  // take it while a slot is free.
  cache.keep(again.session, history([...q, 60, 61]));
  assert.deepEqual(cache.peek(history([1, 2, 9, 9, 9, 9, 9, 9]), 10), { tokens: 0, images: 0 });
});

// Generations running at once (PipelineOptions.parallel) each hold a session of their own: a
// claim takes its kept session out of the cache at once, before the images are encoded.
Deno.test("PromptCache.claim() takes the kept session out, so a claim beside it gets another", async () => {
  const { model, made } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 2 });
  const a = await cache.take(history([1, 2, 3]), 10);
  cache.keep(a.session, history([1, 2, 3, 4]));
  const first = cache.claim(history([1, 2, 3, 4, 5]), 10);
  assert.deepEqual(first.cached, { tokens: 3, images: 0 });
  assert.equal(cache.heldSessions, 0, "out of the cache while claimed");
  // The same conversation's next turn sent twice at once: the second cannot share the session,
  // but gets its rows once the first has prefilled them.
  const second = cache.claim(history([1, 2, 3, 4, 5]), 10);
  assert.deepEqual(second.cached, { tokens: 3, images: 0 });
  const waiting = second.open();
  const h1 = await first.open();
  cache.share(h1.session, history([1, 2, 3, 4, 5]));
  const h2 = await waiting;
  assert.deepEqual(h2.cached, { tokens: 3, images: 0 });
  assert.equal(h1.session, made[0]);
  assert.equal(h2.session, made[1]);
  assert.equal(h2.session.maxTokens, 100, "a whole-context session: a slot was free");
  assert.equal(cache.sessionsOut, 2);
  await assert.rejects(first.open(), /already opened/);
  cache.keep(h1.session, history([1, 2, 3, 4, 5, 6]));
  cache.keep(h2.session, history([1, 2, 3, 4, 5, 7]));
  assert.equal(cache.sessionsOut, 0);
  assert.equal(cache.heldSessions, 2);
  assert.deepEqual(made.map((s) => s.disposed), [false, false]);
});

Deno.test("PromptCache counts sessions out with generations against its slots", async () => {
  const { model, made } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 2 });
  const kept = await cache.take(history([1, 2]), 10);
  cache.keep(kept.session, history([1, 2, 3]));
  const running = await cache.take(history([5, 6]), 10); // out with a generation
  assert.equal(made.length, 2);
  // Two sessions exist: a third conversation takes the kept one rather than a third session.
  const third = await cache.take(history([8, 9]), 10);
  assert.equal(made.length, 2);
  assert.equal(third.session, kept.session);
  assert.deepEqual(third.cached, { tokens: 0, images: 0 });
  // With both out, a fourth has nothing to take: a session of its own request's size, which is
  // not kept beyond the slots when it ends.
  const fourth = await cache.take(history([7]), 10);
  assert.equal(made.length, 3);
  assert.equal(fourth.session.maxTokens, 10);
  cache.keep(running.session, history([5, 6, 0]));
  cache.keep(third.session, history([8, 9, 0]));
  cache.keep(fourth.session, history([7, 0]));
  assert.equal(cache.heldSessions, 2);
  // Kept while the two others were still out (three sessions, two slots): freed at once.
  assert.deepEqual(made.map((s) => s.disposed), [false, true, false]);
});

Deno.test("PromptCache: a cancelled claim gives its kept session back, a new one makes nothing", async () => {
  const { model, made } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 2 });
  const a = await cache.take(history([1, 2, 3]), 10);
  cache.keep(a.session, history([1, 2, 3, 4]));
  const claim = cache.claim(history([1, 2, 3, 4, 5]), 10);
  assert.equal(cache.heldSessions, 0);
  claim.cancel();
  claim.cancel();
  assert.equal(cache.heldSessions, 1);
  await assert.rejects(claim.open(), /already opened or cancelled/);
  const again = await cache.take(history([1, 2, 3, 4, 5]), 10);
  assert.equal(again.session, made[0]);
  assert.deepEqual(again.cached, { tokens: 3, images: 0 }, "its rows still count");
  cache.keep(again.session, history([1, 2, 3, 4, 5]));
  // A claim for a new session, cancelled: no session was made, and its room is free again (a
  // claim still holding it would leave the next conversation the kept session).
  cache.claim(history([9, 9, 9]), 10).cancel();
  assert.equal(made.length, 1);
  const next = await cache.take(history([20, 21]), 10);
  assert.equal(made.length, 2);
  assert.equal(next.session, made[1]);
});

// A claim opened holds its room until its session is out: while a new session's allocation is
// checked (open() awaits it), a generation that ends beside it and a third that claims then see
// the room taken — the third reuses the kept session rather than making one past the slots.
Deno.test("PromptCache: an opening claim still counts against the slots while its session is made", async () => {
  const { model, made } = fakeModel(100, 1000);
  const gate = Promise.withResolvers<void>();
  const create = model.createSession.bind(model);
  let first = true;
  model.createSession = (maxTokens: number) => {
    const s = create(maxTokens);
    if (first) {
      first = false;
      const ready = s.ready.bind(s);
      s.ready = () => gate.promise.then(ready);
    }
    return s;
  };
  const cache = new PromptCache(model, { slots: 2 });
  const opening = cache.claim(history([1, 2, 3]), 10).open(); // its allocation not yet checked
  const b = await cache.take(history([17, 18, 19]), 10);
  cache.keep(b.session, history([17, 18, 19, 20]));
  const c = await cache.claim(history([30, 31, 32]), 10).open();
  assert.equal(made.length, 2, "no third session: the opening claim holds the second slot");
  assert.equal(c.session, b.session);
  gate.resolve();
  const a = await opening;
  assert.equal(a.session, made[0]);
  assert.equal(cache.sessionsOut, 2);
});

Deno.test("PromptCache.share(): a prompt no kept session continues copies a running generation's prompt rows", async () => {
  const { model, made, copies } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 4 });
  const prompt = history([1, A, 2, 3]); // ids 1 9 9 9 2 3
  const running = await cache.take(prompt, 10);
  // Not yet prefilled: a claim would wait for it (see the tests below); given up here.
  const early = cache.claim(prompt, 10);
  assert.deepEqual(early.cached, { tokens: 4, images: 1 });
  early.cancel();
  cache.share(running.session, prompt);
  // The same prompt at once (n choices): its rows but the last two, the image among them.
  const scoring = cache.claim(prompt, 10, { copy: false });
  assert.deepEqual(scoring.cached, { tokens: 0, images: 0 }, "a prompt to score copies nothing");
  scoring.cancel();
  const same = cache.claim(prompt, 10);
  assert.deepEqual(same.cached, { tokens: 4, images: 1 });
  assert.equal(copies.length, 0, "copied on open, not on claim");
  const hit = await same.open();
  assert.equal(hit.session, made[1], "a new session (the cancelled claim above made none)");
  assert.deepEqual(hit.cached, { tokens: 4, images: 1 });
  assert.deepEqual(copies, [[made[1], made[0], 4]]);
  // A text-only prompt sharing its start: the shared text rows.
  const text = cache.claim(history([1, 7, 7, 7]), 10);
  assert.deepEqual(text.cached, { tokens: 1, images: 0 });
  text.cancel();
  // One with an image the running one does not hold: no copy (its tower runs before a session
  // is made), as if nothing were shared.
  const other = cache.claim(history([1, A, 2, 3, B, 5]), 10);
  assert.deepEqual(other.cached, { tokens: 0, images: 0 });
  other.cancel();
  // Kept: no longer shared, but kept and continued as before.
  cache.keep(running.session, history([1, A, 2, 3, 4]));
  const next = cache.claim(history([1, A, 2, 3, 4, 5]), 10);
  assert.deepEqual(next.cached, { tokens: 6, images: 1 });
  const continued = await next.open();
  assert.equal(continued.session, made[0]);
  assert.equal(copies.length, 1);
  continued.session.dispose(); // (its generation failed: no claim waits for its prefill)
  // A session not out with a generation (kept) is not taken as shared.
  cache.keep(hit.session, history([5]));
  cache.share(hit.session, prompt);
  assert.deepEqual(cache.claim(prompt, 10).cached, { tokens: 0, images: 0 });
});

Deno.test("PromptCache.share(): a kept session continued beats a copy; at capacity the least recent one is the copy's target", async () => {
  const { model, made, copies } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 2 });
  const prompt = history([1, 2, 3, 4, 5, 6]);
  const kept = await cache.take(history([7, 8, 9]), 10);
  cache.keep(kept.session, history([7, 8, 9, 0]));
  const running = await cache.take(prompt, 10);
  assert.notEqual(running.session, kept.session);
  cache.share(running.session, prompt);
  // Two sessions, two slots: the kept one (sharing nothing) gets the running one's rows.
  const claim = cache.claim(prompt, 10);
  assert.deepEqual(claim.cached, { tokens: 4, images: 0 });
  const hit = await claim.open();
  assert.equal(hit.session, kept.session);
  assert.deepEqual(copies, [[kept.session, running.session, 4]]);
  assert.equal(made.length, 2);
  cache.keep(hit.session, history([1, 2, 3, 4, 5, 6, 10]));
  // Now a kept session continues the prompt: it is taken, nothing copied.
  const again = cache.claim(prompt, 10);
  assert.deepEqual(again.cached, { tokens: 4, images: 0 });
  assert.equal((await again.open()).session, kept.session);
  assert.equal(copies.length, 1);
});

Deno.test("PromptCache.share(): a claim whose running generation ended before it opened holds what it holds without it", async () => {
  const { model, made, copies } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 2 });
  const prompt = history([1, 2, 3, 4, 5, 6]);
  const running = await cache.take(prompt, 10);
  cache.share(running.session, prompt);
  const claim = cache.claim(prompt, 10);
  assert.deepEqual(claim.cached, { tokens: 4, images: 0 });
  cache.keep(running.session, history([1, 2, 3, 9]));
  const hit = await claim.open();
  assert.deepEqual(
    hit.cached,
    { tokens: 0, images: 0 },
    "nothing copied: its rows may be rewritten",
  );
  assert.equal(hit.session, made[1]);
  assert.equal(copies.length, 0);
  // Disposed (a failed generation) likewise; at capacity the kept session it takes (the least
  // recent, sharing nothing) opens with its own rows.
  cache.keep(hit.session, history([1, 2, 3, 4, 8]));
  const other = await cache.take(history([8, 8, 3, 7, 7, 7, 7]), 10);
  assert.equal(other.session, made[0], "the least recent kept session, at capacity");
  cache.share(other.session, history([8, 8, 3, 7, 7, 7, 7]));
  const third = cache.claim(history([8, 8, 3, 7, 7, 7, 5, 5]), 10);
  assert.deepEqual(third.cached, { tokens: 6, images: 0 });
  other.session.dispose();
  const got = await third.open();
  assert.equal(got.session, made[1]);
  assert.deepEqual(got.cached, { tokens: 0, images: 0 });
  assert.equal(copies.length, 0);
});

Deno.test("PromptCache.share(): the kept session a prompt continues gets a running generation's rows where they serve more", async () => {
  const { model, made, copies } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 4 });
  const a = await cache.take(history([1, 2, 3, 4]), 10);
  cache.keep(a.session, history([1, 2, 3, 4, 5]));
  const running = await cache.take(history([1, 2, 6, 6, 6, 6, 6]), 10);
  cache.share(running.session, history([1, 2, 6, 6, 6, 6, 6]));
  // Four tokens kept against two running: the kept session, nothing copied.
  const kept = cache.claim(history([1, 2, 3, 4, 5, 6, 7]), 10);
  assert.deepEqual(kept.cached, { tokens: 5, images: 0 });
  const k = await kept.open();
  assert.equal(k.session, a.session);
  assert.equal(copies.length, 0);
  cache.keep(k.session, history([1, 2, 6, 9]));
  // Three kept (a continuation: 3 of 4) against six running: the kept one, the running rows in.
  const both = cache.claim(history([1, 2, 6, 6, 6, 6, 6, 8, 8]), 10);
  assert.deepEqual(both.cached, { tokens: 7, images: 0 });
  const b = await both.open();
  assert.equal(b.session, a.session);
  assert.deepEqual(copies, [[a.session, running.session, 7]]);
  assert.equal(made.length, 2);
});

Deno.test("PromptCache: a claim beside one whose prompt it shares waits for that prefill and copies its rows", async () => {
  const { model, made, copies } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 4 });
  const prompt = history([1, A, 2, 3]);
  // Both claimed before either is opened (their images being decoded, say).
  const first = cache.claim(prompt, 10);
  const second = cache.claim(prompt, 10);
  assert.deepEqual(first.cached, { tokens: 0, images: 0 });
  assert.deepEqual(second.cached, { tokens: 4, images: 1 }, "what the first will hold");
  let opened = false;
  const waiting = second.open().then((hit) => (opened = true, hit));
  const a = await first.open();
  await Promise.resolve();
  assert.equal(opened, false, "waits for the first's prefill");
  cache.share(a.session, prompt);
  const b = await waiting;
  assert.deepEqual(b.cached, { tokens: 4, images: 1 });
  assert.deepEqual(copies, [[b.session, a.session, 4]]);
  assert.equal(made.length, 2);
  // A prompt that shares less than half of the one prefilling does not wait for it.
  const c = cache.claim(history([5, 6, 7, 8, 9, 10]), 10);
  for (const [ids, tokens] of [[[5, 6, 7, 1, 1], 3], [[5, 6, 1, 1, 1], 0]] as const) {
    const d = cache.claim(history([...ids]), 10);
    assert.deepEqual(d.cached, { tokens, images: 0 }, ids.join(" "));
    d.cancel();
  }
  c.cancel();
});

Deno.test("PromptCache: a claim waiting on a prefill that never comes opens with what it holds without it", async () => {
  const { model, copies } = fakeModel(100, 1000);
  const cache = new PromptCache(model, { slots: 8 });
  const prompt = history([1, 2, 3, 4, 5, 6]);
  const giveUp = async (end: (claim: ReturnType<PromptCache["claim"]>, s?: unknown) => void) => {
    const first = cache.claim(prompt, 10);
    const second = cache.claim(prompt, 10);
    assert.deepEqual(second.cached, { tokens: 4, images: 0 });
    const waiting = second.open();
    end(first);
    const hit = await waiting;
    assert.deepEqual(hit.cached, { tokens: 0, images: 0 });
    hit.session.dispose(); // (its generation's end: no later claim waits on it)
  };
  // Cancelled unopened (its vision tower failed); opened and kept unshared (its prefill aborted);
  // opened and disposed (its generation failed).
  await giveUp((c) => c.cancel());
  await giveUp(async (c) => cache.keep((await c.open()).session, history([1, 2])));
  await giveUp(async (c) => (await c.open()).session.dispose());
  // Its own signal aborted while it waits.
  const first = cache.claim(prompt, 10);
  const second = cache.claim(prompt, 10);
  const gone = new AbortController();
  const waiting = second.open(gone.signal);
  gone.abort();
  const hit = await waiting;
  assert.deepEqual(hit.cached, { tokens: 0, images: 0 });
  hit.session.dispose();
  first.cancel();
  assert.equal(copies.length, 0);
  // Closed: every wait ends.
  const third = cache.claim(prompt, 10);
  const fourth = cache.claim(prompt, 10);
  const w = fourth.open();
  cache.close();
  assert.deepEqual((await w).cached, { tokens: 0, images: 0 });
  third.cancel();
});
