"""MCP sessions through any process (issue 16, item 3), as real subprocesses.

Two servers share one store, as in ``test_nodes.py``: two ``nocturnus serve`` on one
SQLite data dir (what ``--workers 2`` runs), or two nodes on one PostgreSQL database.
A Streamable HTTP session opened on one is served, checked for its owner and ended on
the other; an SSE stream held by one gets, in order, the answers to the POSTs sent to
the other; the session bounds count both.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.jsonrpc import HttpMcp, SseStream, sse_session
from tests.nodes import two_servers
from tests.server import Server

ADMIN = "nct_" + secrets.token_urlsafe(24)
PER_KEY = 2
ENV = {
    "NOCTURNUS_AUTH": "on",
    "NOCTURNUS_ADMIN_KEY": ADMIN,
    "NOCTURNUS_AUTH_FAILURES_PER_MINUTE": "0",
    "NOCTURNUS_RATE_LIMIT_READER_RPM": "0",
    "NOCTURNUS_RATE_LIMIT_WRITER_RPM": "0",
    "NOCTURNUS_RATE_LIMIT_ADMIN_RPM": "0",
    "NOCTURNUS_MCP_SESSIONS_PER_KEY": str(PER_KEY),
    "NOCTURNUS_MCP_KEEPALIVE_MS": "200",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two running servers on one store, auth on."""
    yield from two_servers(request.param, tmp_path, ENV, graceful=True)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def mint(server: Server, role: str = "writer") -> str:
    made = server.request("POST", "/auth/keys", headers=bearer(ADMIN), json={"role": role})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def rpc(id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": method, **({"params": params} if params else {})}


def tell(id: int, predicate: str, *args: Any) -> dict[str, Any]:
    return rpc(id, "tools/call", {"name": "tell", "arguments": {"predicate": predicate, "args": list(args)}})


def count(server: Server, tenant: str, predicate: str) -> int:
    found = server.request("POST", "/query", tenant=tenant, headers=bearer(ADMIN),
                           json={"predicate": predicate, "args": ["?x"]})
    assert found.status_code == 200, found.text
    return int(found.json()["count"])


def on(server: Server, client: HttpMcp) -> HttpMcp:
    """The same session, its requests sent to ``server``."""
    moved = HttpMcp(server, client.headers)
    moved.session_id, moved.version = client.session_id, client.version
    return moved


def eventually(check: Any, what: str, timeout_s: float = 30) -> None:
    """Wait for what another process does in its own time (not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def test_a_streamable_session_opened_on_one_node_is_served_by_the_other(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    key = mint(a)
    headers = {**bearer(key), "X-Tenant-ID": "acme"}
    opened = HttpMcp(a, headers)
    opened.initialize()
    via_b = on(b, opened)
    told = via_b.call("tell", {"predicate": "seen", "args": ["b"]})
    assert told["isError"] is False, told
    assert count(a, "acme", "seen") == 1
    # The negotiated version travels with the session: another one is refused on B too.
    assert via_b.post(rpc(2, "ping"), **{"MCP-Protocol-Version": "2025-06-18"}).status_code == 400
    # Only its opener may use it, wherever the request lands.
    thief = HttpMcp(b, {**bearer(mint(a)), "X-Tenant-ID": "acme"})
    thief.session_id = opened.session_id
    assert thief.post(tell(3, "hijacked", "x")).status_code == 404
    elsewhere = on(b, opened)
    elsewhere.headers["X-Tenant-ID"] = "globex"
    assert elsewhere.post(rpc(4, "ping")).status_code == 404
    # A GET stream held by A ends when B deletes the session; then A knows it no more.
    session = {**headers, "Mcp-Session-Id": opened.session_id or ""}
    with (
        httpx.Client(base_url=a.url, timeout=httpx.Timeout(30, read=60)) as http,
        http.stream("GET", "/mcp", headers={**session, "Accept": "text/event-stream"}) as stream,
    ):
        assert stream.status_code == 200
        # One stream per session, whichever node is asked.
        assert b.request("GET", "/mcp", headers={**session, "Accept": "text/event-stream"}).status_code == 409
        assert b.request("DELETE", "/mcp", headers={**bearer(mint(a)), "X-Tenant-ID": "acme",
                                                     "Mcp-Session-Id": opened.session_id or ""}).status_code == 404
        assert b.request("DELETE", "/mcp", headers=session).status_code == 200
        rest = list(stream.iter_lines())  # returns once A ends the stream
    assert all(line.startswith(":") or line == "" for line in rest)
    assert opened.post(rpc(5, "ping")).status_code == 404
    assert count(a, "acme", "hijacked") == 0


def test_an_sse_stream_on_one_node_gets_the_answers_to_posts_on_the_other_in_order(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    key = mint(a)
    headers = {**bearer(key), "X-Tenant-ID": "acme"}
    with sse_session(a, headers) as (stream, endpoint):
        initialize = rpc(0, "initialize", {"protocolVersion": "2024-11-05", "capabilities": {},
                                           "clientInfo": {"name": "t", "version": "1"}})
        assert b.client.post(endpoint, json=initialize, headers=headers).status_code == 202
        assert stream.next_message()["result"]["protocolVersion"] == "2024-11-05"
        # Initialized through B: A knows it.
        assert a.client.post(endpoint, json=rpc(1, "initialize", initialize["params"]),
                             headers=headers).status_code == 202
        assert "already initialized" in stream.next_message()["error"]["message"]
        assert b.client.post(endpoint, json=tell(2, "via", "b"), headers=headers).status_code == 202
        answered = stream.next_message()
        assert answered["id"] == 2 and answered["result"]["isError"] is False, answered
        assert count(a, "acme", "via") == 1
        # A burst through B arrives in the order it was posted.
        for n in range(10, 40):
            assert b.client.post(endpoint, json=rpc(n, "ping"), headers=headers).status_code == 202
        assert [stream.next_message()["id"] for _ in range(10, 40)] == list(range(10, 40))
        # Through B, too, the session answers its opener only.
        thief = {**bearer(mint(a)), "X-Tenant-ID": "acme"}
        assert b.client.post(endpoint, json=tell(50, "hijacked", "x"), headers=thief).status_code == 404
        # Through both nodes, writes and pings mixed: still in POST order (a write
        # served on one node is not overtaken by a ping posted after it on the other).
        for n in range(60, 80):
            server = a if n % 2 else b
            message = tell(n, "mixed", n) if n % 3 == 0 else rpc(n, "ping")
            assert server.client.post(endpoint, json=message, headers=headers).status_code == 202
        assert [stream.next_message()["id"] for _ in range(60, 80)] == list(range(60, 80))
        assert count(b, "acme", "mixed") == 7
    # The stream's end ends the session, for B too.
    eventually(lambda: b.client.post(endpoint, json=rpc(99, "ping"), headers=headers).status_code == 404,
               "B forgets the session once its stream ended on A")
    assert count(a, "acme", "hijacked") == 0


def test_the_session_bounds_count_both_nodes(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    key = mint(a, "reader")
    with SseStream(a, {**bearer(key), "X-Tenant-ID": "t1"}) as first:
        assert first.status == 200
        with SseStream(b, {**bearer(key), "X-Tenant-ID": "t2"}) as second:
            assert second.status == 200
            refused = a.request("GET", "/mcp/sse", headers={**bearer(key), "X-Tenant-ID": "t3"})
            assert refused.status_code == 503
            assert refused.json()["details"]["scope"] == "for this API key"
    # Streamable HTTP: the key's oldest session gives way, whichever node opened it.
    clients = [HttpMcp(server, bearer(key)) for server in (a, b, a, b)]
    for client in clients:
        client.initialize()
    assert [on(b, c).post(rpc(1, "ping")).status_code for c in clients] == [404, 404, 200, 200]
    sessions = "nocturnus_mcp_sessions"
    metrics = b.request("GET", "/metrics", headers=bearer(ADMIN)).text
    assert f'{sessions}{{transport="http"}} {PER_KEY}.0' in metrics  # both nodes' sessions


def test_a_node_stopping_ends_its_streams_and_their_sessions(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    headers = {**bearer(mint(a)), "X-Tenant-ID": "acme"}
    with SseStream(a, headers) as stream:
        endpoint = stream.endpoint()
        assert b.client.post(endpoint, json=rpc(1, "ping"), headers=headers).status_code == 202
        assert stream.next_message()["id"] == 1
        a.stop(signal.SIGTERM)
        assert stream.ended.wait(30)
    assert b.client.post(endpoint, json=rpc(2, "ping"), headers=headers).status_code == 404


def test_serve_with_two_workers_serves_mcp_sessions_over_fresh_connections(
    tmp_path: Path,
) -> None:
    """``serve --workers 2``: the kernel hands each new connection to either worker, so
    a session's requests reach both, and no balancer can keep them together."""
    server = Server(tmp_path / "data", env=ENV, args=("--workers", "2")).start()
    fresh = httpx.Client(base_url=server.url, timeout=30,
                         limits=httpx.Limits(max_keepalive_connections=0))
    server.client = fresh  # every request of the helpers on a new connection
    try:
        headers = {**bearer(mint(server)), "X-Tenant-ID": "acme"}
        client = HttpMcp(server, headers)
        client.initialize()
        for n in range(20):
            assert client.call("tell", {"predicate": "w", "args": [n]})["isError"] is False
        assert client.request("tools/call", {"name": "query", "arguments": {
            "predicate": "w", "args": ["?n"]}})["result"]["structuredContent"]["count"] == 20
        with sse_session(server, headers) as (stream, endpoint):
            for n in range(20):
                assert fresh.post(endpoint, json=rpc(n, "ping"), headers=headers).status_code == 202
            assert [stream.next_message()["id"] for _ in range(20)] == list(range(20))
        assert fresh.delete("/mcp", headers={**headers, "Mcp-Session-Id": client.session_id or ""}).status_code == 200
        assert client.post(rpc(99, "ping")).status_code == 404
    finally:
        fresh.close()
        server.stop()
    assert "Traceback" not in server.output()
