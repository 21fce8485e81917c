"""Randomised operations across databases and tenants never leak between them."""

from __future__ import annotations

import random

from tests.server import Server


def test_random_operations_stay_isolated(server: Server) -> None:
    rng = random.Random(20261128)
    databases = ["iso_a", "iso_b"]
    tenants = ["alpha", "beta", "gamma"]
    for name in databases:
        server.request("POST", "/databases", json={"name": name})
    expected: dict[tuple[str, str], set[tuple[str, str]]] = {(d, t): set() for d in databases for t in tenants}
    for _ in range(300):
        database, tenant = rng.choice(databases), rng.choice(tenants)
        fact = (rng.choice("abcdef"), rng.choice("uvwxyz"))
        if rng.random() < 0.7:
            response = server.request("POST", "/tell", database=database, tenant=tenant,
                                      json={"predicate": "rel", "args": list(fact)})
            expected[(database, tenant)].add(fact)
        else:
            response = server.request("POST", "/forget", database=database, tenant=tenant,
                                      json={"predicate": "rel", "args": list(fact)})
            expected[(database, tenant)].discard(fact)
        assert response.status_code == 200, response.text
    for (database, tenant), facts in expected.items():
        answer = server.request("POST", "/ask", database=database, tenant=tenant,
                                json={"predicate": "rel", "args": ["?x", "?y"]}).json()
        assert {tuple(r["args"]) for r in answer["results"]} == facts
