#!/usr/bin/env bash
# Builds (or reuses) the `prometheus` and `promtool` binaries the monitoring tests run: from the Go module
# proxy (github.com/prometheus/prometheus; its Go module versions are v0.3MM.P for Prometheus 3.MM.P), cached
# per version in $WA_ROUTER_CACHE/prometheus-<version>/ (default ~/.cache/wa-router, outside the clone, like
# the Kubernetes control plane). Prints the binaries' folder on stdout. The web UI's assets are not built
# (they need npm and a Go build tag) and only the file and HTTP service discoveries are in; the tests
# use static targets and the HTTP API only.
#   PROMETHEUS_VERSION=0.316.0 (Prometheus 3.16.0). Needs Go >= the go line of that module (1.26.7).
set -euo pipefail
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-0.316.0}
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
OUT=$CACHE/prometheus-$PROMETHEUS_VERSION
BINARIES=(prometheus promtool)

have_all() { for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if have_all; then echo "$OUT"; exit 0; fi
# Test files running in parallel may ask at once: one builds, the others wait for it.
mkdir -p "$CACHE"
exec 9>"$OUT.lock"
flock 9
if have_all; then echo "$OUT"; exit 0; fi

# The go line of github.com/prometheus/prometheus v0.316.0's go.mod.
GO=$("$(dirname "$0")/../lib/require-go.sh" 1.26.7 "prometheus: building prometheus and promtool (once)")
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local

# Prometheus 3.MM.P is tagged v3.MM.P in git and published as module version v0.3MM.P.
minor=${PROMETHEUS_VERSION#0.}; minor=${minor%%.*}; patch=${PROMETHEUS_VERSION##*.}
app_version="$((minor / 100)).$((minor % 100)).$patch"
rm -rf "$OUT.partial" && mkdir -p "$OUT.partial"
start=$SECONDS
echo "prometheus: building prometheus and promtool $app_version (module v$PROMETHEUS_VERSION; first time only; cached in $OUT)" >&2
# remove_all_sd leaves out the cloud service discoveries (AWS, Azure, GCE, Kubernetes, ...): the tests
# scrape static targets, and those SDs are most of the build's CPU.
(cd "$OUT.partial" && GOBIN=$OUT.partial nice -n 5 "$GO" install -trimpath -tags remove_all_sd -gcflags=all=-dwarf=false \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$app_version" \
  "github.com/prometheus/prometheus/cmd/prometheus@v$PROMETHEUS_VERSION" \
  "github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_VERSION") >&2
rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
echo "prometheus: built in $((SECONDS - start)) s" >&2
echo "$OUT"
