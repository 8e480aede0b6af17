#!/usr/bin/env bash
# Exit 0 when the given pulumi binary is at least the version this project is built and tested with.
set -euo pipefail
want=${PULUMI_VERSION:-3.259.0}
have=$("$1" version 2>/dev/null | sed 's/^v//')
[ -n "$have" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ]
