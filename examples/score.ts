/**
 * qvq as a scorer: how likely the model finds each of several answers to a question — the
 * log-likelihood an evaluation harness ranks multiple-choice answers by — from one prompt
 * logprobs pass per answer.
 *
 *   deno run -A examples/score.ts [model] [question] [answer…]
 *
 * `model` is a directory or a Hugging Face hub id; by default QVQ_MODEL, else the bundled tiny model (random
 * weights: the numbers prove the pipeline, not the model).
 */
import { fileURLToPath } from "node:url";
import { Pipeline, resolveModel } from "@qvq/webgpu";

// A path beside this file (as a path, not a URL: spaces stay spaces).
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const [
  model = Deno.env.get("QVQ_MODEL") || here("../tests/fixtures/tiny-qwen2vl"),
  question = "Which is larger, 9.11 or 9.9?",
  ...given
] = Deno.args;
const answers = given.length ? given : ["9.9", "9.11", "They are equal."];

const qvq = await Pipeline.load(await resolveModel(model));
try {
  // The chat template's tokens up to the answer, then the answer's own (tokenized apart, as an
  // evaluation harness does: the template's last newline and an answer's first would otherwise
  // merge): the prompt's last tokens, each scored given everything before it.
  const context = Array.from((await qvq.prepare([{ role: "user", content: question }])).inputIds);
  const scores = [];
  for (const answer of answers) {
    const tokens = Array.from(qvq.tokenizer.encode(answer));
    if (!tokens.length) throw new Error(`the answer ${JSON.stringify(answer)} has no tokens`);
    let logprob = 0;
    for await (
      const event of qvq.complete([...context, ...tokens], { promptLogprobs: 0, maxNewTokens: 1 })
    ) {
      if (event.type !== "done") continue;
      const scored = event.result.prompt!.logprobs!.slice(-tokens.length);
      logprob = scored.reduce((sum, t) => sum + t.logprob!, 0);
    }
    scores.push({ answer, tokens: tokens.length, logprob });
  }
  scores.sort((a, b) => b.logprob - a.logprob);
  for (const s of scores) {
    console.log(
      `${s.logprob.toFixed(3).padStart(9)}  ${JSON.stringify(s.answer)} (${s.tokens} tokens)`,
    );
  }
} finally {
  qvq.dispose();
}
