#!/usr/bin/env bash
# A private single-node Slurm cluster on this machine (munged, slurmctld, slurmd), to try the job scripts and
# for tests/scale_test.ts. Needs Debian's `slurm-wlm` and `munge`. Everything lives in one folder: its own
# slurm.conf, munge key and socket, free ports, state, spool and logs; it touches no system configuration.
#
#   eval "$(scale/slurm/cluster.sh start)"      # prints SLURM_CONF and SLURM_CLUSTER_DIR; the node is idle
#   EXPERIMENT=table1 EXPERIMENT_FLAGS="--preset smoke" scale/slurm/submit.sh 2 --wait
#   scale/slurm/cluster.sh stop "$SLURM_CLUSTER_DIR"
#
# start [DIR]: DIR (default: a new folder under ${TMPDIR:-/tmp}) holds everything; prints `export` lines.
# stop DIR:    cancels its jobs, stops the daemons by their PID files (SIGTERM, then SIGKILL after a few seconds).
# As root, munged runs as the `munge` user and the Slurm daemons as root; as an ordinary user, all run as that user.
# SLURM_CLUSTER_PORT sets slurmctld's port (slurmd gets the next one); by default two free ports are picked.
set -euo pipefail
# The daemons live in sbin, which an ordinary user's PATH may lack.
export PATH=$PATH:/usr/sbin:/sbin

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

need() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (apt-get install slurm-wlm munge)"
  done
}

# True when no TCP socket of this machine uses port $1 (listening, connected or closing: /proc/net/tcp{,6}).
port_free() {
  local hex
  hex=$(printf '%04X' "$1")
  ! awk 'NR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -qx "$hex"
}

# Two free consecutive ports for slurmctld and slurmd, below the kernel's range of ephemeral ports (which outgoing
# connections take without listening, so a port free now may be taken a moment later).
pick_port() {
  local low p tries
  low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 12000 ] || low=61000
  for tries in $(seq 1 50); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10002)))
    if port_free "$p" && port_free $((p + 1)); then
      echo "$p"
      return 0
    fi
  done
  die "no two free ports found after $tries tries; set SLURM_CLUSTER_PORT"
}

# Stops the process whose PID is in file $1 if its command name is $2: SIGTERM, then SIGKILL after $3 tenths of a
# second (slurmd may ignore SIGTERM for seconds).
stop_pidfile() {
  local file=$1 name=$2 tenths=${3:-50} pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  # Not a recycled PID: only the daemon this cluster started.
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 "$tenths"); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "cluster.sh: $name ($pid) still runs after SIGTERM; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

# Stops what a failed start left running in folder $1, then dies with message $2.
fail() {
  stop_daemons "$1"
  die "$2"
}

# Stops the daemons of the cluster in folder $1 by their PID files.
stop_daemons() {
  stop_pidfile "$1/slurmd.pid" slurmd
  stop_pidfile "$1/slurmctld.pid" slurmctld
  stop_pidfile "$1/munge/munged.pid" munged
}

