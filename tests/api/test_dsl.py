"""The text syntax on a real server (issue 18): ``/execute``, ``/assert/template``,
``/test`` and ``/constraints``, with the original SDK's ``execute`` too."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from nocturnusai import SyncNocturnusAIClient

from tests.conftest import ADMIN_KEY
from tests.server import Server


def execute(server: Server, tenant: str, command: str, **kwargs: Any) -> httpx.Response:
    return server.request(
        "POST", "/execute", tenant=tenant, json={"command": command}, **kwargs
    )


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


FAMILY = """% the README's family
parent(alice, bob).
parent(bob, charlie).
grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z).
?- grandparent(?who, charlie).
"""


def test_a_script_tells_teaches_and_asks_in_order(server: Server, tenant: str) -> None:
    answer = ok(execute(server, tenant, FAMILY))
    assert answer["result"].splitlines() == [
        "Stored: parent(alice, bob)",
        "Stored: parent(bob, charlie)",
        "Rule stored: grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)",
        "Inferred 1 result(s):",
        "  grandparent(alice, charlie)",
    ]
    kinds = [(s["kind"], s["line"], s["column"]) for s in answer["statements"]]
    assert kinds == [("tell", 2, 1), ("tell", 3, 1), ("teach", 4, 1), ("ask", 5, 1)]
    question = answer["statements"][3]
    assert question["bindings"] == [{"who": "alice"}] and question["count"] == 1
    assert question["results"][0]["args"] == ["alice", "charlie"]
    # the same knowledge through the REST twins
    rules = server.request("GET", "/rules", tenant=tenant).json()["rules"]
    assert [r["text"] for r in rules] == [
        "grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)"
    ]
    asked = server.request(
        "POST",
        "/ask",
        tenant=tenant,
        json={"predicate": "grandparent", "args": ["?who", "charlie"]},
    )
    assert asked.json()["bindings"] == [{"who": "alice"}]


def test_the_originals_commands(server: Server, tenant: str) -> None:
    ok(execute(server, tenant, FAMILY))
    answer = ok(
        execute(
            server,
            tenant,
            """
ASSERT parent(charlie, dana);
ASSERT FORALL ?x, ?z { ancestor(?x, ?z) <- parent(?x, ?z) };
INFER grandparent(?x, ?y);
EXPLAIN grandparent(alice, charlie);
INFER grandparent(bob, ?y) WITH PROOF;
RETRACT parent(charlie, dana);
INFER grandparent(bob, ?y);
""",
        )
    )
    lines = answer["result"].splitlines()
    assert "Inferred 2 result(s):" in lines
    assert lines[lines.index("Result: grandparent(alice, charlie)") + 1 :][:3] == [
        (
            "  RULE: grandparent(alice, charlie) by "
            "grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)"
        ),
        "    FACT: parent(alice, bob)",
        "    FACT: parent(bob, charlie)",
    ]
    assert lines[-2:] == [
        "Forgotten: parent(charlie, dana)",
        "No results could be inferred.",
    ]
    explained = answer["statements"][3]
    assert explained["kind"] == "explain"
    proof = explained["results"][0]["proof"]
    assert proof["type"] == "rule" and [c["type"] for c in proof["children"]] == [
        "fact",
        "fact",
    ]
    assert answer["statements"][4]["results"][0]["proof"]["type"] == "rule"


def test_scopes_attributes_and_negation(server: Server, tenant: str) -> None:
    answer = ok(
        execute(
            server,
            tenant,
            """
