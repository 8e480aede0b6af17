#!/usr/bin/env bash
# The test command (README: npm test): build, then two lanes at once, each stopping at its first
# failure, then the time of each stage, so a slow stage shows where CI's budget goes.
#   lab lane:  the suites that drive the GRUB lab VM (lab.sh's own test, its faults, the whole host);
#   host lane: lint, the unit tier, every suite on sshd test hosts, then the two flavour labs.
# The lab lane is mostly a TCG guest booting or a run waiting for it, the host lane mostly Node:
# side by side they fill both cores instead of taking turns.
set -uo pipefail
cd "$(dirname "$0")/.."
jest="npx jest --runInBand"
lab_suites='test/host/lab\.test|test/faults/labFaults|test/e2e/labVfio'
flavour_suites='test/e2e/labFlavours'
lab_lane=(
  "grub-lab:$jest --selectProjects host faults e2e --testPathPatterns '$lab_suites'"
)
host_lane=(
  "lint:npx eslint ."
  "unit:npx jest --selectProjects unit"
  "host:$jest --selectProjects host --testPathIgnorePatterns '$lab_suites'"
  "faults:$jest --selectProjects faults --testPathIgnorePatterns '$lab_suites'"
  "e2e:$jest --selectProjects e2e --testPathIgnorePatterns '$lab_suites|$flavour_suites'"
  "flavours:$jest --selectProjects e2e --testPathPatterns '$flavour_suites'"
)

# The flavour labs' images (about 8 minutes each when not cached) build in the background while the
# host lane's earlier stages run; labFlavours waits for them through lab.sh's image lock. Its own
# process group, ended with this script, like the lab lane's.
prebuild_log=${VFIO_HOST_CACHE:-$HOME/.cache/vfio-host}/lab-prebuild.log
mkdir -p "$(dirname "$prebuild_log")"
setsid bash -c 'for f in sdboot-dracut extlinux; do LAB_FLAVOR=$f bash scripts/lab/lab.sh build || exit; done' >"$prebuild_log" 2>&1 &
prebuild=$!
lab_lane_pid=
trap 'kill -- -"$prebuild" 2>/dev/null; [ -z "$lab_lane_pid" ] || kill -- -"$lab_lane_pid" 2>/dev/null; true' EXIT
echo "==> building the flavour labs' images in the background (log: $prebuild_log)"

results=$(mktemp -d)
# run_lane NAME STAGE...: runs the stages in order until one fails; appends "name seconds status"
# lines to $results/NAME.
run_lane() {
  local lane=$1 stage name started status=0
  shift
  for stage in "$@"; do
    name=${stage%%:*}
    started=$SECONDS
    echo "==> $name: ${stage#*:}"
    bash -c "${stage#*:}" || status=$?
    echo "$name $((SECONDS - started)) $status" >>"$results/$lane"
    [ "$status" -eq 0 ] || return "$status"
  done
}

started=$SECONDS
echo "==> build: bash scripts/build.sh"
if ! bash scripts/build.sh; then
  echo "==> failed in stage build"
  exit 1
fi
echo "build $((SECONDS - started)) 0" >"$results/build"

# The lab lane's lines carry its name, so the two lanes' output can be told apart.
setsid bash -c "$(declare -f run_lane); results='$results'; run_lane lab \"\$@\" 2>&1 | sed -u 's/^/[lab lane] /'; exit \${PIPESTATUS[0]}" \
  lab-lane "${lab_lane[@]}" &
lab_lane_pid=$!
run_lane host "${host_lane[@]}"
host_status=$?
wait "$lab_lane_pid"
lab_status=$?
lab_lane_pid=

echo "==> stage times (the two lanes ran side by side)"
for lane in build host lab; do
  [ -f "$results/$lane" ] || continue
  while read -r name seconds status; do
    printf '  %-5s %-9s %5d s%s\n' "${lane/build/}" "$name" "$seconds" "$([ "$status" -eq 0 ] || echo "  FAILED")"
  done <"$results/$lane"
done
echo "  wall            $((SECONDS - started)) s"
grep -h '^\[lab' "$prebuild_log" | sed 's/^/  background: /' || true
rm -rf "$results"
[ "$host_status" -eq 0 ] && [ "$lab_status" -eq 0 ]
