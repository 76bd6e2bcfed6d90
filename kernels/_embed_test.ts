import assert from "node:assert/strict";
import { expandIncludes, WgslIncludeError } from "./_embed.ts";
import { WGSL } from "./_wgsl.ts";

Deno.test("expandIncludes() inlines fragments, nested ones too, and keeps every other line", () => {
  const fragments = { inner: "const A: u32 = 1u;\n", outer: "// outer\n#include inner\n" };
  assert.equal(
    expandIncludes("fn f() {}\n  #include outer\nfn g() {}", fragments, "x.wgsl"),
    "fn f() {}\n// outer\nconst A: u32 = 1u;\nfn g() {}",
  );
});

Deno.test("expandIncludes() names the file and the missing fragment, and refuses a cycle", () => {
  assert.throws(
    () => expandIncludes("#include nope", { a: "" }, "linear.wgsl"),
    (e: Error) =>
      e instanceof WgslIncludeError &&
      /linear\.wgsl: #include nope: no kernels\/_nope\.wgsl/.test(e.message),
  );
  assert.throws(
    () => expandIncludes("#include a", { a: "#include b", b: "#include a" }, "x.wgsl"),
    (e: Error) => e instanceof WgslIncludeError && /includes itself \(a → b → a\)/.test(e.message),
  );
});

Deno.test("the embedded kernels hold no #include and no fragment of their own; every DecodeState is the one layout", () => {
  for (const [name, src] of Object.entries(WGSL)) {
    assert.ok(!name.startsWith("_"), `fragment ${name} embedded as a family`);
    assert.ok(!/^\s*#include/m.test(src), `${name}: #include left after embedding`);
    for (const m of src.matchAll(/struct DecodeState \{[^}]*\}/g)) {
      assert.equal(
        m[0],
        "struct DecodeState { cache_len: u32, position: u32, step: u32, reserved: u32 }",
      );
    }
  }
  const users = Object.keys(WGSL).filter((n) => WGSL[n].includes("struct DecodeState")).sort();
  assert.deepEqual(users, [
    "attention_decode",
    "embedding",
    "gemv",
    "grammar",
    "kv_cache",
    "linear",
    "linear_q",
    "logprobs",
    "rope",
    "sample",
    "state",
  ]);
});
