"""Metadata is bounded at validation, and a refused write leaves no trace (issue 14, 1).

The reproduction: a bulk write whose second fact's metadata nests ~250 deep answered
500 after the first fact was applied (``/ask`` then answered a fact the log never
held), the next write of another tenant got 503, and metadata just shallow enough to
be stored made every later read of that tenant a 500.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from nocturnus.api.knowledge import MAX_METADATA_DEPTH
from tests.api.jsonrpc import HttpMcp
from tests.server import Server


def nested(depth: int) -> Any:
    """``depth`` levels of objects (metadata itself counts as one)."""
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_json(depth: int) -> str:
    """``nested(depth)`` as JSON text: deeper than orjson (or json) would write it."""
    return '{"a":' * depth + '"leaf"' + "}" * depth


def post_raw(server: Server, path: str, tenant: str, text: str) -> httpx.Response:
    return server.client.post(path, content=text.encode(), headers={
        "X-Tenant-ID": tenant, "Content-Type": "application/json"})


def in_arrays(depth: int) -> dict[str, Any]:
    """Metadata whose levels below the top are arrays."""
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return {"a": value}


def ask(server: Server, tenant: str, predicate: str) -> httpx.Response:
    return server.request(
        "POST", "/ask", tenant=tenant, json={"predicate": predicate, "args": ["?x"]}
    )


TOO_DEEP = [MAX_METADATA_DEPTH + 1, 200, 251, 252, 253, 254, 300, 1000]


@pytest.mark.parametrize("depth", TOO_DEEP)
def test_deep_metadata_in_a_bulk_write_is_a_400_and_stores_nothing(
    server: Server, tenant: str, depth: int
) -> None:
    other = tenant + "_other"
    assert server.request("POST", "/tell", tenant=other,
                          json={"predicate": "p", "args": ["o1"]}).status_code == 200
    response = post_raw(server, "/assert/facts", tenant, (
        '{"facts": [{"predicate": "good", "args": ["a"]}, '
        '{"predicate": "bad", "args": ["b"], "metadata": ' + nested_json(depth) + "}]}"
    ))
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == {"field": "facts[1].metadata"}
    assert ask(server, tenant, "good").json()["count"] == 0  # no phantom fact
    # Another tenant's next write is stored.
    again = server.request("POST", "/tell", tenant=other, json={"predicate": "p", "args": ["o2"]})
    assert again.status_code == 200, again.text
    assert ask(server, other, "p").json()["count"] == 2


@pytest.mark.parametrize(
    "metadata", [nested(MAX_METADATA_DEPTH + 1), in_arrays(MAX_METADATA_DEPTH + 1), nested(251)]
)
def test_deep_metadata_in_one_tell_is_a_400(server: Server, tenant: str, metadata: Any) -> None:
    response = server.request("POST", "/tell", tenant=tenant,
                              json={"predicate": "q", "args": ["a"], "metadata": metadata})
    assert response.status_code == 400, response.text
    assert response.json()["details"] == {"field": "metadata"}
    assert ask(server, tenant, "q").json()["count"] == 0


def test_deep_metadata_through_mcp_is_the_same_validation_error(
    server: Server, tenant: str
) -> None:
    client = HttpMcp(server, headers={"X-Tenant-ID": tenant})
    client.initialize()
    result = client.call("tell", {"predicate": "q", "args": ["a"], "metadata": nested(200)})
    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "VALIDATION_ERROR"
    assert result["structuredContent"]["details"] == {"field": "metadata"}
    raw = (
        '{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": '
        '"bulk_assert", "arguments": {"facts": [{"predicate": "good", "args": ["a"]}, '
        '{"predicate": "bad", "args": ["b"], "metadata": ' + nested_json(254) + "}]}}}"
    )
    bulk = client.post(None, raw=raw.encode()).json()["result"]
    assert bulk["isError"] is True
    assert bulk["structuredContent"]["details"] == {"field": "facts[1].metadata"}
    assert ask(server, tenant, "good").json()["count"] == 0


def test_metadata_at_the_bound_is_stored_read_and_survives_a_restart(
    fresh_server: Server, tenant: str
) -> None:
    """Every path a stored fact travels (the event, the answers, the shutdown
    snapshot, the reload) encodes metadata as deep as validation lets through."""
    deepest = {"n": nested(MAX_METADATA_DEPTH - 1), "l": in_arrays(MAX_METADATA_DEPTH - 1)}
    server = fresh_server.start()
    told = server.request("POST", "/tell", tenant=tenant,
                          json={"predicate": "q", "args": ["a"], "metadata": deepest})
    assert told.status_code == 200, told.text

    def reads() -> None:
        answers = [
            ask(server, tenant, "q"),
            server.request("POST", "/query", tenant=tenant, json={"predicate": "q", "args": ["?x"]}),
            server.request("POST", "/context/optimize", tenant=tenant, json={}),
            server.request("POST", "/memory/recall", tenant=tenant, json={
                "predicate": "q", "args": ["?x"], "timestamp": int(time.time() * 1000)}),
            server.request("POST", "/ask", tenant=tenant,
                           json={"predicate": "q", "args": ["?x"], "withProof": True}),
        ]
        for response in answers:
            assert response.status_code == 200, response.text
        assert answers[0].json()["results"][0]["metadata"] == deepest

    reads()
    assert server.stop() == 0
    server.start()
    reads()


def test_metadata_size_is_still_bounded(server: Server, tenant: str) -> None:
    big = {"blob": "x" * (33 * 1024)}
    response = server.request("POST", "/tell", tenant=tenant,
                              json={"predicate": "q", "args": ["a"], "metadata": big})
    assert response.status_code == 400
    assert response.json()["details"] == {"field": "metadata"}

