#!/bin/sh
# What keeps a Sentinel from running (scripts/kind/README.md, "What stalls a Sentinel"): run inside a
# Sentinel container, e.g. during `make kind-test`:
#   kubectl -n wa-kind exec wa-router-sentinel-0 -- sh -c "N=1400 $(cat scripts/kind/sentinel-probe.sh)"
# Every ~0.5 s, N times: the wall time since the last sample, how long the Sentinel (pid 1) waited
# for a CPU meanwhile (schedstat run_delay), its CPU ticks (utime, stime), and how long getaddrinfo
# of each Redis pod's name takes with the pod's resolver, as Sentinel resolves them.
N=${N:-600}
d=${FIRST_REDIS#*.}
now() { date +%s%3N; }
rd() { cut -d' ' -f2 /proc/1/schedstat; }
prev_rd=$(rd); prev_t=$(now); i=0
while [ "$i" -lt "$N" ]; do
  i=$((i + 1))
  sleep 0.5
  t=$(now); r=$(rd)
  out="$t gap=$((t - prev_t)) rundelay=$(( (r - prev_rd) / 1000000 )) cputicks=$(cut -d' ' -f14,15 /proc/1/stat)"
  for h in wa-router-redis-0 wa-router-redis-1; do
    a=$(now); getent ahosts "$h.$d" >/dev/null 2>&1; rc=$?; b=$(now)
    out="$out $h=$((b - a))ms/rc$rc"
  done
  echo "$out"
  prev_t=$(now); prev_rd=$(rd)
done
