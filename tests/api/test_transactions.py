"""Transactions on a real server (issue 18): buffered writes, one event at commit, no trace
otherwise, and ``X-Transaction-ID`` never silently ignored."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.api.jsonrpc import HttpMcp
from tests.conftest import ADMIN_KEY
from tests.server import Server

TX = "X-Transaction-ID"


def call(server: Server, method: str, path: str, tenant: str, body: Any = None,
         tx: str | None = None, status: int = 200, **headers: str) -> Any:
    if tx is not None:
        headers[TX] = tx
    response = server.request(method, path, tenant=tenant, json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def begin(server: Server, tenant: str, **headers: str) -> str:
    answer = call(server, "POST", "/tx/begin", tenant, **headers)
    assert answer["tenant"] == tenant and answer["timeoutMs"] > 0
    return str(answer["transactionId"])


def facts(server: Server, tenant: str, predicate: str, arity: int = 1, tx: str | None = None,
          scope: str | None = None) -> list[list[Any]]:
    body: dict[str, Any] = {"predicate": predicate, "args": [f"?a{i}" for i in range(arity)]}
    if scope is not None:
        body["scope"] = scope
    answer = call(server, "POST", "/ask", tenant, body, tx=tx)
    return sorted(r["args"] for r in answer["results"])


def generation(server: Server, tenant: str) -> int:
    """The tenant's log position (the context summary reports it)."""
    return int(call(server, "POST", "/context/summary", tenant, {})["knowledgeGeneration"])


def test_writes_wait_for_the_commit_and_reads_in_it_see_them(server: Server, tenant: str) -> None:
    call(server, "POST", "/tell", tenant, {"predicate": "parent", "args": ["a", "b"]})
    tx = begin(server, tenant)
    told = call(server, "POST", "/tell", tenant, {"predicate": "parent", "args": ["b", "c"]}, tx=tx)
    assert told["buffered"] is True and told["transactionId"] == tx and told["stored"] is True
    taught = call(server, "POST", "/teach", tenant, {
        "head": {"predicate": "gp", "args": ["?x", "?z"]},
        "body": [{"predicate": "parent", "args": ["?x", "?y"]},
                 {"predicate": "parent", "args": ["?y", "?z"]}]}, tx=tx)
    assert taught["buffered"] is True
    # inside: its own writes; outside: nothing yet
    assert facts(server, tenant, "gp", 2, tx=tx) == [["a", "c"]]
    inside = server.request("POST", "/ask", tenant=tenant, headers={TX: tx},
                            json={"predicate": "parent", "args": ["?x", "?y"]})
    assert inside.headers[TX] == tx  # a read in the transaction says so
    assert sorted(r["args"] for r in inside.json()["results"]) == [["a", "b"], ["b", "c"]]
    context = call(server, "POST", "/context/summary", tenant, {}, tx=tx)
    assert context["transactionId"] == tx and context["buffered"] is False
    assert facts(server, tenant, "parent", 2) == [["a", "b"]]
    assert facts(server, tenant, "gp", 2) == []
    before = generation(server, tenant)

    done = call(server, "POST", f"/tx/commit/{tx}", tenant)
    assert (done["committed"], done["steps"], done["events"]) == (True, 2, 2)
    assert done["seq"] > before and generation(server, tenant) == done["seq"]  # one event
    assert done["results"][1]["rule"]["text"] == "gp(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)"
    assert facts(server, tenant, "gp", 2) == [["a", "c"]]
    call(server, "POST", f"/tx/commit/{tx}", tenant, status=404)  # it ended


def test_rollback_leaves_no_trace(server: Server, tenant: str) -> None:
    call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["kept"]})
    before = generation(server, tenant)
    tx = begin(server, tenant)
    call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["dropped"]}, tx=tx)
    call(server, "POST", "/forget", tenant, {"predicate": "p", "args": ["kept"]}, tx=tx)
    assert facts(server, tenant, "p", tx=tx) == [["dropped"]]
    rolled = call(server, "POST", f"/tx/rollback/{tx}", tenant)
    assert rolled == {"transactionId": tx, "rolledBack": True, "steps": 2,
                      "message": f"Rolled back {tx}"}
    assert facts(server, tenant, "p") == [["kept"]]
    assert generation(server, tenant) == before


