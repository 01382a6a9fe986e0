#!/usr/bin/env bash
# A real one-node SLURM cluster on this host, for muscale's sweep tests and for trying the
# Hydra submitit launcher (hydra/launcher=slurm) without a cluster. See docs/slurm.md.
#
#   tools/slurm_local.sh install   # apt-get Debian's slurm-wlm + munge (idempotent, quiet)
#   tools/slurm_local.sh start     # munged + slurmctld + slurmd on localhost; waits for idle
#   tools/slurm_local.sh status    # exit 0 if the cluster answers, 3 if it is down
#   tools/slurm_local.sh stop      # stop the three daemons this script started
#   tools/slurm_local.sh env       # print `export SLURM_CONF=...` for your shell
#
# Everything (slurm.conf, munge key and socket, state, logs, pid files) lives under
# $MUSCALE_SLURM_DIR (default /tmp/muscale-slurm). There is no systemd here: the daemons
# are started directly and stopped by the pids in their pid files, never by name.
# Client commands find the cluster through SLURM_CONF=$MUSCALE_SLURM_DIR/slurm.conf; when
# run as root and /etc/slurm/slurm.conf is free, `start` also links it there so plain
# `sinfo`/`sbatch` work. Meant to run as root (slurmd must be able to become the job user).
#
# Environment: MUSCALE_SLURM_DIR (state dir), MUSCALE_SLURM_PORT (slurmctld port, slurmd
# uses the next one; default 6817), MUSCALE_SLURM_CPUS (advertise this many CPUs instead of
# the real count, to run more 1-CPU jobs at once on a small machine), MUSCALE_SLURM_WAIT
# (seconds `start` waits for the node, default 60), CI (=true: `install` fails loudly when
# it cannot install instead of warning).
set -euo pipefail

DIR=${MUSCALE_SLURM_DIR:-/tmp/muscale-slurm}
PORT=${MUSCALE_SLURM_PORT:-6817}
WAIT_S=${MUSCALE_SLURM_WAIT:-60}
CONF=$DIR/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
PARTITION=debug
export SLURM_CONF=$CONF
export PATH=$PATH:/usr/sbin:/sbin # the daemons live in sbin, often not on a user's PATH

log() { echo "slurm_local: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# pid from $DIR/run/$1.pid, if that process is alive and is the daemon $1 (a pid file left
# by a crash may name a pid reused by some other process: never signal that one)
live_pid() {
  local name=$1 f=$DIR/run/$1.pid pid comm
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || ps -o comm= -p "$pid" 2>/dev/null || true)
  [[ $comm == "$name"* ]] || return 1
  echo "$pid"
}

have_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v sinfo >/dev/null && command -v munged >/dev/null
}

cmd_install() {
  if have_slurm; then
    return 0
  fi
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    fi
  fi
  if ! command -v apt-get >/dev/null || [[ $(id -u) -ne 0 && -z $sudo ]]; then
    local why="needs apt-get (Debian/Ubuntu) as root or passwordless sudo"
    if [[ ${CI:-} == true ]]; then
      die "cannot install slurm-wlm and munge: $why"
    fi
    log "warning: slurm not installed ($why); tests marked slurm will be skipped"
    return 0
  fi
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  local out
  if ! out=$($sudo apt-get update -qq 2>&1 \
    && $sudo apt-get install -y -qq --no-install-recommends slurm-wlm munge 2>&1); then
    echo "$out" >&2
    die "apt-get install slurm-wlm munge failed"
  fi
  have_slurm || die "apt-get finished but slurmctld/slurmd/sinfo/munged are not on PATH"
}

# The NodeName line for this host: slurmd -C reports what slurmd will check the config
# against (a config with more CPUs or memory than found drains the node). Memory is
# trimmed to 90% so jobs cannot book the whole machine.
node_line() {
  local host=$1 line mem
  line=$(slurmd -C 2>/dev/null | head -n 1)
  [[ $line == NodeName=* ]] || die "slurmd -C did not describe this host: $line"
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$line")
  mem=$((mem * 9 / 10))
  line=$(sed "s/RealMemory=[0-9]*/RealMemory=$mem/; s/^NodeName=[^ ]*/NodeName=$host/" <<<"$line")
  if [[ -n ${MUSCALE_SLURM_CPUS:-} ]]; then
    [[ $MUSCALE_SLURM_CPUS =~ ^[1-9][0-9]*$ ]] \
      || die "MUSCALE_SLURM_CPUS=$MUSCALE_SLURM_CPUS: give a positive integer"
    line="NodeName=$host CPUs=$MUSCALE_SLURM_CPUS RealMemory=$mem"
  fi
  echo "$line NodeAddr=127.0.0.1 NodeHostname=$host State=UNKNOWN"
}

