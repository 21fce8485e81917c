"""Answers over HTTP against SWI-Prolog 9 tabled in the same run (issue 17).

Run with ``python benchmarks/http_ask.py`` (``--quick`` for sizes / 10). It starts a
real ``nocturnus serve``, loads seeded workloads through ``/assert/facts`` and
``/teach`` (one tenant each), and times the issue's five questions as a client sees
them: ``POST /ask`` with the full default answer (no limit, full shape), the body
read to its last byte by a keep-alive ``http.client`` connection. Each run starts
cold: an untimed ``/tell`` of an unrelated fact first empties the server's
evaluation cache, as SWI's ``abolish_all_tables`` does on its side. SWI-Prolog
(``swi-prolog-nox``, installed with apt-get when missing; never a runtime
dependency) answers the same questions with tabled rules, counting the answers
(``benchmarks/engine.py``'s driver). Both sides report the best of ``--runs`` runs
(one run past a second); ours is wall-clock (the server is another process), SWI's
CPU time. Answer counts must agree (checked with ``shape: count``). A question
answered in under 10 ms is timed over many runs, as SWI's driver times it: SWI's is
the mean of 500 runs (``cputime`` is too coarse for one), ours the median of
``SMALL_RUNS`` runs, each after an untimed ``/tell``, with no collection of this
process in between (a full collection here evicts both processes' caches and adds
time that measures the client). The median, because SWI's CPU time leaves out the
time its process waits for a core and our wall clock does not: on a shared machine
a mean of wall times is the load's.

Then bound questions with small answers against a trivial ``/ask`` (one stored fact,
no rules), median of ``--runs`` x 10 requests each: *warm* repeats the question,
*after write* sends an untimed ``/tell`` first (the evaluation cache is empty, the
prepared plans are not), *distinct* asks a different constant each time; *engine*
answers the same question in this process (``Reasoner.matches`` with prepared plans,
after a write), the derivation without HTTP or the service.

``--in-process`` also prints the older comparison of a bound ``/ask`` with the same
question answered in this process (engine, service + rendering).

Wall-clock on a shared machine swings; read the ratios of one run, and repeat.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import itertools
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from engine import (
    FactIndex,
    Program,
    Query,
    Reasoner,
    Rule,
    Workload,
    ancestor_workload,
    atom,
    dag_edges,
    ensure_swipl,
    same_generation_workload,
    v,
)

from nocturnus.engine import Literal, Var
from nocturnus.engine.prepared import PlanCache

CHUNK = 10_000
SMALL_S = 0.01  # a question answered faster is timed as a mean of many runs
SMALL_RUNS = 100
JSON = {"Content-Type": "application/json"}


@dataclass
class Question:
    """One timed question: the workload's query (ours and SWI's) and its /ask body."""

    query: Query
    body: dict[str, Any]


SWI_BENCH = """
once_timed(G, T, N) :- abolish_all_tables, garbage_collect,
    statistics(cputime, T0), aggregate_all(count, G, N),
    statistics(cputime, T1), T is T1 - T0.
repeat_timed(G, K, T) :- garbage_collect, statistics(cputime, T0),
    forall(between(1, K, _), (abolish_all_tables, aggregate_all(count, G, _))),
    statistics(cputime, T1), T is (T1 - T0) / K.
bench(Name, G) :- once_timed(G, T1, N),
    (   T1 > 1.0 -> T = T1
    ;   T1 < 0.01 -> repeat_timed(G, 500, T)
    ;   once_timed(G, T2, _), once_timed(G, T3, _), T is min(T1, min(T2, T3))
    ),
    format('RESULT ~w ~w ~9f~n', [Name, N, T]).
"""


def run_swi(swipl: str, workload: Workload) -> dict[str, tuple[int, float]]:
    """Every query in one swipl process; name -> (answers, CPU seconds).

    Best of three like ours, one run past a second, and the mean of 500 runs below
    10 ms (``statistics(cputime)`` is too coarse for one run of a bound query).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pl"
        arities = {p: len(a) for p, a in workload.facts}
        lines = [":- set_prolog_flag(verbose, silent).", ":- style_check(-discontiguous)."]
        lines += [f":- dynamic {p}/{n}." for p, n in sorted(arities.items())]
        lines += [f"{p}({', '.join(a)})." for p, a in workload.facts]
        lines += [workload.swi_rules, SWI_BENCH, "main :-"]
        lines += [f"    bench(q{i}, ({q.swi_goal}))," for i, q in enumerate(workload.queries)]
        lines.append("    true.")
        path.write_text("\n".join(lines) + "\n")
        done = subprocess.run(
            [swipl, "-g", "main", "-t", "halt", str(path)],
            capture_output=True, text=True, check=False,
        )
    results: dict[str, tuple[int, float]] = {}
    for line in done.stdout.splitlines():
        found = re.match(r"RESULT q(\d+) (\d+) ([\d.]+)", line)
        if found:
            query = workload.queries[int(found.group(1))]
            results[query.name] = (int(found.group(2)), float(found.group(3)))
    if len(results) != len(workload.queries):
        print(done.stdout[-2000:], done.stderr[-2000:])
    return results


