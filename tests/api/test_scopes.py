"""Scopes over HTTP (API.md §4, the seed's "Scope Management" curls; issue 5)."""

from __future__ import annotations

import json
import shlex
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.server import Server


def tell(
    server: Server,
    tenant: str,
    predicate: str,
    *args: Any,
    database: str | None = None,
    **extra: Any,
) -> None:
    response = server.request(
        "POST",
        "/tell",
        tenant=tenant,
        database=database,
        json={"predicate": predicate, "args": list(args), **extra},
    )
    assert response.status_code == 200, response.text


def facts(
    server: Server,
    tenant: str,
    predicate: str,
    arity: int,
    scope: str | None,
    database: str | None = None,
) -> list[Any]:
    body = {
        "predicate": predicate,
        "args": [f"?v{i}" for i in range(arity)],
        "scope": scope,
    }
    found = server.request(
        "POST", "/query", tenant=tenant, database=database, json=body
    ).json()["results"]
    negated = server.request(
        "POST",
        "/query",
        tenant=tenant,
        database=database,
        json={**body, "negated": True},
    ).json()["results"]
    return sorted(
        ("NOT " if f["negated"] else "") + f"{f['scope']}:{f['args']}"
        for f in found + negated
    )


def new_database(server: Server) -> str:
    name = "scopes_" + uuid.uuid4().hex[:8]
    assert server.request("POST", "/databases", json={"name": name}).status_code == 201
    return name


def events(server: Server, database: str) -> int:
    listed = server.request("GET", "/databases").json()["databases"]
    return next(d["events"] for d in listed if d["name"] == database)


def test_the_seed_scope_curls_work_as_written(fresh_server: Server) -> None:
    server = fresh_server.start()
    server.request("POST", "/databases", json={"name": "production"})
    tell(server, "acme_corp", "plan", "enterprise", database="production")
    tell(server, "acme_corp", "seat", "alice", database="production")
    headers = {"X-Database": "production", "X-Tenant-ID": "acme_corp"}

    fork = server.request(
        "POST",
        "/scope/fork",
        headers=headers,
        json={"source": "main", "target": "hypothesis-1"},
    )
    assert fork.status_code == 200, fork.text
    assert fork.headers["content-type"].startswith("application/json")
    assert fork.json() == {
        "source": "main",
        "target": "hypothesis-1",
        "copied": 2,
        "rules": 0,
    }

    tell(
        server,
        "acme_corp",
        "plan",
        "enterprise",
        database="production",
        negated=True,
        scope="hypothesis-1",
        conflictStrategy="NEWEST_WINS",
    )
    tell(
        server,
        "acme_corp",
        "budget",
        "approved",
        database="production",
        scope="hypothesis-1",
    )

    diff = server.request(
        "POST",
        "/scope/diff",
        headers=headers,
        json={"source": "hypothesis-1", "target": "main"},
    )
    assert diff.status_code == 200, diff.text
    found = diff.json()
    assert [(a["predicate"], a["args"], a["scope"]) for a in found["onlyInSource"]] == [
        ("budget", ["approved"], "hypothesis-1")
    ]
    assert found["onlyInTarget"] == []
    assert [
        (c["source"]["negated"], c["target"]["negated"], c["target"]["scope"])
        for c in found["conflicts"]
    ] == [(True, False, "main")]
    assert found["same"] == 1

    merge = server.request(
        "POST",
        "/scope/merge",
        headers=headers,
        json={"source": "hypothesis-1", "target": "main", "strategy": "SOURCE_WINS"},
    )
    assert merge.status_code == 200, merge.text
    assert merge.json() == {
        "source": "hypothesis-1",
        "target": "main",
        "strategy": "SOURCE_WINS",
        "merged": 2,
        "conflicts": 1,
    }
    assert facts(server, "acme_corp", "plan", 1, "main", "production") == [
        "NOT main:['enterprise']"
    ]

    listed = server.request(
        "GET",
        "/scopes",
        headers={"X-Database": "production", "X-Tenant-ID": "acme_corp"},
    )
    assert listed.status_code == 200
    assert listed.json() == {
        "scopes": ["hypothesis-1", "main"],
        "details": [
            {"name": "hypothesis-1", "facts": 3, "rules": 0},
            {"name": "main", "facts": 3, "rules": 0},
        ],
        "count": 2,
    }