def test_an_unknown_or_ended_id_is_a_404_never_an_immediate_write(server: Server, tenant: str) -> None:
    for tx in ("tx_nope", "12", "x" * 200):
        answer = call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["a"]},
                      tx=tx, status=404)
        assert answer["code"] == "NOT_FOUND"
    call(server, "POST", "/tx/rollback/tx_nope", tenant, status=404)
    call(server, "POST", "/tx/commit/tx_%1F", tenant, status=404)  # no valid store key
    assert facts(server, tenant, "p") == []


def test_a_commit_is_decided_against_the_state_at_commit(server: Server, tenant: str) -> None:
    tx = begin(server, tenant)
    call(server, "POST", "/tell", tenant, {"predicate": "alive", "args": ["rex"]}, tx=tx)
    call(server, "POST", "/tell", tenant, {"predicate": "seen", "args": ["rex"]}, tx=tx)
    # meanwhile, outside: the opposite of the first write
    call(server, "POST", "/tell", tenant, {"predicate": "alive", "args": ["rex"], "negated": True})
    before = generation(server, tenant)
    # the view is rebuilt on the new state: the transaction no longer applies
    stale = call(server, "POST", "/ask", tenant, {"predicate": "seen", "args": ["?x"]}, tx=tx,
                 status=409)
    assert stale["details"]["step"] == 0 and stale["details"]["code"] == "CONFLICT"
    failed = call(server, "POST", f"/tx/commit/{tx}", tenant, status=409)
    assert failed["code"] == "CONFLICT" and failed["details"]["route"] == "POST /tell"
    assert facts(server, tenant, "seen") == [] and generation(server, tenant) == before
    call(server, "POST", f"/tx/commit/{tx}", tenant, status=404)  # a failed commit ends it


def test_a_write_refused_in_a_transaction_is_not_kept(server: Server, tenant: str) -> None:
    tx = begin(server, tenant)
    call(server, "POST", "/tell", tenant, {"predicate": "alive", "args": ["rex"]}, tx=tx)
    call(server, "POST", "/tell", tenant, {"predicate": "alive", "args": ["rex"], "negated": True},
         tx=tx, status=409)
    call(server, "POST", "/tell", tenant, {"predicate": "", "args": []}, tx=tx, status=400)
    done = call(server, "POST", f"/tx/commit/{tx}", tenant)
    assert done["steps"] == 1 and facts(server, tenant, "alive") == [["rex"]]


def test_a_transaction_belongs_to_its_database_and_tenant(server: Server, tenant: str) -> None:
    tx = begin(server, tenant)
    other = call(server, "POST", "/tell", tenant + "_x", {"predicate": "p", "args": ["a"]}, tx=tx,
                 status=400)
    assert other["details"]["field"] == TX
    call(server, "POST", f"/tx/commit/{tx}", tenant + "_x", status=400)
    call(server, "POST", f"/tx/rollback/{tx}", tenant)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/admin/databases", {"name": "tx_refused"}),
    ("GET", "/admin/databases", None),
    ("GET", "/memory/events", None),
])
def test_routes_outside_transactions_refuse_the_header(server: Server, tenant: str, method: str,
                                                       path: str, body: Any) -> None:
    tx = begin(server, tenant)
    answer = call(server, method, path, tenant, body, tx=tx, status=400)
    assert answer["details"]["field"] == TX
    assert "tx_refused" not in str(call(server, "GET", "/admin/databases", tenant))
    call(server, "POST", f"/tx/rollback/{tx}", tenant)


@dataclass
class Write:
    """A write route, what to set up first, and how to see its effect."""

    method: str
    path: str
    body: Any
    setup: list[tuple[str, str, Any]] = field(default_factory=list)
    check: tuple[str, int, str | None] = ("p", 1, None)  # predicate, arity, scope


SEED = [("POST", "/assert/facts", {"facts": [{"predicate": "p", "args": ["a"]},
                                              {"predicate": "p", "args": ["b"]}]})]
