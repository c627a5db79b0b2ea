#!/usr/bin/env python3
"""Runs on Slurm: time from submit to the script's first output line, side by side in one run.

Setup (once, cached): the wheelhouse of benches/build_run.py (44 real wheels from PyPI) and one
Terrarium lock of it. A Slurm cluster: TERRARIUM_TEST_SLURM_CONF, or a one-node cluster this
script starts with scripts/slurm.sh (needs root). Then, interleaved:

  warm  `terrarium run --target slurm` with the environment already built on the node
        vs `sbatch` of a hand-written job script that activates a prebuilt venv with the same
        packages, its output file polled every 10 ms for the first line
        (target: at most 100 ms more)
  cold  `terrarium run --target slurm` with an empty environment cache (it builds first)
        vs a job script that runs `uv venv` + `uv pip install` of the same pins from the same
        wheelhouse, then the script (target: at most half its time)

Both sides use a warm uv cache for the wheels: "cold" means the environment is not on the node.
Needs: `cargo build --release`, `eval "$(scripts/test-tools.sh)"` (TERRARIUM_UV).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_run  # noqa: E402  (the shared wheelhouse and its requirements)

ROOT = build_run.ROOT
BINARY = build_run.BINARY
PYTHON = build_run.PYTHON
WARM_RUNS = int(os.environ.get("WARM_RUNS", "10"))
COLD_RUNS = int(os.environ.get("COLD_RUNS", "3"))
PRINT = "import sys; print('first line', flush=True)"


def first_line_from_terrarium(cmd, env):
    """Seconds from start until the command prints its first stdout line; it is then waited for."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    rest, err = proc.communicate()
    if "first line" not in line or proc.returncode != 0:
        raise SystemExit(f"terrarium run failed ({proc.returncode}): {line}{rest}\n{err}")
    return elapsed


def first_line_from_sbatch(script, out, env):
    """Seconds from `sbatch` until the job's output file has its first line (polled every 10 ms)."""
    if os.path.exists(out):
        os.remove(out)
    start = time.perf_counter()
    job = subprocess.run(["sbatch", "--parsable", "--output", out, script], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    while True:
        try:
            with open(out) as f:
                if "first line" in f.read():
                    elapsed = time.perf_counter() - start
                    break
        except FileNotFoundError:
            pass
        if time.perf_counter() - start > 600:
            raise SystemExit(f"job {job} printed nothing")
        time.sleep(0.01)
    # Let the job end before the next one, as terrarium's attached run does.
    while subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True).stdout.strip():
        time.sleep(0.05)
    return elapsed


