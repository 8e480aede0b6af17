#!/usr/bin/env bash
# Builds the Pulumi CLI from Go modules (no release archive can be downloaded here), plus the
# project's Node.js language host and the dynamic-provider shim, into a cache keyed by version.
# Prints the bin directory on stdout. A second run with the same version is a no-op.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${PULUMI_VERSION:-3.259.0}
cache=${VFIO_HOST_CACHE:-$HOME/.cache/vfio-host}
langhost_src="$here/pulumi-language-nodejs"
# The language host's own sources are part of the key, so editing them rebuilds it.
langhost_key=$(cat "$langhost_src"/go.mod "$langhost_src"/*.go | sha256sum | cut -c1-12)
bin="$cache/pulumi-v$version-$langhost_key/bin"
log() { echo "[build-pulumi] $*" >&2; }

if [ -x "$bin/pulumi" ] && [ -x "$bin/pulumi-language-nodejs" ] && [ -x "$bin/pulumi-resource-pulumi-nodejs" ]; then
  echo "$bin"; exit 0
fi
command -v go >/dev/null || { log "Go is needed to build the Pulumi CLI (no pulumi >= $version on PATH)"; exit 1; }
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
tags=osusergo,grpcnotrace
# -dwarf=false: the linker strips the debug information anyway (-s -w), so the compiler need not
# write it for each package; the code is the same. Both builds take the same compiler flags, and the
# language host's go.mod pins the module versions the CLI's build selects, so the language host
# reuses the packages the CLI's build compiled (3 s of a cold setup; 113 s when either differed).
gcflags=all=-dwarf=false
ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version"

cli="$cache/pulumi-cli-v$version"
if [ ! -x "$cli/pulumi" ]; then
  log "building the Pulumi CLI v$version from Go modules (several minutes on 2 cores, cached afterwards)"
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  go mod download -json "github.com/pulumi/pulumi/pkg/v3@v$version" >/dev/null
  pkgdir=$(go list -m -f '{{.Dir}}' "github.com/pulumi/pulumi/pkg/v3@v$version" 2>/dev/null || true)
  [ -n "$pkgdir" ] || pkgdir=$(go env GOMODCACHE)/github.com/pulumi/pulumi/pkg/v3@v$version
  # pkg/go.mod replaces sdk with ../sdk and pins a fork of clipboard; a wrapper module keeps the
  # second replace and takes sdk from the proxy at the same version.
  {
    echo "module vfiohost.local/pulumi-cli"
    echo "go $(awk '/^go /{print $2}' "$pkgdir/go.mod")"
    echo "require ("
    echo "  github.com/pulumi/pulumi/pkg/v3 v$version"
    echo "  github.com/pulumi/pulumi/sdk/v3 v$version"
    echo ")"
    grep '^replace' "$pkgdir/go.mod" | grep -v 'pulumi/sdk/v3 =>' || true
  } > "$work/go.mod"
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
  (cd "$work" && go mod tidy -e >/dev/null 2>&1 || true; cd "$work" && go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$version" >/dev/null 2>&1 || true)
  mkdir -p "$cli.tmp"
  (cd "$work" && go build -trimpath -tags "$tags" -gcflags="$gcflags" -ldflags "$ldflags" -o "$cli.tmp/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  rm -rf "$cli"; mv "$cli.tmp" "$cli"
fi
# A hard link, not a symlink: Pulumi treats plugins beside its own executable as bundled ones.
ln -f "$cli/pulumi" "$bin/pulumi" 2>/dev/null || cp "$cli/pulumi" "$bin/pulumi"

log "building the Node.js language host"
(cd "$langhost_src" && go build -trimpath -tags "$tags" -gcflags="$gcflags" -ldflags "-s -w" -o "$bin/pulumi-language-nodejs" .)

# The shim Pulumi ships in its release archives: the engine runs it as the dynamic provider plugin.
sdkdir=$(go env GOMODCACHE)/github.com/pulumi/pulumi/sdk/v3@v$version
install -m 0755 "$sdkdir/nodejs/dist/pulumi-resource-pulumi-nodejs" "$bin/pulumi-resource-pulumi-nodejs"
echo "$bin"
