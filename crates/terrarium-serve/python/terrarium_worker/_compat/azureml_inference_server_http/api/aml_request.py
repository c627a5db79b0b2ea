"""``@rawhttp``: run() gets the HTTP request instead of the body as a string."""

_rawHttpRequested = False


def rawhttp(func):
    global _rawHttpRequested
    _rawHttpRequested = True
    return func


try:
    from flask import Request as AMLRequest  # noqa: F401
except ImportError:  # pragma: no cover - without Flask, scripts get terrarium_worker.Request
    from terrarium_worker import Request as AMLRequest  # noqa: F401
