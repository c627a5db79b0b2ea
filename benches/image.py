#!/usr/bin/env python3
"""Image builds: `terrarium image build --push` against buildah building the Dockerfile that
`terrarium image dockerfile` exports, side by side in one run, both pushing to Debian's
docker-registry on 127.0.0.1.

The environment: 33 conda packages from a local channel this script writes (three of 20 MiB of
incompressible data, thirty of 1 MiB). Measured:
  - a cold build and push of version 1;
  - a rebuild after changing one small package (version 2): time, and bytes pushed as a share
    of the image (target: under 10% and under 2 s);
  - the same two steps with buildah (vfs storage, no daemon) from the exported Dockerfiles.

Needs: `cargo build --release`; Debian's docker-registry and buildah.
"""

import bz2
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

from binary import built_binary  # benches/binary.py: where cargo put the build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("TERRARIUM_BIN") or built_binary("release")
MiB = 1024 * 1024


def conda_package(channel, name, version, files, depends=()):
    """Write NAME-VERSION-0.tar.bz2 into channel/linux-64 and return its repodata record."""
    info = {"name": name, "version": version, "build": "0", "build_number": 0,
            "depends": list(depends), "subdir": "linux-64", "license": "MIT"}
    paths = {"paths_version": 1, "paths": [
        {"_path": p, "path_type": "hardlink", "sha256": hashlib.sha256(d).hexdigest(), "size_in_bytes": len(d)}
        for p, d in files]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(path, data):
            t = tarfile.TarInfo(path)
            t.size = len(data)
            t.mtime = 0
            tar.addfile(t, io.BytesIO(data))
        add("info/index.json", json.dumps(info).encode())
        add("info/paths.json", json.dumps(paths).encode())
        add("info/files", "".join(p + "\n" for p, _ in files).encode())
        for p, d in files:
            add(p, d)
    data = bz2.compress(buf.getvalue(), 1)
    fn = f"{name}-{version}-0.tar.bz2"
    with open(os.path.join(channel, "linux-64", fn), "wb") as f:
        f.write(data)
    record = dict(info, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return fn, record


def make_channel(channel):
    os.makedirs(os.path.join(channel, "linux-64"))
    os.makedirs(os.path.join(channel, "noarch"))
    packages = {}
    names = []
    for i in range(3):
        name = f"big{i}"
        blob = os.urandom(20 * MiB)
        fn, rec = conda_package(channel, name, "1.0", [(f"share/{name}/weights.bin", blob)])
        packages[fn] = rec
        names.append(name)
    for i in range(30):
        name = f"lib{i:02d}"
        for version in ("1.0", "1.1") if i == 7 else ("1.0",):
            blob = os.urandom(MiB // 2) + (f"{name} {version}\n" * 30000).encode()[: MiB // 2]
            fn, rec = conda_package(channel, name, version, [(f"lib/{name}/data.bin", blob),
                                                            (f"share/{name}/VERSION", version.encode())])
            packages[fn] = rec
        names.append(name)
    for subdir, pkgs in (("linux-64", packages), ("noarch", {})):
        with open(os.path.join(channel, subdir, "repodata.json"), "w") as f:
            json.dump({"info": {"subdir": subdir}, "packages": pkgs, "packages.conda": {}, "repodata_version": 1}, f)
    return names


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def timed(cmd, **kw):
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stdout}\n{out.stderr}")
    return time.perf_counter() - started, out.stdout


def main():
    for tool in ("docker-registry", "buildah"):
        if not shutil.which(tool):
            raise SystemExit(f"missing {tool}: apt-get install {tool}")
    work = tempfile.mkdtemp(prefix="terrarium-bench-image-")
    env = dict(os.environ, TERRARIUM_HOME=os.path.join(work, "home"),
               TERRARIUM_CACHE_DIR=os.path.join(work, "cache"), TERRARIUM_USER="bench")
    env.pop("TERRARIUM_WORKSPACE", None)
    channel = os.path.join(work, "channel")
    names = make_channel(channel)

    def define(lib07):
        deps = "".join(f"  - {n}\n" for n in names if n != "lib07") + f"  - lib07 =={lib07}\n"
        path = os.path.join(work, "env.yml")
        with open(path, "w") as f:
            f.write(f"name: bench\nchannels:\n  - file://{channel}\ndependencies:\n{deps}")
        timed([BINARY, "env", "create", "-f", path], env=env)

    port = free_port()
    config = os.path.join(work, "registry.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    registry = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        target = f"127.0.0.1:{port}/bench"
        define("1.0")
        define("1.1")
        # Terrarium: cold build + push, then the one-package change.
        cold, out = timed([BINARY, "image", "build", "bench:1", "--push", f"{target}:v1", "--json"], env=env)
        first = json.loads(out)
        warm, out = timed([BINARY, "image", "build", "bench:2", "--push", f"{target}:v2", "--json"], env=env)
        second = json.loads(out)

        # buildah from the exported Dockerfiles, pushing to the same registry (another repository).
        storage = ["--storage-driver", "vfs", "--root", f"{work}/buildah", "--runroot", f"{work}/buildah-run"]
        b_times = []
        for version in ("1", "2"):
            ctx = os.path.join(work, f"ctx{version}")
            export, _ = timed([BINARY, "image", "dockerfile", f"bench:{version}", "--output", ctx], env=env)
            bud, _ = timed(["buildah", *storage, "bud", "--quiet", "--layers", "-t", f"localhost/bench:{version}", ctx])
            push, _ = timed(["buildah", *storage, "push", "--quiet", "--tls-verify=false",
                             f"localhost/bench:{version}", f"docker://127.0.0.1:{port}/bench-buildah:v{version}"])
            b_times.append((export, bud, push))
    finally:
        registry.terminate()
        registry.wait()

    size = first["size"]
    pushed = second["push"]["uploaded_bytes"]
    print(f"environment: {len(names)} conda packages; image {size / MiB:.1f} MiB compressed, "
          f"{len(first['layers'])} layers")
    print(f"terrarium cold build + push:           {cold:6.2f} s  ({first['push']['uploaded_blobs']} blobs, "
          f"{first['push']['uploaded_bytes'] / MiB:.1f} MiB)")
    print(f"terrarium one-package rebuild + push:  {warm:6.2f} s  ({second['push']['uploaded_blobs']} blobs, "
          f"{pushed / 1024:.1f} KiB = {100 * pushed / size:.2f}% of the image)")
    for version, (export, bud, push) in zip(("1 (cold)", "2 (one package)"), b_times):
        print(f"buildah version {version:<16} export {export:5.2f} s + bud {bud:6.2f} s + push {push:6.2f} s "
              f"= {export + bud + push:6.2f} s")
    b1 = sum(b_times[0])
    b2 = sum(b_times[1])
    print(f"ratio buildah/terrarium: cold {b1 / cold:.1f}x, one-package change {b2 / warm:.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