def test_fork_isolation_and_scoped_questions(server: Server, tenant: str) -> None:
    tell(server, tenant, "plan", "enterprise")
    tell(server, tenant, "seat", "alice")
    rule = {
        "head": {"predicate": "billable", "args": ["?x"]},
        "body": [{"predicate": "seat", "args": ["?x"]}],
    }
    assert server.request("POST", "/teach", tenant=tenant, json=rule).status_code == 200
    assert (
        server.request(
            "POST",
            "/scope/fork",
            tenant=tenant,
            json={"sourceScope": "main", "targetScope": "h"},
        ).status_code
        == 200
    )
    tell(server, tenant, "seat", "bob", scope="h")
    server.request(
        "POST",
        "/forget",
        tenant=tenant,
        json={"predicate": "plan", "args": ["enterprise"], "scope": "h"},
    )
    tell(server, tenant, "seat", "carol")
    assert facts(server, tenant, "seat", 1, "main") == [
        "main:['alice']",
        "main:['carol']",
    ]
    assert facts(server, tenant, "seat", 1, "h") == ["h:['alice']", "h:['bob']"]
    assert facts(server, tenant, "plan", 1, None) == ["main:['enterprise']"]

    def ask(scope: str | None) -> list[tuple[str, list[Any]]]:
        body = {"predicate": "billable", "args": ["?who"], "scope": scope}
        answer = server.request("POST", "/ask", tenant=tenant, json=body).json()
        return [(r["scope"], r["args"]) for r in answer["results"]]

    assert ask("h") == [("h", ["alice"]), ("h", ["bob"])]
    assert ask("main") == [("main", ["alice"]), ("main", ["carol"])]
    assert ask(None) == [
        ("h", ["alice"]),
        ("main", ["alice"]),
        ("h", ["bob"]),
        ("main", ["carol"]),
    ]


def test_inference_never_joins_across_scopes(server: Server, tenant: str) -> None:
    rule = {
        "head": {"predicate": "gp", "args": ["?x", "?z"]},
        "body": [
            {"predicate": "parent", "args": ["?x", "?y"]},
            {"predicate": "parent", "args": ["?y", "?z"]},
        ],
    }
    assert server.request("POST", "/teach", tenant=tenant, json=rule).status_code == 200
    tell(server, tenant, "parent", "a", "b", scope="left")
    tell(server, tenant, "parent", "b", "c", scope="right")
    for scope in (None, "left", "right"):
        answer = server.request(
            "POST",
            "/ask",
            tenant=tenant,
            json={"predicate": "gp", "args": ["?x", "?z"], "scope": scope},
        )
        assert answer.json()["results"] == []
    server.request(
        "POST",
        "/scope/merge",
        tenant=tenant,
        json={"source": "left", "target": "right"},
    )
    joined = server.request(
        "POST", "/ask", tenant=tenant, json={"predicate": "gp", "args": ["?x", "?z"]}
    ).json()
    assert [(r["scope"], r["args"]) for r in joined["results"]] == [
        ("right", ["a", "c"])
    ]


def conflicting(server: Server, tenant: str, database: str | None = None) -> None:
    """main: plan(a), plan(b), seat(m); h: plan(a), NOT plan(b), seat(h)."""
    tell(server, tenant, "plan", "a", database=database)
    tell(server, tenant, "plan", "b", database=database)
    server.request(
        "POST", "/scope/fork", tenant=tenant, database=database, json={"target": "h"}
    )
    tell(
        server,
        tenant,
        "plan",
        "b",
        database=database,
        scope="h",
        negated=True,
        conflictStrategy="NEWEST_WINS",
    )
    tell(server, tenant, "seat", "m", database=database)
    tell(server, tenant, "seat", "h", database=database, scope="h")


@pytest.mark.parametrize(
    ("strategy", "merged", "plans"),
    [
        (None, 2, ["NOT main:['b']", "main:['a']"]),
        ("SOURCE_WINS", 2, ["NOT main:['b']", "main:['a']"]),
        ("TARGET_WINS", 1, ["main:['a']", "main:['b']"]),
        ("KEEP_BOTH", 2, ["NOT main:['b']", "main:['a']", "main:['b']"]),
    ],
)
def test_merge_strategies(
    server: Server, tenant: str, strategy: str | None, merged: int, plans: list[str]
) -> None:
    conflicting(server, tenant)
    body = {"sourceScope": "h", "targetScope": "main", "strategy": strategy}
    answer = server.request("POST", "/scope/merge", tenant=tenant, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "source": "h",
        "target": "main",
        "strategy": strategy or "SOURCE_WINS",
        "merged": merged,
        "conflicts": 1,
    }
    assert facts(server, tenant, "plan", 1, "main") == plans
    assert facts(server, tenant, "seat", 1, "main") == ["main:['h']", "main:['m']"]
    assert facts(server, tenant, "plan", 1, "h") == ["NOT h:['b']", "h:['a']"]


