"""The memory budget on a real server (issue 16, item 6): with a tiny
``NOCTURNUS_MEMORY_BUDGET_MB``, tenants touched in turn push the least recently used out
of memory (``/health`` and ``/metrics`` show it), and an evicted tenant answers exactly as
before — answers, context windows, context sessions — and takes writes. A tenant with an
open transaction stays; a live feed of an evicted tenant keeps delivering."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_feed import feed
from tests.server import Server

FACTS = 1200
"""Facts per tenant: ~0.45 MiB estimated (residency.py), so a 1 MiB budget holds two tenants."""


@pytest.fixture
def budget_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", env={"NOCTURNUS_MEMORY_BUDGET_MB": "1"}).start()
    try:
        yield server
    finally:
        server.stop()


def post(server: Server, path: str, tenant: str, body: Any, status: int = 200,
         **headers: str) -> Any:
    response = server.request("POST", path, tenant=tenant, json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def fill(server: Server, tenant: str) -> None:
    facts = [{"predicate": "edge", "args": [f"{tenant}-{i}", f"{tenant}-{i % 97}"]}
             for i in range(FACTS)]
    post(server, "/assert/facts", tenant, {"facts": facts})
    post(server, "/teach", tenant, {
        "head": {"predicate": "hub", "args": ["?x"]},
        "body": [{"predicate": "edge", "args": ["?y", "?x"]}],
    })


def ask(server: Server, tenant: str, edge: list[str] | None = None) -> Any:
    """The tenant's hubs (derived), or the stored ``edge`` facts matching ``edge``."""
    if edge is not None:
        return post(server, "/ask", tenant, {"predicate": "edge", "args": edge})
    return post(server, "/ask", tenant, {"predicate": "hub", "args": ["?x"]})


def window(server: Server, tenant: str) -> Any:
    return post(server, "/context/optimize", tenant, {"maxFacts": 30})


def memory(server: Server) -> dict[str, Any]:
    check: dict[str, Any] = server.client.get("/health").json()["checks"]["memory"]
    return check


def evictions(server: Server) -> float:
    text = server.client.get("/metrics").text
    found = re.search(r"^nocturnus_tenant_evictions_total (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def wait_for_resident(server: Server, tenants: list[str]) -> None:
    """Evictions run in the background right after the request that went over."""
    for _ in range(200):
        if memory(server)["resident"]["default"] == tenants:
            return
        server.client.get("/health/live")
    assert memory(server)["resident"]["default"] == tenants


def test_least_recently_used_tenants_leave_memory_and_answer_the_same(
    budget_server: Server,
) -> None:
    server = budget_server
    names = [f"t{i}" for i in range(5)]
    for name in names:
        fill(server, name)
    # t0's uses count in its windows: asked (its answers are stored facts, so used),
    # then a write (the uses are logged before it, issue 16), then asked again: those
    # uses wait in the process, outside the projection, until the next write.
    ask(server, "t0", ["?x", "t0-5"])
    post(server, "/tell", "t0", {"predicate": "edge", "args": ["t0-new", "t0-1"]})
    # A fact told and forgotten: the live index has seen more changes than the
    # reloaded one will have (its version differs, the knowledge does not).
    post(server, "/tell", "t0", {"predicate": "edge", "args": ["t0-gone", "t0-1"]})
    post(server, "/forget", "t0", {"predicate": "edge", "args": ["t0-gone", "t0-1"]})
    window(server, "t0")
    ask(server, "t0", ["?x", "t0-7"])
    before_ask = ask(server, "t0")
    before_window = window(server, "t0")
    post(server, "/context/optimize", "t0", {"maxFacts": 30, "sessionId": "s1"})
    used = [e for e in before_window["entries"] if e["args"][1] == "t0-5"]
    assert len(used) >= 10  # the uses lift these facts into the window

    for name in names[1:]:  # t0 becomes the least recently used, then leaves
        ask(server, name)
    wait_for_resident(server, ["t3", "t4"])
    check = memory(server)
    assert check["status"] == "pass", check
    assert evictions(server) >= 3

    # Reloaded from its snapshot: the same answers, the same window, the same session.
    diff = post(server, "/context/diff", "t0", {"maxFacts": 30, "sessionId": "s1"})
    assert diff["previousWindowId"] == before_window["windowId"]
    assert diff["added"] == [] and diff["removed"] == []
    assert diff["unchanged"] == len(before_window["entries"])
    assert ask(server, "t0") == before_ask
    assert window(server, "t0") == before_window
    wait_for_resident(server, ["t4", "t0"])

    # A write to an evicted tenant is stored and seen.
    post(server, "/tell", "t1", {"predicate": "edge", "args": ["t1-late", "t1-new-hub"]})
    hubs = {r["args"][0] for r in ask(server, "t1")["results"]}
    assert "t1-new-hub" in hubs


def test_an_open_transaction_pins_its_tenant_and_a_feed_survives_eviction(
    budget_server: Server,
) -> None:
    server = budget_server
    for name in ("tx", "fed", "x", "y"):
        fill(server, name)
    tx = post(server, "/tx/begin", "tx", None)["transactionId"]
    post(server, "/tell", "tx", {"predicate": "edge", "args": ["tx-a", "tx-b"]},
         **{"X-Transaction-ID": tx})
    with feed(server, "fed") as events:
        assert events.status == 200
        for name in ("fed", "x", "y"):
            ask(server, name)
        wait_for_resident(server, ["tx", "y"])  # "fed" left, "tx" stays: it is held
        post(server, "/tell", "fed", {"predicate": "edge", "args": ["fed-late", "fed-1"]})
        frame = events.next()
        assert frame["data"]["atom"]["args"] == ["fed-late", "fed-1"]
    committed = post(server, f"/tx/commit/{tx}", "tx", None)
    assert committed["committed"] is True
    hubs = {r["args"][0] for r in ask(server, "tx")["results"]}
    assert "tx-b" in hubs
