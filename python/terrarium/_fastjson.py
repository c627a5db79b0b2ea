"""JSON on the SDK's common path without importing :mod:`json`.

``import json`` brings ``re``, ``enum``, ``functools`` and ``collections`` with it: about 6 ms,
a fifth of a notebook's first cell (import, ``from_conda_specification``, ``register``,
``get``). What that cell needs of JSON is small, so:

- :func:`loads` runs CPython's own C scanner (``_json.make_scanner``, the one ``json.loads``
  runs) with ``json``'s default settings, so it reads what ``json.loads`` reads and refuses what
  it refuses (with a :class:`ValueError`, as ``json`` raises);
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
        self.memo: dict[Any, Any] = {}


_scan: Optional[Callable[[str, int], tuple[Any, int]]] = None
if _c is not None:
    try:
        _scan = _c.make_scanner(_Settings())  # type: ignore[arg-type]
    except Exception:  # pragma: no cover - a scanner with other needs: use json's
        _scan = None


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``: a string, or bytes (UTF-8 here; other encodings go to ``json``)."""
    if isinstance(text, bytes):
        head = text[:4]
        if _scan is None or b"\x00" in head or head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
            import json  # UTF-16, UTF-32 or a byte order mark: json's detection

            return json.loads(text)
        text = text.decode("utf-8", "surrogatepass")
    if _scan is None:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as err:
        raise ValueError(f"Expecting value: char {err.value}") from None
    if text[end:].lstrip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


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
    """A deep copy of JSON data (dicts, lists and scalars), as ``copy.deepcopy`` makes it, without
    importing :mod:`copy` (with ``weakref``); anything else goes to ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {key: copy(item) for key, item in value.items()}
    if kind is list:
        return [copy(item) for item in value]
    if value is None or kind in (str, int, float, bool):
        return value
    import copy as module

    return module.deepcopy(value)
