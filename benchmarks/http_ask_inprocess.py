"""HTTP ``/ask`` against the same question answered in-process (issue 4, item 5).

Run with ``python benchmarks/http_ask.py --in-process`` (``--quick`` for a 2 000-node
tree), or this file alone. It
builds the engine benchmark's random tree (20 000 nodes, each node's parent drawn from
the previous 50) with the right-recursive ``anc`` rules, starts a real ``nocturnus
serve`` subprocess, loads the tree through ``/assert/facts`` in chunks of 10 000 and
the rules through ``/teach``, then times bound ``/ask`` requests against the same
questions answered in this process:

- ``engine``: ``Reasoner.solve`` over a ``FactIndex`` (what ``benchmarks/engine.py``
  times);
- ``service``: ``queries.ask`` over a ``TenantState`` built by applying the same
  events, plus the handler's rendering and ``orjson.dumps`` of the response: all a
  request does except HTTP, routing and validation;
- ``HTTP``: the wall time of ``POST /ask`` seen by a keep-alive client.

This process runs with the server's collector threshold (``GC_GEN0_THRESHOLD``), so
the columns differ by what they run, not by garbage collection.

Every time is wall-clock milliseconds per request (the server is another process, so
CPU time would miss half of it), the median of the runs. *Cold* means the question is
answered from scratch (in-process the evaluation cache is emptied; over HTTP a ``/tell``
of an unrelated fact before each ask empties it the same way, untimed); *warm* repeats
the question with the cache in place; *distinct* asks ``anc(nK, ?y)`` for 100 seeded
nodes K once each. The ratios HTTP/service and HTTP/engine must stay a small constant:
an O(n) step per request would make them grow with the tree, not with the answers.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from engine import tree_edges

from nocturnus.api.app import GC_GEN0_THRESHOLD
from nocturnus.api.knowledge import shaped
from nocturnus.engine import FactIndex, Literal, Program, Reasoner, Rule, Var
from nocturnus.service import queries
from nocturnus.service.answers import Page
from nocturnus.service.events import FactTold, RuleTaught
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.rulebook import Rulebook
from nocturnus.service.uses import UseBuffer

CHUNK = 10_000
JSON = {"Content-Type": "application/json"}
TENANT = "bench"
RULES = [
    {
        "head": {"predicate": "anc", "args": ["?x", "?y"]},
        "body": [{"predicate": "parent", "args": ["?x", "?y"]}],
    },
    {
        "head": {"predicate": "anc", "args": ["?x", "?y"]},
        "body": [
            {"predicate": "parent", "args": ["?x", "?z"]},
            {"predicate": "anc", "args": ["?z", "?y"]},
        ],
    },
]


def median_ms(
    action: Callable[[], object], runs: int, setup: Callable[[], None]
) -> float:
    times = []
    for _ in range(runs):
        setup()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


class InProcess:
    """The same knowledge in this process: a bare FactIndex and a service projection."""

    def __init__(self, edges: list[tuple[str, str]]) -> None:
        x, y, z = Var("x"), Var("y"), Var("z")
        self.program = Program(
            [
                Rule("a1", Literal("anc", (x, y)), (Literal("parent", (x, y)),)),
                Rule(
                    "a2",
                    Literal("anc", (x, y)),
                    (Literal("parent", (x, z)), Literal("anc", (z, y))),
                ),
            ]
        )
        self.index = FactIndex()
        for edge in edges:
            self.index.add("parent", False, edge)
        self.state = TenantState(TENANT)
        self.uses = UseBuffer()
        self.rules = Rulebook()
        seq = 0
        for i, rule in enumerate(RULES):
            seq += 1
            body = tuple(
                {**lit, "negated": False, "naf": False} for lit in rule["body"]
            )
            head = {**rule["head"], "negated": False, "naf": False}
            apply(self.state, seq, RuleTaught(f"r_{i}", head, body, created_at=1))
        for edge in edges:
            seq += 1
            told = FactTold("parent", edge, False, "main", created_at=1, valid_from=1)
            apply(self.state, seq, told)
        self.state.refresh(2)

    def engine(self, goal: Literal) -> int:
        return len(Reasoner(self.index).solve(self.program, goal))

    def service(self, goal: Literal) -> int:
        """What ``tenants.ask`` and the ``/ask`` handler do, without the HTTP."""
        now = time.time_ns() // 1_000_000
        self.state.refresh(now)
        found = queries.answer_set(self.state, self.rules, goal, None)
        self.uses.record(TENANT, found.stored_keys(), now)
        shaped(Page(found, None), goal, "full", bindings=True).joined()
        return len(found)

    def clear(self) -> None:
        self.index.cache.clear()
        for view in self.state.views.values():
            view.index.cache.clear()
        gc.collect()


def start_server(tmp: Path, edges: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    import httpx

    from tests.server import Server

    server = Server(tmp / "data", env={"PYTHONPATH": str(ROOT.parent)}).start()
    client = httpx.Client(
        base_url=server.url, timeout=120, headers={"X-Tenant-ID": TENANT}
    )
    for rule in RULES:
        assert client.post("/teach", json=rule).status_code in (200, 201)
    start = time.perf_counter()
    for i in range(0, len(edges), CHUNK):
        facts = [{"predicate": "parent", "args": list(e)} for e in edges[i : i + CHUNK]]
        answer = client.post("/assert/facts", json={"facts": facts})
        assert answer.status_code == 200 and answer.json()["failed"] == 0, answer.text
    print(f"loaded {len(edges)} facts over HTTP in {time.perf_counter() - start:.1f} s")
    return server, client


def compare_in_process(nodes: int, seed: int, runs: int) -> None:
    """Time bound ``/ask``s against the same questions in this process; print a table."""
    options = argparse.Namespace(seed=seed, runs=runs)
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    edges = tree_edges(nodes, 50, options.seed)
    local = InProcess(edges)
    rng = random.Random(options.seed)
    distinct = [f"n{rng.randrange(nodes)}" for _ in range(100)]
    mid = edges[nodes // 2][0]
    y = Var("y")
    with tempfile.TemporaryDirectory() as tmp:
        server, client = start_server(Path(tmp), edges)
        try:
            noise = iter(range(10**9))

            def invalidate() -> None:
                """A write: empties the server's evaluation cache, as local.clear does."""
                client.post("/tell", json={"predicate": "noise", "args": [next(noise)]})

            def http(goal: Literal) -> Callable[[], int]:
                body = {
                    "predicate": goal.predicate,
                    "args": [
                        "?" + a.name if isinstance(a, Var) else a for a in goal.args
                    ],
                }

                content = orjson.dumps(body)

                def ask() -> int:
                    # The body is read in full but not decoded: the client's JSON
                    # parsing is not the server's time.
                    answer = client.post("/ask", content=content, headers=JSON)
                    assert answer.status_code == 200, answer.text
                    return len(answer.content)

                return ask

            def http_count(goal: Literal) -> int:
                http(goal)()
                answer = client.post(
                    "/ask",
                    content=orjson.dumps(
                        {
                            "predicate": goal.predicate,
                            "args": [
                                "?" + a.name if isinstance(a, Var) else a
                                for a in goal.args
                            ],
                        }
                    ),
                    headers=JSON,
                )
                return int(orjson.loads(answer.content)["count"])

            rows = []
            for label, node in (("anc(n0,?y)", "n0"), (f"anc({mid},?y)", mid)):
                goal = Literal("anc", (node, y))
                count = local.engine(goal)
                assert local.service(goal) == count == http_count(goal), label
                for mode in ("cold", "warm"):
                    setup_local = local.clear if mode == "cold" else (lambda: None)
                    setup_http = invalidate if mode == "cold" else (lambda: None)
                    engine_ms = median_ms(
                        lambda g=goal: local.engine(g), options.runs, setup_local
                    )
                    service_ms = median_ms(
                        lambda g=goal: local.service(g), options.runs, setup_local
                    )
                    http_ms = median_ms(http(goal), options.runs, setup_http)
                    rows.append(
                        (f"{label} {mode}", count, engine_ms, service_ms, http_ms)
                    )
            goals = [Literal("anc", (node, y)) for node in distinct]
            counts = [local.engine(g) for g in goals]
            timings = []
            for side in ("engine", "service", "http"):
                local.clear()
                invalidate()
                started = time.perf_counter()
                for goal in goals:
                    if side == "engine":
                        local.engine(goal)
                    elif side == "service":
                        local.service(goal)
                    else:
                        http(goal)()
                timings.append((time.perf_counter() - started) * 1000 / len(goals))
            rows.append(
                (
                    f"anc(nK,?y) x{len(goals)} distinct",
                    round(statistics.mean(counts)),
                    *timings,
                )
            )
        finally:
            client.close()
            server.stop()
    print(
        f"tree of {nodes} nodes; wall ms per request, median of {options.runs} "
        "(distinct: mean over the goals; answers: mean)"
    )
    print(
        f"{'query':<34} {'answers':>8} {'engine':>8} {'service':>8} {'HTTP':>8} "
        f"{'HTTP/svc':>9} {'HTTP/eng':>9}"
    )
    for label, count, engine_ms, service_ms, http_ms in rows:
        print(
            f"{label:<34} {count:>8} {engine_ms:>8.2f} {service_ms:>8.2f} {http_ms:>8.2f} "
            f"{http_ms / service_ms:>9.2f} {http_ms / engine_ms:>9.2f}",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2 000-node tree")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=15)
    given = parser.parse_args()
    compare_in_process(2_000 if given.quick else 20_000, given.seed, given.runs)
