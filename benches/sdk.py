#!/usr/bin/env python3
"""The Python SDK against Microsoft's azureml-core (Azure ML SDK v1), side by side in one run.

Both sides run the same notebook cell on the same conda file:

    from terrarium.core import Environment, Workspace          # from azureml.core import ...
    env = Environment.from_conda_specification(name, "environment.yml")
    env.register(ws)
    Environment.get(ws, name)

Terrarium does it against a workspace directory (SQLite) and against a team server on loopback
(`terrarium server --db sqlite://DIR`, an admin token). azureml-core cannot do it here: its
`Workspace`, `register` and `get` talk to Azure (ARM and the environment service), and this
machine has no Azure. What azureml-core is timed doing instead is everything of the cell it can
do offline, with its own local counterparts of register and get:

    from azureml.core import Environment, Workspace
    env = Environment.from_conda_specification(name, "environment.yml")
    env.save_to_directory(d, overwrite=True)                  # instead of env.register(ws)
    Environment.load_from_directory(d)                        # instead of Environment.get(ws, name)

so azureml-core's figures leave out its network round trips and Azure's side altogether: they
are a lower bound of what the cell costs with azureml-core. No fake or unreachable Azure
endpoint is used.

Three measurements (import and end to end interleaved round by round, so that machine noise
falls on every side alike):
  import      `python -c "from terrarium.core import Environment, Workspace"` against
              `python -c "from azureml.core import Environment, Workspace"`, fresh processes
              (warm page cache and bytecode), with each interpreter's `python -c pass`;
  calls       the three calls in a process that has imported already (a notebook's second
              cell), per step, CALLS times after one untimed round, one side after the other;
  end to end  one fresh process doing the import and the three calls (a notebook's first cell,
              a script), RUNS times.
Every register makes a new environment (a new name each time), so each one is a real write.

The conda file has conda packages and a pip section, as Azure ML users write them; registering
does not lock (the SDK registers with --no-lock, as Azure ML registers without building), so
no channel or index is reached.

The SDK is installed from ./python into a venv of its own (SDK_VENV, default
~/.cache/terrarium-test-tools/sdk-bench-venv; made on first use with `python -m venv` and pip,
as azureml-core's venv is, with hatchling from PyPI, then offline), with the binary shipped in
its wheel: python/run-tests.sh's venv is not used because it is reinstalled by every test run
with the newest build, often the debug one, and the wheel's binary comes before TERRARIUM_BIN.

    set -a; . /tmp/tools.env; set +a        # or: eval "$(scripts/test-tools.sh)"
    python3 benches/sdk.py

Reads TERRARIUM_TEST_AML_PYTHON (a Python with azureml-core; scripts/test-tools.sh),
TERRARIUM_BIN (default target/HOST/release/terrarium, else target/HOST/debug), RUNS (default 15), CALLS
(default 30). Target (issue): Terrarium at least 20x faster than azureml-core end to end.
"""

import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from binary import built_binary  # benches/binary.py: where cargo put the build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get(
    "TERRARIUM_TEST_CACHE",
    os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "terrarium-test-tools"),
)
SDK_VENV = os.environ.get("SDK_VENV", os.path.join(CACHE, "sdk-bench-venv"))
RUNS = int(os.environ.get("RUNS", "15"))
CALLS = int(os.environ.get("CALLS", "30"))
HATCHLING = "hatchling==1.33.0"  # python/run-tests.sh's pin

# What an Azure ML user's environment.yml looks like: conda packages and a pip section.
CONDA_FILE = """\
name: sklearn-train
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
    - scikit-learn==1.5.2
    - numpy==1.26.4
    - pandas==2.2.3
"""

IMPORT_TERRARIUM = "from terrarium.core import Environment, Workspace"
IMPORT_AML = "from azureml.core import Environment, Workspace"

# Run in the SDK's venv: argv = mode (once|loop), workspace (directory or URL), token or "",
# conda file, name prefix, count.
TERRARIUM_CELL = """
import sys, time
mode, location, token, conda_file, prefix, count = sys.argv[1:7]
t0 = time.perf_counter()
from terrarium.core import Environment, Workspace
t1 = time.perf_counter()
ws = Workspace.connect(location, token=token) if location.startswith("http") else Workspace(location)

def cell(name):
    a = time.perf_counter()
    env = Environment.from_conda_specification(name, conda_file)
    b = time.perf_counter()
    registered = env.register(ws)
    c = time.perf_counter()
    got = Environment.get(ws, name)
    d = time.perf_counter()
    assert registered.version == got.version == "1", (registered, got)
    assert "numpy==1.26.4" in got.python.conda_dependencies.pip_packages, got.python.conda_dependencies.pip_packages
    return {"from_conda": b - a, "register": c - b, "get": d - c, "total": d - a}

if mode == "once":
    cell(prefix)
else:
    cell(prefix + "-warmup")
    rounds = [cell(f"{prefix}-{i}") for i in range(int(count))]
    import json  # only to report: a cell of the user's imports no json
    print(json.dumps({"import": t1 - t0, "rounds": rounds}))
"""

