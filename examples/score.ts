/**
 * qvq as a scorer: how likely the model finds each of several answers to a question — the
 * log-likelihood an evaluation harness ranks multiple-choice answers by — from one prompt
 * logprobs pass per answer.
 *
 *   deno run -A examples/score.ts [model] [question] [answer…]
 *
 * `model` is a directory or a Hugging Face hub id; by default the bundled tiny model (random
 * weights: the numbers prove the pipeline, not the model).
 */
import { Pipeline, resolveModel } from "@qvq/webgpu";

const here = (path: string) => new URL(path, import.meta.url).pathname;
const [
  model = here("../tests/fixtures/tiny-qwen2vl"),
  question = "Which is larger, 9.11 or 9.9?",
  ...given
] = Deno.args;
const answers = given.length ? given : ["9.9", "9.11", "They are equal."];

const qvq = await Pipeline.load(await resolveModel(model));
try {
  // The chat template's text up to the answer, then each answer after it: the answer's tokens
  // are the prompt's last ones, each scored given everything before it.
  const prompt = await qvq.prepare([{ role: "user", content: question }]);
  const context = qvq.tokenizer.decode(prompt.inputIds);
  const scores = [];
  for (const answer of answers) {
    const ids = qvq.tokenizer.encode(context + answer);
    const n = ids.length - prompt.inputIds.length; // the answer's tokens
    let logprob = 0;
    for await (const event of qvq.complete(ids, { promptLogprobs: 0, maxNewTokens: 1 })) {
      if (event.type !== "done") continue;
      const tokens = event.result.prompt!.logprobs!.slice(-n);
      logprob = tokens.reduce((sum, t) => sum + t.logprob!, 0);
    }
    scores.push({ answer, tokens: n, logprob });
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
