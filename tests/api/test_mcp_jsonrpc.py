"""JSON-RPC 2.0 and MCP lifecycle rules on both transports, spoken by hand (issue 8)."""

from __future__ import annotations

import orjson
import pytest

from tests.api.jsonrpc import (
    SUPPORTED_VERSIONS,
    HttpMcp,
    initialize_params,
    sse_session,
)
from tests.server import Server

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = (
    -32700,
    -32600,
    -32601,
    -32602,
)


def rpc(id: object, method: str, params: object = None) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


# -- initialize and version negotiation -----------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_initialize_answers_the_version_the_client_asks_for(
    server: Server, version: str
) -> None:
    result = HttpMcp(server).initialize(version)
    assert result["protocolVersion"] == version
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "nocturnus"


def test_initialize_with_an_unknown_version_answers_our_latest(server: Server) -> None:
    assert HttpMcp(server).initialize("1999-01-01")["protocolVersion"] == "2025-11-25"


def test_initialize_without_a_protocol_version_answers_our_latest(server: Server) -> None:
    # issue 18: the original's SDK (nocturnusai.mcp) sends initialize without params
    for params in (None, {"capabilities": {}}):
        response = HttpMcp(server).post(rpc(1, "initialize", params))
        assert response.status_code == 200
        assert response.json()["result"]["protocolVersion"] == "2025-11-25"
        assert response.headers["Mcp-Session-Id"]


def test_initialize_refuses_a_protocol_version_that_is_not_a_string(server: Server) -> None:
    response = HttpMcp(server).post(rpc(1, "initialize", {"protocolVersion": 7}))
    assert response.status_code == 200
    assert response.json()["error"]["code"] == INVALID_PARAMS
    assert (
        "Mcp-Session-Id" not in response.headers
    )  # no session for a failed initialize


def test_a_session_initializes_once(server: Server) -> None:
    client = HttpMcp(server)
    client.initialize()
    again = client.post(rpc(9, "initialize", initialize_params()))
    assert again.json()["error"]["code"] == INVALID_REQUEST


def test_ping_and_session_header_on_answers(server: Server) -> None:
    client = HttpMcp(server)
    client.initialize()
    response = client.post(rpc("p-1", "ping"))
    assert response.json() == {"jsonrpc": "2.0", "id": "p-1", "result": {}}
    assert response.headers["Mcp-Session-Id"] == client.session_id
    assert response.headers["Content-Type"] == "application/json"


# -- JSON-RPC error codes ------------------------------------------------------------


def test_parse_error(server: Server) -> None:
    response = HttpMcp(server).post(None, raw=b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == PARSE_ERROR and body["id"] is None


@pytest.mark.parametrize(
    "message",
    [
        {"id": 1, "method": "ping"},  # no jsonrpc
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1},  # neither method nor result
        {"jsonrpc": "2.0", "id": 1, "method": 42},
        {"jsonrpc": "2.0", "id": None, "method": "ping"},  # MCP ids are never null
        {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "x"},
        "just a string",
    ],
)
def test_invalid_request(server: Server, message: object) -> None:
    response = HttpMcp(server).post(message)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == INVALID_REQUEST


def test_unknown_method(server: Server) -> None:
    client = HttpMcp(server)
    client.initialize()
    answer = client.post(rpc(3, "resources/list")).json()
    assert answer["id"] == 3 and answer["error"]["code"] == METHOD_NOT_FOUND


@pytest.mark.parametrize(
    "params",
    [
        {"arguments": {}},  # no name
        {"name": 7},
        {"name": "ask", "arguments": ["p"]},
        {"name": "no_such_tool", "arguments": {}},
    ],
)
def test_bad_tools_call_params(server: Server, params: dict[str, object]) -> None:
    client = HttpMcp(server)
    client.initialize()
    answer = client.post(rpc(4, "tools/call", params)).json()
    assert answer["error"]["code"] == INVALID_PARAMS


def test_positional_params_are_bad_params(server: Server) -> None:
    answer = HttpMcp(server).post(rpc(5, "tools/list", ["x"])).json()
    assert answer["error"]["code"] == INVALID_PARAMS


def test_tools_list_rejects_a_cursor_it_never_gave(server: Server) -> None:
    answer = HttpMcp(server).post(rpc(6, "tools/list", {"cursor": "abc"})).json()
    assert answer["error"]["code"] == INVALID_PARAMS


def test_tool_argument_errors_are_tool_results(server: Server, tenant: str) -> None:
    """Input validation is a tool execution error (isError), as MCP 2025-11-25 asks."""
    client = HttpMcp(server, {"X-Tenant-ID": tenant})
    client.initialize()
    result = client.call("tell", {"predicate": "p", "args": ["a"], "bogus": 1})
    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "VALIDATION_ERROR"
    assert result["structuredContent"]["details"] == {"field": "bogus"}
    assert orjson.loads(result["content"][0]["text"]) == result["structuredContent"]


