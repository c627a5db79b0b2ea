#!/bin/sh
# The Python SDK's checks: a virtual environment with the SDK installed from ./python as a user
# would (`pip install ./python`: the wheel carries the terrarium binary) and the test tools from
# PyPI (once; kept in the test-tools cache), then `mypy --strict` and pytest.
#
# Reads TERRARIUM_BIN (the binary to ship and test; default target/HOST/debug/terrarium, HOST being `rustc --print host-tuple`),
# TERRARIUM_UV, TERRARIUM_TEST_AML_PYTHON, TERRARIUM_TEST_BASE_IMAGE (scripts/test-tools.sh
# prints them) and TERRARIUM_TEST_POSTGRES (scripts/postgres.sh start DIR prints it). Without
# one, the tests that need it are skipped with a message, or fail under CI (CI set).
# Arguments go to pytest (e.g. -k server).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${TERRARIUM_BIN:-$root/target/$(rustc --print host-tuple)/debug/terrarium}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
if [ ! -x "$bin" ]; then
    echo "error: no terrarium binary at $bin" >&2
    echo "hint: build it with \`cargo build -p terrarium\`, or set TERRARIUM_BIN" >&2
    exit 2
fi
export TERRARIUM_BIN="$bin"

cache=${TERRARIUM_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/terrarium-test-tools}
venv=$cache/python-sdk-venv
python=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
tools="pytest==9.2.0 mypy==2.4.1 hatchling==1.33.0 nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0"

uv=${TERRARIUM_UV:-$(command -v uv || true)}
if [ -n "$uv" ]; then
    export UV_PYTHON_DOWNLOADS=never
    "$uv" venv -q --allow-existing -p "$python" "$venv" >&2
    # shellcheck disable=SC2086
    "$uv" pip install -q -p "$venv/bin/python" $tools >&2
    "$uv" pip install -q -p "$venv/bin/python" --reinstall-package terrarium "$here" >&2
else
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check $tools >&2
    "$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$here" >&2
fi
if [ ! -x "$venv/bin/terrarium" ]; then
    echo "error: the installed wheel carries no terrarium binary" >&2
    exit 1
fi

cd "$here"
"$venv/bin/mypy" --strict terrarium hatch_build.py
# The installed package is tested: the pytest script, unlike `python -m pytest`, does not put
# the source folder first on the path.
"$venv/bin/pytest" -q -rs -p no:cacheprovider tests "$@"
