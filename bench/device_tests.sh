#!/usr/bin/env bash
# The kernel tests (kernels/) and the readback tests (src/gpu/buffers_test.ts: Deno's mapAsync read
# before its promise settles; src/generate/token_pump_test.ts) on the GPU machine. CI runs them on
# lavapipe only, which cannot show what a real card does: tilings over its 32 KB of workgroup
# memory are skipped there, and its exact f32 division hides rounding ties (2026-11-29: an H200
# run of kernels/attention_test.ts found a stale tiling assertion and such a tie, both invisible in
# CI). From the repository root:
#   bash .device/enter.sh bash bench/device_tests.sh "$OUT"     # a few minutes on an H200
set -u
out=${1:-.}
mkdir -p "$out"
timeout 540 deno test -A --no-config --no-check --cached-only kernels/ src/gpu/buffers_test.ts \
  src/generate/token_pump_test.ts \
  >"$out/device_tests.txt" 2>&1
echo "bench/device_tests.sh: deno test exited $?" >>"$out/device_tests.txt"
sed 's/\x1b\[[0-9;]*m//g' "$out/device_tests.txt" | grep -E "FAILED|^(ok|FAILED) \||exited" | tail -n 20