start() {
  need munged munge unmunge slurmctld slurmd sinfo scontrol
  local dir=${1:-}
  if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/slurm-cluster.XXXXXX")
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -e "$dir/slurm.conf" ] || die "$dir already holds a cluster; stop it, or give another folder"
  # munged runs as another user when we are root: it must reach its own folder.
  chmod 755 "$dir"
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool"

  local user host cpus mem port as=()
  user=$(id -un)
  host=$(hostname -s)
  cpus=$(nproc)
  # Half the available memory, in MB: the node must not claim more than it has, or slurmd marks it invalid.
  mem=$(awk '/^MemAvailable:/ { print int($2 / 1024 / 2) }' /proc/meminfo)
  port=${SLURM_CLUSTER_PORT:-$(pick_port)}

  # munge: a fresh key of our own (mode 0400, owned by the user munged runs as) and a private socket.
  local m=$dir/munge
  (umask 077 && head -c 1024 /dev/urandom >"$m/munge.key")
  # munged wants its socket folder open to all for execute (clients connect), and its key private.
  chmod 711 "$m"
  chmod 400 "$m/munge.key"
  if [ "$(id -u)" -eq 0 ]; then
    id munge >/dev/null 2>&1 || die "no munge user (apt-get install munge)"
    chown -R munge: "$m"
    as=(runuser -u munge --)
  fi
  "${as[@]}" munged --socket="$m/munge.socket" --key-file="$m/munge.key" --pid-file="$m/munged.pid" \
    --log-file="$m/munged.log" --seed-file="$m/munged.seed" ||
    die "munged did not start; see $m/munged.log"
  munge -n -S "$m/munge.socket" | unmunge -S "$m/munge.socket" >/dev/null ||
    fail "$dir" "munge does not answer on $m/munge.socket; see $m/munged.log"

  : >"$dir/plugstack.conf"
  export SLURM_CONF=$dir/slurm.conf
  # A port taken between the check and the daemon's bind costs another try with other ports.
  local attempt
  for attempt in 1 2 3; do
    slurm_up "$dir" "$user" "$host" "$cpus" "$mem" "$port" && break
    stop_pidfile "$dir/slurmd.pid" slurmd
    stop_pidfile "$dir/slurmctld.pid" slurmctld
    echo "cluster.sh: the node did not come up (try $attempt of 3); the logs' ends:" >&2
    tail -n 3 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    if [ "$attempt" -eq 3 ] || [ -n "${SLURM_CLUSTER_PORT:-}" ]; then
      fail "$dir" "the cluster did not come up; see the logs in $dir"
    fi
    port=$(pick_port)
    for f in slurmctld slurmd; do
      if [ -f "$dir/$f.log" ]; then mv "$dir/$f.log" "$dir/$f.log.$attempt"; fi
    done
    rm -rf "$dir/state" "$dir/spool"
    mkdir -p "$dir/state" "$dir/spool"
  done
  echo "cluster.sh: node $host idle ($cpus CPUs, ports $port-$((port + 1))) in $dir" >&2
  echo "export SLURM_CONF=$dir/slurm.conf"
  echo "export SLURM_CLUSTER_DIR=$dir"
}

# Writes slurm.conf in folder $1 (daemons as user $2; node $3 with $4 CPUs and $5 MB; ports $6 and $6 + 1), starts
# slurmctld and slurmd, and waits until the node is idle (usually within a second). Fails when a daemon cannot
# start or bind its port, or the node is not idle after 30 s.
slurm_up() {
  local dir=$1 user=$2 host=$3 cpus=$4 mem=$5 port=$6
  cat >"$dir/slurm.conf" <<EOF
# A private single-node cluster made by scale/slurm/cluster.sh.
ClusterName=scale
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
PlugStackConfig=$dir/plugstack.conf
# Without select/cons_tres and CR_Core, the tasks of an array would run one at a time.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  slurmctld -f "$dir/slurm.conf" || return 1
  slurmd -f "$dir/slurm.conf" -N "$host" || return 1
  local state=""
  for _ in $(seq 1 300); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    [ "$state" = "idle" ] && return 0
    # A daemon that could not bind its port keeps running but never serves.
    grep -qs "Address already in use" "$dir/slurmctld.log" "$dir/slurmd.log" && return 1
    sleep 0.1
  done
  echo "cluster.sh: the node is not idle after 30 s (state: ${state:-none})" >&2
  return 1
}

stop() {
  local dir=${1:-}
  [ -n "$dir" ] || die "stop: give the cluster's folder"
  [ -f "$dir/slurm.conf" ] || [ -d "$dir/munge" ] || die "stop: no cluster in $dir"
  export SLURM_CONF=$dir/slurm.conf
  # Jobs first, so that no slurmstepd outlives its slurmd.
  if [ -s "$dir/slurmctld.pid" ] && command -v scancel >/dev/null 2>&1; then
    timeout 5 scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 50); do
      [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null || true)" ] && break
      sleep 0.1
    done
  fi
  stop_daemons "$dir"
  echo "cluster.sh: stopped the cluster in $dir" >&2
}

case "${1:-}" in
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
*)
  echo "usage: $0 start [DIR] | stop DIR" >&2
  exit 2
  ;;
esac
