#!/usr/bin/env bash
# start_cluster.sh [STATE_DIR] - start a throw-away, single-node SLURM cluster
# on this machine, for integration tests of the Snakemake SLURM executor.
#
#   eval "$(tests/slurm/start_cluster.sh)"            # state in a new temp dir
#   eval "$(tests/slurm/start_cluster.sh /tmp/slurm)" # or in a dir of your choice
#   ... sbatch / snakemake --executor slurm ...
#   tests/slurm/stop_cluster.sh "$SLURM_TEST_STATE_DIR" --purge
#
# Starts munged, MariaDB, slurmdbd, slurmctld and slurmd in the background (no
# systemd, no cgroups, loopback only), each with its config, socket, PID file,
# spool and log under STATE_DIR. Nothing is written to /etc. The PIDs are
# recorded in STATE_DIR/pids/ for stop_cluster.sh. The script then waits (up
# to SLURM_TEST_TIMEOUT seconds) until the node is idle; on failure it prints
# the daemon logs, stops what it started and exits 1.
#
# stdout carries only `export ...` lines (also saved in STATE_DIR/env.sh);
# progress and errors go to stderr. The daemons never inherit stdout, so
# `$(start_cluster.sh)` returns as soon as the cluster is up.
#
# What the cluster looks like:
#   * one node "localhost" (127.0.0.1) with this machine's CPUs/topology (from
#     `slurmd -C`) and RealMemory = 90 % of physical memory;
#   * SLURM_TEST_GPUS (2) fake GPUs: Gres=gpu:N backed by character devices
#     STATE_DIR/dev/gpuN (a file-less gpu gres line is silently dropped);
#   * partitions "cpu" (default) and "gpu"; EnforcePartLimits=ALL, so requests
#     the node can never satisfy are rejected by sbatch instead of pending;
#   * accounting through slurmdbd + MariaDB (sacct works, gres/gpu is a TRES),
#     AccountingStorageEnforce=associations, account SLURM_TEST_ACCOUNT
#     (testacct) with user root (and $SUDO_USER) associated, default account;
#   * MinJobAge=300.
#
# Environment knobs (defaults in brackets):
#   SLURM_TEST_ACCOUNT  [testacct]       SLURM_TEST_CLUSTER [testcluster]
#   SLURM_TEST_GPUS     [2]              SLURM_TEST_TIMEOUT [120] (seconds, whole start)
#   SLURM_TEST_CTLD_PORT [6817]  SLURM_TEST_SLURMD_PORT [6818]
#   SLURM_TEST_DBD_PORT  [6819]  SLURM_TEST_DB_PORT     [3307] (MariaDB, 127.0.0.1)
#   SLURM_TEST_KEEP_ON_FAILURE=1   leave the daemons running if start fails
#
# Requires root and the packages from install_deps.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ACCOUNT=${SLURM_TEST_ACCOUNT:-testacct}
CLUSTER=${SLURM_TEST_CLUSTER:-testcluster}
NGPUS=${SLURM_TEST_GPUS:-2}
TIMEOUT=${SLURM_TEST_TIMEOUT:-120}
CTLD_PORT=${SLURM_TEST_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-6818}
DBD_PORT=${SLURM_TEST_DBD_PORT:-6819}
DB_PORT=${SLURM_TEST_DB_PORT:-3307}
USERS="root${SUDO_USER:+ $SUDO_USER}"
NODE=localhost

