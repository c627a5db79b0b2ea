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
  pack  the same two with `delivery=pack`: the node builds from the pack into its own cache
        (warm: already built there; cold: an empty node cache, the pack already written)

Both sides use a warm uv cache for the wheels: "cold" means the environment is not on the node.

Slurm 22.05 starts a batch job only from slurmctld's background scheduler, which runs about
once a second: a job waits 0-1 s for it, depending on when in that second it was submitted, then
launches in about 25 ms. Measurements one after the other would all fall at the same point of
that second (each starts right after the last job ended, just after a tick), and hide any
difference under a second. So each round starts its measurements at one phase of the wall-clock
second, the same for every side (in an order that rotates from round to round), and the rounds
spread the phases evenly over the second. The mean over the rounds is then what a command
started at a random moment costs on average, to within 1/ROUNDS s: time a side spends before it
calls `sbatch` shows as the share of rounds in which a tick falls inside it (each such round
waits a whole second more), so per-round differences and medians show only what happens after
the submission, and only the means compare whole commands.

Ray (with TERRARIUM_TEST_RAY_ADDRESS and TERRARIUM_TEST_RAY_TOKEN_FILE, from
`eval "$(scripts/ray.sh start DIR)"`): job submit to first output line, `terrarium run --target
ray` against Ray's own `runtime_env` with `pip` and with `uv` for the same pins from the same
wheelhouse, each warm (the environment made before) and cold (a new one: Terrarium with an empty
cache, Ray with a runtime_env it has not seen). Targets: warm no slower than Ray's warm; cold at
least 2x faster than runtime_env uv.

Many nodes (`python3 benches/compute.py --nodes`, this section alone): the time to get the
environment onto 2 nodes against 1 node, on the two-node Slurm of scripts/nodes.sh
(TERRARIUM_TEST_NODES_SLURM_CONF, or this script starts one with NODES_ENGINES=slurm; needs root),
delivery=pack, the same 44-wheel lock: `terrarium run --target ... --nodes 2` against `--nodes 1`,
from the command to the job's end (attached, so every task has printed its line), interleaved,
cold (an empty node cache on every node: each node builds from the pack, the nodes at the same
time) and warm. Target: 2 nodes / 1 node close to 1.0, which it is if the nodes build in parallel.

Needs: `cargo build --release`, `eval "$(scripts/test-tools.sh)"` (TERRARIUM_UV).
"""

import glob
import json
import urllib.request
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
WARM_RUNS = int(os.environ.get("WARM_RUNS", "40"))
COLD_RUNS = int(os.environ.get("COLD_RUNS", "10"))
PRINT = "import sys; print('first line', flush=True)"


def first_line_from_terrarium(cmd, env):
    """Seconds from start until the command prints the script's first line; it is then waited for."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Lines before it (a Spark driver's own log, say) are not the script's.
    line = proc.stdout.readline()
    while line and "first line" not in line:
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


def at_phase(fraction):
    """Wait until the wall clock is `fraction` of the way through a second (0 <= fraction < 1)."""
    now = time.time()
    wait = (fraction - now % 1.0) % 1.0
    time.sleep(wait if wait > 0.02 else wait + 1.0)


def phases(rounds):
    """Evenly spread phases of a second, one per round."""
    return [(i + 0.5) / rounds for i in range(rounds)]


