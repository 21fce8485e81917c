"""Memory benchmark: RSS of 1 M binary facts, ours against pyoxigraph's in-memory Store.

Run with ``python benchmarks/memory.py`` (``--facts 100000`` for a quick run). Every
measurement runs in a fresh subprocess, which reads its own RSS (``VmRSS``) after its
imports and again after loading, with a full garbage collection before both reads;
the delta is what the loaded facts cost, allocator overhead and all. The facts are
``edge(nI, nJ)`` for I = 0..N-1 and J drawn with a seeded RNG, so about N distinct
node names; every process generates the names as it loads, so no input list is
counted.

Our paths:

- ``FactIndex.add``: the engine's visible-fact index alone.
- ``service (tell)``: what the server keeps for facts told over ``/assert/facts``:
  each chunk of 10 000 is a JSON body parsed by orjson, turned into commands by the
  API's own ``tell_command``, decided by ``decide_tell`` against ``StagedFacts`` and
  applied to a ``TenantState`` with ``apply`` (exactly what ``tenants.tell_many`` and
  ``Database.commit`` do, minus the log write), then ``refresh`` settles the index.
- ``service (replay)``: the same facts as the projection rebuilt after a restart:
  events encoded and decoded as the log stores them, then applied.
- ``service (snapshot load)``: a restart from a tenant snapshot of those facts
  (``snapshot_format.decode`` as ``restore_tenant`` runs it, then ``refresh``); the snapshot
  file is written by another process and read after the baseline.
- ``--server`` adds a real ``nocturnus serve`` subprocess loaded over HTTP in chunks of
  10 000 (RSS of the server process: includes Sanic, SQLite and allocator slack).

pyoxigraph's ``Store()`` (in memory) holds the same edges as quads
``<base nI> <base edge> <base nJ>``, once with ``http://example.org/`` IRIs and once with
the shortest IRIs (``n:I``), added with ``Store.add``. pyoxigraph is installed with pip
when missing. Ratios are ours / the smaller pyoxigraph figure (the target is ≤ 1.0).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 10_000
SEED = 11


def rss_bytes(pid: int | str = "self") -> int:
    """The resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc status")


def edges(count: int) -> Iterator[tuple[str, str]]:
    """``(nI, nJ)`` for I = 0..count-1, J seeded-random: about ``count`` node names."""
    rng = random.Random(SEED)
    randrange = rng.randrange
    for i in range(count):
        yield f"n{i}", f"n{randrange(count)}"


def chunks(count: int) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    for edge in edges(count):
        batch.append(edge)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


# -- children: each loads the facts one way and reports its RSS delta ----------------


def load_index(count: int) -> object:
    from nocturnus.engine.index import FactIndex

    facts = FactIndex()
    add = facts.add
    for edge in edges(count):
        add("edge", False, edge)
    assert len(facts) == count
    return facts