plan(acme, "enterprise plan", 500) @what-if {confidence: 0.9, metadata: {src: "crm"}}.
NOT paid(o7).
?- plan(?c, ?p, ?n).
?- NOT paid(?o).
""",
        )
    )
    fact = answer["statements"][0]["fact"]
    assert fact["args"] == ["acme", "enterprise plan", 500]
    assert (fact["scope"], fact["confidence"], fact["metadata"]) == (
        "what-if",
        0.9,
        {"src": "crm"},
    )
    assert (
        '  plan(acme, "enterprise plan", 500) @what-if' in answer["result"].splitlines()
    )
    assert answer["statements"][3]["bindings"] == [{"o": "o7"}]


def test_syntax_errors_name_line_and_column_and_store_nothing(
    server: Server, tenant: str
) -> None:
    response = execute(server, tenant, "p(a).\nq(b) r(c).\n")
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == (
        "command: line 2, column 6: expected '.' or ';' ending the statement, found 'r'"
    )
    assert error["details"] == {"field": "command", "line": 2, "column": 6}
    assert (
        server.request(
            "POST", "/query", tenant=tenant, json={"predicate": "p", "args": ["?x"]}
        ).json()["count"]
        == 0
    )


@pytest.mark.parametrize(
    ("command", "line", "column", "message"),
    [
        ("p(a).\np(b) {confidence: 2}.", 2, 1, "confidence: must be ≤ 1"),
        ("p(a) {colour: 1}.", 1, 1, "colour: unknown field"),
        ("p(a) @bad/scope.", 1, 1, "scope: 'bad/scope' does not match"),
        ("?- lt(?x, 3).", 1, 4, "a comparison cannot be asked on its own"),
        (
            'TEST "t" { EXPECT { PROVABLE lt(1, 2); } }',
            1,
            30,
            "a comparison cannot be asked on its own",
        ),
    ],
)
def test_bad_statements_are_400_at_their_position(
    server: Server, tenant: str, command: str, line: int, column: int, message: str
) -> None:
    response = execute(server, tenant, command)
    assert response.status_code == 400, response.text
    error = response.json()
    assert f"line {line}, column {column}" in error["message"]
    assert message in error["message"]
    assert (error["details"]["line"], error["details"]["column"]) == (line, column)
    assert (
        server.request(
            "POST", "/query", tenant=tenant, json={"predicate": "p", "args": ["?x"]}
        ).json()["count"]
        == 0
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"command": ""},
        {"command": "% nothing"},
        {"command": 3},
        {"command": "p(a).", "extra": 1},
    ],
)
def test_bad_bodies_are_400(server: Server, tenant: str, body: Any) -> None:
    response = server.request("POST", "/execute", tenant=tenant, json=body)
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"


def test_a_failing_statement_stops_the_script_and_says_how_far_it_got(
    server: Server, tenant: str
) -> None:
    response = execute(server, tenant, "open(door).\nNOT open(door).\nlocked(door).")
    assert response.status_code == 409
    error = response.json()
    assert error["code"] == "CONFLICT"
    assert error["message"].startswith("line 2, column 1: Contradiction")
    assert error["details"]["executed"] == 1
    assert [s["kind"] for s in error["details"]["statements"]] == ["tell"]
    stored = server.request(
        "POST", "/query", tenant=tenant, json={"predicate": "open", "args": ["?x"]}
    ).json()
    assert stored["count"] == 1  # the statement before stays done
    assert (
        server.request(
            "POST",
            "/query",
            tenant=tenant,
            json={"predicate": "locked", "args": ["?x"]},
        ).json()["count"]
        == 0
    )


def test_restrict_is_enforced_on_every_write_path_and_survives_restart(
    fresh_server: Server,
) -> None:
    server = fresh_server.start()
    tenant = "acme"
    ok(
        execute(
            server,
            tenant,
            "employee(ann).\n"
            "RESTRICT ?x { employee(?x) AND contractor(?x) } -> CONTRADICTION;",
        )
    )
    listed = ok(server.request("GET", "/constraints", tenant=tenant))
    assert [c["text"] for c in listed["constraints"]] == [
        "RESTRICT { employee(?x) AND contractor(?x) }"
    ]
    constraint_id = listed["constraints"][0]["id"]
    assert server.stop() == 0
    server.start()
    for method, path, body in [
        ("POST", "/execute", {"command": "contractor(ann)."}),
        ("POST", "/tell", {"predicate": "contractor", "args": ["ann"]}),
        (
            "POST",
            "/assert/facts",
            {"facts": [{"predicate": "contractor", "args": ["ann"]}]},
        ),
    ]:
        refused = server.request(method, path, tenant=tenant, json=body)
        assert refused.status_code == 409, (path, refused.text)
        details = refused.json()["details"]
        assert details["constraint"] == constraint_id
        assert details["witnesses"] == [{"scope": "main", "bindings": {"x": "ann"}}]
    mcp = server.request(
        "POST",
        "/mcp",
        tenant=tenant,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "tell",
                "arguments": {"predicate": "contractor", "args": ["ann"]},
            },
        },
    ).json()
    assert mcp["result"]["isError"] is True
    assert mcp["result"]["structuredContent"]["code"] == "CONFLICT"
    assert ok(
        server.request("DELETE", f"/constraints/{constraint_id}", tenant=tenant)
    ) == {"deleted": constraint_id}
    assert (
        server.request(
            "DELETE", f"/constraints/{constraint_id}", tenant=tenant
        ).status_code
        == 404
    )
    ok(
        server.request(
            "POST",
            "/tell",
            tenant=tenant,
            json={"predicate": "contractor", "args": ["ann"]},
        )
    )


def test_a_constraint_already_broken_or_undecidable_is_refused(
    server: Server, tenant: str
) -> None:
    ok(execute(server, tenant, "a(1). b(1)."))
    broken = execute(server, tenant, "RESTRICT { a(?x) AND b(?x) };")
    assert broken.status_code == 409
    assert "already violates it" in broken.json()["message"]
    unsafe = execute(server, tenant, "RESTRICT { a(?x) AND NOT c(?y) };")
    assert unsafe.status_code == 400
    assert "?y" in unsafe.json()["message"]


def test_test_statements_run_in_a_scratch_knowledge_base(
    server: Server, tenant: str
) -> None:
    answer = ok(
        execute(
            server,
            tenant,
            """
