#!/usr/bin/env python3
"""How a team server answers others while it is sent hostile definitions.

Starts `terrarium server` on a throwaway SQLite workspace, probes `/healthz` every 10 ms, and
meanwhile posts two definitions with N environment variables each at once: 90,000 (refused:
more than the 100,000 YAML nodes a definition may hold) and 45,000 (accepted). Prints each
post's status and time and the slowest `/healthz` answer during them. Before the YAML checks
became linear and moved off the async threads, two 90,000-variable posts made `/healthz` take
44 s.

Needs a built binary: `cargo build --release` (or BINARY=target/HOST/debug/terrarium).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from binary import built_binary  # benches/binary.py: where cargo put the build

BINARY = os.environ.get("BINARY") or built_binary("release")


def main():
    if not os.path.exists(BINARY):
        sys.exit(f"build first: cargo build --release ({BINARY} missing)")
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite://{tmp}/ws"
        token = json.loads(
            subprocess.check_output(
                [BINARY, "token", "create", "--db", db, "--role", "admin", "--name", "bench", "--json"]
            )
        )["token"]
        server = subprocess.Popen(
            [BINARY, "server", "--db", db, "--listen", "127.0.0.1:0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = None
            for line in server.stderr:
                match = re.search(r"listening on (http://\S+)", line)
                if match:
                    url = match.group(1)
                    break
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            for variables in (90_000, 45_000):
                run(url, token, variables)
        finally:
            server.terminate()
            server.wait()


def run(url, token, variables):
    results = []

    def post(k):
        body = json.dumps(
            {
                "definition": {
                    "name": f"big-{variables}-{k}",
                    "environment_variables": {f"V{i}": "x" for i in range(variables)},
                }
            }
        ).encode()
        started = time.time()
        request = urllib.request.Request(
            url + "/api/v1/environments",
            data=body,
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            status = urllib.request.urlopen(request, timeout=120).status
        except urllib.error.HTTPError as err:
            status = err.code
        results.append((status, time.time() - started, len(body)))

    latencies = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            started = time.time()
            urllib.request.urlopen(url + "/healthz", timeout=120).read()
            latencies.append(time.time() - started)
            time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    posts = [threading.Thread(target=post, args=(k,)) for k in range(2)]
    for p in posts:
        p.start()
    for p in posts:
        p.join()
    time.sleep(0.3)
    stop.set()
    prober.join()
    print(f"two posts of {variables:,} variables each ({results[0][2] / 1e6:.1f} MB):")
    for status, seconds, _ in results:
        print(f"  answered {status} in {seconds:.2f} s")
    print(f"  /healthz meanwhile: slowest {max(latencies) * 1000:.1f} ms of {len(latencies)} probes")


if __name__ == "__main__":
    main()
