import assert from "node:assert/strict";
import { ResponseStore, type StoredResponse } from "./_response_store.ts";

/** A stored response `id` answering `input` with one message item. */
function stored(id: string, input: Record<string, unknown>[] = []): StoredResponse {
  const output = [{ type: "message", id: `msg_${id}`, role: "assistant", content: [] }];
  return { response: { id, object: "response", output }, input, output };
}

Deno.test("ResponseStore keeps the most recently used responses up to maxResponses; get() counts as use", () => {
  const store = new ResponseStore({ maxResponses: 2 });
  store.put(stored("a"));
  store.put(stored("b"));
  assert.equal(store.get("a")?.response.id, "a"); // a is now the most recent
  store.put(stored("c")); // b goes
  assert.deepEqual(["a", "b", "c"].map((id) => store.get(id) !== undefined), [true, false, true]);
  assert.equal(store.item("msg_b"), undefined);
  assert.deepEqual(store.item("msg_c"), store.get("c")!.output[0]);
  assert.equal(store.size.responses, 2);
});

Deno.test("ResponseStore is bounded by the bytes of its JSON, images' data URLs included; one alone over it is not kept", () => {
  const image = {
    type: "message",
    role: "user",
    content: [{ type: "input_image", image_url: `data:image/png;base64,${"A".repeat(4000)}` }],
  };
  // At least what each counts for: its JSON, and its message item's own (kept apart, once).
  const one = 2 * (JSON.stringify(stored("x", [image])).length +
    JSON.stringify(stored("x").output[0]).length);
  const store = new ResponseStore({ maxBytes: 2 * one + 100 });
  assert.equal(store.put(stored("a", [image])), true);
  assert.equal(store.put(stored("b", [image])), true);
  assert.ok(store.size.bytes > 2 * 4000 && store.size.bytes <= store.maxBytes);
  store.put(stored("c", [image])); // over the bytes: a goes
  assert.deepEqual(["a", "b", "c"].map((id) => store.get(id) !== undefined), [false, true, true]);
  const huge = { ...image, content: [{ type: "input_text", text: "A".repeat(one) }] };
  assert.equal(store.put(stored("d", [huge])), false);
  assert.equal(store.get("d"), undefined);
  assert.deepEqual(["b", "c"].map((id) => store.get(id) !== undefined), [true, true]);
});

Deno.test("ResponseStore counts each item once: an input item with its id, and the output the response object repeats", () => {
  // As /v1/responses stores them: every input item with an id (withItemIds), the output both the
  // response's own and its output items. The items were held (and counted) twice, the output three
  // times: as a part's JSON and as an item's own.
  const text = "A".repeat(20_000);
  const input = [{ type: "message", id: "msg_x_in0", role: "user", content: text }];
  const a = stored("a", input);
  // Its JSON once: the response object, its conversation (what each holds of it held once).
  const once = 2 * (JSON.stringify(a.response).length + JSON.stringify(input).length);
  const solo = new ResponseStore();
  assert.equal(solo.put(a), true);
  assert.ok(solo.size.bytes >= 2 * text.length, `${solo.size.bytes}`); // not under its real size
  assert.ok(solo.size.bytes <= once + 200, `${solo.size.bytes} > ${once} + 200`);
  assert.deepEqual(solo.get("a"), a);
  // The eviction point: two such responses fit in twice the bytes one counts for.
  const store = new ResponseStore({ maxBytes: 2 * solo.size.bytes });
  const b = stored("b", [{ ...input[0], id: "msg_y_in0" }]);
  assert.equal(store.put(a), true);
  assert.equal(store.put(b), true);
  assert.deepEqual(["a", "b"].map((id) => store.get(id) !== undefined), [true, true]);
  assert.equal(store.size.bytes, 2 * solo.size.bytes);
  assert.equal(store.put(stored("c", [{ ...input[0], id: "msg_z_in0" }])), true); // a goes
  assert.deepEqual(["a", "b", "c"].map((id) => store.get(id) !== undefined), [false, true, true]);
  assert.equal(store.item("msg_x_in0"), undefined);
  assert.deepEqual(store.item("msg_y_in0"), b.input[0]);
});

Deno.test("ResponseStore: a response that carries on held items holds them once; put() true only where it alone fits", () => {
  const text = "A".repeat(20_000);
  const a = stored("a", [{ type: "message", id: "msg_a_in0", role: "user", content: text }]);
  const b = stored("b", [...a.input, ...a.output, { type: "message", id: "msg_b_in2" }]);
  const probe = new ResponseStore();
  probe.put(a);
  const aBytes = probe.size.bytes;
  probe.put(b);
  assert.ok(probe.size.bytes < aBytes + 1000, `${probe.size.bytes}`); // a's items held once
  probe.delete("a");
  const bBytes = probe.size.bytes; // b alone: a's items too
  assert.ok(bBytes > aBytes && bBytes >= 2 * text.length);
  assert.deepEqual(probe.get("b"), b);
  // With room for a alone, b does not fit: refused, a stays (it is not put and then dropped).
  const store = new ResponseStore({ maxBytes: aBytes });
  assert.equal(store.put(a), true);
  assert.equal(store.put(b), false);
  assert.deepEqual(["a", "b"].map((id) => store.get(id) !== undefined), [true, false]);
  assert.equal(store.size.bytes, aBytes);
  // With room for b alone, it is kept, a goes.
  const roomy = new ResponseStore({ maxBytes: bBytes });
  roomy.put(a);
  assert.equal(roomy.put(b), true);
  assert.deepEqual(["a", "b"].map((id) => roomy.get(id) !== undefined), [false, true]);
  assert.equal(roomy.size.bytes, bBytes);
});

