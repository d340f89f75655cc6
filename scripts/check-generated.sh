#!/usr/bin/env bash
# Fails when buf lint fails, when proto/ breaks compatibility with the last released contracts
# (proto/released/smmf-v1.binpb, made by `npm run proto:release`), or when src/gen differs from what
# `buf generate` makes from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
npx buf breaking proto --against proto/released/smmf-v1.binpb
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx buf generate -o "$tmp"
if ! diff -r "$tmp/src/gen" src/gen; then
  echo "src/gen is stale against proto/: run 'npm run generate' and commit the result" >&2
  exit 1
fi
