#!/usr/bin/env bash
# Prints the kind binary: `kind` on PATH when it is the version we build node images for, else
# sigs.k8s.io/kind built once from the Go module proxy into $WA_ROUTER_CACHE/kind-<version>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/kind/versions.sh
if command -v kind >/dev/null && kind version | grep -q "^kind v$KIND_VERSION "; then command -v kind; exit 0; fi
echo "$(scripts/kind/go-tool.sh kind sigs.k8s.io/kind "$KIND_VERSION" sigs.k8s.io/kind)/kind"
