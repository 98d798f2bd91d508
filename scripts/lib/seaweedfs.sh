#!/usr/bin/env bash
# Builds (or reuses) the `weed` binary of SeaweedFS, the S3-compatible object store the media tests,
# benchmarks and `make up MEDIA=s3` run: from the Go module proxy (github.com/seaweedfs/seaweedfs at a
# pinned pseudo-version), cached in $WA_ROUTER_CACHE/seaweedfs-<version>/ (default ~/.cache/wa-router,
# outside the clone, like Prometheus and the Kubernetes control plane). Prints the binary's path.
#   SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6. Needs Go >= the go line of its go.mod (1.26.6).
set -euo pipefail
SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
OUT=$CACHE/seaweedfs-$SEAWEEDFS_VERSION

if [ -x "$OUT/weed" ]; then echo "$OUT/weed"; exit 0; fi
# Test files running in parallel may ask at once: one builds, the others wait for it.
mkdir -p "$CACHE"
exec 9>"$OUT.lock"
flock 9
if [ -x "$OUT/weed" ]; then echo "$OUT/weed"; exit 0; fi

GO=$("$(dirname "$0")/require-go.sh" 1.26.6 "seaweedfs: building weed (once)")
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
export GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local

rm -rf "$OUT.partial" && mkdir -p "$OUT.partial"
start=$SECONDS
echo "seaweedfs: building weed $SEAWEEDFS_VERSION (first time only, several minutes; cached in $OUT)" >&2
# `go install weed@version` refuses the module (its go.mod has a replace directive), so it is built
# as the main module from its downloaded source, with its own go.sum.
src=$(cd "$OUT.partial" && "$GO" mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
(cd "$src" && nice -n 5 "$GO" build -trimpath -ldflags "-s -w" -o "$OUT.partial/weed" ./weed) >&2
rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
echo "seaweedfs: built in $((SECONDS - start)) s" >&2
echo "$OUT/weed"