# Run with azureml-core's Python: argv = mode, conda file, scratch directory, name prefix, count.
AML_CELL = """
import os, sys, time, warnings
warnings.filterwarnings("ignore")
mode, conda_file, scratch, prefix, count = sys.argv[1:6]
t0 = time.perf_counter()
from azureml.core import Environment, Workspace
t1 = time.perf_counter()

def cell(name):
    directory = os.path.join(scratch, name)
    a = time.perf_counter()
    env = Environment.from_conda_specification(name, conda_file)
    b = time.perf_counter()
    env.save_to_directory(directory, overwrite=True)
    c = time.perf_counter()
    got = Environment.load_from_directory(directory)
    d = time.perf_counter()
    assert got.name == name
    assert "numpy==1.26.4" in list(got.python.conda_dependencies.pip_packages)
    return {"from_conda": b - a, "register": c - b, "get": d - c, "total": d - a}

if mode == "once":
    cell(prefix)
else:
    cell(prefix + "-warmup")
    rounds = [cell(f"{prefix}-{i}") for i in range(int(count))]
    import json  # only to report: a cell of the user's imports no json
    print(json.dumps({"import": t1 - t0, "rounds": rounds}))
"""


def default_binary():
    for kind in ("release", "debug"):
        path = built_binary(kind)
        if os.access(path, os.X_OK):
            return path
    return built_binary("release")


BINARY = os.path.abspath(os.environ.get("TERRARIUM_BIN") or default_binary())


def run(cmd, env=None, **kwargs):
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    return done.stdout


def timed(cmd, env=None):
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd[:3])} ...\n{done.stderr}")
    return elapsed


def sdk_venv():
    """The SDK's venv with ./python installed (again, every run) and BINARY in its wheel.

    Made as azureml-core's is (python -m venv, pip), so that both import from compiled
    bytecode and start the same way."""
    python = os.path.join(SDK_VENV, "bin", "python")
    env = dict(os.environ, TERRARIUM_BIN=BINARY, PIP_DISABLE_PIP_VERSION_CHECK="1")
    if not os.access(python, os.X_OK):
        print(f"making the SDK's venv at {SDK_VENV} (once)...", file=sys.stderr)
        run([os.path.realpath(sys.executable), "-m", "venv", SDK_VENV], env=env)
    pip = [python, "-m", "pip", "install", "-q"]
    if subprocess.run([python, "-c", "import hatchling"], capture_output=True).returncode != 0:
        run(pip + [HATCHLING], env=env)
    # No build isolation: hatchling is in the venv, so reinstalling needs no network.
    run(pip + ["--no-build-isolation", "--no-deps", "--force-reinstall", os.path.join(ROOT, "python")], env=env)
    shipped = os.path.join(SDK_VENV, "bin", "terrarium")
    if not (os.path.isfile(shipped) and filecmp.cmp(shipped, BINARY, shallow=False)):
        sys.exit(f"the SDK installed in {SDK_VENV} does not ship {BINARY}")
    return python


