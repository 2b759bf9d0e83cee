#!/usr/bin/env bash
# start.sh - run a real, single-node Slurm cluster on this machine, for tests, CI and for trying
# the cluster workflow on a workstation. Debian 12 (slurm-wlm 22.05) as root; needs no systemd
# and no cgroups.
#
# usage: start.sh [--accounting] [--install] STATE_DIR
#
#   STATE_DIR     everything lives here: slurm.conf, munge key and socket, logs, pid files,
#                 slurmctld state, spool, the MariaDB data directory. Created if missing.
#   --accounting  also run MariaDB + slurmdbd so that `sacct` works (submitit's job states
#                 need it). Adds about 2.5 s to the start.
#   --install     install the missing Debian packages first (apt-get update + install
#                 --no-install-recommends slurm-wlm munge [slurmdbd mariadb-server]).
#                 Without it a missing package is an error that prints the command to run.
#
# Starting again with the same STATE_DIR is safe: daemons that already run for it are kept and
# only the missing ones are started. On success it writes
#   STATE_DIR/env.sh   `export SLURM_CONF=...`: source it before sbatch/squeue/sacct/submitit
#   STATE_DIR/pids     "NAME PID" per daemon, used by stop.sh
# and prints both paths. Stop with: stop.sh STATE_DIR
#
# environment (all optional):
#   SLURM_LOCAL_CPUS       CPUs the node offers (default: the real count). More than the real
#                          count oversubscribes, e.g. 4 one-CPU jobs at once on 2 cores.
#   SLURM_LOCAL_MEM_MB     node memory in MB (default: 90% of what `slurmd -C` finds)
#   SLURM_LOCAL_PORT_BASE  first of four TCP ports: slurmctld, slurmd, slurmdbd, MariaDB
#                          (default 6817, i.e. 6817-6820)
#   SLURM_LOCAL_TIMEOUT    seconds to wait for each daemon and for the node (default 60)
#   SLURM_LOCAL_CLUSTER    ClusterName (default: devcluster)
#   SLURM_LOCAL_PARTITION  name of the only partition, the default one (default: debug)
set -euo pipefail

PROG=${0##*/}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
log() { printf '[%s %s] %s\n' "$PROG" "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# ------------------------------------------------------------------ arguments
ACCOUNTING=0
INSTALL=0
STATE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --accounting) ACCOUNTING=1 ;;
    --install) INSTALL=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; [ $# -eq 1 ] || { usage >&2; exit 2; }; STATE=$1 ;;
    -*) echo "$PROG: unknown option '$1' (try --help)" >&2; exit 2 ;;
    *) [ -z "$STATE" ] || { echo "$PROG: only one STATE_DIR may be given" >&2; exit 2; }
       STATE=$1 ;;
  esac
  shift
