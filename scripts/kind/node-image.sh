#!/usr/bin/env bash
# Builds the kind node image from Debian packages and the Go module proxy, for machines that cannot
# pull images (no registry is reached). Prints its tag; cached as that podman tag and as a tarball in
# $WA_ROUTER_CACHE (default ~/.cache/wa-router), keyed by a hash of every input.
#
# What it is made of (kind's own images/base recipe, redone without a registry):
#  - Debian trixie (debootstrap, minbase) with systemd, containerd 1.7 and runc from Debian, plus what
#    kind's base image installs (iptables, nftables, conntrack, iproute2, …);
#  - kind's node files (entrypoint, containerd config, kubelet units) from the sigs.k8s.io/kind module
#    of the kind binary we run;
#  - kubelet, kubeadm, kubectl (scripts/controlplane/build.sh, the version k8s-tests run), crictl,
#    CNI plugins, etcd and CoreDNS built from the Go module proxy (scripts/kind/go-tool.sh);
#  - the images kubeadm starts, under the names it asks for (registry.k8s.io/…), as archives in
#    /kind/images that a unit imports into containerd before the kubelet starts: pause (kubeadm's
#    pause.c, compiled here), etcd, CoreDNS, kube-apiserver/-controller-manager/-scheduler (one static
#    binary each) and kube-proxy (the node's own root with kube-proxy: it needs iptables and conntrack).
#  - one CNI configuration (ptp + host-local + portmap on 10.244.0.0/16): the cluster is a single
#    node (scripts/kind.sh), so pods need no routes to other nodes and kind's kindnetd (an image we
#    cannot pull) is not needed; the cluster is created with disableDefaultCNI.
set -euo pipefail
cd "$(dirname "$0")/../.."
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
source scripts/kind/versions.sh
PACKAGES=systemd,systemd-sysv,containerd,runc,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,socat

hash=$( { echo "$K8S_VERSION $KIND_VERSION $ETCD_VERSION $COREDNS_VERSION $CRICTL_VERSION $CNI_PLUGINS_VERSION $PAUSE_VERSION $PACKAGES"; cat "$0" scripts/kind/versions.sh; } | sha256sum | cut -c1-12)
tag=localhost/wa-router-kind-node:v$K8S_VERSION-$hash
tarball=$CACHE/kind-node-v$K8S_VERSION-$hash.tar
if podman image exists "$tag"; then echo "$tag"; exit 0; fi
if [ -f "$tarball" ]; then podman load -q -i "$tarball" >/dev/null && echo "$tag" && exit 0; fi

