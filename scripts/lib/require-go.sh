#!/usr/bin/env bash
# Prints a Go toolchain of at least version $1 for the build scripts: $GO, else `go` on PATH, else
# /usr/local/go/bin/go. Fails naming the version to install when there is none or it is too old: the
# builds run with GOTOOLCHAIN=local, so Go would otherwise stop on the first module's `go` line.
#   GO=$(scripts/lib/require-go.sh 1.26.7 "prometheus: building prometheus and promtool")
set -euo pipefail
need=$1 what=$2
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
install="install Go >= $need from https://go.dev/dl/ (or set GO=/path/to/go)"
[ -x "$go" ] || { echo "$what needs Go >= $need and finds none: $install" >&2; exit 1; }
have=$(GOTOOLCHAIN=local "$go" env GOVERSION); have=${have#go}
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  echo "$what needs Go >= $need; $go is $have: $install" >&2
  exit 1
fi
echo "$go"
