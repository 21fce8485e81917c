"""Context sessions, conversations and transactions through any process (issue 16).

Two real servers on one store — two processes on one SQLite data dir, two nodes on one
PostgreSQL database — share them through the shared state store: a ``/context/diff``
session begun on one continues on the other, a conversation of ``POST /context`` gets
its hint from the turns another process kept, a transaction begun on one takes writes
through the other and commits on the first, and a tenant deleted on one leaves no
session or transaction readable on the other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_llm import FakeVendor, reply
from tests.nodes import two_servers
from tests.server import Server

TX = "X-Transaction-ID"


@pytest.fixture(params=["sqlite", "postgresql"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    yield from two_servers(request.param, tmp_path, {})


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    fake = FakeVendor().start()
    yield fake
    fake.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def llm_nodes(request: pytest.FixtureRequest, tmp_path: Path,
              vendor: FakeVendor) -> Iterator[tuple[Server, Server]]:
    env = {
        "NOCTURNUS_LLM_PROVIDER": "openai",
        "NOCTURNUS_LLM_MODEL": "fake-openai-model",
        "NOCTURNUS_LLM_BASE_URL": vendor.url + "/v1",
        "NOCTURNUS_LLM_API_KEY": "sk-test-not-a-secret",
        "NOCTURNUS_LLM_CALLS_PER_MINUTE": "0",
    }
    yield from two_servers(request.param, tmp_path, env)


def call(server: Server, path: str, tenant: str, body: Any = None, status: int = 200,
         **headers: str) -> Any:
    response = server.request("POST", path, tenant=tenant, json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def tell(server: Server, tenant: str, *args: Any, **headers: str) -> Any:
    return call(server, "/tell", tenant, {"predicate": "p", "args": list(args)}, **headers)


def test_a_diff_session_begun_on_one_node_continues_on_the_other(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    for arg in ("x", "y"):
        tell(a, "acme", arg)
    body = {"sessionId": "thread-42", "maxFacts": 10}
    first = call(a, "/context/optimize", "acme", body)
    assert len(first["entries"]) == 2

    same = call(b, "/context/diff", "acme", body)
    assert same["previousWindowId"] == first["windowId"]
    assert (same["added"], same["removed"], same["unchanged"]) == ([], [], 2)

    tell(b, "acme", "z")
    grown = call(a, "/context/diff", "acme", body)
    assert grown["previousWindowId"] == same["currentWindowId"]
    assert [e["args"] for e in grown["added"]] == [["z"]] and grown["unchanged"] == 2
    assert grown["formattedText"].startswith("+ p(z)")

    # the session is the tenant's: another tenant's same id is another session
    tell(b, "globex", "x")
    assert call(b, "/context/diff", "globex", body)["previousWindowId"] is None

    assert call(b, "/context/session/clear", "acme", {"sessionId": "thread-42"}) == {
        "cleared": True, "sessionId": "thread-42"}
    assert call(a, "/context/diff", "acme", body)["previousWindowId"] is None


def test_a_conversation_continues_on_the_other_node(
    llm_nodes: tuple[Server, Server], vendor: FakeVendor,
) -> None:
    a, b = llm_nodes
    turn = {"predicate": "ticket_status", "args": ["t1", "open"]}
    vendor.script(reply({"facts": [turn]}))
    first = call(a, "/context", "acme", {"turns": ["User: ticket t1 is open"],
                                         "sessionId": "t1"})
    assert first["newFactsExtracted"] == 1 and first["briefingDelta"] is None
    vendor.script(reply({"facts": [{"predicate": "ticket_owner", "args": ["t1", "sam"]}]}))
    second = call(b, "/context", "acme", {"turns": ["Agent: sam owns t1"], "sessionId": "t1"})
    # B's diff continued A's window, and B's hint was the turn A kept
    assert second["briefingDelta"] == "The ticket owner of t1 is sam."
    assert "User: ticket t1 is open" in str(vendor.requests[0])


def test_a_transaction_begun_on_one_node_takes_writes_on_the_other(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    tell(a, "acme", "before")
    tx = call(a, "/tx/begin", "acme")["transactionId"]
    assert tell(b, "acme", "on_b", **{TX: tx})["buffered"] is True
    assert tell(a, "acme", "on_a", **{TX: tx})["buffered"] is True
    assert tell(b, "acme", "on_b_again", **{TX: tx})["buffered"] is True
    ask = {"predicate": "p", "args": ["?x"]}
    inside = call(b, "/ask", "acme", ask, **{TX: tx})
    assert sorted(r["args"][0] for r in inside["results"]) == [
        "before", "on_a", "on_b", "on_b_again"]
    outside = call(b, "/ask", "acme", ask)
    assert [r["args"] for r in outside["results"]] == [["before"]]

    done = call(a, f"/tx/commit/{tx}", "acme")
    assert (done["steps"], done["events"]) == (3, 3)
    assert sorted(r["args"][0] for r in call(b, "/ask", "acme", ask)["results"]) == [
        "before", "on_a", "on_b", "on_b_again"]
    # ended everywhere
    call(b, "/tell", "acme", {"predicate": "p", "args": ["late"]}, status=404, **{TX: tx})
    call(b, f"/tx/rollback/{tx}", "acme", status=404)

    # the per-key limit counts the transactions open on every node
    rolled = call(b, "/tx/begin", "acme")["transactionId"]
    call(a, f"/tx/rollback/{rolled}", "acme")
    call(b, "/tell", "acme", {"predicate": "p", "args": ["r"]}, status=404, **{TX: rolled})


def test_writes_racing_into_one_transaction_on_two_nodes_are_all_committed(
    nodes: tuple[Server, Server],
) -> None:
    """Each buffered write is kept on the steps it was decided on (compare-and-set):
    every write acknowledged as buffered, through either node, is in the commit."""
    a, b = nodes
    tx = call(a, "/tx/begin", "acme")["transactionId"]
    acked: list[str] = []
    errors: list[str] = []

    def writer(server: Server, name: str) -> None:
        client = httpx.Client(base_url=server.url, timeout=30)
        for n in range(12):
            arg = f"{name}{n}"
            r = client.post("/tell", headers={"X-Tenant-ID": "acme", TX: tx},
                            json={"predicate": "p", "args": [arg]})
            if r.status_code == 200 and r.json()["buffered"] is True:
                acked.append(arg)
            elif r.status_code != 503:  # 503: contention, retryable
                errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=writer, args=(server, name))
               for server, name in ((a, "a"), (b, "b"), (a, "c"), (b, "d"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]
    done = call(b, f"/tx/commit/{tx}", "acme")
    assert done["steps"] == len(acked) > 0
    stored = call(a, "/ask", "acme", {"predicate": "p", "args": ["?x"]})["results"]
    assert sorted(r["args"][0] for r in stored) == sorted(acked)


def test_a_tenant_deleted_on_one_node_leaves_nothing_readable_on_the_other(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    tell(a, "doomed", "x")
    body = {"sessionId": "s", "maxFacts": 10}
    call(a, "/context/optimize", "doomed", body)
    tx = call(a, "/tx/begin", "doomed")["transactionId"]
    tell(a, "doomed", "buffered", **{TX: tx})
    r = b.request("DELETE", "/admin/databases/default/tenants/doomed")
    assert r.status_code == 200, r.text
    tell(b, "doomed", "x")  # the same name again: a new tenant, with a new key
    assert call(a, "/context/diff", "doomed", body)["previousWindowId"] is None
    call(a, "/tell", "doomed", {"predicate": "p", "args": ["y"]}, status=404, **{TX: tx})
    call(b, f"/tx/commit/{tx}", "doomed", status=404)