def test_reject_merge_is_409_listing_conflicts_and_changes_nothing(
    server: Server,
) -> None:
    database = new_database(server)
    conflicting(server, "acme", database)
    before, count = (
        facts(server, "acme", "seat", 1, "main", database),
        events(server, database),
    )
    rejected = server.request(
        "POST",
        "/scope/merge",
        tenant="acme",
        database=database,
        json={"source": "h", "target": "main", "strategy": "REJECT"},
    )
    assert rejected.status_code == 409
    body = rejected.json()
    assert body["code"] == "CONFLICT"
    assert [
        (c["source"]["args"], c["source"]["negated"], c["target"]["negated"])
        for c in body["details"]["conflicts"]
    ] == [(["b"], True, False)]
    assert facts(server, "acme", "seat", 1, "main", database) == before
    assert events(server, database) == count


def test_each_operation_logs_one_event(server: Server) -> None:
    database = new_database(server)
    for i in range(20):
        tell(server, "acme", "seat", f"s{i}", database=database)
    operations = [
        ("POST", "/scope/fork", {"source": "main", "target": "h"}),
        ("POST", "/scope/diff", {"scopeA": "h", "scopeB": "main"}),
        ("POST", "/scope/merge", {"source": "h", "target": "other"}),
        ("GET", "/scopes", None),
        ("DELETE", "/scope/h", None),
    ]
    for method, path, body in operations:
        before = events(server, database)
        response = server.request(
            method, path, tenant="acme", database=database, json=body
        )
        assert response.status_code == 200, response.text
        assert events(server, database) - before == (
            0 if method == "GET" or path == "/scope/diff" else 1
        ), path
    assert server.request(
        "DELETE", "/scope/h", tenant="acme", database=database
    ).json() == {
        "deleted": 0,
        "scope": "h",
        "rules": 0,
    }
    listed = server.request("GET", "/scopes", tenant="acme", database=database).json()
    assert listed == {
        "scopes": ["main", "other"],
        "details": [
            {"name": "main", "facts": 20, "rules": 0},
            {"name": "other", "facts": 20, "rules": 0},
        ],
        "count": 2,
    }


def test_fork_into_a_non_empty_scope_is_a_conflict(server: Server, tenant: str) -> None:
    tell(server, tenant, "seat", "a")
    tell(server, tenant, "seat", "b", scope="taken")
    answer = server.request(
        "POST", "/scope/fork", tenant=tenant, json={"source": "main", "target": "taken"}
    )
    assert answer.status_code == 409 and answer.json()["code"] == "CONFLICT"
    assert answer.json()["details"] == {"scope": "taken", "facts": 1, "rules": 0}
    server.request("DELETE", "/scope/taken", tenant=tenant)
    assert (
        server.request(
            "POST",
            "/scope/fork",
            tenant=tenant,
            json={"source": "main", "target": "taken"},
        ).status_code
        == 200
    )