done
[ -n "$STATE" ] || { echo "usage: $PROG [--accounting] [--install] STATE_DIR   (--help for more)" >&2; exit 2; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
PORT_BASE=${SLURM_LOCAL_PORT_BASE:-6817}
CLUSTER=${SLURM_LOCAL_CLUSTER:-devcluster}
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
is_uint "$TIMEOUT" || die "SLURM_LOCAL_TIMEOUT must be a number of seconds, not '$TIMEOUT'"
is_uint "$PORT_BASE" && [ "$PORT_BASE" -ge 1024 ] && [ "$PORT_BASE" -le 65532 ] \
  || die "SLURM_LOCAL_PORT_BASE must be a port between 1024 and 65532, not '$PORT_BASE'"
[ -z "${SLURM_LOCAL_CPUS:-}" ] || { is_uint "$SLURM_LOCAL_CPUS" && [ "$SLURM_LOCAL_CPUS" -gt 0 ]; } \
  || die "SLURM_LOCAL_CPUS must be a positive integer, not '$SLURM_LOCAL_CPUS'"
[ -z "${SLURM_LOCAL_MEM_MB:-}" ] || { is_uint "$SLURM_LOCAL_MEM_MB" && [ "$SLURM_LOCAL_MEM_MB" -gt 0 ]; } \
  || die "SLURM_LOCAL_MEM_MB must be a positive integer, not '$SLURM_LOCAL_MEM_MB'"
[[ "$CLUSTER" =~ ^[a-z][a-z0-9_]*$ ]] || die "SLURM_LOCAL_CLUSTER must be lower case letters, digits and _, not '$CLUSTER'"
PORT_CTLD=$PORT_BASE
PORT_SLURMD=$((PORT_BASE + 1))
PORT_DBD=$((PORT_BASE + 2))
PORT_DB=$((PORT_BASE + 3))

[ "$(id -u)" = 0 ] || die "run as root: slurmd must be root to start jobs, and this setup runs every daemon as root"

# ------------------------------------------------------------------ packages
commands=(munged mungekey munge unmunge slurmctld slurmd sinfo scontrol sbatch squeue scancel)
packages=(slurm-wlm munge)
if [ "$ACCOUNTING" = 1 ]; then
  commands+=(slurmdbd sacct sacctmgr mariadbd mariadb-install-db mariadb mariadb-admin)
  packages+=(slurmdbd mariadb-server)
fi
missing_commands() { local c; for c in "${commands[@]}"; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done; }
missing=$(missing_commands | tr '\n' ' ')
if [ -n "$missing" ]; then
  [ "$INSTALL" = 1 ] || die "missing commands: $missing
  install them with:  apt-get update && apt-get install -y --no-install-recommends ${packages[*]}
  or run this script with --install"
  command -v apt-get >/dev/null 2>&1 || die "missing commands: $missing, and there is no apt-get to install ${packages[*]}"
  log "installing ${packages[*]} (missing: $missing)"
  t=$(now)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
    || die "apt-get install ${packages[*]} failed"
  log "packages installed in $(elapsed "$t") s"
  missing=$(missing_commands | tr '\n' ' ')
  [ -z "$missing" ] || die "still missing after the install: $missing"
fi

# ------------------------------------------------------------------ state directory
case "$STATE" in *[[:space:]]*|*:*|*,*|*=*) die "STATE_DIR must not contain whitespace, ':', ',' or '=': '$STATE'" ;; esac
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd -P)
CONF=$STATE/etc/slurm.conf
DBDCONF=$STATE/etc/slurmdbd.conf       # slurmdbd reads it from the directory of $SLURM_CONF
MUNGE_KEY=$STATE/munge/etc/munge.key
MUNGE_SOCKET=$STATE/munge/run/munge.socket
DB_SOCKET=$STATE/db/mysqld.sock
DB_DATA=$STATE/db/data
PIDFILE_MUNGED=$STATE/munge/run/munged.pid
PIDFILE_DB=$STATE/run/mariadbd.pid
PIDFILE_DBD=$STATE/run/slurmdbd.pid
PIDFILE_CTLD=$STATE/run/slurmctld.pid
PIDFILE_SLURMD=$STATE/run/slurmd.pid
PIDS=$STATE/pids
[ "${#MUNGE_SOCKET}" -lt 100 ] && [ "${#DB_SOCKET}" -lt 100 ] \
  || die "STATE_DIR is too long: the unix socket $MUNGE_SOCKET must stay under 108 bytes; use a shorter path"
mkdir -p "$STATE"/etc "$STATE"/munge/etc "$STATE"/munge/run "$STATE"/ctld "$STATE"/spool "$STATE"/log "$STATE"/run
# munged wants a private key directory and a socket directory everyone may traverse
chmod 755 "$STATE" "$STATE/munge" "$STATE/munge/run"
chmod 700 "$STATE/munge/etc" "$STATE/ctld"
export SLURM_CONF=$CONF

HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null 2>&1 \
  || log "WARNING: the host name '$HOST' does not resolve (add '127.0.0.1 $HOST' to /etc/hosts); sbatch works, srun may not"

