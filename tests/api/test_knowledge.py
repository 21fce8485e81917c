"""Facts, rules and questions over HTTP (API.md §3)."""

from __future__ import annotations

import json
import sys

from tests.server import Server


def tell(server: Server, tenant: str, predicate: str, args: list, **extra) -> dict:
    response = server.request("POST", "/tell", tenant=tenant,
                              json={"predicate": predicate, "args": args, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def ask(server: Server, tenant: str, predicate: str, args: list, **extra) -> dict:
    response = server.request("POST", "/ask", tenant=tenant,
                              json={"predicate": predicate, "args": args, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def teach(server: Server, tenant: str, head: dict, body: list, **extra):
    return server.request("POST", "/teach", tenant=tenant,
                          json={"head": head, "body": body, **extra})


def lit(predicate: str, *args, **flags) -> dict:
    return {"predicate": predicate, "args": list(args), **flags}


def test_grandparent_example_from_the_sdk_readme(server: Server, tenant: str) -> None:
    tell(server, tenant, "parent", ["alice", "bob"])
    tell(server, tenant, "parent", ["bob", "charlie"])
    taught = teach(server, tenant, lit("grandparent", "?x", "?z"),
                   [lit("parent", "?x", "?y"), lit("parent", "?y", "?z")])
    assert taught.status_code == 200, taught.text
    assert taught.json()["rule"]["text"] == "grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)"
    answer = ask(server, tenant, "grandparent", ["?who", "charlie"])
    assert [r["args"] for r in answer["results"]] == [["alice", "charlie"]]
    assert answer["bindings"] == [{"who": "alice"}]
    inferred = server.request("POST", "/infer", tenant=tenant,
                              json={"predicate": "grandparent", "args": ["?x", "?y"]}).json()
    assert isinstance(inferred, list) and inferred[0]["args"] == ["alice", "charlie"]


def test_constants_are_echoed_exactly(server: Server, tenant: str) -> None:
    told = tell(server, tenant, "price", ["widget", "500", 500, 2.5])
    assert told["fact"]["args"] == ["widget", "500", 500, 2.5]
    answer = ask(server, tenant, "price", ["widget", "?s", "?n", "?f"])
    assert answer["results"][0]["args"] == ["widget", "500", 500, 2.5]
    assert answer["bindings"] == [{"s": "500", "n": 500, "f": 2.5}]


def test_an_int_and_an_equal_float_are_two_facts(server: Server, tenant: str) -> None:
    # issue 20 (found by #13's differential tests): 1 == 1.0 in Python, yet p(1) and
    # p(1.0) are distinct constants; retracting one must leave the other
    first = tell(server, tenant, "p", [1])
    assert first["stored"] is True
    second = tell(server, tenant, "p", [1.0])
    assert second["stored"] is True and second["message"].startswith("Stored")
    forgot = server.request("POST", "/forget", tenant=tenant,
                            json={"predicate": "p", "args": [1.0]})
    assert forgot.status_code == 200 and forgot.json()["retracted"] == 1, forgot.text
    query = server.request("POST", "/query", tenant=tenant,
                           json={"predicate": "p", "args": ["?x"]})
    assert query.status_code == 200, query.text
    assert [r["args"] for r in query.json()["results"]] == [[1]]
    assert [type(r["args"][0]) for r in query.json()["results"]] == [int]


def test_retract_removes_derived_answers_at_once(server: Server, tenant: str) -> None:
    tell(server, tenant, "edge", ["a", "b"])
    tell(server, tenant, "edge", ["b", "c"])
    teach(server, tenant, lit("path", "?x", "?y"), [lit("edge", "?x", "?y")])
    teach(server, tenant, lit("path", "?x", "?z"), [lit("path", "?x", "?y"), lit("edge", "?y", "?z")])
    assert len(ask(server, tenant, "path", ["a", "?y"])["results"]) == 2
    forgot = server.request("POST", "/forget", tenant=tenant, json={"predicate": "edge", "args": ["b", "c"]})
    assert forgot.json()["retracted"] == 1
    assert [r["args"] for r in ask(server, tenant, "path", ["a", "?y"])["results"]] == [["a", "b"]]


def test_negation_naf_and_builtins(server: Server, tenant: str) -> None:
    tell(server, tenant, "bird", ["tweety"])
    tell(server, tenant, "bird", ["pingu"])
    tell(server, tenant, "penguin", ["pingu"])
    tell(server, tenant, "flies", ["rocky"], negated=True)
    taught = teach(server, tenant, lit("canfly", "?x"), [lit("bird", "?x"), lit("penguin", "?x", naf=True)])
    assert taught.status_code == 200, taught.text
    assert [r["args"] for r in ask(server, tenant, "canfly", ["?x"])["results"]] == [["tweety"]]
    negative = ask(server, tenant, "flies", ["?x"], negated=True)
    assert [(r["args"], r["negated"]) for r in negative["results"]] == [(["rocky"], True)]
    tell(server, tenant, "age", ["ann", "41"])
    tell(server, tenant, "age", ["bo", 12])
    teach(server, tenant, lit("adult", "?p"), [lit("age", "?p", "?a"), lit(">=", "?a", 18)])
    assert [r["args"] for r in ask(server, tenant, "adult", ["?p"])["results"]] == [["ann"]]


def test_unsafe_and_unstratified_rules_are_rejected(server: Server, tenant: str) -> None:
    unsafe = teach(server, tenant, lit("p", "?x", "?y"), [lit("q", "?x")])
    assert unsafe.status_code == 400 and unsafe.json()["code"] == "VALIDATION_ERROR"
    message = unsafe.json()["message"]
    assert "p(?x, ?y) :- q(?x)" in message and "?y" in message
    assert "r_" not in message  # nothing was stored: no rule id to name
    teach(server, tenant, lit("a", "?x"), [lit("d", "?x"), lit("b", "?x", naf=True)])
    cyclic = teach(server, tenant, lit("b", "?x"), [lit("d", "?x"), lit("a", "?x", naf=True)])
    assert cyclic.status_code == 400, cyclic.text


def test_conflict_strategies(server: Server, tenant: str) -> None:
    tell(server, tenant, "open", ["store"])
    rejected = server.request("POST", "/tell", tenant=tenant,
                              json={"predicate": "open", "args": ["store"], "negated": True})
    assert rejected.status_code == 409 and rejected.json()["code"] == "CONFLICT"
    newest = tell(server, tenant, "open", ["store"], negated=True, conflictStrategy="NEWEST_WINS")
    assert newest["stored"] is True
    results = ask(server, tenant, "open", ["store"])["results"]
    assert results == []
    tell(server, tenant, "open", ["store"], conflictStrategy="KEEP_BOTH")
    assert len(ask(server, tenant, "open", ["store"])["results"]) == 1
    assert len(ask(server, tenant, "open", ["store"], negated=True)["results"]) == 1
    tell(server, tenant, "hot", ["x"], confidence=0.9)
    kept = tell(server, tenant, "hot", ["x"], negated=True, confidence=0.4, conflictStrategy="CONFIDENCE")
    assert kept["stored"] is False and kept["fact"]["negated"] is False


def test_confidence_and_min_confidence(server: Server, tenant: str) -> None:
    tell(server, tenant, "link", ["a", "b"], confidence=0.5)
    tell(server, tenant, "link", ["b", "c"], confidence=0.8)
    tell(server, tenant, "link", ["a", "c"], confidence=0.3)
    teach(server, tenant, lit("reach", "?x", "?y"), [lit("link", "?x", "?y")])
    teach(server, tenant, lit("reach", "?x", "?z"), [lit("reach", "?x", "?y"), lit("link", "?y", "?z")])
    results = {tuple(r["args"]): r["confidence"] for r in ask(server, tenant, "reach", ["a", "?y"])["results"]}
    assert results[("a", "c")] == 0.4  # best of 0.3 direct and 0.5 × 0.8
    strong = ask(server, tenant, "reach", ["a", "?y"], minConfidence=0.45)
    assert [r["args"] for r in strong["results"]] == [["a", "b"]]


def test_validity_and_ttl_hide_facts(server: Server, tenant: str) -> None:
    tell(server, tenant, "promo", ["old"], validFrom=1000, validUntil=2000)
    tell(server, tenant, "promo", ["future"], validFrom=32503680000000)
    tell(server, tenant, "promo", ["now"], ttl=3_600_000)
    assert [r["args"] for r in ask(server, tenant, "promo", ["?p"])["results"]] == [["now"]]
    query = server.request("POST", "/query", tenant=tenant, json={"predicate": "promo", "args": ["?p"]})
    assert [r["args"] for r in query.json()["results"]] == [["now"]]


def test_bulk_query_pattern_predicates_aggregate_rules(server: Server, tenant: str) -> None:
    bulk = server.request("POST", "/assert/facts", tenant=tenant, json={"facts": [
        {"predicate": "salary", "args": ["ann", 100]},
        {"predicate": "salary", "args": ["bo", 50]},
        {"predicate": "salary", "args": ["cy", "70"]},
    ]})
    assert bulk.json() == {"asserted": 3, "failed": 0, "errors": []}
    agg = server.request("POST", "/aggregate", tenant=tenant,
                         json={"predicate": "salary", "args": ["?p", "?s"], "operation": "SUM", "argIndex": 1})
    assert agg.json()["result"] == 220 and agg.json()["matchedFacts"] == 3
    avg = server.request("POST", "/aggregate", tenant=tenant,
                         json={"predicate": "salary", "args": ["?p", "?s"], "operation": "avg", "argIndex": 1})
    assert round(avg.json()["result"], 3) == 73.333
    teach(server, tenant, lit("rich", "?p"), [lit("salary", "?p", "?s"), lit("gt", "?s", 60)])
    preds = server.request("GET", "/predicates", tenant=tenant).json()
    assert preds["totalFacts"] == 3 and preds["totalRules"] == 1
    assert [p["predicate"] for p in preds["predicates"]] == ["rich", "salary"]
    rules = server.request("GET", "/rules", tenant=tenant).json()["rules"]
    assert rules[0]["level"] == "tenant"
    removed = server.request("DELETE", f"/rules/{rules[0]['id']}", tenant=tenant)
    assert removed.json() == {"deleted": rules[0]["id"]}
    pattern = server.request("POST", "/retract/pattern", tenant=tenant,
                             json={"predicate": "salary", "args": ["?p", "?s"]})
    assert pattern.json()["retracted"] == 3


def test_atomic_bulk_is_all_or_nothing(server: Server, tenant: str) -> None:
    tell(server, tenant, "on", ["lamp"])
    bulk = server.request("POST", "/assert/facts", tenant=tenant, json={"atomic": True, "facts": [
        {"predicate": "on", "args": ["fan"]},
        {"predicate": "on", "args": ["lamp"], "negated": True},
    ]})
    assert bulk.status_code == 400
    assert ask(server, tenant, "on", ["fan"])["results"] == []


def test_database_rules_apply_to_every_tenant(server: Server) -> None:
    server.request("POST", "/databases", json={"name": "shared_rules"})
    taught = server.request("POST", "/admin/databases/shared_rules/rules",
                            json={"head": lit("vip", "?c"), "body": [lit("spend", "?c", "high")]})
    assert taught.status_code == 200, taught.text
    for t in ("t1", "t2"):
        server.request("POST", "/tell", database="shared_rules", tenant=t,
                       json={"predicate": "spend", "args": [f"{t}_cust", "high"]})
    for t in ("t1", "t2"):
        answer = server.request("POST", "/ask", database="shared_rules", tenant=t,
                                json={"predicate": "vip", "args": ["?c"]}).json()
        assert [r["args"] for r in answer["results"]] == [[f"{t}_cust"]]
    rules = server.request("GET", "/rules", database="shared_rules", tenant="t1").json()["rules"]
    assert [r["level"] for r in rules] == ["database"]


def test_proofs(server: Server, tenant: str) -> None:
    tell(server, tenant, "parent", ["a", "b"])
    tell(server, tenant, "parent", ["b", "c"])
    teach(server, tenant, lit("gp", "?x", "?z"), [lit("parent", "?x", "?y"), lit("parent", "?y", "?z")])
    answer = ask(server, tenant, "gp", ["a", "?z"], withProof=True)
    proof = answer["results"][0]["proof"]
    assert proof["type"] == "rule"
    assert [c["goal"]["args"] for c in proof["children"]] == [["a", "b"], ["b", "c"]]
    inferred = server.request("POST", "/infer?proof=true", tenant=tenant,
                              json={"predicate": "gp", "args": ["a", "?z"]}).json()
    assert inferred[0]["result"]["args"] == ["a", "c"] and inferred[0]["proof"]["type"] == "rule"


def test_null_enum_fields_mean_not_given(server: Server, tenant: str) -> None:
    # regression (found while adding /scope/merge, issue 5): nullable enums rejected null,
    # so the upstream FactRequest shape with "conflictStrategy": null was a 400
    told = server.request("POST", "/tell", tenant=tenant,
                          json={"predicate": "p", "args": ["a"], "conflictStrategy": None})
    assert told.status_code == 200, told.text
    bad = server.request("POST", "/tell", tenant=tenant,
                         json={"predicate": "p", "args": ["a"], "conflictStrategy": "NOPE"})
    assert bad.json()["message"] == "conflictStrategy: must be one of REJECT, NEWEST_WINS, CONFIDENCE, KEEP_BOTH"


def test_proofs_of_any_depth_render(server: Server, tenant: str) -> None:
    """A proof 1 500 rule applications deep still renders (no recursion or nesting limit)."""
    chain = [{"predicate": "parent", "args": [f"n{i}", f"n{i + 1}"]} for i in range(1500)]
    assert server.request("POST", "/assert/facts", tenant=tenant, json={"facts": chain}).status_code == 200
    teach(server, tenant, lit("anc", "?x", "?y"), [lit("parent", "?x", "?y")])
    teach(server, tenant, lit("anc", "?x", "?z"), [lit("parent", "?x", "?y"), lit("anc", "?y", "?z")])
    response = server.request("POST", "/ask", tenant=tenant,
                              json={"predicate": "anc", "args": ["n0", "n1500"], "withProof": True})
    assert response.status_code == 200
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # the client's json parser recurses; the server does not
    try:
        answer = json.loads(response.content)
    finally:
        sys.setrecursionlimit(limit)
    node, depth = answer["results"][0]["proof"], 0
    while node["type"] == "rule" and len(node["children"]) == 2:
        node, depth = node["children"][1], depth + 1
    assert depth == 1499 and node["children"][0]["goal"]["args"] == ["n1499", "n1500"]
