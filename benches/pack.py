#!/usr/bin/env python3
"""Packs: `terrarium env pack` + `terrarium env unpack` of a 44-wheel environment, against
shipping the same wheels to an offline node by hand.

conda-pack is what packs are meant to beat, and it installs from PyPI, but it packs an existing
conda environment (it needs `conda-meta/`), and this machine cannot make one: no conda channel
is reachable. So the comparison is with what a pip or uv user ships to a node without network:
a tar of the locked wheels (what `pip download -d DIR` leaves), unpacked and installed with no
index. Every installer starts from empty caches, as on a fresh node:

  pack     terrarium env pack                   tar -cf of the same wheel files
  unpack   terrarium env unpack (cache)         tar -xf + uv venv + uv pip install --no-index --find-links
                                                tar -xf + python -m venv + pip install --no-index --find-links

The wheelhouse is build_run.py's (downloaded once from PyPI into the test-tools cache), the lock
is made by Terrarium once. Prints medians, sizes and ratios.

Needs TERRARIUM_UV (scripts/test-tools.sh) and a release build (cargo build --release).
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_run import BINARY, PYTHON, REQUIREMENTS, WHEELHOUSE, ensure_wheelhouse, run  # noqa: E402

RUNS = int(os.environ.get("RUNS", "5"))


def timed(*steps):
    """Run each (cmd, env) in turn; wall seconds and the children's CPU seconds (user + sys),
    which a busy machine disturbs less."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for cmd, env in steps:
        run(cmd, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)


def conda_pack_check(work, venv, base_env):
    """What conda-pack (from PyPI) says about a prefix that is not a conda environment."""
    tool = os.path.join(work, "conda-pack-venv")
    try:
        run([PYTHON, "-m", "venv", tool])
        run([os.path.join(tool, "bin", "pip"), "install", "--quiet", "conda-pack"], env=base_env)
    except subprocess.CalledProcessError:
        return "not installable here"
    out = subprocess.run([os.path.join(tool, "bin", "conda-pack"), "-p", venv, "-o", os.path.join(work, "cp.tar.gz")],
                         capture_output=True, text=True)
    return (out.stderr or out.stdout).strip().splitlines()[-1] if out.returncode else "packed (unexpected)"