# owned_pid NAME PIDFILE: print the PID in PIDFILE if it is a live (not zombie) process called
# NAME that belongs to this STATE_DIR (STATE_DIR in its command line, or our SLURM_CONF in its
# environment). Anything else - a stale file, a recycled PID, another cluster - is not ours.
owned_pid() {
  local name=$1 file=$2 pid state
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] || return 1
  grep -qF -- "$STATE/" "/proc/$pid/cmdline" 2>/dev/null \
    || grep -qzxF -- "SLURM_CONF=$CONF" "/proc/$pid/environ" 2>/dev/null \
    || return 1
  echo "$pid"
}
# port_in_use PORT: something accepts connections on 127.0.0.1:PORT (no ss/netstat needed)
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# wait_until SECONDS WHAT COMMAND...: poll COMMAND every 0.1 s
wait_until() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then log "gave up after ${limit} s waiting for $what"; return 1; fi
    sleep 0.1
  done
}
last_lines() { tail -n "${2:-5}" "$1" 2>/dev/null | sed 's/^/    /' || true; }
# record the daemons running now, so that stop.sh can find them even if this script fails later
record_pids() {
  local name file pid tmp=$PIDS.tmp
  : >"$tmp"
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    case $name in
      munged) file=$PIDFILE_MUNGED ;; mariadbd) file=$PIDFILE_DB ;; slurmdbd) file=$PIDFILE_DBD ;;
      slurmctld) file=$PIDFILE_CTLD ;; slurmd) file=$PIDFILE_SLURMD ;;
    esac
    if pid=$(owned_pid "$name" "$file"); then echo "$name $pid" >>"$tmp"; fi
  done
  mv -f "$tmp" "$PIDS"
}
slurm_daemons_running() {
  owned_pid slurmctld "$PIDFILE_CTLD" >/dev/null || owned_pid slurmd "$PIDFILE_SLURMD" >/dev/null \
    || owned_pid slurmdbd "$PIDFILE_DBD" >/dev/null
}

# ------------------------------------------------------------------ slurm.conf
# `slurmd -C` prints e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24000"
hw=$(slurmd -C 2>/dev/null | head -n 1) || true
hw_field() { tr ' ' '\n' <<<"$hw" | sed -n "s/^$1=//p"; }
HW_CPUS=$(hw_field CPUs); HW_MEM=$(hw_field RealMemory)
is_uint "$HW_CPUS" && is_uint "$HW_MEM" || die "cannot read the hardware from 'slurmd -C' (got: '$hw')"
CPUS=${SLURM_LOCAL_CPUS:-$HW_CPUS}
MEM=${SLURM_LOCAL_MEM_MB:-$(( HW_MEM * 9 / 10 ))}
if [ "$CPUS" = "$HW_CPUS" ]; then
  # the full topology, else slurmd complains that socket/core boundaries differ from the hardware
  NODE_HW="CPUs=$CPUS Boards=$(hw_field Boards) SocketsPerBoard=$(hw_field SocketsPerBoard) CoresPerSocket=$(hw_field CoresPerSocket) ThreadsPerCore=$(hw_field ThreadsPerCore)"
else
  NODE_HW="CPUs=$CPUS"
fi
if [ "$CPUS" != "$HW_CPUS" ] || [ "$MEM" -gt "$HW_MEM" ]; then
  OVERRIDES="SlurmdParameters=config_overrides"      # the node offers what this file says, not what it has
else
  OVERRIDES="# SlurmdParameters: not needed, the node offers its real hardware"
fi
DEF_MEM=$(( MEM / CPUS )); [ "$DEF_MEM" -le 1024 ] || DEF_MEM=1024
[ "$DEF_MEM" -ge 1 ] || die "SLURM_LOCAL_MEM_MB=$MEM is too small for $CPUS CPUs"

if [ "$ACCOUNTING" = 1 ]; then
  ACCOUNTING_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$PORT_DBD
