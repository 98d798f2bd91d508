#!/usr/bin/env bash
# Prints the paths of the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, as the
# operator publishes them in its Go module (github.com/prometheus-operator/prometheus-operator,
# example/prometheus-operator-crd/), downloaded once into $WA_ROUTER_CACHE/go/mod. The k8s-tests
# install them on their control plane so the API server validates our objects against the real schemas.
#   OPERATOR_VERSION=0.85.0
set -euo pipefail
OPERATOR_VERSION=${OPERATOR_VERSION:-0.85.0}
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { echo "operator-crds: Go not found (set GO=/path/to/go); it downloads the CRDs once" >&2; exit 1; }
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOFLAGS=-mod=mod GOTOOLCHAIN=local
dir=$(cd /tmp && "$GO" mod download -json "github.com/prometheus-operator/prometheus-operator@v$OPERATOR_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
for kind in servicemonitors prometheusrules; do
  f=$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml
  [ -f "$f" ] || { echo "operator-crds: $f not found in the module" >&2; exit 1; }
  echo "$f"
done
