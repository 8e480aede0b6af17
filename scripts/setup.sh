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

step npm "dependencies (Node 22 comes from the node package when the machine's Node is older)"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
echo "node $(node_modules/.bin/node --version)"

step pulumi "CLI and Node.js language host"
while IFS= read -r line; do export "${line?}"; done < <(bash scripts/pulumi-env.sh)
pulumi version

step "build"
bash scripts/build.sh
step_done
echo "==> setup stage times"
printf '%s\n' "${times[@]}"
echo "setup done in $(( $(date +%s) - start ))s"
