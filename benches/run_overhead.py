#!/usr/bin/env python3
"""What a warm `terrarium run` costs over starting the same interpreter directly.

Paired and interleaved, so that the machine's own drift (other processes, CPU frequency) falls
on both sides alike: each round runs `terrarium run --env bench -- python -c pass` and then the
environment's own `python -c pass`, and the overhead is the median of the per-round
differences. With TERRARIUM_BIN_BASELINE set, a second terrarium binary joins each round, so a
change is measured against the binary before it in the same run.

The environment is a pip environment of one small wheel the script writes, locked and built
once (with uv, offline); the workspace is a fresh SQLite one with the environment registered
and one run recorded before timing starts, as a user's would be.

    cargo build --release && python3 benches/run_overhead.py

Needs TERRARIUM_UV (scripts/test-tools.sh) or uv on PATH. Target (issue 13): at most 5 ms.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

from binary import built_binary  # benches/binary.py: where cargo put the build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("TERRARIUM_BIN") or built_binary("release")
BASELINE = os.environ.get("TERRARIUM_BIN_BASELINE")
PYTHON = os.environ.get("BENCH_PYTHON", shutil.which("python3.11") or shutil.which("python3"))
ROUNDS = int(os.environ.get("ROUNDS", "60"))


def wheel(directory):
    """A pure-Python wheel `tiny 1.0`."""
    path = os.path.join(directory, "tiny-1.0-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tiny/__init__.py", "__version__ = '1.0'\n")
        z.writestr("tiny-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n")
        z.writestr("tiny-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("tiny-1.0.dist-info/RECORD", "")
    return path


def timed(cmd, env):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    uv = os.environ.get("TERRARIUM_UV") or shutil.which("uv")
    if not uv or not os.path.exists(BINARY):
        sys.exit(f"needs uv (TERRARIUM_UV) and {BINARY} (cargo build --release)")
    work = tempfile.mkdtemp(prefix="terrarium-run-overhead-")
    try:
        wheels = os.path.join(work, "wheels")
        os.makedirs(wheels)
        wheel(wheels)
        definition = os.path.join(work, "env.yml")
        with open(definition, "w") as f:
            f.write(f"name: bench\npython:\n  pip:\n    - --no-index\n    - --find-links {wheels}\n    - tiny\n")
        env = dict(
            os.environ,
            TERRARIUM_HOME=os.path.join(work, "home"),
            TERRARIUM_CONFIG=os.path.join(work, "home", "config.toml"),
            TERRARIUM_CACHE_DIR=os.path.join(work, "cache"),
            TERRARIUM_WORKSPACE=os.path.join(work, "ws"),
            TERRARIUM_UV=uv,
            UV_PYTHON_DOWNLOADS="never",
            UV_PYTHON=PYTHON,
        )
        subprocess.run([BINARY, "env", "create", "-f", definition], check=True, env=env, capture_output=True)
        prefix = subprocess.run([BINARY, "env", "build", "bench"], check=True, env=env, capture_output=True, text=True).stdout.strip()
        python = os.path.join(prefix, "bin", "python")
        binaries = [("terrarium", BINARY)] + ([("baseline", BASELINE)] if BASELINE else [])
        # Each binary gets its own copy of the workspace: two binaries whose curated bundles
        # differ would otherwise each seed the workspace again at every run, the other having
        # just recorded its own bundle.
        envs = {}
        for name, binary in binaries:
            workspace = os.path.join(work, f"ws-{name}")
            shutil.copytree(os.path.join(work, "ws"), workspace)
            envs[name] = dict(env, TERRARIUM_WORKSPACE=workspace)
            for _ in range(3):  # warm the page cache and the workspace's log
                timed([binary, "run", "--env", "bench", "--", "python", "-c", "pass"], envs[name])
        times = {name: [] for name, _ in binaries}
        bare = []
        for _ in range(ROUNDS):
            bare.append(timed([python, "-c", "pass"], env))
            for name, binary in binaries:
                times[name].append(timed([binary, "run", "--env", "bench", "--", "python", "-c", "pass"], envs[name]))
        ms = lambda s: s * 1000
        print(f"warm run of `python -c pass`, {ROUNDS} interleaved rounds, medians:")
        print(f"  bare python                  {ms(statistics.median(bare)):7.2f} ms")
        for name, _ in binaries:
            overhead = statistics.median(t - b for t, b in zip(times[name], bare))
            print(f"  {name:<28} {ms(statistics.median(times[name])):7.2f} ms   overhead {ms(overhead):5.2f} ms   (target <= 5 ms)")
        if BASELINE:
            change = statistics.median(t - b for t, b in zip(times["terrarium"], times["baseline"]))
            print(f"  terrarium - baseline, per round: {ms(change):+.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
