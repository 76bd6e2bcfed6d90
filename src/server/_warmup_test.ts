import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadEngine } from "./_engine.ts";
import { warmUpImage } from "./_warmup.ts";
import type { GenerationResult } from "../generate/types.ts";

const TINY = fileURLToPath(new URL("../../tests/fixtures/tiny-qwen2vl", import.meta.url));

Deno.test("loadEngine({ warmUp }) compiles what a first image request needs and leaves no prompt cache behind", async () => {
  const engine = await loadEngine(TINY, { progress: false, warmUp: true });
  const compiled = engine.model.gpu.pipelineCount;
  try {
    assert.ok(compiled > 0, "the warm-up compiled pipelines");
    // A photo of the warm-up's size with another question: nothing left to compile, nothing cached.
    let result: GenerationResult | undefined;
    for await (
      const ev of engine.generate([{
        role: "user",
        content: [{ type: "image", image: warmUpImage() }, { type: "text", text: "What is this?" }],
      }], { maxNewTokens: 4, temperature: 0 })
    ) if (ev.type === "done") result = ev.result;
    assert.equal(engine.model.gpu.pipelineCount, compiled, "no pipeline compiled at the request");
    assert.ok(result!.usage.imageTokens > 0);
    assert.equal(result!.usage.cachedTokens, 0, "the warm-up's prompt was not cached");
  } finally {
    engine.dispose();
  }
  const cold = await loadEngine(TINY, { progress: false });
  try {
    const atLoad = cold.model.gpu.pipelineCount; // the weight upload's own kernels
    assert.ok(atLoad < compiled, `without the warm-up ${atLoad} at load, with it ${compiled}`);
  } finally {
    cold.dispose();
  }
});