t_start=$(date +%s.%N)
log() { printf '[start_cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
elapsed() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

[ "$(id -u)" = 0 ] || { log "ERROR: must run as root"; exit 1; }
PATH=$PATH:/usr/sbin:/sbin
for bin in munged mungekey mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacctmgr; do
  command -v "$bin" >/dev/null \
    || { log "ERROR: $bin not found; run $HERE/install_deps.sh first"; exit 1; }
done
[[ "$NGPUS" =~ ^[1-9][0-9]*$ ]] || { log "ERROR: SLURM_TEST_GPUS must be >= 1"; exit 1; }

# ------------------------------------------------------------------ layout
if [ $# -ge 1 ]; then
  S=$1
  mkdir -p "$S"
else
  S=$(mktemp -d /tmp/slurm-test.XXXXXX)
fi
S=$(cd "$S" && pwd -P)
# The daemons' sockets live here: a Unix socket path must stay < 108 bytes.
[ ${#S} -le 60 ] || { log "ERROR: STATE_DIR path too long (max 60 chars): $S"; exit 1; }
# mktemp -d gives 0700; munged refuses a socket dir that others cannot traverse
chmod 755 "$S"
touch "$S/.slurm-test-cluster"         # marker: stop_cluster.sh --purge checks it
mkdir -p "$S"/{etc,pids,log,dev,spool/slurmctld,spool/slurmd,mysql}
install -d -m 755 "$S/munge"
ETC=$S/etc PIDS=$S/pids LOGD=$S/log
export SLURM_CONF=$ETC/slurm.conf
MUNGE_SOCK=$S/munge/munge.sock
DB_SOCK=$S/mysql/mysqld.sock

# -------------------------------------------------------- process helpers
. "$HERE/pids.sh"
launch() { # name cmd... : run cmd (a foreground daemon) in its own session
  local name=$1 exe pid i
  shift
  exe=$(readlink -f "$(command -v "$1")") # Debian: /usr/sbin/slurmd -> slurmd-wlm
  rm -f "$PIDS/$name.pid" "$PIDS/$name.launch"
  # bash writes its own PID, then execs the daemon: that PID is the daemon's.
  # No fd is inherited from our caller (think `eval "$(start_cluster.sh)"`).
  # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
  (cd / && exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDS/$name.launch" "$@" \
      </dev/null >>"$LOGD/$name.out" 2>&1) &
  for ((i = 0; i < 100; i++)); do
    if [ -s "$PIDS/$name.launch" ]; then
      pid=$(cat "$PIDS/$name.launch")
      if [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]; then
        echo "$pid $(proc_start "$pid") $exe" >"$PIDS/$name.pid"
        rm -f "$PIDS/$name.launch"
        return 0
      fi
    fi
    sleep 0.05
  done
  fail "$name did not start"
}
dump_logs() {
  local f
  for f in "$LOGD"/*; do
    [ -s "$f" ] || continue
    echo "----- $f (last 25 lines)" >&2
    tail -n 25 "$f" >&2
  done
}
fail() {
  log "ERROR: $* (after $(elapsed) s)"
  dump_logs
  if [ "${SLURM_TEST_KEEP_ON_FAILURE:-0}" != 1 ]; then
    log "stopping the daemons started so far (state kept in $S)"
    "$HERE/stop_cluster.sh" "$S" >&2 || true
  fi
  exit 1
}
deadline=$(($(date +%s) + TIMEOUT))
wait_until() { # what name cmd... : poll cmd until it succeeds (name must stay alive)
  local what=$1 name=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ours "$name" >/dev/null || fail "$name died while waiting for: $what"
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out (${TIMEOUT}s) waiting for: $what"
    sleep 0.2
  done
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

print_env() {
  cat <<EOF
export SLURM_CONF=$SLURM_CONF
export SLURM_TEST_STATE_DIR=$S
export SLURM_TEST_ACCOUNT=$ACCOUNT
export PATH=$S/bin:\$PATH
EOF
}

# Already running (all five recorded daemons alive)? Then only re-print.
n_alive=0
for d in munged mariadb slurmdbd slurmctld slurmd; do
  ours "$d" >/dev/null && n_alive=$((n_alive + 1))
done
if [ "$n_alive" = 5 ]; then
  log "cluster in $S is already running"
  print_env
  exit 0
elif [ "$n_alive" != 0 ]; then
  log "ERROR: only $n_alive of 5 daemons recorded in $S/pids are alive;" \
    "run stop_cluster.sh $S first"
  exit 1
fi
for p in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
  port_busy "$p" && { log "ERROR: port $p on 127.0.0.1 is already in use" \
    "(another SLURM/MariaDB? set SLURM_TEST_*_PORT)"; exit 1; }
done
rm -f "$PIDS"/*.pid "$PIDS"/*.launch

# ------------------------------------------------------------ the machine
hw=$(slurmd -C | head -n 1)
hw_val() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$hw"; }
CPUS=$(hw_val CPUs)
[ -n "$CPUS" ] || { log "ERROR: cannot parse 'slurmd -C': $hw"; exit 1; }
MEM_MB=$(hw_val RealMemory)
REAL_MEM=$((MEM_MB * 90 / 100))
TOPOLOGY="CPUs=$CPUS Boards=$(hw_val Boards) SocketsPerBoard=$(hw_val SocketsPerBoard)"
TOPOLOGY+=" CoresPerSocket=$(hw_val CoresPerSocket) ThreadsPerCore=$(hw_val ThreadsPerCore)"
# NoInAddrAny makes slurmd/srun bind to the address `hostname` resolves to:
# only safe when that is a loopback address (else srun cannot resolve/bind).
# slurmdbd has no listen-address option; it also binds to the hostname's
# address under NoInAddrAny, otherwise to 0.0.0.0.
COMM=NoCtldInAddrAny
DBD_COMM="# (hostname does not resolve to 127.x: slurmdbd listens on 0.0.0.0)"
if getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR==1{print $1}' | grep -q '^127\.'; then
  COMM=NoInAddrAny,NoCtldInAddrAny
  DBD_COMM=CommunicationParameters=NoInAddrAny
fi

# Fake GPUs: character devices named gpu0..gpuN-1 (index -> CUDA_VISIBLE_DEVICES)
for ((i = 0; i < NGPUS; i++)); do
  [ -c "$S/dev/gpu$i" ] || { rm -f "$S/dev/gpu$i"; mknod -m 666 "$S/dev/gpu$i" c 1 3; }
done

# srun shim (see README: the slurm-jobstep plugin strips SLURM_CONF before
# its nested `srun`, which then looks for /etc/slurm/slurm.conf).
mkdir -p "$S/bin"
cat >"$S/bin/srun" <<EOF
#!/bin/sh
# added by start_cluster.sh: default SLURM_CONF for this test cluster
SLURM_CONF=\${SLURM_CONF:-$SLURM_CONF}
export SLURM_CONF
exec /usr/bin/srun "\$@"
EOF
chmod 755 "$S/bin/srun"

# ---------------------------------------------------------------- configs
[ -s "$S/db.pass" ] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$S/db.pass")
DB_PASS=$(cat "$S/db.pass")

cat >"$ETC/slurm.conf" <<EOF
# Generated by tests/slurm/start_cluster.sh - single-node loopback test cluster.
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
CommunicationParameters=$COMM
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK
MailProg=/bin/true
MpiDefault=none
# no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
SlurmctldPidFile=$S/spool/slurmctld.pid
SlurmdPidFile=$S/spool/slurmd.pid
StateSaveLocation=$S/spool/slurmctld
SlurmdSpoolDir=$S/spool/slurmd
SlurmctldLogFile=$LOGD/slurmctld.log
SlurmdLogFile=$LOGD/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
# reject impossible requests at submit time instead of pending forever
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# for slurmdbd connections the munge socket is taken from here, not AuthInfo
AccountingStoragePass=$MUNGE_SOCK
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=10
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $TOPOLOGY RealMemory=$REAL_MEM Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES DefaultTime=60 MaxTime=2-00:00:00 State=UP
PartitionName=gpu Nodes=$NODE DefaultTime=60 MaxTime=2-00:00:00 State=UP
EOF

cat >"$ETC/gres.conf" <<EOF
# A gpu line without File= is dropped by slurmd ("file-less GPU"), so each
# fake GPU is a character device; its trailing digit is the GPU index.
AutoDetect=off
NodeName=$NODE Name=gpu File=$S/dev/gpu[0-$((NGPUS - 1))]
EOF

# slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF; it must be
# owned by SlurmUser and mode 600.
(umask 077 && cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
$DBD_COMM
SlurmUser=root
DebugLevel=info
LogFile=$LOGD/slurmdbd.log
PidFile=$S/spool/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)
chmod 600 "$ETC/slurmdbd.conf"

# ------------------------------------------------------------------ munge
if [ ! -s "$S/munge/munge.key" ]; then
  mungekey --create --keyfile="$S/munge/munge.key" >/dev/null
  chmod 600 "$S/munge/munge.key"
fi
rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
launch munged munged --foreground --socket="$MUNGE_SOCK" \
  --key-file="$S/munge/munge.key" --pid-file="$S/munge/munged.pid" \
  --seed-file="$S/munge/munged.seed" --log-file="$LOGD/munged.log"
munge_ok() { munge -S "$MUNGE_SOCK" -n | unmunge -S "$MUNGE_SOCK"; }
wait_until "munged answering on $MUNGE_SOCK" munged munge_ok
t_munge=$(elapsed)

# ---------------------------------------------------------------- MariaDB
if [ ! -d "$S/mysql/data/mysql" ]; then
  mariadb-install-db --no-defaults --user=root --datadir="$S/mysql/data" \
    --auth-root-authentication-method=socket --skip-test-db \
    >"$LOGD/mariadb-install-db.out" 2>&1 || fail "mariadb-install-db failed"
fi
launch mariadb mariadbd --no-defaults --user=root --datadir="$S/mysql/data" \
  --socket="$DB_SOCK" --pid-file="$S/mysql/mysqld.pid" \
  --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
  --log-error="$LOGD/mariadb.err" --innodb-buffer-pool-size=128M \
  --innodb-log-file-size=48M --innodb-lock-wait-timeout=900
wait_until "MariaDB on $DB_SOCK" mariadb mariadb-admin --no-defaults --socket="$DB_SOCK" -uroot ping
mariadb --no-defaults --socket="$DB_SOCK" -uroot -e "
  CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
  || fail "cannot create the accounting database"
t_db=$(elapsed)

# --------------------------------------------------------------- slurmdbd
launch slurmdbd slurmdbd -D
wait_until "slurmdbd (sacctmgr list cluster)" slurmdbd sacctmgr -n list cluster
sacctmgr_q() { sacctmgr -n -P "$@" 2>/dev/null; }
[ -n "$(sacctmgr_q list cluster "$CLUSTER" format=cluster)" ] \
  || sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr add cluster failed"
[ -n "$(sacctmgr_q list account "$ACCOUNT" format=account)" ] \
  || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" \
    description="test account" organization=test >/dev/null \
  || fail "sacctmgr add account failed"
for u in $USERS; do
  [ -n "$(sacctmgr_q list assoc cluster="$CLUSTER" account="$ACCOUNT" user="$u" format=user)" ] \
    || sacctmgr -i add user "$u" account="$ACCOUNT" defaultaccount="$ACCOUNT" \
      cluster="$CLUSTER" >/dev/null || fail "sacctmgr add user $u failed"
done

t_dbd=$(elapsed)

# ------------------------------------------------------ slurmctld + slurmd
launch slurmctld slurmctld -D -i
wait_until "slurmctld (scontrol ping)" slurmctld bash -c 'scontrol ping | grep -q "is UP"'
launch slurmd slurmd -D -N "$NODE"

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }
resumed=0
while :; do
  st=$(node_state)
  case "$st" in
    idle) break ;;
    *drain* | down* | inval* | fail*)
      # e.g. a drain reason saved in the state dir by an earlier run
      if [ "$resumed" = 0 ]; then
        log "node is '$st' ($(sinfo -h -N -n "$NODE" -o %E | head -n 1)); resuming"
        scontrol update nodename="$NODE" state=resume >&2 || true
        resumed=1
      fi
      ;;
  esac
  for d in munged mariadb slurmdbd slurmctld slurmd; do
    ours "$d" >/dev/null || fail "$d died while waiting for the node to become idle"
  done
  [ "$(date +%s)" -lt "$deadline" ] \
    || fail "timed out (${TIMEOUT}s) waiting for node $NODE to become idle (state: '${st:-?}')"
  sleep 0.2
done

print_env >"$S/env.sh"
log "cluster '$CLUSTER' up in $(elapsed) s: node $NODE $CPUS CPUs, ${REAL_MEM} MB," \
  "gres gpu:$NGPUS, partitions cpu (default) + gpu, account $ACCOUNT; state in $S"
log "elapsed at: munged ${t_munge}s, MariaDB ${t_db}s, slurmdbd+accounts ${t_dbd}s, node idle $(elapsed)s"
print_env
