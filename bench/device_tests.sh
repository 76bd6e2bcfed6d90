#!/usr/bin/env bash
# The test suite on the GPU machine: every test file that runs offline there — the kernels, the
# model's parity with transformers, the pipeline, the server on its in-process engine — on the
# card's own tilings, subgroup size and binding limits. CI runs them on lavapipe only, which cannot
# show what a real card does: tilings over its 32 KB of workgroup memory are skipped there (the
# vision tower's default flash tiling among them), and its exact f32 division hides rounding ties
# (2026-11-29: an H200 run of kernels/attention_test.ts found a stale tiling assertion and such a
# tie, both invisible in CI; a later one, two tests that assumed lavapipe's speed or name).
# Left out: the files in SKIP, which start a deno of their own (that one would fetch the
# configuration's npm packages: the machine reaches no registry) or need esbuild / Chromium.
# From the repository root:
#   bash ../shared/device/prepare.sh mod.ts $(bash bench/device_tests.sh --list)   # here: cache their imports
#   bash .device/enter.sh bash bench/device_tests.sh "$OUT"                         # there: ≈ 2 minutes on an H200
set -u
SKIP=(
  src/bundle/build_test.ts src/cli/_chat_test.ts src/cli/main_test.ts src/server/_decoder_test.ts
  src/server/main_test.ts
  tests/examples_test.ts tests/publish_test.ts tests/remote_import_test.ts
  tests/server_openai_test.ts tests/server_soak_test.ts tests/web_test.ts
)
files=$(find kernels src tests bench -name '*_test.ts' | sort | grep -vxF -f <(printf '%s\n' "${SKIP[@]}"))
if [ "${1:-}" = "--list" ]; then
  echo "$files"
  exit 0
fi
out=${1:-.}
mkdir -p "$out"
# deno.json's imports without the packages only the skipped files use: with --no-config, deno
# resolves what the tests import and nothing else.
deno eval --no-config '
  const { imports } = JSON.parse(Deno.readTextFileSync("deno.json"));
  const skip = ["openai", "esbuild", "playwright-core", "@huggingface/tokenizers"];
  for (const name of skip) delete imports[name];
  Deno.writeTextFileSync(Deno.args[0], JSON.stringify({ imports }));
' "$out/import_map.json"
# shellcheck disable=SC2086 # one argument per file
# --unstable-no-legacy-abort: deno.json's "unstable" list, which --no-config leaves out (the server's
# request.signal semantics).
DENO_JOBS=8 timeout 540 deno test -A --no-config --no-lock --import-map "$out/import_map.json" \
  --unstable-no-legacy-abort --cached-only --no-check --parallel $files >"$out/device_tests.txt" 2>&1
echo "bench/device_tests.sh: deno test exited $?" >>"$out/device_tests.txt"
sed 's/\x1b\[[0-9;]*m//g' "$out/device_tests.txt" | grep -E "FAILED|^(ok|FAILED) \||exited" | tail -n 20
