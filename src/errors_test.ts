import assert from "node:assert/strict";
import * as errors from "./errors.ts";
import * as mod from "../mod.ts";

// A user tells failures apart with instanceof: every error class qvq throws must be importable
// from the module (SamplingError, named in the README, was not).
Deno.test("mod.ts exports every error class of src/errors.ts", () => {
  const classes = Object.entries(errors).filter(([, v]) =>
    typeof v === "function" && v.prototype instanceof Error
  );
  assert.ok(classes.length >= 10, `found ${classes.length} error classes`);
  for (const [name, cls] of classes) {
    assert.equal((mod as Record<string, unknown>)[name], cls, `mod.ts does not export ${name}`);
  }
  assert.ok(new mod.SamplingError("x") instanceof mod.GpuError);
});
