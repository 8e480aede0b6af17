#!/usr/bin/env bash
# The test command (README: npm test): build, lint and the unit tier, then the real-host tiers in two
# lanes at once, then the time of each stage, so a slow stage shows where CI's budget goes.
#
# Why two lanes: a lab suite spends much of its time waiting on one TCG guest (a boot, a shell
# script's forks in the guest), which keeps about one of the two cores busy. The longest suite,
# labVfio (the GRUB lab's whole host), starts as early as it can: one lane runs the host tier and
# two short fault suites (while the GRUB lab image builds, on a cold cache), then labVfio. The other
# runs the remaining fault suites, the other end-to-end suites, the flavour labs (their images are
# built by then) and last labFaults (the GRUB lab again, on an instance of its own). In the
# measured run with labFaults before labVfio, the second lane ended 22 minutes before the first.
# Each lane runs its stages in order; a failure in either stops both at their next stage boundary.
# Every line is prefixed with its lane.
set -uo pipefail
cd "$(dirname "$0")/.."
first=(
  "build:bash scripts/build.sh"
  "lint:npx eslint ."
  # jest's default on 2 cores is one worker; many unit suites wait on the shells they start (shell
  # quoting, lab.sh's recipe and sources), so a second worker overlaps those waits.
  "unit:npx jest --selectProjects unit --maxWorkers=2"
)
grub_lab_suites="labFaults|labVfio"
# Short fault suites on the test host, no lab (a cut connection; the guards' previews): they run in
# the GRUB lab's lane while its image builds, which on a cold cache outlasts the host tier by
# minutes (494 s against 304 in the last cold run, where the other lane ended 371 s after this one).
short_fault_suites="guards|connectionCut"
lane_grub=(
  "host:npx jest --selectProjects host --runInBand"
  "shortFaults:npx jest --selectProjects faults --runInBand --testPathPatterns '$short_fault_suites'"
  "labVfio:npx jest --selectProjects e2e --runInBand --testPathPatterns labVfio"
)
lane_hosts=(
  "faults:npx jest --selectProjects faults --runInBand --testPathIgnorePatterns '$grub_lab_suites|$short_fault_suites'"
  "e2e:npx jest --selectProjects e2e --runInBand --testPathIgnorePatterns '$grub_lab_suites|labFlavours'"
  "labFlavours:npx jest --selectProjects e2e --runInBand --testPathPatterns labFlavours"
  "labFaults:npx jest --selectProjects faults --runInBand --testPathPatterns labFaults"
)

# The lab images (when not cached: 4 to 5 minutes each alone, 8 to 11 beside the lanes) build in
# the background from the start, GRUB's first: its lane needs it first, the flavour labs' are
# needed only at the end of the other lane, and each suite waits for an image being built through
# lab.sh's image lock. On a warm cache this finds all three built. Its own process group, ended
# with this script.
cache=${VFIO_HOST_CACHE:-$HOME/.cache/vfio-host}
prebuild_log=$cache/lab-prebuild.log
mkdir -p "$cache"
setsid bash -c 'for f in grub sdboot-dracut extlinux; do LAB_FLAVOR=$f bash scripts/lab/lab.sh build || exit; done' >"$prebuild_log" 2>&1 &
prebuild=$!
lanes=()
trap 'for pid in "$prebuild" "${lanes[@]}"; do kill -- -"$pid" 2>/dev/null || true; done' EXIT
echo "==> building the lab images in the background (log: $prebuild_log)"

results=$(mktemp -d)
failed=$results/failed

# Runs stages in order, each line "name seconds status" into $results/$1; stops at the first failure
# here or in the other lane.
run_stages() {
  local lane=$1 stage name started status
  shift
  for stage in "$@"; do
    [ -e "$failed" ] && return
    name=${stage%%:*}
    started=$SECONDS
    echo "==> $name: ${stage#*:}"
    bash -c "${stage#*:}" 2>&1 | tee "$results/$lane.$name.log"
    status=${PIPESTATUS[0]}
    printf '%s %d %d\n' "$name" $((SECONDS - started)) "$status" >>"$results/$lane"
    [ "$status" -eq 0 ] || { echo "$name" >"$failed"; return; }
  done
}

run_stages first "${first[@]}"
if [ ! -e "$failed" ]; then
  started=$SECONDS
  for lane in grub hosts; do
    declare -n stages="lane_$lane"
    # Its own process group (setsid) so the trap can end a lane and all it started.
    setsid bash -c "$(declare -f run_stages); results=$results failed=$failed; run_stages $lane \"\$@\" 2>&1 | sed -u 's/^/[$lane] /'" \
      lane "${stages[@]}" &
    lanes+=($!)
    unset -n stages
  done
  wait "${lanes[@]}"
  lanes_time=$((SECONDS - started))
fi

echo "==> stage times"
for lane in first grub hosts; do
  [ -r "$results/$lane" ] || continue
  while read -r name seconds status; do
    printf '  %-6s %-12s %5d s%s\n' "$lane" "$name" "$seconds" "$([ "$status" -eq 0 ] || echo "  (failed)")"
  done <"$results/$lane"
done
[ -z "${lanes_time:-}" ] || printf '  both lanes together: %d s\n' "$lanes_time"
grep -h '^\[lab' "$prebuild_log" | sed 's/^/  background: /' || true
if [ -e "$failed" ]; then
  # CI shows only the end of what ran, and the other lane's output may bury the failure: jest's
  # failure reports of the failed stage again, at most 150 lines.
  stage=$(cat "$failed")
  echo "==> what failed in stage $stage"
  # The FAIL lines and each failed test's block ("  ● <test>"), not the console blocks ("  ● Console").
  awk '/^FAIL / { print; p = 0; next } /^  ● Console$/ { p = 0; next } /^  ● / { p = 1 } /^(PASS |Test Suites:)/ { p = 0 } p' \
    "$results"/*".$stage.log" | grep -v '^\s*at .*node_modules' | head -150
  echo "==> failed in stage $stage"
  rm -rf "$results"
  exit 1
fi
rm -rf "$results"
