"""Request bodies as JSON, with every number exactly as the client sent it.

orjson reads an integer beyond 64 bits as a float without a word:
``12345678901234567890123`` would be stored, and echoed, as ``1.2345678901234568e+22``.
Constants must come back exactly as sent, so such a body is refused instead (send the
value as a string). The check costs one C-level scan: only a body holding 20 digits in
a row (19 after a minus) is read a second time, by the standard library, which keeps integers whole.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""orjson keeps integers in this range exact (int64 and uint64)."""

_LONG_DIGITS = re.compile(rb"-\d{19}|\d{20}")  # every literal beyond the range has one


class WideInteger(ValueError):
    """An integer literal outside what orjson keeps exact."""


def loads(raw: bytes | str) -> Any:
    """Parse ``raw`` as JSON.

    :raises orjson.JSONDecodeError: ``raw`` is not JSON.
    :raises WideInteger: an integer is outside ``INT_MIN..INT_MAX``.
    """
    data = orjson.loads(raw)
    text = raw.encode() if isinstance(raw, str) else raw
    if _LONG_DIGITS.search(text) is not None:
        json.loads(text, parse_int=_exact_int)
    return data


def _exact_int(literal: str) -> int:
    if len(literal.lstrip("-")) > 20 or not INT_MIN <= (value := int(literal)) <= INT_MAX:
        shown = literal if len(literal) <= 40 else literal[:37] + "..."
        raise WideInteger(
            f"the integer {shown} is outside the 64-bit range and would lose digits; "
            "send it as a string"
        )
    return value
