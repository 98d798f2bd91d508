#!/usr/bin/env bash
# A kind cluster running a preset for real, on Docker or on podman (KIND_EXPERIMENTAL_PROVIDER=podman)
# with every image built locally: no registry is reached (scripts/kind/node-image.sh says how).
#   make kind-up PRESET=minimal   make kind-test PRESET=minimal   make kind-down PRESET=minimal
# One node (control plane and workloads): the presets' pools are one node each, and this is what
# fits a small machine. What failed on the way, and why each setting below is there, is in
# scripts/kind/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-minimal}
NAME=wa-router-$PRESET
NAMESPACE=wa-kind
IMAGE=${KIND_IMAGE:-localhost/wa-router:kind}
STATE=.cache/kind
KUBECONFIG_FILE=$PWD/$STATE/$NAME.kubeconfig
mkdir -p "$STATE"
source scripts/kind/versions.sh

# Docker when its daemon answers, else podman (Debian's, runc, vfs storage).
if docker info >/dev/null 2>&1; then
  engine=docker
elif command -v podman >/dev/null; then
  engine=podman
  export KIND_EXPERIMENTAL_PROVIDER=podman STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
  # kind starts its nodes without --ulimit; podman's default limits (nofile 1048576) exceed this
  # machine's hard limits and runc refuses to start the node, so the defaults come from here.
  {
    echo "[containers]"
    echo "default_ulimits = [$(scripts/image/ulimits.sh | sed -E 's/--ulimit ([^ ]+)/"\1"/g; s/" "/", "/g')]"
  } > "$STATE/containers.conf"
  export CONTAINERS_CONF=$PWD/$STATE/containers.conf
else
  echo "kind.sh: neither a Docker daemon nor podman (apt-get install podman runc debootstrap)" >&2
  exit 1
fi
# kind mounts /lib/modules into its nodes; a kernel without loadable modules has no such folder,
# and podman refuses to bind a missing path.
[ -d /lib/modules ] || mkdir -p /lib/modules
KIND=$(scripts/kind/kind-bin.sh)
KUBECTL=$(scripts/controlplane/build.sh)/kubectl
kubectl() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
elapsed() { echo "$(( SECONDS - $1 ))"; }

up() {
  local t0=$SECONDS node_image
  node_image=$(scripts/kind/node-image.sh)
  if [ "$engine" = docker ] && ! docker image inspect "$node_image" >/dev/null 2>&1; then
    podman save -q "$node_image" | docker load >&2
  fi
  echo "kind: node image ready in $(elapsed "$t0") s" >&2
  cat > "$STATE/$NAME.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  # The node image carries its CNI configuration (one node: no routes between nodes needed).
  disableDefaultCNI: true
  podSubnet: 10.244.0.0/16
nodes:
- role: control-plane
kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  etcd:
    local:
      # kubeadm $K8S_VERSION names etcd 3.7.0; the module proxy serves $ETCD_VERSION, preloaded.
      imageTag: "$ETCD_VERSION-0"
- |
  kind: InitConfiguration
  # kubeadm's defaults (4 min for the control plane, 1 min per API call) fail on a loaded 2-core
  # machine: the first run here stopped with "could not bootstrap the admin user ... context
  # deadline exceeded" while the API server was still starting.
  timeouts:
    controlPlaneComponentHealthCheck: 15m
    kubeletHealthCheck: 10m
    kubernetesAPICall: 5m
    etcdAPICall: 5m
    tlsBootstrap: 10m
- |
  kind: KubeletConfiguration
  # This machine has cgroup v1 (hybrid); kubelet 1.35+ refuses it unless told.
  failCgroupV1: false
YAML
  if ! "$KIND" get clusters 2>/dev/null | grep -qx "$NAME"; then
    local t1=$SECONDS
    "$KIND" create cluster --name "$NAME" --image "$node_image" --config "$STATE/$NAME.yaml" \
      --kubeconfig "$KUBECONFIG_FILE" --wait 10m
    echo "kind: cluster $NAME created in $(elapsed "$t1") s" >&2
  fi
  kubectl wait --for=condition=Ready node --all --timeout=5m
  echo "kind: cluster $NAME is up ($(elapsed "$t0") s); KUBECONFIG=$KUBECONFIG_FILE" >&2
  load_images
  volumes
  deploy
  echo "kind: $PRESET running in $NAME ($(elapsed "$t0") s in all)" >&2
}