def main():
    if "--nodes" in sys.argv[1:]:
        return nodes_main()
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
        # Slurm's own floor: a job that only prints, submitted and polled the same way.
        floor_script = os.path.join(work, "floor.sh")
        with open(floor_script, "w") as f:
            f.write("#!/bin/bash\necho first line\n")
        out = os.path.join(work, "job.out")
        run = [BINARY, *ws, "run", "--env", "bench", "--target", "bench", "--", "python", "-c", PRINT]

        # delivery=pack: the pack is written by the first run; each cold run gets a new node cache.
        shared = os.path.join(work, "shared")

        def add_packed(name, node):
            subprocess.run([BINARY, *ws, "compute", "add", name, "--kind", "slurm", "--set", f"conf={conf}",
                            "--set", "delivery=pack", "--set", f"cache={shared}",
                            "--set", f"node_cache={os.path.join(work, node)}"], env=env, check=True, capture_output=True)
            return [BINARY, *ws, "run", "--env", "bench", "--target", name, "--", "python", "-c", PRINT]

        packed = add_packed("packed", "node-warm")

        # Warm: each environment is built once first; the three sides interleaved.
        first_line_from_terrarium(run, env)
        first_line_from_terrarium(packed, env)
        first_line_from_sbatch(warm_script, out, env)
        def rounds(count, sides):
            """Each side once per round, all at the round's phase, in an order that rotates."""
            results = {name: [] for name, _ in sides}
            for index, phase in enumerate(phases(count)):
                shift = index % len(sides)
                for name, measure in sides[shift:] + sides[:shift]:
                    at_phase(phase)
                    results[name].append(measure(index))
            return results

        warm = rounds(WARM_RUNS, [
            ("terrarium", lambda i: first_line_from_terrarium(run, env)),
            ("sbatch", lambda i: first_line_from_sbatch(warm_script, out, env)),
            ("pack", lambda i: first_line_from_terrarium(packed, env)),
        ])
        packed_cold = [add_packed(f"packed{i}", f"node-{i}") for i in range(COLD_RUNS)]
        cold = rounds(COLD_RUNS, [
            ("floor", lambda i: first_line_from_sbatch(floor_script, out, env)),
            ("terrarium", lambda i: first_line_from_terrarium(
                run, dict(env, TERRARIUM_CACHE_DIR=os.path.join(work, f"cold-cache-{i}")))),
            ("sbatch", lambda i: first_line_from_sbatch(cold_script, out, env)),
            ("pack", lambda i: first_line_from_terrarium(packed_cold[i], env)),
        ])
        t_warm, s_warm, p_warm = warm["terrarium"], warm["sbatch"], warm["pack"]
        t_cold, s_cold, p_cold, floor = cold["terrarium"], cold["sbatch"], cold["pack"], cold["floor"]

        mean = statistics.mean
        tw, sw, pw = mean(t_warm), mean(s_warm), mean(p_warm)
        tc, sc, pc, fl = mean(t_cold), mean(s_cold), mean(p_cold), mean(floor)
        print(f"lock: {len(lock['packages'])} packages; Slurm {subprocess.run(['sinfo', '--version'], env=env, capture_output=True, text=True).stdout.strip()}")
        print(f"\nsubmit to first output line, environment on the node, mean of {WARM_RUNS} rounds "
              f"(to within {1000 / WARM_RUNS:.0f} ms):")
        print(f"  terrarium run --target slurm        {tw * 1000:8.0f} ms   (median {statistics.median(t_warm) * 1000:.0f})")
        print(f"  sbatch, prebuilt venv activated     {sw * 1000:8.0f} ms   (median {statistics.median(s_warm) * 1000:.0f})")
        print(f"  terrarium - sbatch = {(tw - sw) * 1000:+.0f} ms   (target <= +100 ms)")
        pairs = sorted(t - s for t, s in zip(t_warm, s_warm))
        print(f"  after the submission only (median of the rounds' differences): {statistics.median(pairs) * 1000:+.0f} ms")
        print(f"\nsubmit to first output line, environment not on the node, mean of {COLD_RUNS} rounds "
              f"(to within {1000 / COLD_RUNS:.0f} ms):")
        print(f"  terrarium run --target slurm        {tc:8.2f} s   (median {statistics.median(t_cold):.2f})")
        print(f"  sbatch, uv venv + uv pip install    {sc:8.2f} s   (median {statistics.median(s_cold):.2f})")
        print(f"  terrarium / sbatch+uv = {tc / sc:.2f}x   (target <= 0.5x)")
        print(f"  sbatch of `echo` (Slurm's own floor) {fl:8.2f} s")
        print(f"  above the floor: terrarium {tc - fl:.2f} s, uv {sc - fl:.2f} s"
              f"   (0.5x end to end needs terrarium <= {sc / 2:.2f} s, {sc / 2 - fl:+.2f} s over the floor)")
        print(f"\ndelivery=pack (the node builds from the pack into its own cache), means:")
        print(f"  warm: {pw * 1000:8.0f} ms   (pack - sbatch = {(pw - sw) * 1000:+.0f} ms; shared - sbatch = {(tw - sw) * 1000:+.0f} ms)")
        print(f"  cold: {pc:8.2f} s    (pack / sbatch+uv = {pc / sc:.2f}x; shared / sbatch+uv = {tc / sc:.2f}x)")

        if os.environ.get("TERRARIUM_TEST_SPARK_WHEELS"):
            spark_section(work, ws, env, uv)
        else:
            print("\nspark: skipped (set TERRARIUM_TEST_SPARK_WHEELS: scripts/test-tools.sh)")

        if os.environ.get("TERRARIUM_TEST_RAY_ADDRESS"):
            ray_section(work, ws, env, pins)
        else:
            print("\nray: skipped (set TERRARIUM_TEST_RAY_ADDRESS: eval \"$(scripts/ray.sh start DIR)\")")
    finally:
        if started_cluster:
            subprocess.run([os.path.join(ROOT, "scripts", "slurm.sh"), "stop", started_cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def ray_request(address, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(address + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read() or b"null")


def first_line_from_ray(address, token, runtime_env):
    """Seconds from submitting a job with Ray's own runtime_env until its log has the first line."""
    start = time.perf_counter()
    job = ray_request(address, token, "POST", "/api/jobs/", {
        "entrypoint": f"python -c \"{PRINT}\"", "runtime_env": runtime_env})["submission_id"]
    while True:
        logs = ray_request(address, token, "GET", f"/api/jobs/{job}/logs")["logs"]
        if "first line" in logs:
            elapsed = time.perf_counter() - start
            break
        status = ray_request(address, token, "GET", f"/api/jobs/{job}")["status"]
        if status in ("FAILED", "STOPPED"):
            raise SystemExit(f"ray job {job} {status}: {logs}")
        if time.perf_counter() - start > 900:
            raise SystemExit(f"ray job {job} printed nothing")
        time.sleep(0.02)
    while ray_request(address, token, "GET", f"/api/jobs/{job}")["status"] not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(0.05)
    return elapsed


def ray_section(work, ws, env, pins):
    address = os.environ["TERRARIUM_TEST_RAY_ADDRESS"].rstrip("/")
    token_file = os.environ.get("TERRARIUM_TEST_RAY_TOKEN_FILE")
    token = open(token_file).read().strip() if token_file else None
    add = [BINARY, *ws, "compute", "add", "ray", "--kind", "ray", "--set", f"address={address}"]
    if token_file:
        add += ["--set", f"token_file={token_file}"]
    subprocess.run(add, env=env, check=True, capture_output=True)
    run = [BINARY, *ws, "run", "--env", "bench", "--target", "ray", "--", "python", "-c", PRINT]
    packages = [line.strip() for line in open(pins) if line.strip()]
    wheelhouse = build_run.WHEELHOUSE

    def pip_env(i):
        # `--retries` changes nothing here (no index is asked) but makes a runtime_env Ray has not seen.
        return {"pip": {"packages": packages, "pip_install_options": ["--no-index", "--find-links", wheelhouse, "--retries", str(5 + i)]}}

    def uv_env(i):
        return {"uv": {"packages": packages, "uv_pip_install_options": ["--no-index", "--find-links", wheelhouse, "--exclude-newer", f"2031-01-{i + 1:02d}T00:00:00Z"]}}

    first_line_from_terrarium(run, env)
    warm = {"terrarium": [], "runtime_env pip": [], "runtime_env uv": []}
    first_line_from_ray(address, token, pip_env(100))
    first_line_from_ray(address, token, uv_env(27))
    for _ in range(RAY_WARM_RUNS):
        warm["terrarium"].append(first_line_from_terrarium(run, env))
        warm["runtime_env pip"].append(first_line_from_ray(address, token, pip_env(100)))
        warm["runtime_env uv"].append(first_line_from_ray(address, token, uv_env(27)))
    cold = {"terrarium": [], "runtime_env pip": [], "runtime_env uv": []}
    for i in range(RAY_COLD_RUNS):
        cold_env = dict(env, TERRARIUM_CACHE_DIR=os.path.join(work, f"ray-cold-cache-{i}"))
        cold["terrarium"].append(first_line_from_terrarium(run, cold_env))
        cold["runtime_env pip"].append(first_line_from_ray(address, token, pip_env(i)))
        cold["runtime_env uv"].append(first_line_from_ray(address, token, uv_env(i)))
    version = ray_request(address, token, "GET", "/api/version")
    print(f"\nray {version.get('ray_version')}: job submit to first output line")
    print(f"  warm, median of {RAY_WARM_RUNS}:")
    for name, times in warm.items():
        print(f"    {name:<22} {statistics.median(times) * 1000:8.0f} ms")
    print(f"    terrarium / runtime_env uv = {statistics.median(warm['terrarium']) / statistics.median(warm['runtime_env uv']):.2f}x,"
          f" / runtime_env pip = {statistics.median(warm['terrarium']) / statistics.median(warm['runtime_env pip']):.2f}x   (target <= 1x)")
    print(f"  cold, median of {RAY_COLD_RUNS}:")
    for name, times in cold.items():
        print(f"    {name:<22} {statistics.median(times):8.2f} s")
    print(f"    runtime_env uv / terrarium = {statistics.median(cold['runtime_env uv']) / statistics.median(cold['terrarium']):.2f}x,"
          f" runtime_env pip / terrarium = {statistics.median(cold['runtime_env pip']) / statistics.median(cold['terrarium']):.2f}x   (target >= 2x)")


FIRST_TASK = ("from pyspark.sql import SparkSession\n"
              "spark = SparkSession.builder.getOrCreate()\n"
              "spark.sparkContext.parallelize([1], 1).map(lambda x: x).collect()\n"
              "print('first line: first task done', flush=True)\n"
              "spark.stop()\n")


def spark_section(work, ws, env, uv):
    """Submit to the first executor task in local mode: terrarium against spark-submit from a
    venv prebuilt with the same pyspark (warm), and against building that venv first (cold)."""
    wheels = os.environ["TERRARIUM_TEST_SPARK_WHEELS"]
    senv = dict(env, SPARK_LOCAL_IP="127.0.0.1")
    definition = os.path.join(work, "spark.yml")
    with open(definition, "w") as f:
        f.write(f"name: sparkbench\npython:\n  interpreter: {PYTHON}\n  pip:\n    - --no-index\n    - --find-links {wheels}\n    - pyspark\n")
    subprocess.run([BINARY, *ws, "env", "create", "-f", definition], env=senv, check=True, capture_output=True)
    subprocess.run([BINARY, *ws, "compute", "add", "sparklocal", "--kind", "spark", "--set", "master=local[2]",
                    "--set", "conf=spark.ui.enabled=false"], env=senv, check=True, capture_output=True)
    job = os.path.join(work, "first_task.py")
    with open(job, "w") as f:
        f.write(FIRST_TASK)
    venv = os.path.join(work, "spark-venv")
    subprocess.run([uv, "venv", "--quiet", "--python", PYTHON, venv], env=senv, check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", os.path.join(venv, "bin", "python"), "--no-index",
                    "--find-links", wheels, "pyspark"], env=senv, check=True)
    vpy = os.path.join(venv, "bin", "python")
    direct = [os.path.join(venv, "bin", "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
              "--conf", f"spark.pyspark.python={vpy}", job]
    run = [BINARY, *ws, "run", "--env", "sparkbench", "--target", "sparklocal", "--", job]
    # The venv activated, as a user's job script would (spark-submit finds pyspark through PATH).
    venv_env = dict(senv, PATH=os.path.join(venv, "bin") + os.pathsep + senv["PATH"], VIRTUAL_ENV=venv)
    cold_script = os.path.join(work, "spark-cold.sh")
    with open(cold_script, "w") as f:
        f.write("#!/bin/bash\nset -e\nV=$(mktemp -d)/venv\n"
                f"{uv} venv --quiet --python {PYTHON} $V\n"
                f"{uv} pip install --quiet --python $V/bin/python --no-index --find-links {wheels} pyspark\n"
                "export PATH=$V/bin:$PATH VIRTUAL_ENV=$V\n"
                f"exec $V/bin/spark-submit --master 'local[2]' --conf spark.ui.enabled=false --conf spark.pyspark.python=$V/bin/python {job}\n")
    os.chmod(cold_script, 0o755)
    first_line_from_terrarium(run, senv)
    first_line_from_terrarium(direct, venv_env)
    warm_t, warm_d = [], []
    for _ in range(SPARK_RUNS):
        warm_t.append(first_line_from_terrarium(run, senv))
        warm_d.append(first_line_from_terrarium(direct, venv_env))
    cold_t, cold_d = [], []
    for i in range(SPARK_RUNS):
        cold_env = dict(senv, TERRARIUM_CACHE_DIR=os.path.join(work, f"spark-cold-{i}"))
        cold_t.append(first_line_from_terrarium(run, cold_env))
        cold_d.append(first_line_from_terrarium([cold_script], senv))
    print(f"\nspark local[2]: submit to the first executor task done, median of {SPARK_RUNS}:")
    print(f"  warm  terrarium run --target spark     {statistics.median(warm_t):6.2f} s")
    print(f"        spark-submit, prebuilt venv      {statistics.median(warm_d):6.2f} s")
    print(f"        terrarium - spark-submit = {(statistics.median(warm_t) - statistics.median(warm_d)) * 1000:+.0f} ms")
    print(f"  cold  terrarium run --target spark     {statistics.median(cold_t):6.2f} s")
    print(f"        uv venv + install + spark-submit {statistics.median(cold_d):6.2f} s")
    print(f"        terrarium / uv+spark-submit = {statistics.median(cold_t) / statistics.median(cold_d):.2f}x")


def timed(cmd, env):
    """Seconds from start until the command ends (it must succeed), and its stdout."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def node_builds(nodes_dir, node_cache_dir):
    """Each node's build of the environment in NODE_CACHE_DIR (a directory under the nodes' own
    cache, as this machine sees it in the node's backing directory): (node, start, end), from the
    build's record: written at its end, with how long it took."""
    found = []
    for node in sorted(os.listdir(os.path.join(nodes_dir, "nodes"))):
        envs = os.path.join(nodes_dir, "nodes", node, "cache", node_cache_dir, "envs")
        if not os.path.isdir(envs):
            continue
        for key in os.listdir(envs):
            record = os.path.join(envs, key, ".terrarium", "env.json")
            if os.path.isfile(record):
                end = os.stat(record).st_mtime
                with open(record) as f:
                    found.append((node, end - json.load(f)["build_seconds"], end))
    return found


def nodes_main():
    """2 nodes against 1 node, delivery=pack, on scripts/nodes.sh's Slurm (see the docstring)."""
    uv = os.environ.get("TERRARIUM_UV") or shutil.which("uv")
    if not uv:
        sys.exit('set TERRARIUM_UV (eval "$(scripts/test-tools.sh)")')
    if not os.path.exists(BINARY):
        sys.exit(f"build first: cargo build --release ({BINARY} missing)")
    build_run.ensure_wheelhouse()
    work = tempfile.mkdtemp(prefix="terrarium-bench-nodes-")
    started_cluster = None
    conf = os.environ.get("TERRARIUM_TEST_NODES_SLURM_CONF")
    nodes_dir = os.environ.get("TERRARIUM_TEST_NODES_DIR")
    node_cache = os.environ.get("TERRARIUM_TEST_NODES_NODE_CACHE")
    if not conf:
        started_cluster = os.path.join(work, "nodes")
        out = subprocess.run([os.path.join(ROOT, "scripts", "nodes.sh"), "start", started_cluster],
                             env=dict(os.environ, NODES_ENGINES="slurm"), check=True, capture_output=True, text=True).stdout
        found = dict(kv.split("=", 1) for line in out.splitlines() for kv in line.removeprefix("export ").split())
        conf, nodes_dir = found["TERRARIUM_TEST_NODES_SLURM_CONF"], found["TERRARIUM_TEST_NODES_DIR"]
        node_cache = found["TERRARIUM_TEST_NODES_NODE_CACHE"]
    pinned = False
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
        lock = json.loads(subprocess.run([BINARY, *ws, "env", "lock", "bench", "--json"], env=env, check=True,
                                         capture_output=True, text=True).stdout)
        shared = os.path.join(work, "shared")
        # Each node cache is a directory of its own under the nodes' cache: on each node, that
        # node's disk (only it sees it).
        made = []

        def target(name):
            sub = f"terrarium-bench-{os.getpid()}-{name}"
            made.append(sub)
            subprocess.run([BINARY, *ws, "compute", "add", name, "--kind", "slurm", "--set", f"conf={conf}",
                            "--set", "delivery=pack", "--set", f"cache={shared}",
                            "--set", f"node_cache={node_cache}/{sub}"], env=env, check=True, capture_output=True)
            return sub

        def run(name, nodes):
            return [BINARY, *ws, "run", "--env", "bench", "--target", name, "--nodes", str(nodes),
                    "--", "python", "-c", PRINT]

        # The pack, written once by a first run (on one node, its cache then thrown away), and
        # the warm caches: the environment built on both nodes.
        target("pack")
        timed(run("pack", 1), env)
        target("warm")
        timed(run("warm", 2), env)
        timed(run("warm", 1), env)
        print(f"lock: {len(lock['packages'])} packages; delivery=pack; Slurm on scripts/nodes.sh's two nodes;"
              f" {os.cpu_count()} cores on this machine")

        def measure(tag, how):
            warm = {1: [], 2: []}
            for i in range(NODES_WARM_RUNS):
                for n in ((1, 2) if i % 2 == 0 else (2, 1)):
                    elapsed, out = timed(run("warm", n), env)
                    assert out.count("first line") == n, out
                    warm[n].append(elapsed)
            cold = {1: [], 2: []}
            overlaps = []
            # Each node's build (seconds, from its record): on 1 node, and on each of 2.
            build_seconds = {1: [], 2: []}
            for i in range(NODES_COLD_RUNS):
                for n in ((1, 2) if i % 2 == 0 else (2, 1)):
                    name = f"cold{tag}{n}x{i}"
                    sub = target(name)
                    elapsed, out = timed(run(name, n), env)
                    assert out.count("first line") == n, out
                    cold[n].append(elapsed)
                    if nodes_dir:
                        builds = node_builds(nodes_dir, sub)
                        assert len(builds) == n, builds
                        build_seconds[n].extend(end - start for _, start, end in builds)
                        if n == 2:
                            (_, s0, e0), (_, s1, e1) = builds
                            overlaps.append((min(e0, e1) - max(s0, s1)) / max(e0 - s0, e1 - s1))
            w1, w2 = statistics.median(warm[1]), statistics.median(warm[2])
            c1, c2 = statistics.median(cold[1]), statistics.median(cold[2])
            print(f"\n{how}: `terrarium run --nodes N` to the job's end (every task printed its line):")
            print(f"  cold (empty node caches), median of {NODES_COLD_RUNS}:  1 node {c1:6.2f} s   2 nodes {c2:6.2f} s"
                  f"   2 nodes / 1 node = {c2 / c1:.2f}x   (target close to 1.0)")
            print(f"  warm (built on the nodes), median of {NODES_WARM_RUNS}: 1 node {w1:6.2f} s   2 nodes {w2:6.2f} s"
                  f"   2 nodes / 1 node = {w2 / w1:.2f}x")
            print(f"  the environment onto the nodes (cold - warm): 1 node {c1 - w1:6.2f} s   2 nodes {c2 - w2:6.2f} s"
                  f"   = {(c2 - w2) / (c1 - w1):.2f}x")
            if overlaps:
                print(f"  each node's build from the pack, median: on 1 node {statistics.median(build_seconds[1]):.2f} s,"
                      f" on each of 2 {statistics.median(build_seconds[2]):.2f} s;"
                      f" the two nodes' builds overlapped for {statistics.median(overlaps) * 100:.0f}% of the longer one"
                      " (100% = fully parallel)")
            print("  all runs: " + json.dumps({"cold": cold, "warm": warm}))

        measure("s", "both nodes on both cores")
        # Then each node on a core of its own, as real nodes have their own CPUs: each node's
        # slurmd (and so every job step it starts) pinned to one core.
        slurmds = sorted(glob.glob(os.path.join(nodes_dir or "", "slurm", "slurmd-*.pid")))
        if nodes_dir and len(slurmds) == 2 and (os.cpu_count() or 1) >= 2:
            pinned = True
            for core, pidfile in enumerate(slurmds):
                subprocess.run(["taskset", "-a", "-p", "-c", str(core), open(pidfile).read().strip()],
                               check=True, capture_output=True)
            measure("p", "each node's slurmd pinned to a core of its own")
    finally:
        if pinned:
            for pidfile in glob.glob(os.path.join(nodes_dir, "slurm", "slurmd-*.pid")):
                subprocess.run(["taskset", "-a", "-p", "-c", f"0-{(os.cpu_count() or 1) - 1}", open(pidfile).read().strip()],
                               capture_output=True)
        if started_cluster:
            subprocess.run([os.path.join(ROOT, "scripts", "nodes.sh"), "stop", started_cluster], capture_output=True)
        elif nodes_dir:
            for node in os.listdir(os.path.join(nodes_dir, "nodes")):
                for sub in made:
                    shutil.rmtree(os.path.join(nodes_dir, "nodes", node, "cache", sub), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


NODES_WARM_RUNS = int(os.environ.get("NODES_WARM_RUNS", "5"))
NODES_COLD_RUNS = int(os.environ.get("NODES_COLD_RUNS", "3"))
SPARK_RUNS = int(os.environ.get("SPARK_RUNS", "3"))
RAY_WARM_RUNS = int(os.environ.get("RAY_WARM_RUNS", "5"))
RAY_COLD_RUNS = int(os.environ.get("RAY_COLD_RUNS", "2"))


if __name__ == "__main__":
    main()
