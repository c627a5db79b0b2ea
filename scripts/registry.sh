#!/usr/bin/env bash
# Start (or stop) Debian's docker-registry on 127.0.0.1 with its own config (no auth, storage in
# DIR) for the image tests.
#   eval "$(scripts/registry.sh start DIR)"   prints TERRARIUM_TEST_REGISTRY=127.0.0.1:PORT
#   scripts/registry.sh stop DIR
set -euo pipefail
action="$1"
dir="$2"

case "$action" in
start)
    if ! command -v docker-registry >/dev/null; then
        echo "installing docker-registry from Debian" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >&2
    fi
    rm -rf "$dir"
    mkdir -p "$dir/storage"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CONFIG
    docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
    echo $! > "$dir/pid"
    for _ in $(seq 1 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then
            echo "export TERRARIUM_TEST_REGISTRY=127.0.0.1:$port"
            exit 0
        fi
        sleep 0.1
    done
    echo "docker-registry did not start; its log:" >&2
    cat "$dir/registry.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
