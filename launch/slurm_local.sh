#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (localhost), for the tests and for trying the
# study scripts' --slurm and launch/slurm.sbatch before a real cluster:
#
#   bash launch/slurm_local.sh up       # install (Debian/Ubuntu), configure, start, wait
#   bash launch/slurm_local.sh status   # sinfo and squeue
#   bash launch/slurm_local.sh env      # the line that points SLURM's commands here
#   bash launch/slurm_local.sh down     # cancel every job, stop every daemon, remove all
#
# `up` needs root: it installs the Debian packages slurm-wlm and munge when sbatch,
# slurmctld, slurmd or munged is missing (apt-get), writes a munge key and a minimal
# slurm.conf into the state folder (one node named localhost with this machine's CPUs
# and memory from `slurmd -C`, one partition `local`, no cgroups: proctrack/linuxproc,
# task/none), starts munged, slurmctld and slurmd on that folder, and waits until sinfo
# shows the node idle. Jobs run as the user who submits them. A second `up` finds the
# cluster running and does nothing.
#
# Nothing is written outside the state folder ($KMNIST_JAX_SLURM_DIR, default
# /tmp/kmnist_jax_slurm) except /etc/slurm/slurm.conf: a link to the folder's
# slurm.conf when that path is free, so that sbatch, srun and squeue find the cluster
# without $SLURM_CONF (when a slurm.conf is there already it is left alone: export
# SLURM_CONF as `env` prints). `down` removes the link and the folder.
#
# Environment: KMNIST_JAX_SLURM_DIR (state folder), KMNIST_JAX_SLURM_PORT (slurmctld's
# port, default 6817; slurmd uses the next one).
set -euo pipefail

DIR="${KMNIST_JAX_SLURM_DIR:-/tmp/kmnist_jax_slurm}"
PORT="${KMNIST_JAX_SLURM_PORT:-6817}"
CONF="$DIR/slurm.conf"
ETC=/etc/slurm/slurm.conf
NODE=localhost
export SLURM_CONF="$CONF"

die() { echo "error: $*" >&2; exit 2; }
say() { echo "slurm_local: $*" >&2; }