Deno.test("ResponseStore holds a response as its JSON, 2 bytes a character, not the objects it was given", () => {
  // A client's item with extra fields: 10 000 empty arrays are 30 000 characters of JSON but
  // many times that on the heap as objects; kept as one string each, what is counted is held.
  const junk = Array.from({ length: 10_000 }, () => []);
  const first = stored("a", [{ type: "message", role: "user", content: "Hi", junk }]);
  const store = new ResponseStore();
  store.put(first);
  // Its parts' JSON, its message item held once (its own JSON) and its id where it was.
  const ids = first.output.map((item) => item.id);
  const json = [{ ...first.response, output: ids }, first.input, ids, first.output[0]].map((p) =>
    JSON.stringify(p)
  );
  assert.equal(store.size.bytes, 2 * json.join("").length);
  const got = store.get("a")!;
  assert.deepEqual(got, first);
  assert.notEqual(got.input[0], first.input[0]); // a copy: the client's objects were let go
  assert.notEqual(got.input[0].junk, junk);
  first.output[0].role = "changed"; // nor does a change to them reach the store
  assert.equal(store.item("msg_a")?.role, "assistant");
});

Deno.test("ResponseStore.delete() forgets a response; an item a later response carries on stays findable", () => {
  const store = new ResponseStore();
  const first = stored("a", [{ type: "message", role: "user", content: "Hi" }]);
  store.put(first);
  // The next turn's conversation holds the first's items (previous_response_id).
  store.put(stored("b", [...first.input, ...first.output]));
  const second = store.get("b")!;
  assert.equal(store.delete("a"), true);
  assert.equal(store.delete("a"), false);
  assert.deepEqual(store.item("msg_a"), first.output[0]);
  assert.deepEqual(store.get("b"), second); // the item it holds by id too
  store.delete("b");
  assert.equal(store.item("msg_a"), undefined);
  assert.deepEqual(store.size, { responses: 0, bytes: 0 });
});

Deno.test("ResponseStore.item(): an id already held keeps its first holder's item while any holder stays, counted once", () => {
  const store = new ResponseStore();
  const genuine = stored("a");
  store.put(genuine);
  const bytes = store.size.bytes;
  const forged = { type: "message", id: "msg_a", role: "assistant", content: "FORGED" };
  const forger = stored("b", [forged]);
  store.put(forger);
  assert.deepEqual(store.get("b"), forger); // its own item, as it was put
  store.put(stored("c", [...genuine.input, ...genuine.output])); // carried on
  assert.deepEqual(store.item("msg_a"), genuine.output[0]);
  store.delete("a");
  assert.deepEqual(store.item("msg_a"), genuine.output[0]); // b and c still hold the id
  store.delete("b");
  assert.deepEqual(store.item("msg_a"), genuine.output[0]);
  store.delete("c");
  assert.equal(store.item("msg_a"), undefined);
  assert.deepEqual(store.size, { responses: 0, bytes: 0 });
  assert.ok(bytes > 0);
});

Deno.test("ResponseStore.item() reads the item alone, not a holder's whole conversation", () => {
  // The review: a reference resolved from a later holder's input parsed all of it (up to
  // maxBytes), every reference.
  const store = new ResponseStore();
  const first = stored("a");
  store.put(first);
  const long = Array.from({ length: 20_000 }, (_, i) => ({ type: "message", content: `${i}` }));
  store.put(stored("b", [...long, ...first.output]));
  store.delete("a");
  const parse = JSON.parse;
  let longest = 0;
  JSON.parse = (text: string, ...rest: []) => {
    longest = Math.max(longest, text.length);
    return parse(text, ...rest);
  };
  try {
    assert.deepEqual(store.item("msg_a"), first.output[0]);
  } finally {
    JSON.parse = parse;
  }
  assert.equal(longest, JSON.stringify(first.output[0]).length);
});

Deno.test("ResponseStore refuses limits that are not integers >= 0; 0 keeps nothing", () => {
  assert.throws(
    () => new ResponseStore({ maxResponses: -1 }),
    /maxResponses must be an integer >= 0; got -1/,
  );
  assert.throws(
    () => new ResponseStore({ maxBytes: 1.5 }),
    /maxBytes must be an integer >= 0; got 1.5/,
  );
  const off = new ResponseStore({ maxResponses: 0 });
  assert.equal(off.enabled, false);
  assert.equal(off.put(stored("a")), false);
  assert.equal(off.get("a"), undefined);
});