def test_conflict_is_a_tool_result_with_the_envelope(
    server: Server, tenant: str
) -> None:
    client = HttpMcp(server, {"X-Tenant-ID": tenant})
    client.initialize()
    assert client.call("tell", {"predicate": "vip", "args": ["x"]})["isError"] is False
    clash = client.call("tell", {"predicate": "vip", "args": ["x"], "negated": True})
    rest = server.request(
        "POST",
        "/tell",
        tenant=tenant,
        json={"predicate": "vip", "args": ["x"], "negated": True},
    )
    assert rest.status_code == 409
    assert clash["isError"] is True
    assert clash["structuredContent"] == rest.json()


# -- notifications, responses, batches -----------------------------------------------


def test_notifications_get_no_answer(server: Server) -> None:
    client = HttpMcp(server)
    client.initialize()
    for method in (
        "notifications/initialized",
        "notifications/cancelled",
        "no/such/notification",
    ):
        response = client.post({"jsonrpc": "2.0", "method": method, "params": {}})
        assert response.status_code == 202 and response.content == b""


def test_a_client_response_is_accepted_silently(server: Server) -> None:
    client = HttpMcp(server)
    client.initialize()
    response = client.post({"jsonrpc": "2.0", "id": 77, "result": {}})
    assert response.status_code == 202 and response.content == b""


@pytest.mark.parametrize("version", ["2024-11-05", "2025-06-18", "2025-11-25"])
def test_batches_are_rejected_where_the_version_has_none(
    server: Server, version: str
) -> None:
    client = HttpMcp(server)
    client.initialize(version)
    response = client.post([rpc(1, "ping"), rpc(2, "ping")])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == INVALID_REQUEST


def test_batches_under_2025_03_26(server: Server, tenant: str) -> None:
    client = HttpMcp(server, {"X-Tenant-ID": tenant})
    client.initialize("2025-03-26")
    batch = [
        rpc(1, "ping"),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        rpc(
            2,
            "tools/call",
            {"name": "tell", "arguments": {"predicate": "b", "args": [1]}},
        ),
        rpc(3, "no/such/method"),
        {"jsonrpc": "2.0"},
        rpc(4, "initialize", initialize_params("2025-03-26")),
    ]
    answers = client.post(batch).json()
    assert [a["id"] for a in answers] == [1, 2, 3, None, 4]
    assert answers[0]["result"] == {}
    assert answers[1]["result"]["structuredContent"]["stored"] is True
    assert answers[2]["error"]["code"] == METHOD_NOT_FOUND
    assert answers[3]["error"]["code"] == INVALID_REQUEST
    assert answers[4]["error"]["code"] == INVALID_REQUEST  # initialize is never batched
    only_notifications = client.post(
        [{"jsonrpc": "2.0", "method": "notifications/progress"}]
    )
    assert only_notifications.status_code == 202 and only_notifications.content == b""
    empty = client.post([])
    assert empty.status_code == 400 and empty.json()["error"]["code"] == INVALID_REQUEST


def test_sessionless_batches_follow_the_version_header(server: Server) -> None:
    """Without a session or header the spec says to assume 2025-03-26, which batches."""
    client = HttpMcp(server)
    assert client.post([rpc(1, "ping")]).json() == [
        {"jsonrpc": "2.0", "id": 1, "result": {}}
    ]
    pinned = client.post([rpc(1, "ping")], **{"MCP-Protocol-Version": "2025-06-18"})
    assert pinned.status_code == 400


# -- Streamable HTTP sessions and headers ---------------------------------------------


def test_unknown_session_is_404(server: Server) -> None:
    client = HttpMcp(server)
    client.session_id = "no-such-session"
    response = client.post(rpc(1, "ping"))
    assert response.status_code == 404
    assert (
        server.request("GET", "/mcp", headers={"Mcp-Session-Id": "nope"}).status_code
        == 404
    )
    assert (
        server.request("DELETE", "/mcp", headers={"Mcp-Session-Id": "nope"}).status_code
        == 404
    )


def test_get_and_delete_need_a_session_header(server: Server) -> None:
    assert server.request("GET", "/mcp").status_code == 400
    assert server.request("DELETE", "/mcp").status_code == 400


def test_delete_ends_the_session(server: Server) -> None:
    client = HttpMcp(server)
    client.initialize()
    deleted = server.request(
        "DELETE", "/mcp", headers={"Mcp-Session-Id": client.session_id or ""}
    )
    assert deleted.status_code == 200 and deleted.json() == {
        "deleted": client.session_id
    }
    assert client.post(rpc(1, "ping")).status_code == 404