BAD_REQUESTS = [
    ("POST", "/scope/fork", {"source": "main"}, "target"),
    ("POST", "/scope/fork", {"target": "bad scope"}, "target"),
    ("POST", "/scope/fork", {"target": ""}, "target"),
    ("POST", "/scope/fork", {"target": "x" * 129}, "target"),
    ("POST", "/scope/fork", {"target": "main"}, "target"),
    ("POST", "/scope/fork", {"target": "h", "bogus": 1}, "bogus"),
    ("POST", "/scope/fork", {"target": "h", "targetScope": "g"}, "targetScope"),
    ("POST", "/scope/fork", {"target": 5}, "target"),
    ("POST", "/scope/diff", {"target": "main"}, "source"),
    ("POST", "/scope/diff", {"scopeA": "a/b"}, "scopeA"),
    ("POST", "/scope/merge", {"target": "main"}, "source"),
    ("POST", "/scope/merge", {"source": "h", "strategy": "NEWEST"}, "strategy"),
    ("POST", "/scope/merge", {"source": "main"}, "target"),
    ("DELETE", "/scope/bad%20name", None, "scope"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_REQUESTS)
def test_bad_scope_requests_are_400_naming_the_field(
    server: Server, tenant: str, method: str, path: str, body: Any, field: str
) -> None:
    answer = server.request(method, path, tenant=tenant, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "VALIDATION_ERROR"
    assert answer.json()["details"]["field"] == field


def test_scope_routes_need_a_tenant(server: Server) -> None:
    for method, path, body in (
        ("GET", "/scopes", None),
        ("POST", "/scope/fork", {"target": "h"}),
        ("DELETE", "/scope/h", None),
    ):
        answer = server.request(method, path, json=body)
        assert (
            answer.status_code == 400
            and answer.json()["details"]["field"] == "X-Tenant-ID"
        )


READS = [
    ("GET", "/scopes", None),
    ("GET", "/rules", None),
    ("POST", "/ask", {"predicate": "gp", "args": ["?x", "?z"]}),
    (
        "POST",
        "/ask",
        {"predicate": "gp", "args": ["?x", "?z"], "scope": "h2", "withProof": True},
    ),
    ("POST", "/query", {"predicate": "parent", "args": ["?x", "?y"]}),
    ("POST", "/scope/diff", {"source": "h2", "target": "main"}),
    ("POST", "/scope/diff", {"source": "h1", "target": "h2"}),
    ("GET", "/predicates?scope=h1", None),
]


def test_restart_gives_identical_scope_answers(fresh_server: Server) -> None:
    server = fresh_server.start()
    rule = {
        "head": {"predicate": "gp", "args": ["?x", "?z"]},
        "body": [
            {"predicate": "parent", "args": ["?x", "?y"]},
            {"predicate": "parent", "args": ["?y", "?z"]},
        ],
        "scope": "main",
    }
    assert server.request("POST", "/teach", tenant="acme", json=rule).status_code == 200
    for a, b in [("a", "b"), ("b", "c"), ("c", "d")]:
        tell(server, "acme", "parent", a, b, confidence=0.8)
    steps = [
        ("POST", "/scope/fork", {"source": "main", "target": "h1"}),
        ("POST", "/forget", {"predicate": "parent", "args": ["b", "c"], "scope": "h1"}),
        ("POST", "/scope/fork", {"source": "h1", "target": "h2"}),
        ("POST", "/tell", {"predicate": "parent", "args": ["b", "x"], "scope": "h2"}),
        (
            "POST",
            "/scope/merge",
            {"source": "h2", "target": "main", "strategy": "KEEP_BOTH"},
        ),
        ("DELETE", "/scope/h1", None),
        ("POST", "/scope/fork", {"source": "main", "target": "h1"}),
    ]
    for method, path, body in steps:
        assert server.request(method, path, tenant="acme", json=body).status_code == 200

    def read_all() -> list[bytes]:
        seen = []
        for method, path, body in READS:
            answer = server.request(method, path, tenant="acme", json=body)
            assert answer.status_code == 200, answer.text
            seen.append(answer.content)
        return seen

    before = read_all()
    assert fresh_server.stop(signal.SIGTERM) == 0
    fresh_server.start()
    assert read_all() == before


def test_sdk_scope_methods(server: Server, tenant: str) -> None:
    nocturnusai = pytest.importorskip("nocturnusai")
    client = nocturnusai.SyncNocturnusAIClient(server.url, tenant_id=tenant)
    try:
        client.tell("plan", ["enterprise"])
        assert client.fork_scope("main", "hyp")["copied"] == 1
        client.tell("plan", ["pro"], scope="hyp")
        diff = client.diff_scope("hyp", "main")
        assert [a["args"] for a in diff["onlyInSource"]] == [["pro"]] and diff[
            "same"
        ] == 1
        assert client.merge_scope("hyp", "main", "KEEP_BOTH")["merged"] == 1
        assert client.list_scopes() == ["hyp", "main"]  # names, as the SDK types them
        assert client.delete_scope("hyp") == {"deleted": 2, "scope": "hyp", "rules": 0}
    finally:
        client.close()


def readme_scope_example() -> list[tuple[list[str], str]]:
    """The README's Scopes example: each curl's argv and the comment lines after it."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text[text.index("## Scopes") :]
    block = section[section.index("```bash") + len("```bash") :]
    block = block[: block.index("```")]
    headers = "-H Content-Type:application/json -H X-Tenant-ID:acme_corp"
    steps: list[tuple[list[str], str]] = []
    command, comment = "", ""
    for line in block.strip().splitlines():
        if line.startswith("H="):
            continue
        if line.startswith("curl"):
            if command:
                steps.append(
                    (
                        shlex.split(command.replace("$H", headers), comments=True),
                        comment,
                    )
                )
            command, comment = line, ""
        elif line.startswith("#"):
            comment += line[1:].strip()
        else:
            command += "\n" + line
    steps.append((shlex.split(command.replace("$H", headers), comments=True), comment))
    return steps


def test_the_readme_scope_example_runs(fresh_server: Server) -> None:
    server = fresh_server.start()
    steps = readme_scope_example()
    assert len(steps) == 11
    for argv, comment in steps:
        method, headers, body, url = "GET", {}, None, ""
        args = iter(argv[1:])
        for arg in args:
            if arg == "-X":
                method = next(args)
            elif arg == "-H":
                name, value = next(args).split(":", 1)
                headers[name] = value
            elif arg == "-d":
                body = json.loads(next(args))
            else:
                url = arg
        path = url[url.index("/") :]
        answer = server.request(method, path, json=body, headers=headers)
        assert answer.status_code == 200, (argv, answer.text)
        try:
            shown = json.loads(comment) if comment else None
        except json.JSONDecodeError:
            shown = None  # an abbreviated answer
        if shown is not None:
            assert answer.json() == shown, argv
    ask = server.request(
        "POST",
        "/ask",
        headers={"X-Tenant-ID": "acme_corp"},
        json={"predicate": "can_ship", "args": ["?o"], "scope": "main"},
    ).json()
    assert ask["bindings"] == [
        {"o": "order7"}
    ]  # the merge carried the approval into main


def window(server: Server, tenant: str, scope: str) -> dict[tuple[Any, ...], float]:
    body = {"scope": scope, "maxFacts": 50}
    answer = server.request("POST", "/context/optimize", tenant=tenant, json=body)
    assert answer.status_code == 200, answer.text
    return {(e["scope"], *e["args"]): e["salience"] for e in answer.json()["entries"]}


def test_context_windows_follow_forks_and_deletes(server: Server, tenant: str) -> None:
    # forks and deletes replace a whole scope without a journal entry per fact: the
    # context ranking (issue 6) must rebuild rather than patch, and priorities follow
    for n in (1, 2):
        tell(server, tenant, "p", n)
    priority = {"predicate": "p", "args": [1], "priority": 1.0}
    assert (
        server.request(
            "POST", "/memory/priority", tenant=tenant, json=priority
        ).status_code
        == 200
    )
    assert set(window(server, tenant, "main")) == {("main", 1), ("main", 2)}
    server.request("POST", "/scope/fork", tenant=tenant, json={"target": "h"})
    forked = window(server, tenant, "h")
    assert set(forked) == {("h", 1), ("h", 2)} and forked[("h", 1)] == 1.0
    tell(server, tenant, "p", 3)
    tell(server, tenant, "p", 9, scope="h")
    assert set(window(server, tenant, "h")) == {("h", 1), ("h", 2), ("h", 9)}
    server.request("DELETE", "/scope/h", tenant=tenant)
    assert window(server, tenant, "h") == {}
    server.request("POST", "/scope/fork", tenant=tenant, json={"target": "h"})
    assert set(window(server, tenant, "h")) == {("h", 1), ("h", 2), ("h", 3)}
    server.request("DELETE", "/scope/h", tenant=tenant)
    tell(server, tenant, "p", 1, scope="h")
    assert (
        window(server, tenant, "h")[("h", 1)] < 1.0
    )  # the deleted fact's priority is gone


def test_recall_sees_scope_history(server: Server, tenant: str) -> None:
    # /memory/recall (issue 6) folds the log through the same apply: scope events count
    def at(predicate: str, arg: Any, **extra: Any) -> int:
        body = {"predicate": predicate, "args": [arg], **extra}
        told = server.request("POST", "/tell", tenant=tenant, json=body)
        time.sleep(0.005)  # the next event lands in a later millisecond
        return int(told.json()["fact"]["createdAt"])

    def recall(moment: int, scope: str) -> list[Any]:
        body = {"predicate": "p", "args": ["?x"], "timestamp": moment, "scope": scope}
        answer = server.request("POST", "/memory/recall", tenant=tenant, json=body)
        assert answer.status_code == 200, answer.text
        return sorted(a["args"][0] for a in answer.json())

    before_fork = at("p", 1)
    server.request("POST", "/scope/fork", tenant=tenant, json={"target": "h"})
    forked = at("p", 2, scope="h")
    server.request("DELETE", "/scope/h", tenant=tenant)
    time.sleep(0.005)
    after_delete = at("q", 0)
    assert recall(before_fork, "h") == []
    assert recall(forked, "h") == [1, 2]
    assert recall(after_delete, "h") == []
    assert recall(after_delete, "main") == [1]
