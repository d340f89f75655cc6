#!/usr/bin/env bash
# Fails when src/gen is stale against proto/ (regenerates it, then compares with git), or when buf lint fails.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
npx buf generate
if ! git diff --exit-code --stat -- src/gen || [ -n "$(git status --porcelain -- src/gen)" ]; then
  echo "src/gen is stale: run 'npm run generate' and commit the result" >&2
  exit 1
fi
