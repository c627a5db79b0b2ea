#!/usr/bin/env python3
"""Cold builds and warm runs: Terrarium against uv and pip, side by side in one run.

Setup (once, cached): a wheelhouse of 30+ real packages downloaded from PyPI with pip, and one
lock of them made by Terrarium. Then, on that same set of pinned wheels:

  cold build   terrarium env build            (empty Terrarium cache, empty uv cache)
               uv venv + uv pip sync pylock   (empty uv cache)
               python -m venv + pip install   (no pip cache)
  warm run     terrarium run -- python -c pass
               bare `python -c pass` with the environment's interpreter
               uv run --no-project --with-requirements (same pins, warm uv cache)

Prints medians and ratios. Targets (issue 3): cold build at most 1.2x uv, at least 10x faster
than pip; warm run overhead at most 15 ms over bare python.

Needs TERRARIUM_UV (scripts/test-tools.sh) and a release build (cargo build --release).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from binary import built_binary  # benches/binary.py: where cargo put the build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("TERRARIUM_BIN") or built_binary("release")
CACHE = os.environ.get(
    "TERRARIUM_TEST_CACHE",
    os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "terrarium-test-tools"),
)
WHEELHOUSE = os.path.join(CACHE, "bench-wheelhouse")
PYTHON = os.environ.get("BENCH_PYTHON", shutil.which("python3.11") or shutil.which("python3"))
COLD_RUNS = int(os.environ.get("COLD_RUNS", "5"))
WARM_RUNS = int(os.environ.get("WARM_RUNS", "30"))

# Real, commonly co-installed packages; with their dependencies well over 30 wheels.
REQUIREMENTS = [
    "numpy==1.26.4", "pandas==2.2.3", "scikit-learn==1.5.2", "scipy==1.14.1", "requests==2.32.3",
    "flask==3.0.3", "rich==13.9.4", "click==8.1.7", "pyyaml==6.0.2", "tqdm==4.66.5",
    "jinja2==3.1.4", "attrs==24.2.0", "fsspec==2024.10.0", "filelock==3.16.1", "packaging==24.1",
    "python-dateutil==2.9.0.post0", "typing-extensions==4.12.2", "cloudpickle==3.1.0", "toolz==1.0.0",
    "pyarrow==17.0.0", "pydantic==2.9.2", "httpx==0.27.2", "joblib==1.4.2",
]


def run(cmd, env=None, **kw):
    return subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def timed(cmd, env=None):
    start = time.perf_counter()
    run(cmd, env=env)
    return time.perf_counter() - start


def ensure_wheelhouse():
    marker = os.path.join(WHEELHOUSE, ".complete")
    if os.path.exists(marker):
        return
    os.makedirs(WHEELHOUSE, exist_ok=True)
    print(f"downloading the wheelhouse into {WHEELHOUSE} (once)...", file=sys.stderr)
    run([PYTHON, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--disable-pip-version-check",
         "-d", WHEELHOUSE, *REQUIREMENTS])
    open(marker, "w").close()


def main():
    uv = os.environ.get("TERRARIUM_UV") or shutil.which("uv")
    if not uv:
        sys.exit("set TERRARIUM_UV (eval \"$(scripts/test-tools.sh)\")")
    if not os.path.exists(BINARY):
        sys.exit(f"build first: cargo build --release ({BINARY} missing)")
    ensure_wheelhouse()
    wheels = len([f for f in os.listdir(WHEELHOUSE) if f.endswith(".whl")])
    work = tempfile.mkdtemp(prefix="terrarium-bench-")
    base_env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", TERRARIUM_UV=uv, PIP_DISABLE_PIP_VERSION_CHECK="1")

    # One lock, shared by every tool.
    definition = os.path.join(work, "env.yml")
    with open(definition, "w") as f:
        f.write("name: bench\npython:\n  interpreter: %s\n  pip:\n    - --no-index\n    - --find-links %s\n" % (PYTHON, WHEELHOUSE))
        for r in REQUIREMENTS:
            f.write(f"    - {r}\n")
    workspace = os.path.join(work, "ws")
    lock_env = dict(base_env, TERRARIUM_CACHE_DIR=os.path.join(work, "lockcache"), UV_CACHE_DIR=os.path.join(work, "lockuv"))
    run([BINARY, "--workspace", workspace, "env", "create", "-f", definition], env=lock_env)
    pylock_dir = os.path.join(work, "pylock")
    os.makedirs(pylock_dir)
    pylock = os.path.join(pylock_dir, "pylock.toml")
    with open(pylock, "w") as f:
        subprocess.run([BINARY, "--workspace", workspace, "env", "export", "bench", "--format", "pylock"], check=True, env=lock_env, stdout=f)
    pins = os.path.join(work, "pins.txt")
    with open(pins, "w") as f:
        subprocess.run([BINARY, "--workspace", workspace, "env", "lock", "bench"], check=True, env=lock_env, stdout=subprocess.PIPE, text=True)
        out = subprocess.run([BINARY, "--workspace", workspace, "env", "lock", "bench", "--json"], check=True, env=lock_env, capture_output=True, text=True).stdout
        import json
        packages = json.loads(out)["packages"]
        for p in packages:
            f.write(f"{p['name']}=={p['version']}\n")
    print(f"lock: {len(packages)} packages from {wheels} wheels in the wheelhouse; python {PYTHON}")

    terrarium, uvs, pips = [], [], []
    for i in range(COLD_RUNS):
        # Interleaved, each with empty caches.
        t_env = dict(base_env, TERRARIUM_CACHE_DIR=os.path.join(work, f"tc{i}"), UV_CACHE_DIR=os.path.join(work, f"tu{i}"))
        terrarium.append(timed([BINARY, "--workspace", workspace, "env", "build", "bench"], env=t_env))
        u_env = dict(base_env, UV_CACHE_DIR=os.path.join(work, f"uu{i}"))
        venv = os.path.join(work, f"uv-venv{i}")
        start = time.perf_counter()
        run([uv, "venv", "--quiet", "--python", PYTHON, venv], env=u_env)
        run([uv, "pip", "sync", "--quiet", "--preview-features", "pylock", "--python", os.path.join(venv, "bin", "python"), pylock], env=u_env)
        uvs.append(time.perf_counter() - start)
        if i < max(1, COLD_RUNS // 2):
            pvenv = os.path.join(work, f"pip-venv{i}")
            start = time.perf_counter()
            run([PYTHON, "-m", "venv", pvenv])
            run([os.path.join(pvenv, "bin", "pip"), "install", "--quiet", "--no-cache-dir", "--no-index", "--find-links", WHEELHOUSE, "-r", pins])
            pips.append(time.perf_counter() - start)

    t, u, p = statistics.median(terrarium), statistics.median(uvs), statistics.median(pips)
    print(f"\ncold build, median of {COLD_RUNS} (pip: {len(pips)}):")
    print(f"  terrarium env build            {t:8.2f} s")
    print(f"  uv venv + uv pip sync          {u:8.2f} s")
    print(f"  python -m venv + pip install   {p:8.2f} s")
    print(f"  terrarium / uv  = {t / u:.2f}x   (target <= 1.2x)")
    print(f"  pip / terrarium = {p / t:.1f}x   (target >= 10x)")

    # Warm runs: the environment is built; the uv cache of the last cold run is warm.
    warm_env = dict(base_env, TERRARIUM_CACHE_DIR=os.path.join(work, f"tc{COLD_RUNS - 1}"), UV_CACHE_DIR=os.path.join(work, f"tu{COLD_RUNS - 1}"))
    prefix = subprocess.run([BINARY, "--workspace", workspace, "env", "build", "bench"], env=warm_env, capture_output=True, text=True, check=True).stdout.strip()
    env_python = os.path.join(prefix, "bin", "python")
    uv_run = [uv, "run", "--quiet", "--no-project", "--python", PYTHON, "--no-index", "--find-links", WHEELHOUSE, "--with-requirements", pins, "python", "-c", "pass"]
    run(uv_run, env=warm_env)  # warm uv's ephemeral environment
    tr, bare, ur = [], [], []
    for _ in range(WARM_RUNS):
        tr.append(timed([BINARY, "--workspace", workspace, "run", "--env", "bench", "--", "python", "-c", "pass"], env=warm_env))
        bare.append(timed([env_python, "-c", "pass"]))
        ur.append(timed(uv_run, env=warm_env))
    tr_m, bare_m, ur_m = statistics.median(tr), statistics.median(bare), statistics.median(ur)
    print(f"\nwarm run of `python -c pass`, median of {WARM_RUNS}:")
    print(f"  terrarium run                  {tr_m * 1000:8.1f} ms")
    print(f"  bare python                    {bare_m * 1000:8.1f} ms")
    print(f"  uv run (same pins, warm)       {ur_m * 1000:8.1f} ms")
    print(f"  terrarium overhead = {(tr_m - bare_m) * 1000:.1f} ms   (target <= 5 ms)")
    print(f"  uv run / terrarium run = {ur_m / tr_m:.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
