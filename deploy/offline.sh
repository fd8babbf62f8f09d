#!/usr/bin/env bash
# Run a command with no network: a new network namespace whose only interface is loopback (up, because the
# Jupyter kernels talk to their client over 127.0.0.1). Nothing can be downloaded inside it, so a lab that tried
# would fail. Where unprivileged namespaces are not available, say so plainly and run the command with the
# network as it is (the proof is skipped, the command's own checks still run); LABKIT_REQUIRE_OFFLINE=1 makes
# that a failure instead.
#   deploy/offline.sh COMMAND [ARGS...]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: deploy/offline.sh COMMAND [ARGS...]" >&2; exit 2; }
probe() { unshare -rn sh -c 'ip link set lo up' 2>/dev/null; }
if ! command -v unshare >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 || ! probe; then
  msg="deploy/offline.sh: network namespaces are not available here (unshare -rn, ip): NOT proving offline"
  if [ "${LABKIT_REQUIRE_OFFLINE:-0}" = 1 ]; then echo "$msg" >&2; exit 1; fi
  echo "$msg; running with the network as it is" >&2
  exec "$@"
fi
# the command, quoted for the inner shell
cmd=$(printf '%q ' "$@")
exec unshare -rn bash -c "ip link set lo up && LABKIT_OFFLINE_RUN=1 exec $cmd"