def test_protocol_version_header(server: Server) -> None:
    client = HttpMcp(server)
    unsupported = client.post(rpc(1, "ping"), **{"MCP-Protocol-Version": "2099-01-01"})
    assert unsupported.status_code == 400
    client.initialize("2025-06-18")
    mismatch = client.post(rpc(2, "ping"), **{"MCP-Protocol-Version": "2025-11-25"})
    assert mismatch.status_code == 400
    assert client.post(rpc(3, "ping")).status_code == 200


def test_foreign_origins_are_refused(server: Server) -> None:
    """DNS rebinding protection: a browser page of another site gets 403."""
    evil = {"Origin": "http://evil.example:9300"}
    assert HttpMcp(server, evil).post(rpc(1, "ping")).status_code == 403
    assert server.request("GET", "/mcp/sse", headers=evil).status_code == 403
    local = HttpMcp(server, {"Origin": "http://localhost:6274"})
    assert local.post(rpc(1, "ping")).status_code == 200


def test_accept_must_allow_json(server: Server) -> None:
    response = HttpMcp(server, {"Accept": "text/html"}).post(rpc(1, "ping"))
    assert response.status_code == 406


def test_headers_are_validated_like_rest(server: Server) -> None:
    response = HttpMcp(server, {"X-Tenant-ID": "no spaces!"}).post(rpc(1, "ping"))
    assert response.status_code == 400
    assert response.json()["error"]["data"]["details"] == {"field": "X-Tenant-ID"}
    bad_db = HttpMcp(server, {"X-Database": "bad/db"}).post(rpc(1, "ping"))
    assert bad_db.status_code == 400


def test_unknown_database_fails_each_tool_call(server: Server) -> None:
    client = HttpMcp(server, {"X-Database": "never_created"})
    client.initialize()
    result = client.call("ask", {"predicate": "p", "args": ["?x"]})
    assert (
        result["isError"] is True and result["structuredContent"]["code"] == "NOT_FOUND"
    )


def test_tenant_defaults_to_default(server: Server) -> None:
    client = HttpMcp(server)
    client.initialize()
    client.call("tell", {"predicate": "mcp_default_tenant", "args": ["yes"]})
    rest = server.request(
        "POST",
        "/query",
        tenant="default",
        json={"predicate": "mcp_default_tenant", "args": ["?x"]},
    )
    assert rest.json()["count"] == 1


# -- HTTP+SSE: answers on the stream ---------------------------------------------------


def test_sse_answers_come_on_the_stream(server: Server, tenant: str) -> None:
    with sse_session(server, {"X-Tenant-ID": tenant}) as (stream, endpoint):
        assert endpoint.startswith("/mcp/messages?sessionId=")
        accepted = server.client.post(
            endpoint, json=rpc(1, "initialize", initialize_params("2024-11-05"))
        )
        assert accepted.status_code == 202
        answer = stream.next_message()
        assert answer["id"] == 1 and answer["result"]["protocolVersion"] == "2024-11-05"
        assert (
            server.client.post(
                endpoint, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
            ).status_code
            == 202
        )
        server.client.post(
            endpoint,
            json=rpc(
                2,
                "tools/call",
                {"name": "tell", "arguments": {"predicate": "s", "args": ["x"]}},
            ),
        )
        assert stream.next_message()["result"]["structuredContent"]["stored"] is True
        server.client.post(endpoint, json=rpc(3, "no/such/method"))
        assert stream.next_message()["error"]["code"] == METHOD_NOT_FOUND
        bad = server.client.post(endpoint, content=b"{nope")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == PARSE_ERROR
        batch = server.client.post(endpoint, json=[rpc(4, "ping")])
        assert batch.status_code == 400  # 2024-11-05 has no batches
    stored = server.request(
        "POST", "/query", tenant=tenant, json={"predicate": "s", "args": ["?x"]}
    )
    assert stored.json()["count"] == 1  # the GET's X-Tenant-ID governed the session


def test_sse_unknown_session_and_missing_id(server: Server) -> None:
    assert (
        server.client.post(
            "/mcp/messages?sessionId=nope", json=rpc(1, "ping")
        ).status_code
        == 404
    )
    assert server.client.post("/mcp/messages", json=rpc(1, "ping")).status_code == 400


def test_sse_refuses_bad_headers_and_unknown_databases(server: Server) -> None:
    bad = server.request("GET", "/mcp/sse", headers={"X-Tenant-ID": "bad tenant!"})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "X-Tenant-ID"
    unknown = server.request("GET", "/mcp/sse", headers={"X-Database": "never_created"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"
