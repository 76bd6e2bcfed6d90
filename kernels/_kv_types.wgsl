// The KV cache's element types: f16 #if KV16 (half the bytes every decode step reads, and the
// precision transformers' own bf16 cache has 3 bits less of), else f32. Readers widen with
// vec4<f32>(…), writers narrow with KV1(…) / KV4(…). The builder sets F16 with KV16 for `enable f16`.
#if KV16
alias KV1 = f16;
alias KV4 = vec4<f16>;
#else
alias KV1 = f32;
alias KV4 = vec4<f32>;
#endif