WRITES = {
    "tell": Write("POST", "/tell", {"predicate": "p", "args": ["new"]}),
    "assert_fact": Write("POST", "/assert/fact", {"predicate": "p", "args": ["new"]}),
    "assert_facts": Write("POST", "/assert/facts", {"facts": [{"predicate": "p", "args": ["n1"]}]}),
    "forget": Write("POST", "/forget", {"predicate": "p", "args": ["a"]}, SEED),
    "retract": Write("POST", "/retract", {"predicate": "p", "args": ["a"]}, SEED),
    "retract_pattern": Write("POST", "/retract/pattern", {"predicate": "p", "args": ["?x"]}, SEED),
    "teach": Write("POST", "/teach", {"head": {"predicate": "q", "args": ["?x"]},
                                      "body": [{"predicate": "p", "args": ["?x"]}]}, SEED,
                   ("q", 1, None)),
    "assert_rule": Write("POST", "/assert/rule", {"head": {"predicate": "q", "args": ["?x"]},
                                                  "body": [{"predicate": "p", "args": ["?x"]}]},
                         SEED, ("q", 1, None)),
    "fork": Write("POST", "/scope/fork", {"target": "h"}, SEED, ("p", 1, "h")),
    "merge": Write("POST", "/scope/merge", {"source": "h"},
                   [("POST", "/tell", {"predicate": "p", "args": ["z"], "scope": "h"})]),
    "delete_scope": Write("DELETE", "/scope/main", None, SEED),
    "consolidate": Write("POST", "/memory/consolidate", {"minCount": 2},
                         SEED + [("POST", "/tell", {"predicate": "p", "args": ["a", "x"]}),
                                 ("POST", "/tell", {"predicate": "p", "args": ["a", "y"]})],
                         ("p_consolidated", 2, None)),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_every_write_route_honours_the_transaction(server: Server, tenant: str, name: str) -> None:
    write = WRITES[name]
    for method, path, body in write.setup:
        call(server, method, path, tenant, body)
    predicate, arity, scope = write.check
    before = facts(server, tenant, predicate, arity, scope=scope)
    tx = begin(server, tenant)
    answer = call(server, write.method, write.path, tenant, write.body, tx=tx)
    assert answer["buffered"] is True, answer
    inside = facts(server, tenant, predicate, arity, tx=tx, scope=scope)
    assert inside != before
    assert facts(server, tenant, predicate, arity, scope=scope) == before
    call(server, "POST", f"/tx/commit/{tx}", tenant)
    assert facts(server, tenant, predicate, arity, scope=scope) == inside


def test_rule_removal_and_priority_in_a_transaction(server: Server, tenant: str) -> None:
    call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["a"]})
    rule = call(server, "POST", "/teach", tenant, {"head": {"predicate": "q", "args": ["?x"]},
                                                   "body": [{"predicate": "p", "args": ["?x"]}]})
    tx = begin(server, tenant)
    call(server, "DELETE", f"/rules/{rule['rule']['id']}", tenant, tx=tx)
    prio = call(server, "POST", "/memory/priority", tenant,
                {"predicate": "p", "args": ["a"], "priority": 0.9}, tx=tx)
    assert prio["buffered"] is True
    assert facts(server, tenant, "q", tx=tx) == [] and facts(server, tenant, "q") == [["a"]]
    call(server, "POST", f"/tx/commit/{tx}", tenant)
    assert facts(server, tenant, "q") == []
    ranked = call(server, "POST", "/memory/query/salient", tenant, {"predicate": "p", "args": ["?x"]})
    assert ranked[0]["salience"] > 0.9


def test_mcp_tools_honour_the_transaction(server: Server, tenant: str) -> None:
    tx = begin(server, tenant)
    client = HttpMcp(server, {"X-Tenant-ID": tenant, TX: tx})
    client.initialize()
    told = client.call("tell", {"predicate": "p", "args": ["via_mcp"]})
    assert told["structuredContent"]["buffered"] is True
    assert facts(server, tenant, "p") == []
    call(server, "POST", f"/tx/commit/{tx}", tenant)
    assert facts(server, tenant, "p") == [["via_mcp"]]
    ended = client.call("tell", {"predicate": "p", "args": ["late"]})
    assert ended["isError"] is True and ended["structuredContent"]["code"] == "NOT_FOUND"


def test_a_transaction_is_bound_to_the_key_that_began_it(auth_server: Server, tenant: str) -> None:
    def key(role: str) -> str:
        made = auth_server.request("POST", "/auth/keys", json={"role": role, "name": role},
                                   headers={"X-API-Key": ADMIN_KEY})
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    writer, other, reader = key("writer"), key("writer"), key("reader")
    tx = begin(auth_server, tenant, **{"X-API-Key": writer})
    body = {"predicate": "p", "args": ["a"]}
    call(auth_server, "POST", "/tell", tenant, body, tx=tx, status=403, **{"X-API-Key": other})
    call(auth_server, "POST", f"/tx/commit/{tx}", tenant, status=403, **{"X-API-Key": other})
    call(auth_server, "POST", "/tx/begin", tenant, status=403, **{"X-API-Key": reader})
    call(auth_server, "POST", "/tell", tenant, body, tx=tx, **{"X-API-Key": writer})
    done = call(auth_server, "POST", f"/tx/commit/{tx}", tenant, **{"X-API-Key": writer})
    assert done["events"] == 1


