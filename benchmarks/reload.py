"""Reload of an evicted tenant (issue 16, item 6): how long a tenant of 100 000 facts
takes to come back into memory under the memory budget, and how close the budget's size
estimate is to what the projection really holds.

Run with ``python benchmarks/reload.py`` (``--facts 20000`` for a quick run,
``--store postgresql://...`` for PostgreSQL). In one process, on a fresh store:

1. a tenant is filled over the service API (``tenants.tell_many``, chunks of 10 000, as
   ``/assert/facts`` does), snapshotted and evicted exactly as the budget does it
   (``Database.persist`` + ``Database.unload``); then it is loaded again (``Database.tenant``:
   newest snapshot, decrypted, decoded, indexes refreshed) — the reload, timed 3 times;
   Wall and CPU seconds are both printed: CPU time (every thread of the process) is
   what a loaded machine does not inflate;
2. the peer, in the same run: a second tenant with the same facts and no snapshot,
   dropped and loaded again from its log alone (a full replay), timed 3 times;
3. tracemalloc, around one more reload of each shape (plain ``edge(a, b)`` facts, and
   "rich" facts with three arguments, a confidence and two metadata entries), against
   ``residency.estimate_bytes`` of the reloaded projection.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nocturnus.service import tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.service.residency import (
    Residency,
    estimate_bytes,
    sample_fact_bytes,
)
from nocturnus.store.backends import open_store
from nocturnus.store.crypto import MasterKey

CHUNK = 10_000
ROUNDS = 3
Db = Database[DatabaseState]


def plain(tenant: str, i: int) -> TellFact:
    return TellFact("edge", (f"n{i}", f"n{(i * 7919) % 100_003}"))


def rich(tenant: str, i: int) -> TellFact:
    return TellFact(
        "person",
        (f"customer-{i:08d}", f"city-{i % 500}", i),
        confidence=0.9,
        metadata={"source": "crm", "batch": str(i // 100)},
    )


SHAPES: dict[str, Callable[[str, int], TellFact]] = {"plain": plain, "rich": rich}


async def fill(db: Db, tenant: str, count: int, shape: Callable[[str, int], TellFact]) -> None:
    for start in range(0, count, CHUNK):
        cmds = [shape(tenant, i) for i in range(start, min(count, start + CHUNK))]
        await tenants.tell_many(db, tenant, cmds, atomic=True)


async def timed_load(db: Db, tenant: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process: every thread) of one load."""
    started, cpu = time.perf_counter(), time.process_time()
    await db.tenant(tenant)
    return time.perf_counter() - started, time.process_time() - cpu


async def reloads(db: Db, tenant: str, snapshot: bool) -> list[tuple[float, float]]:
    """Drop the tenant and load it again, ``ROUNDS`` times: from its snapshot (as the
    budget evicts it) or, with ``snapshot`` False, from its log alone."""
    seconds = []
    for _ in range(ROUNDS):
        if snapshot:
            assert await db.persist(tenant) and db.unload(tenant)
        else:
            db.evict(tenant)
        gc.collect()
        seconds.append(await timed_load(db, tenant))
    return seconds


async def measured_bytes(db: Db, tenant: str) -> tuple[int, int]:
    """(tracemalloc bytes held by one more reload, the budget's estimate of it)."""
    assert await db.persist(tenant) and db.unload(tenant)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        state = await db.tenant(tenant)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held, estimate_bytes(state, sample_fact_bytes(state))


async def run(facts: int, store: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        dbs = Databases(
            data_dir,
            MasterKey(bytes(range(32))),
            store=open_store(store, data_dir),
            snapshot_every=0,  # no automatic snapshot: the peer tenant has none
            residency=Residency(1 << 40),  # a budget, never reached: eviction by hand
        )
        await dbs.open()
        db = dbs.get("default")
        started = time.perf_counter()
        await fill(db, "snapshotted", facts, plain)
        await fill(db, "replayed", facts, plain)
        print(f"filled 2 tenants of {facts:,} facts in {time.perf_counter() - started:.1f} s")
        from_snapshot = await reloads(db, "snapshotted", snapshot=True)
        from_log = await reloads(db, "replayed", snapshot=False)
        for what, runs in (("from its snapshot", from_snapshot),
                            ("from the log (peer)", from_log)):
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"reload {what}: median {wall:.2f} s wall, {cpu:.2f} s CPU; "
                  f"runs {', '.join(f'{w:.2f}/{c:.2f}' for w, c in runs)}")
        ratio = statistics.median(c for _, c in from_snapshot) / statistics.median(
            c for _, c in from_log
        )
        print(f"snapshot / log, CPU: {ratio:.2f}")
        for name, shape in SHAPES.items():
            tenant = f"size-{name}"
            await fill(db, tenant, facts, shape)
            held, estimate = await measured_bytes(db, tenant)
            print(f"{name:>5}: tracemalloc {held / facts:6.0f} B/fact, estimate "
                  f"{estimate / facts:6.0f} B/fact, estimate / measured "
                  f"{estimate / held:.2f}")
        await dbs.close()
        dbs.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument("--store", default="", help="a postgresql:// URL (default SQLite)")
    args = parser.parse_args()
    asyncio.run(run(args.facts, args.store))


if __name__ == "__main__":
    main()
