#!/usr/bin/env bash
# The test command (README: npm test): build, lint and the four jest tiers, in this order, stopping at
# the first failure, then the time of each stage, so a slow stage shows where CI's budget goes.
set -uo pipefail
cd "$(dirname "$0")/.."
stages=(
  "build:bash scripts/build.sh"
  "lint:npx eslint ."
  "unit:npx jest --selectProjects unit"
  "host:npx jest --selectProjects host --runInBand"
  "faults:npx jest --selectProjects faults --runInBand"
  "e2e:npx jest --selectProjects e2e --runInBand"
)
times=()
status=0
for stage in "${stages[@]}"; do
  name=${stage%%:*}
  started=$SECONDS
  echo "==> $name: ${stage#*:}"
  bash -c "${stage#*:}" || status=$?
  times+=("$(printf '%-7s %5d s' "$name" $((SECONDS - started)))")
  [ "$status" -eq 0 ] || break
done
echo "==> stage times"
printf '  %s\n' "${times[@]}"
[ "$status" -eq 0 ] || echo "==> failed in stage $name"
exit "$status"
