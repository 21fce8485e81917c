"""``/llm.txt`` and ``/.well-known/agent.json``: public, generated from what serves
(issue 18, "Admin and migration")."""

from __future__ import annotations

from nocturnus.api.mcp_tools import CATALOGUE
from tests.server import Server


def test_llm_txt_lists_every_route(auth_server: Server) -> None:
    response = auth_server.request("GET", "/llm.txt")  # public even with auth on
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    text = response.text
    paths = auth_server.request("GET", "/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert f"- `{method.upper()} {path}`: {operation['summary']}" in text
    assert "- `POST /auth/bootstrap`" in text and "(public)" in text


def test_agent_card(auth_server: Server) -> None:
    response = auth_server.request("GET", "/.well-known/agent.json")
    assert response.status_code == 200
    card = response.json()
    base = auth_server.url
    assert (card["name"], card["url"], card["documentationUrl"]) == ("nocturnus", base, f"{base}/llm.txt")
    assert card["authentication"] == {"schemes": ["bearer", "apiKey"], "required": True}
    assert [s["id"] for s in card["skills"]] == [t.name for t in CATALOGUE]
    assert all(s["name"] and s["description"] for s in card["skills"])
    mcp = card["protocolSupport"]["mcp"]
    assert (mcp["endpoint"], mcp["sseEndpoint"]) == (f"{base}/mcp", f"{base}/mcp/sse")
    init = auth_server.request(
        "POST", "/mcp", headers={"Authorization": "Bearer test-admin-key-0123456789abcdef"},
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
    )
    assert init.json()["result"]["protocolVersion"] == mcp["protocolVersion"]


def test_agent_card_without_auth(server: Server) -> None:
    card = server.request("GET", "/.well-known/agent.json").json()
    assert card["authentication"] == {"schemes": [], "required": False}
