#!/usr/bin/env bash
# Start (or stop) a throwaway cluster of two nodes on this one machine, for the multi-node
# tests (crates/terrarium/tests/multinode.rs). Needs root.
#
# Each node is a process holding its own network, mount and UTS namespaces: its own hostname
# (node0, node1), its own address on a private bridge (10.231.0.10, .11), and its own node-local
# cache at /var/tmp/terrarium-node-cache-0 (the default node_cache for root), a bind of
# DIR/nodes/NODE/cache that the other node cannot see. The bridge lives in a third namespace
# (the hub); this machine joins it as the submitting host, 10.231.0.1 on interface `trm-login`,
# as a login node would. Everything else (DIR, the tests' workspaces and caches, run logs) is
# one filesystem every node sees, as a cluster's NFS would be.
#
# The engines run inside the nodes, bound to their node's address:
#   slurm  munged, slurmctld and slurmd on node0, slurmd on node1
#   ray    the head on node0, a worker on node1 (and the wheels of its `ray`, for environments)
#   spark  the master and a worker on node0, a worker on node1 (a driver runs on this machine,
#          at 10.231.0.1: give it SPARK_LOCAL_IP=10.231.0.1)
# NODES_ENGINES picks them (default: all three).
#
#   eval "$(scripts/nodes.sh start DIR)"   prints the TERRARIUM_TEST_NODES_* variables
#   scripts/nodes.sh stop DIR               stops every process, and with them the namespaces,
#                                           the bridge and the mounts; safe to run twice
#   scripts/nodes.sh kill DIR ENGINE NODE   one node's daemon dies (SIGKILL), as in a crash:
#                                           slurm: its slurmd alone (a job's steps live on);
#                                           ray: the worker node's raylet alone (the rest of
#                                           that Ray node follows it); spark: its worker, with
#                                           its executors
#   scripts/nodes.sh revive DIR ENGINE NODE starts that daemon again and waits until the
#                                           engine has both nodes back
#
# Processes are stopped by their pid files only, never by name. When the node and hub
# processes end, the kernel removes their namespaces, the veth pairs, the bridge and the
# nodes' mounts itself, so nothing outlives them.
set -euo pipefail
action="$1"
dir="$2"

subnet=10.231.0
login_ip=$subnet.1
login_if=trm-login
nodes=(node0 node1)
node_cache=/var/tmp/terrarium-node-cache-0
engines="${NODES_ENGINES:-slurm ray spark}"
cache="${TERRARIUM_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/terrarium-test-tools}"
ray_version=2.60.0
ray_venv="$cache/ray-$ray_version"
ray_wheels="$cache/ray-wheels-$ray_version"
spark_wheels="${TERRARIUM_TEST_SPARK_WHEELS:-$cache/spark-wheels-4.0.1}"
spark_venv="$cache/spark-cluster-4.0.1"

node_ip() { echo "$subnet.$((10 + $1))"; }

# Run a command inside node NAME's (or the hub's) namespaces.
in_ns() {
    local name="$1"
    shift
    nsenter --target "$(cat "$dir/ns/$name.pid")" --net --mount --uts -- "$@"
}

# The holder of node NAME's namespaces, for `nsenter --target`. A daemon is started with
# nsenter itself in the background (not through in_ns, a function, which would run in a
# subshell), so that `$!` is the daemon's own pid and the leader of its process group.
holder() { cat "$dir/ns/$1.pid"; }

