"""Raw JSON-RPC over MCP's HTTP transports, for edge cases the official client never sends."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty, Queue
from typing import Any, Self

import httpx
import orjson

from tests.server import Server

SUPPORTED_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")


def initialize_params(version: str = "2025-11-25") -> dict[str, Any]:
    return {
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "nocturnus-tests", "version": "1"},
    }


class HttpMcp:
    """A Streamable HTTP session driven by hand: ``post`` sends any body."""

    def __init__(self, server: Server, headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.headers = {
            "Accept": "application/json, text/event-stream",
            **(headers or {}),
        }
        self.session_id: str | None = None
        self.version: str | None = None
        self._ids = itertools.count(1)

    def post(
        self, body: Any, *, raw: bytes | None = None, **headers: str
    ) -> httpx.Response:
        sent = {**self.headers, "Content-Type": "application/json", **headers}
        if self.session_id is not None:
            sent.setdefault("Mcp-Session-Id", self.session_id)
        if self.version is not None:
            sent.setdefault("MCP-Protocol-Version", self.version)
        content = raw if raw is not None else orjson.dumps(body)
        return self.server.client.post("/mcp", content=content, headers=sent)

    def initialize(self, version: str = "2025-11-25") -> dict[str, Any]:
        response = self.post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": initialize_params(version),
            }
        )
        assert response.status_code == 200, response.text
        self.session_id = response.headers["Mcp-Session-Id"]
        result: dict[str, Any] = response.json()["result"]
        self.version = result["protocolVersion"]
        initialized = self.post(
            {"jsonrpc": "2.0", "method": "notifications/initialized"}
        )
        assert initialized.status_code == 202 and initialized.content == b""
        return result

    def request(
        self, method: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
        }
        if params is not None:
            message["params"] = params
        response = self.post(message)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert answer["id"] == message["id"]
        return answer

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("tools/call", {"name": tool, "arguments": arguments})
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result


class SseStream:
    """An HTTP+SSE session read on a thread: ``events`` yields (event, data) pairs."""

    def __init__(self, server: Server, headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.headers = headers or {}
        self.events: Queue[tuple[str, str]] = Queue()
        self.status: int | None = None
        self.comments = 0
        self.ended = threading.Event()
        self._client = httpx.Client(
            base_url=server.url, timeout=httpx.Timeout(30, read=60)
        )
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._opened = threading.Event()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._opened.wait(30), "the SSE stream did not open"
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._client.close()
        self._thread.join(10)

    def _read(self) -> None:
        try:
            with self._client.stream(
                "GET", "/mcp/sse", headers=self.headers
            ) as response:
                self._response = response
                self.status = response.status_code
                self._opened.set()
                if response.status_code != 200:
                    response.read()
                    return
                event, data = "message", []
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments += 1
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        self.events.put((event, "\n".join(data)))
                        event, data = "message", []
        except httpx.HTTPError:
            pass
        finally:
            self._opened.set()
            self.ended.set()

    def next_event(self, timeout_s: float = 30) -> tuple[str, str]:
        try:
            return self.events.get(timeout=timeout_s)
        except Empty:
            raise AssertionError("no event arrived on the SSE stream") from None

    def endpoint(self) -> str:
        event, data = self.next_event()
        assert event == "endpoint", (event, data)
        return data

    def next_message(self) -> Any:
        event, data = self.next_event()
        assert event == "message", (event, data)
        return orjson.loads(data)


@contextmanager
def sse_session(
    server: Server, headers: dict[str, str] | None = None
) -> Iterator[tuple[SseStream, str]]:
    """An open SSE stream and the URL path its messages are posted to."""
    with SseStream(server, headers) as stream:
        assert stream.status == 200
        yield stream, stream.endpoint()
