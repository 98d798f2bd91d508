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

# etcd's module has replace directives: go-tool.sh builds it through a throwaway module, into the
# folder the kind node image's build reads too.
start=$SECONDS
scripts/kind/go-tool.sh etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 >/dev/null
echo "controlplane: etcd ready in $((SECONDS - start)) s" >&2
echo "$out/etcd"
