#!/usr/bin/env python3
"""Scoring throughput and latency: `terrarium deploy` vs Microsoft's azmlinfsrv (and MLflow's
`mlflow models serve`), side by side in one run.

Every server serves the same trivial model, a linear model over a small JSON array, with the same
number of Python workers (1, then 2), on loopback. Two payloads: one row of 8 features (the
server's own cost dominates) and 16 rows of 8 (run() itself costs more than the server). Terrarium and
azmlinfsrv run the same Azure ML entry script; MLflow serves the same weights as a pyfunc model.
Load comes from wrk (Debian), one thread (WRK_THREADS) with 16 connections for DURATION (default
10s) each.

Needs: `apt-get install wrk`; `cargo build --release`; azmlinfsrv in AZMLINFSRV (scripts/test-tools.sh
installs azureml-inference-server-http 1.5.1); optionally mlflow in MLFLOW_VENV
(default ~/.cache/terrarium-bench-mlflow, `pip install mlflow`).
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from binary import built_binary  # benches/binary.py: where cargo put the build
BINARY = os.environ.get("TERRARIUM_BIN") or built_binary("release")
CACHE = os.path.expanduser("~/.cache/terrarium-test-tools")
AZMLINFSRV = os.environ.get("AZMLINFSRV", os.path.join(CACHE, "azmlinfsrv-1.5.1", "bin", "azmlinfsrv"))
MLFLOW_VENV = os.environ.get("MLFLOW_VENV", os.path.expanduser("~/.cache/terrarium-bench-mlflow"))
DURATION = os.environ.get("DURATION", "10s")
# One load-generating thread: on a 2-core machine a second wrk thread takes CPU from whichever
# server is being measured (both gain with one: azmlinfsrv too), and one thread drives far more
# than 20k req/s on loopback.
WRK_THREADS = os.environ.get("WRK_THREADS", "1")

WEIGHTS = [0.5, -1.0, 2.0, 0.25, 1.5, -0.75, 3.0, 0.1]
ROWS_BY_SIZE = {n: [[float((r * 8 + c) % 7) for c in range(8)] for r in range(n)] for n in (1, 16)}

SCORE = '''
import json, os

weights = None

def init():
    global weights
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")) as f:
        weights = json.load(f)

def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return {"predictions": [sum(w * x for w, x in zip(weights, row)) for row in rows]}
'''

MLFLOW_MODEL = '''
import json, sys
import mlflow.pyfunc


class Linear(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["weights"]) as f:
            self.weights = json.load(f)

    def predict(self, context, model_input, params=None):
        rows = model_input.values.tolist() if hasattr(model_input, "values") else model_input
        return [sum(w * x for w, x in zip(self.weights, row)) for row in rows]

mlflow.pyfunc.save_model(sys.argv[1], python_model=Linear(), artifacts={"weights": sys.argv[2]})
'''


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def wait_http(port, path, process, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server for port {port} exited with {process.returncode}")
        try:
            status, _ = request(port, "GET", path)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on {port} did not come up")


def wrk(port, path, body):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n'
        % json.dumps(body)
    )
    script.close()
    out = subprocess.run(
        ["wrk", "-t" + WRK_THREADS, "-c16", "-d" + DURATION, "--latency", "-s", script.name, f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(script.name)

    def latency(q):
        m = re.search(q + r"%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps, "p50": latency("50"), "p99": latency("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def main():
    for tool, path in [("wrk", shutil.which("wrk")), ("terrarium", BINARY), ("azmlinfsrv", AZMLINFSRV)]:
        if not path or not os.path.exists(path):
            raise SystemExit(f"missing {tool} ({path})")
    work = tempfile.mkdtemp(prefix="terrarium-bench-deploy-")
    env = dict(os.environ, TERRARIUM_HOME=os.path.join(work, "home"),
               TERRARIUM_CACHE_DIR=os.path.join(work, "cache"), TERRARIUM_USER="bench")
    env.pop("TERRARIUM_WORKSPACE", None)
    model = os.path.join(work, "model")
    os.makedirs(model)
    with open(os.path.join(model, "weights.json"), "w") as f:
        json.dump(WEIGHTS, f)
    score = os.path.join(work, "score.py")
    with open(score, "w") as f:
        f.write(SCORE)
    # Terrarium's environment: a user-managed venv of the same Python as azmlinfsrv's, with the
    # worker shim installed (what `terrarium deployments shim` is for).
    venv = os.path.join(work, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    wheel = subprocess.run([BINARY, "deployments", "shim", "--wheel", os.path.join(work, "wheels")],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", wheel], check=True)
    definition = os.path.join(work, "env.yml")
    with open(definition, "w") as f:
        f.write(f"name: bench\npython:\n  user_managed: true\n  interpreter: {venv}/bin/python\n")

    mlflow_python = os.path.join(MLFLOW_VENV, "bin", "python")
    mlflow_model = None
    if os.path.exists(mlflow_python):
        mlflow_model = os.path.join(work, "mlflow-model")
        subprocess.run([mlflow_python, "-c", MLFLOW_MODEL, mlflow_model, os.path.join(model, "weights.json")],
                       check=True, capture_output=True)
        # MLflow's venv as a user-managed environment, with the worker shim installed.
        subprocess.run([mlflow_python, "-m", "pip", "install", "--quiet", "--force-reinstall", wheel], check=True)
        mlflow_definition = os.path.join(work, "mlflow-env.yml")
        with open(mlflow_definition, "w") as f:
            f.write(f"name: bench-mlflow\npython:\n  user_managed: true\n  interpreter: {mlflow_python}\n")

    print(f"model: linear over {len(WEIGHTS)} features; wrk -t{WRK_THREADS} -c16 -d{DURATION}; {os.cpu_count()} cores")
    results = {}
    for rows_n, workers in [(n, w) for n in sorted(ROWS_BY_SIZE) for w in (1, 2)]:
        ROWS = ROWS_BY_SIZE[rows_n]
        body = json.dumps({"data": ROWS})
        expected = [sum(w * x for w, x in zip(WEIGHTS, row)) for row in ROWS]
        # Terrarium
        port = free_port()
        subprocess.run([BINARY, "deploy", "bench", "--env", definition, "--model", model, "--entry", score,
                        "--workers", str(workers), "--port", str(port), "--detach"],
                       env=env, check=True, capture_output=True)
        try:
            status, answer = request(port, "POST", "/score", body)
            assert status == 200 and json.loads(answer)["predictions"] == expected, answer
            results[("terrarium", rows_n, workers)] = wrk(port, "/score", body)
        finally:
            subprocess.run([BINARY, "deployments", "stop", "bench"], env=env, check=True, capture_output=True)

        # azmlinfsrv
        port = free_port()
        log = open(os.path.join(work, f"azmlinfsrv-{workers}.log"), "w")
        server = subprocess.Popen([AZMLINFSRV, "--entry_script", score, "--port", str(port),
                                   "--worker_count", str(workers)],
                                  env=dict(os.environ, AZUREML_MODEL_DIR=model), stdout=log, stderr=log, cwd=work)
        try:
            wait_http(port, "/", server)
            status, answer = request(port, "POST", "/score", body)
            assert status == 200 and json.loads(answer)["predictions"] == expected, answer
            results[("azmlinfsrv", rows_n, workers)] = wrk(port, "/score", body)
        finally:
            server.terminate()
            server.wait()

        # Terrarium serving the MLflow model (MLflow's own scoring code in the worker), and
        # MLflow's server on the same model.
        if mlflow_model:
            port = free_port()
            subprocess.run([BINARY, "deploy", "bench-mlflow", "--env", mlflow_definition, "--model", mlflow_model,
                            "--workers", str(workers), "--port", str(port), "--detach"],
                           env=env, check=True, capture_output=True)
            try:
                mlflow_body = json.dumps({"inputs": ROWS})
                status, answer = request(port, "POST", "/invocations", mlflow_body)
                got = json.loads(answer)["predictions"]
                assert status == 200 and [round(x, 6) for x in got] == [round(x, 6) for x in expected], answer
                results[("terrarium-mlflow", rows_n, workers)] = wrk(port, "/invocations", mlflow_body)
            finally:
                subprocess.run([BINARY, "deployments", "stop", "bench-mlflow"], env=env, check=True,
                               capture_output=True)
        if mlflow_model:
            port = free_port()
            log = open(os.path.join(work, f"mlflow-{workers}.log"), "w")
            server = subprocess.Popen([os.path.join(MLFLOW_VENV, "bin", "mlflow"), "models", "serve", "-m", mlflow_model,
                                       "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
                                       "--workers", str(workers)], stdout=log, stderr=log, cwd=work,
                                      env=dict(os.environ, PATH=os.path.join(MLFLOW_VENV, "bin") + ":" + os.environ["PATH"]))
            try:
                wait_http(port, "/ping", server)
                mlflow_body = json.dumps({"inputs": ROWS})
                status, answer = request(port, "POST", "/invocations", mlflow_body)
                got = json.loads(answer)["predictions"]
                assert status == 200 and [round(x, 6) for x in got] == [round(x, 6) for x in expected], answer
                results[("mlflow", rows_n, workers)] = wrk(port, "/invocations", mlflow_body)
            finally:
                server.terminate()
                server.wait()

    print(f"{'server':<17} {'rows':>4} {'workers':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7}")
    for (name, rows_n, workers), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        print(f"{name:<17} {rows_n:>4} {workers:>7} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['non2xx']:>8} {r['socket_errors']:>7}")
    for rows_n in sorted(ROWS_BY_SIZE):
        for workers in (1, 2):
            ours, theirs = results[("terrarium", rows_n, workers)], results[("azmlinfsrv", rows_n, workers)]
            print(f"{rows_n} row(s), {workers} worker(s): terrarium/azmlinfsrv throughput {ours['rps'] / theirs['rps']:.1f}x, "
                  f"p99 {ours['p99']:.2f} ms vs {theirs['p99']:.2f} ms")
            if ("mlflow", rows_n, workers) in results:
                m, t = results[("mlflow", rows_n, workers)], results[("terrarium-mlflow", rows_n, workers)]
                print(f"{rows_n} row(s), {workers} worker(s): MLflow model on /invocations, terrarium/mlflow "
                      f"throughput {t['rps'] / m['rps']:.1f}x, p99 {t['p99']:.2f} ms vs {m['p99']:.2f} ms")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
