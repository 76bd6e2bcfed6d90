import assert from "node:assert/strict";
import { InvalidInputError, ModelFileError, SchemaError } from "../errors.ts";
import {
  cachedRefusals,
  type CompiledFormat,
  compileFormat,
  DEFAULT_MAX_NEW_TOKENS,
  type FormatJob,
  parseGenerationConfig,
  precompileFormat,
  resolveOptions,
} from "./options.ts";
import { dfaAccepts } from "./_automaton.ts";

const FIXTURE = new URL(
  "../../tests/fixtures/tiny-qwen2vl/generation_config.json",
  import.meta.url,
);

Deno.test("parseGenerationConfig() reads the fixture's eos list and greedy default", async () => {
  const cfg = parseGenerationConfig(JSON.parse(await Deno.readTextFile(FIXTURE)));
  assert.deepEqual(cfg.eosTokenIds, [151645, 151643]);
  assert.equal(cfg.bosTokenId, 151643);
  assert.equal(cfg.padTokenId, 151643);
  assert.equal(cfg.doSample, false);
  // transformers' defaults for the absent fields
  assert.deepEqual([cfg.temperature, cfg.topK, cfg.topP, cfg.repetitionPenalty], [1, 50, 1, 1]);
  assert.equal(cfg.maxNewTokens, undefined);
});

Deno.test("parseGenerationConfig() takes eos_token_id as a single int, or falls back", () => {
  assert.deepEqual(parseGenerationConfig({ eos_token_id: 7 }).eosTokenIds, [7]);
  assert.deepEqual(parseGenerationConfig({}, "g.json", [3, 3]).eosTokenIds, [3]);
});

Deno.test("parseGenerationConfig() names the file and field of a bad value", () => {
  assert.throws(
    () => parseGenerationConfig({ eos_token_id: "x" }, "g.json"),
    (e: Error) =>
      e instanceof ModelFileError && /g\.json/.test(e.message) && /eos_token_id/.test(e.message) &&
      /"x"/.test(e.message),
  );
  assert.throws(() => parseGenerationConfig({ temperature: "hot" }), /temperature.*"hot"/);
  assert.throws(() => parseGenerationConfig([1]), ModelFileError);
  // max_new_tokens is every answer's default length: a fraction or 0 is the file's error.
  for (const bad of [100.5, 0, -3, "300"]) {
    assert.throws(
      () => parseGenerationConfig({ max_new_tokens: bad }),
      /"max_new_tokens" must be an integer ≥ 1/,
    );
  }
  assert.equal(parseGenerationConfig({ max_new_tokens: 300 }).maxNewTokens, 300);
});

// QVQ-72B-Preview's generation_config.json
const QVQ = parseGenerationConfig({
  bos_token_id: 151643,
  do_sample: true,
  eos_token_id: [151645, 151643],
  pad_token_id: 151643,
  repetition_penalty: 1.05,
  temperature: 0.01,
  top_k: 1,
  top_p: 0.001,
});

Deno.test("resolveOptions() fills unset fields from generation_config.json", () => {
  const o = resolveOptions({}, QVQ);
  assert.equal(o.maxNewTokens, DEFAULT_MAX_NEW_TOKENS);
  assert.equal(o.maxNewTokensGiven, false);
  // Infinity: as many as the context holds, up to the ceiling, lowered to it as a default is.
  const full = resolveOptions({ maxNewTokens: Infinity }, QVQ);
  assert.deepEqual([full.maxNewTokens, full.maxNewTokensGiven], [8192, false]);
  assert.equal(resolveOptions({ maxNewTokens: 100 }, QVQ).maxNewTokensGiven, true);
  assert.equal(o.temperature, 0.01);
  assert.equal(o.topK, 1);
  assert.equal(o.topP, 0.001);
  assert.equal(o.repetitionPenalty, 1.05);
  assert.deepEqual(o.stopTokenIds, [151645, 151643]);
  assert.deepEqual(o.stop, []);
  assert.equal(o.stopOnLoop, false);
  assert.ok(Number.isSafeInteger(o.seed) && o.seed >= 0);
});

