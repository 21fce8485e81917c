"""The two stores side by side, in one run (issue 15): durable ``/tell`` and replay.

1. Durable ``POST /tell`` at ``--connections`` clients against two servers running at
   once, one on the embedded SQLite store and one on PostgreSQL
   (``NOCTURNUS_STORE=postgresql://...``, a fresh database of its own, dropped after);
   the load generator alternates between them for ``--rounds`` so drifting background
   load hits both, and the medians are printed.
2. Replay from seq 0 (``nocturnus replay``'s code, one process) of the same
   ``--events`` events written into each store: events per second.

    python benchmarks/stores.py [--seconds 5] [--rounds 3] [--events 200000]
        [--postgresql postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from write_throughput import ensure_wrk, free_port, run_httpx, run_wrk, wait_ready

from nocturnus.service.databases import Databases
from nocturnus.service.events import FactTold, encode
from nocturnus.service.maintenance import replay_database
from nocturnus.store.backends import open_store
from nocturnus.store.crypto import MasterKey
from nocturnus.store.recorder import Store
from nocturnus.store.sealer import Append, Sealer

DATABASE = "bench"
TENANTS = 10
BATCH = 5_000
TS0 = 1_700_000_000_000


def with_database(url: str, name: str) -> str:
    """``url`` naming PostgreSQL database ``name``."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def write_events(store: Store, key: MasterKey, events: int) -> float:
    """Register the benchmark database and write ``events`` facts into it; seconds."""

    async def register() -> None:
        databases = Databases(Path(tempfile.mkdtemp()), key, store=store)
        await databases.open()
        await databases.create(DATABASE)
        await databases.close()

    asyncio.run(register())
    log = Sealer.open(store.recorder(DATABASE), key)
    started = time.perf_counter()
    try:
        batch: list[Append] = []
        for n in range(events):
            event = FactTold("edge", (f"n{n}", n % 997), False, "main", TS0 + n, TS0 + n)
            batch.append(
                Append(f"tenant{n % TENANTS}", None, TS0 + n, [(event.kind, encode(event))])
            )
            if len(batch) >= BATCH:
                log.append(batch)
                batch = []
        if batch:
            log.append(batch)
    finally:
        log.close()
    return time.perf_counter() - started


def measure_replay(name: str, store: Store, key: MasterKey, events: int) -> None:
    written = write_events(store, key, events)
    summary = replay_database(store, key, DATABASE, workers=1)
    rate = summary.events / summary.seconds
    print(
        f"  {name:10s}: wrote {events:,} events in {written:.1f} s "
        f"({events / written:,.0f}/s in batches of {BATCH:,}); replayed "
        f"{summary.events:,} in {summary.seconds:.2f} s ({rate:,.0f} events/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--postgresql", default="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nocturnus-stores-"))
    pg_name = f"noct_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(args.postgresql, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg_name)))
    pg_url = with_database(args.postgresql, pg_name)
    raw_key = os.urandom(32)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOCTURNUS_MASTER_KEY": raw_key.hex()}
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for name, store in (("SQLite", ""), ("PostgreSQL", pg_url)):
            port = free_port()
            with open(work / f"{name}.log", "wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "nocturnus", "serve", "--port", str(port),
                     "--data-dir", str(work / name / "data")],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**env, "NOCTURNUS_STORE": store},
                )
            servers[name] = process, f"http://127.0.0.1:{port}"
        for process, url in servers.values():
            wait_ready(url, process)
        wrk = ensure_wrk()
        tool = "wrk (2 threads, Lua POST script)" if wrk else "asyncio+httpx client"
        print(
            f"durable POST /tell: {tool}; {args.connections} connections, "
            f"{args.seconds} s per run, {args.rounds} rounds, {os.cpu_count()} CPUs"
        )

        def measure(url: str) -> float:
            if wrk:
                return run_wrk(wrk, url, work / "tell.lua", args.seconds, args.connections)
            return run_httpx(url, args.seconds, args.connections)

        for _, url in servers.values():
            measure(url)  # warm-up: tenant created, pool and caches filled
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for round_ in range(1, args.rounds + 1):
            line = []
            for name, (_, url) in servers.items():
                rates[name].append(measure(url))
                line.append(f"{name} {rates[name][-1]:8,.0f} req/s")
            print(f"  round {round_}: " + " | ".join(line))
        sqlite_rps = statistics.median(rates["SQLite"])
        pg_rps = statistics.median(rates["PostgreSQL"])
        print(
            f"  median: SQLite {sqlite_rps:,.0f} req/s, PostgreSQL {pg_rps:,.0f} req/s "
            f"({pg_rps / sqlite_rps:.0%} of SQLite)"
        )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(60)

    key = MasterKey(raw_key)
    print(f"replay from seq 0, one process, {args.events:,} events over {TENANTS} tenants:")
    sqlite_store = open_store("", work / "replay-sqlite")
    pg_store = open_store(pg_url, work)
    try:
        measure_replay("SQLite", sqlite_store, key, args.events)
        measure_replay("PostgreSQL", pg_store, key, args.events)
    finally:
        pg_store.close()
        with psycopg.connect(args.postgresql, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(pg_name)
                )
            )


if __name__ == "__main__":
    main()
