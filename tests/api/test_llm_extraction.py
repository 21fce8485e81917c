"""Extraction and synthesis through each vendor's SDK, against a fake vendor on a real
socket (issue 19): a real server per provider, pointed at it by NOCTURNUS_LLM_BASE_URL.

Covered for both OpenAI's chat completions and Anthropic's Messages: a valid reply
stored with its provenance; an invalid reply retried once with the reason; an invalid
reply twice (a warning, nothing stored, not even the valid half); malformed JSON;
a refusal; the vendor's 429 and 500; a timeout; the token budget; synthesis; and the
published SDK's ``extract_facts``, ``process_turns`` and ``ingest_and_optimize``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nocturnusai import SyncNocturnusAIClient

from tests.fake_llm import Answer, FakeVendor, reply
from tests.server import Server

TIMEOUT_MS = 1500
FACTS = {
    "facts": [
        {"predicate": "customer_tier", "args": ["acme_corp", "enterprise"], "turn": 0},
        {"predicate": "budget_usd", "args": ["acme_corp", 50000], "confidence": 0.8, "turn": 1},
    ],
    "rules": [],
}
ONE_TEXT = {"facts": [{k: v for k, v in f.items() if k != "turn"} for f in FACTS["facts"]]}
HALF_VALID = {
    "facts": [
        {"predicate": "customer_tier", "args": ["acme_corp", "enterprise"]},
        {"predicate": "owner", "args": ["?x", "acme_corp"]},  # a variable: not a fact
    ]
}


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    fake = FakeVendor().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module", params=["openai", "anthropic"])
def llm_server(request: pytest.FixtureRequest, vendor: FakeVendor,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    provider = request.param
    env = {
        "NOCTURNUS_LLM_PROVIDER": provider,
        "NOCTURNUS_LLM_MODEL": f"fake-{provider}-model",
        "NOCTURNUS_LLM_BASE_URL": vendor.url + ("/v1" if provider == "openai" else ""),
        "NOCTURNUS_LLM_API_KEY": "sk-test-not-a-secret",
        "NOCTURNUS_LLM_TIMEOUT_MS": str(TIMEOUT_MS),
        "NOCTURNUS_LLM_CALLS_PER_MINUTE": "0",
    }
    srv = Server(tmp_path_factory.mktemp(f"llm-{provider}") / "data", env=env).start()
    srv.provider = provider  # type: ignore[attr-defined]  # read by the tests
    yield srv
    srv.stop()


@pytest.fixture
def tenant() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def post(server: Server, path: str, body: dict[str, Any], tenant: str) -> Any:
    return server.request("POST", path, tenant=tenant, json=body)


def stored(server: Server, tenant: str, predicate: str, arity: int) -> list[dict[str, Any]]:
    args = [f"?a{i}" for i in range(arity)]
    answer = post(server, "/query", {"predicate": predicate, "args": args}, tenant)
    return answer.json()["results"]


def test_a_valid_reply_is_stored_with_its_provenance(llm_server: Server, vendor: FakeVendor,
                                                     tenant: str) -> None:
    vendor.script(reply(FACTS))
    turns = ["User: we are acme_corp, enterprise tier", "User: budget is 50k"]
    body = post(llm_server, "/context", {"turns": turns, "sessionId": "s1"}, tenant).json()
    assert body["warning"] is None
    assert body["newFactsExtracted"] == 2 and body["extractionProvider"] == llm_server.provider
    assert {(f["predicate"], tuple(f["args"])) for f in body["facts"]} == {
        ("customer_tier", ("acme_corp", "enterprise")), ("budget_usd", ("acme_corp", "50000"))}
    [fact] = stored(llm_server, tenant, "budget_usd", 2)
    assert fact["args"] == ["acme_corp", 50000] and fact["confidence"] == 0.8
    provenance = fact["metadata"]["extraction"]
    assert provenance["provider"] == llm_server.provider
    assert provenance["model"] == f"fake-{llm_server.provider}-model"
    assert provenance["prompt"] == "extract.v1" and provenance["turn"] == 1
    import hashlib
    assert provenance["sourceSha256"] == hashlib.sha256(turns[1].encode()).hexdigest()
    # what the server sent: the prompt file, the numbered turns, the schema, the key
    [sent] = vendor.requests
    headers = vendor.headers[0]
    if llm_server.provider == "openai":
        assert vendor.paths == ["/v1/chat/completions"]
        assert sent["model"] == "fake-openai-model"
        assert sent["messages"][0]["content"].startswith("You turn text into facts")
        assert "[1] User: budget is 50k" in sent["messages"][1]["content"]
        assert sent["response_format"]["type"] == "json_schema"
        assert headers["authorization"] == "Bearer sk-test-not-a-secret"
    else:
        assert vendor.paths == ["/v1/messages"]
        assert sent["system"].startswith("You turn text into facts")
        assert "[1] User: budget is 50k" in sent["messages"][0]["content"]
        assert sent["tool_choice"] == {"type": "tool", "name": "extract"}
        assert sent["tools"][0]["input_schema"]["required"] == ["facts"]
        assert "sk-test-not-a-secret" in str(headers), headers


def test_the_same_turns_twice_store_nothing_new(llm_server: Server, vendor: FakeVendor,
                                                tenant: str) -> None:
    turns = ["acme_corp is enterprise", "budget 50k"]
    vendor.script(reply(FACTS), reply(FACTS))
    first = post(llm_server, "/context", {"turns": turns}, tenant).json()
    second = post(llm_server, "/context", {"turns": turns}, tenant).json()
    assert (first["newFactsExtracted"], second["newFactsExtracted"]) == (2, 0)
    assert second["alreadyKnown"] == 2 and second["totalFactsInKB"] == 2


def test_an_invalid_reply_is_retried_once_with_the_reason(llm_server: Server,
                                                          vendor: FakeVendor, tenant: str) -> None:
    vendor.script(reply(HALF_VALID), reply(ONE_TEXT))
    body = post(llm_server, "/extract", {"text": "acme_corp: enterprise, 50k", "assert": True},
                tenant).json()
    assert body["warning"] is None and body["asserted"] == 2
    assert len(vendor.requests) == 2
    retry = str(vendor.requests[1])
    assert "previous reply was rejected" in retry and "variable" in retry
    # metrics count calls by outcome, with tokens; neither they nor the log hold content
    metrics = llm_server.request("GET", "/metrics").text
    def sample(name: str, **labels: str) -> float:
        wanted = {"provider": llm_server.provider, "operation": "extract", **labels}
        for line in metrics.splitlines():
            if line.startswith(name + "{") and all(
                    f'{k}="{v}"' in line for k, v in wanted.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no {name} {wanted} in /metrics")

    assert sample("nocturnus_llm_calls_total", outcome="invalid") >= 1
    assert sample("nocturnus_llm_calls_total", outcome="ok") >= 1
    assert sample("nocturnus_llm_tokens_total", direction="input") >= 240
    assert "acme_corp" not in metrics and "acme_corp" not in llm_server.output()


@pytest.mark.parametrize("bad", [
    reply(HALF_VALID),
    Answer(text="Sure! Here are the facts: customer_tier(acme_corp, enterprise)"),
    Answer(text='{"facts": [{"predicate": "p", "args": ["a"]}'),  # cut short
    Answer(refusal="I can't help with that."),
    reply({"facts": [{"predicate": "p", "args": ["a"], "turn": 5}]}),  # no such turn
], ids=["half-valid", "prose", "broken-json", "refusal", "bad-turn"])
def test_an_invalid_reply_twice_is_a_warning_and_nothing_is_stored(
        llm_server: Server, vendor: FakeVendor, tenant: str, bad: Answer) -> None:
    vendor.script(bad, bad)
    body = post(llm_server, "/context", {"turns": ["acme_corp is enterprise"]}, tenant).json()
    assert "invalid twice" in body["warning"]
    assert body["newFactsExtracted"] == 0 and body["totalFactsInKB"] == 0
    assert len(vendor.requests) == 2
    assert stored(llm_server, tenant, "customer_tier", 2) == []


def test_a_timeout_is_a_504_on_extract_and_a_warning_on_context(
        llm_server: Server, vendor: FakeVendor, tenant: str) -> None:
    slow = Answer(data=FACTS, delay_s=TIMEOUT_MS / 1000 + 1)
    vendor.script(slow)
    response = post(llm_server, "/extract", {"text": "acme_corp is enterprise"}, tenant)
    assert response.status_code == 504, response.text
    assert response.json()["code"] == "LLM_TIMEOUT"
    vendor.script(slow)
    body = post(llm_server, "/context", {"turns": ["acme_corp is enterprise"]}, tenant).json()
    assert body["warning"].startswith("extraction failed") and body["newFactsExtracted"] == 0


@pytest.mark.parametrize(("status", "code", "http"), [
    (429, "LLM_RATE_LIMITED", 429), (500, "LLM_ERROR", 502), (401, "LLM_ERROR", 502),
])
def test_vendor_errors_map_to_clear_statuses(llm_server: Server, vendor: FakeVendor, tenant: str,
                                            status: int, code: str, http: int) -> None:
    vendor.script(Answer(status=status))
    response = post(llm_server, "/extract", {"text": "acme_corp is enterprise"}, tenant)
    assert response.status_code == http, response.text
    assert response.json()["code"] == code
    if status == 429:
        assert response.headers["Retry-After"] == "7"
    assert len(vendor.requests) == 1  # the SDK's own retries are off


def test_rules_extraction_and_batch(llm_server: Server, vendor: FakeVendor, tenant: str) -> None:
    rule = {"head": {"predicate": "employee", "args": ["?x"]},
            "body": [{"predicate": "manager", "args": ["?x"]}]}
    vendor.script(reply({"facts": [{"predicate": "manager", "args": ["ann"]}], "rules": [rule]}),
                  Answer(status=500))
    body = post(llm_server, "/extract/batch", {
        "texts": ["Ann is a manager; every manager is an employee.", "second", "third"],
        "assert": True, "rules": True}, tenant).json()
    first, second, third = body["results"]
    assert first["asserted"] == 1 and first["rules"] == [
        {"head": {"predicate": "employee", "args": ["?x"], "negated": False, "naf": False},
         "body": [{"predicate": "manager", "args": ["?x"], "negated": False, "naf": False}]}]
    assert second["warning"].startswith("extraction failed")
    assert third["warning"].startswith("not extracted: the provider failed")
    assert len(vendor.requests) == 2  # nothing sent after the failure
    answers = post(llm_server, "/ask", {"predicate": "employee", "args": ["?x"]}, tenant).json()
    assert answers["results"][0]["args"] == ["ann"]


def test_the_token_budget_refuses_a_text_too_long(llm_server: Server, vendor: FakeVendor,
                                                  tenant: str) -> None:
    vendor.script()
    response = post(llm_server, "/extract", {"text": "word " * 40_000}, tenant)
    assert response.status_code == 413, response.text
    assert "NOCTURNUS_LLM_REQUEST_TOKENS" in response.json()["message"]
    assert vendor.requests == []


def test_synthesis_plans_runs_and_answers_from_results(llm_server: Server, vendor: FakeVendor,
                                                       tenant: str) -> None:
    post(llm_server, "/tell", {"predicate": "parent", "args": ["alice", "bob"]}, tenant)
    post(llm_server, "/tell", {"predicate": "parent", "args": ["bob", "carol"]}, tenant)
    post(llm_server, "/teach", {"head": {"predicate": "grandparent", "args": ["?x", "?z"]},
                                "body": [{"predicate": "parent", "args": ["?x", "?y"]},
                                         {"predicate": "parent", "args": ["?y", "?z"]}]}, tenant)
    plan = {"queries": [{"predicate": "grandparent", "args": ["?who", "carol"]}], "answer": ""}
    cited_wrong = {"queries": [], "answer": "Eve.", "usedFacts": ["grandparent(eve, carol)"]}
    answer = {"queries": [], "answer": "Alice is Carol's grandparent.", "confidence": 0.9,
              "usedFacts": ["grandparent(alice, carol)"], "missingContext": []}
    vendor.script(reply(plan), reply(cited_wrong), reply(answer))
    body = post(llm_server, "/synthesize", {"question": "Who is carol's grandparent?"},
                tenant).json()
    assert body["answer"] == "Alice is Carol's grandparent." and body["confidence"] == 0.9
    assert body["queriesExecuted"] == ["grandparent(?who, carol)"]
    [step] = body["derivation"]
    assert step["type"] == "rule_application" and step["fact"] == "grandparent(alice, carol)"
    assert sorted(step["premises"]) == ["parent(alice, bob)", "parent(bob, carol)"]
    assert "parent/2" in str(vendor.requests[0])  # the plan saw the predicates
    assert "grandparent(alice, carol)" in str(vendor.requests[1])  # the answer saw results
    assert "which is not a result" in str(vendor.requests[2])  # a made-up citation: retried


def test_the_sdk_calls_through_a_provider(llm_server: Server, vendor: FakeVendor,
                                          tenant: str) -> None:
    with SyncNocturnusAIClient(llm_server.url, tenant_id=tenant, max_retries=0) as sdk:
        vendor.script(reply(ONE_TEXT))
        extracted = sdk.extract_facts("acme_corp is enterprise with 50k", assert_facts=True)
        assert extracted["provider"] == llm_server.provider and extracted["asserted"] == 2
        assert [f["predicate"] for f in extracted["facts"]] == ["customer_tier", "budget_usd"]

        vendor.script(reply({"facts": [{"predicate": "ticket_status", "args": ["t1", "open"]}]}))
        first = sdk.process_turns(["User: ticket t1 is open"], session_id="t1", scope="t1")
        assert first.new_facts_extracted == 1 and first.briefing_delta is None
        vendor.script(reply({"facts": [{"predicate": "ticket_owner", "args": ["t1", "sam"]}]}))
        second = sdk.process_turns(["Agent: sam owns t1"], session_id="t1", scope="t1")
        assert second.new_facts_extracted == 1
        assert second.briefing_delta == "The ticket owner of t1 is sam."
        # the second call's hint was the session's first turn
        assert "User: ticket t1 is open" in str(vendor.requests[0])

        vendor.script(reply({"facts": [{"predicate": "product_tier", "args": ["x", "premium"]}]}))
        window = sdk.ingest_and_optimize("Product x is our premium tier.", max_facts=10)
        assert ("product_tier", ["x", "premium"]) in [(e.predicate, e.args) for e in window.entries]


def test_startup_refuses_a_provider_without_model(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", env={"NOCTURNUS_LLM_PROVIDER": "anthropic"})
    with pytest.raises(RuntimeError, match="NOCTURNUS_LLM_MODEL is required"):
        srv.start(timeout_s=20)


def test_llm_calls_per_minute_are_limited_per_caller(vendor: FakeVendor, tmp_path: Path,
                                                     tenant: str) -> None:
    env = {"NOCTURNUS_LLM_PROVIDER": "openai", "NOCTURNUS_LLM_MODEL": "m",
           "NOCTURNUS_LLM_BASE_URL": vendor.url + "/v1", "NOCTURNUS_LLM_CALLS_PER_MINUTE": "2"}
    srv = Server(tmp_path / "data", env=env).start()
    try:
        vendor.script()
        answers = [post(srv, "/extract", {"text": "p"}, tenant) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429], answers[-1].text
        assert answers[-1].json()["code"] == "RATE_LIMITED"
        assert int(answers[-1].headers["Retry-After"]) >= 1
        assert len(vendor.requests) == 2  # the refused request never reached the provider
        # what calls no LLM is not counted: a goal question, a window
        assert post(srv, "/synthesize", {"question": "p(?x)"}, tenant).status_code == 200
        assert post(srv, "/context", {"maxFacts": 3}, tenant).status_code == 200
    finally:
        srv.stop()