# Whether process PID runs (a zombie, which nobody may reap here, does not).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Stop one process (and, with `group`, the process group it leads) by its pid file: TERM, and
# KILL after SECONDS (default 10).
stop_pid() {
    local pidfile="$1" group="${2:-}" seconds="${3:-10}" pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && [ "$pid" -gt 1 ] 2>/dev/null; then
        local target="$pid"
        [ -n "$group" ] && target="-$pid"
        kill -TERM -- "$target" 2>/dev/null || true
        for _ in $(seq $((seconds * 10))); do alive "$pid" || break; sleep 0.1; done
        kill -KILL -- "$target" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop() {
    [ -d "$dir" ] || return 0
    # Engines first (each started with setsid: its group holds what it forked), then the
    # namespace holders.
    for name in "${nodes[@]}"; do
        stop_pid "$dir/spark/$name-worker.pid" group
    done
    stop_pid "$dir/spark/master.pid" group
    # A Ray node drains for 10 s and more on TERM; its state goes with DIR anyway.
    stop_pid "$dir/ray/worker.pid" group 2
    stop_pid "$dir/ray/head.pid" group 2
    for name in "${nodes[@]}"; do
        stop_pid "$dir/slurm/slurmd-$name.pid"
    done
    stop_pid "$dir/slurm/slurmctld.pid"
    stop_pid "$dir/slurm/munge/munged.pid"
    # Whatever is still inside a node (a job step slurmd left, say) holds its namespaces too:
    # it goes with its holder. A holder is checked to be ours first (`sleep infinity`, in a
    # network namespace that is not this one), so a stale pid file kills nothing else.
    local self_net
    self_net=$(readlink /proc/self/ns/net)
    for name in "${nodes[@]}" hub; do
        [ -f "$dir/ns/$name.pid" ] || continue
        local holder net
        holder=$(cat "$dir/ns/$name.pid")
        net=$(readlink "/proc/$holder/ns/net" 2>/dev/null || true)
        if [ -n "$net" ] && [ "$net" != "$self_net" ] \
            && [ "$(tr '\0' ' ' < "/proc/$holder/cmdline" 2>/dev/null)" = "sleep infinity " ]; then
            for proc in /proc/[0-9]*; do
                [ "$(readlink "$proc/ns/net" 2>/dev/null)" = "$net" ] || continue
                [ "${proc#/proc/}" = "$holder" ] || kill -KILL "${proc#/proc/}" 2>/dev/null || true
            done
            stop_pid "$dir/ns/$name.pid"
        else
            rm -f "$dir/ns/$name.pid"
        fi
    done
    # Gone with the hub already; only when the hub was never made.
    ip link del "$login_if" 2>/dev/null || true
    if [ -f "$dir/made-node-cache" ]; then
        rmdir "$node_cache" 2>/dev/null || true
    fi
    rm -rf "$dir"
}

# A process holding new network, mount and UTS namespaces for node NAME (or the hub).
make_ns() {
    local name="$1"
    setsid unshare --net --mount --uts --propagation private sleep infinity </dev/null >/dev/null 2>&1 &
    echo $! > "$dir/ns/$name.pid"
    # unshare has made the namespaces once its command runs.
    for _ in $(seq 100); do
        [ "$(readlink "/proc/$!/ns/net" 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ] && break
        sleep 0.02
    done
    in_ns "$name" hostname "$name"
    in_ns "$name" ip link set lo up
}

start_network() {
    if ip link show "$login_if" >/dev/null 2>&1; then
        echo "interface $login_if exists: another scripts/nodes.sh cluster runs; stop it with scripts/nodes.sh stop ITS_DIR (or ip link del $login_if)" >&2
        exit 1
    fi
    mkdir -p "$dir/ns"
    {
        echo "127.0.0.1 localhost"
        echo "$login_ip login"
        for i in "${!nodes[@]}"; do echo "$(node_ip "$i") ${nodes[$i]}"; done
    } > "$dir/hosts"
    make_ns hub
    local hub
    hub=$(cat "$dir/ns/hub.pid")
    in_ns hub ip link add br0 type bridge
    in_ns hub ip link set br0 up
    # This machine, the submitting host.
    ip link add "$login_if" type veth peer name login netns "$hub"
    in_ns hub ip link set login master br0 up
    ip addr add "$login_ip/24" dev "$login_if"
    ip link set "$login_if" up
    if [ ! -d "$node_cache" ]; then
        mkdir -p "$node_cache"
        chmod 700 "$node_cache"
        touch "$dir/made-node-cache"
    fi
    for i in "${!nodes[@]}"; do
        local name="${nodes[$i]}" holder
        make_ns "$name"
        holder=$(cat "$dir/ns/$name.pid")
        ip link add "veth-$name" netns "$hub" type veth peer name eth0 netns "$holder"
        in_ns hub ip link set "veth-$name" master br0 up
        in_ns "$name" ip addr add "$(node_ip "$i")/24" dev eth0
        in_ns "$name" ip link set eth0 up
        # The node's own cache, seen by it alone: its backing directories are hidden under an
        # empty tmpfs inside every node.
        mkdir -p "$dir/nodes/$name/cache"
        chmod 700 "$dir/nodes/$name/cache"
        in_ns "$name" mount --bind "$dir/nodes/$name/cache" "$node_cache"
        in_ns "$name" mount --bind "$dir/hosts" /etc/hosts
    done
    for name in "${nodes[@]}"; do
        in_ns "$name" mount -t tmpfs -o size=1m,mode=755 none "$dir/nodes"
    done
}

start_slurm() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "installing slurm-wlm and munge from Debian" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >&2
    fi
    local s="$dir/slurm" cpus
    mkdir -p "$s"/{munge,state,spool,log}
    chmod 755 "$s/munge"
    mungekey --create --keyfile="$s/munge/munge.key" >&2
    chmod 600 "$s/munge/munge.key"
    # One munged for the cluster: its socket is on the filesystem every node shares.
    in_ns node0 munged --force --key-file="$s/munge/munge.key" --socket="$s/munge/munge.sock" \
        --pid-file="$s/munge/munged.pid" --log-file="$s/munge/munged.log" \
        --seed-file="$s/munge/munged.seed" >&2
    cpus=$(nproc)
    local node_lines=""
    for i in "${!nodes[@]}"; do
        node_lines+="NodeName=${nodes[$i]} NodeHostname=${nodes[$i]} NodeAddr=$(node_ip "$i") CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=2048 State=UNKNOWN"$'\n'
    done
    # SlurmdTimeout: a node whose slurmd stops answering is DOWN, and its jobs NODE_FAIL, after
    # 10 s rather than Slurm's 300 (tests kill one; `scripts/nodes.sh kill DIR slurm NODE`).
    cat > "$s/slurm.conf" <<CONF
ClusterName=terrarium-nodes
SlurmctldHost=node0($(node_ip 0))
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket=$s/munge/munge.sock
CryptoType=crypto/munge
StateSaveLocation=$s/state
SlurmdSpoolDir=$s/spool/%n
SlurmctldPidFile=$s/slurmctld.pid
SlurmdPidFile=$s/slurmd-%n.pid
SlurmctldLogFile=$s/log/slurmctld.log
SlurmdLogFile=$s/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$s/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdTimeout=${NODES_SLURMD_TIMEOUT:-10}
MinJobAge=3600
MailProg=/bin/true
${node_lines}PartitionName=debug Nodes=$(IFS=,; echo "${nodes[*]}") Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$s/slurm.conf"
    in_ns node0 slurmctld -f "$SLURM_CONF" >&2
    for name in "${nodes[@]}"; do
        in_ns "$name" slurmd -f "$SLURM_CONF" >&2
    done
    wait_slurm_idle
    echo "export TERRARIUM_TEST_NODES_SLURM_CONF=$SLURM_CONF"
}

# Wait (up to 30 s) until Slurm has every node idle.
wait_slurm_idle() {
    export SLURM_CONF="$dir/slurm/slurm.conf"
    local idle=0
    for _ in $(seq 300); do
        idle=$(sinfo -h -N -o %T 2>/dev/null | grep -c '^idle$' || true)
        [ "$idle" -ge "${#nodes[@]}" ] && break
        sleep 0.1
    done
    if [ "$idle" -lt "${#nodes[@]}" ]; then
        echo "slurm did not bring up ${#nodes[@]} idle nodes; see $dir/slurm/log" >&2
        sinfo -N >&2 || true
        exit 1
    fi
}

start_ray() {
    # Ray itself, as scripts/ray.sh installs it, and the wheels of `ray` and what it needs, for
    # the tests' environments: their tasks run in the environment, which must hold the
    # cluster's ray to run Ray's workers.
    if [ ! -f "$ray_venv/.installed" ]; then
        echo "installing ray[default]==$ray_version from PyPI into $ray_venv" >&2
        rm -rf "$ray_venv"
        mkdir -p "$cache"
        python3 -m venv "$ray_venv" >&2
        "$ray_venv/bin/pip" install --quiet --disable-pip-version-check "ray[default]==$ray_version" >&2
        touch "$ray_venv/.installed"
    fi
    if [ ! -f "$ray_wheels/.downloaded" ]; then
        echo "downloading the wheels of ray==$ray_version from PyPI into $ray_wheels" >&2
        rm -rf "$ray_wheels"
        "$ray_venv/bin/pip" download --quiet --disable-pip-version-check --only-binary=:all: \
            -d "$ray_wheels" "ray==$ray_version" >&2
        touch "$ray_wheels/.downloaded"
    fi
    local r="$dir/ray" head_ip address
    head_ip=$(node_ip 0)
    mkdir -p "$r/n0" "$r/n1"
    (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$r/token")
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(cat "$r/token")"
    nsenter --target "$(holder node0)" --net --mount --uts -- setsid "$ray_venv/bin/ray" start --head --block --node-ip-address="$head_ip" \
        --port=6379 --dashboard-host="$head_ip" --dashboard-port=8265 --include-dashboard=true \
        --num-cpus=2 --temp-dir="$r/n0" --disable-usage-stats \
        </dev/null >"$r/head.log" 2>&1 &
    echo $! > "$r/head.pid"
    address="http://$head_ip:8265"
    local auth=(-H "Authorization: Bearer $RAY_AUTH_TOKEN")
    for _ in $(seq 600); do
        curl -sf "${auth[@]}" "$address/api/version" >/dev/null 2>&1 && break
        alive "$(cat "$r/head.pid")" || break
        sleep 0.1
    done
    start_ray_worker
    echo "export TERRARIUM_TEST_NODES_RAY_ADDRESS=$address TERRARIUM_TEST_NODES_RAY_TOKEN_FILE=$r/token TERRARIUM_TEST_NODES_RAY_WHEELS=$ray_wheels"
}

# How many nodes the Ray head counts alive.
ray_alive_nodes() {
    curl -sf -H "Authorization: Bearer $(cat "$dir/ray/token")" "http://$(node_ip 0):8265/nodes?view=summary" 2>/dev/null \
        | python3 -c 'import json, sys; print(sum(1 for n in json.load(sys.stdin)["data"]["summary"] if n["raylet"]["state"] == "ALIVE"))' 2>/dev/null || echo 0
}

# The Ray worker node on node1, joined to the head on node0; waits (up to 2 min) until the
# cluster has both nodes alive.
start_ray_worker() {
    local r="$dir/ray" head_ip
    head_ip=$(node_ip 0)
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(cat "$r/token")"
    nsenter --target "$(holder node1)" --net --mount --uts -- setsid "$ray_venv/bin/ray" start --block --address="$head_ip:6379" \
        --node-ip-address="$(node_ip 1)" --num-cpus=2 --temp-dir="$r/n1" --disable-usage-stats \
        </dev/null >>"$r/worker.log" 2>&1 &
    echo $! > "$r/worker.pid"
    local alive_nodes=0
    for _ in $(seq 600); do
        alive_nodes=$(ray_alive_nodes)
        [ "$alive_nodes" -ge 2 ] && break
        alive "$(cat "$r/worker.pid")" || break
        sleep 0.2
    done
    if [ "$alive_nodes" -lt 2 ]; then
        echo "ray did not bring up a head and a worker; see $r/head.log and $r/worker.log" >&2
        tail -20 "$r/head.log" "$r/worker.log" >&2 || true
        exit 1
    fi
}

start_spark() {
    # Spark as scripts/spark.sh installs it, from the pyspark wheels scripts/test-tools.sh builds.
    if [ ! -f "$spark_venv/.installed" ]; then
        rm -rf "$spark_venv"
        python3 -m venv "$spark_venv" >&2
        "$spark_venv/bin/pip" install --quiet --disable-pip-version-check --no-index --find-links "$spark_wheels" pyspark >&2
        touch "$spark_venv/.installed"
    fi
    local sp="$dir/spark" spark_home master_ip
    spark_home=$("$spark_venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
    master_ip=$(node_ip 0)
    mkdir -p "$sp/logs"
    unset SPARK_NO_DAEMONIZE
    nsenter --target "$(holder node0)" --net --mount --uts -- env SPARK_HOME="$spark_home" SPARK_LOCAL_IP="$master_ip" SPARK_LOG_DIR="$sp/logs" \
        setsid "$spark_home/bin/spark-class" org.apache.spark.deploy.master.Master \
        --host "$master_ip" --port 7077 --webui-port 8080 </dev/null >"$sp/logs/master.out" 2>&1 &
    echo $! > "$sp/master.pid"
    for _ in $(seq 300); do
        curl -sf "http://$master_ip:8080/json/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    for i in "${!nodes[@]}"; do
        start_spark_worker "$i"
    done
    wait_spark_workers
    echo "export TERRARIUM_TEST_NODES_SPARK_MASTER=spark://$master_ip:7077 TERRARIUM_TEST_NODES_SPARK_MASTER_UI=http://$master_ip:8080 TERRARIUM_TEST_NODES_SPARK_WHEELS=$spark_wheels TERRARIUM_TEST_NODES_LOGIN_IP=$login_ip"
}

# A Spark worker on node number I, with one core, so that an application with two gets an
# executor on each node.
start_spark_worker() {
    local i="$1" sp="$dir/spark" spark_home master_ip name ip
    spark_home=$("$spark_venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
    master_ip=$(node_ip 0)
    name="${nodes[$i]}"
    ip=$(node_ip "$i")
    mkdir -p "$sp/work-$name"
    unset SPARK_NO_DAEMONIZE
    nsenter --target "$(holder "$name")" --net --mount --uts -- env SPARK_HOME="$spark_home" SPARK_LOCAL_IP="$ip" SPARK_LOG_DIR="$sp/logs" \
        SPARK_WORKER_DIR="$sp/work-$name" \
        setsid "$spark_home/bin/spark-class" org.apache.spark.deploy.worker.Worker \
        --host "$ip" --webui-port 8081 --cores 1 --memory 1g --work-dir "$sp/work-$name" \
        "spark://$master_ip:7077" </dev/null >>"$sp/logs/worker-$name.out" 2>&1 &
    echo $! > "$sp/$name-worker.pid"
}

# Wait (up to 60 s) until the master has a worker alive on every node.
wait_spark_workers() {
    local sp="$dir/spark" master_ip alive=0
    master_ip=$(node_ip 0)
    for _ in $(seq 600); do
        alive=$(curl -sf "http://$master_ip:8080/json/" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin).get("aliveworkers", 0))' 2>/dev/null || echo 0)
        [ "$alive" -ge "${#nodes[@]}" ] && break
        sleep 0.1
    done
    if [ "$alive" -lt "${#nodes[@]}" ]; then
        echo "spark did not bring up a worker on each node; see $sp/logs" >&2
        tail -20 "$sp/logs/"*.out >&2 || true
        exit 1
    fi
}

# The number of NODE (node0 -> 0), or exit.
node_number() {
    local i
    for i in "${!nodes[@]}"; do
        [ "${nodes[$i]}" = "$1" ] && { echo "$i"; return; }
    done
    echo "no node $1 (the nodes: ${nodes[*]})" >&2
    exit 2
}

# The pids of the processes in process group PGID whose command is COMM.
group_members() {
    local pgid="$1" comm="$2" proc stat rest pgrp
    for proc in /proc/[0-9]*; do
        stat=$(cat "$proc/stat" 2>/dev/null) || continue
        # After `(comm) `: state ppid pgrp ...
        rest=${stat##*) }
        read -r _ _ pgrp _ <<<"$rest"
        [ "$pgrp" = "$pgid" ] || continue
        [ "$(cat "$proc/comm" 2>/dev/null)" = "$comm" ] && echo "${proc#/proc/}"
    done
}

# One node's daemon dies by SIGKILL. Found by our pid files (and, for the raylet, in the process
# group of the Ray node we started), never by name alone.
kill_daemon() {
    local engine="$1" name="$2" pid
    node_number "$name" >/dev/null
    case "$engine" in
    slurm)
        pid=$(cat "$dir/slurm/slurmd-$name.pid")
        kill -KILL "$pid"
        ;;
    ray)
        [ "$name" = node1 ] || { echo "the Ray worker node is node1 ($name has the head)" >&2; exit 2; }
        pid=$(group_members "$(cat "$dir/ray/worker.pid")" raylet)
        [ -n "$pid" ] || { echo "no raylet in the group of $dir/ray/worker.pid" >&2; exit 1; }
        kill -KILL $pid
        ;;
    spark)
        pid=$(cat "$dir/spark/$name-worker.pid")
        # The worker's whole group: the JVM and the executors it forked, as when a node dies.
        kill -KILL -- "-$pid"
        ;;
    *) echo "unknown engine $engine (slurm, ray, spark)" >&2; exit 2 ;;
    esac
    echo "killed $engine on $name: pid $pid" >&2
}

