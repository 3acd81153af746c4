#!/usr/bin/env bash
# stop_cluster.sh STATE_DIR [--purge] - stop the test cluster that
# start_cluster.sh started in STATE_DIR.
#
# Cancels the cluster's remaining jobs, then stops exactly the processes
# recorded in STATE_DIR/pids/*.pid (a PID is only signalled if its start time
# and executable still match what start_cluster.sh recorded; nothing is ever
# killed by name): SIGTERM, then SIGKILL after 30 s. Sockets and PID files
# are removed. The logs, configs and accounting DB stay in STATE_DIR (a later
# start_cluster.sh STATE_DIR reuses them) unless --purge is given, which
# deletes STATE_DIR (only if it carries start_cluster.sh's marker file).
set -euo pipefail

log() { printf '[stop_cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
[ $# -ge 1 ] || { echo "usage: $0 STATE_DIR [--purge]" >&2; exit 2; }
S=$1
PURGE=0
[ "${2:-}" = --purge ] && PURGE=1
[ -d "$S" ] || { log "no such directory: $S"; exit 1; }
S=$(cd "$S" && pwd -P)
[ -e "$S/.slurm-test-cluster" ] \
  || { log "ERROR: $S was not created by start_cluster.sh (no marker file)"; exit 1; }
PIDS=$S/pids
PATH=$PATH:/usr/sbin:/sbin
export SLURM_CONF=$S/etc/slurm.conf

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/pids.sh"

# 1. cancel leftover jobs while slurmctld and slurmd are still up, so that no
#    slurmstepd or job process outlives the cluster
if ours slurmctld >/dev/null && ours slurmd >/dev/null; then
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs || true
    for ((i = 0; i < 100; i++)); do
      [ -z "$(timeout 10 squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi

# 2. stop the daemons, clients before servers
rc=0
stopped=()
for name in slurmd slurmctld slurmdbd mariadb munged; do
  f=$PIDS/$name.pid
  [ -e "$f" ] || continue
  if pid=$(ours "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do is_running "$pid" || break; sleep 0.1; done
    if is_running "$pid"; then
      log "$name (pid $pid) still running 30 s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      is_running "$pid" && { log "ERROR: cannot stop $name (pid $pid)"; rc=1; continue; }
    fi
    log "stopped $name (pid $pid)"
    stopped+=("$pid")
  else
    log "$name: recorded process is gone (stale PID file)"
  fi
  rm -f "$f"
done

# 3. an exited daemon stays a zombie until PID 1 reaps it (seconds on some
#    container/VM inits); wait briefly so callers that check the process
#    table right after this script do not see it
for pid in "${stopped[@]}"; do
  for ((i = 0; i < 100; i++)); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
  [ -e "/proc/$pid" ] && log "note: pid $pid has exited but is not reaped yet (zombie)"
done

# 4. clean up runtime files
rm -f "$PIDS"/*.launch "$S/munge/munge.sock" "$S/munge/munge.sock.lock" \
  "$S/mysql/mysqld.sock" "$S/env.sh"
if [ "$PURGE" = 1 ] && [ "$rc" = 0 ]; then
  rm -rf -- "$S"
  log "removed $S"
fi
exit "$rc"