class Server:
    """`terrarium server` on SQLite, on a free loopback port."""

    def __init__(self, directory, env):
        db = f"sqlite://{directory}"
        self.process = subprocess.Popen(
            [BINARY, "server", "--db", db, "--listen", "127.0.0.1:0"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        found, ready = [], threading.Event()
        self.log = []

        def read():
            prefix = "terrarium server listening on "
            for line in self.process.stderr:
                self.log.append(line)
                if line.startswith(prefix):
                    found.append(line[len(prefix):].strip())
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or not found:
            self.stop()
            sys.exit("the server did not start")
        self.url = found[0]
        answer = run([BINARY, "token", "create", "--db", db, "--role", "admin", "--name", "bench", "--json"], env=env)
        self.token = json.loads(answer)["token"]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def median_ms(values):
    return statistics.median(values) * 1000


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def main():
    aml = os.environ.get("TERRARIUM_TEST_AML_PYTHON")
    if not aml:
        sys.exit("set TERRARIUM_TEST_AML_PYTHON (set -a; . /tmp/tools.env; set +a, or eval \"$(scripts/test-tools.sh)\")")
    if not os.access(BINARY, os.X_OK):
        sys.exit(f"no terrarium binary at {BINARY}: cargo build --release, or set TERRARIUM_BIN")
    python = sdk_venv()
    work = tempfile.mkdtemp(prefix="terrarium-bench-sdk-")
    server = None
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("TERRARIUM_WORKSPACE", "TERRARIUM_TOKEN")}
        env.update(
            TERRARIUM_BIN=BINARY,
            TERRARIUM_HOME=os.path.join(work, "home"),
            TERRARIUM_CONFIG=os.path.join(work, "no-config.toml"),
            TERRARIUM_CACHE_DIR=os.path.join(work, "cache"),
            TERRARIUM_USER="bench",
        )
        conda_file = os.path.join(work, "environment.yml")
        with open(conda_file, "w") as f:
            f.write(CONDA_FILE)
        local = os.path.join(work, "workspace")
        server = Server(os.path.join(work, "server-db"), env)
        scratch = os.path.join(work, "aml")
        os.makedirs(scratch)

        versions = run([python, "-c", "import sys, terrarium; print(sys.version.split()[0], terrarium.__version__)"], env=env).split()
        aml_version = run([aml, "-c", "import sys, warnings; warnings.filterwarnings('ignore'); "
                           "import azureml.core; print(sys.version.split()[0], azureml.core.VERSION)"]).split()
        commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip()
        print(f"terrarium SDK {versions[1]} (checkout {commit}), Python {versions[0]}, binary {BINARY}")
        print(f"azureml-core {aml_version[1]}, Python {aml_version[0]}")
        print(f"load average at start: {loadavg()} ({os.cpu_count()} cores)")

        # -- import, fresh processes ---------------------------------------------------------
        commands = {
            "terrarium": [python, "-c", IMPORT_TERRARIUM],
            "azureml": [aml, "-W", "ignore", "-c", IMPORT_AML],
            "sdk python": [python, "-c", "pass"],
            "aml python": [aml, "-c", "pass"],
        }
        for cmd in commands.values():
            timed(cmd, env)  # bytecode written, files in the page cache
        imports = {key: [] for key in commands}
        for _ in range(RUNS):
            for key, cmd in commands.items():
                imports[key].append(timed(cmd, env))
        t_imp, a_imp = median_ms(imports["terrarium"]), median_ms(imports["azureml"])
        print(f"\nimport, fresh process, median of {RUNS}:")
        print(f"  {IMPORT_TERRARIUM:52s} {t_imp:8.1f} ms")
        print(f"  {IMPORT_AML:52s} {a_imp:8.1f} ms")
        print(f"  {'python -c pass (SDK venv / azureml venv)':52s} {median_ms(imports['sdk python']):8.1f} / "
              f"{median_ms(imports['aml python']):.1f} ms")
        print(f"  azureml-core / terrarium = {a_imp / t_imp:.1f}x")

        # -- the calls, in a process that has imported already ---------------------------------
        sides = {
            "terrarium, directory": lambda p, mode, n: [python, "-c", TERRARIUM_CELL, mode, local, "", conda_file, p, str(n)],
            "terrarium, server": lambda p, mode, n: [python, "-c", TERRARIUM_CELL, mode, server.url, server.token, conda_file, p, str(n)],
            "azureml-core, offline": lambda p, mode, n: [aml, "-W", "ignore", "-c", AML_CELL, mode, conda_file, scratch, p, str(n)],
        }
        warm = {}
        for index, (key, command) in enumerate(sides.items()):
            warm[key] = json.loads(run(command(f"calls{index}", "loop", CALLS), env=env))["rounds"]
        print(f"\ncalls after the import (one process each, median of {CALLS} after one untimed round), ms:")
        print(f"  {'':24s} {'from_conda':>10s} {'register':>10s} {'get':>10s} {'total':>10s}")
        for key, rounds in warm.items():
            cells = " ".join(f"{median_ms([r[step] for r in rounds]):10.1f}" for step in ("from_conda", "register", "get", "total"))
            print(f"  {key:24s} {cells}")
        print("  (azureml-core: register = save_to_directory, get = load_from_directory; no Azure)")
        a_calls = median_ms([r["total"] for r in warm["azureml-core, offline"]])
        for key in ("terrarium, directory", "terrarium, server"):
            t_calls = median_ms([r["total"] for r in warm[key]])
            print(f"  azureml-core offline / {key} = {a_calls / t_calls:.2f}x")

        # -- end to end: import and the calls in one fresh process -----------------------------
        e2e = {key: [] for key in sides}
        for i in range(RUNS):
            for index, (key, command) in enumerate(sides.items()):
                e2e[key].append(timed(command(f"e2e{index}-{i}", "once", 0), env))
        print(f"\nend to end, fresh process (import + from_conda_specification + register + get), median of {RUNS}:")
        for key, values in e2e.items():
            print(f"  {key:24s} {median_ms(values):8.1f} ms")
        a_e2e = median_ms(e2e["azureml-core, offline"])
        for key in ("terrarium, directory", "terrarium, server"):
            ratio = a_e2e / median_ms(e2e[key])
            verdict = "met" if ratio >= 20 else "NOT met"
            print(f"  azureml-core offline / {key} = {ratio:.1f}x   (target >= 20x: {verdict})")
        print(f"\nload average at end: {loadavg()}")
    except SystemExit:
        if server is not None and server.process.poll() is not None:
            print(f"the server had exited with code {server.process.returncode}; its last lines:\n"
                  + "".join(server.log[-20:]), file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