def main():
    uv = os.environ.get("TERRARIUM_UV") or shutil.which("uv")
    if not uv:
        sys.exit('set TERRARIUM_UV (eval "$(scripts/test-tools.sh)")')
    if not os.path.exists(BINARY):
        sys.exit(f"build first: cargo build --release ({BINARY} missing)")
    if not shutil.which("sbatch"):
        sys.exit("Slurm's client commands are missing: apt-get install slurm-wlm munge")
    build_run.ensure_wheelhouse()
    work = tempfile.mkdtemp(prefix="terrarium-bench-compute-")
    started_cluster = None
    conf = os.environ.get("TERRARIUM_TEST_SLURM_CONF")
    if not conf:
        started_cluster = os.path.join(work, "slurm")
        out = subprocess.run([os.path.join(ROOT, "scripts", "slurm.sh"), "start", started_cluster],
                             check=True, capture_output=True, text=True).stdout
        conf = out.strip().split("=", 1)[1]
    try:
        env = dict(os.environ, SLURM_CONF=conf, UV_PYTHON_DOWNLOADS="never", TERRARIUM_UV=uv,
                   UV_CACHE_DIR=os.path.join(work, "uv-cache"),
                   TERRARIUM_CACHE_DIR=os.path.join(work, "cache"))
        definition = os.path.join(work, "env.yml")
        with open(definition, "w") as f:
            f.write("name: bench\npython:\n  interpreter: %s\n  pip:\n    - --no-index\n    - --find-links %s\n"
                    % (PYTHON, build_run.WHEELHOUSE))
            for r in build_run.REQUIREMENTS:
                f.write(f"    - {r}\n")
        ws = ["--workspace", os.path.join(work, "ws")]
        subprocess.run([BINARY, *ws, "env", "create", "-f", definition], env=env, check=True, capture_output=True)
        subprocess.run([BINARY, *ws, "compute", "add", "bench", "--kind", "slurm", "--set", f"conf={conf}"],
                       env=env, check=True, capture_output=True)
        lock = json.loads(subprocess.run([BINARY, *ws, "env", "lock", "bench", "--json"], env=env, check=True,
                                         capture_output=True, text=True).stdout)
        pins = os.path.join(work, "pins.txt")
        with open(pins, "w") as f:
            for p in lock["packages"]:
                f.write(f"{p['name']}=={p['version']}\n")

        # The hand-written side: a venv with the same pins, prebuilt, and two job scripts.
        venv = os.path.join(work, "venv")
        subprocess.run([uv, "venv", "--quiet", "--python", PYTHON, venv], env=env, check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", os.path.join(venv, "bin", "python"), "--no-index",
                        "--find-links", build_run.WHEELHOUSE, "-r", pins], env=env, check=True)
        warm_script = os.path.join(work, "warm.sh")
        with open(warm_script, "w") as f:
            f.write(f"#!/bin/bash\nsource {venv}/bin/activate\nexec python -c \"{PRINT}\"\n")
        cold_script = os.path.join(work, "cold.sh")
        with open(cold_script, "w") as f:
            f.write("#!/bin/bash\nset -e\nV=$(mktemp -d)/venv\n"
                    f"{uv} venv --quiet --python {PYTHON} $V\n"
                    f"{uv} pip install --quiet --python $V/bin/python --no-index --find-links {build_run.WHEELHOUSE} -r {pins}\n"
                    f"source $V/bin/activate\nexec python -c \"{PRINT}\"\n")
        out = os.path.join(work, "job.out")
        run = [BINARY, *ws, "run", "--env", "bench", "--target", "bench", "--", "python", "-c", PRINT]

        # Warm: terrarium's environment is built once first.
        first_line_from_terrarium(run, env)
        first_line_from_sbatch(warm_script, out, env)
        t_warm, s_warm = [], []
        for _ in range(WARM_RUNS):
            t_warm.append(first_line_from_terrarium(run, env))
            s_warm.append(first_line_from_sbatch(warm_script, out, env))
        t_cold, s_cold = [], []
        for i in range(COLD_RUNS):
            cold_env = dict(env, TERRARIUM_CACHE_DIR=os.path.join(work, f"cold-cache-{i}"))
            t_cold.append(first_line_from_terrarium(run, cold_env))
            s_cold.append(first_line_from_sbatch(cold_script, out, env))

        tw, sw = statistics.median(t_warm), statistics.median(s_warm)
        tc, sc = statistics.median(t_cold), statistics.median(s_cold)
        print(f"lock: {len(lock['packages'])} packages; Slurm {subprocess.run(['sinfo', '--version'], env=env, capture_output=True, text=True).stdout.strip()}")
        print(f"\nsubmit to first output line, environment on the node, median of {WARM_RUNS}:")
        print(f"  terrarium run --target slurm        {tw * 1000:8.0f} ms")
        print(f"  sbatch, prebuilt venv activated     {sw * 1000:8.0f} ms")
        print(f"  terrarium - sbatch = {(tw - sw) * 1000:+.0f} ms   (target <= +100 ms)")
        print(f"\nsubmit to first output line, environment not on the node, median of {COLD_RUNS}:")
        print(f"  terrarium run --target slurm        {tc:8.2f} s")
        print(f"  sbatch, uv venv + uv pip install    {sc:8.2f} s")
        print(f"  terrarium / sbatch+uv = {tc / sc:.2f}x   (target <= 0.5x)")
    finally:
        if started_cluster:
            subprocess.run([os.path.join(ROOT, "scripts", "slurm.sh"), "stop", started_cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
