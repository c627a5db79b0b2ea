#!/usr/bin/env bash
# Start (or stop) a throwaway one-node Ray cluster (a head with its dashboard and Jobs API) on
# 127.0.0.1 for the tests, its state under DIR. Ray itself is installed once from PyPI into a
# venv in the test-tools cache. The head has token authentication on (as a shared cluster should),
# with a new token in DIR/token.
#   eval "$(scripts/ray.sh start DIR)"   prints TERRARIUM_TEST_RAY_ADDRESS=http://127.0.0.1:PORT
#                                        and TERRARIUM_TEST_RAY_TOKEN_FILE=DIR/token
#   scripts/ray.sh stop DIR
set -euo pipefail
action="$1"
dir="$2"

ray_version=2.60.0
cache="${TERRARIUM_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/terrarium-test-tools}"
venv="$cache/ray-$ray_version"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
    [ -f "$dir/ray.pid" ] || return 0
    pid=$(cat "$dir/ray.pid")
    # `ray start --block` drains and stops every process of its cluster on TERM (`ray stop`
    # would kill every Ray process on the machine, by name).
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/ray.pid"
}

case "$action" in
start)
    # A stamp written once the install succeeded (asking `ray --version` takes 2-3 s).
    if [ ! -f "$venv/.installed" ]; then
        echo "installing ray[default]==$ray_version from PyPI into $venv" >&2
        rm -rf "$venv"
        mkdir -p "$cache"
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "ray[default]==$ray_version" >&2
        touch "$venv/.installed"
    fi
    [ -d "$dir" ] && stop || true
    rm -rf "$dir"
    mkdir -p "$dir/tmp"
    gcs_port=$(free_port)
    dashboard_port=$(free_port)
    agent_port=$(free_port)
    client_port=$(free_port)
    # Without this Ray swaps 127.0.0.1 for the machine's outward address on Linux.
    export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$dir/token")
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(cat "$dir/token")"
    setsid "$venv/bin/ray" start --head --block --node-ip-address=127.0.0.1 --port="$gcs_port" \
        --ray-client-server-port="$client_port" --dashboard-agent-listen-port="$agent_port" \
        --dashboard-host=127.0.0.1 --dashboard-port="$dashboard_port" --include-dashboard=true \
        --num-cpus=2 --temp-dir="$dir/tmp" --disable-usage-stats \
        </dev/null >"$dir/ray.log" 2>&1 &
    echo $! > "$dir/ray.pid"
    address="http://127.0.0.1:$dashboard_port"
    auth=(-H "Authorization: Bearer $RAY_AUTH_TOKEN")
    for _ in $(seq 600); do
        curl -sf "${auth[@]}" "$address/api/version" >/dev/null 2>&1 && break
        kill -0 "$(cat "$dir/ray.pid")" 2>/dev/null || break
        sleep 0.1
    done
    if ! curl -sf "${auth[@]}" "$address/api/version" >/dev/null 2>&1; then
        echo "ray did not come up; see $dir/ray.log" >&2
        tail -20 "$dir/ray.log" >&2 || true
        stop
        exit 1
    fi
    # The cluster's own Python (with its ray), for tests whose environment must hold that ray.
    echo "export TERRARIUM_TEST_RAY_ADDRESS=$address TERRARIUM_TEST_RAY_TOKEN_FILE=$dir/token TERRARIUM_TEST_RAY_PYTHON=$venv/bin/python"
    ;;
stop)
    stop
    rm -rf "$dir"
    ;;
esac
