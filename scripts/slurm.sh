#!/usr/bin/env bash
# Start (or stop) a throwaway one-node Slurm cluster (munged, slurmctld, slurmd) on 127.0.0.1
# for the tests, everything under DIR (nothing in /etc or /run). Needs root.
#   eval "$(scripts/slurm.sh start DIR)"   prints TERRARIUM_TEST_SLURM_CONF=DIR/slurm.conf
#   scripts/slurm.sh stop DIR
# SLURMD_TIMEOUT (seconds before a silent node is down, default 300) and JOB_REQUEUE (default 1)
# let a test make a node failure quick and final.
set -euo pipefail
action="$1"
dir="$2"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}

case "$action" in
start)
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "installing slurm-wlm and munge from Debian" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >&2
    fi
    [ -d "$dir" ] && stop || true
    rm -rf "$dir"
    mkdir -p "$dir"/{munge,state,spool,log}
    chmod 755 "$dir/munge"
    mungekey --create --keyfile="$dir/munge/munge.key" >&2
    chmod 600 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" >&2
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    cpus=$(nproc)
    cat > "$dir/slurm.conf" <<CONF
ClusterName=terrarium
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CryptoType=crypto/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdTimeout=${SLURMD_TIMEOUT:-300}
JobRequeue=${JOB_REQUEUE:-1}
MinJobAge=3600
MailProg=/bin/true
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=2048 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" >&2
    slurmd -N localhost -f "$SLURM_CONF" >&2
    for _ in $(seq 200); do
        [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break
        sleep 0.1
    done
    if [ "$(sinfo -h -o %T 2>/dev/null)" != idle ]; then
        echo "slurm did not come up; see $dir/log" >&2
        exit 1
    fi
    echo "export TERRARIUM_TEST_SLURM_CONF=$dir/slurm.conf"
    ;;
stop)
    stop
    rm -rf "$dir"
    ;;
esac