def literal_json(literal: Literal) -> dict[str, Any]:
    args = ["?" + a.name if isinstance(a, Var) else a for a in literal.args]
    return {"predicate": literal.predicate, "args": args, "naf": literal.naf}


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "head": literal_json(rule.head),
        "body": [literal_json(b) for b in rule.body],
    }


def dag_closure_workload(nodes: int, seed: int) -> Workload:
    """A random DAG (2 parents each among the previous 4 000) and its closure."""
    x, y, z = v("x"), v("y"), v("z")
    edges = dag_edges(nodes, 2, nodes * 4 // 5, seed)
    rules = [
        Rule("r1", atom("reach", x, y), (atom("edge", x, y),)),
        Rule("r2", atom("reach", x, y), (atom("reach", x, z), atom("edge", z, y))),
    ]
    swi = """
:- table reach/2.
reach(X, Y) :- edge(X, Y).
reach(X, Y) :- reach(X, Z), edge(Z, Y).
"""
    queries = [Query("reach(?x,?y)", atom("reach", x, y), "reach(_, _)")]
    facts = [("edge", edge) for edge in edges]
    return Workload(f"DAG {nodes} nodes", facts, rules, swi, queries)


def closest(
    workload: Workload, goals: Iterator[Literal], wanted: int
) -> tuple[Literal, int]:
    """Among ``goals``, the one whose answer count (in-process) is closest to ``wanted``."""
    facts = FactIndex()
    for predicate, args in workload.facts:
        facts.add(predicate, False, args)
    program = Program(workload.rules)
    best: tuple[int, Literal, int] | None = None
    for goal in goals:
        count = Reasoner(facts).count(program, goal)
        if best is None or abs(count - wanted) < best[0]:
            best = (abs(count - wanted), goal, count)
    assert best is not None
    return best[1], best[2]


def workloads(scale: int, seed: int) -> list[tuple[Workload, list[Question]]]:
    """The issue's five questions, over four seeded workloads."""
    x, y = v("x"), v("y")
    dag = dag_closure_workload(5_000 // scale, seed)
    small_tree = ancestor_workload(2_000 // scale, seed)
    small_tree.queries = [q for q in small_tree.queries if q.name == "anc(?x,?y) right-rec"]
    sg = same_generation_workload(2_000 // scale, seed)
    nodes = 2_000 // scale
    bound, _ = closest(sg, (atom("sg", f"n{i}", y) for i in range(nodes // 2, nodes)), 28)
    node = bound.args[0]
    sg.queries = [
        Query("sg(?x,?y)", atom("sg", x, y), "sg(_, _)"),
        Query(f"sg({node},?y)", bound, f"sg({node}, _)"),
    ]
    big_tree = ancestor_workload(20_000 // scale, seed)
    big_tree.queries = [q for q in big_tree.queries if q.name == "anc(n0,?y) right-rec"]
    found = []
    for workload in (dag, small_tree, sg, big_tree):
        questions = [Question(q, literal_json(q.goal)) for q in workload.queries]
        for question in questions:
            del question.body["naf"]
        found.append((workload, questions))
    return found


class Client:
    """A keep-alive HTTP/1.1 connection that reads every body to its end."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=600)
        self.told = itertools.count()

    def post(self, path: str, body: Any, tenant: str) -> bytes:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {**JSON, "X-Tenant-ID": tenant}
        self.connection.request("POST", path, body=content, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:300]!r}")
        return data

    def invalidate(self, tenant: str) -> None:
        """Tell ``tenant`` a fact never told before: its evaluation cache empties.

        One counter per connection: a fact told again changes nothing, and would
        leave the cache as it was.
        """
        self.post("/tell", {"predicate": "noise", "args": [next(self.told)]}, tenant)

    def close(self) -> None:
        self.connection.close()


def load(client: Client, tenant: str, workload: Workload) -> None:
    for rule in workload.rules:
        client.post("/teach", rule_json(rule), tenant)
    facts = workload.facts
    for i in range(0, len(facts), CHUNK):
        chunk = [{"predicate": p, "args": list(a)} for p, a in facts[i : i + CHUNK]]
        answer = orjson.loads(client.post("/assert/facts", {"facts": chunk}, tenant))
        assert answer["failed"] == 0, answer


def best_seconds(
    action: Callable[[], object], runs: int, setup: Callable[[], None]
) -> float:
    """The best wall time of up to ``runs`` runs (one past a second, as SWI's driver)."""
    best = float("inf")
    for _ in range(runs):
        setup()
        gc.collect()
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
        if best > 1.0:
            break
    return best


def times_s(
    action: Callable[[], object], count: int, setup: Callable[[], None]
) -> list[float]:
    """Wall seconds of ``count`` runs of ``action``, each after an untimed ``setup``."""
    times = []
    for _ in range(count):
        setup()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def median_ms(action: Callable[[], object], count: int, setup: Callable[[], None]) -> float:
    return statistics.median(times_s(action, count, setup)) * 1000


def engine_ms(workload: Workload, goal: Literal, count: int) -> float:
    """Median ms of ``goal`` answered in this process after a write (prepared plans)."""
    facts = FactIndex()
    for predicate, args in workload.facts:
        facts.add(predicate, False, args)
    program = Program(workload.rules)
    plans = PlanCache().of("bench")
    noise = iter(range(10**9))

    def write() -> None:
        facts.add("noise", False, (f"x{next(noise)}",))  # empties the evaluation cache

    def ask() -> None:
        Reasoner(facts).matches(program, goal, plans=plans)

    return median_ms(ask, count, write)


def compare_with_swi(
    client: Client,
    loaded: list[tuple[str, Workload, list[Question]]],
    runs: int,
) -> list[tuple[str, int, float, float, int]]:
    swipl = ensure_swipl()
    rows = []
    for tenant, workload, questions in loaded:
        theirs = run_swi(swipl, workload) if swipl else {}

        def invalidate(tenant: str = tenant) -> None:
            client.invalidate(tenant)

        for question in questions:
            content = orjson.dumps(question.body)
            counted = client.post("/ask", {**question.body, "shape": "count"}, tenant)
            count = orjson.loads(counted)["count"]
            size = len(client.post("/ask", content, tenant))
            def ask(c: bytes = content, t: str = tenant) -> bytes:
                return client.post("/ask", c, t)

            seconds = best_seconds(ask, runs, invalidate)
            if seconds < SMALL_S:
                times = times_s(ask, SMALL_RUNS, invalidate)
                median = statistics.median(times)
                print(
                    f"{question.query.name}: best of {runs} after a full collection "
                    f"{seconds * 1000:.2f} ms; of {SMALL_RUNS} without: median "
                    f"{median * 1000:.2f} ms, mean {statistics.mean(times) * 1000:.2f} ms"
                )
                seconds = median
            swi_count, swi_seconds = theirs.get(question.query.name, (-1, float("nan")))
            if swi_count not in (-1, count):
                print(f"MISMATCH {question.query.name}: ours {count}, SWI {swi_count}")
            rows.append((question.query.name, count, seconds, swi_seconds, size))
    return rows


def bound_latency(
    client: Client,
    loaded: list[tuple[str, Workload, list[Question]]],
    runs: int,
    seed: int,
) -> list[tuple[str, float, float, float, float]]:
    """Median ms of small bound questions, against a trivial /ask, three ways, and
    in this process (the engine alone)."""
    rng = random.Random(seed)
    client.post("/tell", {"predicate": "flag", "args": ["on"]}, "trivial")
    tenants = {workload.name: tenant for tenant, workload, _ in loaded}
    sg = next(w for _, w, _ in loaded if w.name.startswith("same generation"))
    trees = [w for _, w, _ in loaded if w.name.startswith("tree")]
    tree = max(trees, key=lambda w: len(w.facts))
    bound_sg = next(q for _, w, qs in loaded for q in qs if w is sg and q.body["args"][0] != "?x")
    sg_nodes = sum(1 for p, _ in sg.facts if p == "node")
    twins = [f"n{i}" for i in range(sg_nodes // 2, sg_nodes)]
    nodes = len(tree.facts) + 1
    small = [f"n{i}" for i in range(nodes - nodes // 10, nodes)]  # small subtrees
    Body = dict[str, Any]
    trivial = Workload("trivial", [("flag", ("on",))], [], "", [])
    y = Var("y")
    cases: list[tuple[str, str, Body, Callable[[], Body], Workload, Literal]] = [
        ("trivial: flag(?x)", "trivial", {"predicate": "flag", "args": ["?x"]},
         lambda: {"predicate": "flag", "args": ["?x"]}, trivial, Literal("flag", (y,))),
        (f"{bound_sg.query.name} / sg(nK,?y)", tenants[sg.name], bound_sg.body,
         lambda: {"predicate": "sg", "args": [rng.choice(twins), "?y"]},
         sg, bound_sg.query.goal),
        ("anc(nK,?y), K deep in the tree", tenants[tree.name],
         {"predicate": "anc", "args": [small[0], "?y"]},
         lambda: {"predicate": "anc", "args": [rng.choice(small), "?y"]},
         tree, Literal("anc", (small[0], y))),
    ]
    count = runs * 10
    results = []
    for label, tenant, body, distinct_body, workload, goal in cases:
        def invalidate(tenant: str = tenant) -> None:
            client.invalidate(tenant)

        def ask(content: bytes, tenant: str = tenant) -> bytes:
            return client.post("/ask", content, tenant)

        fixed = orjson.dumps(body)
        answers = orjson.loads(ask(fixed))["count"]
        # No collection between requests here: a full collection of this process
        # (hundreds of MB of workloads) leaves both processes' caches cold and
        # adds ~2 ms to the next request, which would measure the client.
        warm = median_ms(lambda f=fixed: ask(f), count, lambda: None)
        after = median_ms(lambda f=fixed: ask(f), count, invalidate)
        distinct = median_ms(
            lambda b=distinct_body: ask(orjson.dumps(b())), count, lambda: None
        )
        engine = engine_ms(workload, goal, count)
        results.append((f"{label} ({answers} answers)", warm, after, distinct, engine))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes / 10")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--in-process", action="store_true", help="also the in-process comparison"
    )
    options = parser.parse_args()
    from tests.server import Server

    scale = 10 if options.quick else 1
    chosen = workloads(scale, options.seed)
    with tempfile.TemporaryDirectory() as tmp:
        # Whole answers of millions of rows, compared with SWI's: no query budget.
        unlimited = {
            "NOCTURNUS_QUERY_MAX_ROWS": "0",
            "NOCTURNUS_QUERY_TIMEOUT_MS": "0",
            "NOCTURNUS_QUERY_MAX_ANSWERS": "0",
        }
        env = {"PYTHONPATH": str(ROOT.parent), **unlimited}
        server = Server(Path(tmp) / "data", env=env).start()
        client = Client(server.url)
        try:
            loaded = []
            for n, (workload, questions) in enumerate(chosen):
                tenant = f"w{n}"
                started = time.perf_counter()
                load(client, tenant, workload)
                print(
                    f"loaded {workload.name}: {len(workload.facts)} facts in "
                    f"{time.perf_counter() - started:.1f} s",
                    flush=True,
                )
                loaded.append((tenant, workload, questions))
            rows = compare_with_swi(client, loaded, options.runs)
            latency = bound_latency(client, loaded, options.runs, options.seed)
        finally:
            client.close()
            server.stop()
    print()
    print("full default answer over HTTP (cold) against SWI-Prolog tabled, best of runs")
    print(f"{'query':<26} {'answers':>9} {'MB':>7} {'ours s':>8} {'SWI s':>8} {'ours/SWI':>9}")
    for name, count, seconds, swi_seconds, size in rows:
        ratio = seconds / swi_seconds if swi_seconds > 0 else float("nan")
        print(
            f"{name:<26} {count:>9} {size / 1e6:>7.1f} {seconds:>8.4f} "
            f"{swi_seconds:>8.4f} {ratio:>9.2f}"
        )
    print()
    print("bound questions, median ms per request; +ms against the trivial /ask")
    print(
        f"{'question':<48} {'warm':>7} {'after write':>12} {'distinct':>9} "
        f"{'engine':>7} {'+ms (after write)':>18}"
    )
    trivial = latency[0]
    for label, warm, after, distinct, engine in latency:
        print(
            f"{label:<48} {warm:>7.2f} {after:>12.2f} {distinct:>9.2f} "
            f"{engine:>7.3f} {after - trivial[2]:>18.2f}"
        )
    if options.in_process:
        from http_ask_inprocess import compare_in_process

        compare_in_process(2_000 if options.quick else 20_000, options.seed, 15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
