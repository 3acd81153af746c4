#!/usr/bin/env bash
# install_deps.sh - install (if missing) the Debian packages that
# start_cluster.sh needs: munge, Slurm (slurmctld, slurmd, client tools),
# slurmdbd and MariaDB (for accounting, so that `sacct` works).
#
# Idempotent: does nothing when every package is already installed.
# Quiet on success; on failure prints the tail of the apt log and exits 1.
# Must run as root (Debian/Ubuntu with apt-get).
set -euo pipefail

PKGS=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

fail() { echo "install_deps.sh: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root"
command -v apt-get >/dev/null || fail "apt-get not found (Debian/Ubuntu only)"

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed \
    || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

log=$(mktemp /tmp/slurm-install-deps.XXXXXX.log)
# The packages' maintainer scripts try to start munge/slurm/mariadb through
# invoke-rc.d. We start the daemons ourselves, so forbid that for the
# duration of the install (unless the machine already has a policy-rc.d).
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q >>"$log" 2>&1 \
  || { tail -n 20 "$log" >&2; fail "apt-get update failed (log: $log)"; }
apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
  || { tail -n 30 "$log" >&2; fail "apt-get install ${missing[*]} failed (log: $log)"; }

for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed \
    || fail "$p still not installed after apt-get (log: $log)"
done
rm -f "$log"
