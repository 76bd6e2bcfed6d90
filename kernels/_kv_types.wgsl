// The KV cache's element types: f16 #if KV16 (half the memory, at 3 bits more precision than
// transformers' own bf16 cache), else f32. Readers widen with vec4<f32>(…), writers narrow with
// KV1(…) / KV4(…); kernels/_kernel.ts emits `enable f16` for KV16.
#if KV16
alias KV1 = f16;
alias KV4 = vec4<f16>;
#else
alias KV1 = f32;
alias KV4 = vec4<f32>;
#endif
