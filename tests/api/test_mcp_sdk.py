"""The official MCP Python SDK as the client, over a real socket, on both transports (issue 8).

``mcp`` is a test dependency only: the server speaks the protocol itself.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

import nocturnus
from tests.api.test_mcp_tools import TOOLS, twin_of
from tests.server import Server

TRANSPORTS = ["sse", "streamable-http"]


def connect(server: Server, transport: str, headers: dict[str, str]) -> Client:
    if transport == "sse":
        return Client(sse_client(f"{server.url}/mcp/sse", headers=headers))
    http = httpx2.AsyncClient(headers=headers)
    return Client(streamable_http_client(f"{server.url}/mcp", http_client=http))


def run(
    server: Server,
    transport: str,
    headers: dict[str, str],
    body: Callable[[Client], Awaitable[Any]],
) -> Any:
    async def main() -> Any:
        async with connect(server, transport, headers) as client:
            return await body(client)

    return asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_initialize_and_list_tools(server: Server, tenant: str, transport: str) -> None:
    async def body(client: Client) -> tuple[Any, Any]:
        return client.session.initialize_result, await client.list_tools()

    init, tools = run(server, transport, {"X-Tenant-ID": tenant}, body)
    assert init.protocol_version == "2025-11-25"
    assert init.server_info.name == "nocturnus"
    assert init.capabilities.tools is not None
    offered = {
        name for name, tool in TOOLS.items() if twin_of(tool, server) is not None
    }
    assert {t.name for t in tools.tools} == offered
    assert {"tell", "teach", "ask", "forget", "query"} <= offered


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tell_then_ask_round_trip(server: Server, tenant: str, transport: str) -> None:
    async def body(client: Client) -> list[Any]:
        return [
            await client.call_tool(
                "tell", {"predicate": "parent", "args": ["alice", "bob"]}
            ),
            await client.call_tool(
                "tell", {"predicate": "parent", "args": ["bob", "carol"]}
            ),
            await client.call_tool(
                "teach",
                {
                    "head": {"predicate": "grandparent", "args": ["?x", "?z"]},
                    "body": [
                        {"predicate": "parent", "args": ["?x", "?y"]},
                        {"predicate": "parent", "args": ["?y", "?z"]},
                    ],
                },
            ),
            await client.call_tool(
                "ask", {"predicate": "grandparent", "args": ["?who", "carol"]}
            ),
            await client.call_tool("tell", {"predicate": "parent", "args": ["?oops"]}),
        ]

    told, _, taught, asked, failed = run(
        server, transport, {"X-Tenant-ID": tenant}, body
    )
    assert told.is_error is False and told.structured_content["stored"] is True
    assert taught.structured_content["stored"] is True
    assert asked.structured_content["bindings"] == [{"who": "alice"}]
    assert asked.content[0].type == "text"
    rest = server.request(
        "POST",
        "/ask",
        tenant=tenant,
        json={"predicate": "grandparent", "args": ["?who", "carol"]},
    )
    assert asked.structured_content == rest.json()
    assert failed.is_error is True
    assert failed.structured_content["code"] == "VALIDATION_ERROR"
    assert failed.structured_content["details"] == {"field": "args[0]"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_database_header_selects_the_database(
    server: Server, tenant: str, transport: str
) -> None:
    database = f"mcp_{secrets.token_hex(4)}"
    assert (
        server.request("POST", "/databases", json={"name": database}).status_code == 201
    )

    async def body(client: Client) -> Any:
        return await client.call_tool("tell", {"predicate": "where", "args": ["here"]})

    headers = {"X-Database": database, "X-Tenant-ID": tenant}
    assert run(server, transport, headers, body).is_error is False
    there = server.request(
        "POST",
        "/query",
        tenant=tenant,
        database=database,
        json={"predicate": "where", "args": ["?x"]},
    )
    elsewhere = server.request(
        "POST", "/query", tenant=tenant, json={"predicate": "where", "args": ["?x"]}
    )
    assert there.json()["count"] == 1 and elsewhere.json()["count"] == 0


def test_unknown_tool_is_a_protocol_error(server: Server) -> None:
    async def body(client: Client) -> MCPError:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("no_such_tool", {})
        return raised.value

    assert run(server, "streamable-http", {}, body).error.code == -32602


# -- auth (issue 7): runs once the security layer exists ------------------------------

AUTH_PRESENT = (Path(nocturnus.__file__).parent / "api" / "permissions.py").exists()


def _auth_routes(server: Server) -> bool:
    return "/auth/status" in server.client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_scoped_keys_are_enforced_per_tool(
    server: Server, fresh_server: Server, transport: str
) -> None:
    """A reader cannot tell through MCP; a key scoped to one tenant cannot reach another."""
    if not (AUTH_PRESENT or _auth_routes(server)):
        pytest.skip(
            "auth (issue 7) is not in this build: no nocturnus/api/permissions.py "
            "and no /auth/status route"
        )
    admin_key = "nct_" + secrets.token_urlsafe(32)
    fresh_server.env.update({"NOCTURNUS_AUTH": "on", "NOCTURNUS_ADMIN_KEY": admin_key})
    fresh_server.start()
    admin = {"Authorization": f"Bearer {admin_key}"}

    def mint(role: str, tenants: list[str]) -> str:
        made = fresh_server.request(
            "POST",
            "/auth/keys",
            headers=admin,
            json={
                "role": role,
                "databases": ["default"],
                "tenants": tenants,
                "description": "mcp test",
            },
        )
        assert made.status_code == 201, made.text
        key: str = made.json()["key"]
        return key

    reader = {
        "Authorization": f"Bearer {mint('reader', ['acme'])}",
        "X-Tenant-ID": "acme",
    }
    writer_key = mint("writer", ["acme"])
    fact = {"predicate": "plan", "args": ["enterprise"]}

    async def read_and_write(client: Client) -> tuple[Any, Any]:
        return (
            await client.call_tool("ask", {"predicate": "plan", "args": ["?x"]}),
            await client.call_tool("tell", fact),
        )

    asked, told = run(fresh_server, transport, reader, read_and_write)
    assert asked.is_error is False
    assert told.is_error is True and told.structured_content["code"] == "FORBIDDEN"

    async def tell(client: Client) -> Any:
        return await client.call_tool("tell", fact)

    own = {"Authorization": f"Bearer {writer_key}", "X-Tenant-ID": "acme"}
    other = {"Authorization": f"Bearer {writer_key}", "X-Tenant-ID": "globex"}
    assert run(fresh_server, transport, own, tell).is_error is False
    denied = run(fresh_server, transport, other, tell)
    assert denied.is_error is True and denied.structured_content["code"] == "FORBIDDEN"
    anonymous = httpx2.post(
        f"{fresh_server.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert anonymous.status_code == 401
