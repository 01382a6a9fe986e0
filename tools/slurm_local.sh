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

log() { echo "slurm_local: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# pid from a pid file, if that process is alive
live_pid() {
  local f=$1 pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
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

write_conf() {
  local host=$1 node cpus mem user
  node=$(node_line "$host")
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  user=$(id -un)
  local tmp=$CONF.tmp
  cat >"$tmp" <<EOF
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
AuthInfo=socket=$DIR/munge/munge.socket
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
  mv "$tmp" "$CONF"
  : >"$DIR/plugstack.conf"
}

start_munge() {
  if live_pid "$DIR/run/munged.pid" >/dev/null; then
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

# Is the node ready for jobs? idle/mix/alloc (with or without a trailing flag char).
node_ready() {
  local s
  s=$(node_state)
  [[ $s =~ ^(idle|mix|alloc|comp) ]]
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
  if live_pid "$DIR/run/slurmctld.pid" >/dev/null && live_pid "$DIR/run/slurmd.pid" >/dev/null \
    && node_ready; then
    link_etc_conf
    return 0 # already up
  fi
  local host
  host=$(hostname -s)
  mkdir -p "$DIR"/{ctld,spool,run,log}
  chmod 755 "$DIR" "$DIR"/{ctld,spool,run,log}
  # a half-started cluster (one daemon died): restart the slurm daemons with the new conf
  stop_pidfile slurmd
  stop_pidfile slurmctld
  write_conf "$host"
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

# Stop the daemon whose pid file is $DIR/run/$1.pid (ours only), waiting up to 10 s.
stop_pidfile() {
  local name=$1 pid i
  pid=$(live_pid "$DIR/run/$name.pid") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name ($pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/run/$name.pid"
}

cmd_stop() {
  stop_pidfile slurmd
  stop_pidfile slurmctld
  stop_pidfile munged
  if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
    rm -f "$ETC_CONF"
  fi
}

cmd_status() {
  local name pid up=0
  for name in munged slurmctld slurmd; do
    if pid=$(live_pid "$DIR/run/$name.pid"); then
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
