#!/usr/bin/env bash
# The test command (README: npm test): build, lint and the unit tier, then the real-host tiers in two
# lanes at once, then the time of each stage, so a slow stage shows where CI's budget goes.
#
# Why two lanes: a lab suite spends much of its time waiting on one TCG guest (a boot, a shell
# script's forks in the guest), which keeps about one of the two cores busy. The longest suite,
# labVfio (the GRUB lab's whole host), starts as early as it can: one lane runs the host tier and
# two short fault suites, then labVfio. The other runs the killed runs, labFaults (the GRUB lab
# again, on an instance of its own; in a run with it before labVfio, this lane ended 22 minutes
# before the other) and last the flavour labs: two lab guests at once, the stage that keeps most of
# both cores busy alone, whose images, needed last, have the longest time to build. The fleet and
# the short end-to-end suites (no lab) come after both lanes' own stages, each run by whichever
# lane is free first: with the short ones fixed in the second lane, the GRUB lane ended 246 and 433 s
# before it in the cold runs of 877bafb and 967d8cf, with a core idle beside the flavour labs
# meanwhile; shared, the lanes ended 13 s apart (936f17e, 3515 s in all). Once labVfio got faster
# (no address-space randomisation in the lab) the fleet, fixed in the second lane, left the GRUB
# lane idle for 400 s at the end again (e188236, cold: lanes 2015 and 2414 s): it is shared too.
# Three lanes (labVfio alone; faults, e2e and flavour labs; lint, unit, host, short faults and
# labFaults) were much slower on a cold run (401b107, 2026-12-04): with three lab guests and the
# killed runs' Node processes at once every stage stretched (the killed runs 1208 s against 675,
# labFaults 1160 against 712, labVfio over 3000 s against 2730), and the flavour labs' lane was on
# course to end after about 70 minutes of tests against 53 with two lanes; the run was stopped.
# A third, side lane for the suites that mostly wait (test-host rootfs, host tier, short faults), so
# labVfio could start at once, lost too (8fe8c06, 2026-12-04): beside them the killed runs took
# 758 s against 596 and the fleet 498 against 388, more than labVfio gained.
# Each lane runs its stages in order, then claims shared stages until none is left; a failure in
# either stops both at their next stage boundary.
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
# the GRUB lab's lane, before labVfio, because the other lane is the longer one (it ended 246 and
# 433 s after this one in the last cold runs). On a cold cache they also cover a GRUB image that
# setup has not finished (in those runs it was ready before the tests).
short_fault_suites="guards|connectionCut"
lane_grub=(
  # The test hosts' root filesystem (cached by its recipe's hash; on a cold cache a minute or two):
  # `npm run setup` builds it in the background, and this stage finds it built, waits for that
  # build through its lock, or builds it if setup did not; the hosts lane's fault suite waits on the
  # same lock rather than build its own.
  "testhostRootfs:node dist/test/testhost/rootfs.js"
  # Two workers: the host suites mostly wait (on sshd, on timeouts they prove), 83 s against 139 alone.
  "host:npx jest --selectProjects host --maxWorkers=2"
  "shortFaults:npx jest --selectProjects faults --runInBand --testPathPatterns '$short_fault_suites'"
  "labVfio:npx jest --selectProjects e2e --runInBand --testPathPatterns labVfio"
)
lane_hosts=(
  "faults:npx jest --selectProjects faults --runInBand --testPathIgnorePatterns '$grub_lab_suites|$short_fault_suites'"
  "labFaults:npx jest --selectProjects faults --runInBand --testPathPatterns labFaults"
  "labFlavours:npx jest --selectProjects e2e --runInBand --testPathPatterns labFlavours"
)
# Run once each, by the first lane free, the longest first (the fleet about six minutes, the others two).
shared_e2e_a="sshCredentials|alpine"
lane_shared=(
  "fleet:npx jest --selectProjects e2e --runInBand --testPathPatterns fleet"
  "e2eHosts:npx jest --selectProjects e2e --runInBand --testPathPatterns '$shared_e2e_a'"
  "e2eStacks:npx jest --selectProjects e2e --runInBand --testPathIgnorePatterns '$grub_lab_suites|labFlavours|fleet|$shared_e2e_a'"
)

