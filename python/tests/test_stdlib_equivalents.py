"""The SDK's first-cell path does without ``json``, ``re``, ``csv`` and ``copy`` (their imports
cost a notebook's first cell about 6 ms, a fifth of it). What stands in for them must give what
they give: these tests compare both on many random inputs, and on the edge cases by name."""

from __future__ import annotations

import copy
import csv
import io
import json
import random
import re
from typing import Any

import pytest

from terrarium import _fastjson, _yaml
from terrarium._binary import _record_paths

SCALARS: list[Any] = [
    None, True, False, 0, -5, 10**20, 1.5, -0.0, 1e300, 1e-7, float("inf"), float("-inf"),
    "", "plain", 'a"b\\c', "ünï\u2028\x00\x1f\x7f", "\ud800 lone surrogate", "\U0001f600", "a\nb\tc",
]
KEYS = ["k", "ü", "a\nb", "", "\"q\"", "\U0001f600"]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.4:
        return rng.choice(SCALARS)
    if roll < 0.65:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.75:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return {rng.choice(KEYS) + str(i): _random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def test_dumps_writes_what_json_writes() -> None:
    rng = random.Random(1)
    options: list[dict[str, Any]] = [
        {}, {"indent": 4}, {"indent": 0}, {"ensure_ascii": False}, {"indent": 2, "ensure_ascii": False},
    ]
    for _ in range(5000):
        value = _random_value(rng)
        for kwargs in options:
            assert _fastjson.dumps(value, **kwargs) == json.dumps(value, **kwargs), (value, kwargs)


def test_dumps_leaves_what_is_not_plain_data_to_json() -> None:
    class Text(str):
        pass

    odd = {"a": Text("x"), 1: 2, None: [1.5, True]}
    assert _fastjson.dumps(odd) == json.dumps(odd)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        _fastjson.dumps(loop)
    with pytest.raises(TypeError, match="not JSON serializable"):
        _fastjson.dumps({"a": object()})


def test_loads_reads_what_json_reads() -> None:
    rng = random.Random(2)
    for _ in range(3000):
        text = json.dumps(_random_value(rng), indent=rng.choice([None, 2]))
        # Compared through json.dumps: NaN != NaN.
        assert json.dumps(_fastjson.loads(text)) == json.dumps(json.loads(text)), text
        data = text.encode()
        assert json.dumps(_fastjson.loads(data)) == json.dumps(json.loads(data)), data
    for encoded in ['{"a": "ü"}'.encode("utf-16"), '["ü"]'.encode("utf-8-sig"), '["ü"]'.encode("utf-32-le")]:
        assert _fastjson.loads(encoded) == json.loads(encoded)
    for text in [" 1 ", "\n[1, 2]\r\n", "NaN", "-Infinity", "1e5", '"\\ud83d\\ude00"', '{"a": {"b": [1.5, null]}}']:
        assert json.dumps(_fastjson.loads(text)) == json.dumps(json.loads(text)), text


@pytest.mark.parametrize(
    "text", ["", " ", "{", "[1,]", "1 2", "nul", '"\\x"', '{"a":1,}', "[1]x", '"a\nb"', "\ufeff1", "1\x0c"]
)
def test_loads_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        _fastjson.loads(text)
    # As bytes too (json reads a byte order mark in bytes, not in a string).
    data = text.encode()
    try:
        expected: Any = json.loads(data)
    except ValueError:
        with pytest.raises(ValueError):
            _fastjson.loads(data)
    else:
        assert _fastjson.loads(data) == expected


def test_loads_refuses_bad_json_in_a_process_without_json() -> None:
    """What `loads` is for: a process that has not imported `json`. There the C scanner cannot
    raise its own errors (on Python 3.10 and 3.11 it raised SystemError): each bad document must
    still be a ValueError, json's own, and a good one read without importing `json`."""
    import subprocess
    import sys

    bad = ['{"a": 1', '"unterminated', '"\\x"', "[1/3] Resolving", "[2024-01-01 INFO] x", "[1,]", "1 2", ""]
    program = (
        "import sys\n"
        "from terrarium import _fastjson\n"
        "assert _fastjson.loads('{\"a\": [1, 2.5, null]}') == {'a': [1, 2.5, None]}\n"
        "assert 'json' not in sys.modules\n"
        f"for text in {bad!r}:\n"
        "    for given in (text, text.encode()):\n"
        "        try:\n"
        "            _fastjson.loads(given)\n"
        "        except ValueError as err:\n"
        "            assert type(err).__name__ == 'JSONDecodeError', repr(err)\n"
        "        else:\n"
        "            raise AssertionError(f'read {given!r}')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_copy_copies_as_deepcopy_does() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        value = _random_value(rng)
        copied = _fastjson.copy(value)
        assert json.dumps(copied) == json.dumps(copy.deepcopy(value))
    nested = {"a": [{"b": [1]}]}
    copied = _fastjson.copy(nested)
    copied["a"][0]["b"].append(2)
    assert nested == {"a": [{"b": [1]}]}, "a deep copy shares nothing"
    # Shared and cyclic parts are copied as deepcopy copies them.
    part = [1]
    shared = _fastjson.copy({"x": part, "y": part})
    assert shared["x"] is shared["y"] and shared["x"] is not part
    loop: dict[str, Any] = {}
    loop["self"] = loop
    copied_loop = _fastjson.copy(loop)
    assert copied_loop["self"] is copied_loop and copied_loop is not loop


# The pattern the YAML writer compiled before (it now compiles it only for strings made of
# its characters).
SPECIAL = re.compile(
    r"""^(?:
        ~|null|Null|NULL|
        [yY]|yes|Yes|YES|[nN]|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|
        [-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|
        [-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|
        0x[0-9a-fA-F_]+|0o?[0-7_]+|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
    )$""",
    re.VERBOSE,
)


def test_yaml_quotes_what_a_yaml_reader_would_misread() -> None:
    rng = random.Random(4)
    alphabet = "0123456789_.+-:eExXoabcdefABCDEFinfINFaNnulyYsSOtrTRUL~gpz"
    seeds = ["yes", "No", "~", "null", "on", "OFF", "true", ".inf", "-.Inf", ".NaN", "0x1f", "0o17",
             "1:20:30.5", "1e5", "-1.5e-3", "1_000", "conda-forge", "python=3.11"]
    for _ in range(100_000):
        if rng.random() < 0.3:
            text = rng.choice(seeds)
            cut = rng.randrange(len(text) + 1)
            text = text[:cut] + rng.choice(alphabet) + text[cut:]
        else:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        assert _yaml._special(text) == bool(SPECIAL.match(text)), text


def test_record_paths_are_what_csv_reads() -> None:
    rng = random.Random(5)
    names = ["terrarium/__init__.py", "../../bin/terrarium", "a,b", 'q"x', "sp ace", "ü", "x\ny", "x\ry", ""]
    for _ in range(5000):
        rows = [
            [rng.choice(names), rng.choice(["sha256=abc", ""]), rng.choice(["12", ""])]
            for _ in range(rng.randint(0, 5))
        ]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=rng.choice(["\n", "\r\n"])).writerows(rows)
        text = buffer.getvalue()
        expected = [row[0] for row in csv.reader(io.StringIO(text, newline="")) if row]
        assert _record_paths(text) == expected, text


def test_a_pip_lines_package_is_what_azure_mls_pattern_splits() -> None:
    from terrarium.conda_dependencies import _package_name

    rng = random.Random(6)
    pieces = ["numpy", "scikit-learn", "[extra]", "==", ">=", "<2", "~=", "!=", "|", " ", "1.5", "-", "/", ".whl", "x"]
    for _ in range(20000):
        line = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        if line.endswith(".whl"):
            expected = re.split("-", re.split("/", line)[-1])[0]
        else:
            expected = re.split(r"[\[=|<|>|~|!]", line)[0].strip()
        assert _package_name(line) == expected, line


def test_a_record_csv_cannot_read_is_a_value_error() -> None:
    """A malformed RECORD is skipped by the binary's lookup (which catches ValueError), as it
    was when `csv` read every one."""
    for text in ['"terrarium/__init__.py' + "x" * 200_000 + '",sha256=a,1\n', '"a"b"\x00,c\n']:
        try:
            expected: Any = [row[0] for row in csv.reader(io.StringIO(text, newline="")) if row]
        except csv.Error:
            with pytest.raises(ValueError):
                _record_paths(text)
        else:
            assert _record_paths(text) == expected
