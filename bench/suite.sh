#!/usr/bin/env bash
# The issue-5 benchmark suite: one bench/main.ts line per target of BENCHMARKS.md, appended to
# OUT/suite.jsonl (decode-step profiles included), then the GEMV chain and the transformers anchor
# when their scripts are there. On the GPU machine (DEVELOPERS.md), from the repository root:
#   bash .device/enter.sh bash bench/suite.sh "$OUT"          # ≈ 3–4 minutes on an H200
# Each line is one process (fresh device, shaders compiled in its first repetition, the last
# repetition reported); a line that fails or overruns its 170 s is skipped, not fatal.
set -u
out=${1:-.}
mkdir -p "$out"
bench() {
  timeout 170 deno run -A --no-config --no-check --cached-only bench/main.ts "$@" \
    >>"$out/suite.jsonl" 2>>"$out/suite.err" || echo "bench/suite.sh: failed: $*" >>"$out/suite.err"
}
img="--prompt-tokens 478 --image 644x476 --new-tokens 128 --profile"
bench --shape qwen2-vl-7b $img
bench --shape qwen2-vl-2b $img
bench --shape qwen2-vl-7b --quant q4 $img
bench --shape qwen2-vl-7b --quant q8 $img
bench --shape qwen2-vl-2b --quant q4 $img
bench --shape qvq-72b --quant q4 $img --max-context 8192
# The vision target: a 1280-token image (1120×896 px = 80 × 64 patches).
bench --shape qwen2-vl-7b --prompt-tokens 1300 --image 1120x896 --new-tokens 66 --profile
# The same with the int8 vision tower (q8 matrices, int8 activations and attention scores).
bench --shape qwen2-vl-7b --vision-quant q8 --prompt-tokens 1300 --image 1120x896 --new-tokens 66 --profile
# Long answers: decode at 4000–4128 tokens of context (the KV cache read grows with it).
bench --shape qwen2-vl-7b --quant q4 --prompt-tokens 4000 --new-tokens 128 --repeat 1
bench --shape qvq-72b --quant q4 --prompt-tokens 4000 --new-tokens 128 --repeat 1
# Long reasoning: QVQ-72B at 8000 tokens of context (its KV cache read is a fifth of a step).
bench --shape qvq-72b --quant q4 --prompt-tokens 8000 --max-context 8192 --new-tokens 64 --repeat 1
# Loading from disk: a synthetic bf16 2B checkpoint, written once (first line), then loaded.
ck=${QVQ_BENCH_CHECKPOINT:-/tmp/qvq-ck2b}
bench --shape qwen2-vl-2b --checkpoint "$ck" --write-checkpoint --repeat 1 --new-tokens 4
bench --shape qwen2-vl-2b --checkpoint "$ck" --repeat 1 --new-tokens 4
bench --shape qwen2-vl-2b --checkpoint "$ck" --quant q4 --repeat 1 --new-tokens 4
timeout 120 deno run -A --no-config --no-check --cached-only bench/_gemv.ts --dtypes f16,q4,q8 --sweep 0 \
  --prefill 0 >"$out/gemv.txt" 2>&1 || echo "bench/suite.sh: _gemv.ts failed" >>"$out/suite.err"
if [ -f .device/tools/anchor_transformers.py ]; then
  timeout 200 python3 .device/tools/anchor_transformers.py >>"$out/gemv.txt" 2>&1 ||
    echo "bench/suite.sh: anchor failed" >>"$out/suite.err"
fi
deno run -A --no-config --no-check bench/summary.ts "$out/suite.jsonl"
