"""MCP streams: keepalives, teardown when the client leaves, bounds, and shutdown (issue 8)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.jsonrpc import HttpMcp, SseStream, sse_session
from tests.server import Server

LIMIT = 2


@pytest.fixture(scope="module")
def streams_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Fast keepalives and room for only two sessions per transport."""
    env = {"NOCTURNUS_MCP_KEEPALIVE_MS": "50", "NOCTURNUS_MCP_SESSIONS": str(LIMIT)}
    srv = Server(tmp_path_factory.mktemp("mcp-streams") / "data", env=env).start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.output()  # clients leaving mid-stream is not an error


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    """Wait for a condition the server reaches asynchronously (not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def ping(server: Server, endpoint: str) -> int:
    return server.client.post(
        endpoint, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
    ).status_code


def test_sse_sends_keepalive_comments(streams_server: Server) -> None:
    with sse_session(streams_server) as (stream, _):
        eventually(lambda: stream.comments >= 3, "three keepalive comments")
        assert stream.events.empty()  # keepalives are comments, never messages


def test_sse_session_is_torn_down_when_the_client_leaves(
    streams_server: Server,
) -> None:
    with sse_session(streams_server) as (stream, endpoint):
        assert ping(streams_server, endpoint) == 202
        assert stream.next_message()["result"] == {}
    eventually(
        lambda: ping(streams_server, endpoint) == 404, "the session is forgotten"
    )


def test_sse_sessions_are_bounded(streams_server: Server) -> None:
    with sse_session(streams_server) as (_, first), sse_session(streams_server):
        refused = streams_server.request("GET", "/mcp/sse")
        assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
    # Both left: their places are free again.
    eventually(
        lambda: ping(streams_server, first) == 404, "the first session is forgotten"
    )
    with sse_session(streams_server), sse_session(streams_server):
        pass


def test_streamable_sessions_are_bounded_least_recently_used_first(
    streams_server: Server,
) -> None:
    clients = [HttpMcp(streams_server) for _ in range(LIMIT + 1)]
    for client in clients:
        client.initialize()
    ping_message = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert (
        clients[0].post(ping_message).status_code == 404
    )  # pushed out; must re-initialize
    assert [c.post(ping_message).status_code for c in clients[1:]] == [200] * LIMIT


def test_get_stream_keepalives_and_delete_ends_it(streams_server: Server) -> None:
    client = HttpMcp(streams_server)
    client.initialize()
    headers = {"Mcp-Session-Id": client.session_id or "", "Accept": "text/event-stream"}
    comments: list[str] = []
    with (
        httpx.Client(base_url=streams_server.url, timeout=30) as http,
        http.stream("GET", "/mcp", headers=headers) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        second = streams_server.request("GET", "/mcp", headers=headers)
        assert second.status_code == 409  # one server stream per session
        lines = stream.iter_lines()
        while len(comments) < 3:
            line = next(lines)
            if line.startswith(":"):
                comments.append(line)
        deleted = streams_server.request("DELETE", "/mcp", headers=headers)
        assert deleted.status_code == 200
        rest = list(lines)  # the stream ends with the session
    assert all(line.startswith(":") or line == "" for line in rest)


def test_sigterm_with_open_streams_exits_promptly(tmp_path: Path) -> None:
    """Open SSE and GET streams must not hold shutdown for Sanic's 15 s grace period."""
    server = Server(tmp_path / "data").start()
    try:
        client = HttpMcp(server)
        client.initialize()
        get_stream = httpx.Client(base_url=server.url, timeout=30)
        with (
            SseStream(server) as sse,
            get_stream.stream(
                "GET", "/mcp", headers={"Mcp-Session-Id": client.session_id or ""}
            ) as streamed,
        ):
            assert sse.status == 200 and streamed.status_code == 200
            sse.endpoint()
            server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            code = server.process.wait(10)  # type: ignore[union-attr]
            assert code == 0, server.output()
            assert sse.ended.wait(10)
        get_stream.close()
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop(signal.SIGKILL)
        server.process = None
    assert "Traceback" not in server.output()
