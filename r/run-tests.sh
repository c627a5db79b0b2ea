#!/bin/sh
# The R client's checks: `R CMD build` and `R CMD check --no-manual` of r/terrarium, whose tests
# start a real team server from the terrarium binary (TERRARIUM_BIN, default
# target/HOST/debug/terrarium, HOST being `rustc --print host-tuple`). Installs nothing: it needs R with httr2, jsonlite and testthat
# (Debian: r-base-core r-cran-httr2 r-cran-jsonlite r-cran-testthat). Fails on a check error
# or warning, a failed test, or a skipped one.
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

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

R CMD build --no-manual "$here/terrarium" >build.log 2>&1 || { cat build.log >&2; exit 1; }
status=0
_R_CHECK_FORCE_SUGGESTS_=true R CMD check --no-manual terrarium_*.tar.gz >check.log 2>&1 || status=$?
out=terrarium.Rcheck/tests/testthat.Rout
if [ "$status" -ne 0 ] || grep -q '^Status:.*WARNING' check.log; then
    cat check.log >&2
    [ -f "$out.fail" ] && cat "$out.fail" >&2
    echo "error: R CMD check failed" >&2
    exit 1
fi
summary=$(grep '\[ FAIL' "$out" | tail -n 1)
echo "R client: $summary"
case $summary in
    *"SKIP 0 "*) ;;
    *) grep -A3 -i 'skip' "$out" >&2 || true; echo "error: tests were skipped" >&2; exit 1 ;;
esac
