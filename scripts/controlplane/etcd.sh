#!/usr/bin/env bash
# Builds (or reuses) the etcd the k8s-tests' control plane stores in: go.etcd.io/etcd/server/v3 of the
# version versions.json names (the one kubeadm of our Kubernetes release runs, as near as the Go module
# proxy serves it), instead of a distribution's etcd the API server no longer fully supports. Cached
# like the control plane in $WA_ROUTER_CACHE/etcd-<version>/ (default ~/.cache/wa-router), the layout
# the kind node image's build uses too, so one build serves both. Prints the binary's path.
#   ETCD_VERSION=3.6.7 builds another version the proxy serves.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
ETCD_VERSION=${ETCD_VERSION:-$(node -p 'require("./versions.json").etcd.version')}
out=$CACHE/etcd-$ETCD_VERSION
if [ -f "$out/.complete" ] && [ -x "$out/etcd" ]; then echo "$out/etcd"; exit 0; fi

mkdir -p "$CACHE"
# One build at a time: a second caller (make test's build stage and the k8s-tests' setup, another
# clone on the same cache) waits for the first one's binary instead of building it again.
exec 9>"$out.lock"
flock 9
if [ -f "$out/.complete" ] && [ -x "$out/etcd" ]; then echo "$out/etcd"; exit 0; fi

GO=$(scripts/lib/require-go.sh 1.26.0 "controlplane: building etcd $ETCD_VERSION (once)")
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local
# etcd's module has replace directives, which `go install module@version` refuses: a throwaway module
# requires it and builds its main package (server/main.go since etcd 3.5).
mod=$(mktemp -d "$CACHE/.etcd-module.XXXXXX")
trap 'rm -rf "$mod"' EXIT
start=$SECONDS
echo "controlplane: building etcd v$ETCD_VERSION from the Go module proxy (first time only; cached in $out)" >&2
cd "$mod"
"$GO" mod init wa-router.local/etcd >/dev/null 2>&1
"$GO" get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
mkdir -p bin
nice -n 5 "$GO" build -trimpath -ldflags "-s -w" -o bin/etcd go.etcd.io/etcd/server/v3 >&2
touch bin/.complete
rm -rf "$out" && mv bin "$out"
echo "controlplane: etcd built in $((SECONDS - start)) s" >&2
echo "$out/etcd"
