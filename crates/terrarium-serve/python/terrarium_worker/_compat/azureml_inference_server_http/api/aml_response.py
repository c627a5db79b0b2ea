"""AMLResponse: a status, headers and body that run() returns as the HTTP response."""

import json


class _Headers:
    def __init__(self):
        self._pairs = []

    def __setitem__(self, key, value):
        self.remove(key)
        self._pairs.append((key, str(value)))

    def __getitem__(self, key):
        for k, v in self._pairs:
            if k.lower() == key.lower():
                return v
        raise KeyError(key)

    def __contains__(self, key):
        return any(k.lower() == key.lower() for k, _ in self._pairs)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def add(self, key, value):
        self._pairs.append((key, str(value)))

    add_header = add

    def remove(self, key):
        self._pairs = [(k, v) for k, v in self._pairs if k.lower() != key.lower()]

    def items(self):
        return list(self._pairs)


class AMLResponse:
    """Mirrors azureml_inference_server_http.api.aml_response.AMLResponse (a Flask Response)."""

    def __init__(self, message, status_code, response_headers={}, json_str=False, run_function_failed=False):
        self.status_code = int(status_code)
        self.headers = _Headers()
        if message is not None:
            if json_str:
                self._data = json.dumps(message).encode("utf-8")
                self.headers["Content-Type"] = "application/json"
            else:
                self._data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
                if "Content-Type" not in response_headers:
                    self.headers["Content-Type"] = "text/html; charset=utf-8"
        else:
            self._data = b"{}"
            self.headers["Content-Type"] = "application/json"
        self.headers["x-ms-run-function-failed"] = run_function_failed
        for header, value in response_headers.items():
            for v in value.split(","):
                self.headers.add(header, v.strip())

    def get_data(self, as_text=False):
        return self._data.decode("utf-8") if as_text else self._data

    @property
    def data(self):
        return self._data
