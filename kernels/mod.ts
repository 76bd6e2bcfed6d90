/**
 * Kernel registry: every kernel family's builders, one line per family.
 * @module
 */
export * from "./norm.ts";
export * from "./linear.ts";
export * from "./rope.ts";
export * from "./state.ts";
export * from "./embedding.ts";
export * from "./elementwise.ts";
export * from "./attention.ts";
export * from "./attention_decode.ts";
export * from "./kv_cache.ts";
export * from "./sample.ts";
export * from "./fill.ts";
export * from "./linear_q.ts";
export * from "./convert.ts";
export * from "./gemm.ts";
export * from "./gemv.ts";
export * from "./logprobs.ts";
export * from "./grammar.ts";
