#!/usr/bin/env bash
# stop.sh - stop the single-node Slurm cluster that start.sh runs for STATE_DIR.
#
# usage: stop.sh [--keep-jobs] STATE_DIR
#
# By default it first cancels every job of this cluster and waits (up to SLURM_LOCAL_TIMEOUT,
# default 60 s) for them to leave the queue, so that no job outlives the daemons. Then it stops
# the daemons with SIGTERM (SIGKILL after the timeout): slurmd, slurmctld, slurmdbd, mariadbd,
# munged. Finally it kills what is left of jobs: a slurmstepd started by this cluster's slurmd
# ignores SIGTERM and would keep the job's processes running.
#   --keep-jobs  cancel and kill no job: running jobs go on, and start.sh picks them up again.
#                (A later stop.sh without --keep-jobs, while the cluster is down, kills those
#                jobs' processes, but the controller still lists them as running after the
#                next start: scancel them then.)
#
# Processes are found only through the PIDs that start.sh recorded (STATE_DIR/pids and the
# daemons' pid files), never by name, and each PID is checked in /proc first: it must have the
# expected name and carry STATE_DIR in its command line or this cluster's SLURM_CONF in its
# environment. STATE_DIR itself (config, logs, job state, database) is kept; remove it for a
# fresh start. Stopping a cluster that does not run is not an error.
set -euo pipefail

PROG=${0##*/}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
log() { printf '[%s %s] %s\n' "$PROG" "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

KEEP_JOBS=0
STATE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep-jobs) KEEP_JOBS=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "$PROG: unknown option '$1' (try --help)" >&2; exit 2 ;;
    *) [ -z "$STATE" ] || { echo "$PROG: only one STATE_DIR may be given" >&2; exit 2; }
       STATE=$1 ;;
  esac
  shift
done
[ -n "$STATE" ] || { echo "usage: $PROG [--keep-jobs] STATE_DIR   (--help for more)" >&2; exit 2; }
[ -d "$STATE" ] || die "no such directory: $STATE"
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "SLURM_LOCAL_TIMEOUT must be a number of seconds, not '$TIMEOUT'"
STATE=$(cd "$STATE" && pwd -P)
CONF=$STATE/etc/slurm.conf
PIDS=$STATE/pids
export SLURM_CONF=$CONF

# owned NAME PID: PID is a live (not zombie) process called NAME that belongs to this STATE_DIR
owned() {
  local name=$1 pid=$2 state
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] || return 1
  grep -qF -- "$STATE/" "/proc/$pid/cmdline" 2>/dev/null \
    || grep -qzxF -- "SLURM_CONF=$CONF" "/proc/$pid/environ" 2>/dev/null
}
pidfile_of() {
  case $1 in
    munged) echo "$STATE/munge/run/munged.pid" ;;
    mariadbd) echo "$STATE/run/mariadbd.pid" ;;
    *) echo "$STATE/run/$1.pid" ;;
  esac
}
# candidate PIDs for NAME: the one in STATE_DIR/pids and the one in the daemon's pid file
pids_of() {
  local name=$1 file
  [ ! -s "$PIDS" ] || awk -v n="$name" '$1 == n { print $2 }' "$PIDS"
  file=$(pidfile_of "$name")
  [ ! -s "$file" ] || tr -dc '0-9\n' <"$file"
  echo
}
running_pid() { # NAME -> the first candidate PID that is ours and alive
  local pid
  for pid in $(pids_of "$1" | sort -u); do
    if owned "$1" "$pid"; then echo "$pid"; return 0; fi
  done
  return 1
}

stop_daemon() { # NAME
  local name=$1 pid waited=0
  pid=$(running_pid "$name") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while owned "$name" "$pid"; do
    if [ "$waited" -ge $(( TIMEOUT * 10 )) ]; then
      log "$name (pid $pid) still runs ${TIMEOUT} s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      if owned "$name" "$pid"; then log "$name (pid $pid) survived SIGKILL"; return 1; fi
      return 0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log "stopped $name (pid $pid) in $((waited / 10)).$((waited % 10)) s"
}

# tree_of PID: PID and all its descendants (parents read from /proc/N/stat in one pass)
tree_of() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
    { pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " "); parent[pid] = f[2] }
    END {
      want[root] = 1; print root
      do { more = 0
           for (p in parent) if (!(p in want) && (parent[p] in want)) { want[p] = 1; print p; more = 1 }
      } while (more)
    }'
}
# Job steps that outlived slurmd: a slurmstepd of this cluster inherits its SLURM_CONF
# environment from our slurmd and keeps our slurmd.log open.
leftover_stepds() {
  local dir fd
  for dir in /proc/[0-9]*; do
    [ "$(cat "$dir/comm" 2>/dev/null)" = slurmstepd ] || continue
    if grep -qzxF -- "SLURM_CONF=$CONF" "$dir/environ" 2>/dev/null; then
      echo "${dir#/proc/}"
      continue
    fi
    for fd in "$dir"/fd/*; do
      case $(readlink "$fd" 2>/dev/null) in "$STATE"/*) echo "${dir#/proc/}"; break ;; esac
    done
  done
}

rc=0
if [ "$KEEP_JOBS" = 0 ] && running_pid slurmctld >/dev/null; then
  mapfile -t jobs < <(squeue -h -o %A 2>/dev/null | sort -u)
  if [ "${#jobs[@]}" -gt 0 ]; then
    log "cancelling jobs: ${jobs[*]}"
    scancel "${jobs[@]}" 2>/dev/null || true
    waited=0
    while [ -n "$(squeue -h -o %A 2>/dev/null)" ] && [ "$waited" -lt $(( TIMEOUT * 10 )) ]; do
      sleep 0.1; waited=$((waited + 1))
    done
    left=$(squeue -h -o '%A:%T' 2>/dev/null | tr '\n' ' ')
    [ -z "$left" ] || log "WARNING: jobs still in the queue after ${TIMEOUT} s: $left"
  fi
fi

for name in slurmd slurmctld slurmdbd mariadbd munged; do
  stop_daemon "$name" || rc=1
done

for pid in $(leftover_stepds); do
  if [ "$KEEP_JOBS" = 1 ]; then
    log "slurmstepd (pid $pid) keeps running its job (--keep-jobs)"
    continue
  fi
  mapfile -t victims < <(tree_of "$pid")
  log "killing a leftover job step: slurmstepd $pid and its processes (${victims[*]})"
  kill -KILL "${victims[@]}" 2>/dev/null || true
done

if [ "$rc" = 0 ]; then
  [ ! -e "$PIDS" ] || mv -f "$PIDS" "$PIDS.stopped"
  log "cluster in $STATE stopped"
else
  log "ERROR: some daemons of $STATE did not stop"
fi
exit "$rc"
