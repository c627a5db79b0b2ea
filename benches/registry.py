#!/usr/bin/env python3
"""Registry round trip, Terrarium vs the Azure ML SDK v1, measured side by side in one run.

For the example conda file, each side does what a user does to define an environment and read it
back:
  - Terrarium: `terrarium env create -f FILE` (register; unchanged content returns the existing
    version) and `terrarium env show NAME --json`, with a local SQLite workspace;
  - Azure ML SDK v1: `Environment.from_conda_specification(...)`, `save_to_directory(...)` and
    `Environment.load_from_directory(...)` in a fresh Python process (the SDK's registry needs the
    cloud; this is its local part).
Prints the median of each and the ratio. Needs TERRARIUM_TEST_AML_PYTHON (scripts/test-tools.sh)
and a built binary (cargo build --release).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from binary import built_binary  # benches/binary.py: where cargo put the build
BINARY = os.environ.get("TERRARIUM_BIN") or built_binary("release")
FILE = os.path.join(ROOT, "examples", "sklearn", "environment.yml")
RUNS = int(os.environ.get("RUNS", "15"))

SDK = """
import sys, tempfile, warnings
warnings.filterwarnings("ignore")
from azureml.core import Environment

env = Environment.from_conda_specification("sklearn-example", sys.argv[1])
d = tempfile.mkdtemp()
env.save_to_directory(d, overwrite=True)
Environment.load_from_directory(d)
"""


def timed(cmd, **kwargs):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def main():
    python = os.environ.get("TERRARIUM_TEST_AML_PYTHON")
    if not python:
        sys.exit("set TERRARIUM_TEST_AML_PYTHON (eval \"$(scripts/test-tools.sh)\")")
    if not os.path.exists(BINARY):
        sys.exit(f"build first: cargo build --release ({BINARY} missing)")
    workspace = tempfile.mkdtemp(prefix="terrarium-bench-")
    ws = ["--workspace", workspace]
    subprocess.run([BINARY, *ws, "env", "create", "-f", FILE], check=True, capture_output=True)
    terrarium, sdk = [], []
    for _ in range(RUNS):
        # Interleave the two so that machine noise hits both alike.
        terrarium.append(
            timed([BINARY, *ws, "env", "create", "-f", FILE])
            + timed([BINARY, *ws, "env", "show", "sklearn-example", "--json"])
        )
        sdk.append(timed([python, "-c", SDK, FILE]))
    t, s = statistics.median(terrarium), statistics.median(sdk)
    print(f"define + read back, median of {RUNS}:")
    print(f"  terrarium (create + show)                {t * 1000:8.1f} ms")
    print(f"  azureml-core (from_conda + save + load)  {s * 1000:8.1f} ms")
    print(f"  ratio: terrarium is {s / t:.1f}x faster")


if __name__ == "__main__":
    main()
