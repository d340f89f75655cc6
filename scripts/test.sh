#!/usr/bin/env bash
# The test command (npm test): checks that the generated code matches proto/, type-checks, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
bash scripts/check-generated.sh
npx tsc --noEmit -p .
npx vitest run "$@"
