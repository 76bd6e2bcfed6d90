#!/usr/bin/env bash
# Rebuilds wasm/pkg from the Rust sources: wasm32 release build with Debian's rustc-web
# (rustup cannot add the wasm32 target on these machines), then wasm-bindgen --target web.
# --check: build into a temporary folder and fail when the committed pkg/ differs (CI).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
out="$here/pkg"
check=0
if [ "${1:-}" = "--check" ]; then check=1; out=$(mktemp -d); fi
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/bin/wasm-ld
export CARGO_TARGET_DIR="${QVQ_WASM_TARGET_DIR:-$here/target}"
# Paths inside the binary must not depend on where the checkout lives, or --check could never pass.
export RUSTFLAGS="--remap-path-prefix=$here=/qvq --remap-path-prefix=$HOME=/home -C target-feature=+simd128"
/usr/bin/cargo build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort -p qvq_wasm
wasm-bindgen --target web --out-dir "$out" --out-name qvq_wasm "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/qvq_wasm.wasm"
if [ $check = 1 ]; then
  if ! diff -r "$out" "$here/pkg" >/dev/null; then
    echo "wasm/pkg is stale: run 'deno task build:wasm' and commit wasm/pkg" >&2
    diff -rq "$out" "$here/pkg" >&2 || true
    exit 1
  fi
  echo "wasm/pkg is up to date"
fi
