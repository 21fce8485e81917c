"""Engine benchmark: our in-process engine against SWI-Prolog 9 and pyoxigraph, same run.

Run with ``python benchmarks/engine.py`` (``--quick`` for a smaller smoke run). It
generates seeded workloads, answers each query with the Nocturnus engine in-process and
with SWI-Prolog (tabled rules), checks both give the same number of answers, and prints
ours/SWI per query; then it compares single inserts and bound pattern lookups of
``FactIndex`` with pyoxigraph's in-memory ``Store``. Absolute times drift between
machines and runs, so read the ratios (issue 4: targets at or below 1.0).

SWI-Prolog (``swi-prolog-nox``) and pyoxigraph are installed on first use if missing.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nocturnus.engine import FactIndex, Literal, Program, Reasoner, Rule, Var


@dataclass
class Query:
    """One measured query: our goal, the SWI goal, and which program answers it."""

    name: str
    goal: Literal
    swi_goal: str


@dataclass
class Workload:
    """Facts, rules (ours and SWI's text) and the queries to run over them."""

    name: str
    facts: list[tuple[str, tuple[str, ...]]]
    rules: list[Rule]
    swi_rules: str
    queries: list[Query]


def v(name: str) -> Var:
    return Var(name)


def atom(predicate: str, *args: object, naf: bool = False) -> Literal:
    return Literal(predicate, tuple(args), naf=naf)  # type: ignore[arg-type]


def tree_edges(nodes: int, window: int, seed: int) -> list[tuple[str, str]]:
    """A random tree: node i's parent is drawn uniformly from the previous ``window``."""
    rng = random.Random(seed)
    return [
        (f"n{rng.randint(max(0, i - window), i - 1)}", f"n{i}") for i in range(1, nodes)
    ]


def dag_edges(nodes: int, fanin: int, window: int, seed: int) -> list[tuple[str, str]]:
    """A random DAG: each node gets ``fanin`` parents among the previous ``window``."""
    rng = random.Random(seed)
    edges = set()
    for i in range(1, nodes):
        for _ in range(fanin):
            edges.add((f"d{rng.randint(max(0, i - window), i - 1)}", f"d{i}"))
    return sorted(edges)


def ancestor_workload(nodes: int, seed: int) -> Workload:
    x, y, z = v("x"), v("y"), v("z")
    edges = tree_edges(nodes, 50, seed)
    rules = [
        Rule("anc1", atom("anc", x, y), (atom("parent", x, y),)),
        Rule("anc2", atom("anc", x, y), (atom("parent", x, z), atom("anc", z, y))),
        Rule("ancl1", atom("ancl", x, y), (atom("parent", x, y),)),
        Rule("ancl2", atom("ancl", x, y), (atom("ancl", x, z), atom("parent", z, y))),
    ]
    swi = """
:- table anc/2, ancl/2.
anc(X, Y) :- parent(X, Y).
anc(X, Y) :- parent(X, Z), anc(Z, Y).
ancl(X, Y) :- parent(X, Y).
ancl(X, Y) :- ancl(X, Z), parent(Z, Y).
"""
    mid = f"n{nodes // 100}"
    queries = [
        Query("anc(n0,?y) right-rec", atom("anc", "n0", y), "anc(n0, _)"),
        Query("anc(?x,?y) right-rec", atom("anc", x, y), "anc(_, _)"),
        Query("anc(n0,?y) left-rec", atom("ancl", "n0", y), "ancl(n0, _)"),
        Query("anc(?x,?y) left-rec", atom("ancl", x, y), "ancl(_, _)"),
        Query(f"anc({mid},?y) right-rec", atom("anc", mid, y), f"anc({mid}, _)"),
    ]
    facts = [("parent", edge) for edge in edges]
    return Workload(f"tree {nodes} nodes", facts, rules, swi, queries)


def dag_workload(nodes: int, seed: int) -> Workload:
    x, y, z = v("x"), v("y"), v("z")
    edges = dag_edges(nodes, 2, 40, seed)
    rules = [
        Rule("r1", atom("reach", x, y), (atom("edge", x, y),)),
        Rule("r2", atom("reach", x, y), (atom("reach", x, z), atom("edge", z, y))),
    ]
    swi = """
:- table reach/2.
reach(X, Y) :- edge(X, Y).
reach(X, Y) :- reach(X, Z), edge(Z, Y).
"""
    queries = [
        Query("reach(d0,?y)", atom("reach", "d0", y), "reach(d0, _)"),
        Query("reach(?x,?y)", atom("reach", x, y), "reach(_, _)"),
    ]
    facts = [("edge", edge) for edge in edges]
    return Workload(f"DAG {nodes} nodes", facts, rules, swi, queries)


def same_generation_workload(nodes: int, seed: int) -> Workload:
    x, y, px, py = v("x"), v("y"), v("px"), v("py")
    edges = tree_edges(nodes, 50, seed)
    rules = [
        Rule("sg1", atom("sg", x, x), (atom("node", x),)),
        Rule(
            "sg2",
            atom("sg", x, y),
            (atom("parent", px, x), atom("sg", px, py), atom("parent", py, y)),
        ),
    ]
    swi = """
:- table sg/2.
sg(X, X) :- node(X).
sg(X, Y) :- parent(PX, X), sg(PX, PY), parent(PY, Y).
"""
    last = f"n{nodes - 1}"
    queries = [
        Query(f"sg({last},?y)", atom("sg", last, y), f"sg({last}, _)"),
        Query("sg(?x,?y)", atom("sg", x, y), "sg(_, _)"),
    ]
    facts = [("parent", edge) for edge in edges]
    facts += [("node", (f"n{i}",)) for i in range(nodes)]
    return Workload(f"same generation, tree {nodes} nodes", facts, rules, swi, queries)


def naf_workload(nodes: int, seed: int) -> Workload:
    x, y, z, w = v("x"), v("y"), v("z"), v("w")
    rng = random.Random(seed)
    edges = dag_edges(nodes, 1, 400, seed)
    facts: list[tuple[str, tuple[str, ...]]] = [("edge", e) for e in edges]
    facts += [("node", (f"d{i}",)) for i in range(nodes)]
    facts += [("source", (f"d{i}",)) for i in rng.sample(range(nodes), nodes // 50)]
    facts += [("banned", (f"d{i}",)) for i in rng.sample(range(nodes), nodes // 10)]
    rules = [
        Rule("n1", atom("reach", x), (atom("source", x),)),
        Rule("n2", atom("reach", y), (atom("reach", x), atom("edge", x, y))),
        Rule("n3", atom("unreached", x), (atom("node", x), atom("reach", x, naf=True))),
        Rule("n4", atom("haschild", x), (atom("edge", x, w),)),
        Rule("n5", atom("leaf", x), (atom("node", x), atom("haschild", x, naf=True))),
        Rule(
            "n6",
            atom("lonely", x),
            (atom("unreached", x), atom("leaf", x), atom("banned", x, naf=True)),
        ),
        Rule(
            "n7",
            atom("orphan_pair", x, y),
            (
                atom("lonely", x),
                atom("edge", z, x),
                atom("edge", z, y),
                atom("lonely", y, naf=True),
            ),
        ),
    ]
    swi = """
:- table reach/1 as subsumptive.
:- table unreached/1, haschild/1 as subsumptive.
:- table leaf/1, lonely/1 as subsumptive.
:- table orphan_pair/2.
reach(X) :- source(X).
reach(Y) :- reach(X), edge(X, Y).
unreached(X) :- node(X), \\+ reach(X).
haschild(X) :- edge(X, _).
leaf(X) :- node(X), \\+ haschild(X).
lonely(X) :- unreached(X), leaf(X), \\+ banned(X).
orphan_pair(X, Y) :- lonely(X), edge(Z, X), edge(Z, Y), \\+ lonely(Y).
"""
    queries = [
        Query("unreached(?x)", atom("unreached", x), "unreached(_)"),
        Query("lonely(?x)", atom("lonely", x), "lonely(_)"),
        Query("orphan_pair(?x,?y)", atom("orphan_pair", x, y), "orphan_pair(_, _)"),
    ]
    return Workload(f"NAF-heavy, DAG {nodes} nodes", facts, rules, swi, queries)


def ensure_swipl() -> str | None:
    """Return the swipl path, installing swi-prolog-nox with apt-get if missing."""
    found = shutil.which("swipl")
    if found:
        return found
    print("installing swi-prolog-nox ...", flush=True)
    apt = ["apt-get", "install", "-y", "swi-prolog-nox"]
    if subprocess.run(apt, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, check=False)
        subprocess.run(apt, capture_output=True, check=False)
    return shutil.which("swipl")


def ensure_pyoxigraph() -> bool:
    """Import pyoxigraph, installing it with pip if missing."""
    try:
        import pyoxigraph
    except ImportError:
        print("installing pyoxigraph ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "pyoxigraph"], check=False
        )
    try:
        import pyoxigraph  # noqa: F401
    except ImportError:
        return False
    return True


def run_swi(swipl: str, workload: Workload) -> dict[str, tuple[int, float]]:
    """Run every query in one swipl process; return name -> (answers, cpu seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pl"
        with path.open("w") as fh:
            fh.write(":- set_prolog_flag(verbose, silent).\n")
            fh.write(":- style_check(-discontiguous).\n")
            for predicate in sorted({p for p, _ in workload.facts}):
                arity = next(len(a) for p, a in workload.facts if p == predicate)
                fh.write(f":- dynamic {predicate}/{arity}.\n")
            for predicate, args in workload.facts:
                fh.write(f"{predicate}({', '.join(args)}).\n")
            fh.write(workload.swi_rules)
            fh.write(
                "\nbench(Name, G) :- abolish_all_tables, garbage_collect, "
                "statistics(cputime, T0), aggregate_all(count, G, N), "
                "statistics(cputime, T1), T is T1 - T0, "
                "format('RESULT ~w ~w ~6f~n', [Name, N, T]).\n"
            )
            fh.write("main :-\n")
            for i, query in enumerate(workload.queries):
                fh.write(f"    bench(q{i}, ({query.swi_goal})),\n")
            fh.write("    true.\n")
        done = subprocess.run(
            [swipl, "-g", "main", "-t", "halt", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    results: dict[str, tuple[int, float]] = {}
    for line in done.stdout.splitlines():
        match = re.match(r"RESULT q(\d+) (\d+) ([\d.]+)", line)
        if match:
            query = workload.queries[int(match.group(1))]
            results[query.name] = (int(match.group(2)), float(match.group(3)))
    if len(results) != len(workload.queries):
        print(done.stdout[-2000:], done.stderr[-2000:])
    return results


def timed(action: Callable[[], object], repeat: int) -> tuple[object, float]:
    """Return the result and the best wall time of ``repeat`` runs."""
    best = float("inf")
    result: object = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
    return result, best


def run_ours(workload: Workload, repeat: int) -> dict[str, tuple[int, float, float]]:
    """Return name -> (answers, seconds to count, seconds to solve sorted answers).

    Building millions of sorted Answer objects measures Python object creation, not
    reasoning, so solve is only timed for answer sets up to a million.
    """
    facts = FactIndex()
    for predicate, args in workload.facts:
        facts.add(predicate, False, args)
    program = Program(workload.rules)
    results = {}
    for query in workload.queries:

        def count(goal: Literal = query.goal) -> int:
            facts.cache.clear()  # every run evaluates from scratch
            return Reasoner(facts).count(program, goal)

        def solve(goal: Literal = query.goal) -> int:
            facts.cache.clear()
            return len(Reasoner(facts).solve(program, goal))

        answers, seconds = timed(count, repeat)
        solve_seconds = float("nan")
        if int(answers) <= 1_000_000:  # type: ignore[call-overload]
            _, solve_seconds = timed(solve, 1)
        results[query.name] = (int(answers), seconds, solve_seconds)  # type: ignore[call-overload]
    return results


def compare_with_swi(workloads: list[Workload], repeat: int) -> bool:
    swipl = ensure_swipl()
    ok = True
    header = f"{'query':<36} {'answers':>9} {'ours s':>8} {'SWI s':>8} {'ours/SWI':>9}"
    print(header + f" {'solve s':>8}")
    for workload in workloads:
        print(f"-- {workload.name}")
        ours = run_ours(workload, repeat)
        theirs = run_swi(swipl, workload) if swipl else {}
        for query in workload.queries:
            count, seconds, solve_seconds = ours[query.name]
            swi_count, swi_seconds = theirs.get(query.name, (-1, float("nan")))
            ratio = seconds / swi_seconds if swi_seconds > 0 else float("nan")
            flag = ""
            if swi_count != count:
                flag = f"  MISMATCH: SWI has {swi_count}"
                ok = False
            print(
                f"{query.name:<36} {count:>9} {seconds:>8.3f} {swi_seconds:>8.3f} "
                f"{ratio:>9.3f} {solve_seconds:>8.3f}{flag}",
                flush=True,
            )
    return ok


def compare_with_oxigraph(size: int, lookups: int) -> None:
    if not ensure_pyoxigraph():
        print("pyoxigraph unavailable; skipped")
        return
    from pyoxigraph import NamedNode, Quad, Store

    rng = random.Random(7)
    subjects = [f"s{i}" for i in range(size // 4)]
    pairs = [(rng.choice(subjects), f"o{rng.randrange(size)}") for _ in range(size)]
    base = "http://example.org/"
    knows = NamedNode(base + "knows")
    quads = [Quad(NamedNode(base + s), knows, NamedNode(base + o)) for s, o in pairs]
    probes = [rng.choice(subjects) for _ in range(lookups)]
    probe_nodes = [NamedNode(base + s) for s in probes]

    def ours_insert() -> FactIndex:
        facts = FactIndex()
        add = facts.add
        for pair in pairs:
            add("knows", False, pair)
        return facts

    def oxi_insert() -> Store:
        store = Store()
        add = store.add
        for quad in quads:
            add(quad)
        return store

    facts, ours_seconds = timed(ours_insert, 1)
    store, oxi_seconds = timed(oxi_insert, 1)
    print(
        f"-- pyoxigraph in-memory Store vs FactIndex, {size} facts, {lookups} lookups"
    )
    print(f"{'operation':<36} {'ours us':>9} {'oxi us':>9} {'ours/oxi':>9}")
    ours_us, oxi_us = ours_seconds / size * 1e6, oxi_seconds / size * 1e6
    print(
        f"{'single insert':<36} {ours_us:>9.3f} {oxi_us:>9.3f} {ours_us / oxi_us:>9.3f}"
    )

    pattern_var = Var("o")
    match = facts.match  # type: ignore[attr-defined]

    def ours_lookup() -> int:
        total = 0
        for subject in probes:
            total += len(match("knows", False, (subject, pattern_var)))
        return total

    quads_for_pattern = store.quads_for_pattern  # type: ignore[attr-defined]

    def oxi_lookup() -> int:
        total = 0
        for node in probe_nodes:
            total += len(list(quads_for_pattern(node, knows, None)))
        return total

    ours_found, ours_seconds = timed(ours_lookup, 3)
    oxi_found, oxi_seconds = timed(oxi_lookup, 3)
    assert ours_found == oxi_found, (ours_found, oxi_found)
    ours_us, oxi_us = ours_seconds / lookups * 1e6, oxi_seconds / lookups * 1e6
    print(
        f"{'bound lookup (s, p, ?o)':<36} {ours_us:>9.3f} {oxi_us:>9.3f} "
        f"{ours_us / oxi_us:>9.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=1, help="best of N for ours")
    options = parser.parse_args()
    scale = 10 if options.quick else 1
    workloads = [
        ancestor_workload(20_000 // scale, options.seed),
        dag_workload(3_000 // scale, options.seed),
        same_generation_workload(20_000 // scale, options.seed),
        naf_workload(20_000 // scale, options.seed),
    ]
    ok = compare_with_swi(workloads, options.repeat)
    compare_with_oxigraph(200_000 // scale, 20_000 // scale)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
