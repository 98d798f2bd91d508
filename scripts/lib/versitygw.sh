#!/usr/bin/env bash
# Builds (or reuses) Versity S3 Gateway (`versitygw`), the S3-compatible object store the media tests,
# benchmarks and `make up MEDIA=s3` run: a production S3 server over a plain directory (its posix
# backend), from the Go module proxy (github.com/versity/versitygw at a pinned version), cached in
# $WA_ROUTER_CACHE/versitygw-<version>/ (default ~/.cache/wa-router, outside the clone, like Prometheus
# and the Kubernetes control plane). Prints the binary's path.
#   VERSITYGW_VERSION=v1.8.0. Needs Go >= the go line of its go.mod (1.25.0).
set -euo pipefail
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
OUT=$CACHE/versitygw-$VERSITYGW_VERSION

if [ -x "$OUT/versitygw" ]; then echo "$OUT/versitygw"; exit 0; fi
# Test files running in parallel may ask at once: one builds, the others wait for it.
mkdir -p "$CACHE"
exec 9>"$OUT.lock"
flock 9
if [ -x "$OUT/versitygw" ]; then echo "$OUT/versitygw"; exit 0; fi

GO=$("$(dirname "$0")/require-go.sh" 1.25.0 "versitygw: building the S3 gateway (once)")
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
export GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN=$OUT.partial

rm -rf "$OUT.partial" && mkdir -p "$OUT.partial"
start=$SECONDS
echo "versitygw: building $VERSITYGW_VERSION (first time only, a few minutes; cached in $OUT)" >&2
(cd "$OUT.partial" && nice -n 5 "$GO" install -trimpath -gcflags=all=-dwarf=false -ldflags "-s -w" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION") >&2
rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
echo "versitygw: built in $((SECONDS - start)) s" >&2
echo "$OUT/versitygw"
