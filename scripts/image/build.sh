#!/usr/bin/env bash
# `make image`: builds the wa-router image as $IMAGE. With Docker when its daemon answers, from the
# Dockerfile's default base (node:24-bookworm-slim). Otherwise with podman (Debian's podman + runc,
# vfs storage, chroot isolation: no daemon, no overlay mounts, so it also works inside a container)
# from a base made locally by scripts/image/base.sh, because public image registries may be
# unreachable; Debian's mirror and the npm registry are what the build needs.
# The podman build is cached by a hash of everything the image is made of (the base, the Dockerfile,
# the lockfile and manifests, the service's sources): an unchanged tree is tagged again, not rebuilt.
# Prints the image reference on stdout; build output goes to stderr.
#   TARGET=operator builds the operator's image (the Dockerfile's `operator` stage) instead of the
#   service's (`runtime`); `make operator-image`.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${TARGET:-runtime}
case $TARGET in
  runtime) name=wa-router; IMAGE=${IMAGE:-ghcr.io/wa-router/wa-router:latest}
    # The build context as the Dockerfile and .dockerignore see it (tests and build output left out).
    sources=(service cdk8s/package.json) ;;
  operator) name=wa-router-operator; IMAGE=${IMAGE:-ghcr.io/wa-router/wa-router-operator:latest}
    sources=(cdk8s/package.json cdk8s/src service/package.json versions.json) ;;
  *) echo "image: TARGET must be runtime or operator, not $TARGET" >&2; exit 2 ;;
esac

# CONTAINER_ENGINE=docker|podman chooses; by default Docker when its daemon answers.
engine=${CONTAINER_ENGINE:-$(docker info >/dev/null 2>&1 && echo docker || echo podman)}
if [ "$engine" = docker ]; then
  docker build --target "$TARGET" -t "$IMAGE" . >&2
  echo "$IMAGE"
  exit 0
fi

command -v podman >/dev/null || { echo "image: neither a Docker daemon nor podman; apt-get install podman runc debootstrap" >&2; exit 1; }
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
base=$(scripts/image/base.sh)

tree=$( {
  echo "$base"
  # The service image keeps the hash it had before there were targets (its cached build still counts).
  [ "$TARGET" = runtime ] || echo "$TARGET"
  find Dockerfile .dockerignore package.json package-lock.json tsconfig.base.json k8s-tests/package.json "${sources[@]}" \
    \( -name node_modules -o -name dist -o -path service/test -o -name '*.test.ts' \) -prune -o -type f -print | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -c1-16)
cached=localhost/$name:tree-$tree

if podman image exists "$cached"; then
  echo "image: $cached is up to date" >&2
else
  t0=$SECONDS
  # The host's extra CA (a TLS-inspecting egress proxy) is lent to the build's npm, not copied in.
  ca_args=()
  if [ -f "${NODE_EXTRA_CA_CERTS:-}" ]; then
    ca_args=(--volume "$NODE_EXTRA_CA_CERTS:/run/build-ca.pem:ro" --build-arg NODE_EXTRA_CA_CERTS=/run/build-ca.pem)
  fi
  # --layers=false: no image per step (vfs stores each as a full copy, GBs per build); the tree
  # hash above is the cache that matters.
  # shellcheck disable=SC2046 # ulimits.sh prints separate flags
  podman build --layers=false --isolation chroot --network host $(scripts/image/ulimits.sh) "${ca_args[@]}" \
    --build-arg "NODE_IMAGE=$base" --target "$TARGET" -t "$cached" . >&2
  echo "image: built $cached in $((SECONDS - t0)) s" >&2
fi
podman tag "$cached" "$IMAGE"
# Older trees' images go (each is a full copy under vfs), unless another tag of yours keeps one
# (rmi of one name only untags it) or a container uses it.
for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep "^localhost/$name:tree-" || true); do
  [ "$old" = "$cached" ] || podman rmi "$old" >/dev/null 2>&1 || true
done
echo "$IMAGE"
