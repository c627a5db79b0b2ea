#!/usr/bin/env bash
# Start (or stop) a throwaway Spark standalone cluster, a master and one worker on 127.0.0.1,
# its state under DIR, for the tests. Spark comes from the pyspark wheels scripts/test-tools.sh
# builds (TERRARIUM_TEST_SPARK_WHEELS), installed once into a venv in the test-tools cache; the
# pip package has no start-master.sh, so the daemons are started with spark-class.
#   eval "$(scripts/spark.sh start DIR)"   prints TERRARIUM_TEST_SPARK_MASTER=spark://127.0.0.1:PORT
#   scripts/spark.sh stop DIR
set -euo pipefail
action="$1"
dir="$2"

cache="${TERRARIUM_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/terrarium-test-tools}"
wheels="${TERRARIUM_TEST_SPARK_WHEELS:-$cache/spark-wheels-4.0.1}"
venv="$cache/spark-cluster-4.0.1"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
    for name in worker master; do
        [ -f "$dir/$name.pid" ] || continue
        pid=$(cat "$dir/$name.pid")
        # setsid made each daemon a group leader: its executors' JVMs go with it.
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$dir/$name.pid"
    done
}

case "$action" in
start)
    if [ ! -f "$venv/.installed" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-index --find-links "$wheels" pyspark >&2
        touch "$venv/.installed"
    fi
    [ -d "$dir" ] && stop || true
    rm -rf "$dir"
    mkdir -p "$dir/work" "$dir/logs"
    spark_home=$("$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
    export SPARK_HOME="$spark_home" SPARK_LOCAL_IP=127.0.0.1 SPARK_LOG_DIR="$dir/logs" SPARK_WORKER_DIR="$dir/work"
    unset SPARK_NO_DAEMONIZE
    port=$(free_port)
    ui=$(free_port)
    worker_ui=$(free_port)
    setsid "$spark_home/bin/spark-class" org.apache.spark.deploy.master.Master \
        --host 127.0.0.1 --port "$port" --webui-port "$ui" </dev/null >"$dir/logs/master.out" 2>&1 &
    echo $! > "$dir/master.pid"
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$ui/json/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    setsid "$spark_home/bin/spark-class" org.apache.spark.deploy.worker.Worker \
        --host 127.0.0.1 --webui-port "$worker_ui" --cores 2 --memory 2g --work-dir "$dir/work" \
        "spark://127.0.0.1:$port" </dev/null >"$dir/logs/worker.out" 2>&1 &
    echo $! > "$dir/worker.pid"
    alive=0
    for _ in $(seq 600); do
        alive=$(curl -sf "http://127.0.0.1:$ui/json/" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin).get("aliveworkers", 0))' 2>/dev/null || echo 0)
        [ "$alive" -ge 1 ] && break
        sleep 0.1
    done
    if [ "$alive" -lt 1 ]; then
        echo "spark did not come up; see $dir/logs" >&2
        tail -20 "$dir/logs/master.out" "$dir/logs/worker.out" >&2 || true
        stop
        exit 1
    fi
    echo "export TERRARIUM_TEST_SPARK_MASTER=spark://127.0.0.1:$port TERRARIUM_TEST_SPARK_MASTER_UI=http://127.0.0.1:$ui"
    ;;
stop)
    stop
    rm -rf "$dir"
    ;;
esac