def main():
    uv = os.environ.get("TERRARIUM_UV") or shutil.which("uv")
    if not uv:
        sys.exit("set TERRARIUM_UV (eval \"$(scripts/test-tools.sh)\")")
    if not os.path.exists(BINARY):
        sys.exit(f"build first: cargo build --release ({BINARY} missing)")
    ensure_wheelhouse()
    work = tempfile.mkdtemp(prefix="terrarium-pack-bench-")
    base_env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", TERRARIUM_UV=uv, PIP_DISABLE_PIP_VERSION_CHECK="1")

    definition = os.path.join(work, "env.yml")
    with open(definition, "w") as f:
        f.write("name: bench\npython:\n  interpreter: %s\n  pip:\n    - --no-index\n    - --find-links %s\n" % (PYTHON, WHEELHOUSE))
        for r in REQUIREMENTS:
            f.write(f"    - {r}\n")
    workspace = os.path.join(work, "ws")
    lock_env = dict(base_env, TERRARIUM_CACHE_DIR=os.path.join(work, "lockcache"), UV_CACHE_DIR=os.path.join(work, "lockuv"))
    run([BINARY, "--workspace", workspace, "env", "create", "-f", definition], env=lock_env)
    packages = json.loads(subprocess.run([BINARY, "--workspace", workspace, "env", "lock", "bench", "--json"],
                                         check=True, env=lock_env, capture_output=True, text=True).stdout)["packages"]
    pins = os.path.join(work, "pins.txt")
    with open(pins, "w") as f:
        for p in packages:
            f.write(f"{p['name']}=={p['version']}\n")

    # The wheels the lock names, as a pip user would ship them.
    first = os.path.join(work, "first.tar")
    run([BINARY, "--workspace", workspace, "env", "pack", "bench", "-o", first], env=lock_env)
    with tarfile.open(first) as t:
        manifest = json.load(t.extractfile("pack.json"))
    wheel_names = [f["name"].split("/", 1)[1] for f in manifest["files"]]
    print(f"lock: {len(packages)} packages, {len(wheel_names)} wheels, "
          f"{sum(f['size'] for f in manifest['files']) / 2**20:.1f} MiB; python {PYTHON}")

    t_pack, t_pack_zst, t_tar, t_unpack, t_uv, t_pip = [], [], [], [], [], []
    sizes = {}
    for i in range(RUNS):
        # Interleaved; each install starts from empty caches.
        out = os.path.join(work, f"bench{i}.tar")
        t_pack.append(timed(([BINARY, "--workspace", workspace, "env", "pack", "bench", "-o", out], lock_env)))
        sizes["terrarium"] = os.path.getsize(out)
        assert open(out, "rb").read() == open(first, "rb").read(), "the same lock packed to other bytes"
        zst = os.path.join(work, f"bench{i}.tar.zst")
        t_pack_zst.append(timed(([BINARY, "--workspace", workspace, "env", "pack", "bench", "--compression", "zstd", "-o", zst], lock_env)))
        sizes["terrarium-zstd"] = os.path.getsize(zst)
        wheels_tar = os.path.join(work, f"wheels{i}.tar")
        t_tar.append(timed((["tar", "-cf", wheels_tar, "-C", WHEELHOUSE, *wheel_names], None)))
        sizes["wheels tar"] = os.path.getsize(wheels_tar)

        node = dict(base_env, TERRARIUM_CACHE_DIR=os.path.join(work, f"node{i}"), UV_CACHE_DIR=os.path.join(work, f"node{i}-uv"))
        t_unpack.append(timed(([BINARY, "env", "unpack", out], node)))

        uv_env = dict(base_env, UV_CACHE_DIR=os.path.join(work, f"uv{i}-cache"))
        dest = os.path.join(work, f"uv{i}-wheels")
        os.makedirs(dest)
        venv = os.path.join(work, f"uv{i}-venv")
        t_uv.append(timed(
            (["tar", "-xf", wheels_tar, "-C", dest], None),
            ([uv, "venv", "--quiet", "--python", PYTHON, venv], uv_env),
            ([uv, "pip", "install", "--quiet", "--offline", "--no-index", "--find-links", dest, "--python",
              os.path.join(venv, "bin", "python"), "-r", pins], uv_env),
        ))

        if i < max(1, RUNS // 2):
            dest = os.path.join(work, f"pip{i}-wheels")
            os.makedirs(dest)
            pvenv = os.path.join(work, f"pip{i}-venv")
            t_pip.append(timed(
                (["tar", "-xf", wheels_tar, "-C", dest], None),
                ([PYTHON, "-m", "venv", pvenv], None),
                ([os.path.join(pvenv, "bin", "pip"), "install", "--quiet", "--no-cache-dir", "--no-index",
                  "--find-links", dest, "-r", pins], None),
            ))

    conda_pack = conda_pack_check(work, os.path.join(work, "uv0-venv"), base_env)
    def med(samples, which=0):
        return statistics.median(s[which] for s in samples)

    def row(label, samples, size=None):
        text = f"  {label:34} {med(samples):7.2f} s  {med(samples, 1):7.2f} s cpu"
        if size is not None:
            text += f"  {size / 2**20:7.1f} MiB"
        print(text)

    print(f"\npack, median of {RUNS} (wall, children's user+sys):")
    row("terrarium env pack", t_pack, sizes["terrarium"])
    row("terrarium env pack --compression zstd", t_pack_zst, sizes["terrarium-zstd"])
    row("tar -cf of the same wheels", t_tar, sizes["wheels tar"])
    print(f"\nunpack on an empty node, median of {RUNS} (pip: {len(t_pip)}):")
    row("terrarium env unpack", t_unpack)
    row("tar -x + uv venv + uv pip install", t_uv)
    row("tar -x + venv + pip install", t_pip)
    print("\nratios (wall; cpu):")
    print(f"  pack size terrarium / wheels tar     = {sizes['terrarium'] / sizes['wheels tar']:.4f}x")
    for label, mine, theirs in [
        ("unpack terrarium / uv", [t_unpack], [t_uv]),
        ("pack + unpack terrarium / tar + uv", [t_pack, t_unpack], [t_tar, t_uv]),
    ]:
        ratio = [sum(med(s, w) for s in mine) / sum(med(s, w) for s in theirs) for w in (0, 1)]
        print(f"  {label:36} = {ratio[0]:.2f}x; {ratio[1]:.2f}x")
    ratio = [(med(t_tar, w) + med(t_pip, w)) / (med(t_pack, w) + med(t_unpack, w)) for w in (0, 1)]
    print(f"  {'tar + pip / pack + unpack terrarium':36} = {ratio[0]:.1f}x; {ratio[1]:.1f}x")
    print(f"\nconda-pack 0.9 (PyPI) on the same environment: {conda_pack}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
