"""The pieces of extraction that need no server (issue 19): the text-syntax fallback,
reply parsing, the token budget, the provenance record and the LLM settings."""

from __future__ import annotations

import hashlib

import pytest

from nocturnus.api.extraction import FACTS
from nocturnus.errors import StartupError, ValidationError
from nocturnus.service.extraction import fallback
from nocturnus.service.extraction.extractor import Budget, Extraction, Found, Source
from nocturnus.service.extraction.prompts import EXTRACT, SYNTHESIZE, prompt
from nocturnus.service.extraction.provider import parse_json
from nocturnus.service.extraction.remember import provenance
from nocturnus.settings import load_settings


@pytest.mark.parametrize(("line", "facts"), [
    ("pred(a, b)", [("pred", ("a", "b"), False)]),
    ("customer_tier(acme_corp, enterprise).", [("customer_tier", ("acme_corp", "enterprise"), False)]),
    ("budget(alice, 1000) {confidence: 0.9}", [("budget", ("alice", 1000), False)]),
    ("NOT paid(o7)", [("paid", ("o7",), True)]),
    ("ASSERT likes(a, b); likes(b, c).", [("likes", ("a", "b"), False), ("likes", ("b", "c"), False)]),
    ('says(bob, "hello, world")', [("says", ("bob", "hello, world"), False)]),
    ("Thanks.", None),                      # a word, no arguments: prose
    ("ok", None),
    ("Alice is the parent of Bob.", None),
    ("parent(?x, bob)", None),              # a variable: not a fact
    ("?- parent(?x, bob).", None),          # a question
    ("h(?x) :- b(?x).", None),              # a rule
    ("p(a), and then some", None),
    ("p(a). Thanks.", None),                # a line is facts only, or skipped whole
])
def test_a_line_is_facts_or_skipped(line: str, facts: list[tuple] | None) -> None:
    read = fallback.read_lines(Source((line,)), FACTS)
    if facts is None:
        assert (read.facts, read.skipped) == ((), 1)
    else:
        assert [(c.fact.predicate, c.fact.args, c.fact.negated) for c in read.facts] == facts
        assert read.skipped == 0


def test_comments_and_blank_lines_are_not_counted_and_turns_are_kept() -> None:
    source = Source(("# p(a)\n\n  // q(b)\nr(c)", "s(d)\nhello there"))
    read = fallback.read_lines(source, FACTS)
    assert [(c.fact.predicate, c.turn) for c in read.facts] == [("r", 0), ("s", 1)]
    assert read.skipped == 1
    extraction = fallback.extract(source, FACTS)
    assert extraction.provider == "none" and "1 line(s) were not facts" in (extraction.warning or "")
    assert "holds no facts" in (fallback.extract(Source(("# p(a)",)), FACTS).warning or "")
    assert fallback.extract(Source(("p(a)",)), FACTS).warning is None


def test_a_reply_is_read_whole_or_refused() -> None:
    found = FACTS.read_reply({"facts": [{"predicate": "p", "args": ["a", 1], "turn": 1,
                                         "negated": True, "confidence": 0.5}]}, 2)
    [candidate] = found.facts
    assert (candidate.fact.args, candidate.fact.negated, candidate.fact.confidence,
            candidate.turn) == (("a", 1), True, 0.5, 1)
    for bad in (None, [], {"facts": "p(a)"}, {"facts": [{"predicate": "", "args": []}]},
                {"facts": [{"predicate": "p", "args": ["?x"]}]},
                {"facts": [{"predicate": "p", "args": ["a"], "scope": "elsewhere"}]},
                {"facts": [{"predicate": "p", "args": ["a"], "turn": 2}]},
                {"facts": [], "rules": [{"head": {"predicate": "h", "args": ["?x"]}, "body": []}]}):
        with pytest.raises(ValidationError):
            FACTS.read_reply(bad, 2)


@pytest.mark.parametrize(("text", "value", "ok"), [
    ('{"facts": []}', {"facts": []}, True),
    ('```json\n{"facts": []}\n```', {"facts": []}, True),
    ("", None, False),
    ("Here you go", None, False),
    ('{"facts": [', None, False),
])
def test_parse_json(text: str, value: object, ok: bool) -> None:
    parsed, problem = parse_json(text)
    assert parsed == value and (problem is None) == ok


def test_budget() -> None:
    budget = Budget(100)
    assert budget.admit(100) and not budget.admit(101)
    budget.spend(60)
    assert budget.admit(40) and not budget.admit(41)


def test_provenance_names_the_turn_only_in_a_conversation() -> None:
    extraction = Extraction(Found(), "openai", "m", EXTRACT)
    turns = Source(("first", "second"), is_conversation=True)
    assert provenance(extraction, turns, 1) == {
        "provider": "openai", "model": "m", "prompt": "extract.v1", "turn": 1,
        "sourceSha256": hashlib.sha256(b"second").hexdigest()}
    assert provenance(extraction, turns, None)["sourceSha256"] == hashlib.sha256(
        b"first\nsecond").hexdigest()
    text = Source(("one text",))
    assert provenance(extraction, text, 0)["turn"] is None


def test_prompts_ship_as_versioned_files() -> None:
    assert prompt(EXTRACT).name == "extract.v1" and "JSON" in prompt(EXTRACT).text
    assert "missingContext" in prompt(SYNTHESIZE).text


@pytest.mark.parametrize(("env", "message"), [
    ({"NOCTURNUS_LLM_PROVIDER": "gemini"}, "must be one of none, openai, anthropic"),
    ({"NOCTURNUS_LLM_PROVIDER": "openai"}, "NOCTURNUS_LLM_MODEL is required"),
    ({"NOCTURNUS_LLM_PROVIDER": "openai", "NOCTURNUS_LLM_MODEL": "gpt-4o-mini"},
     "NOCTURNUS_LLM_API_KEY is required with llm_provider openai unless"),
    ({"NOCTURNUS_LLM_PROVIDER": "anthropic", "NOCTURNUS_LLM_MODEL": "m",
      "NOCTURNUS_LLM_BASE_URL": "http://x"}, "NOCTURNUS_LLM_API_KEY is required"),
    ({"NOCTURNUS_LLM_PROVIDER": "openai", "NOCTURNUS_LLM_MODEL": "m",
      "NOCTURNUS_LLM_BASE_URL": "http://x", "NOCTURNUS_LLM_MAX_TOKENS": "0"},
     "llm_max_tokens must be at least 1"),
])
def test_llm_settings_are_checked_at_startup(env: dict[str, str], message: str) -> None:
    with pytest.raises(StartupError, match=message):
        load_settings(environ=env)


def test_a_local_openai_compatible_server_needs_no_key() -> None:
    settings = load_settings(environ={
        "NOCTURNUS_LLM_PROVIDER": "openai", "NOCTURNUS_LLM_MODEL": "llama3.2",
        "NOCTURNUS_LLM_BASE_URL": "http://localhost:11434/v1"})
    assert settings.llm_api_key is None and "llm_api_key" not in repr(settings)