def test_limits_and_timeout(tmp_path: Path, tenant: str) -> None:
    env = {"NOCTURNUS_TRANSACTION_TIMEOUT_MS": "1500", "NOCTURNUS_TRANSACTIONS_PER_KEY": "2",
           "NOCTURNUS_TRANSACTION_STEPS": "2"}
    server = Server(tmp_path / "data", env=env).start()
    try:
        first, _second = begin(server, tenant), begin(server, tenant)
        limited = call(server, "POST", "/tx/begin", tenant, status=429)
        assert limited["details"]["limit"] == 2
        for arg in ("a", "b"):
            call(server, "POST", "/tell", tenant, {"predicate": "p", "args": [arg]}, tx=first)
        call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["c"]}, tx=first,
             status=413)
        assert facts(server, tenant, "p", tx=first) == [["a"], ["b"]]
        committed = call(server, "POST", f"/tx/commit/{first}", tenant)
        assert committed["steps"] == 2
        timed = begin(server, tenant)  # beside second, still open
        call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["t"]}, tx=timed)
        time.sleep(1.6)
        call(server, "POST", f"/tx/commit/{timed}", tenant, status=404)
        assert facts(server, tenant, "p") == [["a"], ["b"]]
    finally:
        server.stop()


def test_a_restart_keeps_open_transactions(tmp_path: Path, tenant: str) -> None:
    """Open transactions are in the shared store, not in the process (issue 16)."""
    server = Server(tmp_path / "data").start()
    try:
        call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["a"]})
        tx = begin(server, tenant)
        call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["z"]}, tx=tx)
        server.stop()
        server.start()
        assert facts(server, tenant, "p", tx=tx) == [["a"], ["z"]]
        call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["y"]}, tx=tx)
        assert call(server, "POST", f"/tx/commit/{tx}", tenant)["steps"] == 2
        assert facts(server, tenant, "p") == [["a"], ["y"], ["z"]]
    finally:
        server.stop()


def test_reads_in_a_transaction_leave_the_tenants_sessions_alone(server: Server, tenant: str) -> None:
    # the view has read models of its own: a context session of the live tenant survives
    call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["a"]})
    first = call(server, "POST", "/context/optimize", tenant, {"sessionId": "s1"})
    tx = begin(server, tenant)
    call(server, "POST", "/tell", tenant, {"predicate": "p", "args": ["b"]}, tx=tx)
    inside = call(server, "POST", "/context/optimize", tenant, {"sessionId": "s1"}, tx=tx)
    assert len(inside["entries"]) == 2
    assert facts(server, tenant, "p", tx=tx) == [["a"], ["b"]]
    diff = call(server, "POST", "/context/diff", tenant, {"sessionId": "s1"})
    assert diff["previousWindowId"] == first["windowId"] and diff["added"] == []
    call(server, "POST", f"/tx/rollback/{tx}", tenant)


def test_scripts_and_constraints_take_part_in_transactions(server: Server, tenant: str) -> None:
    """The text syntax (dsl's /execute) runs inside a transaction through the same hook, and
    a RESTRICT constraint refuses a buffered write at once, as it would refuse the commit."""
    script = "employee(ann).\nRESTRICT ?x { employee(?x) AND contractor(?x) } -> CONTRADICTION;"
    tx = begin(server, tenant)
    ran = call(server, "POST", "/execute", tenant, {"command": script}, tx=tx)
    assert ran["buffered"] is True and ran["count"] == 2
    assert facts(server, tenant, "employee") == [] and facts(server, tenant, "employee", tx=tx) == [
        ["ann"]]
    refused = call(server, "POST", "/tell", tenant, {"predicate": "contractor", "args": ["ann"]},
                   tx=tx, status=409)
    assert refused["code"] == "CONFLICT"
    call(server, "POST", "/execute", tenant, {"command": "contractor(bob)."}, tx=tx)
    done = call(server, "POST", f"/tx/commit/{tx}", tenant)
    assert done["steps"] == 2
    assert facts(server, tenant, "contractor") == [["bob"]]
    # committed: the constraint holds outside too, and a later transaction cannot break it
    call(server, "POST", "/tell", tenant, {"predicate": "contractor", "args": ["ann"]}, status=409)
    later = begin(server, tenant)
    call(server, "POST", "/tell", tenant, {"predicate": "employee", "args": ["bob"]}, tx=later,
         status=409)
    call(server, "POST", f"/tx/rollback/{later}", tenant)