# Start a killed daemon again, and wait until the engine has every node back.
revive_daemon() {
    local engine="$1" name="$2" i
    i=$(node_number "$name")
    case "$engine" in
    slurm)
        export SLURM_CONF="$dir/slurm/slurm.conf"
        if ! alive "$(cat "$dir/slurm/slurmd-$name.pid" 2>/dev/null || echo 0)"; then
            in_ns "$name" slurmd -f "$SLURM_CONF" >&2
        fi
        wait_slurm_idle
        ;;
    ray)
        [ "$name" = node1 ] || { echo "the Ray worker node is node1 ($name has the head)" >&2; exit 2; }
        # What is left of the old Ray node goes first (`ray start --block` ends it after a while),
        # and the head must have seen it die, or it would count the old node as the second.
        stop_pid "$dir/ray/worker.pid" group 2
        for _ in $(seq 600); do
            [ "$(ray_alive_nodes)" -lt 2 ] && break
            sleep 0.1
        done
        start_ray_worker
        ;;
    spark)
        stop_pid "$dir/spark/$name-worker.pid" group 2
        start_spark_worker "$i"
        wait_spark_workers
        ;;
    *) echo "unknown engine $engine (slurm, ray, spark)" >&2; exit 2 ;;
    esac
    echo "revived $engine on $name" >&2
}

