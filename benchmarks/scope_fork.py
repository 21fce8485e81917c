"""Fork of a 100 000-fact scope vs fork of an empty scope, in-process (issue 5).

A fork is one ``scope_forked`` event naming two scopes; the projection shares the
source's facts and index copy-on-write, so forking should cost the same whatever the
source holds. This script times, at the service level over a real event log:

* ``fork``: ``scopes.fork`` end to end (decide, log durably, apply), median of N;
* ``apply``: the projection step alone (``TenantState.fork``), median of N;
* for scale, what merely copying the stored records would cost (an eager fork);

for a scope of ``--facts`` facts (default 100 000) and for an empty scope, and prints
the ratio big/empty (about 1x is the goal). For honesty it also prints what a fork
defers: the first write to a shared relation afterwards clones that relation, and a
diff right after the fork (shared relations are not compared).

    python benchmarks/scope_fork.py [--facts 100000] [--repeat 31]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from nocturnus.service import scopes, tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.databases import Databases
from nocturnus.store.crypto import MasterKey

TENANT = "bench"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def populate(db: object, facts: int) -> None:
    batch = 10_000
    for start in range(0, facts, batch):
        cmds = [
            TellFact("edge", (f"n{i}", f"n{i + 1}"))
            for i in range(start, min(start + batch, facts))
        ]
        await tenants.tell_many(db, TENANT, cmds, atomic=True)  # type: ignore[arg-type]


async def write_and_read(db: object, name: str) -> None:
    """One tell into the fork, then a read (which settles the fork's index)."""
    await tenants.tell(db, TENANT, TellFact("edge", (name, "fact"), scope="big-0"))  # type: ignore[arg-type]
    await tenants.match(db, TENANT, "edge", False, (name, "fact"), "big-0")  # type: ignore[arg-type]


async def main(facts: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        databases = Databases(Path(tmp), MasterKey(bytes(range(32))))
        await databases.open()
        db = databases.get("default")
        started = time.perf_counter()
        await populate(db, facts)
        print(f"populated {facts} facts in {time.perf_counter() - started:.1f}s")
        state = await db.tenant(TENANT)

        timings: dict[str, dict[str, list[float]]] = {"big": {}, "empty": {}}
        for i in range(repeat):
            for label, source in (("big", "main"), ("empty", "nothing")):
                t0 = time.perf_counter()
                await scopes.fork(db, TENANT, source, f"{label}-{i}")
                t1 = time.perf_counter()
                state.fork(source, f"probe-{label}")  # the projection step alone
                t2 = time.perf_counter()
                state.drop_scope(f"probe-{label}")
                timings[label].setdefault("fork", []).append(t1 - t0)
                timings[label].setdefault("apply", []).append(t2 - t1)

        for what in ("fork", "apply"):
            big = median_ms(timings["big"][what])
            empty = median_ms(timings["empty"][what])
            print(
                f"{what:>5}: {facts}-fact scope {big:8.3f} ms | empty scope {empty:8.3f} ms"
                f" | ratio {big / empty:5.2f}x  (median of {repeat})"
            )

        t0 = time.perf_counter()
        eager = {key: record for key, record in state.facts["main"].items()}
        t1 = time.perf_counter()
        print(
            f"for scale: merely copying the {len(eager)} stored records (what an eager fork"
            f" would do before even indexing them) takes {1000 * (t1 - t0):.1f} ms"
        )

        t0 = time.perf_counter()
        await scopes.diff(db, TENANT, "big-0", "main")
        t1 = time.perf_counter()
        await write_and_read(db, "first")
        t2 = time.perf_counter()
        await write_and_read(db, "second")
        t3 = time.perf_counter()
        print(
            f"deferred: diff right after the fork {1000 * (t1 - t0):.3f} ms; first write+read in"
            f" the fork {1000 * (t2 - t1):.1f} ms (clones the shared relation), next one"
            f" {1000 * (t3 - t2):.1f} ms"
        )
        await databases.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=31)
    args = parser.parse_args()
    asyncio.run(main(args.facts, args.repeat))