Deno.test("resolveOptions() samples greedily below GREEDY_TEMPERATURE (1e-5), as vLLM", () => {
  const cfg = parseGenerationConfig({ do_sample: true, temperature: 1e-7 });
  assert.equal(resolveOptions(undefined, cfg).temperature, 0);
  for (const [t, resolved] of [[1e-38, 0], [5e-324, 0], [9.99e-6, 0], [1e-5, 1e-5], [0.7, 0.7]]) {
    assert.equal(resolveOptions({ temperature: t }, cfg).temperature, resolved, `${t}`);
  }
});

Deno.test("resolveOptions() is greedy when do_sample is false and no temperature is given", () => {
  const cfg = parseGenerationConfig({ do_sample: false, temperature: 0.7 });
  assert.equal(resolveOptions(undefined, cfg).temperature, 0);
  assert.equal(resolveOptions({ temperature: 0.5 }, cfg).temperature, 0.5);
});

Deno.test("resolveOptions() keeps the caller's values", () => {
  const ac = new AbortController();
  const o = resolveOptions({
    maxNewTokens: 8192,
    temperature: 0,
    topK: 0,
    topP: 1,
    repetitionPenalty: 1,
    frequencyPenalty: -2,
    presencePenalty: 1.5,
    seed: 42,
    stop: ["END", "END", "\n\n"],
    stopOnLoop: true,
    signal: ac.signal,
  }, QVQ);
  assert.deepEqual(
    [o.maxNewTokens, o.temperature, o.topK, o.topP, o.repetitionPenalty, o.seed, o.stopOnLoop],
    [8192, 0, 0, 1, 1, 42, true],
  );
  assert.deepEqual([o.frequencyPenalty, o.presencePenalty], [-2, 1.5]);
  // min_p: the caller's, else generation_config.json's, else off.
  assert.equal(o.minP, 0);
  assert.equal(resolveOptions({ minP: 0.05 }, QVQ).minP, 0.05);
  assert.equal(resolveOptions({}, parseGenerationConfig({ min_p: 0.1 })).minP, 0.1);
  // stopTokenIds beside the eos ids; ignoreEos drops those.
  assert.deepEqual(
    resolveOptions({ stopTokenIds: [13, 151645] }, QVQ).stopTokenIds,
    [151645, 151643, 13],
  );
  assert.deepEqual(resolveOptions({ stopTokenIds: [13], ignoreEos: true }, QVQ).stopTokenIds, [13]);
  assert.deepEqual(resolveOptions({ ignoreEos: true }, QVQ).stopTokenIds, []);
  assert.deepEqual([o.logprobs, o.topLogprobs], [false, 0]);
  const lp = resolveOptions({ logprobs: true, topLogprobs: 20 }, QVQ);
  assert.deepEqual([lp.logprobs, lp.topLogprobs], [true, 20]);
  assert.deepEqual(resolveOptions({ logitBias: { 7: -100, 42: 2.5 } }, QVQ).logitBias, [
    [7, -100],
    [42, 2.5],
  ]);
  assert.deepEqual(resolveOptions({}, QVQ).logitBias, []);
  const zero = resolveOptions({ logprobs: false, topLogprobs: 0 }, QVQ);
  assert.deepEqual([zero.logprobs, zero.topLogprobs], [false, 0]);
  assert.deepEqual(o.stop, ["END", "\n\n"]);
  assert.equal(o.signal, ac.signal);
});

