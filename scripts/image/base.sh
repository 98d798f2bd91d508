#!/usr/bin/env bash
# Makes the image's base locally for machines that cannot pull from public registries: Debian
# bookworm (debootstrap --variant=minbase, from Debian's package mirror) with the Node 24 binary and
# npm of scripts/lib/ensure-node.sh, laid out like the official node:24-bookworm-slim (node and npm in
# /usr/local, a `node` user with uid/gid 1000), imported with `podman import`. Cached by a hash of its
# inputs, as the podman tag localhost/wa-router-base:node<version>-<hash> and as a tarball in
# $WA_ROUTER_CACHE (default ~/.cache/wa-router) that survives a wiped image store. Prints the tag.
set -euo pipefail
cd "$(dirname "$0")/../.."
PODMAN=${PODMAN:-podman}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NODE_BIN=$(scripts/lib/ensure-node.sh)
# The npm that runs on the ensured Node (beside it, or the system's): the one ensure-node.sh vouches
# for, not whichever npm another Node put first on PATH; without one, stop rather than copy nothing.
NPM=$(PATH="$NODE_BIN:$PATH" command -v npm) || { echo "image: npm not found beside $NODE_BIN/node or on PATH (scripts/lib/ensure-node.sh installs it)" >&2; exit 1; }
NPM_DIR=$(dirname "$(readlink -f "$NPM")")/..
node_version=$("$NODE_BIN/node" -v)
npm_version=$(PATH="$NODE_BIN:$PATH" "$NPM" -v)

hash=$( { echo "$SUITE $node_version $npm_version"; cat "$0"; } | sha256sum | cut -c1-12)
tag=localhost/wa-router-base:node${node_version#v}-$hash
tarball=$CACHE/base-node${node_version#v}-$hash.tar

if $PODMAN image exists "$tag"; then echo "$tag"; exit 0; fi
if [ -f "$tarball" ]; then
  $PODMAN load -q -i "$tarball" >/dev/null && echo "$tag" && exit 0
fi

command -v debootstrap >/dev/null || { echo "image: debootstrap is needed to make the base image (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$CACHE"
root=$(mktemp -d "$CACHE/.base-root.XXXXXX")
trap 'rm -rf "$root"' EXIT
echo "image: debootstrap $SUITE into $root (a few minutes, once)" >&2
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >&2

# The binary stripped (109 MB of 127): the same code; JavaScript stack traces are unchanged, only
# a native debugger sees fewer symbols.
install -m 0755 "$NODE_BIN/node" "$root/usr/local/bin/node"
strip "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$NPM_DIR" "$root/usr/local/lib/node_modules/npm"
rm -rf "$root/usr/local/lib/node_modules/npm/docs" "$root/usr/local/lib/node_modules/npm/man"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# Slim like Debian's own -slim images: no docs, man pages or translations, now (with debootstrap's
# downloaded packages and apt lists) and for what the Dockerfile installs later (dpkg path-exclude).
cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
# apt keeps no package caches either (Debian's images ship the same docker-clean configuration).
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
find "$root/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/* "$root"/var/log/*.log \
  "$root"/var/cache/debconf/*-old
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +

chmod 0755 "$root" # mktemp made it 0700, and it becomes the image's /
tar -C "$root" --numeric-owner -c . | $PODMAN import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${node_version#v}" \
  --change 'CMD ["node"]' - "$tag" >/dev/null
$PODMAN save -q -o "$tarball.tmp" "$tag" && mv "$tarball.tmp" "$tarball"
echo "$tag"
