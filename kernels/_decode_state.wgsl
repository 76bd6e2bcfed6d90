// The GPU-side decode state (kernels/state.wgsl advances it), one layout for every family that
// reads it:
//   cache_len  tokens already in the KV cache; this step's K/V are written at row cache_len and
//              its query attends over rows 0..cache_len (cache_len + 1 keys)
//   position   text rope position of the token being decoded (all three M-RoPE axes equal)
//   step       ring index of the token being fed in: the embedding reads tokens[step]
//   reserved   zero; keeps the struct 16 bytes
struct DecodeState { cache_len: u32, position: u32, step: u32, reserved: u32 }
