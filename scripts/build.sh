#!/usr/bin/env bash
# Compiles the checkout into dist/ when a source changed since the last build, else returns at once:
# the commands that run the compiled code (npm run pulumi, demo, fleet, bench...) call this first,
# and a full `tsc` costs seconds on every call. A build that fails leaves the stamp as it was.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
stamp=dist/.build-stamp
if [ -e "$stamp" ] && [ -z "$(find providers stacks scripts bench test tsconfig.json package-lock.json -newer "$stamp" \( -name '*.ts' -o -name '*.json' \) -print -quit 2>/dev/null)" ]; then
  exit 0
fi
started=$(date +%s.%N)
"$root/node_modules/.bin/tsc" -p tsconfig.json
touch -d "@$started" "$stamp"
