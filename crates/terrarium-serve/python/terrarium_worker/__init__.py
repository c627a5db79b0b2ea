"""Terrarium's scoring worker: runs inside the deployed environment.

It loads an Azure ML style entry script once (``init()``), then serves ``run()`` calls that the
Rust HTTP front sends over a unix socket, one at a time. Standard library only, so that it runs
in any environment with Python 3.8 or newer.

Frames, both ways: a 4-byte big-endian length and a header, then a 4-byte big-endian length and
the body bytes. A header is JSON, except the worker's most common answer, a JSON response: byte 1,
the status (2 bytes), run()'s time in ms (8-byte double), whether run() failed (1 byte), then the
request's id. The worker says ``hello``, then ``ready`` (or ``init_failed`` with the reason), then
answers each ``request`` with one ``response``.
"""

import importlib.util
import inspect
import io
import json
import os
import socket
import struct
import sys
import time
import traceback
from urllib.parse import parse_qsl, urlsplit

__version__ = "2"

_COMPAT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_compat")


def _log(message):
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


# --- framing -------------------------------------------------------------------------------------


def _read_exact(reader, n):
    data = reader.read(n)
    if len(data) < n:
        raise EOFError("the front closed the channel")
    return data


def read_frame(reader):
    """The next frame from a buffered reader (``sock.makefile("rb")``): one ``recv`` for a
    small request instead of four."""
    (hlen,) = _LENGTH.unpack(_read_exact(reader, 4))
    head = _read_exact(reader, hlen + 4)
    (blen,) = _LENGTH.unpack_from(head, hlen)
    body = _read_exact(reader, blen) if blen else b""
    return json.loads(head[:hlen]), body


_LENGTH = struct.Struct(">I")
# A JSON response's header: marker 1, status, run()'s milliseconds, whether run() failed.
_JSON_RESPONSE = struct.Struct(">BHd?")


def write_frame(sock, header, body=b""):
    send_frame(sock, json.dumps(header).encode("utf-8"), body)


def send_frame(sock, header, body):
    """One frame from header bytes; one ``send`` unless the body is large."""
    pack = _LENGTH.pack
    if len(body) < 65536:
        sock.sendall(b"".join((pack(len(header)), header, pack(len(body)), body)))
    else:
        sock.sendall(pack(len(header)) + header + pack(len(body)))
        sock.sendall(body)


# --- the request object that @rawhttp entry scripts get -----------------------------------------


class _Headers(dict):
    """Case-insensitive header lookup, like werkzeug's Headers for the common calls."""

    def __init__(self, pairs):
        super().__init__()
        self._pairs = list(pairs)
        for k, v in self._pairs:
            super().__setitem__(k.lower(), v)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def get(self, key, default=None):
        return super().get(key.lower(), default)

    def __contains__(self, key):
        return super().__contains__(key.lower())

    def items(self):
        return list(self._pairs)

    def getlist(self, key):
        return [v for k, v in self._pairs if k.lower() == key.lower()]


class _Args(dict):
    def __init__(self, pairs):
        super().__init__()
        self._pairs = pairs
        for k, v in pairs:
            if k not in self:
                super().__setitem__(k, v)

    def getlist(self, key):
        return [v for k, v in self._pairs if k == key]


class Request:
    """What a ``@rawhttp`` run() gets when Flask is not installed: the parts of Flask's request
    that entry scripts use."""

    def __init__(self, header, body):
        self.method = header["method"]
        self.path = header["path"]
        self.query_string = header.get("query", "").encode("latin-1")
        self.headers = _Headers(header.get("headers", []))
        self.args = _Args(parse_qsl(header.get("query", ""), keep_blank_values=True))
        self.data = body
        self.content_type = self.headers.get("content-type")
        self.mimetype = (self.content_type or "").split(";")[0].strip().lower()
        self.is_json = self.mimetype == "application/json" or self.mimetype.endswith("+json")
        host = self.headers.get("host", "localhost")
        q = header.get("query", "")
        self.full_path = self.path + "?" + q
        self.url = "http://" + host + self.path + ("?" + q if q else "")
        self.base_url = "http://" + host + self.path
        self.host = host
        self.remote_addr = header.get("remote_addr")

    def get_data(self, cache=True, as_text=False, parse_form_data=False):
        return self.data.decode("utf-8") if as_text else self.data

    def get_json(self, force=False, silent=False, cache=True):
        if not (force or self.is_json):
            if silent:
                return None
            raise ValueError("the request's Content-Type is not application/json")
        try:
            return json.loads(self.data)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self):
        return self.get_json()


