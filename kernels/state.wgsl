// The GPU-side decode state, so that N decode steps can be recorded into one command buffer with
// the same Dispatch objects: every value that changes per step is read from here, not from params.
//
// struct DecodeState {
//   cache_len: u32,  // tokens already in the KV cache; this step's K/V are written at row cache_len
//                    // and its query attends over rows 0..cache_len (cache_len + 1 keys)
//   position: u32,   // text rope position of the token being decoded (all three M-RoPE axes equal)
//   step: u32,       // ring index of the token being fed in: the embedding reads tokens[step]
//   reserved: u32,   // zero; keeps the struct 16 bytes
// }
//
// The token ring (u32 tokens[capacity], plus f32 scores[capacity]): the sampler run after prefill
// writes tokens[0] (state.step = 0; see kernels/sample.ts, `afterPrefill`). A decode step then:
//   embedding of tokens[step] → layers (K/V at cache_len, rope at position) → logits
//   → sampler writes tokens[step + 1] → advance: cache_len += 1, position += 1, step += 1.
// After n decode steps the ring holds n + 1 generated tokens, tokens[0..n].
// Every family that reads the state declares this struct with the same layout.

struct DecodeState { cache_len: u32, position: u32, step: u32, reserved: u32 }
@group(0) @binding(0) var<storage, read_write> state: DecodeState;

@compute @workgroup_size(1)
fn advance() {
  state.cache_len += 1u;
  state.position += 1u;
  state.step += 1u;
}
