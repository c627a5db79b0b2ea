#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL server on 127.0.0.1 for the tests.
#   eval "$(scripts/postgres.sh start DIR)"   prints TERRARIUM_TEST_POSTGRES=...
#   scripts/postgres.sh stop DIR
set -euo pipefail
action="$1"
dir="$2"

bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

case "$action" in
start)
    if [ -z "$(bindir)" ]; then
        echo "installing postgresql from Debian" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    bin="$(bindir)"
    rm -rf "$dir"
    mkdir -p "$dir"
    run_as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$dir"
        run_as=(runuser -u postgres --)
    fi
    "${run_as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" start >&2
    echo "export TERRARIUM_TEST_POSTGRES=postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    bin="$(bindir)"
    run_as=()
    [ "$(id -u)" = 0 ] && run_as=(runuser -u postgres --)
    if [ -d "$dir/data" ]; then
        "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$dir"
    ;;
esac
