// The GPU-side decode state, so that N decode steps can be recorded into one command buffer with
// the same Dispatch objects: every value that changes per step is read from here, not from params.
// Its layout: kernels/_decode_state.wgsl, included by every family that reads it.
//
// The token ring (u32 tokens[capacity], plus f32 scores[capacity]): the sampler run after prefill
// writes tokens[0] (state.step = 0; see kernels/sample.ts, `afterPrefill`). A decode step then:
//   embedding of tokens[step] → layers (K/V at cache_len, rope at position) → logits
//   → sampler writes tokens[step + 1] → advance: cache_len += 1, position += 1, step += 1.
// After n decode steps the ring holds n + 1 generated tokens, tokens[0..n].

#include decode_state
@group(0) @binding(0) var<storage, read_write> state: DecodeState;

@compute @workgroup_size(1)
fn advance() {
  state.cache_len += 1u;
  state.position += 1u;
  state.step += 1u;
}
