#!/usr/bin/env bash
# A private single-node Slurm cluster on this machine, for trying the Slurm pipelines and
# for `make test-slurm`:
#
#   bash scripts/slurm-local.sh start DIR   # then: export SLURM_CONF=DIR/slurm.conf
#   bash scripts/slurm-local.sh stop DIR
#
# `start` installs Debian's slurm-wlm and munge when missing, writes a munge key and a
# slurm.conf under DIR (one node named after `hostname -s` with all its CPUs, one partition,
# no cgroups, no accounting, free ports), starts munged, slurmctld and slurmd with their
# sockets, state, logs and pid files under DIR, and waits until the node is idle. Nothing
# outside DIR is touched, so it runs beside a system Slurm or another such cluster. `stop`
# cancels the cluster's jobs and stops exactly the daemons it started (by their pid files).
# slurmd needs root: run as root (or through sudo).
set -euo pipefail

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SLURM_CONF=$dir/slurm.conf

log() { echo "slurm-local: $*" >&2; }

# A TCP port nobody listens on (from the kernel's ephemeral range: bind to port 0).
free_port() {
    local py
    py=$(command -v python3 || command -v "${REMIND_PYTHON:-}" || true)
    [ -n "$py" ] || { log "python3 is needed to find free ports"; exit 1; }
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Kills the process of pid file $1 (if it is still running) and waits for it to end.
stop_pidfile() {
    local file=$1 pid i
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

start() {
    if [ "$(id -u)" -ne 0 ]; then
        log "slurmd must run as root: run this as root (e.g. through sudo)"
        exit 1
    fi
    bash "$here/setup-system.sh" slurm-wlm munge
    if [ -s "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        log "a cluster already runs from $dir"
        exit 1
    fi
    local host cpus node ctld_port d_port i
    host=$(hostname -s)
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
    chmod 700 "$dir" "$dir/munge"

    # munge: its own key, socket and pid file.
    if [ ! -s "$dir/munge/munge.key" ]; then
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$dir/munge/munge.key"
    fi
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"

    # The node as slurmd sees it (CPUs, sockets, cores, memory), reachable on 127.0.0.1.
    node=$(slurmd -C | head -n 1)
    [[ $node == NodeName=$host\ * ]] || { log "unexpected 'slurmd -C' output: $node"; exit 1; }
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    ctld_port=$(free_port)
    d_port=$(free_port)
    while [ "$d_port" = "$ctld_port" ]; do d_port=$(free_port); done
    : >"$dir/plugstack.conf"
    cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: a single-node cluster private to $dir.
ClusterName=remind-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
PlugStackConfig=$dir/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# Finished jobs stay visible to scontrol for an hour; cancelled tasks are killed 5 s after
# their SIGTERM.
MinJobAge=3600
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    slurmctld -c -f "$dir/slurm.conf"
    slurmd -f "$dir/slurm.conf"
    for ((i = 0; i < 300; i++)); do
        if [ "$(sinfo -h -n "$host" -o %T 2>/dev/null)" = idle ]; then
            log "cluster up: node $host ($cpus CPUs), partition local; export SLURM_CONF=$dir/slurm.conf"
            return 0
        fi
        sleep 0.2
    done
    log "the node did not become idle; logs in $dir/log"
    sinfo -N -l >&2 || true
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
}

stop() {
    local i
    if [ -s "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        # Jobs first: their steps (slurmstepd) would outlive slurmd.
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    stop_pidfile "$dir/munge/munged.pid"
    log "stopped the cluster of $dir"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
