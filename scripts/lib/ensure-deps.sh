#!/usr/bin/env bash
# Installs what `make up` and `make test` need on a fresh Debian machine, and nothing
# when it is already there: Debian packages, npm packages, then the root filesystem the real servers
# run from (scripts/lib/servers.sh: the Postgres, PgBouncer and Redis versions the presets deploy).
#   --no-servers: all but that root (`make test` builds it in the background beside its first stages).
set -euo pipefail
cd "$(dirname "$0")/../.."

need_pkgs=()
# The servers' root filesystem is made with debootstrap and entered with unshare (util-linux).
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need_pkgs+=(debootstrap)
# nginx balances the web processes of the HA stack (make up HA=1, make chaos, the chaos tests).
command -v nginx >/dev/null || need_pkgs+=(nginx)
# make image and its test: without a Docker daemon the image is built and run with podman (runc, vfs
# storage) from a base made by debootstrap (scripts/image/).
if ! docker info >/dev/null 2>&1; then
  for p in podman runc debootstrap; do command -v $p >/dev/null || [ -x /usr/sbin/$p ] || need_pkgs+=($p); done
fi
for extra in ${EXTRA_DEBIAN_PACKAGES:-}; do
  dpkg -s "$extra" >/dev/null 2>&1 || need_pkgs+=("$extra")
done

if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d keeps the packages' own init scripts from starting system-wide servers:
  # every process we run is started by scripts/ on a free loopback port.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# npm ci only when the lockfile or the Node ABI changed since the last install (or nothing is
# installed): a native addon built for another Node must be built again.
stamp=node_modules/.wa-router-lock-stamp
want_stamp() { node -p '"node-modules-abi " + process.versions.modules'; cat package-lock.json; }
if [ ! -f "$stamp" ] || ! cmp -s <(want_stamp) "$stamp"; then
  echo "==> npm ci (node $(node -v))"
  npm ci --no-audit --no-fund --loglevel=error
  want_stamp > "$stamp"
fi

# Postgres and PgBouncer refuse to run as root: as root, the stack runs them as this machine's postgres user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
fi
[ "${1:-}" = --no-servers ] || scripts/lib/servers.sh >/dev/null