# The connection to slurmdbd ignores AuthInfo's socket and takes it from here; without this
# line it looks for /run/munge/munge.socket.2 ('Protocol authentication error').
AccountingStoragePass=$MUNGE_SOCKET"
else
  ACCOUNTING_LINES="AccountingStorageType=accounting_storage/none"
fi

new_conf=$CONF.new
cat >"$new_conf" <<EOF
# Written by slurm/dev-cluster/start.sh: a single-node development cluster.
# Edit start.sh instead of this file; stop the cluster before starting it with other settings.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_SLURMD
AuthType=auth/munge
CredType=cred/munge
# Our own munge socket. cred_expire=10 (default 120): a requeued job may start again after
# about 11 s instead of about 2 minutes.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$PIDFILE_CTLD
SlurmdPidFile=$PIDFILE_SLURMD
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: with proctrack/cgroup every job fails in slurmstepd on machines without a
# usable cgroup freezer, and the node drains. These three need no cgroup.conf.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
$ACCOUNTING_LINES
JobCompType=jobcomp/none
MpiDefault=none
# There is no mail system; the default MailProg makes slurmctld log an error.
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
# The defaults (batch_sched_delay=3, sched_interval=60, bf_interval=30) start array tasks 3 s
# apart and leave requeued jobs waiting for up to a minute.
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that gives no --mem takes the whole node and jobs run one at a time.
DefMemPerCPU=$DEF_MEM
# Reject at submission what the node can never run (else it stays PENDING forever).
EnforcePartLimits=ALL
JobRequeue=1
MaxArraySize=1001
MaxJobCount=10000
MinJobAge=300
KillWait=5
InactiveLimit=0
$OVERRIDES
NodeName=$HOST NodeAddr=127.0.0.1 $NODE_HW RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

if [ ! -f "$CONF" ]; then
  mv -f "$new_conf" "$CONF"
elif cmp -s "$CONF" "$new_conf"; then
  rm -f "$new_conf"
elif slurm_daemons_running; then
  diff -u "$CONF" "$new_conf" >&2 || true
  rm -f "$new_conf"
  die "the cluster in $STATE runs with a different slurm.conf (diff above); stop it first: $(dirname "$0")/stop.sh $STATE"
else
  log "slurm.conf changed; the previous one is kept as slurm.conf.old"
  mv -f "$CONF" "$CONF.old"
  mv -f "$new_conf" "$CONF"
fi

if [ "$ACCOUNTING" = 1 ]; then
  (
    umask 077     # slurmdbd refuses a slurmdbd.conf that others can read
    cat >"$DBDCONF.new" <<EOF
# Written by slurm/dev-cluster/start.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$PORT_DBD
SlurmUser=root
PidFile=$PIDFILE_DBD
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$PORT_DB
StorageUser=slurm
StoragePass=devcluster
StorageLoc=slurm_acct_db
EOF
  )
  chmod 600 "$DBDCONF.new"
  mv -f "$DBDCONF.new" "$DBDCONF"
fi

START=$(now)
# ------------------------------------------------------------------ munged
if [ ! -s "$MUNGE_KEY" ]; then
  mungekey --create --keyfile="$MUNGE_KEY" >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  chmod 400 "$MUNGE_KEY"
fi
if PID_MUNGED=$(owned_pid munged "$PIDFILE_MUNGED"); then
  log "munged already runs (pid $PID_MUNGED)"
