#!/usr/bin/env python3
"""Team server throughput and latency, Terrarium vs the MLflow model-registry server, side by side.

Both servers run on loopback on a SQLite store, and each side does the analogous operations:
  - GET of one version: Terrarium `GET /api/v1/environments/bench/versions/1` (with a bearer
    token, so authentication is part of every request) vs MLflow
    `GET /api/2.0/mlflow/model-versions/get?name=bench&version=1`;
  - registration at concurrency 16: Terrarium `POST /api/v1/environments` with a changed
    definition each time (a new version each) vs MLflow `POST /api/2.0/mlflow/model-versions/create`.
Load comes from wrk (Debian) with 16 connections; then a fixed 1,000 req/s GET load from a
Python client measures Terrarium's p99 at that rate.

Needs: `apt-get install wrk`, `cargo build --release`, and mlflow in MLFLOW_VENV (default
~/.cache/terrarium-bench-mlflow: `python3 -m venv DIR && DIR/bin/pip install mlflow`).
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from binary import built_binary  # benches/binary.py: where cargo put the build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("TERRARIUM_BIN") or built_binary("release")
MLFLOW_VENV = os.environ.get("MLFLOW_VENV", os.path.expanduser("~/.cache/terrarium-bench-mlflow"))
DURATION = os.environ.get("DURATION", "10s")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(port, path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on {port} did not come up")


def wrk(url, headers, script=None):
    cmd = ["wrk", "-t2", "-c16", "-d" + DURATION, "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


POST_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format(BODY, counter, math.random(1, 1000000000))
  return wrk.format("POST", "PATH", {["Content-Type"] = "application/json", ["Authorization"] = "AUTH"}, body)
end
"""


def fixed_rate(port, path, headers, rate=1000, seconds=10, threads=8):
    """Send `rate` requests per second for `seconds`; return latencies in ms and the rate
    achieved. With `hey` (Debian) the load comes from it: a Python client's own scheduling
    (8 threads sharing the GIL) adds milliseconds of its own to the tail."""
    if shutil.which("hey"):
        return fixed_rate_hey(port, path, headers, rate, seconds, threads)
    latencies = []
    lock = threading.Lock()
    per_thread = rate / threads
    start = time.perf_counter() + 0.2

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port)
        mine = []
        n = int(per_thread * seconds)
        for i in range(n):
            due = start + i / per_thread
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    return latencies, len(latencies) / elapsed


VERSIONS = int(os.environ.get("VERSIONS", "10000"))


def top_up(port, headers, count, threads=8):
    """Register `count` more versions of `bench` (8 clients); return how many were made."""
    if count <= 0:
        return 0
    made = []
    lock = threading.Lock()

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        n = 0
        for i in range(k, count, threads):
            body = {"definition": {"name": "bench", "python": {"version": "3.11", "pip": [{"spec": f"topup{i}==1.0"}]}}}
            conn.request("POST", "/api/v1/environments", json.dumps(body), headers)
            r = conn.getresponse()
            r.read()
            assert r.status == 201, r.status
            n += 1
        with lock:
            made.append(n)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(made)


