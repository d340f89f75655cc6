#!/usr/bin/env bash
# Fails when buf lint fails or when src/gen differs from what `buf generate` makes from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx buf generate -o "$tmp"
if ! diff -r "$tmp/src/gen" src/gen; then
  echo "src/gen is stale against proto/: run 'npm run generate' and commit the result" >&2
  exit 1
fi