Deno.test("resolveOptions() rejects every bad option with its field and value", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ maxNewTokens: 0 }, /maxNewTokens.*\b0\b/],
    [{ maxNewTokens: 8193 }, /maxNewTokens.*8193/],
    [{ maxNewTokens: 1.5 }, /maxNewTokens.*1\.5/],
    [{ maxNewTokens: "10" }, /maxNewTokens.*"10"/],
    [{ temperature: -0.1 }, /temperature.*-0\.1/],
    [{ temperature: NaN }, /temperature.*NaN/],
    [{ topP: 0 }, /topP.*\b0\b/],
    [{ topP: 1.2 }, /topP.*1\.2/],
    [{ topK: -1 }, /topK.*-1/],
    [{ minP: 1.5 }, /minP must be a number in \[0, 1\] \(0 = off\), got 1\.5/],
    [{ minTokens: 9, maxNewTokens: 8 }, /minTokens 9 is more than maxNewTokens 8/],
    [{ minTokens: -1 }, /minTokens must be an integer in \[0, 8192\]/],
    [
      { stopTokenIds: [1.5] },
      /stopTokenIds must be an array of at most 64 token ids, got \[1\.5\]/,
    ],
    [{ ignoreEos: "yes" }, /ignoreEos must be true or false/],
    [{ topK: 2.5 }, /topK.*2\.5/],
    [{ repetitionPenalty: 0 }, /repetitionPenalty.*\b0\b/],
    [{ repetitionPenalty: 1e-40 }, /repetitionPenalty must be a number in \[0\.01, 100\].*1e-40/],
    [{ presencePenalty: 2.5 }, /presencePenalty must be a number in \[-2, 2\].*2\.5/],
    [{ frequencyPenalty: -3 }, /frequencyPenalty.*-3/],
    [{ logprobs: 1 }, /logprobs must be true or false, got 1/],
    [{ logitBias: [1] }, /logitBias must be an object of token id → bias/],
    [{ logitBias: { x: 1 } }, /logitBias keys must be token ids, got "x"/],
    [{ logitBias: { 5: 101 } }, /logitBias\[5\] must be a number in \[-100, 100\], got 101/],
    [
      { logitBias: Object.fromEntries(Array.from({ length: 301 }, (_, i) => [i, 1])) },
      /logitBias has 301 tokens; at most 300/,
    ],
    [{ logprobs: true, topLogprobs: 21 }, /topLogprobs must be an integer in \[0, 20\], got 21/],
    [{ topLogprobs: 2 }, /topLogprobs needs logprobs: true/],
    [{ seed: -3 }, /seed.*-3/],
    [{ seed: 2 ** 60 }, /seed/],
    [{ stop: "x" }, /stop must be an array.*"x"/],
    [{ stop: [""] }, /stop\[0\].*""/],
    [{ stop: ["a", 5] }, /stop\[1\].*5/],
    [{ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }, /stop has 17/],
    [{ stopOnLoop: "yes" }, /stopOnLoop.*"yes"/],
    [{ signal: {} }, /signal must be an AbortSignal/],
    // A misspelt or foreign option is named, not ignored.
    [{ maxTokens: 2 }, /unknown generation option maxTokens \(maxNewTokens is the answer's/],
    [{ top_p: 0.5, n: 2 }, /unknown generation options top_p, n; the options are maxNewTokens, /],
  ];
  for (const [opts, msg] of bad) {
    assert.throws(() => resolveOptions(opts, QVQ), (e: Error) => {
      assert.ok(e instanceof InvalidInputError, `${JSON.stringify(opts)}: ${e}`);
      assert.match(e.message, msg);
      return true;
    });
  }
});