def load_service_tell(count: int) -> object:
    import orjson

    from nocturnus.api.knowledge import tell_command
    from nocturnus.service.commands import StagedFacts, decide_tell
    from nocturnus.service.projection import TenantState, apply

    state = TenantState("acme")
    seq = 0
    for batch in chunks(count):
        # The request body as the server receives it, parsed as the server parses it.
        body = orjson.loads(
            orjson.dumps(
                {"facts": [{"predicate": "edge", "args": list(e)} for e in batch]}
            )
        )
        now = time.time_ns() // 1_000_000
        state.refresh(now)
        staged = StagedFacts(state, now)
        events = []
        for i, fact in enumerate(body["facts"]):
            decided, _ = decide_tell(
                staged, tell_command(fact, f"facts[{i}]."), now, "REJECT"
            )
            staged.stage(decided)
            events.extend(decided)
        for event in events:
            seq += 1
            apply(state, seq, event)
    state.refresh(time.time_ns() // 1_000_000)
    assert state.fact_count() == count
    return state


def load_service_replay(count: int) -> object:
    from nocturnus.engine.collector import collector_paused
    from nocturnus.service.codec import CODEC
    from nocturnus.service.events import FactTold
    from nocturnus.service.projection import TenantState, apply

    state = TenantState("acme")
    seq = 0
    for batch in chunks(count):
        now = time.time_ns() // 1_000_000
        with collector_paused():  # as replay_tenant folds the logged records
            for edge in batch:  # each record: encoded, read back, decoded, applied
                body = CODEC.encode(
                    FactTold(
                        predicate="edge",
                        args=edge,
                        negated=False,
                        scope="main",
                        created_at=now,
                        valid_from=now,
                    )
                )
                seq += 1
                apply(state, seq, CODEC.decode(FactTold.kind, body))
    state.refresh(time.time_ns() // 1_000_000)
    assert state.fact_count() == count
    return state


def write_snapshot(count: int, path: Path) -> None:
    """Store the replayed projection as a tenant snapshot (not measured)."""
    from nocturnus.service import snapshot_format

    path.write_bytes(snapshot_format.encode(load_service_replay(count)))  # type: ignore[arg-type]


def load_service_snapshot(count: int) -> object:
    """A restart from the newest snapshot: ``restore_tenant``'s decode, then refresh."""
    from nocturnus.engine.collector import collector_paused
    from nocturnus.service import snapshot_format

    body = Path(os.environ["NOCTURNUS_BENCH_SNAPSHOT"]).read_bytes()
    with collector_paused():
        state = snapshot_format.decode("acme", body)
    del body
    state.refresh(time.time_ns() // 1_000_000)
    assert state.fact_count() == count
    return state


def _oxigraph(base: str) -> Callable[[int], object]:
    def load(count: int) -> object:
        from pyoxigraph import NamedNode, Quad, Store

        store = Store()
        add = store.add
        edge = NamedNode(base + "edge")
        for s, o in edges(count):
            add(Quad(NamedNode(base + s), edge, NamedNode(base + o)))
        assert len(store) == count
        return store

    return load


CHILDREN: dict[str, tuple[str, Callable[[int], object]]] = {
    "index": ("ours: FactIndex.add", load_index),
    "tell": ("ours: service (tell)", load_service_tell),
    "replay": ("ours: service (replay)", load_service_replay),
    "snapshot": ("ours: service (snapshot load)", load_service_snapshot),
    "oxigraph": (
        "pyoxigraph Store, http://example.org/ IRIs",
        _oxigraph("http://example.org/"),
    ),
    "oxigraph-short": ("pyoxigraph Store, short IRIs n:I", _oxigraph("n:")),
}


def run_child(name: str, count: int) -> None:
    load = CHILDREN[name][1]
    if name.startswith("oxigraph"):
        import pyoxigraph  # noqa: F401  (imported before the baseline)
    else:
        import nocturnus.api.knowledge
        import nocturnus.service.projection  # noqa: F401
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    kept = load(count)
    seconds = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    print(json.dumps({"before": before, "after": after, "seconds": seconds}))
    del kept


def measure(name: str, count: int, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", name, "--facts", str(count)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- a real server ------------------------------------------------------------------


def measure_server(count: int) -> dict[str, float]:
    """Load ``count`` facts into a ``nocturnus serve`` subprocess over HTTP."""
    import httpx

    from tests.server import Server

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", env={"PYTHONPATH": str(ROOT)}).start()
        try:
            assert server.process is not None
            headers = {"X-Tenant-ID": "acme"}
            client = httpx.Client(base_url=server.url, timeout=600)
            client.post(
                "/tell", json={"predicate": "warm", "args": ["up"]}, headers=headers
            )
            time.sleep(0.5)
            before = rss_bytes(server.process.pid)
            start = time.perf_counter()
            for batch in chunks(count):
                body = {
                    "facts": [{"predicate": "edge", "args": list(e)} for e in batch]
                }
                answer = client.post("/assert/facts", json=body, headers=headers)
                assert answer.status_code == 200 and answer.json()["failed"] == 0, (
                    answer.text[:500]
                )
            # a read refreshes the tenant, as any request would
            client.post(
                "/ask",
                json={"predicate": "edge", "args": ["n0", "?y"]},
                headers=headers,
            )
            seconds = time.perf_counter() - start
            time.sleep(0.5)
            after = rss_bytes(server.process.pid)
        finally:
            server.stop()
    return {"before": before, "after": after, "seconds": seconds}


def ensure_pyoxigraph() -> None:
    try:
        import pyoxigraph  # noqa: F401
    except ImportError:
        print("installing pyoxigraph ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "pyoxigraph"], check=True
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument(
        "--server", action="store_true", help="also a real server over HTTP"
    )
    parser.add_argument(
        "--child", choices=[*sorted(CHILDREN), "write-snapshot"], help=argparse.SUPPRESS
    )
    options = parser.parse_args()
    if options.child == "write-snapshot":
        write_snapshot(options.facts, Path(os.environ["NOCTURNUS_BENCH_SNAPSHOT"]))
        return 0
    if options.child:
        run_child(options.child, options.facts)
        return 0
    ensure_pyoxigraph()
    count = options.facts
    with tempfile.TemporaryDirectory() as tmp:
        env = {"NOCTURNUS_BENCH_SNAPSHOT": str(Path(tmp) / "snapshot")}
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "write-snapshot",
                "--facts",
                str(count),
            ],
            check=True,
            env={**os.environ, **env},
        )
        results = {name: measure(name, count, env) for name in CHILDREN}
    labels = {name: label for name, (label, _) in CHILDREN.items()}
    if options.server:
        results["server"] = measure_server(count)
        labels["server"] = "ours: nocturnus serve, /assert/facts"
    oxi = min(
        results[n]["after"] - results[n]["before"]
        for n in ("oxigraph", "oxigraph-short")
    )
    print(
        f"RSS delta after loading {count} facts edge(nI, nJ); each in its own process"
    )
    print(f"{'store':<44} {'MB':>8} {'B/fact':>7} {'ours/oxi':>9} {'load s':>7}")
    for name, found in results.items():
        delta = found["after"] - found["before"]
        ratio = "" if name.startswith("oxigraph") else f"{delta / oxi:.2f}"
        print(
            f"{labels[name]:<44} {delta / 1e6:>8.1f} {delta / count:>7.0f} "
            f"{ratio:>9} {found['seconds']:>7.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
