#!/usr/bin/env bash
# For users with Docker: a kind cluster shaped like the preset's node pool, and the k8s-tests
# (plus real pods reaching Ready) against it. Not run in our CI (no Docker engine there).
#   make kind-up PRESET=standard   make kind-test PRESET=standard   make kind-down
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-standard}
NAME=wa-router-$PRESET
IMAGE=${IMAGE:-wa-router:kind}
KUBECONFIG_FILE=.cache/kind/$NAME.kubeconfig
METRICS_SERVER=${METRICS_SERVER:-v0.7.2}
for tool in kind kubectl docker; do
  command -v "$tool" >/dev/null || { echo "kind.sh: $tool not found (kind needs Docker or Podman: https://kind.sigs.k8s.io)" >&2; exit 1; }
done
mkdir -p .cache/kind

case "${1:-}" in
  up)
    # Nodes as many as the preset's pool; kind nodes share the host's CPU and memory.
    nodes=$(npx tsx -e "import('./cdk8s/src/presets.ts').then(m => console.log(m.presets['$PRESET'].nodePool.nodes))")
    {
      echo "kind: Cluster"
      echo "apiVersion: kind.x-k8s.io/v1alpha4"
      echo "nodes:"
      echo "- role: control-plane"
      for _ in $(seq 1 "$nodes"); do echo "- role: worker"; done
    } > ".cache/kind/$NAME.yaml"
    kind get clusters | grep -qx "$NAME" || kind create cluster --name "$NAME" --config ".cache/kind/$NAME.yaml" --kubeconfig "$KUBECONFIG_FILE"
    # The HPAs scale on CPU from the metrics API; kind ships no metrics-server, so without this
    # they never scale. Its kubelets serve self-signed certificates, hence --kubelet-insecure-tls.
    KUBECONFIG=$KUBECONFIG_FILE kubectl apply -f "https://github.com/kubernetes-sigs/metrics-server/releases/download/$METRICS_SERVER/components.yaml"
    KUBECONFIG=$KUBECONFIG_FILE kubectl -n kube-system patch deployment metrics-server --type=json \
      -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
    docker build -t "$IMAGE" .
    kind load docker-image "$IMAGE" --name "$NAME"
    echo "kind cluster $NAME is up; KUBECONFIG=$KUBECONFIG_FILE"
    ;;
  test)
    # The same suite as on our local control plane (fit checks skipped: kind's nodes are real)...
    K8S_TESTS_KUBECONFIG=$PWD/$KUBECONFIG_FILE npm test -w @wa-router/k8s-tests
    # ...then a real deploy whose pods must become Ready.
    KUBECONFIG=$PWD/$KUBECONFIG_FILE PRESET=$PRESET NAMESPACE=wa-kind IMAGE=$IMAGE \
      WHATSAPP_APP_SECRET=${WHATSAPP_APP_SECRET:-kind-test-app-secret} scripts/deploy.sh
    KUBECONFIG=$PWD/$KUBECONFIG_FILE kubectl -n wa-kind wait --for=condition=Ready pod -l app.kubernetes.io/part-of=wa-router --timeout=10m
    ;;
  down)
    kind delete cluster --name "$NAME"
    ;;
  *)
    echo "usage: scripts/kind.sh up|test|down (PRESET=minimal|standard|premium)" >&2
    exit 2
    ;;
esac