t0=$SECONDS
k8s=$(K8S_EXTRA_BINARIES="kubelet kubeadm kube-proxy" scripts/controlplane/build.sh)
kind_bin=$(scripts/kind/kind-bin.sh)
etcd=$(scripts/kind/go-tool.sh etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3)
coredns=$(scripts/kind/go-tool.sh coredns github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns)
crictl=$(scripts/kind/go-tool.sh crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl)
p=github.com/containernetworking/plugins/plugins
cni=$(scripts/kind/go-tool.sh cni-plugins github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" \
  $p/main/ptp $p/main/loopback $p/ipam/host-local $p/meta/portmap)
gomod=$CACHE/go/mod
kind_files=$gomod/sigs.k8s.io/kind@v$KIND_VERSION/images/base/files
k8s_src=$gomod/k8s.io/kubernetes@v$K8S_VERSION
[ -d "$kind_files" ] && [ -f "$k8s_src/build/pause/linux/pause.c" ] || { echo "kind: module sources missing under $gomod" >&2; exit 1; }
echo "kind: node image tools ready in $((SECONDS - t0)) s" >&2

# The Debian root, cached apart (the slow, network-bound part).
rootfs=$CACHE/kind-rootfs-trixie-$(echo "$PACKAGES" | sha256sum | cut -c1-12).tar
if [ ! -f "$rootfs" ]; then
  command -v debootstrap >/dev/null || { echo "kind: debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }
  dir=$(mktemp -d "$CACHE/.kind-rootfs.XXXXXX")
  echo "kind: debootstrap trixie into $dir (a few minutes, once)" >&2
  debootstrap --variant=minbase --include="$PACKAGES" trixie "$dir" "$MIRROR" >&2
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  chmod 0755 "$dir"
  tar -C "$dir" --numeric-owner -cf "$rootfs.tmp" . && mv "$rootfs.tmp" "$rootfs"
  rm -rf "$dir"
fi

work=$(mktemp -d "$CACHE/.kind-node.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root images=$work/images
mkdir -p "$root" "$images"

# --- the images kubeadm runs ------------------------------------------------------------------
# One image per binary: a root with /usr/local/bin/<binary> (kubeadm's manifests call the binary by
# name, kube-proxy's by /usr/local/bin/kube-proxy) and ca-certificates' bundle, saved as an archive.
image_archive() { # name ref dir [--change …]
  local name=$1 ref=$2 dir=$3
  shift 3
  tar -C "$dir" --numeric-owner -c . | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$@" - "$ref" >/dev/null
  podman save -q --format docker-archive -o "$images/$name.tar" "$ref"
  podman rmi -f "$ref" >/dev/null
}
static_root() { # dir binary…
  local dir=$1 bin
  shift
  mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs" "$dir/tmp" && chmod 1777 "$dir/tmp"
  for bin in "$@"; do install -m 0755 "$bin" "$dir/usr/local/bin/"; done
}
reg=registry.k8s.io
gcc -Os -static -DVERSION="v$PAUSE_VERSION" -o "$work/pause" "$k8s_src/build/pause/linux/pause.c"
mkdir -p "$work/pause-root" && install -m 0755 "$work/pause" "$work/pause-root/pause"
image_archive pause "$reg/pause:$PAUSE_VERSION" "$work/pause-root" --change 'ENTRYPOINT ["/pause"]'
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  static_root "$work/$b-root" "$k8s/$b"
  image_archive "$b" "$reg/$b:v$K8S_VERSION" "$work/$b-root"
done
static_root "$work/etcd-root" "$etcd/etcd"
mkdir -p "$work/etcd-root/var/lib/etcd"
image_archive etcd "$reg/etcd:$ETCD_VERSION-0" "$work/etcd-root"
static_root "$work/coredns-root" "$coredns/coredns"
image_archive coredns "$reg/coredns/coredns:v$COREDNS_VERSION" "$work/coredns-root" --change 'ENTRYPOINT ["/usr/local/bin/coredns"]'

# --- the node's root --------------------------------------------------------------------------
tar -C "$root" -xf "$rootfs"
# kind's base image steps (images/base/Dockerfile), in the same order.
cp -r "$kind_files/usr/local/bin/." "$root/usr/local/bin/" && chmod 0755 "$root"/usr/local/bin/*
mkdir -p "$root/kind/bin" && cp -r "$kind_files/kind/." "$root/kind/" && chmod -R u+w,a+rX "$root/kind" && chmod 0755 "$root"/kind/bin/*
for d in etc etc/containerd etc/default etc/sysctl.d etc/systemd/system etc/systemd/system/kubelet.service.d; do
  mkdir -p "$root/$d"
  find "$kind_files/$d" -maxdepth 1 -type f -exec install -m 0644 {} "$root/$d/" \;
done
# Debian's containerd is in /usr/bin; kind's unit starts /usr/local/bin/containerd. The sandbox
# (pause) image is the one kubeadm names, which we preload.
ln -sf /usr/bin/containerd "$root/usr/local/bin/containerd"
# This machine refuses a negative oom_score_adj (runc's init dies with "can't get final child's PID
# from pipe" after "failed to update /proc/self/oom_score_adj: Permission denied" for the sandbox's
# -998), so containerd keeps pods' scores at or above its own, as it does for rootless kind.
sed -i -e "s#sandbox_image = .*#sandbox_image = \"$reg/pause:$PAUSE_VERSION\"#" \
  -e 's#restrict_oom_score_adj = false#restrict_oom_score_adj = true#' "$root/etc/containerd/config.toml"
# Debian's containerd looks for CNI plugins in /usr/lib/cni; kind's (and ours) are in /opt/cni/bin.
cat >> "$root/etc/containerd/config.toml" <<'TOML'

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/opt/cni/bin"
  conf_dir = "/etc/cni/net.d"
TOML
# The kube-proxy image: this root (iptables, nftables, conntrack) with kube-proxy, before the node's
# own additions.
install -m 0755 "$k8s/kube-proxy" "$root/usr/local/bin/kube-proxy"
image_archive kube-proxy "$reg/kube-proxy:v$K8S_VERSION" "$root"
rm "$root/usr/local/bin/kube-proxy"

chroot "$root" /bin/sh -ec '
  find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
  rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
    /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
    /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >> /etc/systemd/journald.conf
  ln -sf /usr/lib/systemd/systemd /sbin/init
  ctr oci spec | jq ".hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" \
    | jq "del(.process.rlimits)" > /etc/containerd/cri-base.json
  mkdir -p /etc/kubernetes/manifests /opt/cni/bin /etc/cni/net.d
'
install -m 0755 "$k8s/kubelet" "$k8s/kubeadm" "$k8s/kubectl" "$root/usr/bin/"
install -m 0755 "$crictl/crictl" "$root/usr/local/bin/"
install -m 0755 "$cni"/ptp "$cni"/loopback "$cni"/host-local "$cni"/portmap "$root/opt/cni/bin/"
echo "v$K8S_VERSION" > "$root/kind/version"
cat > "$root/etc/cni/net.d/10-wa-router.conflist" <<'CNI'
{
  "cniVersion": "1.0.0",
  "name": "kindnet",
  "plugins": [
    { "type": "ptp", "ipMasq": false,
      "ipam": { "type": "host-local", "dataDir": "/run/cni-ipam-state",
                "ranges": [[{ "subnet": "10.244.0.0/16" }]], "routes": [{ "dst": "0.0.0.0/0" }] },
      "mtu": 1500 },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
CNI
mkdir -p "$root/kind/images" "$root/kind/manifests"
cp "$images"/*.tar "$root/kind/images/"
cat > "$root/kind/bin/import-images.sh" <<'SH'
#!/bin/sh
# Imports the images kubeadm runs into containerd, with the snapshotter the CRI uses (the entrypoint
# may have changed it), once per node.
set -eu
[ -f /var/lib/wa-router-images-imported ] && exit 0
snapshotter=$(sed -n 's/^ *snapshotter = "\(.*\)"/\1/p' /etc/containerd/config.toml | head -1)
for f in /kind/images/*.tar; do
  ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter="$snapshotter" "$f"
done
touch /var/lib/wa-router-images-imported
SH
chmod 0755 "$root/kind/bin/import-images.sh"
cat > "$root/etc/systemd/system/kind-import-images.service" <<'UNIT'
[Unit]
Description=Import the preloaded images into containerd
After=containerd.service
Requires=containerd.service
Before=kubelet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/kind/bin/import-images.sh
[Install]
WantedBy=multi-user.target
RequiredBy=kubelet.service
UNIT
# The default StorageClass kind installs: volumes are folders on the node, provisioned by
# scripts/kind.sh (kind's local-path-provisioner is an image we cannot pull).
cat > "$root/kind/manifests/default-storage.yaml" <<'SC'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
SC
systemctl --root="$root" enable kubelet.service containerd.service undo-mount-hacks.service kind-import-images.service >&2
systemctl --root="$root" mask systemd-binfmt.service >&2
chmod 0755 "$root"
tar -C "$root" --numeric-owner -c . | podman import \
  --change 'ENV container=docker' --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$tag" >/dev/null
podman save -q -o "$tarball.tmp" "$tag" && mv "$tarball.tmp" "$tarball"
# Older node images go (each is a full copy under vfs).
for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/wa-router-kind-node:' || true); do
  [ "$old" = "$tag" ] || podman rmi "$old" >/dev/null 2>&1 || true
done
echo "kind: node image $tag built in $((SECONDS - t0)) s" >&2
echo "$tag"
