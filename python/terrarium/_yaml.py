"""Writing conda environment documents as YAML, with the standard library only.

Only writing: reading a conda file is Terrarium's job (``terrarium env validate --format conda
--json``), so the SDK and the CLI never disagree on what a file says. The documents written here
are small (mappings, sequences and strings); a string is quoted whenever a YAML reader could
take it for something else (a number, a boolean, a comment, a mapping).
"""

from __future__ import annotations

from . import _fastjson

# `typing` is for the type checker only: importing it costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Plain scalars YAML 1.1 or 1.2 readers would not read back as the same string: these words,
_WORDS = frozenset(
    "~ null Null NULL y Y yes Yes YES n N no No NO true True TRUE false False FALSE "
    "on On ON off Off OFF".split()
)
# and numbers (ints, floats, infinities, NaN, hex, octal, sexagesimal), made of these characters
# only: a string with any other is none of them, without compiling the pattern (`re` costs a
# notebook's first cell 4 ms to import).
_NUMBER_CHARACTERS = frozenset("0123456789_.+-:eExoabcdefABCDEFinfINFaN")
_NUMBER = r"""^(?:
    [-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|
    [-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|
    0x[0-9a-fA-F_]+|0o?[0-7_]+|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
)$"""


def _special(text: str) -> bool:
    """Whether a YAML reader would take the plain scalar ``text`` for null, a boolean or a
    number."""
    if text in _WORDS:
        return True
    if not _NUMBER_CHARACTERS.issuperset(text):
        return False
    if text.strip("+-_") and not any(c in "0123456789." for c in text):
        return False  # every number has a digit or a point (words such as `face` are not)
    import re

    return re.match(_NUMBER, text, re.VERBOSE) is not None


_INDICATORS = set("[]{},#&*!|>'\"%@`")


def _needs_quotes(text: str) -> bool:
    if text == "" or text != text.strip() or _special(text):
        return True
    if text[0] in _INDICATORS or text[0] in "?:-" and (len(text) == 1 or text[1] == " "):
        return True
    if ": " in text or " #" in text or text.endswith(":") or "\t" in text:
        return True
    return any(ord(c) < 32 or c == "\x7f" for c in text)


def scalar(value: Any) -> str:
    """One scalar as YAML: strings quoted when they must be, ``null``, ``true``/``false``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _fastjson.dumps(value)
    text = str(value)
    # JSON's string syntax is YAML's double-quoted syntax.
    return _fastjson.dumps(text, ensure_ascii=False) if _needs_quotes(text) else text


def _key(value: Any) -> str:
    return scalar(str(value))


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{_key(key)}:")
                out.extend(_lines(item, indent + 2))
            else:
                out.append(f"{pad}{_key(key)}: {_inline(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                first, *rest = _lines(item, indent + 2)
                out.append(f"{pad}- {first[indent + 2:]}")
                out.extend(rest)
            elif isinstance(item, list) and item:
                first, *rest = _lines(item, indent + 2)
                out.append(f"{pad}- {first[indent + 2:]}")
                out.extend(rest)
            else:
                out.append(f"{pad}- {_inline(item)}")
    else:
        out.append(pad + scalar(value))
    return out


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def dump(document: Any) -> str:
    """``document`` (dicts, lists, strings, numbers, booleans, None) as a YAML text."""
    return "\n".join(_lines(document, 0)) + "\n"
