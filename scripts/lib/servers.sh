#!/usr/bin/env bash
# Builds (or reuses) the root filesystem the local stack, the tests, the benchmarks and the server
# images run Postgres, PgBouncer and Redis from: Debian $suite (debootstrap --variant=minbase) plus the
# server packages versions.json names, so what runs here is the version the presets deploy, whatever
# Debian release the machine itself runs. Cached by a hash of its inputs as
# $WA_ROUTER_CACHE/servers-<hash> (default ~/.cache/wa-router); built once, in a few minutes.
# Prints the root's path. scripts/stack/servers.ts runs the servers with this root's /usr mounted
# over the machine's (a private mount namespace per server), so paths and loopback ports stay the host's.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Each package pinned to versions.json's Debian version: apt fails naming it when the mirror has moved on.
read -r suite names pins < <(node -e '
  const v = require("./versions.json");
  const servers = ["postgres", "pgbouncer", "redis"];
  const names = servers.flatMap((s) => v[s].packages);
  const pins = servers.flatMap((s) => v[s].packages.map((p) => `${p}=${v[s].debian.version}`));
  console.log(v.debian.suite, names.join(","), pins.join(" "));')
names=${names//,/ }

hash=$( { echo "$suite $pins"; cat "$0"; } | sha256sum | cut -c1-12)
root=$CACHE/servers-$hash

# The build itself, run by the code below in a private mount namespace: the proc and sys mounts
# debootstrap and chroot make die with it, even when the build is killed half-way.
if [ "${1:-}" = --build-into ]; then
  dir=$2
  debootstrap --variant=minbase "$suite" "$dir" "$MIRROR"
  echo "deb $SECURITY_MIRROR $suite-security main" > "$dir/etc/apt/sources.list.d/security.list"
  echo "deb $MIRROR $suite-updates main" > "$dir/etc/apt/sources.list.d/updates.list"
  # Nothing starts at install time, and Postgres gets no `main` cluster: every server is started by
  # scripts/stack/ (or the image's entrypoint) on its own data directory.
  printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d" && chmod +x "$dir/usr/sbin/policy-rc.d"
  mkdir -p "$dir/etc/postgresql-common/createcluster.d"
  echo 'create_main_cluster = false' > "$dir/etc/postgresql-common/createcluster.d/no-main.conf"
  in_root() { unshare --mount --propagation private -- sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$dir" "$@"; }
  in_root apt-get update -qq
  # tzdata: Debian's Postgres reads the system's time zone database.
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -qq --no-install-recommends tzdata $pins >/dev/null
  in_root apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
  # What was installed, for the versions check and the images' labels.
  in_root dpkg-query -W -f '${Package} ${Version}\n' $names > "$dir/.versions"
  exit 0
fi

if [ -f "$root/.complete" ]; then echo "$root"; exit 0; fi

[ "$(id -u)" -eq 0 ] || { echo "servers: building $root needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "servers: debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$CACHE"
# One build at a time: parallel test runs wait for the first one's root instead of racing it.
exec 9>"$root.lock"
flock 9
if [ -f "$root/.complete" ]; then echo "$root"; exit 0; fi
# Left by an interrupted build: never follow a mount out of it.
for stale in "$root.build" "$root"; do
  [ -e "$stale" ] || continue
  rm -rf --one-file-system "$stale" || {
    echo "servers: cannot remove $stale: a mount is left in it by an interrupted build; run \`umount -R $stale/proc $stale/sys\` (see \`findmnt -R $stale\`), then retry" >&2
    exit 1
  }
done
start=$SECONDS
echo "servers: debootstrap $suite + $pins into $root (once, a few minutes)" >&2
unshare --mount --propagation private -- scripts/lib/servers.sh --build-into "$root.build" >&2
touch "$root.build/.complete"
mv "$root.build" "$root"
echo "servers: built in $((SECONDS - start)) s" >&2
echo "$root"