TEST "grandparents" {
  GIVEN { parent(a, b). parent(b, c). gp(?x, ?z) :- parent(?x, ?y), parent(?y, ?z). }
  EXPECT { PROVABLE gp(a, c); NOT_PROVABLE gp(c, a); COUNT gp(?x, ?y) 1; }
}
TEST "wrong" { GIVEN { p(a). } EXPECT { COUNT p(?x) 2; } }
TEST "refused" { GIVEN { p(a). NOT p(a). } EXPECT { PROVABLE p(a); } }
""",
        )
    )
    assert answer["result"].splitlines() == [
        "PASS grandparents (3 expectation(s))",
        "FAIL wrong: 1 of 1 expectation(s) failed",
        (
            "FAIL refused: setup step 1: Contradiction: cannot store NOT p(a) because "
            "p(a) exists in scope main"
        ),
    ]
    assert answer["statements"][1]["expectations"][0] == {
        "type": "result_count",
        "goal": "p(?x)",
        "passed": False,
        "count": 1,
        "answers": [["a"]],
    }
    assert answer["statements"][2]["error"]["code"] == "CONFLICT"
    # nothing of it reached the tenant
    assert (
        server.request(
            "POST",
            "/query",
            tenant=tenant,
            json={"predicate": "parent", "args": ["?x", "?y"]},
        ).json()["count"]
        == 0
    )


def test_post_test_runs_the_originals_json_tests(server: Server, tenant: str) -> None:
    tests = [
        {
            "name": "modus ponens",
            "setup": [
                {
                    "type": "assert_fact",
                    "fact": {"predicate": "human", "args": ["socrates"]},
                },
                {
                    "type": "assert_rule",
                    "rule": {
                        "head": {"predicate": "mortal", "args": ["?x"]},
                        "body": [{"predicate": "human", "args": ["?x"]}],
                    },
                },
            ],
            "expectations": [
                {
                    "type": "provable",
                    "goal": {"predicate": "mortal", "args": ["socrates"]},
                },
                {
                    "type": "not_provable",
                    "goal": {"predicate": "mortal", "args": ["zeus"]},
                },
                {
                    "type": "results_exactly",
                    "goal": {"predicate": "mortal", "args": ["?x"]},
                    "expected": [{"predicate": "mortal", "args": ["socrates"]}],
                },
                {
                    "type": "result_count",
                    "goal": {"predicate": "human", "args": ["?x"]},
                    "count": 1,
                },
            ],
        },
        {
            "name": "fails",
            "setup": [
                {
                    "type": "restrict",
                    "constraint": {"body": [{"predicate": "p", "args": ["?x"]}]},
                },
                {"type": "assert_fact", "fact": {"predicate": "p", "args": ["a"]}},
            ],
            "expectations": [
                {"type": "provable", "goal": {"predicate": "p", "args": ["a"]}}
            ],
        },
    ]
    answer = ok(server.request("POST", "/test", tenant=tenant, json={"tests": tests}))
    assert (answer["passed"], answer["total"], answer["failed"]) == (False, 2, 1)
    first, second = answer["results"]
    assert (
        first["passed"] and [e["passed"] for e in first["expectations"]] == [True] * 4
    )
    assert second["error"]["code"] == "CONFLICT" and second["error"]["step"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"tests": []},
        {
            "tests": [
                {
                    "name": "x",
                    "expectations": [
                        {"type": "result_count", "goal": {"predicate": "p", "args": []}}
                    ],
                }
            ]
        },
        {
            "tests": [
                {
                    "name": "x",
                    "setup": [{"type": "assert_fact"}],
                    "expectations": [
                        {"type": "provable", "goal": {"predicate": "p", "args": []}}
                    ],
                }
            ]
        },
        {
            "tests": [
                {
                    "name": "x",
                    "expectations": [
                        {"type": "maybe", "goal": {"predicate": "p", "args": []}}
                    ],
                }
            ]
        },
        [{"name": "x", "expectations": []}],
    ],
)
def test_bad_tests_are_400(server: Server, tenant: str, body: Any) -> None:
    response = server.request("POST", "/test", tenant=tenant, json=body)
    assert response.status_code == 400, response.text


TEMPLATES = [
    ("MODUS_PONENS", {"P": "human", "Q": "mortal"}, ["mortal(?x) :- human(?x)"]),
    (
        "MODUS_TOLLENS",
        {"P": "human", "Q": "mortal"},
        ["mortal(?x) :- human(?x)", "NOT human(?x) :- NOT mortal(?x)"],
    ),
    (
        "DISJUNCTIVE_SYLLOGISM",
        {"P": "tea", "Q": "coffee"},
        ["coffee(?x) :- NOT tea(?x)", "tea(?x) :- NOT coffee(?x)"],
    ),
    (
        "FACT_CHAIN",
        {"C": "c", "A": "a", "B": "b"},
        ["b(?x) :- a(?x)", "c(?x) :- b(?x)"],
    ),
    (
        "PRACTICAL_ARGUMENT",
        {"CONCLUSION": "ship", "EVIDENCE": "paid", "EXCEPTION": "fraud"},
        ["ship(?x) :- paid(?x), NAF fraud(?x)"],
    ),
    (
        "DESTRUCTIVE_DILEMMA",
        {"P": "p", "Q": "q", "R": "r", "S": "s"},
        ["NOT p(?x) :- NOT q(?x)", "NOT r(?x) :- NOT s(?x)"],
    ),
]


@pytest.mark.parametrize(("kind", "roles", "rules"), TEMPLATES)
def test_templates_teach_their_rules(
    server: Server, tenant: str, kind: str, roles: dict[str, str], rules: list[str]
) -> None:
    answer = ok(
        server.request(
            "POST",
            "/assert/template",
            tenant=tenant,
            json={"type": kind, "predicates": roles, "args": ["x"]},
        )
    )
    assert [r["text"] for r in answer["rules"]] == rules
    assert answer["message"].splitlines() == [f"Rule Asserted: {r}" for r in rules]
    assert answer["stored"] == len(rules)
    listed = server.request("GET", "/rules", tenant=tenant).json()["rules"]
    assert sorted(r["text"] for r in listed) == sorted(rules)  # taught in the same ms


def test_template_variables_and_errors(server: Server, tenant: str) -> None:
    answer = ok(
        server.request(
            "POST",
            "/assert/template",
            tenant=tenant,
            json={
                "type": "CAUSAL_ARGUMENT",
                "predicates": {"CAUSE": "rain", "EFFECT": "wet"},
                "args": ["?place", "day"],
                "scope": "weather",
            },
        )
    )
    assert answer["rules"][0]["text"] == "wet(?place, ?day) :- rain(?place, ?day)"
    assert answer["rules"][0]["scope"] == "weather"
    for body in (
        {"type": "MODUS_PONENS", "predicates": {"P": "human"}},  # Q is missing
        {"type": "FACT_CHAIN", "predicates": {"A": "a"}},  # a chain needs two
        {"type": "NO_SUCH", "predicates": {"P": "a", "Q": "b"}},
        {"type": "MODUS_PONENS", "predicates": {"P": "a", "Q": "b", "ZZ": "c"}},
        {"type": "MODUS_PONENS", "predicates": {"P": "a", "Q": ""}},
        {
            "type": "MODUS_PONENS",
            "predicates": {"P": "a", "Q": "b"},
            "args": ["bad var"],
        },
    ):
        response = server.request("POST", "/assert/template", tenant=tenant, json=body)
        assert response.status_code == 400, (body, response.text)
    assert server.request("GET", "/rules", tenant=tenant).json()["count"] == 1


def test_the_original_sdk_executes_scripts(server: Server, tenant: str) -> None:
    with SyncNocturnusAIClient(server.url, tenant_id=tenant, max_retries=0) as client:
        assert (
            client.execute("ASSERT parent(alice, bob);") == "Stored: parent(alice, bob)"
        )
        assert client.execute("INFER parent(?x, bob);") == (
            "Inferred 1 result(s):\n  parent(alice, bob)"
        )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_each_statement_needs_what_its_rest_twin_needs(
    auth_server: Server, tenant: str
) -> None:
    def key(role: str) -> str:
        made = auth_server.request(
            "POST", "/auth/keys", json={"role": role}, headers=bearer(ADMIN_KEY)
        )
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    reader, writer = key("reader"), key("writer")
    ok(execute(auth_server, tenant, "p(a).", headers=bearer(writer)))
    asked = ok(execute(auth_server, tenant, "?- p(?x).", headers=bearer(reader)))
    assert asked["statements"][0]["count"] == 1
    for command, permission in [
        ("q(a).", "fact_write"),
        ("?- p(?x).\nh(?x) :- p(?x).", "rule_write"),
        ("RESTRICT { p(?x) };", "rule_write"),
        ("RETRACT p(a);", "fact_write"),
    ]:
        refused = execute(auth_server, tenant, command, headers=bearer(reader))
        assert refused.status_code == 403, refused.text
        assert refused.json()["details"]["permission"] == permission
    assert execute(auth_server, tenant, "?- p(?x).").status_code == 401
    template = {"type": "MODUS_PONENS", "predicates": {"P": "p", "Q": "q"}}
    assert (
        auth_server.request(
            "POST",
            "/assert/template",
            tenant=tenant,
            json=template,
            headers=bearer(reader),
        ).status_code
        == 403
    )
    assert (
        auth_server.request(
            "POST",
            "/assert/template",
            tenant=tenant,
            json=template,
            headers=bearer(writer),
        ).status_code
        == 200
    )
    assert (
        auth_server.request(
            "GET", "/constraints", tenant=tenant, headers=bearer(reader)
        ).status_code
        == 200
    )