# The lab images (when not cached: 2 to 3.5 minutes each alone, longer beside the lanes) build in
# the background from the start, GRUB's first: its lane needs it first, the flavour labs' are
# needed only at the end of the other lane, and each suite waits for an image being built through
# lab.sh's image lock. On a warm cache this finds all three built. Its own process group, ended
# with this script.
cache=${VFIO_HOST_CACHE:-$HOME/.cache/vfio-host}
prebuild_log=$cache/lab-prebuild.log
mkdir -p "$cache"
# What `npm run setup` is still building (lab images, the test hosts' tree) ran at nice 19 so that
# the CLI's Go build came first; from here it competes as an equal (GRUB's image and the tree are
# needed first). Each build's session, not only its group: a tool may start a group of its own.
# Only while its leader is still that build (it names its file): a build killed outright leaves
# the file behind, and its id may since lead something else.
for pgid_file in "$cache"/setup-builds/*.pgid; do
  [ -r "$pgid_file" ] || continue
  leader=$(cat "$pgid_file")
  ps -o args= -p "$leader" 2>/dev/null | grep -qF "$pgid_file" || continue
  setup_builds=$(ps -o pid= -s "$leader" || true)
  [ -z "$setup_builds" ] || renice -n 0 -p $setup_builds >/dev/null || true
done

# Each lane stage and the image builds run in a CPU-accounting cgroup of their own when this machine
# lets root make one (cgroup v2, or v1's cpuacct): a child stays in its parent's cgroup, the lab's
# QEMU and a plugin the Pulumi CLI detached included, so the stage times also say how many CPU-seconds
# each stage took (what two lanes on 2 cores compete for), and a process a stage left running is
# found at the end, named and ended. Without such a cgroup only wall times are printed.
if [ -e /sys/fs/cgroup/cgroup.controllers ] && [ -w /sys/fs/cgroup/cgroup.procs ]; then
  cpu_root=/sys/fs/cgroup/vfio-host-test.$$
elif [ -w /sys/fs/cgroup/cpuacct/cgroup.procs ]; then
  cpu_root=/sys/fs/cgroup/cpuacct/vfio-host-test.$$
else
  cpu_root=
fi
# Makes the cgroup $1 and prints its directory; prints nothing when there is none to make.
cpu_group() {
  [ -n "$cpu_root" ] && mkdir -p "$cpu_root/$1" 2>/dev/null && echo "$cpu_root/$1"
}
# The CPU-seconds used so far in the cgroup directory $1, or "-".
cpu_seconds() {
  if [ -r "$1/cpu.stat" ]; then
    awk '$1 == "usage_usec" { printf "%d", $2 / 1e6 }' "$1/cpu.stat"
  elif [ -r "$1/cpuacct.usage" ]; then
    echo $(($(cat "$1/cpuacct.usage") / 1000000000))
  else
    echo -
  fi
}
# Names and kills (by PID) what is still running in our cgroups, then removes them. First it gives
# what the trap has just signalled (the lanes' and the image builds' process groups) 2 s to end.
end_cpu_groups() {
  local group pid killed= _
  [ -n "$cpu_root" ] && [ -d "$cpu_root" ] || return 0
  for _ in $(seq 20); do
    [ -z "$(cat "$cpu_root"/*/cgroup.procs 2>/dev/null)" ] && break
    sleep 0.1
  done
  for group in "$cpu_root"/*/; do
    for pid in $(cat "$group/cgroup.procs" 2>/dev/null); do
      echo "==> left running by $(basename "$group"): $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
      kill -9 "$pid" 2>/dev/null
      killed=1
    done
  done
  # A killed process leaves its cgroup only once the kernel has reaped it.
  [ -z "$killed" ] || sleep 1
  rmdir "$cpu_root"/*/ "$cpu_root" 2>/dev/null || true
}

images_group=$(cpu_group images)
setsid bash -c "${images_group:+echo \$\$ >$images_group/cgroup.procs; }"'for f in grub sdboot-dracut extlinux; do LAB_FLAVOR=$f bash scripts/lab/lab.sh build || exit; done' >"$prebuild_log" 2>&1 &
prebuild=$!
lanes=()
trap 'for pid in "$prebuild" "${lanes[@]}"; do kill -- -"$pid" 2>/dev/null || true; done; end_cpu_groups' EXIT
echo "==> building the lab images in the background (log: $prebuild_log)"

results=$(mktemp -d)
failed=$results/failed

# Runs stages in order, each line "name seconds status cpu-seconds" into $results/$1; stops at the
# first failure here or in the other lane. The stages after "--shared" are claimed (mkdir is atomic):
# each runs once, in the first lane to reach it.
run_stages() {
  local lane=$1 stage name started status group shared=
  shift
  for stage in "$@"; do
    [ -e "$failed" ] && return
    if [ "$stage" = --shared ]; then shared=1; continue; fi
    name=${stage%%:*}
    [ -z "$shared" ] || mkdir "$results/claimed.$name" 2>/dev/null || continue
    started=$SECONDS
    echo "==> $name: ${stage#*:}"
    group=$(cpu_group "$lane.$name")
    bash -c "${group:+echo \$\$ >$group/cgroup.procs; }${stage#*:}" 2>&1 | tee "$results/$lane.$name.log"
    status=${PIPESTATUS[0]}
    printf '%s %d %d %s\n' "$name" $((SECONDS - started)) "$status" "$(cpu_seconds "$group")" >>"$results/$lane"
    [ "$status" -eq 0 ] || { echo "$name" >"$failed"; return; }
  done
}

run_stages first "${first[@]}"
if [ ! -e "$failed" ]; then
  started=$SECONDS
  for lane in grub hosts; do
    declare -n stages="lane_$lane"
    # Its own process group (setsid) so the trap can end a lane and all it started.
    setsid bash -c "$(declare -f run_stages cpu_group cpu_seconds); results=$results failed=$failed cpu_root=$cpu_root; run_stages $lane \"\$@\" 2>&1 | sed -u 's/^/[$lane] /'" \
      lane "${stages[@]}" --shared "${lane_shared[@]}" &
    lanes+=($!)
    unset -n stages
  done
  wait "${lanes[@]}"
  lanes_time=$((SECONDS - started))
fi

echo "==> stage times (wall, and CPU-seconds of all the stage ran, lab guests included)"
for lane in first grub hosts; do
  [ -r "$results/$lane" ] || continue
  while read -r name seconds status cpu; do
    printf '  %-6s %-12s %5d s %6s CPU-s%s\n' "$lane" "$name" "$seconds" "$cpu" "$([ "$status" -eq 0 ] || echo "  (failed)")"
  done <"$results/$lane"
done
[ -z "${lanes_time:-}" ] || printf '  both lanes together: %d s\n' "$lanes_time"
[ -z "$images_group" ] || printf '  the image builds: %s CPU-s so far\n' "$(cpu_seconds "$images_group")"
grep -h '^\[lab' "$prebuild_log" | sed 's/^/  background: /' || true
# What `npm run setup` built in its own background (its CPU is not in the figure above).
[ ! -r "$cache/lab-setup-build.log" ] || grep -h '^\[lab' "$cache/lab-setup-build.log" | sed 's/^/  setup'"'"'s background: /' || true
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
