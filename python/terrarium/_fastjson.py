"""JSON on the SDK's common path without importing :mod:`json`.

``import json`` brings ``re``, ``enum``, ``functools`` and ``collections`` with it: about 6 ms,
a fifth of a notebook's first cell (import, ``from_conda_specification``, ``register``,
``get``). What that cell needs of JSON is small, so:

- :func:`loads` runs CPython's own C scanner (``_json.make_scanner``, the one ``json.loads``
  runs) with ``json``'s default settings, so it reads what ``json.loads`` reads; what it cannot
  read goes to ``json.loads``, which raises its own error (a :class:`ValueError` with the line
  and column);
- :func:`dumps` writes plain data (dicts with string keys, lists, tuples, strings, ints, floats,
  booleans and None) exactly as ``json.dumps`` does, byte for byte, with the C string encoders
  ``json`` uses. Anything else goes to ``json.dumps``.

Where ``_json`` is missing (another Python implementation), both are :mod:`json`'s.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

try:
    import _json as _c  # CPython's accelerator: a built-in module, no Python imports
except ImportError:  # pragma: no cover - other implementations
    _c = None  # type: ignore[assignment]

_WHITESPACE = " \t\n\r"  # what json's decoder skips around a document


class _Settings:
    """What the C scanner reads from a ``json.JSONDecoder()``: its defaults."""

    __slots__ = ("strict", "object_hook", "object_pairs_hook", "parse_float", "parse_int", "parse_constant")

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = {
            "-Infinity": float("-inf"),
            "Infinity": float("inf"),
            "NaN": float("nan"),
        }.__getitem__


_scan: Optional[Callable[[str, int], tuple[Any, int]]] = None
if _c is not None:
    try:
        _scan = _c.make_scanner(_Settings())  # type: ignore[arg-type]
    except Exception:  # pragma: no cover - a scanner with other needs: use json's
        _scan = None


def loads(text: str | bytes | bytearray) -> Any:
    """``json.loads(text)``: a string, or bytes (in UTF-8 here; other encodings go to ``json``)."""
    if isinstance(text, (bytes, bytearray)):
        head = bytes(text[:4])
        if _scan is None or b"\x00" in head or head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
            return _json_loads(text)  # UTF-16, UTF-32 or a byte order mark: json's detection
        text = bytes(text).decode("utf-8", "surrogatepass")
    if _scan is None:
        return _json_loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except Exception:
        # Not JSON. `json` says why: the scanner's own errors need `json.decoder` loaded (on
        # Python 3.10 and 3.11 it raises SystemError without it).
        return _json_loads(text)
    if text[end:].lstrip(_WHITESPACE):
        return _json_loads(text)  # extra data after the document
    return value


def _json_loads(text: str | bytes | bytearray) -> Any:
    import json

    return json.loads(text)


class _NotPlain(Exception):
    """A value :func:`dumps` leaves to ``json``."""


def dumps(value: Any, *, indent: Optional[int] = None, ensure_ascii: bool = True) -> str:
    """``json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)``."""
    if _c is not None:
        encode = _c.encode_basestring_ascii if ensure_ascii else _c.encode_basestring
        out: list[str] = []
        try:
            _write(value, out, encode, None if indent is None else " " * indent, "\n", set())
            return "".join(out)
        except (_NotPlain, RecursionError):
            pass
    import json

    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)


def _write(
    value: Any,
    out: list[str],
    encode: Callable[[str], str],
    indent: Optional[str],
    newline: str,
    active: set[int],
) -> None:
    kind = type(value)
    if kind is str:
        out.append(encode(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(value))
    elif kind is float:
        out.append(_float(value))
    elif kind is list or kind is tuple or kind is dict:
        if not value:
            out.append("{}" if kind is dict else "[]")
            return
        if id(value) in active:
            raise _NotPlain  # json says "Circular reference detected"
        active.add(id(value))
        inner = newline + indent if indent is not None else ""
        separator = "," + inner if indent is not None else ", "
        out.append("{" if kind is dict else "[")
        out.append(inner)
        first = True
        if kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise _NotPlain  # json turns other keys into strings: its rules
                if not first:
                    out.append(separator)
                first = False
                out.append(encode(key))
                out.append(": ")
                _write(item, out, encode, indent, inner, active)
        else:
            for item in value:
                if not first:
                    out.append(separator)
                first = False
                _write(item, out, encode, indent, inner, active)
        if indent is not None:
            out.append(newline)
        out.append("}" if kind is dict else "]")
        active.discard(id(value))
    else:
        raise _NotPlain


def copy(value: Any) -> Any:
    """A deep copy of a JSON tree (dicts, lists and scalars, no object twice in it), as
    ``copy.deepcopy`` makes it, without importing :mod:`copy` (with ``weakref``); anything
    else (other types, shared or cyclic parts) is copied by ``copy.deepcopy``."""
    try:
        return _copy(value, set())
    except _NotPlain:
        import copy as module

        return module.deepcopy(value)


def _copy(value: Any, seen: set[int]) -> Any:
    kind = type(value)
    if kind is dict or kind is list:
        if id(value) in seen:
            raise _NotPlain  # shared or cyclic: deepcopy keeps it so
        seen.add(id(value))
        if kind is dict:
            return {key: _copy(item, seen) for key, item in value.items()}
        return [_copy(item, seen) for item in value]
    if value is None or kind in (str, int, float, bool):
        return value
    raise _NotPlain
