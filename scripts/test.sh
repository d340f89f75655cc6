#!/usr/bin/env bash
# The test command (npm test): makes sure etcd and openssl are installed (scripts/ensure-tools.sh), checks src/gen against proto/, type-checks, then runs every test with vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-tools.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
bash scripts/check-generated.sh
npx tsc --noEmit -p .
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# A plain closing line: "N passed, N failed".
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));' "$report" || true
exit $status
