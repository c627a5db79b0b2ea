#!/usr/bin/env bash
# Build the service front that deployment images start (`terrarium-serve`), statically linked
# against glibc (+crt-static), so that it runs on any base image or on none. Prints
# TERRARIUM_FRONT=PATH for `eval`; `image build --deployment` reads it.
#   eval "$(scripts/build-front.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

# An explicit --target keeps RUSTFLAGS off build scripts and proc macros, which cannot be static.
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --release -p terrarium-serve --bin terrarium-serve --target "$host" >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
front="$target_dir/$host/release/terrarium-serve"
if readelf -l "$front" 2>/dev/null | grep -q "Requesting program interpreter"; then
    echo "error: $front is dynamically linked" >&2
    exit 1
fi
echo "export TERRARIUM_FRONT=$front"