# Write the config for this host to $1 (the live one is $CONF).
write_conf() {
  local out=$1 host=$2 node cpus mem user
  node=$(node_line "$host")
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  user=$(id -un)
  cat >"$out" <<EOF
# Written by tools/slurm_local.sh for $host: a one-node test cluster. Do not edit; rerun
# \`tools/slurm_local.sh start\` (it rewrites this file) instead.
ClusterName=muscale
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again
# (default 120 s; 10 s keeps the preemption tests short)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$DIR/plugstack.conf
# no cgroups, no systemd: track job processes by parent pid, launch tasks plainly
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# CPU cores and memory are the consumable resources; a job that asks for no memory gets
# its cores' share, so several jobs share the node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
$( [[ -n ${MUSCALE_SLURM_CPUS:-} ]] && echo "SlurmdParameters=config_overrides" )
# a node that was down comes back when its slurmd registers; short timeouts for tests
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=300
# submitit's preemption handling: a requeued job keeps its id and reruns its batch script
JobRequeue=1
$node
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if live_pid munged >/dev/null; then
    return 0
  fi
  mkdir -p "$DIR/munge"
  chmod 700 "$DIR/munge"
  if [[ ! -s $DIR/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null
    else
      dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$DIR/munge/munge.key"
  fi
  rm -f "$DIR/munge/munge.socket" "$DIR/munge/munge.socket.lock"
  # --force: the state dir may sit in a world-writable /tmp, which munged would refuse
  munged --force \
    --socket="$DIR/munge/munge.socket" \
    --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/run/munged.pid" \
    --seed-file="$DIR/munge/munged.seed" \
    --log-file="$DIR/log/munged.log" 2>>"$DIR/log/munged.log" \
    || die "munged did not start; see $DIR/log/munged.log"
}

node_state() {
  sinfo -h -N -p "$PARTITION" -o %t 2>/dev/null | head -n 1 || true
}

# Is the node ready for jobs? idle/mix/alloc with no flag (`idle*` = slurmd not answering).
node_ready() {
  [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]
}

link_etc_conf() {
  [[ $(id -u) -eq 0 && -d /etc/slurm ]] || return 0
  if [[ -L $ETC_CONF || ! -e $ETC_CONF ]]; then
    ln -sfn "$CONF" "$ETC_CONF"
  fi
}

cmd_start() {
  have_slurm || die "slurm is not installed; run: tools/slurm_local.sh install"
  [[ $(id -u) -eq 0 ]] || log "warning: not root; slurmd usually needs root to run jobs"
  local host
  host=$(hostname -s)
  mkdir -p "$DIR"/{ctld,spool,run,log}
  chmod 755 "$DIR" "$DIR"/{ctld,spool,run,log}
  write_conf "$CONF.new" "$host"
  if live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null \
    && cmp -s "$CONF.new" "$CONF" && node_ready; then
    rm -f "$CONF.new"
    link_etc_conf
    return 0 # already up with this config
  fi
  # not up, half up (a daemon died) or configured differently: (re)start the slurm daemons
  stop_daemons slurmd slurmctld
  mv "$CONF.new" "$CONF"
  : >"$DIR/plugstack.conf"
  start_munge
  slurmctld -f "$CONF" 2>>"$DIR/log/slurmctld.log" \
    || die "slurmctld did not start; see $DIR/log/slurmctld.log"
  slurmd -f "$CONF" -N "$host" 2>>"$DIR/log/slurmd.log" \
    || die "slurmd did not start; see $DIR/log/slurmd.log"
  local t0=$SECONDS
  until node_ready; do
    if ((SECONDS - t0 > WAIT_S)); then
      log "node not ready after ${WAIT_S}s (state: '$(node_state)')"
      sinfo -R 2>&1 | sed 's/^/  /' >&2 || true
      tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
      die "cluster did not come up"
    fi
    # a node registered before slurmctld saw it as down needs a nudge back to service
    if [[ $(node_state) =~ ^(down|drain) ]]; then
      scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.5
  done
  link_etc_conf
  log "up: $(sinfo -h -N -o '%N %t cpus=%c mem=%mMB')  (export SLURM_CONF=$CONF)"
}

# Stop the named daemons (ours: by their pid files), together, waiting up to 10 s.
stop_daemons() {
  local name pid pids=()
  for name in "$@"; do
    if pid=$(live_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$DIR/run/$name.pid"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cmd_stop() {
  stop_daemons slurmd slurmctld
  stop_daemons munged
  if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
    rm -f "$ETC_CONF"
  fi
}

cmd_status() {
  local name pid up=0
  for name in munged slurmctld slurmd; do
    if pid=$(live_pid "$name"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: stopped"
      up=3
    fi
  done
  if [[ $up -eq 0 ]]; then
    sinfo -N -o '%N %P %t %c %m' || up=3
  fi
  echo "SLURM_CONF=$CONF"
  return $up
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *)
    echo "usage: $0 install|start|stop|status|env  (state in \$MUSCALE_SLURM_DIR, default $DIR)" >&2
    exit 2
    ;;
esac