else
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$PIDFILE_MUNGED"
  munged_args=(--key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$PIDFILE_MUNGED"
               --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/etc/munged.seed" --num-threads=4)
  if ! munged "${munged_args[@]}" </dev/null >>"$STATE/log/munged.out" 2>&1; then
    # munged refuses to run when a parent of STATE_DIR is group- or world-writable without the
    # sticky bit; --force turns that into a warning.
    grep -q insecure "$STATE/log/munged.log" 2>/dev/null \
      || die "munged did not start:$(printf '\n'; last_lines "$STATE/log/munged.log")"
    log "munged finds the permissions of a parent of $STATE insecure; starting it with --force"
    munged --force "${munged_args[@]}" </dev/null >>"$STATE/log/munged.out" 2>&1 \
      || die "munged did not start:$(printf '\n'; last_lines "$STATE/log/munged.log")"
  fi
  wait_until "$TIMEOUT" "munged" owned_pid munged "$PIDFILE_MUNGED" \
    || die "munged did not come up, see $STATE/log/munged.log"
  PID_MUNGED=$(owned_pid munged "$PIDFILE_MUNGED")
fi
record_pids
munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null \
  || die "munged runs but 'munge -n | unmunge' fails, see $STATE/log/munged.log"
log "munged ready (pid $PID_MUNGED) at +$(elapsed "$START") s"

# ------------------------------------------------------------------ MariaDB + slurmdbd
PID_DB=""
PID_DBD=""
if [ "$ACCOUNTING" = 1 ]; then
  mkdir -p "$STATE/db"
  if [ ! -d "$DB_DATA/mysql" ]; then
    rm -rf "$DB_DATA"
    mariadb-install-db --no-defaults --user=root --datadir="$DB_DATA" --auth-root-authentication-method=socket \
      --skip-test-db --innodb-log-file-size=16M >"$STATE/log/mariadb-install-db.log" 2>&1 \
      || die "mariadb-install-db failed, see $STATE/log/mariadb-install-db.log"
  fi
  if PID_DB=$(owned_pid mariadbd "$PIDFILE_DB"); then
    log "mariadbd already runs (pid $PID_DB)"
  else
    port_in_use "$PORT_DB" && die "port $PORT_DB (for MariaDB) is in use; choose other ports with SLURM_LOCAL_PORT_BASE"
    # mariadbd stays in the foreground: detach it into its own session
    setsid mariadbd --no-defaults --user=root --datadir="$DB_DATA" --socket="$DB_SOCKET" --pid-file="$PIDFILE_DB" \
      --port="$PORT_DB" --bind-address=127.0.0.1 --skip-name-resolve --log-error="$STATE/log/mariadbd.log" \
      --innodb-buffer-pool-size=64M --innodb-log-file-size=16M </dev/null >>"$STATE/log/mariadbd.out" 2>&1 &
    wait_until "$TIMEOUT" "mariadbd" mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping \
      || die "mariadbd did not come up:$(printf '\n'; last_lines "$STATE/log/mariadbd.log")"
    wait_until 10 "the mariadbd pid file" owned_pid mariadbd "$PIDFILE_DB" || die "mariadbd wrote no pid file"
    PID_DB=$(owned_pid mariadbd "$PIDFILE_DB")
  fi
  record_pids
  mariadb --no-defaults --socket="$DB_SOCKET" -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'devcluster';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;" \
    || die "cannot create the database user for slurmdbd"
  log "mariadbd ready (pid $PID_DB) at +$(elapsed "$START") s"

  if PID_DBD=$(owned_pid slurmdbd "$PIDFILE_DBD"); then
    log "slurmdbd already runs (pid $PID_DBD)"
  else
    port_in_use "$PORT_DBD" && die "port $PORT_DBD (for slurmdbd) is in use; choose other ports with SLURM_LOCAL_PORT_BASE"
    slurmdbd </dev/null >>"$STATE/log/slurmdbd.out" 2>&1 \
      || die "slurmdbd did not start:$(printf '\n'; last_lines "$STATE/log/slurmdbd.log")"
    wait_until "$TIMEOUT" "slurmdbd" owned_pid slurmdbd "$PIDFILE_DBD" \
      || die "slurmdbd did not come up:$(printf '\n'; last_lines "$STATE/log/slurmdbd.log")"
    PID_DBD=$(owned_pid slurmdbd "$PIDFILE_DBD")
  fi
  record_pids
  wait_until "$TIMEOUT" "slurmdbd to answer" sacctmgr -n -P list cluster \
    || die "slurmdbd does not answer:$(printf '\n'; last_lines "$STATE/log/slurmdbd.log")"
  # Register the cluster before slurmctld sends it jobs: a job that ends before the
  # registration is lost ("Table 'slurm_acct_db.<cluster>_job_table' doesn't exist").
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx -- "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
  fi
  log "slurmdbd ready (pid $PID_DBD) at +$(elapsed "$START") s"
fi

# ------------------------------------------------------------------ slurmctld
if PID_CTLD=$(owned_pid slurmctld "$PIDFILE_CTLD"); then
  log "slurmctld already runs (pid $PID_CTLD)"
else
  port_in_use "$PORT_CTLD" && die "port $PORT_CTLD (for slurmctld) is in use; choose other ports with SLURM_LOCAL_PORT_BASE"
  slurmctld -f "$CONF" </dev/null >>"$STATE/log/slurmctld.out" 2>&1 \
    || die "slurmctld did not start:$(printf '\n'; last_lines "$STATE/log/slurmctld.log")"
  wait_until "$TIMEOUT" "slurmctld" owned_pid slurmctld "$PIDFILE_CTLD" \
    || die "slurmctld did not come up:$(printf '\n'; last_lines "$STATE/log/slurmctld.log")"
  PID_CTLD=$(owned_pid slurmctld "$PIDFILE_CTLD")
fi
record_pids
controller_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
wait_until "$TIMEOUT" "slurmctld to answer" controller_up \
  || die "slurmctld does not answer:$(printf '\n'; last_lines "$STATE/log/slurmctld.log")"
log "slurmctld ready (pid $PID_CTLD) at +$(elapsed "$START") s"

# ------------------------------------------------------------------ slurmd
if PID_SLURMD=$(owned_pid slurmd "$PIDFILE_SLURMD"); then
  log "slurmd already runs (pid $PID_SLURMD)"
else
  port_in_use "$PORT_SLURMD" && die "port $PORT_SLURMD (for slurmd) is in use; choose other ports with SLURM_LOCAL_PORT_BASE"
  slurmd -f "$CONF" -N "$HOST" </dev/null >>"$STATE/log/slurmd.out" 2>&1 \
    || die "slurmd did not start:$(printf '\n'; last_lines "$STATE/log/slurmd.log")"
  wait_until "$TIMEOUT" "slurmd" owned_pid slurmd "$PIDFILE_SLURMD" \
    || die "slurmd did not come up:$(printf '\n'; last_lines "$STATE/log/slurmd.log")"
  PID_SLURMD=$(owned_pid slurmd "$PIDFILE_SLURMD")
fi
record_pids

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1; }
# idle on a fresh start; mixed/allocated/completing when started again while jobs run
node_ready() { case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac; }
if ! wait_until 10 "the node" node_ready; then
  state=$(node_state)
  case "$state" in
    *down*|*drain*|*fail*)
      log "node $HOST is '$state' ($(sinfo -h -N -n "$HOST" -o %E 2>/dev/null)); resuming it"
      scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  wait_until "$TIMEOUT" "node $HOST to become idle" node_ready \
    || die "node $HOST is '$(node_state)': $(sinfo -h -N -n "$HOST" -o %E 2>/dev/null); see $STATE/log/slurmd.log"
fi
UP=$(elapsed "$START")

printf 'export SLURM_CONF=%q\n' "$CONF" >"$STATE/env.sh.tmp"
mv -f "$STATE/env.sh.tmp" "$STATE/env.sh"
log "cluster '$CLUSTER' up: node $HOST $(node_state), $CPUS CPUs, $MEM MB, ports $PORT_CTLD-$PORT_DB, in $UP s"
queued=$(squeue -h -o %i 2>/dev/null | wc -l) || queued=0
[ "$queued" = 0 ] || log "note: $queued job(s) from an earlier run are in the queue (squeue; scancel them if they are stale)"
echo "STATE_DIR=$STATE"
echo "SLURM_CONF=$CONF"
sed 's/^/PID /' "$PIDS"
echo "next: source $STATE/env.sh    stop: $(dirname "$0")/stop.sh $STATE"
