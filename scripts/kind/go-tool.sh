#!/usr/bin/env bash
# Builds Go programs from the Go module proxy into $WA_ROUTER_CACHE/<name>-<version>/ (default
# ~/.cache/wa-router), once; prints that folder. A throwaway module requires the programs' module, so
# a module with replace directives (etcd's, cri-tools') builds too, which `go install pkg@version`
# refuses. One package: the binary is named <name>; several: each is named after its package's folder.
#   scripts/kind/go-tool.sh etcd go.etcd.io/etcd/server/v3 3.7.3 go.etcd.io/etcd/server/v3
#   scripts/kind/go-tool.sh cni-plugins github.com/containernetworking/plugins 1.10.0 \
#     github.com/containernetworking/plugins/plugins/main/ptp …
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1 module=$2 version=$3
shift 3
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
out=$CACHE/$name-$version
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi
GO=$(scripts/lib/require-go.sh 1.26.0 "kind: building $name $version")
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local
mod=$(mktemp -d "$CACHE/.go-tool-$name.XXXXXX")
trap 'rm -rf "$mod"' EXIT
t0=$SECONDS
echo "kind: building $name v$version from the Go module proxy (first time only; cached in $out)" >&2
cd "$mod"
"$GO" mod init "wa-router.local/tool-$name" >/dev/null 2>&1
"$GO" get "$module@v$version" >&2
mkdir -p bin
# -dwarf=false (the same flags in every Go build here, so Go's own packages compile once for all):
# the compiler skips the debug info the linker's -w drops anyway (Go's own packages: 8 % less CPU).
# -trimpath keeps the builder's paths out of the binaries (the kind node image carries some).
if [ $# -eq 1 ]; then
  nice -n 5 "$GO" build -trimpath -gcflags=all=-dwarf=false -ldflags "-s -w" -o "bin/$name" "$1" >&2
else
  nice -n 5 "$GO" build -trimpath -gcflags=all=-dwarf=false -ldflags "-s -w" -o bin/ "$@" >&2
fi
touch bin/.complete
# Another build of the same version may have finished meanwhile (another clone, the same cache).
[ -f "$out/.complete" ] || { rm -rf "$out" && mkdir -p "$(dirname "$out")" && mv bin "$out"; }
echo "kind: built $name in $((SECONDS - t0)) s" >&2
echo "$out"
