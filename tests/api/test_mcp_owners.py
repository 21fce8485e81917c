"""MCP sessions belong to who opened them, and nobody holds all the slots (issue 14, 3-4).

The reproduction: a reader key scoped to database A / tenant X that learnt the
``sessionId`` of an admin's SSE session on database B could post ``tell`` to it (stored
in B, answered on the admin's stream), any key could ``DELETE /mcp`` another's session,
one key could hold every SSE slot (503 for everyone else) and push other principals'
Streamable HTTP sessions out.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.api.jsonrpc import HttpMcp, SseStream, sse_session
from tests.server import Server

ADMIN = "nct_" + secrets.token_urlsafe(24)
TOTAL, PER_KEY, PER_TENANT = 6, 2, 3


@pytest.fixture(scope="module")
def owners_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "NOCTURNUS_AUTH": "on",
        "NOCTURNUS_ADMIN_KEY": ADMIN,
        "NOCTURNUS_AUTH_FAILURES_PER_MINUTE": "0",
        "NOCTURNUS_RATE_LIMIT_READER_RPM": "0",
        "NOCTURNUS_RATE_LIMIT_WRITER_RPM": "0",
        "NOCTURNUS_RATE_LIMIT_ADMIN_RPM": "0",
        "NOCTURNUS_MCP_SESSIONS": str(TOTAL),
        "NOCTURNUS_MCP_SESSIONS_PER_KEY": str(PER_KEY),
        "NOCTURNUS_MCP_SESSIONS_PER_TENANT": str(PER_TENANT),
    }
    srv = Server(tmp_path_factory.mktemp("mcp-owners") / "data", env=env).start()
    yield srv
    srv.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def mint(server: Server, role: str, databases: list[str], tenants: list[str]) -> str:
    made = server.request("POST", "/auth/keys", headers=bearer(ADMIN), json={
        "role": role, "databases": databases, "tenants": tenants})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def database(server: Server) -> str:
    name = "db_" + uuid.uuid4().hex[:10]
    made = server.request("POST", "/databases", headers=bearer(ADMIN), json={"name": name})
    assert made.status_code in (200, 201), made.text
    return name


def tenant() -> str:
    return "t_" + uuid.uuid4().hex[:10]


def rpc(id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": method, **({"params": params} if params else {})}


def tell(id: int, predicate: str) -> dict[str, Any]:
    return rpc(id, "tools/call", {"name": "tell", "arguments": {"predicate": predicate, "args": ["x"]}})


def count(server: Server, db: str, tenant_id: str, predicate: str) -> int:
    found = server.request("POST", "/query", tenant=tenant_id, database=db,
                           headers=bearer(ADMIN), json={"predicate": predicate, "args": ["?x"]})
    assert found.status_code == 200, found.text
    return int(found.json()["count"])


# -- item 3: a session answers only its owner --------------------------------------------


def test_another_key_cannot_post_to_an_sse_session(owners_server: Server) -> None:
    db_a, db_b, x, y = database(owners_server), database(owners_server), tenant(), tenant()
    reader = {**bearer(mint(owners_server, "reader", [db_a], [x])), "X-Database": db_a, "X-Tenant-ID": x}
    owner = {**bearer(ADMIN), "X-Database": db_b, "X-Tenant-ID": y}
    with sse_session(owners_server, owner) as (stream, endpoint):
        stolen = owners_server.client.post(endpoint, json=tell(1, "hijacked"), headers=reader)
        assert stolen.status_code == 404, stolen.text
        # Same answer with no headers but the key: the session is not the reader's.
        bare = owners_server.client.post(endpoint, json=tell(2, "hijacked"),
                                         headers=bearer(mint(owners_server, "writer", [], [])))
        assert bare.status_code == 404
        # The owner's key, but another tenant named: not this session either.
        elsewhere = owners_server.client.post(
            endpoint, json=tell(3, "hijacked"), headers={**bearer(ADMIN), "X-Tenant-ID": x})
        assert elsewhere.status_code == 404
        # The owner itself is served, with or without repeating the GET's headers.
        assert owners_server.client.post(endpoint, json=tell(4, "own"), headers=owner).status_code == 202
        assert stream.next_message()["id"] == 4
        assert owners_server.client.post(endpoint, json=tell(5, "own"), headers=bearer(ADMIN)).status_code == 202
        assert stream.next_message()["id"] == 5
    assert count(owners_server, db_b, y, "hijacked") == 0
    assert count(owners_server, db_b, y, "own") == 1


def test_another_key_cannot_use_or_end_a_streamable_session(owners_server: Server) -> None:
    db, x = database(owners_server), tenant()
    owner = HttpMcp(owners_server, {**bearer(ADMIN), "X-Database": db, "X-Tenant-ID": x})
    owner.initialize()
    session = {"Mcp-Session-Id": owner.session_id or ""}
    thief_key = mint(owners_server, "writer", [db], [x])
    thief = {**bearer(thief_key), "X-Database": db, "X-Tenant-ID": x, **session}
    client = owners_server.client
    posted = client.post("/mcp", json=tell(1, "hijacked"), headers={
        **thief, "Accept": "application/json, text/event-stream"})
    assert posted.status_code == 404, posted.text
    assert opened(owners_server, "/mcp", {**thief, "Accept": "text/event-stream"})[0] == 404
    assert client.delete("/mcp", headers=thief).status_code == 404
    # The owner's key on another tenant is not the owner either.
    moved = {**bearer(ADMIN), "X-Database": db, "X-Tenant-ID": tenant(), **session}
    assert client.delete("/mcp", headers=moved).status_code == 404
    # The session lives on for its owner, who alone can end it.
    assert owner.call("tell", {"predicate": "own", "args": ["x"]})["isError"] is False
    assert client.delete("/mcp", headers={**owner.headers, "X-Database": db, "X-Tenant-ID": x,
                                          **session}).status_code == 200
    assert count(owners_server, db, x, "hijacked") == 0


# -- item 4: quotas per key and per tenant ------------------------------------------------


def opened(server: Server, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    """Status and JSON body of a GET that may open a stream: read only its head when it
    does (a stream opened by mistake must not hold the test up)."""
    with server.client.stream("GET", path, headers=headers) as response:
        if response.status_code == 200:
            return 200, None
        return response.status_code, response.read() and response.json()


def open_streams(stack: ExitStack, server: Server, headers: dict[str, str], n: int) -> None:
    for _ in range(n):
        stack.enter_context(sse_session(server, headers))


def test_one_key_cannot_hold_every_sse_slot(owners_server: Server) -> None:
    db = database(owners_server)
    greedy = {**bearer(mint(owners_server, "reader", [db], [])), "X-Database": db}
    other = {**bearer(mint(owners_server, "reader", [db], [])), "X-Database": db, "X-Tenant-ID": tenant()}
    with ExitStack() as stack:
        for _ in range(PER_KEY):
            open_streams(stack, owners_server, {**greedy, "X-Tenant-ID": tenant()}, 1)
        status, refused = opened(owners_server, "/mcp/sse", {**greedy, "X-Tenant-ID": tenant()})
        assert status == 503, refused
        assert refused["details"]["scope"] == "for this API key"
        with sse_session(owners_server, other):
            pass  # everyone else still gets a slot


def test_keys_sharing_a_tenant_share_its_sse_slots(owners_server: Server) -> None:
    db, shared = database(owners_server), tenant()
    keys = [mint(owners_server, "reader", [db], [shared]) for _ in range(3)]
    with ExitStack() as stack:
        open_streams(stack, owners_server, {**bearer(keys[0]), "X-Database": db, "X-Tenant-ID": shared}, 2)
        open_streams(stack, owners_server, {**bearer(keys[1]), "X-Database": db, "X-Tenant-ID": shared}, 1)
        status, refused = opened(owners_server, "/mcp/sse", {
            **bearer(keys[2]), "X-Database": db, "X-Tenant-ID": shared})
        assert status == 503, refused
        assert refused["details"]["scope"] == "for this tenant"


def test_a_key_opening_streamable_sessions_ends_only_its_own(owners_server: Server) -> None:
    db = database(owners_server)
    victim = HttpMcp(owners_server, {**bearer(mint(owners_server, "reader", [db], [])),
                                     "X-Database": db, "X-Tenant-ID": tenant()})
    victim.initialize()
    greedy_key = mint(owners_server, "reader", [db], [])
    greedy = [HttpMcp(owners_server, {**bearer(greedy_key), "X-Database": db, "X-Tenant-ID": tenant()})
              for _ in range(TOTAL + 2)]
    for client in greedy:
        client.initialize()
    ping = rpc(9, "ping")
    assert victim.post(ping).status_code == 200  # never pushed out by another key
    # The greedy key holds its newest PER_KEY sessions; its older ones ended.
    assert [c.post(ping).status_code for c in greedy] == [404] * (TOTAL + 2 - PER_KEY) + [200] * PER_KEY


def test_a_full_server_refuses_a_new_streamable_session_rather_than_end_others(
    tmp_path: Path,
) -> None:
    env = {"NOCTURNUS_AUTH": "on", "NOCTURNUS_ADMIN_KEY": ADMIN,
           "NOCTURNUS_AUTH_FAILURES_PER_MINUTE": "0", "NOCTURNUS_MCP_SESSIONS": "2"}
    server = Server(tmp_path / "data", env=env).start()
    try:
        holders = [HttpMcp(server, bearer(mint(server, "reader", [], []))) for _ in range(2)]
        for client in holders:
            client.initialize()
        late = HttpMcp(server, bearer(mint(server, "reader", [], [])))
        refused = late.post(rpc(0, "initialize", {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}))
        assert refused.status_code == 503, refused.text
        assert "Mcp-Session-Id" not in refused.headers
        assert [c.post(rpc(1, "ping")).status_code for c in holders] == [200, 200]
    finally:
        server.stop()


def test_unscoped_anonymous_sessions_still_end_least_recently_used_first(
    tmp_path: Path,
) -> None:
    """With auth off all callers are one principal: its own oldest session makes room."""
    server = Server(tmp_path / "data", env={"NOCTURNUS_MCP_SESSIONS": "2"}).start()
    try:
        clients = [HttpMcp(server) for _ in range(3)]
        for client in clients:
            client.initialize()
        assert [c.post(rpc(1, "ping")).status_code for c in clients] == [404, 200, 200]
    finally:
        server.stop()


def test_sse_stream_of_another_key_is_not_ended_by_a_full_bound(owners_server: Server) -> None:
    db, shared = database(owners_server), tenant()
    first = {**bearer(mint(owners_server, "reader", [db], [shared])), "X-Database": db, "X-Tenant-ID": shared}
    with SseStream(owners_server, first) as stream:
        endpoint = stream.endpoint()
        second = {**bearer(mint(owners_server, "reader", [db], [shared])), "X-Database": db,
                  "X-Tenant-ID": shared}
        with ExitStack() as stack:
            open_streams(stack, owners_server, second, PER_KEY)
            assert owners_server.client.post(endpoint, json=rpc(1, "ping"), headers=first).status_code == 202
            assert stream.next_message()["id"] == 1
