import assert from "node:assert/strict";
import { Tokenizer } from "../tokenizer.ts";
import { TINY_DIR } from "../model/_fixture.ts";
import { tokenLogprob, tokenTexts } from "./logprobs.ts";

Deno.test("tokenTexts() gives a token's text and exact bytes, a partial character's too", async () => {
  using tok = await Tokenizer.load(TINY_DIR);
  const text = tokenTexts(tok);
  const id = (t: string) => tok.tokenToId(t)!;
  assert.deepEqual(text(id("Ġretired")), {
    token: " retired",
    bytes: [...new TextEncoder().encode(" retired")],
  });
  // "ä" is byte 0xE4 alone (the start of a three-byte character), "Ģ" byte 0x80 (a continuation:
  // bytes 0x00–0x20 are U+0100–U+0120, 0x7F U+0121): their text is U+FFFD, their bytes the
  // byte-level entry read back. "Ă" is the control byte 0x02, whole.
  assert.deepEqual(text(id("ä")), { token: "\ufffd", bytes: [0xe4] });
  assert.deepEqual(text(id("Ģ")), { token: "\ufffd", bytes: [0x80] });
  assert.deepEqual(text(id("Ă")), { token: "\x02", bytes: [0x02] });
  assert.deepEqual(text(id("Ġ")), { token: " ", bytes: [0x20] });
  // A special token adds nothing to the answer's text, so nothing here either.
  assert.deepEqual(text(id("<|im_start|>")), { token: "", bytes: [] });
  // Past the tokenizer's vocabulary (an lm_head padding row): no text.
  assert.deepEqual(text(tok.vocabSize + 3), { token: "", bytes: [] });
  // A character split over two tokens: their bytes together are its UTF-8.
  const ids = [...tok.encode("蝴")];
  const bytes = ids.flatMap((i) => text(i).bytes);
  assert.deepEqual(bytes, [...new TextEncoder().encode("蝴")]);
});

Deno.test("tokenLogprob() names the chosen token and each alternative", async () => {
  using tok = await Tokenizer.load(TINY_DIR);
  const r = tokenLogprob({
    id: 9,
    logprob: -0.25,
    top: [{ id: 9, logprob: -0.25 }, { id: 10, logprob: -2 }],
  }, tokenTexts(tok));
  assert.deepEqual(r, {
    token: "*",
    bytes: [42],
    id: 9,
    logprob: -0.25,
    topLogprobs: [
      { token: "*", bytes: [42], id: 9, logprob: -0.25 },
      { token: "+", bytes: [43], id: 10, logprob: -2 },
    ],
  });
});
