#!/usr/bin/env bash
# Measures `make test` as a first run on a machine sees it: a fresh clone of HEAD (committed work
# only) in a temporary folder, WA_ROUTER_CACHE an empty temporary folder (Node, the Go module and build
# caches, every binary and root filesystem), an empty npm cache and podman image store. Prints the
# total wall time, the CPU time of the whole run, each stage's time and each background build's.
# Everything it made is deleted at the end (KEEP=1 keeps it); needs ~20 GB free in TMPDIR.
#   scripts/cold-test.sh                     # results also in $TMPDIR/wa-router-cold-<stamp>.log
#   nice -n -5 scripts/cold-test.sh          # ahead of other load on a shared machine
set -euo pipefail
cd "$(dirname "$0")/.."
base=${TMPDIR:-/var/tmp}
free_gb=$(($(df --output=avail -k "$base" | tail -1) / 1024 / 1024))
[ "$free_gb" -ge 20 ] || { echo "cold-test: $free_gb GB free in $base, 20 GB needed (TMPDIR=… chooses)" >&2; exit 1; }
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "cold-test: uncommitted changes are not measured (HEAD is cloned)" >&2

dir=$(mktemp -d "$base/wa-router-cold.XXXXXX")
report=$base/wa-router-cold-$(date -u +%Y%m%dT%H%M%SZ).log
cleanup() {
  if [ "${KEEP:-}" = 1 ]; then echo "cold-test: kept $dir" >&2; return; fi
  rm -rf --one-file-system "$dir" || echo "cold-test: could not remove all of $dir" >&2
}
trap cleanup EXIT

git clone -q --no-checkout "$PWD" "$dir/repo"
git -C "$dir/repo" checkout -q --detach "$(git rev-parse HEAD)"
mkdir -p "$dir/cache" "$dir/npm" "$dir/containers"
# podman's own store: the images and the base made by scripts/image/ are rebuilt too.
cat > "$dir/containers/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$dir/containers/storage"
runroot = "$dir/containers/run"
CONF

start=$(date +%s)
set +e
(cd "$dir/repo" && WA_ROUTER_CACHE=$dir/cache npm_config_cache=$dir/npm CONTAINERS_STORAGE_CONF=$dir/containers/storage.conf \
  /usr/bin/time -f 'cpu: %U s user, %S s system, max RSS %M KB' make test) 2>&1 | tee "$dir/make-test.log"
rc=${PIPESTATUS[0]}
set -e
wall=$(($(date +%s) - start))
{
  echo "cold make test of $(git rev-parse --short HEAD): exit $rc, wall $wall s ($((wall / 60)) min $((wall % 60)) s)"
  grep -E '^cpu: ' "$dir/make-test.log" || true
  echo "stages (wall s, waits for builds included):"
  grep -E '^<== ' "$dir/make-test.log" | sed 's/^<== /  /'
  echo "background builds (exit status, wall s from their start):"
  for f in "$dir/repo/.cache/builds/"*.rc; do
    [ -f "$f" ] || continue
    read -r code secs <"$f"
    echo "  $(basename "$f" .rc): exit $code, $secs s"
  done
  grep -E '^    \(waited ' "$dir/make-test.log" || true
  grep -E '^tests: ' "$dir/make-test.log" || true
  echo "cache size: $(du -sh "$dir/cache" | cut -f1), podman store: $(du -sh "$dir/containers" | cut -f1)"
} | tee "$report"
echo "cold-test: summary in $report"
exit "$rc"
