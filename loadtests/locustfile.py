"""Agent workloads for locust against a Nocturnus server (issue 9).

Three kinds of agent, many tenants (each agent works in its own tenant of one database):

- ``IngestAgent`` — tell-heavy ingestion: single tells with metadata and confidence,
  some bulk appends, an occasional question. Exercises group commit and fsync.
- ``ReasoningAgent`` — ask-heavy reasoning: a family tree per tenant with recursive
  ``ancestor`` rules (left- and right-recursive), ``grandparent`` and a NAF rule;
  bound and open questions, aggregates, predicates.
- ``ContextAgent`` — context optimize/diff loops with a session per agent, a new fact
  between calls. Stops at once (and is reported as skipped) while the server has no
  ``/context/optimize`` route.

Run it through ``loadtests/run.py`` (starts a server, bounds the time, writes a report),
or by hand: ``locust -f loadtests/locustfile.py --host http://127.0.0.1:9300``.
Settings: ``LOAD_DATABASE`` (default ``load``), ``LOAD_TENANTS`` (size of the tenant pool
of ingest agents, default 500), ``LOAD_TREE`` (people per reasoning tenant, default 120).
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from typing import Any

import requests
from locust import HttpUser, between, events, task
from locust.exception import StopUser

DATABASE = os.environ.get("LOAD_DATABASE", "load")
TENANT_POOL = int(os.environ.get("LOAD_TENANTS", "500"))
TREE_SIZE = int(os.environ.get("LOAD_TREE", "120"))
REASONING_TENANTS = 16
_serial = itertools.count()


@events.test_start.add_listener
def create_database(environment: Any, **_: Any) -> None:
    response = requests.post(f"{environment.host}/databases", json={"name": DATABASE}, timeout=30)
    response.raise_for_status()


def lit(predicate: str, *args: Any, **flags: Any) -> dict[str, Any]:
    return {"predicate": predicate, "args": list(args), **flags}


class Agent(HttpUser):
    abstract = True
    tenant = "default"

    def post(self, path: str, body: dict[str, Any], name: str | None = None) -> Any:
        """POST and mark anything but a 2xx as a failure; returns the parsed answer."""
        headers = {"X-Tenant-ID": self.tenant, "X-Database": DATABASE}
        with self.client.post(path, json=body, headers=headers, name=name or path,
                              catch_response=True) as response:
            if response.status_code >= 300:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return None
            return response.json()

    def get(self, path: str, name: str | None = None) -> Any:
        headers = {"X-Tenant-ID": self.tenant, "X-Database": DATABASE}
        with self.client.get(path, headers=headers, name=name or path,
                             catch_response=True) as response:
            if response.status_code >= 300:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return None
            return response.json()


class IngestAgent(Agent):
    """Streams observations into one of many tenants."""

    weight = 3
    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        self.tenant = f"ingest_{random.randrange(TENANT_POOL)}"
        self.agent = f"agent_{next(_serial)}"
        self.seen = 0

    @task(10)
    def tell(self) -> None:
        self.seen += 1
        self.post("/tell", lit(
            "observed", self.agent, f"obs_{self.seen}", random.choice(["login", "click", "error"]),
            confidence=round(random.uniform(0.5, 1.0), 2),
            metadata={"source": "loadtest", "turn": self.seen},
        ))

    @task(1)
    def bulk(self) -> None:
        start = self.seen
        self.seen += 20
        facts = [lit("metric", self.agent, f"m_{i}", random.randint(0, 1000)) for i in range(start, self.seen)]
        self.post("/assert/facts", {"facts": facts})

    @task(1)
    def ask(self) -> None:
        self.post("/ask", lit("observed", self.agent, "?obs", "error", limit=20), name="/ask (ingest)")


class ReasoningAgent(Agent):
    """Asks recursive questions over a family tree."""

    weight = 3
    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        n = random.randrange(REASONING_TENANTS)
        self.tenant = f"reason_{n}"
        self.people = [f"p{i}" for i in range(TREE_SIZE)]
        # A random tree: person i's parent is one of the people before it.
        rng = random.Random(n)
        facts = [lit("parent", self.people[rng.randrange(i)], self.people[i]) for i in range(1, TREE_SIZE)]
        facts += [lit("retired", p) for p in self.people[: TREE_SIZE // 10]]
        self.post("/assert/facts", {"facts": facts}, name="/assert/facts (seed)")
        rules = [
            (lit("ancestor", "?x", "?y"), [lit("parent", "?x", "?y")]),
            (lit("ancestor", "?x", "?z"), [lit("ancestor", "?x", "?y"), lit("parent", "?y", "?z")]),
            (lit("related", "?x", "?z"), [lit("parent", "?x", "?y"), lit("related", "?y", "?z")]),
            (lit("related", "?x", "?y"), [lit("parent", "?x", "?y")]),
            (lit("grandparent", "?x", "?z"), [lit("parent", "?x", "?y"), lit("parent", "?y", "?z")]),
            (lit("working_ancestor", "?x", "?y"), [lit("ancestor", "?x", "?y"), lit("retired", "?x", naf=True)]),
        ]
        for head, body in rules:
            self.post("/teach", {"head": head, "body": body}, name="/teach (seed)")

    @task(6)
    def ancestors_of_one(self) -> None:
        self.post("/ask", lit("ancestor", "?who", random.choice(self.people)), name="/ask ancestor(?, bound)")

    @task(3)
    def descendants_of_one(self) -> None:
        self.post("/ask", lit("related", random.choice(self.people[:20]), "?who", limit=50),
                  name="/ask related(bound, ?)")

    @task(2)
    def grandparents(self) -> None:
        self.post("/ask", lit("grandparent", "?x", random.choice(self.people)), name="/ask grandparent")

    @task(1)
    def with_naf(self) -> None:
        self.post("/ask", lit("working_ancestor", "?x", random.choice(self.people)), name="/ask naf")

    @task(1)
    def count_all(self) -> None:
        self.post("/aggregate", {**lit("ancestor", "?x", "?y"), "operation": "COUNT"})

    @task(1)
    def predicates(self) -> None:
        self.get("/predicates")


class ContextAgent(Agent):
    """Keeps an agent's context window fresh with optimize/diff on one session."""

    weight = 2
    wait_time = between(0.0, 0.02)

    def on_start(self) -> None:
        paths = requests.get(f"{self.host}/openapi.json", timeout=30).json()["paths"]
        if "/context/optimize" not in paths or "/context/diff" not in paths:
            raise StopUser()  # not served by this build: reported as skipped
        self.tenant = f"context_{random.randrange(TENANT_POOL // 5 or 1)}"
        self.session = uuid.uuid4().hex[:12]
        self.turn = 0
        facts = [lit("customer_tier", f"c{i}", random.choice(["free", "pro", "enterprise"])) for i in range(50)]
        facts += [lit("ticket", f"t{i}", f"c{random.randrange(50)}", "open") for i in range(100)]
        self.post("/assert/facts", {"facts": facts}, name="/assert/facts (seed)")

    def window(self) -> dict[str, Any]:
        return {"sessionId": self.session, "maxFacts": 25,
                "goals": [lit("ticket", "?t", "?c", "open")]}

    @task(3)
    def optimize(self) -> None:
        self.post("/context/optimize", self.window())

    @task(5)
    def turn_then_diff(self) -> None:
        self.turn += 1
        self.post("/tell", lit("ticket", f"{self.session}_{self.turn}", "c1", "open"), name="/tell (context)")
        self.post("/context/diff", self.window())

    @task(1)
    def clear(self) -> None:
        self.post("/context/session/clear", {"sessionId": self.session})
