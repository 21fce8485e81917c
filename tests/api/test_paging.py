"""Paging and answer shapes on /ask, /infer and /query, over a real socket (issue 17)."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.api.jsonrpc import HttpMcp
from tests.server import Server


def post(server: Server, tenant: str, path: str, body: dict) -> dict | list:
    response = server.request("POST", path, tenant=tenant, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def error(server: Server, tenant: str, path: str, body: dict) -> dict:
    response = server.request("POST", path, tenant=tenant, json=body)
    assert response.status_code == 400, response.text
    return response.json()


@pytest.fixture
def chain(server: Server, tenant: str) -> str:
    """edge(nI, nI+1) for 30 nodes in two scopes, reach/2 over it: 435 answers each."""
    facts = [
        {"predicate": "edge", "args": [f"n{i:02d}", f"n{i + 1:02d}"], "scope": scope}
        for scope in ("main", "other")
        for i in range(29)
    ]
    facts.append({"predicate": "edge", "args": ["n00", 7]})
    facts.append({"predicate": "edge", "args": ["n00", "7"]})
    post(server, tenant, "/assert/facts", {"facts": facts})
    for body in (
        [{"predicate": "edge", "args": ["?x", "?y"]}],
        [{"predicate": "edge", "args": ["?x", "?z"]}, {"predicate": "reach", "args": ["?z", "?y"]}],
    ):
        response = server.request(
            "POST", "/teach", tenant=tenant,
            json={"head": {"predicate": "reach", "args": ["?x", "?y"]}, "body": body},
        )
        assert response.status_code == 200, response.text
    return tenant


def pages(server: Server, tenant: str, path: str, body: dict, limit: int) -> list[dict]:
    found = []
    cursor = None
    while True:
        page = post(server, tenant, path, {**body, "limit": limit, "cursor": cursor})
        found.append(page)
        cursor = page.get("nextCursor")
        if cursor is None:
            return found
        assert page["count"] == limit


@pytest.mark.parametrize("limit", [1, 7, 100, 1000])
def test_pages_concatenate_to_the_full_answer(server: Server, chain: str, limit: int) -> None:
    goal = {"predicate": "reach", "args": ["?x", "?y"]}
    full = post(server, chain, "/ask", goal)
    assert full["count"] == 2 * 29 * 30 // 2 + 2 and "nextCursor" not in full
    found = pages(server, chain, "/ask", goal, limit)
    assert [r for p in found for r in p["results"]] == full["results"]
    assert [b for p in found for b in p["bindings"]] == full["bindings"]
    assert len(found) == -(-full["count"] // limit)


def test_the_same_cursor_gives_the_same_page(server: Server, chain: str) -> None:
    goal = {"predicate": "reach", "args": ["?x", "?y"], "limit": 50}
    first = post(server, chain, "/ask", goal)
    again = post(server, chain, "/ask", {**goal, "cursor": first["nextCursor"]})
    assert post(server, chain, "/ask", {**goal, "cursor": first["nextCursor"]}) == again
    assert again["results"][0] != first["results"][0]


def test_a_cursor_after_a_change_continues_after_the_last_answer(
    server: Server, chain: str
) -> None:
    """Documented: a cursor names an answer, so a page after a write starts after it."""
    goal = {"predicate": "edge", "args": ["?x", "?y"], "scope": "main", "limit": 3}
    first = post(server, chain, "/ask", goal)
    last = first["results"][-1]["args"]
    post(server, chain, "/tell", {"predicate": "edge", "args": ["a", "b"]})
    second = post(server, chain, "/ask", {**goal, "cursor": first["nextCursor"]})
    assert second["results"][0]["args"] > last
    full = post(server, chain, "/ask", {k: v for k, v in goal.items() if k != "limit"})
    args = [r["args"] for r in full["results"]]
    assert args[args.index(last) + 1] == second["results"][0]["args"]


def test_a_cursor_of_another_question_is_refused(server: Server, chain: str) -> None:
    first = post(server, chain, "/ask", {"predicate": "reach", "args": ["?x", "?y"], "limit": 5})
    cursor = first["nextCursor"]
    for other in (
        {"predicate": "reach", "args": ["n00", "?y"]},
        {"predicate": "reach", "args": ["?x", "?y"], "scope": "main"},
        {"predicate": "reach", "args": ["?x", "?y"], "minConfidence": 0.5},
    ):
        found = error(server, chain, "/ask", {**other, "cursor": cursor})
        assert found["code"] == "VALIDATION_ERROR" and "another question" in found["message"]
    goal = {"predicate": "reach", "args": ["?x", "?y"]}
    found = error(server, chain, "/query", {**goal, "cursor": cursor})
    assert "another question" in found["message"]
    for bad in ("x", "!!!", base64.urlsafe_b64encode(b'{"a":1}').decode(),
                base64.urlsafe_b64encode(orjson.dumps(["q", [True], "main", 1])).decode()):
        found = error(server, chain, "/ask", {**goal, "cursor": bad})
        assert found["details"]["field"] == "cursor"


def test_count_and_compact_shapes(server: Server, chain: str) -> None:
    goal = {"predicate": "reach", "args": ["n00", "?y"]}
    full = post(server, chain, "/ask", goal)
    assert post(server, chain, "/ask", {**goal, "shape": "count"}) == {"count": full["count"]}
    compact = post(server, chain, "/ask", {**goal, "shape": "args"})
    assert compact == {
        "results": [r["args"] for r in full["results"]],
        "scopes": [r["scope"] for r in full["results"]],
        "count": full["count"],
    }
    assert [7, "7"] == [a[1] for a in compact["results"][:2]]  # numbers stay numbers
    bindings = post(server, chain, "/ask", {**goal, "shape": "bindings", "limit": 2})
    assert bindings["bindings"] == full["bindings"][:2] and "results" not in bindings
    assert bindings["count"] == 2 and "nextCursor" in bindings
    assert post(server, chain, "/infer", {**goal, "shape": "count"}) == {"count": full["count"]}
    assert post(server, chain, "/infer", {**goal, "shape": "args"}) == compact


def test_shape_option_errors(server: Server, chain: str) -> None:
    goal = {"predicate": "reach", "args": ["?x", "?y"]}
    for extra in ({"shape": "count", "limit": 3}, {"shape": "count", "cursor": "abc"},
                  {"shape": "args", "withProof": True}, {"shape": "rows"}, {"limit": 0}):
        error(server, chain, "/ask", {**goal, **extra})


def test_infer_pages_through_a_header(server: Server, chain: str) -> None:
    goal = {"predicate": "reach", "args": ["n00", "?y"], "scope": "main"}
    full = post(server, chain, "/infer", goal)
    found: list = []
    cursor = None
    while True:
        response = server.request(
            "POST", "/infer", tenant=chain, json={**goal, "limit": 8, "cursor": cursor}
        )
        assert response.status_code == 200 and isinstance(response.json(), list)
        found += response.json()
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            break
    assert found == full


def test_proofs_page_too(server: Server, chain: str) -> None:
    goal = {"predicate": "reach", "args": ["n00", "?y"], "scope": "main", "withProof": True}
    full = post(server, chain, "/ask", goal)
    found = pages(server, chain, "/ask", goal, 4)
    assert [r for p in found for r in p["results"]] == full["results"]
    assert all("proof" in r for r in full["results"])


def test_query_pages_and_shapes(server: Server, chain: str) -> None:
    pattern = {"predicate": "edge", "args": ["?x", "?y"]}
    full = post(server, chain, "/query", pattern)
    assert full["count"] == 60
    found = pages(server, chain, "/query", pattern, 11)
    assert [r for p in found for r in p["results"]] == full["results"]
    assert post(server, chain, "/query", {**pattern, "shape": "count"}) == {"count": 60}
    bindings = post(server, chain, "/query", {**pattern, "shape": "bindings"})
    assert bindings["bindings"] == [{"x": r["args"][0], "y": r["args"][1]} for r in full["results"]]


def test_mcp_ask_tool_takes_the_same_options(server: Server, chain: str) -> None:
    client = HttpMcp(server, headers={"X-Tenant-ID": chain})
    client.initialize()
    goal = {"predicate": "reach", "args": ["n00", "?y"]}
    answer = client.call("ask", {**goal, "shape": "count"})
    assert answer["structuredContent"] == {"count": 60}
    page = client.call("ask", {**goal, "limit": 5, "shape": "args"})["structuredContent"]
    assert page["count"] == 5 and page["nextCursor"]
    rest = post(server, chain, "/ask", {**goal, "limit": 5, "shape": "args"})
    assert page == rest
    queried = client.call("query", {"predicate": "edge", "args": ["?x", "?y"], "limit": 2})
    assert queried["structuredContent"]["count"] == 2


def test_a_large_answer_streams_whole(server: Server, tenant: str) -> None:
    """Past 1 MiB the body is sent in chunks with its length: it arrives whole."""
    facts = [{"predicate": "link", "args": [f"v{i}", f"v{i + 1}"]} for i in range(300)]
    post(server, tenant, "/assert/facts", {"facts": facts})
    for body in (
        [{"predicate": "link", "args": ["?x", "?y"]}],
        [{"predicate": "path", "args": ["?x", "?z"]}, {"predicate": "link", "args": ["?z", "?y"]}],
    ):
        response = server.request(
            "POST", "/teach", tenant=tenant,
            json={"head": {"predicate": "path", "args": ["?x", "?y"]}, "body": body},
        )
        assert response.status_code == 200, response.text
    goal = {"predicate": "path", "args": ["?x", "?y"]}
    response = server.request("POST", "/ask", tenant=tenant, json=goal)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content) > 1 << 20
    assert response.headers["content-type"] == "application/json"
    assert "x-request-id" in response.headers  # response middleware ran
    full = response.json()
    assert full["count"] == 300 * 301 // 2 == len(full["results"]) == len(full["bindings"])
    found = pages(server, tenant, "/ask", goal, 20_000)
    assert [r for p in found for r in p["results"]] == full["results"]
    inferred = server.request("POST", "/infer", tenant=tenant, json=goal)
    assert inferred.json() == full["results"]
