#!/usr/bin/env bash
# Images of the server versions the tests run, for clusters that cannot pull (kind here): built with
# podman from the root filesystem scripts/lib/servers.sh makes for the local stack, so the cluster
# runs the binaries the tests ran. Each is named for what it holds, Debian's build
# (`localhost/wa-router-redis:8.0.2-3-deb13u3`), not for the official image the presets deploy
# (`redis:8.0.5`, a later upstream patch release of the same series): a cluster gets these through
# the preset's `images` override (scripts/kind.sh). Each honours what the manifests rely on from the
# official image: the user id (runAsUser), the PATH of the server's tools, for
# Postgres the entrypoint (POSTGRES_USER/PASSWORD/DB, PGDATA initialised when empty, arguments
# starting with `-` go to postgres), for Redis /data. Saved with `podman save` as
# $WA_ROUTER_CACHE/images/<server>-<version>-<hash>.tar (default ~/.cache/wa-router), reused when there.
#   --list: print `server image version archive` per image without building (the versions check reads it).
# Prints the archives' paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
PODMAN=${PODMAN:-podman}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
CACHE=${WA_ROUTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wa-router}
root=$(scripts/lib/servers.sh)
servers_json=$(node -e '
  const v = require("./versions.json");
  for (const s of ["postgres", "pgbouncer", "redis"]) console.log(s, v[s].uid, v[s].packages[0], v[s].series);')
# Everything an archive is made of: the root (its name covers the Debian builds the image names carry),
# this recipe, the entrypoint and each image's user id.
hash=$( { basename "$root"; cat "$0" scripts/images/postgres-entrypoint.sh; echo "$servers_json"; } | sha256sum | cut -c1-12)

# Debian's version of a package without epoch and revision: 5:8.0.2-3+deb13u3 -> 8.0.2.
installed() { awk -v p="$1" '$1 == p { v = $2; sub(/^[0-9]+:/, "", v); sub(/-[^-]*$/, "", v); print v }' "$root/.versions"; }
# The whole Debian version as a tag (no epoch; a tag has no `+`): 5:8.0.2-3+deb13u3 -> 8.0.2-3-deb13u3.
build() { awk -v p="$1" '$1 == p { v = $2; sub(/^[0-9]+:/, "", v); gsub(/[+~]/, "-", v); print v }' "$root/.versions"; }
declare -A image uid package series
while read -r server id pkg ser; do
  uid[$server]=$id; package[$server]=$pkg; series[$server]=$ser
  image[$server]=localhost/wa-router-$server:$(build "$pkg")
done <<< "$servers_json"
servers=(postgres pgbouncer redis)
archive() { echo "$CACHE/images/$1-$(installed "${package[$1]}")-$hash.tar"; }

if [ "${1:-}" = --list ]; then
  for s in "${servers[@]}"; do echo "$s ${image[$s]} $(installed "${package[$s]}") $(archive "$s")"; done
  exit 0
fi

command -v "$PODMAN" >/dev/null || { echo "images: podman is needed (apt-get install podman)" >&2; exit 1; }
mkdir -p "$CACHE/images"
# One build at a time (they share the podman base image): a second run waits, then finds the archives.
exec 9>"$CACHE/images/.lock"
flock 9
base=localhost/wa-router-servers-root:$hash
start=$SECONDS
for s in "${servers[@]}"; do
  out=$(archive "$s")
  if [ -f "$out" ]; then echo "$out"; continue; fi
  if ! $PODMAN image exists "$base"; then
    echo "images: importing $root as $base" >&2
    tar -C "$root" --numeric-owner --exclude=./.versions --exclude=./.complete -c . | $PODMAN import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$base" >/dev/null
  fi
  ctx=$(mktemp -d)
  case $s in
    postgres)
      cp scripts/images/postgres-entrypoint.sh "$ctx/docker-entrypoint.sh"
      cat > "$ctx/Containerfile" <<CF
FROM $base
RUN groupmod -g ${uid[postgres]} postgres && usermod -u ${uid[postgres]} postgres \\
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \\
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql && chmod 3777 /var/run/postgresql
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/${series[postgres]}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
USER ${uid[postgres]}
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
CF
      ;;
    pgbouncer)
      cat > "$ctx/Containerfile" <<CF
FROM $base
RUN groupmod -g ${uid[pgbouncer]} postgres && usermod -u ${uid[pgbouncer]} postgres \\
 && mkdir -p /etc/pgbouncer /var/run/pgbouncer && chown -R postgres:postgres /etc/pgbouncer /var/run/pgbouncer
USER ${uid[pgbouncer]}
EXPOSE 5432
CMD ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
CF
      ;;
    redis)
      cat > "$ctx/Containerfile" <<CF
FROM $base
RUN groupmod -g ${uid[redis]} redis && usermod -u ${uid[redis]} redis && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER ${uid[redis]}
EXPOSE 6379
CMD ["redis-server"]
CF
      ;;
  esac
  echo "images: building ${image[$s]} ($(installed "${package[$s]}"))" >&2
  $PODMAN build -q --label "org.opencontainers.image.version=$(installed "${package[$s]}")" -t "${image[$s]}" "$ctx" >/dev/null
  rm -rf "$ctx"
  $PODMAN save -q -o "$out.tmp" "${image[$s]}" && mv "$out.tmp" "$out"
  echo "$out"
done
[ $((SECONDS - start)) -lt 2 ] || echo "images: built in $((SECONDS - start)) s" >&2
