#!/usr/bin/env bash
# The server with curl: start it with `deno task serve` (port 8000, the bundled tiny model), then
#   bash examples/curl.sh [base-url]
# Set QVQ_API_KEY if the server was started with one.
set -euo pipefail
base=${1:-http://localhost:8000}
auth=()
if [ -n "${QVQ_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $QVQ_API_KEY"); fi
here=$(cd "$(dirname "$0")" && pwd)
image=$(base64 -w0 "$here/../tests/fixtures/tiny-qwen2vl/reference/case0_0.png")

echo "== GET /health"
curl -sS "$base/health"
echo
echo "== GET /v1/models"
models=$(curl -sS "${auth[@]}" "$base/v1/models")
echo "$models"
model=$(printf '%s' "$models" | sed -E 's/.*"id":"([^"]+)".*/\1/')

body() { # $1: true for a streamed answer
  cat <<JSON
{
  "model": "$model",
  "stream": $1,
  "max_tokens": 12,
  "temperature": 0,
  "messages": [{
    "role": "user",
    "content": [
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,$image"}},
      {"type": "text", "text": "What value should be filled in the blank space?"}
    ]
  }]
}
JSON
}

echo "== POST /v1/chat/completions"
body false | curl -sS "${auth[@]}" -H "Content-Type: application/json" -d @- "$base/v1/chat/completions"
echo
echo "== POST /v1/chat/completions, streamed (-N: print each event as it arrives)"
body true | curl -sSN "${auth[@]}" -H "Content-Type: application/json" -d @- "$base/v1/chat/completions"
