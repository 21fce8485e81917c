"""Memory upkeep on a real server (issue 18): consolidate, decay, salient queries, each change
an event that a restart replays to the same state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.server import Server


def post(server: Server, path: str, tenant: str, body: Any = None, status: int = 200) -> Any:
    response = server.request("POST", path, tenant=tenant, json=body)
    assert response.status_code == status, response.text
    return response.json()


def tell(server: Server, tenant: str, predicate: str, *args: Any, **extra: Any) -> Any:
    return post(server, "/tell", tenant, {"predicate": predicate, "args": list(args), **extra})


def stored(server: Server, tenant: str, predicate: str, arity: int, scope: str | None = None) -> list[Any]:
    body: dict[str, Any] = {"predicate": predicate, "args": [f"?a{i}" for i in range(arity)]}
    if scope is not None:
        body["scope"] = scope
    return sorted(r["args"] for r in post(server, "/query", tenant, body)["results"])


def test_consolidate_summarizes_and_keeps_summaries_current(server: Server, tenant: str) -> None:
    for item in ("a", "b", "c", "d", "e"):
        tell(server, tenant, "bought", "alice", item)
    for item in ("a", "b"):
        tell(server, tenant, "bought", "bob", item)
    for item in ("x", "y", "z", "w", "v"):
        tell(server, tenant, "visited", "carol", item, scope="trip")
    for item in ("a", "b", "c", "d", "e"):
        tell(server, tenant, "bought", "dan", item, negated=True)  # negations are not counted
    done = post(server, "/memory/consolidate", tenant, {})
    assert done["factsConsolidated"] == 2 and done["retracted"] == []
    assert [(f["predicate"], f["args"], f["scope"], f["metadata"]) for f in done["newFacts"]] == [
        ("bought_consolidated", ["alice", "5"], "main", {"source": "consolidation"}),
        ("visited_consolidated", ["carol", "5"], "trip", {"source": "consolidation"}),
    ]
    assert stored(server, tenant, "bought", 2) == [["alice", x] for x in "abcde"] + [
        ["bob", "a"], ["bob", "b"]]  # the originals stay
    assert post(server, "/memory/compress", tenant, {})["factsConsolidated"] == 0  # nothing new

    tell(server, tenant, "bought", "alice", "f")
    tell(server, tenant, "bought", "bob", "c")
    updated = post(server, "/memory/consolidate", tenant, {"minCount": 3, "scope": "main"})
    assert [f["args"] for f in updated["newFacts"]] == [["alice", "6"], ["bob", "3"]]
    assert stored(server, tenant, "bought_consolidated", 2) == [["alice", "6"], ["bob", "3"]]
    for item in ("a", "b", "c"):
        post(server, "/forget", tenant, {"predicate": "bought", "args": ["bob", item]})
    shrunk = post(server, "/memory/consolidate", tenant, {"minCount": 3})
    assert [f["args"] for f in shrunk["retracted"]] == [["bob", "3"]]
    assert stored(server, tenant, "bought_consolidated", 2) == [["alice", "6"]]


def test_decay_removes_what_can_never_be_visible_again(server: Server, tenant: str) -> None:
    tell(server, tenant, "token", "short", ttl=1)
    tell(server, tenant, "token", "long", ttl=3_600_000)
    now = int(time.time() * 1000)
    tell(server, tenant, "offer", "past", validFrom=now - 10_000, validUntil=now - 5_000)
    tell(server, tenant, "offer", "future", validFrom=now + 3_600_000)
    time.sleep(0.01)
    done = post(server, "/memory/decay", tenant, {"threshold": 0.5})
    assert (done["expiredCount"], done["evictedCount"]) == (2, 0)  # under capacity: no eviction
    assert sorted(a["args"][0] for a in done["removedAtoms"]) == ["past", "short"]
    assert done["timestamp"] >= now
    assert post(server, "/memory/cleanup", tenant, None)["expiredCount"] == 0
    future = post(server, "/memory/recall", tenant,
                  {"predicate": "offer", "args": ["?x"], "timestamp": now + 3_600_001})
    assert [a["args"] for a in future] == [["future"]]  # not yet visible is not expired


def test_salient_query_ranks_and_counts_uses(server: Server, tenant: str) -> None:
    for item in ("a", "b", "c"):
        tell(server, tenant, "likes", "ann", item)
        time.sleep(0.002)
    post(server, "/memory/prioritize", tenant, {"predicate": "likes", "args": ["ann", "a"],
                                               "priority": 1.0})
    ranked = post(server, "/memory/query/salient", tenant,
                  {"predicate": "likes", "args": ["ann", "?x"], "limit": 2})
    assert [r["args"][1] for r in ranked] == ["a", "c"]  # pinned first, then the newest
    assert ranked[0]["salience"] == 1.0 and ranked[0]["createdAt"] is not None
    floor = post(server, "/memory/query/salient", tenant,
                 {"predicate": "likes", "args": ["?w", "?x"], "minSalience": 0.99})
    assert [r["args"][1] for r in floor] == ["a"]
    post(server, "/memory/query/salient", tenant, {"predicate": "likes", "args": ["?w"]}, status=200)
    bad = post(server, "/memory/query/salient", tenant,
               {"predicate": "likes", "args": ["?x"], "limit": 0}, status=400)
    assert bad["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(("path", "body"), [
    ("/memory/consolidate", {"minCount": 1}),
    ("/memory/decay", {"threshold": 2}),
    ("/memory/cleanup", {"nope": True}),
    ("/memory/prioritize", {"predicate": "p", "args": ["a"], "priority": 1.5}),
])
def test_bad_upkeep_requests_are_400(server: Server, tenant: str, path: str, body: Any) -> None:
    assert post(server, path, tenant, body, status=400)["code"] == "VALIDATION_ERROR"


def test_over_capacity_decay_evicts_the_least_salient_and_replays(tmp_path: Path, tenant: str) -> None:
    server = Server(tmp_path / "data", env={"NOCTURNUS_MEMORY_MAX_FACTS": "3"}).start()
    try:
        for item in ("old1", "old2", "mid", "new"):
            tell(server, tenant, "note", item)
            time.sleep(0.002)
        post(server, "/memory/priority", tenant, {"predicate": "note", "args": ["old1"],
                                                 "priority": 1.0})
        kept = post(server, "/memory/decay", tenant, {"threshold": 0.01})
        assert kept["evictedCount"] == 0  # nothing below the threshold
        done = post(server, "/memory/decay", tenant, {"threshold": 0.99})
        assert done["evictedCount"] == 1 and done["removedAtoms"][0]["args"] == ["old2"]
        for item in "abcde":
            tell(server, tenant, "bought", "x", item)
        post(server, "/memory/consolidate", tenant, {})
        tx = post(server, "/tx/begin", tenant)["transactionId"]
        response = server.request("POST", "/tell", tenant=tenant, headers={"X-Transaction-ID": tx},
                                  json={"predicate": "note", "args": ["in_tx"]})
        assert response.status_code == 200
        post(server, f"/tx/commit/{tx}", tenant)
        tell(server, tenant, "token", "t", ttl=1)
        time.sleep(0.01)
        assert post(server, "/memory/decay", tenant, {"threshold": 0.0})["expiredCount"] == 1
        shapes = (("note", 1), ("bought", 2), ("bought_consolidated", 2), ("token", 1))
        before = {p: stored(server, tenant, p, n) for p, n in shapes}
        generation = post(server, "/context/summary", tenant, {})["knowledgeGeneration"]
        server.stop()
        server.start()  # replay: fact_expired, transaction_committed and the rest
        after = {p: stored(server, tenant, p, n) for p, n in shapes}
        assert after == before
        assert before["note"] == [["in_tx"], ["mid"], ["new"], ["old1"]]
        assert before["bought_consolidated"] == [["x", "5"]] and before["token"] == []
        assert post(server, "/context/summary", tenant, {})["knowledgeGeneration"] == generation
    finally:
        server.stop()
