"""The live change feed on a real server (issue 18): every committed change of a tenant,
read from the log, filtered, resumable with ``Last-Event-ID``, bounded per key."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_KEY
from tests.server import Server


class Feed:
    """An open SSE response read by a thread: frames arrive on a queue."""

    def __init__(self) -> None:
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
        self.opened = threading.Event()
        self.status = 0
        self.ended = threading.Event()

    def next(self, timeout_s: float = 20) -> dict[str, Any]:
        return self.frames.get(timeout=timeout_s)

    def take(self, count: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(count)]

    def quiet(self, wait_s: float = 0.5) -> bool:
        try:
            self.frames.get(timeout=wait_s)
        except queue.Empty:
            return True
        return False


@contextmanager
def feed(server: Server, tenant: str, path: str = "/memory/events", **headers: str) -> Iterator[Feed]:
    opened = Feed()
    client = httpx.Client(base_url=server.url, timeout=httpx.Timeout(30, read=None))

    def read() -> None:
        try:
            with client.stream("GET", path, headers={"X-Tenant-ID": tenant, **headers}) as r:
                opened.status = r.status_code
                opened.opened.set()
                frame: dict[str, Any] = {}
                for line in r.iter_lines():
                    if line.startswith(":"):
                        continue
                    if not line:
                        if "data" in frame:
                            opened.frames.put(frame)
                        frame = {}
                        continue
                    name, _, value = line.partition(": ")
                    frame[name] = orjson.loads(value) if name == "data" else value
        except httpx.HTTPError:
            pass
        finally:
            opened.opened.set()
            opened.ended.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert opened.opened.wait(20)
    try:
        yield opened
    finally:
        client.close()
        thread.join(5)


def post(server: Server, path: str, tenant: str, body: Any, status: int = 200, **headers: str) -> Any:
    response = server.request("POST", path, tenant=tenant, json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def tell(server: Server, tenant: str, predicate: str, *args: Any, **extra: Any) -> Any:
    return post(server, "/tell", tenant, {"predicate": predicate, "args": list(args), **extra})


def test_the_feed_shows_committed_changes_as_the_api_renders_them(server: Server, tenant: str) -> None:
    tell(server, tenant, "before", "x")  # the feed starts at the present
    with feed(server, tenant) as events:
        assert events.status == 200
        told = tell(server, tenant, "likes", "alice", "tea", confidence=0.9)
        post(server, "/teach", tenant, {"head": {"predicate": "fan", "args": ["?x"]},
                                       "body": [{"predicate": "likes", "args": ["?x", "tea"]}]})
        post(server, "/forget", tenant, {"predicate": "likes", "args": ["alice", "tea"]})
        first, second, third = events.take(3)
    assert first["event"] == "fact_asserted" and first["id"] == str(first["data"]["eventId"])
    assert first["data"]["atom"] == told["fact"]
    assert second["data"]["type"] == "rule_asserted"
    assert second["data"]["rule"] == "fan(?x) :- likes(?x, tea)"
    assert third["data"]["type"] == "fact_retracted"
    assert third["data"]["atom"] == {"predicate": "likes", "args": ["alice", "tea"],
                                     "negated": False, "scope": "main"}
    assert first["data"]["eventId"] < second["data"]["eventId"] < third["data"]["eventId"]


def test_logged_uses_of_facts_are_not_changes_of_the_feed(server: Server, tenant: str) -> None:
    """A ``facts_used`` event (issue 16) changes no fact: the feed passes over it."""
    with feed(server, tenant) as events:
        tell(server, tenant, "likes", "alice", "tea")
        post(server, "/ask", tenant, {"predicate": "likes", "args": ["?x", "tea"]})
        tell(server, tenant, "likes", "bob", "tea")  # logged after the uses it takes along
        first, second = events.take(2)
    assert first["event"] == second["event"] == "fact_asserted"
    assert second["data"]["eventId"] == first["data"]["eventId"] + 2


def test_filters_and_the_stream_names(server: Server, tenant: str) -> None:
    query = "?predicate=lik*&scope=main&events=told,forgotten"
    with feed(server, tenant, "/memory/stream" + query) as events:
        tell(server, tenant, "likes", "a")
        tell(server, tenant, "likes", "b", scope="other")
        tell(server, tenant, "hates", "c")
        tell(server, tenant, "liked", "d")
        post(server, "/forget", tenant, {"predicate": "likes", "args": ["a"]})
        got = events.take(3)
        assert events.quiet()
    assert [(f["data"]["type"], f["data"]["atom"]["args"]) for f in got] == [
        ("told", ["a"]), ("told", ["d"]), ("forgotten", ["a"])]


def test_resume_after_the_last_event_id(server: Server, tenant: str) -> None:
    with feed(server, tenant) as events:
        tell(server, tenant, "p", 1)
        seen = events.next()
    tell(server, tenant, "p", 2)  # while nobody listens
    tell(server, tenant, "p", 3)
    with feed(server, tenant, **{"Last-Event-ID": seen["id"]}) as events:
        assert [f["data"]["atom"]["args"] for f in events.take(2)] == [[2], [3]]
        assert events.quiet()
    with feed(server, tenant, f"/memory/events?since={seen['data']['eventId']}") as events:
        assert [f["data"]["atom"]["args"] for f in events.take(2)] == [[2], [3]]


def test_a_transaction_shows_as_its_changes_at_one_position(server: Server, tenant: str) -> None:
    # begun first: on a tenant never written, a begin registers it (tenant_created)
    tx = post(server, "/tx/begin", tenant, None)["transactionId"]
    with feed(server, tenant) as events:
        tell_tx = {"X-Transaction-ID": tx}
        post(server, "/tell", tenant, {"predicate": "p", "args": ["a"]}, **tell_tx)
        post(server, "/tell", tenant, {"predicate": "p", "args": ["b"]}, **tell_tx)
        assert events.quiet()  # buffered writes are not changes
        post(server, f"/tx/commit/{tx}", tenant, None)
        got = events.take(2)
    assert [f["data"]["atom"]["args"] for f in got] == [["a"], ["b"]]
    assert {f["data"]["transactionId"] for f in got} == {tx}
    assert got[0]["id"] == got[1]["id"]


def test_memory_upkeep_changes_appear(server: Server, tenant: str) -> None:
    for item in "abc":
        tell(server, tenant, "bought", "ann", item)
    tell(server, tenant, "token", "t1", ttl=1)
    with feed(server, tenant) as events:
        post(server, "/memory/consolidate", tenant, {"minCount": 3})
        post(server, "/memory/decay", tenant, {})
        summary, expired = events.take(2)
    assert summary["data"]["type"] == "consolidation" and summary["data"]["sourceCount"] == "3"
    assert summary["data"]["fact"]["args"] == ["ann", "3"]
    assert expired["data"]["type"] == "fact_expired"
    assert expired["data"]["atom"]["args"] == ["t1"]


@pytest.mark.parametrize(("path", "headers", "field"), [
    ("/memory/events", {"Last-Event-ID": "yesterday"}, "Last-Event-ID"),
    ("/memory/events?events=told,nope", {}, "events"),
    ("/memory/events?since=-1", {}, "since"),
])
def test_bad_feed_requests_are_400(server: Server, tenant: str, path: str,
                                   headers: dict[str, str], field: str) -> None:
    answer = server.request("GET", path, tenant=tenant, headers=headers)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["message"]


def test_feeds_are_bounded_per_key_and_end_with_their_key(tmp_path: Path, tenant: str) -> None:
    env = {"NOCTURNUS_FEEDS_PER_KEY": "1", "NOCTURNUS_FEED_KEEPALIVE_MS": "200",
           "NOCTURNUS_AUTH": "on", "NOCTURNUS_ADMIN_KEY": ADMIN_KEY}
    server = Server(tmp_path / "data", env=env).start()
    try:
        made = server.request("POST", "/auth/keys", json={"role": "reader", "name": "watcher"},
                              headers={"X-API-Key": ADMIN_KEY})
        reader, reader_id = made.json()["key"], made.json()["id"]
        with feed(server, tenant, **{"X-API-Key": reader}) as events:
            second = server.request("GET", "/memory/events", tenant=tenant,
                                    headers={"X-API-Key": reader})
            assert second.status_code == 429
            post(server, "/tell", tenant, {"predicate": "p", "args": ["a"]},
                 **{"X-API-Key": ADMIN_KEY})
            assert events.next()["data"]["atom"]["args"] == ["a"]
            revoked = server.request("DELETE", f"/auth/keys/{reader_id}",
                                     headers={"X-API-Key": ADMIN_KEY})
            assert revoked.status_code == 200
            assert events.ended.wait(10)  # the next keepalive read finds the key gone
    finally:
        server.stop()
