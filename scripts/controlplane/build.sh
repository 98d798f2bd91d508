#!/usr/bin/env bash
# Builds (or reuses) the Kubernetes control plane the k8s-tests run against: kube-apiserver,
# kube-controller-manager, kube-scheduler (and kubectl) from the Go module proxy, cached per version in
# $WA_ROUTER_CACHE/k8s-<version>/ (default ~/.cache/wa-router, outside the clone, so every clone and
# CI run on a machine reuses one build). k8s.io/kubernetes points its k8s.io/* staging modules at local folders,
# so we build from a module of ours that requires it and replaces each staging module with its
# published v0.<minor>.<patch>. Prints the binaries' folder on stdout.
#   K8S_VERSION=1.34.4 builds another version (default: versions.json's, the newest the proxy serves as
#   of writing; it serves 1.34 to 1.37, and the suite passes on 1.34.4 too). Needs Go >= the go line of that k8s.io/kubernetes (1.26 for 1.37).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
K8S_VERSION=${K8S_VERSION:-$(node -p 'require("./versions.json").kubernetes.version')}
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
OUT=$CACHE/k8s-$K8S_VERSION
# kubectl too: the suite runs `make deploy` (scripts/deploy.sh) against the API server.
# K8S_EXTRA_BINARIES="kubelet kubeadm kube-proxy": also those, into the same cache (the kind node
# image asks for them; the suite does not, so its cold build stays as long as it was).
# shellcheck disable=SC2206 # a list of names
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl ${K8S_EXTRA_BINARIES:-})

have_all() { for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if have_all; then echo "$OUT"; exit 0; fi
# One build at a time: a second caller (`make test`'s background build and the suite's setup, another
# clone on the same cache) waits for the first one's binaries instead of building them again.
mkdir -p "$CACHE"
exec 9>"$OUT.lock"
flock 9
if have_all; then echo "$OUT"; exit 0; fi

# The committed module's go line; another version's module is checked again once written.
GO=$(scripts/lib/require-go.sh "$(sed -n 's/^go //p' k8s-tests/controlplane/go.mod)" "controlplane: building the Kubernetes control plane (once)")
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local

# The module: committed for the default version (go.sum pins every dependency), generated for others.
MOD=$ROOT/k8s-tests/controlplane
if [ "$K8S_VERSION" != "$(sed -n 's/^require k8s.io\/kubernetes v//p' "$MOD/go.mod" 2>/dev/null)" ]; then
  MOD=$CACHE/k8s-module-$K8S_VERSION
  mkdir -p "$MOD" && rm -f "$MOD/go.mod" "$MOD/go.sum"
  # The staging modules are the ones k8s.io/kubernetes itself replaces with ./staging/ folders; the
  # list grows between minors (1.37 adds k8s.io/streaming and k8s.io/cri-streaming), so read it there.
  upstream=$(cd "$MOD" && GOFLAGS= "$GO" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$upstream" ] || { echo "controlplane: k8s.io/kubernetes v$K8S_VERSION is not on the module proxy" >&2; exit 1; }
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$upstream")
  minor=${K8S_VERSION#*.}
  {
    echo "module wa-router.local/controlplane"
    echo
    sed -n '/^go /p' "$upstream"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m v0.$minor"; done
    echo ")"
  } > "$MOD/go.mod"
  GO=$(GO=$GO scripts/lib/require-go.sh "$(sed -n 's/^go //p' "$MOD/go.mod")" "controlplane: building Kubernetes $K8S_VERSION")
fi

# A cache from before the list grew keeps its binaries; only the missing ones are built.
rm -rf "$OUT.partial" && mkdir -p "$OUT.partial"
[ -d "$OUT" ] && cp -a "$OUT"/. "$OUT.partial"/
start=$SECONDS
missing=()
for b in "${BINARIES[@]}"; do [ -x "$OUT.partial/$b" ] || missing+=("k8s.io/kubernetes/cmd/$b"); done
echo "controlplane: building ${missing[*]##*/} v$K8S_VERSION (first time only; cached in $OUT)" >&2
# One `go build` of them all (each binary is named after its cmd/ folder): their shared packages are
# compiled once and the links run side by side, where one build per binary linked one at a time.
# No DWARF (scripts/kind/go-tool.sh says why).
(cd "$MOD" && nice -n 5 "$GO" build -trimpath -gcflags=all=-dwarf=false -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.}" -o "$OUT.partial/" "${missing[@]}") >&2
rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
echo "controlplane: built in $((SECONDS - start)) s" >&2
echo "$OUT"
