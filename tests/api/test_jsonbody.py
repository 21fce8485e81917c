"""Integers beyond 64 bits are refused, not silently turned into floats."""

from __future__ import annotations

import orjson
import pytest

from nocturnus.api import jsonbody
from tests.server import Server


@pytest.mark.parametrize(
    "raw",
    [
        b"[12345678901234567890123]",
        b"[18446744073709551616]",
        b"[-9223372036854775809]",
        b'{"args": [1, {"deep": [-12345678901234567890]}]}',
        b"[" + b"7" * 300 + b"]",
    ],
)
def test_integers_orjson_would_round_are_refused(raw: bytes) -> None:
    with pytest.raises(jsonbody.WideInteger, match="outside the 64-bit range"):
        jsonbody.loads(raw)


def test_everything_orjson_keeps_exact_passes_unchanged() -> None:
    raw = (
        b'[18446744073709551615, -9223372036854775808, 0.5, 1e25,'
        b' "12345678901234567890123", "-12345678901234567890"]'
    )
    assert jsonbody.loads(raw) == orjson.loads(raw)
    assert jsonbody.loads(raw)[0] == 2**64 - 1


def test_a_wide_integer_in_a_tell_is_a_400_and_the_widest_exact_ones_echo(
    server: Server, tenant: str
) -> None:
    refused = server.request(
        "POST", "/tell", tenant=tenant,
        content=b'{"predicate": "id", "args": [12345678901234567890123]}',
        headers={"Content-Type": "application/json"},
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "VALIDATION_ERROR"
    assert "send it as a string" in refused.json()["message"]
    told = server.request(
        "POST", "/tell", tenant=tenant,
        content=b'{"predicate": "id", "args": [18446744073709551615, -9223372036854775808]}',
        headers={"Content-Type": "application/json"},
    )
    assert told.status_code == 200, told.text
    assert told.json()["fact"]["args"] == [2**64 - 1, -(2**63)]