def fixed_rate_hey(port, path, headers, rate, seconds, workers):
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate / workers), "-o", "csv"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    latencies = []
    for line in out.splitlines()[1:]:
        fields = line.split(",")
        if len(fields) > 6 and fields[0]:
            assert fields[6] == "200", line
            latencies.append(float(fields[0]) * 1000)
    return latencies, len(latencies) / seconds


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    mlflow = os.path.join(MLFLOW_VENV, "bin", "mlflow")
    tmp = tempfile.mkdtemp(prefix="terrarium-bench-server-")
    procs = []
    try:
        # Terrarium
        db = f"sqlite://{tmp}/ws"
        token = json.loads(subprocess.run([BINARY, "token", "create", "--db", db, "--role", "admin", "--name", "bench", "--json"],
                                          capture_output=True, text=True, check=True).stdout)["token"]
        tport = free_port()
        procs.append(subprocess.Popen([BINARY, "server", "--db", db, "--listen", f"127.0.0.1:{tport}"],
                                      stderr=subprocess.DEVNULL))
        wait_http(tport, "/healthz")
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        c = http.client.HTTPConnection("127.0.0.1", tport)
        c.request("POST", "/api/v1/environments", json.dumps({"definition": {"name": "bench", "python": {"version": "3.11", "pip": [{"spec": "numpy==1.26.4"}]}}}), auth)
        assert c.getresponse().status in (200, 201)
        t_get = wrk(f"http://127.0.0.1:{tport}/api/v1/environments/bench/versions/1", [f"Authorization: Bearer {token}"])
        script = os.path.join(tmp, "t_post.lua")
        body = '\'{"definition": {"name": "bench", "python": {"version": "3.11", "pip": [{"spec": "pkg%d==1.%d"}]}}}\''
        with open(script, "w") as f:
            f.write(POST_SCRIPT.replace("BODY", body).replace("PATH", "/api/v1/environments").replace("AUTH", f"Bearer {token}"))
        t_post = wrk(f"http://127.0.0.1:{tport}", [], script)
        c = http.client.HTTPConnection("127.0.0.1", tport)
        c.request("GET", "/api/v1/environments/bench/versions?limit=1", headers=auth)
        t_versions = json.loads(c.getresponse().read())["total"]
        # The fixed-rate GETs are measured once the environment has 10,000 versions.
        topped = top_up(tport, auth, VERSIONS - t_versions)
        lat, achieved = fixed_rate(tport, "/api/v1/environments/bench/versions/1", {"Authorization": f"Bearer {token}"})
        lat_latest, achieved_latest = fixed_rate(tport, "/api/v1/environments/bench", {"Authorization": f"Bearer {token}"})

        # MLflow
        m = None
        if os.path.exists(mlflow):
            mport = free_port()
            procs.append(subprocess.Popen([mlflow, "server", "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
                                           "--default-artifact-root", f"{tmp}/artifacts", "--host", "127.0.0.1",
                                           "--port", str(mport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True,
                                          # MLflow 3's background job runner (huey consumers) has
                                          # nothing to do with the registry and takes CPU from it.
                                          env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}))
            wait_http(mport, "/health")
            h = {"Content-Type": "application/json"}
            c = http.client.HTTPConnection("127.0.0.1", mport)
            c.request("POST", "/api/2.0/mlflow/registered-models/create", json.dumps({"name": "bench"}), h)
            assert c.getresponse().read() is not None
            c.request("POST", "/api/2.0/mlflow/model-versions/create", json.dumps({"name": "bench", "source": "s3://bench/model"}), h)
            r = c.getresponse(); r.read(); assert r.status == 200, r.status
            m_get = wrk(f"http://127.0.0.1:{mport}/api/2.0/mlflow/model-versions/get?name=bench&version=1", [])
            script = os.path.join(tmp, "m_post.lua")
            body = '\'{"name": "bench", "source": "s3://bench/model-%d-%d"}\''
            with open(script, "w") as f:
                f.write(POST_SCRIPT.replace("BODY", body).replace("PATH", "/api/2.0/mlflow/model-versions/create").replace("AUTH", "none"))
            m_post = wrk(f"http://127.0.0.1:{mport}", [], script)
            m = (m_get, m_post)

        print(f"GET one version, 16 connections ({DURATION}):")
        print(f"  terrarium  {t_get[0]:10.0f} req/s  p99 {t_get[1]:7.2f} ms  non-2xx {t_get[2]}")
        if m:
            version = subprocess.run([os.path.join(MLFLOW_VENV, "bin", "python"), "-c", "import mlflow; print(mlflow.__version__)"],
                                     capture_output=True, text=True).stdout.strip()
            print(f"  (mlflow {version})")
            print(f"  mlflow     {m[0][0]:10.0f} req/s  p99 {m[0][1]:7.2f} ms  non-2xx {m[0][2]}")
            print(f"  ratio      {t_get[0] / m[0][0]:10.1f}x throughput (target >= 10x)")
        print(f"register, concurrency 16 ({DURATION}):")
        print(f"  terrarium  {t_post[0]:10.0f} req/s  p99 {t_post[1]:7.2f} ms  non-2xx {t_post[2]}  ({t_versions} versions stored)")
        if m:
            print(f"  mlflow     {m[1][0]:10.0f} req/s  p99 {m[1][1]:7.2f} ms  non-2xx {m[1][2]}")
            print(f"  ratio      {t_post[0] / m[1][0]:10.1f}x throughput")
        else:
            print(f"  (mlflow not found in {MLFLOW_VENV}; no comparison)")
        print(f"after {VERSIONS} versions of one environment ({topped} registered to top up), GET at a fixed rate for 10 s (target p99 < 5 ms):")
        print(f"  versions/1  {achieved:6.0f} req/s  p50 {p(lat, 0.5):.2f} ms  p99 {p(lat, 0.99):.2f} ms")
        print(f"  latest      {achieved_latest:6.0f} req/s  p50 {p(lat_latest, 0.5):.2f} ms  p99 {p(lat_latest, 0.99):.2f} ms")
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM) if proc.pid else None
            except (ProcessLookupError, PermissionError):
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