Deno.test("resolveOptions() reads responseFormat: json_object, a schema's DFA, a choice's, text none", () => {
  const config = parseGenerationConfig({ eos_token_id: [2] });
  assert.equal(resolveOptions({}, config).constraint, undefined);
  assert.equal(resolveOptions({ responseFormat: "text" }, config).constraint, undefined);
  assert.equal(resolveOptions({ responseFormat: "json_object" }, config).constraint, "json_object");
  const schema = resolveOptions({ responseFormat: { jsonSchema: { type: "integer" } } }, config);
  assert.ok(typeof schema.constraint === "object" && dfaAccepts(schema.constraint, "-12"));
  const choice = resolveOptions({ responseFormat: { choice: ["yes", "no"] } }, config);
  assert.ok(typeof choice.constraint === "object" && dfaAccepts(choice.constraint, "no"));
  assert.throws(
    () => resolveOptions({ responseFormat: "json_schema" as "text" }, config),
    /responseFormat must be "text", "json_object", \{ jsonSchema: <schema>\[, freeAfter\] \}, \{ choice: .* or \{ regex/,
  );
  // freeAfter: the schema's instance, or any text that begins with it.
  const either = resolveOptions(
    { responseFormat: { jsonSchema: { type: "integer" }, freeAfter: "CALL" } },
    config,
  ).constraint;
  assert.ok(typeof either === "object");
  assert.ok(
    dfaAccepts(either, "-12") && dfaAccepts(either, "CALL f(1)") && !dfaAccepts(either, "x"),
  );
  assert.notEqual(either, schema.constraint); // cached apart
  assert.throws(
    () =>
      resolveOptions(
        { responseFormat: { jsonSchema: { type: "integer" }, freeUntil: "END" } },
        config,
      ),
    /responseFormat\.freeUntil needs freeAfter/,
  );
  // …and apart from a "schema" that is the cache's own key for it (an array is no schema).
  assert.throws(
    () => resolveOptions({ responseFormat: { jsonSchema: [{ type: "integer" }, "CALL"] } }, config),
    /a JSON schema must be an object/,
  );
  for (const freeAfter of ["", 5]) {
    assert.throws(
      () =>
        resolveOptions(
          { responseFormat: { jsonSchema: { type: "integer" }, freeAfter: freeAfter as string } },
          config,
        ),
      /responseFormat\.freeAfter must be a non-empty string/,
    );
  }
  assert.throws(
    () =>
      resolveOptions(
        { responseFormat: { jsonSchema: { type: "integer" }, choice: ["a"] } as never },
        config,
      ),
    /responseFormat must be/,
  );
  // A schema it cannot hold an answer to fails here, naming where (before a request queues).
  assert.throws(
    () =>
      resolveOptions(
        { responseFormat: { jsonSchema: { type: "string", pattern: "(a)\\1" } } },
        config,
      ),
    (e) => e instanceof SchemaError && /backreferences are not supported/.test(e.message),
  );
  assert.throws(
    () => resolveOptions({ responseFormat: "json_object", minTokens: 5 }, config),
    /responseFormat and minTokens 5 do not go together/,
  );
  // Nothing could end the answer once whole.
  assert.throws(
    () => resolveOptions({ responseFormat: "json_object", ignoreEos: true }, config),
    /ignoreEos leaves none/,
  );
  assert.equal(
    resolveOptions({ responseFormat: "json_object", ignoreEos: true, stopTokenIds: [5] }, config)
      .constraint,
    "json_object",
  );
});

Deno.test("resolveOptions() compiles a schema once for repeated requests (the DFA cache)", () => {
  const config = parseGenerationConfig({ eos_token_id: [2] });
  const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"] };
  const a = resolveOptions({ responseFormat: { jsonSchema: schema } }, config).constraint;
  const b = resolveOptions({ responseFormat: { jsonSchema: structuredClone(schema) } }, config)
    .constraint;
  assert.ok(typeof a === "object" && a === b, "the same DFA object, not a second compile");
  const c = resolveOptions({ responseFormat: { jsonSchema: { ...schema, required: [] } } }, config)
    .constraint;
  assert.notEqual(c, a);
});

Deno.test("a refused schema is refused again from the cache: the same error class and message, a fresh error each time", () => {
  // Unique to this test (the cache is the module's), and refused by the compiler, not the options.
  const schema = { type: "string", pattern: "(q)\\1", description: `refused ${Math.random()}` };
  const before = cachedRefusals();
  const errors = [0, 1].map(() => {
    try {
      resolveOptions({ responseFormat: { jsonSchema: schema } }, QVQ);
    } catch (e) {
      return e as Error;
    }
    assert.fail("the schema was taken");
  });
  assert.equal(cachedRefusals(), before + 1);
  assert.ok(errors[0] instanceof SchemaError && errors[1] instanceof SchemaError);
  assert.equal(errors[1].message, errors[0].message);
  assert.match(errors[0].message, /backreferences are not supported/);
  assert.notEqual(errors[1], errors[0]);
});

// The server's engine compiles formats on another thread (src/server/_format_compiler.ts): what
// that thread gives lands in the cache resolveOptions reads.
Deno.test("precompileFormat() puts another thread's DFA or refusal where resolveOptions() finds it", async () => {
  const unique = () => `precompiled ${Math.random()}`;
  const jobs: FormatJob[] = [];
  const compile = (job: FormatJob): Promise<CompiledFormat> => {
    jobs.push(job);
    return Promise.resolve({ dfa: compileFormat(job) });
  };
  const schema = { type: "object", properties: { a: { type: "integer" } }, description: unique() };
  const responseFormat = { jsonSchema: schema };
  await precompileFormat({ responseFormat }, compile);
  assert.deepEqual(jobs, [{ kind: "schema", value: schema }]);
  const dfa = resolveOptions({ responseFormat }, QVQ).constraint;
  assert.ok(typeof dfa === "object" && dfaAccepts(dfa, '{"a": 12}'));
  // Compiled once: already there, precompile asks for nothing, resolve compiles nothing.
  await precompileFormat({ responseFormat }, compile);
  assert.equal(jobs.length, 1);
  assert.equal(resolveOptions({ responseFormat }, QVQ).constraint, dfa);
  // freeAfter's span, a choice list and a regex are keyed as resolveOptions keys them.
  for (
    const format of [
      { jsonSchema: schema, freeAfter: "<tool_call>" },
      { choice: ["yes", unique()] },
      { regex: `(a|b)${Math.floor(Math.random() * 1e9)}` },
    ]
  ) {
    const n: number = jobs.length;
    const options = { responseFormat: format };
    await precompileFormat(options, compile);
    assert.equal(jobs.length, n + 1, JSON.stringify(format));
    const c = resolveOptions(options, QVQ).constraint;
    await precompileFormat(options, compile);
    assert.equal(jobs.length, n + 1, "cached: not compiled again");
    assert.equal(resolveOptions(options, QVQ).constraint, c);
  }
  // A refusal, named by its class: resolveOptions refuses as if it had compiled it.
  const refused = { jsonSchema: { type: "string", description: unique() } };
  const before = cachedRefusals();
  await precompileFormat(
    { responseFormat: refused },
    () => Promise.resolve({ error: { name: "SchemaError", message: "refused over there" } }),
  );
  assert.equal(cachedRefusals(), before + 1);
  assert.throws(
    () => resolveOptions({ responseFormat: refused }, QVQ),
    (e: Error) => e instanceof SchemaError && e.message === "responseFormat: refused over there",
  );
  // Nothing asked for a malformed format, JSON mode or none; a failed compile (a thread that died)
  // or an error that is no refusal leaves it to resolveOptions, which compiles it here.
  const never = () => Promise.reject(new Error("asked"));
  for (const responseFormat of [undefined, "json_object", { jsonSchema: {}, freeUntil: "x" }, 7]) {
    await precompileFormat({ responseFormat }, never);
  }
  await precompileFormat(undefined, never);
  const later = { jsonSchema: { type: "boolean", description: unique() } };
  await precompileFormat({ responseFormat: later }, never);
  await precompileFormat(
    { responseFormat: later },
    () => Promise.resolve({ error: { name: "TypeError", message: "a bug" } }),
  );
  const own = resolveOptions({ responseFormat: later }, QVQ).constraint;
  assert.ok(typeof own === "object" && dfaAccepts(own, "true"));
});

Deno.test("precompileFormat() compiles a format once while it compiles: calls at the same time wait for that one", async () => {
  // Requests sent together with one schema (a client's n parallel calls, a check and its run)
  // each queued a compile of their own on the compiling thread, the last waiting for them all.
  const schema = { type: "integer", description: `together ${Math.random()}` };
  const options = { responseFormat: { jsonSchema: schema } };
  let compiles = 0;
  const { promise: held, resolve: release } = Promise.withResolvers<void>();
  const compile = async (job: FormatJob): Promise<CompiledFormat> => {
    compiles++;
    await held;
    return { dfa: compileFormat(job) };
  };
  const all = Promise.all([1, 2, 3].map(() => precompileFormat(options, compile)));
  let settled = false;
  all.then(() => settled = true);
  await Promise.resolve();
  assert.equal(compiles, 1);
  release();
  await all;
  assert.ok(settled);
  assert.equal(compiles, 1);
  const dfa = resolveOptions(options, QVQ).constraint;
  assert.ok(typeof dfa === "object" && dfaAccepts(dfa, "42"));
  // Done: the next compile of it, were it evicted, is a fresh one (a failure is not kept either).
  const failed = {
    responseFormat: { jsonSchema: { type: "null", description: `${Math.random()}` } },
  };
  let tries = 0;
  const fail = () => (tries++, Promise.reject(new Error("the thread died")));
  await Promise.all([precompileFormat(failed, fail), precompileFormat(failed, fail)]);
  assert.equal(tries, 1);
  await precompileFormat(failed, fail);
  assert.equal(tries, 2);
});
