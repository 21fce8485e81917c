"""A restart on the same data dir answers every read route identically; SIGTERM exits 0."""

from __future__ import annotations

import signal

from tests.server import Server

READS = [
    ("POST", "/ask", {"predicate": "anc", "args": ["?x", "?y"]}),
    ("POST", "/ask", {"predicate": "anc", "args": ["a", "?y"], "withProof": True}),
    ("POST", "/infer", {"predicate": "anc", "args": ["?x", "d"]}),
    ("POST", "/query", {"predicate": "parent", "args": ["?x", "?y"]}),
    ("POST", "/ask", {"predicate": "status", "args": ["?x"], "negated": True}),
    ("GET", "/predicates", None),
    ("GET", "/rules", None),
    ("POST", "/aggregate", {"predicate": "parent", "args": ["?x", "?y"], "operation": "COUNT"}),
]


def populate(server: Server) -> None:
    for a, b in [("a", "b"), ("b", "c"), ("c", "d"), ("x", "y")]:
        server.request("POST", "/tell", tenant="acme", json={"predicate": "parent", "args": [a, b]})
    server.request("POST", "/tell", tenant="acme", json={"predicate": "status", "args": ["z"], "negated": True})
    server.request("POST", "/tell", tenant="acme", json={"predicate": "parent", "args": ["gone", "soon"]})
    server.request("POST", "/forget", tenant="acme", json={"predicate": "parent", "args": ["gone", "soon"]})
    for body in (
        {"head": {"predicate": "anc", "args": ["?x", "?y"]}, "body": [{"predicate": "parent", "args": ["?x", "?y"]}]},
        {"head": {"predicate": "anc", "args": ["?x", "?z"]},
         "body": [{"predicate": "parent", "args": ["?x", "?y"]}, {"predicate": "anc", "args": ["?y", "?z"]}]},
    ):
        assert server.request("POST", "/teach", tenant="acme", json=body).status_code == 200
    server.request("POST", "/databases", json={"name": "other"})
    server.request("POST", "/tell", tenant="acme", database="other", json={"predicate": "parent", "args": ["o", "p"]})


def snapshot(server: Server) -> list[bytes]:
    seen = []
    for method, path, body in READS:
        for database in ("default", "other"):
            response = server.request(method, path, tenant="acme", database=database, json=body)
            assert response.status_code == 200, response.text
            seen.append(response.content)
    seen.append(server.request("GET", "/admin/databases/default/tenants").content)
    return seen


def test_restart_gives_identical_answers(fresh_server: Server) -> None:
    fresh_server.start()
    populate(fresh_server)
    before = snapshot(fresh_server)
    assert fresh_server.stop(signal.SIGTERM) == 0
    fresh_server.start()
    assert snapshot(fresh_server) == before
    assert fresh_server.stop(signal.SIGINT) == 0


def test_startup_prints_one_line_with_url_and_data_dir(fresh_server: Server) -> None:
    fresh_server.start()
    fresh_server.stop()
    lines = [l for l in fresh_server.output().splitlines() if "Nocturnus listening" in l]
    assert lines and fresh_server.url in lines[0] and str(fresh_server.data_dir.resolve()) in lines[0]
