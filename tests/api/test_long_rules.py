"""The widest rule the API accepts answers over HTTP (issue 13, item 4).

32 body literals of 16-ary predicates (the ``MAX_RULE_BODY`` the schema allows) were
a 500 at ``/ask`` (``SyntaxError: too many statically nested blocks`` from the
generated join code); as a database-wide rule they broke the predicate for every
tenant of the database.
"""

from __future__ import annotations

import uuid

from nocturnus.api.knowledge import MAX_RULE_BODY
from tests.server import Server

WIDTH = 16
NODES = 40
PADDING = [f"?w{j}" for j in range(WIDTH - 2)]


def widest_rule() -> dict:
    """``q(?v0..?v14, ?w0) :- p(?v0, ?v1, ?w0..?w13), ..., p(?v31, ?v32, ...)``."""
    body = [
        {"predicate": "p", "args": [f"?v{i}", f"?v{i + 1}", *PADDING]}
        for i in range(MAX_RULE_BODY)
    ]
    head = {"predicate": "q", "args": [*(f"?v{i}" for i in range(WIDTH - 1)), "?w0"]}
    return {"head": head, "body": body}


def tell_chain(server: Server, tenant: str, database: str | None = None) -> None:
    padding = [f"c{j}" for j in range(WIDTH - 2)]
    facts = [{"predicate": "p", "args": [k, k + 1, *padding]} for k in range(NODES)]
    told = server.request("POST", "/assert/facts", tenant=tenant, database=database,
                          json={"facts": facts})
    assert told.status_code == 200, told.text


def expected_args(start: int) -> list:
    return [*range(start, start + WIDTH - 1), "c0"]


def ask_widest(server: Server, tenant: str, database: str | None = None) -> None:
    """Every 32-link path of the chain, free and from a bound start."""
    free = server.request("POST", "/ask", tenant=tenant, database=database,
                          json={"predicate": "q", "args": [f"?y{i}" for i in range(WIDTH)]})
    assert free.status_code == 200, free.text
    starts = range(NODES - MAX_RULE_BODY + 1)
    assert [r["args"] for r in free.json()["results"]] == [expected_args(s) for s in starts]
    bound = server.request("POST", "/ask", tenant=tenant, database=database,
                           json={"predicate": "q", "args": [3, *(f"?y{i}" for i in range(15))],
                                 "withProof": True})
    assert bound.status_code == 200, bound.text
    (result,) = bound.json()["results"]
    assert result["args"] == expected_args(3)
    assert len(result["proof"]["children"]) == MAX_RULE_BODY


def test_the_widest_tenant_rule_answers(server: Server, tenant: str) -> None:
    tell_chain(server, tenant)
    taught = server.request("POST", "/teach", tenant=tenant, json=widest_rule())
    assert taught.status_code == 200, taught.text
    ask_widest(server, tenant)


def test_the_widest_database_rule_answers_for_every_tenant(server: Server) -> None:
    database = "wide_" + uuid.uuid4().hex[:8]
    assert server.request("POST", "/databases", json={"name": database}).status_code in (200, 201)
    taught = server.request("POST", f"/admin/databases/{database}/rules", json=widest_rule())
    assert taught.status_code == 200, taught.text
    for tenant in ("first", "second"):
        tell_chain(server, tenant, database)
        ask_widest(server, tenant, database)
