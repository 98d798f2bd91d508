#!/usr/bin/env bash
# The --ulimit flags podman needs where it may not raise limits (inside a container, without
# CAP_SYS_RESOURCE): its defaults (nofile 1048576, nproc 4194304) exceed the machine's hard limits
# and runc refuses to start. Open files: the machine's hard limit, at most 65536. Processes: 4096,
# plenty for one node process (runc was refused even some values under this machine's hard limit).
set -euo pipefail
nofile=$(ulimit -Hn)
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; then nofile=65536; fi
nproc=$(ulimit -Hu)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; then nproc=4096; fi
echo "--ulimit nofile=$nofile:$nofile --ulimit nproc=$nproc:$nproc"
