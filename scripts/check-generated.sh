#!/usr/bin/env bash
# Fails when the committed templ output or browser bundle is stale: both are generated
# into a temporary place and compared with what is in the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r views "$tmp/views"
find "$tmp/views" -name '*_templ.go' -delete
go tool templ generate -path "$tmp/views" >/dev/null 2>&1
if ! diff -r -q views "$tmp/views" >/dev/null; then
  diff -r views "$tmp/views" | head -40 >&2 || true
  echo "generated templ code is stale: run \`make generate\` and commit the result." >&2
  exit 1
fi
echo "templ output matches the sources."
npm run --silent check-bundle
