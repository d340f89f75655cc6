#!/usr/bin/env bash
# The test command (npm test): makes sure etcd, openssl and a C++ toolchain are installed (scripts/ensure-tools.sh),
# builds llama.cpp's llama-server once per machine (cached; 15–25 minutes on 2 cores the first time), checks
# src/gen against proto/, compiles dist/ (npm run build) and type-checks, then runs every test with vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-tools.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
# The llama.cpp-server engine's tests run llama-server (SMMF_LLAMA_SERVER, or the cached build).
[ -n "${SMMF_LLAMA_SERVER:-}" ] || node bin/smmf.js engine build llama.cpp-server >/dev/null
bash scripts/check-generated.sh
# dist/ (what bin/smmf.js runs, and what the tests' processes run), then the type check of tests and benches.
npm run build --silent
npx tsc --noEmit -p .
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# A plain closing line: "N passed, N failed".
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));' "$report" || true
exit $status
