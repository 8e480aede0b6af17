#!/usr/bin/env bash
# Prints, one KEY=VALUE per line, the environment every Pulumi run of this project uses: the CLI that
# setup built, Node 22 from node_modules, a local file backend, a passphrase, and no network look-ups.
# scripts/pulumi.sh exports these; the tests read the same lines (test/e2e/pulumiEnv.ts).
# VFIO_HOST_STATE_DIR moves the file backend elsewhere (each test suite has its own).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${VFIO_HOST_CACHE:-$HOME/.cache/vfio-host}

if pulumi_bin=$(command -v pulumi 2>/dev/null) && bash "$root/scripts/pulumi-version-ok.sh" "$pulumi_bin"; then
  bin=$(dirname "$pulumi_bin")
else
  bin=$(bash "$root/scripts/build-pulumi.sh")
fi

# A random passphrase kept beside the toolchain cache, unless the user brings their own.
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  passfile="$cache/passphrase"
  if [ ! -s "$passfile" ]; then
    mkdir -p "$cache"; (umask 077; head -c 24 /dev/urandom | base64 > "$passfile")
  fi
  echo "PULUMI_CONFIG_PASSPHRASE_FILE=$passfile"
fi
echo "PATH=$bin:$root/node_modules/.bin:$PATH"
if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  state=${VFIO_HOST_STATE_DIR:-$root/.pulumi-state}
  mkdir -p "$state" # the file backend does not create its directory
  # metadata=skip: go-cloud's file driver writes a ".attrs" sidecar beside each state file by
  # truncating it in place, so a run killed at that moment leaves it empty and every later run
  # fails with "failed to load checkpoint: EOF". Without sidecars the state file alone is written
  # (temp file + rename). Empty sidecars left by an older setup are never valid: drop them.
  find "$state" -name '*.attrs' -size 0 -delete
  echo "PULUMI_BACKEND_URL=file://$state?metadata=skip"
else
  echo "PULUMI_BACKEND_URL=$PULUMI_BACKEND_URL"
fi
# Node 22 keeps the code it compiled for @pulumi/pulumi and the project's modules here, so the
# program and the dynamic provider of every run load them faster (a quarter less CPU each).
echo "NODE_COMPILE_CACHE=${NODE_COMPILE_CACHE:-$cache/node-compile-cache}"
echo "PULUMI_SKIP_UPDATE_CHECK=true"
echo "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true"