alive() {   # alive PIDFILE: the process in it runs
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

idle() {    # the node is up and takes jobs
  sinfo -h -n "$NODE" -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'
}

running() {
  [[ -f "$CONF" ]] && alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" \
    && alive "$DIR/run/munged.pid"
}

install() {
  local missing=0 tool
  for tool in sbatch srun squeue scancel scontrol slurmctld slurmd munged; do
    command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null \
      || missing=1
  done
  ((missing)) || return 0
  command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get \
here; install slurm-wlm (slurmctld, slurmd, the client commands) and munge, then run \
this again"
  say "installing slurm-wlm and munge (apt-get)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
}

write_conf() {
  local node cpus mem
  node="$(slurmd -C | head -n1)"
  [[ "$node" =~ CPUs=([0-9]+) ]] && cpus="${BASH_REMATCH[1]}" || cpus="$(nproc)"
  [[ "$node" =~ RealMemory=([0-9]+) ]] && mem="${BASH_REMATCH[1]}" || mem=1024
  cat > "$CONF" <<EOF
# Written by launch/slurm_local.sh: a one-node cluster on this machine.
ClusterName=kmnistjax
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again after cred_expire seconds (SLURM's default: 120).
AuthInfo=socket=$DIR/run/munge.socket,cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Pending jobs (a requeued one, an array task freed by a finished one) start within
# seconds, not at the next minute's scheduling pass.
SchedulerParameters=sched_interval=1,bf_interval=1
ReturnToService=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
  [[ "$(id -u)" == 0 ]] || die "launch/slurm_local.sh up needs root (it installs packages \
and starts munged, slurmctld and slurmd as root); run it with sudo"
  export PATH="$PATH:/usr/sbin:/sbin"
  if running && idle; then
    say "already up (state in $DIR); $(sinfo -h -o '%P %D %T' | head -n1)"
    link
    return 0
  fi
  install
  stop_daemons
  rm -rf "$DIR/state" "$DIR/spool" "$DIR/log"    # a fresh cluster: no jobs from before
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  mkdir -p -m 700 "$DIR/munge" "$DIR/state" "$DIR/spool"
  mkdir -p -m 755 "$DIR/run" "$DIR/log"
  if [[ ! -s "$DIR/munge/munge.key" ]]; then
    head -c 1024 /dev/urandom > "$DIR/munge/munge.key"
    chmod 600 "$DIR/munge/munge.key"
  fi
  write_conf
  munged --key-file="$DIR/munge/munge.key" --socket="$DIR/run/munge.socket" \
    --pid-file="$DIR/run/munged.pid" --seed-file="$DIR/munge/munged.seed" \
    --log-file="$DIR/log/munged.log" \
    || die "munged did not start: $(tail -n1 "$DIR/log/munged.log" 2>/dev/null)"
  slurmctld -f "$CONF" -i \
    || die "slurmctld did not start: $(tail -n1 "$DIR/log/slurmctld.log" 2>/dev/null)"
  slurmd -f "$CONF" -N "$NODE" \
    || die "slurmd did not start: $(tail -n1 "$DIR/log/slurmd.log" 2>/dev/null)"
  local i
  for ((i = 0; i < 120; i++)); do
    idle && break
    sleep 0.5
  done
  idle || die "the node did not come up within 60 s: $(sinfo -h -N -o '%N %T %E' 2>&1 \
| head -n1); logs in $DIR/log"
  link
  say "up: $(sinfo -h -o '%P %D %c %T' | head -n1) (partition, nodes, CPUs, state); \
state in $DIR"
}

link() {    # sbatch & co. find the cluster without $SLURM_CONF when /etc/slurm is free
  if [[ -L "$ETC" && "$(readlink "$ETC")" == "$CONF" ]]; then
    return 0
  fi
  if [[ ! -e "$ETC" && ! -L "$ETC" ]]; then
    mkdir -p "$(dirname "$ETC")"
    ln -s "$CONF" "$ETC"
  else
    say "$ETC exists and is not this cluster's: run \`export SLURM_CONF=$CONF\` first"
  fi
}

stop_pid() {  # stop_pid PIDFILE NAME: TERM, then KILL after 15 s
  local f="$1" pid i
  alive "$f" || { rm -f "$f"; return 0; }
  pid="$(cat "$f")"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$2 (pid $pid) ignored SIGTERM; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_daemons() {
  [[ -d "$DIR/run" ]] || return 0
  stop_pid "$DIR/run/slurmd.pid" slurmd
  stop_pid "$DIR/run/slurmctld.pid" slurmctld
  stop_pid "$DIR/run/munged.pid" munged
}

down() {
  export PATH="$PATH:/usr/sbin:/sbin"
  if [[ -d "$DIR" ]] && alive "$DIR/run/slurmctld.pid" 2>/dev/null; then
    # Every job ends first: its slurmstepd and processes go with it.
    local ids i
    ids="$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
    if [[ -n "${ids// /}" ]]; then
      # shellcheck disable=SC2086
      scancel --full --signal=KILL $ids 2>/dev/null || true
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      for ((i = 0; i < 60; i++)); do
        [[ -z "$(squeue -h -o %A 2>/dev/null)" ]] && break
        sleep 0.5
      done
    fi
  fi
  stop_daemons
  if [[ -L "$ETC" && "$(readlink "$ETC")" == "$CONF" ]]; then
    rm -f "$ETC"
  fi
  rm -rf "$DIR"
  say "down (no daemons; $DIR removed)"
}

status() {
  running || { echo "slurm_local: not running (state folder $DIR)"; return 1; }
  sinfo
  squeue
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '${1:-}'; valid: up, down, status, env" ;;
esac
