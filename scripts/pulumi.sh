#!/usr/bin/env bash
# `npm run pulumi -- <args>`: the project's Pulumi CLI with the project's environment, after a build,
# when a source changed, so the program and the dynamic providers run the current compiled code.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
while IFS= read -r line; do export "${line?}"; done < <(bash "$root/scripts/pulumi-env.sh")
bash "$root/scripts/build.sh"
cd "$root"
exec pulumi "$@"
