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
read -r suite packages < <(node -e '
  const v = require("./versions.json");
  console.log(v.debian.suite, ["postgres", "pgbouncer", "redis"].flatMap((s) => v[s].packages).join(" "));')

hash=$( { echo "$suite $packages"; cat "$0"; } | sha256sum | cut -c1-12)
root=$CACHE/servers-$hash
if [ -f "$root/.complete" ]; then echo "$root"; exit 0; fi

[ "$(id -u)" -eq 0 ] || { echo "servers: building $root needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "servers: debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$CACHE"
# One build at a time: parallel test runs wait for the first one's root instead of racing it.
exec 9>"$root.lock"
flock 9
if [ -f "$root/.complete" ]; then echo "$root"; exit 0; fi
rm -rf "$root"
start=$SECONDS
echo "servers: debootstrap $suite + $packages into $root (once, a few minutes)" >&2
debootstrap --variant=minbase "$suite" "$root" "$MIRROR" >&2
echo "deb $SECURITY_MIRROR $suite-security main" > "$root/etc/apt/sources.list.d/security.list"
echo "deb $MIRROR $suite-updates main" > "$root/etc/apt/sources.list.d/updates.list"
# Nothing starts at install time, and Postgres gets no `main` cluster: every server is started by
# scripts/stack/ (or the image's entrypoint) on its own data directory.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
mkdir -p "$root/etc/postgresql-common/createcluster.d"
echo 'create_main_cluster = false' > "$root/etc/postgresql-common/createcluster.d/no-main.conf"
in_root() { unshare --mount --propagation private -- sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$root" "$@"; }
in_root apt-get update -qq >&2
# tzdata: Debian's Postgres reads the system's time zone database.
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -qq --no-install-recommends tzdata $packages >/dev/null
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
# What was installed, for the versions check and the images' labels.
in_root dpkg-query -W -f '${Package} ${Version}\n' $packages > "$root/.versions"
touch "$root/.complete"
echo "servers: built in $((SECONDS - start)) s" >&2
echo "$root"