# Every image the preset runs, loaded into the node: nothing is pulled.
load_images() {
  local t0=$SECONDS archive
  IMAGE=$IMAGE CONTAINER_ENGINE=$engine scripts/image/build.sh >/dev/null
  archive=$STATE/wa-router-image.tar
  rm -f "$archive" && "$engine" save -q -o "$archive" "$IMAGE"
  local archives=("$archive")
  [ -x scripts/images/build-servers.sh ] || { echo "kind: scripts/images/build-servers.sh is missing: no images of Postgres, PgBouncer and Redis to load" >&2; exit 1; }
  mapfile -t -O 1 archives < <(scripts/images/build-servers.sh)
  for a in "${archives[@]}"; do "$KIND" load image-archive --name "$NAME" "$a"; done
  # The manifests pull a tag on every start (imagePullPolicy Always: a tag may be pushed again) and
  # no registry answers here, so the preset runs our image by the digest the node knows it by.
  # kind's import names the digest import-<date>@sha256:…, which the kubelet looks up as
  # docker.io/library/import-… and does not find ("failed to resolve reference … registry-1.docker.io"),
  # so the node gets the digest under our repository's name too.
  local node=$NAME-control-plane digest
  digest=$("$engine" exec "$node" crictl inspecti -o json "$IMAGE" | jq -r '.status.repoDigests[0] // empty')
  [ -n "$digest" ] || { echo "kind: the node has no digest for $IMAGE" >&2; exit 1; }
  digest=${IMAGE%:*}@${digest#*@}
  "$engine" exec "$node" ctr -n k8s.io images tag --force "$IMAGE" "$digest" >/dev/null
  echo "$digest" > "$STATE/$NAME.image"
  echo "kind: images loaded in $(elapsed "$t0") s ($digest)" >&2
}

# The claims' volumes: folders on the node as local PersistentVolumes of the default StorageClass
# (which has no provisioner). local volumes, unlike hostPath ones, get the pods' fsGroup.
volumes() {
  local node=$NAME-control-plane i
  for i in 1 2 3 4 5 6; do
    "$engine" exec "$node" mkdir -p "/var/local-volumes/pv$i"
    kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: { name: kind-local-pv$i }
spec:
  capacity: { storage: 100Gi }
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: standard
  local: { path: /var/local-volumes/pv$i }
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{ key: kubernetes.io/hostname, operator: In, values: [$node] }]
YAML
  done
}

# The preset, its requests scaled to this machine by an overrides file (the preset is not edited):
# its pods' CPU and memory requests are cut so the whole preset fits one node that shares the
# host's cores with the control plane; limits stay, so pods still use what is free. The Sentinels
# keep the preset's requests (50m, seven times what one uses): the failover check should not run
# with less of the node than the preset gives them. Its server images are the ones load_images loaded.
deploy() {
  local t0=$SECONDS overrides=$STATE/$PRESET-overrides.yaml
  cat > "$overrides" <<YAML
nodePool: { nodes: 1, cpuCores: $(nproc), memoryGiB: 8, allocatable: { cpuCores: $(nproc), memoryGiB: 7 } }
web: { resources: { requests: { cpu: 50m, memory: 256Mi } } }
worker: { resources: { requests: { cpu: 50m, memory: 256Mi } } }
redis: { resources: { requests: { cpu: 25m, memory: 256Mi } } }
pgbouncer: { resources: { requests: { cpu: 10m, memory: 32Mi } } }
postgres: { resources: { requests: { cpu: 50m, memory: 256Mi } } }
monitoring: { prometheusOperator: false }
# The server images built here, named for the Debian builds they hold (build-servers.sh says why).
images: { $(scripts/images/build-servers.sh --list | awk '{ printf "%s%s: %s", (NR > 1 ? ", " : ""), $1, $2 }') }
YAML
  KUBECONFIG=$KUBECONFIG_FILE PATH=$(dirname "$KUBECTL"):$PATH PRESET=$PRESET NAMESPACE=$NAMESPACE IMAGE="$(cat "$STATE/$NAME.image")" \
    OVERRIDES=$PWD/$overrides WHATSAPP_APP_SECRET=${WHATSAPP_APP_SECRET:-kind-test-app-secret} scripts/deploy.sh
  kubectl -n "$NAMESPACE" wait --for=condition=Ready pod -l app.kubernetes.io/part-of=wa-router \
    --field-selector=status.phase!=Succeeded --timeout=10m
  echo "kind: every pod of $PRESET Ready $(elapsed "$t0") s after the deploy started" >&2
}

case "${1:-}" in
  up) up ;;
  test)
    [ -f "$STATE/$NAME.image" ] || { echo "kind: no cluster $NAME (make kind-up PRESET=$PRESET first)" >&2; exit 1; }
    K8S_TESTS_KUBECONFIG=$KUBECONFIG_FILE K8S_TESTS_KIND_NAMESPACE=$NAMESPACE K8S_TESTS_KUBECTL=$KUBECTL \
      K8S_TESTS_KIND_IMAGE=$(cat "$STATE/$NAME.image") npm test -w @wa-router/k8s-tests -- test/kind-e2e.test.ts \
      ${KIND_TEST_FILTER:+-t "$KIND_TEST_FILTER"}
    ;;
  down)
    "$KIND" delete cluster --name "$NAME" --kubeconfig "$KUBECONFIG_FILE"
    rm -f "$KUBECONFIG_FILE" "$STATE/$NAME".* "$STATE/$PRESET-overrides.yaml" "$STATE/wa-router-image.tar"
    # kind keeps its network for the next cluster; with no cluster left it goes too.
    if [ "$engine" = podman ] && [ -z "$("$KIND" get clusters 2>/dev/null)" ]; then podman network rm kind >/dev/null 2>&1 || true; fi
    ;;
  *)
    echo "usage: scripts/kind.sh up|test|down (PRESET=minimal|standard|premium)" >&2
    exit 2
    ;;
esac
