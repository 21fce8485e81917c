"""From conversation to facts without an LLM (issue 19), through a real server.

The fallback reads lines written as facts; extraction is idempotent by content, carries
provenance, follows the tenant's conflict strategy and previews with ``dry``; ``/extract``
answers 503 ``LLM_NOT_CONFIGURED`` as the original does; a question written as a goal is
synthesized without any LLM; auth is EXTRACT for writers and SYNTHESIZE for readers; and
the published SDK's ``process_turns`` / ``ingest_and_optimize`` / ``extract_facts`` run.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from nocturnusai import NocturnusAIAPIError, SyncNocturnusAIClient

from tests.conftest import ADMIN_KEY
from tests.server import Server

CONVERSATION = [
    "User: hi, we're acme\ncustomer_tier(acme_corp, enterprise)\n# a comment: skip(me)",
    "// also skipped: skip(me_too)\nbudget_usd(acme_corp, 50000). NOT churned(acme_corp)",
    "Thanks.\nWhat is owner(?x)?\nmanager(?x) :- boss(?x).\nok",
]


def post(server: Server, path: str, body: Any, tenant: str, **kwargs: Any) -> Any:
    return server.request("POST", path, tenant=tenant, json=body, **kwargs)


def query(server: Server, tenant: str, predicate: str, arity: int, **extra: Any) -> list[dict[str, Any]]:
    body = {"predicate": predicate, "args": [f"?a{i}" for i in range(arity)], **extra}
    return post(server, "/query", body, tenant).json()["results"]


def test_lines_written_as_facts_are_stored_and_the_rest_skipped(server: Server, tenant: str) -> None:
    response = post(server, "/context", {"turns": CONVERSATION, "sessionId": "s"}, tenant)
    assert response.status_code == 200, response.text
    body = response.json()
    extracted = {(f["predicate"], tuple(f["args"]), f["negated"]) for f in body["extracted"]}
    assert extracted == {
        ("customer_tier", ("acme_corp", "enterprise"), False),
        ("budget_usd", ("acme_corp", 50000), False),
        ("churned", ("acme_corp",), True),
    }
    # prose, a question, a rule and a bare word are not facts; comments are not counted
    assert body["warning"] == (
        "no LLM is configured: 5 line(s) were not facts written as pred(a, b) and were skipped"
    )
    assert body["newFactsExtracted"] == 3 and body["totalFactsInKB"] == 3
    assert body["factsReturned"] == 3 and body["sessionId"] == "s"
    assert body["briefingDelta"] is None  # the session's first window
    assert body["extractionProvider"] is None
    # the original's TurnFact: arguments as strings
    assert {"predicate": "budget_usd", "args": ["acme_corp", "50000"]}.items() <= next(
        f for f in body["facts"] if f["predicate"] == "budget_usd").items()


def test_every_fact_carries_its_provenance(server: Server, tenant: str) -> None:
    post(server, "/context", {"turns": CONVERSATION}, tenant)
    [fact] = query(server, tenant, "budget_usd", 2)
    assert fact["metadata"]["extraction"] == {
        "provider": "none", "model": None, "prompt": None, "turn": 1,
        "sourceSha256": hashlib.sha256(CONVERSATION[1].encode()).hexdigest(),
    }


def test_the_same_turns_twice_store_nothing_new(server: Server, tenant: str) -> None:
    first = post(server, "/context", {"turns": CONVERSATION}, tenant).json()
    log_before = server.request("GET", "/predicates", tenant=tenant).json()
    second = post(server, "/context", {"turns": CONVERSATION}, tenant).json()
    assert (first["newFactsExtracted"], second["newFactsExtracted"]) == (3, 0)
    assert (second["stored"], second["alreadyKnown"]) == (0, 3)
    assert server.request("GET", "/predicates", tenant=tenant).json() == log_before
    # a fact told by hand first keeps its own (absent) provenance
    post(server, "/tell", {"predicate": "plan", "args": ["acme_corp", "gold"]}, tenant)
    third = post(server, "/context", {"turns": ["plan(acme_corp, gold)"]}, tenant).json()
    assert third["alreadyKnown"] == 1
    assert query(server, tenant, "plan", 2)[0]["metadata"] == {}


def test_dry_previews_without_storing(server: Server, tenant: str) -> None:
    body = post(server, "/context", {"turns": CONVERSATION, "dry": True}, tenant).json()
    assert body["dry"] is True and body["newFactsExtracted"] == 3
    assert body["totalFactsInKB"] == 0 and body["facts"] == []
    ingest = post(server, "/context/ingest", {"text": "owns(bob, car)", "dry": True}, tenant).json()
    assert ingest["stored"] == 1 and ingest["context"]["entries"] == []
    assert query(server, tenant, "owns", 2) == []


def test_extracted_facts_follow_the_conflict_strategy(server: Server, tenant: str) -> None:
    post(server, "/tell", {"predicate": "paid", "args": ["o7"]}, tenant)
    body = post(server, "/context", {"turns": ["NOT paid(o7)\nshipped(o7)"]}, tenant).json()
    assert body["newFactsExtracted"] == 1
    [rejected] = body["rejected"]
    assert rejected["fact"] == "NOT paid(o7)" and rejected["code"] == "CONFLICT"
    assert "1 fact(s) were refused" in body["warning"]
    # a fact's own annotation chooses another strategy, as on /tell
    body = post(server, "/context", {
        "turns": ['NOT paid(o7) {conflictStrategy: "NEWEST_WINS"}']}, tenant).json()
    assert body["newFactsExtracted"] == 1 and body["rejected"] == []
    assert query(server, tenant, "paid", 1) == []


def test_scope_session_hint_and_briefing(server: Server, tenant: str) -> None:
    first = post(server, "/context", {"turns": ["ticket(t1, open)"], "scope": "t1",
                                      "sessionId": "t1"}, tenant).json()
    second = post(server, "/context", {"turns": ["ticket_owner(t1, sam)"], "scope": "t1",
                                       "sessionId": "t1"}, tenant).json()
    assert first["briefingDelta"] is None
    assert second["briefingDelta"] == "The ticket owner of t1 is sam."
    assert [f["scope"] for f in second["facts"]] == ["t1", "t1"]
    assert query(server, tenant, "ticket", 2, scope="main") == []


def test_context_without_turns_is_the_window_of_context_optimize(server: Server, tenant: str) -> None:
    post(server, "/context", {"turns": CONVERSATION}, tenant)
    window = post(server, "/context", {"maxFacts": 2}, tenant).json()
    assert window == post(server, "/context/optimize", {"maxFacts": 2}, tenant).json()
    assert post(server, "/context", None, tenant).json()["totalFactsIncluded"] == 3


@pytest.mark.parametrize(("body", "field"), [
    ({"turns": []}, "turns"),
    ({"turns": [""]}, "turns[0]"),
    ({"turns": "hello"}, "turns"),
    ({"contextHint": "x"}, "turns"),
    ({"dry": True}, "turns"),
    ({"turns": ["p(a)"], "unknown": 1}, "unknown"),
])
def test_bad_context_bodies_are_400s(server: Server, tenant: str, body: Any, field: str) -> None:
    response = post(server, "/context", body, tenant)
    assert response.status_code == 400, response.text
    assert response.json()["details"]["field"] == field


def test_extraction_routes_refuse_transactions(server: Server, tenant: str) -> None:
    tx = post(server, "/tx/begin", {}, tenant).json()["transactionId"]
    response = post(server, "/context", {"turns": ["p(a)"]}, tenant,
                    headers={"X-Transaction-ID": str(tx)})
    assert response.status_code == 400 and "cannot run inside a transaction" in response.text


def test_llm_routes_need_an_llm(server: Server, tenant: str) -> None:
    for path, body in (("/extract", {"text": "p(a)"}), ("/extract/batch", {"texts": ["p(a)"]}),
                       ("/synthesize", {"question": "Who owns the car?"})):
        response = post(server, path, body, tenant)
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "LLM_NOT_CONFIGURED"


def test_a_question_written_as_a_goal_is_synthesized_without_an_llm(server: Server, tenant: str) -> None:
    post(server, "/context", {"turns": ["parent(alice, bob)\nparent(bob, carol)"]}, tenant)
    post(server, "/teach", {"head": {"predicate": "grandparent", "args": ["?x", "?z"]},
                            "body": [{"predicate": "parent", "args": ["?x", "?y"]},
                                     {"predicate": "parent", "args": ["?y", "?z"]}]}, tenant)
    body = post(server, "/synthesize", {"question": "grandparent(?who, carol)"}, tenant).json()
    assert body["answer"] == "grandparent(alice, carol)" and body["confidence"] == 1.0
    assert body["queriesExecuted"] == ["grandparent(?who, carol)"]
    [step] = body["derivation"]
    assert step["type"] == "rule_application" and "grandparent(?x, ?z) :-" in step["rule"]
    assert sorted(step["premises"]) == ["parent(alice, bob)", "parent(bob, carol)"]
    assert (body["provider"], body["missingContext"]) == (None, [])
    nothing = post(server, "/synthesize", {"question": "?- parent(carol, ?x)."}, tenant).json()
    assert nothing["confidence"] == 0.0 and nothing["derivation"] == []
    assert nothing["missingContext"] == ["facts or rules proving parent(carol, ?x)"]


def test_permissions_extract_for_writers_synthesize_for_readers(auth_server: Server) -> None:
    def key(role: str) -> dict[str, str]:
        made = auth_server.request("POST", "/auth/keys", json={"role": role},
                                   headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        return {"Authorization": f"Bearer {made.json()['key']}"}

    reader, writer = key("reader"), key("writer")
    turns = {"turns": ["p(a)"]}
    denied = post(auth_server, "/context", turns, "acme", headers=reader)
    assert denied.status_code == 403 and "extract" in denied.json()["message"]
    assert post(auth_server, "/context", {"maxFacts": 3}, "acme", headers=reader).status_code == 200
    assert post(auth_server, "/context/ingest", {"text": "p(a)"}, "acme",
                headers=reader).status_code == 403
    assert post(auth_server, "/context", turns, "acme", headers=writer).status_code == 200
    assert post(auth_server, "/synthesize", {"question": "p(?x)"}, "acme",
                headers=reader).json()["answer"] == "p(a)"
    whoami = auth_server.request("GET", "/auth/whoami", headers=reader).json()
    assert "synthesize" in str(whoami) and "extract" not in str(whoami)


def test_the_sdk_calls_with_the_fallback(server: Server, tenant: str) -> None:
    with SyncNocturnusAIClient(server.url, tenant_id=tenant, max_retries=0) as sdk:
        first = sdk.process_turns(["User: order o1 shipped\nshipped(o1)"], session_id="c1")
        assert first.new_facts_extracted == 1 and first.total_facts_in_kb == 1
        assert first.warning is not None and first.briefing_delta is None
        second = sdk.process_turns(["delivered(o1)"], session_id="c1")
        assert second.briefing_delta == "O1 is delivered." and second.warning is None
        assert [f.predicate for f in second.facts] == ["delivered", "shipped"]

        window = sdk.ingest_and_optimize("owns(bob, car)\nbudget(bob, 1000)", max_facts=10)
        assert {(e.predicate, tuple(e.args)) for e in window.entries} >= {
            ("owns", ("bob", "car")), ("budget", ("bob", "1000"))}

        with pytest.raises(NocturnusAIAPIError) as error:
            sdk.extract_facts("owns(bob, car)")
        assert error.value.status_code == 503
