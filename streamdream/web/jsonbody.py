"""JSON request bodies with bounds: size (the server's body cap), depth and numbers.

``json.loads`` recurses once per nesting level (30,000 levels: RecursionError), turns
``1e400`` into infinity and ``10**400`` into an int no float can hold. Here the nesting is
counted before parsing, and every number must be finite and within ``MAX_NUMBER``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 16
MAX_NUMBER = 1e15
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class BodyError(ValueError):
    """The body is not an acceptable JSON object; the message says why (HTTP 400)."""


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw``, strings skipped."""
    depth = deepest = 0
    for match in _STRUCTURE.finditer(raw):
        token = match.group(0)
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _number(text: str) -> float | int:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise BodyError(f"number {text[:40]}{'...' if len(text) > 40 else ''} is out of range (at most {MAX_NUMBER:g})")
    return value if any(c in text for c in ".eE") else int(text)


def _constant(text: str) -> Any:
    raise BodyError(f"{text} is not a number JSON allows")


def parse_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw`` (an empty body is ``{}``); BodyError saying what is wrong."""
    if not raw.strip():
        return {}
    if nesting_depth(raw) > MAX_DEPTH:
        raise BodyError(f"request body nests deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw.decode("utf-8"), parse_int=_number, parse_float=_number, parse_constant=_constant)
    except UnicodeDecodeError:
        raise BodyError("request body is not UTF-8") from None
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so no traceback can escape
        raise BodyError("request body nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"request body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise BodyError(f"request body must be a JSON object, got {type(data).__name__}")
    return data
