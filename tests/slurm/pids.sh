# Sourced by start_cluster.sh and stop_cluster.sh (needs $PIDS): the one place that decides
# whether a recorded PID is still the daemon we started.
# A PID file holds "PID STARTTIME EXE"; a process counts as ours only if all three still match
# (guards against PID reuse). Exited daemons can linger as zombies until PID 1 reaps them, so
# state Z counts as not running.
proc_start() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }
is_running() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
ours() { # name -> prints the PID if the recorded process is still that process
  local f=$PIDS/$1.pid pid st exe
  [ -s "$f" ] || return 1
  read -r pid st exe <"$f" || true
  [ -n "${exe:-}" ] && is_running "$pid" \
    && [ "$(proc_start "$pid")" = "$st" ] \
    && [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || return 1
  echo "$pid"
}
