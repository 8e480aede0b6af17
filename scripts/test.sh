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
# The lab images (6 to 14 minutes each when not cached) build in the background from the start,
# GRUB's first: the faults tier's labFaults is its first user, the flavour labs' are needed only in
# e2e, and each suite waits for an image being built through lab.sh's image lock. On a warm cache
# this finds all three built. Its own process group, ended with this script.
prebuild_log=${VFIO_HOST_CACHE:-$HOME/.cache/vfio-host}/lab-prebuild.log
mkdir -p "$(dirname "$prebuild_log")"
setsid bash -c 'for f in grub sdboot-dracut extlinux; do LAB_FLAVOR=$f bash scripts/lab/lab.sh build || exit; done' >"$prebuild_log" 2>&1 &
prebuild=$!
trap 'kill -- -"$prebuild" 2>/dev/null || true' EXIT
echo "==> building the lab images in the background (log: $prebuild_log)"

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
grep -h '^\[lab' "$prebuild_log" | sed 's/^/  background: /' || true
[ "$status" -eq 0 ] || echo "==> failed in stage $name"
exit "$status"
