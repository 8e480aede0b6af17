#!/usr/bin/env bash
# The setup command (README): Debian packages, npm dependencies (with Node 22), the Pulumi CLI and the
# Node.js language host built from Go modules, and a first build. Idempotent; a second run takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$(date +%s)
# Each step's time, printed at the end: on a new machine the packages and the Go build dominate.
times=() current="" since=$start
step_done() { [ -z "$current" ] || times+=("$(printf '  %-12s %5d s' "$current" $(($(date +%s) - since)))"); }
step() {
  step_done
  current=$1 since=$(date +%s)
  echo "==> $1${2:+ $2}"
}

step packages "(Debian)"
mapfile -t wanted < <(grep -v '^\s*#' scripts/debian-packages.txt | awk 'NF{print $1}')
missing=()
for p in "${wanted[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Heavy builds the tests need run in the background from here on, those not cached yet: on a new
# machine the next steps mostly wait on downloads (npm's, and Go's modules for the CLI: 2 minutes
# measured), which leaves the cores to them. They run at nice 19: setup ends when the CLI is built,
# so its Go build has the cores first and these take what it leaves; `npm test` renices them to 0
# when it starts. Each is a session of its own whose id is in setup-builds/NAME.pgid while it runs,
# its output in NAME.log. `npm test` and `npm run lab` wait for an image or tree being built through
# its lock, and build it themselves if this build failed. VFIO_HOST_LAB_IMAGES=skip leaves the lab
# images to the first `npm run lab -- up` and the test hosts' tree to `npm test`.
cache=${VFIO_HOST_CACHE:-$HOME/.cache/vfio-host}
test_builds=${VFIO_HOST_LAB_IMAGES:-build}
background_build() {
  local name=$1
  shift
  mkdir -p "$cache/setup-builds"
  # setsid and nice exec (a background job of a script leads no group, so setsid need not fork):
  # the bash below leads its own session and records its id ($$) while it runs.
  setsid nice -n 19 bash -c 'echo $$ >"$0"; trap "rm -f \"$0\"" EXIT; "$@"' "$cache/setup-builds/$name.pgid" "$@" \
    >"$cache/$name.log" 2>&1 </dev/null &
}
unbuilt=()
if [ "$test_builds" != skip ]; then
  for flavor in grub sdboot-dracut extlinux; do
    LAB_FLAVOR=$flavor bash scripts/lab/lab.sh status | grep -q '(not built yet)$' && unbuilt+=("$flavor")
  done
fi
if [ ${#unbuilt[@]} -gt 0 ]; then
  background_build lab-setup-build bash -c 'for f; do LAB_FLAVOR=$f bash scripts/lab/lab.sh build || exit; done' sh "${unbuilt[@]}"
  echo "==> the lab images of ${unbuilt[*]} build in the background (log: $cache/lab-setup-build.log)"
fi

# npm's install and the Pulumi CLI's Go build at once: both start by waiting on downloads.
step "npm + pulumi" "dependencies (Node 22 comes from the node package when the machine's Node is older), and the Pulumi CLI and Node.js language host"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
npm_log=$logs/npm pulumi_log=$logs/pulumi
pulumi_started=$(date +%s)
bash scripts/pulumi-env.sh >"$logs/pulumi.env" 2>"$pulumi_log" &
pulumi_pid=$!
echo "(the Pulumi CLI's build prints its output when it ends)"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >"$npm_log" 2>&1 || { cat "$npm_log"; echo "npm ci failed" >&2; kill "$pulumi_pid" 2>/dev/null; exit 1; }
  tail -n 3 "$npm_log"
  times+=("$(printf '  %-12s %5d s' npm $(($(date +%s) - since)))")
fi
echo "node $(node_modules/.bin/node --version)"
if [ "$test_builds" != skip ]; then
  # The test hosts' root filesystem (mmdebstrap, cached by its recipe), from the compiled tree:
  # `npm test` would otherwise build it first in one lane while the other waits for it.
  bash scripts/build.sh
  background_build testhost-rootfs-build node_modules/.bin/node dist/test/testhost/rootfs.js
  echo "==> the test hosts' root filesystem builds in the background (log: $cache/testhost-rootfs-build.log)"
fi
wait "$pulumi_pid" || { cat "$pulumi_log"; echo "building the Pulumi CLI failed" >&2; exit 1; }
times+=("$(printf '  %-12s %5d s' pulumi $(($(date +%s) - pulumi_started)))")
cat "$pulumi_log" >&2
while IFS= read -r line; do export "${line?}"; done <"$logs/pulumi.env"
pulumi version

step "build"
bash scripts/build.sh
step_done
echo "==> setup stage times"
printf '%s\n' "${times[@]}"
echo "setup done in $(( $(date +%s) - start ))s"