case "$action" in
start)
    [ "$(id -u)" = 0 ] || { echo "scripts/nodes.sh needs root (namespaces, a bridge, mounts)" >&2; exit 1; }
    stop
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # A failed start leaves nothing behind.
    trap 'status=$?; [ $status = 0 ] || stop; exit $status' EXIT
    start_network
    for engine in $engines; do
        case "$engine" in
        slurm) start_slurm ;;
        ray) start_ray ;;
        spark) start_spark ;;
        *) echo "unknown engine $engine in NODES_ENGINES (slurm, ray, spark)" >&2; exit 1 ;;
        esac
    done
    echo "export TERRARIUM_TEST_NODES_DIR=$dir TERRARIUM_TEST_NODES_NAMES=$(IFS=,; echo "${nodes[*]}") TERRARIUM_TEST_NODES_NODE_CACHE=$node_cache"
    ;;
stop)
    stop
    ;;
kill | revive)
    [ -d "$dir/ns" ] || { echo "no cluster in $dir" >&2; exit 1; }
    dir=$(cd "$dir" && pwd)
    "${action}_daemon" "${3:?engine: slurm, ray or spark}" "${4:?node}"
    ;;
*)
    echo "usage: scripts/nodes.sh start|stop DIR, or kill|revive DIR ENGINE NODE" >&2
    exit 2
    ;;
esac