def _flask_request(header, body):
    """A real Flask request, when the environment has Flask (as Azure ML environments do)."""
    try:
        from flask import Request as FlaskRequest
    except Exception:
        return None
    environ = {
        "REQUEST_METHOD": header["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": header["path"],
        "QUERY_STRING": header.get("query", ""),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": header.get("remote_addr") or "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for k, v in header.get("headers", []):
        key = k.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = v
        elif key == "CONTENT_LENGTH":
            continue
        else:
            name = "HTTP_" + key
            environ[name] = environ[name] + "," + v if name in environ else v
    return FlaskRequest(environ)


# --- the entry script ---------------------------------------------------------------------------


class EntryScript:
    def __init__(self, path):
        self.path = path
        spec = importlib.util.spec_from_file_location("entry_module", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name in ("init", "run"):
            if not hasattr(module, name):
                raise RuntimeError("the entry script %s has no %s() function" % (path, name))
        run = module.run
        driver = getattr(module, "driver_module", None)
        if driver is not None and hasattr(driver, "run"):
            run = driver.run
        self.module = module
        self.init = module.init
        self.run = run
        params = list(inspect.signature(run).parameters.values())
        if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            raise RuntimeError("run() cannot accept positional-only arguments, *args, or **kwargs.")
        self.wants_headers = any(p.name == "request_headers" for p in params)
        params = [p for p in params if p.name != "request_headers"]
        if not params:
            raise RuntimeError("run() needs to accept an argument for input data.")
        self.param = params[0].name
        self.raw = _raw_http_requested()


def _raw_http_requested():
    for name, module in list(sys.modules.items()):
        if name.endswith("aml_request") and getattr(module, "_rawHttpRequested", False):
            return True
    return False


def _is_response(value):
    return hasattr(value, "status_code") and hasattr(value, "headers") and hasattr(value, "get_data")


def _response_parts(value):
    headers = []
    for k, v in value.headers.items():
        if str(k).lower() != "content-length":
            headers.append([str(k), str(v)])
    data = value.get_data()
    if isinstance(data, str):
        data = data.encode("utf-8")
    return int(value.status_code), headers, bytes(data)


# The statuses the front can answer with (three digits, as Flask passes them through); any other
# is the script's error, answered 500. The front checks too, for shims before this check.
_STATUS_MIN, _STATUS_MAX = 100, 999


# The headers of a JSON response, which go to the front as a flag, not as a list (never mutated).
_JSON_OK = [["Content-Type", "application/json"], ["x-ms-run-function-failed", "False"]]
_JSON_FAILED = [["Content-Type", "application/json"], ["x-ms-run-function-failed", "True"]]


def _json_response(status, value, failed):
    body = json.dumps(value).encode("utf-8")
    return status, (_JSON_FAILED if failed else _JSON_OK), body


def _set_header(headers, name, value):
    rest = [h for h in headers if h[0].lower() != name.lower()]
    rest.append([name, value])
    return rest


class Worker:
    def __init__(self, sock, index):
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=1 << 16)
        self.index = index
        self.script = None
        self.mlflow_model = None

    def log(self, message):
        # The front prefixes each line with the worker's index.
        _log(message)

    def start(self, entry, model_dir):
        if entry:
            script_dir = os.path.dirname(os.path.abspath(entry))
            if script_dir not in sys.path:
                sys.path.insert(0, script_dir)
            self.script = EntryScript(entry)
            self.log("loaded %s; calling init()" % entry)
            self.script.init()
        if model_dir and os.path.isfile(os.path.join(model_dir, "MLmodel")):
            try:
                import mlflow.pyfunc
            except ImportError:
                if not entry:
                    raise RuntimeError(
                        "the model directory holds an MLflow model (MLmodel), but the environment "
                        "has no mlflow package to load it"
                    )
            else:
                self.mlflow_model = mlflow.pyfunc.load_model(model_dir)
                self.log("loaded the MLflow model in %s" % model_dir)

    def serve(self):
        while True:
            try:
                header, body = read_frame(self.reader)
            except EOFError:
                return
            if header.get("type") == "stop":
                return
            started = time.perf_counter()
            status, headers, out = self.handle(header, body)
            elapsed = (time.perf_counter() - started) * 1000.0
            try:
                head = _response_head(header["id"], status, headers, elapsed)
            except Exception:
                # A response that cannot be framed must not take the worker down with it.
                self.log("request %s: cannot send run()'s response:\n%s" % (header["id"], traceback.format_exc()))
                status, headers, out = _json_response(
                    500, {"message": "An unexpected internal error occurred. Check the logs for more info."}, False
                )
                head = _response_head(header["id"], status, headers, elapsed)
            send_frame(self.sock, head, out)

    def handle(self, header, body):
        """The response to one request: (status, headers, body bytes)."""
        route = header.get("route", "score")
        if route == "invocations" and self.mlflow_model is not None:
            return self.invocations(header, body)
        if self.script is None:
            return _json_response(404, {"message": "this deployment has no entry script"}, False)
        method = header["method"]
        script = self.script
        try:
            if script.raw:
                request = _flask_request(header, body) or Request(header, body)
                kwargs = {script.param: request}
            elif method == "GET":
                parsed = {}
                pairs = parse_qsl(header.get("query", ""), keep_blank_values=True)
                for k in dict.fromkeys(k for k, _ in pairs):
                    values = [_parse_input(v) for kk, v in pairs if kk == k]
                    parsed[k] = values[0] if len(values) == 1 else values
                kwargs = {script.param: json.dumps(parsed)}
            elif method == "POST":
                try:
                    kwargs = {script.param: str(body, "utf-8")}
                except UnicodeDecodeError as ex:
                    return _json_response(400, {"message": "Input cannot be decoded as UTF-8: %s" % ex}, False)
            elif method == "OPTIONS":
                return 200, [["Content-Type", "text/html; charset=utf-8"], ["x-ms-run-function-failed", "False"]], b""
            else:
                return _json_response(405, {"message": "Method not allowed"}, False)
        except Exception:
            self.log("request %s: cannot build the input:\n%s" % (header["id"], traceback.format_exc()))
            return _json_response(500, {"message": "An unexpected internal error occurred. Check the logs for more info."}, False)
        if script.wants_headers:
            kwargs["request_headers"] = dict(_Headers(header.get("headers", [])).items())
        try:
            result = script.run(**kwargs)
        except Exception:
            self.log("request %s: run() raised:\n%s" % (header["id"], traceback.format_exc()))
            return _json_response(
                500,
                {"message": "An unexpected error occurred in scoring script. Check the logs for more info."},
                True,
            )
        try:
            if _is_response(result):
                status, headers, out = _response_parts(result)
                if not _STATUS_MIN <= status <= _STATUS_MAX:
                    self.log(
                        "request %s: run() answered with status %r, which is not an HTTP status (100-999); answering 500"
                        % (header["id"], status)
                    )
                    return _json_response(
                        500,
                        {"message": "An unexpected error occurred in scoring script. Check the logs for more info."},
                        True,
                    )
                if status >= 500:
                    headers = _set_header(headers, "x-ms-run-function-failed", "True")
                return status, headers, out
            return _json_response(200, result, False)
        except Exception:
            self.log("request %s: cannot serialise run()'s result:\n%s" % (header["id"], traceback.format_exc()))
            return _json_response(500, {"message": "An unexpected internal error occurred. Check the logs for more info."}, False)

    def invocations(self, header, body):
        """MLflow's scoring contract, through MLflow's own parser when it is installed."""
        content_type = _Headers(header.get("headers", [])).get("content-type", "application/json")
        try:
            from mlflow.pyfunc import scoring_server

            schema = self.mlflow_model.metadata.get_input_schema()
            result = scoring_server.invocations(body.decode("utf-8"), content_type, self.mlflow_model, schema)
            status = int(result.status)
            return status, [["Content-Type", result.mimetype or "application/json"]], result.response.encode("utf-8")
        except Exception:
            self.log("request %s: the MLflow model raised:\n%s" % (header["id"], traceback.format_exc()))
            return _json_response(500, {"error_code": "INTERNAL_ERROR", "message": "the model raised; see the deployment's log"}, False)


def _response_head(request_id, status, headers, elapsed):
    """A response frame's header bytes: packed for a JSON response, else JSON."""
    if headers is _JSON_OK or headers is _JSON_FAILED:
        head = _JSON_RESPONSE.pack(1, status, elapsed, headers is _JSON_FAILED)
        return head + request_id.encode("utf-8")
    header = {"type": "response", "id": request_id, "status": status, "headers": headers, "exec_ms": elapsed}
    return json.dumps(header).encode("utf-8")


def _parse_input(value):
    try:
        return json.loads(value)
    except ValueError:
        return value


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="terrarium_worker")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--entry")
    parser.add_argument("--check", action="store_true", help="only check that the worker can start")
    args = parser.parse_args(argv)
    if args.check:
        print("terrarium_worker %s" % __version__)
        return
    # Entry scripts written for Azure ML import its request and response helpers; when the
    # environment lacks them, ours stand in (appended last, so installed packages win).
    sys.path.append(_COMPAT)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args.socket)
    write_frame(sock, {"type": "hello", "worker": args.index, "pid": os.getpid(), "version": __version__})
    worker = Worker(sock, args.index)
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    try:
        worker.start(args.entry, model_dir)
    except BaseException as ex:
        reason = "".join(traceback.format_exception_only(type(ex), ex)).strip()
        worker.log("init failed:\n%s" % traceback.format_exc())
        write_frame(sock, {"type": "init_failed", "reason": reason})
        sys.exit(3)
    worker.log("ready")
    # Whether run() looks at the request's headers: if not, the front leaves them out.
    script = worker.script
    needs_headers = worker.mlflow_model is not None or (
        script is not None and (script.raw or script.wants_headers)
    )
    write_frame(sock, {"type": "ready", "needs_headers": needs_headers})
    worker.serve()
